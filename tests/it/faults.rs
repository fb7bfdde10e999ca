//! Wait, against a misbehaving API server (DESIGN.md "In-cluster configuration"): nothing the API server or the network does makes proa hang, spin, run the program early, or lose
//! its exit code. Each test drives the test API server's fault injection against the real binary.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::{ApiServer, Fault, Request, Route};
use crate::support::proa::{Marker, Proa, Running};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(20);

/// Waits until the API server has seen `n` watch requests, and returns them all.
fn wait_for_watches(api: &ApiServer, n: usize) -> Vec<Request> {
    api.wait_for_requests(BOUND, n, |r| r.route == Some(Route::Watch))
}

/// proa waiting on a not-yet-ready `envoy`, with a program that reports when it starts.
fn waiting_proa(api: &ApiServer, marker: &Marker, extra: &[&str]) -> Running {
    Proa::new(api).args(extra).args(bash(marker.say("started"))).spawn()
}

/// The end of every waiting scenario: once `envoy` is ready the program starts (after the ready event), and once
/// it has terminated proa exits 0.
fn becomes_ready_and_finishes(api: &ApiServer, marker: &mut Marker, proa: Running) -> String {
    api.wait_open_watches(1, BOUND);
    let ready_sent = api.set_ready("envoy");
    assert!(marker.wait_for("started", BOUND).at > ready_sent, "the program started before it was ready");
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    done.stderr
}

fn gaps(requests: &[Request]) -> Vec<Duration> {
    requests.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[test]
fn dropped_streams_reconnect_from_the_last_version_with_growing_backoff() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    for i in 0..6 {
        api.push_fault(Route::Watch, Fault::Cut { final_chunk: i % 2 == 0 });
    }
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    let seen = wait_for_watches(&api, 7);
    becomes_ready_and_finishes(&api, &mut marker, proa);

    assert!(seen.iter().all(|w| w.resource_version() == Some("100")), "{}", api.request_log());
    let gaps = gaps(&seen[..7]);
    // The smallest jittered pauses are 100, 200, 400, 800, 1600 and 3200 ms.
    let least = [100, 200, 400, 800, 1600, 3200].map(Duration::from_millis);
    for (gap, least) in gaps.iter().zip(least) {
        assert!(*gap >= least, "gaps {gaps:?}");
    }
    assert!(gaps[5] > gaps[0] * 4, "the pauses grow: {gaps:?}");
}

#[test]
fn a_silent_stream_is_dropped_a_few_seconds_after_its_own_timeout() {
    // The server ends every watch at its timeoutSeconds: one silent 5 s past that is dead (issue 26 §3b).
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.push_fault(Route::Watch, Fault::Silent);
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &["--watch-timeout", "1s"]);
    let seen = wait_for_watches(&api, 2);
    let gap = seen[1].at - seen[0].at;
    let asked: u64 = seen[0].query["timeoutSeconds"].parse().unwrap();
    let bound = Duration::from_secs(asked + 5);
    assert!(gap >= bound && gap < bound + Duration::from_secs(2), "silent for {gap:?} with timeoutSeconds={asked}");
    assert_eq!(seen[1].resource_version(), Some("100"));
    becomes_ready_and_finishes(&api, &mut marker, proa);
}

#[test]
fn error_event_410_relists_and_sees_the_change_made_in_between() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    // Hold proa off for a second after its first watch, change the Pod meanwhile, and expire its version.
    api.push_fault(Route::Watch, Fault::RetryAfter(503, 1));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    api.wait_for_request(BOUND, |r| r.status == 503);
    let ready_sent = api.set_ready("envoy");
    api.compact();
    let seen = wait_for_watches(&api, 3);
    assert_eq!(seen[1].resource_version(), Some("100"), "resumes from the GET's version first");
    assert_eq!(seen[2].resource_version(), None, "after ERROR 410 it watches from the current state");
    assert!(marker.wait_for("started", BOUND).at > ready_sent, "the change made in between was not missed");
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn http_410_relists_and_sees_the_change_made_in_between() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.push_fault(Route::Watch, Fault::RetryAfter(503, 1));
    api.push_fault(Route::Watch, Fault::Status(410));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    api.wait_for_request(BOUND, |r| r.status == 503);
    api.set_ready("envoy");
    let seen = wait_for_watches(&api, 3);
    assert_eq!((seen[1].status, seen[1].resource_version()), (410, Some("100")));
    assert_eq!(seen[2].resource_version(), None);
    marker.wait_for("started", BOUND);
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn a_pod_older_than_the_watch_window_causes_one_410_not_a_loop() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    // The cluster moved on (a bookmark-only version) and compacted: the Pod's own version 100 is too old.
    api.bookmark();
    api.compact();
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    let seen = wait_for_watches(&api, 2);
    api.wait_open_watches(1, BOUND);
    becomes_ready_and_finishes(&api, &mut marker, proa);
    assert_eq!(seen[0].resource_version(), Some("100"));
    assert_eq!(seen[1].resource_version(), None);
    let from_old = api.requests().iter().filter(|r| r.resource_version() == Some("100")).count();
    assert_eq!(from_old, 1, "never resumes from the Pod's old version again: {}", api.request_log());
}

