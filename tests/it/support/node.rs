//! A real Kubernetes node for the integration tests (issue 27): beside envtest's etcd and kube-apiserver
//! (`envtest.rs`), a containerd and a kubelet of the test run's own (own folder, socket, ports, cgroup root), which
//! run real Pods on this machine. Started once per test binary; the images the Pods use are built here from this
//! machine's static busybox and the freshly built static proa (`PROA_STATIC_BIN`) and imported with no registry.
//! A watchdog tears everything down when the test process exits, however it exits: the kubelet, every container and
//! its shim, containerd, the mounts and cgroups they made, the folder. Facts about this kind of machine (cgroup v1,
//! no systemd, the node's address) are in `../shared/node/README.md`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::envtest::{self, Cluster, Namespace};
use super::machine;

/// The Node's name: in the kubelet's client certificate (`envtest.rs` issues it) and every test Pod's `nodeName`.
pub const NODE_NAME: &str = "proa-node";
/// The kubelet and pause binaries beside the repository (as `envtest.rs` finds the API server's).
const SHARED_ASSETS: &str = "../shared/node/k8s-1.36.2-linux-amd64";
/// containerd, the images and the kubelet's registration together (about 10 s on two idle cores).
const START_BOUND: Duration = Duration::from_secs(120);

/// A plain busybox image: `/bin/busybox` and its applets, entrypoint `/bin/sh`: what "an unmodified image" means.
pub const BUSYBOX: &str = "docker.io/library/busybox:proa-test";
/// The FROM-scratch image users get: `/proa` only (and `/proa-kill`, the kill variant, where it was built).
pub const PROA: &str = "docker.io/library/proa:test";
/// busybox with `/proa` (and `/proa-kill`) added: a program's image that bundles proa.
pub const PROA_BUSYBOX: &str = "docker.io/library/proa-busybox:test";
/// The image the README's injection command puts in the ConfigMap (a tag of `PROA`).
pub const INJECTED: &str = "ghcr.io/owner/proa:0.3.0";
/// The Pod sandbox's image, named in containerd's configuration.
const PAUSE: &str = "docker.io/library/proa-pause:test";
/// The busybox applets the images link (relative symbolic links to `busybox`).
const APPLETS: &[&str] = &[
    "sh", "[", "cat", "date", "echo", "env", "false", "grep", "httpd", "kill", "ls", "mkdir", "nc", "pidof", "ps",
    "rm", "sleep", "test", "touch", "true", "wget",
];

/// Run by `sh` when the test process exits (its stdin closes): $1 the node's folder, $2 containerd's socket, $3 the
/// cgroup root's name, $4 where to keep the logs (`PROA_NODE_LOGS`, or empty); stdin lines `kubelet PID` and
/// `containerd PID`. The kubelet goes first (killed: it needs no grace), then every container and sandbox (killed,
/// then deleted, which stops its shim and unmounts its root), then containerd; then whatever a crash left: shims
/// naming this socket, mounts under the folder, the cgroups, the kubelet's log links in /var/log/containers and its
/// device-plugin socket. Kills only the pids it was told and shims of this socket.
const TEARDOWN: &str = r#"dir=$1 sock=$2 cgroup=$3 logs=$4 kubelet= containerd=
while read -r name pid; do case $name in kubelet) kubelet=$pid;; containerd) containerd=$pid;; esac; done
exec >"$dir.teardown.log" 2>&1
[ -n "$kubelet" ] && kill -KILL "$kubelet"
if [ -n "$containerd" ]; then
    ctr="ctr -a $sock -n k8s.io"
    tasks=$($ctr tasks ls -q)
    for id in $tasks; do $ctr tasks kill -s SIGKILL "$id"; done
    for id in $tasks; do
        for i in $(seq 50); do $ctr tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
    done
    kill -TERM "$containerd"
    for i in $(seq 50); do kill -0 "$containerd" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$containerd" 2>/dev/null
