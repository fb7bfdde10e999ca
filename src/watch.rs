//! The watcher thread: GET the own Pod (or resume from a known resourceVersion), then watch it, reporting every
//! Pod snapshot until a predicate says the owner has what it waited for. Reads the stream line by line with a bound
//! on line length, follows resourceVersion (bookmarks count), relists after 410 or when a GET shows the server
//! behind the version it resumes from, jitters each watch's length, and reconnects with capped, jittered backoff.
//! Never decides anything about readiness itself, and never touches the owner's state.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::api::{Api, ApiError, MAX_OBJECT_BYTES};
use crate::clock::Seconds;
use crate::lines::{Line, read_json_line};
use crate::pod::{Pod, WatchEvent};
use crate::readiness;

/// The longest watch line proa reads: the largest Pod, plus the event's envelope.
pub const MAX_LINE_BYTES: usize = MAX_OBJECT_BYTES + 1024;
/// A redirect from the API server this many times in a row is fatal (proa never follows one).
const REDIRECTS_BEFORE_FAILING: u32 = 3;
/// Reconnect backoff: first delay, and the cap it doubles up to.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// The longest pause after a connection that could not be made at all (see `Backoff::wait_after`).
const UNREACHABLE_CAP: Duration = Duration::from_secs(1);
/// How long the same retry reason is a repeat (see `Update::Retrying`).
const SAY_AGAIN_AFTER: Duration = Duration::from_secs(10);
/// A Retry-After longer than this is not obeyed in full.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// A stream that lasted this long ended normally (timeoutSeconds): watch again at once.
const HEALTHY_STREAM: Duration = Duration::from_secs(1);
/// A 403 is fatal only once 403s have come for this long in a row: a kube-apiserver answers 403 for about 0.75 s
/// after it starts, while its RBAC caches are still empty. With the backoff below, a 403 that persists fails on the
/// 5th or 6th answer, 2 to 5.2 s after the first.
const FORBIDDEN_FOR: Duration = Duration::from_secs(2);
/// Resuming from a resourceVersion and hearing nothing (no event, no bookmark) for this long, the watcher reads the
/// Pod to check that the server has reached that version (see `is_behind`); a watch stream that ends having
/// delivered nothing is checked at once.
const VERIFY_AFTER: Duration = Duration::from_secs(180);

/// What the watcher reports to its owner.
#[derive(Debug)]
pub enum Update {
    /// A Pod snapshot (from the GET or an ADDED or MODIFIED event), in the order the server sent them.
    PodChanged(Box<Pod>),
    /// A DELETED event: the Pod is gone; its last state.
    PodDeleted(Box<Pod>),
    /// The API refused in a way retrying cannot fix (403, 401, 404, untrusted certificate). The watcher stopped.
    Failed(ApiError),
    /// A request failed, or a stream ended early, and the watcher retries after a pause: `line` says why and when,
    /// for the owner to log as its phase calls for; `unreachable`: no connection to the API server could be made
    /// or kept (refused, reset), as when a mesh proxy that carried it has stopped; `repeat`: the same reason as a
    /// line reported less than `SAY_AGAIN_AFTER` before (worth a debug line only).
    Retrying { line: String, unreachable: bool, repeat: bool },
    /// A watch stream opened: the API server was reached.
    Reached,
}

/// Starts the watcher. It stops after reporting a Pod for which `until(pod, deleted)` is true, after a fatal error,
/// when `report` returns false (the owner is gone), or once `stop` is set: before its next request, or its next
/// report if it is blocked reading a stream. After that last Pod it hands its open stream to `release` rather than
/// drop it: the owner, acting on the Pod (starting the program), drops it when done, so that freeing the stream's
/// buffers (unmapping memory, which interrupts every thread of the process) does not slow the owner down.
pub fn spawn_watch(
    api: Api,
    from: Option<String>,
    stop: Arc<AtomicBool>,
    until: impl FnMut(&Pod, bool) -> bool + Send + 'static,
    report: impl Fn(Update) -> bool + Send + 'static,
    release: impl Fn(Box<dyn Send>) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("watch".into()).spawn(move || watch(api, from, &stop, until, report, release))
}

