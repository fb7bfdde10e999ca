//! proa injected at admission (issue 29): `deploy/inject/` installed on the real kube-apiserver exactly as the README
//! says, then Pods of every shape created with a server-side dry run, and the Pod the server would store asserted
//! field by field. Every shape goes through the real server because some JSONPatch shapes panic its conversion
//! (deploy/inject/policy.yaml says which), and that fails the Pod's creation even under `failurePolicy: Ignore`.
//! What the server made of a Pod is compared with what it makes of the same Pod without the label (its defaults
//! included), so that "unchanged" means unchanged. Only in the default build, like `envtest.rs`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::envtest::{self, Cluster, Namespace};
use crate::support::proa::{Marker, Proa};

/// How long the policy may take to apply after `kubectl apply` (the server loads policies and parameters from
/// informers: about a second).
const ACTIVE_BOUND: Duration = Duration::from_secs(30);
const PROCESS_BOUND: Duration = Duration::from_secs(10);
/// The image the README's command puts in the ConfigMap, word for word.
const IMAGE: &str = "ghcr.io/owner/proa:0.3.0";
const DIR: &str = "/proa-inject";
const STATUS: &str = "proa.dev/inject-status";
/// An annotation value `kubectl describe` shows whole (it showed the first 138 characters of a longer one, then "...").
const DESCRIBED: usize = 138;

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    let thread = std::thread::current();
    thread.name().map_or("inject", |name| name.trim_start_matches("inject::")).to_string()
}

/// The shared cluster with `deploy/inject/` applied and the image set by the README's own commands, once per run;
/// `None` after a loud skip (no assets, and `CI` unset).
pub fn cluster() -> Option<&'static Cluster> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let cluster = envtest::cluster(&test_name())?;
    INSTALLED.get_or_init(|| install(cluster));
    Some(cluster)
}

/// A namespace of the running test's own (with the ServiceAccount `proa` its Pods run as).
fn namespace() -> Option<Namespace> {
    let test = test_name();
    Some(cluster()?.namespace(&test, &["get", "watch"]))
}

/// The README's install block: the ```sh block that applies `deploy/inject/`, run as it is written.
fn readme_install_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = readme.split("```sh\n").skip(1).map(|rest| rest.split("```").next().unwrap());
    let block = blocks.into_iter().find(|block| block.contains("kubectl apply -k deploy/inject/"));
    block.expect("README.md has a ```sh block with `kubectl apply -k deploy/inject/`").to_string()
}

fn install(cluster: &'static Cluster) {
    let block = readme_install_block();
    assert!(block.contains(&format!("image={IMAGE}")), "the README sets another image than {IMAGE}:\n{block}");
    cluster.kubectl_sh(&block);
    // The policy applies once the server has loaded it and its parameter: a labelled Pod shows when.
    let ns = cluster.namespace("inject-install", &["get", "watch"]);
    let probe = pod(&[json!({"name": "job", "image": "busybox", "command": ["true"]})]);
    let started = Instant::now();
    while admit(&ns, &probe)["metadata"]["annotations"][STATUS].is_null() {
        assert!(started.elapsed() < ACTIVE_BOUND, "the policy did not apply within {ACTIVE_BOUND:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("inject: the policy applies {:.1}s after kubectl apply", started.elapsed().as_secs_f64());
}

/// A Pod labelled for injection, with these containers, no token volume (so no volumes at all) and the
/// ServiceAccount the test namespace has.
fn pod(containers: &[Value]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job-abc12", "labels": {"proa.dev/inject": "true", "app": "report"}},
        "spec": {
            "serviceAccountName": envtest::SERVICE_ACCOUNT, "automountServiceAccountToken": false,
            "restartPolicy": "Never", "containers": containers,
        },
    })
}

/// The Pod the server would store: a create with `dryRun=All`, through every admission plugin.
fn admit(ns: &Namespace, pod: &Value) -> Value {
    ns.cluster.request("POST", &format!("/api/v1/namespaces/{}/pods?dryRun=All", ns.name), Some(pod))
}

