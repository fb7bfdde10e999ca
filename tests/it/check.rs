//! `proa --check` (DESIGN.md "Other roles"): run inside the Pod, it reports line by line on stdout (ok / FAIL) whether proa could do
//! its job, against the test API server: configuration, connection and TLS, token, RBAC through
//! SelfSubjectAccessReviews, the containers it would wait for, and the restart policy. Exit 0 or 125.

use std::time::Duration;

use crate::lifecycle::job_pod;
use crate::support::apiserver::{ApiServer, Fault, Route};
use crate::support::machine;
use crate::support::proa::{Finished, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(15);

fn check(api: &ApiServer, args: &[&str]) -> Finished {
    Proa::new(api).args(["--check"]).args(args).spawn().wait(BOUND)
}

/// The one stdout line that contains `text`; panics with stdout otherwise.
fn line<'a>(done: &'a Finished, text: &str) -> &'a str {
    let found: Vec<&str> = done.stdout.lines().filter(|l| l.contains(text)).collect();
    assert_eq!(found.len(), 1, "expected one line with {text:?} in:\n{}", done.stdout);
    found[0]
}

#[test]
fn all_in_order_is_ok_line_by_line_and_exits_0() {
    let api = ApiServer::start(job_pod(&["envoy"], &["proxy"], "Never"));
    let done =
        check(&api, &["--container", "main", "--sidecar", "istio", "-p", "envoy=http://127.0.0.1:9901/quitquitquit"]);
    assert_eq!(done.code(), 0, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    assert!(done.stdout.lines().all(|l| l.starts_with("ok    ")), "{}", done.stdout);
    line(&done, &format!("API server https://127.0.0.1:{} (from KUBERNETES_SERVICE_HOST", api.port()));
    line(&done, "namespace jobs (from POD_NAMESPACE)");
    line(&done, "pod job-abc12 (from POD_NAME)");
    line(&done, "reachable, TLS verified against");
    line(&done, &format!("service account token and ca.crt in {} ", api.service_account_dir().display()));
    line(&done, "(from PROA_SERVICE_ACCOUNT_DIR)");
    line(&done, "/token accepted");
    line(&done, "RBAC allows get on pod job-abc12 in namespace jobs");
    line(&done, "RBAC allows watch on pod job-abc12 in namespace jobs");
    line(&done, "own container main (from --container)");
    line(&done, "waits for container envoy (regular sidecar");
    line(&done, "waits for container proxy (native sidecar");
    line(&done, "restartPolicy Never: proa stops the sidecars after the program exits");
    line(&done, "shutdown POST http://127.0.0.1:9901/quitquitquit: sent");
    line(
        &done,
        "shutdown POST http://127.0.0.1:15020/quitquitquit: not sent here, the pod has no container istio-proxy",
    );
    line(&done, "sidecars awaited within 30s");

    let reviews: Vec<_> = api.requests().into_iter().filter(|r| r.route == Some(Route::AccessReview)).collect();
    let verbs: Vec<Option<String>> = reviews.iter().map(|r| r.review_verb()).collect();
    assert_eq!(verbs, [Some("get".to_string()), Some("watch".to_string())], "{}", api.request_log());
    let spec: serde_json::Value = serde_json::from_str(&reviews[0].body).unwrap();
    assert_eq!(
        spec["spec"]["resourceAttributes"],
        serde_json::json!({"namespace": "jobs", "verb": "get", "resource": "pods", "name": "job-abc12"})
    );
    assert_eq!(api.requests().iter().filter(|r| r.route == Some(Route::Get)).count(), 1);
}

#[test]
fn a_denied_watch_fails_naming_the_verb_and_the_rule_and_exits_125() {
    let api = ApiServer::start(job_pod(&[], &["proxy"], "Never"));
    api.deny("watch");
    let log = std::env::temp_dir().join(format!("proa-it-check-termination-{}", std::process::id()));
    std::fs::write(&log, "").unwrap();
    let done = check(&api, &["--container", "main", "--termination-log", log.to_str().unwrap()]);
    assert_eq!(done.code(), 125, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    line(&done, "ok    RBAC allows get on pod job-abc12");
    let failed = line(&done, "watch on pod");
    assert_eq!(
        failed,
        r#"FAIL  RBAC does not allow watch on pod job-abc12 in namespace jobs (no RBAC policy matched): add the Role rule {apiGroups: [""], resources: ["pods"], verbs: ["get", "watch"]} and bind it to the Pod's service account"#
    );
    // The other checks still run, and the check leaves the container's termination message alone.
    line(&done, "ok    waits for container proxy (native sidecar");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_forbidden_get_fails_naming_the_rule_and_exits_125() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.push_fault(Route::Get, Fault::Status(403));
    let done = check(&api, &["--container", "main", "-p", "http://127.0.0.1:15020/quitquitquit"]);
    assert_eq!(done.code(), 125, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    let failed = line(&done, "cannot read pod job-abc12");
    assert!(failed.starts_with("FAIL  "), "{failed}");
    assert!(failed.contains(r#"may not get pods in namespace "jobs""#), "{failed}");
    assert!(failed.contains(r#"verbs: ["get", "watch"]"#), "{failed}");
}

#[test]
fn a_rejected_token_fails_after_the_connection_checks() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let env_dir = api.service_account_dir();
    api.set_token("another");
    let done = Proa::new(&api)
        .env("PROA_SERVICE_ACCOUNT_DIR", env_dir.to_str().unwrap())
        .args(["--check"])
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    assert!(line(&done, "reachable, TLS verified").starts_with("ok    API server"), "{}", done.stdout);
    assert!(line(&done, "rejected (401)").starts_with("FAIL  token "), "{}", done.stdout);
}

#[test]
fn a_regular_sidecar_without_a_shutdown_action_fails() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let done = check(&api, &["--container", "main"]);
    assert_eq!(done.code(), 125, "{}", done.stdout);
    let failed = line(&done, "no shutdown action stops container envoy");
    assert!(failed.starts_with("FAIL  ") && failed.contains("-p envoy=URL"), "{failed}");
}

#[test]
fn outside_a_cluster_check_says_what_to_set() {
    let done = Proa::bare().args(["--check"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert!(done.stdout.starts_with("FAIL  KUBERNETES_SERVICE_HOST is not set"), "{}", done.stdout);
    assert!(done.stdout.contains("--wait-http URL or --wait-tcp HOST:PORT"), "{}", done.stdout);
}

#[test]
fn no_api_mode_checks_each_endpoint_once() {
    let ready = Sidecar::start();
    let unready = Sidecar::start_unready();
    let done = Proa::bare()
        .args(["--check", "--wait-http", &ready.url("/ready"), "--wait-http", &unready.url("/ready")])
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stdout);
    line(&done, "ok    no-API mode");
    assert_eq!(line(&done, &ready.url("/ready")), format!("ok    {} is ready", ready.url("/ready")));
    assert!(
        line(&done, &unready.url("/ready"))
            .starts_with(&format!("FAIL  {} is not ready (answered 503)", unready.url("/ready")))
    );
    unready.set_ready();
    let done = Proa::bare().args(["--check", "--wait-http", &unready.url("/ready")]).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stdout);
}

#[test]
fn under_kubectl_exec_the_check_judges_pid_1s_command_line() {
    if !machine::pid_namespaces("under_kubectl_exec_the_check_judges_pid_1s_command_line") {
        return;
    }
    // The main container runs `/proa -p URL -- bash -c SCRIPT` as PID 1, with PROA_SHUTDOWN_TIMEOUT in its
    // environment, next to a regular sidecar `proxy` that is not ready yet, so PID 1 keeps waiting.
    let quit = "http://127.0.0.1:15000/quitquitquit";
    let script = "exit 0";
    let mut pod = job_pod(&["proxy"], &[], "Never");
    pod["spec"]["containers"][0]["command"] = serde_json::json!(["/proa", "-p", quit, "--", "bash", "-c", script]);
    let api = ApiServer::start(pod);
    let main = Proa::new(&api)
        .env("PROA_SHUTDOWN_TIMEOUT", "17s")
        .pid1()
        .args(["-p", quit, "--", "bash", "-c", script])
        .spawn();
    api.wait_open_watches(1, BOUND);
    // `kubectl exec POD -c main -- /proa --check`: no flags, and the container's environment without PID 1's extra.
    let done = Proa::new(&api).exec_into(main.proa_pid()).args(["--check"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    assert!(done.stdout.lines().all(|l| l.starts_with("ok    ")), "{}", done.stdout);
    let judged = line(&done, "judging the command line of PID 1");
    assert!(judged.ends_with(&format!("proa -p {quit} -- bash -c {script} (with PID 1's environment)")), "{judged}");
    line(&done, "own container main (found from the command line of PID 1)");
    line(&done, "waits for container proxy (regular sidecar");
    line(&done, &format!("shutdown POST {quit}: sent"));
    line(&done, "sidecars awaited within 17s");
    main.signal(libc::SIGTERM);
    assert_eq!(main.wait(BOUND).code(), 143);
}

#[test]
fn each_waited_containers_readiness_is_said_with_how_proa_learns_it() {
    let mut pod = job_pod(&["envoy", "db"], &["proxy"], "Never");
    pod["spec"]["containers"][1]["readinessProbe"] = serde_json::json!({"httpGet": {"path": "/ready", "port": 15000}});
    pod["spec"]["containers"][2]["readinessProbe"] = serde_json::json!({"exec": {"command": ["pg_isready"]}});
    let api = ApiServer::start(pod);
    let done = check(
        &api,
        &["--container", "main", "-p", "envoy=http://127.0.0.1:15000/quit", "-p", "db=http://127.0.0.1:1/quit"],
    );
    assert_eq!(
        line(&done, "readiness of container envoy"),
        "ok    readiness of container envoy: its readinessProbe (GET :15000/ready) and the API"
    );
    assert_eq!(
        line(&done, "readiness of container db"),
        "ok    readiness of container db: the API only (an exec probe runs inside the container)"
    );
    assert_eq!(
        line(&done, "readiness of container proxy"),
        "ok    readiness of container proxy: the API only (no readinessProbe)"
    );
    let off = check(&api, &["--container", "main", "--direct-probe", "false", "-p", "http://127.0.0.1:1/quit"]);
    assert_eq!(
        line(&off, "readiness of container envoy"),
        "ok    readiness of container envoy: the API only (--direct-probe false)"
    );
}
