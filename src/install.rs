//! `proa --install DIR`: copies proa's own executable to `DIR/proa`, so that an init container running the
//! FROM-scratch image (no shell, no `cp`) can put proa into an emptyDir that an unmodified image's container then
//! runs it from. The copy is atomic: written to a temporary file in DIR, made 0755 whatever the umask, synced, and
//! renamed over `DIR/proa` (a copy that is running keeps its old file).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("cannot install proa into {}: not a directory", dir.display())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let dir = dir.display();
            return Err(format!(
                "cannot install proa into {dir}: no such directory; mount a volume there (an emptyDir)"
            ));
        }
        Err(err) => return Err(fail("cannot reach it", err)),
    }
    let mut source = own_executable().map_err(|err| fail("cannot read proa's own executable", err))?;
    let (temp, mut file) = create_temporary(dir).map_err(|err| fail("cannot write", err))?;
    let copied = copy(&mut source, &mut file).and_then(|bytes| {
        fs::rename(&temp, &target)?;
        Ok(bytes)
    });
    match copied {
        Ok(bytes) => {
            // The rename is durable once the directory is; one that cannot be opened (write-only) keeps the copy.
            if let Err(err) = File::open(dir).and_then(|dir| dir.sync_all()) {
                debug!("cannot sync {}: {err}", dir.display());
            }
            Ok(Installed { path: target, bytes })
        }
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(fail("cannot write", err))
        }
    }
}

/// The running executable: `/proc/self/exe`; where /proc is not mounted (under chroot; a container always has
/// it), the path it was executed by (`AT_EXECFN`), if that is an ELF file.
#[allow(unsafe_code)] // getauxval(3): std has no way to ask
fn own_executable() -> io::Result<File> {
    File::open(OWN_EXE).or_else(|err| {
        // SAFETY: getauxval takes an integer; AT_EXECFN's value is a pointer to a NUL-terminated string the kernel
        // put on the stack at exec, which lives as long as the process.
        let path = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
        if path.is_null() {
            return Err(err);
        }
        // SAFETY: as above, a valid C string.
        let path = unsafe { std::ffi::CStr::from_ptr(path) };
        let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
        let mut file = File::open(path)?;
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic)?;
        if &magic != b"\x7fELF" {
            return Err(io::Error::other(format!(
                "{} is not an executable (and /proc is not mounted)",
                path.display()
            )));
        }
        file.seek(io::SeekFrom::Start(0))?;
        Ok(file)
    })
}

/// A new file in `dir` for the copy, mode 0755, with a name no other proa picks (an init container is always
/// PID 1, and a restarted one finds what the last one left); never one that exists already.
fn create_temporary(dir: &Path) -> io::Result<(PathBuf, File)> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let mut tries = 0;
    loop {
        let temp = dir.join(format!(".proa.{}.{nanos:09}.{tries}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).mode(0o755).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
            Err(err) => return Err(err),
        }
    }
}

/// Writes `source` to `file`, made mode 0755 and synced; returns the bytes written.
fn copy(source: &mut File, file: &mut File) -> io::Result<u64> {
    let bytes = io::copy(source, file)?;
    // `mode` at creation is filtered by the umask; the copy must be executable by any user the main container runs as.
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
        let err = install(Path::new(OWN_EXE)).unwrap_err();
        assert_eq!(err, "cannot install proa into /proc/self/exe: not a directory");
    }

    #[test]
    fn what_another_install_left_is_neither_in_the_way_nor_removed() {
        let dir = temp_dir("left");
        let left = dir.join(format!(".proa.{}.tmp", std::process::id()));
        fs::write(&left, "a copy cut short").unwrap();
        let (temp, _) = create_temporary(&dir).unwrap();
        assert_ne!(temp, left);
        install(&dir).unwrap();
        assert!(left.exists(), "not ours to remove");
        fs::remove_dir_all(&dir).unwrap();
    }
}
