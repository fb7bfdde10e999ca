//! The aarch64 binary a release ships, run: `make static`'s `proa-aarch64-linux-musl` (or, in the kill feature's
//! run, `proa-kill-aarch64-linux-musl`), named by `PROA_STATIC_BIN_AARCH64`, through whole lifecycles against the
//! test API server, emulated by qemu-aarch64-static on any other machine. The programs it runs are the machine's own.
//! Without the binary or qemu it is skipped loudly, or fails where `CI` is set.

use std::path::Path;

use crate::cli::assert_version_line;
use crate::lifecycle::{BOUND, bash, job_pod};
use crate::support::apiserver::{ApiServer, Route};
use crate::support::machine;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

/// The features the binary under test was built with, as its `--version` says them.
const FEATURES: &str = if cfg!(feature = "kill") { "kill" } else { "none" };

/// The aarch64 proa, ready to take its arguments (in `api`'s in-cluster environment where there is one).
fn aarch64(runner: Option<&Path>, binary: &Path, api: Option<&ApiServer>) -> Proa {
    let mut proa = match runner {
        Some(qemu) => Proa::bare_at(qemu).args([binary]),
        None => Proa::bare_at(binary),
    };
    for (key, value) in api.map(ApiServer::env).unwrap_or_default() {
        proa = proa.env(&key, &value);
    }
    proa
}

#[test]
fn aarch64_version_names_its_target() {
    let Some((runner, binary)) = machine::aarch64_binary("aarch64_version_names_its_target") else { return };
    let done = aarch64(runner.as_deref(), &binary, None).args(["--version"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert_version_line(&done.stdout, "aarch64-unknown-linux-musl", FEATURES);
}

#[test]
fn aarch64_waits_runs_stops_the_sidecar_and_exits_with_the_programs_code() {
    let test = "aarch64_waits_runs_stops_the_sidecar_and_exits_with_the_programs_code";
    let Some((runner, binary)) = machine::aarch64_binary(test) else { return };
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = aarch64(runner.as_deref(), &binary, Some(&api))
        .args(["--shutdown-http-post", &sidecar.url("/quitquitquit")])
        .args(bash(format!("{}; echo ran; exit 7", marker.say("started"))))
        .spawn();

    api.wait_open_watches(1, BOUND);
    let ready = api.set_ready("envoy");
    assert!(marker.wait_for("started", BOUND).at > ready, "the program started before the sidecar was ready");
    let hits = sidecar.wait_for_hits(1, BOUND);
    assert_eq!((hits[0].method.as_str(), hits[0].path.as_str()), ("POST", "/quitquitquit"));
    api.wait_open_watches(1, BOUND);
    let terminated = api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);

    assert_eq!((done.code(), done.stdout.as_str()), (7, "ran\n"), "{}", done.stderr);
    assert!(done.at > terminated, "proa waits for the sidecar to exit");
    let routes: Vec<Option<Route>> = api.requests().iter().map(|r| r.route).collect();
    assert_eq!(routes[..2], [Some(Route::Get), Some(Route::Watch)], "{}", api.request_log());
}

#[test]
fn aarch64_ready_timeout_is_124_and_the_sidecar_is_still_stopped() {
    let test = "aarch64_ready_timeout_is_124_and_the_sidecar_is_still_stopped";
    let Some((runner, binary)) = machine::aarch64_binary(test) else { return };
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = aarch64(runner.as_deref(), &binary, Some(&api))
        .args(["--ready-timeout", "1s", "-g", &sidecar.url("/quit")])
        .args(bash(marker.say("started")))
        .spawn();

    sidecar.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(done.stderr.contains("containers not ready after"), "{}", done.stderr);
    assert!(marker.all().is_empty(), "the program must never run");
}

#[test]
fn aarch64_forwards_sigterm_and_exits_143_after_the_shutdown() {
    let test = "aarch64_forwards_sigterm_and_exits_143_after_the_shutdown";
    let Some((runner, binary)) = machine::aarch64_binary(test) else { return };
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let proa = aarch64(runner.as_deref(), &binary, Some(&api))
        .args(["-g", &sidecar.url("/quit")])
        .args(bash(format!("{}; exec sleep 60", marker.say("started"))))
        .spawn();

    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    // The started process is proa itself: qemu runs the guest in its own process.
    // SAFETY: kill(2) takes plain integers; the pid is proa's, which has not been reaped.
    assert_eq!(unsafe { libc::kill(proa.pid(), libc::SIGTERM) }, 0);
    sidecar.wait_for_hits(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "{}", done.stderr);
    assert!(done.stderr.contains("forwarding SIGTERM"), "{}", done.stderr);
}
