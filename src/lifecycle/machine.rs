//! The lifecycle as one explicit state machine (DESIGN.md "What happens, in order"):
//! Waiting → Running → ShuttingDown → Done, with readiness from the Pod (`Mode::Pod`) or from probing endpoints
//! (`Mode::Endpoints`, no-API mode). `step` is pure apart from logging: it takes the clock as a parameter,
//! performs no I/O, and returns the commands the owner loop must carry out.

use std::time::{Duration, Instant};

use crate::child::{self, Exit, SpawnError};
use crate::exit;
use crate::pod::Pod;
use crate::probe::{Endpoint, Goal, Update as ProbeUpdate};
use crate::readiness::{self, Found, Kind, RestartPolicy, Verdict, Waited};
use crate::shutdown::Outcome;
use crate::signals;
use crate::watch::Update;

/// The settings `step` needs, fixed for the whole run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--container`.
    pub container: Option<String>,
    /// proa's own arguments, to find its container.
    pub own_args: Vec<String>,
    /// `--ignore`.
    pub ignore: Vec<String>,
    pub ready_timeout: Option<Duration>,
    pub shutdown_timeout: Option<Duration>,
    pub always_shutdown: bool,
    /// How many shutdown actions `StartShutdown` sends.
    pub actions: usize,
    /// Where readiness comes from.
    pub mode: Mode,
}

/// How proa learns that the sidecars are ready, fixed for the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// From the Pod's status, through the Kubernetes API (DESIGN.md "Wait").
    Pod,
    /// No-API mode: by probing these endpoints. With no Pod, the restart policy is unknown: shutdown always runs.
    Endpoints(Vec<Endpoint>),
}

/// What proa learnt from the first Pod snapshot (the Pod's spec is immutable), and the newest resourceVersion.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub waited: Vec<Waited>,
    /// `None` in no-API mode, where nobody knows it.
    pub policy: Option<RestartPolicy>,
    pub shutdown_timeout: Duration,
    /// The resourceVersion of the newest snapshot seen while waiting: the shutdown watch resumes from it instead of
    /// reading the Pod again (`None` in no-API mode).
    pub version: Option<String>,
}

impl Facts {
    /// Works out proa's own container, the waited containers, the restart policy and the shutdown bound.
    /// Fails (exit 125) when `--container` names no container of the Pod.
    pub fn of(config: &Config, pod: &Pod) -> Result<Facts, String> {
        let own = readiness::find_own_container(pod, config.container.as_deref(), &config.own_args)?;
        if own.found == Found::FirstContainer && pod.spec.containers.len() > 1 {
            log::warn!(
                "guessing that proa runs in container {} (the first one): set --container if that is wrong",
                own.name
            );
        }
        for name in readiness::unknown_names(pod, &config.ignore) {
            log::warn!("--ignore {name}: the pod has no such container");
        }
        Ok(Facts {
            waited: readiness::waited_containers(pod, &own.name, &config.ignore),
            policy: Some(RestartPolicy::of(pod)),
            shutdown_timeout: readiness::shutdown_timeout(config.shutdown_timeout, Some(pod)),
            version: pod.metadata.resource_version.clone(),
        })
    }

    /// No-API mode's facts, known from the start: no containers, no restart policy, `--shutdown-timeout` or 30 s.
    pub fn without_pod(config: &Config) -> Facts {
        Facts {
            waited: Vec::new(),
            policy: None,
            shutdown_timeout: readiness::shutdown_timeout(config.shutdown_timeout, None),
            version: None,
        }
    }

    fn regular_sidecars(&self) -> Vec<Waited> {
        self.waited.iter().filter(|w| w.kind == Kind::Regular).cloned().collect()
    }
}

/// Whether a Pod snapshot ends the wait (ready, dead, deleted or misconfigured): the initial watcher stops there.
pub fn wait_is_over(config: &Config, pod: &Pod) -> bool {
    let Ok(own) = readiness::find_own_container(pod, config.container.as_deref(), &config.own_args) else {
        return true;
    };
    let waited = readiness::waited_containers(pod, &own.name, &config.ignore);
    !matches!(readiness::assess(pod, &waited), Verdict::Pending { .. })
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
    /// From the prober (no-API mode).
    Probe(ProbeUpdate),
    /// The owner's wait reached `State::deadline`.
    DeadlinePassed,
}

