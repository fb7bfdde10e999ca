//! The prober threads. No-API mode's checks HTTP endpoints (ready on a 2xx) and TCP endpoints (ready when a
//! connection is accepted) in rounds, like a kubelet probe, until every one is ready (before the program) or has
//! stopped answering (at shutdown). A direct probe's (`spawn_direct`) asks one waited container's readinessProbe
//! endpoint until it passed `successThreshold` times in a row. Each attempt has its own timeout, so one hung
//! endpoint cannot stall the others for long. Reports to the owner; never decides what a result means for the
//! lifecycle.

use std::fmt;
use std::io::{self, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::clock::Seconds;
use crate::direct::{self, Order};
use crate::url::redact;

/// Default `--probe-interval`: the pause between rounds, counted from the start of one to the next. Short, since
/// the program waits on it; an attempt on loopback or the Pod's own IP costs tens of microseconds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause a direct prober takes between looks at its stop flag while it waits out an initial delay.
const DELAY_STEP: Duration = Duration::from_millis(100);
/// How long one attempt may take, connecting included (the kubelet's default probe timeout).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Something proa waits for without the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `--wait-http URL`: ready when a GET answers 2xx (redirects are not followed).
    Http(String),
    /// `--wait-tcp HOST:PORT`: ready when a connection is accepted.
    Tcp(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Http(url) => write!(f, "{}", redact(url)),
            Endpoint::Tcp(address) => write!(f, "tcp {address}"),
        }
    }
}

/// What the prober waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Every endpoint has passed its check once (before the program starts).
    Ready,
    /// Every endpoint has failed its check once: refused, no 2xx, no answer in time (after shutdown).
    Gone,
}

/// What the prober reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// After a round, when the list changed: the endpoints short of `goal`, each as "endpoint (why)".
    Pending { goal: Goal, left: Vec<String> },
    /// Every endpoint reached `goal`; the prober has stopped.
    Reached(Goal),
    /// The prober could not start (no thread to be had): nothing will reach `goal`.
    Failed { goal: Goal, why: String },
}

/// Starts the prober. It stops once every endpoint reached `goal`, when `report` returns false (the owner is gone),
/// or once `stop` is set, before its next round.
pub fn spawn_probe(
    endpoints: Vec<Endpoint>,
    goal: Goal,
    interval: Duration,
    stop: Arc<AtomicBool>,
    report: impl Fn(Update) -> bool + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("probe".into()).spawn(move || probe(endpoints, goal, interval, &stop, report))
}

fn probe(mut left: Vec<Endpoint>, goal: Goal, interval: Duration, stop: &AtomicBool, report: impl Fn(Update) -> bool) {
    let agent = agent();
    let mut reported = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let round = Instant::now();
        let mut pending = Vec::new();
        left.retain(|endpoint| {
            let why = match (goal, check(&agent, endpoint)) {
                (Goal::Ready, Ok(())) | (Goal::Gone, Err(_)) => return false,
                (Goal::Ready, Err(why)) => why,
                (Goal::Gone, Ok(())) => "still answering".to_string(),
            };
            pending.push(format!("{endpoint} ({why})"));
            true
        });
        if left.is_empty() {
            report(Update::Reached(goal));
            return;
        }
        if pending != reported {
            if !report(Update::Pending { goal, left: pending.clone() }) {
                return;
            }
            reported = pending;
        }
        thread::sleep(interval.saturating_sub(round.elapsed()));
    }
}

/// Starts probing one container's readinessProbe endpoint (`order`): after what is left of its initial delay, one
/// attempt every `interval`, until `order.successes` pass in a row; then `passed()` reports it and the thread ends.
/// It ends too once `stop` is set, before its next attempt.
pub fn spawn_direct(
    order: Order,
    interval: Duration,
    stop: Arc<AtomicBool>,
    passed: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let name = format!("probe {}", order.container);
    thread::Builder::new().name(name).spawn(move || {
        if direct(&order, interval, &stop) {
            passed();
        }
    })
}

