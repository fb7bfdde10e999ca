//! The command line and the `PROA_*` environment → `Parsed`, driven by the table of options (`options::table`),
//! as `--help` is (`options::help`). Pure: the caller passes the arguments and an environment lookup, so tests never touch the
//! real environment. The first positional argument is the program; everything after it is the program's, never
//! proa's.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::options::table::{self, Kind, Mode, OPTIONS, Spec};
use crate::options::values::{BOOL_EXPECTED, parse_bool};
use crate::options::{OnReadyTimeout, Options};
use crate::termination;
use crate::url::redact;

/// What the command line asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per run: boxing would buy nothing
pub enum Parsed {
    /// Wrap and run a program.
    Run(Options),
    /// `-h`, `--help`: print `help()` and exit 0.
    Help,
    /// `-V`, `--version`: print the version and exit 0.
    Version,
    /// `--check`: report line by line whether proa could do its job in this Pod, and exit 0 or 125.
    /// The program is optional here (`program` is then empty).
    Check(Options),
    /// `--install DIR`: copy proa's executable to `DIR/proa`, and exit 0 or 125. There is no program.
    Install(Options),
}

/// A command line or environment proa cannot use. Exit code 125.
#[derive(Debug, PartialEq)]
pub enum UsageError {
    /// lexopt's own complaint: unknown option, missing value, non-UTF-8 value.
    Syntax(String),
    /// A flag's value is malformed. `expected` says what would be accepted.
    InvalidFlag { flag: String, value: String, expected: &'static str },
    /// A `PROA_*` variable's value is malformed.
    InvalidEnv { var: String, value: String, expected: &'static str },
    /// No program after the options.
    MissingProgram,
    /// An option (flag or variable, as named) of a feature this build lacks.
    NotBuilt { what: String, feature: &'static str },
    /// `--kill` and `--kill-all` together.
    KillBoth,
    /// An option (flag or variable, as named) that a role (`--serve-quit`, `--install`, as named) does not take.
    NotForRole { option: String, role: String },
    /// `--install` with a program to run.
    InstallWithProgram,
    /// `--on-ready-timeout run` with no `--ready-timeout`: it would never apply.
    RunWithoutTimeout,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Syntax(msg) => write!(f, "{msg} (see proa --help)"),
            UsageError::InvalidFlag { flag, value, expected } => {
                write!(f, "invalid {flag} {:?}: {expected}", redact(value))
            }
            UsageError::InvalidEnv { var, value, expected } => {
                write!(f, "invalid {var} {:?}: {expected}", redact(value))
            }
            UsageError::MissingProgram => {
                write!(f, "no program to run: use proa [OPTIONS] -- PROGRAM [ARGS...]")
            }
            UsageError::NotBuilt { what, feature } => write!(
                f,
                "{what} needs a proa built with the {feature} feature (cargo build --features {feature}); use --shutdown-http-get or --shutdown-http-post"
            ),
            UsageError::KillBoth => {
                write!(
                    f,
                    "--kill and --kill-all together: --kill-all already signals every process --kill names; use one"
                )
            }
            UsageError::NotForRole { option, role } if role != "--install" => write!(
                f,
                "{option} with {role}: {role} runs a sidecar, which waits for nothing and stops nothing but it; {option} is for the main container's proa (a sidecar's proa takes only --kill-signal, --kill-grace, --log-format, --termination-log)"
            ),
            UsageError::NotForRole { option, role } => write!(
                f,
                "{option} with {role}: {role} only copies proa (it takes only --log-format and --termination-log)"
            ),
            UsageError::InstallWithProgram => {
                write!(f, "--install copies proa and exits, running no program: drop the program, or --install")
            }
            UsageError::RunWithoutTimeout => write!(
                f,
                "--on-ready-timeout run without --ready-timeout never applies: set --ready-timeout (PROA_READY_TIMEOUT) too"
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// Parses proa's arguments (without argv[0]) and environment (`env("PROA_X")` → value).
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    use lexopt::prelude::*;

    let args: Vec<OsString> = args.into_iter().collect();
    let mut options =
        Options { own_args: args.iter().map(|a| a.to_string_lossy().into_owned()).collect(), ..Options::default() };
    let mut parser = lexopt::Parser::from_args(args);
    let mut given: Vec<&'static str> = Vec::new();
    let mut check = false;
    let mut program = None;

    while let Some(arg) = parser.next().map_err(syntax)? {
        let spec = match &arg {
            Short(short) => table::by_short(*short),
            Long(long) => table::by_long(long),
            Value(first) => {
                // The wrapper rule: from the program's name on, nothing is proa's.
                program = Some(first.clone());
                options.args = parser.raw_args().map_err(syntax)?.collect();
                break;
            }
        };
        let Some(spec) = spec else { return Err(syntax(arg.unexpected())) };
        if !spec.is_built() {
            return Err(UsageError::NotBuilt { what: spec.flag_name(), feature: spec.feature.unwrap_or_default() });
        }
        match spec.kind {
            Kind::Mode(Mode::Help) => return Ok(Parsed::Help),
            Kind::Mode(Mode::Version) => return Ok(Parsed::Version),
            Kind::Mode(Mode::Check) => check = true,
            Kind::Switch => set(spec, &mut options, "true", spec.flag_name())?,
            Kind::One(_) | Kind::Many(_) => {
                let text = value(&mut parser)?;
                set(spec, &mut options, &text, spec.flag_name())?;
            }
        }
        given.push(spec.long);
    }

    // The other roles read only their own variables: a ConfigMap shared by every container of the Pod may set the
    // main container's ones. A flag they do not take is a mistake, though.
    let role = Role::of(&given, &env);
    if let Some(takes) = role.takes() {
        if let Some(flag) = given.iter().find(|long| !takes.contains(long)) {
            let option = format!("--{flag}");
            return Err(UsageError::NotForRole { option, role: role.name(&given) });
        }
    }
    let read =
        |spec: &&Spec| spec.env && !given.contains(&spec.long) && role.takes().is_none_or(|t| t.contains(&spec.long));
    for spec in OPTIONS.iter().filter(read) {
        from_variable(spec, &mut options, &env)?;
    }
    options.termination_log = match given.contains(&"termination-log") {
        true => options.termination_log,
        false => termination_log_from_env(&env),
    };
    if options.kill.all && !options.kill.names.is_empty() {
        return Err(UsageError::KillBoth);
    }
    if options.on_ready_timeout == OnReadyTimeout::Run && options.ready_timeout.is_none() {
        return Err(UsageError::RunWithoutTimeout);
    }
    if options.install.is_some() {
        return match program {
            Some(_) => Err(UsageError::InstallWithProgram),
            None => Ok(Parsed::Install(options)),
        };
    }
    options.program = match (program, check) {
        (Some(program), _) => program,
        (None, true) => OsString::new(),
        (None, false) => return Err(UsageError::MissingProgram),
    };
    Ok(match check {
        true => Parsed::Check(options),
        false => Parsed::Run(options),
    })
}

/// What proa is run as: it decides which options apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The main container's proa: every option.
    Main,
    /// `--serve-quit` (or `PROA_SERVE_QUIT`): a sidecar's entrypoint.
    Sidecar,
    /// `--install` (a flag only): copies proa and exits.
    Install,
}

impl Role {
    fn of(given: &[&str], env: &impl Fn(&str) -> Option<String>) -> Role {
        let serve_quit_variable = env("PROA_SERVE_QUIT").is_some_and(|v| !v.trim().is_empty());
        match (given.contains(&"install"), given.contains(&"serve-quit") || serve_quit_variable) {
            (true, _) => Role::Install,
            (false, true) => Role::Sidecar,
            (false, false) => Role::Main,
        }
    }

    /// The options this role takes (`None`: all).
    fn takes(self) -> Option<&'static [&'static str]> {
        match self {
            Role::Main => None,
            Role::Sidecar => {
                Some(&["serve-quit", "kill-signal", "kill-grace", "log-format", "termination-log", "disable"])
            }
            Role::Install => Some(&["install", "log-format", "termination-log"]),
        }
    }

    /// How the user asked for it.
    fn name(self, given: &[&str]) -> String {
        match self {
            Role::Sidecar if !given.contains(&"serve-quit") => "PROA_SERVE_QUIT".into(),
            Role::Sidecar => "--serve-quit".into(),
            Role::Install => "--install".into(),
            Role::Main => String::new(),
        }
    }
}

/// Stores a value given as `source` (the flag or the variable), or says what `source` should have been.
fn set(spec: &Spec, options: &mut Options, text: &str, source: String) -> Result<(), UsageError> {
    (spec.set)(options, text).map_err(|expected| match source.starts_with("--") {
        true => UsageError::InvalidFlag { flag: source, value: text.to_string(), expected },
        false => UsageError::InvalidEnv { var: source, value: text.to_string(), expected },
    })
}

/// Reads an option from its `PROA_*` variable, if set and not blank.
fn from_variable(spec: &Spec, options: &mut Options, env: &impl Fn(&str) -> Option<String>) -> Result<(), UsageError> {
    let var = spec.variable();
    let Some(text) = env(&var).filter(|v| !v.trim().is_empty()) else { return Ok(()) };
    let switch = || parse_bool(text.trim()).ok_or_else(|| invalid_env(&var, &text, BOOL_EXPECTED));
    if !spec.is_built() {
        return match spec.kind == Kind::Switch && !switch()? {
            true => Ok(()),
            false => Err(UsageError::NotBuilt { what: var, feature: spec.feature.unwrap_or_default() }),
        };
    }
    match spec.kind {
        Kind::Switch if switch()? => set(spec, options, "true", var),
        Kind::Switch | Kind::Mode(_) => Ok(()),
        Kind::One(_) => (spec.set)(options, text.trim()).map_err(|expected| invalid_env(&var, &text, expected)),
        Kind::Many(_) => text.split_whitespace().try_for_each(|item| set(spec, options, item, var.clone())),
    }
}

fn invalid_env(var: &str, text: &str, expected: &'static str) -> UsageError {
    UsageError::InvalidEnv { var: var.to_string(), value: text.to_string(), expected }
}

/// `PROA_TERMINATION_LOG`, else `/dev/termination-log`. On a usage error this is where the reason goes, since
/// the command line that failed to parse cannot be trusted for `--termination-log`.
pub fn termination_log_from_env(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let path = env("PROA_TERMINATION_LOG").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    PathBuf::from(path.unwrap_or_else(|| termination::DEFAULT_PATH.into()))
}

fn syntax(err: lexopt::Error) -> UsageError {
    UsageError::Syntax(err.to_string())
}

fn value(parser: &mut lexopt::Parser) -> Result<String, UsageError> {
    let value = parser.value().map_err(syntax)?;
    value.into_string().map_err(|raw| UsageError::Syntax(format!("argument is not valid UTF-8: {raw:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DEFAULT_WATCH_TIMEOUT;
    #[cfg(feature = "kill")]
    use crate::child::DEFAULT_KILL_GRACE;
    use crate::cluster::DEFAULT_TOKEN_REFRESH;
    use crate::logging::LogFormat;
    #[cfg(feature = "kill")]
    use crate::options::KillOptions;
    use crate::preset::Preset;
    use crate::probe::{self, Endpoint};
    use std::time::Duration;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Options, UsageError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let parsed =
            parse(args.iter().map(OsString::from), |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()))?;
        match parsed {
            Parsed::Run(options) => Ok(options),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        run(args, env).expect_err("should fail").to_string()
    }

    fn urls(targets: &[crate::shutdown::Target]) -> Vec<&str> {
        targets.iter().map(|t| t.url.as_str()).collect()
    }

    #[test]
    fn shutdown_actions_may_name_their_container() {
        let env = [("PROA_SHUTDOWN_HTTP_GET", "envoy=http://127.0.0.1:9901/quitquitquit http://x/q")];
        let o = run(&["-p", "istio-proxy=http://127.0.0.1:15020/quitquitquit", "p"], &env).unwrap();
        let post = &o.shutdown_post[0];
        assert_eq!(
            (post.url.as_str(), post.container.as_deref()),
            ("http://127.0.0.1:15020/quitquitquit", Some("istio-proxy"))
        );
        let names: Vec<Option<&str>> = o.shutdown_get.iter().map(|t| t.container.as_deref()).collect();
        assert_eq!(
            (urls(&o.shutdown_get), names),
            (vec!["http://127.0.0.1:9901/quitquitquit", "http://x/q"], vec![Some("envoy"), None])
        );
        assert_eq!(
            error(&["-g", "Envoy=http://h/q", "p"], &[]),
            r#"invalid --shutdown-http-get "Envoy=http://h/q": use an http:// URL such as http://127.0.0.1:15020/quitquitquit, or CONTAINER=URL for the container it stops"#
        );
    }

    #[test]
    fn on_ready_timeout_and_peers() {
        assert_eq!(run(&["p"], &[]).unwrap().on_ready_timeout, OnReadyTimeout::Fail);
        let o = run(
            &["--on-ready-timeout", "run", "--ready-timeout", "5s", "--peer", "worker", "p"],
            &[("PROA_PEER", "ignored")],
        )
        .unwrap();
        assert_eq!((o.on_ready_timeout, o.peers), (OnReadyTimeout::Run, vec!["worker".to_string()]));
        let env = [("PROA_ON_READY_TIMEOUT", "run"), ("PROA_READY_TIMEOUT", "5s"), ("PROA_PEER", "a b")];
        let o = run(&["p"], &env).unwrap();
        assert_eq!((o.on_ready_timeout, o.peers), (OnReadyTimeout::Run, vec!["a".to_string(), "b".to_string()]));
        assert_eq!(
            error(&["--on-ready-timeout", "wait", "p"], &[]),
            r#"invalid --on-ready-timeout "wait": use fail (exit 124) or run (run the program anyway)"#
        );
    }

    #[test]
    fn running_anyway_needs_a_ready_timeout() {
        assert_eq!(
            error(&["--on-ready-timeout", "run", "p"], &[]),
            "--on-ready-timeout run without --ready-timeout never applies: set --ready-timeout (PROA_READY_TIMEOUT) too"
        );
        assert!(error(&["p"], &[("PROA_ON_READY_TIMEOUT", "run")]).contains("never applies"));
    }

    #[test]
    fn peers_need_the_api() {
        let err = endpoints(&["--wait-tcp", "db:5432", "--peer", "other", "p"], true).unwrap_err().to_string();
        assert!(err.starts_with("--peer needs the Kubernetes API"), "{err}");
    }

    #[test]
    fn proa_0_1_command_lines_still_work() {
        let o =
            run(&["--shutdown-http-get=http://a:1/q", "-g", "http://b/q", "-p", "http://c/x", "--", "prog", "-x"], &[])
                .unwrap();
        assert_eq!(urls(&o.shutdown_get), ["http://a:1/q", "http://b/q"]);
        assert_eq!(urls(&o.shutdown_post), ["http://c/x"]);
        assert_eq!(o.program, "prog");
        assert_eq!(o.args, ["-x"]);
    }

    #[test]
    fn program_flags_are_never_proas_even_without_double_dash() {
        let o = run(&["-g", "http://a/q", "prog", "--help", "-g", "--", "x"], &[]).unwrap();
        assert_eq!(o.program, "prog");
        assert_eq!(o.args, ["--help", "-g", "--", "x"]);
        assert_eq!(urls(&o.shutdown_get), ["http://a/q"]);
    }

    #[test]
    fn own_args_keep_the_whole_command_line() {
        let o = run(&["--ignore", "x", "--", "prog", "a"], &[]).unwrap();
        assert_eq!(o.own_args, ["--ignore", "x", "--", "prog", "a"]);
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(["-h".into()], |_| None), Ok(Parsed::Help)));
        assert!(matches!(parse(["--version".into()], |_| None), Ok(Parsed::Version)));
    }

    #[test]
    fn bad_duration_names_flag_and_forms() {
        assert_eq!(
            error(&["--ready-timeout", "5x", "--", "p"], &[]),
            r#"invalid --ready-timeout "5x": use 90, 90s, 500ms, 5m or 1h"#
        );
        assert_eq!(
            error(&["--", "p"], &[("PROA_SHUTDOWN_TIMEOUT", "soon")]),
            r#"invalid PROA_SHUTDOWN_TIMEOUT "soon": use 90, 90s, 500ms, 5m or 1h"#
        );
    }

    #[test]
    fn flag_wins_over_variable() {
        let env = [("PROA_READY_TIMEOUT", "9"), ("PROA_SHUTDOWN_HTTP_GET", "http://env/q"), ("PROA_IGNORE", "a b")];
        let o = run(&["--ready-timeout", "1s", "-g", "http://flag/q", "--", "p"], &env).unwrap();
        assert_eq!(o.ready_timeout, Some(Duration::from_secs(1)));
        assert_eq!(urls(&o.shutdown_get), ["http://flag/q"]);
        assert_eq!(o.ignore, ["a", "b"]);
    }

    #[test]
    fn variables_fill_in() {
        let env = [
            ("PROA_SHUTDOWN_HTTP_POST", " http://a/x\thttp://b/y "),
            ("PROA_CONTAINER", "job"),
            ("PROA_ALWAYS_SHUTDOWN", "true"),
            ("PROA_LOG_FORMAT", "json"),
            ("PROA_WATCH_TIMEOUT", "5s"),
            ("PROA_TOKEN_REFRESH", "10s"),
            ("PROA_SHUTDOWN_TIMEOUT", ""),
        ];
        let o = run(&["p"], &env).unwrap();
        assert_eq!(urls(&o.shutdown_post), ["http://a/x", "http://b/y"]);
        assert_eq!(o.container.as_deref(), Some("job"));
        assert!(o.always_shutdown);
        assert_eq!(o.log_format, LogFormat::Json);
        assert_eq!(o.watch_timeout, Duration::from_secs(5));
        assert_eq!(o.token_refresh, Duration::from_secs(10));
        assert_eq!(o.shutdown_timeout, None);
    }

    #[test]
    fn defaults() {
        let o = run(&["p"], &[]).unwrap();
        assert_eq!(o.ready_timeout, None);
        assert_eq!(o.shutdown_timeout, None);
        assert_eq!(o.watch_timeout, DEFAULT_WATCH_TIMEOUT);
        assert_eq!(o.token_refresh, DEFAULT_TOKEN_REFRESH);
        assert!(!o.always_shutdown);
        assert_eq!(o.log_format, LogFormat::Text);
    }

    #[test]
    fn watch_timeout_is_whole_seconds_of_at_least_one() {
        assert_eq!(
            error(&["--watch-timeout", "0", "p"], &[]),
            r#"invalid --watch-timeout "0": use whole seconds, at least 1s, such as 60s or 5m"#
        );
        assert!(
            error(&["p"], &[("PROA_WATCH_TIMEOUT", "1500ms")]).starts_with("invalid PROA_WATCH_TIMEOUT \"1500ms\"")
        );
        assert_eq!(run(&["--watch-timeout", "2000ms", "p"], &[]).unwrap().watch_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_inputs_say_what_to_fix() {
        assert_eq!(error(&[], &[]), "no program to run: use proa [OPTIONS] -- PROGRAM [ARGS...]");
        assert_eq!(error(&["--",], &[]), "no program to run: use proa [OPTIONS] -- PROGRAM [ARGS...]");
        assert_eq!(error(&["--frobnicate", "p"], &[]), "invalid option '--frobnicate' (see proa --help)");
        assert_eq!(error(&["--ready-timeout"], &[]), "missing argument for option '--ready-timeout' (see proa --help)");
        assert_eq!(
            error(&["-g", "https://a/q", "p"], &[]),
            r#"invalid --shutdown-http-get "https://a/q": use an http:// URL such as http://127.0.0.1:15020/quitquitquit, or CONTAINER=URL for the container it stops"#
        );
        assert_eq!(
            error(&["p"], &[("PROA_SHUTDOWN_HTTP_POST", "http://ok/ localhost:1/q")]),
            r#"invalid PROA_SHUTDOWN_HTTP_POST "localhost:1/q": use an http:// URL such as http://127.0.0.1:15020/quitquitquit, or CONTAINER=URL for the container it stops"#
        );
        assert_eq!(error(&["--log-format", "xml", "p"], &[]), r#"invalid --log-format "xml": use text or json"#);
        assert_eq!(
            error(&["p"], &[("PROA_ALWAYS_SHUTDOWN", "yes")]),
            r#"invalid PROA_ALWAYS_SHUTDOWN "yes": use true or false"#
        );
    }

    #[cfg(not(feature = "kill"))]
    #[test]
    fn kill_flags_need_the_kill_feature() {
        assert!(error(&["-k", "envoy", "p"], &[]).starts_with("--kill needs a proa built with the kill feature"));
        assert!(error(&["--kill-all", "p"], &[]).starts_with("--kill-all needs a proa built with the kill feature"));
        assert!(error(&["p"], &[("PROA_KILL", "envoy")]).starts_with("PROA_KILL needs a proa built"));
        assert!(error(&["p"], &[("PROA_KILL_ALL", "true")]).starts_with("PROA_KILL_ALL needs a proa built"));
        assert!(run(&["p"], &[("PROA_KILL_ALL", "false")]).is_ok());
    }

    #[test]
    fn serve_quit_and_its_stop_in_every_build() {
        let o = run(&["--serve-quit", "localhost:15000", "--kill-signal", "QUIT", "--kill-grace", "2s", "envoy"], &[]);
        let o = o.unwrap();
        assert_eq!(o.serve_quit.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:15000"));
        assert_eq!((o.kill.signal, o.kill.grace), (libc::SIGQUIT, Duration::from_secs(2)));
        let o = run(&["envoy"], &[("PROA_SERVE_QUIT", "[::1]:15000")]).unwrap();
        assert_eq!(o.serve_quit.map(|a| a.to_string()).as_deref(), Some("[::1]:15000"));
        assert!(error(&["--serve-quit", "0.0.0.0:15000", "envoy"], &[]).contains("use a loopback HOST:PORT"));
        for (flag, value) in
            [("-g", "http://x/q"), ("--peer", "other"), ("--wait-tcp", "db:5432"), ("--sidecar", "istio")]
        {
            let err = error(&["--serve-quit", "127.0.0.1:15000", flag, value, "envoy"], &[]);
            assert!(err.contains(" with --serve-quit: --serve-quit runs a sidecar"), "{flag}: {err}");
        }
        for flag in ["--shutdown-timeout=5s", "--ignore=x", "--container=x", "--always-shutdown", "--check"] {
            let parsed = parse(["--serve-quit", "127.0.0.1:1", flag, "envoy"].map(OsString::from), |_| None);
            let Err(err) = parsed else { panic!("{flag} accepted") };
            assert!(err.to_string().starts_with(flag.split('=').next().unwrap()), "{err}");
        }
        // The role named as it was asked for; the main container's variables (a shared ConfigMap) are not read.
        let env = [("PROA_SERVE_QUIT", "127.0.0.1:15000"), ("PROA_SHUTDOWN_HTTP_POST", "not a URL")];
        assert!(run(&["envoy"], &env).unwrap().shutdown_post.is_empty());
        let err = error(&["-p", "http://127.0.0.1:15020/quitquitquit", "envoy"], &env);
        assert!(err.starts_with("--shutdown-http-post with PROA_SERVE_QUIT: PROA_SERVE_QUIT runs a sidecar"), "{err}");
    }

    #[test]
    fn install_takes_a_directory_no_program_and_no_variable() {
        let env = |var: &str| (var == "PROA_INSTALL").then(|| "/elsewhere".to_string());
        let parsed = parse(["--install", "/proa-bin"].map(OsString::from), env).unwrap();
        let Parsed::Install(options) = parsed else { panic!("{parsed:?}") };
        assert_eq!(options.install.as_deref(), Some(std::path::Path::new("/proa-bin")));
        assert!(matches!(parse(["p"].map(OsString::from), env), Ok(Parsed::Run(_))), "PROA_INSTALL is not read");
        let err = parse(["--install", "/proa-bin", "--", "p"].map(OsString::from), env).unwrap_err();
        assert_eq!(err, UsageError::InstallWithProgram);
        let bogus = |var: &str| (var == "PROA_SERVE_QUIT").then(|| "bogus".to_string());
        assert!(matches!(parse(["--install", "/d"].map(OsString::from), bogus), Ok(Parsed::Install(_))));
        let err = parse(["--install", "/d", "--serve-quit", "127.0.0.1:1"].map(OsString::from), env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--serve-quit with --install: --install only copies proa (it takes only --log-format and --termination-log)"
        );
    }

    #[cfg(feature = "kill")]
    #[test]
    fn kill_flags() {
        let o =
            run(&["-k", "nginx", "--kill=envoy", "--kill-signal", "SIGQUIT", "--kill-grace", "3s", "p"], &[]).unwrap();
        let expected = KillOptions {
            names: vec!["nginx".into(), "envoy".into()],
            all: false,
            signal: libc::SIGQUIT,
            grace: Duration::from_secs(3),
        };
        assert_eq!(o.kill, expected);
        let o = run(&["-K", "p"], &[]).unwrap();
        let defaults = KillOptions { names: vec![], all: true, signal: libc::SIGTERM, grace: DEFAULT_KILL_GRACE };
        assert_eq!(o.kill, defaults);
        assert_eq!(run(&["p"], &[]).unwrap().kill, KillOptions { all: false, ..defaults });
    }

    #[cfg(feature = "kill")]
    #[test]
    fn kill_variables_fill_in() {
        let env = [("PROA_KILL", " nginx\tenvoy "), ("PROA_KILL_SIGNAL", "usr1"), ("PROA_KILL_GRACE", "500ms")];
        let o = run(&["p"], &env).unwrap();
        assert_eq!(o.kill.names, ["nginx", "envoy"]);
        assert_eq!((o.kill.signal, o.kill.grace), (libc::SIGUSR1, Duration::from_millis(500)));
        let o = run(&["-k", "flag", "--kill-signal", "9", "p"], &env).unwrap();
        assert_eq!((o.kill.names, o.kill.signal), (vec!["flag".to_string()], libc::SIGKILL));
        assert!(run(&["p"], &[("PROA_KILL_ALL", "true")]).unwrap().kill.all);
    }

    #[cfg(feature = "kill")]
    #[test]
    fn kill_mistakes_say_what_to_fix() {
        assert_eq!(
            error(&["--kill-signal", "STOP", "p"], &[]),
            r#"invalid --kill-signal "STOP": use TERM, QUIT, INT, HUP, USR1, USR2 or KILL (SIGTERM… also) or a number from 1 to 64 that ends a process"#
        );
        assert!(error(&["p"], &[("PROA_KILL_SIGNAL", "0")]).starts_with(r#"invalid PROA_KILL_SIGNAL "0": use TERM"#));
        assert_eq!(
            error(&["--kill-grace", "soon", "p"], &[]),
            r#"invalid --kill-grace "soon": use 90, 90s, 500ms, 5m or 1h"#
        );
        let both = "--kill and --kill-all together: --kill-all already signals every process --kill names; use one";
        assert_eq!(error(&["-K", "-k", "nginx", "p"], &[]), both);
        assert_eq!(error(&["-K", "p"], &[("PROA_KILL", "nginx")]), both);
    }

    #[test]
    fn waits_presets_and_interval_from_flags() {
        let args = [
            "--wait-http=http://127.0.0.1:8080/ready",
            "--wait-tcp",
            "[::1]:5432",
            "--wait-tcp",
            "db:5432",
            "--sidecar",
            "istio",
            "--sidecar=envoy:9901",
            "--probe-interval",
            "100ms",
            "p",
        ];
        let o = run(&args, &[]).unwrap();
        assert_eq!(o.wait_http, ["http://127.0.0.1:8080/ready"]);
        assert_eq!(o.wait_tcp, ["[::1]:5432", "db:5432"]);
        assert_eq!(o.sidecars, [Preset::Istio, Preset::Envoy { admin_port: 9901, container: None }]);
        assert_eq!(o.probe_interval, Duration::from_millis(100));
    }

    #[test]
    fn waits_presets_and_the_off_switch_from_variables() {
        let env = [
            ("PROA_WAIT_HTTP", "http://a/ready http://b/ready"),
            ("PROA_WAIT_TCP", "127.0.0.1:1 "),
            ("PROA_SIDECAR", "linkerd cloudsql"),
            ("PROA_PROBE_INTERVAL", "1s"),
            ("PROA_TERMINATION_LOG", "/tmp/why"),
            ("PROA_DISABLE", "true"),
        ];
        let o = run(&["p"], &env).unwrap();
        assert_eq!(o.wait_http, ["http://a/ready", "http://b/ready"]);
        assert_eq!(o.wait_tcp, ["127.0.0.1:1"]);
        assert_eq!(o.sidecars, [Preset::Linkerd, Preset::CloudSql]);
        assert_eq!(o.probe_interval, Duration::from_secs(1));
        assert_eq!(o.termination_log, PathBuf::from("/tmp/why"));
        assert!(o.disabled);
        let o = run(&["--termination-log", "/flag", "p"], &env).unwrap();
        assert_eq!(o.termination_log, PathBuf::from("/flag"));
    }

    #[test]
    fn defaults_of_issue_7() {
        let o = run(&["p"], &[]).unwrap();
        assert_eq!(o.probe_interval, probe::DEFAULT_INTERVAL);
        assert_eq!(o.termination_log, PathBuf::from("/dev/termination-log"));
        assert!(!o.disabled && o.wait_http.is_empty() && o.wait_tcp.is_empty() && o.sidecars.is_empty());
        assert_eq!(termination_log_from_env(|_| Some(" ".into())), PathBuf::from("/dev/termination-log"));
    }

    #[test]
    fn bad_waits_and_presets_say_what_to_fix() {
        assert_eq!(
            error(&["--sidecar", "consul", "p"], &[]),
            r#"invalid --sidecar "consul": use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port; envoy:PORT=NAME names its container)"#
        );
        assert_eq!(
            error(&["p"], &[("PROA_SIDECAR", "istio envoy")]),
            r#"invalid PROA_SIDECAR "envoy": use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port; envoy:PORT=NAME names its container)"#
        );
        assert_eq!(
            error(&["--wait-tcp", "::1:5432", "p"], &[]),
            r#"invalid --wait-tcp "::1:5432": use HOST:PORT such as 127.0.0.1:5432 or [::1]:5432"#
        );
        for bad in ["5432", ":5432", "db:", "db:0", "db:x"] {
            assert!(run(&["--wait-tcp", bad, "p"], &[]).is_err(), "{bad:?}");
        }
        assert_eq!(
            error(&["--wait-http", "127.0.0.1:8080/ready", "p"], &[]),
            r#"invalid --wait-http "127.0.0.1:8080/ready": use an http:// URL such as http://127.0.0.1:15021/healthz/ready"#
        );
        assert_eq!(
            error(&["--probe-interval", "0", "p"], &[]),
            r#"invalid --probe-interval "0": use a duration above zero such as 250ms or 1s"#
        );
        assert_eq!(error(&["p"], &[("PROA_DISABLE", "yes")]), r#"invalid PROA_DISABLE "yes": use true or false"#);
    }

    #[test]
    fn check_needs_no_program() {
        let parsed = parse(["--check".into(), "--container".into(), "job".into()], |_| None).unwrap();
        let Parsed::Check(o) = parsed else { panic!("expected Check, got {parsed:?}") };
        assert_eq!(o.container.as_deref(), Some("job"));
        assert!(o.program.is_empty());
    }

    fn endpoints(args: &[&str], in_cluster: bool) -> Result<Option<Vec<Endpoint>>, crate::options::NoApiError> {
        run(args, &[]).unwrap().no_api_endpoints(in_cluster)
    }

    #[test]
    fn explicit_waits_mean_no_api_even_in_a_cluster() {
        let want = vec![
            Endpoint::Http("http://a/ready".into()),
            Endpoint::Tcp("db:5432".into()),
            Endpoint::Http("http://127.0.0.1:15021/healthz/ready".into()),
        ];
        let args = ["--wait-http", "http://a/ready", "--wait-tcp", "db:5432", "--sidecar", "istio", "p"];
        assert_eq!(endpoints(&args, true), Ok(Some(want)));
    }

    #[test]
    fn presets_alone_mean_no_api_only_outside_a_cluster() {
        assert_eq!(endpoints(&["--sidecar", "istio", "p"], true), Ok(None));
        let want = vec![Endpoint::Http("http://127.0.0.1:15021/healthz/ready".into())];
        assert_eq!(endpoints(&["--sidecar", "istio", "p"], false), Ok(Some(want)));
    }

    #[test]
    fn outside_a_cluster_with_nothing_to_wait_for_names_both_flags() {
        assert_eq!(endpoints(&["p"], true), Ok(None));
        let err = endpoints(&["p"], false).unwrap_err().to_string();
        assert!(
            err.starts_with("KUBERNETES_SERVICE_HOST is not set")
                && err.contains("--wait-http URL or --wait-tcp HOST:PORT"),
            "{err}"
        );
    }
}
