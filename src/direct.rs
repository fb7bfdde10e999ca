//! Direct probes (DESIGN.md "Wait", "Direct probes"): which waited containers proa probes itself, at which
//! endpoint, from when, and what a pass still counts for. The kubelet reports readiness only at its next probe
//! (`periodSeconds`, 10 s by default), so proa asks the same endpoint the same question as soon as the container
//! runs. Pure: the prober thread is `probe::spawn_direct`, and the lifecycle decides what a pass means.

use std::fmt;
use std::time::Duration;

use crate::pod::{Container, ContainerStatus, Pod, PortRef, Probe};
use crate::readiness::{Kind, Verdict, Waited};

/// The kubelet's default and proa's bound on one attempt: `timeoutSeconds` is at least 1.
pub const MAX_ATTEMPT: Duration = Duration::from_secs(1);

/// The largest `initialDelaySeconds` the API takes (an int32).
const MAX_INITIAL_DELAY: Duration = Duration::from_secs(i32::MAX as u64);
/// How finely the API dates a container's start (`startedAt`, RFC 3339 in whole seconds).
const TIMESTAMP_RESOLUTION: Duration = Duration::from_secs(1);

/// How proa learns that a waited container is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// From the API, and from its own probe of this endpoint.
    Probed(Spec),
    /// From the API alone, for this reason.
    ApiOnly(String),
}

/// A waited container's readinessProbe, as proa runs it: what the spec fixes (the Pod's IP may come later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub container: String,
    pub kind: Kind,
    pub check: Check,
    /// Each attempt's bound.
    pub timeout: Duration,
    /// Passes in a row that make it ready.
    pub successes: u32,
    /// Counted from the container's `startedAt`.
    pub initial_delay: Duration,
    /// It has a startupProbe: probed only once its status says `started`.
    pub startup: bool,
}

/// What to ask: a GET of `path` with `headers`, or a connection. `host: None` is the Pod's IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Http { host: Option<String>, port: u16, path: String, headers: Vec<(String, String)> },
    Tcp { host: Option<String>, port: u16 },
}

/// An endpoint to probe, its host known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Ready on a status from 200 to 399 (no redirect followed).
    Http { url: String, headers: Vec<(String, String)> },
    /// Ready when a connection to `HOST:PORT` is accepted.
    Tcp(String),
}

/// One container's probing, ready to start: for the run of the container that has restarted `restart_count` times,
/// after `delay` (what is left of its initial delay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub container: String,
    pub restart_count: i64,
    pub endpoint: Endpoint,
    pub timeout: Duration,
    pub successes: u32,
    pub delay: Duration,
}

impl fmt::Display for Check {
    /// As `waiting for containers` says it: `GET :15021/healthz/ready`, `tcp :5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |host: &Option<String>| host.as_deref().map(url_host).unwrap_or_default();
        match self {
            Check::Http { host: h, port, path, .. } => write!(f, "GET {}:{port}{path}", host(h)),
            Check::Tcp { host: h, port } => write!(f, "tcp {}:{port}", host(h)),
        }
    }
}

/// A host as a URL writes it: an IPv6 address in brackets.
fn url_host(host: &str) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.to_string(),
    }
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Way::Probed(spec) => write!(f, "its readinessProbe ({}) and the API", spec.check),
            Way::ApiOnly(why) => write!(f, "the API only ({why})"),
        }
    }
}

impl Way {
    pub fn into_spec(self) -> Option<Spec> {
        match self {
            Way::Probed(spec) => Some(spec),
            Way::ApiOnly(_) => None,
        }
    }
}

/// How proa learns that `waited` is ready in this Pod.
pub fn way(pod: &Pod, waited: &Waited) -> Way {
    let containers = match waited.kind {
        Kind::Regular => &pod.spec.containers,
        Kind::Native => &pod.spec.init_containers,
    };
    let Some(container) = containers.iter().find(|c| c.name == waited.name) else {
        return Way::ApiOnly("not in the pod's spec".into());
    };
    let Some(probe) = &container.readiness_probe else { return Way::ApiOnly("no readinessProbe".into()) };
    match check(container, probe) {
        Ok(check) => Way::Probed(Spec {
            container: waited.name.clone(),
            kind: waited.kind,
            check,
            timeout: seconds(probe.timeout_seconds).filter(|t| !t.is_zero()).unwrap_or(MAX_ATTEMPT).min(MAX_ATTEMPT),
            successes: probe.success_threshold.and_then(|n| u32::try_from(n).ok()).unwrap_or(1).max(1),
            // The API's field is an int32; a larger value must not overflow the prober's clock.
            initial_delay: seconds(probe.initial_delay_seconds).unwrap_or_default().min(MAX_INITIAL_DELAY),
            startup: container.startup_probe.is_some(),
        }),
        Err(why) => Way::ApiOnly(why),
    }
}

