//! The simulation's scenario generator: one seed → one Pod, one command line and one timeline of what the
//! kubelet, the API server, the program, the signals and the sidecars' shutdown endpoints will do. Faults come far
//! more often than in life: grace periods of 0 and near i64::MAX, deletions, replacement Pods, per-container
//! restart policies, a sidecar whose arguments end like proa's own.

use std::time::Duration;

use super::super::config::StartError;

/// A seeded SplitMix64: small, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }

    /// A duration from `low` to `high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

/// A sidecar container's plan: when it gets ready, whether and how it crashes, how long a restart takes.
#[derive(Debug, Clone)]
pub struct SidecarPlan {
    pub name: String,
    /// Its own `restartPolicy` (regular containers, ContainerRestartRules).
    pub policy: Option<&'static str>,
    pub args: Vec<String>,
    pub ready_at: Duration,
    pub crash: Option<(Duration, i32)>,
    pub restart_takes: Duration,
    /// Its readinessProbe: an `httpGet` proa can probe itself (`Some`), else an exec probe or none (the API only).
    pub probe: Option<ProbePlan>,
}

/// An `httpGet` readinessProbe, and how its endpoint behaves in each run of the container.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub successes: u32,
    pub initial_delay: Duration,
    /// How long the container runs before the kubelet's probe reports it Ready (its first run; a restarted run
    /// takes `restart_takes`).
    pub lead: Duration,
    /// How far into each run its endpoint answers (at most `lead`), or never (every attempt hangs to its timeout).
    pub serves_after: Option<Duration>,
    /// For this long after it first answers, it fails every other attempt (flaps below `successThreshold`).
    pub flaps_for: Duration,
    /// The port is named in the spec (resolved from the container's `ports`).
    pub named_port: bool,
    /// The kubelet's status gives no readable `startedAt`.
    pub undated: bool,
}

/// How the program reacts to a forwarded SIGTERM or SIGINT.
#[derive(Debug, Clone, Copy)]
pub enum OnStop {
    Dies(Duration),
    Traps(Duration, u8),
    Ignores,
}

#[derive(Debug, Clone)]
pub struct ProgramPlan {
    pub spawn_fails: bool,
    /// The spawn fails because no process can be made (fork's EAGAIN: the Pod's pids limit), not for want of the
    /// program: proa's own failure, 125.
    pub fork_fails: bool,
    pub runs_for: Duration,
    pub exit_code: u8,
    pub on_stop: OnStop,
}

/// What one shutdown endpoint does when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Answers(Duration),
    Redirects,
    Refuses,
    Hangs,
}

#[derive(Debug, Clone)]
pub struct ActionPlan {
    pub endpoint: Endpoint,
    /// The regular sidecar this action stops, if any.
    pub stops: Option<usize>,
    /// The container the action names (`NAME=URL`): one of the sidecars, a native one, or one the Pod lacks.
    pub container: Option<String>,
    /// How long after the owner sends it the first attempt reaches the network.
    pub attempt_after: Duration,
}

/// The Pod's deletion: `kubectl delete` (deletionTimestamp, SIGTERM, SIGKILL after the grace), or a forced one
/// (the object is gone at once, a replacement may appear, and the kubelet still kills after its minimum).
#[derive(Debug, Clone)]
pub struct Deletion {
    pub at: Duration,
    pub forced: bool,
    /// `--grace-period` of the delete, overriding the spec's.
    pub grace_override: Option<i64>,
    pub sigterm_lag: Duration,
    /// A preStop hook in proa's container: it runs before the SIGTERM, inside the grace period.
    pub prestop: Duration,
    pub replacement_after: Option<Duration>,
    /// The watch misses the DELETED event (it was relisting after a 410): the next thing it shows is the
    /// replacement.
    pub deleted_event_lost: bool,
}

/// Another main container: it may run proa too (then it takes part in choosing the stopper), or be named by
/// `--peer`; it ends on its own.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    pub name: String,
    pub runs_proa: bool,
    /// Given as `--peer` (else found because it runs proa).
    pub explicit: bool,
    /// When it ends; `None`: it never does (the Pod's deletion ends the timeline).
    pub exits_at: Option<Duration>,
    pub exit_code: i32,
    /// Under OnFailure: it fails once first (exit 1), is restarted, and ends `exit_code` later.
    pub fails_first: bool,
}