fi
for pid in $(pgrep -f -- "-address $sock\$"); do kill -KILL "$pid"; done
grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r mount; do umount -l "$mount"; done
for hierarchy in /sys/fs/cgroup/ /sys/fs/cgroup/*/; do
    [ -d "$hierarchy$cgroup" ] && find "$hierarchy$cgroup" -depth -type d -exec rmdir {} +
done
find /var/log/containers -maxdepth 1 -lname "$dir/*" -delete
# The device manager's socket has a fixed path whatever --root-dir; the folders go only where they are empty.
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers 2>/dev/null
[ -n "$logs" ] && mkdir -p "$logs" && cp -r "$dir"/*.log "$dir/pod-logs" "$logs/"
rm -rf "$dir"
rm -f "$dir.teardown.log""#;

/// What the node needs from this machine, found.
struct Prerequisites {
    assets: PathBuf,
    busybox: PathBuf,
    proa: PathBuf,
    /// The kill variant (`PROA_STATIC_BIN_KILL`), where `make` built it.
    proa_kill: Option<PathBuf>,
    /// This machine's own global IPv4 address: the kubelet refuses a loopback node IP.
    ip: String,
}

/// The running node.
pub struct Node {
    pub cluster: &'static Cluster,
    ip: String,
    dir: PathBuf,
    /// Whether `/proa-kill` is in the proa images.
    kill_variant: bool,
    /// Held open for the life of the test process: the watchdog tears the node down once it closes.
    _watchdog: Mutex<ChildStdin>,
}

/// The node shared by every test of this run; `None` after a loud skip where this machine cannot run one (a failure
/// with `CI` set). A node that does not start fails every test that asks for it, with the reason and the logs.
pub fn node(test: &str) -> Option<&'static Node> {
    static NODE: OnceLock<Result<Node, String>> = OnceLock::new();
    static FOUND: OnceLock<Result<Prerequisites, String>> = OnceLock::new();
    let found = FOUND.get_or_init(prerequisites);
    let what = "a real node (root, cgroups, containerd, runc, busybox-static, the kubelet, PROA_STATIC_BIN)";
    if !machine::present(test, what, found.as_ref().map(|_| ()).map_err(Clone::clone)) {
        return None;
    }
    let cluster = envtest::cluster(test)?;
    let found = found.as_ref().expect("checked above");
    match NODE.get_or_init(|| Node::start(cluster, found)) {
        Ok(node) => Some(node),
        Err(why) => panic!("{test}: the real node did not start: {why}"),
    }
}

fn prerequisites() -> Result<Prerequisites, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("it runs as root only".into());
    }
    for tool in ["containerd", "containerd-shim-runc-v2", "ctr", "runc"] {
        find_program(tool).ok_or(format!("{tool} is not installed (apt-get install containerd runc)"))?;
    }
    let busybox = find_program("busybox").ok_or("busybox is not installed (apt-get install busybox-static)")?;
    if !is_static(&busybox) {
        return Err(format!("{} is not static (apt-get install busybox-static)", busybox.display()));
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join(SHARED_ASSETS);
    let assets = std::env::var_os("PROA_NODE_ASSETS").map_or(shared, PathBuf::from);
    for binary in ["kubelet", "pause"] {
        if !assets.join(binary).is_file() {
            return Err(format!("{} has no {binary} (PROA_NODE_ASSETS names another folder)", assets.display()));
        }
    }
    let proa = std::env::var_os("PROA_STATIC_BIN").ok_or("PROA_STATIC_BIN is not set; `make test` sets it")?;
    let proa_kill = std::env::var_os("PROA_STATIC_BIN_KILL").map(PathBuf::from);
    Ok(Prerequisites { assets, busybox, proa: proa.into(), proa_kill, ip: own_address()? })
}

/// `name` on PATH or in the sbin folders (runc is in /usr/sbin).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether an ELF file has no program interpreter (a PT_INTERP header): a static executable runs in any image.
fn is_static(path: &Path) -> bool {
    let Ok(elf) = std::fs::read(path) else { return false };
    let word =
        |at: usize, n: usize| elf.get(at..at + n).map(|b| b.iter().rev().fold(0usize, |v, x| v << 8 | *x as usize));
    let (Some(phoff), Some(phentsize), Some(phnum)) = (word(0x20, 8), word(0x36, 2), word(0x38, 2)) else {
        return false;
    };
    elf.starts_with(b"\x7fELF\x02") && (0..phnum).all(|i| word(phoff + i * phentsize, 4).is_some_and(|t| t != 3))
}

/// The first global IPv4 address of this machine (`ip -o -4 addr show scope global`).
fn own_address() -> Result<String, String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .map_err(|err| format!("cannot run ip: {err}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(String::from)
        .ok_or("this machine has no global IPv4 address for the node".into())
}

/// A free TCP port on `ip`, as the kernel picks it (released at once: the server binds it a moment later).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Starts `sh` with [`TEARDOWN`] as the watchdog, in a process group of its own (a Ctrl-C to the run must not take
/// it down first).
#[allow(clippy::zombie_processes)] // never waited for: it outlives the test process by design
fn spawn_watchdog(dir: &Path, socket: &Path, cgroup: &str) -> ChildStdin {
    let mut child = Command::new("sh")
        .args(["-c", TEARDOWN, "proa-node-watchdog"])
        .args([dir, socket])
        .arg(cgroup)
        .arg(std::env::var_os("PROA_NODE_LOGS").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sh runs");
    child.stdin.take().expect("piped")
}

/// Starts `program` with its output in `DIR/NAME.log` and tells the watchdog its pid.
fn spawn(program: &Path, args: &[String], dir: &Path, name: &str, watchdog: &mut ChildStdin) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|err| format!("{name}.log: {err}"))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|err| err.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|err| format!("{}: {err}", program.display()))?;
    writeln!(watchdog, "{name} {}", child.id()).map_err(|err| format!("the watchdog: {err}"))?;
    Ok(child)
}

/// Runs a short command to its end; its output, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|err| format!("{program}: {err}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())),
    }
}

/// The last `lines` lines of a log, or its lines that contain `filter`, for failure messages.
fn tail(path: &Path, lines: usize, filter: Option<&str>) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| format!("({}: {err})", path.display()));
    let all: Vec<&str> = text.lines().filter(|line| filter.is_none_or(|f| line.contains(f))).collect();
    format!("--- {} (last {lines} lines)\n{}", path.display(), all[all.len().saturating_sub(lines)..].join("\n"))
}

impl Node {
    fn start(cluster: &'static Cluster, found: &Prerequisites) -> Result<Node, String> {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!("proa-node-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let socket = dir.join("containerd.sock");
        let cgroup = format!("proa-node-{}", std::process::id());
        let mut watchdog = spawn_watchdog(&dir, &socket, &cgroup);
        let d = |name: &str| dir.join(name).display().to_string();

        std::fs::create_dir_all(dir.join("cni/conf"))
            .and_then(|()| std::fs::create_dir_all(dir.join("cni/bin")))
            .map_err(|e| e.to_string())?;
        // containerd reports the network ready once it finds one configuration; hostNetwork Pods need no plugin.
        let conflist = r#"{"cniVersion": "0.4.0", "name": "proa-loopback", "plugins": [{"type": "loopback"}]}"#;
        std::fs::write(dir.join("cni/conf/10-loopback.conflist"), conflist).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("containerd.toml"), containerd_config(&dir, &socket)).map_err(|e| e.to_string())?;
        let mut containerd = spawn(
            &find_program("containerd").expect("checked"),
            &["--config".into(), d("containerd.toml")],
            &dir,
            "containerd",
            &mut watchdog,
        )?;
        // The images are built while containerd starts.
        let kill_variant = found.proa_kill.is_some();
        let archive = images::build(&dir.join("images"), found)?;
        let node = Node { cluster, ip: found.ip.clone(), dir, kill_variant, _watchdog: Mutex::new(watchdog) };
        let deadline = started + START_BOUND;
        let sock = socket.display().to_string();
        while run("ctr", &["-a", &sock, "version"]).is_err() {
            if let Ok(Some(status)) = containerd.try_wait() {
                return Err(format!("containerd exited ({status}) while starting\n{}", node.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!("containerd did not answer within {START_BOUND:?}\n{}", node.logs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let archive = archive.display().to_string();
        run("ctr", &["-a", &sock, "-n", "k8s.io", "images", "import", &archive])?;
        // Image garbage collection keeps a pinned image.
        run("ctr", &["-a", &sock, "-n", "k8s.io", "images", "label", PAUSE, "io.cri-containerd.pinned=pinned"])?;

        // The node's rights: RBAC's ClusterRole for kubelets, to their group (no Node authorizer runs).
        cluster.request(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "proa-test-nodes"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
            })),
        );
        // The kubelet requires its cgroup root in every hierarchy (cgroup v1: one folder each under /sys/fs/cgroup;
        // v2: the one tree); the watchdog removes it.
        for hierarchy in cgroup_hierarchies()? {
            let path = hierarchy.join(&cgroup);
            std::fs::create_dir_all(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        }
        let (pki, api_port) = (cluster.dir(), cluster.port());
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: node\n\
             clusters: [{{name: test, cluster: {{server: 'https://127.0.0.1:{api_port}',\n\
             \x20 certificate-authority: '{}'}}}}]\n\
             users: [{{name: node, user: {{client-certificate: '{}', client-key: '{}'}}}}]\n\
             contexts: [{{name: node, context: {{cluster: test, user: node}}}}]\n",
            pki.join("ca.crt").display(),
            pki.join("node.crt").display(),
            pki.join("node.key").display(),
        );
        std::fs::write(node.dir.join("kubeconfig"), kubeconfig).map_err(|e| e.to_string())?;
        let kubelet_config = kubelet_config(&node.dir, &socket, &cgroup, &node.ip);
        std::fs::write(node.dir.join("kubelet.yaml"), kubelet_config).map_err(|e| e.to_string())?;
        let args = [
            format!("--config={}", node.dir.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", node.dir.join("kubeconfig").display()),
            format!("--root-dir={}", node.dir.join("kubelet").display()),
            format!("--cert-dir={}", node.dir.join("kubelet-pki").display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={}", node.ip),
            "--v=2".into(),
        ];
        let mut kubelet = spawn(&found.assets.join("kubelet"), &args, &node.dir, "kubelet", &mut node.watchdog())?;
        loop {
            for (name, child) in [("containerd", &mut containerd), ("kubelet", &mut kubelet)] {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{name} exited ({status}) while starting\n{}", node.logs()));
                }
            }
            if node.is_ready() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the Node was not Ready within {START_BOUND:?}\n{}", node.logs()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "node: containerd and the kubelet ({NODE_NAME}, {}) ready in {:.1}s, in {}",
            node.ip,
            started.elapsed().as_secs_f64(),
            node.dir.display()
        );
        Ok(node)
    }

    fn watchdog(&self) -> std::sync::MutexGuard<'_, ChildStdin> {
        self._watchdog.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_ready(&self) -> bool {
        let Ok((200, text)) = self.cluster.raw("GET", &format!("/api/v1/nodes/{NODE_NAME}"), None, None) else {
            return false;
        };
        let node: Value = serde_json::from_str(&text).unwrap_or_default();
        let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
    }

    /// The node's own address: `status.podIP` of every hostNetwork Pod, where the kubelet's probes go.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// Whether the proa images hold `/proa-kill`, the kill feature's variant.
    pub fn has_kill_variant(&self) -> bool {
        self.kill_variant
    }

    /// The tails of containerd's and the kubelet's logs.
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}",
            tail(&self.dir.join("containerd.log"), 20, None),
            tail(&self.dir.join("kubelet.log"), 40, None)
        )
    }

    /// The kubelet's log lines about one Pod (its name in `NAMESPACE/NAME` form appears in each).
    pub fn kubelet_log(&self, namespace: &str, pod: &str) -> String {
        tail(&self.dir.join("kubelet.log"), 60, Some(&format!("{namespace}/{pod}")))
    }

    /// A namespace for real Pods: the ServiceAccount `proa` with `get` and `watch` on pods, and the two ConfigMaps
    /// a projected service-account volume needs, which controllers would make (`kube-root-ca.crt`, and this
    /// OpenShift-built API server's `openshift-service-ca.crt`, which its admission adds to the volume).
    pub fn namespace(&'static self, test: &str) -> Namespace {
        let ns = self.cluster.namespace(test, &["get", "watch"]);
        for (name, key) in [("kube-root-ca.crt", "ca.crt"), ("openshift-service-ca.crt", "service-ca.crt")] {
            self.cluster.request(
                "POST",
                &format!("/api/v1/namespaces/{}/configmaps", ns.name),
                Some(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                             "data": {key: self.cluster.ca_pem()}})),
            );
        }
        ns
    }

    /// A fresh folder on the node for one Pod's hostPath volume (the test reads what its containers write there).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.join("scratch").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch folder");
        dir
    }
}

/// Where cgroups are made: each v1 hierarchy's folder, or the v2 tree's root.
fn cgroup_hierarchies() -> Result<Vec<PathBuf>, String> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let entries = std::fs::read_dir(root).map_err(|err| format!("{}: {err}", root.display()))?;
    Ok(entries.filter_map(|entry| Some(entry.ok()?.path())).filter(|path| path.is_dir()).collect())
}

/// containerd's configuration (version 2): everything under `dir`, the CRI plugin with runc under cgroupfs, the
/// imported pause image, and no OOM score below the test process's own (root here lacks CAP_SYS_RESOURCE).
fn containerd_config(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE}"
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/conf"
"#,
        socket = socket.display()
    )
}

/// The kubelet's configuration: cgroup v1 allowed, cgroupfs under a root of its own, its own ports (the API server
/// reaches it on the node's address; nothing else is served), anonymous requests allowed (the API server has no
/// client certificate for it: `kubectl logs`/`exec` come anonymously), and no eviction or image GC for a busy disk.
fn kubelet_config(dir: &Path, socket: &Path, cgroup: &str, ip: &str) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
address: {ip}
port: {port}
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
readOnlyPort: 0
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
evictionHard: {{memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
podLogsDir: {logs}
",
        socket = socket.display(),
        port = free_port(ip),
        healthz = free_port("127.0.0.1"),
        logs = dir.join("pod-logs").display(),
    )
}

/// The test images, as one docker-archive that `ctr images import` takes with no registry.
mod images {
    use super::*;

    /// Builds every image's root, layer and config under `dir`; returns the archive.
    pub(super) fn build(dir: &Path, found: &Prerequisites) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut proa = vec![("proa", found.proa.as_path())];
        if let Some(kill) = &found.proa_kill {
            proa.push(("proa-kill", kill.as_path()));
        }
        let busybox = [("bin/busybox", found.busybox.as_path())];
        let pause_binary = found.assets.join("pause");
        // (name, entrypoint, files (where, from), with busybox's applets)
        type Image<'a> = (&'a str, &'a [&'a str], Vec<(&'a str, &'a Path)>, bool);
        let images: [Image; 4] = [
            (PAUSE, &["/pause"], vec![("pause", pause_binary.as_path())], false),
            (BUSYBOX, &["/bin/sh"], busybox.to_vec(), true),
            (PROA, &["/proa"], proa.clone(), false),
            (PROA_BUSYBOX, &["/proa"], busybox.iter().copied().chain(proa).collect(), true),
        ];
        let mut manifest = Vec::new();
        for (i, (name, entrypoint, files, applets)) in images.iter().enumerate() {
            let root = dir.join(format!("root{i}"));
            for (to, from) in files {
                let to = root.join(to);
                std::fs::create_dir_all(to.parent().expect("a file in a folder")).map_err(|e| e.to_string())?;
                std::fs::copy(from, &to).map_err(|err| format!("{}: {err}", from.display()))?;
            }
            if *applets {
                for applet in APPLETS {
                    std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).map_err(|e| e.to_string())?;
                }
                std::fs::create_dir_all(root.join("tmp")).map_err(|e| e.to_string())?;
            }
            let layer = format!("layer{i}.tar");
            let root = root.display().to_string();
            run(
                "tar",
                &[
                    "-C",
                    &root,
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "-cf",
                    &dir.join(&layer).display().to_string(),
                    ".",
                ],
            )?;
            let sum = run("sha256sum", &[&dir.join(&layer).display().to_string()])?;
            let digest = sum.split_whitespace().next().unwrap_or_default();
            let config = json!({
                "architecture": "amd64", "os": "linux",
                "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin:/"]},
                "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
            });
            let config_name = format!("config{i}.json");
            std::fs::write(dir.join(&config_name), config.to_string()).map_err(|e| e.to_string())?;
            // The scratch proa is also the image the README's injection ConfigMap names, so that an injected Pod
            // runs here with `imagePullPolicy: IfNotPresent` as it would from the registry.
            let tags = match *name {
                PROA => vec![name.to_string(), INJECTED.to_string()],
                _ => vec![name.to_string()],
            };
            manifest.push(json!({"Config": config_name, "RepoTags": tags, "Layers": [layer]}));
        }
        std::fs::write(dir.join("manifest.json"), Value::from(manifest).to_string()).map_err(|e| e.to_string())?;
        let archive = dir.join("images.tar");
        let mut args = vec!["-C".to_string(), dir.display().to_string(), "-cf".into(), archive.display().to_string()];
        args.push("manifest.json".into());
        for i in 0..images.len() {
            args.extend([format!("config{i}.json"), format!("layer{i}.tar")]);
        }
        run("tar", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(archive)
    }
}

/// A listener on 127.0.0.1 that a program in a hostNetwork Pod reports to (`echo WORD | nc 127.0.0.1 PORT`): the
/// test records the moment of each connection and the words sent, so that it times what happened in the Pod against
/// moments it observed itself.
pub struct Beacon {
    port: u16,
    heard: Heard,
}

/// When each report came, and its words.
type Heard = std::sync::Arc<(Mutex<Vec<(Instant, String)>>, std::sync::Condvar)>;

impl Beacon {
    pub fn start() -> Beacon {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let heard: Heard = Default::default();
        let record = heard.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let at = Instant::now();
                let Ok(stream) = stream else { continue };
                let record = record.clone();
                std::thread::spawn(move || {
                    let text = read_to_end(stream);
                    record.0.lock().unwrap().push((at, text.trim().to_string()));
                    record.1.notify_all();
                });
            }
        });
        Beacon { port, heard }
    }

    /// The shell command that reports `word`.
    pub fn say(&self, word: &str) -> String {
        format!("echo {word} | nc 127.0.0.1 {}", self.port)
    }

    /// When `word` was first reported, waiting for it up to `bound`.
    pub fn wait_for(&self, word: &str, bound: Duration) -> Instant {
        let deadline = Instant::now() + bound;
        let mut heard = self.heard.0.lock().unwrap();
        loop {
            if let Some((at, _)) = heard.iter().find(|(_, w)| w == word) {
                return *at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "nothing said {word:?} within {bound:?}; heard {:?}", self.heard());
            heard = self.heard.1.wait_timeout(heard, left).unwrap().0;
        }
    }

    /// Every word reported so far, in order.
    pub fn heard(&self) -> Vec<String> {
        let heard = self.heard.0.try_lock().map(|h| h.clone()).unwrap_or_default();
        heard.into_iter().map(|(_, word)| word).collect()
    }
}

/// What a peer sends until it closes its side (bounded: a report is a word).
fn read_to_end(mut stream: TcpStream) -> String {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut text = String::new();
    let _ = (&mut stream).take(4096).read_to_string(&mut text);
    text
}

/// Waits until `GET http://ADDR/PATH` answers 200, asking every 5 ms; the moment it first did.
pub fn wait_until_serving(addr: &str, path: &str, bound: Duration) -> Instant {
    use std::io::Read;
    let deadline = Instant::now() + bound;
    loop {
        let answered = TcpStream::connect(addr).ok().and_then(|mut stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).ok()?;
            Some(head.ends_with(b" 200"))
        });
        if answered == Some(true) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "http://{addr}{path} did not answer 200 within {bound:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