/// What the server makes of the same Pod without the injection label: its own defaults, nothing of proa's.
fn baseline(ns: &Namespace, pod: &Value) -> Value {
    let mut unlabelled = pod.clone();
    unlabelled["metadata"]["labels"].as_object_mut().unwrap().remove("proa.dev/inject");
    let admitted = admit(ns, &unlabelled);
    assert!(admitted["metadata"]["annotations"][STATUS].is_null(), "an unlabelled Pod was annotated: {admitted:#}");
    normalised(admitted["spec"].clone())
}

/// A spec with the ServiceAccount token volume's random suffix removed, so that two admissions compare equal.
fn normalised(spec: Value) -> Value {
    let text = spec.to_string();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("kube-api-access-") {
        out.push_str(&rest[..at + "kube-api-access".len()]);
        rest = rest[at + "kube-api-access-".len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap()
}

fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    let all = spec["containers"].as_array().into_iter().chain(spec["initContainers"].as_array()).flatten();
    all.into_iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no container {name} in {spec:#}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|items| items.iter().map(|item| item["name"].as_str().unwrap()).collect()).unwrap_or_default()
}

/// The init container the policy adds, as the server stores it (its defaults included).
fn installer() -> Value {
    json!({
        "name": "proa-inject", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["--install", DIR],
        "volumeMounts": [{"name": "proa-inject", "mountPath": DIR}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
            "runAsUser": 65532, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    })
}

fn downward(name: &str, field: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field}}})
}

/// Asserts that `admitted` is `before` (the baseline) with proa injected into `target`, whose command becomes
/// `wrapped`, with `env` after injection; everything else as it was.
fn assert_injected(admitted: &Value, before: &Value, target: &str, wrapped: &[&str], env: Value) {
    let spec = normalised(admitted["spec"].clone());
    let status = &admitted["metadata"]["annotations"][STATUS];
    assert_eq!(status, &json!(format!("injected into container {target}")), "{admitted:#}");

    // First among the init containers; the Pod's own keep their order and content after it.
    let mut init = spec["initContainers"].as_array().cloned().unwrap_or_default();
    assert!(!init.is_empty(), "no init containers: {spec:#}");
    // The ServiceAccount plugin mounts the token into every container, proa's installer included, where it mounts
    // one at all.
    let mut expected = installer();
    let token = before["containers"][0]["volumeMounts"].as_array().into_iter().flatten();
    let token = token.into_iter().find(|m| m["name"] == "kube-api-access");
    expected["volumeMounts"].as_array_mut().unwrap().extend(token.cloned());
    assert_eq!(init.remove(0), expected);
    assert_eq!(init, before["initContainers"].as_array().cloned().unwrap_or_default());

    // One emptyDir more, after the Pod's own volumes.
    let mut volumes = before["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": "proa-inject", "emptyDir": {}}));
    assert_eq!(spec["volumes"], Value::from(volumes));

    // The wrapped container: command, a read-only mount, the Downward API; its args and the rest as they were.
    let mut expected = container(before, target).clone();
    expected["command"] = json!(wrapped);
    let mut mounts = expected["volumeMounts"].as_array().cloned().unwrap_or_default();
    mounts.push(json!({"name": "proa-inject", "mountPath": DIR, "readOnly": true}));
    expected["volumeMounts"] = mounts.into();
    expected["env"] = env;
    assert_eq!(container(&spec, target), &expected);

    // Every other container, and the rest of the spec, as the server would have stored them without proa.
    let mut others = spec.clone();
    let mut others_before = before.clone();
    for spec in [&mut others, &mut others_before] {
        for key in ["initContainers", "volumes"] {
            spec.as_object_mut().unwrap().remove(key);
        }
        let containers = spec["containers"].as_array_mut().unwrap();
        containers.retain(|c| c["name"] != target);
    }
    assert_eq!(others, others_before);
}

