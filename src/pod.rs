//! serde structs for the few Pod fields proa reads, and the watch event envelope.
//! Every field is optional or defaulted: the API server omits empty fields, and proa must not fail on a
//! Pod shape it does not know. Fields proa does not read are skipped while decoding, never held. Pure: no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

/// A Pod as the API server sends it (GET body, or a watch event's object).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pod {
    #[serde(deserialize_with = "nullable")]
    pub metadata: Metadata,
    #[serde(deserialize_with = "nullable")]
    pub spec: Spec,
    #[serde(deserialize_with = "nullable")]
    pub status: Status,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Metadata {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
    /// The Pod's annotations: the injectors' settings (`status.sidecar.istio.io/port`, `config.linkerd.io/…`), read
    /// to recognise their sidecars (`recognition.rs`).
    #[serde(deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
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
    #[serde(deserialize_with = "nullable")]
    pub containers: Vec<Container>,
    #[serde(deserialize_with = "nullable")]
    pub init_containers: Vec<Container>,
    /// `Always` (the API's default), `OnFailure` or `Never`.
    pub restart_policy: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `registry/path/name:tag` or `…@sha256:…`: the Cloud SQL Auth Proxy is recognised by its image's name.
    pub image: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub command: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub args: Vec<String>,
    /// `Always` on an init container makes it a native sidecar. On a regular container (ContainerRestartRules,
    /// Kubernetes 1.34+) it overrides the Pod's policy for that container.
    pub restart_policy: Option<String>,
    /// Rules by exit code that restart the container whatever its policy (ContainerRestartRules).
    #[serde(deserialize_with = "nullable")]
    pub restart_policy_rules: Vec<RestartRule>,
    /// `PROA_SERVE_QUIT` marks a proa on a sidecar's side; `PROA_DISABLE=true` a proa turned off.
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<EnvVar>,
    /// Named ports, which a probe may name instead of a number.
    #[serde(deserialize_with = "lenient")]
    pub ports: Vec<ContainerPort>,
    /// The endpoint proa probes itself, where it can (`direct.rs`).
    #[serde(deserialize_with = "lenient")]
    pub readiness_probe: Option<Probe>,
    /// Only whether there is one: then a container is probed only once its status says `started`.
    pub startup_probe: Option<IgnoredAny>,
}

/// A port of a container.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub container_port: i64,
}

/// A probe as the kubelet runs it. Of `exec` and `grpc` only whether they are set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub exec: Option<IgnoredAny>,
    pub grpc: Option<IgnoredAny>,
    pub initial_delay_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub success_threshold: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpGetAction {
    pub path: Option<String>,
    pub port: Option<PortRef>,
    pub host: Option<String>,
    /// `HTTP` (the default) or `HTTPS`.
    pub scheme: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpHeader {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TcpSocketAction {
    pub port: Option<PortRef>,
    pub host: Option<String>,
}

/// A probe's port: a number, or the name of one of the container's `ports` (an IntOrString).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortRef {
    Number(i64),
    Name(String),
}

/// An environment variable of a container: its name, and its literal value (`valueFrom` is not resolved).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EnvVar {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    pub value: Option<String>,
}

/// `action: Restart` when the exit code matches `exitCodes`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RestartRule {
    #[serde(deserialize_with = "nullable")]
    pub action: String,
    pub exit_codes: Option<ExitCodes>,
}

/// `operator: In` or `NotIn` over `values`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ExitCodes {
    #[serde(deserialize_with = "nullable")]
    pub operator: String,
    #[serde(deserialize_with = "nullable")]
    pub values: Vec<i32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub phase: Option<String>,
    /// Where the kubelet sends a probe that names no host (the node's address under hostNetwork).
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub ready: bool,
    #[serde(deserialize_with = "nullable")]
    pub restart_count: i64,
    #[serde(deserialize_with = "nullable")]
    pub state: ContainerState,
    /// Set once its startupProbe passed (true at once when it has none).
    pub started: Option<bool>,
}

/// At most one of the three is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerState {
    pub waiting: Option<Waiting>,
    pub running: Option<Running>,
    pub terminated: Option<Terminated>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Running {
    pub started_at: Option<String>,
    /// Not the API's: how long it had been running, by the wall clock, when the watcher received this snapshot
    /// (`readiness::running_for`), which the initial delay of a direct probe counts from.
    #[serde(skip)]
    pub running_for: Option<Duration>,
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
    #[serde(deserialize_with = "nullable")]
    pub exit_code: i32,
    pub reason: Option<String>,
}

/// The object of an ERROR watch event, or the body of a failed request (a `meta/v1` Status).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiStatus {
    #[serde(deserialize_with = "nullable")]
    pub code: u16,
    #[serde(deserialize_with = "nullable")]
    pub reason: String,
    #[serde(deserialize_with = "nullable")]
    pub message: String,
}

