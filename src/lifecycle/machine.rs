//! The lifecycle as one explicit state machine (DESIGN.md "What happens, in order"):
//! Waiting → Running → ShuttingDown → Done, with readiness from the Pod (`Mode::Pod`) or from probing endpoints
//! (`Mode::Endpoints`, no-API mode). `step` is pure apart from logging: it takes the clock as a parameter,
//! performs no I/O, and returns the commands the owner loop must carry out. Each phase's transitions live in their
//! own file (`waiting.rs`, `stopping.rs`); this one holds the types they share.

use std::time::{Duration, Instant};

use crate::api::ApiError;
use crate::child::{Exit, SpawnError};
use crate::pod::Pod;
use crate::probe::{Endpoint, Goal, Update as ProbeUpdate};
use crate::readiness::{self, Found, Kind, OwnContainer, RestartPolicy, Waited};
use crate::shutdown::Outcome;
use crate::watch::Update;

use super::peers::awaiting_peers;
use super::stopping::{running, shutting_down};
use super::waiting::waiting;

/// The longest proa waits for anything. A longer bound (a grace period near i64::MAX, `--ready-timeout 99999h`) is
/// cut to this with a log line, so that deadline arithmetic can never overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);
/// Once the kubelet has sent SIGTERM, proa exits this long before the grace period ends (a quarter of a short one).
pub const EXIT_MARGIN: Duration = Duration::from_secs(1);

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
    /// The shutdown actions, in the order `StartShutdown` numbers them.
    pub actions: Vec<ActionTarget>,
    /// `--peer`: other main containers, not waited for; the sidecars are stopped only after they have terminated.
    pub peers: Vec<String>,
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
    Failed(String),
}

/// What proa learnt from the Pod: fixed by the first snapshot (the spec is immutable), updated by later ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The Pod's uid, pinned at the first read: a snapshot with another one is another Pod of the same name.
    pub uid: Option<String>,
    pub waited: Vec<Waited>,
    /// proa's own container's effective restart policy; `None` in no-API mode, where nobody knows it.
    pub policy: Option<RestartPolicy>,
    pub shutdown_timeout: Duration,
    /// How long the kubelet lets proa run after SIGTERM (DESIGN.md "Shut down").
    pub grace: Duration,
    /// The resourceVersion of the newest snapshot: the shutdown watch resumes from it (`None` in no-API mode).
    pub version: Option<String>,
    /// The waited regular sidecars that had terminated in the newest snapshot: shutdown does not wait for them.
    pub stopped: Vec<String>,
    /// The shutdown actions to send (their numbers), and why each other one is skipped in this Pod.
    pub sends: Vec<usize>,
    pub skips: Vec<(usize, String)>,
    /// Other main containers (`--peer`, and those that run proa too): the sidecars are stopped only after they
    /// have terminated.
    pub peers: Vec<String>,
    /// The peers not terminated for good in the newest snapshot.
    pub peers_left: Vec<String>,
    /// The proa that stops the sidecars when it is not this one: the first by container name among proa's own
    /// container and the peers that run proa, which every proa in the Pod computes alike.
    pub stopper: Option<String>,
}

