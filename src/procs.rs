//! The process table as the `kill` feature reads it, in pure functions over bytes: `/proc/PID/stat` lines,
//! `Threads:` in `/proc/PID/status`, whether the PID namespace is the host's, and which processes a kill rule
//! targets. No I/O: `kill.rs` reads /proc and passes the bytes in, so every decision here is tested on fixtures.
//! Names are bytes, never text: a process may name itself anything (`prctl(PR_SET_NAME)`, /proc/PID/comm).

use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The fields of one `/proc/PID/stat` line that proa uses (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// The command name, at most 15 bytes; the same bytes as `/proc/PID/comm`. Not always UTF-8: a process sets
    /// it to any bytes it likes, and the kernel cuts a long executable name at 15 bytes, even inside a character.
    pub comm: Vec<u8>,
    /// `R`, `S`, `D`, `T`, `Z` (zombie: the main thread exited; see `has_exited`), …
    pub state: char,
    pub ppid: i32,
    /// The kernel's `PF_*` flags.
    pub flags: u64,
    /// Clock ticks after boot when the process started: with the pid, it names one process even if the pid is
    /// reused.
    pub start_time: u64,
}

/// `PF_KTHREAD` in `Stat::flags`: a kernel thread. Only the host's PID namespace shows them.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses one `/proc/PID/stat` line. The command name sits in parentheses and may itself hold spaces,
/// parentheses and bytes that are not UTF-8 (`12 (my (odd) cmd) S 1 …`), so it ends at the last `) `.
pub fn parse_stat(line: &[u8]) -> Option<Stat> {
    let open = line.windows(2).position(|w| w == b" (")?;
    let (pid, rest) = (&line[..open], &line[open + 2..]);
    let close = rest.windows(2).rposition(|w| w == b") ")?;
    let (comm, fields) = (&rest[..close], std::str::from_utf8(&rest[close + 2..]).ok()?);
    // After the name: 3 state, 4 ppid, 5 pgrp, 6 session, 7 tty_nr, 8 tpgid, 9 flags, … 22 starttime.
    let fields: Vec<&str> = fields.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let mut state = field(3)?.chars();
    let stat = Stat {
        pid: std::str::from_utf8(pid).ok()?.trim().parse().ok()?,
        comm: comm.to_vec(),
        state: state.next()?,
        ppid: field(4)?.parse().ok()?,
        flags: field(9)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    };
    state.next().is_none().then_some(stat)
}

/// The number of threads in `/proc/PID/status` (`Threads:`). A main thread that has exited still counts while
/// another thread runs (the kernel releases it with the last one).
pub fn parse_threads(status: &[u8]) -> Option<u32> {
    let line = status.split(|&b| b == b'\n').find_map(|line| line.strip_prefix(b"Threads:"))?;
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// Whether a process has exited (a zombie, which only its parent's wait would remove), from its stat and its
/// status (`None`: unreadable, so gone). `Z` alone is not enough: it is the main thread's state, and a program
/// whose main thread called `pthread_exit` runs on in its other threads (`Threads:` counts them too).
pub fn has_exited(stat: &Stat, status: Option<&[u8]>) -> bool {
    match stat.state {
        'Z' | 'X' => status.and_then(parse_threads).is_none_or(|threads| threads <= 1),
        _ => false,
    }
}

/// The name `--kill` matches: the file name of the executable (`readlink /proc/PID/exe`), as bytes. A deleted or
/// replaced binary reads as `/usr/sbin/nginx (deleted)`, which is still nginx.
pub fn exe_name(exe: &Path) -> Option<Vec<u8>> {
    let name = exe.file_name()?.as_bytes();
    Some(name.strip_suffix(b" (deleted)").unwrap_or(name).to_vec())
}

/// A name for logs: its UTF-8 as it is, any other byte and control characters escaped (`\xff`, `\n`), so that a
/// log line stays one line and says which bytes the name holds.
pub fn printable(name: &[u8]) -> String {
    let mut text = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c.is_control() {
                true => text.extend(c.escape_default()),
                false => text.push(c),
            }
        }
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

/// The longest command name the kernel keeps (`TASK_COMM_LEN` less its NUL): a longer name is cut to this.
pub const COMM_MAX: usize = 15;

/// One visible process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub stat: Stat,
    /// `exe_name`; `None` where the executable is unreadable (another user's process, a kernel thread).
    pub exe: Option<Vec<u8>>,
    /// `has_exited`: every thread has exited, so there is nothing left to signal.
    pub exited: bool,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.stat.pid
    }

    /// The name `rule` knows this process by, if it targets it: for `--kill NAME`, the command name where it is
    /// NAME cut at `COMM_MAX` bytes (as `pkill NAME` and `ps` see it: busybox's `httpd`, a script's own name), else
    /// the executable's file name where that is NAME; for `--kill-all`, the executable's name, else the command's.
    pub fn known_as(&self, rule: &Rule) -> Option<&[u8]> {
        let exe = self.exe.as_deref();
        match rule {
            Rule::Named(name) => {
                let name = name.as_bytes();
                let matches_comm = self.stat.comm == name[..name.len().min(COMM_MAX)];
                let matches_exe = exe == Some(name);
                match (matches_comm, matches_exe) {
                    (_, true) => exe,
                    (true, false) => Some(&self.stat.comm),
                    (false, false) => None,
                }
            }
            Rule::All => Some(exe.unwrap_or(&self.stat.comm)),
        }
    }
}