/// Orders for the owner loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Spawn the program (and the reaper).
    StartProgram,
    /// Forward this signal to the program.
    Forward(i32),
    /// Stop listening to the current watcher.
    StopWatch,
    /// Send every shutdown action.
    StartShutdown,
    /// Watch the Pod, from this resourceVersion (else after reading it), until these regular sidecars have
    /// terminated.
    WatchSidecars(Vec<Waited>, Option<String>),
    /// Stop listening to the current prober (no-API mode).
    StopProbe,
    /// Probe the endpoints until every one has stopped answering (no-API mode).
    ProbeUntilGone,
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
    Running { facts: Facts },
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

/// The data of `State::ShuttingDown`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShuttingDown {
    pub code: u8,
    pub actions_left: usize,
    /// What proa still waits for besides the actions' answers.
    pub awaited: Awaited,
    pub deadline: Instant,
}

/// What shutdown waits for besides the actions' answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Awaited {
    /// Nothing (no regular sidecars, or the watch failed): shutdown ends once every action has finished.
    Nothing,
    /// These regular sidecars to terminate, watching the Pod.
    Sidecars(Vec<Waited>),
    /// These endpoints to stop answering (no-API mode), each as "endpoint (why)".
    Endpoints(Vec<String>),
}

impl State {
    /// The initial state.
    pub fn start(config: &Config, now: Instant) -> State {
        let (facts, not_ready) = match &config.mode {
            Mode::Pod => (None, Vec::new()),
            Mode::Endpoints(endpoints) => {
                (Some(Facts::without_pod(config)), endpoints.iter().map(ToString::to_string).collect())
            }
        };
        State::Waiting(Waiting {
            since: now,
            deadline: config.ready_timeout.map(|t| now + t),
            facts,
            not_ready,
            reasons: Vec::new(),
        })
    }

    /// When the owner must wake up with `DeadlinePassed` if nothing else happens.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            State::Waiting(w) => w.deadline,
            State::ShuttingDown(s) => Some(s.deadline),
            State::Running { .. } | State::Done { .. } => None,
        }
    }
}

/// Advances the lifecycle by one event.
pub fn step(config: &Config, state: State, event: Event, now: Instant) -> (State, Vec<Command>) {
    match state {
        State::Waiting(w) => waiting(config, w, event, now),
        State::Running { facts } => running(config, facts, event, now),
        State::ShuttingDown(s) => shutting_down(s, event, now),
        State::Done { code } => (State::Done { code }, vec![]),
    }
}

