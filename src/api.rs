//! The Kubernetes API client: one ureq `Agent` over rustls (ring) that trusts only the cluster CA, sends the
//! bearer token and `User-Agent: proa/VERSION`, and knows three requests: GET the own Pod, watch it, and (for
//! `proa --check`) ask whether RBAC allows a verb on it (SelfSubjectAccessReview).
//! Runs on the watch threads. Never logs the token or the Authorization header.

use std::fmt;
use std::io::BufReader;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::cluster::{Cluster, Token};
use crate::http;
use crate::lines::{self, Line};
use crate::pod::{ApiStatus, Pod};
use crate::url::redact;

/// The largest Pod, as JSON, proa reads (a GET body or one watch line). etcd stores at most 1.5 MiB per object
/// (its default `--max-request-bytes`), as protobuf; JSON spells field names out and writes `<`, `>` and `&` as
/// `\u003c` (six bytes for one), so a real kube-apiserver serves Pods of 9.4 MB. 32 MiB leaves room for clusters
/// that raise etcd's limit. Memory is not bounded by this but by what `lines` keeps of a large Pod: its JSON less
/// the strings over 64 KiB, so at most the 9.4 MB etcd's limit allows (13–22 MiB of RSS measured for 150 strings
/// of 60 KB; the 32 MiB promise is tested with one huge string and with many medium ones).
pub const MAX_OBJECT_BYTES: usize = 32 * 1024 * 1024;
/// Default for `--watch-timeout`, the base of each watch's length (the watcher makes it 1 to 2 times that, so that
/// Pods started together do not watch again in step): short enough that a server behind the resourceVersion proa
/// resumes from is noticed within two minutes (a silent stream as soon, `WATCH_MARGIN` later); proa watches only
/// while it waits and while it shuts down, so client-go's 5 minutes would save little.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `--watch-timeout` used: API servers end watches sooner anyway (`--min-request-timeout`, 30 min).
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long past its own `timeoutSeconds` a watch may stay open: the server ends every watch then, so one still
/// open a few seconds later is a dead connection (a half-open one after a load balancer or API server failover).
pub const WATCH_MARGIN: Duration = Duration::from_secs(5);
/// Bound on connecting and on waiting for response headers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to the API server failed.
#[derive(Debug, PartialEq)]
pub enum ApiError {
    /// `ca.crt` holds no usable certificate. Fatal: exit 125.
    BadCa(String),
    /// The server's certificate is not signed by `ca.crt`. Fatal: exit 125 (there is no insecure fallback).
    Untrusted(String),
    /// Connecting, TLS or reading failed, or a bound passed: retried with backoff.
    Transport(String),
    /// The connection was refused, or cut before the answer ended: retried with backoff, at least once a second.
    Cut(String),
    /// 401 even after re-reading the token file. Fatal: exit 125.
    Unauthorized,
    /// 403: the ServiceAccount may not do `verb` on pods. Fatal (exit 125) once it persists (`watch::Backoff`): a
    /// restarting API server answers 403 for a moment.
    Forbidden { verb: &'static str, namespace: String },
    /// 404: no such Pod; POD_NAME or the namespace is wrong. Fatal: exit 125.
    PodNotFound { namespace: String, pod: String },
    /// 410 Gone: the resourceVersion is too old; watch again without one.
    Gone,
    /// 429 or 5xx: retried after `retry_after` if the server said (never sooner than the backoff), else with
    /// backoff.
    Unavailable { status: u16, retry_after: Option<Duration> },
    /// 3xx: proa never follows the API server's redirects (it could leave the verified host, or TLS). Retried;
    /// fatal (exit 125) when it persists.
    Redirect { status: u16, location: String },
    /// Any other status. Fatal: exit 125.
    Status { status: u16, message: String },
    /// The body is not the JSON proa expects: retried with backoff.
    Decode(String),
    /// The Pod's JSON is over `MAX_OBJECT_BYTES`. Fatal: exit 125 (reading it again would not make it smaller).
    TooLarge,
    /// The request cannot even be built (a URL with a character no URI may hold). Fatal: exit 125.
    Request(String),
}

impl ApiError {
    /// Whether no connection could be made or kept: the server, or a proxy on the way, is out of reach.
    pub fn is_cut(&self) -> bool {
        matches!(self, ApiError::Cut(_))
    }

    /// Whether the server refused to show the Pod to this ServiceAccount, or has no such Pod (401, 403, 404).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ApiError::Unauthorized | ApiError::Forbidden { .. } | ApiError::PodNotFound { .. })
    }

