//! The AwaitingPeers phase (DESIGN.md "Shut down", `--peer`): the stopper's program has exited, and it watches the
//! Pod until every peer main container has terminated for good, with no bound of its own (a peer may run for
//! hours); a stop signal or a gone Pod ends the wait as usual. Then it shuts down. Pure apart from logging.

use std::time::Instant;

use crate::child;
use crate::pod::Pod;
use crate::signals;
use crate::watch::Update;

use super::config::Config;
use super::facts::{self, Facts, Left, kill_in};
use super::machine::{AwaitingPeers, Command, Event, State, Watch, with_first};
use super::shutting_down::{Ending, begin_shutdown, say_retrying, then_read_pod};
use super::stop::Stop;

/// Enters AwaitingPeers: watches the Pod from the newest version seen.
pub(super) fn await_peers(facts: Facts, code: u8) -> (State, Vec<Command>) {
    log::info!("waiting for peers {} to terminate before stopping the sidecars", facts.peers_left.join(", "));
    let watch = Watch::PeersDone { peers: facts.peers.clone(), from: facts.version.clone(), uid: facts.uid.clone() };
    (State::AwaitingPeers(AwaitingPeers { code, facts }), vec![Command::Watch(watch)])
}

pub(super) fn awaiting_peers(config: &Config, p: AwaitingPeers, event: Event, now: Instant) -> (State, Vec<Command>) {
    match event {
        Event::Watch(Update::PodChanged(pod)) => snapshot(config, p, &pod, false, now),
        Event::Watch(Update::PodDeleted(pod)) => snapshot(config, p, &pod, true, now),
        Event::Watch(Update::Retrying { line, repeat, .. }) => {
            say_retrying(&line, repeat);
            (State::AwaitingPeers(p), vec![])
        }
        Event::Watch(Update::Reached) => (State::AwaitingPeers(p), vec![]),
        Event::Watch(Update::Failed(err)) => {
            log::warn!("{err}; cannot tell when the peers end, so shutting down now");
            begin_shutdown(config, Some(&p.facts), p.code, Ending::ApiFailed, now)
        }
        Event::Signal(signal) if signals::is_stop_request(signal) => {
            log::warn!("got {} while waiting for peers: shutting down now", child::signal_name(signal));
            let ending = Ending::Stopping(Stop::new(now, p.facts.grace));
            let shutdown = begin_shutdown(config, Some(&p.facts), p.code, ending, now);
            with_first(Command::StopWatch, then_read_pod(config, shutdown))
        }
        Event::Signal(signal) => {
            debug!("ignoring {} while waiting for peers", child::signal_name(signal));
            (State::AwaitingPeers(p), vec![])
        }
        // The program has exited and no shutdown has begun: nothing else can mean anything here.
        Event::Child(_)
        | Event::SpawnFailed(_)
        | Event::Shutdown(_)
        | Event::Probe(_)
        | Event::Probed { .. }
        | Event::Quit
        | Event::DeadlinePassed => (State::AwaitingPeers(p), vec![]),
    }
}

/// A snapshot while awaiting the peers, judged as the watcher judges it (`facts::peers_left`).
fn snapshot(config: &Config, mut p: AwaitingPeers, pod: &Pod, deleted: bool, now: Instant) -> (State, Vec<Command>) {
    if facts::peers_left(pod, deleted, &p.facts.uid, &p.facts.peers) == Left::Gone {
        return gone(config, p, pod, deleted, now);
    }
    p.facts.observe(pod);
    if !p.facts.peers_left.is_empty() {
        debug!("waiting for peers {} to terminate", p.facts.peers_left.join(", "));
        return (State::AwaitingPeers(p), vec![]);
    }
    log::info!("peers have terminated");
    with_first(Command::StopWatch, begin_shutdown(config, Some(&p.facts), p.code, Ending::Normal, now))
}

/// The Pod is being deleted (or is gone): the kubelet stops every container, so shut down as when stopping.
fn gone(config: &Config, mut p: AwaitingPeers, pod: &Pod, deleted: bool, now: Instant) -> (State, Vec<Command>) {
    log::info!("the pod is being deleted: not waiting for the peers");
    if pod.metadata.uid == p.facts.uid {
        p.facts.observe(pod);
    }
    let ending = Ending::Stopping(Stop::new(now, p.facts.grace).learn(now, kill_in(pod, deleted, &p.facts.uid)));
    with_first(Command::StopWatch, begin_shutdown(config, Some(&p.facts), p.code, ending, now))
}