fn waiting(config: &Config, mut w: Waiting, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Watch(Update::PodChanged(pod)) => {
            let mut facts = match w.facts.take() {
                Some(facts) => facts,
                None => match Facts::of(config, &pod) {
                    Ok(facts) => {
                        log_waited(&facts.waited);
                        facts
                    }
                    Err(err) => {
                        let failed = failure(err);
                        return with_first(failed, begin_shutdown(config, None, exit::PROA_FAILED, true, now));
                    }
                },
            };
            if pod.metadata.resource_version.is_some() {
                facts.version.clone_from(&pod.metadata.resource_version);
            }
            match readiness::assess(&pod, &facts.waited) {
                Verdict::Ready => {
                    if !facts.waited.is_empty() {
                        log::info!("all containers ready after {:.1}s", now.duration_since(w.since).as_secs_f64());
                    }
                    (State::Running { facts }, vec![Command::StopWatch, Command::StartProgram])
                }
                Verdict::Pending { not_ready, waiting } => {
                    for (container, reason) in &waiting {
                        if !w.reasons.contains(&(container.clone(), reason.clone())) {
                            match readiness::is_routine_waiting_reason(reason) {
                                true => log::debug!("container {container} waiting: {reason}"),
                                false => log::warn!("container {container} waiting: {reason}"),
                            }
                        }
                    }
                    w.reasons = waiting;
                    w.not_ready = not_ready;
                    w.facts = Some(facts);
                    (State::Waiting(w), vec![])
                }
                Verdict::Dead { container, exit_code, reason } => {
                    let failed = failure(format!(
                        "container {container} terminated ({reason} with exit code {exit_code}) and will not be restarted: not starting the program"
                    ));
                    with_first(failed, abort_wait(config, Some(&facts), exit::PROA_FAILED, now))
                }
                Verdict::Deleted => {
                    log::error!("the pod is being deleted: not starting the program");
                    abort_wait(config, Some(&facts), exit::signal_code(libc::SIGTERM), now)
                }
            }
        }
        Event::Watch(Update::Failed(err)) => {
            let failed = failure(err.to_string());
            with_first(failed, begin_shutdown(config, w.facts.as_ref(), exit::PROA_FAILED, false, now))
        }
        Event::Probe(ProbeUpdate::Reached(Goal::Ready)) => {
            // Only no-API mode runs a prober, and its facts are known from the start.
            let Some(facts) = w.facts.take() else { return (State::Waiting(w), vec![]) };
            log::info!("all endpoints ready after {:.1}s", now.duration_since(w.since).as_secs_f64());
            (State::Running { facts }, vec![Command::StartProgram])
        }
        Event::Probe(ProbeUpdate::Pending { goal: Goal::Ready, left }) => {
            log::debug!("not ready yet: {}", left.join(", "));
            w.not_ready = left;
            (State::Waiting(w), vec![])
        }
        Event::Signal(signal) if signals::is_stop_request(signal) => {
            log::warn!("got {} while waiting for sidecars: not starting the program", child::signal_name(signal));
            abort_wait(config, w.facts.as_ref(), exit::signal_code(signal), now)
        }
        Event::DeadlinePassed if w.deadline.is_some_and(|d| now >= d) => {
            let failed = failure(format!(
                "{} not ready after {:.1}s: {}; not starting the program",
                match config.mode {
                    Mode::Pod => "containers",
                    Mode::Endpoints(_) => "endpoints",
                },
                now.duration_since(w.since).as_secs_f64(),
                match w.not_ready.is_empty() {
                    true => "no pod status yet".to_string(),
                    false => w.not_ready.join(", "),
                }
            ));
            with_first(failed, abort_wait(config, w.facts.as_ref(), exit::READY_TIMEOUT, now))
        }
        Event::Signal(signal) => {
            log::debug!("ignoring {} while waiting for sidecars", child::signal_name(signal));
            (State::Waiting(w), vec![])
        }
        // None of these can happen before the program starts (a prober only aims at Gone during shutdown);
        // the deadline case is an early wake-up.
        Event::DeadlinePassed
        | Event::Child(_)
        | Event::SpawnFailed(_)
        | Event::Shutdown(_)
        | Event::Probe(ProbeUpdate::Reached(Goal::Gone) | ProbeUpdate::Pending { goal: Goal::Gone, .. }) => {
            (State::Waiting(w), vec![])
        }
    }
}

/// Gives up waiting: the program never starts; the watcher or prober is abandoned and shutdown begins.
fn abort_wait(config: &Config, facts: Option<&Facts>, code: u8, now: Instant) -> (State, Vec<Command>) {
    let stop = match config.mode {
        Mode::Pod => Command::StopWatch,
        Mode::Endpoints(_) => Command::StopProbe,
    };
    let (state, more) = begin_shutdown(config, facts, code, true, now);
    (state, [stop].into_iter().chain(more).collect())
}

/// Logs why proa fails with a code of its own (124, 125) and orders the same text into the termination log.
fn failure(reason: impl Into<String>) -> Command {
    let reason = reason.into();
    log::error!("{reason}");
    Command::WriteTerminationLog(reason)
}

/// Puts `first` before the commands of a transition.
fn with_first(first: Command, (state, commands): (State, Vec<Command>)) -> (State, Vec<Command>) {
    (state, [first].into_iter().chain(commands).collect())
}

fn log_waited(waited: &[Waited]) {
    if waited.is_empty() {
        log::info!("no sidecars to wait for");
    } else {
        let names: Vec<&str> = waited.iter().map(|w| w.name.as_str()).collect();
        log::info!("waiting for containers {}", names.join(", "));
    }
}

fn running(config: &Config, facts: Facts, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Signal(signal) => (State::Running { facts }, vec![Command::Forward(signal)]),
        Event::Child(Exit::Exited { code }) => {
            log::info!("program exited with code {code}");
            begin_shutdown(config, Some(&facts), code, true, now)
        }
        Event::SpawnFailed(err) => {
            log::error!("{err}");
            begin_shutdown(config, Some(&facts), err.code(), true, now)
        }
        // A late snapshot from the watcher that was just stopped, or a stray wake-up: nothing to do.
        Event::Watch(_) | Event::Shutdown(_) | Event::Probe(_) | Event::DeadlinePassed => {
            (State::Running { facts }, vec![])
        }
    }
}

