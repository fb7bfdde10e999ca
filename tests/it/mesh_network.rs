//! A Job in a mesh Pod (issue 28): proa's own connections to the API server go through the mesh's proxy, which its
//! shutdown action stops, and a Pod proa cannot read still has its mesh proxy stopped. Each test runs in a network
//! namespace of its own (`support::mesh`), where a redirect sends proa's connections to the test API server through
//! a passthrough proxy that `POST /quitquitquit` stops, as Istio's does.

use std::time::Duration;

use serde_json::{Value, json};

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::{ApiServer, Fault, Route};
use crate::support::mesh::{self, Proxy};
use crate::support::proa::{Marker, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(20);
/// proa ends this soon after the proxy it stopped: a second of refused connections (what tells a stopped proxy
/// from a blip of the API server), the retry that notices it (at most a second later), and room for a loaded
/// machine.
const SOON: Duration = Duration::from_millis(2500);

/// proa's container `main` and a regular `istio-proxy` as Istio injects it (no readinessProbe here: the API says
/// when it is ready), both running, the proxy ready.
fn mesh_pod() -> Value {
    let mut pod = job_pod(&[], &[], "Never");
    pod["metadata"]["annotations"] = json!({"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"});
    let proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]});
    pod["spec"]["containers"].as_array_mut().unwrap().push(proxy);
    let running = |name: &str, ready: bool| json!({"name": name, "ready": ready, "state": {"running": {}}});
    pod["status"]["containerStatuses"] = json!([running("main", false), running("istio-proxy", true)]);
    pod
}

#[test]
fn the_job_ends_with_its_program_though_the_stopped_proxy_cuts_proa_off_the_api() {
    let test = "the_job_ends_with_its_program_though_the_stopped_proxy_cuts_proa_off_the_api";
    // No flag (the proxy recognised), a named action, and the preset.
    let quit = format!("istio-proxy=http://127.0.0.1:{}/quitquitquit", mesh::QUIT_PORT);
    let ways = [vec![], vec!["-p".to_string(), quit], vec!["--sidecar".to_string(), "istio".to_string()]];
    for args in ways {
        mesh::in_network_namespace(test, move || {
            let api = ApiServer::start(mesh_pod());
            let _redirect = mesh::redirect_to_proxy(api.port());
            let proxy = Proxy::start();
            let mut marker = Marker::start();
            let script = format!("{}; {}; exit 0", marker.say("started"), marker.say("exiting"));
            let proa = Proa::new(&api).args(["--container", "main"]).args(&args).args(bash(script)).spawn();
            marker.wait_for("started", BOUND);
            let exiting = marker.wait_for("exiting", BOUND).at;
            let quit_at = proxy.wait_quit(BOUND);
            // The kubelet sees the proxy gone; proa, cut off, cannot.
            api.set_terminated("istio-proxy", 0);
            let done = proa.wait(BOUND);
            assert_eq!(done.code(), 0, "{args:?}: {}", done.stderr);
            assert!(done.at - quit_at < SOON, "{args:?}: exited {:?} after the proxy stopped", done.at - quit_at);
            // The figure docs/benchmark.md gives (`cargo test --test it mesh_network -- --nocapture`).
            eprintln!("mesh {args:?}: proa exited {:?} after its program's last word", done.at - exiting);
            let why = "the API server cannot be reached since a shutdown action was answered";
            assert!(done.stderr.contains(why), "{args:?}: {}", done.stderr);
            // Said at debug level only: the stopped proxy's refusals are what stopping it means.
            let loud: Vec<&str> = done.stderr.lines().filter(|l| !l.contains("DEBUG")).collect();
            for noise in ["request to the API server failed", "retrying", "WARN"] {
                assert!(!loud.iter().any(|l| l.contains(noise)), "{args:?}: {noise:?} in {}", done.stderr);
            }
        });
    }
}

