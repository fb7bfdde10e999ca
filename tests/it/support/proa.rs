//! Runs the real proa binary (`CARGO_BIN_EXE_proa`) with the test API server's environment, collects its
//! stdout and stderr on their own threads, and waits for it with a bound. proa can also run as PID 1 of a new
//! PID namespace, alone or under an init script that stands in for a Pod's pause process. Also `Marker`: a TCP
//! listener the wrapped programs write lines to (bash's /dev/tcp), so tests know when and what a program did.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::apiserver::ApiServer;
use super::procs;

/// A proa command line about to run.
pub struct Proa {
    command: Command,
    stdin: Option<OwnedFd>,
    /// Kill proa if the test drops it unwaited (a failed assertion): see [`Proa::with_env`].
    kill_on_drop: bool,
    /// See [`Proa::stderr_broken`].
    stderr_broken: bool,
    /// With `terminal_output`: proa's stderr (the terminal) and the terminal's other side, read as its stderr.
    terminal_stderr: Option<(OwnedFd, File)>,
}

/// How `unshare` makes a new PID namespace with its own /proc; `--kill-child` ends the namespace with it.
const UNSHARE: [&str; 5] = ["--pid", "--fork", "--mount-proc", "--kill-child", "--"];

impl Proa {
    /// proa with the API server's in-cluster environment and debug logs.
    pub fn new(api: &ApiServer) -> Proa {
        let mut proa = Proa::bare();
        proa.command.envs(api.env());
        proa
    }

