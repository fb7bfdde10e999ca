//! The table of options: each declared once, with its flag, its `PROA_*` variable, its value kind, its default,
//! its feature, its help line, and how a value is stored into `Options`. `cli` parses the command line and the
//! environment from it and writes `--help` from it; a test checks the README's flag table against it.

use std::path::PathBuf;

use super::values::*;
use super::{OnReadyTimeout, Options};
use crate::preset::{self, Preset};
use crate::shutdown::Target;

/// Stores one value (a switch gets `"true"`) into the options; the error says what would be accepted.
pub type Set = fn(&mut Options, &str) -> Result<(), &'static str>;

/// How an option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A switch (`--always-shutdown`); its variable is `true` or `false`.
    Switch,
    /// One value, named by the metavariable (`--ready-timeout DURATION`); the last one given wins.
    One(&'static str),
    /// Repeatable (`-g URL -g URL`); its variable holds whitespace-separated values.
    Many(&'static str),
    /// Not a setting but something else to do than run a program.
    Mode(Mode),
}

/// What the command line asks for besides running a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Help,
    Version,
}

/// One option.
#[derive(Debug)]
pub struct Spec {
    /// The long flag without `--`; also names the variable (`PROA_` + upper case, `-` as `_`).
    pub long: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    /// Whether it is a command-line flag (`PROA_DISABLE` is a variable only).
    pub flag: bool,
    /// Whether its `PROA_*` variable sets it too.
    pub env: bool,
    /// The cargo feature a build needs for it.
    pub feature: Option<&'static str>,
    /// The default, as `--help` and the README say it.
    pub default: Option<&'static str>,
    /// Whether `default` is a value the option takes (`60s`), rather than a description (`no limit`).
    pub default_is_value: bool,
    pub help: &'static str,
    pub set: Set,
}

impl Spec {
    const fn new(long: &'static str, kind: Kind, help: &'static str, set: Set) -> Spec {
        let env = !matches!(kind, Kind::Mode(_));
        Spec {
            long,
            short: None,
            kind,
            flag: true,
            env,
            feature: None,
            default: None,
            default_is_value: false,
            help,
            set,
        }
    }

    const fn short(mut self, short: char) -> Spec {
        self.short = Some(short);
        self
    }

    /// A default that is a value of the option.
    const fn default(mut self, default: &'static str) -> Spec {
        self.default = Some(default);
        self.default_is_value = true;
        self
    }

    /// A default that is described, not a value (`no limit`).
    const fn default_described(mut self, default: &'static str) -> Spec {
        self.default = Some(default);
        self
    }

    const fn feature(mut self, feature: &'static str) -> Spec {
        self.feature = Some(feature);
        self
    }

    const fn variable_only(mut self) -> Spec {
        self.flag = false;
        self
    }

    const fn flag_only(mut self) -> Spec {
        self.env = false;
        self
    }

    /// `PROA_READY_TIMEOUT` for `ready-timeout`.
    pub fn variable(&self) -> String {
        format!("PROA_{}", self.long.to_ascii_uppercase().replace('-', "_"))
    }

    /// `--ready-timeout`.
    pub fn flag_name(&self) -> String {
        format!("--{}", self.long)
    }

    /// Whether this build has the option (its feature, if it needs one, is built in).
    pub fn is_built(&self) -> bool {
        match self.feature {
            None => true,
            Some(feature) => feature == "kill" && cfg!(feature = "kill"),
        }
    }
}

