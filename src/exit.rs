//! Exit codes (DESIGN.md "Exit codes") and the mapping from a wait status to a code.
//! Pure: no I/O. The lifecycle picks the code; `main` only returns it.

/// Sidecars were not ready within `--ready-timeout` (as timeout(1) does).
pub const READY_TIMEOUT: u8 = 124;
/// proa failed before the program ran: bad flags, env or config, an API error, a sidecar that died for good.
pub const PROA_FAILED: u8 = 125;
/// The program exists but could not be executed (as shells do).
pub const NOT_EXECUTABLE: u8 = 126;
/// The program was not found (as shells do).
pub const NOT_FOUND: u8 = 127;

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
        PROA_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