fn watch(
    mut api: Api,
    from: Option<String>,
    stop: &AtomicBool,
    mut until: impl FnMut(&Pod, bool) -> bool,
    report: impl Fn(Update) -> bool,
    release: impl Fn(Box<dyn Send>),
) {
    crate::crash::inject("watch");
    let mut backoff = Backoff::default();
    let stopped = || stop.load(Ordering::Relaxed);
    let report = |update| !stopped() && report(update);
    // The update for a snapshot, and whether it is the last one this watcher reports.
    let mut prepare = |mut pod: Pod, deleted: bool| {
        readiness::stamp(&mut pod, SystemTime::now());
        let done = until(&pod, deleted);
        let update = match deleted {
            true => Update::PodDeleted(Box::new(pod)),
            false => Update::PodChanged(Box::new(pod)),
        };
        (update, done)
    };

    // Resuming from a known resourceVersion, the watch replays what changed since; else read the Pod first.
    let mut resource_version = match from {
        Some(version) => Some(version),
        None => {
            let pod = loop {
                if stopped() {
                    return;
                }
                match api.get_pod() {
                    Ok(pod) => break pod,
                    // The owner closed the connection under a request it no longer wants: nothing failed.
                    Err(_) if stopped() => return,
                    Err(err) if backoff.gives_up(&err, Instant::now()) => {
                        report(Update::Failed(err));
                        return;
                    }
                    Err(err) => backoff.wait_after(&err, err.retry_after(), err.is_cut(), &report),
                }
            };
            let version = pod.metadata.resource_version.clone();
            let (update, done) = prepare(pod, false);
            if !report(update) || done {
                return;
            }
            version
        }
    };
    backoff.reset();
    // The resourceVersion of the newest Pod seen (by the GET, or an event; `from` is one too): a restored storage shows
    // the Pod behind it. Not a bookmark's, which is the server's and normally ahead of any one Pod's.
    let mut pod_version = resource_version.clone();
    // When the server last said anything (an event, a bookmark, the Pod), and whether the last stream, resumed from a
    // resourceVersion, ended without a word: then the server may never have reached that version (see `is_behind`).
    let mut heard_at = Instant::now();
    let mut silent_resume = false;

    loop {
        if stopped() {
            return;
        }
        if let Some(held) = resource_version.as_deref().filter(|_| silent_resume || heard_at.elapsed() >= VERIFY_AFTER)
        {
            debug!(
                "watch: nothing heard from resourceVersion {held}: reading the pod to check the server has reached it"
            );
            heard_at = Instant::now();
            match api.get_pod() {
                Ok(pod) => {
                    let current = pod.metadata.resource_version.clone();
                    let seen = pod_version.as_deref().unwrap_or(held);
                    if is_behind(current.as_deref(), seen) {
                        log::warn!(
                            "the pod's resourceVersion {} is behind {seen}, the newest proa saw (was the API server's storage restored from a backup?): watching from the current state",
                            current.as_deref().unwrap_or("(none)")
                        );
                        resource_version = None;
                    }
                    pod_version = current.or(pod_version);
                    let (update, done) = prepare(pod, false);
                    if !report(update) || done {
                        return;
                    }
                }
                // The watch says whether the Pod is gone; watching from the current state cannot miss it.
                Err(ApiError::PodNotFound { .. }) => resource_version = None,
                Err(_) if stopped() => return,
                // The watch meets the same fault, and its own rules decide.
                Err(err) => debug!("watch: cannot read the pod to check its resourceVersion: {err}"),
            }
        }
        silent_resume = false;
        let started = Instant::now();
        let resumed = resource_version.is_some();
        let timeout = jittered_timeout(api.watch_timeout(), random_fraction());
        let mut stream = match api.watch_pod(resource_version.as_deref(), timeout) {
            Ok(stream) => stream,
            Err(_) if stopped() => return,
            // Without a resourceVersion the server cannot answer 410; if it does anyway, back off below.
            Err(ApiError::Gone) if resource_version.is_some() => {
                debug!("watch: resourceVersion expired (410): watching from the current state");
                resource_version = None;
                continue;
            }
            Err(err) if backoff.gives_up(&err, Instant::now()) => {
                report(Update::Failed(err));
                return;
            }
            Err(err) => {
                backoff.wait_after(&err, err.retry_after(), err.is_cut(), &report);
                continue;
            }
        };
        debug!("watch: stream open from resourceVersion {}", resource_version.as_deref().unwrap_or("(current)"));
        if !report(Update::Reached) {
            return;
        }
        let mut buf = Vec::new();
        let mut relist = false;
        let mut delivered = false;
        let ended = loop {
            let event = match read_json_line::<WatchEvent>(&mut stream, MAX_LINE_BYTES, &mut buf) {
                Ok(Line::Value(event)) => {
                    (delivered, heard_at) = (true, Instant::now());
                    Ok(event)
                }
                Ok(Line::Malformed(why)) => Err(format!("malformed watch event: {why}")),
                Ok(Line::TooLong) => {
                    report(Update::Failed(ApiError::TooLarge));
                    return;
                }
                Ok(Line::End) => break "stream ended".to_string(),
                Err(err) => break format!("stream broke: {err}"),
            };
            let (pod, deleted) = match event {
                Ok(WatchEvent::Pod(pod)) => (pod, false),
                Ok(WatchEvent::Deleted(pod)) => (pod, true),
                Ok(WatchEvent::Bookmark(bookmark)) => {
                    let rv = bookmark.resource_version();
                    log::trace!("watch: bookmark at resourceVersion {rv:?}");
                    resource_version = rv.or(resource_version);
                    continue;
                }
                Ok(WatchEvent::Error(status)) if status.code == 410 && resource_version.is_some() => {
                    debug!("watch: resourceVersion expired (ERROR 410): watching from the current state");
                    resource_version = None;
                    relist = true;
                    break "expired".to_string();
                }
                Ok(WatchEvent::Error(status)) => {
                    break format!("ERROR event {} {}: {}", status.code, status.reason, status.message);
                }
                // An event proa cannot read may be in the server's history: resuming from before it would replay
                // it forever, so watch the current state instead.
                Err(err) => {
                    resource_version = None;
                    break err;
                }
            };
            if pod.metadata.resource_version.is_some() {
                resource_version = pod.metadata.resource_version.clone();
                pod_version = pod.metadata.resource_version.clone();
            }
            let (update, done) = prepare(*pod, deleted);
            let reported = report(update);
            if reported && done {
                release(Box::new((stream, buf)));
                return;
            }
            if !reported {
                return;
            }
        };
        drop(stream);
        // Stopped while reading: the owner closed the connection under it.
        if stopped() {
            return;
        }
        silent_resume = resumed && !delivered && !relist && started.elapsed() >= HEALTHY_STREAM;
        if relist || started.elapsed() >= HEALTHY_STREAM {
            debug!("watch: {ended}; watching again");
            backoff.reset();
        } else {
            backoff.wait_after(&format!("watch {ended}"), None, false, &report);
        }
    }
}

