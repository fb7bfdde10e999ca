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
fn a_regular_sidecar_gates_the_start_through_its_probe_before_the_api_says_ready() {
    sidecar_gates_the_start(false);
}

#[test]
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
            json!({"restartPolicy": "Never", "initContainers": [web], "containers": [main], "volumes": [scratch.volume()]})
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
    assert!(
        started + Duration::from_millis(50) > answered && started < answered + START_LATENCY,
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
