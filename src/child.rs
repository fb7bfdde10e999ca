//! The program: spawn it, forward signals to it, and reap it. The reaper thread is the only caller of
//! `waitpid` in proa (it also reaps orphans: as PID 1, or as a child subreaper otherwise); nothing calls
//! `Child::wait`, which would race it and lose the program's status. A terminal on stdin is handed to the
//! program while it runs, as tini does. Uses `unsafe` for the libc calls std does not offer.
#![allow(unsafe_code)] // waitpid, prctl, tcsetpgrp: std has no safe equivalent

use std::ffi::OsString;
use std::fmt;
use std::io::{self, IsTerminal};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::exit;
use crate::pidfd::Pidfd;

/// Default for `--kill-grace`: as long as Kubernetes' own default grace period would leave a container after
/// the usual shutdown, yet well within the default 30 s `--shutdown-timeout`.
#[cfg_attr(not(feature = "kill"), allow(dead_code))] // only the kill feature stops processes by signal so far
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

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
    /// Found, but what it needs to run is missing: a script's `#!` interpreter, or the loader of a binary built for
    /// another libc (a glibc binary in a musl or scratch image). Exit 126.
    NoInterpreter { program: String },
    /// proa could not start the thread that reaps the program (a pids limit): the program was not started. Exit 125.
    NoThread(io::Error),
}

impl SpawnError {
    /// The exit code a shell would give.
    pub fn code(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => exit::NOT_FOUND,
            SpawnError::NotExecutable { .. } | SpawnError::NoInterpreter { .. } => exit::NOT_EXECUTABLE,
            SpawnError::NoThread(_) => exit::PROA_FAILED,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound { program } => write!(f, "cannot run {program}: not found (check the path or PATH)"),
            SpawnError::NotExecutable { program, err } => write!(f, "cannot run {program}: {err}"),
            SpawnError::NoInterpreter { program } => write!(
                f,
                "cannot run {program}: it exists, but its interpreter (#! line) or loader is missing (a binary built for another libc?)"
            ),
            SpawnError::NoThread(err) => {
                write!(
                    f,
                    "cannot start the thread that would reap the program ({err}): not starting it; raise the pids limit"
                )
            }
        }
    }
}

impl std::error::Error for SpawnError {}

/// The running program, as the reaper needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub pid: u32,
    /// The program runs in its own process group, which proa made the foreground group of the terminal on
    /// stdin; proa takes the terminal back when the program exits.
    pub has_terminal: bool,
}

/// Makes proa fit to reap, before any thread starts. SIGCHLD goes back to its default action: inherited as
/// ignored, it would make the kernel discard the program's exit status (and std does not reset it for the
/// program either). Unless proa is PID 1, it becomes a child subreaper (as `tini -s`), so that the program's
/// orphans are re-parented to proa, not to the namespace's PID 1: proa reaps them, and `--kill-all` knows them
/// as the program's.
pub fn become_reaper() {
    // SAFETY: signal(2) with SIG_DFL installs no handler; no other thread exists yet.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    if std::process::id() == 1 {
        debug!("running as PID 1: orphaned processes are reaped");
        return;
    }
    // SAFETY: PR_SET_CHILD_SUBREAPER takes plain integers and has no memory effects.
    match unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } {
        0 => debug!("not PID 1: child subreaper, so the program's orphans are reaped here"),
        _ => log::warn!("cannot become a child subreaper: {}; orphans go to PID 1", io::Error::last_os_error()),
    }
}

/// Starts the program with proa's stdio, environment and working directory.
/// Start the reaper first (`start_reaper`) and hand it the program only after this returned: std reaps a child
/// whose exec failed, which must not race the reaper.
///
/// When proa is in the foreground of a terminal on stdin (`docker run -it`, a Pod with `tty: true`, a shell),
/// the program gets its own process group and the terminal's foreground (tini's `isolate_child`): the
/// terminal's SIGINT (Ctrl-C), SIGQUIT and SIGTSTP then reach the program once, directly, and not a second time
/// as proa forwards them. Otherwise the program stays in proa's process group.
pub fn spawn_program(program: &OsString, args: &[OsString]) -> Result<Program, SpawnError> {
    let name = program.to_string_lossy().into_owned();
    let mut command = Command::new(program);
    command.args(args);
    let has_terminal = owns_terminal();
    if has_terminal {
        command.process_group(0);
        // SAFETY: the closure runs in the forked child before exec; `take_terminal` only makes
        // async-signal-safe calls (pthread_sigmask, getpgrp, tcsetpgrp) and allocates nothing.
        unsafe { command.pre_exec(take_terminal) };
    }
    match command.spawn() {
        // Dropping `Child` neither waits nor kills: the reaper owns the pid from here on.
        Ok(child) => Ok(Program { pid: child.id(), has_terminal }),
        Err(err) => Err(spawn_error(program, name, err)),
    }
}

/// What a failed exec means, as a shell would say it: ENOENT for a file that exists is its interpreter or loader.
fn spawn_error(program: &OsString, name: String, err: io::Error) -> SpawnError {
    match err.kind() {
        io::ErrorKind::NotFound if exists(program) => SpawnError::NoInterpreter { program: name },
        io::ErrorKind::NotFound => SpawnError::NotFound { program: name },
        _ => SpawnError::NotExecutable { program: name, err },
    }
}

