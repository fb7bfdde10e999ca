//! The lifecycle scenarios of issue 2 (a–j): each asserts the exit code, the order of events, and what the API
//! server, the sidecars and the program saw.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::apiserver::{ApiServer, Fault, Route};
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

/// Generous bound for anything that should happen "soon": hit only when proa is broken.
pub(crate) const BOUND: Duration = Duration::from_secs(15);

/// A Job's Pod: proa's container `main` first, then `regular` sidecars; `native` ones as init containers with
/// `restartPolicy: Always`. Nothing is ready yet.
pub(crate) fn job_pod(regular: &[&str], native: &[&str], restart_policy: &str) -> Value {
    let mut containers = vec![json!({"name": "main", "command": ["/proa"]})];
    containers.extend(regular.iter().map(|name| json!({"name": name})));
    let init: Vec<Value> = native.iter().map(|name| json!({"name": name, "restartPolicy": "Always"})).collect();
    let statuses: Vec<Value> = std::iter::once("main")
        .chain(regular.iter().copied())
        .map(|name| json!({"name": name, "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-abc12", "namespace": "jobs", "uid": "4c1e7a52-9d3b-4f0e-8a61-2b7d5e9c0f13", "resourceVersion": "1"},
        "spec": {"restartPolicy": restart_policy, "terminationGracePeriodSeconds": 30, "containers": containers, "initContainers": init},
        "status": {"phase": "Pending", "containerStatuses": statuses},
    })
}

pub(crate) fn bash(script: String) -> Vec<String> {
    vec!["--".into(), "bash".into(), "-c".into(), script]
}

#[test]
fn a_program_waits_for_the_sidecar_then_shutdown_reaches_it() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["-g", &sidecar.url("/quitquitquit"), "--shutdown-http-post", &sidecar.url("/shutdown")])
        .args(bash(format!("{}; exit 7", marker.say("started"))))
        .spawn();

    api.wait_open_watches(1, BOUND);
    let ready_sent = api.set_ready("envoy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready_sent, "the program started before the ready event was sent");

    let hits = sidecar.wait_for_hits(2, BOUND);
    let mut seen: Vec<(String, String)> = hits.iter().map(|h| (h.method.clone(), h.path.clone())).collect();
    seen.sort();
    assert_eq!(seen, [("GET".to_string(), "/quitquitquit".to_string()), ("POST".into(), "/shutdown".into())]);
    // The marker stamps a line when its thread reads it, which may be after a hit: compare with the ready event.
    assert!(hits.iter().all(|h| h.at > ready_sent));

    // proa keeps waiting until the sidecar has terminated, then exits with the program's code.
    api.wait_open_watches(1, BOUND);
    let terminated = api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(done.at > terminated);
    // The log reads in the order things happened: ready, then started.
    let (ready, started) = (done.stderr.find("all containers ready"), done.stderr.find("INFO started bash"));
    assert!(ready.is_some() && ready < started, "{}", done.stderr);

    let requests = api.requests();
    let kinds: Vec<Route> = requests.iter().filter_map(|r| r.route).collect();
    assert_eq!(kinds[..2], [Route::Get, Route::Watch], "GET first, then watch: {requests:?}");
    let token = format!("Bearer {}", std::fs::read_to_string(api.service_account_dir().join("token")).unwrap().trim());
    for request in &requests {
        assert_eq!(request.authorization.as_deref(), Some(token.as_str()));
        assert!(request.user_agent.as_deref().is_some_and(|ua| ua.starts_with("proa/")), "{request:?}");
    }
    let gets = requests.iter().filter(|r| r.route == Some(Route::Get)).count();
    assert_eq!(gets, 1, "the shutdown watch resumes from the last version instead of reading the Pod again");
    let first_watch = requests.iter().find(|r| r.route == Some(Route::Watch)).unwrap();
    assert_eq!(first_watch.query.get("fieldSelector").map(String::as_str), Some("metadata.name=job-abc12"));
    // The watch resumes from the GET's resourceVersion (the server's first is "100").
    assert_eq!(first_watch.query.get("resourceVersion").map(String::as_str), Some("100"));
    assert!(!done.stderr.contains(token.trim_start_matches("Bearer ")), "the token must never be logged");
}

