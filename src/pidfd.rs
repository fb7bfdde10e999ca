//! A process held by a pidfd where the kernel has them (Linux 5.3+): a signal sent through it reaches that very
//! process even after its pid was reaped and reused, and poll(2) says when it exits. On older kernels, the pid.
//! Used by the owner (forwarding to the program) and by the kill feature. Only libc calls std does not offer.
#![allow(unsafe_code)] // pidfd_open, pidfd_send_signal and kill have no std equivalent

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A process to signal.
#[derive(Debug)]
pub struct Pidfd {
    pid: libc::pid_t,
    fd: Option<OwnedFd>,
}

impl Pidfd {
    /// Holds `pid`. `None` when no such process exists; without pidfd support, the pid alone.
    pub fn open(pid: libc::pid_t) -> Option<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor, or -1 and errno.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return match io::Error::last_os_error().raw_os_error() {
                Some(libc::ESRCH) => None,
                // ENOSYS: a kernel before 5.3.
                _ => Some(Pidfd { pid, fd: None }),
            };
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Some(Pidfd { pid, fd: Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }) })
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The descriptor, readable once the process has exited; `None` on kernels without pidfds.
    #[cfg_attr(not(feature = "kill"), allow(dead_code))] // only the kill feature waits for exits
    pub fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    /// Sends `signal`. ESRCH: the process has exited (through a pidfd, even if its pid is in use again).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let result = match &self.fd {
            // SAFETY: pidfd_send_signal takes a descriptor this value owns, a signal number, a null siginfo
            // (meaning: as kill(2) sends it) and flags.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            // SAFETY: kill(2) takes plain integers and has no memory effects.
            None => libc::c_long::from(unsafe { libc::kill(self.pid, signal) }),
        };
        match result {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}
