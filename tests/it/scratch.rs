//! The FROM-scratch image, proven: the static binary from `make static` (named by `PROA_STATIC_BIN`) runs in an
//! empty root that holds only itself and what the kubelet mounts, entered with chroot(8), through a whole lifecycle.
//! Needs root. Without `PROA_STATIC_BIN` (or as another user) it is skipped with a loud message, unless `CI` is
//! set: there a skip would hide that the shipped binary was never run, so it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::cli::assert_version_line;
use crate::support::apiserver::{ApiServer, Route};
use crate::support::proa::Proa;
use crate::support::sidecar::Sidecar;

/// Generous bound for anything that should happen "soon": hit only when proa is broken.
const BOUND: Duration = Duration::from_secs(15);
/// Where the kubelet mounts the service account, and where proa looks by default.
const SERVICE_ACCOUNT_DIR: &str = "var/run/secrets/kubernetes.io/serviceaccount";

static ROOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The static binary to put into the empty root, or `None` (after saying why) when this machine cannot run the test.
fn static_binary() -> Option<PathBuf> {
    let skip = |why: &str| {
        if std::env::var_os("CI").is_some() {
            panic!("{why}: CI must run the static binary in an empty root (make test sets PROA_STATIC_BIN)");
        }
        // Straight to stderr: the test harness captures eprintln! of passing tests, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED the FROM-scratch test: {why}; `make test` runs it ***\n");
        None
    };
    let Some(path) = std::env::var_os("PROA_STATIC_BIN") else {
        return skip("PROA_STATIC_BIN is not set");
    };
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip("chroot needs root");
    }
    let path = PathBuf::from(path);
    assert!(path.is_file(), "PROA_STATIC_BIN={} is not a file: run make static", path.display());
    Some(path)
}

/// A temporary root directory laid out like a FROM-scratch container: `/proa`, plus the kubelet's mounts. Removed
/// when dropped.
struct EmptyRoot {
    dir: PathBuf,
}

