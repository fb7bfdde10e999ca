//! Exit codes (DESIGN.md "Exit codes"): how a run ended (`End`), the one function that maps an ending to its code
//! (`code`), and the mapping from a wait status to the program's code. Pure: no I/O. The lifecycle picks the
//! ending; `main` only returns the code.

/// Sidecars were not ready within `--ready-timeout` (as timeout(1) does).
pub const READY_TIMEOUT: u8 = 124;
/// proa failed before the program ran: bad flags, env or config, an API error, a sidecar that died for good.
pub const PROA_FAILED: u8 = 125;
/// The program exists but could not be executed (as shells do).
pub const NOT_EXECUTABLE: u8 = 126;
/// The program was not found (as shells do).
pub const NOT_FOUND: u8 = 127;

/// How a run of proa ended: one row of DESIGN.md's exit-code table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The program ran and exited with this code (128+N already when signal N killed it: `code_for`).
    Program(u8),
    /// `--serve-quit`: the program ended after proa stopped it on a quit request: 0, whatever its own code.
    Quit,
    /// proa got this stop signal before the program started: 128+N.
    Signal(i32),
    /// The Pod was deleted or replaced before the program started: as for SIGTERM, 143.
    PodGone,
    /// The sidecars were not ready within `--ready-timeout`: 124.
    ReadyTimeout,
    /// proa failed before the program ran (bad flags, env or config, an API error, a sidecar that died for good, a
    /// start that could not be made), or lost the program's status: 125.
    ProaFailed,
    /// The program exists but could not be executed: 126.
    NotExecutable,
    /// The program was not found: 127.
    NotFound,
}

/// The code proa exits with after `end`: DESIGN.md's exit-code table.
pub fn code(end: End) -> u8 {
    match end {
        End::Program(code) => code,
        End::Quit => 0,
        End::Signal(signal) => signal_code(signal),
        End::PodGone => signal_code(libc::SIGTERM),
        End::ReadyTimeout => READY_TIMEOUT,
        End::ProaFailed => PROA_FAILED,
        End::NotExecutable => NOT_EXECUTABLE,
        End::NotFound => NOT_FOUND,
    }
}

/// The code for death by signal `signal`, or for proa receiving it before the program started: 128+N.
pub fn signal_code(signal: i32) -> u8 {
    u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(u8::MAX)
}

/// The code a shell would report for a raw `waitpid` status: the exit code, or 128+N for a signal.
pub fn code_for(wait_status: i32) -> u8 {
    if libc::WIFEXITED(wait_status) {
        // WEXITSTATUS is already 0..=255.
        u8::try_from(libc::WEXITSTATUS(wait_status)).unwrap_or(u8::MAX)
    } else if libc::WIFSIGNALED(wait_status) {
        signal_code(libc::WTERMSIG(wait_status))
    } else {
        // Stopped or continued: waitpid without WUNTRACED never reports these.
        code(End::ProaFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_the_code_of_designs_table() {
        let table = [
            (End::Program(0), 0),
            (End::Program(3), 3),
            (End::Program(137), 137),
            (End::Program(255), 255),
            (End::Quit, 0),
            (End::Signal(libc::SIGTERM), 143),
            (End::Signal(libc::SIGINT), 130),
            (End::Signal(libc::SIGQUIT), 131),
            (End::PodGone, 143),
            (End::ReadyTimeout, 124),
            (End::ProaFailed, 125),
            (End::NotExecutable, 126),
            (End::NotFound, 127),
        ];
        for (end, expected) in table {
            assert_eq!(code(end), expected, "{end:?}");
        }
    }

    #[test]
    fn exited_keeps_its_code() {
        assert_eq!(code_for(7 << 8), 7);
        assert_eq!(code_for(0), 0);
        assert_eq!(code_for(255 << 8), 255);
    }

    #[test]
    fn killed_is_128_plus_signal() {
        assert_eq!(code_for(libc::SIGKILL), 137);
        assert_eq!(code_for(libc::SIGTERM), 143);
    }

    #[test]
    fn signal_code_stays_in_range() {
        assert_eq!(signal_code(15), 143);
        assert_eq!(signal_code(127), 255);
        assert_eq!(signal_code(500), 255);
    }
}