#[test]
fn bookmarks_only_move_the_resource_version() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    api.wait_open_watches(1, BOUND);
    api.bookmark();
    let bookmarked = api.resource_version();
    api.end_watches();
    let seen = wait_for_watches(&api, 2);
    assert_eq!(seen[1].resource_version(), Some(bookmarked.as_str()));

    // The bookmark newer API servers send at the end of the initial events.
    api.wait_open_watches(1, BOUND);
    api.send_raw(
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"150\",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}},\"spec\":{\"containers\":null},\"status\":{}}}\n",
    );
    api.end_watches();
    let seen = wait_for_watches(&api, 3);
    assert_eq!(seen[2].resource_version(), Some("150"));
    assert!(marker.all().is_empty(), "a bookmark is not a Pod change: the program must not start");

    let stderr = becomes_ready_and_finishes(&api, &mut marker, proa);
    assert!(!stderr.contains("malformed"), "a real bookmark is no fault: {stderr}");
}

/// kube-apiserver 1.36 answers a watch from no resourceVersion with the Pod and then a BOOKMARK annotated
/// `k8s.io/initial-events-end`, whose Pod shell has `"containers":null`: proa resumes from it, it never relists again.
#[test]
fn a_relist_ends_with_a_real_bookmark_and_the_next_watch_resumes_from_it() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.bookmark();
    api.compact();
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    let relist = wait_for_watches(&api, 2);
    assert_eq!(relist[1].resource_version(), None);
    api.wait_open_watches(1, BOUND);
    let current = api.resource_version();
    api.end_watches();
    let seen = wait_for_watches(&api, 3);
    assert_eq!(seen[2].resource_version(), Some(current.as_str()), "{}", api.request_log());
    let stderr = becomes_ready_and_finishes(&api, &mut marker, proa);
    assert!(!stderr.contains("malformed"), "{stderr}");
    let relists =
        api.requests().iter().filter(|r| r.route == Some(Route::Watch) && r.resource_version().is_none()).count();
    assert_eq!(relists, 1, "{}", api.request_log());
}

fn rotate_token(api: &ApiServer, new: &str) {
    std::fs::write(api.service_account_dir().join("token"), new).unwrap();
    api.set_token(new);
}

#[test]
fn a_401_rereads_the_rotated_token_and_retries_once() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    api.wait_open_watches(1, BOUND);
    rotate_token(&api, "rotated-token");
    api.end_watches();
    let seen = wait_for_watches(&api, 3);
    assert_eq!((seen[1].status, seen[2].status), (401, 200), "{}", api.request_log());
    assert_eq!(seen[2].bearer_token(), Some("rotated-token"));
    let stderr = becomes_ready_and_finishes(&api, &mut marker, proa);
    assert!(!stderr.contains("rotated-token") && !stderr.contains(&api.token()));
}

#[test]
fn a_token_rejected_after_rereading_is_125() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let proa = Proa::new(&api).args(["--", "true"]);
    // The token file proa was given is no longer accepted.
    api.set_token("a-token-proa-does-not-have");
    let done = proa.spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("401: the service account token was rejected"), "{}", done.stderr);
    let gets: Vec<u16> = api.requests().iter().map(|r| r.status).collect();
    assert_eq!(gets, [401, 401], "one retry after re-reading the file, no more");
}

