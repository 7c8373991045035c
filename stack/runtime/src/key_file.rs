//! The per-boot ISN and SYN-cookie key: read from a file or made there, or drawn from the
//! system's entropy. This is the I/O the sans-IO core leaves to the runtime.
//!
//! The key makes ISNs unpredictable and SYN cookies unforgeable, so the file is trusted only
//! when nobody else could have written it: its directory is ours with mode 0700, the file is
//! a regular file of ours with mode 0600 and exactly 16 bytes, opened without following a
//! symbolic link (and without blocking, so a FIFO cannot hang start-up). Anything else is a
//! [`KeyFileError`], never a silent fallback.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use synack_proto::tcp::IsnGenerator;

/// Bytes of the key.
pub const KEY_LEN: usize = 16;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The path has no file name or no parent directory.
    #[error("key file path {0:?} names no file in a directory")]
    BadPath(PathBuf),
    /// A system call on the directory or the file failed.
    #[error("ISN/SYN-cookie key file {path:?}: cannot {what}: {errno}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        errno: Errno,
    },
    /// The directory or the file is a symbolic link, a FIFO, a device, ... .
    #[error("ISN/SYN-cookie key file {path:?}: not a {expected} (symbolic links and special files are refused); remove it (it holds only a per-boot key, made again at start) or give --key-file PATH")]
    WrongType {
        /// The directory or file.
        path: PathBuf,
        /// "directory" or "regular file".
        expected: &'static str,
    },
    /// Someone else owns the directory or the file: they could choose the key.
    #[error("ISN/SYN-cookie key file {path:?}: owned by uid {owner}, not by this process's uid {ours}; remove it (it holds only a per-boot key, made again at start) or give --key-file PATH")]
    WrongOwner {
        /// The directory or file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        ours: u32,
    },
    /// The directory or the file is open to others.
    #[error("ISN/SYN-cookie key file {path:?}: mode {mode:04o}, want {want:04o}; remove it (it holds only a per-boot key, made again at start) or give --key-file PATH")]
    WrongMode {
        /// The directory or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What they must be.
        want: u32,
    },
    /// The file does not hold exactly one key.
    #[error("ISN/SYN-cookie key file {path:?}: {len} bytes or more, want exactly {KEY_LEN}; remove it (it holds only a per-boot key, made again at start) or give --key-file PATH")]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Bytes read (at most `KEY_LEN + 1`).
        len: usize,
    },
    /// No entropy for a new key.
    #[error("cannot draw a key from the system's entropy: {0}")]
    Entropy(Errno),
}

/// A generator with a key from the operating system's entropy (`getrandom`), falling back to
/// std's randomly seeded hasher keys if that fails: a key private to this process.
pub fn from_entropy() -> IsnGenerator {
    let bytes = entropy().unwrap_or_else(|_| {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        let mut bytes = [0u8; KEY_LEN];
        bytes[..8].copy_from_slice(&s.hash_one(1u8).to_le_bytes());
        bytes[8..].copy_from_slice(&s.hash_one(2u8).to_le_bytes());
        bytes
    });
    IsnGenerator::from_key_bytes(bytes)
}

