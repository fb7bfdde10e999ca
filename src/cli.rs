//! The command line and the `PROA_*` environment (DESIGN.md "Flags") → `Parsed`.
//! Pure: the caller passes the arguments and an environment lookup, so tests never touch the real environment.
//! The first positional argument is the program; everything after it is the program's, never proa's.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

/// What the command line asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per run: boxing would buy nothing
pub enum Parsed {
    /// Wrap and run a program.
    Run(Options),
    /// `-h`, `--help`: print `HELP` and exit 0.
    Help,
    /// `-V`, `--version`: print the version and exit 0.
    Version,
}

/// Every setting of one run, after flags and environment are merged (a flag wins over its variable).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `--shutdown-http-get`: URLs to GET at shutdown.
    pub shutdown_get: Vec<String>,
    /// `--shutdown-http-post`: URLs to POST to at shutdown.
    pub shutdown_post: Vec<String>,
    /// `--kill`, `--kill-all`, `--kill-signal`, `--kill-grace`.
    #[cfg(feature = "kill")]
    pub kill: KillOptions,
    /// `--container`: proa's own container, when the argv match cannot find it.
    pub container: Option<String>,
    /// `--ignore`: containers not to wait for.
    pub ignore: Vec<String>,
    /// `--ready-timeout`: no limit when `None`.
    pub ready_timeout: Option<Duration>,
    /// `--shutdown-timeout`: the Pod's terminationGracePeriodSeconds when `None`, else 30 s.
    pub shutdown_timeout: Option<Duration>,
    /// `--watch-timeout`: how long one watch request lasts; a silent stream is dropped after this plus a margin.
    pub watch_timeout: Duration,
    /// `--always-shutdown`: shut sidecars down even when the kubelet will restart proa's container.
    pub always_shutdown: bool,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// The program to run and its arguments.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// proa's own arguments (without argv[0]), to find its container by `command` + `args`.
    pub own_args: Vec<String>,
}

/// The `kill` feature's settings.
#[cfg(feature = "kill")]
#[derive(Debug, Clone, PartialEq)]
pub struct KillOptions {
    /// `--kill NAME`: executable names to signal at shutdown.
    pub names: Vec<String>,
    /// `--kill-all`: signal every other visible process at shutdown.
    pub all: bool,
    /// `--kill-signal`: default SIGTERM.
    pub signal: i32,
    /// `--kill-grace`: how long the processes get before SIGKILL; default `DEFAULT_KILL_GRACE`.
    pub grace: Duration,
}

/// Default for `--kill-grace`: as long as Kubernetes' own default grace period would leave a container after
/// the usual shutdown, yet well within the default 30 s `--shutdown-timeout`.
#[cfg(feature = "kill")]
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// Default for `--watch-timeout`: short enough that a dead stream is noticed soon, long enough to cost nothing.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// `--log-format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `proa: LEVEL message`
    Text,
    /// One JSON object per line: time, level, message.
    Json,
}

/// A command line or environment proa cannot use. Exit code 125.
#[derive(Debug, PartialEq)]
pub enum UsageError {
    /// lexopt's own complaint: unknown option, missing value, non-UTF-8 value.
    Syntax(String),
    /// A flag's value is malformed. `expected` says what would be accepted.
    InvalidFlag { flag: &'static str, value: String, expected: &'static str },
    /// A `PROA_*` variable's value is malformed.
    InvalidEnv { var: String, value: String, expected: &'static str },
    /// No program after the options.
    MissingProgram,
    /// `--kill` or `--kill-all` in a build without the `kill` feature.
    #[cfg(not(feature = "kill"))]
    KillNotBuilt(&'static str),
    /// `--kill` and `--kill-all` together.
    #[cfg(feature = "kill")]
    KillBoth,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Syntax(msg) => write!(f, "{msg} (see proa --help)"),
            UsageError::InvalidFlag { flag, value, expected } => {
                write!(f, "invalid {flag} {value:?}: {expected}")
            }
            UsageError::InvalidEnv { var, value, expected } => {
                write!(f, "invalid {var} {value:?}: {expected}")
            }
            UsageError::MissingProgram => {
                write!(f, "no program to run: use proa [OPTIONS] -- PROGRAM [ARGS...]")
            }
            #[cfg(not(feature = "kill"))]
            UsageError::KillNotBuilt(flag) => write!(
                f,
                "{flag} needs a proa built with the kill feature (cargo build --features kill); use --shutdown-http-get or --shutdown-http-post"
            ),
            #[cfg(feature = "kill")]
            UsageError::KillBoth => {
                write!(
                    f,
                    "--kill and --kill-all together: --kill-all already signals every process --kill names; use one"
                )
            }
        }
    }
}

