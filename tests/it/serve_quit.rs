//! proa on the sidecar's side (DESIGN.md "Other roles"): `--serve-quit HOST:PORT -- SIDECAR` runs the sidecar at once and stops it
//! when `POST /quitquitquit` comes: its stop signal, then SIGKILL after `--kill-grace`; proa then exits 0. A sidecar
//! that ends on its own, or of the kubelet's SIGTERM, keeps its code. With real sidecar processes, real HTTP
//! requests, and, last, a main proa that stops a sidecar proa through the test API server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::proa::{Marker, Proa, Running};

const BOUND: Duration = Duration::from_secs(15);

/// A loopback port nothing listens on. proa must bind it itself, so the test lets its own socket go: the kernel
/// hands out ephemeral ports at random, so nothing else takes it in between.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status code answered.
fn request(port: u16, method: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the quit endpoint listens");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status: {answer:?}"))
}

/// `proa --serve-quit 127.0.0.1:PORT [extra] -- bash -c SCRIPT`, once its sidecar said `started` (proa binds
/// the endpoint before it starts the sidecar).
fn sidecar_proa(port: u16, extra: &[&str], marker: &mut Marker, script: &str) -> Running {
    let address = format!("127.0.0.1:{port}");
    let script = format!("{}; {script}", marker.say("started"));
    let proa = Proa::bare().args(["--serve-quit", address.as_str()]).args(extra).args(bash(script)).spawn();
    marker.wait_for("started", BOUND);
    proa
}

#[test]
fn a_quit_request_stops_the_sidecar_and_proa_exits_0() {
    let (port, mut marker) = (free_port(), Marker::start());
    // `sleep` dies of the SIGTERM: 143, which would fail the Pod.
    let proa = sidecar_proa(port, &[], &mut marker, "exec sleep 600");
    let asked = Instant::now();
    assert_eq!(request(port, "POST", "/quitquitquit"), 200);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.at - asked < Duration::from_secs(5), "took {:?}", done.at - asked);
    assert!(done.stderr.contains("program exited with code 143 once proa stopped it: exiting 0"), "{}", done.stderr);
}

#[test]
fn a_sidecar_that_ignores_the_signal_is_killed_after_the_grace() {
    let (port, mut marker) = (free_port(), Marker::start());
    let proa = sidecar_proa(port, &["--kill-grace", "1s"], &mut marker, "trap '' TERM; exec sleep 600");
    let asked = Instant::now();
    assert_eq!(request(port, "POST", "/quitquitquit"), 200);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let took = done.at - asked;
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "took {took:?}: {}", done.stderr);
    assert!(done.stderr.contains("sending SIGKILL"), "{}", done.stderr);
}

#[test]
fn the_kill_signal_is_the_one_sent() {
    let (port, mut marker) = (free_port(), Marker::start());
    // The sidecar stops only on SIGQUIT (nginx's STOPSIGNAL), and says which signal it got.
    let script = format!("trap '' TERM; trap '{}; exit 0' QUIT; while :; do sleep 0.1; done", marker.say("quit"));
    let proa = sidecar_proa(port, &["--kill-signal", "QUIT", "--kill-grace", "30s"], &mut marker, &script);
    assert_eq!(request(port, "POST", "/quitquitquit"), 200);
    marker.wait_for("quit", BOUND);
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn a_sidecar_that_exits_on_its_own_keeps_its_code() {
    let (port, mut marker) = (free_port(), Marker::start());
    let proa = sidecar_proa(port, &[], &mut marker, "exit 3");
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
}

#[test]
fn other_methods_and_paths_are_refused_and_the_sidecar_keeps_running() {
    let (port, mut marker) = (free_port(), Marker::start());
    let script = format!("{}; {}; {}", marker.open_3(), marker.say_on_3("running"), marker.block());
    let proa = sidecar_proa(port, &[], &mut marker, &script);
    marker.wait_for("running", BOUND);
    assert_eq!(request(port, "GET", "/quitquitquit"), 405);
    assert_eq!(request(port, "POST", "/quit"), 404);
    assert_eq!(request(port, "GET", "/"), 404);
    // Still running: only now does it stop, and proa exits 0 for it.
    assert_eq!(request(port, "POST", "/quitquitquit"), 200);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
}

#[test]
fn the_kubelets_sigterm_is_forwarded_and_the_sidecars_code_kept() {
    let (port, mut marker) = (free_port(), Marker::start());
    let proa = sidecar_proa(port, &[], &mut marker, "exec sleep 600");
    proa.signal(libc::SIGTERM);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 143, "not proa's stop: {}", done.stderr);
}