    /// proa with this in-cluster environment (a real API server's, say) and debug logs. Killed if the test drops it
    /// without waiting for it (a failed assertion), or when the test's thread ends (the test process was killed):
    /// an orphan would retry a server that is gone for ever, holding whatever descriptors it inherited (a lock
    /// around `cargo test`, say).
    pub fn with_env(env: impl IntoIterator<Item = (String, String)>) -> Proa {
        let mut proa = Proa::bare();
        proa.command.envs(env);
        proa.kill_on_drop = true;
        // SAFETY: prctl(2) is async-signal-safe and takes plain integers. The signal comes when the test's thread
        // ends, so also when the test process is killed (which skips every Drop).
        unsafe {
            proa.command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        proa
    }

    /// proa with no cluster environment at all.
    pub fn bare() -> Proa {
        Proa::bare_at(proa_binary())
    }

    /// Like [`Proa::bare`], with another binary than the one under test (`make static`'s, say).
    pub fn bare_at(binary: impl AsRef<OsStr>) -> Proa {
        let mut command = Command::new(binary);
        command.env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()));
        command.env("RUST_LOG", "debug");
        // Where proa's own failures are written unless a test says otherwise: never the machine's
        // /dev/termination-log, which exists when the tests themselves run in a Pod.
        command.env("PROA_TERMINATION_LOG", "/dev/null");
        Proa { command, stdin: None, kill_on_drop: false, stderr_broken: false, terminal_stderr: None }
    }

    /// `chroot ROOT /proa`: the binary at `ROOT/proa`, run inside `ROOT` as in a FROM-scratch image, with an empty
    /// environment apart from `RUST_LOG=debug` and what [`Proa::env`] adds. Needs root.
    pub fn chroot(root: &std::path::Path) -> Proa {
        Proa::chroot_at(root, "/proa")
    }

    /// Like [`Proa::chroot`], with the binary at `ROOT/exe` (`exe` is absolute inside the root).
    pub fn chroot_at(root: &std::path::Path, exe: &str) -> Proa {
        let mut command = Command::new(chroot_binary());
        command.arg(root).arg(exe).env_clear().env("RUST_LOG", "debug");
        Proa { command, stdin: None, kill_on_drop: false, stderr_broken: false, terminal_stderr: None }
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Proa {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Proa {
        self.command.env(key, value);
        self
    }

    /// Runs proa as PID 1 of a new PID namespace (check `pidns::available` first). Its network namespace is
    /// the test's, so it reaches the API server on 127.0.0.1. Arguments may be added before or after.
    pub fn pid1(self) -> Proa {
        self.wrapped(UNSHARE.iter().map(OsString::from))
    }

    /// Runs `script` (bash) as PID 1 of a new PID namespace, with proa's command line as `"$@"`: the script
    /// plays a Pod's pause process with `shareProcessNamespace: true` and starts sidecars and proa.
    pub fn under_init(self, script: &str) -> Proa {
        let init = ["bash", "-c", script, "init"];
        self.wrapped(UNSHARE.iter().chain(&init).map(OsString::from))
    }

    /// Runs proa inside the PID and mount namespaces of the process `pid` (as the test sees it), as `kubectl exec`
    /// runs a command in a running container: its /proc is that namespace's.
    pub fn exec_into(self, pid: i32) -> Proa {
        let target = pid.to_string();
        self.wrapped_by(
            "nsenter",
            ["--target", target.as_str(), "--pid", "--mount", "--"].map(OsString::from).into_iter(),
        )
    }

    /// Runs proa from bash with job control (`set -m`), as an interactive shell does: in a process group of its
    /// own, in the foreground of the terminal (see [`Proa::terminal`]). The exit code is proa's, or 128+N where
    /// signal N stopped proa (bash then says `Stopped` and moves on).
    pub fn under_job_control(self) -> Proa {
        let shell = ["-c", "set -m; \"$@\"; exit $?", "shell"];
        self.wrapped_by("bash", shell.iter().map(OsString::from))
    }

    /// Runs proa inside a cgroup: a shell writes its pid to `procs` (the cgroup's `cgroup.procs`), then execs proa.
    pub fn in_cgroup(self, procs: &std::path::Path) -> Proa {
        let script = format!("echo $$ > '{}' && exec \"$@\"", procs.display());
        self.wrapped_by("sh", [OsString::from("-c"), script.into(), "sh".into()].into_iter())
    }

    fn wrapped(self, prefix: impl Iterator<Item = OsString>) -> Proa {
        self.wrapped_by("unshare", prefix)
    }

    fn wrapped_by(self, wrapper: &str, prefix: impl Iterator<Item = OsString>) -> Proa {
        let mut command = Command::new(wrapper);
        command.args(prefix).arg(self.command.get_program()).args(self.command.get_args());
        command.env_clear();
        for (key, value) in self.command.get_envs() {
            if let Some(value) = value {
                command.env(key, value);
            }
        }
        Proa {
            command,
            stdin: self.stdin,
            kill_on_drop: self.kill_on_drop,
            stderr_broken: self.stderr_broken,
            terminal_stderr: self.terminal_stderr,
        }
    }

    /// Starts proa in a new session whose controlling terminal is `tty` (a pseudo-terminal's secondary side),
    /// which is also its stdin, as in `docker run -it` or a Pod with `tty: true`.
    pub fn terminal(mut self, tty: OwnedFd) -> Proa {
        self.stdin = Some(tty);
        // SAFETY: setsid and ioctl are async-signal-safe and take plain integers.
        unsafe {
            self.command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    /// Like [`Proa::terminal`], with proa's stderr on the terminal too, as a shell or `docker run -it` has it.
    /// `primary` is the terminal's other side: what proa writes there is `stderr()` and `Finished::stderr`.
    pub fn terminal_output(mut self, tty: OwnedFd, primary: File) -> Proa {
        self.terminal_stderr = Some((tty.try_clone().expect("dup the terminal"), primary));
        self.terminal(tty)
    }

    /// Starts proa with SIGCHLD ignored, as a careless parent may leave it: the ignored disposition is inherited.
    pub fn sigchld_ignored(mut self) -> Proa {
        // SAFETY: signal(2) is async-signal-safe; SIG_IGN installs no handler.
        unsafe {
            self.command.pre_exec(|| {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                Ok(())
            });
        }
        self
    }

    /// Starts proa with its stderr a pipe nobody reads any more: every write to it fails (EPIPE).
    pub fn stderr_broken(mut self) -> Proa {
        self.stderr_broken = true;
        self
    }

    pub fn spawn(mut self) -> Running {
        let started = Instant::now();
        let stdin = match self.stdin.take() {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        };
        let (eof_tx, eof) = mpsc::channel();
        let (stderr, primary) = match (self.terminal_stderr.take(), self.stderr_broken) {
            (Some((tty, primary)), _) => (Stdio::from(tty), Some(primary)),
            (None, false) => (Stdio::piped(), None),
            (None, true) => {
                let mut fds = [0; 2];
                // SAFETY: pipe2(2) writes two new descriptors into `fds`.
                assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "a pipe");
                // SAFETY: both descriptors were just created, and nothing else owns them.
                let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                drop(reader);
                (Stdio::from(writer), None)
            }
        };
        let mut child =
            self.command.stdin(stdin).stdout(Stdio::piped()).stderr(stderr).spawn().expect("the proa binary runs");
        // The terminal's other side reads until every process has closed the terminal, as a pipe would.
        drop(self.command);
        let stdout = collect(child.stdout.take().expect("piped"), eof_tx.clone());
        let stderr = match (primary, child.stderr.take()) {
            (Some(primary), _) => collect(primary, eof_tx),
            (None, Some(pipe)) => collect(pipe, eof_tx),
            (None, None) => collect(std::io::empty(), eof_tx),
        };
        Running { child: Some(child), started, stdout, stderr, eof, kill_on_drop: self.kill_on_drop }
    }
}

/// The binary under test: cargo names it for integration tests; the demo gets it from `PROA_BIN`.
pub fn proa_binary() -> String {
    match option_env!("CARGO_BIN_EXE_proa") {
        Some(path) => path.to_string(),
        None => std::env::var("PROA_BIN").expect("PROA_BIN names the proa binary"),
    }
}

/// chroot(8), looked up before the environment is cleared: it lives in sbin, which a cleared PATH would miss.
fn chroot_binary() -> std::path::PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| std::path::Path::new(dir).join("chroot"))
        .find(|candidate| candidate.is_file())
        .expect("chroot(8) is installed (coreutils)")
}