/// Whether the Pod's resourceVersion `current` (from a GET) shows that the server is behind `held`, the version proa
/// resumes from, so that a watch from `held` would wait for a version the server may never reach (after its etcd was
/// restored from an older copy). resourceVersions are opaque: compared as numbers only when both are, else any
/// difference counts. A Pod's version may lag the server's (bookmarks carry the latter), so this can relist when
/// nothing is wrong: one watch from the current state, which costs one ADDED event.
fn is_behind(current: Option<&str>, held: &str) -> bool {
    match (current.map(str::parse::<u64>), held.parse::<u64>()) {
        (Some(Ok(current)), Ok(held)) => current < held,
        _ => current != Some(held),
    }
}

/// The length of one watch request: `base` (`--watch-timeout`) times a factor from 1 to 2 (`random`, 0..1), in
/// whole seconds, as client-go's reflector does, so that Pods started together do not watch again in step.
fn jittered_timeout(base: Duration, random: f64) -> Duration {
    let secs = base.as_secs().max(1);
    Duration::from_secs(secs + (secs as f64 * random.clamp(0.0, 1.0)) as u64).min(Duration::from_secs(2 * secs))
}

/// Capped exponential backoff with jitter, so that many Pods do not reconnect in step.
#[derive(Default)]
struct Backoff {
    failures: u32,
    /// Redirects in a row: one may be a passing misconfiguration, but not several.
    redirects: u32,
    /// When the first of the 403s in a row came: a restarting API server answers 403 for a moment.
    forbidden_since: Option<Instant>,
    /// The last reason reported as new, and when.
    said: Option<(String, Instant)>,
}

