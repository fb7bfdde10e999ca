//! The real world of the owner loop: worker threads (signals, watch or probe, reaper, shutdown actions) that send
//! their events over one mpsc channel, which the owner reads with a timeout up to the next deadline. Owns the
//! channel, the workers' stop flags and the program's pidfd; decides nothing about the lifecycle.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::api::{Api, ApiError};
use crate::child::{self, SpawnError};
use crate::direct::Order;
use crate::options::Options;
use crate::pidfd::Pidfd;
use crate::probe::{self, Endpoint, Goal};
use crate::shutdown::{self, Action, Target};
use crate::{cluster, quit, signals, termination, watch};

use super::config::{Config, Mode, StartError, config};
use super::machine::Event;
use super::world::{Until, World};

/// What a worker sends the owner over the one channel: an event for `step`, or what a finished worker held, to be
/// dropped off the hot path.
pub enum Message {
    /// For the state machine (`mod.rs` lists who sends which).
    Event(Event),
    /// A finished watcher's resources (see `watch::spawn_watch`), dropped by the owner once it has acted on the
    /// events before them; `step` never sees them.
    Release(Box<dyn Send>),
}

/// Where readiness comes from, ready to use.
#[allow(clippy::large_enum_variant)] // built once per run: boxing would buy nothing
pub enum Source {
    /// The Pod, through this client.
    Api(Api),
    /// No-API mode: probe these endpoints.
    Endpoints(Vec<Endpoint>),
    /// `--serve-quit`: nothing to wait for; serve quit requests on this bound listener.
    Quit(TcpListener),
}

/// The worker threads and the channel they report on.
pub struct Threads {
    options: Options,
    tx: Sender<Message>,
    rx: Receiver<Message>,
    api: Option<Api>,
    endpoints: Vec<Endpoint>,
    watcher: Option<Worker>,
    /// The connection pools of stopped watchers, closed before the owner next waits: a watcher blocked reading a
    /// quiet stream then ends at once, and no watch stays open while the program runs (closing is a system call, so
    /// it is kept off the path from the ready event to the program's start).
    to_close: Vec<ureq::Agent>,
    prober: Option<Worker>,
    /// The direct probers, by container.
    direct: Vec<(String, Worker)>,
    /// The program, held by a pidfd opened before the reaper runs: a signal forwarded after it exited can then never
    /// reach a later process that was given the same pid.
    program: Option<Pidfd>,
    /// Keeps the signal thread registered for the whole run (none if it could not start).
    _signals: Option<signal_hook::iterator::Handle>,
    /// The reaper, started with the world (unless the start failed) so that creating its thread is not on the
    /// ready → start path; `start_program` hands it the program, or says why it could not start.
    reaper: Option<std::io::Result<child::Reaper>>,
}

/// The channel every worker reports on, with the signal thread already on it: made before anything else, so that
/// a SIGTERM during start-up (reading the configuration, a failing start) is not lost.
pub struct Channel {
    tx: Sender<Message>,
    rx: Receiver<Message>,
    /// Keeps the signal thread registered for the whole run.
    signals: Option<signal_hook::iterator::Handle>,
}

impl Channel {
    /// Makes proa fit to reap and starts the signal thread. The channel is there even when the signal thread could
    /// not start (the error says why): the failed start still sends its shutdown actions over it.
    pub fn open() -> (Channel, Result<(), StartError>) {
        child::become_reaper();
        let (tx, rx) = mpsc::channel::<Message>();
        let signal_tx = tx.clone();
        match signals::spawn_signals(move |signal| signal_tx.send(Message::Event(Event::Signal(signal))).is_ok()) {
            Ok((handle, _thread)) => (Channel { tx, rx, signals: Some(handle) }, Ok(())),
            Err(err) => (Channel { tx, rx, signals: None }, Err(StartError::Signals(err.to_string()))),
        }
    }
}

