//! Direct probes (DESIGN.md step 2, issue 20): proa probes a waited container's readinessProbe endpoint itself, so
//! the program starts when the sidecar can serve, not at the kubelet's next probe. Here the test API server never
//! reports the sidecar Ready (or only when the test says), as a kubelet with `periodSeconds: 10` would not for
//! seconds; the endpoints are real loopback servers. Every Pod's IP is 127.0.0.1: tests only ever probe loopback.

use std::time::Duration;

use serde_json::{Value, json};

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(15);
/// The program starts within this of the endpoint's first good answer: the probe interval (100 ms by default)
/// and an attempt, with room for a loaded machine.
const WITHIN: Duration = Duration::from_millis(600);

/// A Job Pod whose regular sidecar `envoy` has this readinessProbe (and these ports), at Pod IP 127.0.0.1.
fn probed_pod(probe: Value, ports: Value) -> Value {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["spec"]["containers"][1]["readinessProbe"] = probe;
    pod["spec"]["containers"][1]["ports"] = ports;
    pod["status"]["podIP"] = json!("127.0.0.1");
    pod
}

/// The container runs, not ready yet, in a run the kubelet dated at `started_at` (none: undated).
fn running(api: &ApiServer, container: &str, started_at: Option<&str>) -> std::time::Instant {
    let container = container.to_string();
    let running = match started_at {
        Some(at) => json!({"running": {"startedAt": at}}),
        None => json!({"running": {}}),
    };
    api.update_pod(move |pod| {
        let status = pod["status"]["containerStatuses"].as_array_mut().unwrap();
        let entry = status.iter_mut().find(|s| s["name"] == container.as_str()).unwrap();
        entry["ready"] = json!(false);
        entry["state"] = running;
    })
}

#[test]
fn the_program_starts_when_the_sidecar_endpoint_answers_not_when_the_api_says_ready() {
    let envoy = Sidecar::start_unready();
    let probe = json!({"httpGet": {"path": "/ready", "port": envoy.port(), "scheme": "HTTP"}, "periodSeconds": 10});
    let api = ApiServer::start(probed_pod(probe, json!([])));
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["-g", &envoy.url("/quitquitquit")])
        .args(bash(format!("{}; exit 3", marker.say("started"))))
        .spawn();
    api.wait_open_watches(1, BOUND);
    running(&api, "envoy", Some("2026-12-05T10:00:00Z"));
    // proa probes while the endpoint still answers 503, and starts nothing.
    let unready = envoy.wait_for("GET", "/ready", 2, BOUND);
    assert!(unready.iter().all(|hit| hit.status == 503));
    let answers = envoy.set_ready();
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > answers, "the program started before the endpoint answered");
    assert!(started.at - answers < WITHIN, "started {:?} after the endpoint answered", started.at - answers);
    // The API never said Ready: shutdown is the usual one.
    envoy.wait_for("GET", "/quitquitquit", 1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    let way = format!("waiting for containers envoy (probed at GET :{}/ready too)", envoy.port());
    assert!(done.stderr.contains(&way), "{}", done.stderr);
    assert!(done.stderr.contains("(probed directly: envoy)"), "{}", done.stderr);
}

#[test]
fn a_named_port_is_resolved_and_the_initial_delay_waited_out() {
    let envoy = Sidecar::start();
    let probe = json!({"httpGet": {"path": "/healthz", "port": "health"}, "initialDelaySeconds": 2});
    let ports = json!([{"name": "admin", "containerPort": 1}, {"name": "health", "containerPort": envoy.port()}]);
    let api = ApiServer::start(probed_pod(probe, ports));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    // No startedAt: proa counts the delay from the snapshot, the latest the run can have begun.
    let runs = running(&api, "envoy", None);
    let first = envoy.wait_for("GET", "/healthz", 1, BOUND)[0].at;
    let started = marker.wait_for("started", BOUND);
    assert!(first >= runs + Duration::from_secs(2), "probed {:?} into the run", first - runs);
    assert!(started.at - first < WITHIN, "started {:?} after the first good answer", started.at - first);
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn an_initial_delay_long_past_costs_nothing() {
    let envoy = Sidecar::start();
    let probe = json!({"tcpSocket": {"port": envoy.port()}, "initialDelaySeconds": 30});
    let api = ApiServer::start(probed_pod(probe, json!([])));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    let runs = running(&api, "envoy", Some("2024-01-01T00:00:00Z"));
    let started = marker.wait_for("started", BOUND);
    assert!(started.at - runs < WITHIN, "started {:?} after the run was seen", started.at - runs);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains(&format!("probed at tcp :{} too", envoy.port())), "{}", done.stderr);
}