#[test]
fn only_a_loopback_address_a_free_port_and_no_main_container_flags() {
    let mut marker = Marker::start();
    let run = |args: &[&str]| Proa::bare().args(args).args(bash(marker.say("started"))).spawn().wait(BOUND);
    for address in ["0.0.0.0:15000", "10.1.2.3:15000", "example.com:15000", "127.0.0.1:0"] {
        let done = run(&["--serve-quit", address]);
        assert_eq!(done.code(), 125, "{address}: {}", done.stderr);
        assert!(done.stderr.contains("use a loopback HOST:PORT"), "{}", done.stderr);
    }
    let done = run(&["--serve-quit", "127.0.0.1:15000", "-p", "http://127.0.0.1:15020/quitquitquit"]);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("--shutdown-http-post with --serve-quit"), "{}", done.stderr);
    // A port already taken: 125 before the sidecar runs, rather than a sidecar nobody can stop.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let done = run(&["--serve-quit", &taken.local_addr().unwrap().to_string()]);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("cannot serve --serve-quit on 127.0.0.1:"), "{}", done.stderr);
    assert!(marker.all().is_empty(), "the sidecar never ran");
}

#[test]
fn a_main_proa_stops_a_sidecar_proa_and_both_exit_as_they_should() {
    let port = free_port();
    let quit = format!("logger=http://127.0.0.1:{port}/quitquitquit");
    let mut pod = job_pod(&["logger"], &[], "Never");
    pod["spec"]["containers"][1]["command"] = json!(["/proa", "--serve-quit", format!("127.0.0.1:{port}"), "--"]);
    pod["status"]["containerStatuses"][1] = json!({"name": "logger", "ready": true, "state": {"running": {}}});
    let api = ApiServer::start(pod);
    let mut marker = Marker::start();
    let logger = sidecar_proa(port, &[], &mut marker, "exec sleep 600");
    let main = Proa::new(&api).args(["-p", quit.as_str()]).args(bash("exit 7".into())).spawn();
    let logger = logger.wait(BOUND);
    assert_eq!(logger.code(), 0, "{}", logger.stderr);
    // The kubelet reports the logger container terminated; the main proa, watching for it, exits too.
    api.set_terminated("logger", 0);
    let main = main.wait(BOUND);
    assert_eq!(main.code(), 7, "{}", main.stderr);
    assert!(!main.stderr.contains("runs proa too"), "a sidecar's proa is not a peer: {}", main.stderr);
}

#[test]
fn idle_or_slow_clients_do_not_hold_up_a_quit_request() {
    let (port, mut marker) = (free_port(), Marker::start());
    let proa = sidecar_proa(port, &[], &mut marker, "exec sleep 600");
    // Connections that send nothing, and one that trickles a byte now and then.
    let idle: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"P").unwrap();
    let asked = Instant::now();
    assert_eq!(request(port, "POST", "/quitquitquit"), 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "answered after {:?}", asked.elapsed());
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    drop((idle, slow));
}

#[test]
fn a_request_with_bare_line_feeds_is_understood() {
    let (port, mut marker) = (free_port(), Marker::start());
    let proa = sidecar_proa(port, &[], &mut marker, "exec sleep 600");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"\r\nPOST /quitquitquit HTTP/1.0\n\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert_eq!(proa.wait(BOUND).code(), 0);
}