/// Asserts the spec is the baseline's and the annotation says `why` (or there is none).
fn assert_untouched(admitted: &Value, before: &Value, why: Option<&str>) {
    assert_eq!(&normalised(admitted["spec"].clone()), before, "{admitted:#}");
    let status = admitted["metadata"]["annotations"][STATUS].as_str();
    match (status, why) {
        (None, None) => {}
        (Some(status), Some(why)) => {
            assert!(status.contains(why), "{STATUS}: {status:?}, not {why:?}");
            // What to set must not be cut off where users read it.
            assert!(status.len() <= DESCRIBED, "{STATUS} is cut by kubectl describe: {status:?}");
        }
        (status, why) => panic!("{STATUS}: {status:?}, expected {why:?}"),
    }
}

fn pod_env() -> Value {
    json!([downward("POD_NAME", "metadata.name"), downward("POD_NAMESPACE", "metadata.namespace")])
}

#[test]
fn command_and_args_are_wrapped_and_the_sidecar_is_left_alone() {
    let Some(ns) = namespace() else { return };
    let pod = pod(&[
        json!({"name": "job", "image": "python:3.12-slim", "command": ["python", "-m", "report"], "args": ["--all", "2"]}),
        json!({"name": "envoy", "image": "envoyproxy/envoy:v1.31", "args": ["-c", "/etc/envoy.yaml"]}),
    ]);
    let admitted = admit(&ns, &pod);
    let wrapped = [&format!("{DIR}/proa"), "--", "python", "-m", "report"];
    assert_injected(&admitted, &baseline(&ns, &pod), "job", &wrapped, pod_env());
    assert_eq!(
        container(&admitted["spec"], "job")["args"],
        json!(["--all", "2"]),
        "args stay args: argv is command + args"
    );
}

#[test]
fn a_command_without_args_is_wrapped() {
    let Some(ns) = namespace() else { return };
    let pod = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"]})]);
    let admitted = admit(&ns, &pod);
    assert_injected(&admitted, &baseline(&ns, &pod), "job", &[&format!("{DIR}/proa"), "--", "/bin/report"], pod_env());
    assert!(container(&admitted["spec"], "job")["args"].is_null());
}

