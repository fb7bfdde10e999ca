//! Deterministic simulation of the lifecycle (issue 10): the real owner loop (`drive`) and state machine run
//! against a simulated world (`world.rs`) built from a seed (`scenario.rs`), thousands of timelines per run. After
//! each, the promise is checked (`check`): never early, the exit code kept, every action attempted, done in time
//! and before the kubelet's SIGKILL, no hang, no panic. A failure prints its seed; `PROA_SIM_SEED=N` replays one,
//! `PROA_SIM_TIMELINES=N` sets how many run (`make soak` runs many more, from `PROA_SIM_BASE`).

mod scenario;
mod world;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::pod::Pod;
use crate::probe::Endpoint as ProbeEndpoint;
use crate::shutdown;

use super::config::{ActionTarget, Config, Mode};
use super::shutting_down::CUT_OFF_AFTER;
use super::stop::{EXIT_MARGIN, MAX_WAIT, STALE_AFTER};
use scenario::Scenario;
use world::{FIRST_UID, Record, Sim};

/// Timelines in `make test`.
const DEFAULT_TIMELINES: u64 = 40_000;
/// Slack for the owner's own work between two virtual instants.
const EPSILON: Duration = Duration::from_millis(1);

/// The lifecycle settings a scenario's command line gives.
fn config(s: &Scenario) -> Config {
    let mode = match (&s.start_failure, &s.sidecar_role, s.no_api) {
        (Some(err), _, _) => Mode::Failed(err.clone()),
        (None, Some(role), _) => Mode::Sidecar { signal: role.signal, grace: role.grace },
        (None, None, true) => Mode::Endpoints(vec![ProbeEndpoint::Http("http://127.0.0.1:15021/healthz/ready".into())]),
        (None, None, false) => Mode::Pod,
    };
    Config {
        container: s.container_flag.then(|| "job".to_string()),
        own_args: s.own_args(),
        program_words: 1 + s.program_args.len(),
        ignore: s.ignore.clone(),
        ready_timeout: s.ready_timeout,
        run_on_ready_timeout: s.run_on_ready_timeout,
        shutdown_timeout: s.shutdown_timeout,
        always_shutdown: s.always_shutdown,
        direct_probe: s.direct_probe,
        actions: s
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| ActionTarget {
                label: "POST http://127.0.0.1:15020/quitquitquit".into(),
                container: a.container.clone(),
                kill: s.kill_action == Some(i),
            })
            .collect(),
        peers: s.peer_flags(),
        recognise: s.auto_shutdown,
        mode,
    }
}

/// How one timeline ended.
struct Ending {
    code: u8,
    at: Duration,
}

/// Runs one timeline; `Ok` says how many recognised sidecars were sent their POST, `Err` names the broken promise,
/// with the trace.
fn run(seed: u64) -> Result<usize, String> {
    let scenario = Scenario::generate(seed);
    let config = config(&scenario);
    let mut sim = Sim::new(&scenario);
    let ran = catch_unwind(AssertUnwindSafe(|| super::drive(&config, &mut sim)));
    let verdict = match ran {
        Ok(code) => check(&scenario, &sim.record, &Ending { code, at: sim.now }),
        Err(panic) => {
            let text = panic.downcast_ref::<String>().cloned().or(panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("panicked: {}", text.unwrap_or_default()))
        }
    };
    verdict.map(|()| sim.record.recognised.len()).map_err(|broken| {
        format!(
            "seed {seed}: {broken}\nreplay: PROA_SIM_SEED={seed} cargo test simulation\n{scenario:#?}\ntrace:\n{}",
            sim.record.trace.join("\n")
        )
    })
}

/// The promise, checked on what the owner was told and did.
fn check(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    if r.hang {
        return Err("hang: the owner waited with no event and no deadline to wake it".into());
    }
    if s.sidecar_role.is_some() {
        return sidecar_role(s, r, end);
    }
    if let Some(wrong) = r.wrong_probes.first() {
        return Err(wrong.clone());
    }
    never_early(s, r)?;
    termination_logged(r, end)?;
    guesses(s, r, end)?;
    // Killed by the kubelet, proa has no exit code and no time of its own; what it did before still counts.
    if let Some(killed) = r.killed_at {
        if !killed_excused(s, r, killed) {
            return Err(format!("the kubelet's SIGKILL at {killed:?} came before proa exited"));
        }
        actions_allowed(s, r, end)?;
        return recognised_allowed(s, r, end).map(|_| ());
    }
    exit_code(s, r, end)?;
    actions_allowed(s, r, end)?;
    actions_all_sent(s, r, end)?;
    recognised_all_sent(s, r, end)?;
    in_time(s, r, end)
}

