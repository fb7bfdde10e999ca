//! proa as PID 1 of its container (issue 4, item 1), tested as PID 1 of a new PID namespace: orphans are reaped
//! and leave no zombie, the program's own status is never lost, every forwarded signal arrives, and exit codes
//! come through unchanged. Outside a namespace, proa reaps the program's orphans as a child subreaper.

use crate::lifecycle::{BOUND, bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::machine;
use crate::support::proa::{Marker, Proa};
use crate::support::procs;
use crate::support::sidecar::Sidecar;

/// The program leaves orphans behind: some exit at once, some live on. proa (PID 1, or a subreaper) adopts and
/// reaps them all, the program included, while it waits for the sidecar to stop.
fn orphans_are_reaped(pid1: bool) {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let script = format!(
        "for i in 1 2 3; do (true &); done; for i in 1 2; do (sleep 60 &); done; {}; exit 7",
        marker.say("started")
    );
    let mut proa = Proa::new(&api).env("RUST_LOG", "debug,proa::child=trace").args(["-g", &sidecar.url("/quit")]);
    if pid1 {
        proa = proa.pid1();
    }
    let proa = proa.args(bash(script)).spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);

    // The program has exited and shutdown began; the sidecar is not told to stop, so proa waits for it.
    sidecar.wait_for_hits(1, BOUND);
    let proa_pid = proa.proa_pid();
    let orphans = procs::children(proa_pid);
    assert!(orphans.iter().all(|p| p.state != 'Z'), "zombies under proa: {orphans:?}\n{}", proa.stderr());
    assert_eq!(orphans.iter().map(|p| p.comm.as_str()).collect::<Vec<_>>(), ["sleep", "sleep"], "{orphans:?}");

    // The orphans die; proa reaps each one, so nothing is left under it.
    let reaped: Vec<String> = orphans
        .iter()
        .map(|p| format!("reaped orphan pid {}", procs::ns_pid(p.pid).expect("the orphan is alive")))
        .collect();
    for orphan in &orphans {
        // SAFETY: kill(2) takes plain integers; the pid is an orphan proa has not reaped yet.
        assert_eq!(unsafe { libc::kill(orphan.pid, libc::SIGKILL) }, 0);
    }
    proa.wait_for_stderr(BOUND, |log| reaped.iter().all(|line| log.lines().any(|l| l.ends_with(line.as_str()))));
    assert_eq!(procs::children(proa_pid), [], "proa left something unreaped");

    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
}

#[test]
fn pid1_reaps_orphans_and_leaves_no_zombie() {
    if machine::pid_namespaces("pid1_reaps_orphans_and_leaves_no_zombie") {
        orphans_are_reaped(true);
    }
}

#[test]
fn outside_a_pid_namespace_proa_reaps_orphans_as_a_subreaper() {
    orphans_are_reaped(false);
}

#[test]
fn pid1_never_loses_the_programs_status_to_the_reaper() {
    if !machine::pid_namespaces("pid1_never_loses_the_programs_status_to_the_reaper") {
        return;
    }
    // 200 short-lived orphans exit around the same time as the program: only the program's status counts.
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let script = "for i in {1..100}; do (true &); (exit 3 &); done; exit 7".to_string();
    let done = Proa::new(&api).pid1().args(bash(script)).spawn().wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(done.stderr.contains("program exited with code 7"), "{}", done.stderr);
}

#[test]
fn an_inherited_ignored_sigchld_does_not_lose_the_programs_status() {
    // With SIGCHLD ignored the kernel discards exit statuses; proa restores the default first.
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).sigchld_ignored().args(bash("(true &); exit 7".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
}

#[test]
fn pid1_forwards_every_signal_it_handles() {
    if !machine::pid_namespaces("pid1_forwards_every_signal_it_handles") {
        return;
    }
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let mut marker = Marker::start();
    let signals = [
        ("TERM", libc::SIGTERM),
        ("INT", libc::SIGINT),
        ("HUP", libc::SIGHUP),
        ("QUIT", libc::SIGQUIT),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("WINCH", libc::SIGWINCH),
    ];
    let traps: String = signals
        .iter()
        .map(|(name, _)| format!("trap '{}; n=$((n+1)); [ $n = 7 ] && exit 0' {name}; ", marker.say(name)))
        .collect();
    let script = format!("n=0; {traps}{}; {}; {}; exit 9", marker.open_3(), marker.say("started"), marker.block());
    let proa = Proa::new(&api).pid1().args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    for (name, signal) in signals {
        proa.signal(signal);
        marker.wait_for(name, BOUND);
    }
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let seen: Vec<String> = marker.all().into_iter().map(|m| m.text).collect();
    assert_eq!(seen, ["started", "TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"]);
}

#[test]
fn pid1_passes_exit_codes_through() {
    if !machine::pid_namespaces("pid1_passes_exit_codes_through") {
        return;
    }
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 143), ("kill -KILL $$", 137)] {
        let api = ApiServer::start(job_pod(&[], &[], "Never"));
        let done = Proa::new(&api).pid1().args(bash(script.into())).spawn().wait(BOUND);
        assert_eq!(done.code(), code, "{script}: {}", done.stderr);
    }
    // The namespace really had proa as PID 1: its log says so.
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).pid1().args(["--", "true"]).spawn().wait(BOUND);
    assert!(done.stderr.contains("running as PID 1"), "{}", done.stderr);
}
