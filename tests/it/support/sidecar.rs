//! A sidecar stand-in: a real HTTP/1.1 server on 127.0.0.1 that records every request it receives. It can start
//! unready (503 to everything) and be made ready, as a proxy fetching its configuration would.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::http;
use super::server::Accepting;

/// One request received by a [`Sidecar`], recorded as soon as its head and body were read.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// What the sidecar answered: 200 when ready, 503 before; 0 when silent.
    pub status: u16,
}

/// A loopback HTTP server. Dropping it stops accepting (the port then refuses connections) and closes every
/// connection it still holds.
pub struct Sidecar {
    shared: Arc<Shared>,
    accepting: Accepting,
}

struct Shared {
    silent: bool,
    /// Answer every request with a 302 to this location.
    redirect: Option<String>,
    state: Mutex<State>,
    cond: Condvar,
}

#[derive(Default)]
struct State {
    /// Unready sidecars answer 503 until [`Sidecar::set_ready`].
    unready: bool,
    hits: Vec<Hit>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
const UNREADY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nunready\n";

impl Sidecar {
    /// Answers every request `200 ok\n` (with `Content-Length` and `Connection: close`).
    pub fn start() -> Sidecar {
        Self::launch(0, false)
    }

    /// Accepts connections and reads the request, but never answers: it holds the socket until dropped.
    pub fn start_silent() -> Sidecar {
        Self::launch(0, true)
    }

    /// Answers every request `302 Found` with `Location: location`.
    pub fn start_redirecting(location: &str) -> Sidecar {
        Self::launch_with(0, false, Some(location.to_string()))
    }

    /// Like [`Sidecar::start`], on a given port (for example one that refused connections until now).
    pub fn start_on(port: u16) -> Sidecar {
        Self::launch(port, false)
    }

    /// Answers every request `503 unready\n` until [`Sidecar::set_ready`], then `200 ok\n`.
    pub fn start_unready() -> Sidecar {
        let sidecar = Self::launch(0, false);
        sidecar.shared.lock().unready = true;
        sidecar
    }

    /// From now on answers 200. Returns an instant taken just before the switch: anything readiness causes happens
    /// after it, however the threads are scheduled.
    pub fn set_ready(&self) -> Instant {
        let mut state = self.shared.lock();
        let before = Instant::now();
        state.unready = false;
        before
    }

    /// Like [`Sidecar::start`], serving `listener` (for example a [`super::port::ClosedPort`] that refused
    /// connections until now).
    pub fn serve(listener: TcpListener) -> Sidecar {
        Self::launch_on(listener, false, None)
    }

    fn launch(port: u16, silent: bool) -> Sidecar {
        Self::launch_with(port, silent, None)
    }

    fn launch_with(port: u16, silent: bool, redirect: Option<String>) -> Sidecar {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind sidecar listener");
        Self::launch_on(listener, silent, redirect)
    }

    fn launch_on(listener: TcpListener, silent: bool, redirect: Option<String>) -> Sidecar {
        let shared = Arc::new(Shared { silent, redirect, state: Mutex::new(State::default()), cond: Condvar::new() });
        let serving = shared.clone();
        let accepting = Accepting::start(listener, "sidecar", move |conn, _| serve(&serving, conn));
        Sidecar { shared, accepting }
    }

    pub fn port(&self) -> u16 {
        self.accepting.addr().port()
    }

    /// `http://127.0.0.1:PORT/path` (a missing leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://127.0.0.1:{}{slash}{path}", self.port())
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.lock().hits.clone()
    }

    /// Blocks until `n` hits were recorded, at most `bound`; panics with the hits otherwise.
    pub fn wait_for_hits(&self, n: usize, bound: Duration) -> Vec<Hit> {
        self.wait_for_matching(n, bound, |_| true)
    }

    /// Blocks until `n` hits with this method and path were recorded, at most `bound`; returns those hits, or panics
    /// with every hit.
    pub fn wait_for(&self, method: &str, path: &str, n: usize, bound: Duration) -> Vec<Hit> {
        self.wait_for_matching(n, bound, |h| h.method == method && h.path == path)
    }

    /// Blocks for `bound`, and panics as soon as a hit arrives in that time: for "nothing is sent before X".
    pub fn expect_no_hits_for(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut state = self.shared.lock();
        loop {
            assert!(state.hits.is_empty(), "sidecar on port {}: unexpected hits {:#?}", self.port(), state.hits);
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = self.shared.cond.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn wait_for_matching(&self, n: usize, bound: Duration, matches: impl Fn(&Hit) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + bound;
        let mut state = self.shared.lock();
        loop {
            let found: Vec<Hit> = state.hits.iter().filter(|h| matches(h)).cloned().collect();
            if found.len() >= n {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                let hits = state.hits.clone();
                drop(state);
                panic!(
                    "sidecar on port {}: expected {n} matching hit(s) within {bound:?}, got {}; all hits: {hits:#?}",
                    self.port(),
                    found.len()
                );
            }
            state = self.shared.cond.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

fn serve(shared: &Shared, mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    let head = match http::read_head(&mut conn, &mut buf) {
        Ok(Some(head)) => head,
        // Closed early, or not HTTP: nothing to record (the Drop wake-up connection ends up here too).
        Ok(None) | Err(_) => return,
    };
    let body = http::read_body(&mut conn, &mut buf, &head);
    let redirect = shared.redirect.as_ref().map(|location| {
        format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    });
    let response = {
        let mut state = shared.lock();
        let (status, response) = match (shared.silent, state.unready, &redirect) {
            (true, _, _) => (0, RESPONSE),
            (false, _, Some(redirect)) => (302, redirect.as_bytes()),
            (false, true, None) => (503, UNREADY),
            (false, false, None) => (200, RESPONSE),
        };
        state.hits.push(Hit { at: Instant::now(), method: head.method.clone(), path: head.path().to_string(), status });
        shared.cond.notify_all();
        response
    };
    if shared.silent {
        // Hold the socket: block reading until the client gives up or the sidecar is dropped.
        let mut sink = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut conn, &mut sink) {
            if n == 0 {
                break;
            }
        }
        return;
    }
    if body.is_err() {
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    if conn.write_all(response).and_then(|()| conn.flush()).is_ok() {
        let _ = conn.shutdown(Shutdown::Write);
    }
}
