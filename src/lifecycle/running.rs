//! The Running phase (DESIGN.md "Run"): signals are forwarded to the program, a `--serve-quit` quit request stops
//! it, and its exit (or a failed spawn) ends the phase through `endings::after_program`. Pure apart from logging.

use std::time::Instant;

use crate::child::{self, Exit};
use crate::clock::Seconds;
use crate::exit::{self, End};
use crate::signals;

use super::config::{Config, Mode};
use super::endings::{after_program, failure};
use super::facts::update_kill_in;
use super::machine::{Command, Event, Quit, Running, State, finish, with_first};
use super::shutting_down::{Ending, then_read_pod};
use super::stop::{Stop, after, capped};

pub(super) fn running(config: &Config, mut r: Running, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Signal(signal) => {
            if signals::is_stop_request(signal) {
                debug!("the kubelet allows {} after {}", Seconds(r.facts.grace), child::signal_name(signal));
                let heard = Some(Stop::new(now, r.facts.grace));
                // A stale stop was not the kubelet's: it would have killed proa by then.
                match r.stop.is_some_and(|stop| !stop.is_stale(now)) {
                    true => r.newer_stop = heard,
                    false => r.stop = heard,
                }
            }
            (State::Running(r), vec![Command::Forward(signal)])
        }
        // A late snapshot of the stopped watcher: a deletion says when the kubelet kills.
        Event::Watch(update) => {
            let kill_in = update_kill_in(&update, &r.facts.uid);
            r.stop = Stop::hear(r.stop, kill_in, r.facts.grace, now);
            r.newer_stop = r.newer_stop.map(|stop| stop.learn(now, kill_in));
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
        Event::Child(Exit::Lost) => {
            let failed = failure("the program's exit status was lost (something else reaped it)");
            with_first(failed, program_done(config, r, End::ProaFailed, now))
        }
        // A start that could not be made (fork failed) is proa's own failure, 125; a program that is not there or
        // cannot run is the program's, 126 or 127, as a shell says it.
        Event::SpawnFailed(err) if err.end() == End::ProaFailed => {
            with_first(failure(err.to_string()), program_done(config, r, End::ProaFailed, now))
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
        // A late report from a prober that was just stopped: nothing to do.
        Event::Shutdown(_) | Event::Probe(_) | Event::Probed { .. } => (State::Running(r), vec![]),
    }
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
    // A stop signal is the kubelet's only while its kill can still come: a program that survived one (a `kill -QUIT`
    // for a thread dump, a stray SIGINT) and outlived its grace period, with proa still alive well past the kill,
    // ends normally, and the shutdown watch shows a deletion if there is one. Of live stops, the earliest deadline
    // holds (one already past means exiting at once, with the program's code).
    let live = [r.stop, r.newer_stop].into_iter().flatten().filter(|stop| !stop.is_stale(now)).min_by_key(|s| s.by);
    match (live, r.stop) {
        // No API traffic while the program runs: the Pod is read for its deletion's deadline only now.
        (Some(stop), _) => {
            then_read_pod(config, after_program(config, Some(&r.facts), end, Ending::Stopping(stop), now))
        }
        (None, Some(_)) => {
            log::info!(
                "the kubelet did not stop this container within the grace period of the stop signal: shutting down as usual"
            );
            after_program(config, Some(&r.facts), end, Ending::Normal, now)
        }
        (None, None) => after_program(config, Some(&r.facts), end, Ending::Normal, now),
    }
}
