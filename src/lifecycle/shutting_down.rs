//! The ShuttingDown phase (DESIGN.md "Shut down"): the shutdown actions are out, and proa waits for their answers
//! and for the sidecars (or endpoints) to go, each wait with its own bound, and never past the kubelet's SIGKILL.
//! `begin_shutdown` enters it. Pure apart from logging.

use std::time::{Duration, Instant};

use crate::child;
use crate::clock::Seconds;
use crate::pod::Pod;
use crate::probe::{Goal, Update as ProbeUpdate};
use crate::readiness;
use crate::recognition;
use crate::shutdown::{self, Target};
use crate::signals;
use crate::watch::Update;

use super::config::{Config, Mode};
use super::facts::{self, Facts, Left, update_kill_in};
use super::machine::{Awaited, Command, Event, ShuttingDown, State, Watch, finish};
use super::stop::{Stop, after, capped};

/// How long the API server must stay out of reach, after a shutdown action was answered, before proa takes it for a
/// stopped mesh proxy (`cut_off`); the watcher tries again at least once a second meanwhile.
pub(super) const CUT_OFF_AFTER: Duration = Duration::from_secs(1);

/// How shutdown was reached, which decides what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The program exited, or the wait gave up (a dead sidecar, the ready timeout): wait for the sidecars to go.
    Normal,
    /// The API just failed: send the actions, but ask it nothing more.
    ApiFailed,
    /// The API refused to show the Pod (403, 401, 404), or proa could not even ask (no token): as `ApiFailed`, and
    /// the recognisable sidecars' shutdown requests are guessed (`guesses`).
    Unread,
    /// The kubelet is stopping the Pod (SIGTERM, deletion): it stops the sidecars itself and reports none of them
    /// terminated before proa's own container, so send the actions, wait for nothing else, and exit by `Stop::by`.
    Stopping(Stop),
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
        Ending::Normal | Ending::ApiFailed | Ending::Unread => None,
    };
    let awaited = match (&config.mode, ending) {
        (_, Ending::Stopping(_)) | (Mode::Pod, Ending::ApiFailed | Ending::Unread) => Awaited::Nothing,
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
    let recognised = facts.map(|f| f.plan.targets()).unwrap_or_default();
    let guessed = guesses(config, ending);
    let actions_left = sends.len() + recognised.len() + guessed.len();
    let mut commands = Vec::new();
    if actions_left > 0 {
        commands.push(Command::StartShutdown { budget, actions: sends, recognised, guessed });
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
        actions_left,
        actions_deadline: after(now, budget + shutdown::REPORT_SLACK),
        awaited,
        deadline: after(now, timeout),
        stop,
        grace: facts.map_or(readiness::MIN_GRACE, |f| f.grace),
        uid: facts.and_then(|f| f.uid.clone()),
        answered: false,
        unreachable_since: None,
    });
    (state, commands)
}

/// When the API refused to show proa its Pod (403, 401, 404) or proa could not ask (no token), it cannot tell which
/// sidecars run, yet a mesh proxy left running would keep the Job from ever completing: with no action given and
/// `--auto-shutdown` on, it sends the recognisable sidecars' shutdown requests on their default loopback ports, each
/// a guess that is quiet when nothing listens there. Not when the API was merely out of reach, nor on a stop or a
/// ready timeout: the Pod may be fine, and its proxy serving other containers.
fn guesses(config: &Config, ending: Ending) -> Vec<Target> {
    if !(ending == Ending::Unread && config.recognise && config.actions.is_empty()) {
        return Vec::new();
    }
    let guessed = recognition::guesses();
    let urls: Vec<&str> = guessed.iter().map(|t| t.url.as_str()).collect();
    log::info!(
        "the pod could not be read, so proa cannot tell which sidecars run: sending the recognisable ones' shutdown requests on their default ports, in case one is there ({})",
        urls.join(", ")
    );
    guessed
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
            s.answered |= outcome.is_success();
            s.actions_left = s.actions_left.saturating_sub(1);
            commands.extend(cut_off(&mut s, now));
        }
        Event::Watch(Update::Retrying { line, unreachable, repeat }) => {
            // While actions are out, or once one was answered, a failing API is expected: it may be the proxy.
            say_retrying(&line, repeat || s.actions_left > 0 || s.answered);
            s.unreachable_since = unreachable.then(|| s.unreachable_since.unwrap_or(now));
            commands.extend(cut_off(&mut s, now));
        }
        Event::Watch(Update::Reached) => s.unreachable_since = None,
        Event::Watch(Update::PodChanged(pod)) => {
            s.unreachable_since = None;
            commands.extend(sidecars_snapshot(&mut s, &pod, false))
        }
        Event::Watch(Update::PodDeleted(pod)) => commands.extend(sidecars_snapshot(&mut s, &pod, true)),
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
        // program to quit; a prober aiming at Ready, or a direct one, is a stale one from an aborted wait.
        Event::Child(_)
        | Event::SpawnFailed(_)
        | Event::Quit
        | Event::Probed { .. }
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

/// Once a shutdown action was answered, the API server out of reach for `CUT_OFF_AFTER` (every connection refused
/// or cut, none made) is what a stopped mesh proxy looks like from the Pod (its redirect of every outbound
/// connection stays, with nothing listening): the proxy carried proa's own connections, so nothing more can be
/// learnt, and proa stops waiting for the sidecars. A shorter blip of the API server is waited out.
fn cut_off(s: &mut ShuttingDown, now: Instant) -> Vec<Command> {
    let cut_off_for_long = s.unreachable_since.is_some_and(|since| now.duration_since(since) >= CUT_OFF_AFTER);
    if !(s.answered && cut_off_for_long && matches!(s.awaited, Awaited::Sidecars { .. })) {
        return Vec::new();
    }
    log::info!(
        "the API server cannot be reached since a shutdown action was answered (a mesh proxy it stopped carried proa's connections): not waiting for the sidecars to exit"
    );
    stop_waiting(s)
}

/// A watcher's retry, at warn level unless it is expected (`quiet`: it repeats one said less than ten seconds
/// before, or shutdown may have stopped the proxy the API is reached through).
pub(super) fn say_retrying(line: &str, quiet: bool) {
    match quiet {
        true => debug!("{line}"),
        false => log::warn!("{line}"),
    }
}

/// A snapshot while shutdown may wait for the sidecars, judged as the watcher judges it (`facts::sidecars_left`).
fn sidecars_snapshot(s: &mut ShuttingDown, pod: &Pod, deleted: bool) -> Vec<Command> {
    let Awaited::Sidecars { sidecars, uid } = &s.awaited else { return vec![] };
    match facts::sidecars_left(pod, deleted, uid, sidecars) {
        Left::Gone => pod_gone(s, pod),
        Left::These(left) if left.is_empty() => {
            log::info!("sidecars have exited");
            s.awaited = Awaited::Nothing;
            vec![]
        }
        Left::These(left) => {
            debug!("waiting for sidecars {} to exit", left.join(", "));
            vec![]
        }
    }
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