impl Facts {
    /// Works out proa's own container, the waited containers, the restart policy and the bounds from the first
    /// snapshot. Fails (exit 125) when `--container` names no container of the Pod.
    pub fn of(config: &Config, pod: &Pod) -> Result<Facts, String> {
        let own =
            readiness::find_own_container(pod, config.container.as_deref(), &config.own_args, config.program_words)?;
        if !own.ambiguous.is_empty() {
            log::warn!(
                "containers {} all run proa with these arguments, so proa cannot tell which is its own: waiting for none of them; set --container (PROA_CONTAINER) in each",
                own.ambiguous.join(", ")
            );
        } else if own.found == Found::FirstContainer && pod.spec.containers.len() > 1 {
            log::warn!(
                "guessing that proa runs in container {} (the first one): set --container if that is wrong",
                own.name
            );
        }
        for name in readiness::unknown_names(pod, &config.ignore) {
            log::warn!("--ignore {name}: the pod has no such container");
        }
        let peers = Peers::of(config, pod, &own)?;
        for name in peers.all.iter().filter(|name| !config.peers.contains(name)) {
            log::info!("container {name} runs proa too: a peer, not waited for");
        }
        let waited = waited(config, pod, &own, &peers.all);
        let (sends, skips) = choose_actions(config, pod, &waited);
        let mut facts = Facts {
            uid: pod.metadata.uid.clone(),
            waited,
            policy: Some(RestartPolicy::of_container(pod, &own.name)),
            shutdown_timeout: capped(
                "the shutdown timeout",
                readiness::shutdown_timeout(config.shutdown_timeout, Some(pod)),
            ),
            grace: capped("terminationGracePeriodSeconds", readiness::grace_period(pod)),
            version: None,
            stopped: Vec::new(),
            sends,
            skips,
            peers: peers.all,
            peers_left: Vec::new(),
            stopper: peers.stopper,
        };
        facts.observe(pod);
        Ok(facts)
    }

    /// No-API mode's facts, known from the start: no containers, no restart policy, `--shutdown-timeout` or 30 s,
    /// and the kubelet's default grace unless `--shutdown-timeout` says more.
    pub fn without_pod(config: &Config) -> Facts {
        let timeout = capped("the shutdown timeout", readiness::shutdown_timeout(config.shutdown_timeout, None));
        Facts {
            uid: None,
            waited: Vec::new(),
            policy: None,
            shutdown_timeout: timeout,
            grace: timeout.max(readiness::MIN_GRACE),
            version: None,
            stopped: Vec::new(),
            sends: (0..config.actions.len()).collect(),
            skips: Vec::new(),
            peers: Vec::new(),
            peers_left: Vec::new(),
            stopper: None,
        }
    }

    /// The facts of a Pod proa could not read (the ready timeout passed first, and `--on-ready-timeout run`): nothing
    /// known of its containers or restart policy, and the shortest grace period the kubelet gives.
    pub fn unread(config: &Config) -> Facts {
        Facts { grace: readiness::MIN_GRACE, ..Facts::without_pod(config) }
    }

    /// Takes in a newer snapshot of the same Pod: its resourceVersion, which sidecars have stopped, and the grace
    /// period of a deletion.
    pub fn observe(&mut self, pod: &Pod) {
        if pod.metadata.resource_version.is_some() {
            self.version.clone_from(&pod.metadata.resource_version);
        }
        let regular: Vec<Waited> = self.waited.iter().filter(|w| w.kind == Kind::Regular).cloned().collect();
        let left = readiness::sidecars_left(pod, &regular);
        self.stopped = regular.into_iter().map(|w| w.name).filter(|name| !left.contains(name)).collect();
        if pod.metadata.deletion_grace_period_seconds.is_some() {
            self.grace = capped("deletionGracePeriodSeconds", readiness::grace_period(pod));
        }
        self.peers_left = readiness::peers_left(pod, &self.peers);
    }

    /// The regular sidecars shutdown waits for: those not already stopped in the newest snapshot.
    pub fn running_sidecars(&self) -> Vec<Waited> {
        let running = |w: &&Waited| w.kind == Kind::Regular && !self.stopped.contains(&w.name);
        self.waited.iter().filter(running).cloned().collect()
    }
}

/// proa's peers in a Pod, and which proa stops the sidecars.
struct Peers {
    /// `--peer` and the other containers that run proa.
    all: Vec<String>,
    /// The stopper, when it is not this proa.
    stopper: Option<String>,
}