impl std::error::Error for UsageError {}

const DURATION_EXPECTED: &str = "use 90, 90s, 500ms, 5m or 1h";
const URL_EXPECTED: &str = "use an http:// URL such as http://127.0.0.1:15020/quitquitquit";
const BOOL_EXPECTED: &str = "use true or false";
const LOG_FORMAT_EXPECTED: &str = "use text or json";
#[cfg(feature = "kill")]
const SIGNAL_EXPECTED: &str = "use TERM, QUIT, INT, HUP, USR1, USR2 or KILL (SIGTERM… also) or a number from 1 to 64";

/// Usage text for `--help`.
pub const HELP: &str = "\
proa: run a Kubernetes Job's program once its sidecars are ready, then stop the sidecars

Usage: proa [OPTIONS] -- PROGRAM [ARGS...]

Options (each also read from PROA_<NAME>, e.g. PROA_READY_TIMEOUT; a flag wins):
  -g, --shutdown-http-get URL    GET this URL at shutdown (repeatable)
  -p, --shutdown-http-post URL   POST to this URL at shutdown (repeatable)
  -k, --kill NAME                signal processes whose executable is NAME at shutdown
                                 (repeatable; feature kill, needs shareProcessNamespace)
  -K, --kill-all                 signal every other process of the Pod at shutdown (feature kill)
      --kill-signal SIG          signal for --kill and --kill-all (default TERM; QUIT, INT, HUP,
                                 USR1, USR2, KILL or a number)
      --kill-grace DURATION      then SIGKILL what still runs after this (default 10s)
      --container NAME           proa's own container (default: found from its command line)
      --ignore NAME              do not wait for this container (repeatable)
      --ready-timeout DURATION   give up waiting for sidecars after this (default: no limit)
      --shutdown-timeout DURATION
                                 wait this long for sidecars to exit (default: the Pod's
                                 terminationGracePeriodSeconds, else 30s)
      --watch-timeout DURATION   length of one watch request (default 60s)
      --always-shutdown          shut sidecars down even when the kubelet will restart proa
      --log-format text|json     log format on stderr (default text; level from RUST_LOG)
  -h, --help                     print this help
  -V, --version                  print the version

DURATION: 90, 90s, 500ms, 5m, 1h
Exit: the program's code; 128+N for signal N; 124 sidecars not ready in time;
      125 proa failed before the program ran; 126 not executable; 127 not found
";

