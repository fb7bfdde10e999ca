//! How long proa may wait (DESIGN.md "Shut down"): every bound is capped at `MAX_WAIT`, so that deadline
//! arithmetic never overflows, and a stop by the kubelet (`Stop`) sets the instant proa must be gone by, less
//! `EXIT_MARGIN`. Pure apart from logging a capped bound; the clock comes in as a parameter.

use std::time::{Duration, Instant};

use crate::readiness;

/// The longest proa waits for anything. A longer bound (a grace period near i64::MAX, `--ready-timeout 99999h`) is
/// cut to this with a log line, so that deadline arithmetic can never overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);
/// Once the kubelet has sent SIGTERM, proa exits this long before the grace period ends (a quarter of a short one).
pub const EXIT_MARGIN: Duration = Duration::from_secs(1);

/// `now + wait`, which can never overflow (`wait` is cut to `MAX_WAIT`).
pub fn after(now: Instant, wait: Duration) -> Instant {
    now + wait.min(MAX_WAIT)
}

/// `wait`, or `MAX_WAIT` with a log line naming `what` when it is longer.
pub fn capped(what: &str, wait: Duration) -> Duration {
    if wait > MAX_WAIT {
        log::warn!("{what} of {}s is over a year: proa waits a year at most", wait.as_secs());
    }
    wait.min(MAX_WAIT)
}

/// When proa must have exited after a SIGTERM (or a deletion) at `now`: before the kubelet's SIGKILL at
/// `now + grace`, less `EXIT_MARGIN` (a quarter of a shorter grace).
pub fn exit_by(now: Instant, grace: Duration) -> Instant {
    after(now, grace - EXIT_MARGIN.min(grace / 4))
}

/// How long past the kubelet's SIGKILL a proa still alive shows that no SIGKILL came: the stop signal was not the
/// kubelet's (a `kill -QUIT` for a thread dump, a stray SIGINT), or its grace longer than proa knew.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// The kubelet is stopping the Pod (a stop signal, a deletion): proa must be gone before its SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// When proa first heard of it: the kubelet gives at least its shortest grace after its own SIGTERM.
    pub since: Instant,
    /// When proa exits, whatever it still waits for: the earliest kill it knows of, less the margin.
    pub by: Instant,
    /// The earliest kill it knows of.
    pub kill: Instant,
}

impl Stop {
    /// A stop heard of at `now`, with the kill `grace` later.
    pub fn new(now: Instant, grace: Duration) -> Stop {
        Stop { since: now, by: exit_by(now, grace), kill: after(now, grace) }
    }

    /// Whether proa, alive at `now`, is past this stop's kill by `STALE_AFTER`: then nothing was stopping it.
    pub fn is_stale(&self, now: Instant) -> bool {
        now >= self.kill + STALE_AFTER
    }

    /// News received at `now` that the kubelet kills within `kill_in` (a deletion's deadline; zero for a Pod
    /// already gone; `None`: no news). It never kills sooner than its shortest grace after the stop began, which
    /// may be before `now`.
    pub fn learn(self, now: Instant, kill_in: Option<Duration>) -> Stop {
        let Some(left) = kill_in else { return self };
        let kill = after(now, left).max(self.since + readiness::MIN_GRACE);
        let by = kill - EXIT_MARGIN.min((kill - self.since) / 4);
        Stop { since: self.since, by: self.by.min(by), kill: self.kill.min(kill) }
    }

    /// `stop` having learnt `kill_in`; a new stop with `grace` when that is news and none had begun.
    pub fn hear(stop: Option<Stop>, kill_in: Option<Duration>, grace: Duration, now: Instant) -> Option<Stop> {
        match (stop, kill_in) {
            (None, None) => None,
            (stop, _) => Some(stop.unwrap_or_else(|| Stop::new(now, grace)).learn(now, kill_in)),
        }
    }
}
