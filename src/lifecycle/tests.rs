//! Table tests of `machine::step`: (state, event, now) → (state, commands), on real Pod JSON fixtures.

use std::time::{Duration, Instant};

use super::config::*;
use super::facts::*;
use super::machine::*;
use super::step;
use super::stop::*;
use crate::api::ApiError;
use crate::child::{Exit, SpawnError};
use crate::pod::Pod;
use crate::probe::{Endpoint, Goal, Update as ProbeUpdate};
use crate::readiness::{Kind, Waited};
use crate::shutdown::{Action, ActionError, Done, Outcome, Target};
use crate::watch::Update;

const UID: &str = "0b5f0e53-8d0a-4a53-9b9e-3f1a0f6f2c11";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn pod(name: &str) -> Pod {
    let text = match name {
        "ready" => include_str!("../../tests/fixtures/pods/job-with-sidecars.json"),
        "starting" => include_str!("../../tests/fixtures/pods/starting.json"),
        "dead" => include_str!("../../tests/fixtures/pods/sidecar-terminated.json"),
        "istio" => include_str!("../../tests/fixtures/pods/istio-regular.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

/// The ready Pod with envoy terminated.
fn gone() -> Pod {
    let mut pod = pod("ready");
    pod.status.container_statuses[1].state = serde_json::from_str(r#"{"terminated":{"exitCode":0}}"#).unwrap();
    pod
}

fn config(actions: usize) -> Config {
    Config {
        container: Some("job".into()),
        own_args: vec![],
        program_words: 1,
        ignore: vec![],
        ready_timeout: Some(Duration::from_secs(10)),
        run_on_ready_timeout: false,
        shutdown_timeout: None,
        always_shutdown: false,
        direct_probe: false,
        actions: vec![unnamed(); actions],
        peers: vec![],
        recognise: true,
        mode: Mode::Pod,
    }
}

fn unnamed() -> ActionTarget {
    ActionTarget { label: "GET http://x/q".into(), container: None, kill: false }
}

fn named(container: &str) -> ActionTarget {
    ActionTarget { label: format!("POST http://x/{container}"), container: Some(container.into()), kill: false }
}

fn changed(pod: Pod) -> Event {
    Event::Watch(Update::PodChanged(Box::new(pod)))
}

fn snapshot(name: &str) -> Event {
    changed(pod(name))
}

fn envoy() -> Vec<Waited> {
    vec![Waited { name: "envoy".into(), kind: Kind::Regular }]
}

fn watch_envoy() -> Command {
    Command::Watch(Watch::SidecarsGone { sidecars: envoy(), from: Some("48213".into()), uid: Some(UID.into()) })
}

fn action() -> Action {
    Action::Get(Target { url: "http://x/q".into(), container: None })
}

fn answered() -> Event {
    Event::Shutdown(Outcome { action: action(), result: Ok(Done::Answered(200)) })
}

/// Sends every one of `n` actions within `budget` seconds.
fn start(budget: f64, n: usize) -> Command {
    Command::StartShutdown { budget: secs(budget), actions: (0..n).collect(), recognised: vec![], guessed: vec![] }
}

fn exited(code: u8) -> Event {
    Event::Child(Exit::Exited { code })
}

/// Runs `events` from the start, at the given offsets from t0, and returns the last state and every command
/// (the start's included) but the log lines (`Command::Say`).
fn run_at(config: &Config, events: Vec<(f64, Event)>) -> (State, Vec<Command>, Instant) {
    let t0 = Instant::now();
    let (mut state, mut all) = State::start(config, t0);
    for (at, event) in events {
        let (next, commands) = step(config, state, event, t0 + secs(at));
        state = next;
        all.extend(commands.into_iter().filter(|c| !matches!(c, Command::Say(_))));
    }
    (state, all, t0)
}

/// Runs `events` one second apart and returns the commands after the start's.
fn run(config: &Config, events: Vec<Event>) -> (State, Vec<Command>, Instant) {
    let (state, all, t0) = run_at(config, events.into_iter().enumerate().map(|(i, e)| (i as f64, e)).collect());
    (state, all[1..].to_vec(), t0)
}

fn shutting(state: &State) -> &ShuttingDown {
    match state {
        State::ShuttingDown(s) => s,
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
}

/// The reason written to the termination log, if any command wrote one.
fn termination_log(commands: &[Command]) -> Option<&str> {
    commands.iter().find_map(|c| match c {
        Command::WriteTerminationLog(why) => Some(why.as_str()),
        _ => None,
    })
}

#[test]
fn every_way_to_124_or_125_writes_the_termination_log() {
    let t0 = Instant::now();
    let text = "why".to_string();
    let start_errors = [
        StartError::Signals(text.clone()),
        StartError::Kill(text.clone()),
        StartError::Endpoints(text.clone()),
        StartError::ServeQuit(text.clone()),
        StartError::QuitThread(text.clone()),
        StartError::Cluster(text.clone()),
        StartError::Api(text.clone()),
        StartError::OwnContainer(text.clone()),
        StartError::Peer(text),
    ];
    for err in start_errors {
        let failed = Config { mode: Mode::Failed(err.clone()), ..config(0) };
        let (state, commands) = State::start(&failed, t0);
        assert_eq!(termination_log(&commands), Some(err.to_string().as_str()), "{err:?}");
        // A Pod never read gets the guessed shutdown requests first (issue 28); the code is 125 either way.
        let code = match state {
            State::Done { code } => code,
            State::ShuttingDown(s) => s.code,
            other => panic!("{err:?}: {other:?}"),
        };
        assert_eq!(code, 125, "{err:?}");
    }
    // Once the program was to run: a fork that failed (the Pod's pids limit), a status something else reaped.
    let config = config(0);
    let fork = std::io::Error::from_raw_os_error(libc::EAGAIN);
    let spawn_failed = Event::SpawnFailed(SpawnError::Failed { program: "job".into(), err: fork });
    for (event, why) in [(spawn_failed, "cannot start job"), (Event::Child(Exit::Lost), "exit status was lost")] {
        let (state, commands, _) = run(&config, vec![snapshot("ready"), event]);
        assert!(termination_log(&commands).is_some_and(|log| log.contains(why)), "{why}: {commands:?}");
        assert_eq!(shutting(&state).code, 125, "{why}: then the sidecars are stopped as after any ending");
    }
    // A program that is not there is the program's failure, as a shell says it: 127, nothing of proa's to log.
    let not_found = Event::SpawnFailed(SpawnError::NotFound { program: "job".into() });
    let (state, commands, _) = run(&config, vec![snapshot("ready"), not_found]);
    assert_eq!((shutting(&state).code, termination_log(&commands)), (127, None));
}

#[test]
fn the_start_watches_the_pod() {
    let (state, commands) = State::start(&config(1), Instant::now());
    assert!(matches!(state, State::Waiting(_)));
    assert_eq!(commands, [Command::Watch(Watch::Readiness)]);
}

#[test]
fn a_failed_start_sends_only_the_http_actions_then_exits_125() {
    let why = StartError::Cluster("no API: KUBERNETES_SERVICE_PORT".into());
    let mut failed = Config { mode: Mode::Failed(why), ..config(3) };
    failed.actions[1].kill = true;
    let budget = crate::shutdown::budget(Duration::from_secs(30));
    let (state, commands, t0) = run_at(&failed, vec![(0.0, answered())]);
    assert_eq!(
        commands,
        [
            Command::WriteTerminationLog("no API: KUBERNETES_SERVICE_PORT".into()),
            Command::StartShutdown { budget, actions: vec![0, 2], recognised: vec![], guessed: vec![] },
        ]
    );
    let s = shutting(&state);
    assert_eq!((s.code, s.actions_left, &s.awaited), (125, 1, &Awaited::Nothing));
    // A stop signal cuts the wait to the kubelet's shortest grace, less the margin; nothing reads the Pod.
    let (state, commands) = step(&failed, state, Event::Signal(libc::SIGTERM), t0 + secs(1.0));
    assert_eq!((commands, shutting(&state).stop.map(|stop| stop.by)), (vec![], Some(t0 + secs(2.5))));
    assert_eq!(step(&failed, state, answered(), t0 + secs(2.0)).0, State::Done { code: 125 });
    // With no action to send, proa exits at once.
    let none = Config { mode: Mode::Failed(StartError::Signals("bad".into())), ..config(0) };
    let why = "cannot handle signals: bad".to_string();
    assert_eq!(State::start(&none, t0).1, [Command::WriteTerminationLog(why), Command::Exit(125)]);
}

#[test]
fn pending_then_ready_starts_the_program() {
    let (state, commands, _) = run(&config(1), vec![snapshot("starting")]);
    assert!(
        matches!(state, State::Waiting(Waiting { ref not_ready, .. }) if not_ready == &["envoy", "cloud-sql-proxy"])
    );
    assert!(commands.is_empty());
    let (state, commands, _) = run(&config(1), vec![snapshot("starting"), snapshot("ready")]);
    assert!(matches!(state, State::Running(Running { stop: None, .. })));
    assert_eq!(commands, [Command::StopWatch, Command::StartProgram]);
    // The news of it is logged before the program starts, so that the log reads in the order things happened.
    let (state, _, t0) = run_at(&config(1), vec![(0.0, snapshot("starting"))]);
    let (_, commands) = step(&config(1), state, snapshot("ready"), t0 + secs(1.25));
    let said = Command::Say("all containers ready after 1.3s".into());
    assert_eq!(commands, [Command::StopWatch, said, Command::StartProgram]);
}

#[test]
fn a_sidecar_dead_in_the_first_read_is_not_waited_for() {
    // envoy terminated for good: the program never starts, and shutdown judges the same snapshot, so it waits
    // only for the actions' answers, not for a sidecar already gone.
    let (state, commands, t0) = run(&config(2), vec![snapshot("dead")]);
    let why = "container envoy terminated (Error with exit code 1) and will not be restarted: not starting the program";
    assert_eq!(commands, [Command::WriteTerminationLog(why.into()), Command::StopWatch, start(45.0, 2)]);
    assert_eq!(
        state,
        State::ShuttingDown(ShuttingDown {
            code: 125,
            actions_left: 2,
            actions_deadline: t0 + secs(45.5),
            awaited: Awaited::Nothing,
            deadline: t0 + secs(45.0),
            stop: None,
            grace: secs(45.0),
            uid: Some(UID.into()),
            answered: false,
            unreachable_since: None,
        })
    );
    let (state, _) = step(&config(2), state, answered(), t0);
    let (state, commands) = step(&config(2), state, answered(), t0);
    assert_eq!((state, commands), (State::Done { code: 125 }, vec![Command::Exit(125)]));
}

#[test]
fn ready_timeout_is_124_and_waits_for_the_running_sidecars() {
    let config = config(1);
    let t0 = Instant::now();
    let (state, _) = State::start(&config, t0);
    let (state, commands) = step(&config, state, snapshot("starting"), t0);
    // An early wake-up changes nothing.
    let (state, commands2) = step(&config, state, Event::DeadlinePassed, t0 + secs(9.0));
    assert!(commands.is_empty() && commands2.is_empty());
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + secs(10.0));
    assert_eq!(shutting(&state).code, 124);
    assert_eq!(shutting(&state).awaited, Awaited::Sidecars { sidecars: envoy(), uid: Some(UID.into()) });
    let why = "containers not ready after 10.0s: envoy, cloud-sql-proxy; not starting the program";
    assert_eq!(
        commands,
        [Command::WriteTerminationLog(why.into()), Command::StopWatch, start(45.0, 1), watch_envoy(),]
    );
}

#[test]
fn sigterm_while_waiting_shuts_down_without_waiting_for_sidecars() {
    let (state, commands, t0) = run(&config(1), vec![Event::Signal(libc::SIGTERM)]);
    // The grace period is unknown before the first read: the kubelet's 2 s minimum, less a quarter, which no
    // deletion can shorten.
    assert_eq!(commands, [Command::StopWatch, start(1.5, 1)]);
    let s = shutting(&state);
    assert_eq!((s.code, &s.awaited, s.stop.map(|stop| stop.by)), (143, &Awaited::Nothing, Some(t0 + secs(1.5))));
    // Once the spec's 45 s are known, the Pod is read again for the deletion's own deadline.
    let (_, commands, _) = run(&config(1), vec![snapshot("starting"), Event::Signal(libc::SIGTERM)]);
    assert_eq!(commands[commands.len() - 3..], [Command::StopWatch, start(44.0, 1), Command::ReadPod]);
    let (state, _, _) = run(&config(1), vec![Event::Signal(libc::SIGHUP)]);
    assert!(matches!(state, State::Waiting(_)), "SIGHUP does not abort the wait");
}

#[test]
fn api_failure_while_waiting_is_125_and_does_not_watch_again() {
    let failed = Event::Watch(Update::Failed(ApiError::Unauthorized));
    let (state, commands, _) = run(&config(0), vec![snapshot("starting"), failed]);
    assert_eq!(state, State::Done { code: 125 });
    let why = ApiError::Unauthorized.to_string();
    assert_eq!(commands, [Command::WriteTerminationLog(why), Command::StopWatch, Command::Exit(125)]);
    let (state, commands, _) =
        run(&config(1), vec![snapshot("starting"), Event::Watch(Update::Failed(ApiError::TooLarge))]);
    assert_eq!(shutting(&state).awaited, Awaited::Nothing);
    assert_eq!(commands[1..], [Command::StopWatch, start(45.0, 1)]);
}

#[test]
fn signals_are_forwarded_while_running() {
    let (state, commands, _) = run(&config(1), vec![snapshot("ready"), Event::Signal(libc::SIGUSR1)]);
    assert!(matches!(state, State::Running(Running { stop: None, .. })));
    assert_eq!(commands.last(), Some(&Command::Forward(libc::SIGUSR1)));
}

#[test]
fn program_exit_starts_shutdown_which_ends_when_sidecars_are_gone_and_actions_answered() {
    let config = config(1);
    let (state, commands, t0) = run(&config, vec![snapshot("ready"), exited(7)]);
    assert_eq!(shutting(&state).code, 7);
    assert_eq!(commands[2..], [start(45.0, 1), watch_envoy()]);
    let now = t0 + secs(2.0);
    let (state, commands) = step(&config, state, snapshot("ready"), now);
    assert!(matches!(state, State::ShuttingDown(_)) && commands.is_empty());
    let (state, commands) = step(&config, state, changed(gone()), now);
    assert_eq!(shutting(&state).awaited, Awaited::Nothing, "the sidecar is gone; the action has not answered");
    assert!(commands.is_empty());
    let (state, commands) = step(&config, state, answered(), now);
    assert_eq!((state, commands), (State::Done { code: 7 }, vec![Command::Exit(7)]));
}

#[test]
fn the_shutdown_watch_resumes_from_the_newest_version_seen() {
    let mut older = pod("starting");
    older.metadata.resource_version = Some("7".into());
    let mut newer = pod("ready");
    newer.metadata.resource_version = Some("9".into());
    let (_, commands, _) = run(&config(0), vec![changed(older), changed(newer), exited(0)]);
    let watch = Watch::SidecarsGone { sidecars: envoy(), from: Some("9".into()), uid: Some(UID.into()) };
    assert_eq!(commands.last(), Some(&Command::Watch(watch)));
}

#[test]
fn a_shutdown_timeout_of_zero_still_waits_for_every_first_attempt() {
    let mut config = config(2);
    config.shutdown_timeout = Some(Duration::ZERO);
    let (state, commands, t0) = run_at(&config, vec![(0.0, snapshot("ready")), (1.0, exited(3))]);
    assert_eq!(commands[3..], [start(1.0, 2), watch_envoy()]);
    let t1 = t0 + secs(1.0);
    assert_eq!(state.deadline(), Some(t1), "the wait for the sidecars is bounded at once");
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t1);
    assert_eq!(commands, [Command::StopWatch]);
    let s = shutting(&state);
    assert_eq!((s.actions_left, &s.awaited), (2, &Awaited::Nothing), "both actions are still awaited");
    assert_eq!(state.deadline(), Some(t1 + secs(1.5)), "each action's own budget bounds its wait");
    let (state, _) = step(&config, state, answered(), t1 + secs(0.01));
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t1 + secs(1.5));
    assert_eq!((state, commands), (State::Done { code: 3 }, vec![Command::Exit(3)]), "a hung action is let go");
}

#[test]
fn a_sigterm_while_running_means_no_wait_for_sidecars_after_the_program() {
    // The kubelet stops every container itself and reports none terminated before proa's own.
    let config = config(1);
    let events = vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGTERM)), (4.0, exited(0))];
    let (state, commands, t0) = run_at(&config, events);
    let exit_by = t0 + secs(1.0 + 45.0 - 1.0);
    // No API request while the program runs: the Pod is read for its deletion's deadline once it has exited.
    assert_eq!(commands[3..], [Command::Forward(libc::SIGTERM), start(41.0, 1), Command::ReadPod]);
    let s = shutting(&state);
    assert_eq!((s.code, &s.awaited, s.stop.map(|stop| stop.by)), (0, &Awaited::Nothing, Some(exit_by)));
    let (state, commands) = step(&config, state, answered(), t0 + secs(4.1));
    assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
}

