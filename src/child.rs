//! The program: spawn it, forward signals to it, and reap it. The reaper thread is the only caller of
//! `waitpid` in proa (it also reaps orphans: as PID 1, or as a child subreaper otherwise); nothing calls
//! `Child::wait`, which would race it and lose the program's status. A terminal on stdin is handed to the
//! program while it runs, as tini does. Uses `unsafe` for the libc calls std does not offer.
#![allow(unsafe_code)] // waitpid, prctl, tcsetpgrp: std has no safe equivalent

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Nothing is left to reap, yet the program's exit was never seen: something else took its status.
    Lost,
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
    /// proa could not start a process at all, whatever the program: fork failed (EAGAIN: the container's or the
    /// user's process limit; ENOMEM), or another error that says nothing of the program. Exit 125.
    Failed { program: String, err: io::Error },
}

impl SpawnError {
    /// How the run ends, as a shell would say it; proa's own failure where the program could not be tried.
    pub fn end(&self) -> exit::End {
        match self {
            SpawnError::NotFound { .. } => exit::End::NotFound,
            SpawnError::NotExecutable { .. } | SpawnError::NoInterpreter { .. } => exit::End::NotExecutable,
            SpawnError::Failed { .. } => exit::End::ProaFailed,
        }
    }

    /// The exit code a shell would give; 125 where proa failed before the program ran.
    #[cfg(test)]
    pub fn code(&self) -> u8 {
        exit::code(self.end())
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound { program } => write!(f, "cannot run {program}: not found (check the path or PATH)"),
            SpawnError::NotExecutable { program, err } if err.raw_os_error() == Some(libc::ENOEXEC) => write!(
                f,
                "cannot run {program}: {err}: a binary for another machine, or a script without a #! line and no /bin/sh to run it"
            ),
            SpawnError::NotExecutable { program, err } => write!(f, "cannot run {program}: {err}"),
            SpawnError::NoInterpreter { program } => write!(
                f,
                "cannot run {program}: it exists, but its interpreter (#! line) or loader is missing (a binary built for another libc?)"
            ),
            SpawnError::Failed { program, err } if err.raw_os_error() == Some(libc::EAGAIN) => write!(
                f,
                "cannot start {program}: {err}: the process limit is reached (the container's pids limit, or RLIMIT_NPROC)"
            ),
            SpawnError::Failed { program, err } => write!(f, "cannot start {program}: {err}"),
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

/// What the terminal sends a background process group that reads it (SIGTTIN), or writes to it under
/// `stty tostop` (SIGTTOU): ignored by proa, at their default action in the program.
const JOB_CONTROL_SIGNALS: [i32; 2] = [libc::SIGTTOU, libc::SIGTTIN];
/// Whether `become_reaper` ignored them, so that the program must get their default actions back.
static JOB_CONTROL_IGNORED: AtomicBool = AtomicBool::new(false);

/// The shell that runs a script without a `#!` line, as POSIX `execvp` does.
const SHELL: &str = "/bin/sh";

/// Makes proa fit to reap, before any thread starts. SIGCHLD goes back to its default action: inherited as
/// ignored, it would make the kernel discard the program's exit status (and std does not reset it for the
/// program either). With a terminal, SIGTTOU and SIGTTIN are ignored, as tini does: once the program has the terminal, proa is in
/// the background, and its log lines to that terminal would stop it under `stty tostop` (the program gets their
/// default actions back, see `spawn_program`). Unless proa is PID 1, it becomes a child subreaper (as `tini -s`),
/// so that the program's orphans are re-parented to proa, not to the namespace's PID 1: proa reaps them, and
/// `--kill-all` knows them as the program's.
pub fn become_reaper() {
    // SAFETY: signal(2) with SIG_DFL or SIG_IGN installs no handler; no other thread exists yet.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // Only a proa with a terminal hands it to the program and can be stopped by it. Without one (a Pod), nothing is
    // ignored, so the program needs nothing reset and std can start it with posix_spawn rather than a fork of the
    // whole process (0.4 ms on the ready → start path, `make bench`).
    if owns_terminal() {
        JOB_CONTROL_IGNORED.store(true, Ordering::Relaxed);
        // SAFETY: signal(2) with SIG_IGN installs no handler; no other thread exists yet.
        unsafe {
            for signal in JOB_CONTROL_SIGNALS {
                libc::signal(signal, libc::SIG_IGN);
            }
        }
    }
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
/// as proa forwards them. Otherwise the program stays in proa's process group. A file without `#!` that is no
/// binary either is run by `/bin/sh` (`script_argv`), as POSIX `execvp` and shells do; std's spawn does not.
pub fn spawn_program(program: &OsString, args: &[OsString]) -> Result<Program, SpawnError> {
    let name = program.to_string_lossy().into_owned();
    let has_terminal = owns_terminal();
    let spawned = command(program, args, has_terminal).spawn().or_else(|err| match script_argv(program, args, &err) {
        Some(argv) => command(SHELL.as_ref(), &argv, has_terminal).spawn(),
        None => Err(err),
    });
    match spawned {
        // Dropping `Child` neither waits nor kills: the reaper owns the pid from here on.
        Ok(child) => Ok(Program { pid: child.id(), has_terminal }),
        Err(err) => Err(spawn_error(program, name, err)),
    }
}

/// The command that starts `program`: in its own process group with the terminal where `has_terminal`, and
/// with SIGTTOU and SIGTTIN at their default actions (where proa ignores them: an ignored signal stays ignored
/// across exec).
fn command(program: &OsStr, args: &[OsString], has_terminal: bool) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    if has_terminal {
        command.process_group(0);
        // SAFETY: the closure runs in the forked child before exec; `take_terminal` only makes
        // async-signal-safe calls (pthread_sigmask, getpgrp, tcsetpgrp) and allocates nothing.
        unsafe { command.pre_exec(take_terminal) };
    }
    if JOB_CONTROL_IGNORED.load(Ordering::Relaxed) {
        // SAFETY: the closure runs in the forked child before exec; `default_job_control` only calls signal(2),
        // which is async-signal-safe, and allocates nothing.
        unsafe { command.pre_exec(default_job_control) };
    }
    command
}

/// In the program's process, before exec: SIGTTOU and SIGTTIN back to their default actions.
fn default_job_control() -> io::Result<()> {
    for signal in JOB_CONTROL_SIGNALS {
        // SAFETY: signal(2) with SIG_DFL installs no handler and touches no memory of ours.
        if unsafe { libc::signal(signal, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What a failed exec means, as a shell would say it: ENOENT for a file that exists is its interpreter or loader;
/// the errors with which exec refuses the file are 126; any other (fork's EAGAIN or ENOMEM) is proa's failure.
fn spawn_error(program: &OsString, name: String, err: io::Error) -> SpawnError {
    match err.raw_os_error() {
        Some(libc::ENOENT) if exists(program) => SpawnError::NoInterpreter { program: name },
        Some(libc::ENOENT) => SpawnError::NotFound { program: name },
        Some(errno) if REFUSES_THE_FILE.contains(&errno) => SpawnError::NotExecutable { program: name, err },
        _ => SpawnError::Failed { program: name, err },
    }
}

/// The errors with which execve(2) refuses the file itself (execve(2), ERRORS): the program is not executable,
/// 126. EAGAIN, ENOMEM, EMFILE and the like say nothing of the program.
const REFUSES_THE_FILE: [i32; 11] = [
    libc::EACCES,
    libc::EPERM,
    libc::ENOEXEC,
    libc::ETXTBSY,
    libc::EISDIR,
    libc::ELOOP,
    libc::ENAMETOOLONG,
    libc::ENOTDIR,
    libc::E2BIG,
    libc::EINVAL,
    libc::ELIBBAD,
];

/// Whether `program` names a file: a path, or a name found on PATH.
fn exists(program: &OsStr) -> bool {
    resolve(program, Path::is_file).is_some()
}

/// The file `program` names: itself when it holds a `/`, else the first file on PATH that `accept`s.
fn resolve(program: &OsStr, accept: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let path = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return accept(path).then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs).map(|dir| dir.join(path)).find(|file| accept(file))
}

/// When exec failed with ENOEXEC: the arguments of `/bin/sh` that run `program` as a shell script (the file exec
/// tried, then `args`), as POSIX `execvp` and shells do. glibc's `execvp` does it, musl's does not, and
/// posix_spawn never does, so proa does it itself. `None` for any other error, a binary (for another machine:
/// `looks_binary`), or where there is no /bin/sh (a scratch image).
fn script_argv(program: &OsStr, args: &[OsString], err: &io::Error) -> Option<Vec<OsString>> {
    if err.raw_os_error() != Some(libc::ENOEXEC) || !Path::new(SHELL).is_file() {
        return None;
    }
    let file = resolve(program, is_executable)?;
    let mut head = Vec::with_capacity(SCRIPT_HEAD_BYTES);
    File::open(&file).ok()?.take(SCRIPT_HEAD_BYTES as u64).read_to_end(&mut head).ok()?;
    if looks_binary(&head) {
        return None;
    }
    Some(std::iter::once(file.into_os_string()).chain(args.iter().cloned()).collect())
}

/// How much of a file `looks_binary` reads (bash reads as much).
const SCRIPT_HEAD_BYTES: usize = 80;

/// Whether a file that exec refused is a binary, not a script: an ELF header (for another machine), or a NUL
/// byte in its first line, as bash decides.
fn looks_binary(head: &[u8]) -> bool {
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    head.starts_with(b"\x7fELF") || first_line.contains(&0)
}

/// A regular file with an execute bit: what exec found on PATH.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Replaces proa with the program (`PROA_DISABLE=true`): same pid, stdio, environment and working directory, and
/// no handlers of proa's; a script without `#!` by `/bin/sh`, as `spawn_program` does. Returns only when the exec
/// failed.
pub fn exec_program(program: &OsString, args: &[OsString]) -> SpawnError {
    let name = program.to_string_lossy().into_owned();
    let err = Command::new(program).args(args).exec();
    match script_argv(program, args, &err) {
        Some(argv) => spawn_error(program, name, Command::new(SHELL).args(argv).exec()),
        None => spawn_error(program, name, err),
    }
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
                report(Exit::Lost);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(errno: i32) -> SpawnError {
        let program = OsString::from("/no/such/dir/job");
        spawn_error(&program, "/no/such/dir/job".into(), io::Error::from_raw_os_error(errno))
    }

    /// Issue 18, item 12a: a fork that failed with EAGAIN exited 126, "not executable"; the program was never
    /// looked at, so it is proa that failed (125), and the message says why.
    #[test]
    fn a_failed_fork_is_proas_failure_not_the_programs() {
        let eagain = error(libc::EAGAIN);
        assert_eq!(eagain.code(), exit::PROA_FAILED);
        assert_eq!(
            eagain.to_string(),
            "cannot start /no/such/dir/job: Resource temporarily unavailable (os error 11): the process limit is reached (the container's pids limit, or RLIMIT_NPROC)"
        );
        for errno in [libc::ENOMEM, libc::EMFILE, libc::ENFILE] {
            assert_eq!(error(errno).code(), exit::PROA_FAILED, "{}", error(errno));
        }
    }

    #[test]
    fn exec_refusing_the_file_is_126_and_a_missing_file_127() {
        for errno in REFUSES_THE_FILE {
            assert_eq!(error(errno).code(), exit::NOT_EXECUTABLE, "{}", error(errno));
        }
        assert_eq!(error(libc::EACCES).to_string(), "cannot run /no/such/dir/job: Permission denied (os error 13)");
        assert_eq!(
            error(libc::ENOEXEC).to_string(),
            "cannot run /no/such/dir/job: Exec format error (os error 8): a binary for another machine, or a script without a #! line and no /bin/sh to run it"
        );
        assert_eq!(error(libc::ENOENT).code(), exit::NOT_FOUND);
        let shell = OsString::from("/bin/sh");
        let interpreter = spawn_error(&shell, "/bin/sh".into(), io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(interpreter.code(), exit::NOT_EXECUTABLE, "it exists: its interpreter is missing");
    }

    #[test]
    fn binaries_are_told_from_scripts_without_a_shebang() {
        assert!(looks_binary(b"\x7fELF\x02\x01\x01\0\0\0"));
        assert!(looks_binary(b"MZ\x90\0\x03"), "a NUL in the first line");
        assert!(!looks_binary(b"echo hello\nexit 3\n"));
        assert!(!looks_binary(b"set -e\n\0"), "a NUL after the first line");
        assert!(!looks_binary(b""));
    }

    #[test]
    fn paths_resolve_to_themselves_and_names_on_path() {
        assert_eq!(resolve(OsStr::new("/bin/sh"), |_| true), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve(OsStr::new("./x"), |_| false), None);
        assert!(resolve(OsStr::new("sh"), is_executable).is_some_and(|sh| sh.is_absolute()));
    }
}
