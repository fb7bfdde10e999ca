//! The simulated world the real owner loop runs against: a virtual clock and one queue of timed happenings. The
//! kubelet starts, crashes, restarts and stops containers; the API server delivers snapshots late, fails, or shows a
//! deletion or a replacement Pod; the program exits or reacts to forwarded signals; shutdown endpoints answer, are
//! refused, hang or redirect. Everything the owner was told or did is recorded for the invariants.

use std::time::{Duration, Instant};

use crate::api::ApiError;
use crate::child::{Exit, SpawnError};
use crate::direct::{Endpoint as DirectEndpoint, Order};
use crate::pod::{Container, ContainerStatus, Pod};
use crate::probe::{Goal, Update as ProbeUpdate};
use crate::shutdown::{self, Action, ActionError, Done, Outcome, Target};
use crate::watch::Update;

use super::super::machine::Event;
use super::super::world::{Until, World};
use super::scenario::{Endpoint, OnStop, Rng, Scenario};

pub const FIRST_UID: &str = "uid-1";
/// `--probe-interval` in the simulated world.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
const EPSILON: Duration = Duration::from_millis(1);
const RUNAWAY_STEPS: usize = 50_000;

/// Which sidecar container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Regular(usize),
    Native(usize),
}

#[derive(Debug)]
enum Happening {
    /// A container with a readinessProbe runs, not ready yet (its first run).
    Runs(Which),
    Ready(Which),
    Crash(Which, i32),
    Restart(Which),
    /// A regular sidecar exits 0 after its shutdown action.
    Stops(usize),
    /// A peer main container ends.
    PeerExits(usize),
    /// A peer that failed is restarted by the kubelet (OnFailure).
    PeerRestarts(usize),
    Deletion,
    Replacement,
    Sigterm,
    Kill,
    Signal(i32),
    ApiFailure,
    Deliver(u64, Update),
    ProgramExit(u8),
    Outcome(Outcome),
    Probe(u64, ProbeUpdate),
    /// The next attempt of the direct prober with this id.
    Attempt(u64),
    /// The main container's proa asks this sidecar's proa to quit (`--serve-quit`).
    Quit,
    /// The watcher of this generation, cut off from the API server by a stopped mesh proxy, tries again.
    Refused(u64),
}

/// What the owner was told and did, with the virtual time of each.
#[derive(Debug, Default)]
pub struct Record {
    /// Snapshots the owner received, and whether each came with a DELETED event.
    pub delivered: Vec<(Duration, Pod, bool)>,
    pub api_failed_at: Option<Duration>,
    /// When the owner heard that the Pod is not there any more (404).
    pub not_found_at: Option<Duration>,
    /// The stop signals the owner received.
    pub stops: Vec<(Duration, i32)>,
    pub program_started: Option<Duration>,
    /// How many snapshots the owner had received when it started the program (others may come at the same instant).
    pub snapshots_before_start: usize,
    pub spawn_failed: bool,
    /// The reasons written to the termination log.
    pub termination_log: Vec<String>,
    pub program_exit: Option<(Duration, u8)>,
    /// When the owner ordered the shutdown actions.
    pub shutdown_ordered: Option<Duration>,
    /// How many snapshots the owner had received when it ordered them (a straggler may come at the same instant).
    pub snapshots_before_shutdown: usize,
    /// When each action sent reached the network, by its number.
    pub attempts: Vec<(usize, Duration)>,
    /// When each recognised sidecar's POST reached the network, by container name.
    pub recognised: Vec<(String, Duration)>,
    /// When the mesh proxy carrying proa's API connections stopped for good (`Scenario::mesh`).
    pub cut_off_at: Option<Duration>,
    /// When each guessed POST (the Pod unread) was sent, by the container it guesses at.
    pub guessed: Vec<(String, Duration)>,
    /// When each action's outcome reached the owner.
    pub reports: Vec<Duration>,
    pub endpoints_reached_ready: Option<Duration>,
    /// When a quit request reached the owner before any stop signal (`--serve-quit`).
    pub quit_first: Option<Duration>,
    /// When the kubelet's SIGKILL came, had proa not exited by then.
    pub killed_at: Option<Duration>,
    /// The owner waited with nothing that could ever wake it.
    pub hang: bool,
    /// The passes of direct probes the owner was told of: when, which container, the run the prober was for.
    pub passes: Vec<(Duration, String, i64)>,
    /// Direct probes ordered against the contract: of a container proa must leave to the API, at a wrong
    /// endpoint, or before the initial delay.
    pub wrong_probes: Vec<String>,
    /// What happened, in order, for a failure report.
    pub trace: Vec<String>,
}

/// A direct prober the owner started.
struct Prober {
    id: u64,
    order: Order,
    attempts: u32,
    in_a_row: u32,
    /// Stopped while an attempt was out: that attempt may still report (a real prober checks its stop flag only
    /// before an attempt).
    stopped: bool,
}

struct Watcher {
    generation: u64,
    until: Until,
    done: bool,
    last_delivery: Duration,
}

