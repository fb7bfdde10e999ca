//! The whole lifecycle (DESIGN.md "What happens, in order") against a real kube-apiserver and etcd (`support::envtest`), with a real
//! ServiceAccount token (TokenRequest) and a Role granting only `get` and `watch` on pods. The test plays the
//! scheduler and the kubelet: it binds the Pod, writes its container statuses, and sends proa the kubelet's SIGTERM.
//! Each test asserts what a user sees: the exit code, when the program started, what the sidecar was sent, stderr.
//! Only in the default build: `make test` runs the suite again with `--features kill`, which changes nothing here.

use std::time::{Duration, Instant, SystemTime};

use crate::lifecycle::bash;
// proa's own RFC 3339 parsing, for the real `deletionTimestamp`.
use crate::promise::clock;
use crate::support::envtest::{self, Namespace};
use crate::support::proa::{Finished, Marker, Proa, Running};
use crate::support::sidecar::Sidecar;

/// Generous bound for anything that should happen "soon" (the real server is slower than the test one).
const BOUND: Duration = Duration::from_secs(30);
/// The Role proa needs (DESIGN.md "In-cluster configuration").
const GET_WATCH: &[&str] = &["get", "watch"];
const POD: &str = "job-abc12";

/// A namespace of the running test's own on the shared cluster, where proa's Role grants `verbs` on pods; `None`
/// after a loud skip (no assets, and `CI` unset).
fn namespace(verbs: &[&str]) -> Option<Namespace> {
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().map_or("envtest", |name| name.trim_start_matches("envtest::"));
    Some(envtest::cluster(test)?.namespace(test, verbs))
}

/// proa for the Pod `POD` of `ns`, as its container `main`, with debug logs.
fn proa(ns: &Namespace) -> Proa {
    Proa::with_env(ns.env(POD)).args(["--container", "main"])
}

/// Blocks until proa has its watch open (after the GET), so that what the test changes next reaches it as an event.
fn watching(proa: &Running) {
    proa.wait_for_stderr(BOUND, |err| err.contains("watch: stream open from resourceVersion"));
}

/// Panics unless proa logged nothing at warn or error level.
fn no_warnings(done: &Finished) {
    let bad: Vec<&str> =
        done.stderr.lines().filter(|l| l.starts_with("proa: WARN") || l.starts_with("proa: ERROR")).collect();
    assert!(bad.is_empty(), "unexpected warnings {bad:?} in:\n{}", done.stderr);
}