impl Peers {
    /// Fails (exit 125) on a `--peer` that cannot be a main container proa waits for: one the Pod lacks, a native
    /// sidecar, or one a shutdown action stops (each side would wait for the other). proa's own container is never
    /// its own peer (a `PROA_PEER` shared by every main container names it too), nor is any container proa may be
    /// running in.
    fn of(config: &Config, pod: &Pod, own: &OwnContainer) -> Result<Peers, String> {
        // A container a shutdown action stops is a sidecar, whatever it runs: a proa on its side (`--serve-quit`)
        // may have its role from an `envFrom` that proa cannot see.
        let stopped = |name: &String| config.actions.iter().any(|a| a.container.as_ref() == Some(name));
        let mine = |name: &String| *name == own.name || own.ambiguous.contains(name);
        for name in config.peers.iter().filter(|name| !mine(name)) {
            if stopped(name) {
                return Err(format!(
                    "--peer {name}: a shutdown action stops container {name} too; a peer is a main container that proa waits for, never stops: drop one of them"
                ));
            }
            if !pod.spec.containers.iter().any(|c| &c.name == name) {
                let native = pod.spec.init_containers.iter().any(|c| &c.name == name);
                return Err(match native {
                    true => format!("--peer {name}: container {name} is a native sidecar, not a main container"),
                    false => format!(
                        "--peer {name}: the pod has no container {name}: use one of {}",
                        pod.spec.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let proa_peers: Vec<String> =
            readiness::proa_containers(pod).into_iter().filter(|name| !mine(name) && !stopped(name)).collect();
        // A proa turned off runs its program in its place: a peer, but it stops nothing.
        let candidates = proa_peers.iter().filter(|name| !readiness::is_proa_disabled(pod, name));
        let first = candidates.map(String::as_str).chain([own.name.as_str()]).min().unwrap_or(&own.name);
        let stopper = (first != own.name).then(|| first.to_string());
        let mut all: Vec<String> = config.peers.iter().filter(|name| !mine(name)).cloned().collect();
        all.extend(proa_peers.into_iter().filter(|name| !config.peers.contains(name)));
        Ok(Peers { all, stopper })
    }
}

/// The containers proa waits for: all but its own (and any it may be running in), the ignored ones and the peers,
/// plus the native sidecars.
fn waited(config: &Config, pod: &Pod, own: &OwnContainer, peers: &[String]) -> Vec<Waited> {
    let not_waited: Vec<String> = config.ignore.iter().chain(peers).chain(&own.ambiguous).cloned().collect();
    readiness::waited_containers(pod, &own.name, &not_waited)
}

/// Which shutdown actions this Pod needs, and why each other one is skipped.
fn choose_actions(config: &Config, pod: &Pod, waited: &[Waited]) -> (Vec<usize>, Vec<(usize, String)>) {
    let mut sends = Vec::new();
    let mut skips = Vec::new();
    for (i, action) in config.actions.iter().enumerate() {
        match readiness::skip_reason(pod, action.container.as_deref(), waited) {
            None => sends.push(i),
            Some(why) => skips.push((i, why)),
        }
    }
    (sends, skips)
}

/// What the initial watcher learnt from its first snapshot, as the owner does (`Facts::of`): the later snapshots
/// are judged by it, so that the watcher and the owner always agree on when the wait is over.
#[derive(Debug, Clone)]
pub struct Pinned {
    uid: Option<String>,
    waited: Vec<Waited>,
}

/// Whether a snapshot ends the wait (ready, dead, gone or misconfigured): the initial watcher stops there.
/// `pinned` is filled from the first snapshot; `None` there means a misconfiguration that ends the wait.
pub fn wait_is_over(config: &Config, pod: &Pod, deleted: bool, pinned: &mut Option<Option<Pinned>>) -> bool {
    let first = pinned.get_or_insert_with(|| {
        let own =
            readiness::find_own_container(pod, config.container.as_deref(), &config.own_args, config.program_words);
        let own = own.ok()?;
        let waited = waited(config, pod, &own, &Peers::of(config, pod, &own).ok()?.all);
        Some(Pinned { uid: pod.metadata.uid.clone(), waited })
    });
    let Some(first) = first else { return true };
    if deleted || readiness::is_gone(pod, &first.uid) {
        return true;
    }
    !matches!(readiness::assess(pod, &first.waited), readiness::Verdict::Pending { .. })
}

/// Events from the worker threads (and the owner's own clock), one variant per source.
#[derive(Debug)]
pub enum Event {
    /// From the watcher.
    Watch(Update),
    /// From the signal thread: signal number.
    Signal(i32),
    /// From the reaper, once the program exited.
    Child(Exit),
    /// From the owner itself, when `StartProgram` failed.
    SpawnFailed(SpawnError),
    /// From a shutdown action thread, once per action.
    Shutdown(Outcome),
    /// From the quit endpoint (`Mode::Sidecar`): a `POST /quitquitquit` came.
    Quit,
    /// From the prober (no-API mode).
    Probe(ProbeUpdate),
    /// The owner's wait reached `State::deadline`.
    DeadlinePassed,
    /// From a worker that is done: what it held, for the owner to drop once it has acted on the event before
    /// (see `watch::spawn_watch`). The owner loop drops it; `step` never sees it.
    Release(#[allow(dead_code)] Leftovers),
}

/// A finished worker's resources, held only to be dropped.
pub struct Leftovers(#[allow(dead_code)] pub Box<dyn Send>);

impl std::fmt::Debug for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Leftovers")
    }
}

/// What a watcher watches for.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// Read the Pod, then watch it until the wait is over (`wait_is_over`).
    Readiness,
    /// Watch from this resourceVersion (else after reading the Pod) until these regular sidecars have terminated
    /// or the Pod (with this uid) is gone.
    SidecarsGone { sidecars: Vec<Waited>, from: Option<String>, uid: Option<String> },
    /// Watch from this resourceVersion until these peers have terminated for good, or the Pod is gone.
    PeersDone { peers: Vec<String>, from: Option<String>, uid: Option<String> },
}

/// Orders for the owner loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start a watcher (after stopping any earlier one).
    Watch(Watch),
    /// Stop listening to the current watcher.
    StopWatch,
    /// Start a prober of the endpoints (no-API mode), after stopping any earlier one.
    Probe(Goal),
    /// Stop listening to the current prober.
    StopProbe,
    /// Spawn the program (and the reaper).
    StartProgram,
    /// Log this line at info: news not worth delaying the command before it for (the end of the wait, said once
    /// the program has started).
    Say(String),
    /// Forward this signal to the program.
    Forward(i32),
    /// Read the Pod once (after a stop signal, with no watch open): its deletionTimestamp says when the kubelet
    /// kills, which may be sooner than the grace period from the signal.
    ReadPod,
    /// Send these shutdown actions (by number); each must report within `budget`.
    StartShutdown { budget: Duration, actions: Vec<usize> },
    /// Write this reason for proa's own failure (exit 124 or 125) to the termination log.
    WriteTerminationLog(String),
    /// Exit proa with this code.
    Exit(u8),
}

/// The phases, each holding its own data.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Waiting for the sidecars.
    Waiting(Waiting),
    /// The program runs.
    Running(Running),
    /// The program has exited; the stopper waits for its peers to terminate before shutting down.
    AwaitingPeers(AwaitingPeers),
    /// Shutdown actions are out and/or proa waits for the sidecars to go.
    ShuttingDown(ShuttingDown),
    /// Finished: proa exits with `code`.
    Done { code: u8 },
}

/// The data of `State::Waiting`.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub since: Instant,
    pub deadline: Option<Instant>,
    /// `None` until the first Pod snapshot.
    pub facts: Option<Facts>,
    /// Containers not ready in the last snapshot, for the timeout message.
    pub not_ready: Vec<String>,
    /// Waiting reasons already logged, to warn only when one changes.
    pub reasons: Vec<(String, String)>,
}

/// The data of `State::Running`.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub facts: Facts,
    /// Set once the kubelet sent SIGTERM (or SIGINT), or the Pod is being deleted.
    pub stop: Option<Stop>,
    /// `Mode::Sidecar`: proa was asked to stop the program.
    pub quit: Option<Quit>,
}