/// `--serve-quit`: the sidecar runs at once; a quit request (not after the kubelet's SIGTERM) stops it with the
/// kill signal, then SIGKILL after the kill grace, and proa exits 0; otherwise proa exits with the sidecar's code,
/// as soon as it exits. Nothing is sent, nothing is watched.
fn sidecar_role(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    let role = s.sidecar_role.as_ref().expect("a sidecar's timeline");
    if r.program_started != Some(Duration::ZERO) {
        return Err(format!("the sidecar started at {:?}, not at once", r.program_started));
    }
    if !r.attempts.is_empty() || !r.delivered.is_empty() {
        return Err("a sidecar's proa sent shutdown actions or watched the Pod".into());
    }
    if r.spawn_failed {
        return match (end.code, s.program.fork_fails) {
            (127, false) | (125, true) => termination_logged(r, end),
            (other, _) => Err(format!("the sidecar could not start, yet proa exited {other}")),
        };
    }
    let Some((exited, code)) = r.program_exit else { return Err("exited while the sidecar still ran".into()) };
    let before_exit = |at: &Duration| *at <= exited;
    let first_stop = r.stops.iter().map(|(at, _)| *at).find(before_exit);
    // A quit request counts when it came before the sidecar exited and before any stop signal.
    let quit = r.quit_first.filter(before_exit);
    let expected = if quit.is_some() { 0 } else { code };
    if end.code != expected {
        return Err(format!("exited {} where {expected} was due (sidecar exited {code}, quit {quit:?})", end.code));
    }
    if end.at > exited + EPSILON {
        return Err(format!("exited at {:?}, after the sidecar at {exited:?}", end.at));
    }
    if let Some(quit) = quit {
        let killed_by = quit + role.grace.min(MAX_WAIT) + EPSILON;
        if exited > killed_by && first_stop.is_none_or(|stop| stop > killed_by) {
            return Err(format!("quit at {quit:?}: the sidecar still ran at {exited:?}, past --kill-grace"));
        }
    }
    Ok(())
}

fn waited_truth(s: &Scenario) -> Vec<(String, bool)> {
    let regular = s.sidecars.iter().map(|p| (p.name.clone(), false));
    let native = s.natives.iter().map(|p| (p.name.clone(), true));
    regular.chain(native).filter(|(name, _)| !s.ignore.contains(name)).collect()
}

fn status<'a>(pod: &'a Pod, name: &str, native: bool) -> Option<&'a crate::pod::ContainerStatus> {
    let statuses = if native { &pod.status.init_container_statuses } else { &pod.status.container_statuses };
    statuses.iter().find(|st| st.name == name)
}

/// A snapshot that says the Pod proa runs in is going away.
fn is_gone(pod: &Pod, deleted: bool) -> bool {
    deleted || pod.metadata.deletion_timestamp.is_some() || pod.metadata.uid.as_deref() != Some(FIRST_UID)
}

fn delivered_before(r: &Record, t: Duration) -> impl Iterator<Item = &(Duration, Pod, bool)> {
    r.delivered.iter().filter(move |(at, _, _)| *at <= t)
}

/// The program never starts before every waited container is ready in the newest snapshot, nor once the Pod was
/// seen going away.
fn never_early(s: &Scenario, r: &Record) -> Result<(), String> {
    let Some(started) = r.program_started else { return Ok(()) };
    if s.run_on_ready_timeout && s.ready_timeout.is_some_and(|timeout| started >= timeout) {
        return Ok(());
    }
    if s.no_api {
        return match r.endpoints_reached_ready {
            Some(ready) if ready <= started => Ok(()),
            _ => Err("started the program before the endpoints were ready".into()),
        };
    }
    let before_start = &r.delivered[..r.snapshots_before_start];
    if s.peers_refused() && !before_start.is_empty() {
        return Err("started the program although its --peer was refused".into());
    }
    if before_start.iter().any(|(_, pod, deleted)| is_gone(pod, *deleted)) {
        return Err("started the program after the Pod was seen deleted or replaced".into());
    }
    let Some((_, newest, _)) = before_start.last() else {
        return Err("started the program before any snapshot".into());
    };
    for (name, native) in waited_truth(s) {
        let Some(st) = status(newest, &name, native) else {
            return Err(format!("started the program while {name} had no status"));
        };
        // Ready by the API, or by a pass of its own spec's endpoint in the run the newest snapshot shows going on.
        let running = st.state.running.is_some() && st.state.terminated.is_none();
        let passed = r.passes.iter().any(|(at, c, run)| *at <= started && *c == name && *run == st.restart_count);
        if !(st.ready || (running && passed)) {
            return Err(format!("started the program while {name} was not ready"));
        }
    }
    Ok(())
}

