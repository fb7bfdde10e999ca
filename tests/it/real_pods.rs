//! proa in real Pods (issue 27): a real kubelet, containerd and runc on this machine (`support::node`) run
//! hostNetwork Pods whose main container is the static proa built by `make static`, beside sidecar stand-ins made of
//! busybox (httpd, sh). Each test asserts what a user sees: the containers' exit codes and the Pod's phase as the
//! API reports them, what each sidecar received, and how long it took, timed against moments the test observed
//! itself (the sidecar's endpoint first answering, the program reporting its start to the test over loopback).
//! The kubelet's own latencies (relisting containers every second, probing every 10 s) get generous bounds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::envtest::Namespace;
use crate::support::node::{self, Beacon, Node, PROA_BUSYBOX, free_port, wait_until_serving};
use crate::support::real_pod::{
    KUBELET, RealPod, Scratch, exit_code, phase, proa_env, ready, restarts, running, sidecar,
};

/// How long after its endpoint first answers proa must have started the program (issue 20: 0.02 s measured; proa
/// probes every 100 ms).
const START_LATENCY: Duration = Duration::from_millis(300);

/// The node and a namespace of the running test's own; `None` after a loud skip.
fn setup() -> Option<(&'static Node, Namespace)> {
    let thread = std::thread::current();
    let test = thread.name().map_or("real_pods", |name| name.trim_start_matches("real_pods::"));
    let node = node::node(test)?;
    Some((node, node.namespace(test)))
}

/// proa's container `main` from the busybox+proa image: `/proa FLAGS -- /bin/sh -c SCRIPT`.
fn main_container(node: &Node, flags: &[&str], script: &str) -> Value {
    let mut command = vec!["/proa"];
    command.extend(flags);
    command.extend(["--", "/bin/sh", "-c", script]);
    json!({"name": "main", "image": PROA_BUSYBOX, "env": proa_env(node), "command": command})
}

/// A sidecar's address: the node's own (a hostNetwork Pod's `status.podIP`, where the probes go) and a free port.
fn address(node: &Node) -> String {
    format!("{}:{}", node.ip(), free_port(node.ip()))
}

#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn a_regular_sidecar_gates_the_start_through_its_probe_before_the_api_says_ready() {
    sidecar_gates_the_start(false);
}

#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn a_native_sidecar_gates_the_start_through_its_probe_before_the_api_says_ready() {
    sidecar_gates_the_start(true);
}

/// The sidecar serves 3 s after it starts; the kubelet probes it at its start and then every 10 s (the default
/// period), so the API says ready 7 s later at best: proa's own probe must start the program within
/// [`START_LATENCY`] of the endpoint answering, while the API still says not ready. Then the whole lifecycle: the
/// program exits 0, a regular sidecar is sent the shutdown POST (a native one is left to the kubelet), the Pod
/// succeeds.
fn sidecar_gates_the_start(native: bool) {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let mut web = sidecar("web", &addr, 3);
    let quit = format!("http://{addr}/cgi-bin/quitquitquit");
    let main = main_container(node, &["-p", &quit], &beacon.say("started"));
    let spec = match native {
        true => {
            web["restartPolicy"] = json!("Always");
            let volumes = [scratch.volume()];
            json!({"restartPolicy": "Never", "initContainers": [web], "containers": [main], "volumes": volumes})
        }
        false => json!({"restartPolicy": "Never", "containers": [main, web], "volumes": [scratch.volume()]}),
    };
    let pod = RealPod::create(node, &ns, "job", spec);

    let answered = wait_until_serving(&addr, "/ready", KUBELET);
    let started = beacon.wait_for("started", KUBELET);
    let kind = if native { "native" } else { "regular" };
    eprintln!(
        "real pod, {kind} sidecar: endpoint answered -> program started: {:?}",
        started.saturating_duration_since(answered)
    );
    // Never early: the endpoint serves 3 s after the sidecar started (the test sees it answer within its own polling
    // and scheduling delays, hence a margin below).
    assert!(
        started + Duration::from_secs(1) > answered && started < answered + START_LATENCY,
        "the program started {:?} after the endpoint answered",
        started.checked_duration_since(answered)
    );
    let (_, done) = pod.wait_for("Succeeded", KUBELET, |p| phase(p) == "Succeeded" || phase(p) == "Failed");
    assert_eq!((phase(&done), exit_code(&done, "main")), ("Succeeded", Some(0)));
    let ready_by_start = pod.history().into_iter().any(|(at, p)| at <= started && ready(&p, "web"));
    assert!(!ready_by_start, "the API said web was ready before the program started: no direct probe shown");
    let received = if native { vec![] } else { vec!["POST /cgi-bin/quitquitquit".to_string()] };
    assert_eq!(scratch.received(), received, "what the sidecar received");
}