#[test]
fn an_action_still_out_at_the_kubelets_deadline_is_let_go() {
    let config = config(1);
    let events = vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGTERM)), (4.0, exited(0))];
    let (state, _, t0) = run_at(&config, events);
    let exit_by = t0 + secs(45.0);
    assert_eq!(state.deadline(), Some(exit_by));
    let (state, commands) = step(&config, state, Event::DeadlinePassed, exit_by);
    assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
}

#[test]
fn a_program_that_outlives_a_stop_signals_grace_gets_the_normal_shutdown() {
    // proa alive past the deadline was not being stopped (a `kill -QUIT` for a thread dump, a stray SIGINT): the
    // actions go and the sidecars are awaited, the watch showing a deletion if there is one.
    let config = config(1);
    let events = vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGQUIT)), (60.0, exited(0))];
    let (state, commands, _) = run_at(&config, events);
    let s = shutting(&state);
    assert!(matches!((&s.awaited, s.stop), (Awaited::Sidecars { .. }, None)), "{s:?}");
    assert!(matches!(commands[commands.len() - 2..], [Command::StartShutdown { .. }, Command::Watch(_)]));
}

#[test]
fn a_program_that_ends_between_the_deadline_and_the_kill_exits_at_once_with_its_code() {
    // SIGTERM at 1 s, 45 s grace: proa's deadline is 45 s, the kubelet's SIGKILL 46 s. A program ending at 45.5 s is
    // still being stopped: no shutdown wait, its own code (review of issue 26).
    let config = config(1);
    let events = vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGTERM)), (45.5, exited(7))];
    let (state, commands, _) = run_at(&config, events);
    assert_eq!((state, commands.last()), (State::Done { code: 7 }, Some(&Command::Exit(7))));
    // Past the kill by STALE_AFTER, nothing was stopping it: the normal shutdown.
    let events = vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGTERM)), (48.0, exited(7))];
    let (state, _, _) = run_at(&config, events);
    assert!(matches!(shutting(&state).awaited, Awaited::Sidecars { .. }));
}