/// Whether a process is a kernel thread: flagged `PF_KTHREAD`, or kthreadd itself (pid 2).
pub fn is_kernel_thread(stat: &Stat) -> bool {
    stat.flags & PF_KTHREAD != 0 || (stat.pid == 2 && stat.comm == b"kthreadd")
}

/// A kernel thread, if any is visible: then this is the host's PID namespace (a Pod with `hostPID: true`),
/// where `--kill-all` would stop every process of the node, and `--kill NAME` processes outside the Pod.
pub fn host_namespace_sign(processes: &[Process]) -> Option<&Process> {
    processes.iter().find(|p| is_kernel_thread(&p.stat))
}

/// Which processes a kill action signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `--kill NAME`: those `Process::known_as` NAME, byte for byte.
    Named(String),
    /// `--kill-all`: every one.
    All,
}

/// The processes `rule` targets, by pid. Never proa itself, its ancestors (a shell that started it: proa's own
/// container), its descendants (the program's tree, orphans included, since proa adopts them), PID 1 (the Pod's
/// pause process, or the container's init), kernel threads or exited processes (zombies).
pub fn targets<'a>(processes: &'a [Process], own: i32, rule: &Rule) -> Vec<&'a Process> {
    let spared = spared(processes, own);
    let mut targets: Vec<&Process> = processes
        .iter()
        .filter(|p| !spared.contains(&p.pid()) && !p.exited && !is_kernel_thread(&p.stat))
        .filter(|p| p.known_as(rule).is_some())
        .collect();
    // Parents usually have lower pids: signal them first, so that a daemon's master hears before its workers.
    targets.sort_by_key(|p| p.pid());
    targets
}