/// A `--peer` that cannot be a main container proa waits for, or that is proa's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OddPeer {
    /// Names a container the Pod lacks: 125 at start.
    Absent,
    /// Names proa's own container: ignored.
    Own,
    /// Names a native sidecar: 125 at start.
    Native,
    /// Names the regular sidecar a named shutdown action stops: 125 at start.
    Target,
}

/// `proa --serve-quit`: proa runs a sidecar at once and stops it on a quit request.
#[derive(Debug, Clone)]
pub struct SidecarRole {
    /// `--kill-signal` and `--kill-grace`.
    pub signal: i32,
    pub grace: Duration,
    /// When the main container's proa asks it to quit, if it does.
    pub quit_at: Option<Duration>,
    /// When the kubelet sends SIGTERM (the Pod is stopping), if it does.
    pub sigterm_at: Option<Duration>,
}

/// One timeline's whole setup.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub no_api: bool,
    /// `--serve-quit`: this proa is a sidecar's entrypoint (no Pod, no actions).
    pub sidecar_role: Option<SidecarRole>,
    pub ready_timeout: Option<Duration>,
    pub run_on_ready_timeout: bool,
    pub peers: Vec<PeerPlan>,
    pub odd_peer: Option<OddPeer>,
    pub shutdown_timeout: Option<Duration>,
    pub always_shutdown: bool,
    pub container_flag: bool,
    /// proa's container gives no command or args: the image's ENTRYPOINT runs proa.
    pub entrypoint_form: bool,
    /// The program's arguments (it is `prog`).
    pub program_args: Vec<String>,
    pub ignore: Vec<String>,
    pub pod_policy: &'static str,
    pub own_policy: Option<&'static str>,
    pub grace: Option<i64>,
    pub sidecars: Vec<SidecarPlan>,
    pub natives: Vec<SidecarPlan>,
    /// `--direct-probe`.
    pub direct_probe: bool,
    pub api_latency: (u64, u64),
    pub api_failure_at: Option<Duration>,
    /// A stopped watcher may still deliver the snapshot it had already read.
    pub stragglers: bool,
    pub deletion: Option<Deletion>,
    pub signals: Vec<(Duration, i32)>,
    pub program: ProgramPlan,
    pub actions: Vec<ActionPlan>,
    pub sidecar_stop_takes: Duration,
    /// No-API mode: when every endpoint answers, and whether they keep answering after the actions.
    pub endpoints_ready_at: Duration,
    pub endpoints_keep_answering: bool,
    /// The start fails after the signal thread is up (`Mode::Failed`), for one of these reasons: 125 after the HTTP
    /// actions, never the program, never the kills.
    pub start_failure: Option<StartError>,
    /// With a start failure: this action is a `--kill` (the refused one, maybe), not an HTTP request.
    pub kill_action: Option<usize>,
    /// `--auto-shutdown` (its default, true, most of the time): a regular `istio-proxy` no action names is stopped.
    pub auto_shutdown: bool,
    /// A mesh Pod: proa's own connections to the API server go through the regular `istio-proxy`, if there is one,
    /// so once it has stopped every one of them is refused.
    pub mesh: bool,
}

/// Why a start fails, as `lifecycle::run` finds it.
fn start_failure(r: &mut Rng) -> StartError {
    match r.below(4) {
        0 => StartError::Kill("--kill-all: proa runs in the node's PID namespace (hostPID)".into()),
        1 => StartError::Cluster("KUBERNETES_SERVICE_PORT \"x\" is not a port".into()),
        2 => StartError::Signals("Resource temporarily unavailable".into()),
        _ => StartError::QuitThread("Resource temporarily unavailable".into()),
    }
}

/// The container name Istio's injector gives its proxy, which proa recognises.
pub const ISTIO_PROXY: &str = "istio-proxy";
const POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
/// Arguments a sidecar may have: some end like proa's own (`--verbose`), none covers the program `prog`.
const SIDECAR_ARGS: [&[&str]; 4] = [&[], &["--verbose"], &["run", "--verbose"], &["-v"]];