#[test]
fn an_old_token_is_reread_before_the_next_request() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &["--token-refresh", "1s", "--watch-timeout", "2s"]);
    api.wait_open_watches(1, BOUND);
    rotate_token(&api, "fresh-token");
    // The server ends the stream after 2 s; by then the cached token is older than 1 s.
    let seen = wait_for_watches(&api, 2);
    assert_eq!((seen[1].status, seen[1].bearer_token()), (200, Some("fresh-token")), "{}", api.request_log());
    assert!(api.requests().iter().all(|r| r.status != 401), "re-read before sending: {}", api.request_log());
    becomes_ready_and_finishes(&api, &mut marker, proa);
}

#[test]
fn a_forbidden_get_that_persists_is_125_within_seconds_and_names_the_role_rule() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.keep_failing(Route::Get, Fault::Status(403));
    let done = Proa::new(&api).args(["--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    // 403s for 2 s in a row are fatal: with the backoff's pauses, the 5th or 6th answer, at most 5.2 s after the
    // first.
    let gets: Vec<Request> = api.requests().into_iter().filter(|r| r.route == Some(Route::Get)).collect();
    assert!((5..=6).contains(&gets.len()), "{}", api.request_log());
    let span = gets[gets.len() - 1].at - gets[0].at;
    assert!(span >= Duration::from_secs(2) && span < Duration::from_millis(5_500), "{span:?}");
    assert!(done.elapsed < Duration::from_secs(7), "{:?}", done.elapsed);
    let errors: Vec<&str> = done.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(
        errors,
        [
            r#"proa: ERROR API server answered 403: the service account may not get pods in namespace "jobs"; grant a Role rule {apiGroups: [""], resources: ["pods"], verbs: ["get", "watch"]} bound to it"#
        ]
    );
}

#[test]
fn a_restarted_api_servers_first_403s_are_retried() {
    // For a moment after it starts, a kube-apiserver answers 403 while its RBAC caches are empty: at proa's first
    // GET, and at a reconnect of its watch.
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    for _ in 0..2 {
        api.push_fault(Route::Get, Fault::Status(403));
    }
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    api.wait_open_watches(1, BOUND);
    for _ in 0..3 {
        api.push_fault(Route::Watch, Fault::Status(403));
    }
    api.end_watches();
    let watches = wait_for_watches(&api, 5);
    let stderr = becomes_ready_and_finishes(&api, &mut marker, proa);
    let statuses = |route| -> Vec<u16> {
        api.requests().iter().filter(|r| r.route == Some(route)).map(|r| r.status).collect::<Vec<_>>()
    };
    assert_eq!(statuses(Route::Get)[..3], [403, 403, 200], "{}", api.request_log());
    assert_eq!(statuses(Route::Watch)[..5], [200, 403, 403, 403, 200], "{}", api.request_log());
    assert_eq!(watches[4].resource_version(), Some("100"), "resumed where it was: {}", api.request_log());
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains("API server answered 403"), "each retry is a warning: {stderr}");
}

#[test]
fn a_watch_from_a_version_the_server_has_not_reached_relists() {
    // etcd restored from an older copy: proa holds resourceVersion 101, the server is back at 100; it accepts a
    // watch from 101 and says nothing until timeoutSeconds.
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &["--watch-timeout", "1s"]);
    api.wait_open_watches(1, BOUND);
    api.set_waiting("envoy", "ContainerCreating");
    api.restore(100);
    api.end_watches();
    let ahead = api.wait_for_request(BOUND, |r| r.route == Some(Route::Watch) && r.resource_version() == Some("101"));
    let check = api.wait_for_request(BOUND, |r| r.route == Some(Route::Get) && r.at > ahead.at);
    let relist = api.wait_for_request(BOUND, |r| {
        r.route == Some(Route::Watch) && r.at > check.at && r.resource_version().is_none()
    });
    // The stream from 101 lasted its timeoutSeconds (1 s) before proa read the Pod, saw 100 < 101, and relisted.
    let waited = check.at - ahead.at;
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(4), "{waited:?}\n{}", api.request_log());
    assert!(relist.at - check.at < Duration::from_secs(1), "{}", api.request_log());
    let stderr = becomes_ready_and_finishes(&api, &mut marker, proa);
    assert!(stderr.contains("the pod's resourceVersion 100 is behind 101"), "{stderr}");
}

