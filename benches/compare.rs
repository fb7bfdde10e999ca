//! `make bench`: this proa against the original async proa 0.1.3 (tokio, kube-rs, reqwest) and a floor (`floor.rs`,
//! the least any wrapper could do), side by side, on the same test API server (tests/it/support), in one run. Prints
//! one table, and where the time goes step by step (`trace.rs`), and writes them as JSON.
//!
//! All run the same way, the way the original needs: in their own mount and UTS namespaces
//! (`unshare --mount --uts`) with the test's service-account directory bind-mounted where the kubelet puts it and
//! the hostname set to the Pod's name, under `compare rusage` (this binary again: /usr/bin/time's wait4(2), in µs)
//! for peak RSS and CPU time. Wrapped programs are this binary again (`stamp`), which records CLOCK_MONOTONIC when
//! it starts and, for the CPU-while-running figure, its parent's (the wrapper's) CPU time from /proc. The latency
//! runs take turns, so that the machine's other work weighs on all alike. Only public interfaces and /proc: nothing
//! in either proa is instrumented.

mod floor;
mod pods;
#[path = "../tests/it/support/mod.rs"]
mod support;
mod trace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ApiServer, Route, Sidecar};

/// Latency runs per program (200: a p99 that is not just the slowest run), how long the wrapped program runs for the
/// CPU figure, the concurrent instances for the scale figures, and the lifecycles traced for the breakdowns.
/// `BENCH_QUICK=1` shrinks them all to try the harness out.
struct Plan {
    runs: usize,
    cpu_program: Duration,
    scales: Vec<usize>,
    /// Lifecycles run under strace for the step-by-step breakdowns.
    traced_runs: usize,
    /// Lifecycles of the endpoint row (each of the original's takes the kubelet's delay, 2 s).
    probe_runs: usize,
    /// Rounds of real Pods for the Pod rows (`pods.rs`; about 15 s each).
    pod_rounds: usize,
}

impl Plan {
    fn from_env() -> Plan {
        let mut plan = match std::env::var("BENCH_QUICK").as_deref() {
            Ok("1") => {
                let cpu_program = Duration::from_secs(2);
                Plan { runs: 3, cpu_program, scales: vec![5], traced_runs: 2, probe_runs: 2, pod_rounds: 1 }
            }
            _ => Plan {
                runs: 200,
                cpu_program: Duration::from_secs(10),
                scales: vec![100, 500],
                traced_runs: 15,
                probe_runs: 20,
                pod_rounds: 10,
            },
        };
        // `BENCH_RUNS=N`: only the latency runs, N of them, to study one change.
        if let Some(runs) = std::env::var("BENCH_RUNS").ok().and_then(|n| n.parse().ok()) {
            let probe_runs = usize::min(runs, 20);
            let cpu_program = Duration::from_secs(1);
            plan = Plan { runs, cpu_program, scales: vec![], traced_runs: 0, probe_runs, pod_rounds: 0 };
        }
        // `BENCH_SCALES=100,500`: only the scale runs, to study the CPU a change saves.
        if let Ok(scales) = std::env::var("BENCH_SCALES") {
            let scales = scales.split(',').filter_map(|n| n.trim().parse().ok()).collect();
            let cpu_program = Duration::from_secs(1);
            plan = Plan { runs: 0, cpu_program, scales, traced_runs: 0, probe_runs: 0, pod_rounds: 0 };
        }
        // `BENCH_PODS=N`: only the Pod rows, N rounds.
        if let Some(pod_rounds) = std::env::var("BENCH_PODS").ok().and_then(|n| n.parse().ok()) {
            let cpu_program = Duration::from_secs(1);
            plan = Plan { runs: 0, cpu_program, scales: vec![], traced_runs: 0, probe_runs: 0, pod_rounds };
        }
        plan
    }
}