/// Every exit with proa's own failure codes (124, 125) that is not the program's own code writes its reason to the
/// termination log, where `kubectl describe pod` shows it.
fn termination_logged(r: &Record, end: &Ending) -> Result<(), String> {
    // Killed by the kubelet, proa said nothing: it never chose to exit.
    let programs_own = r.program_exit.is_some_and(|(_, code)| code == end.code) || r.killed_at.is_some();
    match (end.code, programs_own, r.termination_log.is_empty()) {
        (124 | 125, false, true) => Err(format!("exited {} with nothing in the termination log", end.code)),
        _ => Ok(()),
    }
}

/// With no action given and `--auto-shutdown` on, a proa that the API refused its Pod (403, 404), or that could not
/// ask (a start that failed finding the cluster), sends the recognisable sidecars' POSTs as guesses (unless the
/// kubelet's deadline came first); any other never does, a stop or a ready timeout before the first read included.
fn guesses(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    let decided = r.shutdown_ordered.unwrap_or(end.at);
    let unread = !knew_the_pod(s, r, decided) && r.program_started.is_none();
    let refused = match &s.start_failure {
        Some(err) => err.leaves_the_pod_unread(),
        None => {
            let first_failure = r.api_failed_at.into_iter().chain(r.not_found_at).min();
            !s.no_api && first_failure.is_some_and(|at| Some(at) == r.shutdown_ordered)
        }
    };
    let due = unread && refused && s.actions.is_empty() && s.auto_shutdown && r.shutdown_ordered.is_some();
    match (due, r.guessed.is_empty()) {
        (false, false) => Err(format!("sent guessed shutdown requests {:?} although it knew better", r.guessed)),
        (true, true) if !at_hard_deadline(s, r, end) => Err("the pod unread, no guessed shutdown request went".into()),
        _ => Ok(()),
    }
}

/// proa exits with the program's code, or the documented code of what stopped the wait.
fn exit_code(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    if let Some(reason) = &s.start_failure {
        return match (r.program_started, end.code) {
            (None, 125) => Ok(()),
            (Some(_), _) => Err(format!("started the program although the start failed ({reason})")),
            (None, code) => Err(format!("exited {code} after a failed start ({reason}), not 125")),
        };
    }
    if r.program_started.is_some() && !r.spawn_failed {
        return match r.program_exit {
            Some((_, code)) if code == end.code => Ok(()),
            Some((_, code)) => Err(format!("exited {} but the program exited {code}", end.code)),
            None => Err(format!("exited {} while the program still ran", end.code)),
        };
    }
    let before_exit = |t: Duration| t <= end.at;
    let allowed = match end.code {
        127 => r.spawn_failed && !s.program.fork_fails,
        124 => s.ready_timeout.is_some_and(|t| end.at >= t) && !s.run_on_ready_timeout,
        125 => {
            (r.spawn_failed && s.program.fork_fails)
                || (s.peers_refused() && delivered_before(r, end.at).next().is_some())
                || r.api_failed_at.or(r.not_found_at).is_some_and(before_exit)
                || delivered_before(r, end.at).any(|(_, pod, _)| shows_dead(s, pod).is_some())
        }
        143 => {
            r.stops.iter().any(|(at, sig)| *sig == libc::SIGTERM && before_exit(*at))
                || delivered_before(r, end.at).any(|(_, pod, deleted)| is_gone(pod, *deleted))
        }
        130 | 131 => r.stops.iter().any(|(at, sig)| crate::exit::signal_code(*sig) == end.code && before_exit(*at)),
        _ => false,
    };
    match allowed {
        true => Ok(()),
        false => Err(format!("exited {} with no cause for it (the program never ran)", end.code)),
    }
}

/// A waited regular sidecar that terminated and will not be restarted, by the world's own rules.
fn shows_dead(s: &Scenario, pod: &Pod) -> Option<String> {
    s.sidecars.iter().filter(|p| !s.ignore.contains(&p.name)).find_map(|p| {
        let terminated = status(pod, &p.name, false)?.state.terminated.as_ref()?;
        (!s.restarts(p.policy, terminated.exit_code)).then(|| p.name.clone())
    })
}

