//! The signal thread: signal-hook delivers the signals proa handles, and this thread reports each one to the
//! owner, which decides what it means in the current phase (forward, abort the wait, end the shutdown wait).
//! Registering replaces the default action, so proa itself is never killed by these signals.

use std::io;
use std::thread::{self, JoinHandle};

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::{Handle, Signals};

/// The signals proa forwards to the program (DESIGN.md "Run"). SIGCHLD, SIGPIPE and fault signals are not.
pub const HANDLED: [i32; 7] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// Whether a signal asks proa to stop (while waiting: give up; while shutting down: stop waiting): SIGTERM, the
/// kubelet's; SIGINT, a terminal's; SIGQUIT, the STOPSIGNAL of some images (nginx, php-fpm), which the kubelet then
/// sends instead of SIGTERM.
pub fn is_stop_request(signal: i32) -> bool {
    signal == SIGTERM || signal == SIGINT || signal == SIGQUIT
}

/// Starts the signal thread. The returned `Handle` closes it.
pub fn spawn_signals(report: impl Fn(i32) -> bool + Send + 'static) -> io::Result<(Handle, JoinHandle<()>)> {
    let mut signals = Signals::new(HANDLED)?;
    let handle = signals.handle();
    let thread = thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if !report(signal) {
                return;
            }
        }
    })?;
    Ok((handle, thread))
}