/// How long after the sidecar's endpoint answers the API reports it Ready in the endpoint row: the kubelet's next
/// probe, `periodSeconds` later (10 s by default; 2 s keeps the bench short).
const KUBELET_DELAY: Duration = Duration::from_secs(2);
/// Bound on any one wait, so the benchmark always ends.
const BOUND: Duration = Duration::from_secs(180);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("stamp") => return stamp(&args[2..]),
        Some("floor") => floor::run(&args[2..]),
        Some("rusage") => rusage(&args[2..]),
        // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
        Some("--bench") => {}
        _ => {
            println!("benches/compare.rs runs under `make bench`");
            return;
        }
    }
    let out = PathBuf::from(std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench".into()));
    std::fs::create_dir_all(out.join("work")).expect("create the output directory");
    let ours = Candidate::from_env("ours", "BENCH_OURS");
    let original = Candidate::from_env("original 0.1.3", "BENCH_ORIGINAL");
    let floor = Candidate::floor();
    let clock = Clock::new();
    let plan = Plan::from_env();

    let candidates = [&ours, &original, &floor];
    eprintln!("bench: {} lifecycles of each, taking turns", plan.runs);
    let work = out.join("work");
    let mut latencies = interleaved_lifecycles(&candidates, plan.runs, &clock, &work, Scenario::ApiReady);
    eprintln!("bench: {} endpoint lifecycles of each, taking turns", plan.probe_runs);
    let mut probes = interleaved_lifecycles(&candidates, plan.probe_runs, &clock, &work, Scenario::EndpointReady);
    let mut results = Vec::new();
    for ((candidate, runs), probed) in candidates.iter().zip(latencies.drain(..)).zip(probes.drain(..)) {
        eprintln!("bench: measuring {}", candidate.name);
        results.push(measure(candidate, runs, probed, &plan, &clock, &work));
    }
    let mut table = render(&results, &plan);
    let mut breakdowns = Vec::new();
    for candidate in candidates {
        if plan.traced_runs == 0 {
            break;
        }
        eprintln!("bench: tracing {}", candidate.name);
        let traced = trace::breakdown(candidate, plan.traced_runs, &clock, &work);
        table.push_str(&format!("\n{}", trace::render(candidate.name, &traced)));
        breakdowns.push(traced);
    }
    let mut pod_rows = Value::Null;
    if plan.pod_rounds > 0 {
        match pods::rows(plan.pod_rounds) {
            Ok((text, json)) => {
                table.push_str(&text);
                pod_rows = json;
            }
            Err(why) => table.push_str(&format!("\nPod rows not measured: {why}\n")),
        }
    }
    println!("{table}");
    let json = json!({
        "pods": pod_rows,
        "runs": plan.runs,
        "probe_runs": plan.probe_runs,
        "cpu_program_seconds": plan.cpu_program.as_secs(),
        "results": results,
        "breakdowns": breakdowns,
    });
    let path = out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("serialise")).expect("write results.json");
    std::fs::write(out.join("table.txt"), &table).expect("write table.txt");
    eprintln!("bench: wrote {} and table.txt", path.display());
}

/// A wrapper under test: its command line before `-g URL -- PROGRAM`, or why there is none.
pub struct Candidate {
    pub name: &'static str,
    pub command: Result<Vec<String>, String>,
    /// Its binary, whose size is a row (the floor is part of this benchmark's own binary).
    binary: Option<PathBuf>,
}

impl Candidate {
    fn from_env(name: &'static str, var: &str) -> Candidate {
        let binary = match std::env::var(var) {
            Ok(path) if Path::new(&path).is_file() => Ok(PathBuf::from(path)),
            Ok(path) => {
                Err(std::fs::read_to_string(format!("{path}.why")).unwrap_or_else(|_| format!("{path} missing")))
            }
            Err(_) => Err(format!("{var} not set")),
        };
        let command = binary.as_ref().map(|path| vec![path.display().to_string()]).map_err(Clone::clone);
        Candidate { name, command, binary: binary.ok() }
    }

