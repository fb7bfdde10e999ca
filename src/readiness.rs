//! Pure decisions over a Pod (DESIGN.md "What happens, in order"): which container is proa's, which ones it
//! waits for, whether they are ready or dead for good, whether shutdown is needed and when it is over.
//! No I/O, no clock, no logging: the state machine calls these and logs what they decide.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::clock;
use crate::pod::{Container, ContainerStatus, ExitCodes, Pod};

/// Default `--shutdown-timeout` when the Pod gives no terminationGracePeriodSeconds, and the grace period the
/// kubelet gives a container after SIGTERM unless the Pod says otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The kubelet gives every container at least this long after SIGTERM, even with a grace period of 0
/// (`minimumGracePeriodInSeconds` in its container runtime manager).
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// How proa's own container was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Named by `--container`.
    Flag,
    /// The one container whose `command` + `args` end with proa's own arguments.
    CommandLine,
    /// Neither worked: the first of `spec.containers`, which may be wrong (Istio puts its proxy first).
    FirstContainer,
}

/// proa's own container: never waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnContainer {
    pub name: String,
    pub found: Found,
}

/// Finds proa's own container, or says why it cannot. `program_words` is how many of `own_args` are the wrapped
/// program and its arguments (they end `own_args`): a command-line match must cover them, so that a sidecar whose
/// `args` merely end like proa's (`["--verbose"]`) is never taken for proa's container.
pub fn find_own_container(
    pod: &Pod,
    flag: Option<&str>,
    own_args: &[String],
    program_words: usize,
) -> Result<OwnContainer, String> {
    let containers = &pod.spec.containers;
    if let Some(name) = flag {
        return match containers.iter().any(|c| c.name == name) {
            true => Ok(OwnContainer { name: name.to_string(), found: Found::Flag }),
            false => Err(format!(
                "--container {name:?} is not a container of pod {}: use one of {}",
                pod.metadata.name,
                names(containers.iter().map(|c| c.name.as_str()))
            )),
        };
    }
    // proa's arguments end the container's command line (`command: [/proa, ...]`), or the container's command line
    // ends proa's arguments and covers at least the program (the image's ENTRYPOINT is proa and the Pod gives only
    // `args: [python, job.py]`).
    let own: Vec<&String> = own_args.iter().collect();
    let covered = program_words.max(1);
    let matching: Vec<String> = containers
        .iter()
        .filter(|c| {
            let command_line: Vec<&String> = c.command.iter().chain(&c.args).collect();
            !own.is_empty()
                && (command_line.ends_with(&own) || (command_line.len() >= covered && own.ends_with(&command_line)))
        })
        .map(|c| c.name.clone())
        .collect();
    if let [only] = matching.as_slice() {
        return Ok(OwnContainer { name: only.clone(), found: Found::CommandLine });
    }
    // Two main containers that differ only by their environment: whichever guess proa made, it could wait for
    // itself, or stop the sidecars under the other's program.
    if matching.len() > 1 {
        return Err(format!(
            "containers {} all run proa with these arguments, so proa cannot tell which is its own: set --container (PROA_CONTAINER) in each",
            matching.join(", ")
        ));
    }
    match containers.first() {
        Some(first) => Ok(OwnContainer { name: first.name.clone(), found: Found::FirstContainer }),
        None => Err(format!("pod {} has no containers", pod.metadata.name)),
    }
}

/// A regular sidecar is stopped by proa's shutdown; a native one (an init container with `restartPolicy: Always`)
/// is stopped by the kubelet once proa's container has exited, so proa never waits for it to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Native,
}

/// A container proa waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub name: String,
    pub kind: Kind,
}

/// All of `spec.containers` but proa's own and `not_waited` (the ignored ones and the peers), plus the native
/// sidecars.
pub fn waited_containers(pod: &Pod, own: &str, not_waited: &[String]) -> Vec<Waited> {
    let is_waited = |name: &str| name != own && !not_waited.iter().any(|i| i == name);
    let regular = pod
        .spec
        .containers
        .iter()
        .filter(|c| is_waited(&c.name))
        .map(|c| Waited { name: c.name.clone(), kind: Kind::Regular });
    let native = pod
        .spec
        .init_containers
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always") && is_waited(&c.name))
        .map(|c| Waited { name: c.name.clone(), kind: Kind::Native });
    regular.chain(native).collect()
}

