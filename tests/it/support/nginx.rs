//! Debian's nginx as a real sidecar daemon: its config in a temporary directory (no root-owned defaults), in the
//! foreground (`daemon off;`), pid file and temporary files in that directory, its log on stderr, listening on
//! 127.0.0.1:PORT. The directory is removed when the `Nginx` is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::machine;

/// One nginx configuration, ready to start.
pub struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

static DIR_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Nginx {
    /// Writes the configuration; `None` (after a loud skip, or a failure on CI) if nginx is not installed.
    pub fn prepare(test: &str) -> Option<Nginx> {
        let binary = machine::nginx(test)?;
        let dir = std::env::temp_dir().join(format!(
            "proa-nginx-{}-{}",
            std::process::id(),
            DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create nginx dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let d = dir.display();
        let config = format!(
            "daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 \"nginx ok\\n\"; }}
    }}
}}
"
        );
        std::fs::write(dir.join("nginx.conf"), config).expect("write nginx.conf");
        Some(Nginx { binary, dir, port })
    }

    /// A shell command that starts nginx in the background and sends its log lines to the marker on
    /// `marker_port`: among them `start worker process N` once it serves, and `exit` when it is done.
    pub fn start_command(&self, marker_port: u16) -> String {
        format!(
            "{} -p {dir} -c {dir}/nginx.conf -e stderr 2>/dev/tcp/127.0.0.1/{marker_port}",
            self.binary.display(),
            dir = self.dir.display()
        )
    }

    /// One GET of `/`: the response as text.
    pub fn get(&self) -> String {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("nginx listens");
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).expect("nginx answers");
        response
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
