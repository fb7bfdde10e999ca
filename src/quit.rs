//! `--serve-quit HOST:PORT`, proa on the sidecar's side: a loopback HTTP endpoint where `POST /quitquitquit` asks
//! proa to stop the sidecar it runs, as Istio's and Linkerd's proxies serve their own. One thread answers one
//! connection at a time (each has a short bound to send its request) and reports each quit request to the owner.
//! Other methods get 405, other paths 404. Decides nothing: the lifecycle does the stopping.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// The one path it serves, spelt as the meshes' proxies spell theirs.
pub const PATH: &str = "/quitquitquit";
/// A request head longer than this is refused: nothing in it is worth reading.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head (the endpoint serves one connection at a time).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the endpoint. Done before the sidecar starts, so that a taken port fails proa (125) instead of leaving a
/// sidecar that nobody can stop.
pub fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address).map_err(|err| format!("cannot serve --serve-quit on {address}: {err}"))
}

/// Serves `listener` on a thread of its own: `quit` is called after each `POST /quitquitquit` was answered 200, and
/// the thread ends when it returns false (nobody listens any more).
pub fn spawn(listener: TcpListener, quit: impl Fn() -> bool + Send + 'static) -> io::Result<()> {
    let address = listener.local_addr()?;
    thread::Builder::new().name("quit".into()).spawn(move || {
        log::info!("serving POST http://{address}{PATH}");
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    // Out of descriptors, say: pause rather than spin on an error that persists.
                    log::debug!("quit endpoint: cannot accept: {err}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let answer = answer(read_head(&mut stream).as_deref());
            let sent = stream.write_all(answer.response.as_bytes()).and_then(|()| stream.flush());
            if let Err(err) = &sent {
                log::debug!("quit endpoint: cannot answer: {err}");
            }
            if answer.quit && !quit() {
                return;
            }
        }
    })?;
    Ok(())
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
        log::debug!("quit endpoint: {request_line:?} answered {status}");
    }
    let body = format!("{status}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    Answer { response, quit }
}

/// Reads a request head, up to the blank line that ends it.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    String::from_utf8(head).ok()
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
