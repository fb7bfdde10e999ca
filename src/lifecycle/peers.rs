//! The AwaitingPeers phase (DESIGN.md "Shut down", `--peer`): the stopper's program has exited, and it watches the
//! Pod until every peer main container has terminated for good, with no bound of its own (a peer may run for
//! hours); a stop signal or a gone Pod ends the wait as usual. Then it shuts down. Pure apart from logging.

use std::time::Instant;

use crate::child;
use crate::pod::Pod;
use crate::readiness;
use crate::signals;
use crate::watch::Update;

use super::machine::{AwaitingPeers, Command, Config, Event, Facts, State, Stop, Watch, kill_in};
use super::stopping::{Ending, begin_shutdown, then_read_pod};

/// Enters AwaitingPeers: watches the Pod from the newest version seen.
pub(super) fn await_peers(facts: Facts, code: u8) -> (State, Vec<Command>) {
    log::info!("waiting for peers {} to terminate before stopping the sidecars", facts.peers_left.join(", "));
    let watch = Watch::PeersDone { peers: facts.peers.clone(), from: facts.version.clone(), uid: facts.uid.clone() };
    (State::AwaitingPeers(AwaitingPeers { code, facts }), vec![Command::Watch(watch)])
}

pub(super) fn awaiting_peers(
    config: &Config,
    mut p: AwaitingPeers,
    event: Event,
    now: Instant,
) -> (State, Vec<Command>) {
    match event {
        Event::Watch(Update::PodChanged(pod)) if !readiness::is_gone(&pod, &p.facts.uid) => {
            p.facts.observe(&pod);
            if !p.facts.peers_left.is_empty() {
                debug!("waiting for peers {} to terminate", p.facts.peers_left.join(", "));
                return (State::AwaitingPeers(p), vec![]);
            }
            log::info!("peers have terminated");
            stop_and(Command::StopWatch, begin_shutdown(config, Some(&p.facts), p.code, Ending::Normal, now))
        }
        Event::Watch(Update::PodChanged(pod)) => gone(config, p, &pod, false, now),
        Event::Watch(Update::PodDeleted(pod)) => gone(config, p, &pod, true, now),
        Event::Watch(Update::Failed(err)) => {
            log::warn!("{err}; cannot tell when the peers end, so shutting down now");
            begin_shutdown(config, Some(&p.facts), p.code, Ending::ApiFailed, now)
        }
        Event::Signal(signal) if signals::is_stop_request(signal) => {
            log::warn!("got {} while waiting for peers: shutting down now", child::signal_name(signal));
            let ending = Ending::Stopping(Stop::new(now, p.facts.grace));
            let shutdown = begin_shutdown(config, Some(&p.facts), p.code, ending, now);
            stop_and(Command::StopWatch, then_read_pod(config, shutdown))
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
        | Event::Quit
        | Event::Release(_)
        | Event::DeadlinePassed => (State::AwaitingPeers(p), vec![]),
    }
}

/// The Pod is being deleted (or is gone): the kubelet stops every container, so shut down as when stopping.
fn gone(config: &Config, mut p: AwaitingPeers, pod: &Pod, deleted: bool, now: Instant) -> (State, Vec<Command>) {
    log::info!("the pod is being deleted: not waiting for the peers");
    if pod.metadata.uid == p.facts.uid {
        p.facts.observe(pod);
    }
    let ending = Ending::Stopping(Stop::new(now, p.facts.grace).learn(now, kill_in(pod, deleted, &p.facts.uid)));
    stop_and(Command::StopWatch, begin_shutdown(config, Some(&p.facts), p.code, ending, now))
}

/// Puts `first` before a transition's commands.
fn stop_and(first: Command, (state, commands): (State, Vec<Command>)) -> (State, Vec<Command>) {
    (state, [first].into_iter().chain(commands).collect())
}