/// A generator whose key lasts as long as the system's boot: read from `path`, or made
/// there (16 random bytes, mode 0600, in a directory of mode 0700 made if missing) by the
/// first process to ask. Processes that follow one another on the same 4-tuples then draw
/// ISNs and timestamp offsets from the same function, as Linux's per-boot secret makes its
/// sockets do; with the boot-relative clock ([`crate::clock::now`]) both keep increasing
/// across a restart, so a peer still in TIME_WAIT from the previous process accepts the new
/// SYNs (RFC 6191).
pub fn per_boot(path: &Path) -> Result<IsnGenerator, KeyFileError> {
    let (dir_path, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (if dir.as_os_str().is_empty() { Path::new(".") } else { dir }, name),
        _ => return Err(KeyFileError::BadPath(path.to_owned())),
    };
    let dir = open_dir(dir_path)?;
    match read_key(&dir, name, path) {
        Err(KeyFileError::Io { errno: Errno::NOENT, .. }) => {}
        other => return other.map(IsnGenerator::from_key_bytes),
    }
    // Written whole under a private name, then linked into place: a process that loses
    // the race reads the winner's key, never a partial one.
    let bytes = entropy().map_err(KeyFileError::Entropy)?;
    let mut tmp = name.to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let io = |what| move |errno| KeyFileError::Io { path: path.to_owned(), what, errno };
    let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
    let file = rustix::fs::openat(
        &dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io("create"))?;
    let written = rustix::fs::fchmod(&file, Mode::from_raw_mode(0o600))
        .and_then(|()| rustix::io::write(&file, &bytes))
        .map_err(io("write"));
    drop(file);
    let linked = written.and_then(|n| {
        if n != KEY_LEN {
            return Err(KeyFileError::WrongSize { path: path.to_owned(), len: n });
        }
        rustix::fs::linkat(&dir, &tmp, &dir, name, AtFlags::empty()).map_err(io("link"))
    });
    let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
    match linked {
        Ok(()) => Ok(IsnGenerator::from_key_bytes(bytes)),
        Err(KeyFileError::Io { errno: Errno::EXIST, .. }) => {
            read_key(&dir, name, path).map(IsnGenerator::from_key_bytes)
        }
        Err(e) => Err(e),
    }
}

/// Opens the key's directory, making it (mode 0700) if it is missing, and checks it is a
/// directory of ours, mode 0700, reached without a symbolic link at its last component.
fn open_dir(dir: &Path) -> Result<OwnedFd, KeyFileError> {
    let io = |what| move |errno| KeyFileError::Io { path: dir.to_owned(), what, errno };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(CWD, dir, flags, Mode::empty()) {
        Err(Errno::NOENT) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io("create the parent")(Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
            }
            match rustix::fs::mkdirat(CWD, dir, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io("create")(e)),
            }
            let fd = rustix::fs::openat(CWD, dir, flags, Mode::empty()).map_err(io("open"))?;
            // The umask may have taken bits off; a directory we just made gets exactly 0700
            // (one made by someone else is checked below like any other).
            if rustix::fs::fstat(&fd).is_ok_and(|st| st.st_uid == rustix::process::geteuid().as_raw()) {
                let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700));
            }
            fd
        }
        Err(Errno::NOTDIR | Errno::LOOP) => {
            return Err(KeyFileError::WrongType { path: dir.to_owned(), expected: "directory" })
        }
        Err(e) => return Err(io("open")(e)),
        Ok(fd) => fd,
    };
    check(&fd, dir, FileType::Directory, 0o700)?;
    Ok(fd)
}

/// Reads the key named `name` in `dir`: a regular file of ours, mode 0600, exactly 16 bytes.
fn read_key(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<[u8; KEY_LEN], KeyFileError> {
    let io = |what| move |errno| KeyFileError::Io { path: path.to_owned(), what, errno };
    // NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let file = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Err(Errno::LOOP) => return Err(KeyFileError::WrongType { path: path.to_owned(), expected: "regular file" }),
        other => other.map_err(io("open"))?,
    };
    check(&file, path, FileType::RegularFile, 0o600)?;
    // One byte more than a key, so a longer file is told from an exact one; never more.
    let mut buf = [0u8; KEY_LEN + 1];
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&file, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io("read")(e)),
        }
    }
    if len != KEY_LEN {
        return Err(KeyFileError::WrongSize { path: path.to_owned(), len });
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&buf[..KEY_LEN]);
    Ok(key)
}

/// Checks what `fd` is (by `fstat`, on what was opened, not on the path again).
fn check(fd: impl AsFd, path: &Path, kind: FileType, mode: u32) -> Result<(), KeyFileError> {
    let st = rustix::fs::fstat(fd).map_err(|errno| KeyFileError::Io { path: path.to_owned(), what: "stat", errno })?;
    if FileType::from_raw_mode(st.st_mode) != kind {
        let expected = if kind == FileType::Directory { "directory" } else { "regular file" };
        return Err(KeyFileError::WrongType { path: path.to_owned(), expected });
    }
    let ours = rustix::process::geteuid().as_raw();
    if st.st_uid != ours {
        return Err(KeyFileError::WrongOwner { path: path.to_owned(), owner: st.st_uid, ours });
    }
    let bits = st.st_mode & 0o7777;
    if bits != mode {
        return Err(KeyFileError::WrongMode { path: path.to_owned(), mode: bits, want: mode });
    }
    Ok(())
}

