//! The shared endings: how the program's exit, a given-up wait or a failed start leads to Done, to AwaitingPeers or
//! to ShuttingDown (DESIGN.md "Shut down"), with the code `exit::code` maps its ending to. Pure apart from logging.

use std::time::Instant;

use crate::exit::{self, End};
use crate::readiness;

use super::config::{Config, StartError};
use super::facts::Facts;
use super::machine::{Command, State, finish, with_first};
use super::peers::await_peers;
use super::shutting_down::{Ending, begin_shutdown};

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
            return await_peers(facts.clone(), code);
        }
    }
    begin_shutdown(config, facts, code, ending, now)
}

/// The start failed (`Mode::Failed`): the program never runs; shutdown sends the HTTP actions and waits for their
/// answers only, as after any other failure, then proa exits 125.
pub(super) fn start_failed(config: &Config, err: &StartError, now: Instant) -> (State, Vec<Command>) {
    let failed = failure(err.to_string());
    let ending = if err.leaves_the_pod_unread() { Ending::Unread } else { Ending::Normal };
    with_first(failed, begin_shutdown(config, None, exit::code(err.end()), ending, now))
}

/// Logs why proa fails with a code of its own (124, 125) and orders the same text into the termination log.
pub(super) fn failure(reason: impl Into<String>) -> Command {
    let reason = reason.into();
    log::error!("{reason}");
    Command::WriteTerminationLog(reason)
}