impl Running {
    pub fn new(facts: Facts) -> Running {
        Running { facts, stop: None, quit: None }
    }
}

/// Where proa's own stop of the program stands (`Mode::Sidecar`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quit {
    /// The program was sent the stop signal; SIGKILL is due at this instant if it still runs.
    Signalled { kill_at: Instant },
    /// SIGKILL was sent.
    Killed,
}

/// The data of `State::AwaitingPeers`. There is no deadline: a peer is a main container that may run for hours.
#[derive(Debug, Clone, PartialEq)]
pub struct AwaitingPeers {
    pub code: u8,
    pub facts: Facts,
}

/// The data of `State::ShuttingDown`. It ends once every action has reported and nothing else is awaited; each of
/// the three deadlines cuts one of those waits short.
#[derive(Debug, Clone, PartialEq)]
pub struct ShuttingDown {
    pub code: u8,
    pub actions_left: usize,
    /// Every action reports within its own budget; past this, proa stops waiting for the stragglers.
    pub actions_deadline: Instant,
    /// What proa still waits for besides the actions' answers.
    pub awaited: Awaited,
    /// `--shutdown-timeout`: bounds the wait for the sidecars to go, never the actions' first attempts.
    pub deadline: Instant,
    /// Once the kubelet sent SIGTERM or the Pod is being deleted: `by` is the hard end.
    pub stop: Option<Stop>,
    /// How long the kubelet lets proa run after a SIGTERM that may still come.
    pub grace: Duration,
    /// The Pod's uid, where known: a snapshot of another is a gone Pod.
    pub uid: Option<String>,
}

