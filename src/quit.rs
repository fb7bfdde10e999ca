//! `--serve-quit HOST:PORT`, proa on the sidecar's side: a loopback HTTP endpoint where `POST /quitquitquit` asks
//! proa to stop the sidecar it runs, as Istio's and Linkerd's proxies serve their own. Each connection is served on
//! a thread of its own (at most `MAX_CLIENTS` at once; when they are all taken, the oldest client still silent
//! makes way for the new one), and must send its request head within `HEAD_TIMEOUT`, so slow or idle clients cannot
//! hold up the main container's request; each quit request is reported to the owner.
//! Other methods get 405, other paths 404. Decides nothing: the lifecycle does the stopping.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// The one path it serves, spelt as the meshes' proxies spell theirs.
pub const PATH: &str = "/quitquitquit";
/// A request head longer than this is refused: nothing in it is worth reading.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once (only the Pod's own containers can connect).
const MAX_CLIENTS: usize = 32;

/// Binds the endpoint. Done before the sidecar starts, so that a taken port fails proa (125) instead of leaving a
/// sidecar that nobody can stop.
pub fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address).map_err(|err| format!("cannot serve --serve-quit on {address}: {err}"))
}

/// Serves `listener` on a thread of its own: `quit` is called after each `POST /quitquitquit` was answered 200.
pub fn spawn(listener: TcpListener, quit: impl Fn() + Send + Sync + 'static) -> io::Result<()> {
    let address = listener.local_addr()?;
    let quit = Arc::new(quit);
    thread::Builder::new().name("quit".into()).spawn(move || {
        log::info!("serving POST http://{address}{PATH}");
        let mut clients = Clients::default();
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    // Out of descriptors, say: pause rather than spin on an error that persists.
                    debug!("quit endpoint: cannot accept: {err}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let Some(client) = clients.admit(stream) else {
                debug!("quit endpoint: {MAX_CLIENTS} clients already, each with a request: closing a connection");
                continue;
            };
            let quit = quit.clone();
            // The client holds its place until it is dropped: when its thread ends, or here with the closure if
            // the thread cannot start.
            let served = thread::Builder::new().name("quit-client".into()).spawn(move || serve(&client, &*quit));
            if let Err(err) = served {
                debug!("quit endpoint: cannot serve a connection: {err}");
            }
        }
    })?;
    Ok(())
}

/// One connection being served. It takes one of the `MAX_CLIENTS` places for as long as it exists.
struct Client {
    stream: TcpStream,
    /// Whether it has yet to send its request head: such a client may be made to give way.
    silent: AtomicBool,
}

/// The connections being served, oldest first, as the accept thread sees them: a client whose serving thread ended
/// (or never started) is gone from it, since nothing else holds it.
#[derive(Default)]
struct Clients {
    served: Vec<Weak<Client>>,
}

impl Clients {
    /// Takes in a new connection; `None` (and the connection closed) when every place is taken by a client that has
    /// sent its request. When every place is taken and some client is still silent, the oldest silent one is cut
    /// off to make way: 32 idle connections must not keep the main container's request out.
    fn admit(&mut self, stream: TcpStream) -> Option<Arc<Client>> {
        self.served.retain(|client| client.strong_count() > 0);
        if self.served.len() >= MAX_CLIENTS {
            let live = self.served.iter().filter_map(Weak::upgrade);
            let oldest_silent = live.into_iter().find(|client| client.silent.load(Ordering::SeqCst))?;
            debug!("quit endpoint: {MAX_CLIENTS} clients already: closing the oldest that has sent nothing");
            oldest_silent.silent.store(false, Ordering::SeqCst);
            let _ = oldest_silent.stream.shutdown(Shutdown::Both);
            self.served.retain(|client| !std::ptr::eq(client.as_ptr(), Arc::as_ptr(&oldest_silent)));
        }
        let client = Arc::new(Client { stream, silent: AtomicBool::new(true) });
        self.served.push(Arc::downgrade(&client));
        Some(client)
    }

    /// How many places are taken.
    #[cfg(test)]
    fn len(&mut self) -> usize {
        self.served.retain(|client| client.strong_count() > 0);
        self.served.len()
    }
}

/// Answers one connection's request; reports a quit once its answer was sent.
fn serve(client: &Client, quit: &dyn Fn()) {
    let mut stream = &client.stream;
    let head = read_head(stream);
    client.silent.store(false, Ordering::SeqCst);
    let answer = answer(head.as_deref());
    let sent = stream.write_all(answer.response.as_bytes()).and_then(|()| stream.flush());
    if let Err(err) = &sent {
        debug!("quit endpoint: cannot answer: {err}");
    }
    if answer.quit {
        quit();
    }
}

/// What the endpoint does with one request.
#[derive(Debug, PartialEq)]
struct Answer {
    response: String,
    quit: bool,
}

