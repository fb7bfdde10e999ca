//! Shut down, named actions (DESIGN.md step 4): native sidecars and mixed fleets. A shutdown action names its container; one for a native sidecar, or
//! for a container the Pod lacks, is never sent. `--on-ready-timeout run` runs the program when a sidecar never
//! gets ready, with and without the API.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::port::ClosedPort;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(15);

/// `job_pod` with every sidecar, regular and native, running and ready.
fn ready_pod(regular: &[&str], native: &[&str]) -> serde_json::Value {
    let mut pod = job_pod(regular, native, "Never");
    let ready = |name: &&str| json!({"name": name, "ready": true, "state": {"running": {}}});
    let mut statuses = vec![json!({"name": "main", "ready": false, "state": {"running": {}}})];
    statuses.extend(regular.iter().map(ready));
    pod["status"]["containerStatuses"] = json!(statuses);
    pod["status"]["initContainerStatuses"] = json!(native.iter().map(ready).collect::<Vec<_>>());
    pod
}

#[test]
fn a_native_istio_proxy_gets_no_post_while_a_regular_sidecar_does() {
    let api = ApiServer::start(ready_pod(&["envoy"], &["istio-proxy"]));
    let istio = Sidecar::start();
    let envoy = Sidecar::start();
    let proa = Proa::new(&api)
        .args(["-p", &format!("istio-proxy={}", istio.url("/quitquitquit"))])
        .args(["-p", &format!("envoy={}", envoy.url("/quitquitquit"))])
        .args(bash("exit 0".into()))
        .spawn();
    envoy.wait_for("POST", "/quitquitquit", 1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(istio.hits().is_empty(), "a POST would make the kubelet restart the native proxy");
    let skipped = format!(
        "not sending the shutdown action POST {}: container istio-proxy is a native sidecar",
        istio.url("/quitquitquit")
    );
    assert!(done.stderr.contains(&skipped), "{}", done.stderr);
}

#[test]
fn a_preset_whose_container_is_absent_sends_nothing_and_costs_no_retries() {
    // No mesh here: --sidecar linkerd names linkerd-proxy, which the Pod lacks; nothing listens on its port.
    let api = ApiServer::start(ready_pod(&["envoy"], &[]));
    let envoy = Sidecar::start();
    let proa = Proa::new(&api)
        .args(["--sidecar", "linkerd", "-p", &format!("envoy={}", envoy.url("/quit"))])
        .args(bash("exit 0".into()))
        .spawn();
    envoy.wait_for_hits(1, BOUND);
    let terminated = api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains("the pod has no container linkerd-proxy"), "{}", done.stderr);
    assert!(!done.stderr.contains("refused"), "no attempt, so no retry: {}", done.stderr);
    assert!(done.at - terminated < Duration::from_secs(1), "took {:?} after envoy exited", done.at - terminated);
}

#[test]
fn an_unnamed_action_is_not_sent_when_every_sidecar_is_native() {
    let api = ApiServer::start(ready_pod(&[], &["proxy"]));
    let proxy = Sidecar::start();
    let done = Proa::new(&api).args(["-p", &proxy.url("/quit")]).args(bash("exit 2".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 2, "{}", done.stderr);
    assert!(proxy.hits().is_empty());
    assert!(done.stderr.contains("every sidecar proa waits for is native"), "{}", done.stderr);
}

#[test]
fn on_ready_timeout_run_runs_the_program_and_exits_with_its_code() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let envoy = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["--ready-timeout", "1s", "--on-ready-timeout", "run", "-p", &format!("envoy={}", envoy.url("/q"))])
        .args(bash(format!("{}; exit 7", marker.say("started"))))
        .spawn();
    let started = marker.wait_for("started", BOUND);
    assert!(started.at - proa.started >= Duration::from_secs(1), "not before the ready timeout");
    envoy.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(
        done.stderr.contains("containers not ready after 1.0s: envoy; running the program anyway"),
        "{}",
        done.stderr
    );
}

#[test]
fn on_ready_timeout_run_without_the_api_too() {
    let never = ClosedPort::reserve();
    let mut marker = Marker::start();
    let started = Instant::now();
    let done = Proa::bare()
        .args(["--wait-tcp", &never.address(), "--ready-timeout", "1s", "--on-ready-timeout", "run"])
        .args(bash(format!("{}; exit 5", marker.say("started"))))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 5, "{}", done.stderr);
    assert!(marker.wait_for("started", BOUND).at - started >= Duration::from_secs(1));
    assert!(done.stderr.contains("endpoints not ready after"), "{}", done.stderr);
}
