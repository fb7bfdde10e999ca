//! Pure decisions over a Pod (DESIGN.md "What happens, in order"): which container is proa's, which ones it
//! waits for, whether they are ready or dead for good, whether shutdown is needed and when it is over.
//! No I/O, no clock, no logging: the state machine calls these and logs what they decide.

use std::time::Duration;

use crate::pod::{ContainerStatus, Pod};

/// Default `--shutdown-timeout` when the Pod gives no terminationGracePeriodSeconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Finds proa's own container, or says why it cannot.
pub fn find_own_container(pod: &Pod, flag: Option<&str>, own_args: &[String]) -> Result<OwnContainer, String> {
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
    // ends proa's arguments (the image's ENTRYPOINT is proa and the Pod gives only `args: [python, job.py]`).
    let own: Vec<&String> = own_args.iter().collect();
    let mut matching = containers.iter().filter(|c| {
        let command_line: Vec<&String> = c.command.iter().chain(&c.args).collect();
        !own.is_empty() && !command_line.is_empty() && (command_line.ends_with(&own) || own.ends_with(&command_line))
    });
    if let (Some(only), None) = (matching.next(), matching.next()) {
        return Ok(OwnContainer { name: only.name.clone(), found: Found::CommandLine });
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

/// All of `spec.containers` but proa's own and the ignored ones, plus the native sidecars.
pub fn waited_containers(pod: &Pod, own: &str, ignore: &[String]) -> Vec<Waited> {
    let is_waited = |name: &str| name != own && !ignore.iter().any(|i| i == name);
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

/// `--ignore` names that are not containers of the Pod (most likely typos).
pub fn unknown_names<'a>(pod: &Pod, ignore: &'a [String]) -> Vec<&'a str> {
    let all = || pod.spec.containers.iter().chain(&pod.spec.init_containers);
    ignore.iter().filter(|i| !all().any(|c| &c.name == *i)).map(String::as_str).collect()
}

/// The Pod's `restartPolicy`, which decides whether a terminated container comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The API server always fills it in; a missing or unknown value is read as its default, `Always`.
    pub fn of(pod: &Pod) -> RestartPolicy {
        match pod.spec.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether the kubelet restarts a container of this Pod that exited with `exit_code`.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
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
    /// The Pod is being deleted: the program must never start.
    Deleted,
}

/// Assesses the waited containers in one Pod snapshot.
pub fn assess(pod: &Pod, waited: &[Waited]) -> Verdict {
    if pod.metadata.deletion_timestamp.is_some() {
        return Verdict::Deleted;
    }
    let policy = RestartPolicy::of(pod);
    let mut not_ready = Vec::new();
    let mut waiting = Vec::new();
    for container in waited {
        let status = status_of(pod, container);
        if status.is_some_and(|s| s.ready) {
            continue;
        }
        if let Some(terminated) = status.and_then(|s| s.state.terminated.as_ref()) {
            // Native sidecars always restart, whatever the Pod's policy.
            if container.kind == Kind::Regular && !policy.restarts(terminated.exit_code) {
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

/// Waiting reasons every container passes through on a healthy start: not worth a warning.
pub fn is_routine_waiting_reason(reason: &str) -> bool {
    matches!(reason, "ContainerCreating" | "PodInitializing")
}

/// Whether every regular sidecar proa waited for has terminated (native ones are the kubelet's to stop).
pub fn sidecars_gone(pod: &Pod, waited: &[Waited]) -> bool {
    sidecars_left(pod, waited).is_empty()
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
/// container (else the restarted program needs them), or when `--always-shutdown` says so. With no Pod known
/// (the API never answered), shut down: a Job must never hang on sidecars nobody stops.
pub fn shutdown_needed(policy: Option<RestartPolicy>, code: u8, always: bool) -> bool {
    always || policy.is_none_or(|p| !p.restarts(i32::from(code)))
}

/// `--shutdown-timeout`, else the Pod's terminationGracePeriodSeconds, else 30 s.
pub fn shutdown_timeout(flag: Option<Duration>, pod: Option<&Pod>) -> Duration {
    let grace = pod
        .and_then(|p| p.spec.termination_grace_period_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    flag.or(grace).unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)
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
        let own =
            find_own_container(pod, None, &own_args(&["-g", "http://127.0.0.1:15000/quitquitquit", "--", "/app/job"]))
                .unwrap();
        waited_containers(pod, &own.name, &[])
    }

    /// proa's arguments in the istio-first fixture's `job` container.
    fn istio_job_args() -> Vec<String> {
        own_args(&["-p", "http://127.0.0.1:15020/quitquitquit", "--", "python", "job.py"])
    }

    #[test]
    fn own_container_by_command_line() {
        let pod = fixture("istio-first");
        let own = find_own_container(&pod, None, &istio_job_args()).unwrap();
        assert_eq!(own, OwnContainer { name: "job".into(), found: Found::CommandLine });
    }

    #[test]
    fn own_container_whose_entrypoint_is_proa() {
        let mut pod = fixture("istio-first");
        pod.spec.containers[1].command = vec![];
        pod.spec.containers[1].args = own_args(&["python", "job.py"]);
        let own = find_own_container(&pod, None, &istio_job_args()).unwrap();
        assert_eq!(own, OwnContainer { name: "job".into(), found: Found::CommandLine });
    }

    #[test]
    fn own_container_falls_back_to_first() {
        let pod = fixture("istio-first");
        let own = find_own_container(&pod, None, &own_args(&["--", "something-else"])).unwrap();
        assert_eq!(own, OwnContainer { name: "istio-proxy".into(), found: Found::FirstContainer });
    }

    #[test]
    fn own_container_by_flag_must_exist() {
        let pod = fixture("istio-first");
        assert_eq!(find_own_container(&pod, Some("job"), &[]).unwrap().found, Found::Flag);
        assert_eq!(
            find_own_container(&pod, Some("jbo"), &[]).unwrap_err(),
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
    fn deleted_pod() {
        let mut pod = fixture("starting");
        pod.metadata.deletion_timestamp = Some("2026-11-26T10:00:00Z".into());
        assert_eq!(assess(&pod, &waited(&pod)), Verdict::Deleted);
    }

    #[test]
    fn sidecars_gone_ignores_native_ones() {
        let mut pod = fixture("job-with-sidecars");
        let waited = waited(&pod);
        assert!(!sidecars_gone(&pod, &waited));
        assert_eq!(sidecars_left(&pod, &waited), ["envoy"]);
        pod.status.container_statuses[1].state = serde_json::from_str(r#"{"terminated":{"exitCode":0}}"#).unwrap();
        assert!(sidecars_gone(&pod, &waited));
        assert!(sidecars_left(&pod, &waited).is_empty());
    }

    #[test]
    fn shutdown_only_when_proa_will_not_be_restarted() {
        use RestartPolicy::*;
        assert!(shutdown_needed(Some(Never), 3, false));
        assert!(shutdown_needed(Some(OnFailure), 0, false));
        assert!(!shutdown_needed(Some(OnFailure), 3, false));
        assert!(!shutdown_needed(Some(Always), 0, false));
        assert!(shutdown_needed(Some(Always), 0, true));
        assert!(shutdown_needed(None, 125, false));
    }

    #[test]
    fn shutdown_timeout_sources() {
        let pod = fixture("job-with-sidecars");
        assert_eq!(shutdown_timeout(Some(Duration::from_secs(5)), Some(&pod)), Duration::from_secs(5));
        assert_eq!(shutdown_timeout(None, Some(&pod)), Duration::from_secs(45));
        assert_eq!(shutdown_timeout(None, None), DEFAULT_SHUTDOWN_TIMEOUT);
    }
}