/// Parses proa's arguments (without argv[0]) and environment (`env("PROA_X")` → value).
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    use lexopt::prelude::*;

    let args: Vec<OsString> = args.into_iter().collect();
    let own_args = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut parser = lexopt::Parser::from_args(args);

    let mut shutdown_get = Vec::new();
    let mut shutdown_post = Vec::new();
    #[cfg(feature = "kill")]
    let (mut kill_names, mut kill_all, mut kill_signal, mut kill_grace) = (Vec::new(), false, None, None);
    let mut container = None;
    let mut ignore = Vec::new();
    let mut ready_timeout = None;
    let mut shutdown_timeout = None;
    let mut watch_timeout = None;
    let mut always_shutdown = false;
    let mut log_format = None;
    let mut program = None;
    let mut args = Vec::new();

    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Short('g') | Long("shutdown-http-get") => {
                shutdown_get.push(parse_url("--shutdown-http-get", value(&mut parser)?)?);
            }
            Short('p') | Long("shutdown-http-post") => {
                shutdown_post.push(parse_url("--shutdown-http-post", value(&mut parser)?)?);
            }
            #[cfg(feature = "kill")]
            Short('k') | Long("kill") => kill_names.push(value(&mut parser)?),
            #[cfg(feature = "kill")]
            Short('K') | Long("kill-all") => kill_all = true,
            #[cfg(feature = "kill")]
            Long("kill-signal") => {
                kill_signal = Some(flag_parsed("--kill-signal", value(&mut parser)?, parse_signal, SIGNAL_EXPECTED)?);
            }
            #[cfg(feature = "kill")]
            Long("kill-grace") => kill_grace = Some(flag_duration("--kill-grace", value(&mut parser)?)?),
            #[cfg(not(feature = "kill"))]
            Short('k') | Long("kill") => return Err(UsageError::KillNotBuilt("--kill")),
            #[cfg(not(feature = "kill"))]
            Short('K') | Long("kill-all") => return Err(UsageError::KillNotBuilt("--kill-all")),
            #[cfg(not(feature = "kill"))]
            Long("kill-signal") => return Err(UsageError::KillNotBuilt("--kill-signal")),
            #[cfg(not(feature = "kill"))]
            Long("kill-grace") => return Err(UsageError::KillNotBuilt("--kill-grace")),
            Long("container") => container = Some(value(&mut parser)?),
            Long("ignore") => ignore.push(value(&mut parser)?),
            Long("ready-timeout") => {
                ready_timeout = Some(flag_duration("--ready-timeout", value(&mut parser)?)?);
            }
            Long("shutdown-timeout") => {
                shutdown_timeout = Some(flag_duration("--shutdown-timeout", value(&mut parser)?)?);
            }
            Long("watch-timeout") => {
                watch_timeout = Some(flag_duration("--watch-timeout", value(&mut parser)?)?);
            }
            Long("always-shutdown") => always_shutdown = true,
            Long("log-format") => {
                log_format =
                    Some(flag_parsed("--log-format", value(&mut parser)?, parse_log_format, LOG_FORMAT_EXPECTED)?);
            }
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Value(first) => {
                // The wrapper rule: from the program's name on, nothing is proa's.
                program = Some(first);
                args = parser.raw_args().map_err(syntax)?.collect();
                break;
            }
            _ => return Err(syntax(arg.unexpected())),
        }
    }

    let env_value = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    #[cfg(not(feature = "kill"))]
    if env_value("PROA_KILL").is_some() {
        return Err(UsageError::KillNotBuilt("PROA_KILL"));
    }
    #[cfg(not(feature = "kill"))]
    if env_bool(&env_value, "PROA_KILL_ALL")? == Some(true) {
        return Err(UsageError::KillNotBuilt("PROA_KILL_ALL"));
    }
    #[cfg(feature = "kill")]
    let kill = {
        if kill_names.is_empty() {
            kill_names = env_list(&env_value, "PROA_KILL");
        }
        if !kill_all {
            kill_all = env_bool(&env_value, "PROA_KILL_ALL")?.unwrap_or(false);
        }
        if kill_all && !kill_names.is_empty() {
            return Err(UsageError::KillBoth);
        }
        if kill_signal.is_none() {
            kill_signal = env_parsed(&env_value, "PROA_KILL_SIGNAL", parse_signal, SIGNAL_EXPECTED)?;
        }
        if kill_grace.is_none() {
            kill_grace = env_duration(&env_value, "PROA_KILL_GRACE")?;
        }
        KillOptions {
            names: kill_names,
            all: kill_all,
            signal: kill_signal.unwrap_or(libc::SIGTERM),
            grace: kill_grace.unwrap_or(DEFAULT_KILL_GRACE),
        }
    };
    if shutdown_get.is_empty() {
        shutdown_get = env_urls(&env_value, "PROA_SHUTDOWN_HTTP_GET")?;
    }
    if shutdown_post.is_empty() {
        shutdown_post = env_urls(&env_value, "PROA_SHUTDOWN_HTTP_POST")?;
    }
    if container.is_none() {
        container = env_value("PROA_CONTAINER").map(|v| v.trim().to_string());
    }
    if ignore.is_empty() {
        ignore = env_list(&env_value, "PROA_IGNORE");
    }
    if ready_timeout.is_none() {
        ready_timeout = env_duration(&env_value, "PROA_READY_TIMEOUT")?;
    }
    if shutdown_timeout.is_none() {
        shutdown_timeout = env_duration(&env_value, "PROA_SHUTDOWN_TIMEOUT")?;
    }
    if watch_timeout.is_none() {
        watch_timeout = env_duration(&env_value, "PROA_WATCH_TIMEOUT")?;
    }
    if !always_shutdown {
        always_shutdown = env_bool(&env_value, "PROA_ALWAYS_SHUTDOWN")?.unwrap_or(false);
    }
    if log_format.is_none() {
        log_format = env_parsed(&env_value, "PROA_LOG_FORMAT", parse_log_format, LOG_FORMAT_EXPECTED)?;
    }

    Ok(Parsed::Run(Options {
        shutdown_get,
        shutdown_post,
        #[cfg(feature = "kill")]
        kill,
        container,
        ignore,
        ready_timeout,
        shutdown_timeout,
        watch_timeout: watch_timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT),
        always_shutdown,
        log_format: log_format.unwrap_or(LogFormat::Text),
        program: program.ok_or(UsageError::MissingProgram)?,
        args,
        own_args,
    }))
}

