//! The last resort: a panic, in any thread, never replaces the program's exit code. The hook logs one line and
//! ends proa at once with the program's code once it is known, else 125, before the default handler could abort
//! (134 under `panic = "abort"`) or leave the owner waiting on a thread that died. No input should reach a panic;
//! this is what happens if one does anyway.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::exit;

/// The program's exit code once the reaper reported it; `NOT_YET` before.
static PROGRAM_CODE: AtomicU16 = AtomicU16::new(NOT_YET);
const NOT_YET: u16 = u16::MAX;

/// Installs the hook. Call first in `main`, before any thread starts.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let code = code_after_panic(PROGRAM_CODE.load(Ordering::SeqCst));
        log::error!("internal error ({info}): exiting {code}");
        // The one exit outside `main`: unwinding or aborting from here would lose the code.
        std::process::exit(i32::from(code));
    }));
}

/// Called by the owner as soon as the program's exit code is known.
pub fn program_exited(code: u8) {
    PROGRAM_CODE.store(u16::from(code), Ordering::SeqCst);
}

/// The code proa exits with after a panic: the program's, once known, else 125.
fn code_after_panic(known: u16) -> u8 {
    exit::code(u8::try_from(known).map_or(exit::End::ProaFailed, exit::End::Program))
}

/// Panics at the named `point` when `PROA_TEST_PANIC` names it: how the integration tests reach a panic that no
/// input can reach. Only in debug builds; release builds compile it to nothing.
pub fn inject(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("PROA_TEST_PANIC").is_ok_and(|wanted| wanted == point) {
        panic!("injected by PROA_TEST_PANIC={point}");
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_code_wins_once_known() {
        assert_eq!(code_after_panic(NOT_YET), exit::PROA_FAILED);
        assert_eq!(code_after_panic(0), 0);
        assert_eq!(code_after_panic(7), 7);
        assert_eq!(code_after_panic(255), 255);
    }
}