    /// Whether retrying cannot help, so proa must stop with exit 125.
    pub fn is_fatal(&self) -> bool {
        match self {
            ApiError::BadCa(_)
            | ApiError::Untrusted(_)
            | ApiError::Unauthorized
            | ApiError::Forbidden { .. }
            | ApiError::PodNotFound { .. }
            | ApiError::Status { .. }
            | ApiError::TooLarge
            | ApiError::Request(_) => true,
            ApiError::Transport(_)
            | ApiError::Cut(_)
            | ApiError::Gone
            | ApiError::Unavailable { .. }
            | ApiError::Redirect { .. }
            | ApiError::Decode(_) => false,
        }
    }
}

impl ApiError {
    /// How long the server asked proa to wait (429/503 with Retry-After).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadCa(why) => write!(f, "cannot use ca.crt: {why}"),
            ApiError::Untrusted(why) => {
                write!(f, "API server certificate failed verification against ca.crt: {why}")
            }
            ApiError::Transport(why) | ApiError::Cut(why) => write!(f, "request to the API server failed: {why}"),
            ApiError::Unauthorized => {
                write!(f, "API server answered 401: the service account token was rejected (even after re-reading it)")
            }
            ApiError::Forbidden { verb, namespace } => write!(
                f,
                "API server answered 403: the service account may not {verb} pods in namespace {namespace:?}; grant a Role rule {{apiGroups: [\"\"], resources: [\"pods\"], verbs: [\"get\", \"watch\"]}} bound to it"
            ),
            ApiError::PodNotFound { namespace, pod } => write!(
                f,
                "API server answered 404: no pod {pod:?} in namespace {namespace:?}; set POD_NAME and POD_NAMESPACE from the Downward API"
            ),
            ApiError::Gone => write!(f, "API server answered 410: resourceVersion too old"),
            ApiError::Unavailable { status, .. } => write!(f, "API server answered {status}"),
            ApiError::Redirect { status, location } => write!(
                f,
                "API server answered {status}, a redirect to {}: proa does not follow it; check KUBERNETES_SERVICE_HOST and any proxy in front of the API server",
                redact(location)
            ),
            ApiError::Status { status, message } => write!(f, "API server answered {status}: {message}"),
            ApiError::Decode(why) => write!(f, "API server sent unexpected JSON: {why}"),
            ApiError::TooLarge => write!(
                f,
                "the pod's JSON is larger than {} MiB, more than the API server can store: not a pod proa can read",
                MAX_OBJECT_BYTES / (1024 * 1024)
            ),
            ApiError::Request(why) => write!(f, "cannot build a request to the API server: {why}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// The answer to a SelfSubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub allowed: bool,
    /// The authorizer's explanation; often empty on a denial.
    pub reason: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AccessReview {
    status: AccessStatus,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AccessStatus {
    allowed: bool,
    reason: String,
}

/// A client for the own Pod. Cloning is cheap and shares the connection pool and the token: one holder serves
/// every request, so a token re-read by one watcher is the one the next watcher sends.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    api_url: String,
    namespace: String,
    pod_name: String,
    /// Shared by the clones: the initial watcher and the shutdown watcher may overlap for a moment.
    token: Arc<Mutex<Token>>,
    watch_timeout: Duration,
}

impl Api {
    /// Builds the client. Fails only when `ca.crt` holds no certificate.
    pub fn new(cluster: Cluster, watch_timeout: Duration) -> Result<Api, ApiError> {
        let roots: Vec<Certificate<'static>> = CertificateDer::pem_slice_iter(&cluster.ca_pem)
            .map(|cert| cert.map(|der| Certificate::from_der(der.as_ref()).to_owned()))
            .collect::<Result<_, _>>()
            .map_err(|err| ApiError::BadCa(format!("{}: {err}", cluster.ca_path.display())))?;
        if roots.is_empty() {
            return Err(ApiError::BadCa(format!("{} holds no PEM certificate", cluster.ca_path.display())));
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(crate::tls::provider())
            .root_certs(RootCerts::new_with_certs(&roots))
            .build();
        let agent = http::agent(
            http::agent_config()
                .tls_config(tls)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_recv_response(Some(RESPONSE_TIMEOUT))
                .build(),
        );
        if watch_timeout > MAX_WATCH_TIMEOUT {
            log::warn!("--watch-timeout of {}s is over an hour: using an hour", watch_timeout.as_secs());
        }
        let watch_timeout = watch_timeout.min(MAX_WATCH_TIMEOUT);
        let Cluster { api_url, namespace, pod_name, token, .. } = cluster;
        Ok(Api { agent, api_url, namespace, pod_name, token: Arc::new(Mutex::new(token)), watch_timeout })
    }

    /// A client like this one, sharing its token, with a connection pool of its own: the agent returned with it
    /// closes that pool's connections at once, a request blocked on one included (`ureq::Agent::shutdown`).
    pub fn detached(&self) -> (Api, ureq::Agent) {
        let agent = http::agent(self.agent.config().clone());
        (Api { agent: agent.clone(), ..self.clone() }, agent)
    }

    /// `GET /api/v1/namespaces/NS/pods/NAME`.
    pub fn get_pod(&mut self) -> Result<Pod, ApiError> {
        let url = format!("{}/api/v1/namespaces/{}/pods/{}", self.api_url, self.namespace, self.pod_name);
        let response = self.send(&url, "get", RESPONSE_TIMEOUT + CONNECT_TIMEOUT, None)?;
        read_json(response)
    }

    /// Asks whether the token may `verb` the own Pod: `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
    /// Any authenticated identity may ask (the `system:basic-user` ClusterRole), so a 403 here is unusual.
    pub fn access_review(&mut self, verb: &'static str) -> Result<Access, ApiError> {
        let url = format!("{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self.api_url);
        let review = format!(
            r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{{"resourceAttributes":{{"namespace":{},"verb":{},"resource":"pods","name":{}}}}}}}"#,
            lines::quote(&self.namespace),
            lines::quote(verb),
            lines::quote(&self.pod_name)
        );
        let response =
            self.send(&url, "create selfsubjectaccessreviews for", RESPONSE_TIMEOUT + CONNECT_TIMEOUT, Some(review))?;
        let review: AccessReview = read_json(response)?;
        Ok(Access { allowed: review.status.allowed, reason: review.status.reason })
    }

    /// `--watch-timeout` (at most an hour): the base the watcher jitters each watch's length from.
    pub fn watch_timeout(&self) -> Duration {
        self.watch_timeout
    }

    /// Starts a watch of the own Pod from `resource_version` (none: the server starts with the current state),
    /// which the server ends after `timeout` (`timeoutSeconds`, whole seconds); one still open `WATCH_MARGIN` after
    /// that is a dead connection (or a stuck proxy) and is cut off, so the watcher can reconnect.
    pub fn watch_pod(
        &mut self,
        resource_version: Option<&str>,
        timeout: Duration,
    ) -> Result<BufReader<ureq::BodyReader<'static>>, ApiError> {
        let timeout = Duration::from_secs(timeout.as_secs().max(1));
        let mut url = format!(
            "{}/api/v1/namespaces/{}/pods?fieldSelector=metadata.name%3D{}&watch=true&allowWatchBookmarks=true&timeoutSeconds={}",
            self.api_url,
            self.namespace,
            self.pod_name,
            timeout.as_secs()
        );
        if let Some(rv) = resource_version {
            url.push_str("&resourceVersion=");
            url.push_str(rv);
        }
        let response = self.send(&url, "watch", timeout + WATCH_MARGIN, None)?;
        Ok(BufReader::new(response.into_body().into_reader()))
    }

    /// Sends a GET (or, with a body, a POST of JSON) with the token; re-reads the token and tries once more after
    /// a 401; maps failures.
    fn send(
        &mut self,
        url: &str,
        verb: &'static str,
        bound: Duration,
        body: Option<String>,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let mut reread = false;
        loop {
            let authorization = format!("Bearer {}", self.lock_token().current(Instant::now()));
            let sent = match &body {
                None => self
                    .agent
                    .get(url)
                    .header("Authorization", &authorization)
                    .header("Accept", "application/json")
                    .config()
                    .timeout_global(Some(bound))
                    .build()
                    .call(),
                Some(body) => self
                    .agent
                    .post(url)
                    .header("Authorization", &authorization)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .config()
                    .timeout_global(Some(bound))
                    .build()
                    .send(body.as_bytes()),
            };
            let response = sent.map_err(transport_error)?;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok(response),
                401 if !reread => {
                    reread = true;
                    debug!("API server answered 401: re-reading the token file");
                    if let Err(err) = self.lock_token().reload(Instant::now()) {
                        log::warn!("{err}");
                    }
                }
                _ => return Err(self.answer_error(status, verb, response)),
            }
        }
    }