impl Backoff {
    fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// Whether `err`, answered at `now`, ends the watch: a fatal error, or a redirect or 403 that persists.
    fn gives_up(&mut self, err: &ApiError, now: Instant) -> bool {
        if !matches!(err, ApiError::Redirect { .. }) {
            self.redirects = 0;
        }
        if !matches!(err, ApiError::Forbidden { .. }) {
            self.forbidden_since = None;
        }
        match err {
            ApiError::Redirect { .. } => {
                self.redirects += 1;
                self.redirects >= REDIRECTS_BEFORE_FAILING
            }
            ApiError::Forbidden { .. } => {
                let since = *self.forbidden_since.get_or_insert(now);
                now.duration_since(since) >= FORBIDDEN_FOR
            }
            other => other.is_fatal(),
        }
    }

    /// Reports why (`Update::Retrying`), once per step, and sleeps before the next attempt. A server that cannot be
    /// reached at all (`unreachable`) is tried again at least once a second: a mesh proxy that carries the
    /// connection may be a few seconds from listening, and the program should start as soon as it does.
    fn wait_after(
        &mut self,
        why: &dyn fmt::Display,
        retry_after: Option<Duration>,
        unreachable: bool,
        report: &dyn Fn(Update) -> bool,
    ) {
        self.failures += 1;
        let delay = retry_delay(self.failures, retry_after, random_fraction());
        let delay = if unreachable { delay.min(UNREACHABLE_CAP) } else { delay };
        let reason = why.to_string();
        let repeat = self.repeats(&reason, Instant::now());
        let line = format!("{reason}; retrying in {} (attempt {})", Seconds(delay), self.failures);
        report(Update::Retrying { line, unreachable, repeat });
        thread::sleep(delay);
    }

    /// Whether `reason` repeats the one last reported as new, less than `SAY_AGAIN_AFTER` before `now`; if not, it
    /// becomes that one.
    fn repeats(&mut self, reason: &str, now: Instant) -> bool {
        let repeat = self.said.as_ref().is_some_and(|(said, at)| said == reason && now < *at + SAY_AGAIN_AFTER);
        if !repeat {
            self.said = Some((reason.to_string(), now));
        }
        repeat
    }
}

/// The pause after `failures` failures in a row: the backoff step scaled into its upper half by `random` (0..1),
/// so that many Pods do not retry in step; longer if a 429/503 asked for longer (at most `RETRY_AFTER_CAP`), never
/// shorter (`Retry-After: 0` would otherwise make a retry loop).
fn retry_delay(failures: u32, retry_after: Option<Duration>, random: f64) -> Duration {
    let step = backoff_step(failures);
    let jittered = step / 2 + step.mul_f64(random.clamp(0.0, 1.0) / 2.0);
    jittered.max(retry_after.unwrap_or_default().min(RETRY_AFTER_CAP))
}

/// The un-jittered delay after `failures` failures in a row: 200 ms, 400 ms, … up to 10 s.
fn backoff_step(failures: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(BACKOFF_CAP)
}

