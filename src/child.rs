//! The program: spawn it, forward signals to it, and reap it. The reaper thread is the only caller of
//! `waitpid` in proa (it also reaps orphans when proa is PID 1); nothing calls `Child::wait`, which would race
//! it and lose the program's status. The only module with `unsafe` (libc calls std does not offer).
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::process::Command;
use std::thread::{self, JoinHandle};

use crate::exit;

/// What the reaper reports: the program's exit, exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The program exited; `code` is its exit code, or 128+N if signal N killed it.
    Exited { code: u8 },
}

/// The program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// No such file, or not on PATH. Exit 127.
    NotFound { program: String },
    /// Found, but the exec failed (permission, format). Exit 126.
    NotExecutable { program: String, err: io::Error },
}

impl SpawnError {
    /// The exit code a shell would give.
    pub fn code(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => exit::NOT_FOUND,
            SpawnError::NotExecutable { .. } => exit::NOT_EXECUTABLE,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound { program } => write!(f, "cannot run {program}: not found (check the path or PATH)"),
            SpawnError::NotExecutable { program, err } => write!(f, "cannot run {program}: {err}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Starts the program with proa's stdio, environment and working directory, and returns its pid.
/// Call this before `spawn_reaper`: std reaps a child whose exec failed, which must not race the reaper.
pub fn spawn_program(program: &OsString, args: &[OsString]) -> Result<u32, SpawnError> {
    let name = program.to_string_lossy().into_owned();
    match Command::new(program).args(args).spawn() {
        // Dropping `Child` neither waits nor kills: the reaper owns the pid from here on.
        Ok(child) => Ok(child.id()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(SpawnError::NotFound { program: name }),
        Err(err) => Err(SpawnError::NotExecutable { program: name, err }),
    }
}

/// Replaces proa with the program (`PROA_DISABLE=true`): same pid, stdio, environment and working directory, and
/// no handlers of proa's. Returns only when the exec failed.
pub fn exec_program(program: &OsString, args: &[OsString]) -> SpawnError {
    use std::os::unix::process::CommandExt;
    let err = Command::new(program).args(args).exec();
    let name = program.to_string_lossy().into_owned();
    match err.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound { program: name },
        _ => SpawnError::NotExecutable { program: name, err },
    }
}

/// Starts the reaper: it blocks in `waitpid(-1)`, reports the program's exit once, and keeps reaping any other
/// child (orphans re-parented to proa as PID 1) until none is left.
pub fn spawn_reaper(program_pid: u32, report: impl Fn(Exit) -> bool + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let program_pid = libc::pid_t::try_from(program_pid).unwrap_or(libc::pid_t::MAX);
            loop {
                let mut status = 0;
                // SAFETY: `status` is a valid, writable c_int for the duration of the call.
                let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
                if pid == program_pid {
                    report(Exit::Exited { code: exit::code_for(status) });
                } else if pid > 0 {
                    log::trace!("reaped orphan pid {pid}");
                } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    // ECHILD: nothing left to reap.
                    return;
                }
            }
        })
        .expect("spawning a thread only fails when the process is out of resources")
}

/// Sends `signal` to the program. A program that is already gone (ESRCH) is not an error: its exit is on its
/// way to the owner through the reaper.
pub fn forward(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    log::debug!("forwarding {} to pid {pid}", signal_name(signal));
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => log::debug!("pid {pid} already exited; {} not delivered", signal_name(signal)),
            _ => log::warn!("cannot forward {} to pid {pid}: {err}", signal_name(signal)),
        }
    }
}

/// The conventional name of a signal, for logs.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGWINCH => "SIGWINCH",
        other => return format!("signal {other}"),
    };
    name.to_string()
}
