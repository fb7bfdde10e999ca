//! What the test servers share: an accept loop that serves each connection on a thread of its own, and the record
//! of the connections still open, so that stopping a server closes every one of them (and a test can see how many
//! were open at once).

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

/// A listening test server's connections. Dropping it stops accepting (the port then refuses connections) and
/// closes every connection still open.
pub struct Accepting {
    addr: SocketAddr,
    open: Arc<Mutex<Open>>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Open {
    connections: HashMap<u64, TcpStream>,
    next: u64,
    peak: usize,
    stopped: bool,
}

fn lock(open: &Mutex<Open>) -> MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|e| e.into_inner())
}

impl Accepting {
    /// Accepts on `listener` until dropped; `serve(connection, id)` runs on a thread of its own per connection
    /// (ids count from 1 in accept order). `name` names the threads.
    pub fn start(
        listener: TcpListener,
        name: &str,
        serve: impl Fn(TcpStream, u64) + Clone + Send + 'static,
    ) -> Accepting {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let open = Arc::new(Mutex::new(Open::default()));
        let (loop_open, name) = (open.clone(), name.to_string());
        let accept = thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || accept_loop(listener, &name, &loop_open, serve))
            .expect("spawn an accept thread");
        Accepting { addr, open, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The largest number of connections that were open at the same time. A connection its client has closed
    /// does not count, although the thread serving it may not have noticed yet: under load that thread may not
    /// run for a while, and a real API server notices at once.
    pub fn peak(&self) -> usize {
        lock(&self.open).peak
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        let connections: Vec<TcpStream> = {
            let mut open = lock(&self.open);
            open.stopped = true;
            open.connections.drain().map(|(_, c)| c).collect()
        };
        for connection in connections {
            let _ = connection.shutdown(Shutdown::Both);
        }
        // Wake the accept loop, which sees the flag and returns, closing the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    name: &str,
    open: &Arc<Mutex<Open>>,
    serve: impl Fn(TcpStream, u64) + Clone + Send + 'static,
) {
    for connection in listener.incoming() {
        let connection = match connection {
            Ok(connection) => connection,
            Err(_) if lock(open).stopped => return,
            Err(e) => {
                eprintln!("{name}: accept failed: {e}");
                continue;
            }
        };
        let id = {
            let mut state = lock(open);
            if state.stopped {
                return;
            }
            let Ok(clone) = connection.try_clone() else {
                eprintln!("{name}: cannot clone a socket");
                continue;
            };
            state.next += 1;
            let id = state.next;
            state.connections.insert(id, clone);
            // Only past the peak is it worth asking the kernel which of them the clients still hold open.
            if state.connections.len() > state.peak {
                let open = state.connections.values().filter(|c| !client_closed(c)).count();
                state.peak = state.peak.max(open);
            }
            id
        };
        let (open, serve) = (open.clone(), serve.clone());
        let spawned = thread::Builder::new().name(format!("{name}-conn")).spawn(move || {
            serve(connection, id);
            lock(&open).connections.remove(&id);
        });
        if let Err(e) = spawned {
            eprintln!("{name}: cannot spawn a connection thread: {e}");
        }
    }
}

/// Whether the client has closed its side of the connection, as the kernel knows at once (CLOSE_WAIT and later).
fn client_closed(connection: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` bytes, which getsockopt does not exceed.
    let got = unsafe {
        libc::getsockopt(connection.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len)
    };
    got == 0 && info.tcpi_state != 1 // TCP_ESTABLISHED
}
