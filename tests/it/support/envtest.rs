//! A real Kubernetes API server for the integration tests (issue 18 §2): etcd and kube-apiserver from an envtest
//! assets folder, started once per test binary on free loopback ports, with a fresh PKI and data directory, and
//! killed and removed by a watchdog when the test process exits, however it exits. Each test gets a namespace of
//! its own, a ServiceAccount with a TokenRequest token and a Role it chooses. Nothing else runs (no kubelet, no
//! scheduler, no controllers): the tests bind their Pods and write the container statuses themselves, over REST.

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use super::machine;

/// The assets folder beside the repository, relative to it (CI clones the repository next to a copy of `shared/`).
const SHARED_ASSETS: &str = "../shared/envtest/k8s-1.36.2-linux-amd64";
/// How long etcd and kube-apiserver may take to be ready together (2-3 s on two idle cores; much more under load).
const START_BOUND: Duration = Duration::from_secs(60);
/// A bound for one request of the test's own client.
const REQUEST_BOUND: Duration = Duration::from_secs(30);
/// The admin's bearer token (`--token-auth-file`, group `system:masters`).
const ADMIN_TOKEN: &str = "proa-envtest-admin";
/// The ServiceAccount proa runs as in every test namespace.
pub const SERVICE_ACCOUNT: &str = "proa";

/// A running etcd and kube-apiserver, and an admin client for them.
pub struct Cluster {
    port: u16,
    ca_pem: String,
    dir: PathBuf,
    /// The assets folder, for `kubectl`.
    assets: PathBuf,
    agent: ureq::Agent,
    /// Held open for the life of the test process: the watchdog kills the servers and removes `dir` once it closes.
    _watchdog: Mutex<ChildStdin>,
}

/// The cluster shared by every test of this run; `None` after a loud skip where no assets exist (a failure with `CI`
/// set). A cluster that does not start fails every test that asks for it, with the reason and the servers' logs.
pub fn cluster(test: &str) -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let assets = machine::envtest_assets(test)?;
    match CLUSTER.get_or_init(|| Cluster::start(&assets)) {
        Ok(cluster) => Some(cluster),
        Err(why) => panic!("{test}: the envtest cluster did not start: {why}"),
    }
}

/// The assets folder: `KUBEBUILDER_ASSETS`, else the shared folder beside the repository.
pub fn assets_dir() -> Result<PathBuf, String> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join(SHARED_ASSETS);
    let dir = match std::env::var_os("KUBEBUILDER_ASSETS") {
        Some(dir) => PathBuf::from(dir),
        None => shared.clone(),
    };
    let missing: Vec<&str> =
        ["etcd", "kube-apiserver", "kubectl"].into_iter().filter(|binary| !dir.join(binary).is_file()).collect();
    match missing[..] {
        [] => Ok(dir),
        _ if std::env::var_os("KUBEBUILDER_ASSETS").is_some() => {
            Err(format!("KUBEBUILDER_ASSETS={} has no {}", dir.display(), missing.join(" or ")))
        }
        _ => Err(format!("KUBEBUILDER_ASSETS is not set and {} has no {}", shared.display(), missing.join(" or "))),
    }
}

/// A free port on 127.0.0.1, as the kernel picks it (released at once: the server binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// The last `lines` lines of a server's log, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| format!("({}: {err})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    format!("--- {} (last {lines} lines)\n{}", path.display(), all[all.len().saturating_sub(lines)..].join("\n"))
}

/// The test PKI: a CA, kube-apiserver's serving certificate for 127.0.0.1 signed by it, the real node's client
/// certificate (see `node.rs`), and the service-account signing key (ECDSA P-256, which kube-apiserver takes as well
/// as RSA). Written as PEM files into `dir`.
fn write_pki(dir: &Path) -> String {
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "proa envtest CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().expect("generate serving key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("serving params");
    server.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    server.use_authority_key_identifier_extension = true;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).expect("sign serving certificate");

    // The real node's kubelet (`node.rs`) authenticates with this: the Node's group and user names.
    let node_key = KeyPair::generate().expect("generate the kubelet's key");
    let mut node = CertificateParams::new(Vec::<String>::new()).expect("kubelet params");
    node.distinguished_name.push(DnType::OrganizationName, "system:nodes");
    node.distinguished_name.push(DnType::CommonName, format!("system:node:{}", super::node::NODE_NAME));
    node.use_authority_key_identifier_extension = true;
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let node_cert = node.signed_by(&node_key, &issuer).expect("sign the kubelet's certificate");

    let service_accounts = KeyPair::generate().expect("generate service-account key");
    let files = [
        ("node.crt", node_cert.pem()),
        ("node.key", node_key.serialize_pem()),
        ("ca.crt", ca_cert.pem()),
        ("serving.crt", server_cert.pem()),
        ("serving.key", server_key.serialize_pem()),
        ("service-accounts.key", service_accounts.serialize_pem()),
        ("service-accounts.pub", service_accounts.public_key_pem()),
        ("tokens.csv", format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n")),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write the envtest PKI");
    }
    ca_cert.pem()
}

