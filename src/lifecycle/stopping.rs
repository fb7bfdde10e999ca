//! The Running and ShuttingDown phases' transitions (DESIGN.md "Run", "Shut down"): forwarding signals, then
//! sending the shutdown actions and waiting, each wait with its own bound, until proa may exit with its code.
//! Pure apart from logging.

use std::time::Instant;

use crate::child::{self, Exit};
use crate::clock::Seconds;
use crate::exit::{self, End};
use crate::pod::Pod;
use crate::probe::{Goal, Update as ProbeUpdate};
use crate::readiness;
use crate::shutdown;
use crate::signals;
use crate::watch::Update;

use super::machine::{
    Awaited, Command, Config, Event, Facts, Mode, Quit, Running, ShuttingDown, State, Stop, Watch, after, capped,
    update_kill_in,
};

/// How shutdown was reached, which decides what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The program exited, or the wait gave up (a dead sidecar, the ready timeout): wait for the sidecars to go.
    Normal,
    /// The API just failed: send the actions, but ask it nothing more.
    ApiFailed,
    /// The kubelet is stopping the Pod (SIGTERM, deletion): it stops the sidecars itself and reports none of them
    /// terminated before proa's own container, so send the actions, wait for nothing else, and exit by `Stop::by`.
    Stopping(Stop),
}

pub(super) fn running(config: &Config, mut r: Running, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Signal(signal) => {
            if signals::is_stop_request(signal) && r.stop.is_none() {
                debug!("the kubelet allows {} after {}", Seconds(r.facts.grace), child::signal_name(signal));
                r.stop = Some(Stop::new(now, r.facts.grace));
            }
            (State::Running(r), vec![Command::Forward(signal)])
        }
        // A late snapshot of the stopped watcher: a deletion says when the kubelet kills.
        Event::Watch(update) => {
            r.stop = Stop::hear(r.stop, update_kill_in(&update, &r.facts.uid), r.facts.grace, now);
            (State::Running(r), vec![])
        }
        Event::Child(Exit::Exited { code }) if r.quit.is_some() => {
            log::info!("program exited with code {code} once proa stopped it: exiting {}", exit::code(End::Quit));
            program_done(config, r, End::Quit, now)
        }
        Event::Child(Exit::Exited { code }) => {
            log::info!("program exited with code {code}");
            program_done(config, r, End::Program(code), now)
        }
        Event::SpawnFailed(err) => {
            log::error!("{err}");
            program_done(config, r, err.end(), now)
        }
        Event::Quit => quit(config, r, now),
        Event::DeadlinePassed => match r.quit {
            Some(Quit::Signalled { kill_at }) if now >= kill_at => {
                log::warn!("program still running at the end of --kill-grace: sending SIGKILL");
                r.quit = Some(Quit::Killed);
                (State::Running(r), vec![Command::Forward(libc::SIGKILL)])
            }
            _ => (State::Running(r), vec![]),
        },
        // A late snapshot from the watcher that was just stopped: nothing to do.
        Event::Shutdown(_) | Event::Probe(_) | Event::Release(_) => (State::Running(r), vec![]),
    }
}

/// After a stop signal in a Pod: read it once, for its deletion's deadline.
fn read_pod(config: &Config) -> Option<Command> {
    (config.mode == Mode::Pod).then_some(Command::ReadPod)
}

/// A stop signal ended a wait (for the sidecars, for the peers, for the program) and shutdown began: read the Pod
/// once, no watch being open, for its deletion's deadline.
pub(super) fn then_read_pod(config: &Config, (state, mut commands): (State, Vec<Command>)) -> (State, Vec<Command>) {
    if matches!(state, State::ShuttingDown(_)) {
        commands.extend(read_pod(config));
    }
    (state, commands)
}

/// A quit request (`Mode::Sidecar`): stop the program with `--kill-signal`, and SIGKILL it after `--kill-grace`.
/// Not once the kubelet has sent its stop signal (the Pod is being deleted): the program is already stopping, within
/// the kubelet's grace, and that was not proa's doing, so its code stands.
fn quit(config: &Config, mut r: Running, now: Instant) -> (State, Vec<Command>) {
    let Mode::Sidecar { signal, grace } = config.mode else { return (State::Running(r), vec![]) };
    if r.quit.is_some() || r.stop.is_some() {
        log::info!("quit requested, but the program is already stopping: leaving it to end");
        return (State::Running(r), vec![]);
    }
    if signal == libc::SIGKILL {
        log::info!("stopping the program: SIGKILL");
        r.quit = Some(Quit::Killed);
        return (State::Running(r), vec![Command::Forward(signal)]);
    }
    let grace = capped("--kill-grace", grace);
    log::info!("stopping the program: {}, then SIGKILL after {}", child::signal_name(signal), Seconds(grace));
    r.quit = Some(Quit::Signalled { kill_at: after(now, grace) });
    (State::Running(r), vec![Command::Forward(signal)])
}