/// A regular sidecar that is never ready and exits 3 under `restartPolicy: Never`: proa never starts the program
/// and exits 125, and the Pod fails.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn a_sidecar_that_dies_for_good_fails_the_pod_with_125_and_the_program_never_runs() {
    let Some((node, ns)) = setup() else { return };
    let beacon = Beacon::start();
    let web = json!({"name": "web", "image": node::BUSYBOX, "command": ["/bin/sh", "-c", "sleep 2; exit 3"],
                     "readinessProbe": {"exec": {"command": ["false"]}}});
    let main = main_container(node, &[], &beacon.say("started"));
    let pod = RealPod::create(node, &ns, "job", json!({"restartPolicy": "Never", "containers": [main, web]}));

    let (died, _) = pod.wait_for("web terminated", KUBELET, |p| exit_code(p, "web").is_some());
    let (ended, done) = pod.wait_for("Failed", KUBELET, |p| phase(p) == "Failed" || phase(p) == "Succeeded");
    assert_eq!((phase(&done), exit_code(&done, "main"), exit_code(&done, "web")), ("Failed", Some(125), Some(3)));
    assert!(ended - died < Duration::from_secs(10), "proa took {:?} to give up", ended - died);
    assert_eq!(beacon.heard(), Vec::<String>::new(), "the program ran");
    let log = pod.logs("main");
    assert!(log.contains("web"), "proa's log does not name the sidecar:\n{log}");
}

/// `kubectl delete pod` (grace 30 s) while proa waits for a sidecar that never serves: the kubelet's SIGTERM ends
/// proa with 143 before the program ran, and the Pod is gone within seconds, not the grace period.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn deleting_the_pod_while_proa_waits_ends_it_with_143_within_seconds() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let main = main_container(node, &[], &beacon.say("started"));
    let web = sidecar("web", &addr, 3600);
    let spec = json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
                      "containers": [main, web], "volumes": [scratch.volume()]});
    let pod = RealPod::create(node, &ns, "job", spec);
    pod.wait_for("running", KUBELET, |p| running(p, "main") && running(p, "web"));
    let deleted = pod.delete(30);

    let (_, last) = pod.wait_for("main terminated", KUBELET, |p| exit_code(p, "main").is_some());
    assert_eq!(exit_code(&last, "main"), Some(143));
    let gone = pod.wait_gone(KUBELET);
    assert!(gone - deleted < Duration::from_secs(10), "the Pod took {:?} to go", gone - deleted);
    assert_eq!(beacon.heard(), Vec::<String>::new(), "the program ran");
}

/// `kubectl delete pod` while the program runs: proa forwards the SIGTERM, the program exits 42 on it, proa's
/// container ends with 42, and the Pod is gone within seconds.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn deleting_the_pod_while_the_program_runs_ends_it_with_the_programs_code() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let quit = format!("http://{addr}/cgi-bin/quitquitquit");
    let program =
        format!("trap '{}; exit 42' TERM; {}; sleep 3600 & wait", beacon.say("stopping"), beacon.say("started"));
    let main = main_container(node, &["-p", &quit], &program);
    let spec = json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
                      "containers": [main, sidecar("web", &addr, 0)], "volumes": [scratch.volume()]});
    let pod = RealPod::create(node, &ns, "job", spec);
    beacon.wait_for("started", KUBELET);
    let deleted = pod.delete(30);

    let stopping = beacon.wait_for("stopping", KUBELET);
    assert!(
        stopping - deleted < Duration::from_secs(5),
        "the SIGTERM reached the program {:?} later",
        stopping - deleted
    );
    let (_, last) = pod.wait_for("main terminated", KUBELET, |p| exit_code(p, "main").is_some());
    assert_eq!(exit_code(&last, "main"), Some(42));
    let gone = pod.wait_gone(KUBELET);
    assert!(gone - deleted < Duration::from_secs(10), "the Pod took {:?} to go", gone - deleted);
}