impl EmptyRoot {
    /// `binary` as `/proa`; `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` as the kubelet writes them for
    /// `pod`; and the service account (`token`, `ca.crt`, `namespace` from `api`) with the kubelet's layout of
    /// symlinks into a timestamped directory, so that proa reads through them as it does in a Pod.
    fn new(binary: &Path, api: &ApiServer, pod: &str) -> EmptyRoot {
        let dir = std::env::temp_dir().join(format!(
            "proa-scratch-{}-{}",
            std::process::id(),
            ROOT_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let root = EmptyRoot { dir };
        std::fs::create_dir_all(root.dir.join("etc")).unwrap();
        std::fs::copy(binary, root.dir.join("proa")).unwrap();
        let hosts = format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.1.7\t{pod}\n"
        );
        std::fs::write(root.dir.join("etc/hosts"), hosts).unwrap();
        let namespace = api.namespace();
        let resolv = format!(
            "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        std::fs::write(root.dir.join("etc/resolv.conf"), resolv).unwrap();
        std::fs::write(root.dir.join("etc/hostname"), format!("{pod}\n")).unwrap();

        let account = root.dir.join(SERVICE_ACCOUNT_DIR);
        let data = "..2024_01_01_00_00_00.000000001";
        std::fs::create_dir_all(account.join(data)).unwrap();
        let source = api.service_account_dir();
        std::os::unix::fs::symlink(data, account.join("..data")).unwrap();
        for file in ["token", "ca.crt", "namespace"] {
            std::fs::copy(source.join(file), account.join(data).join(file)).unwrap();
            std::os::unix::fs::symlink(format!("..data/{file}"), account.join(file)).unwrap();
        }
        root
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EmptyRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn static_binary_runs_a_whole_lifecycle_in_an_empty_root() {
    let Some(binary) = static_binary() else { return };
    lifecycle_in_an_empty_root(&binary, "/proa", |_| {});
}

#[test]
fn install_in_an_empty_root_then_a_whole_lifecycle_with_the_copy() {
    let Some(binary) = static_binary() else { return };
    // An init container of the FROM-scratch image: no shell, no cp, no /proc; it fills the emptyDir /proa-bin.
    lifecycle_in_an_empty_root(&binary, "/proa-bin/proa", |root| {
        std::fs::create_dir(root.join("proa-bin")).unwrap();
        let done = Proa::chroot(root).args(["--install", "/proa-bin"]).spawn().wait(BOUND);
        assert_eq!(done.code(), 0, "{}", done.stderr);
        let size = std::fs::metadata(&binary).unwrap().len();
        assert_eq!(done.stdout, format!("installed /proa-bin/proa ({size} bytes)\n"));
        assert!(std::fs::read(root.join("proa-bin/proa")).unwrap() == std::fs::read(&binary).unwrap());
    });
}

/// A Job Pod whose main container runs `EXE --shutdown-http-post URL -- EXE --version` in an empty root with
/// `binary` as /proa (`prepare` readies the root further), through a whole lifecycle: wait for envoy, run, stop
/// envoy, exit 0.
fn lifecycle_in_an_empty_root(binary: &Path, exe: &str, prepare: impl FnOnce(&Path)) {
    let sidecar = Sidecar::start();
    // `localhost`, not 127.0.0.1: the name is resolved through the kubelet's /etc/hosts, with no libc to help.
    let shutdown = format!("http://localhost:{}/quitquitquit", sidecar.port());
    // The only program in the root is proa itself: its --version line is the program's output.
    let args = ["--shutdown-http-post", shutdown.as_str(), "--", exe, "--version"];
    let api = ApiServer::start(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-abc12", "namespace": "jobs"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "command": [exe], "args": args}, {"name": "envoy"}],
        },
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "main", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "envoy", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]},
    }));
    let root = EmptyRoot::new(binary, &api, api.pod_name());
    prepare(root.path());
    // The kubelet's environment and the Downward API's POD_NAME; the namespace comes from the mounted file.
    let proa = Proa::chroot_at(root.path(), exe)
        .env("KUBERNETES_SERVICE_HOST", &api.host().to_string())
        .env("KUBERNETES_SERVICE_PORT", &api.port().to_string())
        .env("POD_NAME", api.pod_name())
        .args(args)
        .spawn();

    api.wait_open_watches(1, BOUND);
    let ready = api.set_ready("envoy");
    let hits = sidecar.wait_for_hits(1, BOUND);
    assert_eq!((hits[0].method.as_str(), hits[0].path.as_str()), ("POST", "/quitquitquit"));
    assert!(hits[0].at > ready, "shutdown before the sidecar was ready");
    api.wait_open_watches(1, BOUND);
    api.set_terminated("envoy", 0);
    let done = proa.wait(BOUND);

    assert_eq!(done.code(), 0, "{}", done.stderr);
    let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    assert_version_line(&done.stdout, &target, "none");
    assert!(done.stderr.contains(&format!("started {exe}")), "{}", done.stderr);
    assert_eq!(sidecar.hits().len(), 1, "one shutdown request");

    let requests = api.requests();
    let routes: Vec<Option<Route>> = requests.iter().map(|r| r.route).collect();
    assert_eq!(routes[..2], [Some(Route::Get), Some(Route::Watch)], "{}", api.request_log());
    assert!(routes.iter().all(|r| *r == Some(Route::Watch) || *r == Some(Route::Get)), "{}", api.request_log());
    assert_eq!(requests[0].path, "/api/v1/namespaces/jobs/pods/job-abc12", "namespace from the mounted file");
    let token = format!("Bearer {}", api.token());
    for request in &requests {
        assert_eq!(request.authorization.as_deref(), Some(token.as_str()), "{}", api.request_log());
        assert_eq!(request.user_agent.as_deref(), Some(concat!("proa/", env!("CARGO_PKG_VERSION"))));
    }
}