    /// The token holder. A panic while it was held cannot leave it half-written (it swaps whole values), so a
    /// poisoned lock is still good.
    fn lock_token(&self) -> std::sync::MutexGuard<'_, Token> {
        self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What an answer other than 2xx means; reads what `status_error` needs of it (a redirect's body is not read).
    fn answer_error(&self, status: u16, verb: &'static str, response: ureq::http::Response<ureq::Body>) -> ApiError {
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (location, retry_after) = (header("location"), header("retry-after"));
        let body = match response.status().is_redirection() {
            true => Vec::new(),
            false => response.into_body().into_with_config().limit(64 * 1024).read_to_vec().unwrap_or_default(),
        };
        let answer = Answer { location: location.as_deref(), retry_after: retry_after.as_deref(), body: &body };
        status_error(status, verb, &answer, &self.namespace, &self.pod_name)
    }
}

/// Reads a JSON body of at most `MAX_OBJECT_BYTES`, decoding what it cannot hold as it arrives.
fn read_json<T: serde::de::DeserializeOwned>(response: ureq::http::Response<ureq::Body>) -> Result<T, ApiError> {
    match lines::read_json_body(response.into_body().into_reader(), MAX_OBJECT_BYTES) {
        Ok(Line::Value(value)) => Ok(value),
        Ok(Line::Malformed(why)) => Err(ApiError::Decode(why)),
        Ok(Line::TooLong) => Err(ApiError::TooLarge),
        Ok(Line::End) => Err(ApiError::Decode("empty body".into())),
        Err(err) => Err(ApiError::Transport(err.to_string())),
    }
}

/// What `status_error` reads of an answer: two headers and the body (at most 64 KiB; empty for a redirect).
struct Answer<'a> {
    location: Option<&'a str>,
    retry_after: Option<&'a str>,
    body: &'a [u8],
}