/// `restartPolicy: OnFailure` and a program that fails once: proa leaves the sidecar running (the kubelet restarts
/// proa's container), the rerun finds it ready and succeeds, and only then is the sidecar stopped; the Pod succeeds.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn on_failure_the_kubelet_reruns_proa_and_the_sidecar_is_left_running_for_it() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let quit = format!("http://{addr}/cgi-bin/quitquitquit");
    let program = format!(
        "if [ -e /t/ran ]; then {}; exit 0; fi; touch /t/ran; {}; exit 1",
        beacon.say("second"),
        beacon.say("first")
    );
    let mut main = main_container(node, &["-p", &quit], &program);
    main["volumeMounts"] = json!([{"name": "t", "mountPath": "/t"}]);
    let spec = json!({"restartPolicy": "OnFailure", "containers": [main, sidecar("web", &addr, 0)],
                      "volumes": [scratch.volume()]});
    let pod = RealPod::create(node, &ns, "job", spec);

    beacon.wait_for("first", KUBELET);
    let (_, failed) =
        pod.wait_for("main failed once", KUBELET, |p| restarts(p, "main") >= 1 || exit_code(p, "main") == Some(1));
    assert!(running(&failed, "web"), "the sidecar was stopped after the first run");
    // The kubelet's restart back-off (10 s at first) comes before the rerun.
    beacon.wait_for("second", Duration::from_secs(60));
    let (_, done) = pod.wait_for("Succeeded", KUBELET, |p| phase(p) == "Succeeded" || phase(p) == "Failed");
    assert_eq!((phase(&done), exit_code(&done, "main"), restarts(&done, "main")), ("Succeeded", Some(0), 1));
    assert_eq!(restarts(&done, "web"), 0, "the sidecar was restarted");
    assert_eq!(scratch.received(), ["POST /cgi-bin/quitquitquit"], "one shutdown request, after the rerun");
}

/// An unmodified busybox image wrapped through `--install`: an init container of the FROM-scratch proa image
/// copies proa into an emptyDir, the main container runs it from there; the whole lifecycle completes.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn install_wraps_an_unmodified_image_through_an_empty_dir() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let bin = json!([{"name": "bin", "mountPath": "/proa-bin"}]);
    let install = json!({"name": "install", "image": node::PROA, "command": ["/proa", "--install", "/proa-bin"],
                         "volumeMounts": bin});
    let quit = format!("http://{addr}/cgi-bin/quitquitquit");
    let main = json!({
        "name": "main", "image": node::BUSYBOX, "env": proa_env(node), "volumeMounts": bin,
        "command": ["/proa-bin/proa", "-p", quit, "--", "/bin/sh", "-c", beacon.say("started")],
    });
    let spec = json!({
        "restartPolicy": "Never", "initContainers": [install], "containers": [main, sidecar("web", &addr, 0)],
        "volumes": [scratch.volume(), {"name": "bin", "emptyDir": {}}],
    });
    let pod = RealPod::create(node, &ns, "job", spec);

    beacon.wait_for("started", KUBELET);
    let (_, done) = pod.wait_for("Succeeded", KUBELET, finished);
    let codes = (exit_code(&done, "install"), exit_code(&done, "main"), exit_code(&done, "web"));
    assert_eq!((phase(&done), codes), ("Succeeded", (Some(0), Some(0), Some(0))));
    assert_eq!(scratch.received(), ["POST /cgi-bin/quitquitquit"]);
}

/// A sidecar with no shutdown endpoint of its own (busybox httpd) runs under `proa --serve-quit`: proa in the main
/// container POSTs /quitquitquit to it, which stops httpd and exits 0 (a stop that was not its doing would exit
/// with httpd's code); the Pod succeeds.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn serve_quit_stops_a_sidecar_without_a_shutdown_endpoint() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let (addr, quit_port) = (address(node), free_port("127.0.0.1"));
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let web = json!({
        "name": "web", "image": PROA_BUSYBOX, "volumeMounts": [{"name": "t", "mountPath": "/t"}],
        "command": ["/proa", "--serve-quit", format!("127.0.0.1:{quit_port}"), "--",
                    "httpd", "-f", "-p", addr, "-h", "/t/www"],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}},
    });
    let quit = format!("web=http://127.0.0.1:{quit_port}/quitquitquit");
    let main = main_container(node, &["-p", &quit], &beacon.say("started"));
    let spec = json!({"restartPolicy": "Never", "containers": [main, web], "volumes": [scratch.volume()]});
    let pod = RealPod::create(node, &ns, "job", spec);

    beacon.wait_for("started", KUBELET);
    let (_, done) = pod.wait_for("Succeeded", KUBELET, finished);
    assert_eq!((phase(&done), exit_code(&done, "main"), exit_code(&done, "web")), ("Succeeded", Some(0), Some(0)));
    let log = pod.logs("web");
    assert!(log.contains("POST /quitquitquit: stopping the sidecar"), "the sidecar's log:\n{log}");
}

