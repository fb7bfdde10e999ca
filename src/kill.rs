//! The `kill` feature's shutdown actions (`--kill NAME`, `--kill-all`): list /proc, send the kill signal, wait
//! up to the grace for the targets to exit (pidfds and poll(2): no polling loop), then SIGKILL what is left.
//! Runs on a shutdown action thread, plus the start-up check that refuses every kill action in the host's PID
//! namespace. `procs.rs` makes every decision; this file only reads /proc and makes the system calls.
#![allow(unsafe_code)] // poll(2): std has no safe equivalent

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::signal_name;
use crate::clock::Seconds;
use crate::pidfd::Pidfd;
use crate::procs::{self, Process, Rule, Stat};

/// Where the processes are listed.
const PROC: &str = "/proc";

/// How long SIGKILLed processes get to vanish before the action reports. The grace is shortened so that this
/// wait still ends within `--shutdown-timeout` (`grace_within`).
pub const SIGKILL_WAIT: Duration = Duration::from_millis(500);

/// One kill action, as `lifecycle` builds it at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub rule: Rule,
    /// `--kill-signal`.
    pub signal: i32,
    /// `--kill-grace`, shortened to fit the shutdown timeout.
    pub grace: Duration,
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", flag(&self.rule))
    }
}

/// The grace a kill gets with `time_left` of the shutdown timeout: SIGKILL and its wait must fit before proa
/// exits, so a grace longer than that is cut short (down to none).
pub fn grace_within(grace: Duration, time_left: Duration) -> Duration {
    grace.min(time_left.saturating_sub(SIGKILL_WAIT))
}

/// A process a kill action signalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: i32,
    /// `procs::printable` of its name.
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// What a kill action did: its outcome, logged by the owner.
#[derive(Debug)]
pub struct Report {
    pub signal: i32,
    /// The processes that got `signal`.
    pub signalled: Vec<Target>,
    /// Those proa may not signal, and why (EPERM: another user's process, and proa is not root).
    pub refused: Vec<(Target, io::Error)>,
    /// Those still running after the grace, which got SIGKILL.
    pub forced: Vec<Target>,
    pub grace: Duration,
    /// From the first signal until every target exited, or the SIGKILL wait ended.
    pub took: Duration,
    /// The command names of the other processes proa saw (`procs::names_seen`), for a report of no target.
    pub seen: Vec<String>,
}

impl Report {
    /// Whether every target was signalled and exited within the grace.
    pub fn is_clean(&self) -> bool {
        !self.signalled.is_empty() && self.refused.is_empty() && self.forced.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list =
            |targets: &mut dyn Iterator<Item = &Target>| targets.map(Target::to_string).collect::<Vec<_>>().join(", ");
        if self.signalled.is_empty() && self.refused.is_empty() {
            return match self.seen.is_empty() {
                true => write!(f, "found no process to signal: does the Pod set shareProcessNamespace: true?"),
                false => write!(
                    f,
                    "found no process to signal among {}: is the name right (pkill's: the command name `ps` shows, or the executable's), and does the Pod set shareProcessNamespace: true?",
                    self.seen.join(", ")
                ),
            };
        }
        let mut parts = Vec::new();
        if !self.signalled.is_empty() {
            parts.push(format!("{} to {}", signal_name(self.signal), list(&mut self.signalled.iter())));
            parts.push(match self.forced.is_empty() {
                true => format!("all exited after {}", Seconds(self.took)),
                false => format!(
                    "still running after {}, so SIGKILL to {}",
                    Seconds(self.grace),
                    list(&mut self.forced.iter())
                ),
            });
        }
        for (target, err) in &self.refused {
            parts.push(format!("cannot signal {target}: {err}"));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Why a kill cannot run.
#[derive(Debug)]
pub enum KillError {
    /// /proc cannot be listed. At start-up exit 125; at shutdown the action fails (logged, the code stands).
    Proc(io::Error),
    /// A kill action (`actions`: the flags, as given) where kernel threads are visible: the host's PID namespace
    /// (`hostPID: true`), where it would signal processes outside the Pod. `all`: `--kill-all` is among them.
    /// Exit 125.
    HostNamespace { actions: String, all: bool, sign: String },
}

impl fmt::Display for KillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillError::Proc(err) => write!(f, "cannot list processes in {PROC}: {err}"),
            KillError::HostNamespace { actions, all, sign } => write!(
                f,
                "{actions} refused: the kernel thread {sign} is visible, so this is the host's process namespace (hostPID) and {}; use it in a Pod with shareProcessNamespace: true, without hostPID: true",
                match all {
                    true => "every process of the node would be stopped",
                    false => "processes of that name outside the Pod would be stopped too",
                }
            ),
        }
    }
}

impl std::error::Error for KillError {}

