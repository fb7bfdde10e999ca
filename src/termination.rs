//! The termination message: when proa itself fails (exit 124 or 125), one line saying why goes to the file the
//! kubelet shows as the container's termination message (`kubectl describe pod`, `lastState.terminated.message`).
//! Called by `main` and the owner loop. Writes only to a regular file that exists (the kubelet creates it), so
//! outside Kubernetes proa leaves no stray file, and a pipe or a device can never block it; any failure to write is
//! skipped, since the log already has the reason.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Where the kubelet expects the message unless the container's `terminationMessagePath` says otherwise.
pub const DEFAULT_PATH: &str = "/dev/termination-log";

/// Replaces the file's content with `reason` as one line.
pub fn write(path: &Path, reason: &str) {
    // Non-blocking, so that opening a FIFO nobody reads fails at once instead of waiting for a reader.
    let written = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path).and_then(|mut file| {
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        file.set_len(0)?;
        file.write_all(one_line(reason).as_bytes())
    });
    match written {
        Ok(()) => debug!("wrote the termination message to {}", path.display()),
        Err(err) => debug!("not writing the termination message to {}: {err}", path.display()),
    }
}

/// `reason` on a single line ending with a newline: the kubelet shows the file as it is.
fn one_line(reason: &str) -> String {
    let mut line: String = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("proa-termination-{name}-{}", std::process::id()))
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\nb  c\n"), "a b c\n");
    }

    #[test]
    fn replaces_an_existing_file() {
        let path = temp_path("existing");
        std::fs::write(&path, "an older and longer message\n").unwrap();
        write(&path, "containers not ready after 1.0s: envoy");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "containers not ready after 1.0s: envoy\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    #[allow(unsafe_code)] // std has no mkfifo
    fn a_fifo_nobody_reads_never_blocks() {
        let path = temp_path("fifo");
        let _ = std::fs::remove_file(&path);
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let fifo = path.clone();
        std::thread::spawn(move || {
            write(&fifo, "would block");
            tx.send(())
        });
        let returned = rx.recv_timeout(std::time::Duration::from_secs(5));
        std::fs::remove_file(&path).unwrap();
        assert!(returned.is_ok(), "write blocked on the FIFO");
    }

    #[test]
    fn never_creates_a_file() {
        let path = temp_path("missing");
        let _ = std::fs::remove_file(&path);
        write(&path, "x");
        assert!(!path.exists());
    }
}