/// When the kubelet will restart proa's container, or another proa stops the sidecars, no action is sent; in the
/// Pod, none for a native sidecar or a container it lacks; and the stopper sends nothing while a peer still runs,
/// unless the Pod is stopping.
fn actions_allowed(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    let Some(should) = actions_due(s, r, end) else {
        return match r.attempts.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "sent shutdown actions although it is not to (exit {}, stopper {})",
                end.code,
                s.is_stopper()
            )),
        };
    };
    if let Some((i, _)) = r.attempts.iter().find(|(i, _)| !should.contains(i)) {
        return Err(format!("sent action {i}, for {:?}, which this Pod must not get", s.actions[*i].container));
    }
    let policy_known = knew_the_pod(s, r, r.shutdown_ordered.unwrap_or(end.at));
    let first = r.attempts.iter().map(|(_, at)| *at).min();
    match (first, peers_done_at(s, r)) {
        (Some(first), done) if !s.peers.is_empty() && policy_known => {
            let allowed = done.is_some_and(|done| done <= first) || stopped_at(s, r).is_some_and(|stop| stop <= first);
            match allowed || r.api_failed_at.is_some_and(|failed| failed <= first) {
                true => Ok(()),
                false => Err(format!("sent a shutdown action at {first:?} while a peer still ran")),
            }
        }
        _ => Ok(()),
    }
}

/// Every action due is attempted at least once before proa exits, unless the kubelet's grace ran out first.
fn actions_all_sent(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    let Some(should) = actions_due(s, r, end) else { return Ok(()) };
    let sent = |i: &usize| r.attempts.iter().any(|(sent, _)| sent == i);
    if should.iter().any(|i| !sent(i)) && !at_hard_deadline(s, r, end) {
        return Err(format!("exited with {} of {} shutdown actions never sent", r.attempts.len(), should.len()));
    }
    if let Some((_, late)) = r.attempts.iter().find(|(_, attempt)| *attempt > end.at) {
        if !at_hard_deadline(s, r, end) {
            return Err(format!("exited before the attempt due at {late:?}"));
        }
    }
    Ok(())
}

/// Recognised sidecars (DESIGN.md step 4): a POST only to a regular sidecar proa recognises, never to a native one
/// nor to one an action names, and only when the actions may go. Returns the sidecars that must have had one.
fn recognised_allowed(s: &Scenario, r: &Record, end: &Ending) -> Result<Vec<String>, String> {
    let policy_known = knew_the_pod(s, r, r.shutdown_ordered.unwrap_or(end.at));
    let due: Vec<String> = match actions_due(s, r, end) {
        Some(_) if policy_known => {
            (0..s.sidecars.len()).filter(|&i| s.recognises(i)).map(|i| s.sidecars[i].name.clone()).collect()
        }
        _ => Vec::new(),
    };
    if let Some((name, at)) = r.recognised.iter().find(|(name, _)| !due.contains(name)) {
        let native = s.natives.iter().any(|p| &p.name == name);
        return Err(format!("sent a recognised POST to {name} at {at:?} (native {native}), which must get none"));
    }
    Ok(due)
}

/// Every recognised sidecar due gets its POST before proa exits, unless the kubelet's grace ran out first.
fn recognised_all_sent(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    let due = recognised_allowed(s, r, end)?;
    let missing = due.iter().find(|name| !r.recognised.iter().any(|(sent, _)| sent == *name));
    match missing {
        Some(name) if !at_hard_deadline(s, r, end) => Err(format!("exited without the recognised POST to {name}")),
        _ => Ok(()),
    }
}

/// The actions proa must send, by number; `None` when it must send none (its container will be restarted, or
/// another proa stops the sidecars). Without the Pod, every action goes.
fn actions_due(s: &Scenario, r: &Record, end: &Ending) -> Option<Vec<usize>> {
    // What proa knew of the Pod when it decided: the first snapshot came before it ordered the actions (a read
    // after a stop signal, once shutdown has begun, changes nothing of that).
    let decided = r.shutdown_ordered.unwrap_or(end.at);
    let policy_known = knew_the_pod(s, r, decided);
    let code = r.program_exit.map_or(end.code, |(_, code)| code);
    let restarted = policy_known && s.restarts(s.own_policy, i32::from(code));
    if (restarted && !s.always_shutdown) || (policy_known && !s.is_stopper()) {
        return None;
    }
    // Without the Pod, every action goes; in it, none for a native sidecar or a container it lacks. After a failed
    // start, never a kill: the failure may be its refusal.
    let due = (0..s.actions.len()).filter(|&i| !policy_known || s.sends(s.actions[i].container.as_deref()));
    Some(due.filter(|&i| s.kill_action != Some(i)).collect())
}

/// Whether proa's facts came from the Pod by `decided`: only the wait reads them (before the program starts, even
/// when `--on-ready-timeout run` starts it first); a read after a stop signal changes nothing of them.
/// Counted in snapshots received, not by the clock: a stopped watcher's straggler may come at the same instant.
fn knew_the_pod(s: &Scenario, r: &Record, decided: Duration) -> bool {
    !s.no_api && !s.peers_refused() && !known_when_deciding(r, decided).is_empty()
}

