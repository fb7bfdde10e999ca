//! The lifecycle (DESIGN.md "What happens, in order"): `step`, the one state machine, and `drive`, the one owner
//! loop, which feeds it events and carries out the commands it returns through a `World` (`world.rs`): the real one
//! (`threads.rs`) or, in tests, a simulated one (`simulation/`). Every ending, a failed start included
//! (`Mode::Failed`), goes through this loop. It never uses `?`: a failed command becomes an event, so events keep
//! flowing. It blocks until the next event or deadline, so it uses no CPU while the program runs.
//!
//! Who sends what: workers send a `threads::Message` over the one channel, an `Event` for `step` or, from a
//! finished watcher, `Message::Release` (what it held, dropped by the world before the next event; `step` never
//! sees it). The signal thread sends `Event::Signal`; the watcher `Event::Watch`; the prober `Event::Probe`; a
//! direct prober `Event::Probed`; the reaper `Event::Child`; each shutdown action `Event::Shutdown`; the quit
//! endpoint `Event::Quit`. The owner
//! itself makes `Event::SpawnFailed` from a failed `StartProgram`, and `Event::DeadlinePassed` from its clock.
//!
//! Files, top to bottom (`layers.rs` checks that arrows only point down): this one; `threads` (the real world);
//! one file per phase, `waiting` and `running`; `endings` (the program's exit, a given-up wait, a failed start);
//! `peers` (AwaitingPeers); `shutting_down`; `world` (the seam); `machine` (`State`, `Event`, `Command`) with
//! `probing` (the direct probes while waiting); `facts`
//! (what a snapshot means); `stop` (bounds, the kubelet's deadline and the margin) and `config` (`Config`, `Mode`).

mod config;
mod endings;
mod facts;
mod machine;
mod peers;
mod probing;
mod running;
mod shutting_down;
#[cfg(test)]
mod simulation;
mod stop;
#[cfg(test)]
mod tests;
mod threads;
mod waiting;
mod world;

use std::collections::VecDeque;
use std::time::Instant;

use crate::child::Exit;
use crate::options::Options;
use crate::pod::Pod;
use crate::probe::Goal;
use crate::{crash, exit};

pub use config::{Config, Mode, config};
pub use facts::Facts;
use machine::{Command, Event, Running, State, Waiting, Watch};
use stop::{after, capped};
use world::World;

/// Advances the lifecycle by one event: each phase's transitions are in its own file.
pub fn step(config: &Config, state: State, event: Event, now: Instant) -> (State, Vec<Command>) {
    match state {
        State::Waiting(w) => waiting::waiting(config, w, event, now),
        State::Running(r) => running::running(config, r, event, now),
        State::AwaitingPeers(p) => peers::awaiting_peers(config, p, event, now),
        State::ShuttingDown(s) => shutting_down::shutting_down(config, s, event, now),
        State::Done { code } => (State::Done { code }, vec![]),
    }
}

impl State {
    /// The initial state, and the commands that start looking for readiness.
    pub fn start(config: &Config, now: Instant) -> (State, Vec<Command>) {
        let (facts, not_ready, command) = match &config.mode {
            Mode::Sidecar { .. } => {
                return (State::Running(Running::new(Facts::without_pod(config))), vec![Command::StartProgram]);
            }
            Mode::Failed(err) => return endings::start_failed(config, err, now),
            Mode::Pod => (None, Vec::new(), Command::Watch(Watch::Readiness)),
            Mode::Endpoints(endpoints) => (
                Some(Facts::without_pod(config)),
                endpoints.iter().map(ToString::to_string).collect(),
                Command::Probe(Goal::Ready),
            ),
        };
        let deadline = config.ready_timeout.map(|t| after(now, capped("--ready-timeout", t)));
        let next_progress = after(now, machine::PROGRESS_FIRST);
        (
            State::Waiting(Waiting {
                since: now,
                deadline,
                facts,
                not_ready,
                reasons: Vec::new(),
                next_progress,
                probing: Default::default(),
            }),
            vec![command],
        )
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
        if let Event::Child(Exit::Exited { code }) = &event {
            crash::program_exited(*code);
        }
        let (next, more) = step(config, state, event, world.now());
        state = next;
        commands.extend(more);
    }
}

fn carry_out(config: &Config, command: Command, world: &mut impl World, own: &mut VecDeque<Event>) {
    match command {
        // Each watcher stops on the very judgement the owner makes of the same snapshot (`facts.rs`).
        Command::Watch(Watch::Readiness) => world.watch(None, Box::new(facts::wait_is_over(config.clone()))),
        Command::Watch(Watch::SidecarsGone { sidecars, from, uid }) => {
            let until = move |pod: &Pod, deleted: bool| facts::sidecars_left(pod, deleted, &uid, &sidecars).is_over();
            world.watch(from, Box::new(until));
        }
        Command::Watch(Watch::PeersDone { peers, from, uid }) => {
            let until = move |pod: &Pod, deleted: bool| facts::peers_left(pod, deleted, &uid, &peers).is_over();
            world.watch(from, Box::new(until));
        }
        Command::StopWatch => world.stop_watch(),
        Command::ReadPod => world.watch(None, Box::new(|_, _| true)),
        Command::Probe(goal) => world.probe(goal),
        Command::StopProbe => world.stop_probe(),
        Command::DirectProbe(order) => world.direct_probe(order),
        Command::StopDirectProbe(container) => world.stop_direct_probe(container.as_deref()),
        Command::StartProgram => {
            if let Err(err) = world.start_program() {
                own.push_back(Event::SpawnFailed(err));
            }
        }
        Command::Forward(signal) => world.forward(signal),
        Command::Say(line) => log::info!("{line}"),
        Command::StartShutdown { budget, actions, recognised, guessed } => {
            world.start_shutdown(budget, &actions, &recognised, &guessed)
        }
        Command::WriteTerminationLog(reason) => world.write_termination_log(&reason),
        // `drive` returns on it instead.
        Command::Exit(_) => {}
    }
}