#[test]
fn a_sidecar_that_passed_then_terminated_for_good_is_125_and_the_program_never_starts() {
    let envoy = Sidecar::start();
    let probe = json!({"httpGet": {"path": "/ready", "port": envoy.port()}});
    let mut pod = probed_pod(probe, json!([]));
    // A second sidecar the API alone judges, never ready: the wait goes on after envoy's pass.
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "db", "readinessProbe": {"exec": {}}}));
    pod["status"]["containerStatuses"].as_array_mut().unwrap().push(json!({"name": "db", "state": {"running": {}}}));
    let api = ApiServer::start(pod);
    let mut marker = Marker::start();
    let proa =
        Proa::new(&api).env("RUST_LOG", "debug").args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    running(&api, "envoy", None);
    proa.wait_for_stderr(BOUND, |text| text.contains("container envoy passed its readinessProbe"));
    api.set_terminated("envoy", 1);
    proa.wait_for_stderr(BOUND, |text| text.contains("shutting down sidecars"));
    api.set_terminated("db", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program ran");
    assert!(done.stderr.contains("container envoy terminated (Error with exit code 1)"), "{}", done.stderr);
    assert!(done.stderr.contains("db (API only: an exec probe runs inside the container)"), "{}", done.stderr);
}

#[test]
fn an_exec_probe_or_direct_probe_false_leaves_readiness_to_the_api() {
    let envoy = Sidecar::start();
    let http = json!({"httpGet": {"path": "/ready", "port": envoy.port()}});
    let exec = json!({"exec": {"command": ["curl", "-f", envoy.url("/ready")]}});
    for (probe, flags) in [(exec, vec![]), (http, vec!["--direct-probe", "false"])] {
        let api = ApiServer::start(probed_pod(probe.clone(), json!([])));
        let mut marker = Marker::start();
        let proa = Proa::new(&api).args(flags.clone()).args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
        api.wait_open_watches(1, BOUND);
        running(&api, "envoy", None);
        let ready = api.set_ready("envoy");
        let started = marker.wait_for("started", BOUND);
        assert!(started.at > ready, "{probe} {flags:?}: started before the API said ready");
        api.set_terminated("envoy", 0);
        assert_eq!(proa.wait(BOUND).code(), 0);
    }
    assert!(envoy.hits().is_empty(), "probed: {:?}", envoy.hits());
}

#[test]
fn no_watch_stays_open_while_the_program_runs_though_the_api_never_said_ready() {
    let envoy = Sidecar::start();
    let probe = json!({"httpGet": {"path": "/ready", "port": envoy.port()}});
    let api = ApiServer::start(probed_pod(probe, json!([])));
    let mut marker = Marker::start();
    let program = format!("{}; {}; {}", marker.open_3(), marker.say_on_3("started"), marker.block());
    let proa = Proa::new(&api).args(bash(program)).spawn();
    api.wait_open_watches(1, BOUND);
    running(&api, "envoy", None);
    marker.wait_for("started", BOUND);
    // The watch that was waiting for the API's Ready is closed, not left to its next event or its timeout.
    api.wait_open_watches(0, Duration::from_secs(2));
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert!(!done.stderr.contains("retrying"), "the closed watch is no failure: {}", done.stderr);
}

/// An endpoint that answers every GET `200` with a head promising 100 bytes of body, sends two, and closes, as an
/// endpoint that dies mid-answer does; it counts the requests it answered.
fn cut_short_endpoint() -> (u16, std::sync::mpsc::Receiver<std::time::Instant>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            _ = std::io::Read::read(&mut stream, &mut [0u8; 4096]);
            _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok");
            _ = tx.send(std::time::Instant::now());
        }
    });
    (port, rx)
}

#[test]
fn a_200_whose_body_is_cut_short_starts_nothing_until_the_api_says_ready() {
    // The kubelet reads the body and fails the probe on a read error: proa must not count such an answer either.
    let (port, answered) = cut_short_endpoint();
    let probe = json!({"httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"}, "periodSeconds": 10});
    let api = ApiServer::start(probed_pod(probe, json!([])));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exit 3", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    running(&api, "envoy", Some("2026-12-05T10:00:00Z"));
    for _ in 0..3 {
        answered.recv_timeout(BOUND).expect("proa probes the endpoint");
    }
    assert!(marker.all().is_empty(), "the program started on an answer whose body was cut short");
    let ready = api.set_ready("envoy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready, "the program started before the API said ready");
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert!(!done.stderr.contains("probed directly"), "{}", done.stderr);
}

#[test]
fn an_initial_delay_counts_from_the_end_of_the_second_started_at_names() {
    // The API writes `startedAt` in whole seconds, cut down: a container that started at x.9 s shows x. With
    // `initialDelaySeconds: 2` the kubelet first probes 2 s after the real start, so proa must not start sooner.
    let envoy = Sidecar::start();
    let probe = json!({"tcpSocket": {"port": envoy.port()}, "initialDelaySeconds": 2});
    let api = ApiServer::start(probed_pod(probe, json!([])));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    // The run begins 0.9 s into a wall-clock second (waiting for that moment of the clock sets the scene; it
    // synchronises with nothing).
    let into_second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from((1900 - into_second) % 1000)));
    let (began, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
    let second = wall.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let date = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{second}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let started_at = String::from_utf8(date.stdout).unwrap();
    running(&api, "envoy", Some(started_at.trim()));
    let started = marker.wait_for("started", BOUND);
    assert!(started.at >= began + Duration::from_secs(2), "started {:?} into the run", started.at - began);
    assert!(started.at - began < Duration::from_secs(3) + WITHIN, "started {:?} into the run", started.at - began);
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}
