//! Out of threads (a Pod's pids limit): a thread proa cannot start is never a panic. Each test runs proa in a pids
//! cgroup with room for exactly the threads it has before the one that must fail: the main thread and the signal
//! thread (and, with `--serve-quit`, the thread that accepts quit requests).

use std::time::Duration;

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::{ApiServer, Route};
use crate::support::machine;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(20);

#[test]
fn no_thread_for_the_watch_is_125_and_the_shutdown_request_still_goes() {
    let Some(cgroup) = machine::pids_cgroup("no_thread_for_the_watch", 2) else { return };
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let envoy = Sidecar::start();
    let mut marker = Marker::start();
    let done = Proa::new(&api)
        .args(["-p", &envoy.url("/quit")])
        .args(bash(marker.say("started")))
        .in_cgroup(&cgroup.procs())
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("cannot start the thread that watches the pod"), "{}", done.stderr);
    // The action's own thread cannot start either: it is sent from the owner's.
    assert!(done.stderr.contains("sending it from here"), "{}", done.stderr);
    assert_eq!(envoy.hits().len(), 1, "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program never starts");
    assert!(api.requests().iter().all(|r| r.route != Some(Route::Watch)));
}

#[test]
fn no_thread_for_the_reaper_is_125_and_the_sidecar_never_starts() {
    let Some(cgroup) = machine::pids_cgroup("no_thread_for_the_reaper", 3) else { return };
    let mut marker = Marker::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let done = Proa::bare()
        .args(["--serve-quit", &format!("127.0.0.1:{port}")])
        .args(bash(marker.say("started")))
        .in_cgroup(&cgroup.procs())
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("cannot start bash"), "{}", done.stderr);
    assert!(marker.all().is_empty(), "a sidecar whose exit nobody could learn is never started");
}