/// Whether the main container `name` runs proa turned off (`PROA_DISABLE=true` in its `env`): the program runs in
/// proa's place, so it is a main container like any other and never the one that stops the sidecars.
pub fn is_proa_disabled(pod: &Pod, name: &str) -> bool {
    let container = pod.spec.containers.iter().find(|c| c.name == name);
    // The values proa's own parser takes as true (`options::values::parse_bool`), around white space.
    let on = |value: &str| matches!(value.trim(), "true" | "1");
    container
        .is_some_and(|c| c.env.iter().any(|var| var.name == "PROA_DISABLE" && var.value.as_deref().is_some_and(on)))
}

/// The main containers that run proa too: their `command` starts with an executable named `proa`, and it is not
/// on a sidecar's side (`--serve-quit` on its command line or `PROA_SERVE_QUIT` in its environment: that one is a
/// sidecar like any other). A proa started by the image's ENTRYPOINT (no `command` in the Pod) cannot be told from
/// here.
pub fn proa_containers(pod: &Pod) -> Vec<String> {
    let runs_proa = |c: &&Container| c.command.first().is_some_and(|exe| exe.rsplit('/').next() == Some("proa"));
    let serves_quit = |c: &&Container| {
        let flag = |arg: &String| arg == "--serve-quit" || arg.starts_with("--serve-quit=");
        c.command.iter().chain(&c.args).any(flag) || c.env.iter().any(|var| var.name == "PROA_SERVE_QUIT")
    };
    let main = |c: &&Container| runs_proa(c) && !serves_quit(c);
    pod.spec.containers.iter().filter(main).map(|c| c.name.clone()).collect()
}

/// The peers that have not terminated for good in this snapshot (a peer the kubelet will restart still needs
/// the sidecars).
pub fn peers_left(pod: &Pod, peers: &[String]) -> Vec<String> {
    let done = |name: &String| {
        let status = pod.status.container_statuses.iter().find(|s| &s.name == name);
        let terminated = status.and_then(|s| s.state.terminated.as_ref());
        terminated.is_some_and(|t| !RestartPolicy::of_container(pod, name).restarts(t.exit_code))
    };
    peers.iter().filter(|name| !done(name)).cloned().collect()
}

/// Why a shutdown action for `container` (unnamed: `None`) is not sent in this Pod, if it is not: a native sidecar
/// would only be restarted (the kubelet stops native sidecars itself after the main containers), and a container the
/// Pod does not have is not there to stop (the mesh was not injected here). An unnamed action is skipped when every
/// sidecar proa waits for is native.
pub fn skip_reason(pod: &Pod, container: Option<&str>, waited: &[Waited]) -> Option<String> {
    let Some(name) = container else {
        let all_native = !waited.is_empty() && waited.iter().all(|w| w.kind == Kind::Native);
        return all_native.then(|| "every sidecar proa waits for is native: the kubelet stops them".to_string());
    };
    let native =
        pod.spec.init_containers.iter().any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"));
    let present = native || pod.spec.containers.iter().any(|c| c.name == name);
    match (native, present) {
        (true, _) => {
            Some(format!("container {name} is a native sidecar: the kubelet stops it, a request would restart it"))
        }
        (false, false) => Some(format!("the pod has no container {name}")),
        (false, true) => None,
    }
}

/// `--ignore` names that are not containers of the Pod (most likely typos).
pub fn unknown_names<'a>(pod: &Pod, ignore: &'a [String]) -> Vec<&'a str> {
    let all = || pod.spec.containers.iter().chain(&pod.spec.init_containers);
    ignore.iter().filter(|i| !all().any(|c| &c.name == *i)).map(String::as_str).collect()
}

/// A `restartPolicy` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Always,
    OnFailure,
    Never,
}

impl Policy {
    /// The API server always fills the Pod's in; a missing or unknown value is read as its default, `Always`.
    fn parse(text: Option<&str>) -> Policy {
        match text {
            Some("Never") => Policy::Never,
            Some("OnFailure") => Policy::OnFailure,
            _ => Policy::Always,
        }
    }
}