/// Enters ShuttingDown, or Done when shutdown is not needed or there is nothing to do.
/// `can_watch` is false when the API just failed, so proa does not ask it again.
fn begin_shutdown(
    config: &Config,
    facts: Option<&Facts>,
    code: u8,
    can_watch: bool,
    now: Instant,
) -> (State, Vec<Command>) {
    let policy = facts.and_then(|f| f.policy);
    if let Some(policy) = policy.filter(|_| !readiness::shutdown_needed(policy, code, config.always_shutdown)) {
        log::info!(
            "leaving sidecars running: the kubelet restarts this container (restartPolicy {policy:?}, exit code {code}); set --always-shutdown to stop them anyway"
        );
        return (State::Done { code }, vec![Command::Exit(code)]);
    }
    let awaited = match &config.mode {
        Mode::Pod => match facts.map(Facts::regular_sidecars) {
            Some(sidecars) if can_watch && !sidecars.is_empty() => Awaited::Sidecars(sidecars),
            _ => Awaited::Nothing,
        },
        // With no shutdown action nothing makes an endpoint go away, and one that outlives the Pod (a database
        // elsewhere) would cost the whole timeout.
        Mode::Endpoints(_) if config.actions == 0 => Awaited::Nothing,
        Mode::Endpoints(endpoints) => Awaited::Endpoints(endpoints.iter().map(ToString::to_string).collect()),
    };
    let mut commands = Vec::new();
    if config.actions > 0 {
        commands.push(Command::StartShutdown);
    }
    match &awaited {
        Awaited::Nothing => {}
        Awaited::Sidecars(sidecars) => {
            commands.push(Command::WatchSidecars(sidecars.clone(), facts.and_then(|f| f.version.clone())));
        }
        Awaited::Endpoints(_) => commands.push(Command::ProbeUntilGone),
    }
    if commands.is_empty() {
        return (State::Done { code }, vec![Command::Exit(code)]);
    }
    let timeout =
        facts.map_or_else(|| readiness::shutdown_timeout(config.shutdown_timeout, None), |f| f.shutdown_timeout);
    log::info!("shutting down sidecars (at most {:.1}s)", timeout.as_secs_f64());
    let state =
        State::ShuttingDown(ShuttingDown { code, actions_left: config.actions, awaited, deadline: now + timeout });
    (state, commands)
}

fn shutting_down(mut s: ShuttingDown, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Shutdown(outcome) => {
            outcome.log();
            s.actions_left = s.actions_left.saturating_sub(1);
        }
        Event::Watch(Update::PodChanged(pod)) => {
            if let Awaited::Sidecars(sidecars) = &s.awaited {
                let left = readiness::sidecars_left(&pod, sidecars);
                if left.is_empty() {
                    log::info!("sidecars have exited");
                    return finish(s.code);
                }
                log::debug!("waiting for sidecars {} to exit", left.join(", "));
            }
        }
        Event::Watch(Update::Failed(err)) => {
            if let Awaited::Sidecars(_) = s.awaited {
                log::warn!("{err}; not waiting for sidecars to exit");
                s.awaited = Awaited::Nothing;
            }
        }
        Event::Probe(ProbeUpdate::Pending { goal: Goal::Gone, left }) => {
            if let Awaited::Endpoints(_) = s.awaited {
                log::debug!("waiting for endpoints to stop answering: {}", left.join(", "));
                s.awaited = Awaited::Endpoints(left);
            }
        }
        Event::Probe(ProbeUpdate::Reached(Goal::Gone)) => {
            if let Awaited::Endpoints(_) = s.awaited {
                log::info!("endpoints have stopped answering");
                return finish(s.code);
            }
        }
        Event::Signal(signal) if signals::is_stop_request(signal) => {
            log::warn!("got {} while shutting down: not waiting any longer", child::signal_name(signal));
            return finish(s.code);
        }
        Event::Signal(signal) => log::debug!("ignoring {} while shutting down", child::signal_name(signal)),
        Event::DeadlinePassed if now >= s.deadline => {
            match &s.awaited {
                Awaited::Sidecars(sidecars) => log::warn!(
                    "sidecars {} still running at the shutdown timeout: exiting anyway",
                    sidecars.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
                Awaited::Endpoints(left) => {
                    log::warn!("endpoints still answering at the shutdown timeout: {}; exiting anyway", left.join(", "))
                }
                Awaited::Nothing => log::warn!("shutdown actions unfinished at the shutdown timeout: exiting anyway"),
            }
            return finish(s.code);
        }
        // The program has already exited, so nothing from the reaper can change the code now; a prober aiming
        // at Ready is a stale one from an aborted wait.
        Event::DeadlinePassed
        | Event::Child(_)
        | Event::SpawnFailed(_)
        | Event::Probe(ProbeUpdate::Reached(Goal::Ready) | ProbeUpdate::Pending { goal: Goal::Ready, .. }) => {}
    }
    if s.awaited == Awaited::Nothing && s.actions_left == 0 {
        return finish(s.code);
    }
    (State::ShuttingDown(s), vec![])
}

