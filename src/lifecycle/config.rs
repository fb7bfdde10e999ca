//! The lifecycle's settings, fixed for the whole run: what `step` needs from the options (`Config`), and where
//! readiness comes from (`Mode`). Built once by `config` (or by the simulation from its scenario). Pure.

use std::time::Duration;

use crate::exit::End;
use crate::options::{OnReadyTimeout, Options};
use crate::probe::Endpoint;
use crate::shutdown::Action;

/// The settings `step` needs, fixed for the whole run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--container`.
    pub container: Option<String>,
    /// proa's own arguments, to find its container.
    pub own_args: Vec<String>,
    /// How many of `own_args` are the program and its arguments (they end `own_args`).
    pub program_words: usize,
    /// `--ignore`.
    pub ignore: Vec<String>,
    pub ready_timeout: Option<Duration>,
    /// `--on-ready-timeout run`: when the ready timeout passes, run the program anyway.
    pub run_on_ready_timeout: bool,
    pub shutdown_timeout: Option<Duration>,
    pub always_shutdown: bool,
    /// `--direct-probe`: probe the waited containers' readinessProbe endpoints too (`direct.rs`).
    pub direct_probe: bool,
    /// The shutdown actions, in the order `StartShutdown` numbers them.
    pub actions: Vec<ActionTarget>,
    /// `--peer`: other main containers, not waited for; the sidecars are stopped only after they have terminated.
    pub peers: Vec<String>,
    /// Recognised sidecars get their preset's action (`--auto-shutdown`, and no `--sidecar` given).
    pub recognise: bool,
    /// Where readiness comes from.
    pub mode: Mode,
}

/// A shutdown action as the lifecycle sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionTarget {
    /// What it sends, for the log (`POST http://127.0.0.1:15020/quitquitquit`).
    pub label: String,
    /// The container it stops, where it is named.
    pub container: Option<String>,
    /// A `--kill` or `--kill-all` (feature `kill`), not an HTTP request: never sent after a failed start, which
    /// may be the refusal of that very action.
    pub kill: bool,
}

/// How proa learns that the sidecars are ready, fixed for the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// From the Pod's status, through the Kubernetes API (DESIGN.md "Wait").
    Pod,
    /// No-API mode: by probing these endpoints. With no Pod, the restart policy is unknown: shutdown always runs.
    Endpoints(Vec<Endpoint>),
    /// `--serve-quit`: proa runs a sidecar, at once. A quit request (`Event::Quit`) stops it with `signal`, then
    /// SIGKILL after `grace`; proa then exits 0, whatever the sidecar's code.
    Sidecar { signal: i32, grace: Duration },
    /// Nowhere: the start failed for this reason (DESIGN.md "Start": a bad configuration found after parsing, a
    /// worker thread that cannot be spawned, no API client). proa logs it, writes it to the termination log, sends
    /// the HTTP shutdown actions anyway (nothing is known of the restart policy, and a Job must not hang on sidecars
    /// nobody stops) and exits 125.
    Failed(StartError),
}

/// Why proa could not start (DESIGN.md "Start"): each variant's text is the one-line error proa logs and writes to
/// the termination log, and every one ends in exit 125 (`exit::End::ProaFailed`). The causes' own errors are kept
/// as their text, so that the start can be replayed and compared in tests.
#[derive(Debug, Clone, PartialEq)]
pub enum StartError {
    /// The signal thread cannot start (`Channel::open`).
    Signals(String),
    /// A kill action is refused before anything runs (feature `kill`: `kill::check`).
    #[cfg_attr(not(any(feature = "kill", test)), allow(dead_code))] // only the kill feature refuses
    Kill(String),
    /// The no-API endpoints cannot be used (`Options::no_api_endpoints`).
    Endpoints(String),
    /// `--serve-quit`'s address cannot be bound (`quit::bind`): the text names the address and the fix.
    ServeQuit(String),
    /// The quit endpoint's thread cannot start (`quit::spawn`).
    QuitThread(String),
    /// The in-cluster configuration is missing or malformed (`cluster::discover`).
    Cluster(String),
    /// The API client cannot be built (`Api::new`).
    Api(String),
    /// The first snapshot: no container of the Pod is proa's own (`readiness::find_own_container`).
    OwnContainer(String),
    /// The first snapshot: a `--peer` that cannot be a peer (`Facts::of`).
    Peer(String),
}

impl StartError {
    /// Whether proa was to work through the API and could not even ask for its Pod (no token, no usable
    /// configuration or client): then nothing tells it which sidecars run.
    pub fn leaves_the_pod_unread(&self) -> bool {
        matches!(self, StartError::Cluster(_) | StartError::Api(_))
    }

    /// How the run ends: 125 for each.
    pub fn end(&self) -> End {
        match self {
            StartError::Signals(_)
            | StartError::Kill(_)
            | StartError::Endpoints(_)
            | StartError::ServeQuit(_)
            | StartError::QuitThread(_)
            | StartError::Cluster(_)
            | StartError::Api(_)
            | StartError::OwnContainer(_)
            | StartError::Peer(_) => End::ProaFailed,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Signals(err) => write!(f, "cannot handle signals: {err}"),
            StartError::QuitThread(err) => write!(f, "cannot serve --serve-quit: {err}"),
            StartError::Kill(why)
            | StartError::Endpoints(why)
            | StartError::ServeQuit(why)
            | StartError::Cluster(why)
            | StartError::Api(why)
            | StartError::OwnContainer(why)
            | StartError::Peer(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StartError {}

/// The lifecycle's settings from the options, with `actions` shutdown actions.
pub fn config(options: &Options, mode: Mode) -> Config {
    Config {
        container: options.container.clone(),
        own_args: options.own_args.clone(),
        program_words: 1 + options.args.len(),
        ignore: options.ignore.clone(),
        ready_timeout: options.ready_timeout,
        run_on_ready_timeout: options.on_ready_timeout == OnReadyTimeout::Run,
        shutdown_timeout: options.shutdown_timeout,
        always_shutdown: options.always_shutdown,
        direct_probe: options.direct_probe,
        actions: options
            .shutdown_actions(Duration::ZERO)
            .iter()
            .map(|a| ActionTarget {
                label: a.to_string(),
                container: a.container().map(str::to_string),
                kill: !matches!(a, Action::Get(_) | Action::Post(_)),
            })
            .collect(),
        peers: options.peers.clone(),
        recognise: options.auto_shutdown && options.sidecars.is_empty(),
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_error_says_why_and_ends_in_125() {
        let table = [
            (StartError::Signals("EAGAIN".into()), "cannot handle signals: EAGAIN"),
            (StartError::QuitThread("EAGAIN".into()), "cannot serve --serve-quit: EAGAIN"),
            (
                StartError::ServeQuit("--serve-quit 192.0.2.1:9: use a loopback address".into()),
                "--serve-quit 192.0.2.1:9: use a loopback address",
            ),
            (StartError::Cluster("POD_NAMESPACE is empty".into()), "POD_NAMESPACE is empty"),
            (StartError::Peer("--peer x: the pod has no container x".into()), "--peer x: the pod has no container x"),
        ];
        for (err, text) in table {
            assert_eq!(err.to_string(), text);
            assert_eq!(crate::exit::code(err.end()), 125, "{err:?}");
        }
    }
}
