//! A mesh Pod's network, emulated on loopback (issue 28): a network namespace of the test's own, where an iptables
//! nat rule sends every connection to the test API server's port to a passthrough proxy on 127.0.0.1:15001, as
//! Istio's `istio-init` (and Linkerd's `proxy-init`) send every outbound connection to the proxy. The proxy runs as
//! uid 1337, whose own connections the rule exempts (as the mesh exempts its proxy's), finds each connection's
//! original destination (`SO_ORIGINAL_DST`) and pipes it there; `POST /quitquitquit` on 127.0.0.1:15020 answers
//! 200 and stops it, and the rule stays: from then on proa's connections to the API server are refused.
//!
//! Everything runs in the calling thread's namespace: `in_network_namespace` gives a test a thread of its own in a
//! new one, so the test API server, the sidecars, the proxy and proa (spawned from that thread) all live there, and
//! everything ends with the namespace when the test's processes and sockets do.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::machine;

/// The uid the proxy runs as, whose connections the redirect leaves alone (Istio's `istio-proxy` user).
const PROXY_UID: u32 = 1337;
/// Where the redirect sends connections (Envoy's outbound listener).
pub const PROXY_PORT: u16 = 15001;
/// Where the proxy's `POST /quitquitquit` is served (pilot-agent's status port).
pub const QUIT_PORT: u16 = 15020;
/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h): the destination a redirected connection was made to.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// Runs `body` on a thread in a new network namespace with loopback up, and returns what it returns; `None` after a
/// loud skip where namespaces or iptables are missing (a failure with `CI` set: `make test` installs iptables).
pub fn in_network_namespace<T: Send + 'static>(test: &str, body: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let test = test.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = thread::spawn(move || {
        // SAFETY: unshare takes a flag; CLONE_NEWNET moves only this thread (not the process) into a new namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let why = format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            tx.send(Err(why)).expect("the test waits");
            return None;
        }
        let up = run("ip", &["link", "set", "lo", "up"]).and_then(|()| run("iptables", &["-t", "nat", "-L", "-n"]));
        let usable = up.is_ok();
        tx.send(up).expect("the test waits");
        usable.then(body)
    });
    let ready = rx.recv().expect("the namespace thread reports");
    if !machine::present(&test, "a network namespace with iptables", ready) {
        return None;
    }
    match runner.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a command in the calling thread's network namespace (a child inherits it).
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())),
        Err(err) => Err(format!("cannot run {program}: {err}")),
    }
}

/// The redirect of connections to one port, removed when dropped. Keep it in a binding declared after the server on
/// that port, so that it goes first: a test server wakes its accepting thread with a connection to itself, which
/// the redirect would take away.
pub struct Redirect {
    port: u16,
}

/// From now on, every connection to 127.0.0.1:`port` made by anyone but the proxy's uid goes to the proxy.
pub fn redirect_to_proxy(port: u16) -> Redirect {
    let redirect = Redirect { port };
    redirect.iptables("-A").expect("the redirect rule");
    redirect
}

impl Redirect {
    fn iptables(&self, verb: &str) -> Result<(), String> {
        let (port, uid, to) = (self.port.to_string(), PROXY_UID.to_string(), PROXY_PORT.to_string());
        let rule = format!("-t nat {verb} OUTPUT -p tcp -d 127.0.0.1 --dport {port} -m owner ! --uid-owner {uid}");
        let words: Vec<&str> = rule.split(' ').chain(["-j", "REDIRECT", "--to-ports", &to]).collect();
        run("iptables", &words)
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        _ = self.iptables("-D");
    }
}

/// The passthrough proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    /// When it started listening.
    pub listening_at: Instant,
}

#[derive(Default)]
struct Shared {
    stopped: AtomicBool,
    /// Every connection it pipes, both sides, to close when it stops.
    open: Mutex<Vec<TcpStream>>,
    quit_at: Mutex<Option<Instant>>,
    quit: Condvar,
}