#[test]
fn a_token_with_a_byte_order_mark_is_125_naming_the_file() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let proa = Proa::new(&api);
    let token = api.service_account_dir().join("token");
    std::fs::write(&token, format!("\u{feff}{}\n", api.token())).unwrap();
    let done = proa.args(["--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    let errors: Vec<&str> = done.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(
        errors,
        [format!(
            "proa: ERROR {} holds byte 0xEF at position 1, which no HTTP header may carry: write the token alone, in printable ASCII, as the kubelet does (no byte-order mark)",
            token.display()
        )]
    );
    assert!(!done.stderr.contains(&api.token()), "never the token");
    assert_eq!(api.requests().len(), 0, "{}", api.request_log());
}

#[test]
fn retry_after_is_obeyed_and_other_5xx_back_off() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.push_fault(Route::Watch, Fault::RetryAfter(429, 2));
    api.push_fault(Route::Watch, Fault::RetryAfter(503, 1));
    api.push_fault(Route::Watch, Fault::Status(500));
    api.push_fault(Route::Watch, Fault::Status(502));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    let seen = wait_for_watches(&api, 5);
    let gaps = gaps(&seen);
    assert!(gaps[0] >= Duration::from_secs(2) && gaps[0] < Duration::from_secs(3), "429 asked for 2s: {gaps:?}");
    assert!(gaps[1] >= Duration::from_secs(1) && gaps[1] < Duration::from_secs(2), "503 asked for 1s: {gaps:?}");
    // After two failures in a row the backoff step is 800 ms at most... and at least its lower half.
    assert!(gaps[2] >= Duration::from_millis(200), "500 backs off: {gaps:?}");
    assert!(gaps[3] >= Duration::from_millis(400), "502 backs off further: {gaps:?}");
    api.wait_open_watches(1, BOUND);
    becomes_ready_and_finishes(&api, &mut marker, proa);
}

#[test]
fn bad_lines_restart_the_stream() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &[]);
    let bad_lines = ["{\"type\":\"MODIFIED\",\"object\":{\"metadata\":\n", "{\"type\":\"SURPRISE\",\"object\":{}}\n"];
    for (i, line) in bad_lines.iter().enumerate() {
        api.wait_open_watches(1, BOUND);
        api.send_raw(line);
        let seen = wait_for_watches(&api, i + 2);
        // Resuming from the last good version would read the bad event again if the server kept it.
        assert_eq!(seen[i + 1].resource_version(), None, "watched again from the current state");
    }
    let stderr = becomes_ready_and_finishes(&api, &mut marker, proa);
    for why in ["malformed watch event", "unknown variant `SURPRISE`"] {
        assert!(stderr.contains(why), "{why}: {stderr}");
    }
}

#[test]
fn a_line_larger_than_any_pod_is_125_and_memory_stays_bounded() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    // A shutdown endpoint that never answers keeps proa alive for a moment after it gave up: long enough to read
    // its peak memory.
    let silent = Sidecar::start_silent();
    let mut marker = Marker::start();
    let proa = waiting_proa(&api, &marker, &["-g", &silent.url("/quit"), "--shutdown-timeout", "2s"]);
    api.wait_open_watches(1, BOUND);
    let huge = format!("{{\"type\":\"MODIFIED\",\"object\":{{\"x\":\"{}\"}}}}\n", "x".repeat(40 * 1024 * 1024));
    api.send_raw(&huge);
    silent.wait_for_hits(1, BOUND);
    let peak = proa.peak_rss_kib();
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("larger than 32 MiB"), "{}", done.stderr);
    assert!(peak < 16 * 1024, "peak RSS {peak} KiB after a 40 MiB line");
    assert!(marker.all().is_empty(), "the program never runs");
    assert_eq!(wait_for_watches(&api, 1).len(), 1, "no retry loop: {}", api.request_log());
}

