//! Processes as the test sees them in its own /proc: who is whose child, in which state, running what.
//! Read once when asked; nothing here waits or polls.

use std::path::PathBuf;

/// One line of `/proc/PID/stat`, the fields tests look at.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    /// `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped), …
    pub state: char,
    /// The command name, any bytes that are not UTF-8 replaced (a process may name itself anything).
    pub comm: String,
}

/// Parses `PID (COMM) STATE PPID …`; COMM may hold spaces and parentheses, so it ends at the last `)`.
pub fn parse_stat(line: &str) -> Option<Process> {
    let (pid, rest) = line.split_once(" (")?;
    let (comm, fields) = rest.rsplit_once(") ")?;
    let mut fields = fields.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Process { pid: pid.parse().ok()?, ppid, state, comm: comm.to_string() })
}

/// Every process visible now (those that exit while being read are left out).
pub fn all() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        name.to_str()?.parse::<i32>().ok()?;
        parse_stat(&String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/stat", name.to_str()?)).ok()?))
    })
    .collect()
}

/// The direct children of `pid`.
pub fn children(pid: i32) -> Vec<Process> {
    all().into_iter().filter(|p| p.ppid == pid).collect()
}

/// Every process below `pid`, children first.
pub fn descendants(pid: i32) -> Vec<Process> {
    let all = all();
    let mut found: Vec<Process> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for child in all.iter().filter(|p| p.ppid == parent) {
            parents.push(child.pid);
            found.push(child.clone());
        }
    }
    found
}

/// The executable `pid` runs, where readable.
pub fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// `pid` as its own (innermost) PID namespace numbers it: the last field of `NSpid:` in /proc/PID/status.
pub fn ns_pid(pid: i32) -> Option<i32> {
    let status = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/status")).ok()?).into_owned();
    let line = status.lines().find_map(|line| line.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}
