//! `make demo`: proa's whole lifecycle on one machine, no cluster. This binary plays the cluster: the simulated
//! API server from the integration tests, a kubelet that probes a real sidecar process and reports its readiness
//! and exit in the Pod's status, and the sidecar itself (this binary again, as `demo sidecar PORT`).
//! proa is the real binary (`PROA_BIN`); its log on stderr shows wait → run → shutdown → exit.

#[path = "../it/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::ApiServer;

/// How long the sidecar takes to become ready, like a proxy fetching its configuration.
const SIDECAR_STARTUP: Duration = Duration::from_secs(2);
/// The simulated kubelet's readiness probe period.
const PROBE_PERIOD: Duration = Duration::from_millis(250);
/// The demo never runs longer than this.
const DEMO_BOUND: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("sidecar") {
        let port = args.get(2).and_then(|p| p.parse().ok()).expect("demo sidecar PORT");
        return sidecar(port);
    }
    let proa_bin = std::env::var("PROA_BIN").unwrap_or_else(|_| "target/debug/proa".into());

    // The sidecar's port: reserve one, then let the sidecar process bind it once it has "started up".
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let program = "echo 'job: the sidecar is ready, doing the work'; sleep 1; echo 'job: done'; exit 0";
    let proa_args: Vec<String> = vec![
        "--shutdown-http-post".into(),
        format!("http://127.0.0.1:{port}/quitquitquit"),
        "--ready-timeout".into(),
        "30s".into(),
        "--shutdown-timeout".into(),
        "10s".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        program.into(),
    ];
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo-job-x7k2p", "namespace": "demo"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {"name": "job", "command": ["/proa"], "args": proa_args},
                {"name": "proxy", "readinessProbe": {"httpGet": {"path": "/ready", "port": port}}}
            ]
        },
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "job", "ready": false, "state": {"running": {}}},
            {"name": "proxy", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}
    });
    let api = Arc::new(ApiServer::start(pod));
    say(&format!("simulated API server on https://127.0.0.1:{} (its own CA, the real watch protocol)", api.port()));

    let mut sidecar = Command::new(std::env::current_exe().expect("own path"))
        .args(["sidecar", &port.to_string()])
        .spawn()
        .expect("start the sidecar");
    say(&format!("started sidecar 'proxy' (pid {}); it needs about 2s to become ready", sidecar.id()));

    let kubelet_api = api.clone();
    let kubelet = thread::spawn(move || {
        let start = Instant::now();
        while !probe(port) {
            if start.elapsed() > DEMO_BOUND {
                return;
            }
            thread::sleep(PROBE_PERIOD);
        }
        kubelet_api.set_ready("proxy");
        say("kubelet: readiness probe of 'proxy' passed; Pod status updated (ready)");
        let code = sidecar.wait().ok().and_then(|s| s.code()).unwrap_or(1);
        kubelet_api.set_terminated("proxy", code);
        say(&format!("kubelet: 'proxy' exited with code {code}; Pod status updated (terminated)"));
    });

    say(&format!("running: proa {}", proa_args.join(" ")));
    let mut proa = Command::new(&proa_bin);
    proa.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(api.env()).args(&proa_args);
    let status = match proa.status() {
        Ok(status) => status,
        Err(err) => {
            eprintln!("demo: cannot run {proa_bin}: {err} (run `make demo`, which builds it)");
            return ExitCode::FAILURE;
        }
    };
    let _ = kubelet.join();
    let requests = api.requests();
    let gets = requests.iter().filter(|r| r.route == Some(support::Route::Get)).count();
    let watches = requests.iter().filter(|r| r.route == Some(support::Route::Watch)).count();
    say(&format!("proa exited with {status}; it made {gets} GET and {watches} watch requests to the API server"));
    if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn say(text: &str) {
    speak("demo:", 36, text);
}

/// One line on stderr in a single write, so that it never interleaves with proa's lines on the same terminal.
fn speak(label: &str, colour: u8, text: &str) {
    let line = format!("{} {text}\n", paint(label, colour));
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `label` in an ANSI colour when stderr is a terminal, so the three voices are easy to tell apart.
fn paint(label: &str, colour: u8) -> String {
    use std::io::IsTerminal;
    match std::io::stderr().is_terminal() {
        true => format!("\x1b[{colour}m{label}\x1b[0m"),
        false => label.to_string(),
    }
}

/// An HTTP GET of /ready, as the kubelet's probe does: true on a 200.
fn probe(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The sidecar process: starts up slowly, then serves /ready and exits on POST /quitquitquit.
fn sidecar(port: u16) -> ExitCode {
    thread::sleep(SIDECAR_STARTUP);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the sidecar port");
    speak("proxy:", 33, &format!("listening on 127.0.0.1:{port}"));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request_line = String::new();
        let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        // Skip the headers.
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
            header.clear();
        }
        let quit = request_line.starts_with("POST /quitquitquit");
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        if quit {
            speak("proxy:", 33, "got POST /quitquitquit, shutting down");
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::FAILURE
}