/// The flag a rule comes from, as a user writes it: `--kill nginx`, `--kill-all`.
fn flag(rule: &Rule) -> String {
    match rule {
        Rule::Named(name) => format!("--kill {name}"),
        Rule::All => "--kill-all".to_string(),
    }
}

/// The start-up check for kill actions (`rules`; none: nothing to check), before anything runs: refuses the host's
/// PID namespace for every one of them, and warns when proa is PID 1, since then no other container's process can
/// be visible.
pub fn check(rules: &[Rule]) -> Result<(), KillError> {
    if rules.is_empty() {
        return Ok(());
    }
    let actions = rules.iter().map(flag).collect::<Vec<_>>().join(", ");
    let processes = scan().map_err(KillError::Proc)?;
    if let Some(sign) = procs::host_namespace_sign(&processes) {
        let sign = format!("{} (pid {})", procs::printable(&sign.stat.comm), sign.pid());
        return Err(KillError::HostNamespace { actions, all: rules.contains(&Rule::All), sign });
    }
    if std::process::id() == 1 {
        log::warn!(
            "{actions}: proa is PID 1, so no other container's process is visible and there is nothing to stop; set shareProcessNamespace: true in the Pod"
        );
    }
    Ok(())
}

/// Carries out one kill action: signals every target once, waits up to the grace for them to exit, then sends
/// SIGKILL to those left and waits `SIGKILL_WAIT` more. A process proa may not signal is reported, not fatal.
pub fn perform(kill: &Kill) -> Result<Report, KillError> {
    let processes = scan().map_err(KillError::Proc)?;
    let own = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut refused = Vec::new();
    for process in procs::targets(&processes, own, &kill.rule) {
        // None: it exited since the listing.
        let Some(handle) = Handle::open(process, &kill.rule) else { continue };
        debug!("sending {} to {}", signal_name(kill.signal), handle.target);
        match handle.signal(kill.signal) {
            Ok(()) => handles.push(handle),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
            Err(err) => refused.push((handle.target, err)),
        }
    }
    let signalled: Vec<Target> = handles.iter().map(|h| h.target.clone()).collect();
    let survivors = wait_exited(handles, kill.grace);
    for handle in &survivors {
        debug!("{} still running after {}: sending SIGKILL", handle.target, Seconds(kill.grace));
        if let Err(err) = handle.signal(libc::SIGKILL) {
            debug!("cannot send SIGKILL to {}: {err}", handle.target);
        }
    }
    let forced = survivors.iter().map(|h| h.target.clone()).collect();
    wait_exited(survivors, SIGKILL_WAIT);
    let seen = match signalled.is_empty() && refused.is_empty() {
        true => procs::names_seen(&processes, own),
        false => Vec::new(),
    };
    Ok(Report { signal: kill.signal, signalled, refused, forced, grace: kill.grace, took: started.elapsed(), seen })
}

/// Every process visible in /proc now; those that exit while being read are left out. Read as bytes: a name
/// need not be UTF-8 (see `procs::Stat::comm`).
fn scan() -> io::Result<Vec<Process>> {
    let mut processes = Vec::new();
    for entry in fs::read_dir(PROC)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let Some(stat) = read_stat(pid) else { continue };
        // Unreadable for another user's process (without CAP_SYS_PTRACE) and for kernel threads: then only the
        // command name, which is what /proc/PID/comm holds too.
        let exe = fs::read_link(entry.path().join("exe")).ok().and_then(|exe| procs::exe_name(&exe));
        let exited = has_exited(&stat);
        processes.push(Process { stat, exe, exited });
    }
    Ok(processes)
}

fn read_stat(pid: i32) -> Option<Stat> {
    procs::parse_stat(&fs::read(Path::new(PROC).join(pid.to_string()).join("stat")).ok()?)
}

/// `procs::has_exited`, reading `/proc/PID/status` only for a process whose main thread has exited.
fn has_exited(stat: &Stat) -> bool {
    let status = || fs::read(Path::new(PROC).join(stat.pid.to_string()).join("status")).ok();
    procs::has_exited(stat, matches!(stat.state, 'Z' | 'X').then(status).flatten().as_deref())
}

/// A target held by a pidfd (see `crate::pidfd`), with the start time that tells it from a later process that got
/// the same pid.
struct Handle {
    target: Target,
    start_time: u64,
    process: Pidfd,
}

impl Handle {
    /// `None` when the process is gone, or its pid already names another process.
    fn open(process: &Process, rule: &Rule) -> Option<Handle> {
        let handle = Handle {
            target: Target { pid: process.pid(), name: procs::printable(process.known_as(rule)?) },
            start_time: process.stat.start_time,
            process: Pidfd::open(process.pid())?,
        };
        // Between the listing and pidfd_open the pid may have been reused: a different start time says so.
        handle.is_running().then_some(handle)
    }

    fn signal(&self, signal: i32) -> io::Result<()> {
        self.process.signal(signal)
    }