/// Every option, in `--help`'s order.
pub static OPTIONS: [Spec; 29] = [
    Spec::new(
        "shutdown-http-get",
        Kind::Many("[NAME=]URL"),
        "GET this URL at shutdown; NAME: the container it stops",
        |o, v| {
            o.shutdown_get.push(Target::parse(v).ok_or(URL_EXPECTED)?);
            Ok(())
        },
    )
    .short('g'),
    Spec::new(
        "shutdown-http-post",
        Kind::Many("[NAME=]URL"),
        "POST to this URL at shutdown; NAME: the container it stops",
        |o, v| {
            o.shutdown_post.push(Target::parse(v).ok_or(URL_EXPECTED)?);
            Ok(())
        },
    )
    .short('p'),
    Spec::new(
        "kill",
        Kind::Many("NAME"),
        "signal processes named NAME, as pkill NAME finds them, at shutdown (needs shareProcessNamespace)",
        |o, v| {
            o.kill.names.push(v.to_string());
            Ok(())
        },
    )
    .short('k')
    .feature("kill"),
    Spec::new("kill-all", Kind::Switch, "signal every other process of the Pod at shutdown", |o, _| {
        o.kill.all = true;
        Ok(())
    })
    .short('K')
    .feature("kill"),
    Spec::new(
        "kill-signal",
        Kind::One("SIG"),
        "signal for --kill, --kill-all and --serve-quit: TERM, QUIT, INT, HUP, USR1, USR2, KILL or a number",
        |o, v| {
            o.kill.signal = parse_signal(v).ok_or(SIGNAL_EXPECTED)?;
            Ok(())
        },
    )
    .default("TERM"),
    Spec::new("kill-grace", Kind::One("DURATION"), "then SIGKILL what still runs after this", |o, v| {
        o.kill.grace = duration(v)?;
        Ok(())
    })
    .default("10s"),
    Spec::new("container", Kind::One("NAME"), "proa's own container", |o, v| {
        o.container = Some(v.to_string());
        Ok(())
    })
    .default_described("found from its command line"),
    Spec::new("ignore", Kind::Many("NAME"), "do not wait for this container", |o, v| {
        o.ignore.push(v.to_string());
        Ok(())
    }),
    Spec::new("ready-timeout", Kind::One("DURATION"), "give up waiting for sidecars after this", |o, v| {
        o.ready_timeout = Some(duration(v)?);
        Ok(())
    })
    .default_described("no limit"),
    Spec::new(
        "on-ready-timeout",
        Kind::One("fail|run"),
        "what the ready timeout does: exit 124, or run the program anyway",
        |o, v| {
            o.on_ready_timeout = match v {
                "fail" => OnReadyTimeout::Fail,
                "run" => OnReadyTimeout::Run,
                _ => return Err(ON_READY_TIMEOUT_EXPECTED),
            };
            Ok(())
        },
    )
    .default("fail"),
    Spec::new(
        "peer",
        Kind::Many("NAME"),
        "another main container: not waited for; sidecars stop after it ends",
        |o, v| {
            o.peers.push(v.to_string());
            Ok(())
        },
    ),
    Spec::new("shutdown-timeout", Kind::One("DURATION"), "wait this long for sidecars to exit", |o, v| {
        o.shutdown_timeout = Some(duration(v)?);
        Ok(())
    })
    .default_described("the Pod's terminationGracePeriodSeconds, else 30s"),
    Spec::new(
        "watch-timeout",
        Kind::One("DURATION"),
        "length of one watch request: this times a random 1 to 2 (60s: 60 to 120s), so Pods do not watch in step",
        |o, v| {
            o.watch_timeout = parse_watch_timeout(v).ok_or(WATCH_TIMEOUT_EXPECTED)?;
            Ok(())
        },
    )
    .default("60s"),
    Spec::new("token-refresh", Kind::One("DURATION"), "re-read the token file when older than this", |o, v| {
        o.token_refresh = duration(v)?;
        Ok(())
    })
    .default("60s"),
    Spec::new("always-shutdown", Kind::Switch, "shut sidecars down even when the kubelet will restart proa", |o, _| {
        o.always_shutdown = true;
        Ok(())
    }),
    Spec::new("log-format", Kind::One("text|json"), "log format on stderr; level from RUST_LOG", |o, v| {
        o.log_format = parse_log_format(v).ok_or(LOG_FORMAT_EXPECTED)?;
        Ok(())
    })
    .default("text"),
    Spec::new(
        "auto-shutdown",
        Kind::One("true|false"),
        "give recognised sidecars (Istio, Linkerd, Cloud SQL proxy) their preset's action when none names them",
        |o, v| {
            o.auto_shutdown = parse_bool(v).ok_or(BOOL_EXPECTED)?;
            Ok(())
        },
    )
    .default("true"),
    Spec::new(
        "sidecar",
        Kind::Many("NAME"),
        "a known sidecar's shutdown action (and readiness check without the API): istio, linkerd, cloudsql, envoy:PORT",
        |o, v| {
            o.sidecars.push(Preset::parse(v).ok_or(preset::EXPECTED)?);
            Ok(())
        },
    ),
    Spec::new("wait-http", Kind::Many("URL"), "no Kubernetes API: wait until URL answers 2xx", |o, v| {
        o.wait_http.push(is_http_url(v).then(|| v.to_string()).ok_or(READY_URL_EXPECTED)?);
        Ok(())
    }),
    Spec::new(
        "wait-tcp",
        Kind::Many("HOST:PORT"),
        "no Kubernetes API: wait until HOST:PORT accepts a connection",
        |o, v| {
            o.wait_tcp.push(is_address(v).then(|| v.to_string()).ok_or(ADDRESS_EXPECTED)?);
            Ok(())
        },
    ),
    Spec::new(
        "direct-probe",
        Kind::One("true|false"),
        "also probe the waited containers' readinessProbe endpoints (httpGet, tcpSocket) from the Pod spec",
        |o, v| {
            o.direct_probe = parse_bool(v).ok_or(BOOL_EXPECTED)?;
            Ok(())
        },
    )
    .default("true"),
    Spec::new(
        "probe-interval",
        Kind::One("DURATION"),
        "pause between probe rounds: direct probes, --wait-http and --wait-tcp",
        |o, v| {
            o.probe_interval = parse_interval(v).ok_or(INTERVAL_EXPECTED)?;
            Ok(())
        },
    )
    .default("100ms"),
    Spec::new("termination-log", Kind::One("PATH"), "where proa writes why it failed", |o, v| {
        o.termination_log = PathBuf::from(v);
        Ok(())
    })
    .default("/dev/termination-log"),
    Spec::new(
        "serve-quit",
        Kind::One("HOST:PORT"),
        "on the sidecar's side: run the sidecar, and stop it when POST /quitquitquit comes to this loopback address",
        |o, v| {
            o.serve_quit = Some(parse_loopback(v).ok_or(LOOPBACK_EXPECTED)?);
            Ok(())
        },
    ),
    Spec::new(
        "install",
        Kind::One("DIR"),
        "copy proa's executable to DIR/proa (an init container's job), and exit",
        |o, v| {
            if v.is_empty() {
                return Err(DIR_EXPECTED);
            }
            o.install = Some(PathBuf::from(v));
            Ok(())
        },
    )
    .flag_only(),
    Spec::new("disable", Kind::Switch, "run the program in proa's place: no wait, no shutdown, no API", |o, _| {
        o.disabled = true;
        Ok(())
    })
    .variable_only(),
    Spec::new(
        "check",
        Kind::Mode(Mode::Check),
        "inside the Pod: report whether proa could do its job, and exit",
        |_, _| Ok(()),
    ),
    Spec::new("help", Kind::Mode(Mode::Help), "print this help", |_, _| Ok(())).short('h'),
    Spec::new("version", Kind::Mode(Mode::Version), "print the version", |_, _| Ok(())).short('V'),
];

