//! The Waiting phase (`State::Waiting`)'s transitions (DESIGN.md "Wait"): Pod snapshots or probe results until every waited
//! container is ready; a dead sidecar, a gone Pod, an API failure, the ready timeout or a stop signal give up the
//! wait, and the program never starts. Pure apart from logging.

use std::time::Instant;

use crate::child;
use crate::clock::Seconds;
use crate::direct::Way;
use crate::exit::End;
use crate::pod::Pod;
use crate::probe::{Goal, Update as ProbeUpdate};
use crate::readiness::{self, Verdict, Waited};
use crate::signals;
use crate::watch::Update;

use super::config::{Config, Mode};
use super::endings::{after_program, failure};
use super::facts::{Facts, WaitVerdict, judge_wait, kill_in, ways};
use super::machine::{Command, Event, PROGRESS_FIRST, PROGRESS_MAX, Running, State, Waiting, with_first};
use super::probing::Change;
use super::shutting_down::{Ending, say_retrying, then_read_pod};
use super::stop::{Stop, after};

pub(super) fn waiting(config: &Config, mut w: Waiting, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Watch(Update::PodChanged(pod)) => snapshot(config, w, &pod, false, now),
        Event::Watch(Update::PodDeleted(pod)) => snapshot(config, w, &pod, true, now),
        Event::Watch(Update::Failed(err)) => {
            let failed = failure(err.to_string());
            let ending = match (&w.facts, err.is_refusal()) {
                (None, true) => Ending::Unread,
                _ => Ending::ApiFailed,
            };
            with_first(failed, abort_wait(config, w.facts.as_ref(), End::ProaFailed, ending, now))
        }
        Event::Watch(Update::Retrying { line, repeat, .. }) => {
            say_retrying(&line, repeat);
            (State::Waiting(w), vec![])
        }
        Event::Watch(Update::Reached) => (State::Waiting(w), vec![]),
        Event::Probe(ProbeUpdate::Reached(Goal::Ready)) => {
            // Only no-API mode runs a prober, and its facts are known from the start.
            let Some(facts) = w.facts.take() else { return (State::Waiting(w), vec![]) };
            let ready = format!("all endpoints ready after {}", Seconds(now.duration_since(w.since)));
            (State::Running(Running::new(facts)), vec![Command::Say(ready), Command::StartProgram])
        }
        Event::Probe(ProbeUpdate::Failed { goal: Goal::Ready, why }) => {
            with_first(failure(why), abort_wait(config, w.facts.as_ref(), End::ProaFailed, Ending::Normal, now))
        }
        Event::Probed { container, restart_count } => {
            // A stopped prober's pass, or one of a run that ended, changes nothing.
            if !w.probing.pass(&container, restart_count) {
                return (State::Waiting(w), vec![]);
            }
            debug!("container {container} passed its readinessProbe");
            // Probers start only once the first snapshot fixed the facts.
            let Some(facts) = w.facts.take() else { return (State::Waiting(w), vec![]) };
            match w.probing.judge(&facts) {
                Some(verdict) => decide(config, w, facts, verdict, Vec::new(), now),
                None => (State::Waiting(Waiting { facts: Some(facts), ..w }), vec![]),
            }
        }
        Event::Probe(ProbeUpdate::Pending { goal: Goal::Ready, left }) => {
            debug!("not ready yet: {}", left.join(", "));
            w.not_ready = left;
            (State::Waiting(w), vec![])
        }
        Event::Signal(signal) if signals::is_stop_request(signal) => {
            log::warn!("got {} while waiting for sidecars: not starting the program", child::signal_name(signal));
            // Before the first read the grace period is unknown: assume the shortest the kubelet gives (which no
            // deletion can shorten, so there is nothing to read).
            let grace = w.facts.as_ref().map_or(readiness::MIN_GRACE, |f| f.grace);
            let ending = Ending::Stopping(Stop::new(now, grace));
            let shutdown = abort_wait(config, w.facts.as_ref(), End::Signal(signal), ending, now);
            match w.facts {
                Some(_) => then_read_pod(config, shutdown),
                None => shutdown,
            }
        }
        Event::DeadlinePassed if w.deadline.is_some_and(|d| now >= d) && config.run_on_ready_timeout => {
            log::warn!(
                "{} not ready after {}: {}; running the program anyway (--on-ready-timeout run)",
                what(config),
                Seconds(now.duration_since(w.since)),
                not_ready(&w)
            );
            let facts = w.facts.take().unwrap_or_else(|| Facts::unread(config));
            let commands = stop_looking(config).into_iter().chain([Command::StartProgram]).collect();
            (State::Running(Running::new(facts)), commands)
        }
        Event::DeadlinePassed if w.deadline.is_some_and(|d| now >= d) => {
            let failed = failure(format!(
                "{} not ready after {}: {}; not starting the program",
                what(config),
                Seconds(now.duration_since(w.since)),
                not_ready(&w)
            ));
            with_first(failed, abort_wait(config, w.facts.as_ref(), End::ReadyTimeout, Ending::Normal, now))
        }
        Event::DeadlinePassed if now >= w.next_progress => {
            log::info!(
                "still waiting after {} for {}: {}",
                Seconds(now.duration_since(w.since)),
                what(config),
                progress(&w)
            );
            let waited = now.duration_since(w.since);
            w.next_progress = after(now, waited.clamp(PROGRESS_FIRST, PROGRESS_MAX));
            (State::Waiting(w), vec![])
        }
        Event::Signal(signal) => {
            debug!("ignoring {} while waiting for sidecars", child::signal_name(signal));
            (State::Waiting(w), vec![])
        }
        // None of these can happen before the program starts (a prober only aims at Gone during shutdown);
        // the deadline case is an early wake-up.
        Event::DeadlinePassed
        | Event::Child(_)
        | Event::SpawnFailed(_)
        | Event::Shutdown(_)
        | Event::Quit
        | Event::Probe(
            ProbeUpdate::Reached(Goal::Gone)
            | ProbeUpdate::Pending { goal: Goal::Gone, .. }
            | ProbeUpdate::Failed { goal: Goal::Gone, .. },
        ) => (State::Waiting(w), vec![]),
    }
}