#[test]
fn b_native_sidecar_gates_the_start_but_is_not_waited_for_at_shutdown() {
    let api = ApiServer::start(job_pod(&[], &["proxy"], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash(marker.say("started"))).spawn();

    api.wait_open_watches(1, BOUND);
    let ready_sent = api.set_ready("proxy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready_sent);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    // The only sidecar is native: the kubelet stops it, and a request would only restart it (issue 12).
    assert!(sidecar.hits().is_empty(), "the shutdown GET was not sent");
    // The native sidecar keeps running (the kubelet stops it after proa), yet proa did not wait 30 s for it.
    assert!(done.at - started.at < Duration::from_secs(10), "{:?}", done.at - started.at);
}

#[test]
fn c_sidecar_dead_for_good_means_the_program_never_runs() {
    // Two sidecars: envoy dies for good, proxy is alive and must still be told to stop.
    let api = ApiServer::start(job_pod(&["envoy", "proxy"], &[], "Never"));
    let proxy = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(["-g", &proxy.url("/quit")]).args(bash(marker.say("started"))).spawn();

    api.wait_open_watches(1, BOUND);
    api.set_ready("proxy");
    api.set_terminated("envoy", 1);
    proxy.wait_for_hits(1, BOUND);
    let proxy_gone = api.set_terminated("proxy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("container envoy terminated"), "{}", done.stderr);
    assert!(done.at > proxy_gone, "proa waits for the live sidecar to exit");
    assert!(marker.all().is_empty() && !done.stderr.contains("started bash"), "the program must never run");
}

#[test]
fn d_ready_timeout_is_124_and_the_program_never_runs() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["--ready-timeout", "1s", "-g", &sidecar.url("/quit")])
        .args(bash(marker.say("started")))
        .spawn();

    // A real sidecar exits when told to: mark it terminated when the shutdown request arrives.
    sidecar.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(done.elapsed < Duration::from_secs(2), "took {:?}", done.elapsed);
    assert!(done.stderr.contains("containers not ready after"), "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program must never run");
}

#[test]
fn e_sigterm_is_forwarded_and_the_program_decides_the_code() {
    // The program dies of the forwarded SIGTERM: 143.
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(format!("{}; exec sleep 60", marker.say("started")))).spawn();
    marker.wait_for("started", BOUND);
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);

    // The program catches it and exits 42: proa exits 42.
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let mut marker = Marker::start();
    let script = format!(
        "trap '{}; kill $child; exit 42' TERM; sleep 60 & child=$!; {}; wait $child",
        marker.say("got-term"),
        marker.say("started")
    );
    let proa = Proa::new(&api).args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    proa.signal(libc::SIGTERM);
    marker.wait_for("got-term", BOUND);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 42, "{}", done.stderr);
}

#[test]
fn f_killed_program_is_137_and_missing_program_is_127() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).args(bash("kill -KILL $$".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 137, "{}", done.stderr);

    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).args(["--", "/no/such/program"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 127, "{}", done.stderr);
    assert!(done.stderr.contains("cannot run /no/such/program: not found"), "{}", done.stderr);

    // A file without any execute bit cannot be run, not even by root. (One with an execute bit but no #! line is
    // a script for /bin/sh: see off_switch.rs.)
    let dir = crate::support::temp::TempDir::new("not-executable");
    let plain = dir.write("plain", "echo should not run\n", 0o644);
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).args([std::ffi::OsStr::new("--"), plain.as_os_str()]).spawn().wait(BOUND);
    assert_eq!(done.code(), 126, "{}", done.stderr);
    assert_eq!(done.stdout, "");

    // It exists, but its #! interpreter does not (as with a glibc binary in a musl image): 126, as a shell says,
    // and a message that does not claim the program is missing.
    let script = std::env::temp_dir().join(format!("proa-it-no-interpreter-{}", std::process::id()));
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).args([std::ffi::OsStr::new("--"), script.as_os_str()]).spawn().wait(BOUND);
    std::fs::remove_file(&script).unwrap();
    assert_eq!(done.code(), 126, "{}", done.stderr);
    assert!(done.stderr.contains("it exists, but its interpreter (#! line) or loader is missing"), "{}", done.stderr);
}

/// fork(2) and posix_spawn(3), failing as they do at the process limit (EAGAIN), preloaded into proa.
const FORK_FAILS_C: &str = r#"#include <errno.h>
#include <spawn.h>
#include <unistd.h>

pid_t fork(void) {
    errno = EAGAIN;
    return -1;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
    return EAGAIN;
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
    return EAGAIN;
}
"#;