/// Where readiness comes from (DESIGN.md "Start"): `--serve-quit`'s listener, the no-API endpoints, or the
/// in-cluster API. With the `kill` feature, every kill action is refused in the node's PID namespace first, before
/// anything runs.
pub fn source(options: &Options, env: impl Fn(&str) -> Option<String>) -> Result<Source, StartError> {
    #[cfg(feature = "kill")]
    crate::kill::check(&options.kill_rules()).map_err(|err| StartError::Kill(err.to_string()))?;
    let in_cluster = env("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.trim().is_empty());
    match (options.serve_quit, options.no_api_endpoints(in_cluster)) {
        (Some(address), _) => quit::bind(address).map(Source::Quit).map_err(StartError::ServeQuit),
        (None, Ok(Some(endpoints))) => Ok(Source::Endpoints(endpoints)),
        (None, Ok(None)) => connect(options, env),
        (None, Err(err)) => Err(StartError::Endpoints(err.to_string())),
    }
}

/// The in-cluster configuration and the API client built from it.
fn connect(options: &Options, env: impl Fn(&str) -> Option<String>) -> Result<Source, StartError> {
    let mut cluster = cluster::discover(env, cluster::hostname).map_err(|err| StartError::Cluster(err.to_string()))?;
    cluster.token.max_age = options.token_refresh;
    let api = Api::new(cluster, options.watch_timeout).map_err(|err| StartError::Api(err.to_string()))?;
    Ok(Source::Api(api))
}

impl Threads {
    /// The world over `channel`, and the lifecycle's settings: `Mode::Failed` when the start failed (`source`
    /// tells why) or the quit endpoint cannot be served.
    pub fn start(channel: Channel, options: &Options, source: Result<Source, StartError>) -> (Threads, Config) {
        let Channel { tx, rx, signals: _signals } = channel;
        let (api, endpoints, mode) = match source {
            Ok(Source::Api(api)) => (Some(api), Vec::new(), Mode::Pod),
            Ok(Source::Endpoints(endpoints)) => {
                let names: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
                log::info!("waiting for {} (no Kubernetes API)", names.join(", "));
                (None, endpoints.clone(), Mode::Endpoints(endpoints))
            }
            Ok(Source::Quit(listener)) => {
                let quit_tx = tx.clone();
                match quit::spawn(listener, move || _ = quit_tx.send(Message::Event(Event::Quit))) {
                    Ok(_) => {
                        (None, Vec::new(), Mode::Sidecar { signal: options.kill.signal, grace: options.kill.grace })
                    }
                    Err(err) => (None, Vec::new(), Mode::Failed(StartError::QuitThread(err.to_string()))),
                }
            }
            Err(reason) => (None, Vec::new(), Mode::Failed(reason)),
        };
        let reaper = match mode {
            Mode::Failed(_) => None,
            _ => Some(start_reaper(&tx)),
        };
        let config = config(options, mode);
        let world = Threads {
            options: options.clone(),
            tx,
            rx,
            api,
            endpoints,
            watcher: None,
            to_close: Vec::new(),
            prober: None,
            direct: Vec::new(),
            program: None,
            _signals,
            reaper,
        };
        (world, config)
    }
}

impl World for Threads {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn next_event(&mut self, deadline: Option<Instant>) -> Option<Event> {
        self.to_close.drain(..).for_each(ureq::Agent::shutdown);
        loop {
            let message = match deadline {
                None => self.rx.recv().ok()?,
                Some(deadline) => match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => return Some(Event::DeadlinePassed),
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
            };
            match message {
                Message::Event(event) => return Some(event),
                // Dropped here: the owner asks for the next event only once the commands of the ones before are
                // carried out.
                Message::Release(leftovers) => drop(leftovers),
            }
        }
    }

    fn watch(&mut self, from: Option<String>, until: Until) {
        self.stop_watch();
        if let Some(api) = &self.api {
            let (api, pool) = api.detached();
            let (mut worker, stop) = Worker::new();
            worker.pool = Some(pool);
            let tx = self.tx.clone();
            let release = tx.clone();
            let release = move |leftovers| _ = release.send(Message::Release(leftovers));
            let report = tx.clone();
            let spawned = watch::spawn_watch(
                api,
                from,
                stop,
                until,
                move |update| report.send(Message::Event(Event::Watch(update))).is_ok(),
                release,
            );
            // Out of threads: the wait or shutdown goes on as when the API fails, never for ever.
            if let Err(err) = spawned {
                let failed = ApiError::Transport(format!("cannot start the thread that watches the pod: {err}"));
                _ = tx.send(Message::Event(Event::Watch(watch::Update::Failed(failed))));
            }
            self.watcher = Some(worker);
        }
    }

    fn stop_watch(&mut self) {
        if let Some(mut watcher) = self.watcher.take() {
            watcher.stop();
            self.to_close.extend(watcher.pool.take());
        }
    }

    fn probe(&mut self, goal: Goal) {
        self.stop_probe();
        let (worker, stop) = Worker::new();
        let tx = self.tx.clone();
        let interval = self.options.probe_interval;
        let report = tx.clone();
        let report = move |update| report.send(Message::Event(Event::Probe(update))).is_ok();
        if let Err(err) = probe::spawn_probe(self.endpoints.clone(), goal, interval, stop, report) {
            let why = format!("cannot start the thread that probes the endpoints: {err}");
            _ = tx.send(Message::Event(Event::Probe(probe::Update::Failed { goal, why })));
        }
        self.prober = Some(worker);
    }

    fn stop_probe(&mut self) {
        self.prober.take().iter().for_each(Worker::stop);
    }

    fn direct_probe(&mut self, order: Order) {
        self.stop_direct_probe(Some(&order.container));
        let (worker, stop) = Worker::new();
        let (container, restart_count) = (order.container.clone(), order.restart_count);
        let tx = self.tx.clone();
        let passed = move || _ = tx.send(Message::Event(Event::Probed { container, restart_count }));
        let name = order.container.clone();
        // No thread: the API alone says when it is ready, as with `--direct-probe false`.
        match probe::spawn_direct(order, self.options.probe_interval, stop, passed) {
            Ok(_) => self.direct.push((name, worker)),
            Err(err) => {
                log::warn!("cannot start the thread that probes container {name}: {err}; the API alone decides")
            }
        }
    }

    fn stop_direct_probe(&mut self, container: Option<&str>) {
        self.direct.retain(|(name, worker)| {
            let stopping = container.is_none_or(|c| c == name);
            if stopping {
                worker.stop();
            }
            !stopping
        });
    }

    fn start_program(&mut self) -> Result<(), SpawnError> {
        let reaper = self.reaper.take().unwrap_or_else(|| start_reaper(&self.tx));
        let reaper = reaper
            .map_err(|err| SpawnError::Failed { program: self.options.program.to_string_lossy().into_owned(), err })?;
        let spawned = child::spawn_program(&self.options.program, &self.options.args)?;
        log::info!("started {} (pid {})", self.options.program.to_string_lossy(), spawned.pid);
        self.program = libc::pid_t::try_from(spawned.pid).ok().and_then(Pidfd::open);
        reaper.watch(spawned);
        Ok(())
    }

    fn forward(&mut self, signal: i32) {
        match &self.program {
            Some(program) => child::forward(program, signal),
            None => debug!("no program to forward {} to", child::signal_name(signal)),
        }
    }

    fn start_shutdown(&mut self, budget: Duration, chosen: &[usize], recognised: &[Target], guessed: &[Target]) {
        let tx = self.tx.clone();
        let all = self.options.shutdown_actions(budget).into_iter().enumerate();
        let given = all.filter(|(i, _)| chosen.contains(i)).map(|(_, action)| action);
        let recognised = recognised.iter().cloned().map(Action::Post);
        let actions = given.chain(recognised).chain(guessed.iter().cloned().map(Action::Guess)).collect();
        shutdown::spawn_actions(actions, budget, move |outcome| {
            tx.send(Message::Event(Event::Shutdown(outcome))).is_ok()
        });
    }

    fn write_termination_log(&mut self, reason: &str) {
        termination::write(&self.options.termination_log, reason);
    }
}

/// The reaper thread, which reports the program's exit on the channel.
fn start_reaper(tx: &Sender<Message>) -> std::io::Result<child::Reaper> {
    let tx = tx.clone();
    child::start_reaper(move |exit| tx.send(Message::Event(Event::Child(exit))).is_ok())
}

/// The stop flag of a watcher or prober thread. Stopping it makes the thread end before its next request or round
/// (or its next report, if it is blocked reading), without another event; a watcher's connections are closed too
/// (`Threads::to_close`).
struct Worker {
    stopped: Arc<AtomicBool>,
    /// A watcher's own connection pool.
    pool: Option<ureq::Agent>,
}

impl Worker {
    fn new() -> (Worker, Arc<AtomicBool>) {
        let stopped = Arc::new(AtomicBool::new(false));
        (Worker { stopped: stopped.clone(), pool: None }, stopped)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}