/// Probes until `order.successes` passes in a row (true), or until stopped (false).
fn direct(order: &Order, interval: Duration, stop: &AtomicBool) -> bool {
    let stopped = || stop.load(Ordering::Relaxed);
    let start = Instant::now().checked_add(order.delay);
    while start.is_none_or(|start| Instant::now() < start) {
        if stopped() {
            return false;
        }
        // However short the interval, waiting out a long delay wakes at most ten times a second.
        let step = interval.max(DELAY_STEP);
        let left = start.map_or(step, |start| start.saturating_duration_since(Instant::now()));
        thread::sleep(step.min(left));
    }
    let agent = agent_within(order.timeout);
    let mut passes = 0;
    loop {
        if stopped() {
            return false;
        }
        let round = Instant::now();
        match attempt(&agent, &order.endpoint, order.timeout) {
            Ok(()) => passes += 1,
            Err(why) => {
                debug!("probe of {} failed: {why}", order.container);
                passes = 0;
            }
        }
        if passes >= order.successes {
            return true;
        }
        thread::sleep(interval.saturating_sub(round.elapsed()));
    }
}

/// One attempt of a direct probe, as the kubelet makes it: a status from 200 to 399, or an accepted connection.
pub fn attempt(agent: &ureq::Agent, endpoint: &direct::Endpoint, timeout: Duration) -> Result<(), String> {
    match endpoint {
        direct::Endpoint::Http { url, headers } => {
            let request = headers.iter().fold(agent.get(url), |request, (name, value)| request.header(name, value));
            let mut response = request.call().map_err(|err| http_text(err, timeout))?;
            match response.status().as_u16() {
                200..=299 => read_body(&mut response, timeout),
                status @ 300..=399 => {
                    let location = response.headers().get("location").and_then(|l| l.to_str().ok());
                    redirect(url, status, location).and_then(|()| read_body(&mut response, timeout))
                }
                status => Err(format!("answered {status}")),
            }
        }
        direct::Endpoint::Tcp(address) => connect(address, timeout),
    }
}

/// The most of a body the kubelet reads: the rest is cut off, and the answer still counts.
const BODY_LIMIT: u64 = 10 * 1024;

/// Reads the body of a passing answer as the kubelet does, up to its limit and within the attempt's bound: a
/// body that never arrives, or is cut short of its Content-Length, makes the attempt fail.
fn read_body(response: &mut ureq::http::Response<ureq::Body>, timeout: Duration) -> Result<(), String> {
    let mut reader = response.body_mut().as_reader().take(BODY_LIMIT);
    match io::copy(&mut reader, &mut io::sink()) {
        Ok(_) => Ok(()),
        Err(err) => Err(format!("answered {}, but its body {}", response.status().as_u16(), body_text(&err, timeout))),
    }
}

/// Why a body could not be read, for the debug line.
fn body_text(err: &io::Error, timeout: Duration) -> String {
    let ureq_timeout = err.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>());
    match (err.kind(), ureq_timeout) {
        (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, _) | (_, Some(ureq::Error::Timeout(_))) => {
            format!("did not arrive within {}", Seconds(timeout))
        }
        _ => format!("was cut short ({err})"),
    }
}

/// A redirect, which proa never follows: the kubelet follows one to the same host and judges the answer there, so
/// proa cannot count it (the API will say); one to another host, or none at all, the kubelet counts as a pass.
fn redirect(url: &str, status: u16, location: Option<&str>) -> Result<(), String> {
    match location.map(|location| host_of(location).is_some_and(|host| Some(host) != host_of(url))) {
        Some(false) => Err(format!("answered {status}, a redirect on the same host, which proa does not follow")),
        Some(true) | None => Ok(()),
    }
}