#[test]
fn a_stop_signal_after_a_stray_one_is_the_kubelets_own() {
    // A stray SIGQUIT at 1 s, the kubelet's SIGTERM at 30 s (45 s grace): the program ends at 50 s, past the first
    // deadline and within the second, so the Pod is stopping.
    let config = config(1);
    let events = vec![
        (0.0, snapshot("ready")),
        (1.0, Event::Signal(libc::SIGQUIT)),
        (30.0, Event::Signal(libc::SIGTERM)),
        (50.0, exited(143)),
    ];
    let (state, commands, t0) = run_at(&config, events);
    let s = shutting(&state);
    assert_eq!((&s.awaited, s.stop.map(|stop| stop.by)), (&Awaited::Nothing, Some(t0 + secs(30.0 + 44.0))));
    assert_eq!(commands.last(), Some(&Command::ReadPod));
}

#[test]
fn a_second_sigterm_while_shutting_down_ends_the_wait_for_sidecars() {
    let config = config(1);
    let (state, _, t0) = run(&config, vec![snapshot("ready"), exited(3)]);
    let (state, commands) = step(&config, state, Event::Signal(libc::SIGTERM), t0 + secs(5.0));
    assert_eq!(commands, [Command::StopWatch, Command::ReadPod], "the deletion's own deadline may be sooner");
    let s = shutting(&state);
    assert_eq!((&s.awaited, s.stop.map(|stop| stop.by)), (&Awaited::Nothing, Some(t0 + secs(5.0 + 44.0))));
    let (state, commands) = step(&config, state, answered(), t0 + secs(5.1));
    assert_eq!((state, commands), (State::Done { code: 3 }, vec![Command::Exit(3)]));
    let (state, _, _) = run(&config, vec![snapshot("ready"), exited(3), Event::Signal(libc::SIGWINCH)]);
    assert!(matches!(state, State::ShuttingDown(ShuttingDown { awaited: Awaited::Sidecars { .. }, .. })));
}

