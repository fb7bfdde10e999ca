//! Every setting of one run (`Options`), and the one table that declares each option (`table.rs`): its flag,
//! its `PROA_*` variable, its value kind, default and help line. The command line (`cli`), `--help` and the
//! README test are driven by that table. Pure: no I/O, no environment; the defaults come from the modules that own
//! the behaviour.

pub mod cli;
pub mod help;
pub mod table;
pub mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::LogFormat;
use crate::preset::Preset;
use crate::probe::Endpoint;
use crate::shutdown::{Action, Target};
use crate::{api, child, cluster, probe, termination};

/// Every setting of one run, after flags and environment are merged (a flag wins over its variable).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `--shutdown-http-get`: URLs to GET at shutdown.
    pub shutdown_get: Vec<Target>,
    /// `--shutdown-http-post`: URLs to POST to at shutdown.
    pub shutdown_post: Vec<Target>,
    /// `--kill`, `--kill-all`, `--kill-signal`, `--kill-grace`.
    pub kill: KillOptions,
    /// `--container`: proa's own container, when the argv match cannot find it.
    pub container: Option<String>,
    /// `--ignore`: containers not to wait for.
    pub ignore: Vec<String>,
    /// `--ready-timeout`: no limit when `None`.
    pub ready_timeout: Option<Duration>,
    /// `--on-ready-timeout`: what the ready timeout does.
    pub on_ready_timeout: OnReadyTimeout,
    /// `--peer`: other main containers of the Pod.
    pub peers: Vec<String>,
    /// `--shutdown-timeout`: the Pod's terminationGracePeriodSeconds when `None`, else 30 s.
    pub shutdown_timeout: Option<Duration>,
    /// `--watch-timeout`: the base of one watch request's length (1 to 2 times this, jittered); a stream still open
    /// after twice its length is dropped.
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
    /// `--direct-probe`: probe the waited containers' readinessProbe endpoints too.
    pub direct_probe: bool,
    /// `--probe-interval`: the pause between probe rounds (direct probes, no-API checks).
    pub probe_interval: Duration,
    /// `--auto-shutdown`: give recognised sidecars their preset's action when no action names them
    /// (`recognition.rs`). Defaults to true.
    pub auto_shutdown: bool,
    /// `--sidecar`: known sidecars whose shutdown action (and, in no-API mode, readiness check) proa fills in.
    pub sidecars: Vec<Preset>,
    /// `--termination-log`: where the reason goes when proa itself fails (124, 125).
    pub termination_log: PathBuf,
    /// `PROA_DISABLE=true`: replace proa with the program (exec): no wait, no shutdown, no API.
    pub disabled: bool,
    /// `--serve-quit`: proa is the sidecar's entrypoint, and stops it on `POST /quitquitquit` to this address.
    pub serve_quit: Option<SocketAddr>,
    /// `--install`: copy proa's executable into this directory, and exit.
    pub install: Option<PathBuf>,
    /// The program to run and its arguments.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// proa's own arguments (without argv[0]), to find its container by `command` + `args`.
    pub own_args: Vec<String>,
}

/// `--on-ready-timeout`: what happens when `--ready-timeout` passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReadyTimeout {
    /// Exit 124; the program never runs.
    Fail,
    /// Log which containers were not ready, and run the program anyway (fleets where a sidecar may be absent).
    Run,
}

/// The settings of kill actions (`--kill` and `--kill-all` need the `kill` feature), and of `--serve-quit`'s stop.
#[derive(Debug, Clone, PartialEq)]
pub struct KillOptions {
    /// `--kill NAME`: the names of the processes to signal at shutdown (`procs::Process::known_as`).
    #[cfg_attr(not(feature = "kill"), allow(dead_code))] // read only by the kill feature's actions
    pub names: Vec<String>,
    /// `--kill-all`: signal every other visible process at shutdown.
    pub all: bool,
    /// `--kill-signal`.
    pub signal: i32,
    /// `--kill-grace`: how long the processes get before SIGKILL.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            shutdown_get: Vec::new(),
            shutdown_post: Vec::new(),
            kill: KillOptions {
                names: Vec::new(),
                all: false,
                signal: libc::SIGTERM,
                grace: child::DEFAULT_KILL_GRACE,
            },
            container: None,
            ignore: Vec::new(),
            ready_timeout: None,
            on_ready_timeout: OnReadyTimeout::Fail,
            peers: Vec::new(),
            shutdown_timeout: None,
            watch_timeout: api::DEFAULT_WATCH_TIMEOUT,
            token_refresh: cluster::DEFAULT_TOKEN_REFRESH,
            always_shutdown: false,
            log_format: LogFormat::Text,
            wait_http: Vec::new(),
            wait_tcp: Vec::new(),
            direct_probe: true,
            probe_interval: probe::DEFAULT_INTERVAL,
            auto_shutdown: true,
            sidecars: Vec::new(),
            termination_log: PathBuf::from(termination::DEFAULT_PATH),
            disabled: false,
            serve_quit: None,
            install: None,
            program: OsString::new(),
            args: Vec::new(),
            own_args: Vec::new(),
        }
    }
}

