//! The owner loop: starts the worker threads (signals, watch or probe, reaper, shutdown actions), receives their
//! events on one mpsc channel, feeds them to `machine::step`, and carries out the commands it returns.
//! It owns all lifecycle state. It never uses `?`: a failed command becomes an event, so events keep flowing.
//! It blocks in `recv` (or `recv_timeout` up to the next deadline), so it uses no CPU while the program runs.

pub mod machine;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::cli::Options;
use crate::pidfd::Pidfd;
use crate::pod::Pod;
use crate::probe::{self, Endpoint, Goal};
use crate::readiness;
use crate::shutdown::{self, Action};
use crate::{child, exit, signals, termination, watch};
use machine::{Command, Config, Event, Mode, State};

/// Where readiness comes from, ready to use.
#[allow(clippy::large_enum_variant)] // built once per run: boxing would buy nothing
pub enum Source {
    /// The Pod, through this client.
    Api(Api),
    /// No-API mode: probe these endpoints.
    Endpoints(Vec<Endpoint>),
}

/// Every shutdown action: `--shutdown-http-get`, `--shutdown-http-post`, the `--sidecar` presets' ones, then the
/// kills, whose grace must fit in `time_left`.
pub fn shutdown_actions(options: &Options, time_left: Duration) -> Vec<Action> {
    let get = options.shutdown_get.iter().cloned().map(Action::Get);
    let post = options.shutdown_post.iter().cloned().map(Action::Post);
    let presets = options.sidecars.iter().map(|preset| preset.quit());
    get.chain(post).chain(presets).chain(kill_actions(options, time_left)).collect()
}

/// proa failed with a code of its own before or outside the state machine: log why, write it to the termination
/// log, and still send the HTTP shutdown actions, since nothing is known of the restart policy and a Job must not
/// hang on sidecars nobody stops (never the kills: this may be the refusal of a `--kill-all`). Waits for them at most
/// the shutdown timeout, then returns `code`.
pub fn fail(options: &Options, code: u8, reason: &str) -> u8 {
    log::error!("{reason}");
    termination::write(&options.termination_log, reason);
    let timeout = readiness::shutdown_timeout(options.shutdown_timeout, None);
    let actions: Vec<Action> = shutdown_actions(options, timeout)
        .into_iter()
        .filter(|action| matches!(action, Action::Get(_) | Action::Post(_)))
        .collect();
    if actions.is_empty() {
        return code;
    }
    log::info!("sending the shutdown requests anyway (at most {:.1}s)", timeout.as_secs_f64());
    let (tx, rx) = mpsc::channel();
    let count = actions.len();
    shutdown::spawn_actions(actions, move |outcome| tx.send(outcome).is_ok());
    let deadline = Instant::now() + timeout;
    for _ in 0..count {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(outcome) => outcome.log(),
            Err(_) => {
                log::warn!("shutdown requests unfinished at the shutdown timeout: exiting anyway");
                break;
            }
        }
    }
    code
}