fn finish(code: u8) -> (State, Vec<Command>) {
    (State::Done { code }, vec![Command::Exit(code)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::{Action, ActionError};

    fn pod(name: &str) -> Pod {
        let text = match name {
            "ready" => include_str!("../../tests/fixtures/pods/job-with-sidecars.json"),
            "starting" => include_str!("../../tests/fixtures/pods/starting.json"),
            "dead" => include_str!("../../tests/fixtures/pods/sidecar-terminated.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn gone() -> Pod {
        let mut pod = pod("ready");
        pod.status.container_statuses[1].state = serde_json::from_str(r#"{"terminated":{"exitCode":0}}"#).unwrap();
        pod
    }

    fn config(actions: usize) -> Config {
        Config {
            container: Some("job".into()),
            own_args: vec![],
            ignore: vec![],
            ready_timeout: Some(Duration::from_secs(10)),
            shutdown_timeout: None,
            always_shutdown: false,
            actions,
            mode: Mode::Pod,
        }
    }

    fn snapshot(name: &str) -> Event {
        Event::Watch(Update::PodChanged(Box::new(pod(name))))
    }

    fn envoy() -> Vec<Waited> {
        vec![Waited { name: "envoy".into(), kind: Kind::Regular }]
    }

    /// What giving up a wait for `envoy` orders, after logging `why`.
    fn aborted_in_a_pod(why: &str) -> Vec<Command> {
        let stop = [Command::StopWatch, Command::StartShutdown, Command::WatchSidecars(envoy(), Some("48213".into()))];
        [Command::WriteTerminationLog(why.into())].into_iter().chain(stop).collect()
    }

    /// Runs `events` from the start, one second apart, and returns the last state and every command.
    fn run(config: &Config, events: Vec<Event>) -> (State, Vec<Command>, Instant) {
        let t0 = Instant::now();
        let mut state = State::start(config, t0);
        let mut all = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            let (next, commands) = step(config, state, event, t0 + Duration::from_secs(i as u64));
            state = next;
            all.extend(commands);
        }
        (state, all, t0)
    }

    #[test]
    fn pending_then_ready_starts_the_program() {
        let (state, commands, _) = run(&config(1), vec![snapshot("starting")]);
        assert!(
            matches!(state, State::Waiting(Waiting { ref not_ready, .. }) if not_ready == &["envoy", "cloud-sql-proxy"])
        );
        assert!(commands.is_empty());
        let (state, commands, _) = run(&config(1), vec![snapshot("starting"), snapshot("ready")]);
        assert!(matches!(state, State::Running { .. }));
        assert_eq!(commands, [Command::StopWatch, Command::StartProgram]);
    }

    #[test]
    fn dead_sidecar_never_starts_the_program() {
        let (state, commands, t0) = run(&config(2), vec![snapshot("dead")]);
        assert_eq!(
            state,
            State::ShuttingDown(ShuttingDown {
                code: exit::PROA_FAILED,
                actions_left: 2,
                awaited: Awaited::Sidecars(envoy()),
                deadline: t0 + Duration::from_secs(45),
            })
        );
        let why =
            "container envoy terminated (Error with exit code 1) and will not be restarted: not starting the program";
        assert_eq!(commands, aborted_in_a_pod(why));
    }

    #[test]
    fn ready_timeout_is_124() {
        let config = config(1);
        let t0 = Instant::now();
        let state = State::start(&config, t0);
        let (state, commands) = step(&config, state, snapshot("starting"), t0);
        // An early wake-up changes nothing.
        let (state, commands2) = step(&config, state, Event::DeadlinePassed, t0 + Duration::from_secs(9));
        assert!(commands.is_empty() && commands2.is_empty());
        let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + Duration::from_secs(10));
        assert!(matches!(state, State::ShuttingDown(ShuttingDown { code: 124, .. })));
        let why = "containers not ready after 10.0s: envoy, cloud-sql-proxy; not starting the program";
        assert_eq!(commands, aborted_in_a_pod(why));
    }

    #[test]
    fn sigterm_before_any_pod_shuts_down_without_watching() {
        let (state, commands, _) = run(&config(1), vec![Event::Signal(libc::SIGTERM)]);
        assert!(matches!(state, State::ShuttingDown(ShuttingDown { code: 143, awaited: Awaited::Nothing, .. })));
        assert_eq!(commands, [Command::StopWatch, Command::StartShutdown]);
        let (state, _, _) = run(&config(1), vec![Event::Signal(libc::SIGHUP)]);
        assert!(matches!(state, State::Waiting(_)), "SIGHUP does not abort the wait");
    }

    #[test]
    fn api_failure_while_waiting_is_125_and_does_not_watch_again() {
        let failed = Event::Watch(Update::Failed(crate::api::ApiError::Unauthorized));
        let (state, commands, _) = run(&config(0), vec![snapshot("starting"), failed]);
        assert_eq!(state, State::Done { code: 125 });
        let why = crate::api::ApiError::Unauthorized.to_string();
        assert_eq!(commands, [Command::WriteTerminationLog(why), Command::Exit(125)]);
    }

    #[test]
    fn signals_are_forwarded_while_running() {
        let (state, commands, _) = run(&config(1), vec![snapshot("ready"), Event::Signal(libc::SIGUSR1)]);
        assert!(matches!(state, State::Running { .. }));
        assert_eq!(commands.last(), Some(&Command::Forward(libc::SIGUSR1)));
    }

    #[test]
    fn program_exit_starts_shutdown_which_ends_when_sidecars_are_gone() {
        let config = config(1);
        let events = vec![snapshot("ready"), Event::Child(Exit::Exited { code: 7 })];
        let (state, commands, _) = run(&config, events);
        assert!(matches!(state, State::ShuttingDown(ShuttingDown { code: 7, .. })));
        assert_eq!(commands[2..], [Command::StartShutdown, Command::WatchSidecars(envoy(), Some("48213".into()))]);
        let now = Instant::now();
        let (state, commands) = step(&config, state, snapshot("ready"), now);
        assert!(matches!(state, State::ShuttingDown(_)) && commands.is_empty());
        let (state, commands) = step(&config, state, Event::Watch(Update::PodChanged(Box::new(gone()))), now);
        assert_eq!((state, commands), (State::Done { code: 7 }, vec![Command::Exit(7)]));
    }

    #[test]
    fn the_shutdown_watch_resumes_from_the_newest_version_seen() {
        let mut older = pod("starting");
        older.metadata.resource_version = Some("7".into());
        let mut newer = pod("ready");
        newer.metadata.resource_version = Some("9".into());
        let events = vec![
            Event::Watch(Update::PodChanged(Box::new(older))),
            Event::Watch(Update::PodChanged(Box::new(newer))),
            Event::Child(Exit::Exited { code: 0 }),
        ];
        let (_, commands, _) = run(&config(0), events);
        assert_eq!(commands.last(), Some(&Command::WatchSidecars(envoy(), Some("9".into()))));
    }

    #[test]
    fn without_a_watch_shutdown_ends_when_the_actions_are_done() {
        let config = config(1);
        let now = Instant::now();
        let state =
            State::ShuttingDown(ShuttingDown { code: 0, actions_left: 1, awaited: Awaited::Nothing, deadline: now });
        let outcome =
            Outcome { action: Action::Get("http://x/q".into()), result: Err(ActionError::Refused { attempts: 4 }) };
        let (state, commands) = step(&config, state, Event::Shutdown(outcome), now);
        assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
    }

    #[test]
    fn shutdown_timeout_and_second_sigterm_end_the_wait_with_the_programs_code() {
        let config = config(1);
        let now = Instant::now();
        let shutting = State::ShuttingDown(ShuttingDown {
            code: 3,
            actions_left: 1,
            awaited: Awaited::Sidecars(envoy()),
            deadline: now,
        });
        let (state, _) = step(&config, shutting.clone(), Event::DeadlinePassed, now);
        assert_eq!(state, State::Done { code: 3 });
        let (state, _) = step(&config, shutting.clone(), Event::Signal(libc::SIGTERM), now);
        assert_eq!(state, State::Done { code: 3 });
        let (state, _) = step(&config, shutting, Event::Signal(libc::SIGWINCH), now);
        assert!(matches!(state, State::ShuttingDown(_)));
    }

    #[test]
    fn on_failure_leaves_sidecars_running_for_the_restart() {
        let mut restartable = pod("ready");
        restartable.spec.restart_policy = Some("OnFailure".into());
        let events =
            vec![Event::Watch(Update::PodChanged(Box::new(restartable))), Event::Child(Exit::Exited { code: 3 })];
        let (state, commands, _) = run(&config(1), events);
        assert_eq!(state, State::Done { code: 3 });
        assert_eq!(commands.last(), Some(&Command::Exit(3)));
    }

    #[test]
    fn spawn_failure_keeps_its_shell_code() {
        let failed = Event::SpawnFailed(SpawnError::NotFound { program: "nope".into() });
        let (state, _, _) = run(&config(1), vec![snapshot("ready"), failed]);
        assert!(matches!(state, State::ShuttingDown(ShuttingDown { code: 127, .. })));
    }

    #[test]
    fn nothing_to_shut_down_exits_at_once() {
        let mut config = config(0);
        config.ignore = vec!["envoy".into()];
        let (state, commands, _) = run(&config, vec![snapshot("ready"), Event::Child(Exit::Exited { code: 0 })]);
        assert_eq!(state, State::Done { code: 0 });
        assert_eq!(commands.last(), Some(&Command::Exit(0)));
    }

    #[test]
    fn wait_is_over_matches_the_verdict() {
        let config = config(0);
        assert!(!wait_is_over(&config, &pod("starting")));
        assert!(wait_is_over(&config, &pod("ready")));
        assert!(wait_is_over(&config, &pod("dead")));
    }

    // No-API mode: readiness and shutdown from probing endpoints.

    fn endpoints_config(actions: usize) -> Config {
        let mode =
            Mode::Endpoints(vec![Endpoint::Http("http://127.0.0.1:1/ready".into()), Endpoint::Tcp("db:5432".into())]);
        Config { mode, shutdown_timeout: None, ..config(actions) }
    }

    fn probe(update: ProbeUpdate) -> Event {
        Event::Probe(update)
    }

    fn pending(goal: Goal, left: &[&str]) -> Event {
        probe(ProbeUpdate::Pending { goal, left: left.iter().map(|l| l.to_string()).collect() })
    }

    fn endpoints_facts() -> Facts {
        Facts { waited: vec![], policy: None, shutdown_timeout: Duration::from_secs(30), version: None }
    }

    #[test]
    fn endpoints_mode_starts_with_every_endpoint_not_ready() {
        let config = endpoints_config(1);
        let t0 = Instant::now();
        let State::Waiting(w) = State::start(&config, t0) else { panic!("starts waiting") };
        assert_eq!(w.not_ready, ["http://127.0.0.1:1/ready", "tcp db:5432"]);
        assert_eq!(w.facts, Some(endpoints_facts()));
    }

    #[test]
    fn endpoints_ready_starts_the_program() {
        let events =
            vec![pending(Goal::Ready, &["tcp db:5432 (connection refused)"]), probe(ProbeUpdate::Reached(Goal::Ready))];
        let (state, commands, _) = run(&endpoints_config(1), events);
        assert_eq!(state, State::Running { facts: endpoints_facts() });
        assert_eq!(commands, [Command::StartProgram]);
    }

    #[test]
    fn endpoints_ready_timeout_is_124_naming_what_is_missing() {
        let config = endpoints_config(1);
        let t0 = Instant::now();
        let state = State::start(&config, t0);
        let (state, _) = step(&config, state, pending(Goal::Ready, &["tcp db:5432 (connection refused)"]), t0);
        let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + Duration::from_secs(10));
        assert_eq!(
            state,
            State::ShuttingDown(ShuttingDown {
                code: 124,
                actions_left: 1,
                awaited: Awaited::Endpoints(vec!["http://127.0.0.1:1/ready".into(), "tcp db:5432".into()]),
                deadline: t0 + Duration::from_secs(40),
            })
        );
        let why = "endpoints not ready after 10.0s: tcp db:5432 (connection refused); not starting the program";
        assert_eq!(
            commands,
            [
                Command::WriteTerminationLog(why.into()),
                Command::StopProbe,
                Command::StartShutdown,
                Command::ProbeUntilGone
            ]
        );
    }

    #[test]
    fn endpoints_mode_always_shuts_down_and_probes_until_gone() {
        // Unknown restart policy: even a failed program (which OnFailure would restart) shuts the sidecars down.
        let events = vec![probe(ProbeUpdate::Reached(Goal::Ready)), Event::Child(Exit::Exited { code: 3 })];
        let (state, commands, _) = run(&endpoints_config(2), events);
        assert!(matches!(
            state,
            State::ShuttingDown(ShuttingDown { code: 3, actions_left: 2, awaited: Awaited::Endpoints(_), .. })
        ));
        assert_eq!(commands[1..], [Command::StartShutdown, Command::ProbeUntilGone]);
    }

    #[test]
    fn endpoints_gone_ends_shutdown_even_with_actions_unanswered() {
        let config = endpoints_config(2);
        let now = Instant::now();
        let awaited = Awaited::Endpoints(vec!["tcp db:5432".into()]);
        let shutting = State::ShuttingDown(ShuttingDown { code: 3, actions_left: 2, awaited, deadline: now });
        let (state, commands) =
            step(&config, shutting.clone(), pending(Goal::Gone, &["tcp db:5432 (still answering)"]), now);
        let still = Awaited::Endpoints(vec!["tcp db:5432 (still answering)".into()]);
        assert_eq!(
            (state, commands),
            (State::ShuttingDown(ShuttingDown { code: 3, actions_left: 2, awaited: still, deadline: now }), vec![])
        );
        let (state, commands) = step(&config, shutting, probe(ProbeUpdate::Reached(Goal::Gone)), now);
        assert_eq!((state, commands), (State::Done { code: 3 }, vec![Command::Exit(3)]));
    }

    #[test]
    fn a_stale_ready_prober_cannot_end_shutdown() {
        let config = endpoints_config(1);
        let now = Instant::now();
        let awaited = Awaited::Endpoints(vec!["tcp db:5432".into()]);
        let shutting = State::ShuttingDown(ShuttingDown { code: 124, actions_left: 0, awaited, deadline: now });
        let (state, commands) = step(&config, shutting.clone(), probe(ProbeUpdate::Reached(Goal::Ready)), now);
        assert_eq!((state, commands), (shutting.clone(), vec![]));
        let (state, _) = step(&config, shutting, Event::DeadlinePassed, now);
        assert_eq!(state, State::Done { code: 124 });
    }

    #[test]
    fn endpoints_without_actions_are_not_awaited() {
        let events = vec![probe(ProbeUpdate::Reached(Goal::Ready)), Event::Child(Exit::Exited { code: 0 })];
        let (state, commands, _) = run(&endpoints_config(0), events);
        assert_eq!(state, State::Done { code: 0 });
        assert_eq!(commands.last(), Some(&Command::Exit(0)));
    }

    #[test]
    fn probes_mean_nothing_in_the_wrong_phase() {
        // Pod mode runs no prober; a Gone report while waiting or a late one while running changes nothing.
        let (state, commands, _) = run(&config(1), vec![probe(ProbeUpdate::Reached(Goal::Ready))]);
        assert!(matches!(state, State::Waiting(Waiting { facts: None, .. })) && commands.is_empty());
        let (state, commands, _) = run(&endpoints_config(1), vec![probe(ProbeUpdate::Reached(Goal::Gone))]);
        assert!(matches!(state, State::Waiting(_)) && commands.is_empty());
        let events = vec![probe(ProbeUpdate::Reached(Goal::Ready)), pending(Goal::Ready, &["x"])];
        let (state, commands, _) = run(&endpoints_config(1), events);
        assert!(matches!(state, State::Running { .. }) && commands == [Command::StartProgram]);
    }

    #[test]
    fn a_signal_while_probing_stops_the_prober() {
        let (state, commands, _) = run(&endpoints_config(1), vec![Event::Signal(libc::SIGTERM)]);
        assert!(matches!(state, State::ShuttingDown(ShuttingDown { code: 143, .. })));
        assert_eq!(commands, [Command::StopProbe, Command::StartShutdown, Command::ProbeUntilGone]);
    }
}