/// Starts `sh` as the watchdog: it reads the servers' pids from its stdin, one a line, and when the stdin closes
/// (the test process exited, however: the write end is never closed before), kills them and removes `dir`. In a
/// process group of its own, so that a Ctrl-C to the test run does not take it down first.
#[allow(clippy::zombie_processes)] // never waited for: it outlives the test process by design
fn spawn_watchdog(dir: &Path) -> ChildStdin {
    let script = r#"pids=
while read -r pid; do pids="$pids $pid"; done
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
for i in $(seq 50); do
    alive=; for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break; sleep 0.1
done
rm -rf "$1""#;
    let mut child = Command::new("sh")
        .args(["-c", script, "proa-envtest-watchdog"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sh runs");
    child.stdin.take().expect("piped")
}

impl Cluster {
    fn start(assets: &Path) -> Result<Cluster, String> {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!("proa-envtest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let mut watchdog = spawn_watchdog(&dir);
        let ca_pem = write_pki(&dir);
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let d = |name: &str| dir.join(name).display().to_string();

        let etcd_args = vec![
            "--name=proa-envtest".to_string(),
            format!("--data-dir={}", d("etcd")),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            "--log-level=warn".to_string(),
        ];
        let mut etcd = spawn_server(assets, "etcd", &etcd_args, &dir, &mut watchdog)?;
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", d("certificates")),
            format!("--tls-cert-file={}", d("serving.crt")),
            format!("--tls-private-key-file={}", d("serving.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--service-account-issuer=https://kubernetes.default.svc".to_string(),
            format!("--service-account-key-file={}", d("service-accounts.pub")),
            format!("--service-account-signing-key-file={}", d("service-accounts.key")),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--endpoint-reconciler-type=none".to_string(),
            "--authorization-mode=RBAC".to_string(),
            // The real node's kubelet (node.rs) serves logs and exec on its own address, the Node's InternalIP.
            "--kubelet-preferred-address-types=InternalIP".to_string(),
        ];
        let mut apiserver = spawn_server(assets, "kube-apiserver", &apiserver_args, &dir, &mut watchdog)?;

        let agent = admin_agent(&ca_pem, Some(REQUEST_BOUND));
        let assets = assets.to_path_buf();
        let cluster = Cluster { port, ca_pem, dir, assets, agent, _watchdog: Mutex::new(watchdog) };
        cluster.write_kubeconfig();
        // Neither server offers an event to block on: ask /readyz until it says ok, within the bound.
        let deadline = started + START_BOUND;
        loop {
            for (name, child) in [("etcd", &mut etcd), ("kube-apiserver", &mut apiserver)] {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{name} exited ({status}) while starting\n{}", cluster.logs()));
                }
            }
            if let Ok((200, body)) = cluster.raw("GET", "/readyz", None, None) {
                if body.trim() == "ok" {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within {START_BOUND:?}\n{}", cluster.logs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "envtest: etcd and kube-apiserver (https://127.0.0.1:{port}) ready in {:.1}s, in {}",
            started.elapsed().as_secs_f64(),
            cluster.dir.display()
        );
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder of the PKI (`ca.crt`, `node.crt`, `node.key`...) and the servers' logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Runs the assets' `kubectl` as the cluster admin (`kubectl exec` goes through the API server to the kubelet).
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kubectl = self.assets.join("kubectl");
        Command::new(&kubectl)
            .arg(format!("--server=https://127.0.0.1:{}", self.port))
            .arg(format!("--token={ADMIN_TOKEN}"))
            .arg(format!("--certificate-authority={}", self.dir.join("ca.crt").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("{}: {err}", kubectl.display()))
    }

    /// A GET as the cluster admin whose body is read as it comes (a watch), with no bound of the client's own.
    pub fn stream(&self, path: &str) -> Result<impl std::io::Read + Send + 'static, String> {
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        let response = admin_agent(&self.ca_pem, None)
            .get(&url)
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .map_err(|err| format!("GET {path}: {err}"))?;
        match response.status().as_u16() {
            200 => Ok(response.into_body().into_reader()),
            status => Err(format!("GET {path} answered {status}")),
        }
    }

    /// A path in the cluster's folder (removed with it): for files a test writes for `kubectl`.
    pub fn dir_file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `DIR/kubeconfig`: the cluster admin, for `kubectl`.
    fn write_kubeconfig(&self) {
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "envtest",
            "clusters": [{"name": "envtest", "cluster": {
                "server": format!("https://127.0.0.1:{}", self.port),
                "certificate-authority": self.dir.join("ca.crt"),
            }}],
            "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
        });
        std::fs::write(self.dir.join("kubeconfig"), config.to_string()).expect("write the kubeconfig");
    }

    /// Runs `sh -c SCRIPT` with the assets' `kubectl` first on PATH and `KUBECONFIG` naming the cluster admin, in
    /// the repository's folder, as a user would type the script; its stdout, or a panic with its stderr.
    pub fn kubectl_sh(&self, script: &str) -> String {
        let path = format!("{}:{}", self.assets.display(), std::env::var("PATH").unwrap_or_default());
        let output = Command::new("sh")
            .args(["-c", script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", path)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{script}: {}\n{stdout}{stderr}", output.status);
        stdout.into_owned()
    }

    /// The tails of both servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!("{}\n{}", tail(&self.dir.join("etcd.log"), 20), tail(&self.dir.join("kube-apiserver.log"), 40))
    }

    /// One request as the cluster admin: the status and the body's text, or why there was none.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let response = match (method, body) {
            ("GET", None) => self.agent.get(&url).header("Authorization", &bearer).call(),
            ("DELETE", None) => self.agent.delete(&url).header("Authorization", &bearer).call(),
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("Authorization", &bearer)
                .content_type(content_type.unwrap_or("application/json"))
                .send(body.to_string()),
            ("PATCH", Some(body)) => self
                .agent
                .patch(&url)
                .header("Authorization", &bearer)
                .content_type(content_type.unwrap_or("application/merge-patch+json"))
                .send(body.to_string()),
            _ => unreachable!("the harness sends no {method} with body {body:?}"),
        };
        let mut response = response.map_err(|err| format!("{method} {path}: {err}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|err| format!("{method} {path}: {err}"))?;
        Ok((status, text))
    }

    /// One request as the cluster admin whatever its status (a refusal is an answer too): the status and the body.
    pub fn answer(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        self.raw(method, path, None, body).unwrap_or_else(|why| panic!("{why}\n{}", self.logs()))
    }

    /// One request as the cluster admin that must succeed (2xx); its answer as JSON. Panics with the servers' logs.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let content_type = match method {
            "PATCH" => Some("application/merge-patch+json"),
            _ => None,
        };
        match self.raw(method, path, content_type, body) {
            Ok((status, text)) if (200..300).contains(&status) => {
                serde_json::from_str(&text).unwrap_or_else(|err| panic!("{method} {path}: {err}: {text}"))
            }
            Ok((status, text)) => panic!("{method} {path} answered {status}: {text}\n{}", self.logs()),
            Err(why) => panic!("{why}\n{}", self.logs()),
        }
    }

    /// A fresh namespace for `test`, with the ServiceAccount `proa`, a Role granting `verbs` on pods and its
    /// RoleBinding, and a service-account directory (`token` from a TokenRequest, `ca.crt`, `namespace`).
    pub fn namespace(&'static self, test: &str, verbs: &[&str]) -> Namespace {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut name: String =
            test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        name.truncate(50);
        let name = format!("{}-{}", name.trim_end_matches('-'), COUNTER.fetch_add(1, Ordering::Relaxed));
        let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces";
        self.request(
            "POST",
            "/api/v1/namespaces",
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
        );
        self.request(
            "POST",
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            Some(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}})),
        );
        self.request(
            "POST",
            &format!("{rbac}/{name}/roles"),
            Some(&json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "proa"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}],
            })),
        );
        self.request(
            "POST",
            &format!("{rbac}/{name}/rolebindings"),
            Some(&json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "proa"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proa"},
                "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": name}],
            })),
        );
        let token = self.request(
            "POST",
            &format!("/api/v1/namespaces/{name}/serviceaccounts/{SERVICE_ACCOUNT}/token"),
            Some(&json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            })),
        );
        let token = token["status"]["token"].as_str().expect("a TokenRequest answers with a token").to_string();
        let sa_dir = self.dir.join("service-accounts").join(&name);
        std::fs::create_dir_all(&sa_dir).expect("create the service-account directory");
        for (file, text) in [("token", token.as_str()), ("ca.crt", &self.ca_pem), ("namespace", &name)] {
            std::fs::write(sa_dir.join(file), text).expect("write the service-account directory");
        }
        Namespace { cluster: self, name, sa_dir }
    }
}