/// A Pod snapshot while waiting; `deleted` when it came with a DELETED event.
fn snapshot(config: &Config, mut w: Waiting, pod: &Pod, deleted: bool, now: Instant) -> (State, Vec<Command>) {
    let mut facts = match w.facts.take() {
        Some(facts) => facts,
        None => match Facts::of(config, pod) {
            Ok(facts) => {
                log_waited(config, pod, &facts.waited);
                log_plan(config, &facts);
                facts
            }
            Err(err) => {
                let failed = failure(err.to_string());
                return with_first(failed, abort_wait(config, None, err.end(), Ending::Normal, now));
            }
        },
    };
    let WaitVerdict::Seen(verdict) = judge_wait(&facts.uid, &facts.waited, pod, deleted) else {
        if pod.metadata.uid == facts.uid {
            facts.observe(pod);
        }
        log::error!("the pod is being deleted (or was replaced): not starting the program");
        let stop = Stop::new(now, facts.grace).learn(now, kill_in(pod, deleted, &facts.uid));
        let ending = Ending::Stopping(stop);
        return abort_wait(config, Some(&facts), End::PodGone, ending, now);
    };
    facts.observe(pod);
    let probes = w.probing.follow(&facts.probes, pod).into_iter().map(|change| match change {
        Change::Start(order) => Command::DirectProbe(order),
        Change::Stop(container) => Command::StopDirectProbe(Some(container)),
    });
    let probes = probes.collect();
    let verdict = w.probing.with_passes(verdict, &facts);
    decide(config, w, facts, verdict, probes, now)
}