/// Text a process writes, growing as it arrives; `grew` wakes whoever waits for a part of it.
struct Output {
    text: Mutex<String>,
    grew: Condvar,
}

impl Output {
    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

/// Copies `stream` into an `Output` on its own thread, and says so on `eof` when it ends.
fn collect(mut stream: impl Read + Send + 'static, eof: mpsc::Sender<()>) -> Arc<Output> {
    let output = Arc::new(Output { text: Mutex::new(String::new()), grew: Condvar::new() });
    let sink = output.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.text.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            sink.grew.notify_all();
        }
        let _ = eof.send(());
    });
    output
}

/// A running proa.
pub struct Running {
    /// Until [`Running::wait`] takes it.
    child: Option<Child>,
    pub started: Instant,
    stdout: Arc<Output>,
    stderr: Arc<Output>,
    eof: Receiver<()>,
    kill_on_drop: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take().filter(|_| self.kill_on_drop) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How proa ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// When the test saw proa exit.
    pub at: Instant,
    /// From spawn to exit.
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("proa died of a signal: {self:?}"))
    }
}

impl Running {
    /// The pid of the process the test started: proa, or `unshare` when proa runs in a PID namespace.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("not waited for yet").id() as i32
    }

    /// proa's pid as the test sees it: the started process itself, or the one running the proa binary in the
    /// namespace under it. Call once proa is known to run (for example its program has said so).
    pub fn proa_pid(&self) -> i32 {
        let binary = PathBuf::from(proa_binary()).canonicalize().expect("the proa binary exists");
        let candidates = std::iter::once(self.pid()).chain(procs::descendants(self.pid()).into_iter().map(|p| p.pid));
        let found: Vec<i32> = candidates.filter(|&pid| procs::exe(pid).as_ref() == Some(&binary)).collect();
        match found[..] {
            [pid] => pid,
            _ => panic!("expected one proa process under pid {}, found {found:?}", self.pid()),
        }
    }

    /// Sends `signal` to proa (inside its namespace, if it has one).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) takes plain integers; the pid is proa, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.proa_pid(), signal) }, 0, "kill proa");
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Blocks until proa's stderr satisfies `done`, at most `bound`; returns the stderr then.
    pub fn wait_for_stderr(&self, bound: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + bound;
        let mut text = self.stderr.text.lock().unwrap();
        while !done(&text) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("proa's stderr did not get there within {bound:?}:\n{text}");
            }
            text = self.stderr.grew.wait_timeout(text, left).unwrap().0;
        }
        text.clone()
    }

    /// proa's peak resident memory so far (VmHWM), in KiB. Only while proa runs: the counter starts at its exec
    /// (wait4's ru_maxrss would count the test process's memory, which the fork shared).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proa is running");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmHWM in kB")
    }

    /// Waits at most `bound` for proa to exit; on timeout kills it and panics with its stderr.
    pub fn wait(mut self, bound: Duration) -> Finished {
        let deadline = Instant::now() + bound;
        // A waiter thread turns the blocking wait into a bounded one without polling.
        let mut child = self.child.take().expect("waited for once");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((status, Instant::now()));
        });
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((status, at)) => {
                waiter.join().unwrap();
                // The output threads finish once every writer (proa, the program) has closed the pipes.
                for _ in 0..2 {
                    let _ = self.eof.recv_timeout(Duration::from_secs(5));
                }
                Finished {
                    status: status.unwrap(),
                    at,
                    elapsed: at - self.started,
                    stdout: self.stdout.text(),
                    stderr: self.stderr.text(),
                }
            }
            Err(_) => {
                // SAFETY: as in `signal`; the started process (with `--kill-child`, its namespace too).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("proa did not exit within {bound:?}; stderr:\n{}", self.stderr.text());
            }
        }
    }
}

