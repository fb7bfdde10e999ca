//! Recognised sidecars (DESIGN.md step 4, `--auto-shutdown`, issue 21): in Pods shaped as Istio's, Linkerd's and the
//! Cloud SQL Auth Proxy's injectors write them, `proa -- PROGRAM` with no flag stops the sidecar it recognises (a
//! real loopback sidecar records what it was sent, on the port the Pod's annotations or the proxy's flags give), and
//! names at start every sidecar nothing will stop. Also `--check`, an explicit action and `--auto-shutdown false`.

use serde_json::{Value, json};

use crate::lifecycle::{BOUND, bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::proa::{Finished, Proa};
use crate::support::sidecar::Sidecar;

/// proa's container `main`, then `sidecar` (a regular container, or a native one when `native`), every container
/// running and ready, with the Pod's `annotations`.
fn injected(sidecar: Value, native: bool, annotations: Value) -> Value {
    let name = sidecar["name"].as_str().expect("a name").to_string();
    let mut pod = job_pod(&[], &[], "Never");
    pod["metadata"]["annotations"] = annotations;
    let running = |name: &str, ready: bool| json!({"name": name, "ready": ready, "state": {"running": {}}});
    pod["status"]["containerStatuses"] = json!([running("main", false)]);
    match native {
        false => {
            pod["spec"]["containers"].as_array_mut().expect("containers").push(sidecar);
            pod["status"]["containerStatuses"].as_array_mut().expect("statuses").push(running(&name, true));
        }
        true => {
            let mut sidecar = sidecar;
            sidecar["restartPolicy"] = json!("Always");
            pod["spec"]["initContainers"] = json!([sidecar]);
            pod["status"]["initContainerStatuses"] = json!([running(&name, true)]);
        }
    }
    pod
}

/// Istio's injected proxy, as its injection template writes it.
fn istio_proxy() -> Value {
    json!({
        "name": "istio-proxy",
        "image": "docker.io/istio/proxyv2:1.24.0",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning"],
        "env": [{"name": "ISTIO_META_APP_CONTAINERS", "value": "main"}],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15}
    })
}

/// The Pod annotations Istio's injector writes, with the status port (where `/quitquitquit` is served) at `port`.
fn istio_annotations(port: u16) -> Value {
    json!({
        "sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"]}",
        "status.sidecar.istio.io/port": port.to_string(),
        "prometheus.io/port": port.to_string()
    })
}

/// Linkerd's injected proxy: its admin server on `port`, the shutdown endpoint as the injector writes it.
fn linkerd_proxy(port: u16, shutdown: bool) -> Value {
    json!({
        "name": "linkerd-proxy",
        "image": "cr.l5d.io/linkerd/proxy:edge-24.11.8",
        "env": [
            {"name": "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", "value": shutdown.to_string()},
            {"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": format!("[::]:{port}")}
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}},
        "ports": [{"containerPort": 4143, "name": "linkerd-proxy"}, {"containerPort": port, "name": "linkerd-admin"}]
    })
}

fn cloud_sql_proxy(args: &[&str]) -> Value {
    json!({
        "name": "cloudsql",
        "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
        "args": args,
        "readinessProbe": {"httpGet": {"path": "/readiness", "port": 9090}}
    })
}

/// The index of the first stderr line that contains `text`; panics with stderr otherwise.
fn line_of(done: &Finished, text: &str) -> usize {
    let found = done.stderr.lines().position(|l| l.contains(text));
    found.unwrap_or_else(|| panic!("no line with {text:?} in:\n{}", done.stderr))
}

/// `text` is said before the program starts: among the first lines proa writes.
fn said_at_start(done: &Finished, text: &str) {
    assert!(line_of(done, text) < line_of(done, "started bash"), "{text:?} said late:\n{}", done.stderr);
}

/// `pod` whose container `main` runs `/proa ARGS`, so that proa finds its own container from its command line.
fn running(mut pod: Value, args: &[String]) -> ApiServer {
    pod["spec"]["containers"][0]["args"] = json!(args);
    ApiServer::start(pod)
}

/// `ARGS -- bash -c 'exit 3'`.
fn command_line(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).chain(bash("exit 3".into())).collect()
}

