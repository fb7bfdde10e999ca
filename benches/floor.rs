//! The floor: the least a wrapper must do, on this machine, to start a program once a sidecar is ready. Same TLS
//! stack and trust as proa (rustls with ring, the service account's CA and token), but one watch request on one
//! connection, no JSON model (a byte search of each line for the waited container's `"ready":true`), no threads,
//! no logging, no retries, no bounds. Then it runs the program, sends the shutdown GET and exits with the program's
//! code. `make bench` runs it as a third candidate: the latencies of the two proas are shown against it.
//!
//! `compare floor -g SHUTDOWN_URL -- PROGRAM [ARGS...]`, in the same namespaces as the proas.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The container the bench's Pod makes ready, as the test API server writes its status (keys sorted).
const READY: &[u8] = br#""name":"envoy","ready":true"#;

pub fn run(args: &[String]) -> ! {
    let (shutdown_url, program) = match args {
        [g, url, dash, program @ ..] if g == "-g" && dash == "--" && !program.is_empty() => (url, program),
        _ => panic!("usage: compare floor -g URL -- PROGRAM [ARGS...]"),
    };
    watch_until_ready();
    let status = Command::new(&program[0]).args(&program[1..]).status().expect("spawn the program");
    shutdown(shutdown_url);
    std::process::exit(status.code().unwrap_or(1));
}

/// One watch of the Pod, read until a line shows the waited container ready.
fn watch_until_ready() {
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
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server = ServerName::try_from(host.clone()).expect("server name");
    let mut tls = rustls::ClientConnection::new(Arc::new(config), server).expect("TLS");
    let mut socket = TcpStream::connect(format!("{host}:{port}")).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut stream = BufReader::new(rustls::Stream::new(&mut tls, &mut socket));
    let request = format!(
        "GET /api/v1/namespaces/{namespace}/pods?fieldSelector=metadata.name%3D{pod}&watch=true HTTP/1.1\r\n\
         Host: {host}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
        token.trim()
    );
    stream.get_mut().write_all(request.as_bytes()).expect("send the watch");

    // The head, then a chunked body: each chunk's data is appended to the current line.
    let mut line = Vec::new();
    loop {
        line.clear();
        stream.read_until(b'\n', &mut line).expect("read the head");
        if line == b"\r\n" {
            break;
        }
    }
    let mut event = Vec::new();
    loop {
        line.clear();
        stream.read_until(b'\n', &mut line).expect("read a chunk size");
        let size = std::str::from_utf8(&line).ok().and_then(|l| usize::from_str_radix(l.trim(), 16).ok());
        let size = size.filter(|size| *size > 0).expect("the watch ended before the container was ready");
        let start = event.len();
        event.resize(start + size + 2, 0);
        stream.read_exact(&mut event[start..]).expect("read a chunk");
        event.truncate(start + size);
        while let Some(newline) = event.iter().position(|&b| b == b'\n') {
            if event[..newline].windows(READY.len()).any(|w| w == READY) {
                return;
            }
            event.drain(..=newline);
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