    /// The minimal reference waiter (`floor.rs`).
    fn floor() -> Candidate {
        let own = std::env::current_exe().expect("own path").display().to_string();
        Candidate { name: FLOOR, command: Ok(vec![own, "floor".into()]), binary: None }
    }
}

/// The floor's name, which the table's ratios refer to.
const FLOOR: &str = "floor";

/// CLOCK_MONOTONIC in nanoseconds, and a mapping from `Instant` (which is CLOCK_MONOTONIC on Linux, but opaque).
pub struct Clock {
    at: Instant,
    mono: u64,
    /// CLOCK_REALTIME less CLOCK_MONOTONIC, in ns: strace's timestamps are wall-clock ones.
    pub realtime_offset: i128,
}

impl Clock {
    fn new() -> Clock {
        let realtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        let mono = mono_ns();
        Clock { at: Instant::now(), mono, realtime_offset: realtime.as_nanos() as i128 - i128::from(mono) }
    }

    pub fn mono_of(&self, instant: Instant) -> u64 {
        match instant.checked_duration_since(self.at) {
            Some(after) => self.mono + after.as_nanos() as u64,
            None => self.mono - (self.at - instant).as_nanos() as u64,
        }
    }
}

pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The wrapped program: `stamp FILE [SECONDS]`. Writes `start_ns ppid`, and with SECONDS sleeps that long and adds
/// the parent's CPU time at start and at the end (ns from schedstat, then ticks from stat): the wrapper's cost while
/// a program runs.
fn stamp(args: &[String]) {
    let start = mono_ns();
    let parent = std::os::unix::process::parent_id();
    let mut line = format!("{start} {parent}");
    if let Some(seconds) = args.get(1).and_then(|s| s.parse().ok()) {
        let before = (cpu_ns(parent), cpu_ticks(parent));
        std::thread::sleep(Duration::from_secs(seconds));
        let after = (cpu_ns(parent), cpu_ticks(parent));
        line.push_str(&format!(" {} {} {} {}", before.0, after.0, before.1, after.1));
    }
    std::fs::write(&args[0], line + "\n").expect("write the stamp");
}

/// CPU time a process has used, all its threads together, in ns: the first field of each
/// /proc/PID/task/TID/schedstat (the scheduler's own accounting, finer than the 10 ms ticks of /proc/PID/stat).
fn cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()))
        .sum()
}

/// utime + stime of the whole process, in clock ticks (10 ms), from /proc/PID/stat (fields 14 and 15, counted
/// after the command name in parentheses, which may hold spaces).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the name, the state is field 3: utime (14) and stime (15) are at 11 and 12.
    field(11) + field(12)
}

/// The Pod: proa's container first (the original always takes containers[0]), one regular sidecar. With `probe`,
/// the sidecar has a readinessProbe `httpGet` on that loopback port, and the Pod's IP is 127.0.0.1.
fn pod(probe: Option<u16>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bench-job-x7k2p", "namespace": "bench"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "main", "command": ["/proa"]}, {"name": "envoy"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "main", "ready": false, "state": {"running": {}}},
            {"name": "envoy", "ready": false, "state": {"running": {}}}]}
    });
    if let Some(port) = probe {
        pod["spec"]["containers"][1]["readinessProbe"] = json!({"httpGet": {"path": "/ready", "port": port}});
        pod["status"]["podIP"] = json!("127.0.0.1");
        pod["status"]["podIPs"] = json!([{"ip": "127.0.0.1"}]);
        pod["status"]["containerStatuses"][1]["state"] = json!({"running": {"startedAt": "2026-12-05T00:00:00Z"}});
    }
    pod
}