/// Whether `program` names a file: a path, or a name found on PATH.
fn exists(program: &OsString) -> bool {
    let path = std::path::Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return path.exists();
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs).any(|dir| dir.join(path).is_file())
}

/// Replaces proa with the program (`PROA_DISABLE=true`): same pid, stdio, environment and working directory, and
/// no handlers of proa's. Returns only when the exec failed.
pub fn exec_program(program: &OsString, args: &[OsString]) -> SpawnError {
    use std::os::unix::process::CommandExt;
    let err = Command::new(program).args(args).exec();
    spawn_error(program, program.to_string_lossy().into_owned(), err)
}

/// Whether stdin is a terminal whose foreground process group is proa's. In the background (`proa … &`) proa
/// must not take the terminal from the shell.
fn owns_terminal() -> bool {
    // SAFETY: tcgetpgrp and getpgrp take plain integers and have no memory effects.
    io::stdin().is_terminal() && unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() }
}

/// In the program's process, before exec: makes its new process group the terminal's foreground group.
fn take_terminal() -> io::Result<()> {
    // SAFETY: getpgrp has no memory effects.
    match set_foreground(unsafe { libc::getpgrp() }) {
        // ENOTTY: stdin is a terminal, but not proa's controlling one; ENXIO: no such terminal any more.
        // Either way no job control applies, so the program runs on in its own group.
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::ENXIO)) => Ok(()),
        other => other,
    }
}

/// `tcsetpgrp` on stdin with SIGTTOU blocked in the calling thread: a background group that calls it
/// otherwise gets SIGTTOU, which stops it. Async-signal-safe, so it can run between fork and exec.
fn set_foreground(pgrp: libc::pid_t) -> io::Result<()> {
    // SAFETY: both sigsets are plain data initialised by sigemptyset before use; pthread_sigmask and
    // tcsetpgrp only read and write them and take integers otherwise.
    unsafe {
        let mut block = std::mem::zeroed::<libc::sigset_t>();
        let mut previous = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut block);
        libc::sigemptyset(&mut previous);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut previous);
        let result = match libc::tcsetpgrp(libc::STDIN_FILENO, pgrp) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        };
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        result
    }
}

/// The reaper thread, started before the program so that a process out of threads fails before the program runs
/// rather than after, when its exit status could no longer be learnt. It waits for `watch`.
pub struct Reaper {
    program: mpsc::Sender<Program>,
}

impl Reaper {
    /// Hands the started program to the reaper.
    pub fn watch(self, program: Program) {
        // The reaper only ends once it reported; it cannot be gone yet.
        _ = self.program.send(program);
    }
}

/// Starts the reaper: once given the program (`Reaper::watch`), it blocks in `waitpid(-1)`, reports the program's
/// exit once, and keeps reaping any other child (orphans re-parented to proa) until none is left. Only the
/// program's pid sets the exit code. Dropped unwatched (the program could not start), it ends.
pub fn start_reaper(report: impl Fn(Exit) -> bool + Send + 'static) -> io::Result<Reaper> {
    let (program_tx, program_rx) = mpsc::channel::<Program>();
    thread::Builder::new().name("reaper".into()).spawn(move || {
        let Ok(program) = program_rx.recv() else { return };
        reap(program, report);
    })?;
    Ok(Reaper { program: program_tx })
}

fn reap(program: Program, report: impl Fn(Exit) -> bool) {
    let program_pid = libc::pid_t::try_from(program.pid).unwrap_or(libc::pid_t::MAX);
    let mut reported = false;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable c_int for the duration of the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == program_pid {
            if program.has_terminal {
                take_terminal_back(program_pid);
            }
            reported = true;
            report(Exit::Exited { code: exit::code_for(status) });
        } else if pid > 0 {
            debug!("reaped orphan pid {pid}");
        } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // ECHILD: nothing left to reap. Before the program's exit only if something else reaped it,
            // which `become_reaper` rules out; say so rather than wait forever.
            if !reported {
                log::error!("the program's exit status was lost: proa exits {}", exit::PROA_FAILED);
                report(Exit::Exited { code: exit::PROA_FAILED });
            }
            return;
        }
    }
}

/// After the program exited: proa's process group gets the terminal back, so that a Ctrl-C during shutdown
/// reaches proa (an empty foreground group would leave it unheard). Not when the program passed the terminal on.
fn take_terminal_back(program_pgrp: libc::pid_t) {
    // SAFETY: tcgetpgrp and getpgrp take plain integers and have no memory effects.
    let (foreground, own) = unsafe { (libc::tcgetpgrp(libc::STDIN_FILENO), libc::getpgrp()) };
    if foreground == program_pgrp {
        if let Err(err) = set_foreground(own) {
            debug!("cannot take the terminal back: {err}");
        }
    }
}

/// Sends `signal` to the program. A program that is already gone (ESRCH) is not an error: its exit is on its
/// way to the owner through the reaper.
pub fn forward(program: &Pidfd, signal: i32) {
    let pid = program.pid();
    debug!("forwarding {} to pid {pid}", signal_name(signal));
    if let Err(err) = program.signal(signal) {
        match err.raw_os_error() {
            Some(libc::ESRCH) => debug!("pid {pid} already exited; {} not delivered", signal_name(signal)),
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
