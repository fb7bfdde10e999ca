//! The owner loop: feeds events to `machine::step` and carries out the commands it returns, through a `World`:
//! the real one (`threads.rs`: worker threads on one mpsc channel) or, in tests, a simulated one
//! (`simulation.rs`). It owns all lifecycle state. It never uses `?`: a failed command becomes an event, so events
//! keep flowing. It blocks until the next event or deadline, so it uses no CPU while the program runs.

mod machine;
mod peers;
#[cfg(test)]
mod simulation;
mod stopping;
#[cfg(test)]
mod tests;
mod threads;
mod waiting;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::child::{Exit, SpawnError};
use crate::options::{OnReadyTimeout, Options};
use crate::pod::Pod;
use crate::probe::Goal;
use crate::readiness;
use crate::shutdown::Action;
use crate::{crash, exit};

pub use machine::{ActionTarget, Config, Facts, Mode};
use machine::{Command, Event, State, Watch};

/// What the owner loop does to the world, and how it hears back: the seam between the pure lifecycle and I/O.
pub trait World {
    /// The clock.
    fn now(&self) -> Instant;
    /// The next event, or `Event::DeadlinePassed` once `deadline` has come; `None` if no event can ever come.
    fn next_event(&mut self, deadline: Option<Instant>) -> Option<Event>;
    /// Starts a watcher (stopping any earlier one) from `from` (else reading the Pod first), which stops once
    /// `until(pod, deleted)` holds.
    fn watch(&mut self, from: Option<String>, until: Until);
    fn stop_watch(&mut self);
    /// Starts a prober of the no-API endpoints (stopping any earlier one) until every one reached `goal`.
    fn probe(&mut self, goal: Goal);
    fn stop_probe(&mut self);
    fn start_program(&mut self) -> Result<(), SpawnError>;
    fn forward(&mut self, signal: i32);
    /// Sends these shutdown actions (by number, in `Options::shutdown_actions`' order), each to report within
    /// `budget`.
    fn start_shutdown(&mut self, budget: Duration, actions: &[usize]);
    fn write_termination_log(&mut self, reason: &str);
}

/// A watcher's stop condition, given each Pod snapshot and whether it came with a DELETED event.
pub type Until = Box<dyn FnMut(&Pod, bool) -> bool + Send>;

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
        mode,
    }
}

/// Runs the whole lifecycle against the real world and returns proa's exit code. The signal thread comes first,
/// so that a SIGTERM during start-up is not lost; a start that fails after it is an ending `drive` runs like any
/// other (`Mode::Failed`).
pub fn run(options: &Options, env: impl Fn(&str) -> Option<String>) -> u8 {
    let (channel, signals) = threads::Channel::open();
    let source = signals.and_then(|()| threads::source(options, env));
    let (mut world, config) = threads::Threads::start(channel, options, source);
    drive(&config, &mut world)
}

/// The owner loop over any world: from the first command to `Command::Exit`.
pub fn drive(config: &Config, world: &mut impl World) -> u8 {
    let (mut state, first) = State::start(config, world.now());
    let mut commands: VecDeque<Command> = first.into();
    let mut own_events = VecDeque::new();
    loop {
        while let Some(command) = commands.pop_front() {
            match command {
                Command::Exit(code) => return code,
                command => carry_out(config, command, world, &mut own_events),
            }
        }
        let event = match own_events.pop_front().or_else(|| world.next_event(state.deadline())) {
            Some(event) => event,
            None => {
                // Unreachable while the workers' channel lives; exit rather than spin if it ever happens.
                log::error!("internal error: no event can come any more");
                return exit::code(exit::End::ProaFailed);
            }
        };
        match &event {
            // Dropped here, now that the commands of the events before it are carried out.
            Event::Release(_) => continue,
            Event::Child(Exit::Exited { code }) => crash::program_exited(*code),
            _ => {}
        }
        let (next, more) = machine::step(config, state, event, world.now());
        state = next;
        commands.extend(more);
    }
}

fn carry_out(config: &Config, command: Command, world: &mut impl World, own: &mut VecDeque<Event>) {
    match command {
        Command::Watch(Watch::Readiness) => {
            let config = config.clone();
            let mut pinned = None;
            world.watch(None, Box::new(move |pod, deleted| machine::wait_is_over(&config, pod, deleted, &mut pinned)));
        }
        Command::Watch(Watch::SidecarsGone { sidecars, from, uid }) => {
            let until = move |pod: &Pod, deleted: bool| {
                deleted || readiness::is_gone(pod, &uid) || readiness::sidecars_gone(pod, &sidecars)
            };
            world.watch(from, Box::new(until));
        }
        Command::Watch(Watch::PeersDone { peers, from, uid }) => {
            let until = move |pod: &Pod, deleted: bool| {
                deleted || readiness::is_gone(pod, &uid) || readiness::peers_left(pod, &peers).is_empty()
            };
            world.watch(from, Box::new(until));
        }
        Command::StopWatch => world.stop_watch(),
        Command::ReadPod => world.watch(None, Box::new(|_, _| true)),
        Command::Probe(goal) => world.probe(goal),
        Command::StopProbe => world.stop_probe(),
        Command::StartProgram => {
            if let Err(err) = world.start_program() {
                own.push_back(Event::SpawnFailed(err));
            }
        }
        Command::Forward(signal) => world.forward(signal),
        Command::Say(line) => log::info!("{line}"),
        Command::StartShutdown { budget, actions } => world.start_shutdown(budget, &actions),
        Command::WriteTerminationLog(reason) => world.write_termination_log(&reason),
        // `drive` returns on it instead.
        Command::Exit(_) => {}
    }
}