/// The host name of an absolute URL (`http://host:port/...`, `//host/...`), without port or brackets; `None` for
/// a path.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("//").filter(|(scheme, _)| scheme.is_empty() || scheme.ends_with(':'))?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    Some(match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    })
}

/// The HTTP client for checks: one attempt is one fresh connection (no pool, so a sidecar that went away is
/// noticed at once), bounded by `ATTEMPT_TIMEOUT`, with no redirects.
pub fn agent() -> ureq::Agent {
    agent_within(ATTEMPT_TIMEOUT)
}

fn agent_within(timeout: Duration) -> ureq::Agent {
    let config =
        crate::http::agent_config().timeout_global(Some(timeout)).max_redirects(0).max_idle_connections(0).build();
    crate::http::agent(config)
}

/// One attempt: Ok when the endpoint is ready, else why not.
pub fn check(agent: &ureq::Agent, endpoint: &Endpoint) -> Result<(), String> {
    match endpoint {
        Endpoint::Http(url) => match agent.get(url).call() {
            Ok(mut response) if response.status().is_success() => read_body(&mut response, ATTEMPT_TIMEOUT),
            Ok(response) => Err(format!("answered {}", response.status().as_u16())),
            Err(err) => Err(http_text(err, ATTEMPT_TIMEOUT)),
        },
        Endpoint::Tcp(address) => connect(address, ATTEMPT_TIMEOUT),
    }
}

/// Ok once a connection to `address` is accepted within `timeout`.
fn connect(address: &str, timeout: Duration) -> Result<(), String> {
    let addresses = address.to_socket_addrs().map_err(|err| io_text(&err, timeout))?;
    let mut last = format!("{address} resolves to no address");
    for socket_address in addresses {
        match TcpStream::connect_timeout(&socket_address, timeout) {
            Ok(_) => return Ok(()),
            Err(err) => last = io_text(&err, timeout),
        }
    }
    Err(last)
}

fn http_text(err: ureq::Error, timeout: Duration) -> String {
    match err {
        ureq::Error::Io(err) => io_text(&err, timeout),
        ureq::Error::Timeout(_) => format!("no answer within {}", Seconds(timeout)),
        err => redact(&err.to_string()),
    }
}