/// The option with this long flag.
pub fn by_long(long: &str) -> Option<&'static Spec> {
    OPTIONS.iter().find(|spec| spec.flag && spec.long == long)
}

/// The option with this short flag.
pub fn by_short(short: char) -> Option<&'static Spec> {
    OPTIONS.iter().find(|spec| spec.short == Some(short))
}

fn duration(text: &str) -> Result<std::time::Duration, &'static str> {
    parse_duration(text).ok_or(DURATION_EXPECTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_option_is_documented() {
        for (i, spec) in OPTIONS.iter().enumerate() {
            assert!(!spec.help.is_empty() && !spec.help.ends_with('.'), "{}", spec.long);
            for other in &OPTIONS[i + 1..] {
                assert_ne!(spec.long, other.long);
                assert!(spec.short.is_none() || spec.short != other.short, "{} and {}", spec.long, other.long);
            }
        }
    }

    #[test]
    fn every_default_is_the_value_an_unset_option_has() {
        // Giving the default that --help and the README show changes nothing.
        let defaults = Options::default();
        for spec in OPTIONS.iter().filter(|s| s.default_is_value) {
            let mut given = Options::default();
            let default = spec.default.unwrap_or_default();
            assert_eq!((spec.set)(&mut given, default), Ok(()), "--{} {default}", spec.long);
            assert_eq!(given, defaults, "--{} {default}", spec.long);
        }
    }

    /// The README's flag table: one row per option, with the same flags, variable and default.
    #[test]
    fn the_readme_flag_table_lists_exactly_these_options() {
        let readme = include_str!("../../README.md");
        let section = readme.split("\n## Flags\n").nth(1).and_then(|s| s.split("\n## ").next()).unwrap();
        let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| flag")).collect();
        assert_eq!(rows.len(), OPTIONS.len(), "one README row per option:\n{}", rows.join("\n"));
        // A row's cells, split at each `|` that is not escaped (`text\|json`).
        let cells = |row: &str| -> Vec<String> {
            let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
            let mut cells = vec![String::new()];
            let mut escaped = false;
            for c in inner.chars() {
                match c {
                    '|' if !escaped => cells.push(String::new()),
                    c => cells.last_mut().expect("at least one cell").push(c),
                }
                escaped = c == '\\';
            }
            cells.into_iter().map(|cell| cell.trim().to_string()).collect()
        };
        // The long flags a cell names, whole (`--kill` is not `--kill-all`).
        let longs = |cell: &str| -> Vec<String> {
            let words = cell.split(|c: char| !(c.is_ascii_lowercase() || c == '-'));
            words.filter_map(|w| w.strip_prefix("--")).map(str::to_string).collect()
        };
        for spec in &OPTIONS {
            let row = match spec.flag {
                true => rows.iter().find(|row| longs(&cells(row)[0]).contains(&spec.long.to_string())),
                false => rows.iter().find(|row| cells(row)[1].contains(&spec.variable())),
            };
            let Some(row) = row else { panic!("no README row for --{}", spec.long) };
            let cells = cells(row);
            if let Some(short) = spec.short {
                assert!(cells[0].contains(&format!("`-{short}, --{}", spec.long)), "{row}");
            }
            match spec.env {
                true => assert!(cells[1].contains(&format!("`{}", spec.variable())), "{row}"),
                false => assert!(cells[1].trim().is_empty(), "{row}"),
            }
            if let Some(default) = spec.default {
                assert!(row.contains(&format!("(default {default})")), "{row}: (default {default})");
            }
            if let Some(feature) = spec.feature {
                assert!(cells[0].contains(&format!("feature `{feature}`")), "{row}");
            }
        }
    }
}
