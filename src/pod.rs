//! serde structs for the few Pod fields proa reads, and the watch event envelope.
//! Every field is optional or defaulted: the API server omits empty fields, and proa must not fail on a
//! Pod shape it does not know. Pure: no I/O.

use serde::Deserialize;

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
    pub resource_version: Option<String>,
    /// Set once the Pod is being deleted.
    pub deletion_timestamp: Option<String>,
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
    /// `Always` on an init container makes it a native sidecar.
    pub restart_policy: Option<String>,
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
    pub running: Option<serde_json::Value>,
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

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
pub struct WatchLine {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub object: serde_json::Value,
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
    /// ADDED, MODIFIED or DELETED with the Pod's new state.
    Pod(Box<Pod>),
    /// BOOKMARK: only the resourceVersion moves.
    Bookmark(Option<String>),
    /// ERROR with a Status (code 410: the resourceVersion is too old).
    Error(ApiStatus),
}

/// Decodes one watch line. An unknown event type or a malformed object is an error: the caller restarts the stream.
pub fn parse_watch_line(line: &[u8]) -> Result<WatchEvent, String> {
    let line: WatchLine = serde_json::from_slice(line).map_err(|err| format!("malformed watch event: {err}"))?;
    let object = line.object;
    match line.kind.as_str() {
        "ADDED" | "MODIFIED" | "DELETED" => serde_json::from_value(object)
            .map(|pod| WatchEvent::Pod(Box::new(pod)))
            .map_err(|err| format!("malformed Pod in {} event: {err}", line.kind)),
        "BOOKMARK" => Ok(WatchEvent::Bookmark(
            object.pointer("/metadata/resourceVersion").and_then(|rv| rv.as_str()).map(str::to_string),
        )),
        "ERROR" => {
            serde_json::from_value(object).map(WatchEvent::Error).map_err(|err| format!("malformed ERROR event: {err}"))
        }
        other => Err(format!("unknown watch event type {other:?}")),
    }
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
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"p","resourceVersion":"5"}}}"#;
        match parse_watch_line(added).unwrap() {
            WatchEvent::Pod(pod) => assert_eq!(pod.metadata.resource_version.as_deref(), Some("5")),
            other => panic!("{other:?}"),
        }
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        assert_eq!(parse_watch_line(bookmark).unwrap(), WatchEvent::Bookmark(Some("9".into())));
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#;
        assert!(matches!(parse_watch_line(gone).unwrap(), WatchEvent::Error(ApiStatus { code: 410, .. })));
    }

    #[test]
    fn bad_watch_lines_are_errors() {
        assert!(parse_watch_line(b"{not json").is_err());
        assert!(parse_watch_line(br#"{"type":"SURPRISE","object":{}}"#).unwrap_err().contains("SURPRISE"));
        assert!(parse_watch_line(br#"{"type":"MODIFIED","object":{"spec":{"containers":7}}}"#).is_err());
    }
}
