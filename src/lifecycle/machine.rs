//! The lifecycle's types (DESIGN.md "What happens, in order"): the phases (`State`, each holding its own data),
//! what the owner hears (`Event`) and what it must do (`Command`). `step` (in `mod.rs`) maps one to the other;
//! each phase's transitions live in their own file. Pure: no I/O, no clock.

use std::time::{Duration, Instant};

use crate::child::{Exit, SpawnError};
use crate::direct::Order;
use crate::probe::{Goal, Update as ProbeUpdate};
use crate::readiness::Waited;
use crate::shutdown::{Outcome, Target};
use crate::watch::Update;

use super::facts::Facts;
use super::probing::Probing;
use super::stop::Stop;

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
    /// From a direct prober: `container` passed its readinessProbe during the run that had restarted
    /// `restart_count` times.
    Probed { container: String, restart_count: i64 },
    /// The owner's wait reached `State::deadline`.
    DeadlinePassed,
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
    /// Probe a waited container's readinessProbe endpoint (after stopping any earlier prober of it).
    DirectProbe(Order),
    /// Stop the direct prober of this container, or (`None`) every one.
    StopDirectProbe(Option<String>),
    /// Spawn the program (and the reaper).
    StartProgram,
    /// Log this line at info (the end of the wait, said before the program starts: one line costs microseconds).
    Say(String),
    /// Forward this signal to the program.
    Forward(i32),
    /// Read the Pod once (after a stop signal, with no watch open): its deletionTimestamp says when the kubelet
    /// kills, which may be sooner than the grace period from the signal.
    ReadPod,
    /// Send these shutdown actions (by number), the recognised sidecars' POSTs and the guessed ones (see
    /// `recognition::guesses`); each must report within `budget`.
    StartShutdown { budget: Duration, actions: Vec<usize>, recognised: Vec<Target>, guessed: Vec<Target> },
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
    /// When proa next says what it still waits for (`PROGRESS_FIRST` in, then twice as long each time).
    pub next_progress: Instant,
    /// The direct probes: which run, which passed.
    pub probing: Probing,
}

/// A long wait says what it waits for: first after this long, then after twice as long each time, up to
/// `PROGRESS_MAX` apart, so that a log shows proa alive and the container to look at, without a line per event.
pub const PROGRESS_FIRST: Duration = Duration::from_secs(10);
pub const PROGRESS_MAX: Duration = Duration::from_secs(300);

/// The data of `State::Running`.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub facts: Facts,
    /// Set once the kubelet sent SIGTERM (or SIGINT), or the Pod is being deleted.
    pub stop: Option<Stop>,
    /// The newest stop signal's, when it came while `stop` was still live: should `stop` turn out not to have been
    /// the kubelet's (proa outlives its deadline), this one may still be.
    pub newer_stop: Option<Stop>,
    /// `Mode::Sidecar`: proa was asked to stop the program.
    pub quit: Option<Quit>,
}

impl Running {
    pub fn new(facts: Facts) -> Running {
        Running { facts, stop: None, newer_stop: None, quit: None }
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
    /// A shutdown action was answered 2xx: a sidecar is stopping, and with it, maybe, the mesh proxy that carries
    /// proa's own connections to the API server.
    pub answered: bool,
    /// Since when every attempt of the shutdown watch to reach the API server has been refused or cut.
    pub unreachable_since: Option<Instant>,
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
    /// When the owner must wake up with `DeadlinePassed` if nothing else happens.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            State::Waiting(w) => Some(w.deadline.map_or(w.next_progress, |d| d.min(w.next_progress))),
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

/// Done: proa exits with `code`.
pub fn finish(code: u8) -> (State, Vec<Command>) {
    (State::Done { code }, vec![Command::Exit(code)])
}

/// Puts `first` before the commands of a transition.
pub fn with_first(first: Command, (state, commands): (State, Vec<Command>)) -> (State, Vec<Command>) {
    (state, [first].into_iter().chain(commands).collect())
}