impl Scenario {
    pub fn generate(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let r = &mut rng;
        let sidecar = |r: &mut Rng, name: String| SidecarPlan {
            name,
            policy: if r.chance(25) { Some(r.pick(&POLICIES)) } else { None },
            args: r.pick(&SIDECAR_ARGS).iter().map(|a| a.to_string()).collect(),
            ready_at: r.millis(0, 4000),
            crash: r.chance(20).then(|| (r.millis(0, 8000), r.pick(&[0, 1, 2, 137]))),
            restart_takes: r.millis(10, 2000),
            probe: r.chance(60).then(|| {
                let lead = r.millis(0, 3000);
                ProbePlan {
                    successes: r.pick(&[1, 1, 2, 3]),
                    initial_delay: Duration::from_secs(r.pick(&[0, 0, 1, 2])),
                    lead,
                    serves_after: (!r.chance(10)).then(|| r.millis(0, lead.as_millis() as u64)),
                    flaps_for: if r.chance(20) { r.millis(0, 1500) } else { Duration::ZERO },
                    named_port: r.chance(50),
                    undated: r.chance(10),
                }
            }),
        };
        let plan = |r: &mut Rng, name: String| {
            let mut plan = sidecar(r, name);
            // An endpoint that answers, then the container ends soon after: a pass that stops counting.
            if let Some(probe) = plan.probe.as_ref().filter(|_| r.chance(30)) {
                let answers = plan.ready_at.saturating_sub(probe.lead) + probe.serves_after.unwrap_or_default();
                plan.crash = Some((answers + r.millis(0, 400), r.pick(&[0, 1, 137])));
            }
            plan
        };
        let sidecars: Vec<SidecarPlan> = (0..r.below(4)).map(|i| plan(r, format!("sidecar-{i}"))).collect();
        let natives: Vec<SidecarPlan> = (0..r.below(3)).map(|i| plan(r, format!("native-{i}"))).collect();
        let ignore = sidecars.iter().chain(&natives).filter(|_| r.chance(10)).map(|s| s.name.clone()).collect();
        let on_stop = match r.below(3) {
            0 => OnStop::Dies(r.millis(0, 200)),
            1 => OnStop::Traps(r.millis(0, 8000), r.pick(&[0, 1, 42])),
            _ => OnStop::Ignores,
        };
        let program = ProgramPlan {
            spawn_fails: r.chance(3),
            fork_fails: false,
            runs_for: r.millis(0, 20_000),
            exit_code: r.pick(&[0, 0, 1, 3, 137, 143, 255]),
            on_stop,
        };
        let stoppable = sidecars.len() as u64;
        let mut names: Vec<String> = sidecars.iter().chain(&natives).map(|p| p.name.clone()).collect();
        names.push("absent-proxy".into());
        let actions: Vec<ActionPlan> = (0..r.below(4))
            .map(|_| ActionPlan {
                container: r.chance(40).then(|| r.pick(&names)),
                endpoint: match r.below(10) {
                    0 => Endpoint::Redirects,
                    1 => Endpoint::Refuses,
                    2 => Endpoint::Hangs,
                    _ => Endpoint::Answers(r.millis(0, 300)),
                },
                stops: (stoppable > 0 && r.chance(80)).then(|| r.below(stoppable) as usize),
                attempt_after: r.millis(0, 5),
            })
            .collect();
        let deletion = r.chance(25).then(|| {
            let forced = r.chance(30);
            Deletion {
                at: r.millis(0, 25_000),
                forced,
                grace_override: if forced { Some(0) } else { r.chance(30).then(|| r.pick(&[0, 1, 3, 10])) },
                sigterm_lag: r.millis(0, 1500),
                prestop: if r.chance(20) { r.millis(0, 5000) } else { Duration::ZERO },
                replacement_after: (forced && r.chance(70)).then(|| r.millis(0, 500)),
                deleted_event_lost: r.chance(40),
            }
        });
        let other_signals = [libc::SIGHUP, libc::SIGUSR1, libc::SIGWINCH, libc::SIGINT, libc::SIGQUIT];
        let signals = (0..r.below(3)).map(|_| (r.millis(0, 20_000), r.pick(&other_signals))).collect();
        let entrypoint_form = r.chance(30);
        let pod_policy = r.pick(&["Never", "Never", "OnFailure", "Always"]);
        // Job Pods (Never, OnFailure) may have several main containers; under Always a peer would never end.
        let peers = match pod_policy {
            "Always" => Vec::new(),
            _ => (0..if r.chance(60) { r.below(3) } else { 0 })
                .map(|i| {
                    let runs_proa = r.chance(60);
                    PeerPlan {
                        // Before or after proa's own `job` by name, which decides who stops the sidecars.
                        name: format!("{}-{i}", r.pick(&["aux", "zed"])),
                        runs_proa,
                        explicit: !runs_proa || r.chance(30),
                        exits_at: (!r.chance(10)).then(|| r.millis(0, 30_000)),
                        exit_code: if pod_policy == "Never" { r.pick(&[0, 1]) } else { 0 },
                        fails_first: pod_policy == "OnFailure" && r.chance(30),
                    }
                })
                .collect(),
        };
        let odd_peer = match r.below(25) {
            0 => Some(OddPeer::Absent),
            1 => Some(OddPeer::Own),
            2 if !natives.is_empty() => Some(OddPeer::Native),
            3 if actions.iter().any(|a| a.container.as_deref() == Some("sidecar-0")) => Some(OddPeer::Target),
            _ => None,
        };
        // A peer that never ends keeps the stopper waiting until the Pod goes: the Pod is deleted then.
        let never_ends = peers.iter().any(|p| p.exits_at.is_none());
        let deletion = match (deletion, never_ends) {
            (None, true) => Some(Deletion {
                at: r.millis(20_000, 60_000),
                forced: false,
                grace_override: None,
                sigterm_lag: r.millis(0, 1500),
                prestop: Duration::ZERO,
                replacement_after: None,
                deleted_event_lost: false,
            }),
            (deletion, _) => deletion,
        };
        let program_args = match entrypoint_form && r.chance(70) {
            true => vec!["--verbose".to_string()],
            false => r.pick(&SIDECAR_ARGS).iter().map(|a| a.to_string()).collect(),
        };
        let mut scenario = Scenario {
            seed,
            no_api: r.chance(15),
            sidecar_role: r.chance(10).then(|| SidecarRole {
                signal: r.pick(&[libc::SIGTERM, libc::SIGTERM, libc::SIGINT, libc::SIGKILL]),
                grace: Duration::from_millis(r.pick(&[0, 500, 3000, 10_000])),
                quit_at: r.chance(80).then(|| r.millis(0, 15_000)),
                sigterm_at: r.chance(40).then(|| r.millis(0, 15_000)),
            }),
            ready_timeout: r.chance(40).then(|| Duration::from_millis(r.pick(&[0, 500, 3000, 10_000, 60_000]))),
            run_on_ready_timeout: r.chance(30),
            peers,
            odd_peer,
            shutdown_timeout: match r.below(6) {
                0 => Some(Duration::ZERO),
                1 => Some(Duration::from_secs(2)),
                2 => Some(Duration::from_millis(u64::MAX)),
                _ => None,
            },
            always_shutdown: r.chance(15),
            container_flag: r.chance(30),
            entrypoint_form,
            program_args,
            ignore,
            pod_policy,
            own_policy: r.chance(20).then(|| r.pick(&POLICIES)),
            grace: r.pick(&[None, Some(0), Some(1), Some(6), Some(30), Some(3600), Some(i64::MAX)]),
            sidecars,
            natives,
            direct_probe: r.chance(85),
            api_latency: r.pick(&[(0, 5), (1, 50), (10, 800)]),
            api_failure_at: r.chance(8).then(|| r.millis(0, 20_000)),
            stragglers: r.chance(30),
            deletion,
            signals,
            program,
            actions,
            sidecar_stop_takes: r.millis(0, 3000),
            endpoints_ready_at: r.millis(0, 5000),
            endpoints_keep_answering: r.chance(20),
            // Drawn last, so that every other draw stays that of the seed.
            start_failure: r.chance(4).then(|| start_failure(r)),
            kill_action: None,
            auto_shutdown: true,
            mesh: false,
        };
        if scenario.start_failure.is_some() && !scenario.actions.is_empty() && r.chance(50) {
            scenario.kill_action = Some(r.below(scenario.actions.len() as u64) as usize);
        }
        // Recognised sidecars, drawn after the rest: Istio's proxy as a regular or a native sidecar.
        scenario.auto_shutdown = !r.chance(15);
        match r.below(4) {
            // `OddPeer::Target` names sidecar-0 itself.
            0 if !scenario.sidecars.is_empty() && scenario.odd_peer != Some(OddPeer::Target) => {
                scenario.rename("sidecar-0", ISTIO_PROXY)
            }
            1 if !scenario.natives.is_empty() => scenario.rename("native-0", ISTIO_PROXY),
            _ => {}
        }
        // A start that fails never gets to a role; a sidecar's proa reads no Pod: the kubelet reaches it only by its
        // SIGTERM.
        if scenario.start_failure.is_some() {
            scenario.sidecar_role = None;
        }
        if scenario.sidecar_role.is_some() {
            scenario.deletion = None;
            scenario.api_failure_at = None;
        }
        scenario.program.fork_fails = scenario.program.spawn_fails && r.chance(50);
        scenario.mesh = r.chance(50);
        scenario
    }

