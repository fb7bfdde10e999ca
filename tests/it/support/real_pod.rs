//! A real Pod on the test node (`node.rs`): created through the API with `nodeName` set (no scheduler runs), watched
//! from its creation so that the test sees every status the kubelet wrote (a terminated container's exit code is
//! often followed by the Pod's deletion within milliseconds), and force-deleted when the test ends.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::envtest::{Namespace, SERVICE_ACCOUNT};
use super::node::{NODE_NAME, Node};

/// What the watch saw, in order: when, the event's type, the Pod.
type Events = Arc<(Mutex<Vec<(Instant, String, Value)>>, Condvar)>;

pub struct RealPod<'n> {
    node: &'static Node,
    ns: &'n Namespace,
    pub name: String,
    /// When the create request was sent.
    pub created: Instant,
    events: Events,
}

/// proa's in-cluster environment in a test Pod: the API server on loopback (hostNetwork; no kube-proxy serves the
/// `kubernetes` Service's address) and the Pod's name from the Downward API, as the docs recommend.
pub fn proa_env(node: &Node) -> Value {
    json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": node.cluster.port().to_string()},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ])
}

impl<'n> RealPod<'n> {
    /// Creates the Pod `spec` (a Pod's `spec`) named `name` on the node: hostNetwork, the ServiceAccount `proa`,
    /// every image local (`imagePullPolicy: Never`), and starts recording its events.
    pub fn create(node: &'static Node, ns: &'n Namespace, name: &str, spec: Value) -> RealPod<'n> {
        RealPod::create_annotated(node, ns, name, json!({}), spec)
    }

    /// Like [`RealPod::create`], with these annotations.
    pub fn create_annotated(
        node: &'static Node,
        ns: &'n Namespace,
        name: &str,
        annotations: Value,
        spec: Value,
    ) -> RealPod<'n> {
        RealPod::create_with(node, ns, json!({"name": name, "annotations": annotations}), spec)
    }

    /// Like [`RealPod::create`], with this `metadata` (its name, labels, annotations).
    pub fn create_with(node: &'static Node, ns: &'n Namespace, metadata: Value, mut spec: Value) -> RealPod<'n> {
        let name = metadata["name"].as_str().expect("a Pod's name").to_string();
        let name = name.as_str();
        spec["nodeName"] = json!(NODE_NAME);
        spec["hostNetwork"] = json!(true);
        spec["serviceAccountName"] = json!(SERVICE_ACCOUNT);
        spec["enableServiceLinks"] = json!(false);
        for list in ["containers", "initContainers"] {
            for container in spec[list].as_array_mut().into_iter().flatten() {
                container["imagePullPolicy"] = json!("Never");
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
        let created = Instant::now();
        let answer = node.cluster.request("POST", &format!("/api/v1/namespaces/{}/pods", ns.name), Some(&pod));
        let version = answer["metadata"]["resourceVersion"].as_str().expect("a created Pod's version").to_string();
        let events: Events = Default::default();
        events.0.lock().unwrap().push((created, "CREATED".into(), answer));
        let path = format!(
            "/api/v1/namespaces/{}/pods?watch=true&fieldSelector=metadata.name%3D{name}&timeoutSeconds=600",
            ns.name
        );
        let record = events.clone();
        std::thread::spawn(move || watch(node, &path, version, &record));
        RealPod { node, ns, name: name.to_string(), created, events }
    }

    fn path(&self) -> String {
        format!("/api/v1/namespaces/{}/pods/{}", self.ns.name, self.name)
    }

    /// The first recorded state of the Pod for which `holds`, waiting up to `bound`: when the watch saw it, and the
    /// Pod. Panics with the Pod's history and the kubelet's lines about it.
    pub fn wait_for(&self, what: &str, bound: Duration, holds: impl Fn(&Value) -> bool) -> (Instant, Value) {
        let deadline = Instant::now() + bound;
        let mut events = self.events.0.lock().unwrap();
        loop {
            if let Some((at, _, pod)) = events.iter().find(|(_, kind, pod)| kind != "DELETED" && holds(pod)) {
                return (*at, pod.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let history = describe(&events);
                drop(events);
                panic!("pod {}: not {what} within {bound:?}; its history:\n{history}", self.name);
            }
            events = self.events.1.wait_timeout(events, left).unwrap().0;
        }
    }

    /// When the Pod was removed from the API, waiting up to `bound`.
    pub fn wait_gone(&self, bound: Duration) -> Instant {
        let deadline = Instant::now() + bound;
        let mut events = self.events.0.lock().unwrap();
        loop {
            if let Some((at, _, _)) = events.iter().find(|(_, kind, _)| kind == "DELETED") {
                return *at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let history = describe(&events);
                drop(events);
                panic!("pod {}: not gone within {bound:?}; its history:\n{history}", self.name);
            }
            events = self.events.1.wait_timeout(events, left).unwrap().0;
        }
    }

    /// Every recorded state of the Pod so far (the deleted one last, where it was).
    pub fn history(&self) -> Vec<(Instant, Value)> {
        self.events.0.lock().unwrap().iter().map(|(at, _, pod)| (*at, pod.clone())).collect()
    }

    /// A container's log through the API server (the kubelet serves it), as `kubectl logs` shows it.
    pub fn logs(&self, container: &str) -> String {
        match self.node.cluster.raw("GET", &format!("{}/log?container={container}", self.path()), None, None) {
            Ok((200, text)) => text,
            Ok((status, text)) => format!("(logs of {container}: {status} {text})"),
            Err(why) => format!("(logs of {container}: {why})"),
        }
    }

    /// Waits until `container`'s log holds `text`, asking the API every 100 ms (a log has no watch) up to `bound`.
    pub fn wait_for_log(&self, container: &str, text: &str, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let log = self.logs(container);
            if log.contains(text) {
                return;
            }
            assert!(Instant::now() < deadline, "{container} did not log {text:?} within {bound:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes the Pod with a grace period, as `kubectl delete --wait=false --grace-period=N` does; returns the
    /// moment the request was sent.
    pub fn delete(&self, grace_seconds: u32) -> Instant {
        let at = Instant::now();
        self.node.cluster.request("DELETE", &format!("{}?gracePeriodSeconds={grace_seconds}", self.path()), None);
        at
    }
}

/// Force-deletes the Pod, so that the kubelet stops what still runs; a failing test shows the kubelet's lines about
/// the Pod and every container's log first.
impl Drop for RealPod<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let pod = self.history().last().map(|(_, pod)| pod.clone()).unwrap_or_default();
            let mut names = Vec::new();
            for list in ["initContainers", "containers"] {
                for c in pod["spec"][list].as_array().into_iter().flatten() {
                    names.push(c["name"].as_str().unwrap_or_default().to_string());
                }
            }
            for name in names {
                eprintln!("--- log of {}/{name}:\n{}", self.name, self.logs(&name));
            }
            eprintln!("{}", self.node.kubelet_log(&self.ns.name, &self.name));
        }
        let _ = self.node.cluster.raw("DELETE", &format!("{}?gracePeriodSeconds=0", self.path()), None, None);
    }
}