/// Parses `90` (seconds), `90s`, `500ms`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    let millis_per_unit = match unit {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// Parses `--kill-signal`: `TERM`, `SIGTERM`, `term`, … for the signals that ask a process to stop (and
/// `KILL`), or any signal number from 1 to 64.
#[cfg(feature = "kill")]
pub fn parse_signal(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let signal = match upper.strip_prefix("SIG").unwrap_or(&upper) {
        "TERM" => libc::SIGTERM,
        "QUIT" => libc::SIGQUIT,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "KILL" => libc::SIGKILL,
        number if number.bytes().all(|b| b.is_ascii_digit()) => number.parse().ok()?,
        _ => return None,
    };
    (1..=64).contains(&signal).then_some(signal)
}

fn syntax(err: lexopt::Error) -> UsageError {
    UsageError::Syntax(err.to_string())
}

fn value(parser: &mut lexopt::Parser) -> Result<String, UsageError> {
    let value = parser.value().map_err(syntax)?;
    value.into_string().map_err(|raw| UsageError::Syntax(format!("argument is not valid UTF-8: {raw:?}")))
}

fn parse_log_format(text: &str) -> Option<LogFormat> {
    match text {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// Shutdown endpoints are plain HTTP: sidecars serve them on localhost, and proa carries no public CA roots.
fn is_http_url(text: &str) -> bool {
    text.strip_prefix("http://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

fn parse_url(flag: &'static str, text: String) -> Result<String, UsageError> {
    if is_http_url(&text) {
        Ok(text)
    } else {
        Err(UsageError::InvalidFlag { flag, value: text, expected: URL_EXPECTED })
    }
}

/// A flag's value through `parse`; the error keeps the text and says what `expected` forms are.
fn flag_parsed<T>(
    flag: &'static str,
    text: String,
    parse: impl Fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<T, UsageError> {
    parse(&text).ok_or(UsageError::InvalidFlag { flag, value: text, expected })
}

/// A variable's value through `parse` (surrounding whitespace ignored), if it is set.
fn env_parsed<T>(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<Option<T>, UsageError> {
    env(var)
        .map(|text| parse(text.trim()).ok_or(UsageError::InvalidEnv { var: var.into(), value: text, expected }))
        .transpose()
}

fn flag_duration(flag: &'static str, text: String) -> Result<Duration, UsageError> {
    flag_parsed(flag, text, parse_duration, DURATION_EXPECTED)
}

fn env_list(env: &impl Fn(&str) -> Option<String>, var: &str) -> Vec<String> {
    env(var).map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

fn env_urls(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Vec<String>, UsageError> {
    let urls = env_list(env, var);
    match urls.iter().find(|url| !is_http_url(url)) {
        Some(bad) => Err(UsageError::InvalidEnv { var: var.into(), value: bad.clone(), expected: URL_EXPECTED }),
        None => Ok(urls),
    }
}

fn env_duration(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Option<Duration>, UsageError> {
    env_parsed(env, var, parse_duration, DURATION_EXPECTED)
}

fn env_bool(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Option<bool>, UsageError> {
    env(var)
        .map(|text| match text.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(UsageError::InvalidEnv { var: var.into(), value: text, expected: BOOL_EXPECTED }),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn proa_0_1_command_lines_still_work() {
        let o =
            run(&["--shutdown-http-get=http://a:1/q", "-g", "http://b/q", "-p", "http://c/x", "--", "prog", "-x"], &[])
                .unwrap();
        assert_eq!(o.shutdown_get, ["http://a:1/q", "http://b/q"]);
        assert_eq!(o.shutdown_post, ["http://c/x"]);
        assert_eq!(o.program, "prog");
        assert_eq!(o.args, ["-x"]);
    }

    #[test]
    fn program_flags_are_never_proas_even_without_double_dash() {
        let o = run(&["-g", "http://a/q", "prog", "--help", "-g", "--", "x"], &[]).unwrap();
        assert_eq!(o.program, "prog");
        assert_eq!(o.args, ["--help", "-g", "--", "x"]);
        assert_eq!(o.shutdown_get, ["http://a/q"]);
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
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "5x", "-1", " 5", "1.5s", "99999999999999999999", "18446744073709551615h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
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
        assert_eq!(o.shutdown_get, ["http://flag/q"]);
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
            ("PROA_SHUTDOWN_TIMEOUT", ""),
        ];
        let o = run(&["p"], &env).unwrap();
        assert_eq!(o.shutdown_post, ["http://a/x", "http://b/y"]);
        assert_eq!(o.container.as_deref(), Some("job"));
        assert!(o.always_shutdown);
        assert_eq!(o.log_format, LogFormat::Json);
        assert_eq!(o.watch_timeout, Duration::from_secs(5));
        assert_eq!(o.shutdown_timeout, None);
    }

    #[test]
    fn defaults() {
        let o = run(&["p"], &[]).unwrap();
        assert_eq!(o.ready_timeout, None);
        assert_eq!(o.shutdown_timeout, None);
        assert_eq!(o.watch_timeout, DEFAULT_WATCH_TIMEOUT);
        assert!(!o.always_shutdown);
        assert_eq!(o.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_inputs_say_what_to_fix() {
        assert_eq!(error(&[], &[]), "no program to run: use proa [OPTIONS] -- PROGRAM [ARGS...]");
        assert_eq!(error(&["--",], &[]), "no program to run: use proa [OPTIONS] -- PROGRAM [ARGS...]");
        assert_eq!(error(&["--frobnicate", "p"], &[]), "invalid option '--frobnicate' (see proa --help)");
        assert_eq!(error(&["--ready-timeout"], &[]), "missing argument for option '--ready-timeout' (see proa --help)");
        assert_eq!(
            error(&["-g", "https://a/q", "p"], &[]),
            r#"invalid --shutdown-http-get "https://a/q": use an http:// URL such as http://127.0.0.1:15020/quitquitquit"#
        );
        assert_eq!(
            error(&["p"], &[("PROA_SHUTDOWN_HTTP_POST", "http://ok/ localhost:1/q")]),
            r#"invalid PROA_SHUTDOWN_HTTP_POST "localhost:1/q": use an http:// URL such as http://127.0.0.1:15020/quitquitquit"#
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
        assert!(error(&["--kill-signal", "QUIT", "p"], &[]).starts_with("--kill-signal needs a proa built"));
        assert!(error(&["p"], &[("PROA_KILL", "envoy")]).starts_with("PROA_KILL needs a proa built"));
        assert!(error(&["p"], &[("PROA_KILL_ALL", "true")]).starts_with("PROA_KILL_ALL needs a proa built"));
        assert!(run(&["p"], &[("PROA_KILL_ALL", "false")]).is_ok());
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
            r#"invalid --kill-signal "STOP": use TERM, QUIT, INT, HUP, USR1, USR2 or KILL (SIGTERM… also) or a number from 1 to 64"#
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

    #[cfg(feature = "kill")]
    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("int"), Some(libc::SIGINT));
        assert_eq!(parse_signal("HUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("USR2"), Some(libc::SIGUSR2));
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("64"), Some(64));
        for bad in ["", "0", "65", "-1", "SIG", "STOP", "TERM ", "99999999999"] {
            assert_eq!(parse_signal(bad), None, "{bad:?}");
        }
    }
}
