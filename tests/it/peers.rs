//! Shut down with peers (DESIGN.md step 4, `--peer`): several main containers. Peers are not waited for; among proa's own container and the others that
//! run proa, only the first by name stops the sidecars, and only once every peer has terminated.

use std::time::Duration;

use serde_json::{Value, json};

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::proa::Proa;
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(15);

/// proa's container `main`, a second main container `name` (running proa when `runs_proa`), and a ready `envoy`.
fn two_mains(name: &str, runs_proa: bool) -> Value {
    let mut pod = job_pod(&["envoy"], &[], "Never");
    let command = if runs_proa { json!(["/proa", "--", "other"]) } else { json!(["other"]) };
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": name, "command": command}));
    pod["status"]["containerStatuses"] = json!([
        {"name": "main", "ready": false, "state": {"running": {}}},
        {"name": "envoy", "ready": true, "state": {"running": {}}},
        {"name": name, "ready": false, "state": {"running": {}}},
    ]);
    pod
}

#[test]
fn the_sidecar_is_stopped_only_after_the_peer_has_terminated() {
    let api = ApiServer::start(two_mains("worker", false));
    let envoy = Sidecar::start();
    let proa = Proa::new(&api)
        .args(["--container", "main", "--peer", "worker", "-p", &envoy.url("/quit")])
        .args(bash("exit 0".into()))
        .spawn();
    proa.wait_for_stderr(BOUND, |log| log.contains("waiting for peers worker to terminate"));
    // The peer runs on for 2 s after proa's program exited: nothing may reach the sidecar meanwhile.
    envoy.expect_no_hits_for(Duration::from_secs(2));
    let peer_ended = api.set_terminated("worker", 0);
    let hit = envoy.wait_for_hits(1, BOUND)[0].at;
    assert!(hit > peer_ended, "the request came before the peer ended");
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn a_proa_peer_is_found_by_its_command_and_needs_no_flag() {
    // `zz-other` runs proa and comes after `main` by name: this proa is the stopper and waits for it.
    let api = ApiServer::start(two_mains("zz-other", true));
    let envoy = Sidecar::start();
    let proa =
        Proa::new(&api).args(["--container", "main", "-p", &envoy.url("/quit")]).args(bash("exit 0".into())).spawn();
    proa.wait_for_stderr(BOUND, |log| log.contains("waiting for peers zz-other to terminate"));
    assert!(envoy.hits().is_empty());
    api.set_terminated("zz-other", 0);
    envoy.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains("container zz-other runs proa too: a peer"), "{}", done.stderr);
}