/// Records every event of the Pod's watch (from `version`) until it is deleted; reconnects where a stream ends.
fn watch(node: &Node, path: &str, mut version: String, events: &Events) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(900) {
        let Ok(stream) = node.cluster.stream(&format!("{path}&resourceVersion={version}")) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
            let kind = event["type"].as_str().unwrap_or_default().to_string();
            if let Some(v) = event["object"]["metadata"]["resourceVersion"].as_str() {
                version = v.to_string();
            }
            if kind == "BOOKMARK" || kind == "ERROR" {
                continue;
            }
            let deleted = kind == "DELETED";
            events.0.lock().unwrap().push((Instant::now(), kind, event["object"].clone()));
            events.1.notify_all();
            if deleted {
                return;
            }
        }
    }
}

/// One line per recorded state: when, the phase, each container's state.
fn describe(events: &[(Instant, String, Value)]) -> String {
    let first = events.first().map_or_else(Instant::now, |(at, _, _)| *at);
    let lines: Vec<String> = events
        .iter()
        .map(|(at, kind, pod)| {
            let mut line = format!("{:>6.2}s {kind} {}", (*at - first).as_secs_f64(), pod["status"]["phase"]);
            for list in ["initContainerStatuses", "containerStatuses"] {
                for s in pod["status"][list].as_array().into_iter().flatten() {
                    let state = s["state"].as_object().and_then(|o| o.iter().next());
                    let state = state
                        .map(|(k, v)| format!("{k}{}", v.get("exitCode").map_or(String::new(), |c| format!(" {c}"))));
                    line += &format!(
                        " | {} {} ready={} restarts={}",
                        s["name"].as_str().unwrap_or_default(),
                        state.unwrap_or_default(),
                        s["ready"],
                        s["restartCount"]
                    );
                }
            }
            line
        })
        .collect();
    lines.join("\n")
}

