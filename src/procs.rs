//! The process table as the `kill` feature reads it, in pure functions over text: `/proc/PID/stat` lines,
//! whether the PID namespace is the host's, and which processes a kill rule targets.
//! No I/O: `kill.rs` reads /proc and passes the text in, so every decision here is tested on fixture text.

use std::path::Path;

/// The fields of one `/proc/PID/stat` line that proa uses (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// The command name, at most 15 bytes; the same text as `/proc/PID/comm`.
    pub comm: String,
    /// `R`, `S`, `D`, `T`, `Z` (zombie: exited, not reaped yet), …
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

/// Parses one `/proc/PID/stat` line. The command name sits in parentheses and may itself hold spaces and
/// parentheses (`12 (my (odd) cmd) S 1 …`), so it ends at the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (pid, rest) = line.split_once(" (")?;
    let (comm, fields) = rest.rsplit_once(") ")?;
    // After the name: 3 state, 4 ppid, 5 pgrp, 6 session, 7 tty_nr, 8 tpgid, 9 flags, … 22 starttime.
    let fields: Vec<&str> = fields.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let mut state = field(3)?.chars();
    let stat = Stat {
        pid: pid.trim().parse().ok()?,
        comm: comm.to_string(),
        state: state.next()?,
        ppid: field(4)?.parse().ok()?,
        flags: field(9)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    };
    state.next().is_none().then_some(stat)
}

/// The name `--kill` matches: the file name of the executable (`readlink /proc/PID/exe`). A deleted or
/// replaced binary reads as `/usr/sbin/nginx (deleted)`, which is still nginx.
pub fn exe_name(exe: &Path) -> Option<String> {
    let name = exe.file_name()?.to_str()?;
    Some(name.strip_suffix(" (deleted)").unwrap_or(name).to_string())
}

/// One visible process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub stat: Stat,
    /// `exe_name`, or `comm` where the executable is unreadable (another user's process, a kernel thread).
    pub name: String,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.stat.pid
    }
}

/// Whether a process is a kernel thread: flagged `PF_KTHREAD`, or kthreadd itself (pid 2).
pub fn is_kernel_thread(stat: &Stat) -> bool {
    stat.flags & PF_KTHREAD != 0 || (stat.pid == 2 && stat.comm == "kthreadd")
}

/// A kernel thread, if any is visible: then this is the host's PID namespace (a Pod with `hostPID: true`),
/// where `--kill-all` would stop every process of the node.
pub fn host_namespace_sign(processes: &[Process]) -> Option<&Process> {
    processes.iter().find(|p| is_kernel_thread(&p.stat))
}

/// Which processes a kill action signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `--kill NAME`: those whose `Process::name` is NAME.
    Named(String),
    /// `--kill-all`: every one.
    All,
}

/// The processes `rule` targets, by pid. Never proa itself, its ancestors (a shell that started it: proa's own
/// container), its descendants (the program's tree, orphans included, since proa adopts them), PID 1 (the Pod's
/// pause process, or the container's init), kernel threads or zombies (they are already dead).
pub fn targets<'a>(processes: &'a [Process], own: i32, rule: &Rule) -> Vec<&'a Process> {
    let spared = spared(processes, own);
    let mut targets: Vec<&Process> = processes
        .iter()
        .filter(|p| !spared.contains(&p.pid()) && p.stat.state != 'Z' && !is_kernel_thread(&p.stat))
        .filter(|p| match rule {
            Rule::Named(name) => &p.name == name,
            Rule::All => true,
        })
        .collect();
    // Parents usually have lower pids: signal them first, so that a daemon's master hears before its workers.
    targets.sort_by_key(|p| p.pid());
    targets
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

    /// A stat line as the kernel writes it, fields 3 to 22 and a few after.
    fn line(pid: i32, comm: &str, state: char, ppid: i32, flags: u64) -> String {
        format!(
            "{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 {flags} 120 0 0 0 3 1 0 0 20 0 1 0 {} 1000 200",
            5000 + pid
        )
    }

    fn process(pid: i32, name: &str, ppid: i32) -> Process {
        Process { stat: parse_stat(&line(pid, name, 'S', ppid, 4194560)).unwrap(), name: name.to_string() }
    }

    fn pids(targets: Vec<&Process>) -> Vec<i32> {
        targets.into_iter().map(Process::pid).collect()
    }

    #[test]
    fn stat_of_a_plain_process() {
        let stat = parse_stat("1234 (nginx) S 1 1234 1234 0 -1 4194560 96 0 0 0 0 0 0 0 20 0 1 0 271828 11440128 312 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n").unwrap();
        assert_eq!(
            stat,
            Stat { pid: 1234, comm: "nginx".into(), state: 'S', ppid: 1, flags: 4194560, start_time: 271828 }
        );
    }

    #[test]
    fn stat_name_with_spaces_and_parentheses() {
        let stat = parse_stat(&line(77, "tmux: server) (x", 'R', 3, 0)).unwrap();
        assert_eq!((stat.comm.as_str(), stat.state, stat.ppid), ("tmux: server) (x", 'R', 3));
        let stat = parse_stat(&line(78, ") ", 'Z', 1, 0)).unwrap();
        assert_eq!((stat.comm.as_str(), stat.state), (") ", 'Z'));
        let stat = parse_stat(&line(79, "", 'S', 1, 0)).unwrap();
        assert_eq!(stat.comm, "");
    }

    #[test]
    fn stat_that_is_cut_short_or_malformed() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (sh) S 1 12 12 0 -1 0"), None, "no start time");
        assert_eq!(parse_stat("12 sh S 1"), None);
        assert_eq!(parse_stat(&line(12, "sh", 'S', 1, 0).replace(" S ", " SS ")), None);
        assert_eq!(parse_stat(&line(12, "sh", 'S', 1, 0).replace(" 1 12 ", " x 12 ")), None);
    }

    #[test]
    fn exe_names() {
        assert_eq!(exe_name(Path::new("/usr/sbin/nginx")).as_deref(), Some("nginx"));
        assert_eq!(exe_name(Path::new("/usr/sbin/nginx (deleted)")).as_deref(), Some("nginx"));
        assert_eq!(exe_name(Path::new("/")), None);
    }

    #[test]
    fn kernel_threads_mark_the_host_namespace() {
        let kthreadd = parse_stat(&line(2, "kthreadd", 'S', 0, 2129984)).unwrap();
        let worker = parse_stat(&line(9, "kworker/0:0-events", 'I', 2, 69238880)).unwrap();
        assert!(is_kernel_thread(&kthreadd) && is_kernel_thread(&worker));
        let in_a_pod = [process(1, "pause", 0), process(2, "proa", 0), process(3, "bash", 2)];
        assert_eq!(host_namespace_sign(&in_a_pod), None, "a child of pid 2 is no kernel thread in a Pod");
        let host = [process(1, "systemd", 0), Process { stat: worker, name: "kworker/0:0-events".into() }];
        assert_eq!(host_namespace_sign(&host).map(Process::pid), Some(9));
        // Without flags (an unusual kernel), kthreadd still gives it away.
        let mut unflagged = vec![process(1, "init", 0), process(2, "kthreadd", 0), process(3, "rcu_gp", 2)];
        assert_eq!(host_namespace_sign(&unflagged).map(Process::pid), Some(2));
        unflagged[1].stat.comm = "sh".into();
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
            Process { stat: parse_stat(&line(16, "envoy", 'Z', 15, 0)).unwrap(), name: "envoy".into() },
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