#[test]
fn an_untrusted_certificate_is_125_with_no_fallback() {
    let api = ApiServer::start_with_wrong_ca(job_pod(&["envoy"], &[], "Never"));
    let done = Proa::new(&api).args(["--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("certificate failed verification against ca.crt"), "{}", done.stderr);
    assert!(api.requests().is_empty(), "no request may be sent over an unverified connection");
}

/// A port nothing listens on (yet).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Forwards every connection to `listener` to the API server: the API server "comes up" on that port.
fn relay(listener: TcpListener, to: u16) {
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn refused_connections_are_retried_until_the_api_server_comes_up() {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["status"]["containerStatuses"][1] = json!({"name": "envoy", "ready": true, "state": {"running": {}}});
    let api = ApiServer::start(pod);
    let port = closed_port();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .env("KUBERNETES_SERVICE_PORT", &port.to_string())
        .args(["--ignore", "envoy"])
        .args(bash(marker.say("started")))
        .spawn();
    proa.wait_for_stderr(BOUND, |log| log.matches("connection refused").count() >= 3);
    relay(TcpListener::bind(("127.0.0.1", port)).unwrap(), api.port());
    marker.wait_for("started", BOUND);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let refused: Vec<&str> = done.stderr.lines().filter(|l| l.contains("connection refused")).collect();
    assert!(refused.len() >= 3 && refused.iter().all(|l| l.contains("; retrying in ")), "{refused:#?}");
    assert_eq!(refused.len(), done.stderr.matches("(attempt ").count(), "one line per backoff step");
}

#[test]
fn refused_connections_end_at_the_ready_timeout() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let done = Proa::new(&api)
        .env("KUBERNETES_SERVICE_PORT", &closed_port().to_string())
        .args(["--ready-timeout", "2s"])
        .args(bash(marker.say("started")))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(done.elapsed < Duration::from_secs(4), "{:?}", done.elapsed);
    let attempts = done.stderr.matches("connection refused; retrying in").count();
    assert!((3..=8).contains(&attempts), "backoff, not a tight loop: {attempts} attempts in 2 s");
    assert!(marker.all().is_empty());
}

#[test]
fn the_shutdown_watch_relists_when_the_version_it_resumes_from_expired() {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["status"]["containerStatuses"][1] = json!({"name": "envoy", "ready": true, "state": {"running": {}}});
    let api = ApiServer::start(pod);
    // Ready at the GET (version 100), and version 100 is already out of the watch window.
    api.bookmark();
    api.compact();
    let sidecar = Sidecar::start();
    let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash("exit 4".into())).spawn();
    sidecar.wait_for_hits(1, BOUND);
    let seen = wait_for_watches(&api, 2);
    assert_eq!((seen[0].resource_version(), seen[1].resource_version()), (Some("100"), None));
    api.wait_open_watches(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 4, "{}", done.stderr);
    assert!(done.stderr.contains("sidecars have exited"), "{}", done.stderr);
}

#[test]
fn the_shutdown_watch_always_ends_within_the_shutdown_timeout() {
    for fault in [Fault::Silent, Fault::Status(500), Fault::Drop] {
        let mut pod = job_pod(&["envoy"], &[], "Never");
        pod["status"]["containerStatuses"][1] = json!({"name": "envoy", "ready": true, "state": {"running": {}}});
        let api = ApiServer::start(pod);
        for _ in 0..20 {
            api.push_fault(Route::Watch, fault.clone());
        }
        let proa = Proa::new(&api).args(["--shutdown-timeout", "2s"]).args(bash("exit 3".into())).spawn();
        let done = proa.wait(BOUND);
        assert_eq!(done.code(), 3, "{fault:?}: {}", done.stderr);
        assert!(done.elapsed < Duration::from_secs(4), "{fault:?}: {:?}", done.elapsed);
        assert!(done.stderr.contains("still running at the shutdown timeout"), "{fault:?}: {}", done.stderr);
    }
}

/// Issue 26 §3: a SIGTERM during a first GET that hangs: proa cancels its own request, which is no failure, so no
/// "request to the API server failed … retrying" line, and it ends within its bound with 143.
#[test]
fn a_request_proa_cancelled_itself_is_not_logged_as_a_failure() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.push_fault(Route::Get, Fault::Hang);
    // A shutdown endpoint that never answers keeps proa alive after the signal, until the kubelet's deadline.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/quitquitquit", hung.local_addr().unwrap());
    let proa = Proa::new(&api).args(["-p", &url]).args(bash("exit 0".into())).spawn();
    api.wait_for_request(BOUND, |r| r.route == Some(Route::Get));
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert!(done.stderr.contains("exiting before the kubelet's SIGKILL"), "{}", done.stderr);
    assert!(!done.stderr.contains("request to the API server failed"), "{}", done.stderr);
    assert!(!done.stderr.contains("retrying"), "{}", done.stderr);
}