/// The snapshots the owner had received when it fixed its facts: before it started the program, else before it
/// ordered the actions, else by `decided`.
fn known_when_deciding(r: &Record, decided: Duration) -> &[(Duration, Pod, bool)] {
    let received = match (r.program_started, r.shutdown_ordered) {
        (Some(_), _) => r.snapshots_before_start,
        (None, Some(_)) => r.snapshots_before_shutdown,
        (None, None) => delivered_before(r, decided).count(),
    };
    &r.delivered[..received]
}

/// When the owner first saw every peer terminated for good.
fn peers_done_at(s: &Scenario, r: &Record) -> Option<Duration> {
    let done = |pod: &Pod| {
        s.peers.iter().all(|p| {
            let terminated = status(pod, &p.name, false).and_then(|st| st.state.terminated.as_ref());
            terminated.is_some_and(|t| !s.restarts(None, t.exit_code))
        })
    };
    r.delivered.iter().find(|(_, pod, _)| done(pod)).map(|(at, _, _)| *at)
}

/// The grace period proa could know of when it was stopped: a deletion's, else the spec's, else the kubelet's
/// 2 s minimum before the first read (in no-API mode, `--shutdown-timeout` or 30 s).
fn known_grace(s: &Scenario, r: &Record, by: Duration) -> Duration {
    if s.no_api {
        return s.shutdown_timeout.unwrap_or(Duration::from_secs(30)).min(MAX_WAIT).max(Duration::from_secs(2));
    }
    // Known at the stop itself: proa sets its deadline then, and a later read only ever brings it forward.
    let seconds = r
        .delivered
        .iter()
        .enumerate()
        .filter(|(i, (at, pod, _))| *at < by && pod.metadata.uid.as_deref() == Some(FIRST_UID) && observed(r, *i))
        .map(|(_, delivered)| delivered)
        .map(|(_, pod, _)| pod.metadata.deletion_grace_period_seconds.or(pod.spec.termination_grace_period_seconds))
        .next_back();
    match seconds {
        None => Duration::from_secs(2),
        Some(seconds) => Duration::from_secs(u64::try_from(seconds.unwrap_or(30)).unwrap_or(0))
            .clamp(Duration::from_secs(2), MAX_WAIT),
    }
}

/// Whether the owner took snapshot `i` into its facts: not one a stopped watcher sent while the program ran (the
/// facts are fixed when it starts; such a snapshot only ever brings the kill forward).
fn observed(r: &Record, i: usize) -> bool {
    let running = |at: Duration| r.program_exit.is_none_or(|(exited, _)| at <= exited);
    r.program_started.is_none() || i < r.snapshots_before_start || !running(r.delivered[i].0)
}

/// When proa was told to stop: the first live stop signal, or the first snapshot of a Pod going away.
fn stopped_at(s: &Scenario, r: &Record) -> Option<Duration> {
    let signal = live_stop_signal(s, r);
    let gone = r.delivered.iter().find(|(_, pod, deleted)| is_gone(pod, *deleted)).map(|(at, _, _)| *at);
    signal.into_iter().chain(gone).min()
}

/// The first stop signal whose deadline the program did not outlive. A stop signal is the kubelet's only while its
/// deadline can still come: a program that outlived it ended normally (a stray SIGINT, a `kill -QUIT` for a thread
/// dump), and proa owes it the whole shutdown.
fn live_stop_signal(s: &Scenario, r: &Record) -> Option<Duration> {
    let outlived =
        |at: Duration| r.program_exit.is_some_and(|(exited, _)| exited >= at + known_grace(s, r, at) + STALE_AFTER);
    r.stops.iter().map(|(at, _)| *at).find(|at| !outlived(*at))
}

/// Whether proa exited at the hard deadline it keeps after being stopped (grace less the margin).
fn at_hard_deadline(s: &Scenario, r: &Record, end: &Ending) -> bool {
    hard_deadline(s, r, end.at).is_some_and(|by| end.at + EPSILON >= by)
}

/// `grace` less the margin proa keeps (1 s, a quarter of a shorter grace).
fn less_margin(grace: Duration) -> Duration {
    grace - EXIT_MARGIN.min(grace / 4)
}