fn program_done(config: &Config, r: Running, end: End, now: Instant) -> (State, Vec<Command>) {
    if let Mode::Sidecar { .. } = config.mode {
        // Nothing to shut down on a sidecar's side.
        return finish(exit::code(end));
    }
    match r.stop {
        // No API traffic while the program runs: the Pod is read for its deletion's deadline only now.
        Some(stop) => then_read_pod(config, after_program(config, Some(&r.facts), end, Ending::Stopping(stop), now)),
        None => after_program(config, Some(&r.facts), end, Ending::Normal, now),
    }
}

/// Once the program has exited (or will never run): a proa that is not the stopper exits at once, sending nothing;
/// the stopper first waits for its peers (unless the Pod is stopping, the API failed, or its container will be
/// restarted), then shuts down.
pub(super) fn after_program(
    config: &Config,
    facts: Option<&Facts>,
    end: End,
    ending: Ending,
    now: Instant,
) -> (State, Vec<Command>) {
    let code = exit::code(end);
    if let Some(facts) = facts {
        if let Some(stopper) = &facts.stopper {
            log::info!("container {stopper} stops the sidecars: exiting with code {code}");
            return finish(code);
        }
        let restarted =
            facts.policy.as_ref().is_some_and(|p| !readiness::shutdown_needed(Some(p), code, config.always_shutdown));
        if ending == Ending::Normal && !restarted && !facts.peers_left.is_empty() {
            return super::peers::await_peers(facts.clone(), code);
        }
    }
    begin_shutdown(config, facts, code, ending, now)
}

/// The start failed (`Mode::Failed`): the program never runs; shutdown sends the HTTP actions and waits for their
/// answers only, as after any other failure, then proa exits 125.
pub(super) fn start_failed(config: &Config, reason: &str, now: Instant) -> (State, Vec<Command>) {
    log::error!("{reason}");
    let (state, commands) = begin_shutdown(config, None, exit::code(End::ProaFailed), Ending::Normal, now);
    (state, [Command::WriteTerminationLog(reason.to_string())].into_iter().chain(commands).collect())
}