#[test]
fn existing_env_volumes_and_init_containers_keep_their_place() {
    // Istio's shape: istio-init (iptables, NET_ADMIN) before the app, a native sidecar, the token volume mounted.
    let Some(ns) = namespace() else { return };
    let mut pod = pod(&[json!({
        "name": "job", "image": "busybox", "command": ["sh", "-c", "./report"],
        "env": [{"name": "LEVEL", "value": "debug"}, {"name": "POD_NAME", "value": "set-by-the-user"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    })]);
    pod["spec"]["automountServiceAccountToken"] = json!(true);
    pod["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    pod["spec"]["initContainers"] = json!([
        {"name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.0",
         "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"],
         "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}, "runAsUser": 0}},
        {"name": "log-shipper", "image": "fluent/fluent-bit:3.1", "restartPolicy": "Always"},
    ]);
    let admitted = admit(&ns, &pod);
    let before = baseline(&ns, &pod);
    assert_eq!(names(&before["volumes"]), ["data", "kube-api-access"], "the token volume is there too");
    // POD_NAME is the user's; only POD_NAMESPACE is added, after the container's own.
    let env = json!([{"name": "LEVEL", "value": "debug"}, {"name": "POD_NAME", "value": "set-by-the-user"},
                     downward("POD_NAMESPACE", "metadata.namespace")]);
    assert_injected(&admitted, &before, "job", &[&format!("{DIR}/proa"), "--", "sh", "-c", "./report"], env);
    assert_eq!(names(&admitted["spec"]["initContainers"]), ["proa-inject", "istio-init", "log-shipper"]);
}

#[test]
fn the_annotation_chooses_another_container() {
    let Some(ns) = namespace() else { return };
    let mut pod = pod(&[
        json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}),
        json!({"name": "worker", "image": "busybox", "command": ["/bin/work"], "args": ["--once"],
               "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}),
    ]);
    pod["metadata"]["annotations"] = json!({"proa.dev/container": "worker"});
    let admitted = admit(&ns, &pod);
    let env = json!([downward("POD_NAMESPACE", "metadata.namespace"), downward("POD_NAME", "metadata.name")]);
    assert_injected(&admitted, &baseline(&ns, &pod), "worker", &[&format!("{DIR}/proa"), "--", "/bin/work"], env);
    assert_eq!(admitted["metadata"]["annotations"]["proa.dev/container"], "worker", "the user's annotation stays");
}

#[test]
fn a_container_already_running_proa_is_left_alone() {
    let Some(ns) = namespace() else { return };
    for command in [
        json!(["/proa", "--", "./report"]),
        json!(["/proa-bin/proa", "-p", "http://127.0.0.1:15000/quit"]),
        json!(["proa"]),
    ] {
        let pod = pod(&[json!({"name": "job", "image": "registry.example/report:1.0", "command": command})]);
        assert_untouched(
            &admit(&ns, &pod),
            &baseline(&ns, &pod),
            Some("not injected: container job already runs proa"),
        );
    }
}

#[test]
fn a_container_without_a_command_is_left_alone_and_the_pod_says_why() {
    let Some(ns) = namespace() else { return };
    // The image's ENTRYPOINT is not in the Pod: args alone cannot be wrapped.
    let pod = pod(&[json!({"name": "job", "image": "python:3.12-slim", "args": ["report.py"]})]);
    let admitted = admit(&ns, &pod);
    assert_untouched(&admitted, &baseline(&ns, &pod), Some("not injected: container job has no command"));
    let status = admitted["metadata"]["annotations"][STATUS].as_str().unwrap();
    assert!(status.ends_with("set command and args"), "{status}");
}

#[test]
fn a_named_container_that_does_not_exist_is_left_alone_and_the_pod_says_why() {
    let Some(ns) = namespace() else { return };
    let mut pod = pod(&[
        json!({"name": "job", "image": "busybox", "command": ["/bin/report"]}),
        json!({"name": "envoy", "image": "envoyproxy/envoy:v1.31"}),
    ]);
    pod["metadata"]["annotations"] = json!({"proa.dev/container": "reprot"});
    let admitted = admit(&ns, &pod);
    let why = "not injected: no container reprot (annotation proa.dev/container); containers: job, envoy";
    assert_untouched(&admitted, &baseline(&ns, &pod), Some(why));
}

#[test]
fn an_unlabelled_pod_is_untouched() {
    let Some(ns) = namespace() else { return };
    let mut pod = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"]})]);
    for labels in [json!({"app": "report"}), json!({"proa.dev/inject": "false"}), json!({"proa.dev/inject": "yes"})] {
        pod["metadata"]["labels"] = labels;
        let admitted = admit(&ns, &pod);
        let mut plain = pod.clone();
        plain["metadata"]["labels"] = json!({"app": "report"});
        assert_untouched(&admitted, &baseline(&ns, &plain), None);
        assert!(admitted["metadata"]["annotations"].is_null(), "{admitted:#}");
    }
}

/// The Pod as stored, made into a Pod to create again (what a second admission pass sees).
fn recreatable(admitted: &Value) -> Value {
    let mut pod = admitted.clone();
    let metadata = pod["metadata"].as_object_mut().unwrap();
    for key in ["uid", "creationTimestamp", "generation", "resourceVersion", "managedFields"] {
        metadata.remove(key);
    }
    pod.as_object_mut().unwrap().remove("status");
    pod
}

#[test]
fn a_second_admission_pass_injects_nothing_more() {
    let Some(ns) = namespace() else { return };
    let pod = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"], "args": ["x"]})]);
    let first = admit(&ns, &pod);
    assert_eq!(first["metadata"]["annotations"][STATUS], "injected into container job");
    let second = admit(&ns, &recreatable(&first));
    assert_eq!(second["spec"], first["spec"]);
    assert_eq!(second["metadata"]["annotations"], first["metadata"]["annotations"]);
}

/// A mesh's injector, as a second policy that changes the Pod (an istio-init and an istio-proxy): whichever of the two
/// the server runs first (the order is the server's; both orders were seen), the other one then changes the Pod, and
/// the server reinvokes the first (`reinvocationPolicy: IfNeeded`). Bound to the namespaces labelled
/// `proa-test/mesh: "on"` only, so that no other test's Pods see it.
const MESH: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: zz-proa-test-mesh}
spec:
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"]}]
  mutations:
    - patchType: JSONPatch
      jsonPatch:
        expression: >-
          object.spec.containers.exists(c, c.name == 'istio-proxy') ? [] :
          (has(object.spec.initContainers) ? [] : [JSONPatch{op: "add", path: "/spec/initContainers", value: []}]) +
          [JSONPatch{op: "add", path: "/spec/containers/-", value: Object.spec.containers{
             name: "istio-proxy", image: "docker.io/istio/proxyv2:1.24.0", args: ["proxy", "sidecar"]}},
           JSONPatch{op: "add", path: "/spec/initContainers/-", value: Object.spec.initContainers{
             name: "istio-init", image: "docker.io/istio/proxyv2:1.24.0", args: ["istio-iptables"]}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: zz-proa-test-mesh}
spec:
  policyName: zz-proa-test-mesh
  matchResources:
    namespaceSelector: {matchLabels: {proa-test/mesh: "on"}}
"#;

fn label_namespace(ns: &Namespace, key: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {key: value}}});
    ns.cluster.request("PATCH", &format!("/api/v1/namespaces/{}", ns.name), Some(&patch));
}