/// The check a probe asks for, as the kubelet builds it, or why proa leaves it to the API.
fn check(container: &Container, probe: &Probe) -> Result<Check, String> {
    if let Some(http) = &probe.http_get {
        if http.scheme.as_deref().is_some_and(|scheme| !scheme.eq_ignore_ascii_case("HTTP")) {
            return Err("an HTTPS probe: proa would have to skip the certificate check".into());
        }
        let path = encode_path(http.path.as_deref().unwrap_or_default());
        let headers = http.http_headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
        return Ok(Check::Http { host: host(&http.host)?, port: port(container, http.port.as_ref())?, path, headers });
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(Check::Tcp { host: host(&tcp.host)?, port: port(container, tcp.port.as_ref())? });
    }
    Err(match (probe.exec.is_some(), probe.grpc.is_some()) {
        (true, _) => "an exec probe runs inside the container".into(),
        (_, true) => "a grpc probe".into(),
        _ => "a probe of a kind proa does not know".into(),
    })
}

/// The probe's host, where it names one: an IP address or a DNS name, else the probe is left to the API (a host
/// with a `/` or `:` in it would make another URL than the kubelet's).
fn host(host: &Option<String>) -> Result<Option<String>, String> {
    let Some(host) = host.as_deref().map(str::trim).filter(|h| !h.is_empty()) else { return Ok(None) };
    let name = |h: &str| h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match host.parse::<std::net::IpAddr>().is_ok() || name(host) {
        true => Ok(Some(host.to_string())),
        false => Err(format!("its probe's host {host:?} is neither an IP address nor a DNS name")),
    }
}

/// The probe's path as the kubelet's Go URL writes it: with a leading `/`, and every byte a URL cannot hold as it
/// is (a space, a quote, anything not ASCII) percent-encoded.
fn encode_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        encoded.push('/');
    }
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => encoded.push(char::from(byte)),
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            | b':' | b'@' | b'/' | b'?' | b'%' => encoded.push(char::from(byte)),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

/// The probe's port: a number, or a name among the container's `ports` (else a number written as a string, as
/// the kubelet also takes).
fn port(container: &Container, port: Option<&PortRef>) -> Result<u16, String> {
    let number = match port {
        None => return Err("a probe without a port".into()),
        Some(PortRef::Number(n)) => *n,
        Some(PortRef::Name(name)) => {
            let named = container.ports.iter().find(|p| p.name.as_deref() == Some(name.as_str()));
            match (named, name.parse::<i64>()) {
                (Some(p), _) => p.container_port,
                (None, Ok(n)) => n,
                (None, Err(_)) => return Err(format!("its probe's port {name:?} names none of its ports")),
            }
        }
    };
    u16::try_from(number).ok().filter(|&p| p > 0).ok_or_else(|| format!("its probe's port {number} is not a port"))
}

