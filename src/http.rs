//! The HTTP client every part of proa shares (the API client, shutdown actions, probes): ureq's settings, an agent
//! with only the parts proa uses, a resolver that needs no thread for an IP address, and what a transport failure
//! means. Runs on the calling thread; decides nothing about what a status means (each caller does).

use std::io;

use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

/// The settings every HTTP client of proa's shares: a status is an answer, not an error; proa's User-Agent; no
/// proxy; no redirects; and a TLS stack that trusts nothing (the API client replaces it with the cluster CA). A
/// proxy: HTTP_PROXY, HTTPS_PROXY and ALL_PROXY in the container are meant for the program; the API server is
/// inside the cluster, and shutdown and readiness URLs are on loopback, so a proxy could only lose them. A
/// redirect could lead anywhere; with no TLS stack an https one would even abort proa.
pub fn agent_config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let no_roots = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(crate::tls::provider())
        .root_certs(RootCerts::new_with_certs(&[]))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("proa/", env!("CARGO_PKG_VERSION")))
        .proxy(None)
        .max_redirects(0)
        .input_buffer_size(BUFFER_BYTES)
        .output_buffer_size(BUFFER_BYTES)
        .tls_config(no_roots)
}

/// The size of each of a connection's two buffers, in and out. ureq's default is 128 KiB each, allocated and zeroed
/// for every connection, at both the TCP and the TLS layer of an https one: 512 KiB per API connection and 256 KiB
/// per shutdown request, 1.25 MiB of fresh memory per lifecycle, the largest CPU cost of proa's start-up and
/// shutdown after the TLS handshakes when hundreds of Jobs start together (`make bench`). A response's head must
/// fit in one, and a request's head (a service account token is 1–2 kB) in the other: an API server's and a
/// sidecar's heads are well under a kilobyte. Bodies stream through them: a large Pod only takes more reads.
const BUFFER_BYTES: usize = 16 * 1024;

/// An agent from `config` with only what proa uses: TCP, then TLS for an https URL (no proxy connector: the
/// settings refuse proxies anyway), and `Resolver`. ureq's `unversioned` parts do not follow semver; Cargo.lock
/// pins the version.
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    use ureq::unversioned::transport::{Connector, RustlsConnector, TcpConnector};
    let connector = ().chain(TcpConnector::default()).chain(RustlsConnector::default());
    ureq::Agent::with_parts(config, connector, Resolver)
}

/// Resolves an IP address (`KUBERNETES_SERVICE_HOST` always is one; shutdown URLs mostly) at once, on the calling
/// thread; a name through ureq's resolver, which starts a thread to bound the lookup.
#[derive(Debug)]
struct Resolver;

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().map(|host| host.trim_start_matches('[').trim_end_matches(']'));
        let port = uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        match (host.and_then(|host| host.parse::<std::net::IpAddr>().ok()), port) {
            (Some(ip), Some(port)) => {
                let mut addresses = self.empty();
                addresses.push(std::net::SocketAddr::new(ip, port));
                Ok(addresses)
            }
            _ => ureq::unversioned::resolver::DefaultResolver::default().resolve(uri, config, timeout),
        }
    }
}

/// What a failed request means, before any answer: a certificate rustls refused (fatal for the API), a request
/// that cannot be made, or anything else on the wire (worth retrying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// rustls refused the server's certificate: why.
    Untrusted(String),
    /// The request itself is malformed (a bad URI, a header ureq refuses).
    Request(String),
    /// No connection could be made, or it was cut before the answer ended: refused, reset, closed.
    Cut(String),
    /// Anything else: timed out, a name that does not resolve.
    Failed(String),
}

/// Sorts a ureq error into what it means for the caller.
pub fn transport_error(err: ureq::Error) -> TransportError {
    let untrusted = match &err {
        ureq::Error::Rustls(rustls::Error::InvalidCertificate(why)) => Some(why.to_string()),
        ureq::Error::Io(io) => {
            io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).and_then(|tls| match tls {
                rustls::Error::InvalidCertificate(why) => Some(why.to_string()),
                _ => None,
            })
        }
        _ => None,
    };
    match (untrusted, err) {
        (Some(why), _) => TransportError::Untrusted(why),
        (None, ureq::Error::BadUri(why)) => TransportError::Request(why),
        (None, ureq::Error::Http(why)) => TransportError::Request(why.to_string()),
        (None, err @ ureq::Error::Io(_)) if is_cut(&err) => TransportError::Cut(io_text(&err)),
        (None, err) => TransportError::Failed(io_text(&err)),
    }
}

/// Whether a connection was refused, or cut before its answer ended (what a stopped proxy on the way looks like).
fn is_cut(err: &ureq::Error) -> bool {
    let ureq::Error::Io(io) = err else { return false };
    matches!(
        io.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    )
}

/// A ureq error in words: "connection refused" for the commonest, which the io error says less plainly.
fn io_text(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => "connection refused".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_untrusted_even_inside_an_io_error() {
        let expired = || rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(matches!(transport_error(ureq::Error::Rustls(expired())), TransportError::Untrusted(_)));
        let wrapped = ureq::Error::Io(io::Error::other(expired()));
        assert!(matches!(transport_error(wrapped), TransportError::Untrusted(_)));
    }

    #[test]
    fn a_bad_uri_is_a_request_error() {
        assert_eq!(transport_error(ureq::Error::BadUri("no host".into())), TransportError::Request("no host".into()));
    }

    #[test]
    fn a_refused_connection_says_so_plainly() {
        let refused = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(transport_error(refused), TransportError::Cut("connection refused".into()));
        let reset = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(transport_error(reset), TransportError::Cut(_)), "a reset is a cut too");
        let timed_out = ureq::Error::Io(io::Error::from(io::ErrorKind::TimedOut));
        assert!(matches!(transport_error(timed_out), TransportError::Failed(_)), "a timeout is not");
        let other_tls = ureq::Error::Rustls(rustls::Error::DecryptError);
        assert!(matches!(transport_error(other_tls), TransportError::Failed(_)), "only a refused certificate is fatal");
    }
}