    /// Renames a sidecar wherever the scenario names it: the Pod, `--ignore`, the actions.
    fn rename(&mut self, old: &str, new: &str) {
        let plans = self.sidecars.iter_mut().chain(self.natives.iter_mut());
        let names = plans.map(|p| &mut p.name).chain(self.ignore.iter_mut());
        for name in names.chain(self.actions.iter_mut().filter_map(|a| a.container.as_mut())) {
            if name == old {
                *name = new.to_string();
            }
        }
    }

    /// Whether proa must send the recognised action to regular sidecar `i` (when it sends the actions at all):
    /// `--auto-shutdown`, waited, named by no action, and every action names its container (an unnamed one may stop
    /// anything, so nothing is recognised then).
    pub fn recognises(&self, i: usize) -> bool {
        let name = &self.sidecars[i].name;
        let named = self.actions.iter().any(|a| a.container.as_ref() == Some(name));
        let blanket = self.actions.iter().any(|a| a.container.is_none());
        name == ISTIO_PROXY && self.auto_shutdown && !self.ignore.contains(name) && !named && !blanket
    }

    /// proa's own arguments, as `Options::own_args` holds them.
    pub fn own_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_string(), "http://127.0.0.1:15020/quitquitquit".to_string(), "--".to_string()];
        args.push("prog".into());
        args.extend(self.program_args.iter().cloned());
        args
    }

    /// The `--peer` names the command line gives: the explicit peers, and the odd one.
    pub fn peer_flags(&self) -> Vec<String> {
        let odd = self.odd_peer.map(|odd| match odd {
            OddPeer::Absent => "ghost".to_string(),
            OddPeer::Own => "job".to_string(),
            OddPeer::Native => self.natives[0].name.clone(),
            OddPeer::Target => "sidecar-0".to_string(),
        });
        self.peers.iter().filter(|p| p.explicit).map(|p| p.name.clone()).chain(odd).collect()
    }

    /// Whether the peers given make proa fail at its first read of the Pod (125, the program never runs).
    pub fn peers_refused(&self) -> bool {
        // proa's own container only guessed (the ENTRYPOINT form, no --container) cannot take a peer list.
        let others = self.sidecars.len() + self.peers.len() > 0;
        let guessed = self.entrypoint_form && !self.container_flag && others && !self.peer_flags().is_empty();
        guessed || matches!(self.odd_peer, Some(OddPeer::Absent | OddPeer::Native | OddPeer::Target))
    }

    /// Whether this proa stops the sidecars: no peer that runs proa comes before its container `job` by name.
    pub fn is_stopper(&self) -> bool {
        self.peers.iter().filter(|p| p.runs_proa).all(|p| p.name.as_str() > "job")
    }

    /// Whether a shutdown action naming `container` is to be sent in this Pod (not for a native sidecar, nor for a
    /// container the Pod lacks; an unnamed one not when every sidecar proa waits for is native).
    pub fn sends(&self, container: Option<&str>) -> bool {
        let waited = |name: &String| !self.ignore.contains(name);
        match container {
            Some(name) => self.sidecars.iter().any(|p| p.name == name),
            None => {
                let regular = self.sidecars.iter().map(|p| &p.name).any(waited);
                let native = self.natives.iter().map(|p| &p.name).any(waited);
                regular || !native
            }
        }
    }

    /// Whether the kubelet restarts a regular container with this own policy after exiting with `code`.
    pub fn restarts(&self, own: Option<&str>, code: i32) -> bool {
        match own.unwrap_or(self.pod_policy) {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        }
    }

    /// The grace period of the deletion: the delete's, else the spec's, else 30 s.
    pub fn deletion_grace(&self) -> Duration {
        let seconds = self.deletion.as_ref().and_then(|d| d.grace_override).or(self.grace).unwrap_or(30);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }

    /// The grace period the kubelet gives from the moment it starts stopping proa's container (a preStop hook runs
    /// inside it, before the SIGTERM): the deletion's, and at least 2 s.
    pub fn kubelet_grace(&self) -> Duration {
        self.deletion_grace().max(Duration::from_secs(2))
    }
}