/// The order to probe `spec` now, if this snapshot allows it: the container runs (and has `started`, where it has
/// a startupProbe), the API does not call it ready yet, and its host is known (`status.podIP` where the probe
/// names none).
pub fn order(pod: &Pod, spec: &Spec) -> Option<Order> {
    let status = status(pod, &spec.container, spec.kind)?;
    let running = status.state.running.as_ref().filter(|_| status.state.terminated.is_none())?;
    if status.ready || (spec.startup && status.started != Some(true)) {
        return None;
    }
    let host = match &spec.check {
        Check::Http { host, .. } | Check::Tcp { host, .. } => host.clone(),
    };
    let host = url_host(&host.or_else(|| pod.status.pod_ip.clone().filter(|ip| !ip.is_empty()))?);
    let endpoint = match &spec.check {
        Check::Http { port, path, headers, .. } => {
            Endpoint::Http { url: format!("http://{host}:{port}{path}"), headers: headers.clone() }
        }
        Check::Tcp { port, .. } => Endpoint::Tcp(format!("{host}:{port}")),
    };
    // `startedAt` is in whole seconds, cut down: the run began as late as the end of that second, so a delay is
    // counted from there (never early, at most a second late). A start proa cannot date counts as just now.
    let running_for = running.running_for.unwrap_or_default().saturating_sub(TIMESTAMP_RESOLUTION);
    let delay = match spec.initial_delay {
        Duration::ZERO => Duration::ZERO,
        initial_delay => initial_delay.saturating_sub(running_for),
    };
    Some(Order {
        container: spec.container.clone(),
        restart_count: status.restart_count,
        endpoint,
        timeout: spec.timeout,
        successes: spec.successes,
        delay,
    })
}

/// Whether a pass of `container`'s probe during the run that had restarted `restart_count` times still counts in
/// this snapshot: that run still goes on (running, not terminated, not restarted since).
pub fn still_counts(pod: &Pod, container: &str, kind: Kind, restart_count: i64) -> bool {
    status(pod, container, kind)
        .is_some_and(|s| s.state.running.is_some() && s.state.terminated.is_none() && s.restart_count == restart_count)
}

/// The verdict of a snapshot once the containers in `passed` count as ready too.
pub fn with_passes(verdict: Verdict, passed: &[String]) -> Verdict {
    match verdict {
        Verdict::Pending { mut not_ready, mut waiting } => {
            not_ready.retain(|name| !passed.contains(name));
            waiting.retain(|(name, _)| !passed.contains(name));
            match not_ready.is_empty() {
                true => Verdict::Ready,
                false => Verdict::Pending { not_ready, waiting },
            }
        }
        other => other,
    }
}

fn status<'a>(pod: &'a Pod, name: &str, kind: Kind) -> Option<&'a ContainerStatus> {
    let statuses = match kind {
        Kind::Regular => &pod.status.container_statuses,
        Kind::Native => &pod.status.init_container_statuses,
    };
    statuses.iter().find(|s| s.name == name)
}