impl Proxy {
    /// Starts listening on `PROXY_PORT` (redirected connections) and `QUIT_PORT` (its quit endpoint).
    pub fn start() -> Proxy {
        let outbound = TcpListener::bind(("127.0.0.1", PROXY_PORT)).expect("bind the proxy's outbound port");
        let admin = TcpListener::bind(("127.0.0.1", QUIT_PORT)).expect("bind the proxy's quit port");
        let listening_at = Instant::now();
        let shared = Arc::new(Shared::default());
        let forwarding = shared.clone();
        thread::spawn(move || forward(outbound, &forwarding));
        let quitting = shared.clone();
        thread::spawn(move || serve_quit(admin, &quitting));
        Proxy { shared, listening_at }
    }

    /// When `POST /quitquitquit` stopped it; panics if that did not happen within `bound`.
    pub fn wait_quit(&self, bound: Duration) -> Instant {
        let quit_at = self.shared.quit_at.lock().unwrap();
        let (quit_at, _) = self.shared.quit.wait_timeout_while(quit_at, bound, |at| at.is_none()).unwrap();
        quit_at.unwrap_or_else(|| panic!("the proxy got no POST /quitquitquit within {bound:?}"))
    }

    /// Whether it was stopped.
    pub fn quit(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

/// Accepts redirected connections and pipes each to its original destination, as uid `PROXY_UID`: this thread's
/// own credentials only (the raw syscall, unlike libc's wrapper, does not change the other threads'), so that the
/// sockets it opens are the proxy's and the redirect leaves them alone.
fn forward(outbound: TcpListener, shared: &Shared) {
    let uid = libc::c_long::from(PROXY_UID);
    // SAFETY: setresuid takes three integers; through syscall(2) it changes this thread's credentials alone.
    let changed = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
    assert_eq!(changed, 0, "setresuid: {}", std::io::Error::last_os_error());
    for client in outbound.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Some(destination) = original_destination(&client) else { continue };
        let Ok(upstream) = TcpStream::connect(destination) else { continue };
        let mut open = shared.open.lock().unwrap();
        open.extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
        let (client_in, upstream_in) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        thread::spawn(move || pipe(client_in, upstream));
        thread::spawn(move || pipe(upstream_in, client));
    }
}

/// Where a redirected connection was going.
fn original_destination(stream: &TcpStream) -> Option<SocketAddrV4> {
    // SAFETY: zeroed sockaddr_in is a valid value; getsockopt writes at most `len` bytes into it.
    let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let pointer = (&mut address as *mut libc::sockaddr_in).cast();
    // SAFETY: the fd is the stream's own, `pointer` and `len` describe `address`.
    let got = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_IP, SO_ORIGINAL_DST, pointer, &mut len) };
    let ip = Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
    (got == 0).then(|| SocketAddrV4::new(ip, u16::from_be(address.sin_port)))
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    _ = to.shutdown(std::net::Shutdown::Write);
}

/// Answers `POST /quitquitquit` with 200, then stops: every piped connection closed, the outbound port no longer
/// listening (the redirect then meets a refusal), as Envoy exiting leaves the Pod.
fn serve_quit(admin: TcpListener, shared: &Shared) {
    for conn in admin.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut head = [0u8; 4096];
        let n = conn.read(&mut head).unwrap_or(0);
        if !head[..n].starts_with(b"POST /quitquitquit ") {
            _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        }
        _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nOK\n");
        drop(conn);
        shared.stopped.store(true, Ordering::SeqCst);
        for stream in shared.open.lock().unwrap().drain(..) {
            _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Wake the accepting thread, which sees `stopped` and drops the outbound listener.
        _ = TcpStream::connect(("127.0.0.1", PROXY_PORT));
        *shared.quit_at.lock().unwrap() = Some(Instant::now());
        shared.quit.notify_all();
        return;
    }
}