#[test]
fn a_proa_that_is_not_the_stopper_exits_with_its_programs_code_at_once() {
    // `aa-other` runs proa and comes before `main`: it stops the sidecars, not this proa.
    let api = ApiServer::start(two_mains("aa-other", true));
    let envoy = Sidecar::start();
    let done = Proa::new(&api)
        .args(["--container", "main", "-p", &envoy.url("/quit")])
        .args(bash("exit 4".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 4, "{}", done.stderr);
    assert!(envoy.hits().is_empty(), "it sends nothing");
    assert!(done.stderr.contains("container aa-other stops the sidecars"), "{}", done.stderr);
    assert!(done.elapsed < Duration::from_secs(3), "it waits for nobody: {:?}", done.elapsed);
}

#[test]
fn a_sigterm_ends_the_wait_for_peers() {
    let api = ApiServer::start(two_mains("worker", false));
    let envoy = Sidecar::start();
    let proa = Proa::new(&api)
        .args(["--container", "main", "--peer", "worker", "-p", &envoy.url("/quit")])
        .args(bash("exit 0".into()))
        .spawn();
    proa.wait_for_stderr(BOUND, |log| log.contains("waiting for peers worker"));
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert_eq!(envoy.hits().len(), 1, "the Pod is stopping: the request is still sent, nothing awaited");
}

/// `--peer` must name a main container of the Pod: a typo would otherwise wait for ever (issue 18, 3.3).
#[test]
fn a_peer_the_pod_lacks_is_125_at_start() {
    let api = ApiServer::start(two_mains("worker", false));
    let envoy = Sidecar::start();
    let done = Proa::new(&api)
        .args(["--container", "main", "--peer", "wroker", "-p", &envoy.url("/quit")])
        .args(bash("echo ran; exit 0".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("--peer wroker: the pod has no container wroker: use one of main, envoy, worker"));
    assert!(!done.stdout.contains("ran"), "the program never starts");
}

/// One `PROA_PEER` shared by every main container names each one's own too: its own is never its peer (3.4).
#[test]
fn a_peer_list_naming_the_own_container_does_not_wait_for_itself() {
    let api = ApiServer::start(two_mains("worker", false));
    let envoy = Sidecar::start();
    let proa = Proa::new(&api)
        .env("PROA_PEER", "main worker")
        .args(["--container", "main", "-p", &envoy.url("/quit")])
        .args(bash("exit 3".into()))
        .spawn();
    proa.wait_for_stderr(BOUND, |log| log.contains("waiting for peers worker to terminate"));
    api.set_terminated("worker", 0);
    envoy.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    assert_eq!(proa.wait(BOUND).code(), 3);
}

/// A peer that a shutdown action also stops: each side would wait for the other (3.5).
#[test]
fn a_peer_that_is_also_a_shutdown_target_is_125_naming_both() {
    let api = ApiServer::start(two_mains("worker", false));
    let envoy = Sidecar::start();
    let done = Proa::new(&api)
        .args(["--container", "main", "--peer", "envoy", "-p", &format!("envoy={}", envoy.url("/quit"))])
        .args(bash("echo ran".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("--peer envoy: a shutdown action stops container envoy too"), "{}", done.stderr);
    assert!(!done.stdout.contains("ran"));
}

/// Two main containers with the same proa command line (they differ by env only): proa cannot tell which is its
/// own; any guess could wait for itself or stop the sidecars under the other's program, so it is 125 at start,
/// asking for --container (3.6).
#[test]
fn identical_proa_command_lines_are_125_asking_for_the_container() {
    let script = "echo ran; exit 5".to_string();
    let envoy = Sidecar::start();
    let mut command = vec![Value::from("/proa"), "-p".into(), envoy.url("/quit").into()];
    command.extend(bash(script.clone()).into_iter().map(Value::from));
    let mut pod = two_mains("import", true);
    pod["spec"]["containers"][0]["command"] = Value::from(command.clone());
    pod["spec"]["containers"][2]["command"] = Value::from(command);
    let api = ApiServer::start(pod);
    let done = Proa::new(&api).args(["-p", &envoy.url("/quit")]).args(bash(script)).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("containers main, import all run proa with these arguments"), "{}", done.stderr);
    assert!(done.stderr.contains("set --container (PROA_CONTAINER) in each"), "{}", done.stderr);
    assert!(!done.stdout.contains("ran"), "the program never starts");
}

/// proa's own container only guessed (the image's ENTRYPOINT runs proa, the Pod gives no command) and a peer list:
/// the list may name proa's real container, so it is 125 at start asking for --container (review of issue 18).
#[test]
fn peers_with_a_guessed_own_container_are_125_asking_for_the_container() {
    let mut pod = two_mains("worker", false);
    pod["spec"]["containers"][0].as_object_mut().unwrap().remove("command");
    let api = ApiServer::start(pod);
    let done = Proa::new(&api).env("PROA_PEER", "main worker").args(bash("echo ran".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("with proa's own container only guessed (main, the first)"), "{}", done.stderr);
    assert!(!done.stdout.contains("ran"));
}

/// A proa turned off (`PROA_DISABLE=true`) runs its program in its place: a peer to wait for, never the stopper
/// (3.11).
#[test]
fn a_proa_turned_off_is_a_peer_but_never_the_stopper() {
    let mut pod = two_mains("aa-off", true);
    // `1` turns proa off as `true` does.
    pod["spec"]["containers"][2]["env"] = json!([{"name": "PROA_DISABLE", "value": " 1 "}]);
    let api = ApiServer::start(pod);
    let envoy = Sidecar::start();
    let proa =
        Proa::new(&api).args(["--container", "main", "-p", &envoy.url("/quit")]).args(bash("exit 0".into())).spawn();
    proa.wait_for_stderr(BOUND, |log| log.contains("waiting for peers aa-off to terminate"));
    api.set_terminated("aa-off", 0);
    envoy.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
}

/// `--on-ready-timeout run` without a ready timeout would never apply: a usage error (3.12).
#[test]
fn running_anyway_without_a_ready_timeout_is_a_usage_error() {
    let api = ApiServer::start(two_mains("worker", false));
    let done = Proa::new(&api).args(["--on-ready-timeout", "run"]).args(bash("echo ran".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert!(done.stderr.contains("--on-ready-timeout run without --ready-timeout never applies"), "{}", done.stderr);
    assert!(api.requests().is_empty(), "a usage error asks the API nothing");
}
