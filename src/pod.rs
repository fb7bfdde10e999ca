//! serde structs for the few Pod fields proa reads, and the watch event envelope.
//! Every field is optional or defaulted: the API server omits empty fields, and proa must not fail on a
//! Pod shape it does not know. Fields proa does not read are skipped while decoding, never held. Pure: no I/O.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A Pod as the API server sends it (GET body, or a watch event's object).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pod {
    pub metadata: Metadata,
    pub spec: Spec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
    /// Tells this Pod from a later one of the same name (a Job's replacement, a StatefulSet's).
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// Set once the Pod is being deleted.
    pub deletion_timestamp: Option<String>,
    /// The grace period of that deletion, which overrides the spec's.
    pub deletion_grace_period_seconds: Option<i64>,
    /// Not the API's: how long before `deletion_timestamp` this snapshot arrived, by the wall clock, which the
    /// watcher fills in as it receives it (`readiness::deletion_in`). The kubelet kills the Pod's containers then.
    #[serde(skip)]
    pub deletion_in: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec {
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    /// `Always` (the API's default), `OnFailure` or `Never`.
    pub restart_policy: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `Always` on an init container makes it a native sidecar. On a regular container (ContainerRestartRules,
    /// Kubernetes 1.34+) it overrides the Pod's policy for that container.
    pub restart_policy: Option<String>,
    /// Rules by exit code that restart the container whatever its policy (ContainerRestartRules).
    pub restart_policy_rules: Vec<RestartRule>,
    /// Only the names: `PROA_SERVE_QUIT` marks a proa on a sidecar's side.
    pub env: Vec<EnvVar>,
}

/// An environment variable of a container; its value is not read.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EnvVar {
    pub name: String,
}

/// `action: Restart` when the exit code matches `exitCodes`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RestartRule {
    pub action: String,
    pub exit_codes: Option<ExitCodes>,
}

/// `operator: In` or `NotIn` over `values`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ExitCodes {
    pub operator: String,
    pub values: Vec<i32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub phase: Option<String>,
    pub container_statuses: Vec<ContainerStatus>,
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub ready: bool,
    pub restart_count: i64,
    pub state: ContainerState,
}

/// At most one of the three is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerState {
    pub waiting: Option<Waiting>,
    pub running: Option<IgnoredAny>,
    pub terminated: Option<Terminated>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Waiting {
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: Option<String>,
}

/// The object of an ERROR watch event, or the body of a failed request (a `meta/v1` Status).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiStatus {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

/// What one watch line means to proa.
#[derive(Debug, PartialEq)]
pub enum WatchEvent {
    /// ADDED or MODIFIED with the Pod's new state.
    Pod(Box<Pod>),
    /// DELETED: the Pod is gone; its last state.
    Deleted(Box<Pod>),
    /// BOOKMARK: only the resourceVersion moves.
    Bookmark(Option<String>),
    /// ERROR with a Status (code 410: the resourceVersion is too old).
    Error(ApiStatus),
}

/// One watch line, decoded straight into the fields proa reads, whichever of `type` and `object` comes first.
#[derive(Deserialize)]
pub struct WatchLine {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: Object,
}

/// A watch event's object: a Pod, a bookmark's metadata or an ERROR's Status. Their fields do not clash but for
/// `status`, which is a Pod's status object or a Status's `"Failure"`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Object {
    metadata: Metadata,
    spec: Spec,
    status: PodStatus,
    code: u16,
    reason: String,
    message: String,
}

/// A Pod's `status` object; the text `status` of a Status object reads as an empty one.
#[derive(Default)]
struct PodStatus(Status);