/// Istio's `istio-proxy` stand-in: `proa --serve-quit` on `status_port` in front of a process that exits 9 on a
/// SIGTERM of anyone else's, so that it exits 0 only when proa's POST stopped it.
fn istio_proxy_stand_in(status_port: u16) -> Value {
    json!({
        "name": "istio-proxy", "image": PROA_BUSYBOX,
        "command": ["/proa", "--serve-quit", format!("127.0.0.1:{status_port}"), "--",
                    "/bin/sh", "-c", "trap 'exit 9' TERM; sleep 3600 & wait"],
    })
}

/// A container named `istio-proxy` (a stand-in: `proa --serve-quit` on the status port the Pod's annotation names,
/// in front of a process that exits 9 on a SIGTERM of anyone else's) is recognised with no flag: proa POSTs its
/// /quitquitquit after the program, it exits 0, and the Pod succeeds.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn a_recognised_istio_proxy_is_stopped_with_no_flag() {
    let Some((node, ns)) = setup() else { return };
    let beacon = Beacon::start();
    let status_port = free_port("127.0.0.1");
    let proxy = istio_proxy_stand_in(status_port);
    let main = main_container(node, &[], &beacon.say("started"));
    let spec = json!({"restartPolicy": "Never", "containers": [main, proxy]});
    let annotations = json!({"status.sidecar.istio.io/port": status_port.to_string()});
    let pod = RealPod::create_annotated(node, &ns, "job", annotations, spec);

    beacon.wait_for("started", KUBELET);
    let (_, done) = pod.wait_for("Succeeded", KUBELET, finished);
    let codes = (exit_code(&done, "main"), exit_code(&done, "istio-proxy"));
    assert_eq!((phase(&done), codes), ("Succeeded", (Some(0), Some(0))));
    let log = pod.logs("main");
    assert!(log.contains(&format!("Istio's proxy (status port {status_port}")), "proa's log:\n{log}");
}