    /// Whether the process still runs: listed, started when it did, and with a live thread.
    fn is_running(&self) -> bool {
        read_stat(self.target.pid).is_some_and(|stat| stat.start_time == self.start_time && !has_exited(&stat))
    }
}

/// Waits until every handle's process has exited, at most `bound`; returns those still running.
fn wait_exited(mut handles: Vec<Handle>, bound: Duration) -> Vec<Handle> {
    if handles.iter().any(|h| h.process.fd().is_none()) {
        // Without pidfds nothing says when a process exits: wait out the bound, then look.
        if !handles.is_empty() {
            thread::sleep(bound);
        }
        handles.retain(Handle::is_running);
        return handles;
    }
    let deadline = Instant::now() + bound;
    while !handles.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds: Vec<libc::pollfd> = handles
            .iter()
            .filter_map(|h| h.process.fd())
            .map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        // Rounded up, so that the last wait does not end a little early and spin.
        let timeout = libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            log::warn!("cannot wait for processes to exit: {}", io::Error::last_os_error());
            break;
        }
        // A pidfd is readable once its process has exited.
        let mut exited = fds.iter().map(|fd| fd.revents != 0);
        handles.retain(|_| !exited.next().unwrap_or(false));
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32, name: &str) -> Target {
        Target { pid, name: name.into() }
    }

    fn report(signalled: Vec<Target>, forced: Vec<Target>) -> Report {
        Report {
            signal: libc::SIGQUIT,
            signalled,
            refused: vec![],
            forced,
            grace: Duration::from_secs(10),
            took: Duration::from_millis(120),
            seen: vec![],
        }
    }

    #[test]
    fn grace_fits_in_the_time_left() {
        let s = Duration::from_secs;
        assert_eq!(grace_within(s(10), s(30)), s(10));
        assert_eq!(grace_within(s(10), s(2)), Duration::from_millis(1500));
        assert_eq!(grace_within(s(10), Duration::from_millis(200)), Duration::ZERO);
    }

    #[test]
    fn reports_say_what_happened() {
        let clean = report(vec![target(7, "nginx"), target(8, "nginx")], vec![]);
        assert!(clean.is_clean());
        assert_eq!(clean.to_string(), "SIGQUIT to nginx (pid 7), nginx (pid 8); all exited after 0.1s");
        let forced = report(vec![target(7, "nginx"), target(9, "stubborn")], vec![target(9, "stubborn")]);
        assert!(!forced.is_clean());
        assert_eq!(
            forced.to_string(),
            "SIGQUIT to nginx (pid 7), stubborn (pid 9); still running after 10.0s, so SIGKILL to stubborn (pid 9)"
        );
        let mut refused = report(vec![], vec![]);
        refused.refused.push((target(5, "envoy"), io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!refused.is_clean());
        assert!(refused.to_string().starts_with("cannot signal envoy (pid 5): Operation not permitted"));
        let nothing = report(vec![], vec![]);
        assert!(!nothing.is_clean());
        assert_eq!(nothing.to_string(), "found no process to signal: does the Pod set shareProcessNamespace: true?");
        let mut wrong_name = report(vec![], vec![]);
        wrong_name.seen = vec!["httpd".into(), "pause".into(), "sh".into()];
        assert_eq!(
            wrong_name.to_string(),
            "found no process to signal among httpd, pause, sh: is the name right (pkill's: the command name `ps` shows, or the executable's), and does the Pod set shareProcessNamespace: true?"
        );
    }

    /// Issue 18, item 15: `--kill NAME` is refused in the host's namespace as `--kill-all` is.
    #[test]
    fn the_host_namespace_refusal_names_the_actions() {
        let sign = "kthreadd (pid 2)".to_string();
        let named = KillError::HostNamespace { actions: "--kill nginx, --kill envoy".into(), all: false, sign };
        assert_eq!(
            named.to_string(),
            "--kill nginx, --kill envoy refused: the kernel thread kthreadd (pid 2) is visible, so this is the host's process namespace (hostPID) and processes of that name outside the Pod would be stopped too; use it in a Pod with shareProcessNamespace: true, without hostPID: true"
        );
        let all = KillError::HostNamespace { actions: "--kill-all".into(), all: true, sign: "kthreadd (pid 2)".into() };
        assert!(all.to_string().starts_with("--kill-all refused: the kernel thread kthreadd (pid 2) is visible"));
        assert!(all.to_string().contains("every process of the node would be stopped"));
    }

    #[test]
    fn actions_are_named_by_their_flag() {
        let kill = Kill { rule: Rule::Named("nginx".into()), signal: libc::SIGQUIT, grace: Duration::ZERO };
        assert_eq!(kill.to_string(), "--kill nginx");
        assert_eq!(Kill { rule: Rule::All, ..kill }.to_string(), "--kill-all");
    }
}
