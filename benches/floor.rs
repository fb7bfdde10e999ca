//! The floor: the least a wrapper must do, on this machine, to start a program once a sidecar is ready and to stop
//! the sidecar after it. Same TLS stack and trust as proa (rustls with ring, the service account's CA and token),
//! but no JSON model (a byte search of each watch line for what the bench's Pod shows), no threads, no logging, no
//! retries, no bounds:
//! 1. one watch of the Pod on one connection, read until a line shows the sidecar ready; or, when the Pod's first
//!    line names an `httpGet` readiness endpoint, a GET of that endpoint every 100 ms (proa's `--probe-interval`)
//!    until it answers 200–399, as the kubelet's probe would, without reading the watch meanwhile;
//! 2. the program, spawned; the watch's connection closed while it runs;
//! 3. the shutdown GET, then a second watch (a new connection, TLS resumed from the first) read until a line shows
//!    the sidecar terminated; then it exits with the program's code.
//!
//! `make bench` runs it as a third candidate: the other programs' figures are shown against it.
//!
//! `compare floor -g SHUTDOWN_URL -- PROGRAM [ARGS...]`, in the same namespaces as the proas.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, StreamOwned};

const ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// What the bench's Pod shows, as the test API server writes it (keys sorted): the sidecar ready, then terminated.
const READY: &[u8] = br#""name":"envoy","ready":true"#;
const TERMINATED: &[u8] = br#""name":"envoy","ready":false,"state":{"terminated""#;
/// The readiness endpoint, where the Pod has one: `"podIP":"IP"` and `"httpGet":{"path":"PATH","port":PORT`.
const POD_IP: &[u8] = br#""podIP":""#;
const HTTP_GET: &[u8] = br#""httpGet":{"path":""#;
const PORT: &[u8] = br#","port":"#;
/// proa's default `--probe-interval`.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

pub fn run(args: &[String]) -> ! {
    let (shutdown_url, program) = match args {
        [g, url, dash, program @ ..] if g == "-g" && dash == "--" && !program.is_empty() => (url, program),
        _ => panic!("usage: compare floor -g URL -- PROGRAM [ARGS...]"),
    };
    let api = Api::read();
    let mut watch = api.watch();
    let first = watch.next_line();
    if !contains(&first, READY) {
        match endpoint(&first) {
            Some((address, path)) => {
                while !probe(&address, &path) {
                    std::thread::sleep(PROBE_INTERVAL);
                }
            }
            None => while !contains(&watch.next_line(), READY) {},
        }
    }
    let mut child = Command::new(&program[0]).args(&program[1..]).spawn().expect("spawn the program");
    drop(watch);
    let status = child.wait().expect("wait for the program");
    shutdown(shutdown_url);
    let mut watch = api.watch();
    while !contains(&watch.next_line(), TERMINATED) {}
    std::process::exit(status.code().unwrap_or(1));
}

fn contains(line: &[u8], needle: &[u8]) -> bool {
    line.windows(needle.len()).any(|w| w == needle)
}

/// What follows `prefix` in `line`, up to the first byte `end` says ends it.
fn after<'a>(line: &'a [u8], prefix: &[u8], end: impl Fn(u8) -> bool) -> Option<&'a str> {
    let start = line.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let len = line[start..].iter().position(|&b| end(b))?;
    std::str::from_utf8(&line[start..start + len]).ok()
}

/// The readiness endpoint the Pod's line names: `IP:PORT` and the path.
fn endpoint(line: &[u8]) -> Option<(String, String)> {
    let ip = after(line, POD_IP, |b| b == b'"')?;
    let path = after(line, HTTP_GET, |b| b == b'"')?;
    let from_path = line.windows(HTTP_GET.len()).position(|w| w == HTTP_GET)?;
    let port = after(&line[from_path..], PORT, |b| !b.is_ascii_digit())?;
    Some((format!("{ip}:{port}"), path.to_string()))
}

/// One probe: a GET that answers 200–399 passes; a refused connection or any other answer does not.
fn probe(address: &str, path: &str) -> bool {
    let Ok(mut socket) = TcpStream::connect(address) else { return false };
    if write!(socket, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).is_ok()
        && std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|s| (200..400).contains(&s))
}

/// The in-cluster configuration and one TLS client configuration for both watches, so that the second resumes the
/// first's session.
struct Api {
    host: String,
    port: String,
    request: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Api {
    fn read() -> Api {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").expect("KUBERNETES_SERVICE_HOST");
        let port = std::env::var("KUBERNETES_SERVICE_PORT").expect("KUBERNETES_SERVICE_PORT");
        let read = |file: &str| std::fs::read(format!("{ACCOUNT}/{file}")).expect("the service account");
        let token = String::from_utf8(read("token")).expect("token");
        let namespace = String::from_utf8(read("namespace")).expect("namespace");
        let mut name = [0u8; 256];
        // SAFETY: gethostname(2) writes at most `name.len()` bytes into `name`.
        unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
        let pod = std::ffi::CStr::from_bytes_until_nul(&name).expect("hostname").to_str().expect("hostname");
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&read("ca.crt")).flatten());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let request = format!(
            "GET /api/v1/namespaces/{namespace}/pods?fieldSelector=metadata.name%3D{pod}&watch=true HTTP/1.1\r\n\
             Host: {host}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
            token.trim()
        );
        Api { host, port, request, tls: Arc::new(tls) }
    }

    /// A watch of the Pod from its current state, its head read.
    fn watch(&self) -> Watch {
        let server = ServerName::try_from(self.host.clone()).expect("server name");
        let tls = ClientConnection::new(self.tls.clone(), server).expect("TLS");
        let socket = TcpStream::connect(format!("{}:{}", self.host, self.port)).expect("connect");
        socket.set_nodelay(true).expect("nodelay");
        let mut stream = BufReader::new(StreamOwned::new(tls, socket));
        stream.get_mut().write_all(self.request.as_bytes()).expect("send the watch");
        let mut line = Vec::new();
        loop {
            line.clear();
            stream.read_until(b'\n', &mut line).expect("read the head");
            if line == b"\r\n" {
                break;
            }
        }
        Watch { stream, event: Vec::new() }
    }
}

/// A watch's chunked body: each chunk's data is appended to `event`, which is cut into lines.
struct Watch {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    event: Vec<u8>,
}

impl Watch {
    fn next_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(newline) = self.event.iter().position(|&b| b == b'\n') {
                return self.event.drain(..=newline).collect();
            }
            let mut line = Vec::new();
            self.stream.read_until(b'\n', &mut line).expect("read a chunk size");
            let size = std::str::from_utf8(&line).ok().and_then(|l| usize::from_str_radix(l.trim(), 16).ok());
            let size = size.filter(|size| *size > 0).expect("the watch ended before the line the floor waits for");
            let start = self.event.len();
            self.event.resize(start + size + 2, 0);
            self.stream.read_exact(&mut self.event[start..]).expect("read a chunk");
            self.event.truncate(start + size);
        }
    }
}

/// `GET` the shutdown URL (`http://HOST:PORT/PATH`) and read the answer.
fn shutdown(url: &str) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut socket = TcpStream::connect(address).expect("connect to the sidecar");
    write!(socket, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("send the GET");
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
}
