//! Wait without the API (no-API mode) and presets: `--wait-http`, `--wait-tcp` and `--sidecar` against real listeners. The program
//! starts only once every endpoint is ready; after it, the shutdown actions go out and proa exits once the endpoints
//! stop answering, or at `--shutdown-timeout`. The Kubernetes API is never asked.

use std::time::{Duration, Instant};

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::port::ClosedPort;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

/// Generous bound for anything that should happen "soon": hit only when proa is broken.
const BOUND: Duration = Duration::from_secs(15);

#[test]
fn http_wait_starts_the_program_after_a_2xx_and_exits_once_the_endpoint_stops_answering() {
    // Inside a cluster (the API server's environment), --wait-http still means no API at all.
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start_unready();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["--wait-http", &sidecar.url("/ready"), "-p", &sidecar.url("/quitquitquit")])
        .args(["--probe-interval", "50ms"])
        .args(bash(format!("{}; exit 7", marker.say("started"))))
        .spawn();

    let refused = sidecar.wait_for("GET", "/ready", 2, BOUND);
    assert!(refused.iter().all(|h| h.status == 503), "{refused:?}");
    let ready_at = sidecar.set_ready();
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready_at, "the program started before the endpoint answered 2xx");

    // The sidecar exits when told to; proa notices that it stopped answering and exits with the program's code.
    let quit = sidecar.wait_for("POST", "/quitquitquit", 1, BOUND)[0].clone();
    assert!(quit.at > started.at);
    // Taken before the sidecar goes, so that proa's exit is after it whatever the scheduling.
    let gone_at = Instant::now();
    drop(sidecar);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(done.at > gone_at && done.at - gone_at < Duration::from_secs(5), "{:?}", done.at - gone_at);
    assert!(done.stderr.contains("endpoints have stopped answering"), "{}", done.stderr);
    assert!(api.requests().is_empty(), "the API was asked:\n{}", api.request_log());
}

#[test]
fn tcp_wait_starts_the_program_once_the_port_listens_and_exits_once_it_closes() {
    // Outside any cluster: no KUBERNETES_SERVICE_HOST, no service account files.
    let port = ClosedPort::reserve();
    let quit = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::bare()
        .args(["--wait-tcp", &port.address(), "-g", &quit.url("/quit"), "--probe-interval", "50ms"])
        .args(bash(marker.say("started")))
        .spawn();

    let refused = format!("tcp {} (connection refused)", port.address());
    proa.wait_for_stderr(BOUND, |log| log.contains(&refused));
    let listening_at = Instant::now();
    let listener = port.listen();
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > listening_at, "the program started before the port listened");

    quit.wait_for("GET", "/quit", 1, BOUND);
    proa.wait_for_stderr(BOUND, |log| log.contains("still answering"));
    let closed_at = Instant::now();
    drop(listener);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.at > closed_at && done.at - closed_at < Duration::from_secs(5), "{:?}", done.at - closed_at);
}

#[test]
fn endpoints_that_keep_answering_end_at_the_shutdown_timeout() {
    let sidecar = Sidecar::start();
    let done = Proa::bare()
        .args(["--wait-http", &sidecar.url("/ready"), "-p", &sidecar.url("/quit"), "--shutdown-timeout", "1s"])
        .args(bash("exit 4".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 4, "{}", done.stderr);
    let asked = sidecar.wait_for("POST", "/quit", 1, BOUND)[0].at;
    let waited = done.at - asked;
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");
    assert!(
        done.stderr.contains(&format!(
            "endpoints still answering at the shutdown timeout: {} (still answering)",
            sidecar.url("/ready")
        )),
        "{}",
        done.stderr
    );
}

#[test]
fn without_a_shutdown_action_proa_does_not_wait_for_endpoints_to_go() {
    // A database elsewhere outlives the Pod: with nothing to stop it, waiting for it to go would only cost time.
    let database = ClosedPort::reserve();
    let address = database.address();
    let _listener = database.listen();
    let done = Proa::bare().args(["--wait-tcp", &address]).args(bash("exit 0".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.elapsed < Duration::from_secs(5), "took {:?}", done.elapsed);
}

#[test]
fn ready_timeout_without_the_api_is_124_and_the_program_never_runs() {
    let sidecar = Sidecar::start_unready();
    let port = ClosedPort::reserve();
    let mut marker = Marker::start();
    let done = Proa::bare()
        .args(["--wait-http", &sidecar.url("/ready"), "--wait-tcp", &port.address(), "--ready-timeout", "1s"])
        .args(bash(marker.say("started")))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    let want = format!(
        "endpoints not ready after 1.0s: {} (answered 503), tcp {} (connection refused); not starting the program",
        sidecar.url("/ready"),
        port.address()
    );
    assert!(done.stderr.contains(&format!("proa: ERROR {want}")), "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program must never run");
}

#[test]
fn envoy_preset_outside_a_cluster_waits_for_ready_and_posts_quitquitquit() {
    let envoy = Sidecar::start_unready();
    let mut marker = Marker::start();
    let proa = Proa::bare()
        .args(["--sidecar", &format!("envoy:{}", envoy.port()), "--probe-interval", "50ms"])
        .args(bash(marker.say("started")))
        .spawn();

    envoy.wait_for("GET", "/ready", 1, BOUND);
    let ready_at = envoy.set_ready();
    assert!(marker.wait_for("started", BOUND).at > ready_at);
    envoy.wait_for("POST", "/quitquitquit", 1, BOUND);
    drop(envoy);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
}

#[test]
fn a_preset_in_a_pod_adds_only_the_shutdown_action() {
    // In API mode readiness comes from the Pod: the preset's readiness URL is never asked.
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let envoy = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["--sidecar", &format!("envoy:{}", envoy.port())])
        .args(bash(marker.say("started")))
        .spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    envoy.wait_for("POST", "/quitquitquit", 1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let paths: Vec<(String, String)> = envoy.hits().into_iter().map(|h| (h.method, h.path)).collect();
    assert_eq!(paths, [("POST".to_string(), "/quitquitquit".to_string())]);
}

#[test]
fn outside_a_cluster_with_nothing_to_wait_for_names_both_flags() {
    let done = Proa::bare().args(["--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert!(done.stderr.contains("KUBERNETES_SERVICE_HOST is not set"), "{}", done.stderr);
    assert!(done.stderr.contains("set --wait-http URL or --wait-tcp HOST:PORT"), "{}", done.stderr);
}

#[test]
fn an_unknown_preset_lists_the_valid_ones() {
    let done = Proa::bare().args(["--sidecar", "consul", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert_eq!(
        done.stderr,
        "proa: ERROR invalid --sidecar \"consul\": use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port; envoy:PORT=NAME names its container)\n"
    );
}