/// Whether the kubelet restarts a container after it exits: its effective `restartPolicy` (its own where set,
/// ContainerRestartRules in Kubernetes 1.34+, else the Pod's), refined by its `restartPolicyRules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub policy: Policy,
    /// (restarts, rule) in order: the first rule whose exit codes match decides.
    rules: Vec<(bool, ExitCodes)>,
}

impl RestartPolicy {
    /// The Pod's own `restartPolicy`.
    pub fn of_pod(pod: &Pod) -> RestartPolicy {
        RestartPolicy { policy: Policy::parse(pod.spec.restart_policy.as_deref()), rules: Vec::new() }
    }

    /// The effective policy of the regular container `name`.
    pub fn of_container(pod: &Pod, name: &str) -> RestartPolicy {
        let Some(container) = pod.spec.containers.iter().find(|c| c.name == name) else {
            return RestartPolicy::of_pod(pod);
        };
        let rules = container
            .restart_policy_rules
            .iter()
            .map(|rule| {
                // No exitCodes: the rule applies to every exit.
                let codes = rule.exit_codes.clone().unwrap_or(ExitCodes { operator: "NotIn".into(), values: vec![] });
                (rule.action == "Restart", codes)
            })
            .collect();
        match container.restart_policy.as_deref() {
            Some(own) => RestartPolicy { policy: Policy::parse(Some(own)), rules },
            None => RestartPolicy { rules, ..RestartPolicy::of_pod(pod) },
        }
    }

    /// Whether the kubelet restarts the container when it exits with `exit_code`.
    pub fn restarts(&self, exit_code: i32) -> bool {
        let matches = |codes: &ExitCodes| match codes.operator.as_str() {
            "In" => codes.values.contains(&exit_code),
            "NotIn" => !codes.values.contains(&exit_code),
            _ => false,
        };
        if let Some((restarts, _)) = self.rules.iter().find(|(_, codes)| matches(codes)) {
            return *restarts;
        }
        match self.policy {
            Policy::Always => true,
            Policy::OnFailure => exit_code != 0,
            Policy::Never => false,
        }
    }

    /// How many of the exit codes a program can end with (0 to 255) the kubelet restarts the container after.
    pub fn restarted_exits(&self) -> Restarted {
        match (0..=255).filter(|&code| self.restarts(code)).count() {
            0 => Restarted::Never,
            256 => Restarted::Always,
            _ => Restarted::Sometimes,
        }
    }
}

/// `RestartPolicy::restarted_exits`: whether the kubelet restarts the container after no exit, some, or every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restarted {
    Never,
    Sometimes,
    Always,
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "restartPolicy {:?}", self.policy)?;
        match self.rules.len() {
            0 => Ok(()),
            n => write!(f, " with {n} restartPolicyRules"),
        }
    }
}

/// Where the waited containers stand in one Pod snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every waited container is ready: start the program.
    Ready,
    /// Some are not ready yet. `waiting` lists (container, reason) for those stuck in `waiting` with a reason.
    Pending { not_ready: Vec<String>, waiting: Vec<(String, String)> },
    /// A waited container terminated and will not be restarted: the program must never start (exit 125).
    Dead { container: String, exit_code: i32, reason: String },
}

/// Assesses the waited containers in one Pod snapshot.
pub fn assess(pod: &Pod, waited: &[Waited]) -> Verdict {
    let mut not_ready = Vec::new();
    let mut waiting = Vec::new();
    for container in waited {
        let status = status_of(pod, container);
        if status.is_some_and(|s| s.ready) {
            continue;
        }
        if let Some(terminated) = status.and_then(|s| s.state.terminated.as_ref()) {
            // Native sidecars always restart, whatever the Pod's policy.
            let restarts = || RestartPolicy::of_container(pod, &container.name).restarts(terminated.exit_code);
            if container.kind == Kind::Regular && !restarts() {
                return Verdict::Dead {
                    container: container.name.clone(),
                    exit_code: terminated.exit_code,
                    reason: terminated.reason.clone().unwrap_or_default(),
                };
            }
        }
        if let Some(reason) = status.and_then(|s| s.state.waiting.as_ref()).and_then(|w| w.reason.clone()) {
            waiting.push((container.name.clone(), reason));
        }
        not_ready.push(container.name.clone());
    }
    match not_ready.is_empty() {
        true => Verdict::Ready,
        false => Verdict::Pending { not_ready, waiting },
    }
}

