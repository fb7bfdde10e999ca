//! The off switch: `PROA_DISABLE=true` makes proa replace itself with the program (exec), so one image
//! serves meshed and unmeshed deployments: no wait, no shutdown, no API request, the program's pid and code.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::lifecycle::job_pod;
use crate::support::apiserver::ApiServer;
use crate::support::machine;
use crate::support::proa::Proa;
use crate::support::sidecar::Sidecar;
use crate::support::temp::TempDir;

const BOUND: Duration = Duration::from_secs(10);

#[test]
fn disabled_proa_becomes_the_program() {
    // The sidecar is never ready: an enabled proa would wait forever.
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    let sidecar = Sidecar::start();
    let proa = Proa::new(&api)
        .env("PROA_DISABLE", "true")
        .args(["-g", &sidecar.url("/quit"), "--", "bash", "-c", "echo $$; exit 9"])
        .spawn();
    let pid = proa.pid();
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 9, "{}", done.stderr);
    assert_eq!(done.stdout.trim(), pid.to_string(), "the program runs as proa's own process");
    assert!(api.requests().is_empty(), "the API was asked:\n{}", api.request_log());
    assert!(sidecar.hits().is_empty(), "no shutdown action: {:?}", sidecar.hits());
    assert!(!done.stderr.contains("INFO"), "proa logged as if it ran: {}", done.stderr);
}

#[test]
fn disabled_proa_needs_no_cluster_and_keeps_the_shell_codes() {
    let done = Proa::bare().env("PROA_DISABLE", "true").args(["--", "/no/such/program"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 127, "{}", done.stderr);
    assert!(done.stderr.contains("cannot run /no/such/program: not found"), "{}", done.stderr);
    // A file without any execute bit cannot be run, not even by root.
    let plain = std::env::temp_dir().join(format!("proa-it-not-executable-{}", std::process::id()));
    std::fs::write(&plain, "echo should not run\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let done = Proa::bare().env("PROA_DISABLE", "true").args(["--"]).args([&plain]).spawn().wait(BOUND);
    let _ = std::fs::remove_file(&plain);
    assert_eq!(done.code(), 126, "{}", done.stderr);
    assert_eq!(done.stdout, "");
}

/// Issue 18, item 17: a script without `#!` is run by /bin/sh, as docs/wrapping.md says of the off switch. That was
/// glibc's `execvp` at work, so only the glibc build did it, and only with the off switch: std's spawn of the
/// program (posix_spawn, or fork and execvp) and musl's `execvp` do not, and the program failed with 126.
#[test]
fn a_script_without_a_shebang_runs_with_bin_sh_off_switch_or_not() {
    // glibc's execvp runs whatever exec refuses with ENOEXEC by /bin/sh, binaries for another machine included.
    scripts_without_a_shebang_run_with_bin_sh(Proa::bare, false);
}

/// The same with the static musl binary (`make static`), the one the scratch image and `--install` ship.
#[test]
fn the_static_binary_runs_a_script_without_a_shebang_with_bin_sh() {
    let Some(binary) = machine::static_binary("the_static_binary_runs_a_script_without_a_shebang_with_bin_sh") else {
        return;
    };
    scripts_without_a_shebang_run_with_bin_sh(|| Proa::bare_at(&binary), true);
}

/// `proa()` with the off switch, and without it in no-API mode, runs a script without `#!` (by path, and by name
/// on PATH) with /bin/sh; with `foreign_is_126`, never a binary for another machine, which stays 126 (where
/// proa's own fallback decides: musl's execvp has none).
fn scripts_without_a_shebang_run_with_bin_sh(proa: impl Fn() -> Proa, foreign_is_126: bool) {
    let dir = TempDir::new("no-shebang");
    let script = dir.write("no-shebang", "echo \"sh ran $0 with $1\"; exit 4\n", 0o755);
    let foreign = dir.write("foreign", b"\x7fELF\x02\x01\x01\0not for any machine", 0o755);
    // Ready at once: the port accepts connections (the kernel does, without `accept`).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().to_string();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    for off_switch in [true, false] {
        let mode = if off_switch { "the off switch" } else { "no-API mode" };
        let run = |program: &OsStr| {
            let proa = proa().env("PATH", &path);
            let proa = match off_switch {
                true => proa.env("PROA_DISABLE", "true"),
                false => proa.args(["--wait-tcp", port.as_str()]),
            };
            proa.args([OsStr::new("--"), program, OsStr::new("a")]).spawn().wait(BOUND)
        };
        for program in [script.as_os_str(), OsStr::new("no-shebang")] {
            let done = run(program);
            assert_eq!(done.code(), 4, "{mode}, {program:?}: {}", done.stderr);
            assert_eq!(done.stdout, format!("sh ran {} with a\n", script.display()), "{mode}, {program:?}");
        }
        if !foreign_is_126 {
            continue;
        }
        let done = run(foreign.as_os_str());
        assert_eq!(done.code(), 126, "{mode}: {}", done.stderr);
        let refusal = format!("cannot run {}: Exec format error (os error 8)", foreign.display());
        assert!(done.stderr.contains(&refusal), "{mode}: {}", done.stderr);
    }
}