/// Enters ShuttingDown, or Done when shutdown is not needed or there is nothing to do.
pub(super) fn begin_shutdown(
    config: &Config,
    facts: Option<&Facts>,
    code: u8,
    ending: Ending,
    now: Instant,
) -> (State, Vec<Command>) {
    let policy = facts.and_then(|f| f.policy.as_ref());
    if let Some(policy) = policy.filter(|p| !readiness::shutdown_needed(Some(p), code, config.always_shutdown)) {
        log::info!(
            "leaving sidecars running: the kubelet restarts this container ({policy}, exit code {code}); set --always-shutdown to stop them anyway"
        );
        return finish(code);
    }
    let stop = match ending {
        Ending::Stopping(stop) if stop.by <= now => {
            log::warn!("the kubelet's grace period is all but over: exiting without shutdown");
            return finish(code);
        }
        Ending::Stopping(stop) => Some(stop),
        Ending::Normal | Ending::ApiFailed => None,
    };
    let awaited = match (&config.mode, ending) {
        (_, Ending::Stopping(_)) | (Mode::Pod, Ending::ApiFailed) => Awaited::Nothing,
        (Mode::Pod, Ending::Normal) => match facts.map(Facts::running_sidecars) {
            Some(sidecars) if !sidecars.is_empty() => {
                Awaited::Sidecars { sidecars, uid: facts.and_then(|f| f.uid.clone()) }
            }
            _ => Awaited::Nothing,
        },
        // With no shutdown action nothing makes an endpoint go away, and one that outlives the Pod (a database
        // elsewhere) would cost the whole timeout.
        // A sidecar's proa stops nothing but its own program.
        (Mode::Sidecar { .. }, _) => Awaited::Nothing,
        // Nothing was started that could be awaited.
        (Mode::Failed(_), _) => Awaited::Nothing,
        (Mode::Endpoints(_), _) if config.actions.is_empty() => Awaited::Nothing,
        (Mode::Endpoints(endpoints), _) => Awaited::Endpoints(endpoints.iter().map(ToString::to_string).collect()),
    };
    let timeout = facts.map_or_else(
        || capped("the shutdown timeout", readiness::shutdown_timeout(config.shutdown_timeout, None)),
        |f| f.shutdown_timeout,
    );
    let budget = match stop {
        Some(stop) => shutdown::budget(timeout).min(stop.by - now),
        None => shutdown::budget(timeout),
    };
    let sends: Vec<usize> = match (facts, &config.mode) {
        (Some(facts), _) => facts.sends.clone(),
        // A failed start may be the refusal of a kill action: only the HTTP requests go.
        (None, Mode::Failed(_)) => (0..config.actions.len()).filter(|&i| !config.actions[i].kill).collect(),
        (None, _) => (0..config.actions.len()).collect(),
    };
    for (i, why) in facts.map(|f| f.skips.as_slice()).unwrap_or_default() {
        let label = config.actions.get(*i).map_or("?", |a| a.label.as_str());
        log::info!("not sending the shutdown action {label}: {why}");
    }
    let mut commands = Vec::new();
    if !sends.is_empty() {
        commands.push(Command::StartShutdown { budget, actions: sends.clone() });
    }
    match &awaited {
        Awaited::Nothing => {}
        Awaited::Sidecars { sidecars, uid } => {
            let from = facts.and_then(|f| f.version.clone());
            commands.push(Command::Watch(Watch::SidecarsGone { sidecars: sidecars.clone(), from, uid: uid.clone() }));
        }
        Awaited::Endpoints(_) => commands.push(Command::Probe(Goal::Gone)),
    }
    if commands.is_empty() {
        return finish(code);
    }
    match (&awaited, stop) {
        (Awaited::Nothing, Some(stop)) => log::info!(
            "the pod is stopping: sending the shutdown actions, not waiting for the sidecars (exiting within {})",
            Seconds(stop.by.duration_since(now))
        ),
        (Awaited::Nothing, None) if matches!(config.mode, Mode::Failed(_)) => {
            log::info!("sending the shutdown requests anyway")
        }
        (Awaited::Nothing, None) => log::info!("sending the shutdown actions"),
        _ => log::info!("shutting down sidecars (at most {})", Seconds(timeout)),
    }
    let state = State::ShuttingDown(ShuttingDown {
        code,
        actions_left: sends.len(),
        actions_deadline: after(now, budget + shutdown::REPORT_SLACK),
        awaited,
        deadline: after(now, timeout),
        stop,
        grace: facts.map_or(readiness::MIN_GRACE, |f| f.grace),
        uid: facts.and_then(|f| f.uid.clone()),
    });
    (state, commands)
}