pub struct Sim<'a> {
    pub scenario: &'a Scenario,
    t0: Instant,
    pub now: Duration,
    queue: Vec<(Duration, u64, Happening)>,
    sequence: u64,
    rng: Rng,
    pod: Pod,
    /// The API object is gone (a forced deletion) and no replacement exists yet.
    deleted: bool,
    /// The kubelet is stopping the Pod: it reports no container status before all are stopped.
    frozen: bool,
    version: u64,
    history: Vec<(u64, Pod, bool)>,
    watcher: Option<Watcher>,
    /// A watcher just stopped whose next delivery was already on its way to the owner (a real watcher thread may
    /// report one snapshot in the instant before it sees its stop flag): its generation.
    straggler: Option<u64>,
    generation: u64,
    probing: Option<(u64, Goal)>,
    endpoints_gone_at: Option<Duration>,
    api_broken: bool,
    /// The mesh proxy that carries proa's connections to the API server has stopped (`Scenario::mesh`).
    cut_off: bool,
    program_running: bool,
    /// The peers that have failed once already (`PeerPlan::fails_first`).
    peers_failed: Vec<bool>,
    /// When each run of each sidecar began: (container, restart count, start).
    runs: Vec<(String, i64, Duration)>,
    probers: Vec<Prober>,
    pub record: Record,
    steps: usize,
}

impl<'a> Sim<'a> {
    pub fn new(scenario: &'a Scenario) -> Sim<'a> {
        let mut sim = Sim {
            scenario,
            t0: Instant::now(),
            now: Duration::ZERO,
            queue: Vec::new(),
            sequence: 0,
            rng: Rng::new(scenario.seed ^ 0xA5A5_5A5A),
            pod: initial_pod(scenario),
            deleted: false,
            frozen: false,
            version: 1,
            history: Vec::new(),
            watcher: None,
            straggler: None,
            generation: 0,
            probing: None,
            endpoints_gone_at: None,
            api_broken: false,
            cut_off: false,
            program_running: false,
            peers_failed: vec![false; scenario.peers.len()],
            runs: Vec::new(),
            probers: Vec::new(),
            record: Record::default(),
            steps: 0,
        };
        let plans = scenario.sidecars.iter().enumerate().map(|(i, p)| (Which::Regular(i), p));
        let natives = scenario.natives.iter().enumerate().map(|(i, p)| (Which::Native(i), p));
        for (which, plan) in plans.chain(natives) {
            if let Some(probe) = &plan.probe {
                sim.at(plan.ready_at.saturating_sub(probe.lead), Happening::Runs(which));
            }
            sim.at(plan.ready_at, Happening::Ready(which));
            if let Some((at, code)) = plan.crash {
                sim.at(at, Happening::Crash(which, code));
            }
        }
        if let Some(deletion) = &scenario.deletion {
            sim.at(deletion.at, Happening::Deletion);
        }
        for &(at, signal) in &scenario.signals {
            sim.at(at, Happening::Signal(signal));
        }
        if let Some(role) = &scenario.sidecar_role {
            if let Some(at) = role.quit_at {
                sim.at(at, Happening::Quit);
            }
            if let Some(at) = role.sigterm_at {
                sim.at(at, Happening::Sigterm);
            }
        }
        if let Some(at) = scenario.api_failure_at {
            sim.at(at, Happening::ApiFailure);
        }
        for (i, peer) in scenario.peers.iter().enumerate() {
            if let Some(at) = peer.exits_at {
                sim.at(at, Happening::PeerExits(i));
            }
        }
        sim
    }

    fn at(&mut self, when: Duration, happening: Happening) {
        self.sequence += 1;
        self.queue.push((when, self.sequence, happening));
    }

    fn after(&mut self, delay: Duration, happening: Happening) {
        self.at(self.now + delay, happening);
    }

    fn latency(&mut self) -> Duration {
        let (low, high) = self.scenario.api_latency;
        self.rng.millis(low, high)
    }

    fn trace(&mut self, what: impl Into<String>) {
        let line = format!("{:>10.3}s {}", self.now.as_secs_f64(), what.into());
        self.record.trace.push(line);
    }

    fn plan(&self, which: Which) -> &'a super::scenario::SidecarPlan {
        match which {
            Which::Regular(i) => &self.scenario.sidecars[i],
            Which::Native(i) => &self.scenario.natives[i],
        }
    }

    /// The status list `which` is in.
    fn statuses_mut(&mut self, which: Which) -> &mut Vec<ContainerStatus> {
        match which {
            Which::Regular(_) => &mut self.pod.status.container_statuses,
            Which::Native(_) => &mut self.pod.status.init_container_statuses,
        }
    }

