//! Where the time goes, step by step: a few lifecycles of a wrapper run under `strace -f -ttt -T`, and the two
//! latencies of the main table cut at the system calls that mark each step. strace slows every system call down
//! (each one stops the traced thread twice), so the steps add up to more than the untraced latency: read them for
//! where the time goes and how many calls each step makes, not as the latency itself.
//!
//! Ready event → program start: the server sends the event; a thread's `read` returns it; if another thread spawns,
//! the reader wakes it (`futex`), and it wakes up; the spawning thread's `clone`/`clone3`/`vfork` starts the
//! program; the child's `execve` runs it; the program's first instruction stamps the time.
//! Process start → first API request: the last exec before the wrapper (see `spawn_wrapper`); the wrapper's own
//! `execve`; its `connect` to the API server; its first `write` there (the TLS ClientHello); the last `write` before
//! the server had the request; the server reading it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::{Candidate, Clock, Scenario, lifecycle, median};

/// One system call from strace's output: thread, entry time and duration (s), name, the text of its arguments and
/// what it returned.
#[derive(Debug, Clone)]
struct Call {
    tid: u32,
    at: f64,
    took: f64,
    name: String,
    args: String,
    ret: String,
}

impl Call {
    fn end(&self) -> f64 {
        self.at + self.took
    }
}

