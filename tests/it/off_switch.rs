//! Issue 7, the off switch: `PROA_DISABLE=true` makes proa replace itself with the program (exec), so one image
//! serves meshed and unmeshed deployments: no wait, no shutdown, no API request, the program's pid and code.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::lifecycle::job_pod;
use crate::support::apiserver::ApiServer;
use crate::support::proa::Proa;
use crate::support::sidecar::Sidecar;

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