/// The earliest deadline proa could know of by `until`: a stop signal plus the grace it knew then, a snapshot of
/// the Pod going away plus the grace it shows, or a deletion's own deadline (received `deletion_in` before it).
fn hard_deadline(s: &Scenario, r: &Record, until: Duration) -> Option<Duration> {
    let by_signal = live_stop_signal(s, r).filter(|at| *at <= until).map(|at| at + less_margin(known_grace(s, r, at)));
    let gone = r.delivered.iter().find(|(at, pod, deleted)| *at <= until && is_gone(pod, *deleted));
    // A DELETED event or another Pod of the same name: the kill is due.
    let by_gone = gone.map(|(at, pod, deleted)| match (pod.metadata.uid.as_deref() == Some(FIRST_UID), deleted) {
        (true, false) => {
            let grace =
                pod.metadata.deletion_grace_period_seconds.map(|g| Duration::from_secs(u64::try_from(g).unwrap_or(0)));
            *at + less_margin(
                grace.map_or_else(|| known_grace(s, r, *at), |g| g.clamp(Duration::from_secs(2), MAX_WAIT)),
            )
        }
        _ => kill_due(s, r, *at, Duration::ZERO),
    });
    let deletions = delivered_before(r, until)
        .filter(|(_, pod, _)| pod.metadata.uid.as_deref() == Some(FIRST_UID))
        .filter_map(|(at, pod, _)| pod.metadata.deletion_in.map(|left| kill_due(s, r, *at, left)));
    let not_found = r.not_found_at.filter(|at| *at <= until).map(|at| kill_due(s, r, at, Duration::ZERO));
    by_signal.into_iter().chain(by_gone).chain(deletions).chain(not_found).min()
}

/// When proa must be gone after hearing at `at` that the kill comes within `left`: the kubelet gives at least 2 s
/// after its SIGTERM, which is no sooner than the first stop proa heard of (or `at`); less the margin of that span.
/// Not before `at`: proa cannot act on news before it comes.
fn kill_due(s: &Scenario, r: &Record, at: Duration, left: Duration) -> Duration {
    let since = stopped_at(s, r).filter(|since| *since <= at).unwrap_or(at);
    let kill = (at + left).max(since + Duration::from_secs(2));
    (kill - EXIT_MARGIN.min((kill - since) / 4)).max(at)
}

/// The kubelet killed proa: only excusable when the program itself outlived the grace period, or when nothing proa
/// could know told it to be gone before the kill.
fn killed_excused(s: &Scenario, r: &Record, killed: Duration) -> bool {
    let program_late = r.program_started.is_some()
        && !r.spawn_failed
        && r.program_exit.is_none_or(|(at, _)| at + EXIT_MARGIN >= killed);
    let warned = hard_deadline(s, r, killed).is_some_and(|by| by + Duration::from_millis(10) <= killed);
    // After a stop signal proa reads the Pod (once its program has exited: no API traffic while it runs), whose
    // deletion says when the kill comes: it could know by then, unless the API refuses or the answer comes too late.
    let signal = r.stops.first().map(|(at, _)| *at);
    let running_until = |at: Duration| match (r.program_started, r.program_exit) {
        (Some(started), Some((exited, _))) if started <= at => exited.max(at),
        (Some(started), None) if started <= at && !r.spawn_failed => killed,
        _ => at,
    };
    let answer = signal.map(|at| running_until(at) + Duration::from_millis(s.api_latency.1) + EPSILON);
    let api_works =
        r.api_failed_at.is_none() && s.api_failure_at.is_none_or(|failure| answer.is_some_and(|a| a < failure));
    let could_read = !s.no_api && api_works && s.deletion.is_some() && answer.is_some_and(|a| a < killed);
    program_late || !(warned || could_read)
}