#[test]
fn the_shutdown_timeout_ends_the_wait_for_sidecars() {
    let config = config(1);
    let (state, _, t0) = run(&config, vec![snapshot("ready"), exited(3), answered()]);
    assert_eq!(state.deadline(), Some(t0 + secs(1.0 + 45.0)));
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + secs(46.0));
    assert_eq!((state, commands), (State::Done { code: 3 }, vec![Command::Exit(3)]));
}

#[test]
fn the_pod_deleted_while_waiting_never_starts_the_program() {
    let mut deleting = pod("starting");
    deleting.metadata.deletion_timestamp = Some("2026-11-30T10:00:00Z".into());
    deleting.metadata.deletion_grace_period_seconds = Some(10);
    let (state, commands, t0) = run(&config(1), vec![changed(deleting)]);
    assert_eq!(commands, [Command::StopWatch, start(9.0, 1)]);
    let s = shutting(&state);
    assert_eq!((s.code, &s.awaited, s.stop.map(|stop| stop.by)), (143, &Awaited::Nothing, Some(t0 + secs(9.0))));
}

#[test]
fn a_deleted_event_or_another_uid_is_a_gone_pod() {
    let deleted = Event::Watch(Update::PodDeleted(Box::new(pod("starting"))));
    let (state, _, _) = run(&config(1), vec![snapshot("starting"), deleted]);
    assert_eq!(shutting(&state).code, 143);
    // A replacement Pod of the same name that is ready must not start the program.
    let mut replacement = pod("ready");
    replacement.metadata.uid = Some("another".into());
    let (state, commands, _) = run(&config(1), vec![snapshot("starting"), changed(replacement)]);
    assert_eq!(shutting(&state).code, 143);
    assert!(!commands.contains(&Command::StartProgram));
}

#[test]
fn the_pod_deleted_during_shutdown_ends_the_wait_for_sidecars() {
    let config = config(1);
    let (state, _, t0) = run(&config, vec![snapshot("ready"), exited(0), answered()]);
    let mut deleting = pod("ready");
    deleting.metadata.deletion_timestamp = Some("2026-11-30T10:00:00Z".into());
    let (state, commands) = step(&config, state, changed(deleting), t0 + secs(3.0));
    assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
    let (state, _, _) = run(&config, vec![snapshot("ready"), exited(0)]);
    let deleted = Event::Watch(Update::PodDeleted(Box::new(pod("ready"))));
    let (state, commands) = step(&config, state, deleted, t0 + secs(3.0));
    assert_eq!(commands, [Command::StopWatch]);
    assert_eq!(
        shutting(&state).stop.map(|stop| stop.by),
        Some(t0 + secs(3.0 + 1.5)),
        "gone: the kubelet's shortest grace"
    );
}

#[test]
fn absurd_grace_periods_are_capped_not_overflowed() {
    let mut huge = pod("ready");
    huge.spec.termination_grace_period_seconds = Some(i64::MAX);
    let events = vec![(0.0, changed(huge)), (1.0, Event::Signal(libc::SIGTERM)), (2.0, exited(0))];
    let (state, _, t0) = run_at(&config(1), events);
    let s = shutting(&state);
    assert_eq!(s.deadline, t0 + secs(2.0) + MAX_WAIT);
    assert_eq!(s.stop.map(|stop| stop.by), Some(t0 + secs(1.0) + MAX_WAIT - EXIT_MARGIN));
    let mut config = config(1);
    config.ready_timeout = Some(Duration::MAX);
    let (state, _) = State::start(&config, t0);
    let State::Waiting(w) = &state else { panic!("waits") };
    assert_eq!(w.deadline, Some(t0 + MAX_WAIT));
    // The owner still wakes to say what it waits for.
    assert_eq!(state.deadline(), Some(t0 + PROGRESS_FIRST));
}

#[test]
fn a_long_wait_says_what_it_waits_for_now_and_then() {
    let mut config = config(1);
    config.ready_timeout = None;
    let (state, _, t0) = run_at(&config, vec![(0.0, snapshot("starting"))]);
    assert_eq!(state.deadline(), Some(t0 + secs(10.0)));
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + secs(10.0));
    assert!(commands.is_empty() && matches!(state, State::Waiting(_)));
    assert_eq!(state.deadline(), Some(t0 + secs(20.0)), "then twice as long");
    let (state, _) = step(&config, state, Event::DeadlinePassed, t0 + secs(20.0));
    assert_eq!(state.deadline(), Some(t0 + secs(40.0)));
    let (state, _) = step(&config, state, Event::DeadlinePassed, t0 + secs(1000.0));
    assert_eq!(state.deadline(), Some(t0 + secs(1300.0)), "at most five minutes apart");
}

#[test]
fn on_failure_leaves_sidecars_running_for_the_restart() {
    let mut restartable = pod("ready");
    restartable.spec.restart_policy = Some("OnFailure".into());
    let (state, commands, _) = run(&config(1), vec![changed(restartable), exited(3)]);
    assert_eq!(state, State::Done { code: 3 });
    assert_eq!(commands.last(), Some(&Command::Exit(3)));
}

#[test]
fn proas_own_restart_policy_decides_shutdown() {
    // A Never Pod whose proa container restarts on failure (ContainerRestartRules): the failed program comes back.
    let mut own_on_failure = pod("ready");
    own_on_failure.spec.containers[0].restart_policy = Some("OnFailure".into());
    let (state, _, _) = run(&config(1), vec![changed(own_on_failure.clone()), exited(3)]);
    assert_eq!(state, State::Done { code: 3 });
    let (state, _, _) = run(&config(1), vec![changed(own_on_failure), exited(0)]);
    assert_eq!(shutting(&state).code, 0, "success is final: shut down");
}

#[test]
fn spawn_failure_keeps_its_shell_code() {
    let failed = Event::SpawnFailed(SpawnError::NotFound { program: "nope".into() });
    let (state, _, _) = run(&config(1), vec![snapshot("ready"), failed]);
    assert_eq!(shutting(&state).code, 127);
}

