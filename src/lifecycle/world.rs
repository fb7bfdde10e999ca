//! The seam between the pure lifecycle and I/O: what the owner loop does to the world, and how it hears back. The
//! real world is `threads.rs` (worker threads on one mpsc channel); the simulation's is `simulation/world.rs`.

use std::time::{Duration, Instant};

use crate::child::SpawnError;
use crate::direct::Order;
use crate::pod::Pod;
use crate::probe::Goal;
use crate::shutdown::Target;

use super::machine::Event;

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
    /// Starts probing one waited container's readinessProbe endpoint (stopping any earlier prober of it), which
    /// reports `Event::Probed` once it passed.
    fn direct_probe(&mut self, order: Order);
    /// Stops the direct prober of this container, or (`None`) every one.
    fn stop_direct_probe(&mut self, container: Option<&str>);
    fn start_program(&mut self) -> Result<(), SpawnError>;
    fn forward(&mut self, signal: i32);
    /// Sends these shutdown actions (by number, in `Options::shutdown_actions`' order) and a POST to each recognised
    /// sidecar's target, each to report within `budget`.
    fn start_shutdown(&mut self, budget: Duration, actions: &[usize], recognised: &[Target], guessed: &[Target]);
    fn write_termination_log(&mut self, reason: &str);
}

/// A watcher's stop condition, given each Pod snapshot and whether it came with a DELETED event.
pub type Until = Box<dyn FnMut(&Pod, bool) -> bool + Send>;