/// Runs `runs` traced lifecycles and the median of each step, in ms.
pub fn breakdown(candidate: &Candidate, runs: usize, clock: &Clock, work: &Path) -> Value {
    let Ok(command) = &candidate.command else { return json!({"name": candidate.name, "error": "not measured"}) };
    let mut ready_steps: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut startup_steps: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut calls_before_spawn = Vec::new();
    let mut errors = Vec::new();
    for run in 0..runs {
        let file = work.join(format!("trace-{}-{run}.strace", candidate.name.replace(' ', "-")));
        let mut traced: Vec<String> = ["strace", "-f", "-ttt", "-T", "-o"].map(String::from).to_vec();
        traced.push(file.display().to_string());
        traced.extend(command.iter().cloned());
        let lifecycle = match lifecycle(&traced, clock, work, 1000 + run, None, Scenario::ApiReady) {
            Ok(lifecycle) => lifecycle,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let calls = parse(&std::fs::read_to_string(&file).unwrap_or_default());
        let wall = |mono: u64| (i128::from(mono) + clock.realtime_offset) as f64 / 1e9;
        match ready_to_start(&calls, wall(lifecycle.ready_ns), wall(lifecycle.program_start_ns)) {
            Ok((steps, count)) => {
                for (step, seconds) in steps {
                    ready_steps.entry(step).or_default().push((seconds * 1e9).max(0.0) as u64);
                }
                calls_before_spawn.push(count);
            }
            Err(err) => errors.push(format!("run {run}: {err}")),
        }
        match start_to_request(&calls, wall(lifecycle.process_start_ns), wall(lifecycle.first_request_ns)) {
            Ok(steps) => {
                for (step, seconds) in steps {
                    startup_steps.entry(step).or_default().push((seconds * 1e9).max(0.0) as u64);
                }
            }
            Err(err) => errors.push(format!("run {run}: {err}")),
        }
    }
    // The steps' names start with their number, so the map holds them in order.
    let medians = |steps: BTreeMap<&str, Vec<u64>>| -> Value {
        let steps = steps
            .into_iter()
            .map(|(step, mut values)| json!({"step": step, "ms": median(&mut values).map(|ns| ns as f64 / 1e6)}));
        json!(steps.collect::<Vec<_>>())
    };
    json!({
        "name": candidate.name,
        "runs": runs,
        "ready_to_start": medians(ready_steps),
        "start_to_first_request": medians(startup_steps),
        "calls_between_read_and_spawn": median(&mut calls_before_spawn),
        "errors": errors,
    })
}

/// Ready event → program start, cut at the marking calls; and how many calls the spawning side made between the
/// read and the spawn.
/// Named steps and their lengths (s).
type Steps = Vec<(&'static str, f64)>;

fn ready_to_start(calls: &[Call], ready: f64, program: f64) -> Result<(Steps, u64), String> {
    // The first execve is the wrapper's own (its arguments hold the program's too).
    let wrapper = calls.iter().find(|c| c.name == "execve").ok_or("no execve")?;
    let exec = calls
        .iter()
        .find(|c| c.name == "execve" && c.tid != wrapper.tid && c.args.contains("\"stamp\""))
        .ok_or("no execve of the program")?;
    let spawn = calls
        .iter()
        .find(|c| matches!(c.name.as_str(), "clone" | "clone3" | "vfork" | "fork") && c.ret == exec.tid.to_string())
        .ok_or("no clone that started the program")?;
    let read = calls
        .iter()
        .find(|c| is_read(c) && c.end() >= ready && c.end() <= spawn.at && returned_data(c))
        .ok_or("no read of the ready event")?;
    let mut steps = vec![("1 server sent → read returned", read.end() - ready)];
    let mut handed_over = read.end();
    if read.tid != spawn.tid {
        let wake = calls
            .iter()
            .find(|c| c.tid == read.tid && c.name == "futex" && c.args.contains("WAKE") && c.at >= read.end())
            .ok_or("no wake-up of the spawning thread")?;
        let woken = calls
            .iter()
            .filter(|c| c.tid == spawn.tid && c.end() >= wake.at && c.end() <= spawn.at)
            .find(|c| c.name == "futex" || c.name.starts_with("epoll") || c.name == "poll")
            .map_or(wake.at, Call::end);
        steps.push(("2 read returned → wake-up sent (decode, decide)", wake.at - read.end()));
        steps.push(("3 wake-up sent → spawning thread runs", woken - wake.at));
        handed_over = woken;
    } else {
        steps.push(("2 read returned → same thread decides", 0.0));
    }
    steps.push(("4 spawning thread runs → clone", spawn.at - handed_over));
    steps.push(("5 clone → program's execve", exec.at - spawn.at));
    steps.push(("6 execve → program's first instruction", program - exec.at));
    let between = calls.iter().filter(|c| c.tid == spawn.tid && c.at >= handed_over && c.at < spawn.at).count();
    Ok((steps, between as u64))
}

/// Process start → first API request, cut at the wrapper's execve, its connect, its first and last write to the
/// API server before the server had the request.
fn start_to_request(calls: &[Call], started: f64, request: f64) -> Result<Steps, String> {
    let exec = calls.iter().find(|c| c.name == "execve").ok_or("no execve")?;
    let connect = calls
        .iter()
        .find(|c| c.name == "connect" && c.args.contains("sin_port=htons(") && !c.args.contains("sin_port=htons(53)"))
        .ok_or("no connect")?;
    let fd = connect.args.split(',').next().unwrap_or_default().to_string();
    let on_socket = |c: &&Call| is_write(c) && c.args.split(',').next() == Some(fd.as_str());
    let hello = calls.iter().filter(on_socket).find(|c| c.at >= connect.at).ok_or("no ClientHello")?;
    let sent = calls.iter().filter(on_socket).rfind(|c| c.end() <= request).ok_or("no request write")?;
    Ok(vec![
        ("1 process start → execve (strace's own start included)", exec.at - started),
        ("2 execve → connect (configuration, TLS set-up)", connect.at - exec.at),
        ("3 connect → ClientHello written", hello.at - connect.at),
        ("4 ClientHello → request written (handshake)", sent.end() - hello.at),
        ("5 request written → server has it", request - sent.end()),
    ])
}

fn is_read(c: &Call) -> bool {
    matches!(c.name.as_str(), "read" | "recvfrom" | "recvmsg" | "readv")
}

fn is_write(c: &Call) -> bool {
    matches!(c.name.as_str(), "write" | "sendto" | "sendmsg" | "writev")
}

fn returned_data(c: &Call) -> bool {
    c.ret.parse::<i64>().is_ok_and(|n| n > 0)
}

/// strace -f -ttt -T output → calls, with `<unfinished ...>` / `<... resumed>` pairs joined (entry time from the
/// first, return value and end from the second).
fn parse(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: BTreeMap<(u32, String), (f64, String)> = BTreeMap::new();
    for line in text.lines() {
        // strace pads the thread id to five digits.
        let Some((tid, rest)) = line.trim_start().split_once(' ') else { continue };
        let Some((at, rest)) = rest.trim_start().split_once(' ') else { continue };
        let (Ok(tid), Ok(at)) = (tid.parse::<u32>(), at.parse::<f64>()) else { continue };
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else { continue };
            let Some((entry, args)) = pending.remove(&(tid, name.to_string())) else { continue };
            let (more, ret, end) = result(tail);
            // -T on a resumed call gives its whole duration, from the entry.
            let took = end.unwrap_or(at - entry);
            calls.push(Call { tid, at: entry, took, name: name.into(), args: args + more, ret });
            continue;
        }
        let Some((name, tail)) = rest.split_once('(') else { continue };
        if let Some(args) = tail.strip_suffix(" <unfinished ...>") {
            pending.insert((tid, name.to_string()), (at, args.to_string()));
            continue;
        }
        let (args, ret, took) = result(tail);
        calls.push(Call { tid, at, took: took.unwrap_or(0.0), name: name.into(), args: args.into(), ret });
    }
    calls.sort_by(|a, b| a.at.total_cmp(&b.at));
    calls
}

/// `args) = RET ... <0.000123>` → (args, RET, duration).
fn result(tail: &str) -> (&str, String, Option<f64>) {
    let Some((args, after)) = tail.rsplit_once(") = ") else { return (tail, String::new(), None) };
    let ret = after.split_whitespace().next().unwrap_or_default().to_string();
    let took = after.rsplit_once('<').and_then(|(_, t)| t.strip_suffix('>')).and_then(|t| t.parse().ok());
    (args, ret, took)
}

/// The breakdowns as two small tables.
pub fn render(name: &str, traced: &Value) -> String {
    let mut out = String::new();
    for (key, title) in [
        ("ready_to_start", "ready event → program start"),
        ("start_to_first_request", "process start → first API request"),
    ] {
        out.push_str(&format!("{title}, step by step ({name}, under strace, ms, median of {}):\n", traced["runs"]));
        for step in traced[key].as_array().into_iter().flatten() {
            let ms = step["ms"].as_f64().map_or("-".into(), |ms| format!("{ms:.3}"));
            out.push_str(&format!("  {:<58} {ms:>8}\n", step["step"].as_str().unwrap_or_default()));
        }
    }
    if let Some(n) = traced["calls_between_read_and_spawn"].as_u64() {
        out.push_str(&format!("  system calls of the spawning thread between the read and the spawn: {n}\n"));
    }
    for error in traced["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!("  not traced: {}\n", error.as_str().unwrap_or_default()));
    }
    out
}