#[test]
fn nothing_to_shut_down_exits_at_once() {
    let mut config = config(0);
    config.ignore = vec!["envoy".into()];
    let (state, commands, _) = run(&config, vec![snapshot("ready"), exited(0)]);
    assert_eq!(state, State::Done { code: 0 });
    assert_eq!(commands.last(), Some(&Command::Exit(0)));
}

#[test]
fn wait_is_over_matches_the_verdict() {
    let config = config(0);
    let over = |pod: &Pod, deleted| wait_is_over(config.clone())(pod, deleted);
    assert!(!over(&pod("starting"), false));
    assert!(over(&pod("ready"), false));
    assert!(over(&pod("dead"), false));
    assert!(over(&pod("starting"), true), "a DELETED event");
    let mut pinned = wait_is_over(config.clone());
    assert!(!pinned(&pod("starting"), false));
    // A later snapshot is judged by the first one's containers, as the owner judges it.
    let mut no_containers = pod("starting");
    no_containers.spec.containers.clear();
    assert!(!pinned(&no_containers, false));
    let mut replacement = pod("starting");
    replacement.metadata.uid = Some("another".into());
    assert!(pinned(&replacement, false), "another uid than the first one seen");
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
    Facts {
        uid: None,
        waited: vec![],
        probes: vec![],
        policy: None,
        shutdown_timeout: secs(30.0),
        grace: secs(30.0),
        version: None,
        stopped: vec![],
        sends: vec![0],
        skips: vec![],
        plan: Default::default(),
        peers: vec![],
        peers_left: vec![],
        stopper: None,
    }
}

#[test]
fn endpoints_mode_starts_probing_with_every_endpoint_not_ready() {
    let config = endpoints_config(1);
    let (State::Waiting(w), commands) = State::start(&config, Instant::now()) else { panic!("starts waiting") };
    assert_eq!(commands, [Command::Probe(Goal::Ready)]);
    assert_eq!(w.not_ready, ["http://127.0.0.1:1/ready", "tcp db:5432"]);
    assert_eq!(w.facts, Some(endpoints_facts()));
}

#[test]
fn endpoints_ready_starts_the_program() {
    let events =
        vec![pending(Goal::Ready, &["tcp db:5432 (connection refused)"]), probe(ProbeUpdate::Reached(Goal::Ready))];
    let (state, commands, _) = run(&endpoints_config(1), events);
    assert_eq!(state, State::Running(Running::new(endpoints_facts())));
    assert_eq!(commands, [Command::StartProgram]);
}

#[test]
fn endpoints_ready_timeout_is_124_naming_what_is_missing() {
    let config = endpoints_config(1);
    let t0 = Instant::now();
    let (state, _) = State::start(&config, t0);
    let (state, _) = step(&config, state, pending(Goal::Ready, &["tcp db:5432 (connection refused)"]), t0);
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + secs(10.0));
    let s = shutting(&state);
    assert_eq!(s.code, 124);
    assert_eq!(s.awaited, Awaited::Endpoints(vec!["http://127.0.0.1:1/ready".into(), "tcp db:5432".into()]));
    assert_eq!(s.deadline, t0 + secs(40.0));
    let why = "endpoints not ready after 10.0s: tcp db:5432 (connection refused); not starting the program";
    assert_eq!(
        commands,
        [Command::WriteTerminationLog(why.into()), Command::StopProbe, start(30.0, 1), Command::Probe(Goal::Gone),]
    );
}

#[test]
fn endpoints_mode_always_shuts_down_and_probes_until_gone() {
    // Unknown restart policy: even a failed program (which OnFailure would restart) shuts the sidecars down.
    let events = vec![probe(ProbeUpdate::Reached(Goal::Ready)), exited(3)];
    let (state, commands, _) = run(&endpoints_config(2), events);
    let s = shutting(&state);
    assert!(s.code == 3 && s.actions_left == 2 && matches!(s.awaited, Awaited::Endpoints(_)));
    assert_eq!(commands[1..], [start(30.0, 2), Command::Probe(Goal::Gone)]);
}

#[test]
fn endpoints_gone_and_actions_answered_end_shutdown() {
    let config = endpoints_config(1);
    let (state, _, t0) = run(&config, vec![probe(ProbeUpdate::Reached(Goal::Ready)), exited(3)]);
    let (state, commands) = step(&config, state, pending(Goal::Gone, &["tcp db:5432 (still answering)"]), t0);
    assert_eq!(shutting(&state).awaited, Awaited::Endpoints(vec!["tcp db:5432 (still answering)".into()]));
    assert!(commands.is_empty());
    let (state, _) = step(&config, state, probe(ProbeUpdate::Reached(Goal::Gone)), t0);
    let (state, commands) = step(&config, state, answered(), t0);
    assert_eq!((state, commands), (State::Done { code: 3 }, vec![Command::Exit(3)]));
}

#[test]
fn a_stale_ready_prober_cannot_end_shutdown() {
    let config = endpoints_config(1);
    let (state, _, t0) = run(&config, vec![probe(ProbeUpdate::Reached(Goal::Ready)), exited(124)]);
    let (same, commands) = step(&config, state.clone(), probe(ProbeUpdate::Reached(Goal::Ready)), t0);
    assert_eq!((same, commands), (state, vec![]));
}

#[test]
fn endpoints_without_actions_are_not_awaited() {
    let events = vec![probe(ProbeUpdate::Reached(Goal::Ready)), exited(0)];
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
    assert!(matches!(state, State::Running(_)) && commands == [Command::StartProgram]);
}

#[test]
fn a_signal_while_probing_stops_the_prober_and_waits_for_nothing_but_the_actions() {
    let (state, commands, _) = run(&endpoints_config(1), vec![Event::Signal(libc::SIGTERM)]);
    let s = shutting(&state);
    assert_eq!((s.code, &s.awaited), (143, &Awaited::Nothing));
    assert_eq!(commands, [Command::StopProbe, start(29.0, 1)]);
}

#[test]
fn a_refused_action_counts_as_answered() {
    let config = config(1);
    let (state, _, t0) = run(&config, vec![snapshot("ready"), exited(0), changed(gone())]);
    let refused = Outcome { action: action(), result: Err(ActionError::Refused { attempts: 4 }) };
    let (state, commands) = step(&config, state, Event::Shutdown(refused), t0);
    assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
}

// Shut down: named actions, --on-ready-timeout run, peers.

/// The ready fixture with named actions: envoy (regular), cloud-sql-proxy (native), istio-proxy (absent), unnamed.
fn named_actions() -> Config {
    Config { actions: vec![named("envoy"), named("cloud-sql-proxy"), named("istio-proxy"), unnamed()], ..config(0) }
}

#[test]
fn actions_for_native_or_absent_containers_are_not_sent() {
    let config = named_actions();
    let (state, commands, _) = run(&config, vec![snapshot("ready"), exited(0)]);
    assert_eq!(
        commands[2],
        Command::StartShutdown { budget: secs(45.0), actions: vec![0, 3], recognised: vec![], guessed: vec![] }
    );
    assert_eq!(shutting(&state).actions_left, 2);
}