/// `kubectl exec POD -c main -- /proa --check` in a running Pod: the check judges PID 1's command line, reaches
/// the API with the Pod's own token, finds RBAC's get and watch, and exits 0 with every line ok.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn proa_check_through_kubectl_exec_is_ok_in_a_running_pod() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let quit = format!("http://{addr}/cgi-bin/quitquitquit");
    // The program runs until the test has checked.
    let program = format!("{}; while [ ! -e /t/go ]; do sleep 0.1; done", beacon.say("started"));
    let mut main = main_container(node, &["-p", &quit], &program);
    main["volumeMounts"] = json!([{"name": "t", "mountPath": "/t"}]);
    let spec = json!({"restartPolicy": "Never", "containers": [main, sidecar("web", &addr, 0)],
                      "volumes": [scratch.volume()]});
    let pod = RealPod::create(node, &ns, "job", spec);
    beacon.wait_for("started", KUBELET);

    let out = node.cluster.kubectl(&["exec", "-n", &ns.name, "job", "-c", "main", "--", "/proa", "--check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.lines().all(|l| l.starts_with("ok    ")), "{stdout}");
    for text in [
        "own container main (found from the command line of PID 1)",
        "RBAC allows get on pod job",
        "RBAC allows watch on pod job",
        "waits for container web (regular sidecar",
        &format!("shutdown POST {quit}: sent"),
    ] {
        assert!(stdout.lines().any(|l| l.contains(text)), "no line with {text:?} in:\n{stdout}");
    }
    std::fs::write(scratch.dir.join("go"), "").unwrap();
    let (_, done) = pod.wait_for("Succeeded", KUBELET, finished);
    assert_eq!((phase(&done), exit_code(&done, "main")), ("Succeeded", Some(0)));
}

/// Two main containers running proa, peers of each other (`--peer`): the first by name stops the sidecar only after
/// the other's program has ended too; the other exits with its program's code at once; one shutdown request.
#[test]
#[cfg_attr(feature = "kill", ignore = "the default build runs it")]
fn two_main_containers_with_peer_stop_the_sidecar_once_after_both() {
    let Some((node, ns)) = setup() else { return };
    let scratch = Scratch::new(node, &ns.name);
    let beacon = Beacon::start();
    let addr = address(node);
    let quit = format!("http://{addr}/cgi-bin/quitquitquit");
    let t = json!([{"name": "t", "mountPath": "/t"}]);
    let mut a = main_container(node, &["--peer", "main-b", "-p", &quit], &beacon.say("a"));
    a["name"] = json!("main-a");
    // b's program runs until the test lets it end.
    let b_program = format!("{}; while [ ! -e /t/go ]; do sleep 0.1; done; exit 4", beacon.say("b"));
    let mut b = main_container(node, &["--peer", "main-a", "-p", &quit], &b_program);
    b["name"] = json!("main-b");
    b["volumeMounts"] = t.clone();
    let spec = json!({"restartPolicy": "Never", "containers": [a, b, sidecar("web", &addr, 0)],
                      "volumes": [scratch.volume()]});
    let pod = RealPod::create(node, &ns, "job", spec);

    beacon.wait_for("a", KUBELET);
    beacon.wait_for("b", KUBELET);
    // a's program has ended; while b's runs, nothing is sent.
    pod.wait_for_log("main-a", "waiting for peers main-b to terminate", KUBELET);
    assert!(scratch.received().is_empty(), "the sidecar was stopped while a peer ran: {:?}", scratch.received());
    std::fs::write(scratch.dir.join("go"), "").unwrap();
    let (_, done) = pod.wait_for("Failed", KUBELET, finished);
    let codes = (exit_code(&done, "main-a"), exit_code(&done, "main-b"), exit_code(&done, "web"));
    assert_eq!((phase(&done), codes), ("Failed", (Some(0), Some(4), Some(0))));
    assert_eq!(scratch.received(), ["POST /cgi-bin/quitquitquit"], "one shutdown request");
}

/// Whether every container of the Pod has ended for good: the phase says so.
fn finished(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// `--kill NAME` (the kill variant, `/proa-kill`) under `shareProcessNamespace: true`, NAME the executable's file
/// name: the sidecar runs busybox's `httpd` link (its executable is /bin/busybox, its command name `httpd`); proa
/// finds it among the Pod's processes and sends it SIGTERM, of which httpd dies: 143, so the Pod fails, as a
/// user's would with a sidecar that does not handle SIGTERM.
#[test]
#[cfg_attr(not(feature = "kill"), ignore = "the --features kill run runs it")]
fn kill_by_executable_name_stops_a_sidecar_under_share_process_namespace() {
    kill_by_name("busybox");
}

/// The same by the command name, as `pkill httpd` would find it: the command name (`/proc/PID/comm`) or the
/// executable's file name; the log names the process by the name that matched.
#[test]
#[cfg_attr(not(feature = "kill"), ignore = "the --features kill run runs it")]
fn kill_by_command_name_stops_a_sidecar_under_share_process_namespace() {
    kill_by_name("httpd");
}

fn kill_by_name(name: &str) {
    let Some((node, ns, scratch)) = kill_setup() else { return };
    let addr = address(node);
    let (pod, beacon) = kill_pod(node, &ns, &scratch, &addr, &["--kill", name], None);
    beacon.wait_for("started", KUBELET);
    let (_, done) = pod.wait_for("Failed", KUBELET, finished);
    let log = pod.logs("main");
    let line = log.lines().find(|l| l.contains("--kill")).unwrap_or_else(|| panic!("proa's log:\n{log}"));
    assert!(line.contains(&format!("SIGTERM to {name} (pid ")) && line.matches(" (pid ").count() == 1, "{line}");
    assert_eq!((phase(&done), exit_code(&done, "main"), exit_code(&done, "web")), ("Failed", Some(0), Some(143)));
}

/// `--kill-all` under `shareProcessNamespace: true`: every process of the sidecar gets SIGTERM (its shell records
/// it and exits 0), the Pod's pause process (PID 1) is spared, and the Pod succeeds.
#[test]
#[cfg_attr(not(feature = "kill"), ignore = "the --features kill run runs it")]
fn kill_all_stops_every_other_process_but_spares_pause() {
    let Some((node, ns, scratch)) = kill_setup() else { return };
    let addr = address(node);
    let web = format!("trap 'echo sh stopped >> /t/received; exit 0' TERM; httpd -f -p {addr} -h /t/www & wait");
    let (pod, beacon) = kill_pod(node, &ns, &scratch, &addr, &["--kill-all"], Some(&web));
    beacon.wait_for("started", KUBELET);
    let (_, done) = pod.wait_for("Succeeded", KUBELET, finished);
    assert_eq!((phase(&done), exit_code(&done, "main"), exit_code(&done, "web")), ("Succeeded", Some(0), Some(0)));
    assert_eq!(scratch.received(), ["sh stopped"]);
    let log = pod.logs("main");
    let line = log.lines().find(|l| l.contains("SIGTERM to ")).unwrap_or_else(|| panic!("proa's log:\n{log}"));
    // The shell and its httpd (both named busybox: the shell runs its applets as itself); not pause, not proa.
    assert_eq!(line.matches("busybox (pid ").count(), 2, "{line}");
    assert_eq!(line.matches(" (pid ").count(), 2, "{line}");
}

/// The node, a namespace and a scratch folder, where the images hold the kill variant.
fn kill_setup() -> Option<(&'static Node, Namespace, Scratch)> {
    let (node, ns) = setup()?;
    let test = ns.name.clone();
    let why = Err("PROA_STATIC_BIN_KILL is not set; `make test` sets it".to_string());
    if !crate::support::machine::present(&test, "the kill variant", if node.has_kill_variant() { Ok(()) } else { why })
    {
        return None;
    }
    let scratch = Scratch::new(node, &ns.name);
    Some((node, ns, scratch))
}

/// A Pod with `shareProcessNamespace: true`: `/proa-kill FLAGS -- report started` and a sidecar `web` that serves on
/// `addr` (busybox httpd, or the shell script `web`).
fn kill_pod<'n>(
    node: &'static Node,
    ns: &'n Namespace,
    scratch: &Scratch,
    addr: &str,
    flags: &[&str],
    web: Option<&str>,
) -> (RealPod<'n>, Beacon) {
    let beacon = Beacon::start();
    let mut main = main_container(node, flags, &beacon.say("started"));
    main["command"][0] = json!("/proa-kill");
    let mut sidecar = sidecar("web", addr, 0);
    sidecar["command"] = match web {
        Some(script) => json!(["/bin/sh", "-c", script]),
        None => json!(["httpd", "-f", "-p", addr, "-h", "/t/www"]),
    };
    let spec = json!({"restartPolicy": "Never", "shareProcessNamespace": true, "containers": [main, sidecar],
                      "volumes": [scratch.volume()]});
    (RealPod::create(node, ns, "job", spec), beacon)
}

/// Issue 29 on the node: an unmodified busybox Pod with a recognisable sidecar, labelled `proa.dev/inject: "true"`
/// and nothing else of proa's, is injected by `deploy/inject/` (installed as the README says) and completes: the
/// program's exit code, the sidecar stopped. The same Pod without the label is left as it was written.
#[test]
#[cfg(not(feature = "kill"))]
fn a_labelled_pod_of_an_unmodified_image_is_injected_and_completes() {
    let Some((node, ns)) = setup() else { return };
    if crate::inject::cluster().is_none() {
        return;
    }
    let beacon = Beacon::start();
    let status_port = free_port("127.0.0.1");
    let proxy = istio_proxy_stand_in(status_port);
    // The harness's in-cluster address (no kube-proxy here), as a cluster's kubelet would set it.
    let env = json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": node.cluster.port().to_string()},
    ]);
    let script = format!("{}; exit 0", beacon.say("started"));
    let main = json!({"name": "main", "image": node::BUSYBOX, "env": env, "command": ["/bin/sh", "-c", script]});
    let spec = json!({"restartPolicy": "Never", "containers": [main, proxy]});
    let annotations = json!({"status.sidecar.istio.io/port": status_port.to_string()});
    let unlabelled = json!({"name": "plain", "annotations": annotations.clone()});
    let plain = RealPod::create_with(node, &ns, unlabelled, spec.clone());
    let as_written = plain.wait_for("created", KUBELET, |_| true).1;
    assert!(as_written["spec"]["initContainers"].is_null(), "an unlabelled Pod was changed: {as_written}");
    plain.delete(0);
    let metadata = json!({"name": "job", "labels": {"proa.dev/inject": "true"}, "annotations": annotations});
    let pod = RealPod::create_with(node, &ns, metadata, spec);
    beacon.wait_for("started", KUBELET);
    let (_, done) = pod.wait_for("Succeeded", KUBELET, finished);
    let codes = (exit_code(&done, "main"), exit_code(&done, "istio-proxy"));
    assert_eq!((phase(&done), codes), ("Succeeded", (Some(0), Some(0))), "{done}");
    assert_eq!(done["spec"]["initContainers"][0]["image"], node::INJECTED);
    let log = pod.logs("main");
    assert!(log.contains(&format!("Istio's proxy (status port {status_port}")), "proa's log:\n{log}");
}