/// Admits `pod` until `done` holds of the result (policies and bindings apply about a second after they are
/// written), within a bound.
fn admit_until(ns: &Namespace, pod: &Value, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let admitted = admit(ns, pod);
        if done(&admitted) {
            return admitted;
        }
        assert!(started.elapsed() < ACTIVE_BOUND, "not applied within {ACTIVE_BOUND:?}: {admitted:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reinvocation_after_a_mesh_injector_injects_nothing_more() {
    let Some(ns) = namespace() else { return };
    let mesh = ns.cluster.dir_file("mesh.yaml");
    std::fs::write(&mesh, MESH).unwrap();
    ns.cluster.kubectl_sh(&format!("kubectl apply -f {}", mesh.display()));
    label_namespace(&ns, "proa-test/mesh", "on");
    let pod = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"]})]);
    let admitted = admit_until(&ns, &pod, |p| names(&p["spec"]["containers"]).contains(&"istio-proxy"));
    assert_eq!(admitted["metadata"]["annotations"][STATUS], "injected into container job");
    let spec = &admitted["spec"];
    assert_eq!(names(&spec["initContainers"]), ["proa-inject", "istio-init"]);
    assert_eq!(names(&spec["containers"]), ["job", "istio-proxy"]);
    assert_eq!(names(&spec["volumes"]), ["proa-inject"]);
    let job = container(spec, "job");
    assert_eq!(job["command"], json!([format!("{DIR}/proa"), "--", "/bin/report"]));
    assert_eq!(job["env"], pod_env());
    assert_eq!(names(&job["volumeMounts"]), ["proa-inject"]);
    assert!(container(spec, "istio-proxy")["volumeMounts"].is_null(), "the mesh's container is not proa's");
}

#[test]
fn a_namespace_labelled_enabled_injects_every_pod_but_those_that_opt_out() {
    let Some(ns) = namespace() else { return };
    let Some(plain) = namespace() else { return };
    label_namespace(&ns, "proa.dev/inject", "enabled");
    let mut pod = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"]})]);
    pod["metadata"]["labels"] = json!({"app": "report"});
    // What the server makes of the Pod in a namespace without the label.
    let before = baseline(&plain, &pod);
    let wrapped = [&format!("{DIR}/proa"), "--", "/bin/report"];
    let admitted = admit_until(&ns, &pod, |p| !p["metadata"]["annotations"][STATUS].is_null());
    assert_injected(&admitted, &before, "job", &wrapped, pod_env());

    // Labelled as well: both bindings match, and the policy injects once.
    pod["metadata"]["labels"] = json!({"proa.dev/inject": "true"});
    assert_injected(&admit(&ns, &pod), &before, "job", &wrapped, pod_env());

    // The opt-out.
    pod["metadata"]["labels"] = json!({"proa.dev/inject": "false"});
    assert_untouched(&admit(&ns, &pod), &before, None);
}

#[test]
fn a_restricted_namespace_still_admits_the_injected_pod() {
    // Pod Security admission validates after mutation: the init container must pass `restricted` itself.
    let Some(ns) = namespace() else { return };
    label_namespace(&ns, "pod-security.kubernetes.io/enforce", "restricted");
    // The label takes effect once the server's namespace cache has it: a Pod that is not restricted shows when.
    let mut loose = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"]})]);
    loose["metadata"]["labels"] = json!({"app": "report"});
    let started = Instant::now();
    loop {
        let (status, body) =
            ns.cluster.answer("POST", &format!("/api/v1/namespaces/{}/pods?dryRun=All", ns.name), Some(&loose));
        if status == 403 && body.contains("violates PodSecurity") && body.contains("restricted:latest") {
            break;
        }
        assert!(started.elapsed() < ACTIVE_BOUND, "restricted not enforced within {ACTIVE_BOUND:?}: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut pod = pod(&[json!({
        "name": "job", "image": "busybox", "command": ["/bin/report"],
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    })]);
    pod["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}});
    let admitted = admit(&ns, &pod);
    assert_injected(&admitted, &baseline(&ns, &pod), "job", &[&format!("{DIR}/proa"), "--", "/bin/report"], pod_env());
}