#[test]
fn an_unnamed_action_is_not_sent_when_every_sidecar_is_native() {
    let mut config = named_actions();
    config.ignore = vec!["envoy".into()];
    let (_, commands, _) = run(&config, vec![snapshot("ready"), exited(0)]);
    assert_eq!(
        commands[2],
        Command::StartShutdown { budget: secs(45.0), actions: vec![0], recognised: vec![], guessed: vec![] }
    );
}

#[test]
fn a_recognised_sidecar_is_sent_its_action_with_the_others_and_awaited() {
    // Istio's injected regular proxy, with no action given: its POST goes out like a named action.
    let config = Config { container: Some("report".into()), ..config(0) };
    let (state, commands, _) = run(&config, vec![snapshot("istio"), exited(0)]);
    let quit = Target { url: "http://127.0.0.1:15020/quitquitquit".into(), container: Some("istio-proxy".into()) };
    assert_eq!(
        commands[2],
        Command::StartShutdown { budget: secs(30.0), actions: vec![], recognised: vec![quit], guessed: vec![] }
    );
    let s = shutting(&state);
    assert_eq!(s.actions_left, 1);
    assert!(matches!(&s.awaited, Awaited::Sidecars { sidecars, .. } if sidecars[0].name == "istio-proxy"));
}

#[test]
fn a_recognised_sidecar_gets_nothing_with_an_unnamed_action_or_auto_shutdown_off() {
    for config in [
        Config { container: Some("report".into()), ..config(1) },
        Config { container: Some("report".into()), recognise: false, ..config(0) },
    ] {
        let (_, commands, _) = run(&config, vec![snapshot("istio"), exited(0)]);
        let recognised = commands.iter().find_map(|c| match c {
            Command::StartShutdown { recognised, .. } => Some(recognised.clone()),
            _ => None,
        });
        assert_eq!(recognised.unwrap_or_default(), vec![], "{config:?}");
    }
}

#[test]
fn on_ready_timeout_run_starts_the_program_anyway() {
    let mut config = config(1);
    config.run_on_ready_timeout = true;
    let (state, commands, _) = run_at(&config, vec![(0.0, snapshot("starting")), (10.0, Event::DeadlinePassed)]);
    assert!(matches!(state, State::Running(_)));
    assert_eq!(commands[1..], [Command::StopWatch, Command::StartProgram]);
    // Before any snapshot: nothing known, so shutdown is unconditional and the grace the shortest.
    let (state, _, _) = run_at(&config, vec![(10.0, Event::DeadlinePassed)]);
    let State::Running(r) = state else { panic!("runs") };
    assert_eq!((r.facts.policy, r.facts.grace), (None, crate::readiness::MIN_GRACE));
}

/// A snapshot the stopped watcher sent just before `--on-ready-timeout run` started the program: its uid is not
/// "another Pod" (the uid was never read), so it changes nothing and shutdown still runs (issue 18, 3.1).
#[test]
fn a_late_snapshot_after_running_anyway_never_cancels_shutdown() {
    let mut config = config(1);
    config.run_on_ready_timeout = true;
    let events = vec![(10.0, Event::DeadlinePassed), (10.0, snapshot("starting")), (30.0, exited(0))];
    let (state, commands, _) = run_at(&config, events);
    assert!(commands.contains(&start(30.0, 1)), "{commands:?}");
    assert_eq!(shutting(&state).stop, None);
}

/// The ready fixture with more main containers: `names` (each running proa when `proa`).
fn with_peers(peers: &[(&str, bool)]) -> Pod {
    let mut pod = pod("ready");
    for (name, proa) in peers {
        let command = if *proa { vec!["/proa".to_string(), "--".into(), "x".into()] } else { vec!["x".to_string()] };
        pod.spec.containers.push(crate::pod::Container { name: name.to_string(), command, ..Default::default() });
        let status = serde_json::from_str(&format!(r#"{{"name":"{name}","state":{{"running":{{}}}}}}"#)).unwrap();
        pod.status.container_statuses.push(status);
    }
    pod
}

fn peer_exits(mut pod: Pod, name: &str) -> Pod {
    let status = pod.status.container_statuses.iter_mut().find(|s| s.name == name).unwrap();
    status.state = serde_json::from_str(r#"{"terminated":{"exitCode":0}}"#).unwrap();
    pod
}

#[test]
fn the_stopper_waits_for_its_peers_then_shuts_down() {
    let config = Config { peers: vec!["worker".into()], ..config(1) };
    let pod = with_peers(&[("worker", false), ("zz-proa", true)]);
    let (state, commands, t0) = run(&config, vec![changed(pod.clone()), exited(0)]);
    let watch = Watch::PeersDone {
        peers: vec!["worker".into(), "zz-proa".into()],
        from: Some("48213".into()),
        uid: Some(UID.into()),
    };
    assert_eq!(commands.last(), Some(&Command::Watch(watch)));
    assert!(matches!(state, State::AwaitingPeers(_)) && state.deadline().is_none(), "no bound of its own");
    let (state, commands) = step(&config, state, changed(peer_exits(pod.clone(), "worker")), t0 + secs(60.0));
    assert!(matches!(state, State::AwaitingPeers(_)) && commands.is_empty());
    let both = peer_exits(peer_exits(pod, "worker"), "zz-proa");
    let (state, commands) = step(&config, state, changed(both), t0 + secs(90.0));
    assert_eq!(shutting(&state).code, 0);
    assert_eq!(commands[..2], [Command::StopWatch, start(45.0, 1)]);
}

#[test]
fn a_stop_while_awaiting_peers_shuts_down_at_once() {
    let pod = with_peers(&[("worker", true)]);
    let (state, _, t0) = run(&config(1), vec![changed(pod), exited(0)]);
    let (state, commands) = step(&config(1), state, Event::Signal(libc::SIGTERM), t0 + secs(5.0));
    assert_eq!(commands, [Command::StopWatch, start(44.0, 1), Command::ReadPod]);
    assert_eq!(shutting(&state).awaited, Awaited::Nothing);
}

#[test]
fn a_proa_that_is_not_the_stopper_exits_at_once_sending_nothing() {
    // `aa-proa` comes before `job` by name: it stops the sidecars.
    let pod = with_peers(&[("aa-proa", true)]);
    let (state, commands, _) = run(&config(1), vec![changed(pod), exited(3)]);
    assert_eq!(state, State::Done { code: 3 });
    assert_eq!(commands.last(), Some(&Command::Exit(3)));
}

#[test]
fn exactly_one_proa_in_a_pod_is_the_stopper() {
    // Every proa container computes the stopper from the same spec; plain containers never take part.
    for names in [vec!["b", "a", "c"], vec!["job", "aux"], vec!["z"]] {
        let mut pod = with_peers(&names.iter().map(|n| (*n, true)).collect::<Vec<_>>());
        pod.spec.containers[0].command = vec!["not-proa".into()];
        let stoppers: Vec<&str> = names
            .iter()
            .filter(|name| {
                let config = Config { container: Some(name.to_string()), ..config(1) };
                Facts::of(&config, &pod).unwrap().stopper.is_none()
            })
            .copied()
            .collect();
        assert_eq!(stoppers, [*names.iter().min().unwrap()], "{names:?}");
    }
}

#[test]
fn the_read_after_a_stop_brings_the_deadline_to_the_deletions() {
    // Grace 45 s in the spec, but the delete gave 3 s (or a preStop hook took the rest). SIGTERM at 1.0, the
    // program exits at 1.05 and proa reads the Pod: the kill comes 3 s after the answer at 1.1, and proa keeps a
    // quarter of the 3.1 s since the SIGTERM as its margin.
    let config = config(1);
    let stopped = || {
        let events = vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGTERM)), (1.05, exited(0))];
        let (state, commands, t0) = run_at(&config, events);
        assert_eq!(commands.last(), Some(&Command::ReadPod));
        (state, t0)
    };
    let deleting = |left: f64| {
        let mut pod = pod("ready");
        pod.metadata.deletion_timestamp = Some("2026-11-30T10:00:00Z".into());
        pod.metadata.deletion_in = Some(secs(left));
        changed(pod)
    };
    let exit_by = |state: &State| shutting(state).stop.map(|stop| stop.by);
    let (state, t0) = stopped();
    assert_eq!(exit_by(&state), Some(t0 + secs(1.0 + 44.0)));
    let (state, _) = step(&config, state, deleting(3.0), t0 + secs(1.1));
    assert_eq!(exit_by(&state), Some(t0 + secs(4.1 - 0.775)));
    // The kubelet still gives its 2 s after its SIGTERM, counted from the signal, not from the (late) answer.
    let (state, t0) = stopped();
    let (state, _) = step(&config, state, deleting(0.1), t0 + secs(1.6));
    assert_eq!(exit_by(&state), Some(t0 + secs(1.0 + 1.5)));
    // A forced deletion: the read finds another Pod, or none; the kill is due, at 2 s after the SIGTERM at least.
    let (state, t0) = stopped();
    let mut replacement = pod("ready");
    replacement.metadata.uid = Some("another".into());
    let (state, _) = step(&config, state, changed(replacement), t0 + secs(1.1));
    assert_eq!(exit_by(&state), Some(t0 + secs(1.0 + 1.5)));
    let gone = Event::Watch(Update::Failed(ApiError::PodNotFound { namespace: "jobs".into(), pod: "p".into() }));
    let (state, _) = step(&config, state, gone, t0 + secs(1.2));
    assert_eq!(exit_by(&state), Some(t0 + secs(1.0 + 1.5)), "the earlier deadline stays");
    // A late snapshot of the stopped watcher while the program still runs counts as well.
    let (state, _, t0) = run_at(&config, vec![(0.0, snapshot("ready")), (1.0, Event::Signal(libc::SIGTERM))]);
    let (state, _) = step(&config, state, deleting(3.0), t0 + secs(1.1));
    let State::Running(r) = &state else { panic!("still running") };
    assert_eq!(r.stop.map(|stop| stop.by), Some(t0 + secs(4.1 - 0.775)));
}