/// The names a user may mean, for the warning when a rule targets nothing: the command names of the visible
/// processes that are not proa's own (nor kernel threads), once each, sorted.
pub fn names_seen(processes: &[Process], own: i32) -> Vec<String> {
    let mut names: Vec<String> = processes
        .iter()
        .filter(|p| p.pid() != own && !is_kernel_thread(&p.stat) && !p.exited)
        .map(|p| printable(&p.stat.comm))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// PID 1, `own`, its ancestors and its descendants.
fn spared(processes: &[Process], own: i32) -> Vec<i32> {
    let parent_of = |pid: i32| processes.iter().find(|p| p.pid() == pid).map(|p| p.stat.ppid);
    let mut spared = vec![1, own];
    let mut ancestor = parent_of(own);
    while let Some(pid) = ancestor.filter(|&pid| pid > 0 && !spared.contains(&pid)) {
        spared.push(pid);
        ancestor = parent_of(pid);
    }
    let mut parents = vec![own];
    while let Some(parent) = parents.pop() {
        for child in processes.iter().filter(|p| p.stat.ppid == parent).map(Process::pid) {
            if !spared.contains(&child) {
                spared.push(child);
                parents.push(child);
            }
        }
    }
    spared
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line as the kernel writes it, fields 3 to 22 and a few after, with any bytes as the name.
    fn line(pid: i32, comm: &[u8], state: char, ppid: i32, flags: u64) -> Vec<u8> {
        let rest =
            format!(") {state} {ppid} {pid} {pid} 0 -1 {flags} 120 0 0 0 3 1 0 0 20 0 1 0 {} 1000 200", 5000 + pid);
        [format!("{pid} (").as_bytes(), comm, rest.as_bytes()].concat()
    }

    fn stat(pid: i32, comm: &str, state: char, ppid: i32, flags: u64) -> Stat {
        parse_stat(&line(pid, comm.as_bytes(), state, ppid, flags)).unwrap()
    }

    fn process(pid: i32, name: &str, ppid: i32) -> Process {
        Process { stat: stat(pid, name, 'S', ppid, 4194560), exe: Some(name.into()), exited: false }
    }

    fn pids(targets: Vec<&Process>) -> Vec<i32> {
        targets.into_iter().map(Process::pid).collect()
    }

    #[test]
    fn stat_of_a_plain_process() {
        let stat = parse_stat(b"1234 (nginx) S 1 1234 1234 0 -1 4194560 96 0 0 0 0 0 0 0 20 0 1 0 271828 11440128 312 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n").unwrap();
        assert_eq!(
            stat,
            Stat { pid: 1234, comm: b"nginx".to_vec(), state: 'S', ppid: 1, flags: 4194560, start_time: 271828 }
        );
    }

    #[test]
    fn stat_name_with_spaces_and_parentheses() {
        let stat = stat(77, "tmux: server) (x", 'R', 3, 0);
        assert_eq!((stat.comm.as_slice(), stat.state, stat.ppid), (&b"tmux: server) (x"[..], 'R', 3));
        let stat = parse_stat(&line(78, b") ", 'Z', 1, 0)).unwrap();
        assert_eq!((stat.comm.as_slice(), stat.state), (&b") "[..], 'Z'));
        let stat = parse_stat(&line(79, b"", 'S', 1, 0)).unwrap();
        assert_eq!(stat.comm, b"");
    }

    /// Issue 18, items 13 and 18: `printf '\xff\xfe' > /proc/self/comm`, or an executable name cut at 15 bytes
    /// inside a character, made the whole line unreadable as text, so the process was never listed.
    #[test]
    fn stat_name_that_is_not_utf8() {
        let stat = parse_stat(&line(80, b"\xff\xfe", 'S', 1, 0)).unwrap();
        assert_eq!((stat.pid, stat.comm.as_slice(), stat.ppid), (80, &b"\xff\xfe"[..], 1));
        // "nginx-журнал" (18 bytes) as the kernel keeps it: 15 bytes, the last one half of a character.
        let cut = &"nginx-журнал".as_bytes()[..15];
        assert_eq!(parse_stat(&line(81, cut, 'S', 1, 0)).unwrap().comm, cut);
        let stat = parse_stat(&line(82, b"a\n) b\x80", 'R', 2, 0)).unwrap();
        assert_eq!((stat.comm.as_slice(), stat.state, stat.ppid), (&b"a\n) b\x80"[..], 'R', 2));
    }

    #[test]
    fn stat_that_is_cut_short_or_malformed() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 (sh) S 1 12 12 0 -1 0"), None, "no start time");
        assert_eq!(parse_stat(b"12 sh S 1"), None);
        let good = String::from_utf8(line(12, b"sh", 'S', 1, 0)).unwrap();
        assert_eq!(parse_stat(good.replace(" S ", " SS ").as_bytes()), None);
        assert_eq!(parse_stat(good.replace(" 1 12 ", " x 12 ").as_bytes()), None);
        assert_eq!(parse_stat(&[b"\xff", &line(12, b"sh", 'S', 1, 0)[2..]].concat()), None, "a pid of bytes");
    }

    #[test]
    fn threads_from_status() {
        let status =
            b"Name:\t\xff\xfe\nUmask:\t0022\nState:\tZ (zombie)\nTgid:\t7\nPid:\t7\nThreads:\t3\nSigQ:\t0/63\n";
        assert_eq!(parse_threads(status), Some(3));
        assert_eq!(parse_threads(b"Name:\tsh\nThreads:\t1\n"), Some(1));
        assert_eq!(parse_threads(b"Name:\tsh\nThreads:\tmany\n"), None);
        assert_eq!(parse_threads(b"Name:\tThreads: 2\n"), None, "only a line of its own");
    }

    /// Issue 18, item 14: a program whose main thread called `pthread_exit` shows `Z` while its other threads run.
    #[test]
    fn only_a_process_without_a_live_thread_has_exited() {
        let zombie = stat(7, "headless", 'Z', 1, 0);
        assert!(!has_exited(&zombie, Some(b"State:\tZ (zombie)\nThreads:\t2\n")), "a worker thread runs on");
        assert!(has_exited(&zombie, Some(b"State:\tZ (zombie)\nThreads:\t1\n")));
        assert!(has_exited(&zombie, None), "gone since the listing");
        assert!(has_exited(&zombie, Some(b"State:\tZ (zombie)\n")), "no count: the state decides");
        assert!(has_exited(&stat(7, "x", 'X', 1, 0), Some(b"Threads:\t1\n")));
        for state in ['R', 'S', 'D', 'T', 't', 'I'] {
            assert!(!has_exited(&stat(7, "sh", state, 1, 0), None), "{state}");
        }
    }

    #[test]
    fn exe_names() {
        assert_eq!(exe_name(Path::new("/usr/sbin/nginx")).as_deref(), Some(&b"nginx"[..]));
        assert_eq!(exe_name(Path::new("/usr/sbin/nginx (deleted)")).as_deref(), Some(&b"nginx"[..]));
        assert_eq!(exe_name(Path::new("/")), None);
        let latin1 = std::ffi::OsStr::from_bytes(b"/opt/caf\xe9/proxy\xe9");
        assert_eq!(exe_name(Path::new(latin1)).as_deref(), Some(&b"proxy\xe9"[..]));
    }

    #[test]
    fn printable_names_stay_on_one_line() {
        assert_eq!(printable(b"nginx"), "nginx");
        assert_eq!(printable("журнал".as_bytes()), "журнал");
        assert_eq!(printable(b"\xff\xfe"), r"\xff\xfe");
        assert_eq!(printable(&"nginx-журнал".as_bytes()[..15]), r"nginx-журн\xd0");
        assert_eq!(printable(b"a\nb\tc"), r"a\nb\tc");
    }

    #[test]
    fn kernel_threads_mark_the_host_namespace() {
        let kthreadd = stat(2, "kthreadd", 'S', 0, 2129984);
        let worker = stat(9, "kworker/0:0-events", 'I', 2, 69238880);
        assert!(is_kernel_thread(&kthreadd) && is_kernel_thread(&worker));
        let in_a_pod = [process(1, "pause", 0), process(2, "proa", 0), process(3, "bash", 2)];
        assert_eq!(host_namespace_sign(&in_a_pod), None, "a child of pid 2 is no kernel thread in a Pod");
        let host = [process(1, "systemd", 0), Process { stat: worker, exe: None, exited: false }];
        assert_eq!(host_namespace_sign(&host).map(Process::pid), Some(9));
        // Without flags (an unusual kernel), kthreadd still gives it away.
        let mut unflagged = vec![process(1, "init", 0), process(2, "kthreadd", 0), process(3, "rcu_gp", 2)];
        assert_eq!(host_namespace_sign(&unflagged).map(Process::pid), Some(2));
        unflagged[1].stat.comm = b"sh".to_vec();
        assert_eq!(host_namespace_sign(&unflagged), None);
    }

    /// A Pod with `shareProcessNamespace: true`: pause is PID 1; every container's first process has ppid 0.
    fn shared_pod() -> Vec<Process> {
        vec![
            process(1, "pause", 0),
            process(7, "nginx", 0),
            process(8, "nginx", 7),
            process(9, "nginx", 7),
            process(10, "sh", 0),
            process(11, "proa", 10),
            process(12, "job", 11),
            process(13, "sleep", 12),
            process(14, "sleep", 11),
            process(15, "envoy", 0),
            Process { stat: stat(16, "envoy", 'Z', 15, 0), exe: Some(b"envoy".to_vec()), exited: true },
        ]
    }

    #[test]
    fn kill_all_spares_proa_its_family_pid_1_and_zombies() {
        let pod = shared_pod();
        assert_eq!(pids(targets(&pod, 11, &Rule::All)), [7, 8, 9, 15]);
    }

    #[test]
    fn kill_named_matches_the_name_and_spares_the_same() {
        let pod = shared_pod();
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("nginx".into()))), [7, 8, 9]);
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("sleep".into()))), [] as [i32; 0], "the program's tree");
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("pause".into()))), [] as [i32; 0]);
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("ngin".into()))), [] as [i32; 0]);
    }

    /// Items 13 and 18: the name that matches is the executable's, whatever bytes `comm` holds; and a process with
    /// such a `comm` inside the program's tree is listed, so the walk that spares the tree goes through it.
    #[test]
    fn names_that_are_not_utf8_are_listed_matched_and_walked_through() {
        let mut pod = shared_pod();
        pod[1].stat.comm = b"\xff\xfe".to_vec();
        pod[7].stat.comm = b"\xff\xfe".to_vec();
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("nginx".into()))), [7, 8, 9]);
        assert_eq!(pids(targets(&pod, 11, &Rule::All)), [7, 8, 9, 15], "13, under the program, is spared");
        pod[9].exe = Some("журнал".into());
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("журнал".into()))), [15]);
        pod[9].exe = Some(b"\xff".to_vec());
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("\u{ff}".into()))), [] as [i32; 0], "bytes, not chars");
    }

    /// Issue 26, 2b: `--kill NAME` finds what `pkill NAME` finds, the command name (cut at 15 bytes, as the kernel
    /// keeps it), as well as the executable's name; each is named by the name that matched.
    #[test]
    fn kill_named_matches_the_command_name_as_pkill_does() {
        let mut pod = shared_pod();
        // busybox's httpd, a script named stubborn (run by sh), a process that renamed itself.
        pod[1].exe = Some(b"busybox".to_vec());
        pod[1].stat.comm = b"httpd".to_vec();
        pod[9].exe = Some(b"bash".to_vec());
        pod[9].stat.comm = b"a-long-script-n".to_vec();
        let named = |pod: &[Process], name: &str| pids(targets(pod, 11, &Rule::Named(name.into())));
        assert_eq!(named(&pod, "httpd"), [7]);
        assert_eq!(named(&pod, "busybox"), [7], "the executable's name still matches");
        assert_eq!(named(&pod, "a-long-script-name"), [15], "NAME cut at 15 bytes, as the kernel cuts the command");
        assert_eq!(named(&pod, "a-long-script-n"), [15]);
        assert_eq!(named(&pod, "a-long-script"), [] as [i32; 0], "whole names only");
        let rule = Rule::Named("httpd".into());
        assert_eq!(pod[1].known_as(&rule), Some(&b"httpd"[..]));
        assert_eq!(pod[1].known_as(&Rule::Named("busybox".into())), Some(&b"busybox"[..]));
        assert_eq!(pod[1].known_as(&Rule::All), Some(&b"busybox"[..]));
        pod[1].exe = None;
        assert_eq!(pod[1].known_as(&Rule::All), Some(&b"httpd"[..]), "an unreadable executable: the command name");
        let seen = names_seen(&pod, 11);
        assert_eq!(seen, ["a-long-script-n", "httpd", "job", "nginx", "pause", "sh", "sleep"], "once each, sorted");
    }

    /// Item 14: a process whose main thread exited while others run is a target; one with no thread left is not.
    #[test]
    fn a_running_process_with_an_exited_main_thread_is_a_target() {
        let mut pod = shared_pod();
        pod[10].exited = false;
        assert_eq!(pids(targets(&pod, 11, &Rule::All)), [7, 8, 9, 15, 16]);
        assert_eq!(pids(targets(&pod, 11, &Rule::Named("envoy".into()))), [15, 16]);
    }

    #[test]
    fn proa_as_pid_1_sees_nothing_to_kill() {
        let alone = [process(1, "proa", 0), process(2, "job", 1), process(3, "sleep", 1)];
        assert_eq!(pids(targets(&alone, 1, &Rule::All)), [] as [i32; 0]);
    }

    #[test]
    fn a_parent_loop_cannot_hang_the_walk() {
        let looped = [process(5, "a", 6), process(6, "b", 5), process(7, "proa", 6), process(8, "c", 0)];
        assert_eq!(pids(targets(&looped, 7, &Rule::All)), [8]);
    }
}