fn seconds(value: Option<i64>) -> Option<Duration> {
    value.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn regular(name: &str) -> Waited {
        Waited { name: name.into(), kind: Kind::Regular }
    }

    fn spec_of(pod: &Pod, name: &str) -> Spec {
        match way(pod, &regular(name)) {
            Way::Probed(spec) => spec,
            other => panic!("{other:?}"),
        }
    }

    /// An Istio-injected proxy as the injector writes it, running and not ready yet.
    fn istio(running: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "spec": {"containers": [{
                "name": "istio-proxy",
                "ports": [{"name": "http-envoy-prom", "containerPort": 15090}, {"name": "health", "containerPort": 15021}],
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": "health", "scheme": "HTTP"},
                                   "initialDelaySeconds": 1, "timeoutSeconds": 3, "successThreshold": 2, "periodSeconds": 15},
            }]},
            "status": {"podIP": "127.0.0.1", "containerStatuses": [
                {"name": "istio-proxy", "ready": false, "restartCount": 2, "started": true, "state": {"running": running}}
            ]},
        }))
    }

    #[test]
    fn an_http_probe_on_a_named_port_is_probed_at_the_pod_ip() {
        let pod = istio(serde_json::json!({"startedAt": "2026-12-05T10:00:00Z"}));
        let spec = spec_of(&pod, "istio-proxy");
        assert_eq!(spec.check, Check::Http { host: None, port: 15021, path: "/healthz/ready".into(), headers: vec![] });
        assert_eq!((spec.timeout, spec.successes, spec.initial_delay), (MAX_ATTEMPT, 2, Duration::from_secs(1)));
        let probe = order(&pod, &spec).unwrap();
        assert_eq!(
            probe.endpoint,
            Endpoint::Http { url: "http://127.0.0.1:15021/healthz/ready".into(), headers: vec![] }
        );
        assert_eq!((probe.restart_count, probe.delay), (2, Duration::from_secs(1)), "an undated start: all the delay");
    }

    #[test]
    fn the_initial_delay_counts_from_the_end_of_the_started_second() {
        // initialDelaySeconds: 1. The container may have started as late as x.999 s of its `startedAt` second x.
        let mut pod = istio(serde_json::json!({"startedAt": "2026-12-05T10:00:00Z"}));
        let mut spec = spec_of(&pod, "istio-proxy");
        let mut delay_after = |running_for: u64| {
            let running = pod.status.container_statuses[0].state.running.as_mut().unwrap();
            running.running_for = Some(Duration::from_millis(running_for));
            order(&pod, &spec).unwrap().delay
        };
        assert_eq!(delay_after(400), Duration::from_secs(1));
        assert_eq!(delay_after(1400), Duration::from_millis(600));
        assert_eq!(delay_after(5000), Duration::ZERO);
        // No delay set: nothing to wait out.
        spec.initial_delay = Duration::ZERO;
        let running = pod.status.container_statuses[0].state.running.as_mut().unwrap();
        running.running_for = Some(Duration::ZERO);
        assert_eq!(order(&pod, &spec).unwrap().delay, Duration::ZERO);
    }

    #[test]
    fn no_order_before_the_container_runs_and_has_started_nor_once_the_api_says_ready() {
        let pod_of = |status: serde_json::Value, startup: bool| {
            let mut container = serde_json::json!({"name": "db", "readinessProbe": {"tcpSocket": {"port": 5432}}});
            if startup {
                container["startupProbe"] = serde_json::json!({"tcpSocket": {"port": 5432}});
            }
            let mut status = status;
            status["name"] = "db".into();
            pod(serde_json::json!({"spec": {"containers": [container]},
                                   "status": {"podIP": "127.0.0.1", "containerStatuses": [status]}}))
        };
        let running = serde_json::json!({"ready": false, "state": {"running": {}}});
        let p = pod_of(running.clone(), false);
        assert_eq!(order(&p, &spec_of(&p, "db")).unwrap().endpoint, Endpoint::Tcp("127.0.0.1:5432".into()));
        let p = pod_of(running.clone(), true);
        assert_eq!(order(&p, &spec_of(&p, "db")), None, "a startupProbe that has not passed");
        let mut started = running.clone();
        started["started"] = true.into();
        let p = pod_of(started, true);
        assert!(order(&p, &spec_of(&p, "db")).is_some());
        for status in [
            serde_json::json!({"ready": true, "state": {"running": {}}}),
            serde_json::json!({"ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}),
            serde_json::json!({"ready": false, "state": {"terminated": {"exitCode": 1}}}),
        ] {
            let p = pod_of(status.clone(), false);
            assert_eq!(order(&p, &spec_of(&p, "db")), None, "{status}");
        }
        let mut no_ip = pod_of(running, false);
        no_ip.status.pod_ip = None;
        assert_eq!(order(&no_ip, &spec_of(&no_ip, "db")), None, "no podIP yet");
    }

    #[test]
    fn a_probe_host_and_headers_are_kept_and_an_ipv6_host_is_bracketed() {
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "s", "readinessProbe": {"httpGet": {
                "port": 8080, "path": "ready?full=1",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}]}}}]},
            "status": {"podIP": "fd00::7", "containerStatuses": [{"name": "s", "state": {"running": {}}}]},
        }));
        let probe = order(&p, &spec_of(&p, "s")).unwrap();
        let headers = vec![("X-Probe".to_string(), "1".to_string())];
        assert_eq!(probe.endpoint, Endpoint::Http { url: "http://[fd00::7]:8080/ready?full=1".into(), headers });
        let p = pod(serde_json::json!({
            "spec": {"containers": [{"name": "s", "readinessProbe": {"tcpSocket": {"port": "7000", "host": "127.0.0.2"}}}]},
            "status": {"containerStatuses": [{"name": "s", "state": {"running": {}}}]},
        }));
        assert_eq!(order(&p, &spec_of(&p, "s")).unwrap().endpoint, Endpoint::Tcp("127.0.0.2:7000".into()));
    }

    #[test]
    fn an_ipv6_probe_host_is_bracketed_as_in_a_url() {
        let container = serde_json::json!({"name": "s", "readinessProbe": {"httpGet": {"host": "::1", "port": 8080, "path": "/ready"}}});
        let p = pod(serde_json::json!({"spec": {"containers": [container]}}));
        match way(&p, &regular("s")) {
            Way::Probed(spec) => assert_eq!(spec.check.to_string(), "GET [::1]:8080/ready"),
            other => panic!("{other:?}"),
        }
        let container =
            serde_json::json!({"name": "s", "readinessProbe": {"tcpSocket": {"host": "fd00::7", "port": 5432}}});
        let p = pod(serde_json::json!({"spec": {"containers": [container]}}));
        assert_eq!(way(&p, &regular("s")).to_string(), "its readinessProbe (tcp [fd00::7]:5432) and the API");
    }

    #[test]
    fn what_is_left_to_the_api_says_why() {
        let way_of = |container: serde_json::Value| {
            let p = pod(serde_json::json!({"spec": {"containers": [container]}}));
            way(&p, &regular("s"))
        };
        let cases = [
            (serde_json::json!({"name": "s"}), "no readinessProbe"),
            (serde_json::json!({"name": "s", "readinessProbe": {"exec": {"command": ["true"]}}}), "exec"),
            (serde_json::json!({"name": "s", "readinessProbe": {"grpc": {"port": 9000}}}), "grpc"),
            (
                serde_json::json!({"name": "s", "readinessProbe": {"httpGet": {"port": 443, "scheme": "HTTPS"}}}),
                "HTTPS",
            ),
            (serde_json::json!({"name": "s", "readinessProbe": {"httpGet": {"port": "admin"}}}), "\"admin\""),
            (serde_json::json!({"name": "s", "readinessProbe": {"tcpSocket": {"port": 70000}}}), "70000"),
            (serde_json::json!({"name": "s", "readinessProbe": {"tcpSocket": {}}}), "without a port"),
            (
                serde_json::json!({"name": "s", "readinessProbe": {"tcpSocket": {"port": 1, "host": "127.0.0.1/x"}}}),
                "host",
            ),
        ];
        for (container, why) in cases {
            match way_of(container.clone()) {
                Way::ApiOnly(reason) => assert!(reason.contains(why), "{container}: {reason}"),
                other => panic!("{container}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_path_is_written_as_the_kubelet_writes_it() {
        assert_eq!(encode_path(""), "/");
        assert_eq!(encode_path("healthz"), "/healthz");
        assert_eq!(encode_path("/a b/ü?x=1&y=%20"), "/a%20b/%C3%BC?x=1&y=%20");
    }

    #[test]
    fn absurd_numbers_are_bounded() {
        let p = pod(serde_json::json!({"spec": {"containers": [{"name": "s", "readinessProbe": {
            "tcpSocket": {"port": 1}, "initialDelaySeconds": i64::MAX, "timeoutSeconds": -5, "successThreshold": -1}}]}}));
        let spec = spec_of(&p, "s");
        assert_eq!((spec.initial_delay, spec.timeout, spec.successes), (MAX_INITIAL_DELAY, MAX_ATTEMPT, 1));
    }

    #[test]
    fn a_pass_counts_only_for_the_run_it_was_made_in() {
        let running = istio(serde_json::json!({}));
        assert!(still_counts(&running, "istio-proxy", Kind::Regular, 2));
        assert!(!still_counts(&running, "istio-proxy", Kind::Regular, 1), "restarted since");
        assert!(!still_counts(&running, "istio-proxy", Kind::Native, 2), "another list");
        let mut ended = running.clone();
        ended.status.container_statuses[0].state = serde_json::from_str(r#"{"terminated":{"exitCode":0}}"#).unwrap();
        assert!(!still_counts(&ended, "istio-proxy", Kind::Regular, 2));
    }

    #[test]
    fn passes_complete_a_pending_verdict_and_change_no_other() {
        let pending = Verdict::Pending { not_ready: vec!["a".into(), "b".into()], waiting: vec![] };
        assert_eq!(with_passes(pending.clone(), &["a".into(), "b".into()]), Verdict::Ready);
        assert_eq!(
            with_passes(pending, &["a".into()]),
            Verdict::Pending { not_ready: vec!["b".into()], waiting: vec![] }
        );
        let dead = Verdict::Dead { container: "a".into(), exit_code: 1, reason: "Error".into() };
        assert_eq!(with_passes(dead.clone(), &["a".into()]), dead);
    }
}