/// `--serve-quit`: proa runs a sidecar, stopping it with SIGTERM and SIGKILL 10 s later.
fn sidecar_config() -> Config {
    let mode = Mode::Sidecar { signal: libc::SIGTERM, grace: Duration::from_secs(10) };
    Config { ready_timeout: None, container: None, mode, ..config(0) }
}

#[test]
fn a_sidecars_proa_runs_it_at_once_and_stops_it_on_a_quit_request() {
    let config = sidecar_config();
    let (state, commands) = State::start(&config, Instant::now());
    assert_eq!(commands, [Command::StartProgram], "no wait, no API");
    assert_eq!(state.deadline(), None);
    let (state, commands, t0) = run_at(&config, vec![(1.0, Event::Quit)]);
    assert_eq!(commands[1..], [Command::Forward(libc::SIGTERM)]);
    assert_eq!(state.deadline(), Some(t0 + secs(11.0)), "SIGKILL after --kill-grace");
    let (state, commands) = step(&config, state, Event::Quit, t0 + secs(2.0));
    assert!(commands.is_empty(), "a second request changes nothing");
    // It exits 143 of the SIGTERM: proa's own stop, so 0.
    let (state, commands) = step(&config, state, exited(143), t0 + secs(3.0));
    assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
}

#[test]
fn a_sidecar_that_ignores_the_stop_is_killed_after_the_grace() {
    let config = sidecar_config();
    let (state, _, t0) = run_at(&config, vec![(1.0, Event::Quit)]);
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + secs(5.0));
    assert!(commands.is_empty(), "an early wake-up");
    let (state, commands) = step(&config, state, Event::DeadlinePassed, t0 + secs(11.0));
    assert_eq!(commands, [Command::Forward(libc::SIGKILL)]);
    assert_eq!(state.deadline(), None);
    let (state, commands) = step(&config, state, exited(137), t0 + secs(11.1));
    assert_eq!((state, commands), (State::Done { code: 0 }, vec![Command::Exit(0)]));
}

#[test]
fn a_sidecar_that_exits_on_its_own_or_from_the_kubelet_keeps_its_code() {
    let config = sidecar_config();
    let (state, _, _) = run(&config, vec![exited(3)]);
    assert_eq!(state, State::Done { code: 3 });
    // The kubelet's SIGTERM is forwarded, and was not proa's stop: the code stays.
    let (state, commands, _) = run(&config, vec![Event::Signal(libc::SIGTERM), exited(143)]);
    assert_eq!(state, State::Done { code: 143 });
    assert!(commands.contains(&Command::Forward(libc::SIGTERM)) && !commands.contains(&Command::ReadPod));
    let (state, _, _) = run(&config, vec![Event::SpawnFailed(SpawnError::NotFound { program: "x".into() })]);
    assert_eq!(state, State::Done { code: 127 });
    // The Pod is being deleted: the main proa's quit request comes just after the kubelet's SIGTERM. The program
    // is stopping already: no second signal, no early SIGKILL, and its code stands.
    let (state, commands, t0) = run_at(&config, vec![(1.0, Event::Signal(libc::SIGTERM)), (1.01, Event::Quit)]);
    assert_eq!(commands[1..], [Command::Forward(libc::SIGTERM)]);
    assert_eq!(state.deadline(), None);
    let (state, _) = step(&config, state, exited(7), t0 + secs(5.0));
    assert_eq!(state, State::Done { code: 7 });
}

#[test]
fn quitting_with_sigkill_needs_no_grace() {
    let config =
        Config { mode: Mode::Sidecar { signal: libc::SIGKILL, grace: Duration::from_secs(10) }, ..sidecar_config() };
    let (state, commands, _) = run_at(&config, vec![(1.0, Event::Quit)]);
    assert_eq!((commands[1..].to_vec(), state.deadline()), (vec![Command::Forward(libc::SIGKILL)], None));
}

