//! The direct probes while waiting (DESIGN.md "Wait", "Direct probes"): which containers' probers run, for which
//! run of each, and which passes still count, kept in step with every snapshot. A pass counts while the newest
//! snapshot shows the run it was made in still going on; terminations, restarts and deletion come from the API
//! alone. Pure apart from logging.

use crate::direct::{self, Spec};
use crate::pod::Pod;
use crate::readiness::{self, Verdict};

use super::facts::Facts;

/// A change to the running probers that a snapshot calls for; the Waiting phase turns each into its command.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Start probing this run of a container.
    Start(direct::Order),
    /// Stop probing this container.
    Stop(String),
}

/// What the owner knows of its direct probes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probing {
    /// The probers running: each container, and the restart count of the run it probes.
    running: Vec<(String, i64)>,
    /// The passes, by container and run.
    passed: Vec<(String, i64)>,
    /// The newest snapshot, which says whether each pass still counts.
    newest: Option<Box<Pod>>,
}

impl Probing {
    /// Takes in a snapshot of the same Pod: stops the probers of runs that ended (or that the API already calls
    /// ready), starts those the snapshot allows, and forgets passes of runs that ended.
    pub fn follow(&mut self, probes: &[Spec], pod: &Pod) -> Vec<Change> {
        let mut changes = Vec::new();
        self.passed.retain(|(name, restarts)| {
            let kind = probes.iter().find(|spec| &spec.container == name).map(|spec| spec.kind);
            let counts = kind.is_some_and(|kind| direct::still_counts(pod, name, kind, *restarts));
            if !counts {
                log::info!("container {name} stopped or restarted after its readinessProbe passed: not ready any more");
            }
            counts
        });
        for spec in probes {
            let probing = self.running.iter().position(|(name, _)| name == &spec.container);
            let order = direct::order(pod, spec)
                .filter(|order| !self.passed.contains(&(order.container.clone(), order.restart_count)));
            match (probing, order) {
                (Some(i), Some(order)) if self.running[i].1 == order.restart_count => {}
                (Some(i), order) => {
                    self.running.remove(i);
                    changes.push(Change::Stop(spec.container.clone()));
                    changes.extend(order.map(|order| self.start(order)));
                }
                (None, Some(order)) => changes.push(self.start(order)),
                (None, None) => {}
            }
        }
        // Kept only where a pass can come: a copy of the Pod costs microseconds on the way to the program's start.
        if !probes.is_empty() {
            self.newest = Some(Box::new(pod.clone()));
        }
        changes
    }

    fn start(&mut self, order: direct::Order) -> Change {
        self.running.push((order.container.clone(), order.restart_count));
        Change::Start(order)
    }

    /// A prober's pass. Only one still running counts: a stopped prober may report a pass of a run that ended.
    /// Returns whether it was taken.
    pub fn pass(&mut self, container: &str, restart_count: i64) -> bool {
        let run = (container.to_string(), restart_count);
        let Some(i) = self.running.iter().position(|r| *r == run) else { return false };
        self.running.remove(i);
        self.passed.push(run);
        true
    }

    /// The containers ready by their own probe in the newest snapshot.
    pub fn ready(&self, facts: &Facts) -> Vec<String> {
        let Some(pod) = &self.newest else { return Vec::new() };
        let kind = |name: &String| facts.probes.iter().find(|spec| &spec.container == name).map(|spec| spec.kind);
        let counts = |(name, restarts): &&(String, i64)| {
            kind(name).is_some_and(|kind| direct::still_counts(pod, name, kind, *restarts))
        };
        self.passed.iter().filter(counts).map(|(name, _)| name.clone()).collect()
    }

    /// A verdict on a snapshot, with the containers ready by their own probe counted as ready.
    pub fn with_passes(&self, verdict: Verdict, facts: &Facts) -> Verdict {
        direct::with_passes(verdict, &self.ready(facts))
    }

    /// The verdict on the newest snapshot, once there is one, with the passes.
    pub fn judge(&self, facts: &Facts) -> Option<Verdict> {
        let pod = self.newest.as_deref()?;
        Some(self.with_passes(readiness::assess(pod, &facts.waited), facts))
    }
}