/// Whether this snapshot says that proa's Pod is going away: it is being deleted, or it is another Pod of the same
/// name: its uid differs from `pinned`, the first snapshot's (a Job's replacement, read after a missed DELETED).
pub fn is_gone(pod: &Pod, pinned: &Option<String>) -> bool {
    pod.metadata.deletion_timestamp.is_some() || is_another_pod(pod, pinned)
}

/// Whether `pod` is another Pod than the one whose uid proa pinned. An unknown uid (proa never read the Pod, as when
/// `--on-ready-timeout run` started the program first) is never a different one.
pub fn is_another_pod(pod: &Pod, pinned: &Option<String>) -> bool {
    pinned.is_some() && pod.metadata.uid != *pinned
}

/// How long from `now` (the wall clock) until the deletion's `deletionTimestamp`, which the API server sets to the
/// time of the delete plus its grace period: the kubelet's SIGKILL comes then, whenever its SIGTERM came (a preStop
/// hook runs first, inside the grace). Zero once past; `None` for a Pod not being deleted, or a timestamp proa
/// cannot read.
pub fn deletion_in(pod: &Pod, now: SystemTime) -> Option<Duration> {
    let at = clock::parse_rfc3339(pod.metadata.deletion_timestamp.as_deref()?)?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// What the wall clock says of a snapshot as the watcher receives it: how long until its deletion's deadline
/// (`deletion_in`), and how long each container had been running (from its `startedAt`; none if unreadable).
pub fn stamp(pod: &mut Pod, now: SystemTime) {
    pod.metadata.deletion_in = deletion_in(pod, now);
    let statuses = pod.status.container_statuses.iter_mut().chain(pod.status.init_container_statuses.iter_mut());
    for running in statuses.filter_map(|s| s.state.running.as_mut()) {
        let started = running.started_at.as_deref().and_then(clock::parse_rfc3339);
        running.running_for = started.map(|at| now.duration_since(at).unwrap_or_default());
    }
}

/// Waiting reasons every container passes through on a healthy start: not worth a warning.
pub fn is_routine_waiting_reason(reason: &str) -> bool {
    matches!(reason, "ContainerCreating" | "PodInitializing")
}

/// The regular sidecars that have not terminated in this snapshot.
pub fn sidecars_left(pod: &Pod, waited: &[Waited]) -> Vec<String> {
    waited
        .iter()
        .filter(|c| c.kind == Kind::Regular && status_of(pod, c).is_none_or(|s| s.state.terminated.is_none()))
        .map(|c| c.name.clone())
        .collect()
}

/// Whether proa should stop the sidecars when exiting with `code`: only when the kubelet will not restart proa's
/// container (`policy`, its effective one; else the restarted program needs them), or when `--always-shutdown` says
/// so. With no Pod known (the API never answered), shut down: a Job must never hang on sidecars nobody stops.
pub fn shutdown_needed(policy: Option<&RestartPolicy>, code: u8, always: bool) -> bool {
    always || policy.is_none_or(|p| !p.restarts(i32::from(code)))
}

/// `--shutdown-timeout`, else the Pod's terminationGracePeriodSeconds, else 30 s.
pub fn shutdown_timeout(flag: Option<Duration>, pod: Option<&Pod>) -> Duration {
    flag.or(pod.and_then(|p| seconds(p.spec.termination_grace_period_seconds))).unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)
}

/// How long the kubelet lets proa's container run after SIGTERM: the deletion's grace period once the Pod is being
/// deleted, else terminationGracePeriodSeconds, else 30 s; never less than `MIN_GRACE`.
pub fn grace_period(pod: &Pod) -> Duration {
    let grace = seconds(pod.metadata.deletion_grace_period_seconds)
        .or(seconds(pod.spec.termination_grace_period_seconds))
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    grace.max(MIN_GRACE)
}