/// Starts `command -g SHUTDOWN_URL -- program...` as the kubelet would start it, in fresh mount and UTS namespaces,
/// under `compare rusage`, which writes CLOCK_MONOTONIC to `files.start` just before it spawns the wrapper: the
/// process start that the start-up latency counts from (the namespaces' setup before it is the harness's).
pub fn spawn_wrapper(
    command: &[String],
    api: &ApiServer,
    shutdown_url: &str,
    program: &[String],
    files: &Path,
) -> Child {
    // Mounts stay inside the new mount namespace (unshare makes them private).
    let script = r#"set -e
mkdir -p /var/run/secrets
mount -t tmpfs proa-bench /var/run/secrets
mkdir -p /var/run/secrets/kubernetes.io/serviceaccount
mount --bind "$BENCH_SA" /var/run/secrets/kubernetes.io/serviceaccount
hostname "$BENCH_POD"
exec "$BENCH_SELF" rusage "$BENCH_TIME" "$BENCH_START" "$@""#;
    let stderr = std::fs::File::create(files.with_extension("log")).expect("log file");
    Command::new("unshare")
        .args(["--mount", "--uts", "--", "sh", "-c", script, "sh"])
        .args(command)
        .args(["-g", shutdown_url, "--"])
        .args(program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", api.port().to_string())
        .env("BENCH_SA", api.service_account_dir())
        .env("BENCH_POD", "bench-job-x7k2p")
        .env("BENCH_TIME", files.with_extension("time"))
        .env("BENCH_START", files.with_extension("start"))
        .env("BENCH_SELF", std::env::current_exe().expect("own path"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("unshare runs (make bench runs as root)")
}

/// `rusage TIME_FILE START_FILE COMMAND...`: what `/usr/bin/time` did, finer. Writes CLOCK_MONOTONIC to START_FILE,
/// runs COMMAND, and writes its peak RSS (KiB), user and system CPU time (µs) to TIME_FILE, from wait4(2): the
/// wrapper's own, and its program's, which it waited for (the same program for every wrapper). Exits as COMMAND did.
fn rusage(args: &[String]) -> ! {
    let [time_file, start_file, command @ ..] = args else { panic!("usage: compare rusage TIME START COMMAND...") };
    std::fs::write(start_file, format!("{}\n", mono_ns())).expect("write the time");
    let child = Command::new(&command[0]).args(&command[1..]).spawn().expect("spawn the wrapper");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4(2) to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes; the child is ours and not waited for elsewhere.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4: {}", std::io::Error::last_os_error());
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let line = format!("{} {} {}\n", usage.ru_maxrss, us(usage.ru_utime), us(usage.ru_stime));
    std::fs::write(time_file, line).expect("write the rusage");
    let code = match (libc::WIFEXITED(status), libc::WIFSIGNALED(status)) {
        (true, _) => libc::WEXITSTATUS(status),
        (_, true) => 128 + libc::WTERMSIG(status),
        _ => 1,
    };
    std::process::exit(code)
}

/// Peak RSS (KiB) and CPU time, user + system (µs), from a `compare rusage` file.
fn read_rusage(file: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(file).ok()?;
    let fields: Vec<u64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    match fields[..] {
        [rss, user, system] => Some((rss, user + system)),
        _ => None,
    }
}

pub fn stamp_program(file: &Path, seconds: Option<u64>) -> Vec<String> {
    let mut program = vec![
        std::env::current_exe().expect("own path").display().to_string(),
        "stamp".into(),
        file.display().to_string(),
    ];
    program.extend(seconds.map(|s| s.to_string()));
    program
}

/// Waits for a child with a bound (the wrapper exits when proa does).
pub fn wait_child(child: &mut Child, bound: Duration, what: &str) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            eprintln!("bench: {what} did not exit within {bound:?}");
            return None;
        }
        // Polling a child's exit here only paces the benchmark harness; nothing is measured by it.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What one lifecycle showed.
pub struct Lifecycle {
    /// CLOCK_MONOTONIC (ns) of: the process start (see `spawn_wrapper`), the first request's arrival, the ready
    /// event's sending (or the instant the sidecar's endpoint began to answer 200), and the program's first
    /// instruction.
    pub process_start_ns: u64,
    pub first_request_ns: u64,
    pub ready_ns: u64,
    pub program_start_ns: u64,
    ready_to_start_ns: u64,
    start_to_first_request_ns: u64,
    requests: BTreeMap<String, usize>,
    peak_rss_kib: u64,
    /// User + system CPU time of the wrapper and its program, from wait4(2).
    cpu_us: u64,
    cpu_ns: Option<u64>,
    cpu_ticks: Option<u64>,
}

/// What makes the sidecar ready in a lifecycle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The API server reports it Ready once the wrapper watches (the sidecar has no readinessProbe).
    ApiReady,
    /// Its readinessProbe's endpoint begins to answer 200 once the wrapper watches, and the API server reports it
    /// Ready `KUBELET_DELAY` later, as the kubelet's next probe would, unless the wrapper already sent the shutdown
    /// action by then.
    EndpointReady,
}

/// The shutdown action's path at the sidecar.
const QUIT: &str = "/quitquitquit";

/// One whole lifecycle: wait (the sidecar becomes ready once the wrapper watches), run, shutdown GET, sidecar exits.
pub fn lifecycle(
    command: &[String],
    clock: &Clock,
    work: &Path,
    run: usize,
    cpu: Option<Duration>,
    scenario: Scenario,
) -> Result<Lifecycle, String> {
    let sidecar = match scenario {
        Scenario::ApiReady => Sidecar::start(),
        Scenario::EndpointReady => Sidecar::start_unready(),
    };
    let api = ApiServer::start(pod((scenario == Scenario::EndpointReady).then(|| sidecar.port())));
    let files = work.join(format!("run-{run}"));
    let stamp_file = files.with_extension("stamp");
    let _ = std::fs::remove_file(&stamp_file);
    let program = stamp_program(&stamp_file, cpu.map(|d| d.as_secs()));
    let _ = std::fs::remove_file(files.with_extension("start"));
    let mut child = spawn_wrapper(command, &api, &sidecar.url(QUIT), &program, &files);
    let watching = wait_until(BOUND, || api.open_watches() >= 1);
    if !watching {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("never watched; see {}", files.with_extension("log").display()));
    }
    let quits = || sidecar.hits().iter().filter(|hit| hit.path == QUIT).count();
    let ready = match scenario {
        Scenario::ApiReady => clock.mono_of(api.set_ready("envoy")),
        Scenario::EndpointReady => {
            // The endpoint's readiness does not follow the wrapper's probe rounds: it begins at an offset after the
            // watch that spreads evenly over 0–500 ms as the runs go (the golden ratio's multiples, modulo 1), so
            // that a median over the runs is not one phase of a prober's interval. A scripted event, not a wait.
            let offset = (run as f64 * 0.618_033_988_75).fract() * 500.0;
            std::thread::sleep(Duration::from_micros((offset * 1000.0) as u64));
            let answering = sidecar.set_ready();
            let kubelet = answering + KUBELET_DELAY;
            if !wait_until(kubelet.saturating_duration_since(Instant::now()), || quits() >= 1) {
                api.set_ready("envoy");
            }
            clock.mono_of(answering)
        }
    };
    sidecar.wait_for("GET", QUIT, 1, BOUND);
    api.set_terminated("envoy", 0);
    let code = wait_child(&mut child, BOUND, "proa");
    if code != Some(0) {
        return Err(format!("exit {code:?}; see {}", files.with_extension("log").display()));
    }
    let stamp = std::fs::read_to_string(&stamp_file).map_err(|e| format!("no stamp: {e}"))?;
    let fields: Vec<u64> = stamp.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let requests = api.requests();
    let first = requests.first().map(|r| clock.mono_of(r.at)).ok_or("no request")?;
    let mut by_kind = BTreeMap::new();
    for r in &requests {
        let kind = match r.route {
            Some(Route::Get) => "GET pod",
            Some(Route::List) => "LIST pods",
            Some(Route::Watch) => "WATCH pods",
            Some(Route::AccessReview) => "access review",
            None => "other",
        };
        *by_kind.entry(kind.to_string()).or_insert(0) += 1;
    }
    let (peak_rss_kib, cpu_us) = read_rusage(&files.with_extension("time")).ok_or("no rusage")?;
    let started = std::fs::read_to_string(files.with_extension("start")).map_err(|e| format!("no start: {e}"))?;
    let started: u64 = started.trim().parse().map_err(|e| format!("start: {e}"))?;
    Ok(Lifecycle {
        process_start_ns: started,
        first_request_ns: first,
        ready_ns: ready,
        program_start_ns: fields[0],
        ready_to_start_ns: fields[0].saturating_sub(ready),
        start_to_first_request_ns: first.saturating_sub(started),
        requests: by_kind,
        peak_rss_kib,
        cpu_us,
        cpu_ns: (fields.len() >= 6).then(|| fields[3].saturating_sub(fields[2])),
        cpu_ticks: (fields.len() >= 6).then(|| fields[5].saturating_sub(fields[4])),
    })
}