/// A number in 0..1 that differs between calls and processes (std's hasher keys are random per process).
fn random_fraction() -> f64 {
    (RandomState::new().build_hasher().finish() % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn the_same_reason_within_ten_seconds_is_a_repeat() {
        let mut backoff = Backoff::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(!backoff.repeats("refused", at(0)), "the first is news");
        assert!(backoff.repeats("refused", at(1_000)));
        assert!(!backoff.repeats("reset", at(2_000)), "another reason is news");
        assert!(backoff.repeats("reset", at(11_999)));
        assert!(!backoff.repeats("reset", at(12_000)), "said again every ten seconds");
        backoff.reset();
        assert!(!backoff.repeats("reset", at(12_500)), "a success in between makes it news again");
    }

    #[test]
    fn error_410_event_decodes() {
        let mut reader = BufReader::new(
            &br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410,"reason":"Expired"}}
"#[..],
        );
        let mut buf = Vec::new();
        let Line::Value(event) = read_json_line::<WatchEvent>(&mut reader, MAX_LINE_BYTES, &mut buf).unwrap() else {
            panic!("one line")
        };
        assert!(matches!(event, WatchEvent::Error(s) if s.code == 410));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let steps: Vec<u64> = (1..=8).map(|n| backoff_step(n).as_millis() as u64).collect();
        assert_eq!(steps, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(backoff_step(1000), BACKOFF_CAP);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_step() {
        assert_eq!(retry_delay(5, None, 0.0), Duration::from_millis(1600));
        assert_eq!(retry_delay(5, None, 1.0), Duration::from_millis(3200));
        for _ in 0..100 {
            let delay = retry_delay(5, None, random_fraction());
            assert!(delay >= Duration::from_millis(1600) && delay <= Duration::from_millis(3200), "{delay:?}");
        }
    }

    #[test]
    fn retry_after_is_obeyed_up_to_its_cap() {
        assert_eq!(retry_delay(1, Some(Duration::from_secs(3)), 0.5), Duration::from_secs(3));
        assert_eq!(retry_delay(1, Some(Duration::from_secs(3600)), 0.5), RETRY_AFTER_CAP);
    }

    #[test]
    fn retry_after_never_shortens_the_backoff() {
        assert_eq!(retry_delay(1, Some(Duration::ZERO), 0.0), Duration::from_millis(100));
        assert_eq!(retry_delay(4, Some(Duration::ZERO), 1.0), Duration::from_millis(1600));
        assert_eq!(retry_delay(4, Some(Duration::from_millis(1)), 0.0), Duration::from_millis(800));
    }

    #[test]
    fn redirects_fail_once_they_persist() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let redirect = || ApiError::Redirect { status: 302, location: "http://elsewhere/".into() };
        assert!(!backoff.gives_up(&redirect(), now) && !backoff.gives_up(&redirect(), now));
        assert!(!backoff.gives_up(&ApiError::Transport("refused".into()), now), "a different error breaks the run");
        assert!(!backoff.gives_up(&redirect(), now) && !backoff.gives_up(&redirect(), now));
        assert!(backoff.gives_up(&redirect(), now));
        assert!(backoff.gives_up(&ApiError::Unauthorized, now));
    }

    fn forbidden() -> ApiError {
        ApiError::Forbidden { verb: "watch", namespace: "jobs".into() }
    }

    #[test]
    fn a_403_fails_only_once_it_persists() {
        let mut backoff = Backoff::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A restarting API server: 403 for 0.75 s, then the answers proa expects.
        assert!(!backoff.gives_up(&forbidden(), at(0)));
        assert!(!backoff.gives_up(&forbidden(), at(700)));
        assert!(!backoff.gives_up(&ApiError::Transport("reset".into()), at(900)), "a different answer ends the run");
        assert!(!backoff.gives_up(&forbidden(), at(2_500)), "a new run of 403s starts its own clock");
        assert!(!backoff.gives_up(&forbidden(), at(4_400)));
        assert!(backoff.gives_up(&forbidden(), at(4_500)), "2 s of nothing but 403");
        backoff.reset();
        assert!(!backoff.gives_up(&forbidden(), at(5_000)), "a success ends the run");
    }

    #[test]
    fn a_persistent_403_fails_within_a_few_seconds_of_backoff() {
        // The answers come after the backoff's pauses; the 403 fails at the first one 2 s after the first 403.
        for random in [0.0, 0.5, 1.0] {
            let mut backoff = Backoff::default();
            let mut now = Instant::now();
            let first = now;
            let mut answers = 1;
            while !backoff.gives_up(&forbidden(), now) {
                backoff.failures += 1;
                now += retry_delay(backoff.failures, None, random);
                answers += 1;
            }
            let took = now - first;
            assert!(took >= FORBIDDEN_FOR && took <= Duration::from_millis(5_200), "{took:?} at {random}");
            assert!((5..=6).contains(&answers), "{answers} answers at {random}");
        }
    }

    #[test]
    fn behind_compares_numbers_when_both_are() {
        assert!(is_behind(Some("220"), "373"));
        assert!(!is_behind(Some("373"), "373"));
        assert!(!is_behind(Some("1000"), "999"), "numerically, not as text");
        assert!(is_behind(Some("abc"), "abd"), "opaque versions: any difference");
        assert!(!is_behind(Some("abc"), "abc"));
        assert!(is_behind(Some("12"), "x9"));
        assert!(is_behind(None, "5"));
    }

    #[test]
    fn watch_timeouts_are_jittered_between_the_base_and_twice_it() {
        let base = Duration::from_secs(60);
        assert_eq!(jittered_timeout(base, 0.0), base);
        assert_eq!(jittered_timeout(base, 0.5), Duration::from_secs(90));
        assert_eq!(jittered_timeout(base, 1.0), Duration::from_secs(120));
        assert_eq!(jittered_timeout(Duration::from_secs(1), 0.99), Duration::from_secs(1), "whole seconds");
        for _ in 0..100 {
            let timeout = jittered_timeout(base, random_fraction());
            assert!(timeout >= base && timeout <= 2 * base, "{timeout:?}");
        }
    }
}
