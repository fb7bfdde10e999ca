//! What this machine offers the tests that need more than a process: PID namespaces (`unshare`), nginx, a C
//! compiler, the static binaries of `make static` (the aarch64 one through qemu) and a real API server's binaries
//! (envtest's assets).
//! Where one is missing, a test must not pass silently: with `CI` set (CI runs as root on a fresh Debian
//! machine, where `make test` installs what is needed) it fails; elsewhere it prints a loud skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Whether `unshare --pid --fork --mount-proc` works here (it needs root, or user namespaces).
pub fn pid_namespaces(test: &str) -> bool {
    static WORKS: OnceLock<Result<(), String>> = OnceLock::new();
    let works = WORKS.get_or_init(|| {
        match Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "--kill-child", "--", "true"]).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!("unshare failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(err) => Err(format!("cannot run unshare: {err}")),
        }
    });
    present(test, "PID namespaces", works.clone())
}

/// Debian's nginx binary, where installed (`make test` installs it).
pub fn nginx(test: &str) -> Option<PathBuf> {
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|dir| PathBuf::from(dir).join("nginx"))
        .find(|path| Command::new(path).arg("-v").stderr(Stdio::null()).status().is_ok_and(|status| status.success()));
    if found.is_none() {
        present(test, "nginx", Err("it is not installed (apt-get install nginx)".into()));
    }
    found
}

/// The folder with etcd, kube-apiserver and kubectl (see `envtest::assets_dir`), where there is one.
pub fn envtest_assets(test: &str) -> Option<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(super::envtest::assets_dir).clone();
    let dir = found.as_ref().ok().cloned();
    present(test, "etcd, kube-apiserver and kubectl", found.map(|_| ())).then_some(dir).flatten()
}

/// Compiles the C source `source` to `dir/name` with `cc FLAGS` (`-pthread`; `-shared -fPIC` for a library),
/// where a C compiler is installed.
pub fn c_program(test: &str, dir: &Path, name: &str, flags: &[&str], source: &str) -> Option<PathBuf> {
    let (file, program) = (dir.join(format!("{name}.c")), dir.join(name));
    std::fs::write(&file, source).expect("write the C source");
    let output = match Command::new("cc").args(flags).arg("-o").arg(&program).arg(&file).output() {
        Ok(output) => output,
        Err(err) => {
            present(test, "a C compiler", Err(format!("cannot run cc: {err} (apt-get install gcc)")));
            return None;
        }
    };
    assert!(output.status.success(), "cc {}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    Some(program)
}

/// The static musl binary `make static` built (`PROA_STATIC_BIN`, which `make test` sets).
pub fn static_binary(test: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os("PROA_STATIC_BIN") else {
        present(test, "the static binary", Err("PROA_STATIC_BIN is not set; `make test` sets it".into()));
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "PROA_STATIC_BIN={} is not a file: run make static", path.display());
    Some(path)
}

/// The aarch64 static binary `make static` built (`PROA_STATIC_BIN_AARCH64`, which `make test` sets: the default
/// variant, or the kill feature's in that run) and what runs it here: nothing on an aarch64 machine, else Debian's
/// `qemu-aarch64-static` (named, so that no binfmt registration is needed; `make test` installs it).
pub fn aarch64_binary(test: &str) -> Option<(Option<PathBuf>, PathBuf)> {
    let Some(path) = std::env::var_os("PROA_STATIC_BIN_AARCH64") else {
        present(
            test,
            "the aarch64 static binary",
            Err("PROA_STATIC_BIN_AARCH64 is not set; `make test` sets it".into()),
        );
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "PROA_STATIC_BIN_AARCH64={} is not a file: run make static", path.display());
    if std::env::consts::ARCH == "aarch64" {
        return Some((None, path));
    }
    let qemu = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("qemu-aarch64-static"))
        .find(|candidate| candidate.is_file());
    match qemu {
        Some(qemu) => Some((Some(qemu), path)),
        None => {
            present(test, "qemu-aarch64-static", Err("apt-get install qemu-user-static; `make test` does".into()));
            None
        }
    }
}

/// The file `name` runs as, found on PATH (`bash`: `/usr/bin/bash`), symbolic links resolved.
pub fn on_path(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| found.canonicalize().ok())
        .unwrap_or_else(|| panic!("{name} is not on PATH ({path})"))
}

/// Whether `what` is here: where not, a loud skip line, or a failure with `CI` set.
pub fn present(test: &str, what: &str, result: Result<(), String>) -> bool {
    match result {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{test} needs {what} on CI: {why}"),
        Err(why) => {
            // Straight to stderr: the test harness captures eprintln! of passing tests, and a skip must be seen.
            let line =
                format!("\n*** SKIPPED {test}: it needs {what}, which this machine lacks ({why}); CI runs it ***\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            false
        }
    }
}

/// A pids cgroup of its own with room for `max` tasks (threads count), removed when dropped: how a test makes a
/// thread or a fork fail the way a Pod's pids limit does. cgroup v1's `pids` hierarchy, else v2's root.
pub fn pids_cgroup(test: &str, max: u32) -> Option<PidsCgroup> {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| c.contains("pids"));
    let root = if v2 { Path::new("/sys/fs/cgroup") } else { Path::new("/sys/fs/cgroup/pids") };
    let dir = root.join(format!("proa-it-{}-{n}", std::process::id()));
    let made = std::fs::create_dir(&dir)
        .and_then(|()| std::fs::write(dir.join("pids.max"), max.to_string()))
        .map_err(|err| format!("cannot make a pids cgroup under {}: {err}", root.display()));
    if made.is_err() {
        _ = std::fs::remove_dir(&dir);
    }
    present(test, "a pids cgroup (root, cgroup v1 pids or v2)", made).then_some(PidsCgroup { dir })
}

/// See [`pids_cgroup`].
pub struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    /// The file a process writes its pid to, to move into the cgroup.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Empty once the processes the test ran in it have exited, which the test waited for.
        _ = std::fs::remove_dir(&self.dir);
    }
}
