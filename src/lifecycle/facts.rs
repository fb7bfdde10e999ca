//! What a Pod snapshot means (DESIGN.md "Wait", "Shut down"): the facts the first one fixes (`Facts`), and the
//! one function for each question a later one answers (is the wait over? which sidecars or peers are left? when
//! does the kubelet kill?), asked alike by the owner and by the watcher that decides when to stop. Pure apart from
//! logging what the first snapshot taught.

use std::time::Duration;

use crate::api::ApiError;
use crate::direct::{self, Way};
use crate::pod::Pod;
use crate::readiness::{self, Found, Kind, OwnContainer, RestartPolicy, Restarted, Verdict, Waited};
use crate::recognition::{self, Plan};
use crate::watch::Update;

use super::config::{Config, StartError};
use super::stop::capped;

/// What proa learnt from the Pod: fixed by the first snapshot (the spec is immutable), updated by later ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The Pod's uid, pinned at the first read: a snapshot with another one is another Pod of the same name.
    pub uid: Option<String>,
    pub waited: Vec<Waited>,
    /// The waited containers proa probes itself (`--direct-probe`), with their readinessProbe.
    pub probes: Vec<direct::Spec>,
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
    /// The waited regular sidecars no action names: those recognised (with the action they get, sent with the
    /// others), and those nothing will stop (DESIGN.md step 4, "Recognised sidecars").
    pub plan: Plan,
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
    pub fn of(config: &Config, pod: &Pod) -> Result<Facts, StartError> {
        let Pin { own, peers, waited, uid } = Pin::of(config, pod)?;
        if own.found == Found::FirstContainer && pod.spec.containers.len() > 1 {
            log::warn!(
                "guessing that proa runs in container {} (the first one): set --container if that is wrong",
                own.name
            );
        }
        for name in readiness::unknown_names(pod, &config.ignore) {
            log::warn!("--ignore {name}: the pod has no such container");
        }
        for name in peers.all.iter().filter(|name| !config.peers.contains(name)) {
            log::info!("container {name} runs proa too: a peer, not waited for");
        }
        let (sends, skips) = choose_actions(config, pod, &waited);
        let probes = match config.direct_probe {
            true => ways(pod, &waited).into_iter().filter_map(|(_, way)| way.into_spec()).collect(),
            false => Vec::new(),
        };
        let plan = recognise(config, pod, &waited);
        let mut facts = Facts {
            uid,
            waited,
            probes,
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
            plan,
            peers: peers.all,
            peers_left: Vec::new(),
            stopper: peers.stopper,
        };
        facts.observe(pod);
        Ok(facts)
    }

    /// Whether this proa may stop the sidecars at all: it is the stopper, and the kubelet does not restart its
    /// container after every exit (or `--always-shutdown`). The start-up plan and `--check` say what the run will do
    /// from this; the ending asks `readiness::shutdown_needed` of the exit itself. Both ask `RestartPolicy::restarts`.
    pub fn may_stop_sidecars(&self, always_shutdown: bool) -> bool {
        let restarted_always = self.policy.as_ref().is_some_and(|p| p.restarted_exits() == Restarted::Always);
        self.stopper.is_none() && (always_shutdown || !restarted_always)
    }

    /// No-API mode's facts, known from the start: no containers, no restart policy, `--shutdown-timeout` or 30 s,
    /// and the kubelet's default grace unless `--shutdown-timeout` says more.
    pub fn without_pod(config: &Config) -> Facts {
        let timeout = capped("the shutdown timeout", readiness::shutdown_timeout(config.shutdown_timeout, None));
        Facts {
            uid: None,
            waited: Vec::new(),
            probes: Vec::new(),
            policy: None,
            shutdown_timeout: timeout,
            grace: timeout.max(readiness::MIN_GRACE),
            version: None,
            stopped: Vec::new(),
            sends: (0..config.actions.len()).collect(),
            skips: Vec::new(),
            plan: Plan::default(),
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

/// What the first snapshot fixes for the wait, worked out alike by the owner (`Facts::of`) and the initial watcher
/// (`wait_is_over`): so that both judge every later snapshot by the same containers and uid.
struct Pin {
    own: OwnContainer,
    peers: Peers,
    waited: Vec<Waited>,
    uid: Option<String>,
}

impl Pin {
    /// Fails (exit 125) when `--container` names no container of the Pod, or a `--peer` is refused.
    fn of(config: &Config, pod: &Pod) -> Result<Pin, StartError> {
        let own =
            readiness::find_own_container(pod, config.container.as_deref(), &config.own_args, config.program_words)
                .map_err(StartError::OwnContainer)?;
        let peers = Peers::of(config, pod, &own).map_err(StartError::Peer)?;
        let waited = waited(config, pod, &own, &peers.all);
        Ok(Pin { own, peers, waited, uid: pod.metadata.uid.clone() })
    }
}

/// What a snapshot means for the wait (DESIGN.md "Wait").
#[derive(Debug, Clone, PartialEq)]
pub enum WaitVerdict {
    /// The Pod is being deleted, or is gone (a DELETED event, another uid than the one pinned).
    Gone,
    /// The Pod is there: ready, still pending, or with a waited container dead for good.
    Seen(Verdict),
}

impl WaitVerdict {
    /// Whether the wait ends on this snapshot (the initial watcher stops there too).
    pub fn is_over(&self) -> bool {
        !matches!(self, WaitVerdict::Seen(Verdict::Pending { .. }))
    }
}

/// The one judgement of a snapshot while waiting, by the uid and the waited containers the first one fixed.
pub fn judge_wait(uid: &Option<String>, waited: &[Waited], pod: &Pod, deleted: bool) -> WaitVerdict {
    match deleted || readiness::is_gone(pod, uid) {
        true => WaitVerdict::Gone,
        false => WaitVerdict::Seen(readiness::assess(pod, waited)),
    }
}

/// The initial watcher's stop condition: the first snapshot is pinned as the owner pins it, and each is judged by
/// `judge_wait`, as the owner judges it. A first snapshot the owner refuses (no such `--container`, a refused
/// `--peer`) ends the wait at once.
pub fn wait_is_over(config: Config) -> impl FnMut(&Pod, bool) -> bool + Send + 'static {
    let mut pinned: Option<Option<Pin>> = None;
    move |pod, deleted| match pinned.get_or_insert_with(|| Pin::of(&config, pod).ok()) {
        None => true,
        Some(pin) => judge_wait(&pin.uid, &pin.waited, pod, deleted).is_over(),
    }
}

/// What a snapshot says while proa waits for containers to end (the sidecars at shutdown, the peers before it).
#[derive(Debug, Clone, PartialEq)]
pub enum Left {
    /// The Pod is being deleted or is gone: the kubelet stops every container itself.
    Gone,
    /// These have not ended yet (none: the wait is over).
    These(Vec<String>),
}

impl Left {
    /// Whether the wait ends on this snapshot (the watcher stops there too).
    pub fn is_over(&self) -> bool {
        match self {
            Left::Gone => true,
            Left::These(left) => left.is_empty(),
        }
    }
}

/// The one judgement of a snapshot while shutdown waits for the regular `sidecars` to terminate.
pub fn sidecars_left(pod: &Pod, deleted: bool, uid: &Option<String>, sidecars: &[Waited]) -> Left {
    match deleted || readiness::is_gone(pod, uid) {
        true => Left::Gone,
        false => Left::These(readiness::sidecars_left(pod, sidecars)),
    }
}

/// The one judgement of a snapshot while the stopper waits for its `peers` to terminate for good.
pub fn peers_left(pod: &Pod, deleted: bool, uid: &Option<String>, peers: &[String]) -> Left {
    match deleted || readiness::is_gone(pod, uid) {
        true => Left::Gone,
        false => Left::These(readiness::peers_left(pod, peers)),
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
    /// sidecar, or one a shutdown action stops (each side would wait for the other); and on any `--peer` when proa
    /// only guessed its own container. proa's own container is never its own peer (a `PROA_PEER` shared by every main
    /// container names it too).
    fn of(config: &Config, pod: &Pod, own: &OwnContainer) -> Result<Peers, String> {
        // A container a shutdown action stops is a sidecar, whatever it runs: a proa on its side (`--serve-quit`)
        // may have its role from an `envFrom` that proa cannot see.
        let stopped = |name: &String| config.actions.iter().any(|a| a.container.as_ref() == Some(name));
        // With a guessed own container, a peer list shared by the main containers may name proa's real one.
        if own.found == Found::FirstContainer && !config.peers.is_empty() && pod.spec.containers.len() > 1 {
            return Err(format!(
                "--peer {} with proa's own container only guessed ({}, the first): set --container (PROA_CONTAINER), so that proa never waits for itself",
                config.peers.join(" "),
                own.name
            ));
        }
        let mine = |name: &String| *name == own.name;
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

/// The containers proa waits for: all but its own, the ignored ones and the peers, plus the native sidecars.
fn waited(config: &Config, pod: &Pod, own: &OwnContainer, peers: &[String]) -> Vec<Waited> {
    let not_waited: Vec<String> = config.ignore.iter().chain(peers).cloned().collect();
    readiness::waited_containers(pod, &own.name, &not_waited)
}

/// How proa learns that each waited container is ready (`direct::way`), in order.
pub fn ways(pod: &Pod, waited: &[Waited]) -> Vec<(String, Way)> {
    waited.iter().map(|w| (w.name.clone(), direct::way(pod, w))).collect()
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

/// The waited regular sidecars that no action names: which proa recognises, and which nothing will stop. An
/// unnamed action or a kill may stop any of them: then nothing is recognised nor warned about.
fn recognise(config: &Config, pod: &Pod, waited: &[Waited]) -> Plan {
    let named: Vec<&str> = config.actions.iter().filter_map(|a| a.container.as_deref()).collect();
    let blanket = config.actions.iter().any(|a| a.container.is_none());
    recognition::plan(pod, waited, &named, blanket, config.recognise)
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
        Update::Failed(_) | Update::Retrying { .. } | Update::Reached => None,
    }
}