/// What shutdown waits for besides the actions' answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Awaited {
    /// Nothing (no regular sidecars, the watch failed, the Pod is being deleted, or the timeout passed).
    Nothing,
    /// These regular sidecars to terminate, watching the Pod with this uid.
    Sidecars { sidecars: Vec<Waited>, uid: Option<String> },
    /// These endpoints to stop answering (no-API mode), each as "endpoint (why)".
    Endpoints(Vec<String>),
}

impl State {
    /// The initial state, and the commands that start looking for readiness.
    pub fn start(config: &Config, now: Instant) -> (State, Vec<Command>) {
        let (facts, not_ready, command) = match &config.mode {
            Mode::Sidecar { .. } => {
                return (State::Running(Running::new(Facts::without_pod(config))), vec![Command::StartProgram]);
            }
            Mode::Failed(reason) => return super::stopping::start_failed(config, reason, now),
            Mode::Pod => (None, Vec::new(), Command::Watch(Watch::Readiness)),
            Mode::Endpoints(endpoints) => (
                Some(Facts::without_pod(config)),
                endpoints.iter().map(ToString::to_string).collect(),
                Command::Probe(Goal::Ready),
            ),
        };
        let deadline = config.ready_timeout.map(|t| after(now, capped("--ready-timeout", t)));
        (State::Waiting(Waiting { since: now, deadline, facts, not_ready, reasons: Vec::new() }), vec![command])
    }

    /// When the owner must wake up with `DeadlinePassed` if nothing else happens.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            State::Waiting(w) => w.deadline,
            State::ShuttingDown(s) => {
                let actions = (s.actions_left > 0).then_some(s.actions_deadline);
                let sidecars = (s.awaited != Awaited::Nothing).then_some(s.deadline);
                [actions, sidecars, s.stop.map(|stop| stop.by)].into_iter().flatten().min()
            }
            State::Running(r) => match r.quit {
                Some(Quit::Signalled { kill_at }) => Some(kill_at),
                Some(Quit::Killed) | None => None,
            },
            State::AwaitingPeers(_) | State::Done { .. } => None,
        }
    }
}

