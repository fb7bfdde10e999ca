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
    assert!(version.stdout.starts_with(&format!("proa {}", env!("CARGO_PKG_VERSION"))), "{}", version.stdout);
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