/// proa finishes within a bound computed from the options, and does not wait on a sidecar that the newest
/// snapshot shows terminated.
fn in_time(s: &Scenario, r: &Record, end: &Ending) -> Result<(), String> {
    let stopped = stopped_at(s, r).filter(|at| *at <= end.at);
    let decision = match (r.program_exit, r.spawn_failed) {
        (Some((at, _)), _) => Some(at),
        (None, true) => r.program_started,
        (None, false) => wait_ended(s, r, end),
    };
    let mut decision = decision.unwrap_or(end.at);
    // The stopper waits for its peers with no bound of its own.
    let policy_known = knew_the_pod(s, r, decision);
    if policy_known && s.is_stopper() && !s.peers.is_empty() {
        let peers_wait_ended = [peers_done_at(s, r), stopped].into_iter().flatten().min();
        decision = decision.max(peers_wait_ended.unwrap_or(end.at));
    }
    if policy_known && !s.is_stopper() && r.program_exit.is_some() && end.at > decision + EPSILON {
        return Err(format!("not the stopper, yet exited at {:?}, after its program at {decision:?}", end.at));
    }
    // The shutdown timeout proa could know: the flag, else the spec's grace once it read the Pod, else 30 s.
    // A Pod whose --peer was refused taught proa nothing: it never took in the first snapshot.
    let spec_grace = known_when_deciding(r, decision)
        .first()
        .filter(|_| !s.peers_refused())
        .map(|(_, pod, _)| pod.spec.termination_grace_period_seconds);
    let seconds = |g: Option<i64>| g.map(|g| Duration::from_secs(u64::try_from(g).unwrap_or(0)));
    let timeout = s
        .shutdown_timeout
        .or(spec_grace.and_then(seconds).filter(|_| !s.no_api))
        .unwrap_or(Duration::from_secs(30))
        .min(MAX_WAIT);
    let bound = decision + shutdown::budget(timeout).max(timeout) + shutdown::REPORT_SLACK + EPSILON;
    if end.at > bound {
        return Err(format!("exited at {:?}, past the bound {bound:?} after {decision:?}", end.at));
    }
    let last_report = r.reports.iter().copied().max().unwrap_or_default();
    if let Some(stop) = stopped {
        // Stopped by the kubelet: the actions are sent, but no sidecar is waited for, and proa is gone before
        // the grace period ends (less its margin), unless its program is not.
        let program_done = r.program_exit.map_or(stop, |(at, _)| at.max(stop));
        let by = hard_deadline(s, r, end.at).unwrap_or(stop);
        if end.at > by.max(program_done) + EPSILON {
            return Err(format!("stopped at {stop:?}: exited at {:?}, after {by:?}", end.at));
        }
        let actions_answered = r.reports.len() >= r.attempts.len();
        if actions_answered && end.at > program_done.max(last_report).max(decision) + EPSILON && end.at + EPSILON < by {
            return Err(format!("stopped at {stop:?}: waited until {:?} for more than the actions", end.at));
        }
    }
    // Once every action has reported and the newest snapshot shows every waited regular sidecar terminated,
    // nothing is left to wait for: proa exits then, not at a timeout.
    let idle_since = decision.max(last_report);
    let all_stopped = |pod: &Pod| {
        let waited = s.sidecars.iter().filter(|p| !s.ignore.contains(&p.name));
        waited.clone().all(|p| status(pod, &p.name, false).is_some_and(|st| st.state.terminated.is_some()))
    };
    let newest_then = delivered_before(r, idle_since).last().filter(|(_, pod, _)| all_stopped(pod)).map(|_| idle_since);
    let later = r.delivered.iter().find(|(at, pod, _)| *at > idle_since && all_stopped(pod)).map(|(at, _, _)| *at);
    // A mesh proxy that carried proa's API connections stopped for good, after its action was answered: a second of
    // refusals (each at most a second apart, each heard up to the API's latency late) ends the wait for the
    // sidecars, once the actions have all reported.
    if let Some(cut) = r.cut_off_at.filter(|_| !s.no_api && stopped.is_none()) {
        let latency = Duration::from_millis(s.api_latency.1);
        let retry_gap = Duration::from_secs(1) + latency;
        let bound = cut.max(last_report) + latency + CUT_OFF_AFTER + retry_gap + EPSILON;
        if end.at > bound {
            return Err(format!("the mesh proxy stopped at {cut:?}: proa waited until {:?}", end.at));
        }
    }
    if let Some(nothing_left) = newest_then.or(later).filter(|_| !s.no_api && stopped.is_none()) {
        if end.at > nothing_left + EPSILON {
            return Err(format!("nothing left to wait for at {nothing_left:?}, yet exited at {:?}", end.at));
        }
    }
    Ok(())
}

/// When the wait for the sidecars had to end without the program: the ready timeout, a dead sidecar, a failed
/// API, a stop or a gone Pod, whichever the owner learnt first.
fn wait_ended(s: &Scenario, r: &Record, end: &Ending) -> Option<Duration> {
    let dead = r.delivered.iter().find(|(_, pod, _)| shows_dead(s, pod).is_some()).map(|(at, _, _)| *at);
    let refused = r.delivered.first().filter(|_| s.peers_refused()).map(|(at, _, _)| *at);
    let failed = s.start_failure.as_ref().map(|_| Duration::ZERO);
    let causes = [s.ready_timeout, dead, r.api_failed_at, r.not_found_at, stopped_at(s, r), refused, failed];
    causes.into_iter().flatten().filter(|at| *at <= end.at).min()
}

fn timelines() -> (u64, u64) {
    let env = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("PROA_SIM_SEED") {
        return (seed, 1);
    }
    (env("PROA_SIM_BASE").unwrap_or(0x5EED_0000), env("PROA_SIM_TIMELINES").unwrap_or(DEFAULT_TIMELINES))
}