/// Advances the lifecycle by one event.
pub fn step(config: &Config, state: State, event: Event, now: Instant) -> (State, Vec<Command>) {
    match state {
        State::Waiting(w) => waiting(config, w, event, now),
        State::Running(r) => running(config, r, event, now),
        State::AwaitingPeers(p) => awaiting_peers(config, p, event, now),
        State::ShuttingDown(s) => shutting_down(config, s, event, now),
        State::Done { code } => (State::Done { code }, vec![]),
    }
}

/// `now + wait`, which can never overflow (`wait` is cut to `MAX_WAIT`).
pub fn after(now: Instant, wait: Duration) -> Instant {
    now + wait.min(MAX_WAIT)
}

/// `wait`, or `MAX_WAIT` with a log line naming `what` when it is longer.
pub fn capped(what: &str, wait: Duration) -> Duration {
    if wait > MAX_WAIT {
        log::warn!("{what} of {}s is over a year: proa waits a year at most", wait.as_secs());
    }
    wait.min(MAX_WAIT)
}

/// When proa must have exited after a SIGTERM (or a deletion) at `now`: before the kubelet's SIGKILL at
/// `now + grace`, less `EXIT_MARGIN` (a quarter of a shorter grace).
pub fn exit_by(now: Instant, grace: Duration) -> Instant {
    after(now, grace - EXIT_MARGIN.min(grace / 4))
}

/// The kubelet is stopping the Pod (a stop signal, a deletion): proa must be gone before its SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// When proa first heard of it: the kubelet gives at least its shortest grace after its own SIGTERM.
    pub since: Instant,
    /// When proa exits, whatever it still waits for: the earliest kill it knows of, less the margin.
    pub by: Instant,
}

impl Stop {
    /// A stop heard of at `now`, with the kill `grace` later.
    pub fn new(now: Instant, grace: Duration) -> Stop {
        Stop { since: now, by: exit_by(now, grace) }
    }

    /// News received at `now` that the kubelet kills within `kill_in` (a deletion's deadline; zero for a Pod
    /// already gone; `None`: no news). It never kills sooner than its shortest grace after the stop began, which
    /// may be before `now`.
    pub fn learn(self, now: Instant, kill_in: Option<Duration>) -> Stop {
        let Some(left) = kill_in else { return self };
        let kill = after(now, left).max(self.since + readiness::MIN_GRACE);
        let by = kill - EXIT_MARGIN.min((kill - self.since) / 4);
        Stop { since: self.since, by: self.by.min(by) }
    }

    /// `stop` having learnt `kill_in`; a new stop with `grace` when that is news and none had begun.
    pub fn hear(stop: Option<Stop>, kill_in: Option<Duration>, grace: Duration, now: Instant) -> Option<Stop> {
        match (stop, kill_in) {
            (None, None) => None,
            (stop, _) => Some(stop.unwrap_or_else(|| Stop::new(now, grace)).learn(now, kill_in)),
        }
    }
}

/// What a snapshot says of the kubelet's kill: within its deletion's time left (its grace period when the
/// timestamp is unreadable); at once when the Pod is already gone (a DELETED event, another uid: a forced
/// deletion); `None` when it is not being deleted.
pub fn kill_in(pod: &Pod, deleted: bool, uid: &Option<String>) -> Option<Duration> {
    if deleted || readiness::is_another_pod(pod, uid) {
        return Some(Duration::ZERO);
    }
    let deleting = pod.metadata.deletion_timestamp.is_some();
    pod.metadata.deletion_in.or_else(|| deleting.then(|| readiness::grace_period(pod)))
}

/// `kill_in` for any watch update: a 404 is a Pod already gone too.
pub fn update_kill_in(update: &Update, uid: &Option<String>) -> Option<Duration> {
    match update {
        Update::PodChanged(pod) => kill_in(pod, false, uid),
        Update::PodDeleted(pod) => kill_in(pod, true, uid),
        Update::Failed(ApiError::PodNotFound { .. }) => Some(Duration::ZERO),
        Update::Failed(_) => None,
    }
}