/// The answer to a request head (`None`: unreadable, too long or too slow).
fn answer(head: Option<&str>) -> Answer {
    let request_line = head.and_then(|head| head.lines().next()).unwrap_or_default();
    let mut words = request_line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next());
    let path = target.map(|target| target.split('?').next().unwrap_or_default());
    let (status, extra, quit) = match (method, path) {
        (_, None) => ("400 Bad Request", "", false),
        ("POST", Some(PATH)) => ("200 OK", "", true),
        (_, Some(PATH)) => ("405 Method Not Allowed", "Allow: POST\r\n", false),
        (_, Some(_)) => ("404 Not Found", "", false),
    };
    if quit {
        log::info!("{method} {PATH}: stopping the sidecar");
    } else {
        debug!("quit endpoint: {request_line:?} answered {status}");
    }
    let body = format!("{status}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    Answer { response, quit }
}

/// Reads a request head, up to the blank line that ends it (CRLF or bare LF), within `HEAD_TIMEOUT` in all.
fn read_head(mut stream: &TcpStream) -> Option<String> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // Blank lines before the request line are allowed (RFC 9112 2.2).
        let start = head.iter().position(|b| !b"\r\n".contains(b)).unwrap_or(head.len());
        let text = &head[start..];
        if text.windows(4).any(|w| w == b"\r\n\r\n") || text.windows(2).any(|w| w == b"\n\n") {
            return String::from_utf8(text.to_vec()).ok();
        }
        let left = deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: Option<&str>) -> (String, bool) {
        let answer = answer(head);
        (answer.response.lines().next().unwrap().to_string(), answer.quit)
    }

    #[test]
    fn only_a_post_to_quitquitquit_quits() {
        let request = |line: &str| format!("{line}\r\nHost: 127.0.0.1\r\n\r\n");
        assert_eq!(status(Some(&request("POST /quitquitquit HTTP/1.1"))), ("HTTP/1.1 200 OK".into(), true));
        assert!(status(Some(&request("POST /quitquitquit?now=1 HTTP/1.1"))).1);
        assert_eq!(
            status(Some(&request("GET /quitquitquit HTTP/1.1"))),
            ("HTTP/1.1 405 Method Not Allowed".into(), false)
        );
        assert_eq!(status(Some(&request("POST /quit HTTP/1.1"))), ("HTTP/1.1 404 Not Found".into(), false));
        assert_eq!(status(Some(&request("POST /quitquitquit/x HTTP/1.1"))).0, "HTTP/1.1 404 Not Found");
        assert_eq!(status(Some("garbage\r\n\r\n")), ("HTTP/1.1 400 Bad Request".into(), false));
        assert_eq!(status(None), ("HTTP/1.1 400 Bad Request".into(), false));
    }

    /// A connected pair on loopback: the client's end, and the server's end as `accept` gives it.
    fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    /// Every place taken, by clients that keep their connection open.
    fn fill(listener: &TcpListener, clients: &mut Clients) -> Vec<(TcpStream, Arc<Client>)> {
        let admit = |_| {
            let (peer, stream) = connection(listener);
            (peer, clients.admit(stream).unwrap())
        };
        (0..MAX_CLIENTS).map(admit).collect()
    }

    #[test]
    fn a_client_gives_its_place_back_however_it_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Clients::default();
        let mut held = fill(&listener, &mut clients);
        assert_eq!(clients.len(), MAX_CLIENTS);
        // A thread that never started drops its client with its closure, as one that ended does: 40 such failures
        // leave every place free again.
        held.clear();
        assert_eq!(clients.len(), 0);
        for _ in 0..40 {
            let (_peer, stream) = connection(&listener);
            drop(clients.admit(stream).expect("a free place"));
        }
        assert_eq!(clients.len(), 0);
    }

    #[test]
    fn the_oldest_silent_client_makes_way_and_busy_ones_never_do() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Clients::default();
        let mut held = fill(&listener, &mut clients);
        // The first client has sent its request: the second, silent, is the one cut off.
        held[0].1.silent.store(false, Ordering::SeqCst);
        let (_peer, stream) = connection(&listener);
        let newest = clients.admit(stream).expect("a silent client makes way");
        let mut buf = [0u8; 1];
        assert_eq!(held[1].0.read(&mut buf).unwrap(), 0, "the oldest silent client's connection is closed");
        assert!(!held[1].1.silent.load(Ordering::SeqCst));
        held[2].0.set_nonblocking(true).unwrap();
        assert_eq!(held[2].0.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock, "the others stay");
        drop(held.remove(1));
        assert_eq!(clients.len(), MAX_CLIENTS);
        // When every client has sent its request, a new connection is closed instead.
        for (_, client) in &held {
            client.silent.store(false, Ordering::SeqCst);
        }
        newest.silent.store(false, Ordering::SeqCst);
        let (_peer, stream) = connection(&listener);
        assert!(clients.admit(stream).is_none());
        assert_eq!(clients.len(), MAX_CLIENTS);
    }

    #[test]
    fn a_405_says_what_is_allowed_and_every_answer_closes() {
        let answer = answer(Some("PUT /quitquitquit HTTP/1.1\r\n\r\n"));
        assert!(answer.response.contains("\r\nAllow: POST\r\n"), "{}", answer.response);
        assert!(answer.response.contains("\r\nConnection: close\r\n"), "{}", answer.response);
        assert!(answer.response.ends_with("\r\n\r\n405 Method Not Allowed\n"), "{}", answer.response);
    }
}