/// What the API server's answer with `status` (not 2xx) means for a request of `verb` on the Pod `pod` in
/// `namespace`: a redirect (never followed), 401, 403, 404, 410, one worth retrying (429, 5xx, with its
/// Retry-After in seconds), or any other status with the message of the API's Status object.
fn status_error(status: u16, verb: &'static str, answer: &Answer, namespace: &str, pod: &str) -> ApiError {
    if (300..400).contains(&status) {
        let location = answer.location.unwrap_or("nowhere").to_string();
        return ApiError::Redirect { status, location };
    }
    let retry_after = answer.retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let message = serde_json::from_slice::<ApiStatus>(answer.body).map(|s| s.message).unwrap_or_default();
    match status {
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden { verb, namespace: namespace.to_string() },
        404 => ApiError::PodNotFound { namespace: namespace.to_string(), pod: pod.to_string() },
        410 => ApiError::Gone,
        429 | 500..=599 => ApiError::Unavailable { status, retry_after },
        _ => ApiError::Status { status, message },
    }
}

/// A certificate rustls refused is fatal; anything else on the wire is worth retrying.
fn transport_error(err: ureq::Error) -> ApiError {
    match http::transport_error(err) {
        http::TransportError::Untrusted(why) => ApiError::Untrusted(why),
        http::TransportError::Request(why) => ApiError::Request(why),
        http::TransportError::Cut(why) => ApiError::Cut(why),
        http::TransportError::Failed(why) => ApiError::Transport(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        location: Option<&'static str>,
        retry_after: Option<&'static str>,
        body: &'static str,
    ) -> Answer<'static> {
        Answer { location, retry_after, body: body.as_bytes() }
    }

    fn judged(status: u16, answer: &Answer) -> ApiError {
        status_error(status, "watch", answer, "jobs", "job-abc")
    }

    #[test]
    fn a_redirect_is_never_followed_and_names_where_it_led() {
        let moved = answer(Some("https://elsewhere/"), None, "");
        assert_eq!(judged(302, &moved), ApiError::Redirect { status: 302, location: "https://elsewhere/".into() });
        assert_eq!(
            judged(307, &answer(None, None, "")),
            ApiError::Redirect { status: 307, location: "nowhere".into() }
        );
    }

    #[test]
    fn each_status_proa_knows_has_its_error() {
        let plain = answer(None, None, "");
        assert_eq!(judged(401, &plain), ApiError::Unauthorized);
        assert_eq!(judged(403, &plain), ApiError::Forbidden { verb: "watch", namespace: "jobs".into() });
        assert_eq!(judged(404, &plain), ApiError::PodNotFound { namespace: "jobs".into(), pod: "job-abc".into() });
        assert_eq!(judged(410, &plain), ApiError::Gone);
    }

    #[test]
    fn a_busy_server_says_when_to_come_back() {
        let busy = answer(None, Some(" 7 "), "");
        assert_eq!(
            judged(429, &busy),
            ApiError::Unavailable { status: 429, retry_after: Some(Duration::from_secs(7)) }
        );
        let garbled = answer(None, Some("soon"), "");
        assert_eq!(judged(503, &garbled), ApiError::Unavailable { status: 503, retry_after: None });
    }

    #[test]
    fn any_other_status_keeps_the_apis_message() {
        let status = answer(None, None, r#"{"kind":"Status","message":"the server rejected our request"}"#);
        let expected = ApiError::Status { status: 422, message: "the server rejected our request".into() };
        assert_eq!(judged(422, &status), expected);
        assert_eq!(
            judged(400, &answer(None, None, "<html>")),
            ApiError::Status { status: 400, message: String::new() }
        );
    }
}
