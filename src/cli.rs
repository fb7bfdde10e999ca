//! The command line and the `PROA_*` environment (DESIGN.md "Flags") → `Parsed`.
//! Pure: the caller passes the arguments and an environment lookup, so tests never touch the real environment.
//! The first positional argument is the program; everything after it is the program's, never proa's.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::DEFAULT_WATCH_TIMEOUT;
#[cfg(feature = "kill")]
use crate::child::DEFAULT_KILL_GRACE;
use crate::cluster::DEFAULT_TOKEN_REFRESH;
use crate::logging::LogFormat;
use crate::preset::{self, Preset};
use crate::probe::{self, Endpoint};
use crate::termination;
use crate::url::redact;

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
    /// `--check`: report line by line whether proa could do its job in this Pod, and exit 0 or 125.
    /// The program is optional here (`program` is then empty).
    Check(Options),
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
    /// `--watch-timeout`: how long one watch request lasts; a stream still open after twice that is dropped.
    pub watch_timeout: Duration,
    /// `--token-refresh`: a cached token older than this is read from its file again before the next request.
    pub token_refresh: Duration,
    /// `--always-shutdown`: shut sidecars down even when the kubelet will restart proa's container.
    pub always_shutdown: bool,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--wait-http`: no-API mode; URLs that must answer 2xx before the program starts.
    pub wait_http: Vec<String>,
    /// `--wait-tcp`: no-API mode; `HOST:PORT` addresses that must accept a connection before the program starts.
    pub wait_tcp: Vec<String>,
    /// `--probe-interval`: the pause between rounds of no-API checks (default `probe::DEFAULT_INTERVAL`).
    pub probe_interval: Duration,
    /// `--sidecar`: known sidecars whose shutdown action (and, in no-API mode, readiness check) proa fills in.
    pub sidecars: Vec<Preset>,
    /// `--termination-log`: where the reason goes when proa itself fails (124, 125).
    pub termination_log: PathBuf,
    /// `PROA_DISABLE=true`: replace proa with the program (exec): no wait, no shutdown, no API.
    pub disabled: bool,
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
    /// Outside a cluster with nothing to wait for without the API (no `--wait-http`, `--wait-tcp` or `--sidecar`).
    NotInCluster,
    /// `--kill` and `--kill-all` together.
    #[cfg(feature = "kill")]
    KillBoth,
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
            #[cfg(not(feature = "kill"))]
            UsageError::KillNotBuilt(flag) => write!(
                f,
                "{flag} needs a proa built with the kill feature (cargo build --features kill); use --shutdown-http-get or --shutdown-http-post"
            ),
            UsageError::NotInCluster => write!(
                f,
                "KUBERNETES_SERVICE_HOST is not set, so proa is not inside a Pod: set --wait-http URL or --wait-tcp HOST:PORT (PROA_WAIT_HTTP, PROA_WAIT_TCP) to wait for sidecars without the Kubernetes API, or run proa inside a Pod"
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
const READY_URL_EXPECTED: &str = "use an http:// URL such as http://127.0.0.1:15021/healthz/ready";
const ADDRESS_EXPECTED: &str = "use HOST:PORT such as 127.0.0.1:5432 or [::1]:5432";
const INTERVAL_EXPECTED: &str = "use a duration above zero such as 250ms or 1s";
const WATCH_TIMEOUT_EXPECTED: &str = "use whole seconds, at least 1s, such as 60s or 5m";

/// What `--version` prints: `proa 0.2.0 (commit abc1234, x86_64-unknown-linux-musl, features: kill)`. build.rs
/// supplies the commit (`unknown` outside a git checkout), the target triple and the enabled features (`none`).
pub const VERSION: &str = concat!(
    "proa ",
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PROA_GIT_COMMIT"),
    ", ",
    env!("PROA_TARGET"),
    ", features: ",
    env!("PROA_FEATURES"),
    ")"
);
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
      --token-refresh DURATION   re-read the token file when older than this (default 60s)
      --always-shutdown          shut sidecars down even when the kubelet will restart proa
      --log-format text|json     log format on stderr (default text; level from RUST_LOG)
      --sidecar NAME             a known sidecar's shutdown action (and readiness check without
                                 the API): istio, linkerd, cloudsql, envoy:PORT (repeatable)
      --wait-http URL            no Kubernetes API: wait until URL answers 2xx (repeatable)
      --wait-tcp HOST:PORT       no Kubernetes API: wait until HOST:PORT accepts a connection
                                 (repeatable)
      --probe-interval DURATION  pause between checks of --wait-http/--wait-tcp (default 250ms)
      --termination-log PATH     where proa writes why it failed (default /dev/termination-log)
      --check                    inside the Pod: report whether proa could do its job, and exit
  -h, --help                     print this help
  -V, --version                  print the version

DURATION: 90, 90s, 500ms, 5m, 1h
Exit: the program's code; 128+N for signal N; 124 sidecars not ready in time;
      125 proa failed before the program ran; 126 not executable; 127 not found
PROA_DISABLE=true runs the program in proa's place: no wait, no shutdown.
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
    let mut token_refresh = None;
    let mut always_shutdown = false;
    let mut log_format = None;
    let mut wait_http = Vec::new();
    let mut wait_tcp = Vec::new();
    let mut probe_interval = None;
    let mut sidecars = Vec::new();
    let mut termination_log = None;
    let mut check = false;
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
                kill_signal = Some(flag_item("--kill-signal", value(&mut parser)?, parse_signal, SIGNAL_EXPECTED)?);
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
                let text = value(&mut parser)?;
                watch_timeout = Some(flag_item("--watch-timeout", text, parse_watch_timeout, WATCH_TIMEOUT_EXPECTED)?);
            }
            Long("token-refresh") => {
                token_refresh = Some(flag_duration("--token-refresh", value(&mut parser)?)?);
            }
            Long("always-shutdown") => always_shutdown = true,
            Long("log-format") => {
                log_format =
                    Some(flag_item("--log-format", value(&mut parser)?, parse_log_format, LOG_FORMAT_EXPECTED)?);
            }
            Long("wait-http") => {
                wait_http.push(flag_item("--wait-http", value(&mut parser)?, parse_ready_url, READY_URL_EXPECTED)?);
            }
            Long("wait-tcp") => {
                wait_tcp.push(flag_item("--wait-tcp", value(&mut parser)?, parse_address, ADDRESS_EXPECTED)?);
            }
            Long("probe-interval") => {
                let text = value(&mut parser)?;
                probe_interval = Some(flag_item("--probe-interval", text, parse_interval, INTERVAL_EXPECTED)?);
            }
            Long("sidecar") => {
                sidecars.push(flag_item("--sidecar", value(&mut parser)?, Preset::parse, preset::EXPECTED)?);
            }
            Long("termination-log") => termination_log = Some(PathBuf::from(value(&mut parser)?)),
            Long("check") => check = true,
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
            kill_signal = env_item(&env_value, "PROA_KILL_SIGNAL", parse_signal, SIGNAL_EXPECTED)?;
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
        watch_timeout = env_item(&env_value, "PROA_WATCH_TIMEOUT", parse_watch_timeout, WATCH_TIMEOUT_EXPECTED)?;
    }
    if token_refresh.is_none() {
        token_refresh = env_duration(&env_value, "PROA_TOKEN_REFRESH")?;
    }
    if !always_shutdown {
        always_shutdown = env_bool(&env_value, "PROA_ALWAYS_SHUTDOWN")?.unwrap_or(false);
    }
    if log_format.is_none() {
        log_format = env_item(&env_value, "PROA_LOG_FORMAT", parse_log_format, LOG_FORMAT_EXPECTED)?;
    }

    if wait_http.is_empty() {
        wait_http = env_items(&env_value, "PROA_WAIT_HTTP", parse_ready_url, READY_URL_EXPECTED)?;
    }
    if wait_tcp.is_empty() {
        wait_tcp = env_items(&env_value, "PROA_WAIT_TCP", parse_address, ADDRESS_EXPECTED)?;
    }
    if probe_interval.is_none() {
        probe_interval = env_item(&env_value, "PROA_PROBE_INTERVAL", parse_interval, INTERVAL_EXPECTED)?;
    }
    if sidecars.is_empty() {
        sidecars = env_items(&env_value, "PROA_SIDECAR", Preset::parse, preset::EXPECTED)?;
    }
    let termination_log = termination_log.unwrap_or_else(|| termination_log_from_env(&env));
    let disabled = env_bool(&env_value, "PROA_DISABLE")?.unwrap_or(false);
    let program = match (program, check) {
        (Some(program), _) => program,
        (None, true) => OsString::new(),
        (None, false) => return Err(UsageError::MissingProgram),
    };

    let options = Options {
        shutdown_get,
        shutdown_post,
        #[cfg(feature = "kill")]
        kill,
        container,
        ignore,
        ready_timeout,
        shutdown_timeout,
        watch_timeout: watch_timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT),
        token_refresh: token_refresh.unwrap_or(DEFAULT_TOKEN_REFRESH),
        always_shutdown,
        log_format: log_format.unwrap_or(LogFormat::Text),
        wait_http,
        wait_tcp,
        probe_interval: probe_interval.unwrap_or(probe::DEFAULT_INTERVAL),
        sidecars,
        termination_log,
        disabled,
        program,
        args,
        own_args,
    };
    Ok(match check {
        true => Parsed::Check(options),
        false => Parsed::Run(options),
    })
}

/// `PROA_TERMINATION_LOG`, else `/dev/termination-log`. On a usage error this is where the reason goes, since
/// the command line that failed to parse cannot be trusted for `--termination-log`.
pub fn termination_log_from_env(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let path = env("PROA_TERMINATION_LOG").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    PathBuf::from(path.unwrap_or_else(|| termination::DEFAULT_PATH.into()))
}

impl Options {
    /// The endpoints to probe in no-API mode, or `None` to learn readiness from the Pod through the API.
    /// No-API mode: `--wait-http` or `--wait-tcp` given (plus the presets' checks), or, outside a cluster
    /// (`in_cluster`: KUBERNETES_SERVICE_HOST is set), `--sidecar` presets alone. Outside a cluster with none of
    /// these, there is nothing to wait with: `NotInCluster`.
    pub fn no_api_endpoints(&self, in_cluster: bool) -> Result<Option<Vec<Endpoint>>, UsageError> {
        let explicit = !self.wait_http.is_empty() || !self.wait_tcp.is_empty();
        if !explicit && in_cluster {
            return Ok(None);
        }
        if !explicit && self.sidecars.is_empty() {
            return Err(UsageError::NotInCluster);
        }
        let http = self.wait_http.iter().cloned().map(Endpoint::Http);
        let tcp = self.wait_tcp.iter().cloned().map(Endpoint::Tcp);
        Ok(Some(http.chain(tcp).chain(self.sidecars.iter().map(Preset::ready)).collect()))
    }
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

fn parse_ready_url(text: &str) -> Option<String> {
    is_http_url(text).then(|| text.to_string())
}

/// `HOST:PORT` with a port above zero; an IPv6 host must be bracketed (`[::1]:5432`).
fn parse_address(text: &str) -> Option<String> {
    let (host, port) = text.rsplit_once(':')?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host_ok = !host.is_empty() && (bracketed || !host.contains(':'));
    (host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)).then(|| text.to_string())
}

/// A watch's `timeoutSeconds`: whole seconds and at least one (zero would leave the stream no time at all).
fn parse_watch_timeout(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| d.as_secs() >= 1 && d.subsec_nanos() == 0)
}

/// A duration above zero: a zero interval would probe in a busy loop.
fn parse_interval(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| !d.is_zero())
}

/// A flag's value through `parse`, or a usage error that says what `expected`.
fn flag_item<T>(
    flag: &'static str,
    text: String,
    parse: impl Fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<T, UsageError> {
    parse(&text).ok_or(UsageError::InvalidFlag { flag, value: text, expected })
}

/// A variable's value through `parse`, or a usage error that says what `expected`.
fn env_item<T>(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<Option<T>, UsageError> {
    env(var)
        .map(|text| parse(text.trim()).ok_or(UsageError::InvalidEnv { var: var.into(), value: text, expected }))
        .transpose()
}

/// A variable's whitespace-separated values through `parse`; the first bad one is the error.
fn env_items<T>(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<Vec<T>, UsageError> {
    env_list(env, var)
        .into_iter()
        .map(|item| parse(&item).ok_or(UsageError::InvalidEnv { var: var.into(), value: item, expected }))
        .collect()
}

fn flag_duration(flag: &'static str, text: String) -> Result<Duration, UsageError> {
    flag_item(flag, text, parse_duration, DURATION_EXPECTED)
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
    env_item(env, var, parse_duration, DURATION_EXPECTED)
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
            ("PROA_TOKEN_REFRESH", "10s"),
            ("PROA_SHUTDOWN_TIMEOUT", ""),
        ];
        let o = run(&["p"], &env).unwrap();
        assert_eq!(o.shutdown_post, ["http://a/x", "http://b/y"]);
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
        assert_eq!(o.sidecars, [Preset::Istio, Preset::Envoy { admin_port: 9901 }]);
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
            r#"invalid --sidecar "consul": use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port)"#
        );
        assert_eq!(
            error(&["p"], &[("PROA_SIDECAR", "istio envoy")]),
            r#"invalid PROA_SIDECAR "envoy": use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port)"#
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

    fn endpoints(args: &[&str], in_cluster: bool) -> Result<Option<Vec<Endpoint>>, UsageError> {
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