/// A count of seconds from the API (≥ 0 there; a negative one reads as 0).
fn seconds(value: Option<i64>) -> Option<Duration> {
    value.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

fn status_of<'a>(pod: &'a Pod, container: &Waited) -> Option<&'a ContainerStatus> {
    let statuses = match container.kind {
        Kind::Regular => &pod.status.container_statuses,
        Kind::Native => &pod.status.init_container_statuses,
    };
    statuses.iter().find(|s| s.name == container.name)
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Pod {
        let text = match name {
            "job-with-sidecars" => include_str!("../tests/fixtures/pods/job-with-sidecars.json"),
            "starting" => include_str!("../tests/fixtures/pods/starting.json"),
            "image-pull-backoff" => include_str!("../tests/fixtures/pods/image-pull-backoff.json"),
            "sidecar-terminated" => include_str!("../tests/fixtures/pods/sidecar-terminated.json"),
            "istio-first" => include_str!("../tests/fixtures/pods/istio-first.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn own_args(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn waited(pod: &Pod) -> Vec<Waited> {
        let args = own_args(&["-g", "http://127.0.0.1:15000/quitquitquit", "--", "/app/job"]);
        let own = find_own_container(pod, None, &args, 1).unwrap();
        waited_containers(pod, &own.name, &[])
    }

    /// proa's arguments in the istio-first fixture's `job` container.
    fn istio_job_args() -> Vec<String> {
        own_args(&["-p", "http://127.0.0.1:15020/quitquitquit", "--", "python", "job.py"])
    }

    #[test]
    fn own_container_by_command_line() {
        let pod = fixture("istio-first");
        let own = find_own_container(&pod, None, &istio_job_args(), 2).unwrap();
        assert_eq!(own, OwnContainer { name: "job".into(), found: Found::CommandLine });
    }

    #[test]
    fn own_container_whose_entrypoint_is_proa() {
        let mut pod = fixture("istio-first");
        pod.spec.containers[1].command = vec![];
        pod.spec.containers[1].args = own_args(&["python", "job.py"]);
        let own = find_own_container(&pod, None, &istio_job_args(), 2).unwrap();
        assert_eq!(own, OwnContainer { name: "job".into(), found: Found::CommandLine });
    }

    #[test]
    fn a_match_that_misses_the_program_is_no_match() {
        // proa's container gives no command line (the image's ENTRYPOINT runs proa); a sidecar's args end like
        // proa's own arguments, but do not cover the program: the first container, with a warning, not the sidecar.
        let mut pod = fixture("istio-first");
        pod.spec.containers[1].command = vec![];
        pod.spec.containers[1].args = vec![];
        pod.spec.containers[0].args = own_args(&["--verbose"]);
        let args = own_args(&["--", "python", "job.py", "--verbose"]);
        let own = find_own_container(&pod, None, &args, 3).unwrap();
        assert_eq!(own, OwnContainer { name: "istio-proxy".into(), found: Found::FirstContainer });
        pod.spec.containers.swap(0, 1);
        let own = find_own_container(&pod, None, &args, 3).unwrap();
        assert_eq!(own.found, Found::FirstContainer, "never the sidecar");
        // Two containers that both match: proa cannot tell which is its own, and says so.
        pod.spec.containers[0].args = own_args(&["python", "job.py", "--verbose"]);
        pod.spec.containers[1].args = own_args(&["python", "job.py", "--verbose"]);
        let err = find_own_container(&pod, None, &args, 3).unwrap_err();
        assert!(err.contains("cannot tell which is its own: set --container (PROA_CONTAINER) in each"), "{err}");
    }

    #[test]
    fn own_container_falls_back_to_first() {
        let pod = fixture("istio-first");
        let own = find_own_container(&pod, None, &own_args(&["--", "something-else"]), 1).unwrap();
        assert_eq!(own, OwnContainer { name: "istio-proxy".into(), found: Found::FirstContainer });
    }

    #[test]
    fn own_container_by_flag_must_exist() {
        let pod = fixture("istio-first");
        assert_eq!(find_own_container(&pod, Some("job"), &[], 0).unwrap().found, Found::Flag);
        assert_eq!(
            find_own_container(&pod, Some("jbo"), &[], 0).unwrap_err(),
            r#"--container "jbo" is not a container of pod pi-7x2kq: use one of istio-proxy, job"#
        );
    }

    #[test]
    fn waited_are_other_containers_and_native_sidecars() {
        let pod = fixture("job-with-sidecars");
        assert_eq!(
            waited(&pod),
            vec![
                Waited { name: "envoy".into(), kind: Kind::Regular },
                Waited { name: "cloud-sql-proxy".into(), kind: Kind::Native },
            ]
        );
        let ignored = waited_containers(&pod, "job", &["envoy".into()]);
        assert_eq!(ignored, vec![Waited { name: "cloud-sql-proxy".into(), kind: Kind::Native }]);
    }

    #[test]
    fn unknown_ignore_names_are_reported() {
        let pod = fixture("job-with-sidecars");
        assert_eq!(unknown_names(&pod, &["envoy".into(), "envoi".into(), "migrate".into()]), ["envoi"]);
    }

    #[test]
    fn all_ready_is_ready() {
        assert_eq!(assess(&fixture("job-with-sidecars"), &waited(&fixture("job-with-sidecars"))), Verdict::Ready);
    }

    #[test]
    fn missing_statuses_are_pending() {
        let pod = fixture("starting");
        assert_eq!(
            assess(&pod, &waited(&pod)),
            Verdict::Pending { not_ready: vec!["envoy".into(), "cloud-sql-proxy".into()], waiting: vec![] }
        );
    }

    #[test]
    fn waiting_reasons_are_reported() {
        let pod = fixture("image-pull-backoff");
        assert_eq!(
            assess(&pod, &waited(&pod)),
            Verdict::Pending {
                not_ready: vec!["envoy".into()],
                waiting: vec![("envoy".into(), "ImagePullBackOff".into())]
            }
        );
    }

    #[test]
    fn native_sidecar_not_ready_blocks() {
        let mut pod = fixture("job-with-sidecars");
        pod.status.init_container_statuses[1].ready = false;
        assert!(
            matches!(assess(&pod, &waited(&pod)), Verdict::Pending { not_ready, .. } if not_ready == ["cloud-sql-proxy"])
        );
    }

    #[test]
    fn terminated_sidecar_under_never_is_dead() {
        let pod = fixture("sidecar-terminated");
        assert_eq!(
            assess(&pod, &waited(&pod)),
            Verdict::Dead { container: "envoy".into(), exit_code: 1, reason: "Error".into() }
        );
    }

    #[test]
    fn terminated_sidecar_that_will_restart_is_pending() {
        let mut pod = fixture("sidecar-terminated");
        pod.spec.restart_policy = Some("OnFailure".into());
        assert!(matches!(assess(&pod, &waited(&pod)), Verdict::Pending { .. }));
        // OnFailure does not restart a container that exited 0.
        pod.status.container_statuses[1].state.terminated.as_mut().unwrap().exit_code = 0;
        assert!(matches!(assess(&pod, &waited(&pod)), Verdict::Dead { exit_code: 0, .. }));
    }

    #[test]
    fn terminated_native_sidecar_is_not_dead() {
        let mut pod = fixture("job-with-sidecars");
        let status = &mut pod.status.init_container_statuses[1];
        status.ready = false;
        status.state = serde_json::from_str(r#"{"terminated":{"exitCode":1,"reason":"Error"}}"#).unwrap();
        assert!(matches!(assess(&pod, &waited(&pod)), Verdict::Pending { .. }));
    }

    #[test]
    fn deleted_or_replaced_pod_is_gone() {
        let mut pod = fixture("starting");
        pod.metadata.uid = Some("one".into());
        assert!(!is_gone(&pod, &Some("one".into())));
        assert!(is_gone(&pod, &Some("two".into())), "another Pod of the same name");
        assert!(!is_gone(&pod, &None), "an unknown uid (the Pod never read) is never another Pod's (issue 18, 3.1)");
        pod.metadata.deletion_timestamp = Some("2026-11-26T10:00:00Z".into());
        assert!(is_gone(&pod, &Some("one".into())));
    }

    #[test]
    fn the_deletion_deadline_by_the_wall_clock() {
        let mut pod = fixture("job-with-sidecars");
        let now = clock::parse_rfc3339("2026-11-30T10:00:00Z").unwrap();
        assert_eq!(deletion_in(&pod, now), None);
        pod.metadata.deletion_timestamp = Some("2026-11-30T10:00:03Z".into());
        assert_eq!(deletion_in(&pod, now), Some(Duration::from_secs(3)));
        assert_eq!(deletion_in(&pod, now + Duration::from_secs(9)), Some(Duration::ZERO), "already past");
        pod.metadata.deletion_timestamp = Some("soon".into());
        assert_eq!(deletion_in(&pod, now), None);
    }

    #[test]
    fn a_sidecars_own_restart_policy_decides_whether_it_is_dead() {
        // Pod restartPolicy Never, but the sidecar restarts itself (ContainerRestartRules): not dead for good.
        let mut pod = fixture("sidecar-terminated");
        pod.spec.containers[1].restart_policy = Some("Always".into());
        assert!(matches!(assess(&pod, &waited(&pod)), Verdict::Pending { .. }));
        // A rule that restarts on exit code 1 only.
        pod.spec.containers[1].restart_policy = Some("Never".into());
        let rule: crate::pod::RestartRule =
            serde_json::from_str(r#"{"action":"Restart","exitCodes":{"operator":"In","values":[1]}}"#).unwrap();
        pod.spec.containers[1].restart_policy_rules = vec![rule];
        assert!(matches!(assess(&pod, &waited(&pod)), Verdict::Pending { .. }));
        pod.status.container_statuses[1].state.terminated.as_mut().unwrap().exit_code = 2;
        assert!(matches!(assess(&pod, &waited(&pod)), Verdict::Dead { exit_code: 2, .. }));
    }

    #[test]
    fn proa_containers_by_their_command() {
        let mut pod = fixture("job-with-sidecars");
        assert_eq!(proa_containers(&pod), ["job"], "command [/proa, ...]");
        pod.spec.containers[0].command = vec!["/proa-bin/proa".into(), "--".into(), "job".into()];
        pod.spec.containers[1].command = vec!["proa-ish".into()];
        assert_eq!(proa_containers(&pod), ["job"]);
        pod.spec.containers[0].command = vec![];
        pod.spec.containers[0].args = vec!["proa".into()];
        assert!(proa_containers(&pod).is_empty(), "the image's ENTRYPOINT cannot be told");
    }

    #[test]
    fn a_proa_on_a_sidecars_side_is_a_sidecar_not_a_peer() {
        let mut pod = fixture("job-with-sidecars");
        let sidecar = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        pod.spec.containers[1].command = sidecar(&["/proa-bin/proa", "--serve-quit", "127.0.0.1:15000", "--"]);
        assert_eq!(proa_containers(&pod), ["job"]);
        pod.spec.containers[1].command = sidecar(&["/proa", "--serve-quit=127.0.0.1:15000", "--", "envoy"]);
        assert_eq!(proa_containers(&pod), ["job"]);
        pod.spec.containers[1].command = sidecar(&["/proa"]);
        pod.spec.containers[1].args = sidecar(&["--", "envoy"]);
        assert_eq!(proa_containers(&pod), ["job", "envoy"], "a peer");
        pod.spec.containers[1].env = vec![crate::pod::EnvVar { name: "PROA_SERVE_QUIT".into(), value: None }];
        assert_eq!(proa_containers(&pod), ["job"]);
    }

    #[test]
    fn a_peer_is_done_once_terminated_for_good() {
        let mut pod = fixture("job-with-sidecars");
        let peers = vec!["envoy".to_string()];
        assert_eq!(peers_left(&pod, &peers), ["envoy"]);
        pod.status.container_statuses[1].state = serde_json::from_str(r#"{"terminated":{"exitCode":1}}"#).unwrap();
        assert!(peers_left(&pod, &peers).is_empty(), "Never: terminated for good");
        pod.spec.containers[1].restart_policy = Some("OnFailure".into());
        assert_eq!(peers_left(&pod, &peers), ["envoy"], "it will be restarted");
        assert_eq!(peers_left(&pod, &["missing".to_string()]), ["missing"]);
    }

    #[test]
    fn actions_for_native_or_absent_containers_are_skipped() {
        let pod = fixture("job-with-sidecars");
        let waited = waited(&pod);
        assert_eq!(skip_reason(&pod, Some("envoy"), &waited), None);
        assert!(skip_reason(&pod, Some("cloud-sql-proxy"), &waited).unwrap().contains("is a native sidecar"));
        assert_eq!(skip_reason(&pod, Some("istio-proxy"), &waited).unwrap(), "the pod has no container istio-proxy");
        assert_eq!(skip_reason(&pod, None, &waited), None, "envoy is regular");
        let natives = vec![Waited { name: "cloud-sql-proxy".into(), kind: Kind::Native }];
        assert!(skip_reason(&pod, None, &natives).unwrap().starts_with("every sidecar proa waits for is native"));
        assert_eq!(skip_reason(&pod, None, &[]), None, "nothing waited for: an unnamed action may stop anything");
    }

    #[test]
    fn effective_policy_of_a_container() {
        let mut pod = fixture("job-with-sidecars");
        assert_eq!(RestartPolicy::of_container(&pod, "job").policy, Policy::Never);
        pod.spec.containers[0].restart_policy = Some("OnFailure".into());
        let own = RestartPolicy::of_container(&pod, "job");
        assert!((own.restarts(1), own.restarts(0)) == (true, false), "{own}");
        let rules = r#"[{"action":"Restart","exitCodes":{"operator":"NotIn","values":[0,3]}},{"action":"Restart"}]"#;
        pod.spec.containers[0].restart_policy = Some("Never".into());
        pod.spec.containers[0].restart_policy_rules = serde_json::from_str(rules).unwrap();
        let own = RestartPolicy::of_container(&pod, "job");
        assert_eq!(own.to_string(), "restartPolicy Never with 2 restartPolicyRules");
        assert!(own.restarts(1) && own.restarts(0), "the second rule, with no exit codes, matches every exit");
        assert_eq!(own.restarted_exits(), Restarted::Always, "the rules restart it after every exit, like Always");
        pod.spec.containers[0].restart_policy_rules.pop();
        assert_eq!(RestartPolicy::of_container(&pod, "job").restarted_exits(), Restarted::Sometimes);
        pod.spec.containers[0].restart_policy_rules.clear();
        assert_eq!(RestartPolicy::of_container(&pod, "job").restarted_exits(), Restarted::Never);
        assert_eq!(RestartPolicy::of_container(&pod, "nope"), RestartPolicy::of_pod(&pod));
    }

    #[test]
    fn sidecars_gone_ignores_native_ones() {
        let mut pod = fixture("job-with-sidecars");
        let waited = waited(&pod);
        assert!(!sidecars_left(&pod, &waited).is_empty());
        assert_eq!(sidecars_left(&pod, &waited), ["envoy"]);
        pod.status.container_statuses[1].state = serde_json::from_str(r#"{"terminated":{"exitCode":0}}"#).unwrap();
        assert!(sidecars_left(&pod, &waited).is_empty());
    }

    #[test]
    fn shutdown_only_when_proa_will_not_be_restarted() {
        let policy = |policy| RestartPolicy { policy, rules: vec![] };
        assert!(shutdown_needed(Some(&policy(Policy::Never)), 3, false));
        assert!(shutdown_needed(Some(&policy(Policy::OnFailure)), 0, false));
        assert!(!shutdown_needed(Some(&policy(Policy::OnFailure)), 3, false));
        assert!(!shutdown_needed(Some(&policy(Policy::Always)), 0, false));
        assert!(shutdown_needed(Some(&policy(Policy::Always)), 0, true));
        assert!(shutdown_needed(None, 125, false));
    }

    #[test]
    fn grace_period_sources() {
        let mut pod = fixture("job-with-sidecars");
        assert_eq!(grace_period(&pod), Duration::from_secs(45));
        pod.spec.termination_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&pod), MIN_GRACE, "the kubelet's floor");
        pod.metadata.deletion_grace_period_seconds = Some(7);
        assert_eq!(grace_period(&pod), Duration::from_secs(7), "the deletion's own grace wins");
        pod.metadata.deletion_grace_period_seconds = Some(i64::MAX);
        assert_eq!(grace_period(&pod), Duration::from_secs(i64::MAX as u64));
        pod.spec.termination_grace_period_seconds = Some(-5);
        assert_eq!(shutdown_timeout(None, Some(&pod)), Duration::ZERO);
    }

    #[test]
    fn shutdown_timeout_sources() {
        let pod = fixture("job-with-sidecars");
        assert_eq!(shutdown_timeout(Some(Duration::from_secs(5)), Some(&pod)), Duration::from_secs(5));
        assert_eq!(shutdown_timeout(None, Some(&pod)), Duration::from_secs(45));
        assert_eq!(shutdown_timeout(None, None), DEFAULT_SHUTDOWN_TIMEOUT);
    }
}