    /// Changes the Pod's status as the kubelet reports it (not while it stops the Pod), and tells the watcher.
    fn set_status(&mut self, which: Which, ready: bool, state: &str, code: i32) {
        if self.frozen || self.deleted {
            return;
        }
        let name = self.plan(which).name.clone();
        if state == "running" && !self.runs.iter().any(|(n, _, _)| *n == name) {
            self.runs.push((name.clone(), 0, self.now));
        }
        let statuses = self.statuses_mut(which);
        let status = match statuses.iter_mut().find(|s| s.name == name) {
            Some(status) => status,
            None => {
                statuses.push(ContainerStatus { name: name.clone(), ..ContainerStatus::default() });
                statuses.last_mut().expect("just pushed")
            }
        };
        status.ready = ready;
        status.state = match state {
            "running" => serde_json::from_str(r#"{"running":{}}"#),
            _ => serde_json::from_str(&format!(r#"{{"terminated":{{"exitCode":{code},"reason":"Error"}}}}"#)),
        }
        .expect("a valid state");
        self.trace(format!("{name}: {state} (ready {ready}, code {code})"));
        self.publish(false);
    }

    /// A new resourceVersion of the Pod, sent to the watcher if one is open.
    fn publish(&mut self, deleted: bool) {
        self.version += 1;
        self.pod.metadata.resource_version = Some(self.version.to_string());
        self.history.push((self.version, self.pod.clone(), deleted));
        let update = match deleted {
            true => Update::PodDeleted(Box::new(self.pod.clone())),
            false => Update::PodChanged(Box::new(self.pod.clone())),
        };
        self.send_to_watcher(update);
    }

    fn send_to_watcher(&mut self, update: Update) {
        // Cut off, a watcher hears nothing from the API server: its attempts are refused (`Happening::Refused`).
        if self.cut_off && !matches!(update, Update::Retrying { .. }) {
            return;
        }
        let latency = self.latency();
        let Some(watcher) = self.watcher.as_mut().filter(|w| !w.done) else { return };
        // A watch delivers in order.
        let when = (self.now + latency).max(watcher.last_delivery);
        watcher.last_delivery = when;
        let generation = watcher.generation;
        self.at(when, Happening::Deliver(generation, update));
    }

    fn restarts(&self, which: Which, code: i32) -> bool {
        match which {
            Which::Native(_) => true,
            Which::Regular(i) => self.scenario.restarts(self.scenario.sidecars[i].policy, code),
        }
    }

    /// Carries out one happening; returns the event the owner gets from it, if any.
    fn happen(&mut self, happening: Happening) -> Option<Event> {
        match happening {
            Happening::Runs(which) => self.set_status(which, false, "running", 0),
            Happening::Ready(which) => self.set_status(which, true, "running", 0),
            Happening::Attempt(id) => return self.attempt(id),
            Happening::Crash(which, code) => {
                self.set_status(which, false, "terminated", code);
                if self.restarts(which, code) {
                    let takes = self.plan(which).restart_takes;
                    self.after(takes, Happening::Restart(which));
                }
            }
            Happening::Restart(which) => {
                if self.carries_the_api(which) {
                    self.trace("the mesh proxy runs again: proa reaches the API server");
                    self.cut_off = false;
                }
                self.new_run(which);
                self.set_status(which, false, "running", 0);
                let takes = self.plan(which).restart_takes;
                self.after(takes, Happening::Ready(which));
            }
            Happening::Stops(i) => {
                if self.carries_the_api(Which::Regular(i)) {
                    self.trace("the mesh proxy stops: proa's connections to the API server are refused");
                    self.cut_off = true;
                    if !self.restarts(Which::Regular(i), 0) {
                        self.record.cut_off_at.get_or_insert(self.now);
                    }
                    if let Some(watcher) = self.watcher.as_ref().filter(|w| !w.done) {
                        self.after(Duration::ZERO, Happening::Refused(watcher.generation));
                    }
                }
                self.set_status(Which::Regular(i), false, "terminated", 0);
                if self.restarts(Which::Regular(i), 0) {
                    let takes = self.scenario.sidecars[i].restart_takes;
                    self.after(takes, Happening::Restart(Which::Regular(i)));
                }
            }
            Happening::PeerExits(i) => {
                let peer = &self.scenario.peers[i];
                if self.frozen || self.deleted {
                    return None;
                }
                let fails = peer.fails_first && !self.peers_failed[i];
                let code = if fails { 1 } else { peer.exit_code };
                if fails {
                    self.peers_failed[i] = true;
                    let takes = self.rng.millis(10, 3000);
                    self.after(takes, Happening::PeerRestarts(i));
                }
                let state = format!(r#"{{"terminated":{{"exitCode":{code},"reason":"Completed"}}}}"#);
                let status = self.pod.status.container_statuses.iter_mut().find(|s| s.name == peer.name);
                if let Some(status) = status {
                    status.state = serde_json::from_str(&state).expect("a valid state");
                    status.ready = false;
                }
                self.trace(format!("peer {} exits {code}", peer.name));
                self.publish(false);
            }
            Happening::PeerRestarts(i) => {
                if self.frozen || self.deleted {
                    return None;
                }
                let name = self.scenario.peers[i].name.clone();
                if let Some(status) = self.pod.status.container_statuses.iter_mut().find(|s| s.name == name) {
                    status.state = serde_json::from_str(r#"{"running":{}}"#).expect("a valid state");
                }
                self.trace(format!("peer {name} restarted"));
                self.publish(false);
                let runs = self.rng.millis(0, 10_000);
                self.after(runs, Happening::PeerExits(i));
            }
            Happening::Deletion => self.delete(),
            Happening::Replacement => {
                self.trace("a replacement Pod of the same name appears, every container ready");
                self.deleted = false;
                self.frozen = false;
                self.pod = replacement_pod(self.scenario);
                self.publish(false);
            }
            Happening::Sigterm => {
                self.trace("the kubelet sends SIGTERM");
                self.record.stops.push((self.now, libc::SIGTERM));
                return Some(Event::Signal(libc::SIGTERM));
            }
            Happening::Kill => {
                self.trace("the kubelet sends SIGKILL: proa is killed");
                self.record.killed_at = Some(self.now);
            }
            Happening::Signal(signal) => {
                self.trace(format!("signal {signal} to proa"));
                if crate::signals::is_stop_request(signal) {
                    self.record.stops.push((self.now, signal));
                }
                return Some(Event::Signal(signal));
            }
            Happening::ApiFailure => {
                self.trace("the API server starts refusing (403)");
                self.api_broken = true;
                self.send_to_watcher(Update::Failed(forbidden()));
            }
            Happening::Deliver(generation, update) => return self.deliver(generation, update),
            Happening::Refused(generation) => {
                let open = self.watcher.as_ref().is_some_and(|w| w.generation == generation && !w.done);
                if self.cut_off && open {
                    let line = "request to the API server failed: connection refused; retrying".to_string();
                    self.send_to_watcher(Update::Retrying { line, unreachable: true, repeat: false });
                    let pause = self.rng.millis(100, 1000);
                    self.after(pause, Happening::Refused(generation));
                }
            }
            Happening::Quit => {
                self.trace("a quit request");
                if self.record.stops.is_empty() {
                    self.record.quit_first.get_or_insert(self.now);
                }
                return Some(Event::Quit);
            }
            Happening::ProgramExit(code) => {
                if !self.program_running {
                    return None;
                }
                self.program_running = false;
                self.trace(format!("the program exits {code}"));
                self.record.program_exit = Some((self.now, code));
                return Some(Event::Child(Exit::Exited { code }));
            }
            Happening::Outcome(outcome) => {
                self.trace(format!("shutdown {}: {:?}", outcome.action, outcome.result));
                self.record.reports.push(self.now);
                return Some(Event::Shutdown(outcome));
            }
            Happening::Probe(generation, update) => {
                if self.probing.is_none_or(|(current, _)| current != generation) {
                    return None;
                }
                self.trace(format!("prober: {update:?}"));
                if update == ProbeUpdate::Reached(Goal::Ready) {
                    self.record.endpoints_reached_ready = Some(self.now);
                }
                self.probing = None;
                return Some(Event::Probe(update));
            }
        }
        None
    }

    fn delete(&mut self) {
        let deletion = self.scenario.deletion.clone().expect("scheduled only with a deletion");
        let grace = deletion.grace_override.or(self.scenario.grace).unwrap_or(30);
        self.pod.metadata.deletion_timestamp = Some("2026-11-30T10:00:00Z".into());
        self.pod.metadata.deletion_grace_period_seconds = Some(grace);
        match deletion.forced {
            true => {
                self.trace("the Pod is force-deleted");
                match deletion.deleted_event_lost && deletion.replacement_after.is_some() {
                    true => self.trace("the watch misses the DELETED event"),
                    false => self.publish(true),
                }
                self.deleted = true;
                if let Some(after) = deletion.replacement_after {
                    self.after(after, Happening::Replacement);
                }
            }
            false => {
                self.trace(format!("the Pod is deleted with a grace of {grace}s"));
                self.publish(false);
            }
        }
        self.frozen = true;
        // The kubelet notices after a lag, runs the preStop hook (within the grace), then sends SIGTERM; it kills at
        // the end of the grace, counted from when it noticed, hook included, but never sooner than 2 s after the
        // SIGTERM.
        let grace = self.scenario.kubelet_grace().min(super::super::stop::MAX_WAIT);
        let sigterm = deletion.sigterm_lag + deletion.prestop.min(grace);
        self.after(sigterm, Happening::Sigterm);
        self.after((deletion.sigterm_lag + grace).max(sigterm + Duration::from_secs(2)), Happening::Kill);
    }

    /// The Pod as proa's watcher hands it over: with the time left until its deletion's deadline, by the clock.
    fn received(&self, mut pod: Pod) -> Pod {
        let deadline = self
            .scenario
            .deletion
            .as_ref()
            .map(|d| d.at + self.scenario.deletion_grace().min(super::super::stop::MAX_WAIT));
        if pod.metadata.deletion_timestamp.is_some() && pod.metadata.uid.as_deref() == Some(FIRST_UID) {
            pod.metadata.deletion_in = deadline.map(|deadline| deadline.saturating_sub(self.now));
        }
        // The watcher dates each run from its startedAt, where the kubelet gives a readable one.
        let statuses = pod.status.container_statuses.iter_mut().chain(pod.status.init_container_statuses.iter_mut());
        for status in statuses {
            let dated =
                self.which_of(&status.name).and_then(|w| self.plan(w).probe.as_ref()).is_none_or(|p| !p.undated);
            let start = self.run_start(&status.name, status.restart_count).filter(|_| dated);
            if let Some(running) = status.state.running.as_mut() {
                running.running_for = start.map(|start| self.wall(self.now).saturating_sub(whole(self.wall(start))));
            }
        }
        pod
    }

    /// The wall clock at virtual time `at`: the timeline starts some way into a second (drawn from the seed), so
    /// that `startedAt`, which the API gives in whole seconds, is cut down by up to a second, as in a real Pod.
    fn wall(&self, at: Duration) -> Duration {
        at + Duration::from_millis(self.scenario.seed % 1000)
    }

    /// Whether this container is the mesh proxy proa's API connections go through (`Scenario::mesh`).
    fn carries_the_api(&self, which: Which) -> bool {
        let Which::Regular(i) = which else { return false };
        self.scenario.mesh && self.scenario.sidecars[i].name == super::scenario::ISTIO_PROXY
    }

    fn which_of(&self, name: &str) -> Option<Which> {
        let regular = self.scenario.sidecars.iter().position(|p| p.name == name).map(Which::Regular);
        regular.or_else(|| self.scenario.natives.iter().position(|p| p.name == name).map(Which::Native))
    }

    fn run_start(&self, name: &str, restart_count: i64) -> Option<Duration> {
        self.runs.iter().find(|(n, run, _)| n == name && *run == restart_count).map(|(_, _, start)| *start)
    }

    /// The kubelet restarts a container: its restart count goes up and a new run begins.
    fn new_run(&mut self, which: Which) {
        if self.frozen || self.deleted {
            return;
        }
        let name = self.plan(which).name.clone();
        if let Some(status) = self.statuses_mut(which).iter_mut().find(|s| s.name == name) {
            status.restart_count += 1;
            let run = status.restart_count;
            self.runs.push((name, run, self.now));
        }
    }

    /// The port a sidecar's readinessProbe names (by number, or by a name its `ports` resolve).
    fn probe_port(which: Which) -> u16 {
        match which {
            Which::Regular(i) => 8000 + i as u16,
            Which::Native(i) => 8100 + i as u16,
        }
    }

    /// Whether a sidecar's readiness endpoint answers now: it runs, and its run has gone on long enough.
    fn serves(&self, which: Which) -> bool {
        let plan = self.plan(which);
        let Some(after) = plan.probe.as_ref().and_then(|p| p.serves_after) else { return false };
        let status = match which {
            Which::Regular(_) => &self.pod.status.container_statuses,
            Which::Native(_) => &self.pod.status.init_container_statuses,
        }
        .iter()
        .find(|s| s.name == plan.name);
        let Some(status) = status.filter(|s| s.state.running.is_some() && s.state.terminated.is_none()) else {
            return false;
        };
        self.run_start(&plan.name, status.restart_count).is_some_and(|start| self.now >= start + after)
    }

    /// One attempt of a direct prober: the owner hears of a pass once `successThreshold` came in a row.
    fn attempt(&mut self, id: u64) -> Option<Event> {
        let i = self.probers.iter().position(|p| p.id == id)?;
        let which = self.which_of(&self.probers[i].order.container).expect("probers only of sidecars");
        let plan = self.plan(which).probe.clone().expect("probers only of probed sidecars");
        let serving = self.serves(which);
        let prober = &mut self.probers[i];
        let run_start = self.runs.iter().rev().find(|(n, _, _)| *n == prober.order.container).map(|r| r.2);
        let first_answer = run_start.zip(plan.serves_after).map(|(start, after)| start + after);
        let flapping = first_answer.is_some_and(|at| self.now < at + plan.flaps_for) && prober.attempts % 2 == 1;
        prober.attempts += 1;
        prober.in_a_row = if serving && !flapping { prober.in_a_row + 1 } else { 0 };
        if prober.in_a_row >= prober.order.successes {
            let prober = self.probers.swap_remove(i);
            let (container, run) = (prober.order.container, prober.order.restart_count);
            self.trace(format!(
                "direct probe of {container} (run {run}) passes{}",
                if prober.stopped { ", after its stop" } else { "" }
            ));
            self.record.passes.push((self.now, container.clone(), run));
            return Some(Event::Probed { container, restart_count: run });
        }
        if prober.stopped {
            self.probers.swap_remove(i);
            return None;
        }
        // A hung endpoint holds each attempt to its timeout.
        let next = if plan.serves_after.is_none() { prober.order.timeout } else { PROBE_INTERVAL };
        self.after(next, Happening::Attempt(id));
        None
    }

    fn deliver(&mut self, generation: u64, update: Update) -> Option<Event> {
        let update = match update {
            Update::PodChanged(pod) => Update::PodChanged(Box::new(self.received(*pod))),
            Update::PodDeleted(pod) => Update::PodDeleted(Box::new(self.received(*pod))),
            failed => failed,
        };
        if self.straggler == Some(generation) {
            self.straggler = None;
            self.trace("a straggler from the stopped watcher:");
        } else {
            let watcher = self.watcher.as_mut().filter(|w| w.generation == generation && !w.done)?;
            watcher.done = match &update {
                Update::PodChanged(pod) => (watcher.until)(pod, false),
                Update::PodDeleted(pod) => (watcher.until)(pod, true),
                Update::Failed(_) => true,
                Update::Retrying { .. } | Update::Reached => false,
            };
        }
        match &update {
            Update::PodChanged(pod) => self.record.delivered.push((self.now, (**pod).clone(), false)),
            Update::PodDeleted(pod) => self.record.delivered.push((self.now, (**pod).clone(), true)),
            Update::Failed(ApiError::PodNotFound { .. }) => _ = self.record.not_found_at.get_or_insert(self.now),
            Update::Failed(_) => _ = self.record.api_failed_at.get_or_insert(self.now),
            Update::Retrying { .. } | Update::Reached => {}
        }
        self.trace(format!("watch delivers {}", describe(&update)));
        Some(Event::Watch(update))
    }

    fn earliest(&self) -> Option<usize> {
        (0..self.queue.len()).min_by_key(|&i| (self.queue[i].0, self.queue[i].1))
    }
}

impl World for Sim<'_> {
    fn now(&self) -> Instant {
        self.t0 + self.now
    }

    fn next_event(&mut self, deadline: Option<Instant>) -> Option<Event> {
        let deadline = deadline.map(|d| d.saturating_duration_since(self.t0));
        loop {
            self.steps += 1;
            assert!(self.steps < RUNAWAY_STEPS, "runaway: more than {RUNAWAY_STEPS} steps");
            if self.record.killed_at.is_some() {
                return None;
            }
            let next = self.earliest();
            let next_at = next.map(|i| self.queue[i].0);
            match (next, deadline) {
                (_, Some(deadline)) if next_at.is_none_or(|at| at > deadline) => {
                    self.now = self.now.max(deadline);
                    return Some(Event::DeadlinePassed);
                }
                (None, _) => {
                    self.trace("the owner waits with nothing that could wake it");
                    self.record.hang = true;
                    return None;
                }
                (Some(i), _) => {
                    let (at, _, happening) = self.queue.swap_remove(i);
                    self.now = self.now.max(at);
                    if let Some(event) = self.happen(happening) {
                        return Some(event);
                    }
                }
            }
        }
    }

    fn watch(&mut self, from: Option<String>, until: Until) {
        self.generation += 1;
        let generation = self.generation;
        self.trace(format!("watch from {from:?}"));
        self.watcher = Some(Watcher { generation, until, done: false, last_delivery: self.now });
        if self.cut_off {
            return self.after(Duration::ZERO, Happening::Refused(generation));
        }
        if self.api_broken {
            return self.send_to_watcher(Update::Failed(forbidden()));
        }
        match from.and_then(|v| v.parse::<u64>().ok()) {
            None if self.deleted => self.send_to_watcher(Update::Failed(ApiError::PodNotFound {
                namespace: "jobs".into(),
                pod: "job-abc".into(),
            })),
            None => self.send_to_watcher(Update::PodChanged(Box::new(self.pod.clone()))),
            Some(version) => {
                let missed: Vec<(Pod, bool)> =
                    self.history.iter().filter(|(v, _, _)| *v > version).map(|(_, p, d)| (p.clone(), *d)).collect();
                for (pod, deleted) in missed {
                    let update = match deleted {
                        true => Update::PodDeleted(Box::new(pod)),
                        false => Update::PodChanged(Box::new(pod)),
                    };
                    self.send_to_watcher(update);
                }
            }
        }
    }

    fn stop_watch(&mut self) {
        let Some(watcher) = self.watcher.take().filter(|w| !w.done) else { return };
        if !self.scenario.stragglers {
            return;
        }
        // Its next delivery was already read off the stream: it reaches the owner now, after the stop.
        let generation = watcher.generation;
        let next = self.queue.iter_mut().filter(|(_, _, h)| matches!(h, Happening::Deliver(g, _) if *g == generation));
        if let Some(entry) = next.min_by_key(|(at, sequence, _)| (*at, *sequence)) {
            entry.0 = self.now;
            self.straggler = Some(generation);
        }
    }

    fn probe(&mut self, goal: Goal) {
        self.generation += 1;
        self.probing = Some((self.generation, goal));
        let interval = self.rng.millis(0, 250);
        let when = match goal {
            Goal::Ready => Some(self.scenario.endpoints_ready_at.max(self.now) + interval),
            Goal::Gone => self.endpoints_gone_at.map(|gone| gone.max(self.now) + interval),
        };
        if let Some(when) = when {
            self.at(when, Happening::Probe(self.generation, ProbeUpdate::Reached(goal)));
        }
    }

    fn stop_probe(&mut self) {
        self.probing = None;
    }

    fn direct_probe(&mut self, order: Order) {
        self.trace(format!(
            "direct probe of {} (run {}) after {:?}",
            order.container, order.restart_count, order.delay
        ));
        self.stop_direct_probe(Some(&order.container));
        let which = self.which_of(&order.container);
        let plan = which.and_then(|w| self.plan(w).probe.clone());
        let Some((which, plan)) = which.zip(plan).filter(|_| self.scenario.direct_probe) else {
            let why = format!("probed {}, which proa must leave to the API", order.container);
            return self.record.wrong_probes.push(why);
        };
        let url = format!("http://127.0.0.1:{}/ready", Self::probe_port(which));
        if order.endpoint != (DirectEndpoint::Http { url, headers: vec![] }) || order.successes != plan.successes {
            self.record.wrong_probes.push(format!("probed {} at {order:?}", order.container));
        }
        let start = self.run_start(&order.container, order.restart_count);
        if start.is_some_and(|start| self.now + order.delay + EPSILON < start + plan.initial_delay) {
            self.record.wrong_probes.push(format!("probed {} before its initial delay", order.container));
        }
        self.sequence += 1;
        let id = self.sequence;
        self.after(order.delay, Happening::Attempt(id));
        self.probers.push(Prober { id, order, attempts: 0, in_a_row: 0, stopped: false });
    }

    fn stop_direct_probe(&mut self, container: Option<&str>) {
        let stragglers = self.scenario.stragglers;
        self.probers.retain_mut(|p| {
            let stopping = container.is_none_or(|c| c == p.order.container);
            p.stopped |= stopping;
            !stopping || stragglers
        });
    }

    fn start_program(&mut self) -> Result<(), SpawnError> {
        self.record.program_started = Some(self.now);
        self.record.snapshots_before_start = self.record.delivered.len();
        if self.scenario.program.spawn_fails {
            self.record.spawn_failed = true;
            if self.scenario.program.fork_fails {
                self.trace("the program cannot be started (fork: EAGAIN)");
                let err = std::io::Error::from_raw_os_error(libc::EAGAIN);
                return Err(SpawnError::Failed { program: "prog".into(), err });
            }
            self.trace("the program cannot be started (not found)");
            return Err(SpawnError::NotFound { program: "prog".into() });
        }
        self.trace("the program starts");
        self.program_running = true;
        let plan = &self.scenario.program;
        self.after(plan.runs_for, Happening::ProgramExit(plan.exit_code));
        Ok(())
    }

    fn forward(&mut self, signal: i32) {
        self.trace(format!("proa forwards signal {signal}"));
        if self.program_running && signal == libc::SIGKILL {
            return self.after(Duration::ZERO, Happening::ProgramExit(crate::exit::signal_code(signal)));
        }
        if !self.program_running || !crate::signals::is_stop_request(signal) {
            return;
        }
        match self.scenario.program.on_stop {
            OnStop::Dies(after) => self.after(after, Happening::ProgramExit(crate::exit::signal_code(signal))),
            OnStop::Traps(after, code) => self.after(after, Happening::ProgramExit(code)),
            OnStop::Ignores => {}
        }
    }

    fn start_shutdown(&mut self, budget: Duration, chosen: &[usize], recognised: &[Target], guessed: &[Target]) {
        self.trace(format!("proa sends the shutdown actions {chosen:?} and {recognised:?} (budget {budget:?})"));
        if self.record.shutdown_ordered.is_none() {
            self.record.snapshots_before_shutdown = self.record.delivered.len();
        }
        self.record.shutdown_ordered = Some(self.now);
        let slow = budget.min(shutdown::ATTEMPT_TIMEOUT);
        for (i, plan) in self.scenario.actions.clone().into_iter().enumerate().filter(|(i, _)| chosen.contains(i)) {
            let attempt = self.now + plan.attempt_after;
            self.record.attempts.push((i, attempt));
            let url = "http://127.0.0.1:15020/quitquitquit".to_string();
            let action = Action::Post(Target { url, container: plan.container.clone() });
            let (after, result) = match plan.endpoint {
                Endpoint::Answers(takes) if takes <= slow => (plan.attempt_after + takes, Ok(Done::Answered(200))),
                Endpoint::Redirects => {
                    let location = "https://elsewhere/".to_string();
                    (plan.attempt_after, Ok(Done::Redirected { status: 302, location }))
                }
                Endpoint::Refuses => {
                    (budget.min(Duration::from_millis(1750)), Err(ActionError::Refused { attempts: 4 }))
                }
                Endpoint::Answers(_) | Endpoint::Hangs => (slow, Err(ActionError::Failed("no answer".into()))),
            };
            if matches!(result, Ok(Done::Answered(_))) {
                let stopped = after + self.scenario.sidecar_stop_takes;
                if let Some(i) = plan.stops {
                    self.after(stopped, Happening::Stops(i));
                }
                if !self.scenario.endpoints_keep_answering {
                    let gone = self.now + stopped;
                    self.endpoints_gone_at = Some(self.endpoints_gone_at.map_or(gone, |g| g.min(gone)));
                    if let Some((generation, Goal::Gone)) = self.probing {
                        self.at(gone, Happening::Probe(generation, ProbeUpdate::Reached(Goal::Gone)));
                    }
                }
            }
            self.after(after, Happening::Outcome(Outcome { action, result }));
        }
        // A recognised sidecar answers its POST at once and exits a while later.
        for target in recognised {
            let name = target.container.clone().unwrap_or_default();
            self.record.recognised.push((name.clone(), self.now));
            if let Some(i) = self.scenario.sidecars.iter().position(|p| p.name == name) {
                self.after(self.scenario.sidecar_stop_takes, Happening::Stops(i));
            }
            let outcome = Outcome { action: Action::Post(target.clone()), result: Ok(Done::Answered(200)) };
            self.after(Duration::ZERO, Happening::Outcome(outcome));
        }
        // A guess finds nothing listening: proa could not read the Pod, so it knows of no sidecar there.
        for target in guessed {
            self.record.guessed.push((target.container.clone().unwrap_or_default(), self.now));
            let result = Err(ActionError::Refused { attempts: 1 });
            self.after(
                Duration::from_millis(1),
                Happening::Outcome(Outcome { action: Action::Guess(target.clone()), result }),
            );
        }
    }

    fn write_termination_log(&mut self, reason: &str) {
        self.trace(format!("termination log: {reason}"));
        self.record.termination_log.push(reason.to_string());
    }
}

fn forbidden() -> ApiError {
    ApiError::Forbidden { verb: "watch", namespace: "jobs".into() }
}

fn describe(update: &Update) -> String {
    let statuses = |pod: &Pod| {
        let all = pod.status.container_statuses.iter().chain(&pod.status.init_container_statuses);
        all.map(|s| {
            let state = match (&s.state.running, &s.state.terminated) {
                (_, Some(t)) => format!("terminated {}", t.exit_code),
                (Some(_), _) => "running".to_string(),
                _ => "waiting".to_string(),
            };
            format!("{} {state}{}", s.name, if s.ready { " ready" } else { "" })
        })
        .collect::<Vec<_>>()
        .join(", ")
    };
    match update {
        Update::PodChanged(pod) | Update::PodDeleted(pod) => format!(
            "{}{} v{} uid {} [{}]",
            if matches!(update, Update::PodDeleted(_)) { "DELETED " } else { "" },
            if pod.metadata.deletion_timestamp.is_some() { "(deleting)" } else { "" },
            pod.metadata.resource_version.as_deref().unwrap_or("?"),
            pod.metadata.uid.as_deref().unwrap_or("?"),
            statuses(pod)
        ),
        Update::Failed(err) => format!("failure: {err}"),
        Update::Retrying { line, .. } => format!("retrying: {line}"),
        Update::Reached => "stream open".into(),
    }
}

/// The Pod at the start: proa's container `job` (first unless its command line identifies it), the regular
/// sidecars and the native ones, nothing ready yet.
fn initial_pod(s: &Scenario) -> Pod {
    let own_command = match s.entrypoint_form {
        true => (vec![], vec![]),
        false => (vec!["/proa".to_string()], s.own_args()),
    };
    let own = Container {
        name: "job".into(),
        command: own_command.0,
        args: own_command.1,
        restart_policy: s.own_policy.map(str::to_string),
        ..Container::default()
    };
    let mut containers: Vec<Container> = s
        .sidecars
        .iter()
        .enumerate()
        .map(|(i, p)| Container {
            name: p.name.clone(),
            args: p.args.clone(),
            restart_policy: p.policy.map(str::to_string),
            ..with_probe(p, Sim::probe_port(Which::Regular(i)))
        })
        .collect();
    // Without --container, a proa the Pod gives no command is guessed to be the first container (documented).
    let first = s.entrypoint_form && !s.container_flag || s.seed % 2 == 0;
    containers.insert(if first { 0 } else { containers.len() }, own);
    containers.extend(s.peers.iter().map(|p| Container {
        name: p.name.clone(),
        command: match p.runs_proa {
            true => vec!["/proa".into(), "--".into(), "other-job".into()],
            false => vec!["other-job".into()],
        },
        ..Container::default()
    }));
    let natives = s.natives.iter().enumerate().map(|(i, p)| Container {
        name: p.name.clone(),
        args: p.args.clone(),
        restart_policy: Some("Always".into()),
        ..with_probe(p, Sim::probe_port(Which::Native(i)))
    });
    let mut pod = Pod::default();
    pod.metadata.name = "job-abc".into();
    pod.metadata.namespace = "jobs".into();
    pod.metadata.uid = Some(FIRST_UID.into());
    pod.metadata.resource_version = Some("1".into());
    pod.spec.containers = containers;
    pod.spec.init_containers = natives.collect();
    pod.spec.restart_policy = Some(s.pod_policy.into());
    pod.spec.termination_grace_period_seconds = s.grace;
    // Tests only ever probe loopback.
    pod.status.pod_ip = Some("127.0.0.1".into());
    let running = |name: &str| ContainerStatus {
        name: name.into(),
        state: serde_json::from_str(r#"{"running":{}}"#).expect("a valid state"),
        ..ContainerStatus::default()
    };
    pod.status.container_statuses =
        std::iter::once("job").chain(s.peers.iter().map(|p| p.name.as_str())).map(running).collect();
    pod
}

/// A sidecar's readinessProbe as its plan says: an `httpGet` on `port` (by number or by a name its `ports` give),
/// else an exec probe or none, which proa leaves to the API.
fn with_probe(plan: &super::scenario::SidecarPlan, port: u16) -> Container {
    let probe = match &plan.probe {
        Some(probe) => serde_json::json!({
            "httpGet": {"path": "/ready", "port": if probe.named_port { "ready".into() } else { serde_json::json!(port) }},
            "initialDelaySeconds": probe.initial_delay.as_secs(),
            "successThreshold": probe.successes,
        }),
        None if plan.restart_takes.as_millis() % 2 == 0 => serde_json::json!({"exec": {"command": ["ready"]}}),
        None => return Container::default(),
    };
    serde_json::from_value(serde_json::json!({
        "readinessProbe": probe,
        "ports": [{"name": "ready", "containerPort": port}],
    }))
    .expect("a valid container")
}

/// Another Pod of the same name, every container running and ready.
fn replacement_pod(s: &Scenario) -> Pod {
    let mut pod = initial_pod(s);
    pod.metadata.uid = Some("uid-2".into());
    let running: crate::pod::ContainerState = serde_json::from_str(r#"{"running":{}}"#).expect("a valid state");
    let status = |name: &String| ContainerStatus {
        name: name.clone(),
        ready: true,
        state: running.clone(),
        ..ContainerStatus::default()
    };
    pod.status.container_statuses = s.sidecars.iter().map(|p| status(&p.name)).collect();
    pod.status.init_container_statuses = s.natives.iter().map(|p| status(&p.name)).collect();
    pod
}

/// A wall-clock instant cut down to its whole second, as the API writes a timestamp.
fn whole(at: Duration) -> Duration {
    Duration::from_secs(at.as_secs())
}
