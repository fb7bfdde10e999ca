//! Shutdown actions: an HTTP GET or POST to each sidecar's shutdown endpoint (and with the `kill` feature, a
//! signal to processes: `kill.rs`), all sent at once, one thread each, each within its own budget. The first
//! attempt always happens, whatever the shutdown timeout; a refused connection (the sidecar is not listening yet,
//! or any more), or one closed or reset before an answer (a server with every place taken), is retried a few
//! times within the budget. Redirects are never followed. The result is reported
//! and logged by the owner; it never changes the exit code.

use std::fmt;
use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::clock::Seconds;
use crate::url::redact;

/// How long one attempt may take, connecting included (less when the budget has less left).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts while the connection is refused, closed or reset, with a doubling pause from `RETRY_PAUSE` between them.
pub const ATTEMPTS: u32 = 4;
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Every action gets at least this long, whatever the shutdown timeout (0 included), so that its first attempt
/// always happens.
pub const MIN_BUDGET: Duration = Duration::from_secs(1);
/// How long after its budget an action may still take to report (its last read, thread scheduling).
pub const REPORT_SLACK: Duration = Duration::from_millis(500);

/// Each action's budget under a shutdown timeout: the timeout, but at least `MIN_BUDGET`.
pub fn budget(timeout: Duration) -> Duration {
    timeout.max(MIN_BUDGET)
}

/// One thing to do at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Get(Target),
    Post(Target),
    /// `--kill NAME` or `--kill-all`.
    #[cfg(feature = "kill")]
    Kill(crate::kill::Kill),
    /// A POST to a recognisable sidecar's default endpoint, sent although proa does not know that it runs (the Pod
    /// was unreadable): one attempt, and no word when nothing listens there.
    Guess(Target),
}

/// Where an HTTP shutdown request goes, and the container it stops when the user (`NAME=URL`) or a preset named
/// it: in a Pod, an action for a native sidecar or for a container the Pod does not have is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub container: Option<String>,
}

impl Target {
    /// Parses `URL` or `NAME=URL` (an http:// URL; NAME a container name).
    pub fn parse(text: &str) -> Option<Target> {
        let (container, url) = match text.split_once('=') {
            Some((name, url)) if !text.starts_with("http://") => (Some(name.to_string()), url),
            _ => (None, text),
        };
        let name_ok = container.as_deref().is_none_or(|name| !name.is_empty() && name.bytes().all(is_name_byte));
        (name_ok && is_http_url(url)).then(|| Target { url: url.to_string(), container })
    }
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
}

/// Shutdown endpoints are plain HTTP: sidecars serve them on localhost, and proa carries no public CA roots.
pub fn is_http_url(text: &str) -> bool {
    text.strip_prefix("http://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

impl Action {
    /// The container this action stops, when it is named.
    pub fn container(&self) -> Option<&str> {
        match self {
            Action::Get(target) | Action::Post(target) | Action::Guess(target) => target.container.as_deref(),
            #[cfg(feature = "kill")]
            Action::Kill(_) => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Get(target) => write!(f, "GET {}", redact(&target.url)),
            Action::Post(target) => write!(f, "POST {}", redact(&target.url)),
            Action::Guess(target) => write!(f, "POST {} (a guess)", redact(&target.url)),
            #[cfg(feature = "kill")]
            Action::Kill(kill) => write!(f, "{kill}"),
        }
    }
}

/// How an action went, reported once per action.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    /// How it ended, or why it could not run to its end.
    pub result: Result<Done, ActionError>,
}

impl Outcome {
    /// Whether the action did its job (`Done::is_success`).
    pub fn is_success(&self) -> bool {
        self.result.as_ref().is_ok_and(Done::is_success)
    }

    /// Logs how the action went: info when it did its job, a warning otherwise (it never changes the exit code).
    pub fn log(&self) {
        let action = &self.action;
        match &self.result {
            Err(ActionError::Refused { .. }) if matches!(action, Action::Guess(_)) => {
                debug!("shutdown {action}: nothing listens there")
            }
            Ok(done) if done.is_success() => log::info!("shutdown {action}: {done}"),
            Ok(done) => log::warn!("shutdown {action}: {done}"),
            Err(err) => log::warn!("shutdown {action} failed: {err}"),
        }
    }
}

/// An action that ran to its end.
#[derive(Debug)]
pub enum Done {
    /// The HTTP status (any status: the sidecar heard us).
    Answered(u16),
    /// A redirect, which proa never follows (the URL could lead anywhere, https included).
    Redirected { status: u16, location: String },
    /// What a kill action signalled and how the processes ended.
    #[cfg(feature = "kill")]
    Killed(crate::kill::Report),
}

impl Done {
    /// Whether it went as intended: a 2xx answer, or every process signalled and gone within the grace.
    pub fn is_success(&self) -> bool {
        match self {
            Done::Answered(status) => (200..300).contains(status),
            Done::Redirected { .. } => false,
            #[cfg(feature = "kill")]
            Done::Killed(report) => report.is_clean(),
        }
    }
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Done::Answered(status) => write!(f, "answered {status}"),
            Done::Redirected { status, location } => {
                write!(f, "answered {status} to {} (redirects are not followed)", redact(location))
            }
            #[cfg(feature = "kill")]
            Done::Killed(report) => write!(f, "{report}"),
        }
    }
}