/// What a verdict on the newest snapshot (with the passes of direct probes) means for the wait; `probes` are the
/// direct probers to start or stop should it go on.
fn decide(
    config: &Config,
    mut w: Waiting,
    facts: Facts,
    verdict: Verdict,
    probes: Vec<Command>,
    now: Instant,
) -> (State, Vec<Command>) {
    match verdict {
        Verdict::Ready => {
            // Said before the program starts, so that a Job's log reads in the order things happened.
            let mut commands = stop_looking(config);
            if !facts.waited.is_empty() {
                let by_probe = w.probing.ready(&facts);
                let how = match by_probe.is_empty() {
                    true => String::new(),
                    false => format!(" (probed directly: {})", by_probe.join(", ")),
                };
                let after = Seconds(now.duration_since(w.since));
                commands.push(Command::Say(format!("all containers ready after {after}{how}")));
            }
            commands.push(Command::StartProgram);
            (State::Running(Running::new(facts)), commands)
        }
        Verdict::Pending { not_ready, waiting } => {
            for (container, reason) in &waiting {
                if !w.reasons.contains(&(container.clone(), reason.clone())) {
                    match readiness::is_routine_waiting_reason(reason) {
                        true => debug!("container {container} waiting: {reason}"),
                        false => log::warn!("container {container} waiting: {reason}"),
                    }
                }
            }
            w.reasons = waiting;
            w.not_ready = not_ready;
            w.facts = Some(facts);
            (State::Waiting(w), probes)
        }
        Verdict::Dead { container, exit_code, reason } => {
            let failed = failure(format!(
                "container {container} terminated ({reason} with exit code {exit_code}) and will not be restarted: not starting the program"
            ));
            with_first(failed, abort_wait(config, Some(&facts), End::ProaFailed, Ending::Normal, now))
        }
    }
}

/// What proa waits for, in words.
fn what(config: &Config) -> &'static str {
    match config.mode {
        Mode::Pod => "containers",
        Mode::Endpoints(_) | Mode::Sidecar { .. } | Mode::Failed(_) => "endpoints",
    }
}

/// What was not ready at the last look.
fn not_ready(w: &Waiting) -> String {
    match w.not_ready.is_empty() {
        true => "no pod status yet".to_string(),
        false => w.not_ready.join(", "),
    }
}

/// What is not ready, with the state each was last seen in: its waiting reason where it has one.
fn progress(w: &Waiting) -> String {
    if w.not_ready.is_empty() {
        return not_ready(w);
    }
    let reason = |name: &String| w.reasons.iter().find(|(container, _)| container == name).map(|(_, why)| why);
    let each =
        w.not_ready.iter().map(|name| match (reason(name), w.facts.as_ref().is_some_and(|f| f.waited.is_empty())) {
            (Some(why), _) => format!("{name} (waiting: {why})"),
            // No-API mode: the entry already says why ("tcp 127.0.0.1:5432 (connection refused)").
            (None, true) => name.clone(),
            (None, false) => format!("{name} (not ready)"),
        });
    each.collect::<Vec<_>>().join(", ")
}

/// Gives up waiting: the program never starts; the watcher or probers are stopped and shutdown begins.
fn abort_wait(config: &Config, facts: Option<&Facts>, end: End, ending: Ending, now: Instant) -> (State, Vec<Command>) {
    let (state, commands) = after_program(config, facts, end, ending, now);
    (state, stop_looking(config).into_iter().chain(commands).collect())
}

/// The commands that stop whatever looks for readiness.
fn stop_looking(config: &Config) -> Vec<Command> {
    match config.mode {
        Mode::Pod if config.direct_probe => vec![Command::StopWatch, Command::StopDirectProbe(None)],
        Mode::Pod => vec![Command::StopWatch],
        // A sidecar's proa, or one whose start failed, never waits, so has nothing to stop.
        Mode::Endpoints(_) | Mode::Sidecar { .. } | Mode::Failed(_) => vec![Command::StopProbe],
    }
}

/// What proa recognised, and a warning per sidecar nothing will stop (DESIGN.md step 4), said at the first
/// snapshot, only where this proa may stop the sidecars: not when another proa does, nor when the kubelet restarts
/// this container after every exit (then the sidecars are left running by design, and nothing is sent).
fn log_plan(config: &Config, facts: &Facts) {
    if !facts.may_stop_sidecars(config.always_shutdown) {
        return;
    }
    for line in facts.plan.notes() {
        log::info!("{line}");
    }
    for line in facts.plan.warnings() {
        log::warn!("{line}");
    }
}

/// Names the waited containers, and for each how proa learns that it is ready, once.
fn log_waited(config: &Config, pod: &Pod, waited: &[Waited]) {
    if waited.is_empty() {
        return log::info!("no sidecars to wait for");
    }
    let each = ways(pod, waited).into_iter().map(|(name, way)| match (way, config.direct_probe) {
        (Way::Probed(spec), true) => format!("{name} (probed at {} too)", spec.check),
        (Way::ApiOnly(why), true) => format!("{name} (API only: {why})"),
        (_, false) => name,
    });
    log::info!("waiting for containers {}", each.collect::<Vec<_>>().join(", "));
}