/// Runs `proa ARGS -- bash -c 'exit 3'` in `pod`; once `sidecar` got `path`, the container `name` exits.
fn stopped(pod: Value, args: &[&str], sidecar: &Sidecar, name: &str, path: &str) -> Finished {
    let args = command_line(args);
    let api = running(pod, &args);
    let proa = Proa::new(&api).args(&args).spawn();
    sidecar.wait_for("POST", path, 1, BOUND);
    api.set_terminated(name, 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    done
}

/// Runs `proa --shutdown-timeout 1s ARGS -- bash -c 'exit 3'` in `pod`, where nothing stops the sidecars.
fn unstopped(pod: Value, args: &[&str]) -> Finished {
    let args = command_line(&[&["--shutdown-timeout", "1s"], args].concat());
    let api = running(pod, &args);
    let done = Proa::new(&api).args(&args).spawn().wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    done
}

#[test]
fn a_regular_istio_proxy_is_stopped_with_no_flag_on_its_status_port() {
    let istio = Sidecar::start();
    let pod = injected(istio_proxy(), false, istio_annotations(istio.port()));
    let done = stopped(pod, &[], &istio, "istio-proxy", "/quitquitquit");
    assert_eq!(istio.hits().len(), 1, "{:?}", istio.hits());
    said_at_start(
        &done,
        &format!(
            "container istio-proxy is Istio's proxy (status port {0}, from status.sidecar.istio.io/port): proa will POST http://127.0.0.1:{0}/quitquitquit at shutdown",
            istio.port()
        ),
    );
    assert!(!done.stderr.contains("WARN"), "{}", done.stderr);
}

#[test]
fn a_native_istio_proxy_is_never_sent_anything() {
    let istio = Sidecar::start();
    let done = unstopped(injected(istio_proxy(), true, istio_annotations(istio.port())), &[]);
    assert!(istio.hits().is_empty(), "the kubelet would restart a native proxy: {:?}", istio.hits());
    assert!(!done.stderr.contains("istio-proxy is Istio's proxy"), "{}", done.stderr);
    assert!(!done.stderr.contains("WARN"), "{}", done.stderr);
}

#[test]
fn linkerd_with_the_shutdown_annotation_is_stopped_on_its_admin_port() {
    let linkerd = Sidecar::start();
    let annotations = json!({
        "config.linkerd.io/proxy-admin-shutdown": "enabled",
        "config.linkerd.io/admin-port": linkerd.port().to_string(),
        "linkerd.io/inject": "enabled"
    });
    let pod = injected(linkerd_proxy(linkerd.port(), true), false, annotations);
    let done = stopped(pod, &[], &linkerd, "linkerd-proxy", "/shutdown");
    said_at_start(&done, &format!("proa will POST http://127.0.0.1:{}/shutdown at shutdown", linkerd.port()));
}

#[test]
fn linkerd_without_the_annotation_gets_nothing_and_a_warning_that_names_it() {
    let linkerd = Sidecar::start();
    let annotations =
        json!({"config.linkerd.io/admin-port": linkerd.port().to_string(), "linkerd.io/inject": "enabled"});
    let done = unstopped(injected(linkerd_proxy(linkerd.port(), false), false, annotations), &[]);
    assert!(linkerd.hits().is_empty(), "{:?}", linkerd.hits());
    let warning = done.stderr.lines().nth(line_of(&done, "WARN")).unwrap_or_default();
    assert!(warning.contains("container linkerd-proxy is Linkerd's proxy"), "{warning}");
    assert!(warning.contains("add the Pod annotation config.linkerd.io/proxy-admin-shutdown: enabled"), "{warning}");
    assert!(warning.contains("the Pod will not complete after the program exits"), "{warning}");
    said_at_start(&done, "add the Pod annotation config.linkerd.io/proxy-admin-shutdown: enabled");
}

#[test]
fn a_cloud_sql_proxy_with_quitquitquit_is_stopped_on_its_admin_port() {
    let proxy = Sidecar::start();
    let admin_port = format!("--admin-port={}", proxy.port());
    let container =
        cloud_sql_proxy(&["--health-check", "--quitquitquit", &admin_port, "my-project:us-central1:orders"]);
    let done = stopped(injected(container, false, json!({})), &[], &proxy, "cloudsql", "/quitquitquit");
    said_at_start(
        &done,
        &format!("container cloudsql is the Cloud SQL Auth Proxy (admin port {}, from --admin-port)", proxy.port()),
    );
}

#[test]
fn a_cloud_sql_proxy_without_quitquitquit_gets_a_warning_that_names_the_flag() {
    let proxy = Sidecar::start();
    let admin_port = format!("--admin-port={}", proxy.port());
    let container = cloud_sql_proxy(&["--health-check", &admin_port, "my-project:us-central1:orders"]);
    let done = unstopped(injected(container, false, json!({})), &[]);
    assert!(proxy.hits().is_empty(), "{:?}", proxy.hits());
    said_at_start(&done, "its /quitquitquit endpoint is off: add --quitquitquit to its args");
}

#[test]
fn an_unknown_sidecar_is_named_at_start_with_the_ways_out() {
    let done = unstopped(job_pod_ready(&["envoy"]), &[]);
    said_at_start(&done, "no shutdown action stops container envoy: the Pod will not complete after the program exits");
    let warning = &done.stderr.lines().nth(line_of(&done, "stops container envoy")).unwrap_or_default();
    for way in ["-p envoy=URL", "--kill NAME", "proa --serve-quit", "native sidecar"] {
        assert!(warning.contains(way), "{way}: {warning}");
    }
}

#[test]
fn an_explicit_action_for_the_container_wins_over_recognition() {
    let recognised = Sidecar::start();
    let explicit = Sidecar::start();
    let pod = injected(istio_proxy(), false, istio_annotations(recognised.port()));
    let action = format!("istio-proxy={}", explicit.url("/quit"));
    stopped(pod, &["-p", &action], &explicit, "istio-proxy", "/quit");
    assert!(recognised.hits().is_empty(), "{:?}", recognised.hits());
}

#[test]
fn auto_shutdown_false_sends_nothing_and_names_the_proxy() {
    let istio = Sidecar::start();
    let pod = injected(istio_proxy(), false, istio_annotations(istio.port()));
    let done = unstopped(pod.clone(), &["--auto-shutdown", "false"]);
    assert!(istio.hits().is_empty(), "{:?}", istio.hits());
    said_at_start(&done, "no shutdown action stops container istio-proxy");
    // The same from the environment.
    let api = ApiServer::start(pod);
    let done = Proa::new(&api)
        .env("PROA_AUTO_SHUTDOWN", "false")
        .args(["--shutdown-timeout", "0"])
        .args(bash("exit 0".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(istio.hits().is_empty(), "{:?}", istio.hits());
}

#[test]
fn check_reports_each_recognised_and_each_unstopped_sidecar() {
    let istio = Sidecar::start();
    let mut pod = injected(istio_proxy(), false, istio_annotations(istio.port()));
    pod["spec"]["containers"].as_array_mut().expect("containers").push(json!({"name": "envoy"}));
    let api = ApiServer::start(pod);
    let done = Proa::new(&api).args(["--check", "--container", "main"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    let lines: Vec<&str> = done.stdout.lines().collect();
    let ok = format!(
        "ok    container istio-proxy is Istio's proxy (status port {0}, from status.sidecar.istio.io/port): proa will POST http://127.0.0.1:{0}/quitquitquit at shutdown (--auto-shutdown)",
        istio.port()
    );
    assert!(lines.contains(&ok.as_str()), "{}", done.stdout);
    let fail = lines.iter().find(|l| l.contains("stops container envoy")).expect("a line for envoy");
    assert!(fail.starts_with("FAIL  no shutdown action stops container envoy: the Pod will not complete"), "{fail}");
    assert!(istio.hits().is_empty(), "--check sends nothing");
}

/// `job_pod` with these regular sidecars running and ready.
fn job_pod_ready(regular: &[&str]) -> Value {
    let mut pod = job_pod(regular, &[], "Never");
    let ready = |name: &&str| json!({"name": name, "ready": true, "state": {"running": {}}});
    let mut statuses = vec![json!({"name": "main", "ready": false, "state": {"running": {}}})];
    statuses.extend(regular.iter().map(ready));
    pod["status"]["containerStatuses"] = json!(statuses);
    pod
}

#[test]
fn under_restart_policy_always_nothing_is_promised_or_sent() {
    // The kubelet restarts proa's container, so proa leaves the sidecars running: no "will POST", no warning.
    let quit = Sidecar::start();
    let mut pod = injected(istio_proxy(), false, istio_annotations(quit.port()));
    pod["spec"]["restartPolicy"] = json!("Always");
    let done = Proa::new(&ApiServer::start(pod)).args(bash("exit 0".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(!done.stderr.contains("will POST") && !done.stderr.contains("no shutdown action stops"), "{}", done.stderr);
    assert!(quit.hits().is_empty(), "sent {:?}", quit.hits());
}

/// Issue 26 §3: `--check` reports what this proa's run would do, from the decision the run uses. Under
/// `restartPolicy: Always`, with `restartPolicyRules` that restart the container after every exit, or where another
/// proa stops the sidecars, the run sends nothing, so `--check` promises no POST and no shutdown budget, and the
/// start-up lines neither promise nor warn.
#[test]
fn check_and_start_up_promise_nothing_where_the_run_sends_nothing() {
    let quit = Sidecar::start();
    let istio_pod = || injected(istio_proxy(), false, istio_annotations(quit.port()));
    let mut always = istio_pod();
    always["spec"]["restartPolicy"] = json!("Always");
    let mut rules = istio_pod();
    rules["spec"]["containers"][0]["restartPolicy"] = json!("Never");
    rules["spec"]["containers"][0]["restartPolicyRules"] = json!([{"action": "Restart"}]);
    let mut stopped_by_another = istio_pod();
    let other = json!({"name": "a-main", "image": "job", "command": ["/proa", "--", "other-job"]});
    stopped_by_another["spec"]["containers"].as_array_mut().unwrap().push(other);
    for (what, pod) in [("Always", always), ("rules", rules), ("another stopper", stopped_by_another)] {
        let api = ApiServer::start(pod);
        let done = Proa::new(&api).args(["--check", "--container", "main"]).spawn().wait(BOUND);
        assert_eq!(done.code(), 0, "{what}: stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
        for promise in ["will POST", "shutdown POST", "within their budget", "no shutdown action stops"] {
            assert!(!done.stdout.contains(promise), "{what}: {promise:?} in:\n{}", done.stdout);
        }
        let run = Proa::new(&api).args(["--container", "main"]).args(bash("exit 0".into())).spawn().wait(BOUND);
        assert_eq!(run.code(), 0, "{what}: {}", run.stderr);
        assert!(
            !run.stderr.contains("will POST") && !run.stderr.contains("no shutdown action stops"),
            "{}",
            run.stderr
        );
        assert!(quit.hits().is_empty(), "{what}: sent {:?}", quit.hits());
    }
}