/// Starts one server with its output in `DIR/NAME.log`, and tells the watchdog its pid.
fn spawn_server(
    assets: &Path,
    name: &str,
    args: &[String],
    dir: &Path,
    watchdog: &mut ChildStdin,
) -> Result<Child, String> {
    let log = File::create(dir.join(format!("{name}.log"))).map_err(|err| format!("{name}.log: {err}"))?;
    let err_log = log.try_clone().map_err(|err| format!("{name}.log: {err}"))?;
    let child = Command::new(assets.join(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0)
        .spawn()
        .map_err(|err| format!("{}: {err}", assets.join(name).display()))?;
    writeln!(watchdog, "{}", child.id()).map_err(|err| format!("the watchdog: {err}"))?;
    Ok(child)
}

/// The test's own client: trusts the test CA only, ignores proxies, takes any status as an answer; each request
/// bounded by `bound` where there is one.
fn admin_agent(ca_pem: &str, bound: Option<Duration>) -> ureq::Agent {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let roots: Vec<Certificate<'static>> = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|der| Certificate::from_der(der.expect("the test CA is PEM").as_ref()).to_owned())
        .collect();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(super::tls::crypto_provider())
        .root_certs(RootCerts::new_with_certs(&roots))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(bound)
        .build()
        .into()
}

/// A test's namespace, where proa runs as the ServiceAccount `proa`.
pub struct Namespace {
    pub cluster: &'static Cluster,
    pub name: String,
    sa_dir: PathBuf,
}

/// A failing test shows the servers' logs too (libtest prints what a failed test wrote).
impl Drop for Namespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("namespace {}; the servers' logs:\n{}", self.name, self.cluster.logs());
        }
    }
}