#[test]
fn simulation_keeps_the_promise_on_every_timeline() {
    let (base, count) = timelines();
    let started = std::time::Instant::now();
    let mut recognised = 0;
    for seed in base..base + count {
        match run(seed) {
            Ok(sent) => recognised += sent,
            Err(report) => panic!("{report}"),
        }
    }
    // Recognised sidecars are reached, not only generated.
    assert!(count < 1000 || recognised * 100 >= count as usize, "{recognised} recognised POSTs in {count} timelines");
    eprintln!("simulation: {count} timelines from seed {base} kept the promise in {:.1?}", started.elapsed());
}

#[test]
fn the_generator_covers_the_faults_it_is_for() {
    // Over the default run, every kind of fault occurs many times: a simulation that never reaches them tests
    // nothing.
    let mut seen = [0u32; 19];
    for seed in 0x5EED_0000..0x5EED_0000 + 2000 {
        let s = Scenario::generate(seed);
        let counts = [
            s.grace == Some(0),
            s.grace == Some(i64::MAX),
            s.shutdown_timeout == Some(Duration::ZERO),
            s.deletion.as_ref().is_some_and(|d| d.forced && d.replacement_after.is_some()),
            s.deletion.as_ref().is_some_and(|d| !d.forced),
            s.entrypoint_form
                && s.program_args == ["--verbose"]
                && s.sidecars.iter().any(|p| p.args.ends_with(&["--verbose".to_string()])),
            s.own_policy.is_some() || s.sidecars.iter().any(|p| p.policy.is_some()),
            s.actions.iter().any(|a| a.endpoint == scenario::Endpoint::Redirects),
            s.stragglers && s.ready_timeout.is_some() && s.run_on_ready_timeout,
            s.peers_refused(),
            s.peers.iter().any(|p| p.fails_first) || s.peers.iter().any(|p| p.exits_at.is_none()),
            s.sidecar_role.as_ref().is_some_and(|role| role.quit_at.is_some() && role.sigterm_at.is_some()),
            s.sidecar_role.as_ref().is_some_and(|role| role.quit_at.is_some() && role.signal == libc::SIGKILL),
            s.start_failure.is_some() && !s.actions.is_empty(),
            s.kill_action.is_some(),
            (0..s.sidecars.len()).any(|i| s.recognises(i)),
            s.natives.iter().any(|p| p.name == scenario::ISTIO_PROXY),
            // A stray stop signal (no deletion behind it) that the program survives, maybe past its grace.
            s.signals.iter().any(|(_, signal)| crate::signals::is_stop_request(*signal))
                && !matches!(s.program.on_stop, scenario::OnStop::Dies(_)),
            // A mesh Pod whose recognised proxy carries proa's API connections.
            s.mesh && (0..s.sidecars.len()).any(|i| s.recognises(i)),
        ];
        for (count, hit) in seen.iter_mut().zip(counts) {
            *count += u32::from(hit);
        }
    }
    assert!(seen.iter().all(|&n| n >= 20), "fault kinds seen: {seen:?}");
}

#[test]
fn direct_probe_timelines_reach_what_they_are_for() {
    // Over 2,000 timelines: programs started on a pass before the API's Ready, passes that stopped counting
    // (the container ended or restarted first), passes of a stopped prober, and probes that never pass.
    let mut seen = [0u32; 4];
    for seed in 0x5EED_0000..0x5EED_0000 + 2000 {
        let scenario = Scenario::generate(seed);
        let config = config(&scenario);
        let mut sim = Sim::new(&scenario);
        super::drive(&config, &mut sim);
        let r = &sim.record;
        let newest = r.program_started.and_then(|_| r.delivered[..r.snapshots_before_start].last());
        let before_api = newest.is_some_and(|(_, pod, _)| {
            let all = pod.status.container_statuses.iter().chain(&pod.status.init_container_statuses);
            all.filter(|st| waited_truth(&scenario).iter().any(|(name, _)| *name == st.name)).any(|st| !st.ready)
        });
        let restarted_after_pass = r.passes.iter().any(|(at, name, run)| {
            r.delivered.iter().any(|(seen, pod, _)| {
                let ended = |st: &crate::pod::ContainerStatus| st.state.terminated.is_some() || st.restart_count > *run;
                seen > at && pod.status.container_statuses.iter().any(|st| st.name == *name && ended(st))
            })
        });
        let stopped_pass = r.trace.iter().any(|line| line.contains("passes, after its stop"));
        let hangs = scenario.sidecars.iter().any(|p| p.probe.as_ref().is_some_and(|p| p.serves_after.is_none()));
        for (count, hit) in seen.iter_mut().zip([before_api, restarted_after_pass, stopped_pass, hangs]) {
            *count += u32::from(hit);
        }
    }
    assert!(seen.iter().all(|&n| n >= 20), "direct-probe timelines seen: {seen:?}");
}