/// Waits for `condition` at most `bound`, checking every few milliseconds (the harness's own pacing).
fn wait_until(bound: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// N instances at once against one API server: they share the Pod and one sidecar.
fn scale(command: &[String], n: usize, work: &Path) -> Result<Value, String> {
    let api = ApiServer::start(pod(None));
    let sidecar = Sidecar::start();
    let true_program = vec!["/bin/true".to_string()];
    let started = Instant::now();
    let mut children: Vec<Child> = (0..n)
        .map(|i| spawn_wrapper(command, &api, &sidecar.url(QUIT), &true_program, &work.join(format!("scale-{n}-{i}"))))
        .collect();
    if !wait_until(BOUND, || api.open_watches() >= n) {
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(format!("only {} of {n} watched", api.open_watches()));
    }
    api.set_ready("envoy");
    sidecar.wait_for_hits(n, BOUND);
    api.set_terminated("envoy", 0);
    let mut failed = 0;
    for child in &mut children {
        if wait_child(child, BOUND, "an instance") != Some(0) {
            failed += 1;
        }
    }
    let wall = started.elapsed();
    let usage: Vec<(u64, u64)> =
        (0..n).filter_map(|i| read_rusage(&work.join(format!("scale-{n}-{i}.time")))).collect();
    let rss_kib: u64 = usage.iter().map(|(rss, _)| rss).sum();
    let cpu_us: u64 = usage.iter().map(|(_, cpu)| cpu).sum();
    Ok(json!({
        "instances": n,
        "failed": failed,
        "requests_per_instance": api.requests().len() as f64 / n as f64,
        "total_rss_mib": rss_kib as f64 / 1024.0,
        "cpu_ms_per_instance": cpu_us as f64 / 1e3 / usage.len().max(1) as f64,
        "peak_open_connections": api.peak_connections(),
        "wall_seconds": wall.as_secs_f64(),
    }))
}

/// The latency lifecycles, every candidate's run `i` after the others' run `i - 1`, so that whatever else the
/// machine does meanwhile weighs on all of them alike; one unmeasured lifecycle each first warms the caches.
fn interleaved_lifecycles(
    candidates: &[&Candidate],
    runs: usize,
    clock: &Clock,
    work: &Path,
    scenario: Scenario,
) -> Vec<(Vec<Lifecycle>, Vec<String>)> {
    let mut results: Vec<(Vec<Lifecycle>, Vec<String>)> = candidates.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for run in (0..=runs).take_while(|_| runs > 0) {
        for (candidate, (lifecycles, errors)) in candidates.iter().zip(results.iter_mut()) {
            let Ok(command) = &candidate.command else { continue };
            match (lifecycle(command, clock, work, run, None, scenario), run) {
                (_, 0) => {}
                (Ok(lifecycle), _) => lifecycles.push(lifecycle),
                (Err(err), _) => errors.push(err),
            }
        }
    }
    results
}

fn measure(
    candidate: &Candidate,
    (runs, errors): (Vec<Lifecycle>, Vec<String>),
    (probed, probe_errors): (Vec<Lifecycle>, Vec<String>),
    plan: &Plan,
    clock: &Clock,
    work: &Path,
) -> Value {
    let command = match &candidate.command {
        Ok(command) => command,
        Err(why) => return json!({"name": candidate.name, "error": why}),
    };
    let size = candidate.binary.as_ref().and_then(|binary| std::fs::metadata(binary).ok()).map(|m| m.len());
    let cpu = match plan.runs {
        0 => Err("not measured".to_string()),
        _ => lifecycle(command, clock, work, plan.runs + 1, Some(plan.cpu_program), Scenario::ApiReady),
    };
    let scales: Vec<Value> = plan
        .scales
        .iter()
        .map(|&n| scale(command, n, work).unwrap_or_else(|err| json!({"instances": n, "error": err})))
        .collect();
    let mut ready: Vec<u64> = runs.iter().map(|r| r.ready_to_start_ns).collect();
    let mut first: Vec<u64> = runs.iter().map(|r| r.start_to_first_request_ns).collect();
    let mut endpoint: Vec<u64> = probed.iter().map(|r| r.ready_to_start_ns).collect();
    let mut cpu_us: Vec<u64> = runs.iter().map(|r| r.cpu_us).collect();
    json!({
        "name": candidate.name,
        "command": command.join(" "),
        "binary_bytes": size,
        "runs_ok": runs.len(),
        "run_errors": errors,
        "peak_rss_kib_max": runs.iter().map(|r| r.peak_rss_kib).max(),
        "peak_rss_kib_median": median(&mut runs.iter().map(|r| r.peak_rss_kib).collect::<Vec<_>>()),
        "ready_to_start_ms_median": median(&mut ready).map(ms),
        "ready_to_start_ms_p99": p99(&mut ready).map(ms),
        "start_to_first_request_ms_median": median(&mut first).map(ms),
        "endpoint_to_start_ms_median": median(&mut endpoint).map(ms),
        "endpoint_to_start_ms_max": endpoint.iter().max().copied().map(ms),
        "endpoint_runs_ok": probed.len(),
        "endpoint_run_errors": probe_errors,
        "cpu_ms_per_lifecycle_median": median(&mut cpu_us).map(|us| us as f64 / 1e3),
        "requests_per_lifecycle": runs.first().map(|r| json!(r.requests)),
        "cpu_ms_during_program": cpu.as_ref().ok().and_then(|c| c.cpu_ns).map(ms),
        "cpu_ticks_during_program": cpu.as_ref().ok().and_then(|c| c.cpu_ticks),
        "cpu_error": cpu.err(),
        "scale": scales,
    })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn median(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

fn p99(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    let index = (values.len() * 99).div_ceil(100).checked_sub(1)?;
    values.get(index).copied()
}

/// The table: one row per figure, one column per program.
fn render(results: &[Value], plan: &Plan) -> String {
    let cell = |v: &Value, key: &str| -> String {
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            return format!("not measured: {err}");
        }
        match &v[key] {
            Value::Null => "-".into(),
            Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
            Value::Object(map) => map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    };
    // A latency, and for a proa its ratio to the floor's in the same run.
    let floor = results.iter().find(|v| v["name"] == FLOOR);
    // A scale figure, and for the CPU and the wall time the ratio to the floor's in the same run.
    let scale_cell = |v: &Value, i: usize, key: &str| -> String {
        let entry = &v["scale"][i];
        if let Some(err) = v.get("error").or_else(|| entry.get("error")).and_then(Value::as_str) {
            return format!("not measured: {err}");
        }
        let ratio = floor
            .filter(|f| f["name"] != v["name"] && matches!(key, "wall_seconds" | "cpu_ms_per_instance"))
            .and_then(|f| Some(entry[key].as_f64()? / f["scale"][i][key].as_f64()?));
        let value = match &entry[key] {
            Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
            other => other.to_string(),
        };
        match ratio {
            Some(ratio) => format!("{value} ({ratio:.2}× floor)"),
            None => value,
        }
    };
    let latency = |v: &Value, key: &str| -> String {
        let ratio = floor.filter(|f| f["name"] != v["name"]).and_then(|f| Some(v[key].as_f64()? / f[key].as_f64()?));
        match ratio {
            Some(ratio) => format!("{} ({ratio:.2}× floor)", cell(v, key)),
            None => cell(v, key),
        }
    };
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("program".into(), results.iter().map(|v| v["name"].as_str().unwrap_or("").to_string()).collect()),
        ("binary size (bytes)".into(), results.iter().map(|v| cell(v, "binary_bytes")).collect()),
        (
            "peak RSS, whole lifecycle (KiB, median / max)".into(),
            results
                .iter()
                .map(|v| format!("{} / {}", cell(v, "peak_rss_kib_median"), cell(v, "peak_rss_kib_max")))
                .collect(),
        ),
        (
            format!("ready event → program start (ms, median over {})", plan.runs),
            results.iter().map(|v| latency(v, "ready_to_start_ms_median")).collect(),
        ),
        (
            "ready event → program start (ms, p99)".into(),
            results.iter().map(|v| latency(v, "ready_to_start_ms_p99")).collect(),
        ),
        (
            "process start → first API request (ms, median)".into(),
            results.iter().map(|v| latency(v, "start_to_first_request_ms_median")).collect(),
        ),
        (
            format!(
                "sidecar endpoint ready → program start, API Ready {} s later (ms, median over {})",
                KUBELET_DELAY.as_secs(),
                plan.probe_runs
            ),
            results.iter().map(|v| latency(v, "endpoint_to_start_ms_median")).collect(),
        ),
        (
            "sidecar endpoint ready → program start (ms, slowest)".into(),
            results.iter().map(|v| latency(v, "endpoint_to_start_ms_max")).collect(),
        ),
        (
            "CPU per lifecycle, user + system, wrapper and program (ms, median)".into(),
            results.iter().map(|v| latency(v, "cpu_ms_per_lifecycle_median")).collect(),
        ),
        (
            format!("wrapper CPU while a {}s program runs (ms, schedstat)", plan.cpu_program.as_secs()),
            results.iter().map(|v| cell(v, "cpu_ms_during_program")).collect(),
        ),
        (
            "same, utime+stime from /proc/PID/stat (10 ms ticks)".into(),
            results.iter().map(|v| cell(v, "cpu_ticks_during_program")).collect(),
        ),
        ("API requests per lifecycle".into(), results.iter().map(|v| cell(v, "requests_per_lifecycle")).collect()),
    ];
    for (i, n) in plan.scales.iter().enumerate() {
        for (key, label) in [
            ("requests_per_instance", "requests per instance"),
            ("total_rss_mib", "total wrapper RSS (MiB)"),
            ("cpu_ms_per_instance", "CPU per instance, user + system (ms, mean)"),
            ("peak_open_connections", "most open connections at the server"),
            ("wall_seconds", "wall time until all exited (s)"),
            ("failed", "instances that failed"),
        ] {
            rows.push((format!("{n} at once: {label}"), results.iter().map(|v| scale_cell(v, i, key)).collect()));
        }
    }
    let widths: Vec<usize> = (0..=results.len())
        .map(|c| {
            rows.iter()
                .map(|(label, cells)| if c == 0 { label.chars().count() } else { cells[c - 1].chars().count() })
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (r, (label, cells)) in rows.iter().enumerate() {
        out.push_str(&format!("| {label:<w$} |", w = widths[0]));
        for (c, cell) in cells.iter().enumerate() {
            out.push_str(&format!(" {cell:<w$} |", w = widths[c + 1]));
        }
        out.push('\n');
        if r == 0 {
            out.push_str(&format!("|{}|", "-".repeat(widths[0] + 2)));
            for w in &widths[1..] {
                out.push_str(&format!("{}|", "-".repeat(w + 2)));
            }
            out.push('\n');
        }
    }
    out
}
