//! Test support for proa's integration tests: a Kubernetes API server look-alike that speaks HTTPS with its own CA
//! and the real watch protocol, and sidecars that are plain HTTP servers recording what they were sent.
//!
//! Shared by `tests/it/main.rs` (`mod support;`) and the demo binary
//! (`#[path = "../it/support/mod.rs"] mod support;`), so nothing here depends on `#[test]`.
#![allow(dead_code, unused_imports)] // each binary that includes this uses a different part

pub mod apiserver;
/// A real etcd and kube-apiserver (envtest's assets), shared by the tests of one run.
pub mod envtest;
pub mod machine;
/// A mesh Pod's network (a redirect to a passthrough proxy), in a network namespace of its own.
pub mod mesh;
pub mod nginx;
/// A real node (containerd, kubelet) beside the real API server, and the Pods the tests run on it.
pub mod node;
pub mod port;
/// Runs the proa binary under test, and `Marker` for what wrapped programs report.
pub mod proa;
pub mod procs;
pub mod real_pod;
pub mod server;
pub mod sidecar;
pub mod temp;
pub mod tls;

pub use apiserver::{ApiServer, Fault, Request, Route};
pub use sidecar::{Hit, Sidecar};
pub use tls::{TestPki, pki, untrusted_pki};

/// Minimal HTTP/1.1 request parsing shared by the test servers.
pub mod http {
    use std::io::{self, Read};

    /// Upper bound for a request line plus headers.
    pub const MAX_HEAD: usize = 64 * 1024;
    /// Upper bound for a request body (bodies are read and dropped).
    pub const MAX_BODY: usize = 1024 * 1024;

    /// A request line and its headers.
    #[derive(Clone, Debug)]
    pub struct Head {
        pub method: String,
        /// The request target as sent: path and optional `?query`.
        pub target: String,
        pub version: String,
        pub headers: Vec<(String, String)>,
    }

    impl Head {
        /// The first header of that name (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        /// Whether the client asked to close the connection after this request.
        pub fn wants_close(&self) -> bool {
            let tokens = |v: &str, t: &str| v.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
            match self.header("connection") {
                Some(v) if tokens(v, "close") => true,
                Some(v) if tokens(v, "keep-alive") => false,
                _ => !self.version.eq_ignore_ascii_case("HTTP/1.1"),
            }
        }

        /// The path, without the query.
        pub fn path(&self) -> &str {
            self.target.split('?').next().unwrap_or_default()
        }

        /// The raw query string (without `?`), or "".
        pub fn raw_query(&self) -> &str {
            self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
        }
    }

    fn invalid(msg: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg.into())
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// Reads more bytes from `r` into `buf`; `Ok(false)` at end of stream.
    fn fill(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one request head. `buf` holds bytes already read from the connection; what follows the head is left in
    /// it. `Ok(None)`: the peer closed the connection before sending a byte of a new request.
    pub fn read_head(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<Head>> {
        let end = loop {
            // Tolerate stray CRLFs between requests (RFC 9112, 2.2).
            while buf.starts_with(b"\r\n") {
                buf.drain(..2);
            }
            if let Some(i) = find(buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                return Err(invalid("request head too large"));
            }
            if !fill(r, buf)? {
                return if buf.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
            }
        };
        if end > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(format!("bad request line {request_line:?}")));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!("unsupported version {version:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid(format!("bad header line {line:?}")));
            };
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(Some(Head { method: method.to_string(), target: target.to_string(), version: version.to_string(), headers }))
    }

    /// Reads the body that follows `head` (Content-Length or chunked), bounded by [`MAX_BODY`].
    pub fn read_body(r: &mut impl Read, buf: &mut Vec<u8>, head: &Head) -> io::Result<Vec<u8>> {
        let chunked = head.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return read_chunked(r, buf);
        }
        let len = match head.header("content-length") {
            None => 0,
            Some(v) => v.parse::<usize>().map_err(|_| invalid(format!("bad Content-Length {v:?}")))?,
        };
        if len > MAX_BODY {
            return Err(invalid("request body too large"));
        }
        while buf.len() < len {
            if !fill(r, buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(buf.drain(..len).collect())
    }

    fn read_line(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<String> {
        loop {
            if let Some(i) = find(buf, b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..i]).into_owned();
                buf.drain(..i + 2);
                return Ok(line);
            }
            if buf.len() > MAX_HEAD {
                return Err(invalid("chunk line too long"));
            }
            if !fill(r, buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn read_chunked(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = read_line(r, buf)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !read_line(r, buf)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(invalid("request body too large"));
            }
            while buf.len() < size + 2 {
                if !fill(r, buf)? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend(buf.drain(..size));
            if buf.drain(..2).as_slice() != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }

    /// Percent-decodes a query component (`+` is a space, as in Go's `url.ParseQuery`).
    pub fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Splits and decodes a query string; the first value of a repeated key wins.
    pub fn parse_query(q: &str) -> std::collections::BTreeMap<String, String> {
        let mut map = std::collections::BTreeMap::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.entry(percent_decode(k)).or_insert_with(|| percent_decode(v));
        }
        map
    }
}