/// Two more bindings of the same policy, for the namespaces labelled `proa-test/params: NAME` only: one whose
/// ConfigMap lacks the key `image`, one whose ConfigMap does not exist.
fn params_binding(name: &str, configmap_namespace: &str, configmap: &str) -> String {
    format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {{name: proa-test-{name}}}
spec:
  policyName: proa-inject
  paramRef: {{name: {configmap}, namespace: {configmap_namespace}, parameterNotFoundAction: Allow}}
  matchResources:
    namespaceSelector: {{matchLabels: {{proa-test/params: {name}}}}}
"#
    )
}

#[test]
fn without_an_image_nothing_is_injected_and_no_pod_is_refused() {
    let Some(no_key) = namespace() else { return };
    let Some(no_configmap) = namespace() else { return };
    let Some(plain) = namespace() else { return };
    let cluster = no_key.cluster;
    cluster.request(
        "POST",
        &format!("/api/v1/namespaces/{}/configmaps", no_key.name),
        Some(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "proa-params"}, "data": {"imag": IMAGE}})),
    );
    let bindings = cluster.dir_file(&format!("params-{}.yaml", no_key.name));
    let text = [
        params_binding(&no_key.name, &no_key.name, "proa-params"),
        params_binding(&no_configmap.name, &no_configmap.name, "proa-params"),
    ];
    std::fs::write(&bindings, text.join("---")).unwrap();
    cluster.kubectl_sh(&format!("kubectl apply -f {}", bindings.display()));
    label_namespace(&no_key, "proa-test/params", &no_key.name);
    label_namespace(&no_configmap, "proa-test/params", &no_configmap.name);
    // Unlabelled Pods: only the test's bindings match.
    let mut pod = pod(&[json!({"name": "job", "image": "busybox", "command": ["/bin/report"]})]);
    pod["metadata"]["labels"] = json!({"app": "report"});
    let admitted = admit_until(&no_key, &pod, |p| !p["metadata"]["annotations"][STATUS].is_null());
    let why = "not injected: the ConfigMap proa-system/proa-inject has no key image";
    let before = baseline(&plain, &pod);
    assert_untouched(&admitted, &before, Some(why));
    // No ConfigMap: the binding does nothing (the other one, applied with it, shows the bindings are in force).
    assert_untouched(&admit(&no_configmap, &pod), &before, None);
}

