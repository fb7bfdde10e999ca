//! Shutdown actions: an HTTP GET or POST to each sidecar's shutdown endpoint, all sent at once, one thread
//! each. Each attempt has a timeout; a refused connection (the sidecar is not listening yet, or any more) is
//! retried a few times. The result is reported and logged by the owner; it never changes the exit code.

use std::fmt;
use std::io;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts while the connection is refused, with a doubling pause from `RETRY_PAUSE` between them.
pub const ATTEMPTS: u32 = 4;
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// One thing to do at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Get(String),
    Post(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Get(url) => write!(f, "GET {url}"),
            Action::Post(url) => write!(f, "POST {url}"),
        }
    }
}

/// How an action went, reported once per action.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    /// The HTTP status on an answer (any status: the sidecar heard us), else why not.
    pub result: Result<u16, ActionError>,
}

/// An action got no answer.
#[derive(Debug)]
pub enum ActionError {
    /// Every attempt was refused.
    Refused { attempts: u32 },
    /// No answer within `ATTEMPT_TIMEOUT`, or another transport failure.
    Failed(String),
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::Refused { attempts } => write!(f, "connection refused ({attempts} attempts)"),
            ActionError::Failed(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ActionError {}

/// Starts one thread per action; each reports its `Outcome` once.
pub fn spawn_actions(
    actions: Vec<Action>,
    report: impl Fn(Outcome) -> bool + Send + Clone + 'static,
) -> Vec<JoinHandle<()>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("proa/", env!("CARGO_PKG_VERSION")))
        .timeout_global(Some(ATTEMPT_TIMEOUT))
        .build()
        .into();
    actions
        .into_iter()
        .map(|action| {
            let (agent, report) = (agent.clone(), report.clone());
            thread::Builder::new()
                .name("shutdown".into())
                .spawn(move || {
                    let result = perform(&agent, &action);
                    report(Outcome { action, result });
                })
                .expect("spawning a thread only fails when the process is out of resources")
        })
        .collect()
}

fn perform(agent: &ureq::Agent, action: &Action) -> Result<u16, ActionError> {
    let mut pause = RETRY_PAUSE;
    for attempt in 1..=ATTEMPTS {
        let sent = match action {
            Action::Get(url) => agent.get(url).call(),
            Action::Post(url) => agent.post(url).send_empty(),
        };
        match sent {
            Ok(response) => return Ok(response.status().as_u16()),
            Err(ureq::Error::Io(err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
                if attempt < ATTEMPTS {
                    log::debug!("{action} refused (attempt {attempt} of {ATTEMPTS}); retrying in {pause:?}");
                    thread::sleep(pause);
                    pause *= 2;
                }
            }
            Err(err) => return Err(ActionError::Failed(err.to_string())),
        }
    }
    Err(ActionError::Refused { attempts: ATTEMPTS })
}