/// A container's status in `pod` (regular or init).
pub fn status<'p>(pod: &'p Value, container: &str) -> Option<&'p Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|list| pod["status"][list].as_array().into_iter().flatten())
        .find(|s| s["name"] == container)
}

/// The exit code of a container that has terminated, in `pod`.
pub fn exit_code(pod: &Value, container: &str) -> Option<i64> {
    status(pod, container)?["state"]["terminated"]["exitCode"].as_i64()
}

/// Whether the API says `container` is ready.
pub fn ready(pod: &Value, container: &str) -> bool {
    status(pod, container).is_some_and(|s| s["ready"] == true)
}

/// Whether the API shows `container` running.
pub fn running(pod: &Value, container: &str) -> bool {
    status(pod, container).is_some_and(|s| s["state"]["running"].is_object())
}

pub fn restarts(pod: &Value, container: &str) -> i64 {
    status(pod, container).and_then(|s| s["restartCount"].as_i64()).unwrap_or(0)
}

pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// What a sidecar stand-in runs, from a hostPath folder mounted at `/t`: `sh /t/sidecar.sh ADDR DELAY` serves
/// `/t/www` on ADDR (busybox httpd) after DELAY seconds; `POST /cgi-bin/quitquitquit` appends its method and path to
/// `/t/received` and stops it (exit 0), as does a SIGTERM.
pub struct Scratch {
    pub dir: std::path::PathBuf,
}

impl Scratch {
    pub fn new(node: &Node, name: &str) -> Scratch {
        let dir = node.scratch(name);
        let files = [
            (
                "sidecar.sh",
                "#!/bin/sh\ntrap 'kill $child 2>/dev/null; exit 0' TERM\nsleep \"$2\" & child=$!\nwait $child\n\
                 httpd -f -p \"$1\" -h /t/www & child=$!\nwait $child\n",
            ),
            ("www/ready", "ready\n"),
            (
                "www/cgi-bin/quitquitquit",
                "#!/bin/sh\necho \"$REQUEST_METHOD $REQUEST_URI\" >> /t/received\n\
                 printf 'Content-Type: text/plain\\r\\n\\r\\nbye\\n'\nkill -TERM 1\n",
            ),
        ];
        for (file, text) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        Scratch { dir }
    }

    /// The hostPath volume `t` of this folder.
    pub fn volume(&self) -> Value {
        json!({"name": "t", "hostPath": {"path": self.dir.display().to_string()}})
    }

    /// What the stand-ins received, one `METHOD PATH` a line.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("received")).unwrap_or_default().lines().map(String::from).collect()
    }
}

/// A regular sidecar stand-in named `name` on `addr` (the node's address and a free port), serving after `delay`
/// seconds, with a readinessProbe on it and the kubelet's default period.
pub fn sidecar(name: &str, addr: &str, delay: u32) -> Value {
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    json!({
        "name": name, "image": super::node::BUSYBOX,
        "command": ["/bin/sh", "/t/sidecar.sh", addr, delay.to_string()],
        "volumeMounts": [{"name": "t", "mountPath": "/t"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}},
    })
}

/// A generous bound for what the kubelet does (start a container, report an exit: about a second each here).
pub const KUBELET: Duration = Duration::from_secs(30);