#[test]
fn the_example_job_is_injected_into_a_command_line_proa_accepts() {
    let Some(ns) = namespace() else { return };
    let job = ns.cluster.kubectl_sh("kubectl create --dry-run=client -o json -f examples/job-injected.yaml");
    let job: Value = serde_json::from_str(&job).unwrap();
    let template = &job["spec"]["template"];
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
    pod["metadata"]["name"] = json!("proa-injected-example-x7k2p");
    pod["spec"]["serviceAccountName"] = json!(envtest::SERVICE_ACCOUNT);
    let admitted = admit(&ns, &pod);
    let main = container(&admitted["spec"], "migrate");
    let command: Vec<&str> = main["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(command[..3], [&format!("{DIR}/proa"), "--", "python"]);
    assert_eq!(main["env"], pod_env());
    // proa parses the injected command line (proa's arguments after its executable, then the container's args) and
    // stops only at the API server's address, which no request could use.
    let args = command[1..]
        .iter()
        .map(|a| a.to_string())
        .chain(main["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
    let done = Proa::bare()
        .env("KUBERNETES_SERVICE_HOST", "not a host")
        .env("KUBERNETES_SERVICE_PORT", "443")
        .args(args)
        .spawn()
        .wait(PROCESS_BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("invalid KUBERNETES_SERVICE_HOST"), "{}", done.stderr);
}

/// Whether the API server lets `user` (a service account of `namespace`, with the groups the token authenticator
/// gives it) do `verb` on pods in `in_namespace`.
fn allowed(cluster: &Cluster, namespace: &str, user: &str, verb: &str, in_namespace: &str) -> bool {
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": format!("system:serviceaccount:{namespace}:{user}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            "resourceAttributes": {"namespace": in_namespace, "verb": verb, "resource": "pods"},
        },
    });
    let answer = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(&review));
    answer["status"]["allowed"].as_bool().unwrap_or(false)
}

/// Asserts that every service account of `ns` may get and watch pods there, and nothing more.
fn assert_granted(cluster: &Cluster, ns: &str, other: &str) {
    for user in ["default", "report-runner"] {
        for verb in ["get", "watch"] {
            assert!(allowed(cluster, ns, user, verb, ns), "{user} cannot {verb} pods in {ns}");
            assert!(!allowed(cluster, ns, user, verb, other), "{user} of {ns} can {verb} pods in {other}");
            assert!(!allowed(cluster, other, user, verb, ns), "{user} of {other} can {verb} pods in {ns}");
        }
        for verb in ["list", "create", "delete", "patch"] {
            assert!(!allowed(cluster, ns, user, verb, ns), "{user} can {verb} pods in {ns}");
        }
    }
}

/// deploy/inject/namespace/ applied to `ns`, with its `namespace:` set as its kustomization says.
fn apply_namespace_rbac(ns: &Namespace) {
    let copy = ns.cluster.dir_file(&format!("rbac-{}", ns.name));
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["kustomization.yaml", "role.yaml", "rolebinding.yaml"] {
        let path = format!("{}/deploy/inject/namespace/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let text = text.replace("\nnamespace: jobs\n", &format!("\nnamespace: {}\n", ns.name));
        assert!(file != "kustomization.yaml" || text.contains(&ns.name), "no `namespace: jobs` line in {file}");
        std::fs::write(copy.join(file), text).unwrap();
    }
    ns.cluster.kubectl_sh(&format!("kubectl apply -k {}", copy.display()));
}

#[test]
fn the_namespace_rbac_grants_get_and_watch_to_every_service_account_of_the_namespace() {
    let Some(first) = namespace() else { return };
    let Some(second) = namespace() else { return };
    let Some(other) = namespace() else { return };
    let cluster = first.cluster;
    apply_namespace_rbac(&first);
    assert_granted(cluster, &first.name, &other.name);
    // Without kustomize: deploy/'s Role, and the one command of deploy/inject/namespace/kustomization.yaml.
    let kustomization =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/inject/namespace/kustomization.yaml"))
            .unwrap();
    let command = kustomization
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("kubectl -n NS create rolebinding"));
    let command = format!("kubectl -n NS create rolebinding{}", command.expect("the kustomization's kubectl command"));
    cluster.kubectl_sh(&format!(
        "kubectl apply -n {0} -k deploy/ && {1}",
        second.name,
        command.replace("NS", &second.name)
    ));
    assert_granted(cluster, &second.name, &other.name);
}

