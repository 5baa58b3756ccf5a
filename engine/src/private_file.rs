//! Files that hold keys or grant rights (keyrings, API key files), read and written safely.
//!
//! Reading opens the file once, without following a symbolic link (and without blocking on a
//! FIFO), and checks the open file itself (a regular file, owned by this process's user or by
//! root, with the permissions asked for), so what is checked is what is read. Writing goes through a new temporary file (created
//! exclusively, never through a link, mode 0600) that is synced, renamed over the target, and
//! whose folder is synced, so a reader sees the old file or the new one, even after a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Who besides the owner may have access to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nobody: no group or other permission bit (files holding keys).
    OwnerOnly,
    /// Others may read, but not write (files granting rights, like the API key file).
    NoOtherWriters,
}

/// A file that cannot be used. Messages name the file and the fix, never its content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A symbolic link, a folder or a device.
    #[error("{path} is not a regular file (a symbolic link is not followed: name the file itself)")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Another user (not root) owns the file: that user could change it.
    #[error(
        "{path} belongs to uid {owner}, not to this service's uid {user} (or root); `chown` it"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective user.
        user: u32,
    },
    /// Group or others have access they must not have.
    #[error("{path} is open to group or others (mode {mode:o}); run `chmod {fix} {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to set.
        fix: &'static str,
    },
}

/// The content of `path`, checked on the open file as `access` says. The text is zeroized when
/// dropped.
pub fn read(path: &Path, access: Access) -> Result<Zeroizing<String>, FileError> {
    let io_error = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, no_follow() | non_blocking());
    let mut file = options.open(path).map_err(|error| {
        if is_link_refusal(&error) {
            FileError::NotAFile {
                path: path.to_owned(),
            }
        } else {
            io_error(error)
        }
    })?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_owned(),
        });
    }
    #[cfg(unix)]
    check_unix(path, &metadata, access)?;
    // Sized once: a string that grew while read would leave unwiped copies of the secret.
    let size = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
    let mut text = Zeroizing::new(String::with_capacity(size.saturating_add(1)));
    file.read_to_string(&mut text).map_err(io_error)?;
    Ok(text)
}

/// Replaces `path` with `contents`, readable by the owner only (mode 0600), atomically.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{}.tmp", std::process::id(), unique()));
    let tmp = folder.join(tmp_name);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(no_follow());
    }
    // Only a temporary file this call created is ever removed.
    let mut file = options.open(&tmp)?;
    let renamed = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return renamed;
    }
    // The rename itself is durable only once the folder is.
    File::open(&folder)?.sync_all()
}

#[cfg(unix)]
fn check_unix(path: &Path, metadata: &std::fs::Metadata, access: Access) -> Result<(), FileError> {
    use std::os::unix::fs::MetadataExt;
    let user = rustix::process::geteuid().as_raw();
    if metadata.uid() != user && metadata.uid() != 0 {
        return Err(FileError::Owner {
            path: path.to_owned(),
            owner: metadata.uid(),
            user,
        });
    }
    let mode = metadata.mode() & 0o777;
    let (forbidden, fix) = match access {
        Access::OwnerOnly => (0o077, "600"),
        Access::NoOtherWriters => (0o022, "go-w"),
    };
    if mode & forbidden != 0 {
        return Err(FileError::Permissions {
            path: path.to_owned(),
            mode,
            fix,
        });
    }
    Ok(())
}

#[cfg(unix)]
fn no_follow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Opening a FIFO must not wait for a writer; on a regular file this changes nothing.
#[cfg(unix)]
fn non_blocking() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// `open` refuses a symbolic link under `O_NOFOLLOW` with `ELOOP`.
fn is_link_refusal(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// A number that differs between calls in one process, for temporary file names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn written_files_are_private_and_replace_the_old_one_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.toml");
        write(&path, b"first").expect("write");
        write(&path, b"second").expect("write again");
        assert_eq!(*read(&path, Access::OwnerOnly).expect("read"), "second");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file stays behind");
    }

    /// Found in review: files were checked by path, then read by path, following links.
    #[test]
    fn links_folders_and_loose_permissions_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.toml");
        write(&real, b"secret").expect("write");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(matches!(
            read(&link, Access::OwnerOnly),
            Err(FileError::NotAFile { .. })
        ));
        assert!(matches!(
            read(dir.path(), Access::OwnerOnly),
            Err(FileError::NotAFile { .. })
        ));
        chmod(&real, 0o640);
        assert!(matches!(
            read(&real, Access::OwnerOnly),
            Err(FileError::Permissions { mode: 0o640, .. })
        ));
        assert!(read(&real, Access::NoOtherWriters).is_ok());
        chmod(&real, 0o620);
        let message = read(&real, Access::NoOtherWriters)
            .expect_err("group may write")
            .to_string();
        assert!(message.contains("chmod go-w"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    /// Found in review: a FIFO at the path would hang the start (or a reload) for ever.
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("keyring.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        chmod(&fifo, 0o600);
        assert!(matches!(
            read(&fifo, Access::OwnerOnly),
            Err(FileError::NotAFile { .. })
        ));
    }
}
