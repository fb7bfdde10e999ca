//! What a user sees from the command line alone: help, version, bad flags, a missing cluster.

use std::time::Duration;

use crate::support::proa::Proa;

const BOUND: Duration = Duration::from_secs(10);

#[test]
fn help_and_version_exit_0() {
    let help = Proa::bare().args(["--help"]).spawn().wait(BOUND);
    assert_eq!(help.code(), 0);
    assert!(help.stdout.contains("Usage: proa [OPTIONS] -- PROGRAM [ARGS...]"), "{}", help.stdout);
    let version = Proa::bare().args(["-V"]).spawn().wait(BOUND);
    assert_eq!(version.code(), 0);
    assert_version_line(&version.stdout, env!("PROA_TARGET"), if cfg!(feature = "kill") { "kill" } else { "none" });
}

/// `proa VERSION (commit C, TARGET, features: F)` and nothing else, where C is `unknown` or a short commit hash;
/// in a git checkout it is HEAD's.
pub fn assert_version_line(stdout: &str, target: &str, features: &str) {
    let rest = stdout.strip_prefix(&format!("proa {} (commit ", env!("CARGO_PKG_VERSION")));
    let tail = format!(", {target}, features: {features})\n");
    let commit = rest.and_then(|rest| rest.strip_suffix(&tail));
    let Some(commit) = commit else { panic!("expected `proa VERSION (commit C{tail}`, got {stdout:?}") };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(root).output();
    let head = match git {
        Ok(out) if out.status.success() && root.join(".git").exists() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        _ => None,
    };
    match head {
        Some(head) => assert_eq!(commit, head, "the commit in {stdout:?}"),
        None => assert_eq!(commit, "unknown", "{stdout:?}"),
    }
}

#[test]
fn bad_flag_is_one_line_and_125() {
    let done = Proa::bare().args(["--ready-timeout", "soon", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert_eq!(done.stderr, "proa: ERROR invalid --ready-timeout \"soon\": use 90, 90s, 500ms, 5m or 1h\n");
    assert_eq!(done.stdout, "");
}

#[test]
fn outside_a_cluster_says_so() {
    let done = Proa::bare().args(["--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert!(done.stderr.contains("KUBERNETES_SERVICE_HOST is not set"), "{}", done.stderr);
}

#[cfg(not(feature = "kill"))]
#[test]
fn kill_flags_need_a_build_with_the_kill_feature() {
    let done = Proa::bare().args(["--kill", "envoy", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125);
    assert!(done.stderr.starts_with("proa: ERROR --kill needs a proa built with the kill feature"), "{}", done.stderr);
}

#[test]
fn a_broken_stderr_never_keeps_the_program_from_running() {
    // The warning about a bad RUST_LOG directive is the first thing proa writes; stderr is a closed pipe.
    let api = crate::support::apiserver::ApiServer::start(crate::lifecycle::job_pod(&[], &[], "Never"));
    let done = Proa::new(&api)
        .env("RUST_LOG", "proa=chatty")
        .stderr_broken()
        .args(["--", "bash", "-c", "echo ran; exit 3"])
        .spawn()
        .wait(BOUND);
    assert_eq!((done.code(), done.stdout.as_str()), (3, "ran\n"));
}

#[test]
fn a_usage_error_on_a_broken_stderr_still_reaches_the_termination_log() {
    let log = std::env::temp_dir().join(format!("proa-it-broken-stderr-{}", std::process::id()));
    std::fs::write(&log, "").unwrap();
    let done = Proa::bare()
        .env("PROA_TERMINATION_LOG", log.to_str().unwrap())
        .stderr_broken()
        .args(["--ready-timeout", "soon", "--", "true"])
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125);
    let message = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(message.starts_with("invalid --ready-timeout \"soon\""), "{message:?}");
}