/// One watch line, decoded by its `type` into the fields proa reads. A BOOKMARK's object is read for its
/// resourceVersion alone, never as a Pod: a real API server sends a Pod shell there (`"spec":{"containers":null}`).
/// The type usually comes first, so the object is decoded as it is read; when it comes last, serde holds the object
/// until then. An unknown type is an error: the caller restarts the stream.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", content = "object")]
pub enum WatchEvent {
    /// ADDED or MODIFIED with the Pod's new state.
    #[serde(rename = "ADDED", alias = "MODIFIED")]
    Pod(Box<Pod>),
    /// DELETED: the Pod is gone; its last state.
    #[serde(rename = "DELETED")]
    Deleted(Box<Pod>),
    /// BOOKMARK: only the resourceVersion moves.
    #[serde(rename = "BOOKMARK")]
    Bookmark(Bookmark),
    /// ERROR with a Status (code 410: the resourceVersion is too old).
    #[serde(rename = "ERROR")]
    Error(ApiStatus),
}

/// A BOOKMARK's object: of its metadata only the resourceVersion, whatever else it holds.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Bookmark {
    #[serde(deserialize_with = "nullable")]
    metadata: BookmarkMetadata,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
struct BookmarkMetadata {
    resource_version: Option<String>,
}

impl Bookmark {
    pub fn resource_version(self) -> Option<String> {
        self.metadata.resource_version
    }
}

/// A field the API server may write as `null` (an empty list, a BOOKMARK's `"containers":null`) reads as its
/// default, like a field it left out.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(deserializer: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// A field only direct probes read: a shape proa does not expect reads as none (the API alone then decides), rather
/// than making the whole Pod unreadable.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// Decodes one watch line held in memory.
#[cfg(test)]
pub fn parse_watch_line(line: &[u8]) -> Result<WatchEvent, String> {
    serde_json::from_slice(line).map_err(|err| format!("malformed watch event: {err}"))
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
        let WatchEvent::Bookmark(bookmark) = parse_watch_line(bookmark).unwrap() else { panic!("a bookmark") };
        assert_eq!(bookmark.resource_version().as_deref(), Some("9"));
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410,"reason":"Expired","message":"too old"}}"#;
        assert!(matches!(parse_watch_line(gone).unwrap(), WatchEvent::Error(ApiStatus { code: 410, .. })));
        let deleted = br#"{"type":"DELETED","object":{"metadata":{"name":"p"},"status":{"phase":"Succeeded"}}}"#;
        assert!(matches!(parse_watch_line(deleted).unwrap(), WatchEvent::Deleted(pod) if pod.metadata.name == "p"));
    }

    /// What kube-apiserver 1.36 sends: a periodic BOOKMARK, and the one that ends a watch's initial events.
    #[test]
    fn real_bookmarks_are_read_for_their_resource_version_alone() {
        let periodic = br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"373","creationTimestamp":null},"spec":{"containers":null},"status":{}}}"#;
        let initial_end = br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"374","creationTimestamp":null,"annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},"status":{}}}"#;
        let odd = br#"{"object":{"metadata":{"resourceVersion":"375"},"spec":{"containers":7},"status":"?"},"type":"BOOKMARK"}"#;
        for (line, rv) in [(&periodic[..], "373"), (&initial_end[..], "374"), (&odd[..], "375")] {
            let WatchEvent::Bookmark(bookmark) = parse_watch_line(line).unwrap() else { panic!("a bookmark") };
            assert_eq!(bookmark.resource_version().as_deref(), Some(rv));
        }
    }

    #[test]
    fn null_reads_as_empty_wherever_the_api_may_write_it() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p","annotations":null},"spec":{"containers":[{"name":"c","command":null,"args":null,"env":null,"restartPolicyRules":null}],"initContainers":null},"status":{"containerStatuses":[{"name":"c","ready":null,"restartCount":null,"state":null}],"initContainerStatuses":null}}"#,
        )
        .unwrap();
        assert!(pod.spec.containers[0].command.is_empty() && pod.spec.init_containers.is_empty());
        assert!(!pod.status.container_statuses[0].ready);
        let shell: Pod = serde_json::from_str(r#"{"metadata":null,"spec":null,"status":null}"#).unwrap();
        assert_eq!(shell, Pod::default());
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
    fn an_odd_probe_or_port_list_reads_as_none() {
        let container: Container = serde_json::from_str(
            r#"{"name":"c","readinessProbe":{"httpGet":{"port":1.5}},"ports":[{"containerPort":"x"}],"args":["a"]}"#,
        )
        .unwrap();
        assert_eq!((container.readiness_probe, container.ports, container.args), (None, vec![], vec!["a".to_string()]));
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