impl Namespace {
    /// proa's in-cluster environment for the Pod `pod` of this namespace.
    pub fn env(&self, pod: &str) -> Vec<(String, String)> {
        [
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
            ("KUBERNETES_SERVICE_PORT", self.cluster.port.to_string()),
            ("PROA_SERVICE_ACCOUNT_DIR", self.sa_dir.display().to_string()),
            ("POD_NAME", pod.to_string()),
            ("POD_NAMESPACE", self.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn service_account_dir(&self) -> &Path {
        &self.sa_dir
    }

    /// Creates a Job's Pod as `job` would have it: proa's container `main` first, then the `regular` sidecars, and
    /// the `native` ones as init containers with `restartPolicy: Always`; binds it to a node (the scheduler's
    /// job) and writes the statuses the kubelet would while the sidecars start: `main` running, none ready.
    pub fn create_pod(&self, name: &str, regular: &[&str], native: &[&str]) -> TestPod<'_> {
        self.create_probed_pod(name, regular, native, &[])
    }

    /// Like [`Namespace::create_pod`], with these readinessProbes: (container, probe).
    pub fn create_probed_pod(
        &self,
        name: &str,
        regular: &[&str],
        native: &[&str],
        probes: &[(&str, Value)],
    ) -> TestPod<'_> {
        let pod = TestPod {
            ns: self,
            name: name.to_string(),
            containers: std::iter::once("main").chain(regular.iter().copied()).map(String::from).collect(),
            native: native.iter().map(|s| s.to_string()).collect(),
            probes: probes.iter().map(|(name, probe)| (name.to_string(), probe.clone())).collect(),
            statuses: Mutex::new(Vec::new()),
        };
        pod.create();
        pod
    }
}

/// A Pod the test plays the scheduler and the kubelet for.
pub struct TestPod<'n> {
    ns: &'n Namespace,
    pub name: String,
    containers: Vec<String>,
    native: Vec<String>,
    /// The readinessProbes: (container, probe).
    probes: Vec<(String, Value)>,
    /// Every container's status as last written: (name, is native, status).
    statuses: Mutex<Vec<(String, bool, Value)>>,
}