/// A line a wrapped program sent to the marker, and when it arrived.
#[derive(Clone, Debug)]
pub struct Mark {
    pub at: Instant,
    pub text: String,
}

/// Where wrapped programs report what they did: `bash -c "echo started >/dev/tcp/127.0.0.1/PORT"`.
pub struct Marker {
    port: u16,
    marks: Receiver<Mark>,
    seen: Vec<Mark>,
}

impl Marker {
    pub fn start() -> Marker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, marks) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                thread::spawn(move || {
                    for line in BufReader::new(stream).lines() {
                        let Ok(text) = line else { return };
                        if tx.send(Mark { at: Instant::now(), text }).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Marker { port, marks, seen: Vec::new() }
    }

    /// A shell command that opens one connection to the marker as fd 3: what `say_on_3` sends on it arrives in
    /// the order it was sent (each `say` is a connection of its own, and connections may be read out of order).
    pub fn open_3(&self) -> String {
        format!("exec 3<>/dev/tcp/127.0.0.1/{}", self.port)
    }

    /// A shell command that sends `text` on fd 3 (see `open_3`).
    pub fn say_on_3(&self, text: &str) -> String {
        format!("echo {text} >&3")
    }

    /// A shell command that blocks for up to a minute without starting a process (so the program gets no
    /// SIGCHLD of its own): it reads fd 3 (see `open_3`), on which the marker never writes. Traps still run, but
    /// a signal that arrives as `read` starts, before it blocks, waits until `read` returns: reading in short
    /// turns bounds that delay (bash's `wait` has no such gap, but needs a child process).
    pub fn block(&self) -> String {
        "for i in {1..300}; do read -u 3 -t 0.2; done".to_string()
    }

    /// A shell command that sends `text` to this marker.
    pub fn say(&self, text: &str) -> String {
        format!("echo {text} >/dev/tcp/127.0.0.1/{}", self.port)
    }

    /// The port the marker listens on, for programs that connect to it by other means.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Blocks until a mark with `text` arrives, at most `bound`.
    pub fn wait_for(&mut self, text: &str, bound: Duration) -> Mark {
        self.wait_matching(&format!("{text:?}"), bound, |mark| mark == text)
    }

    /// Blocks until a mark that satisfies `wanted` arrives, at most `bound`.
    pub fn wait_until(&mut self, bound: Duration, wanted: impl Fn(&str) -> bool) -> Mark {
        self.wait_matching("as wanted", bound, wanted)
    }

    fn wait_matching(&mut self, what: &str, bound: Duration, wanted: impl Fn(&str) -> bool) -> Mark {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(mark) = self.seen.iter().find(|m| wanted(&m.text)) {
                return mark.clone();
            }
            match self.marks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(mark) => self.seen.push(mark),
                Err(_) => panic!("no mark {what} within {bound:?}; seen {:?}", self.seen),
            }
        }
    }

    /// Every mark received so far (call after the program is known to have exited).
    pub fn all(&mut self) -> Vec<Mark> {
        self.seen.extend(self.marks.try_iter());
        self.seen.clone()
    }
}