/// A TokenRequest token for the ServiceAccount `account` of `ns`, in a folder laid out as the kubelet mounts it.
fn service_account_dir(ns: &Namespace, account: &str) -> std::path::PathBuf {
    let path = format!("/api/v1/namespaces/{}/serviceaccounts/{account}/token", ns.name);
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}});
    let token = ns.cluster.request("POST", &path, Some(&request));
    let dir = ns.cluster.dir_file(&format!("service-accounts/{}-{account}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), token["status"]["token"].as_str().unwrap()).unwrap();
    std::fs::write(dir.join("namespace"), &ns.name).unwrap();
    std::fs::copy(ns.service_account_dir().join("ca.crt"), dir.join("ca.crt")).unwrap();
    dir
}

#[test]
fn an_injected_pod_runs_its_program_under_proa_with_only_the_namespace_rbac() {
    // The chain short of a kubelet: the label, the Pod the server stores, the namespace's RBAC for a service account
    // of the user's own, and the real proa run with the stored command line and the Downward API's values. The test
    // plays the kubelet: it runs that command line here and writes the container statuses.
    let Some(ns) = namespace() else { return };
    let cluster = ns.cluster;
    let account = "report-runner";
    let created = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}});
    cluster.request("POST", &format!("/api/v1/namespaces/{}/serviceaccounts", ns.name), Some(&created));
    apply_namespace_rbac(&ns);

    let mut marker = Marker::start();
    let mut pod = pod(&[json!({
        "name": "job", "image": "bash:5", "command": ["bash", "-c"], "args": [format!("{}; exit 7", marker.say("started"))],
    })]);
    pod["spec"]["serviceAccountName"] = json!(account);
    pod["spec"]["initContainers"] =
        json!([{"name": "log-shipper", "image": "fluent/fluent-bit:3.1", "restartPolicy": "Always"}]);
    let stored = cluster.request("POST", &format!("/api/v1/namespaces/{}/pods", ns.name), Some(&pod));
    let name = stored["metadata"]["name"].as_str().unwrap();
    let path = format!("/api/v1/namespaces/{}/pods/{name}", ns.name);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "envtest-node"}});
    cluster.request("POST", &format!("{path}/binding"), Some(&binding));
    let statuses = |shipper_ready: bool| {
        let running = json!({"running": {}});
        json!({"status": {
            "phase": "Pending",
            "initContainerStatuses": [
                envtest::status("proa-inject", false, json!({"terminated": {"exitCode": 0}})),
                envtest::status("log-shipper", shipper_ready, running.clone()),
            ],
            "containerStatuses": [envtest::status("job", false, running)],
        }})
    };
    cluster.request("PATCH", &format!("{path}/status"), Some(&statuses(false)));

    // What the kubelet would run: the stored command and args, with the Downward API's values.
    let job = container(&stored["spec"], "job");
    assert_eq!(job["env"], pod_env());
    let argv: Vec<String> = job["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(job["args"].as_array().unwrap())
        .map(|arg| arg.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[..2], [format!("{DIR}/proa"), "--".to_string()]);
    let env = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", cluster.port().to_string()),
        ("PROA_SERVICE_ACCOUNT_DIR", service_account_dir(&ns, account).display().to_string()),
        ("POD_NAME", name.to_string()),
        ("POD_NAMESPACE", ns.name.clone()),
    ];
    let proa = Proa::with_env(env.map(|(k, v)| (k.to_string(), v))).args(&argv[1..]).spawn();
    proa.wait_for_stderr(PROCESS_BOUND, |err| err.contains("watch: stream open from resourceVersion"));
    let before_ready = Instant::now();
    cluster.request("PATCH", &format!("{path}/status"), Some(&statuses(true)));
    let started = marker.wait_for("started", PROCESS_BOUND);
    assert!(started.at > before_ready, "the program started before the native sidecar was ready");
    let done = proa.wait(PROCESS_BOUND);
    assert_eq!(done.code(), 7, "{}", done.stderr);
    assert!(!done.stderr.contains("403"), "{}", done.stderr);
}