/// Runs the whole lifecycle and returns proa's exit code.
pub fn run(options: Options, source: Source) -> u8 {
    let (tx, rx) = mpsc::channel::<Event>();
    let mode = match &source {
        Source::Api(_) => Mode::Pod,
        Source::Endpoints(endpoints) => Mode::Endpoints(endpoints.clone()),
    };
    let config = Config {
        container: options.container.clone(),
        own_args: options.own_args.clone(),
        ignore: options.ignore.clone(),
        ready_timeout: options.ready_timeout,
        shutdown_timeout: options.shutdown_timeout,
        always_shutdown: options.always_shutdown,
        actions: shutdown_actions(&options, Duration::ZERO).len(),
        mode,
    };

    child::become_reaper();
    // Signals next, so that a SIGTERM during start-up is not lost.
    let signal_tx = tx.clone();
    let _signals = match signals::spawn_signals(move |signal| signal_tx.send(Event::Signal(signal)).is_ok()) {
        Ok(signals) => signals,
        Err(err) => return fail(&options, exit::PROA_FAILED, &format!("cannot handle signals: {err}")),
    };

    let mut state = State::start(&config, Instant::now());
    let (api, mut watcher, mut prober) = match source {
        Source::Api(api) => {
            let wait_config = config.clone();
            let watcher = Worker::watch(&api, None, &tx, move |pod| machine::wait_is_over(&wait_config, pod));
            (Some(api), Some(watcher), None)
        }
        Source::Endpoints(endpoints) => {
            let names: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
            log::info!("waiting for {} (no Kubernetes API)", names.join(", "));
            (None, None, Some(Worker::probe(endpoints, Goal::Ready, options.probe_interval, &tx)))
        }
    };
    // The program, held by a pidfd opened before the reaper runs: a signal forwarded after it exited can then never
    // reach a later process that was given the same pid.
    let mut program = None;
    let mut own_events = VecDeque::new();

    loop {
        let event = match own_events.pop_front() {
            Some(event) => event,
            None => match next_event(&rx, state.deadline()) {
                Some(event) => event,
                None => {
                    // Unreachable while `tx` lives; exit rather than spin if it ever happens.
                    return fail(&options, exit::PROA_FAILED, "internal error: event channel closed");
                }
            },
        };
        let (next, commands) = machine::step(&config, state, event, Instant::now());
        state = next;
        for command in commands {
            match command {
                Command::StartProgram => match child::spawn_program(&options.program, &options.args) {
                    Ok(spawned) => {
                        log::info!("started {} (pid {})", options.program.to_string_lossy(), spawned.pid);
                        program = libc::pid_t::try_from(spawned.pid).ok().and_then(Pidfd::open);
                        let child_tx = tx.clone();
                        child::spawn_reaper(spawned, move |exit| child_tx.send(Event::Child(exit)).is_ok());
                    }
                    Err(err) => own_events.push_back(Event::SpawnFailed(err)),
                },
                Command::Forward(signal) => match &program {
                    Some(program) => child::forward(program, signal),
                    None => log::debug!("no program to forward {} to", child::signal_name(signal)),
                },
                Command::StopWatch => watcher.iter().for_each(Worker::stop),
                Command::StartShutdown => {
                    let time_left = state.deadline().map(|d| d.saturating_duration_since(Instant::now()));
                    let actions = shutdown_actions(&options, time_left.unwrap_or_default());
                    let action_tx = tx.clone();
                    shutdown::spawn_actions(actions, move |outcome| action_tx.send(Event::Shutdown(outcome)).is_ok());
                }
                Command::WatchSidecars(sidecars, from) => {
                    watcher.iter().for_each(Worker::stop);
                    if let Some(api) = &api {
                        watcher =
                            Some(Worker::watch(api, from, &tx, move |pod| readiness::sidecars_gone(pod, &sidecars)));
                    }
                }
                Command::StopProbe => prober.iter().for_each(Worker::stop),
                Command::ProbeUntilGone => {
                    prober.iter().for_each(Worker::stop);
                    if let Mode::Endpoints(endpoints) = &config.mode {
                        prober = Some(Worker::probe(endpoints.clone(), Goal::Gone, options.probe_interval, &tx));
                    }
                }
                Command::WriteTerminationLog(reason) => termination::write(&options.termination_log, &reason),
                Command::Exit(code) => return code,
            }
        }
    }
}

/// One action per `--kill NAME`, or one for `--kill-all`.
#[cfg(feature = "kill")]
fn kill_actions(options: &Options, time_left: Duration) -> Vec<Action> {
    use crate::kill::{self, Kill};
    use crate::procs::Rule;
    let settings = &options.kill;
    let grace = kill::grace_within(settings.grace, time_left);
    let rules = match settings.all {
        true => vec![Rule::All],
        false => settings.names.iter().cloned().map(Rule::Named).collect(),
    };
    rules.into_iter().map(|rule| Action::Kill(Kill { rule, signal: settings.signal, grace })).collect()
}

#[cfg(not(feature = "kill"))]
fn kill_actions(_: &Options, _: Duration) -> Vec<Action> {
    Vec::new()
}

/// Waits for the next event, or for `deadline`.
fn next_event(rx: &mpsc::Receiver<Event>, deadline: Option<Instant>) -> Option<Event> {
    match deadline {
        None => rx.recv().ok(),
        Some(deadline) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => Some(Event::DeadlinePassed),
            Err(RecvTimeoutError::Disconnected) => None,
        },
    }
}

/// The stop flag of a watcher or prober thread. Stopping it makes the thread end before its next request or round
/// (or its next report, if it is blocked reading), without another event.
struct Worker {
    stopped: Arc<AtomicBool>,
}

impl Worker {
    fn new() -> (Worker, Arc<AtomicBool>) {
        let stopped = Arc::new(AtomicBool::new(false));
        (Worker { stopped: stopped.clone() }, stopped)
    }

    /// Starts a watcher, from `from` (else reading the Pod first), until `until` holds.
    fn watch(
        api: &Api,
        from: Option<String>,
        tx: &Sender<Event>,
        until: impl Fn(&Pod) -> bool + Send + 'static,
    ) -> Worker {
        let (worker, stop) = Worker::new();
        let tx = tx.clone();
        watch::spawn_watch(api.clone(), from, stop, until, move |update| tx.send(Event::Watch(update)).is_ok());
        worker
    }

    /// Starts a prober of `endpoints` until every one has reached `goal`.
    fn probe(endpoints: Vec<Endpoint>, goal: Goal, interval: Duration, tx: &Sender<Event>) -> Worker {
        let (worker, stop) = Worker::new();
        let tx = tx.clone();
        probe::spawn_probe(endpoints, goal, interval, stop, move |update| tx.send(Event::Probe(update)).is_ok());
        worker
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}