impl TestPod<'_> {
    fn path(&self) -> String {
        format!("/api/v1/namespaces/{}/pods/{}", self.ns.name, self.name)
    }

    /// Creates the Pod, binds it, and writes the starting statuses (see [`Namespace::create_pod`]).
    fn create(&self) -> String {
        let container = |name: &String| {
            let mut container = json!({"name": name, "image": format!("example.com/{name}:1")});
            if let Some((_, probe)) = self.probes.iter().find(|(probed, _)| probed == name) {
                container["readinessProbe"] = probe.clone();
            }
            container
        };
        let containers: Vec<Value> = self.containers.iter().map(container).collect();
        let init: Vec<Value> = self
            .native
            .iter()
            .map(|name| {
                let mut c = container(name);
                c["restartPolicy"] = json!("Always");
                c
            })
            .collect();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": self.name},
            "spec": {
                "serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": false,
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
                "containers": containers, "initContainers": init,
            },
        });
        let created = self.ns.cluster.request("POST", &format!("/api/v1/namespaces/{}/pods", self.ns.name), Some(&pod));
        self.ns.cluster.request(
            "POST",
            &format!("{}/binding", self.path()),
            Some(&json!({
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": self.name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "envtest-node"},
            })),
        );
        let waiting = json!({"waiting": {"reason": "ContainerCreating"}});
        let mut statuses: Vec<(String, bool, Value)> =
            self.containers.iter().map(|name| (name.clone(), false, status(name, false, waiting.clone()))).collect();
        statuses.extend(self.native.iter().map(|name| (name.clone(), true, status(name, false, waiting.clone()))));
        statuses[0].2 = status("main", false, json!({"running": {}}));
        *self.statuses.lock().unwrap() = statuses;
        self.write_statuses();
        created["metadata"]["uid"].as_str().expect("a created Pod has a uid").to_string()
    }

    /// Writes every container's status through the status subresource, as the kubelet does (a merge patch replaces
    /// each list whole, hence every container each time).
    fn write_statuses(&self) -> Instant {
        let statuses = self.statuses.lock().unwrap();
        let list = |native: bool| -> Vec<Value> {
            statuses.iter().filter(|(_, n, _)| *n == native).map(|(_, _, s)| s.clone()).collect()
        };
        // The Pod's IP is on loopback: tests only ever probe loopback.
        let patch = json!({
            "status": {"phase": "Pending", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                       "containerStatuses": list(false), "initContainerStatuses": list(true)},
        });
        let before = Instant::now();
        self.ns.cluster.request("PATCH", &format!("{}/status", self.path()), Some(&patch));
        before
    }

    fn set(&self, container: &str, new: Value) -> Instant {
        {
            let mut statuses = self.statuses.lock().unwrap();
            let entry = statuses.iter_mut().find(|(name, _, _)| name == container).expect("a container of the Pod");
            entry.2 = new;
        }
        self.write_statuses()
    }

    /// Marks `container` running and ready; returns an instant taken just before the request was sent.
    pub fn set_ready(&self, container: &str) -> Instant {
        self.set(container, status(container, true, json!({"running": {}})))
    }

    /// Marks `container` running since `started_at` (RFC 3339, as the kubelet writes it) and not ready yet.
    pub fn set_running(&self, container: &str, started_at: &str) -> Instant {
        self.set(container, status(container, false, json!({"running": {"startedAt": started_at}})))
    }

    /// Marks `container` terminated with `exit_code`; returns an instant taken just before the request was sent.
    pub fn set_terminated(&self, container: &str, exit_code: i32) -> Instant {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        self.set(container, status(container, false, json!({"terminated": {"exitCode": exit_code, "reason": reason}})))
    }

    /// The Pod as the API server has it now.
    pub fn get(&self) -> Value {
        self.ns.cluster.request("GET", &self.path(), None)
    }

    /// Deletes the Pod with a grace period, as `kubectl delete --wait=false --grace-period=N` does. It is bound to
    /// a node, so the API server only sets its `deletionTimestamp` (the kubelet would remove it); returns the Pod
    /// as the delete left it.
    pub fn delete(&self, grace_seconds: u32) -> Value {
        self.ns.cluster.request("DELETE", &format!("{}?gracePeriodSeconds={grace_seconds}", self.path()), None)
    }

    /// Deletes the Pod at once (`kubectl delete --grace-period=0 --force`) and creates it again under the same
    /// name, bound and with its starting statuses; returns the new Pod's uid.
    pub fn replace(&self) -> String {
        self.delete(0);
        self.create()
    }
}

/// A container status as the kubelet writes it.
pub fn status(name: &str, ready: bool, state: Value) -> Value {
    json!({
        "name": name, "ready": ready, "started": state.get("running").is_some(), "restartCount": 0,
        "image": format!("example.com/{name}:1"), "imageID": "", "state": state,
    })
}