#[test]
fn the_program_starts_within_a_second_of_the_proxy_listening() {
    let test = "the_program_starts_within_a_second_of_the_proxy_listening";
    mesh::in_network_namespace(test, || {
        let api = ApiServer::start(mesh_pod());
        let _redirect = mesh::redirect_to_proxy(api.port());
        let mut marker = Marker::start();
        let script = format!("{}; exit 0", marker.say("started"));
        let proa = Proa::new(&api).args(["--container", "main"]).args(bash(script)).spawn();
        // The proxy is not listening yet: every connection proa makes is refused, and it keeps trying.
        proa.wait_for_stderr(BOUND, |log| log.contains("(attempt 5)"));
        assert!(api.requests().is_empty(), "nothing reached the API server through a proxy not yet started");
        let proxy = Proxy::start();
        let started = marker.wait_for("started", BOUND);
        let after = started.at - proxy.listening_at;
        assert!(after < SOON, "the program started {after:?} after the proxy listened");
        proxy.wait_quit(BOUND);
        api.set_terminated("istio-proxy", 0);
        assert_eq!(proa.wait(BOUND).code(), 0);
    });
}

#[test]
fn an_unreadable_pod_still_has_its_mesh_proxy_stopped() {
    let test = "an_unreadable_pod_still_has_its_mesh_proxy_stopped";
    // What a Pod without the Role, with a wrong POD_NAME, or without a token looks like to proa: 403, 404, no token.
    for case in ["403", "404", "no token"] {
        mesh::in_network_namespace(test, move || {
            let api = ApiServer::start(mesh_pod());
            let (istio, linkerd, cloud_sql) =
                (Sidecar::start_on(15020), Sidecar::start_on(4191), Sidecar::start_on(9091));
            let proa = match case {
                "403" => {
                    api.keep_failing(Route::Get, Fault::Status(403));
                    Proa::new(&api)
                }
                "404" => {
                    api.keep_failing(Route::Get, Fault::Status(404));
                    Proa::new(&api)
                }
                _ => Proa::new(&api).env("PROA_SERVICE_ACCOUNT_DIR", "/nonexistent"),
            };
            let done = proa.args(bash("exit 0".into())).spawn().wait(BOUND);
            assert_eq!(done.code(), 125, "{case}: {}", done.stderr);
            istio.wait_for("POST", "/quitquitquit", 1, BOUND);
            linkerd.wait_for("POST", "/shutdown", 1, BOUND);
            cloud_sql.wait_for("POST", "/quitquitquit", 1, BOUND);
            assert!(done.stderr.contains("the pod could not be read"), "{case}: {}", done.stderr);
        });
    }
    // A guess that finds nothing listening is quiet; one with an action given, or --auto-shutdown false, never goes;
    // nor where the Pod was read (a wrong --container), nor on a ready timeout or a stop while the API fails (the
    // Pod may be fine, its proxy serving the other containers).
    mesh::in_network_namespace(test, || {
        let api = ApiServer::start(mesh_pod());
        api.keep_failing(Route::Get, Fault::Status(404));
        let done = Proa::new(&api).args(bash("exit 0".into())).spawn().wait(BOUND);
        assert_eq!(done.code(), 125, "{}", done.stderr);
        let loud = done.stderr.lines().filter(|l| l.contains("a guess") && !l.contains("DEBUG")).collect::<Vec<_>>();
        assert!(loud.is_empty(), "a refused guess is quiet: {}", done.stderr);
        let istio = Sidecar::start_on(15020);
        for args in [vec!["-p", "http://127.0.0.1:1/quit"], vec!["--auto-shutdown", "false"]] {
            let done = Proa::new(&api).args(&args).args(bash("exit 0".into())).spawn().wait(BOUND);
            assert_eq!(done.code(), 125, "{args:?}: {}", done.stderr);
            assert!(!done.stderr.contains("the pod could not be read"), "{args:?}: {}", done.stderr);
        }
        let readable = ApiServer::start(mesh_pod());
        let done = Proa::new(&readable).args(["--container", "mian"]).args(bash("exit 0".into())).spawn().wait(BOUND);
        assert_eq!(done.code(), 125, "{}", done.stderr);
        let failing = ApiServer::start(mesh_pod());
        failing.keep_failing(Route::Get, Fault::Status(500));
        let timed_out = Proa::new(&failing).args(["--ready-timeout", "1s"]).args(bash("exit 0".into()));
        assert_eq!(timed_out.spawn().wait(BOUND).code(), 124);
        let stopped = Proa::new(&failing).args(bash("exit 0".into())).spawn();
        failing.wait_for_requests(BOUND, 3, |r| r.route == Some(Route::Get));
        stopped.signal(libc::SIGTERM);
        assert_eq!(stopped.wait(BOUND).code(), 143);
        assert!(istio.hits().is_empty(), "guessed though told, or the pod was fine: {:?}", istio.hits());
    });
}
