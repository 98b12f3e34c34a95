//! The spool's lock, as seen by the tools: refuse a spool another process has open, hold it
//! while working, and name the holder when the kernel tells (`/proc/locks`).
//!
//! `Spool::open` holds an exclusive `flock` on `DIR/LOCK`. A shared `flock` conflicts with it,
//! so a read-only tool holding one keeps a Spillway from opening the spool under it, and is
//! refused while one has it open. A spool without a LOCK file is open nowhere (opening creates
//! it first), and read-only tools do not create one: they also work on a read-only copy.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use spillway_spool::LOCK_FILE;

/// Why a spool cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process has the spool open (or another tool is working on it).
    #[error(
        "spool {dir} is in use: {holder} holds its lock ({lock}). The spool tools never work on \
         a spool another process has open: stop it (or wait for it to finish) and retry"
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
}

/// Holds the lock (shared or exclusive) until dropped.
#[derive(Debug)]
pub struct Held {
    _file: Option<File>,
}

/// Checks that `dir` is a spool directory: it exists and has `streams/` or a LOCK file.
pub fn check_spool_dir(dir: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(dir).with_context(|| format!("spool directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if !dir.join("streams").is_dir() && !dir.join(LOCK_FILE).exists() {
        bail!(
            "{} is not a spool directory (it has neither streams/ nor {LOCK_FILE})",
            dir.display()
        );
    }
    Ok(())
}

/// A shared lock for a read-only command, held while it reads. Without a LOCK file, nothing
/// is held (and nothing is created).
pub fn hold_shared(dir: &Path) -> anyhow::Result<Held> {
    check_spool_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Held { _file: None }),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    match fs4::fs_std::FileExt::try_lock_shared(&file) {
        Ok(true) => Ok(Held { _file: Some(file) }),
        Ok(false) => Err(locked(dir, &path).into()),
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// The exclusive lock, as `Spool::open` takes it (creating the LOCK file if needed).
pub fn hold_exclusive(dir: &Path) -> anyhow::Result<Held> {
    check_spool_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
        Ok(true) => Ok(Held { _file: Some(file) }),
        Ok(false) => Err(locked(dir, &path).into()),
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Checks that nobody holds the lock, without keeping it (for commands that then open the
/// spool, which takes it).
pub fn ensure_free(dir: &Path) -> anyhow::Result<()> {
    drop(hold_shared(dir)?);
    Ok(())
}

/// The error for a held lock, naming the holder when possible.
pub fn locked(dir: &Path, lock: &Path) -> LockError {
    LockError::Locked {
        dir: dir.to_path_buf(),
        lock: lock.to_path_buf(),
        holder: holder(lock).unwrap_or_else(|| "another process".into()),
    }
}

/// "process 1234 (spillway)" for the process holding a flock on `lock`, from `/proc/locks`.
fn holder(lock: &Path) -> Option<String> {
    let meta = std::fs::metadata(lock).ok()?;
    let (major, minor) = split_dev(meta.dev());
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_pid(&locks, &wanted)?;
    let me = std::process::id();
    if pid == me {
        return Some(format!("this process ({pid})"));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    Some(match comm {
        Some(c) => format!("process {pid} ({})", c.trim()),
        None => format!("process {pid}"),
    })
}

/// The pid of the first FLOCK held (not waited for) on the file `dev_ino` ("08:01:1234").
fn holder_pid(proc_locks: &str, dev_ino: &str) -> Option<u32> {
    proc_locks
        .lines()
        .filter(|l| !l.contains("->"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[1] == "FLOCK" && f[5] == dev_ino)
        .and_then(|f| f[4].parse().ok())
}

/// glibc's `major`/`minor` of a `dev_t`.
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks_and_waiters_are_ignored() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 08:01:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5151 fd:01:1234 0 EOF\n";
        assert_eq!(holder_pid(locks, "fd:01:1234"), Some(4242));
        assert_eq!(
            holder_pid(locks, "08:01:99"),
            None,
            "POSIX locks are not ours"
        );
        assert_eq!(holder_pid(locks, "fd:01:1"), None);
    }

    #[test]
    fn a_held_spool_is_refused_by_name_and_a_free_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("streams")).unwrap();
        ensure_free(tmp.path()).unwrap();
        assert!(
            !tmp.path().join(LOCK_FILE).exists(),
            "read-only checks create no lock file"
        );
        let held = hold_exclusive(tmp.path()).unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        let err = hold_shared(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("is in use"), "{err}");
        assert!(err.contains("this process"), "{err}");
        drop(held);
        let shared = hold_shared(tmp.path()).unwrap();
        let also = hold_shared(tmp.path()).unwrap();
        assert!(hold_exclusive(tmp.path()).is_err());
        drop((shared, also));
    }

    #[test]
    fn a_directory_that_is_not_a_spool_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err = hold_shared(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not a spool directory"), "{err}");
        let err = hold_shared(&tmp.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