pub(super) fn shutting_down(config: &Config, mut s: ShuttingDown, event: Event, now: Instant) -> (State, Vec<Command>) {
    let mut commands = Vec::new();
    // A deletion's own deadline, or a Pod already gone, may bring the kill sooner (the read after a stop signal).
    if let Event::Watch(update) = &event {
        s.stop = Stop::hear(s.stop, update_kill_in(update, &s.uid), s.grace, now);
    }
    match event {
        Event::Shutdown(outcome) => {
            outcome.log();
            s.actions_left = s.actions_left.saturating_sub(1);
        }
        Event::Watch(Update::PodChanged(pod)) => {
            if let Awaited::Sidecars { sidecars, uid } = &s.awaited {
                if readiness::is_gone(&pod, uid) {
                    commands.extend(pod_gone(&mut s, &pod));
                } else {
                    let left = readiness::sidecars_left(&pod, sidecars);
                    if left.is_empty() {
                        log::info!("sidecars have exited");
                        s.awaited = Awaited::Nothing;
                    } else {
                        debug!("waiting for sidecars {} to exit", left.join(", "));
                    }
                }
            }
        }
        Event::Watch(Update::PodDeleted(pod)) => {
            if let Awaited::Sidecars { .. } = s.awaited {
                commands.extend(pod_gone(&mut s, &pod));
            }
        }
        Event::Watch(Update::Failed(err)) => {
            if let Awaited::Sidecars { .. } = s.awaited {
                log::warn!("{err}; not waiting for sidecars to exit");
                s.awaited = Awaited::Nothing;
            }
        }
        Event::Probe(ProbeUpdate::Pending { goal: Goal::Gone, left }) => {
            if let Awaited::Endpoints(_) = s.awaited {
                debug!("waiting for endpoints to stop answering: {}", left.join(", "));
                s.awaited = Awaited::Endpoints(left);
            }
        }
        Event::Probe(ProbeUpdate::Failed { goal: Goal::Gone, why }) => {
            if let Awaited::Endpoints(_) = s.awaited {
                log::warn!("{why}; not waiting for the endpoints to stop answering");
                s.awaited = Awaited::Nothing;
            }
        }
        Event::Probe(ProbeUpdate::Reached(Goal::Gone)) => {
            if let Awaited::Endpoints(_) = s.awaited {
                log::info!("endpoints have stopped answering");
                s.awaited = Awaited::Nothing;
            }
        }
        Event::Signal(signal) if signals::is_stop_request(signal) => {
            if s.awaited != Awaited::Nothing {
                log::warn!(
                    "got {} while shutting down: not waiting for the sidecars any longer",
                    child::signal_name(signal)
                );
            }
            commands.extend(stop_waiting(&mut s));
            commands.extend(read_pod(config));
            s.stop = Some(s.stop.unwrap_or_else(|| Stop::new(now, s.grace)));
        }
        Event::Signal(signal) => debug!("ignoring {} while shutting down", child::signal_name(signal)),
        Event::DeadlinePassed => {
            if s.stop.is_some_and(|stop| now >= stop.by) {
                log::warn!("{}: exiting before the kubelet's SIGKILL", outstanding(&s, "the end of the grace period"));
                return finish(s.code);
            }
            if s.actions_left > 0 && now >= s.actions_deadline {
                log::warn!("{} shutdown action(s) unanswered: not waiting for them any longer", s.actions_left);
                s.actions_left = 0;
            }
            if s.awaited != Awaited::Nothing && now >= s.deadline {
                match s.actions_left {
                    0 => log::warn!("{}: exiting anyway", outstanding(&s, "the shutdown timeout")),
                    _ => log::warn!("{}: waiting only for the actions now", outstanding(&s, "the shutdown timeout")),
                }
                commands.extend(stop_waiting(&mut s));
            }
        }
        // The program has already exited, so nothing from the reaper can change the code now, nor is there a
        // program to quit; a prober aiming at Ready is a stale one from an aborted wait.
        Event::Child(_)
        | Event::SpawnFailed(_)
        | Event::Quit
        | Event::Release(_)
        | Event::Probe(
            ProbeUpdate::Reached(Goal::Ready)
            | ProbeUpdate::Pending { goal: Goal::Ready, .. }
            | ProbeUpdate::Failed { goal: Goal::Ready, .. },
        ) => {}
    }
    if s.awaited == Awaited::Nothing && s.actions_left == 0 {
        return finish(s.code);
    }
    (State::ShuttingDown(s), commands)
}

/// The Pod is being deleted or was replaced while proa waited for its sidecars: the kubelet stops them itself
/// (and reports none terminated before proa's own container), so stop waiting; the deadline of the deletion was
/// taken in with the event.
fn pod_gone(s: &mut ShuttingDown, pod: &Pod) -> Vec<Command> {
    log::info!("the pod is being deleted: not waiting for the sidecars to exit");
    if pod.metadata.deletion_grace_period_seconds.is_some() {
        s.grace = capped("deletionGracePeriodSeconds", readiness::grace_period(pod));
    }
    stop_waiting(s)
}

/// Stops waiting for the sidecars or endpoints (the actions' answers are still awaited), and the worker that
/// looked for them.
fn stop_waiting(s: &mut ShuttingDown) -> Vec<Command> {
    let stop = match s.awaited {
        Awaited::Nothing => return vec![],
        Awaited::Sidecars { .. } => Command::StopWatch,
        Awaited::Endpoints(_) => Command::StopProbe,
    };
    s.awaited = Awaited::Nothing;
    vec![stop]
}

/// What shutdown still waits for, for the log line that gives up on it at `when`.
fn outstanding(s: &ShuttingDown, when: &str) -> String {
    let mut parts = Vec::new();
    match &s.awaited {
        Awaited::Nothing => {}
        Awaited::Sidecars { sidecars, .. } => {
            let names: Vec<&str> = sidecars.iter().map(|w| w.name.as_str()).collect();
            parts.push(format!("sidecars {} still running at {when}", names.join(", ")));
        }
        Awaited::Endpoints(left) => parts.push(format!("endpoints still answering at {when}: {}", left.join(", "))),
    }
    if s.actions_left > 0 {
        parts.push(format!("{} shutdown action(s) unanswered", s.actions_left));
    }
    parts.join("; ")
}

fn finish(code: u8) -> (State, Vec<Command>) {
    (State::Done { code }, vec![Command::Exit(code)])
}
