//! In-cluster configuration (DESIGN.md "In-cluster configuration"): API server address, service-account files,
//! namespace and Pod name → `Cluster`, and the bearer token with its re-read rules.
//! Runs on the main thread at start (discovery) and on the watch threads (token). Never logs the token.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default for `--token-refresh`: bound service account tokens rotate, and the kubelet refreshes the file early.
pub const DEFAULT_TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// Where the kubelet mounts the service account's token, CA and namespace.
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Everything proa needs to talk to the API server about its own Pod.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `https://host:port`, an IPv6 host in brackets.
    pub api_url: String,
    /// The PEM bundle from `ca.crt`: the only roots proa trusts.
    pub ca_pem: Vec<u8>,
    pub ca_path: PathBuf,
    pub token: Token,
    pub namespace: String,
    pub pod_name: String,
    /// Where the namespace came from (`POD_NAMESPACE` or the file's path), for `proa --check`.
    pub namespace_from: String,
    /// Where the Pod name came from (`POD_NAME` or the hostname), for `proa --check`.
    pub pod_name_from: String,
}

/// The configuration is unusable. Exit code 125.
#[derive(Debug)]
pub enum ConfigError {
    /// A required environment variable is missing: proa is not inside a Pod, or the test forgot it.
    MissingEnv(&'static str),
    /// A service-account file could not be read.
    Read { path: PathBuf, err: io::Error },
    /// A service-account file is empty.
    Empty(PathBuf),
    /// Neither `POD_NAME` nor a hostname.
    NoPodName,
    /// A value that could never work (a port with a letter, a Pod name with a space): `source` names where it came
    /// from, `expected` what would be accepted.
    Invalid { source: String, value: String, expected: &'static str },
    /// The token file holds a byte no HTTP header may carry (a UTF-8 byte-order mark, an editor's stray character,
    /// a control character): every request would fail the same way. `at` counts from 1 after trimming; the
    /// token itself is never shown.
    BadToken { path: PathBuf, byte: u8, at: usize },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MissingEnv(var) => {
                write!(f, "{var} is not set: proa must run inside a Kubernetes Pod (the kubelet sets it)")
            }
            ConfigError::Read { path, err } => write!(
                f,
                "cannot read {}: {err} (mount the service account token, or set PROA_SERVICE_ACCOUNT_DIR)",
                path.display()
            ),
            ConfigError::Empty(path) => write!(
                f,
                "{} is empty: check the service account volume the kubelet mounts (or PROA_SERVICE_ACCOUNT_DIR)",
                path.display()
            ),
            ConfigError::NoPodName => {
                write!(f, "cannot tell the Pod's name: set POD_NAME from the Downward API (metadata.name)")
            }
            ConfigError::Invalid { source, value, expected } => write!(f, "invalid {source} {value:?}: {expected}"),
            ConfigError::BadToken { path, byte, at } => write!(
                f,
                "{} holds byte 0x{byte:02X} at position {at}, which no HTTP header may carry: write the token alone, in printable ASCII, as the kubelet does (no byte-order mark)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Finds the API server, service-account files, namespace and Pod name. `env` looks up a variable; `hostname`
/// is only called when `POD_NAME` is missing.
pub fn discover(
    env: impl Fn(&str) -> Option<String>,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<Cluster, ConfigError> {
    let env = |var: &str| env(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let host = env("KUBERNETES_SERVICE_HOST").ok_or(ConfigError::MissingEnv("KUBERNETES_SERVICE_HOST"))?;
    let port = env("KUBERNETES_SERVICE_PORT").ok_or(ConfigError::MissingEnv("KUBERNETES_SERVICE_PORT"))?;
    check("KUBERNETES_SERVICE_HOST", &host, is_host, HOST_EXPECTED)?;
    check("KUBERNETES_SERVICE_PORT", &port, is_port, PORT_EXPECTED)?;
    let dir = PathBuf::from(env("PROA_SERVICE_ACCOUNT_DIR").unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT_DIR.into()));

    let ca_path = dir.join("ca.crt");
    let ca_pem = std::fs::read(&ca_path).map_err(|err| ConfigError::Read { path: ca_path.clone(), err })?;
    let token = Token::load(dir.join("token"), Instant::now())?;
    let (namespace, namespace_from) = match env("POD_NAMESPACE") {
        Some(namespace) => (namespace, "POD_NAMESPACE".to_string()),
        None => {
            let path = dir.join("namespace");
            (read_trimmed(&path)?, path.display().to_string())
        }
    };
    check(&namespace_from, &namespace, is_dns_label, NAMESPACE_EXPECTED)?;
    let (pod_name, pod_name_from) = match env("POD_NAME") {
        Some(name) => (name, "POD_NAME".to_string()),
        // The hostname is the Pod's name up to the first dot, unless hostNetwork or spec.hostname say otherwise.
        None => hostname()
            .and_then(|h| h.split('.').next().map(str::to_string))
            .filter(|h| !h.is_empty())
            .map(|name| (name, "the hostname".to_string()))
            .ok_or(ConfigError::NoPodName)?,
    };
    check(&pod_name_from, &pod_name, is_dns_subdomain, POD_NAME_EXPECTED)?;
    Ok(Cluster {
        api_url: api_url(&host, &port),
        ca_pem,
        ca_path,
        token,
        namespace,
        pod_name,
        namespace_from,
        pod_name_from,
    })
}

const HOST_EXPECTED: &str = "use the API server's IP address or DNS name (the kubelet sets it)";
const PORT_EXPECTED: &str = "use a port number from 1 to 65535 (the kubelet sets it)";
const NAMESPACE_EXPECTED: &str =
    "use a namespace name (lowercase letters, digits and '-', at most 63); set POD_NAMESPACE from the Downward API";
const POD_NAME_EXPECTED: &str = "use a pod name (lowercase letters, digits, '-' and '.', at most 253); set POD_NAME from the Downward API (metadata.name)";

/// A value that fails `valid` is an `Invalid` error naming where it came from. Checked at start, so that a request
/// that could never be built (or would go to the wrong place) is a clear error, not a retry loop.
fn check(source: &str, value: &str, valid: fn(&str) -> bool, expected: &'static str) -> Result<(), ConfigError> {
    match valid(value) {
        true => Ok(()),
        false => Err(ConfigError::Invalid { source: source.to_string(), value: value.to_string(), expected }),
    }
}

/// An IP address (IPv6 bare or bracketed) or a DNS name.
fn is_host(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<std::net::IpAddr>().is_ok()
        || (host.len() <= 253
            && host.split('.').all(|label| !label.is_empty() && is_dns_label(&label.to_ascii_lowercase())))
}

fn is_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// An RFC 1123 label, as Kubernetes names namespaces: lowercase letters, digits and '-', starting and ending with
/// a letter or digit, at most 63 characters.
fn is_dns_label(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    name.len() <= 63
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An RFC 1123 subdomain, as Kubernetes names Pods: dot-separated labels, at most 253 characters.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// `https://host:port`, with an IPv6 literal in brackets.
pub fn api_url(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// The machine's hostname (std has no call for it).
#[allow(unsafe_code)] // gethostname(2) is the only way to ask; /proc may be missing in a scratch image.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; the kernel writes at most len bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

/// The bearer token, read from its file and re-read when older than `max_age` or after a 401.
/// `Debug` never shows the value.
#[derive(Clone)]
pub struct Token {
    path: PathBuf,
    value: String,
    read_at: Instant,
    /// `--token-refresh`: bound tokens rotate, and Jobs run for hours.
    pub max_age: Duration,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Token {
    pub fn load(path: PathBuf, now: Instant) -> Result<Token, ConfigError> {
        let value = read_token(&path)?;
        Ok(Token { path, value, read_at: now, max_age: DEFAULT_TOKEN_REFRESH })
    }

    /// The token to send now: re-read first when the cached copy is older than `max_age`. A failed re-read keeps
    /// the old value (the next 401 says more than a missing file would).
    pub fn current(&mut self, now: Instant) -> &str {
        if now.duration_since(self.read_at) >= self.max_age {
            if let Err(err) = self.reload(now) {
                log::warn!("{err}; using the token read before");
                self.read_at = now;
            }
        }
        &self.value
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again (after a 401: the token may have rotated).
    pub fn reload(&mut self, now: Instant) -> Result<(), ConfigError> {
        self.value = read_token(&self.path)?;
        self.read_at = now;
        Ok(())
    }
}

/// The token file's text, trimmed, if every byte can go in an `Authorization` header: printable ASCII (JWTs and
/// legacy tokens are base64 with dots). Checked here, so that a bad file is one error naming it (125) rather than
/// a request that fails, and is retried, forever.
fn read_token(path: &Path) -> Result<String, ConfigError> {
    let value = read_trimmed(path)?;
    match value.bytes().position(|b| !(b' '..=b'~').contains(&b)) {
        Some(i) => Err(ConfigError::BadToken { path: path.to_path_buf(), byte: value.as_bytes()[i], at: i + 1 }),
        None => Ok(value),
    }
}

fn read_trimmed(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read { path: path.to_path_buf(), err })?;
    let text = text.trim();
    match text.is_empty() {
        true => Err(ConfigError::Empty(path.to_path_buf())),
        false => Ok(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!("proa-cluster-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        fn write(&self, file: &str, text: &str) {
            std::fs::write(self.0.join(file), text).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |var| pairs.iter().find(|(k, _)| *k == var).map(|(_, v)| v.to_string())
    }

    #[test]
    fn api_url_brackets_ipv6() {
        assert_eq!(api_url("10.0.0.1", "443"), "https://10.0.0.1:443");
        assert_eq!(api_url("fd00::1", "443"), "https://[fd00::1]:443");
        assert_eq!(api_url("[fd00::1]", "443"), "https://[fd00::1]:443");
    }

    #[test]
    fn discovers_from_files_and_hostname() {
        let dir = TempDir::new("files");
        dir.write("token", "secret\n");
        dir.write("ca.crt", "PEM");
        dir.write("namespace", "jobs\n");
        let path = dir.0.to_str().unwrap();
        let vars = [
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("PROA_SERVICE_ACCOUNT_DIR", path),
        ];
        let cluster = discover(env(&vars), || Some("job-7x2kq.sub.example".into())).unwrap();
        assert_eq!(cluster.api_url, "https://10.0.0.1:443");
        assert_eq!(cluster.namespace, "jobs");
        assert_eq!(cluster.pod_name, "job-7x2kq");
        assert_eq!(cluster.pod_name_from, "the hostname");
        assert_eq!(cluster.namespace_from, format!("{path}/namespace"));
        assert_eq!(cluster.ca_pem, b"PEM");
        assert!(!format!("{cluster:?}").contains("secret"), "Debug must not show the token");
    }

    #[test]
    fn env_wins_over_files() {
        let dir = TempDir::new("env");
        dir.write("token", "t");
        dir.write("ca.crt", "PEM");
        let path = dir.0.to_str().unwrap();
        let vars = [
            ("KUBERNETES_SERVICE_HOST", "h"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
            ("PROA_SERVICE_ACCOUNT_DIR", path),
            ("POD_NAME", "p"),
            ("POD_NAMESPACE", "ns"),
        ];
        let cluster = discover(env(&vars), || panic!("hostname must not be asked")).unwrap();
        assert_eq!((cluster.pod_name.as_str(), cluster.namespace.as_str()), ("p", "ns"));
        assert_eq!((cluster.pod_name_from.as_str(), cluster.namespace_from.as_str()), ("POD_NAME", "POD_NAMESPACE"));
    }

    #[test]
    fn missing_pieces_say_what_to_fix() {
        let err = discover(env(&[]), || None).unwrap_err().to_string();
        assert_eq!(
            err,
            "KUBERNETES_SERVICE_HOST is not set: proa must run inside a Kubernetes Pod (the kubelet sets it)"
        );
        let dir = TempDir::new("missing");
        dir.write("ca.crt", "PEM");
        let path = dir.0.to_str().unwrap();
        let vars =
            [("KUBERNETES_SERVICE_HOST", "h"), ("KUBERNETES_SERVICE_PORT", "1"), ("PROA_SERVICE_ACCOUNT_DIR", path)];
        let err = discover(env(&vars), || None).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read {path}/token: ")), "{err}");
        dir.write("token", "t");
        dir.write("namespace", "ns");
        let err = discover(env(&vars), || None).unwrap_err().to_string();
        assert_eq!(err, "cannot tell the Pod's name: set POD_NAME from the Downward API (metadata.name)");
    }

    #[test]
    fn malformed_values_are_named_at_start() {
        let dir = TempDir::new("invalid");
        dir.write("token", "t");
        dir.write("ca.crt", "PEM");
        dir.write("namespace", "jobs");
        let path = dir.0.to_str().unwrap();
        let error = |extra: &[(&str, &str)]| {
            let mut vars = vec![
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                ("PROA_SERVICE_ACCOUNT_DIR", path),
                ("POD_NAME", "job-abc"),
            ];
            vars.extend_from_slice(extra);
            vars.reverse(); // the later pair wins in `env`
            discover(env(&vars), || None).err().map(|e| e.to_string())
        };
        assert_eq!(error(&[]), None);
        assert_eq!(error(&[("KUBERNETES_SERVICE_HOST", "fd00::1")]), None);
        assert_eq!(error(&[("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")]), None);
        assert_eq!(
            error(&[("KUBERNETES_SERVICE_PORT", "443x")]).unwrap(),
            r#"invalid KUBERNETES_SERVICE_PORT "443x": use a port number from 1 to 65535 (the kubelet sets it)"#
        );
        for port in ["0", "65536", "+443", "-1"] {
            assert!(error(&[("KUBERNETES_SERVICE_PORT", port)]).is_some(), "{port}");
        }
        assert!(
            error(&[("KUBERNETES_SERVICE_HOST", "api server")]).unwrap().starts_with("invalid KUBERNETES_SERVICE_HOST")
        );
        assert!(error(&[("KUBERNETES_SERVICE_HOST", "a/b")]).is_some());
        assert!(
            error(&[("POD_NAME", "job abc")]).unwrap().starts_with(r#"invalid POD_NAME "job abc": use a pod name"#)
        );
        assert!(error(&[("POD_NAME", "Job")]).is_some());
        assert!(error(&[("POD_NAME", &"a".repeat(254))]).is_some());
        assert!(error(&[("POD_NAMESPACE", "jobs/x")]).unwrap().starts_with(r#"invalid POD_NAMESPACE "jobs/x""#));
        dir.write("namespace", "Jobs");
        assert!(error(&[]).unwrap().starts_with(&format!("invalid {path}/namespace \"Jobs\"")));
    }

    #[test]
    fn a_token_with_a_byte_no_header_may_carry_names_the_file() {
        let dir = TempDir::new("bad-token");
        let path = dir.0.join("token");
        for (text, byte, at) in [("\u{feff}eyJ.x", 0xEF, 1), ("eyJ\u{e9}x", 0xC3, 4), ("ab\u{7}c", 0x07, 3)] {
            dir.write("token", text);
            let err = Token::load(path.clone(), Instant::now()).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "{} holds byte 0x{byte:02X} at position {at}, which no HTTP header may carry: write the token alone, in printable ASCII, as the kubelet does (no byte-order mark)",
                    path.display()
                )
            );
            assert!(!err.contains("eyJ"), "never the token: {err}");
        }
        dir.write("token", "\n eyJhbGciOi.J9-_x= \n");
        assert_eq!(Token::load(path, Instant::now()).unwrap().value, "eyJhbGciOi.J9-_x=");
    }

    #[test]
    fn token_is_reread_when_old_or_asked() {
        let dir = TempDir::new("token");
        dir.write("token", "one");
        let start = Instant::now();
        let mut token = Token::load(dir.0.join("token"), start).unwrap();
        dir.write("token", "two");
        assert_eq!(token.current(start + Duration::from_secs(59)), "one");
        assert_eq!(token.current(start + DEFAULT_TOKEN_REFRESH), "two");
        dir.write("token", "three");
        token.reload(start + DEFAULT_TOKEN_REFRESH).unwrap();
        assert_eq!(token.current(start + DEFAULT_TOKEN_REFRESH), "three");
    }
}