fn io_text(err: &io::Error, timeout: Duration) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!("no answer within {}", Seconds(timeout)),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[test]
    fn tcp_check_follows_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::Tcp(listener.local_addr().unwrap().to_string());
        assert_eq!(check(&agent(), &endpoint), Ok(()));
        drop(listener);
        assert_eq!(check(&agent(), &endpoint), Err("connection refused".into()));
    }

    /// A server that answers each connection with `answer` as it is, keeping the connection open, and records the
    /// request's head.
    fn answering_raw(answer: String) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ready", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut open = Vec::new();
            for mut stream in listener.incoming().flatten() {
                let mut head = [0u8; 2048];
                let n = std::io::Read::read(&mut stream, &mut head).unwrap_or(0);
                _ = tx.send(String::from_utf8_lossy(&head[..n]).into_owned());
                _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
                open.push(stream);
            }
        });
        (url, rx)
    }

    #[test]
    fn a_200_whose_body_does_not_arrive_whole_is_no_pass() {
        // The kubelet reads the body within the probe's timeout, and a read error fails the probe.
        let timeout = Duration::from_millis(300);
        let agent = agent_within(timeout);
        let head = |length: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
        let never = answering_raw(head(100)).0;
        let started = Instant::now();
        let got = attempt(&agent, &direct::Endpoint::Http { url: never, headers: vec![] }, timeout);
        assert_eq!(got, Err("answered 200, but its body did not arrive within 0.3s".into()));
        assert!(started.elapsed() < Duration::from_secs(3), "the attempt took {:?}", started.elapsed());
        // Two bytes of a hundred, and the connection closed.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let short = format!("http://{}/ready", listener.local_addr().unwrap());
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            _ = std::io::Read::read(&mut stream, &mut [0u8; 2048]);
            _ = std::io::Write::write_all(&mut stream, format!("{}ok", head(100)).as_bytes());
        });
        let got = attempt(&agent, &direct::Endpoint::Http { url: short, headers: vec![] }, timeout);
        assert!(got.as_ref().is_err_and(|why| why.starts_with("answered 200, but its body was cut short")), "{got:?}");
        // A body longer than the kubelet reads still passes, as it does for the kubelet; so does one whole.
        for body in ["x".repeat(64 * 1024), "ok".to_string()] {
            let (url, _) = answering_raw(format!("{}{body}", head(body.len())));
            assert_eq!(attempt(&agent, &direct::Endpoint::Http { url, headers: vec![] }, timeout), Ok(()));
        }
    }

    /// A server that answers each connection with `status` and records the request's head.
    fn answering(status: &'static str) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ready", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut head = [0u8; 2048];
                let n = std::io::Read::read(&mut stream, &mut head).unwrap_or(0);
                _ = tx.send(String::from_utf8_lossy(&head[..n]).into_owned());
                let answer = format!("HTTP/1.1 {status}\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n");
                _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
            }
        });
        (url, rx)
    }

    #[test]
    fn a_direct_probe_passes_on_200_to_399_without_following_and_sends_the_headers() {
        let headers = vec![("X-Probe".to_string(), "yes".to_string())];
        for (status, want) in [("200 OK", Ok(())), ("302 Found", Ok(())), ("404 Not Found", Err("answered 404".into()))]
        {
            // The 302 goes to http://elsewhere/, another host: the kubelet counts it as a pass.
            let (url, requests) = answering(status);
            let endpoint = direct::Endpoint::Http { url, headers: headers.clone() };
            assert_eq!(attempt(&agent(), &endpoint, ATTEMPT_TIMEOUT), want, "{status}");
            let head = requests.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(head.starts_with("GET /ready ") && head.to_ascii_lowercase().contains("x-probe: yes"), "{head}");
            assert!(requests.try_recv().is_err(), "{status}: a redirect was followed");
        }
    }

    #[test]
    fn a_redirect_on_the_same_host_is_no_pass_and_one_elsewhere_is() {
        let url = "http://127.0.0.1:8080/ready";
        let same = Err("answered 301, a redirect on the same host, which proa does not follow".to_string());
        for location in ["/ready/", "ready/", "http://127.0.0.1:9090/x", "//127.0.0.1/x", "http://u@127.0.0.1/x"] {
            assert_eq!(redirect(url, 301, Some(location)), same, "{location}");
        }
        for location in ["http://127.0.0.2/ready", "https://elsewhere:8443/", "//[::1]:80/"] {
            assert_eq!(redirect(url, 301, Some(location)), Ok(()), "{location}");
        }
        assert_eq!(redirect(url, 304, None), Ok(()), "no Location: no redirect, a 3xx the kubelet counts");
    }

    #[test]
    fn gone_is_reached_at_once_when_nothing_listens() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        let endpoints =
            vec![Endpoint::Tcp(format!("127.0.0.1:{port}")), Endpoint::Http(format!("http://127.0.0.1:{port}/"))];
        spawn_probe(endpoints, Goal::Gone, DEFAULT_INTERVAL, Arc::default(), move |update| tx.send(update).is_ok())
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Update::Reached(Goal::Gone)));
    }

    #[test]
    fn pending_names_each_endpoint_and_why() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        let endpoint = Endpoint::Tcp(format!("127.0.0.1:{port}"));
        // The owner stops listening after the first report, which ends the prober.
        spawn_probe(vec![endpoint], Goal::Ready, DEFAULT_INTERVAL, Arc::default(), move |update| {
            let _ = tx.send(update);
            false
        })
        .unwrap();
        let want = format!("tcp 127.0.0.1:{port} (connection refused)");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(Update::Pending { goal: Goal::Ready, left: vec![want] })
        );
    }
}