/// Issue 18, item 12a: a fork that failed with EAGAIN (the container's pids limit) exited 126, "not executable",
/// though the program was never even looked at. proa failed before the program ran: 125, with the reason.
/// The failure is made with LD_PRELOAD, which reaches the glibc-linked binary under test (std starts the program
/// through glibc's fork, or its posix_spawn).
#[test]
fn f_a_fork_that_fails_is_proas_failure_125() {
    let test = "f_a_fork_that_fails_is_proas_failure_125";
    let dir = crate::support::temp::TempDir::new("fork-fails");
    let flags = ["-shared", "-fPIC"];
    let Some(library) = crate::support::machine::c_program(test, dir.path(), "fork-fails.so", &flags, FORK_FAILS_C)
    else {
        return;
    };
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    // The reason goes to the termination log too, as for every 125 (issue 26 §3): `kubectl describe pod` shows it.
    let log = dir.write("termination-log", "", 0o644);
    let done = Proa::new(&api)
        .env("LD_PRELOAD", library.to_str().unwrap())
        .env("PROA_TERMINATION_LOG", log.to_str().unwrap())
        .args(["--", "true"])
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    let reason = "cannot start true: Resource temporarily unavailable (os error 11): the process limit is reached";
    assert!(done.stderr.contains(&format!("ERROR {reason}")), "{}", done.stderr);
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.starts_with(reason), "termination log: {written:?}");
}

#[test]
fn g_on_failure_with_a_failed_program_leaves_sidecars_running() {
    let mut pod = job_pod(&["envoy"], &[], "OnFailure");
    pod["status"]["containerStatuses"][1] = json!({"name": "envoy", "ready": true, "state": {"running": {}}});
    let api = ApiServer::start(pod);
    let sidecar = Sidecar::start();
    let done = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash("exit 3".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert!(sidecar.hits().is_empty(), "no shutdown request: the kubelet restarts the program");
    assert!(done.stderr.contains("leaving sidecars running"), "{}", done.stderr);
    // Ready at the GET: no watch was needed at all.
    assert!(api.requests().iter().all(|r| r.route == Some(Route::Get)), "{:?}", api.requests());
}

#[test]
fn h_a_closed_watch_resumes_from_the_last_resource_version() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(marker.say("started"))).spawn();

    api.wait_open_watches(1, BOUND);
    api.set_waiting("envoy", "ContainerCreating");
    let last_version = api.pod()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    api.end_watches();
    let again = api.wait_for_request(BOUND, |r| {
        r.route == Some(Route::Watch) && r.query.get("resourceVersion") == Some(&last_version)
    });
    api.wait_open_watches(1, BOUND);
    let ready_sent = api.set_ready("envoy");
    let started = marker.wait_for("started", BOUND);
    assert!(started.at > ready_sent && again.at < ready_sent);
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn i_forbidden_watch_is_125_and_names_the_permission() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.keep_failing(Route::Watch, Fault::Status(403));
    let mut marker = Marker::start();
    let done = Proa::new(&api).args(bash(marker.say("started"))).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    // Fatal once 403s have come for 2 s in a row (a restarting API server answers 403 for a moment).
    assert!(done.elapsed < Duration::from_secs(7), "took {:?}", done.elapsed);
    assert!(done.stderr.contains("may not watch pods in namespace \"jobs\""), "{}", done.stderr);
    assert!(done.stderr.contains(r#"verbs: ["get", "watch"]"#), "{}", done.stderr);
    assert!(marker.all().is_empty());
}

#[test]
fn j_a_shutdown_endpoint_that_never_answers_cannot_hang_proa() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let silent = Sidecar::start_silent();
    let mut marker = Marker::start();
    let proa = Proa::new(&api)
        .args(["--shutdown-timeout", "2s", "-g", &silent.url("/quit")])
        .args(bash(format!("{}; exit 5", marker.say("started"))))
        .spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    let asked = silent.wait_for_hits(1, BOUND)[0].at;
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 5, "{}", done.stderr);
    let waited = done.at - asked;
    assert!(waited < Duration::from_secs(4), "shutdown took {waited:?} with --shutdown-timeout 2s");
    assert!(done.stderr.contains("still running at the shutdown timeout"), "{}", done.stderr);
}

