//! Signals in every phase (issue 4, item 2): while waiting they end the wait (128+N), while the program runs they
//! are forwarded (a terminal's Ctrl-C reaches it once), while shutting down a second SIGTERM or SIGINT ends the
//! wait with the program's code. SIGCHLD, SIGPIPE and SIGURG are never forwarded.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use crate::lifecycle::{BOUND, bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

/// The Pod's `terminationGracePeriodSeconds` in `job_pod`: the shutdown wait a signal cuts short.
const GRACE: Duration = Duration::from_secs(30);

#[test]
fn sigterm_sigint_or_sigquit_while_waiting_never_starts_the_program_and_exits_128_plus_n() {
    // SIGQUIT is the stop signal of images with `STOPSIGNAL SIGQUIT` (nginx's): the kubelet sends it instead.
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130), (libc::SIGQUIT, 131)] {
        let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
        let sidecar = Sidecar::start();
        let mut marker = Marker::start();
        let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash(marker.say("started"))).spawn();
        api.wait_open_watches(1, BOUND);
        proa.signal(signal);
        // Shutdown still runs: the sidecar is told to stop, and proa waits for it.
        sidecar.wait_for_hits(1, BOUND);
        api.set_terminated("envoy", 0);
        let done = proa.wait(BOUND);
        assert_eq!(done.code(), code, "{}", done.stderr);
        assert!(done.stderr.contains("while waiting for sidecars: not starting the program"), "{}", done.stderr);
        assert!(marker.all().is_empty(), "the program must never run");
    }
}

#[test]
fn a_second_sigterm_while_running_is_forwarded_too() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let mut marker = Marker::start();
    let script = format!(
        "n=0; trap 'n=$((n+1)); {}; [ $n = 2 ] && exit 9' TERM; {}; {}; {}",
        marker.say("term-$n"),
        marker.open_3(),
        marker.say("started"),
        marker.block()
    );
    let proa = Proa::new(&api).args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    proa.signal(libc::SIGTERM);
    marker.wait_for("term-1", BOUND);
    proa.signal(libc::SIGTERM);
    marker.wait_for("term-2", BOUND);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 9, "{}", done.stderr);
}

#[test]
fn a_second_sigterm_while_shutting_down_ends_the_wait_with_the_programs_code() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let script = format!("{}; exit 7", marker.say("started"));
    let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash(script)).spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    // The program exits 7; shutdown begins, and the sidecar never stops; then the kubelet's SIGTERM comes.
    let asked = sidecar.wait_for_hits(1, BOUND)[0].at;
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(done.at - asked < GRACE / 3, "proa kept waiting {:?}", done.at - asked);
    assert!(
        done.stderr.contains("got SIGTERM while shutting down: not waiting for the sidecars any longer"),
        "{}",
        done.stderr
    );
}

#[test]
fn sigchld_sigpipe_and_sigurg_are_never_forwarded() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let mut marker = Marker::start();
    // The program starts no process of its own, so any SIGCHLD it saw would be forwarded. bash runs pending
    // traps in signal-number order, and SIGWINCH is the highest here: a forwarded one would be reported first,
    // on the same connection, so it would arrive first.
    let traps: String =
        ["CHLD", "PIPE", "URG"].iter().map(|name| format!("trap '{}' {name}; ", marker.say_on_3(name))).collect();
    let script = format!(
        "{traps}trap '{}; exit 0' WINCH; {}; {}; {}",
        marker.say_on_3("WINCH"),
        marker.open_3(),
        marker.say_on_3("started"),
        marker.block()
    );
    let proa = Proa::new(&api).args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    for signal in [libc::SIGCHLD, libc::SIGPIPE, libc::SIGURG, libc::SIGWINCH] {
        proa.signal(signal);
    }
    marker.wait_for("WINCH", BOUND);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let seen: Vec<String> = marker.all().into_iter().map(|m| m.text).collect();
    assert_eq!(seen, ["started", "WINCH"]);
}

/// A pseudo-terminal: (primary, secondary). The test types into the primary; proa's stdin is the secondary.
fn pty() -> (File, OwnedFd) {
    let (mut primary, mut secondary) = (-1, -1);
    // SAFETY: both out-pointers are valid c_ints; the name, termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(&mut primary, &mut secondary, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [primary, secondary] {
        // SAFETY: fcntl on descriptors this function owns. Other tests' children must not inherit them.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }, 0);
    }
    // SAFETY: openpty returned two new descriptors that nothing else owns.
    unsafe { (File::from_raw_fd(primary), OwnedFd::from_raw_fd(secondary)) }
}