#[test]
fn a_proa_container_a_named_action_stops_is_a_sidecar_not_a_peer() {
    // Its `--serve-quit` comes from an envFrom the main proa cannot see; the action naming it says enough.
    let pod = with_peers(&[("aa-logger", true)]);
    let named = Config { actions: vec![named("aa-logger")], ..config(1) };
    let facts = Facts::of(&named, &pod).unwrap();
    assert_eq!((facts.peers.len(), facts.stopper.as_deref()), (0, None));
    assert!(facts.waited.iter().any(|w| w.name == "aa-logger"), "waited for like any sidecar");
    assert_eq!(Facts::of(&config(1), &pod).unwrap().stopper.as_deref(), Some("aa-logger"), "unnamed: a peer");
}

/// Direct probes on: the waited containers' readinessProbe endpoints are probed too.
fn probing() -> Config {
    Config { direct_probe: true, ..config(1) }
}

/// The ready Pod with envoy and the native cloud-sql-proxy running but not ready yet, envoy in its run `restarts`.
fn unready(restarts: i64) -> Pod {
    let mut pod = pod("ready");
    let statuses = pod.status.container_statuses.iter_mut().chain(pod.status.init_container_statuses.iter_mut());
    for status in statuses.filter(|s| s.name == "envoy" || s.name == "cloud-sql-proxy") {
        status.ready = false;
        status.restart_count = if status.name == "envoy" { restarts } else { 0 };
    }
    pod
}

fn order(container: &str, url: &str, restart_count: i64) -> Command {
    let endpoint = crate::direct::Endpoint::Http { url: url.into(), headers: vec![] };
    let (timeout, successes, delay) = (Duration::from_secs(1), 1, Duration::ZERO);
    Command::DirectProbe(crate::direct::Order {
        container: container.into(),
        restart_count,
        endpoint,
        timeout,
        successes,
        delay,
    })
}

fn probed(container: &str, restart_count: i64) -> Event {
    Event::Probed { container: container.into(), restart_count }
}

#[test]
fn passed_direct_probes_start_the_program_before_the_api_says_ready() {
    let config = probing();
    let (state, commands, t0) = run(&config, vec![changed(unready(0))]);
    let envoy = order("envoy", "http://127.0.0.1:15000/ready", 0);
    let proxy = order("cloud-sql-proxy", "http://127.0.0.1:9090/readiness", 0);
    assert_eq!(commands, [envoy, proxy], "each waited container is probed at the Pod's IP");
    let (state, commands) = step(&config, state, probed("envoy", 0), t0 + secs(1.0));
    assert!(matches!(state, State::Waiting(_)) && commands.is_empty(), "cloud-sql-proxy is not ready yet");
    let (state, commands) = step(&config, state, probed("cloud-sql-proxy", 0), t0 + secs(1.1));
    assert!(matches!(state, State::Running(_)));
    let said = "all containers ready after 1.1s (probed directly: envoy, cloud-sql-proxy)".to_string();
    let stop = [Command::StopWatch, Command::StopDirectProbe(None), Command::Say(said), Command::StartProgram];
    assert_eq!(commands, stop);
}

#[test]
fn a_pass_counts_only_while_its_run_goes_on() {
    let config = probing();
    let mut restarted = unready(1);
    restarted.metadata.resource_version = Some("48214".into());
    let events = vec![changed(unready(0)), probed("envoy", 0), changed(restarted), probed("cloud-sql-proxy", 0)];
    let (state, commands, _) = run(&config, events);
    assert!(matches!(state, State::Waiting(_)), "envoy restarted after its pass: not ready any more");
    let again = order("envoy", "http://127.0.0.1:15000/ready", 1);
    assert_eq!(commands[2..], [again], "the new run is probed again");
    // A late pass of the old run changes nothing; the new run's pass completes the wait.
    let (state, commands) = step(&config, state, probed("envoy", 0), Instant::now());
    assert!(matches!(state, State::Waiting(_)) && commands.is_empty());
    let (state, _) = step(&config, state, probed("envoy", 1), Instant::now());
    assert!(matches!(state, State::Running(_)));
}

#[test]
fn a_container_that_passed_then_terminated_for_good_never_starts_the_program() {
    let config = probing();
    let mut dead = unready(0);
    dead.status.container_statuses[1].state = serde_json::from_str(r#"{"terminated":{"exitCode":1}}"#).unwrap();
    let (state, commands, _) = run(&config, vec![changed(unready(0)), probed("envoy", 0), changed(dead)]);
    assert!(matches!(state, State::ShuttingDown(_) | State::Done { code: 125 }), "{state:?}");
    assert!(!commands.contains(&Command::StartProgram));
    assert!(commands.contains(&Command::StopDirectProbe(None)));
}

#[test]
fn without_direct_probes_the_api_alone_decides() {
    let (state, commands, _) = run(&config(1), vec![changed(unready(0)), probed("envoy", 0)]);
    assert!(matches!(state, State::Waiting(_)) && commands.is_empty());
}

#[test]
fn an_api_cut_off_for_a_second_once_an_action_was_answered_ends_the_wait_for_sidecars() {
    // A mesh proxy stopped by the action carried proa's connections: the API out of reach for a second after an
    // answer is no reason to wait out the shutdown timeout (issue 28). A shorter blip, a connection made in between,
    // or no answer at all, and proa waits on.
    let config = config(1);
    let refused = || {
        let line = "request to the API server failed: connection refused; retrying in 0.2s (attempt 1)".to_string();
        Event::Watch(Update::Retrying { line, unreachable: true, repeat: false })
    };
    let begin = |events: Vec<(f64, Event)>| {
        let start = vec![(0.0, snapshot("ready")), (1.0, exited(3))];
        run_at(&config, start.into_iter().chain(events).collect()).0
    };
    for events in [
        vec![(1.1, answered()), (1.2, refused()), (2.3, refused())],
        vec![(1.1, refused()), (1.5, refused()), (2.2, answered())],
    ] {
        assert_eq!(begin(events), State::Done { code: 3 });
    }
    let waiting = |state: State| matches!(shutting(&state).awaited, Awaited::Sidecars { .. });
    assert!(waiting(begin(vec![(1.1, answered()), (1.2, refused()), (1.9, refused())])), "a blip under a second");
    let reached = Event::Watch(Update::Reached);
    let blip = vec![(1.1, answered()), (1.2, refused()), (1.5, reached), (2.3, refused())];
    assert!(waiting(begin(blip)), "a connection was made in between");
    let failed = Event::Shutdown(Outcome { action: action(), result: Err(ActionError::Refused { attempts: 4 }) });
    assert!(waiting(begin(vec![(1.1, failed), (1.2, refused()), (3.0, refused())])), "nothing was answered");
}