#[test]
fn no_api_request_while_the_program_runs() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let script = format!("{}; {}; {}", marker.open_3(), marker.say_on_3("started"), marker.block());
    let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash(script)).spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    // Once ready, the watch is closed: no stream stays open, and a change to the Pod reaches no one.
    api.wait_open_watches(0, BOUND);
    let before = api.requests().len();
    api.set_waiting("envoy", "CrashLoopBackOff");
    // The kubelet's SIGTERM: the program dies of it, the sidecar is told, and proa exits at once without watching
    // for it (the kubelet stops the sidecar itself). Once the program has exited, it starts a read of the Pod for
    // a deletion's deadline, which the exit may overtake (promise.rs d04 checks that it waits for the program).
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "the shutdown request was still sent");
    let after: Vec<_> = api.requests().into_iter().skip(before).map(|r| r.route).collect();
    assert!(after.is_empty() || after == [Some(Route::Get)], "requests after the ready watch: {}", api.request_log());
}

#[test]
fn a_config_error_is_125_and_still_stops_the_sidecars() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let proa = Proa::new(&api).args(["-p", &sidecar.url("/quitquitquit"), "--", "true"]);
    // automountServiceAccountToken: false, say: no token where proa looks for it.
    std::fs::remove_file(api.service_account_dir().join("token")).unwrap();
    let done = proa.spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("/token: No such file or directory"), "{}", done.stderr);
    let hits = sidecar.hits();
    assert_eq!((hits.len(), hits[0].method.as_str()), (1, "POST"), "a Job must not hang on a sidecar nobody stops");
    assert!(api.requests().is_empty());
}

#[test]
fn proxy_variables_are_the_programs_not_proas() {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["status"]["containerStatuses"][1] = json!({"name": "envoy", "ready": true, "state": {"running": {}}});
    let api = ApiServer::start(pod);
    let sidecar = Sidecar::start();
    let nowhere = "http://127.0.0.1:1";
    let mut proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]);
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        proa = proa.env(var, nowhere);
    }
    let proa = proa.args(bash("echo \"$HTTPS_PROXY\"".into())).spawn();
    sidecar.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert_eq!(done.stdout, format!("{nowhere}\n"), "the program still gets its proxy settings");
}

#[test]
fn json_logs_stay_on_stderr_and_the_programs_stdout_is_its_own() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).args(["--log-format", "json", "--", "echo", "hello from the job"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 0);
    assert_eq!(done.stdout, "hello from the job\n");
    for line in done.stderr.lines() {
        let log: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(log["time"].is_string() && log["level"].is_string() && log["message"].is_string(), "{line}");
    }
    assert!(done.stderr.contains("\"message\":\"started echo"), "{}", done.stderr);
}

#[test]
fn rust_log_picks_the_lines_in_env_loggers_syntax() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let run = |rust_log: &str| Proa::new(&api).env("RUST_LOG", rust_log).args(["--", "true"]).spawn().wait(BOUND);
    let info = run("info");
    assert_eq!(info.code(), 0);
    assert!(
        info.stderr.lines().all(|l| l.starts_with("proa: INFO ") || l.starts_with("proa: WARN ")),
        "{}",
        info.stderr
    );
    assert!(info.stderr.contains("proa: INFO started true"), "{}", info.stderr);
    let debug = run("warn,proa=debug");
    assert!(debug.stderr.contains("proa: DEBUG "), "{}", debug.stderr);
    let quiet = run("proa=warn");
    assert!(!quiet.stderr.contains("INFO"), "{}", quiet.stderr);
}

#[test]
fn an_invalid_rust_log_is_named_and_the_defaults_apply() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).env("RUST_LOG", "proa=chatty").args(["--", "bash", "-c", "exit 3"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 3);
    let first = done.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "proa: WARN ignoring RUST_LOG \"proa=chatty\" (error parsing logger filter: invalid logging spec 'chatty'): \
         info for proa, warn for its libraries"
    );
    assert!(done.stderr.contains("proa: INFO started bash") && !done.stderr.contains("DEBUG"), "{}", done.stderr);
}

/// A long wait says now and then what it waits for, each container with the state it was last seen in, and is
/// quiet otherwise: after 10 s, then twice as long each time (issue 22).
#[test]
fn a_long_wait_says_what_it_is_waiting_for() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let mut marker = Marker::start();
    let proa = Proa::new(&api).args(bash(marker.say("started"))).spawn();
    let said = proa.wait_for_stderr(Duration::from_secs(20), |err| err.contains("still waiting after"));
    assert!(said.contains("still waiting after 10.0s for containers: envoy (waiting: ContainerCreating)"), "{said}");
    assert!(marker.all().is_empty());
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert_eq!(done.stderr.matches("still waiting").count(), 1, "once in 10 to 20 s: {}", done.stderr);
}