#[test]
fn ctrl_c_reaches_the_program_once_and_proa_once_the_program_has_exited() {
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let script = format!(
        "n=0; trap 'n=$((n+1)); {}' INT; trap '{}; exit 3' USR1; {}; {}; {}",
        marker.say("int-$n"),
        marker.say("ints-$n"),
        marker.open_3(),
        marker.say("started"),
        marker.block()
    );
    let (mut terminal, tty) = pty();
    let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash(script)).terminal(tty).spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);

    // Ctrl-C: the terminal signals its foreground process group, which is the program's alone.
    terminal.write_all(b"\x03").unwrap();
    marker.wait_for("int-1", BOUND);
    // SIGUSR1 through proa: had proa got the Ctrl-C too, its forwarded SIGINT would have come first.
    proa.signal(libc::SIGUSR1);
    let count = marker.wait_until(BOUND, |mark| mark.starts_with("ints-"));
    assert_eq!(count.text, "ints-1", "the program got SIGINT more than once");

    // The program exited 3; proa has the terminal back, so the next Ctrl-C ends its shutdown wait.
    let asked = sidecar.wait_for_hits(1, BOUND)[0].at;
    terminal.write_all(b"\x03").unwrap();
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert!(done.at - asked < GRACE / 3, "proa kept waiting {:?}", done.at - asked);
    assert!(done.stderr.contains("got SIGINT while shutting down"), "{}", done.stderr);
    assert!(!done.stderr.contains("forwarding SIGINT"), "{}", done.stderr);
}

/// Sets `stty tostop` on the terminal: a background process group that writes to it gets SIGTTOU.
fn tostop(tty: &OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: `termios` is plain data that tcgetattr fills before tcsetattr reads it; the descriptor is open.
    unsafe {
        let mut termios = std::mem::zeroed::<libc::termios>();
        assert_eq!(libc::tcgetattr(tty.as_raw_fd(), &mut termios), 0, "tcgetattr");
        termios.c_lflag |= libc::TOSTOP;
        assert_eq!(libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &termios), 0, "tcsetattr");
    }
}

/// Issue 18, item 16: proa gave the terminal to the program's process group, then wrote its own log lines to that
/// terminal from the background; under `stty tostop` the kernel stopped proa with SIGTTOU (the shell said
/// `Stopped`, exit 150 instead of the program's 3). proa ignores SIGTTOU and SIGTTIN (as tini does), and the
/// program gets their default actions back. proa runs from a shell with job control, as in the report: without a
/// parent in its session, its process group would be orphaned, where the kernel fails the write (EIO) instead.
#[test]
fn proa_logs_to_its_terminal_from_the_background_and_the_program_keeps_job_control() {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let (primary, tty) = pty();
    tostop(&tty);
    // The signals a child of the program ignores, as it inherited them: bash leaves them as it got them.
    let program = bash("grep SigIgn: /proc/self/status; exit 3".into());
    let done = Proa::new(&api).args(program).under_job_control().terminal_output(tty, primary).spawn().wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert!(done.stderr.contains("INFO started bash (pid "), "{}", done.stderr);
    assert!(done.stderr.contains("INFO program exited with code 3"), "{}", done.stderr);
    let mask = done.stdout.trim().strip_prefix("SigIgn:").map(str::trim).expect("grep's SigIgn line");
    let ignored = u64::from_str_radix(mask, 16).expect("a hex mask");
    for (signal, name) in [(libc::SIGTTOU, "SIGTTOU"), (libc::SIGTTIN, "SIGTTIN")] {
        assert_eq!(ignored & 1 << (signal - 1), 0, "the program inherited {name} ignored: SigIgn {mask}");
    }
}

#[test]
fn a_program_that_survives_a_stop_signal_past_its_grace_still_gets_the_whole_shutdown() {
    // A JVM-like program: SIGQUIT prints a thread dump (`kubectl exec … kill -QUIT 1`) and it carries on, ending
    // 5 s later, well past the Pod's 2 s grace (the kubelet's SIGKILL would have come 2 s after the signal; proa
    // allows 2 s more). Nothing was stopping the Pod, so the sidecar must be stopped and awaited.
    let mut pod = job_pod(&["envoy"], &[], "Never");
    pod["spec"]["terminationGracePeriodSeconds"] = serde_json::json!(2);
    let api = ApiServer::start(pod);
    let sidecar = Sidecar::start();
    let mut marker = Marker::start();
    let script = format!(
        "trap '{}; sleep 5; exit 0' QUIT; {}; {}; {}",
        marker.say("dumped"),
        marker.open_3(),
        marker.say("started"),
        marker.block()
    );
    let proa = Proa::new(&api).args(["-g", &sidecar.url("/quit")]).args(bash(script)).spawn();
    api.wait_open_watches(1, BOUND);
    api.set_ready("envoy");
    marker.wait_for("started", BOUND);
    proa.signal(libc::SIGQUIT);
    let dumped = marker.wait_for("dumped", BOUND).at;
    let asked = sidecar.wait_for_hits(1, BOUND)[0].at;
    assert!(asked - dumped >= Duration::from_secs(4), "the shutdown came {:?} after the signal", asked - dumped);
    // proa waits for the sidecar to go, as after any normal ending.
    assert!(proa.wait_for_stderr(BOUND, |e| e.contains("shutting down sidecars")).contains("shutting down as usual"));
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains("sidecars have exited"), "{}", done.stderr);
}
