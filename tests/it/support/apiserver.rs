//! A Kubernetes API server look-alike for one Pod: HTTPS with its own CA, bearer-token authentication, `GET` of the
//! Pod and the real watch protocol (chunked JSON lines, resourceVersion, bookmarks, ERROR events, timeouts),
//! SelfSubjectAccessReviews (allowed unless the test denies the verb), scripted faults, and a record of every request.
//!
//! Threads: one accepts connections, one serves each connection (HTTP/1.1 keep-alive). A connection that serves a
//! watch registers the stream in the shared state; live events reach it through its own `mpsc` channel (plus a
//! socketpair to wake its `poll`, which also watches the socket so that a client closing the stream is noticed at
//! once). The stream acknowledges each event after it was written and flushed, so that [`ApiServer::update_pod`]
//! returns only once every open stream has been sent the change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

use super::http::{self, Head};
use super::server::Accepting;
use super::tls::{self, TestPki};

/// How many events the server keeps for watches that resume from a resourceVersion.
pub const HISTORY_LIMIT: usize = 100;
/// The resourceVersion the Pod gets when the server starts.
pub const FIRST_RESOURCE_VERSION: u64 = 100;
/// A write to a client that does not read for this long ends its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which API call a request was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/namespaces/{ns}/pods/{name}`
    Get,
    /// `GET /api/v1/namespaces/{ns}/pods?fieldSelector=metadata.name%3D{name}&watch=true...`
    Watch,
    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`
    AccessReview,
    /// `GET /api/v1/namespaces/{ns}/pods?fieldSelector=metadata.name%3D{name}` (no watch): a PodList, as clients
    /// built on list-then-watch (kube-rs, client-go informers) start with.
    List,
}

/// A scripted failure for the next request of a route (after authentication, which comes first).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this HTTP status and a Kubernetes Status JSON body (kind Status, code, reason, message).
    Status(u16),
    /// 429/503 (or any status) with a Retry-After header of this many seconds.
    RetryAfter(u16, u32),
    /// (Watch only) answer 200 and start the chunked stream, then send an ERROR event with this code (e.g. 410) and
    /// end the stream cleanly, without any other event.
    ErrorEvent(u16),
    /// Accept the TCP/TLS connection and read the request, then close the socket without answering (recorded with
    /// status 0).
    Drop,
    /// (Watch only) answer 200 and start the chunked stream, then drop it: with `final_chunk`, end it cleanly at
    /// once; without, write half an event line and close the socket (no final chunk, no TLS close_notify).
    Cut { final_chunk: bool },
    /// (Watch only) answer 200, start the chunked stream, then never send anything (no events, no bookmarks, no end
    /// at timeoutSeconds) until the client goes away: a stream gone silent.
    Silent,
    /// Answer with this 3xx status and a `Location` header, as a misconfigured proxy might.
    Redirect(u16, String),
    /// Read the request and never answer, until the client goes away: a server that hangs (recorded with status 0).
    Hang,
}

/// One request, recorded before it was answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Percent-decoded query parameters.
    pub query: BTreeMap<String, String>,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    /// `None` for a request that matched no route (answered 404, or 401 first).
    pub route: Option<Route>,
    /// The HTTP status the server answered (0: connection dropped without an answer). A watch whose stream carries
    /// only an ERROR event has status 200, as with the real API server.
    pub status: u16,
    /// Which TCP connection carried it (numbered from 1 in accept order), to tell keep-alive reuse from new
    /// connections.
    pub connection: u64,
    /// The request body as sent (UTF-8, lossily), empty for a GET.
    pub body: String,
}

impl Request {
    /// The `resourceVersion` query parameter, if any.
    pub fn resource_version(&self) -> Option<&str> {
        self.query.get("resourceVersion").map(String::as_str)
    }

    /// The `spec.resourceAttributes.verb` of an access review's body, if any.
    pub fn review_verb(&self) -> Option<String> {
        let body: Value = serde_json::from_str(&self.body).ok()?;
        body["spec"]["resourceAttributes"]["verb"].as_str().map(str::to_string)
    }

    /// The bearer token sent, if any.
    pub fn bearer_token(&self) -> Option<&str> {
        let auth = self.authorization.as_deref()?.trim();
        let (scheme, token) = auth.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
    }
}

/// The test API server. Dropping it stops accepting, closes every connection (ending open watch streams) and
/// removes the service account directories it created.
pub struct ApiServer {
    addr: SocketAddr,
    pki: TestPki,
    shared: Arc<Shared>,
    accepting: Accepting,
    dirs: Mutex<Vec<PathBuf>>,
}

struct Shared {
    name: String,
    namespace: String,
    started: Instant,
    config: Arc<ServerConfig>,
    state: Mutex<State>,
    cond: Condvar,
}

struct State {
    pod: Value,
    deleted: bool,
    /// The last resourceVersion handed out (Pod changes and bookmarks share the counter).
    rv: u64,
    token: String,
    /// Recorded events, oldest first.
    history: VecDeque<Recorded>,
    /// The oldest resourceVersion a watch can resume from; older ones get `410 Expired`.
    window_start: u64,
    faults: Vec<(Route, Fault)>,
    /// Whether [`ApiServer::restore`] turned the server back: only then is a watch from a resourceVersion it has
    /// not reached sent nothing (else tests may hand out versions of their own, in raw bookmarks).
    restored: bool,
    /// Faults answered to every request of their route, after the queued ones, until cleared.
    lasting: Vec<(Route, Fault)>,
    /// Verbs an access review answers `allowed: false` for (see [`ApiServer::deny`]).
    denied: Vec<String>,
    requests: Vec<Request>,
    watches: HashMap<u64, WatchHandle>,
    next_id: u64,
}

struct Recorded {
    rv: u64,
    line: Arc<str>,
}

/// The server's end of a live watch stream.
struct WatchHandle {
    tx: Sender<StreamMsg>,
    wake: UnixStream,
    bookmarks: bool,
    /// From a resourceVersion the server had not reached (see [`ApiServer::restore`]): it is sent nothing.
    ahead: bool,
}

enum StreamMsg {
    /// Write this event line, flush, then acknowledge.
    Event(Arc<str>, Sender<()>),
    /// Write the final chunk, flush, unregister, then acknowledge.
    End(Sender<()>),
}

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>, deadline: Instant) -> MutexGuard<'a, State> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.cond.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0
    }

    fn format_requests(&self, requests: &[Request]) -> String {
        let mut out = String::new();
        for r in requests {
            let query = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            let _ = writeln!(
                out,
                "  +{:?} {} {}{}{} -> {} (route {:?}, connection {}, auth {}, user-agent {:?})",
                r.at.saturating_duration_since(self.started),
                r.method,
                r.path,
                if query.is_empty() { "" } else { "?" },
                query,
                r.status,
                r.route,
                r.connection,
                match r.authorization {
                    Some(_) => "sent",
                    None => "missing",
                },
                r.user_agent.as_deref().unwrap_or("")
            );
        }
        if out.is_empty() {
            out.push_str("  (no requests)\n");
        }
        out
    }
}

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn set_pod_rv(&mut self, rv: u64) {
        if !self.pod["metadata"].is_object() {
            self.pod["metadata"] = json!({});
        }
        self.pod["metadata"]["resourceVersion"] = Value::String(rv.to_string());
    }

    fn record(&mut self, rv: u64, line: Arc<str>) {
        self.history.push_back(Recorded { rv, line });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                // Everything newer than the dropped event is still kept.
                self.window_start = dropped.rv;
            }
        }
    }

    /// Sends `msg` to the matching open streams; returns the receivers of their acknowledgements.
    fn broadcast(
        &mut self,
        filter: impl Fn(&WatchHandle) -> bool,
        msg: impl Fn(Sender<()>) -> StreamMsg,
    ) -> Vec<Receiver<()>> {
        let mut acks = Vec::new();
        for handle in self.watches.values().filter(|h| filter(h)) {
            let (ack_tx, ack_rx) = mpsc::channel();
            if handle.tx.send(msg(ack_tx)).is_ok() {
                // A full socketpair buffer means a wake-up is already pending.
                let _ = (&handle.wake).write(&[1]);
                acks.push(ack_rx);
            }
        }
        acks
    }
}

/// Waits until every stream acknowledged (or went away, which drops its acknowledgement sender).
fn await_acks(acks: Vec<Receiver<()>>) {
    for ack in acks {
        let _ = ack.recv();
    }
}

fn event_line(kind: &str, object: &Value) -> Arc<str> {
    let mut line = go_json(&json!({"type": kind, "object": object}));
    line.push('\n');
    line.into()
}

/// JSON as the API server (Go's encoding/json) writes it: `<`, `>` and `&` escaped as `\u003c`, `\u003e` and
/// `\u0026`, six bytes each (they can only occur inside strings, so replacing them everywhere is exact).
pub fn go_json(value: &Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A Kubernetes `Status` object (`kind: Status`, `status: Failure`).
pub fn status_object(code: u16, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason_for(code),
        "code": code,
    })
}

/// What a connection thread does with a request, decided under the lock (where the request is also recorded).
enum Reply {
    Json {
        status: u16,
        body: String,
        retry_after: Option<u32>,
    },
    Drop,
    /// A complete chunked stream: these lines, then the final chunk.
    Events(Vec<Arc<str>>),
    /// A stream cut short (see [`Fault::Cut`]).
    Cut {
        final_chunk: bool,
    },
    /// A stream that never sends anything (see [`Fault::Silent`]).
    Silent,
    Watch(Box<LiveWatch>),
    /// A 3xx with this Location (see [`Fault::Redirect`]).
    Redirect(u16, String),
    /// No answer at all (see [`Fault::Hang`]).
    Hang,
}

struct LiveWatch {
    id: u64,
    initial: Vec<Arc<str>>,
    rx: Receiver<StreamMsg>,
    wake: UnixStream,
    deadline: Option<Instant>,
}

impl ApiServer {
    /// HTTPS on 127.0.0.1:0 with a fresh CA. `pod` is the whole Pod JSON; metadata.name / metadata.namespace route
    /// requests. The server sets metadata.resourceVersion itself (a counter as a string, starting at "100").
    pub fn start(pod: Value) -> ApiServer {
        Self::start_with_pki(pod, tls::pki())
    }

    /// Like [`ApiServer::start`] with a given PKI (for example [`tls::untrusted_pki`], to present a certificate
    /// that the CA in [`ApiServer::env`] did not sign: see [`ApiServer::start_with_wrong_ca`]).
    pub fn start_with_pki(pod: Value, pki: TestPki) -> ApiServer {
        Self::launch(pod, pki, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`ApiServer::start`], listening on `[::1]:0` (and [`ApiServer::env`] says KUBERNETES_SERVICE_HOST=::1,
    /// unbracketed, as the kubelet does).
    pub fn start_ipv6(pod: Value) -> ApiServer {
        Self::launch(pod, tls::pki(), IpAddr::V6(Ipv6Addr::LOCALHOST))
    }

    fn launch(mut pod: Value, pki: TestPki, ip: IpAddr) -> ApiServer {
        let name = pod["metadata"]["name"].as_str().expect("the Pod needs metadata.name").to_string();
        let namespace = pod["metadata"]["namespace"].as_str().expect("the Pod needs metadata.namespace").to_string();
        pod["metadata"]["resourceVersion"] = Value::String(FIRST_RESOURCE_VERSION.to_string());
        let token = format!("proa-test-token-{}-{}", std::process::id(), DIR_COUNTER.fetch_add(1, Ordering::Relaxed));
        let listener = TcpListener::bind((ip, 0)).expect("bind API server listener");
        let addr = listener.local_addr().expect("API server address");
        let shared = Arc::new(Shared {
            name,
            namespace,
            started: Instant::now(),
            config: pki.server_config.clone(),
            state: Mutex::new(State {
                pod,
                deleted: false,
                rv: FIRST_RESOURCE_VERSION,
                token,
                history: VecDeque::new(),
                window_start: FIRST_RESOURCE_VERSION,
                faults: Vec::new(),
                lasting: Vec::new(),
                restored: false,
                denied: Vec::new(),
                requests: Vec::new(),
                watches: HashMap::new(),
                next_id: 0,
            }),
            cond: Condvar::new(),
        });
        let serving = shared.clone();
        let accepting = Accepting::start(listener, "apiserver", move |tcp, id| serve_connection(&serving, tcp, id));
        ApiServer { addr, pki, shared, accepting, dirs: Mutex::new(Vec::new()) }
    }

    /// A server whose certificate is signed by an unrelated CA, while [`ApiServer::env`] and
    /// [`ApiServer::ca_pem`] still hand out a CA of its own: TLS verification must fail.
    pub fn start_with_wrong_ca(pod: Value) -> ApiServer {
        let presented = tls::untrusted_pki();
        let mut server = Self::start_with_pki(pod, presented);
        server.pki.ca_pem = tls::pki().ca_pem;
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on: 127.0.0.1 (or ::1 with [`ApiServer::start_ipv6`]).
    pub fn host(&self) -> IpAddr {
        self.addr.ip()
    }

    /// `https://127.0.0.1:PORT` (`https://[::1]:PORT` with [`ApiServer::start_ipv6`]).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that goes into `ca.crt`.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The TLS client configuration trusting [`ApiServer::ca_pem`] (for tests that talk to the server directly).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pki.ca_pem.as_bytes()) {
            roots.add(cert.expect("parse CA PEM")).expect("add CA to root store");
        }
        let config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    pub fn pod_name(&self) -> &str {
        &self.shared.name
    }

    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// The token the server accepts now.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Changes the accepted token. Service account directories are not touched: tests rotate the file themselves.
    pub fn set_token(&self, new: &str) {
        self.shared.lock().token = new.to_string();
    }

    /// Creates a new unique temp dir holding `token` (the accepted token), `ca.crt` and `namespace`, and returns the
    /// environment proa needs: KUBERNETES_SERVICE_HOST=127.0.0.1 (see [`ApiServer::host`]), KUBERNETES_SERVICE_PORT, PROA_SERVICE_ACCOUNT_DIR,
    /// POD_NAME, POD_NAMESPACE. The directory is removed when the server is dropped.
    pub fn env(&self) -> Vec<(String, String)> {
        let dir = self.new_service_account_dir();
        [
            ("KUBERNETES_SERVICE_HOST", self.host().to_string()),
            ("KUBERNETES_SERVICE_PORT", self.port().to_string()),
            ("PROA_SERVICE_ACCOUNT_DIR", dir.display().to_string()),
            ("POD_NAME", self.shared.name.clone()),
            ("POD_NAMESPACE", self.shared.namespace.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The service account directory most recently created by [`ApiServer::env`] (one is created if none was).
    pub fn service_account_dir(&self) -> PathBuf {
        let last = self.lock_dirs().last().cloned();
        last.unwrap_or_else(|| self.new_service_account_dir())
    }

    /// Creates another service account directory (see [`ApiServer::env`]) and returns its path.
    pub fn new_service_account_dir(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "proa-it-{}-{}",
            std::process::id(),
            DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            // Left over by an earlier process with the same id.
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).expect("create service account dir");
        std::fs::write(dir.join("token"), self.token()).expect("write token");
        std::fs::write(dir.join("ca.crt"), &self.pki.ca_pem).expect("write ca.crt");
        std::fs::write(dir.join("namespace"), &self.shared.namespace).expect("write namespace");
        self.lock_dirs().push(dir.clone());
        dir
    }

    fn lock_dirs(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the Pod: bumps resourceVersion, records a MODIFIED event in the history, writes it to every open
    /// watch stream and flushes. Returns once every open stream was sent the change; the Instant it returns was taken
    /// just before the change became visible to any client, so whatever proa does in response happens after it.
    /// `change` runs under the server's lock: it must not call the server.
    pub fn update_pod(&self, change: impl FnOnce(&mut Value)) -> Instant {
        let (visible, acks) = {
            let mut st = self.shared.lock();
            let visible = Instant::now();
            change(&mut st.pod);
            let rv = st.next_rv();
            st.set_pod_rv(rv);
            st.deleted = false;
            let line = event_line("MODIFIED", &st.pod);
            st.record(rv, line.clone());
            (visible, st.broadcast(|h| !h.ahead, |ack| StreamMsg::Event(line.clone(), ack)))
        };
        await_acks(acks);
        visible
    }

    /// Deletes the Pod: bumps resourceVersion, records a DELETED event and sends it like [`ApiServer::update_pod`].
    /// Afterwards GET answers 404 and a watch without resourceVersion starts with no ADDED event.
    pub fn delete_pod(&self) -> Instant {
        let (visible, acks) = {
            let mut st = self.shared.lock();
            let visible = Instant::now();
            let rv = st.next_rv();
            st.set_pod_rv(rv);
            st.deleted = true;
            let line = event_line("DELETED", &st.pod);
            st.record(rv, line.clone());
            (visible, st.broadcast(|h| !h.ahead, |ack| StreamMsg::Event(line.clone(), ack)))
        };
        await_acks(acks);
        visible
    }

    /// After [`ApiServer::delete_pod`]: another Pod of the same name appears (`pod`, with a uid of its own), as a
    /// Job's or a StatefulSet's replacement does; open watches get its ADDED event. Returns like `update_pod`.
    pub fn replace_pod(&self, mut pod: Value) -> Instant {
        let (visible, acks) = {
            let mut st = self.shared.lock();
            let visible = Instant::now();
            let rv = st.next_rv();
            pod["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            st.pod = pod;
            st.deleted = false;
            let line = event_line("ADDED", &st.pod);
            st.record(rv, line.clone());
            (visible, st.broadcast(|h| !h.ahead, |ack| StreamMsg::Event(line.clone(), ack)))
        };
        await_acks(acks);
        visible
    }

    /// The current Pod (with its current resourceVersion).
    pub fn pod(&self) -> Value {
        self.shared.lock().pod.clone()
    }

    /// The last resourceVersion handed out (by a Pod change or a bookmark).
    pub fn resource_version(&self) -> String {
        self.shared.lock().rv.to_string()
    }

    fn set_container(&self, container: &str, ready: bool, state: Value) -> Instant {
        let container = container.to_string();
        self.update_pod(move |pod| {
            let is_init = pod["spec"]["initContainers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == container.as_str()));
            let field = if is_init { "initContainerStatuses" } else { "containerStatuses" };
            if !pod["status"].is_object() {
                pod["status"] = json!({});
            }
            if !pod["status"][field].is_array() {
                pod["status"][field] = json!([]);
            }
            let statuses = pod["status"][field].as_array_mut().expect("statuses array");
            let idx = match statuses.iter().position(|s| s["name"] == container.as_str()) {
                Some(i) => i,
                None => {
                    statuses.push(json!({"name": container, "restartCount": 0}));
                    statuses.len() - 1
                }
            };
            let entry = &mut statuses[idx];
            entry["ready"] = Value::Bool(ready);
            entry["state"] = state;
        })
    }

    /// `ready: true`, `state.running` for that container (an init container's entry in initContainerStatuses).
    pub fn set_ready(&self, container: &str) -> Instant {
        self.set_container(container, true, json!({"running": {"startedAt": "2024-01-01T00:00:00Z"}}))
    }

    /// `ready: false`, `state.waiting.reason`.
    pub fn set_waiting(&self, container: &str, reason: &str) -> Instant {
        self.set_container(container, false, json!({"waiting": {"reason": reason}}))
    }

    /// `ready: false`, `state.terminated` with that exit code and reason `Completed` (0) or `Error`.
    pub fn set_terminated(&self, container: &str, exit_code: i32) -> Instant {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        self.set_container(
            container,
            false,
            json!({"terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": "2024-01-01T00:00:00Z",
                "finishedAt": "2024-01-01T00:00:01Z",
            }}),
        )
    }

    /// Sends a BOOKMARK event with a fresh resourceVersion to every open watch that asked for bookmarks, and waits
    /// until it was flushed. Bookmarks are not part of the history; a watch can resume from their resourceVersion.
    pub fn bookmark(&self) {
        let acks = {
            let mut st = self.shared.lock();
            let rv = st.next_rv();
            let line = bookmark_line(rv, false);
            st.broadcast(|h| h.bookmarks && !h.ahead, |ack| StreamMsg::Event(line.clone(), ack))
        };
        await_acks(acks);
    }

    /// Ends every open watch stream cleanly (final zero-length chunk), as the API server does at timeoutSeconds,
    /// and waits until they were ended and unregistered. The connections stay open for further requests.
    pub fn end_watches(&self) {
        let acks = self.shared.lock().broadcast(|_| true, StreamMsg::End);
        await_acks(acks);
    }

    /// Writes `line` (which should end with a newline) as one chunk to every open watch stream, exactly as given and
    /// without recording it in the history: for malformed, unknown or oversized lines. Waits until it was written
    /// (or the stream went away).
    pub fn send_raw(&self, line: &str) {
        let line: Arc<str> = line.into();
        let acks = self.shared.lock().broadcast(|h| !h.ahead, |ack| StreamMsg::Event(line.clone(), ack));
        await_acks(acks);
    }

    /// Drops the event history: a watch from any resourceVersion older than the current one gets `410 Expired`.
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.history.clear();
        st.window_start = st.rv;
    }

    /// Turns the server back to an older copy of its storage, as when etcd is restored from a backup: the Pod keeps
    /// its state, but its resourceVersion and the server's go back to `rv`, and the history after it is lost. A watch
    /// from a resourceVersion the server has not reached is then accepted and sent nothing (no events, no
    /// bookmarks) until timeoutSeconds ends it, as a real kube-apiserver was measured to do.
    pub fn restore(&self, rv: u64) {
        let mut st = self.shared.lock();
        st.rv = rv;
        st.set_pod_rv(rv);
        st.history.retain(|e| e.rv <= rv);
        st.window_start = st.window_start.min(rv);
        st.restored = true;
    }

    /// Makes access reviews for `verb` answer `allowed: false` with a reason, as RBAC does without a matching rule.
    pub fn deny(&self, verb: &str) {
        self.shared.lock().denied.push(verb.to_string());
    }

    /// Queues a fault for the next request of that route; faults are consumed in order.
    pub fn push_fault(&self, route: Route, fault: Fault) {
        assert!(
            !(route != Route::Watch && matches!(fault, Fault::ErrorEvent(_) | Fault::Cut { .. } | Fault::Silent)),
            "Fault::ErrorEvent, Cut and Silent only apply to Route::Watch"
        );
        self.shared.lock().faults.push((route, fault));
    }

    /// Answers every request of that route with `fault` (after any queued ones) until [`ApiServer::stop_failing`]:
    /// a refusal that persists.
    pub fn keep_failing(&self, route: Route, fault: Fault) {
        assert!(matches!(fault, Fault::Status(_) | Fault::RetryAfter(..) | Fault::Redirect(..)), "answers only");
        self.shared.lock().lasting.push((route, fault));
    }

    /// Ends [`ApiServer::keep_failing`] for that route.
    pub fn stop_failing(&self, route: Route) {
        self.shared.lock().lasting.retain(|(r, _)| *r != route);
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> Vec<(Route, Fault)> {
        self.shared.lock().faults.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Blocks until a recorded request (earlier ones included) satisfies `matches`, at most `bound`; returns it. On
    /// timeout panics with a message listing every recorded request.
    pub fn wait_for_request(&self, bound: Duration, matches: impl Fn(&Request) -> bool) -> Request {
        self.wait_for_requests(bound, 1, matches).remove(0)
    }

    /// Blocks until at least `n` recorded requests satisfy `matches`, at most `bound`; returns all that do, in
    /// order. On timeout panics with the request log.
    pub fn wait_for_requests(&self, bound: Duration, n: usize, matches: impl Fn(&Request) -> bool) -> Vec<Request> {
        let deadline = Instant::now() + bound;
        let mut st = self.shared.lock();
        loop {
            let found: Vec<Request> = st.requests.iter().filter(|r| matches(r)).cloned().collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() >= deadline {
                let log = self.shared.format_requests(&st.requests);
                drop(st);
                panic!("fewer than {n} matching requests to the API server within {bound:?}; requests:\n{log}");
            }
            st = self.shared.wait(st, deadline);
        }
    }

    /// Formats the request log (for assertion messages).
    pub fn request_log(&self) -> String {
        let st = self.shared.lock();
        self.shared.format_requests(&st.requests)
    }

    /// The largest number of client connections that were open at the same time.
    pub fn peak_connections(&self) -> usize {
        self.accepting.peak()
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.lock().watches.len()
    }

    /// Blocks until open_watches() == n, at most `bound` (panics with the request log otherwise).
    pub fn wait_open_watches(&self, n: usize, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut st = self.shared.lock();
        loop {
            if st.watches.len() == n {
                return;
            }
            if Instant::now() >= deadline {
                let open = st.watches.len();
                let log = self.shared.format_requests(&st.requests);
                drop(st);
                panic!("expected {n} open watch stream(s) within {bound:?}, have {open}; requests:\n{log}");
            }
            st = self.shared.wait(st, deadline);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // `accepting` then stops accepting and closes every connection, ending open watch streams.
        for dir in self.lock_dirs().drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

/// How a watch stream ended.
enum StreamEnd {
    /// Cleanly (final chunk sent): the connection can serve more requests.
    Clean,
    /// The client went away, a write failed, or the server is shutting down.
    Closed,
}

fn serve_connection(shared: &Shared, tcp: TcpStream, connection: u64) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
    let conn = match ServerConnection::new(shared.config.clone()) {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("test API server: TLS setup failed: {e}");
            return;
        }
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    loop {
        // Errors here are normal: failed handshakes (wrong CA tests), clients closing, server shutdown.
        let head = match http::read_head(&mut tls, &mut buf) {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData && !tls.conn.is_handshaking() {
                    let body = status_object(400, &format!("malformed request: {e}")).to_string();
                    let _ = write_json(&mut tls, 400, &body, None, true);
                }
                return;
            }
        };
        let Ok(body) = http::read_body(&mut tls, &mut buf, &head) else {
            return;
        };
        let close = head.wants_close();
        let end = match decide(shared, &head, &body, connection) {
            Reply::Json { status, body, retry_after } => {
                match write_json(&mut tls, status, &body, retry_after, close) {
                    Ok(()) => StreamEnd::Clean,
                    Err(_) => StreamEnd::Closed,
                }
            }
            Reply::Drop => {
                let _ = tls.sock.shutdown(Shutdown::Both);
                return;
            }
            Reply::Redirect(status, location) => {
                let head = format!("HTTP/1.1 {status} Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
                match tls.write_all(head.as_bytes()).and_then(|()| tls.flush()) {
                    Ok(()) => StreamEnd::Clean,
                    Err(_) => StreamEnd::Closed,
                }
            }
            Reply::Events(lines) => match write_events(&mut tls, &lines, close) {
                Ok(()) => StreamEnd::Clean,
                Err(_) => StreamEnd::Closed,
            },
            Reply::Watch(watch) => run_watch(shared, &mut tls, &mut buf, *watch, close),
            Reply::Cut { final_chunk: true } => match write_events(&mut tls, &[], close) {
                Ok(()) => StreamEnd::Clean,
                Err(_) => StreamEnd::Closed,
            },
            Reply::Cut { final_chunk: false } => {
                let _ = write_stream_head(&mut tls, close)
                    .and_then(|()| write_chunk(&mut tls, b"{\"type\":\"MODIFIED\",\"obj"));
                let _ = tls.sock.shutdown(Shutdown::Both);
                return;
            }
            Reply::Silent => {
                if write_stream_head(&mut tls, close).is_ok() {
                    wait_until_client_gone(&mut tls, &mut buf);
                }
                return;
            }
            Reply::Hang => return wait_until_client_gone(&mut tls, &mut buf),
        };
        if close || matches!(end, StreamEnd::Closed) {
            break;
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(Shutdown::Both);
}

/// Routes, authenticates, applies faults, records the request and (for a live watch) registers the stream, all
/// under one lock, so that every event reaches a new stream exactly once (replayed or live).
fn decide(shared: &Shared, head: &Head, body: &[u8], connection: u64) -> Reply {
    let path = head.path().to_string();
    let query = http::parse_query(head.raw_query());
    let authorization = head.header("authorization").map(str::to_string);
    let (name, ns) = (&shared.name, &shared.namespace);

    let route = if head.method == "POST" && path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
        Some(Route::AccessReview)
    } else if head.method != "GET" {
        None
    } else if path == format!("/api/v1/namespaces/{ns}/pods/{name}") {
        Some(Route::Get)
    } else if path == format!("/api/v1/namespaces/{ns}/pods")
        && matches!(query.get("watch").map(String::as_str), Some("true" | "1"))
        && query.get("fieldSelector").map(String::as_str) == Some(&format!("metadata.name={name}"))
    {
        Some(Route::Watch)
    } else if path == format!("/api/v1/namespaces/{ns}/pods")
        && query.get("fieldSelector").map(String::as_str) == Some(&format!("metadata.name={name}"))
    {
        Some(Route::List)
    } else {
        None
    };

    let mut st = shared.lock();
    let json_reply = |code: u16, message: &str| Reply::Json {
        status: code,
        body: status_object(code, message).to_string(),
        retry_after: None,
    };
    let token_ok = authorization
        .as_deref()
        .and_then(|a| a.trim().split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token.trim() == st.token);

    let reply = if !token_ok {
        json_reply(401, "Unauthorized")
    } else if let Some(route) = route {
        let fault = st.faults.iter().position(|(r, _)| *r == route).map(|i| st.faults.remove(i).1);
        let fault = fault.or_else(|| st.lasting.iter().find(|(r, _)| *r == route).map(|(_, f)| f.clone()));
        match fault {
            Some(fault) => fault_reply(shared, route, fault, &st),
            None => match route {
                Route::Get if st.deleted => json_reply(404, &format!("pods \"{name}\" not found")),
                Route::Get => Reply::Json { status: 200, body: go_json(&st.pod), retry_after: None },
                Route::Watch => watch_reply(&mut st, &query),
                Route::AccessReview => review_reply(&st, body),
                Route::List => {
                    let items = if st.deleted { vec![] } else { vec![st.pod.clone()] };
                    let list = json!({"kind": "PodList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
                    Reply::Json { status: 200, body: list.to_string(), retry_after: None }
                }
            },
        }
    } else {
        json_reply(404, &format!("the server could not find the requested resource: {path}"))
    };

    let status = match &reply {
        Reply::Json { status, .. } => *status,
        Reply::Drop | Reply::Hang => 0,
        Reply::Redirect(status, _) => *status,
        Reply::Events(_) | Reply::Watch(_) | Reply::Cut { .. } | Reply::Silent => 200,
    };
    st.requests.push(Request {
        at: Instant::now(),
        method: head.method.clone(),
        path,
        query,
        authorization,
        user_agent: head.header("user-agent").map(str::to_string),
        route,
        status,
        connection,
        body: String::from_utf8_lossy(body).into_owned(),
    });
    shared.cond.notify_all();
    reply
}

/// Answers a SelfSubjectAccessReview as the API server does (201, the review with its status): allowed unless the
/// verb was denied. A body without `spec.resourceAttributes.verb` is a 400.
fn review_reply(st: &State, body: &[u8]) -> Reply {
    let review: Option<Value> = serde_json::from_slice(body).ok();
    let Some(mut review) = review.filter(|r| r["spec"]["resourceAttributes"]["verb"].is_string()) else {
        let message = "SelfSubjectAccessReview needs spec.resourceAttributes.verb";
        return Reply::Json { status: 400, body: status_object(400, message).to_string(), retry_after: None };
    };
    let verb = review["spec"]["resourceAttributes"]["verb"].as_str().unwrap_or_default().to_string();
    review["status"] = match st.denied.contains(&verb) {
        true => json!({"allowed": false, "reason": "no RBAC policy matched"}),
        false => json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"proa\" of Role \"proa\""}),
    };
    Reply::Json { status: 201, body: review.to_string(), retry_after: None }
}

fn fault_reply(shared: &Shared, route: Route, fault: Fault, st: &State) -> Reply {
    let message = |code: u16| match code {
        403 => {
            let (verb, what) = match route {
                Route::Get => ("get", format!("pods \"{}\"", shared.name)),
                Route::Watch => ("watch", "pods".to_string()),
                Route::List => ("list", "pods".to_string()),
                Route::AccessReview => {
                    return format!(
                        "selfsubjectaccessreviews.authorization.k8s.io is forbidden: User \"system:serviceaccount:{}:default\" cannot create resource \"selfsubjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope",
                        shared.namespace
                    );
                }
            };
            format!(
                "{what} is forbidden: User \"system:serviceaccount:{ns}:default\" cannot {verb} resource \"pods\" in API group \"\" in the namespace \"{ns}\"",
                ns = shared.namespace
            )
        }
        404 => format!("pods \"{}\" not found", shared.name),
        410 => format!("too old resource version: {} ({})", st.window_start, st.rv),
        429 => "too many requests, please try again later".to_string(),
        500 => "Internal error occurred: injected by the test".to_string(),
        503 => "the server is currently unable to handle the request".to_string(),
        401 => "Unauthorized".to_string(),
        _ => format!("injected by the test: {code}"),
    };
    match fault {
        Fault::Status(code) => {
            Reply::Json { status: code, body: status_object(code, &message(code)).to_string(), retry_after: None }
        }
        Fault::RetryAfter(code, secs) => {
            let mut body = status_object(code, &message(code));
            body["details"] = json!({"retryAfterSeconds": secs});
            Reply::Json { status: code, body: body.to_string(), retry_after: Some(secs) }
        }
        Fault::ErrorEvent(code) => Reply::Events(vec![event_line("ERROR", &status_object(code, &message(code)))]),
        Fault::Drop => Reply::Drop,
        Fault::Cut { final_chunk } => Reply::Cut { final_chunk },
        Fault::Silent => Reply::Silent,
        Fault::Redirect(status, location) => Reply::Redirect(status, location),
        Fault::Hang => Reply::Hang,
    }
}

/// A BOOKMARK line as kube-apiserver 1.36 writes it: a Pod shell with only the resourceVersion (and the
/// `k8s.io/initial-events-end` annotation after the initial events of a watch from no resourceVersion).
fn bookmark_line(rv: u64, initial_events_end: bool) -> Arc<str> {
    let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object =
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": {"containers": null}, "status": {}});
    event_line("BOOKMARK", &object)
}

fn watch_reply(st: &mut State, query: &BTreeMap<String, String>) -> Reply {
    let bad = |message: String| Reply::Json {
        status: 400,
        body: status_object(400, &message).to_string(),
        retry_after: None,
    };
    let deadline = match query.get("timeoutSeconds") {
        None => None,
        Some(s) => match s.parse::<u64>() {
            // As in Kubernetes, 0 means no timeout of the client's choosing.
            Ok(0) => None,
            Ok(secs) => Some(Instant::now() + Duration::from_secs(secs)),
            Err(_) => return bad(format!("invalid timeoutSeconds {s:?}")),
        },
    };
    let mut ahead = false;
    let initial = match query.get("resourceVersion").map(String::as_str) {
        // "0" means "any version" in Kubernetes: like none, start from the current state.
        // kube-apiserver 1.36 ends those initial events with an annotated BOOKMARK when bookmarks were asked for.
        None | Some("" | "0") => {
            let mut initial = Vec::new();
            if !st.deleted {
                initial.push(event_line("ADDED", &st.pod));
            }
            if query.get("allowWatchBookmarks").map(String::as_str) == Some("true") {
                initial.push(bookmark_line(st.rv, true));
            }
            initial
        }
        Some(s) => {
            let Ok(from) = s.parse::<u64>() else {
                return bad(format!("invalid resourceVersion {s:?}"));
            };
            if from < st.window_start {
                let message = format!("too old resource version: {from} ({})", st.rv);
                return Reply::Events(vec![event_line("ERROR", &status_object(410, &message))]);
            }
            ahead = st.restored && from > st.rv;
            st.history.iter().filter(|e| e.rv > from).map(|e| e.line.clone()).collect()
        }
    };
    let (wake, wake_rx) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => {
            return Reply::Json {
                status: 500,
                body: status_object(500, &format!("socketpair: {e}")).to_string(),
                retry_after: None,
            };
        }
    };
    let _ = wake.set_nonblocking(true);
    let _ = wake_rx.set_nonblocking(true);
    let (tx, rx) = mpsc::channel();
    st.next_id += 1;
    let id = st.next_id;
    st.watches.insert(
        id,
        WatchHandle {
            tx,
            wake,
            bookmarks: query.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
            ahead,
        },
    );
    Reply::Watch(Box::new(LiveWatch { id, initial, rx, wake: wake_rx, deadline }))
}

fn write_json(tls: &mut Tls, status: u16, body: &str, retry_after: Option<u32>, close: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    if let Some(secs) = retry_after {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    tls.write_all(out.as_bytes())?;
    tls.flush()
}

fn write_stream_head(tls: &mut Tls, close: bool) -> io::Result<()> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{connection}\r\n");
    tls.write_all(head.as_bytes())?;
    tls.flush()
}

/// One event line in its own chunk, flushed.
fn write_chunk(tls: &mut Tls, data: &[u8]) -> io::Result<()> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    tls.write_all(&out)?;
    tls.flush()
}

fn write_last_chunk(tls: &mut Tls) -> io::Result<()> {
    tls.write_all(b"0\r\n\r\n")?;
    tls.flush()
}

fn write_events(tls: &mut Tls, lines: &[Arc<str>], close: bool) -> io::Result<()> {
    write_stream_head(tls, close)?;
    for line in lines {
        write_chunk(tls, line.as_bytes())?;
    }
    write_last_chunk(tls)
}

/// Removes the stream from the open watches when dropped (however the stream ends).
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Registration<'_> {
    fn release(&self) {
        let mut st = self.shared.lock();
        if st.watches.remove(&self.id).is_some() {
            self.shared.cond.notify_all();
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

fn run_watch(shared: &Shared, tls: &mut Tls, buf: &mut Vec<u8>, watch: LiveWatch, close: bool) -> StreamEnd {
    let LiveWatch { id, initial, rx, wake, deadline } = watch;
    let registration = Registration { shared, id };
    let started = write_stream_head(tls, close)
        .and_then(|()| initial.iter().try_for_each(|line| write_chunk(tls, line.as_bytes())));
    if started.is_err() {
        return StreamEnd::Closed;
    }
    let mut fds = [
        libc::pollfd { fd: tls.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    // timeoutSeconds elapsed: end cleanly, as the API server does.
                    registration.release();
                    return match write_last_chunk(tls) {
                        Ok(()) => StreamEnd::Clean,
                        Err(_) => StreamEnd::Closed,
                    };
                }
                // Round up so that the deadline has passed when poll returns.
                i32::try_from((d - now).as_millis() + 1).unwrap_or(i32::MAX)
            }
        };
        for fd in &mut fds {
            fd.revents = 0;
        }
        // SAFETY: `fds` is a valid array of two pollfd structs for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("test API server: poll failed: {err}");
            return StreamEnd::Closed;
        }
        if fds[1].revents != 0 {
            let mut sink = [0u8; 64];
            while matches!((&wake).read(&mut sink), Ok(n) if n > 0) {}
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    StreamMsg::Event(line, ack) => {
                        if write_chunk(tls, line.as_bytes()).is_err() {
                            return StreamEnd::Closed;
                        }
                        let _ = ack.send(());
                    }
                    StreamMsg::End(ack) => {
                        let ended = write_last_chunk(tls);
                        registration.release();
                        let _ = ack.send(());
                        return match ended {
                            Ok(()) => StreamEnd::Clean,
                            Err(_) => StreamEnd::Closed,
                        };
                    }
                }
            }
        }
        if fds[0].revents != 0 && client_gone(tls, buf) {
            return StreamEnd::Closed;
        }
    }
}

/// Blocks until the client closes the connection (or the server shuts it down), reading nothing it would act on.
fn wait_until_client_gone(tls: &mut Tls, buf: &mut Vec<u8>) {
    let mut fd = libc::pollfd { fd: tls.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        fd.revents = 0;
        // SAFETY: `fd` is a valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut fd, 1, -1) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
        if n > 0 && client_gone(tls, buf) {
            return;
        }
    }
}

/// Reads what the socket has (it polled readable) without blocking on TLS; true when the client closed the
/// connection (EOF, close_notify, error). Plaintext it sent meanwhile is kept in `buf` for the next request.
fn client_gone(tls: &mut Tls, buf: &mut Vec<u8>) -> bool {
    match tls.conn.read_tls(&mut tls.sock) {
        Ok(0) => true,
        Ok(_) => match tls.conn.process_new_packets() {
            Err(_) => {
                let _ = tls.conn.write_tls(&mut tls.sock);
                true
            }
            Ok(state) => {
                let pending = state.plaintext_bytes_to_read();
                if pending > 0 {
                    let start = buf.len();
                    buf.resize(start + pending, 0);
                    let got = tls.conn.reader().read(&mut buf[start..]).unwrap_or(0);
                    buf.truncate(start + got);
                }
                let closed = state.peer_has_closed();
                // Answer anything the TLS layer queued (e.g. a key update).
                closed || tls.flush().is_err()
            }
        },
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
    }
}