/// Why the options cannot pick where readiness comes from: a usage error (125).
#[derive(Debug, PartialEq, Eq)]
pub enum NoApiError {
    /// Outside a cluster with nothing to wait for without the API (no `--wait-http`, `--wait-tcp` or `--sidecar`).
    NotInCluster,
    /// `--peer` without the API: nothing could tell when the peer ends.
    PeersNeedTheApi,
}

impl std::fmt::Display for NoApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoApiError::NotInCluster => write!(
                f,
                "KUBERNETES_SERVICE_HOST is not set, so proa is not inside a Pod: set --wait-http URL or --wait-tcp HOST:PORT (PROA_WAIT_HTTP, PROA_WAIT_TCP) to wait for sidecars without the Kubernetes API, or run proa inside a Pod"
            ),
            NoApiError::PeersNeedTheApi => write!(
                f,
                "--peer needs the Kubernetes API (it watches the Pod for the peer's end): drop --wait-http and --wait-tcp, or --peer"
            ),
        }
    }
}

impl std::error::Error for NoApiError {}

impl Options {
    /// The endpoints to probe in no-API mode, or `None` to learn readiness from the Pod through the API.
    /// No-API mode: `--wait-http` or `--wait-tcp` given (plus the presets' checks), or, outside a cluster
    /// (`in_cluster`: KUBERNETES_SERVICE_HOST is set), `--sidecar` presets alone.
    pub fn no_api_endpoints(&self, in_cluster: bool) -> Result<Option<Vec<Endpoint>>, NoApiError> {
        let explicit = !self.wait_http.is_empty() || !self.wait_tcp.is_empty();
        if !explicit && in_cluster {
            return Ok(None);
        }
        if !explicit && self.sidecars.is_empty() {
            return Err(NoApiError::NotInCluster);
        }
        if !self.peers.is_empty() {
            return Err(NoApiError::PeersNeedTheApi);
        }
        let http = self.wait_http.iter().cloned().map(Endpoint::Http);
        let tcp = self.wait_tcp.iter().cloned().map(Endpoint::Tcp);
        Ok(Some(http.chain(tcp).chain(self.sidecars.iter().map(Preset::ready)).collect()))
    }

    /// Every shutdown action: `--shutdown-http-get`, `--shutdown-http-post`, the `--sidecar` presets' ones, then
    /// the kills, whose grace must fit in `time_left`.
    pub fn shutdown_actions(&self, time_left: Duration) -> Vec<Action> {
        let get = self.shutdown_get.iter().cloned().map(Action::Get);
        let post = self.shutdown_post.iter().cloned().map(Action::Post);
        let presets = self.sidecars.iter().map(|preset| preset.quit());
        get.chain(post).chain(presets).chain(self.kill_actions(time_left)).collect()
    }

    /// Which processes the kill actions signal: one rule per `--kill NAME`, or `--kill-all`'s alone; none
    /// without either.
    #[cfg(feature = "kill")]
    pub fn kill_rules(&self) -> Vec<crate::procs::Rule> {
        use crate::procs::Rule;
        match self.kill.all {
            true => vec![Rule::All],
            false => self.kill.names.iter().cloned().map(Rule::Named).collect(),
        }
    }

    /// One action per `--kill NAME`, or one for `--kill-all`.
    #[cfg(feature = "kill")]
    fn kill_actions(&self, time_left: Duration) -> Vec<Action> {
        use crate::kill::{self, Kill};
        let settings = &self.kill;
        let grace = kill::grace_within(settings.grace, time_left);
        let rules = self.kill_rules().into_iter();
        rules.map(|rule| Action::Kill(Kill { rule, signal: settings.signal, grace })).collect()
    }

    #[cfg(not(feature = "kill"))]
    fn kill_actions(&self, _: Duration) -> Vec<Action> {
        Vec::new()
    }
}