/// An action got no answer.
#[derive(Debug)]
pub enum ActionError {
    /// Every attempt was refused.
    Refused { attempts: u32 },
    /// The last attempt was closed or reset before an answer, as were all before it (or refused).
    Closed { attempts: u32, why: String },
    /// No answer within `ATTEMPT_TIMEOUT`, or another transport failure; for a kill, /proc unreadable.
    Failed(String),
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::Refused { attempts } => write!(f, "connection refused ({attempts} attempts)"),
            ActionError::Closed { attempts, why } => write!(f, "{why} ({attempts} attempts)"),
            ActionError::Failed(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ActionError {}

/// Starts one thread per action; each reports its `Outcome` once, within `budget` (plus `REPORT_SLACK`).
pub fn spawn_actions(
    actions: Vec<Action>,
    budget: Duration,
    report: impl Fn(Outcome) -> bool + Send + Clone + 'static,
) -> Vec<JoinHandle<()>> {
    let agent = crate::http::agent(crate::http::agent_config().build());
    let deadline = Instant::now() + budget;
    let mut unthreaded = Vec::new();
    let handles = actions
        .into_iter()
        .filter_map(|action| {
            let (agent_for_thread, report_for_thread, kept) = (agent.clone(), report.clone(), action.clone());
            let spawned = thread::Builder::new().name("shutdown".into()).spawn(move || {
                crate::crash::inject("shutdown");
                report_for_thread(perform(&agent_for_thread, action, deadline));
            });
            spawned.map_err(|err| unthreaded.push((kept, err))).ok()
        })
        .collect();
    // Out of threads (a pids limit, thousands of URLs): once every other action is on its way, each of these is
    // sent from here, one after the other, each with at least one attempt of its own, so that all are attempted.
    for (action, err) in unthreaded {
        log::warn!("cannot start a thread for the shutdown action {action} ({err}): sending it from here");
        report(perform(&agent, action, deadline.max(Instant::now() + MIN_BUDGET)));
    }
    handles
}

/// Carries out one action, within `deadline`.
fn perform(agent: &ureq::Agent, action: Action, deadline: Instant) -> Outcome {
    let result = match &action {
        Action::Get(target) => request(&action, deadline, ATTEMPTS, |timeout| {
            agent.get(&target.url).config().timeout_global(Some(timeout)).build().call()
        }),
        Action::Post(target) => request(&action, deadline, ATTEMPTS, |timeout| {
            agent.post(&target.url).config().timeout_global(Some(timeout)).build().send_empty()
        }),
        // A guess that is refused was most likely wrong (no such sidecar here): not tried again.
        Action::Guess(target) => request(&action, deadline, 1, |timeout| {
            agent.post(&target.url).config().timeout_global(Some(timeout)).build().send_empty()
        }),
        #[cfg(feature = "kill")]
        Action::Kill(kill) => {
            crate::kill::perform(kill).map(Done::Killed).map_err(|err| ActionError::Failed(err.to_string()))
        }
    };
    Outcome { action, result }
}

/// Sends one HTTP request (`send`, given the attempt's timeout), retrying while the connection is refused, closed
/// or reset, and the budget (up to `deadline`) allows. A shutdown request is safe to send again: a sidecar asked
/// twice to stop stops once.
fn request(
    action: &Action,
    deadline: Instant,
    attempts: u32,
    send: impl Fn(Duration) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Done, ActionError> {
    let mut pause = RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        let timeout =
            ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(1));
        match send(timeout) {
            Ok(response) if response.status().is_redirection() => {
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("nowhere");
                return Ok(Done::Redirected { status: response.status().as_u16(), location: location.to_string() });
            }
            Ok(response) => return Ok(Done::Answered(response.status().as_u16())),
            Err(ureq::Error::Io(err)) if unanswered(err.kind()).is_some() => {
                let why = unanswered(err.kind()).unwrap_or_default();
                let left = deadline.saturating_duration_since(Instant::now());
                if attempt >= attempts || left <= pause {
                    return Err(match err.kind() {
                        io::ErrorKind::ConnectionRefused => ActionError::Refused { attempts: attempt },
                        _ => ActionError::Closed { attempts: attempt, why: why.to_string() },
                    });
                }
                debug!("{action} {why} (attempt {attempt} of {attempts}); retrying in {}", Seconds(pause));
                thread::sleep(pause);
                pause *= 2;
                attempt += 1;
            }
            Err(ureq::Error::Timeout(_)) => {
                return Err(ActionError::Failed(format!("no answer within {}", Seconds(timeout))));
            }
            Err(err) => return Err(ActionError::Failed(redact(&err.to_string()))),
        }
    }
}

/// How a connection that got no answer ended, when trying again may help: the sidecar was not listening (yet or
/// any more), or it closed the connection before answering (every place taken, a restart).
fn unanswered(kind: io::ErrorKind) -> Option<&'static str> {
    match kind {
        io::ErrorKind::ConnectionRefused => Some("refused"),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
            Some("connection reset before an answer")
        }
        // ureq's "peer disconnected": the connection closed before a whole answer.
        io::ErrorKind::UnexpectedEof => Some("connection closed before an answer"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_closed_and_reset_connections_are_tried_again() {
        assert_eq!(unanswered(io::ErrorKind::ConnectionRefused), Some("refused"));
        assert_eq!(unanswered(io::ErrorKind::UnexpectedEof), Some("connection closed before an answer"));
        assert_eq!(unanswered(io::ErrorKind::ConnectionReset), Some("connection reset before an answer"));
        assert_eq!(unanswered(io::ErrorKind::TimedOut), None, "a sidecar that does not answer is not asked again");
        assert_eq!(unanswered(io::ErrorKind::PermissionDenied), None);
    }

    #[test]
    fn targets_bare_or_named() {
        let bare = Target { url: "http://127.0.0.1:15020/quitquitquit".into(), container: None };
        assert_eq!(Target::parse("http://127.0.0.1:15020/quitquitquit"), Some(bare));
        let named = Target { url: "http://127.0.0.1:15020/q?a=b".into(), container: Some("istio-proxy".into()) };
        assert_eq!(Target::parse("istio-proxy=http://127.0.0.1:15020/q?a=b"), Some(named));
        assert_eq!(Target::parse("http://h/q?x=y").map(|t| t.container), Some(None), "an = in a bare URL");
        for bad in ["=http://h/q", "Istio=http://h/q", "a b=http://h/q", "envoy=https://h/q", "envoy=", "h:1/q"] {
            assert_eq!(Target::parse(bad), None, "{bad:?}");
        }
    }
}
