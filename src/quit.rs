//! `--serve-quit HOST:PORT`, proa on the sidecar's side: a loopback HTTP endpoint where `POST /quitquitquit` asks
//! proa to stop the sidecar it runs, as Istio's and Linkerd's proxies serve their own. Each connection is served on
//! a thread of its own (at most `MAX_CLIENTS` at once), and must send its request head within `HEAD_TIMEOUT`, so a
//! slow or idle client cannot hold up the main container's request; each quit request is reported to the owner.
//! Other methods get 405, other paths 404. Decides nothing: the lifecycle does the stopping.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The one path it serves, spelt as the meshes' proxies spell theirs.
pub const PATH: &str = "/quitquitquit";
/// A request head longer than this is refused: nothing in it is worth reading.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed unanswered (only the Pod's own containers can connect).
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
    let clients = Arc::new(AtomicUsize::new(0));
    thread::Builder::new().name("quit".into()).spawn(move || {
        log::info!("serving POST http://{address}{PATH}");
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
            if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                clients.fetch_sub(1, Ordering::SeqCst);
                debug!("quit endpoint: {MAX_CLIENTS} clients already: closing a connection");
                continue;
            }
            let (quit, clients) = (quit.clone(), clients.clone());
            let served = thread::Builder::new().name("quit-client".into()).spawn(move || {
                serve(stream, &*quit);
                clients.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(err) = served {
                debug!("quit endpoint: cannot serve a connection: {err}");
            }
        }
    })?;
    Ok(())
}

/// Answers one connection's request; reports a quit once its answer was sent.
fn serve(mut stream: TcpStream, quit: &dyn Fn()) {
    let answer = answer(read_head(&mut stream).as_deref());
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
fn read_head(stream: &mut TcpStream) -> Option<String> {
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

    #[test]
    fn a_405_says_what_is_allowed_and_every_answer_closes() {
        let answer = answer(Some("PUT /quitquitquit HTTP/1.1\r\n\r\n"));
        assert!(answer.response.contains("\r\nAllow: POST\r\n"), "{}", answer.response);
        assert!(answer.response.contains("\r\nConnection: close\r\n"), "{}", answer.response);
        assert!(answer.response.ends_with("\r\n\r\n405 Method Not Allowed\n"), "{}", answer.response);
    }
}
