//! A TCP port that is taken but not listening yet: connections to it are refused (RST) until the test calls
//! [`ClosedPort::listen`]. Binding without listening keeps the port from anyone else, so tests need no free-port
//! guess that another process could race.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A socket bound to 127.0.0.1:PORT that does not listen.
pub struct ClosedPort {
    fd: OwnedFd,
    port: u16,
}

impl ClosedPort {
    pub fn reserve() -> ClosedPort {
        // SAFETY: socket(2) takes plain integers; a non-negative result is a new descriptor we own.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `raw` is a valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
            sin_zero: [0; 8],
        };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes for both calls.
        let bound = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        // SAFETY: as above; getsockname writes at most `len` bytes into `addr`.
        let named = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
        assert_eq!(named, 0, "getsockname: {}", std::io::Error::last_os_error());
        ClosedPort { fd, port: u16::from_be(addr.sin_port) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts listening: from now on connections are accepted (into the backlog; nobody needs to call accept).
    pub fn listen(self) -> TcpListener {
        // SAFETY: listen(2) on a descriptor we own.
        let listening = unsafe { libc::listen(self.fd.as_raw_fd(), 128) };
        assert_eq!(listening, 0, "listen: {}", std::io::Error::last_os_error());
        TcpListener::from(self.fd)
    }
}