impl<'de> Deserialize<'de> for PodStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PodStatus, D::Error> {
        struct StatusVisitor;
        impl<'de> Visitor<'de> for StatusVisitor {
            type Value = PodStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Pod status object or a Status text")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<PodStatus, E> {
                Ok(PodStatus::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<PodStatus, E> {
                Ok(PodStatus::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PodStatus, A::Error> {
                Status::deserialize(de::value::MapAccessDeserializer::new(map)).map(PodStatus)
            }
        }
        deserializer.deserialize_any(StatusVisitor)
    }
}

impl WatchLine {
    /// What the line means. An unknown event type is an error: the caller restarts the stream.
    pub fn event(self) -> Result<WatchEvent, String> {
        let Object { metadata, spec, status, code, reason, message } = self.object;
        let pod = || Box::new(Pod { metadata: metadata.clone(), spec: spec.clone(), status: status.0.clone() });
        match self.kind.as_str() {
            "ADDED" | "MODIFIED" => Ok(WatchEvent::Pod(pod())),
            "DELETED" => Ok(WatchEvent::Deleted(pod())),
            "BOOKMARK" => Ok(WatchEvent::Bookmark(metadata.resource_version.clone())),
            "ERROR" => Ok(WatchEvent::Error(ApiStatus { code, reason, message })),
            other => Err(format!("unknown watch event type {other:?}")),
        }
    }
}

/// Decodes one watch line held in memory.
#[cfg(test)]
pub fn parse_watch_line(line: &[u8]) -> Result<WatchEvent, String> {
    let line: WatchLine = serde_json::from_slice(line).map_err(|err| format!("malformed watch event: {err}"))?;
    line.event()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_job_pod() {
        let pod: Pod = serde_json::from_str(include_str!("../tests/fixtures/pods/job-with-sidecars.json")).unwrap();
        assert_eq!(pod.metadata.name, "job-7x2kq");
        assert_eq!(pod.spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.spec.containers.len(), 2);
        assert_eq!(pod.spec.init_containers[1].restart_policy.as_deref(), Some("Always"));
        assert!(pod.status.container_statuses.iter().any(|s| s.ready));
    }

    #[test]
    fn empty_object_is_a_default_pod() {
        assert_eq!(serde_json::from_str::<Pod>("{}").unwrap(), Pod::default());
    }

    #[test]
    fn watch_lines() {
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"p","uid":"u1","resourceVersion":"5"}}}"#;
        match parse_watch_line(added).unwrap() {
            WatchEvent::Pod(pod) => {
                assert_eq!(pod.metadata.resource_version.as_deref(), Some("5"));
                assert_eq!(pod.metadata.uid.as_deref(), Some("u1"));
            }
            other => panic!("{other:?}"),
        }
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        assert_eq!(parse_watch_line(bookmark).unwrap(), WatchEvent::Bookmark(Some("9".into())));
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410,"reason":"Expired","message":"too old"}}"#;
        assert!(matches!(parse_watch_line(gone).unwrap(), WatchEvent::Error(ApiStatus { code: 410, .. })));
        let deleted = br#"{"type":"DELETED","object":{"metadata":{"name":"p"},"status":{"phase":"Succeeded"}}}"#;
        assert!(matches!(parse_watch_line(deleted).unwrap(), WatchEvent::Deleted(pod) if pod.metadata.name == "p"));
    }

    #[test]
    fn the_object_may_come_before_the_type() {
        let line = br#"{"object":{"metadata":{"name":"p"}},"type":"MODIFIED"}"#;
        assert!(matches!(parse_watch_line(line).unwrap(), WatchEvent::Pod(pod) if pod.metadata.name == "p"));
    }

    #[test]
    fn fields_proa_does_not_read_are_skipped() {
        let line = br#"{"type":"ADDED","object":{"metadata":{"name":"p","annotations":{"big":"\u003c\u003c"}},"spec":{"containers":[{"name":"c","env":[{"name":"A","value":"1"}]}]},"status":{"containerStatuses":[{"name":"c","state":{"running":{"startedAt":"x"}}}]}}}"#;
        let WatchEvent::Pod(pod) = parse_watch_line(line).unwrap() else { panic!("a Pod") };
        assert!(pod.status.container_statuses[0].state.running.is_some());
    }

    #[test]
    fn restart_rules_are_read() {
        let container: Container = serde_json::from_str(
            r#"{"name":"c","restartPolicy":"Never","restartPolicyRules":[{"action":"Restart","exitCodes":{"operator":"In","values":[42]}}]}"#,
        )
        .unwrap();
        assert_eq!(container.restart_policy_rules[0].exit_codes.as_ref().unwrap().values, [42]);
    }

    #[test]
    fn bad_watch_lines_are_errors() {
        assert!(parse_watch_line(b"{not json").is_err());
        assert!(parse_watch_line(br#"{"type":"SURPRISE","object":{}}"#).unwrap_err().contains("SURPRISE"));
        assert!(parse_watch_line(br#"{"type":"MODIFIED","object":{"spec":{"containers":7}}}"#).is_err());
    }
}
