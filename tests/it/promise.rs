//! The promise under adversarial input (every step of DESIGN.md). One regression test per defect an adversarial
//! review found (issue 10), each running the real binary against the test API server with real sidecars and
//! programs. The seeded simulation (`src/lifecycle/simulation`) looks for more of the same class.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::{ApiServer, Fault, Route};
use crate::support::port::ClosedPort;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(20);

/// A Job Pod whose `envoy` is already running and ready.
fn ready_pod(grace: Value) -> Value {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["spec"]["terminationGracePeriodSeconds"] = grace;
    pod["status"]["containerStatuses"][1] = json!({"name": "envoy", "ready": true, "state": {"running": {}}});
    pod
}

#[test]
fn a_grace_period_of_zero_still_sends_every_shutdown_request() {
    let api = ApiServer::start(ready_pod(json!(0)));
    let sidecar = Sidecar::start();
    let done =
        Proa::new(&api).args(["-p", &sidecar.url("/quitquitquit")]).args(bash("exit 3".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "the POST was sent: {}", done.stderr);
}

#[test]
fn a_shutdown_timeout_of_zero_retries_a_refusing_sidecar_within_the_actions_budget() {
    let api = ApiServer::start(ready_pod(json!(30)));
    let port = ClosedPort::reserve();
    let url = format!("http://{}/quitquitquit", port.address());
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["--shutdown-timeout", "0", "-p", &url])
        .args(bash(format!("{}; exit 4", marker.say("exiting"))))
        .spawn();
    // The sidecar comes up a moment after the program exited: the first attempts are refused.
    marker.wait_for("exiting", BOUND);
    proa.wait_for_stderr(BOUND, |log| log.contains("refused (attempt 1 of 4)"));
    let sidecar = Sidecar::serve(port.listen());
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 4, "{}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "the retry reached it: {}", done.stderr);
}