#[test]
fn a_regular_sidecar_gates_the_start_and_is_stopped_then_awaited() {
    let Some(ns) = namespace(GET_WATCH) else { return };
    let pod = ns.create_pod(POD, &["envoy"], &[]);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = proa(&ns)
        .args(["-p", &format!("envoy={}", sidecar.url("/quitquitquit"))])
        .args(bash(format!("{}; exit 7", marker.say("started"))))
        .spawn();
    watching(&proa);
    let ready = pod.set_ready("envoy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready, "the program started before the sidecar was ready");
    let hits = sidecar.wait_for("POST", "/quitquitquit", 1, BOUND);
    assert!(hits[0].at > ready);
    // proa watches again, from where it left off, until the kubelet reports the sidecar terminated, then exits with
    // the program's code.
    proa.wait_for_stderr(BOUND, |err| {
        err.find("shutting down sidecars").is_some_and(|at| err[at..].contains("watch: stream open from"))
    });
    let terminated = pod.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(done.at > terminated, "proa exited before the sidecar terminated:\n{}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "{:?}", sidecar.hits());
    no_warnings(&done);
}

#[test]
fn a_native_sidecar_gates_the_start_and_the_kubelet_stops_it() {
    let Some(ns) = namespace(GET_WATCH) else { return };
    let pod = ns.create_pod(POD, &[], &["proxy"]);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa =
        proa(&ns).args(["-g", &sidecar.url("/quit")]).args(bash(format!("{}; exit 3", marker.say("started")))).spawn();
    watching(&proa);
    let ready = pod.set_ready("proxy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready, "the program started before the native sidecar was ready");
    // The only sidecar is native: no request (it would only restart it), and no wait for it to terminate.
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert!(done.at - started.at < Duration::from_secs(5), "{:?}", done.at - started.at);
    assert!(sidecar.hits().is_empty(), "{:?}", sidecar.hits());
}

#[test]
fn a_wait_across_the_periodic_bookmark_starts_at_once_and_warns_nothing() {
    // The server sends a BOOKMARK about once a minute when the Pods' resourceVersion moved on (here, another Pod
    // changed; a cluster's never stand still), and ends the watch at proa's timeoutSeconds (60 to 120 s): proa reads the
    // bookmark for its resourceVersion alone, watches again from it, and still starts the program at once.
    let Some(ns) = namespace(GET_WATCH) else { return };
    let pod = ns.create_pod(POD, &["envoy"], &[]);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = proa(&ns)
        .env("RUST_LOG", "proa=debug,proa::watch=trace")
        .args(["-p", &format!("envoy={}", sidecar.url("/quitquitquit"))])
        .args(bash(marker.say("started")))
        .spawn();
    watching(&proa);
    ns.create_pod("neighbour", &[], &[]);
    let bookmark = "watch: bookmark at resourceVersion Some(\"";
    let again = "watch: stream open from resourceVersion ";
    // Bounded by two streams (each 60 to 120 s), should the first end before its bookmark.
    let err = proa.wait_for_stderr(Duration::from_secs(250), |err| {
        err.find(bookmark).is_some_and(|at| err[at..].contains(again))
    });
    // The new stream resumes from the last bookmark's resourceVersion (a stream of 60 to 120 s may get several).
    let first = err.find(again).unwrap() + again.len();
    let reopened = first + err[first..].find(again).unwrap();
    let at = err[..reopened].rfind(bookmark).unwrap() + bookmark.len();
    let version = &err[at..at + err[at..].find('"').unwrap()];
    assert!(err[reopened..].starts_with(&format!("{again}{version}\n")), "not resumed from {version}:\n{err}");
    let ready = pod.set_ready("envoy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready);
    assert!(started.at - ready < Duration::from_millis(500), "started {:?} after the readiness", started.at - ready);
    sidecar.wait_for_hits(1, BOUND);
    pod.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.elapsed > Duration::from_secs(55), "the wait did not span a bookmark: {:?}", done.elapsed);
    let warns: Vec<&str> = done.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warns.is_empty(), "{warns:?} in:\n{}", done.stderr);
    no_warnings(&done);
}

#[test]
fn a_graceful_deletion_while_waiting_is_143_and_the_program_never_runs() {
    let Some(ns) = namespace(GET_WATCH) else { return };
    let pod = ns.create_pod(POD, &["envoy"], &[]);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = proa(&ns)
        .args(["-p", &format!("envoy={}", sidecar.url("/quitquitquit"))])
        .args(bash(marker.say("started")))
        .spawn();
    watching(&proa);
    // `kubectl delete pod --wait=false`: the Pod is bound, so it stays, with a deletionTimestamp.
    let deleting = pod.delete(30);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string(), "{deleting}");
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert!(done.stderr.contains("the pod is being deleted (or was replaced)"), "{}", done.stderr);
    assert!(marker.all().is_empty() && !done.stderr.contains("started bash"), "the program must never run");
    // The shutdown actions are sent, but proa waits for no sidecar: the kubelet stops them.
    assert_eq!(sidecar.hits().len(), 1, "{:?}", sidecar.hits());
    assert!(pod.get()["metadata"]["deletionTimestamp"].is_string(), "the Pod is still there, being deleted");
}

#[test]
fn a_graceful_deletion_while_running_ends_with_the_programs_code_before_the_kill() {
    // While the program runs proa asks the API nothing, so the deletion reaches it as the kubelet's SIGTERM, which
    // the test sends. proa forwards it, reads the Pod once the program has exited, finds the real deletionTimestamp,
    // and exits with the program's code before it, though the shutdown endpoint never answers.
    let Some(ns) = namespace(GET_WATCH) else { return };
    let pod = ns.create_pod(POD, &["envoy"], &[]);
    let silent = Sidecar::start_silent();
    let mut marker = Marker::start();
    let (started, block) = (marker.say_on_3("started"), marker.block());
    let script = format!("trap 'exit 5' TERM; {}; {started}; {block}", marker.open_3());
    let proa = proa(&ns).args(["-p", &format!("envoy={}", silent.url("/quitquitquit"))]).args(bash(script)).spawn();
    watching(&proa);
    pod.set_ready("envoy");
    marker.wait_for("started", BOUND);

    let deleting = pod.delete(4);
    let timestamp = deleting["metadata"]["deletionTimestamp"].as_str().expect("a deletionTimestamp").to_string();
    let kill = clock::parse_rfc3339(&timestamp).expect("an RFC 3339 deletionTimestamp");
    // proa acts on nothing of it by itself: no shutdown request, the program still runs.
    silent.expect_no_hits_for(Duration::from_millis(500));
    assert!(!proa.stderr().contains("program exited"), "{}", proa.stderr());

    let signalled = Instant::now();
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    let exited = SystemTime::now();
    assert_eq!(done.code(), 5, "{}", done.stderr);
    assert!(done.stderr.contains("forwarding SIGTERM"), "{}", done.stderr);
    assert_eq!(silent.hits().len(), 1, "the shutdown request was sent: {:?}", silent.hits());
    assert!(exited < kill, "exited {:?} after the deletionTimestamp {timestamp}", exited.duration_since(kill));
    // It waited for the answer the kubelet's 2 s after its SIGTERM, less a quarter, at least.
    assert!(done.at - signalled >= Duration::from_millis(1400), "gave up after {:?}", done.at - signalled);
    assert!(!done.stderr.contains("waiting for sidecars envoy to exit"), "{}", done.stderr);
}

#[test]
fn a_role_without_watch_is_125_naming_the_rule() {
    let Some(ns) = namespace(&["get"]) else { return };
    ns.create_pod(POD, &["envoy"], &[]);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let done = proa(&ns)
        .args(["-p", &format!("envoy={}", sidecar.url("/quitquitquit"))])
        .args(bash(marker.say("started")))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    let rule = format!(
        "API server answered 403: the service account may not watch pods in namespace {:?}; grant a Role rule {}",
        ns.name, r#"{apiGroups: [""], resources: ["pods"], verbs: ["get", "watch"]} bound to it"#
    );
    assert!(done.stderr.contains(&rule), "expected {rule:?} in:\n{}", done.stderr);
    assert!(marker.all().is_empty(), "the program must never run");
    assert_eq!(sidecar.hits().len(), 1, "the sidecar is still told to stop: {:?}", sidecar.hits());
}

#[test]
fn a_pod_replaced_under_the_same_name_is_143() {
    let Some(ns) = namespace(GET_WATCH) else { return };
    let pod = ns.create_pod(POD, &["envoy"], &[]);
    let first_uid = pod.get()["metadata"]["uid"].as_str().unwrap().to_string();
    let mut marker = Marker::start();
    let sidecar = Sidecar::start();
    let proa = proa(&ns)
        .args(["-p", &format!("envoy={}", sidecar.url("/quitquitquit"))])
        .args(bash(marker.say("started")))
        .spawn();
    watching(&proa);
    // `kubectl delete --grace-period=0 --force`, then the same manifest again: a new uid, ready at once.
    let uid = pod.replace();
    assert_ne!(uid, first_uid);
    pod.set_ready("envoy");
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert!(done.stderr.contains("the pod is being deleted (or was replaced)"), "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program must never run");
}

#[test]
fn check_passes_with_get_and_watch_and_names_the_missing_rule() {
    let Some(ns) = namespace(GET_WATCH) else { return };
    ns.create_pod(POD, &["envoy"], &["proxy"]);
    let check =
        |ns: &Namespace| proa(ns).args(["--check", "-p", "envoy=http://127.0.0.1:9/quitquitquit"]).spawn().wait(BOUND);
    let done = check(&ns);
    assert_eq!(done.code(), 0, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    assert!(done.stdout.lines().all(|l| l.starts_with("ok    ")), "{}", done.stdout);
    let port = ns.cluster.port();
    let dir = ns.service_account_dir().display().to_string();
    let name = &ns.name;
    for line in [
        format!("ok    API server https://127.0.0.1:{port} reachable, TLS verified against {dir}/ca.crt"),
        format!("ok    token {dir}/token accepted"),
        format!("ok    RBAC allows get on pod {POD} in namespace {name}"),
        format!("ok    RBAC allows watch on pod {POD} in namespace {name}"),
        format!("ok    read pod {POD} in namespace {name}"),
    ] {
        assert!(done.stdout.lines().any(|l| l == line), "no line {line:?} in:\n{}", done.stdout);
    }
    assert!(done.stdout.contains("ok    waits for container envoy (regular sidecar"), "{}", done.stdout);
    assert!(done.stdout.contains("ok    waits for container proxy (native sidecar"), "{}", done.stdout);

    let Some(get_only) = namespace(&["get"]) else { return };
    get_only.create_pod(POD, &["envoy"], &["proxy"]);
    let done = check(&get_only);
    assert_eq!(done.code(), 125, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    let failed: Vec<&str> = done.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{}", done.stdout);
    assert!(
        failed[0].starts_with(&format!("FAIL  RBAC does not allow watch on pod {POD} in namespace {}", get_only.name)),
        "{}",
        done.stdout
    );
    let rule = r#"add the Role rule {apiGroups: [""], resources: ["pods"], verbs: ["get", "watch"]}"#;
    assert!(failed[0].ends_with(&format!("{rule} and bind it to the Pod's service account")), "{}", failed[0]);
}

#[test]
fn a_sidecar_endpoint_that_answers_starts_the_program_before_the_api_says_ready() {
    let Some(ns) = namespace(GET_WATCH) else { return };
    let envoy = Sidecar::start_unready();
    let probe = serde_json::json!({"httpGet": {"path": "/ready", "port": envoy.port()}, "periodSeconds": 10});
    let pod = ns.create_probed_pod(POD, &["envoy"], &[], &[("envoy", probe)]);
    let mut marker = Marker::start();
    let proa = proa(&ns)
        .args(["-p", &format!("envoy={}", envoy.url("/quitquitquit"))])
        .args(bash(format!("{}; exit 4", marker.say("started"))))
        .spawn();
    watching(&proa);
    let now = format!("{}Z", &clock::rfc3339_millis(SystemTime::now())[..19]);
    pod.set_running("envoy", &now);
    envoy.wait_for("GET", "/ready", 1, BOUND);
    let answers = envoy.set_ready();
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > answers, "the program started before the endpoint answered");
    let after = started.at - answers;
    assert!(after < Duration::from_millis(600), "started {after:?} after the endpoint answered");
    envoy.wait_for("POST", "/quitquitquit", 1, BOUND);
    pod.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 4, "{}", done.stderr);
    no_warnings(&done);
    assert!(done.stderr.contains("all containers ready after") && done.stderr.contains("(probed directly: envoy)"));
}
