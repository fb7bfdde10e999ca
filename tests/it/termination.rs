//! Exit, the termination message: when proa itself fails (124, 125), the reason it logged goes, as one line,
//! to the termination log that `kubectl describe pod` shows; a program's own failure writes nothing there.

use std::path::PathBuf;
use std::time::Duration;

use crate::lifecycle::{bash, job_pod};
use crate::support::apiserver::{ApiServer, Fault, Route};
use crate::support::proa::{Finished, Proa};
use crate::support::sidecar::Sidecar;

const BOUND: Duration = Duration::from_secs(10);

/// An empty file standing in for the kubelet's /dev/termination-log, removed on drop.
struct TerminationLog(PathBuf);

impl TerminationLog {
    fn new(name: &str) -> TerminationLog {
        let path = std::env::temp_dir().join(format!("proa-it-termination-{name}-{}", std::process::id()));
        std::fs::write(&path, "").expect("create the termination log");
        TerminationLog(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).expect("read the termination log")
    }
}

impl Drop for TerminationLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The termination message is one line, and the same text as the error proa logged.
fn assert_message_is_the_logged_error(log: &TerminationLog, done: &Finished, starts: &str) {
    let text = log.text();
    assert!(text.ends_with('\n') && text.lines().count() == 1, "{text:?}");
    let reason = text.trim_end();
    assert!(reason.starts_with(starts), "{reason:?}");
    assert!(done.stderr.contains(&format!("proa: ERROR {reason}\n")), "{reason:?} not logged:\n{}", done.stderr);
}

#[test]
fn ready_timeout_writes_its_reason() {
    let log = TerminationLog::new("124");
    let sidecar = Sidecar::start_unready();
    let done = Proa::bare()
        .args(["--termination-log", log.path(), "--wait-http", &sidecar.url("/ready"), "--ready-timeout", "500ms"])
        .args(bash("exit 0".into()))
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_message_is_the_logged_error(&log, &done, "endpoints not ready after ");
}

#[test]
fn an_api_refusal_writes_its_reason() {
    let log = TerminationLog::new("125");
    let api = ApiServer::start(job_pod(&["envoy"], &[], "Never"));
    api.keep_failing(Route::Get, Fault::Status(403));
    let done = Proa::new(&api).env("PROA_TERMINATION_LOG", log.path()).args(bash("exit 0".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert_message_is_the_logged_error(&log, &done, "API server answered 403: the service account may not get pods");
}

#[test]
fn a_config_error_writes_its_reason() {
    let log = TerminationLog::new("config");
    let done = Proa::bare()
        .args(["--termination-log", log.path(), "--", "true"])
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", "1")
        .env("PROA_SERVICE_ACCOUNT_DIR", "/no/such/dir")
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert_message_is_the_logged_error(&log, &done, "cannot read /no/such/dir/ca.crt");
}

#[test]
fn a_usage_error_writes_to_proa_termination_log() {
    // The command line failed to parse, so only the variable can say where the message goes.
    let log = TerminationLog::new("usage");
    let done = Proa::bare()
        .env("PROA_TERMINATION_LOG", log.path())
        .args(["--ready-timeout", "soon", "--", "true"])
        .spawn()
        .wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert_message_is_the_logged_error(&log, &done, "invalid --ready-timeout \"soon\"");
}

#[test]
fn a_failing_program_writes_nothing() {
    let log = TerminationLog::new("program");
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).args(["--termination-log", log.path()]).args(bash("exit 3".into())).spawn().wait(BOUND);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    assert_eq!(log.text(), "");
}

#[test]
fn a_fifo_as_termination_log_never_blocks_proa() {
    // Nobody reads the pipe: an ordinary open for writing would wait for a reader forever.
    let fifo = TerminationLog::new("fifo");
    std::fs::remove_file(&fifo.0).unwrap();
    let path = std::ffi::CString::new(fifo.path()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let done =
        Proa::bare().env("PROA_TERMINATION_LOG", fifo.path()).args(["--bogus", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert!(done.stderr.contains("--bogus"), "{}", done.stderr);
}

#[test]
fn an_unwritable_termination_log_is_skipped() {
    let done =
        Proa::bare().args(["--termination-log", "/no/such/dir/termination-log", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 125, "{}", done.stderr);
    assert_eq!(done.stderr.lines().filter(|l| !l.contains("DEBUG")).count(), 1, "{}", done.stderr);
}