#[test]
fn a_shutdown_endpoint_that_redirects_is_not_followed() {
    let api = ApiServer::start(ready_pod(json!(30)));
    let redirecting = Sidecar::start_redirecting("https://example.invalid/quitquitquit");
    let done = Proa::new(&api)
        .args(["--shutdown-timeout", "1s", "-g", &redirecting.url("/quit")])
        .args(bash("exit 6".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 6, "{}", done.stderr);
    assert_eq!(redirecting.hits().len(), 1);
    assert!(
        done.stderr.contains("answered 302 to https://example.invalid/quitquitquit (redirects are not followed)"),
        "{}",
        done.stderr
    );
}

#[test]
fn a_panic_in_any_thread_keeps_the_programs_code() {
    // Debug builds panic on purpose where PROA_TEST_PANIC says: a shutdown thread, after the program exited 7.
    let api = ApiServer::start(ready_pod(json!(30)));
    let sidecar = Sidecar::start();
    let done = Proa::new(&api)
        .env("PROA_TEST_PANIC", "shutdown")
        .args(["-p", &sidecar.url("/quit")])
        .args(bash("exit 7".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert_eq!(done.stderr.matches("internal error").count(), 1, "one line: {}", done.stderr);
    // The watcher, before the program could run: 125.
    let mut marker = Marker::start();
    let done = Proa::new(&api).env("PROA_TEST_PANIC", "watch").args(bash(marker.say("started"))).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program never ran");
}

#[test]
fn a_sidecar_whose_args_end_like_proas_is_not_taken_for_proas_container() {
    // proa's container gives no command (the image's ENTRYPOINT runs proa); envoy's args end like proa's own.
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["spec"]["containers"][0] = json!({"name": "main"});
    pod["spec"]["containers"][1]["args"] = json!(["--verbose"]);
    let api = ApiServer::start(pod);
    let mut marker = Marker::start();
    let script = format!("{}; exit 0", marker.say("started"));
    let proa = Proa::new(&api).args(["--", "bash", "-c", &script, "--verbose"]).spawn();
    api.wait_open_watches(1, BOUND);
    let ready = api.set_ready("envoy");
    assert!(marker.wait_for("started", BOUND).at > ready, "the program started before envoy was ready");
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains("guessing that proa runs in container main"), "{}", done.stderr);
}

#[test]
fn after_sigterm_proa_exits_with_the_programs_code_as_soon_as_it_exits() {
    // A 6 s grace; the program takes 3 s to clean up after SIGTERM. The kubelet (1.36) reports no container
    // terminated until all have stopped, so envoy's status never changes.
    let api = ApiServer::start(ready_pod(json!(6)));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let script = format!(
        "trap '{}; sleep 3; exit 0' TERM; {}; {}; {}",
        marker.say("cleaning-up"),
        marker.open_3(),
        marker.say_on_3("started"),
        marker.block()
    );
    let proa = Proa::new(&api).args(["-p", &sidecar.url("/quit")]).args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    let before = api.requests().len();
    let signalled = Instant::now();
    proa.signal(libc::SIGTERM);
    marker.wait_for("cleaning-up", BOUND);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "the program's code, not the kubelet's 137: {}", done.stderr);
    let took = done.at - signalled;
    assert!(took >= Duration::from_secs(3) && took < Duration::from_millis(4500), "took {took:?}: {}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "the shutdown request was still sent");
    // No watch for sidecars the kubelet stops, and no request while the program runs: at most a read of the Pod
    // once it has exited, for a deletion's deadline (proa may exit before the read does).
    let after: Vec<_> = api.requests().into_iter().skip(before).collect();
    assert!(after.iter().all(|r| r.route == Some(Route::Get)) && after.len() <= 1, "{}", api.request_log());
    assert!(after.iter().all(|r| r.at >= signalled + Duration::from_secs(3)), "read while the program ran");
}

#[test]
fn a_sigterm_while_waiting_exits_143_within_the_grace_period() {
    // The kubelet's SIGTERM while proa waits; the shutdown endpoint never answers. proa never waits past the
    // 6 s grace (less its margin), where the kubelet would SIGKILL it and lose the code.
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(6);
    let api = ApiServer::start(pod);
    let silent = Sidecar::start_silent();
    let proa = Proa::new(&api).args(["-p", &silent.url("/quit")]).args(bash("exit 0".into())).spawn();
    api.wait_open_watches(1, BOUND);
    let signalled = Instant::now();
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert_eq!(silent.hits().len(), 1, "the shutdown request was sent");
    let took = done.at - signalled;
    assert!(took >= Duration::from_millis(4500) && took < Duration::from_secs(6), "took {took:?}: {}", done.stderr);
}

#[test]
fn a_sidecar_dead_in_the_first_read_ends_proa_at_once() {
    let mut pod = job_pod(&["envoy", "proxy"], &[], "Never");
    pod["status"]["containerStatuses"][1] =
        json!({"name": "envoy", "ready": false, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}});
    pod["status"]["containerStatuses"][2] =
        json!({"name": "proxy", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let api = ApiServer::start(pod);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let done =
        Proa::new(&api).args(["-p", &sidecar.url("/quit")]).args(bash(marker.say("started"))).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.elapsed < Duration::from_secs(3), "took {:?} (the shutdown timeout is 30 s)", done.elapsed);
    assert!(!done.stderr.contains("still running"), "{}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "shutdown still runs");
    assert!(marker.all().is_empty(), "the program never runs");
}

#[test]
fn a_redirect_from_the_api_server_is_never_followed() {
    let api = ApiServer::start(ready_pod(json!(30)));
    let elsewhere = Sidecar::start();
    for _ in 0..3 {
        api.push_fault(Route::Get, Fault::Redirect(302, elsewhere.url("/api/v1/namespaces/jobs/pods/job-abc12")));
    }
    let mut marker = Marker::start();
    let done = Proa::new(&api).args(bash(marker.say("started"))).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("API server answered 302, a redirect to http://127.0.0.1:"), "{}", done.stderr);
    assert!(elsewhere.hits().is_empty(), "nothing went where the redirect pointed");
    assert!(marker.all().is_empty(), "the program never runs");
    assert_eq!(api.requests().len(), 3, "three tries, then 125: {}", api.request_log());
}

/// A Pod as large as a real API server stores: 1.5 MiB of `<` in one annotation, which it serves as 9 MB of
/// `\u003c`; skimming drops it whole.
fn huge_pod() -> Value {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["metadata"]["annotations"] = json!({"example.com/blob": "<".repeat(1536 * 1024)});
    pod
}

/// As large, but in 150 annotations of 10 KiB of `<`: 60 KB each as JSON, just under what skimming drops, so
/// proa holds all 9 MB of them at once. The worst shape a Pod within etcd's limit can take.
fn many_medium_strings_pod() -> Value {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    let blob = "<".repeat(10 * 1024);
    let annotations: serde_json::Map<String, Value> =
        (0..150).map(|i| (format!("example.com/blob-{i}"), json!(blob))).collect();
    pod["metadata"]["annotations"] = Value::Object(annotations);
    pod
}

#[test]
fn a_9_mb_pod_is_read_by_get_and_by_watch_in_bounded_memory() {
    for (shape, pod) in [("one huge string", huge_pod()), ("150 strings of 60 KB", many_medium_strings_pod())] {
        let api = ApiServer::start(pod);
        let mut marker = Marker::start();
        let proa = Proa::new(&api).args(bash(marker.say("started"))).spawn();
        api.wait_open_watches(1, Duration::from_secs(60));
        let ready = api.set_ready("envoy");
        assert!(marker.wait_for("started", Duration::from_secs(60)).at > ready, "{shape}");
        // Read while proa waits for envoy to exit: the GET and the ready event, 9 MB each, are behind it.
        let peak = proa.peak_rss_kib();
        api.set_terminated("envoy", 0);
        let done = proa.wait(Duration::from_secs(60));
        assert_eq!(done.code(), 0, "{shape}: {}", done.stderr);
        assert!(peak < 32 * 1024, "peak RSS {peak} KiB for a 9 MB Pod of {shape}");
    }
}

#[test]
fn a_grace_period_near_i64_max_is_capped_not_a_panic() {
    let api = ApiServer::start(ready_pod(json!(i64::MAX)));
    let sidecar = Sidecar::start();
    let proa = Proa::new(&api).args(["-p", &sidecar.url("/quit")]).args(bash("exit 9".into())).spawn();
    sidecar.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 9, "{}", done.stderr);
    assert!(done.stderr.contains("is over a year: proa waits a year at most"), "{}", done.stderr);
}

#[test]
fn malformed_environment_is_125_naming_the_variable() {
    let api = ApiServer::start(ready_pod(json!(30)));
    for (var, value) in
        [("KUBERNETES_SERVICE_PORT", "443x"), ("POD_NAME", "job abc"), ("KUBERNETES_SERVICE_HOST", "api server")]
    {
        let done = Proa::new(&api).env(var, value).args(["--", "true"]).spawn().wait(BOUND);
        assert_eq!(done.code(), 125, "{var}: {}", done.stderr);
        assert!(done.stderr.contains(&format!("invalid {var} {value:?}")), "{}", done.stderr);
        assert!(done.elapsed < Duration::from_secs(2), "{var}: no retry loop ({:?})", done.elapsed);
    }
    assert!(api.requests().is_empty(), "{}", api.request_log());
}

#[test]
fn a_deleted_pod_and_its_replacement_never_start_the_program() {
    for missed_the_deletion in [false, true] {
        let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
        let mut marker = Marker::start();
        let proa = Proa::new(&api).args(bash(marker.say("started"))).spawn();
        api.wait_open_watches(1, BOUND);
        if !missed_the_deletion {
            api.delete_pod();
        }
        let mut replacement = ready_pod(json!(30));
        replacement["metadata"]["uid"] = json!("another-uid");
        api.replace_pod(replacement);
        let done = proa.wait(BOUND);
        assert_eq!(done.code(), 143, "{}", done.stderr);
        assert!(done.stderr.contains("the pod is being deleted (or was replaced)"), "{}", done.stderr);
        assert!(marker.all().is_empty(), "the program never runs (missed the DELETED event: {missed_the_deletion})");
    }
}

#[test]
fn a_sidecar_that_restarts_itself_is_not_dead_in_a_never_pod() {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["spec"]["containers"][1]["restartPolicy"] = json!("Always");
    pod["status"]["containerStatuses"][1] =
        json!({"name": "envoy", "ready": false, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}});
    let api = ApiServer::start(pod);
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(marker.say("started"))).spawn();
    api.wait_open_watches(1, BOUND);
    let ready = api.set_ready("envoy");
    assert!(marker.wait_for("started", BOUND).at > ready);
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn proas_own_container_restarting_on_failure_keeps_its_sidecars() {
    let mut pod = ready_pod(json!(30));
    pod["spec"]["containers"][0]["restartPolicy"] = json!("OnFailure");
    let api = ApiServer::start(pod);
    let sidecar = Sidecar::start();
    let done = Proa::new(&api).args(["-p", &sidecar.url("/quit")]).args(bash("exit 3".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert!(sidecar.hits().is_empty(), "the kubelet restarts proa's container: sidecars stay up");
    assert!(done.stderr.contains("(restartPolicy OnFailure, exit code 3)"), "{}", done.stderr);
}

#[test]
fn retry_after_zero_still_backs_off() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    for _ in 0..4 {
        api.push_fault(Route::Get, Fault::RetryAfter(429, 0));
    }
    let done = Proa::new(&api).args(["--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let gets = api.wait_for_requests(BOUND, 5, |r| r.route == Some(Route::Get));
    let gaps: Vec<Duration> = gets.windows(2).map(|w| w[1].at - w[0].at).collect();
    // The jittered steps are at least 100, 200, 400 and 800 ms.
    for (gap, least) in gaps.iter().zip([100, 200, 400, 800].map(Duration::from_millis)) {
        assert!(*gap >= least, "gaps {gaps:?}");
    }
}

#[test]
fn credentials_in_urls_are_never_shown() {
    let api = ApiServer::start(ready_pod(json!(30)));
    let refused = ClosedPort::reserve();
    let url = format!("http://user:s3cret@{}/quit", refused.address());
    let done =
        Proa::new(&api).args(["-p", &url, "--shutdown-timeout", "1s"]).args(bash("exit 0".into())).spawn().wait(BOUND);
    assert!(done.stderr.contains("http://***@127.0.0.1"), "{}", done.stderr);
    let check = Proa::new(&api).args(["--check", "-p", &url]).spawn().wait(BOUND);
    assert!(check.stdout.contains("POST http://***@127.0.0.1"), "{}", check.stdout);
    // A usage error echoes the value it refuses, into the log and the termination message.
    let log = std::env::temp_dir().join(format!("proa-termination-{}", std::process::id()));
    std::fs::write(&log, "").unwrap();
    let bad = Proa::bare()
        .env("PROA_TERMINATION_LOG", log.to_str().unwrap())
        .args(["--wait-http", "https://user:s3cret@example.com/ready", "--", "true"])
        .spawn()
        .wait(BOUND);
    assert_eq!(bad.code(), 125);
    let message = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    for text in [&done.stderr, &check.stdout, &check.stderr, &bad.stderr, &message] {
        assert!(!text.contains("s3cret"), "a credential was shown: {text}");
    }
    assert!(message.contains("https://***@example.com/ready"), "{message}");
}

#[test]
fn one_token_holder_serves_the_shutdown_watch_too() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    // The token rotates; the first watcher learns it from a 401 when its stream is cut.
    std::fs::write(api.service_account_dir().join("token"), "rotated").unwrap();
    api.set_token("rotated");
    api.end_watches();
    api.wait_for_request(BOUND, |r| r.status == 401);
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    let ready_version = api.resource_version();
    marker.wait_for("started", BOUND);
    // The shutdown watch resumes from the ready snapshot's version, sending the rotated token at once.
    let shutdown_watch = api.wait_for_request(BOUND, |r| {
        r.route == Some(Route::Watch) && r.resource_version() == Some(ready_version.as_str())
    });
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
    assert_eq!(shutdown_watch.bearer_token(), Some("rotated"), "{}", api.request_log());
    let unauthorized = api.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(unauthorized, 1, "{}", api.request_log());
}

// Found by the adversarial review of the fixes above.

/// proa's own RFC 3339 formatting (a pure file that imports nothing of proa's).
#[path = "../../src/clock.rs"]
#[allow(dead_code)]
pub(crate) mod clock;

/// `at` as the API server writes a timestamp: RFC 3339 in UTC, whole seconds (the fraction dropped).
fn api_timestamp(at: SystemTime) -> String {
    format!("{}Z", &clock::rfc3339_millis(at)[..19])
}

#[test]
fn a_deletion_shorter_than_the_spec_grace_ends_shutdown_before_its_kill() {
    // The spec gives 30 s, but `kubectl delete --grace-period=3` (or a preStop hook that used up the rest) leaves
    // 3: the kubelet kills at the deletionTimestamp. proa reads the Pod after the SIGTERM and is gone before then,
    // with the program's code, though the shutdown endpoint never answers.
    let api = ApiServer::start(ready_pod(json!(30)));
    let silent = Sidecar::start_silent();
    let mut marker = Marker::start();
    let (started, block) = (marker.say_on_3("started"), marker.block());
    let script = format!("trap 'sleep 0.5; exit 5' TERM; {}; {started}; {block}", marker.open_3());
    let proa = Proa::new(&api).args(["-p", &silent.url("/quit")]).args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    let (now, wall) = (Instant::now(), SystemTime::now());
    let timestamp = api_timestamp(wall + Duration::from_secs(3));
    let kill = now
        + (UNIX_EPOCH + Duration::from_secs(3 + wall.duration_since(UNIX_EPOCH).unwrap().as_secs()))
            .duration_since(wall)
            .unwrap();
    api.update_pod(|pod| {
        pod["metadata"]["deletionTimestamp"] = json!(timestamp);
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(3);
    });
    let signalled = Instant::now();
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 5, "{}", done.stderr);
    assert_eq!(silent.hits().len(), 1, "the shutdown request was sent");
    assert!(done.at < kill, "exited {:?} after the kill", done.at - kill);
    // It waited for the answer until the kubelet's 2 s after its SIGTERM, less a quarter, at least.
    assert!(done.at - signalled >= Duration::from_millis(1400), "gave up after {:?}", done.at - signalled);
    // The read came once the program had exited: no API traffic while it runs.
    let read = api.requests().into_iter().find(|r| r.at > signalled).expect("the Pod was read");
    assert_eq!(read.route, Some(Route::Get), "{}", api.request_log());
    assert!(read.at >= signalled + Duration::from_millis(500), "read while the program ran: {}", api.request_log());
}

#[test]
fn an_event_proa_cannot_read_is_not_read_again_and_again() {
    // A MODIFIED event whose Pod does not decode (a type proa does not expect), then a good one. Resuming the
    // watch from before the bad event would replay it forever; proa watches the current state instead.
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exit 0", marker.say("started")))).spawn();
    api.wait_open_watches(1, BOUND);
    api.update_pod(|pod| pod["status"]["containerStatuses"][1]["ready"] = json!("yes"));
    let bad_version: u64 = api.resource_version().parse().unwrap();
    let ready = api.set_ready("envoy");
    assert!(marker.wait_for("started", BOUND).at > ready, "{}", proa.stderr());
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let log = api.request_log();
    assert!(done.stderr.contains("invalid type"), "the bad event was read and reported: {}", done.stderr);
    assert!(
        !api.requests().iter().any(|r| r.route == Some(Route::Watch)
            && r.at > ready
            && r.resource_version().and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v < bad_version)),
        "resumed from before the bad event: {log}"
    );
}