/// 16 bytes from the kernel's CSPRNG.
fn entropy() -> Result<[u8; KEY_LEN], Errno> {
    let mut bytes = [0u8; KEY_LEN];
    let mut filled = 0;
    while filled < KEY_LEN {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A fresh directory under the temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("synack-key-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
        /// A directory of mode 0700 inside, and the key path in it.
        fn key_path(&self) -> PathBuf {
            let keys = self.0.join("keys");
            std::fs::create_dir_all(&keys).unwrap();
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
            keys.join("isn-key")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_key(path: &Path, bytes: &[u8], mode: u32) {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_per_boot_key_is_made_once_and_shared() {
        let tmp = TempDir::new("made");
        let path = tmp.0.join("sub").join("isn-key");
        let first = per_boot(&path).expect("made");
        let again = per_boot(&path).expect("read");
        assert_eq!(first, again, "a later process reads the same key");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 16);
        let dir = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700, "the directory is made private");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_is_refused_even_to_a_good_key() {
        let tmp = TempDir::new("symlink");
        let path = tmp.key_path();
        let target = path.with_file_name("real");
        write_key(&target, &[7; 16], 0o600);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(per_boot(&path), Err(KeyFileError::WrongType { .. })), "{:?}", per_boot(&path));
        // A symlink to /dev/zero would have been read for ever.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(matches!(per_boot(&path), Err(KeyFileError::WrongType { .. })));
    }

    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let tmp = TempDir::new("fifo");
        let path = tmp.key_path();
        rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let (done, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || done.send(format!("{:?}", per_boot(&p))));
        let result = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("returns at once, no hang");
        assert!(result.contains("WrongType"), "{result}");
    }

    #[test]
    fn wrong_modes_and_sizes_are_refused() {
        let tmp = TempDir::new("mode");
        let path = tmp.key_path();
        write_key(&path, &[7; 16], 0o644);
        assert!(matches!(per_boot(&path), Err(KeyFileError::WrongMode { mode: 0o644, want: 0o600, .. })));
        for bad in [&b"short"[..], &[0u8; 17], &[0u8; 1 << 16], &[]] {
            write_key(&path, bad, 0o600);
            let len = bad.len().min(17);
            match per_boot(&path) {
                Err(KeyFileError::WrongSize { len: got, .. }) => assert_eq!(got, len),
                other => panic!("{} bytes: {other:?}", bad.len()),
            }
        }
        write_key(&path, &[7; 16], 0o600);
        assert_eq!(per_boot(&path).unwrap(), IsnGenerator::from_key_bytes([7; 16]), "a good key is read");
        // A directory open to others is refused, and so is one that is a symlink.
        std::fs::set_permissions(path.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(per_boot(&path), Err(KeyFileError::WrongMode { mode: 0o755, want: 0o700, .. })));
        std::fs::set_permissions(path.parent().unwrap(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.0.join("linked-keys");
        std::os::unix::fs::symlink(path.parent().unwrap(), &link).unwrap();
        assert!(matches!(per_boot(&link.join("isn-key")), Err(KeyFileError::WrongType { .. })));
    }

    #[test]
    fn another_owner_is_refused() {
        if !rustix::process::geteuid().is_root() {
            println!("SKIP (needs root to chown)");
            return;
        }
        let nobody = rustix::process::Uid::from_raw(65534);
        let tmp = TempDir::new("owner");
        let path = tmp.key_path();
        write_key(&path, &[7; 16], 0o600);
        rustix::fs::chown(&path, Some(nobody), None).unwrap();
        assert!(matches!(per_boot(&path), Err(KeyFileError::WrongOwner { owner: 65534, ours: 0, .. })));
        rustix::fs::chown(&path, Some(rustix::process::Uid::ROOT), None).unwrap();
        assert!(per_boot(&path).is_ok());
        rustix::fs::chown(path.parent().unwrap(), Some(nobody), None).unwrap();
        assert!(matches!(per_boot(&path), Err(KeyFileError::WrongOwner { owner: 65534, .. })));
    }

    #[test]
    fn entropy_keys_differ() {
        assert_ne!(from_entropy(), from_entropy());
    }
}