#[test]
fn a_quit_after_the_kubelets_sigterm_neither_signals_again_nor_hides_the_code() {
    // The Pod is being deleted: the kubelet's SIGTERM reaches both containers, and the main proa's quit request
    // follows. The sidecar drains for 1 s, longer than --kill-grace, and exits 7.
    let (port, mut marker) = (free_port(), Marker::start());
    let script = format!("trap '{}; sleep 1; exit 7' TERM; while :; do sleep 0.1; done", marker.say("term"));
    let proa = sidecar_proa(port, &["--kill-grace", "200ms"], &mut marker, &script);
    proa.signal(libc::SIGTERM);
    marker.wait_for("term", BOUND);
    assert_eq!(request(port, "POST", "/quitquitquit"), 200);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 7, "the kubelet's stop, not proa's: {}", done.stderr);
    assert_eq!(marker.all().iter().filter(|m| m.text == "term").count(), 1, "one SIGTERM");
    assert!(!done.stderr.contains("SIGKILL"), "{}", done.stderr);
}

/// A main proa whose shutdown action is `POST http://127.0.0.1:PORT/quitquitquit` for the ready sidecar `logger`,
/// running `exit 7`.
fn main_proa_stopping_logger(port: u16) -> (ApiServer, Running) {
    let quit = format!("logger=http://127.0.0.1:{port}/quitquitquit");
    let mut pod = job_pod(&["logger"], &[], "Never");
    pod["status"]["containerStatuses"][1] = json!({"name": "logger", "ready": true, "state": {"running": {}}});
    let api = ApiServer::start(pod);
    let main = Proa::new(&api).args(["-p", quit.as_str()]).args(bash("exit 7".into())).spawn();
    (api, main)
}

#[test]
fn thirty_two_idle_connections_do_not_keep_out_the_main_proas_request() {
    let (port, mut marker) = (free_port(), Marker::start());
    let logger = sidecar_proa(port, &[], &mut marker, "exec sleep 600");
    // As many connections as the endpoint serves at once, all silent: the oldest makes way for a new one.
    let idle: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let (api, main) = main_proa_stopping_logger(port);
    let logger = logger.wait(BOUND);
    assert_eq!(logger.code(), 0, "{}", logger.stderr);
    api.set_terminated("logger", 0);
    let main = main.wait(BOUND);
    assert_eq!(main.code(), 7, "{}", main.stderr);
    let answered = format!("shutdown POST http://127.0.0.1:{port}/quitquitquit: answered 200");
    assert!(main.stderr.contains(&answered), "{}", main.stderr);
    assert!(!main.stderr.contains("(attempt 1 of"), "answered at the first attempt: {}", main.stderr);
    drop(idle);
}

#[test]
fn a_shutdown_request_closed_unanswered_is_sent_again() {
    // A quit endpoint that closes the first connection without an answer, as one with every place taken did, and
    // answers the next.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for answer in [false, true] {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(BOUND)).unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
            if answer {
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            }
            let _ = tx.send((Instant::now(), line));
        }
    });
    let (api, main) = main_proa_stopping_logger(port);
    let seen: Vec<(Instant, String)> = (0..2)
        .map(|i| {
            seen.recv_timeout(BOUND)
                .unwrap_or_else(|_| panic!("request {} never came; proa's log:\n{}", i + 1, main.stderr()))
        })
        .collect();
    api.set_terminated("logger", 0);
    let main = main.wait(BOUND);
    assert_eq!(main.code(), 7, "{}", main.stderr);
    assert_eq!(seen[0].1, "POST /quitquitquit HTTP/1.1");
    assert_eq!(seen[1].1, "POST /quitquitquit HTTP/1.1");
    assert!(seen[1].0 - seen[0].0 >= Duration::from_millis(250), "after the first pause: {:?}", seen[1].0 - seen[0].0);
    assert!(main.stderr.contains("connection closed before an answer (attempt 1 of 4)"), "{}", main.stderr);
    let answered = format!("shutdown POST http://127.0.0.1:{port}/quitquitquit: answered 200");
    assert!(main.stderr.contains(&answered), "{}", main.stderr);
}
