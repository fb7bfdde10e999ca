//! `proa --install DIR`: copies proa's own executable to `DIR/proa`, so that an init container running the
//! FROM-scratch image (no shell, no `cp`) can put proa into an emptyDir that an unmodified image's container then
//! runs it from. The copy is atomic: written to a temporary file in DIR, made 0755 whatever the umask, synced, and
//! renamed over `DIR/proa` (a copy that is running keeps its old file).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where Linux shows a process its own executable.
const OWN_EXE: &str = "/proc/self/exe";

/// What was installed.
#[derive(Debug)]
pub struct Installed {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Copies the running executable to `dir/proa`. The error says what went wrong and what to do about it.
pub fn install(dir: &Path) -> Result<Installed, String> {
    let target = dir.join("proa");
    let fail = |what: &str, err: io::Error| format!("cannot install proa into {}: {what}: {err}", dir.display());
    if !dir.is_dir() {
        let dir = dir.display();
        return Err(format!("cannot install proa into {dir}: no such directory; mount a volume there (an emptyDir)"));
    }
    let mut source = own_executable().map_err(|err| fail("cannot read proa's own executable", err))?;
    let temp = dir.join(format!(".proa.{}.tmp", std::process::id()));
    let copied = copy(&mut source, &temp).and_then(|bytes| {
        fs::rename(&temp, &target)?;
        // The rename itself is durable once the directory is.
        File::open(dir)?.sync_all()?;
        Ok(bytes)
    });
    match copied {
        Ok(bytes) => Ok(Installed { path: target, bytes }),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(fail("cannot write", err))
        }
    }
}

/// The running executable: `/proc/self/exe`, else argv[0] when it is a path (a root without /proc, as under
/// chroot; a container always has /proc).
fn own_executable() -> io::Result<File> {
    File::open(OWN_EXE).or_else(|err| {
        let argv0 = std::env::args_os().next().filter(|arg| arg.as_encoded_bytes().contains(&b'/'));
        argv0.map_or(Err(err), File::open)
    })
}

/// Writes `source` to a new file at `temp`, mode 0755, synced; returns the bytes written.
fn copy(source: &mut File, temp: &Path) -> io::Result<u64> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o755).open(temp)?;
    let bytes = io::copy(source, &mut file)?;
    // `mode` above is filtered by the umask; the copy must be executable by any user the main container runs as.
    file.set_permissions(Permissions::from_mode(0o755))?;
    file.sync_all()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("proa-install-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn copies_the_running_executable_executable_by_anyone() {
        let dir = temp_dir("copy");
        fs::write(dir.join("proa"), "an older copy").unwrap();
        let installed = install(&dir).unwrap();
        assert_eq!(installed.path, dir.join("proa"));
        let copy = fs::read(&installed.path).unwrap();
        assert_eq!(copy, fs::read(OWN_EXE).unwrap());
        assert_eq!(installed.bytes, copy.len() as u64);
        assert_eq!(fs::metadata(&installed.path).unwrap().permissions().mode() & 0o777, 0o755);
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["proa"], "no temporary file left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_says_to_mount_one() {
        let err = install(Path::new("/no/such/dir")).unwrap_err();
        assert!(err.starts_with("cannot install proa into /no/such/dir: no such directory"), "{err}");
        assert!(err.ends_with("mount a volume there (an emptyDir)"), "{err}");
    }
}
