//! `proa --install DIR` (DESIGN.md "Other roles"): the FROM-scratch image's way into any other image. The copy is byte-identical,
//! 0755 whatever the umask, replaces a running copy, and runs; a directory it cannot use is a 125 that says why.
//! (`scratch.rs` installs inside an empty root and runs a whole lifecycle with the copy.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::assert_version_line;
use crate::support::port::ClosedPort;
use crate::support::proa::{Proa, proa_binary};

const BOUND: Duration = Duration::from_secs(10);

/// An empty directory standing in for the init container's emptyDir, removed on drop.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new(name: &str) -> EmptyDir {
        let dir = std::env::temp_dir().join(format!("proa-it-install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        EmptyDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    fn copy(&self) -> PathBuf {
        self.0.join("proa")
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `proa --install DIR` under `umask 077`, as a restrictive init container would run it.
fn install(dir: &str) -> (i32, String, String) {
    let out = Command::new("sh")
        .args(["-c", "umask 077 && exec \"$0\" --install \"$1\"", &proa_binary(), dir])
        .env("PROA_TERMINATION_LOG", "/dev/null")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn install_copies_proa_byte_for_byte_executable_by_anyone_and_the_copy_runs() {
    let dir = EmptyDir::new("copy");
    let (code, stdout, stderr) = install(dir.path());
    assert_eq!(code, 0, "{stderr}");
    let original = std::fs::read(proa_binary()).unwrap();
    assert_eq!(stdout, format!("installed {} ({} bytes)\n", dir.copy().display(), original.len()));
    assert!(std::fs::read(dir.copy()).unwrap() == original, "the copy is byte-identical");
    let mode = std::fs::metadata(dir.copy()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "whatever the umask: {mode:o}");
    let entries: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["proa"], "no temporary file left behind");
    let version = Command::new(dir.copy()).arg("--version").output().unwrap();
    assert!(version.status.success());
    let features = if cfg!(feature = "kill") { "kill" } else { "none" };
    assert_version_line(&String::from_utf8_lossy(&version.stdout), env!("PROA_TARGET"), features);
}

#[test]
fn install_replaces_a_copy_that_is_running() {
    let dir = EmptyDir::new("running");
    assert_eq!(install(dir.path()).0, 0);
    // The copy waits for an endpoint that refuses, for as long as it takes.
    let refusing = ClosedPort::reserve();
    let mut running = Command::new(dir.copy())
        .args(["--wait-tcp", &refusing.address(), "--", "true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, _, stderr) = install(dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(running.try_wait().unwrap(), None, "the running copy keeps running");
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(std::fs::read(dir.copy()).unwrap() == std::fs::read(proa_binary()).unwrap());
}

#[test]
fn a_directory_proa_cannot_use_is_125_with_the_reason() {
    let missing = Proa::bare().args(["--install", "/no/such/dir"]).spawn().wait(BOUND);
    assert_eq!(missing.code(), 125, "{}", missing.stderr);
    let why = "cannot install proa into /no/such/dir: no such directory; mount a volume there (an emptyDir)";
    assert!(missing.stderr.contains(why), "{}", missing.stderr);
    // /proc takes no new files, not even from root.
    let unwritable = Proa::bare().args(["--install", "/proc"]).spawn().wait(BOUND);
    assert_eq!(unwritable.code(), 125, "{}", unwritable.stderr);
    assert!(unwritable.stderr.contains("cannot install proa into /proc: cannot write:"), "{}", unwritable.stderr);
    assert!(!Path::new("/proc/proa").exists());
    let with_program = Proa::bare().args(["--install", "/tmp", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(with_program.code(), 125);
    assert!(with_program.stderr.contains("--install copies proa and exits, running no program"));
}

#[test]
fn a_copy_cut_short_by_a_restart_is_not_in_the_way() {
    // An init container is PID 1 every time; the last one was killed mid-copy.
    let dir = EmptyDir::new("restarted");
    std::fs::write(dir.0.join(".proa.1.tmp"), "cut short").unwrap();
    let (code, _, stderr) = install(dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read(dir.copy()).unwrap() == std::fs::read(proa_binary()).unwrap());
    let file = Proa::bare().args(["--install", &dir.copy().display().to_string()]).spawn().wait(BOUND);
    assert_eq!(file.code(), 125);
    assert!(file.stderr.contains("/proa: not a directory"), "{}", file.stderr);
}
