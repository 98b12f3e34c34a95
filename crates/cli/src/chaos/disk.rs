//! Where the spool lives, and how the disk-full fault fills it.
//!
//! As root (and where `mount` works), the spool gets its own small tmpfs, and the fault fills
//! that filesystem with a ballast file until writes fail with ENOSPC, then frees a sliver so a
//! few appends still fit before the spool hits the wall; removing the ballast ends the fault.
//! That is a real full disk as the spool sees it. A gateway killed with SIGKILL keeps its tmpfs
//! files, as it would keep them on a disk.
//!
//! Otherwise the spool is a plain directory and the fault uses the spool's own capacity limit:
//! the gateway is restarted with `capacity_bytes` just above what it already holds, and
//! restarted again with the normal capacity when the fault ends (the report says which method
//! ran).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Spool capacity on a tmpfs of [`TMPFS_BYTES`].
pub const TMPFS_BYTES: u64 = 96 << 20;
/// What the spool may use: below the filesystem, so the ballast, not the limit, fills it.
pub const TMPFS_CAPACITY: u64 = 80 << 20;
/// Spool capacity on a plain directory.
pub const PLAIN_CAPACITY: u64 = 256 << 20;
/// Left free after the ballast: a few appends still fit, then ENOSPC.
const SLIVER: u64 = 192 << 10;

#[derive(Debug)]
pub enum SpoolDisk {
    Tmpfs {
        mount: PathBuf,
        ballast: Option<PathBuf>,
    },
    Plain {
        dir: PathBuf,
    },
}

pub(super) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

impl SpoolDisk {
    /// A tmpfs under `out` when root and mount works, else a plain directory.
    pub fn prepare(out: &Path) -> io::Result<Self> {
        if running_as_root() {
            let mount = out.join("spoolfs");
            fs::create_dir_all(&mount)?;
            let mounted = Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={TMPFS_BYTES}"))
                .arg("tmpfs")
                .arg(&mount)
                .status()
                .is_ok_and(|s| s.success());
            if mounted {
                return Ok(SpoolDisk::Tmpfs {
                    mount,
                    ballast: None,
                });
            }
            let _ = fs::remove_dir(&mount);
        }
        let dir = out.join("spool");
        fs::create_dir_all(&dir)?;
        Ok(SpoolDisk::Plain { dir })
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> PathBuf {
        match self {
            SpoolDisk::Tmpfs { mount, .. } => mount.join("spool"),
            SpoolDisk::Plain { dir } => dir.clone(),
        }
    }

    pub fn capacity(&self) -> u64 {
        match self {
            SpoolDisk::Tmpfs { .. } => TMPFS_CAPACITY,
            SpoolDisk::Plain { .. } => PLAIN_CAPACITY,
        }
    }

    /// How the disk-full fault works here, for the report.
    pub fn method(&self) -> &'static str {
        match self {
            SpoolDisk::Tmpfs { .. } => "tmpfs filled with a ballast file (ENOSPC)",
            SpoolDisk::Plain { .. } => {
                "spool capacity limit (gateway restarted with a small capacity_bytes)"
            }
        }
    }

    pub fn is_tmpfs(&self) -> bool {
        matches!(self, SpoolDisk::Tmpfs { .. })
    }

    /// Tmpfs: fills the filesystem but a sliver. Returns the ballast's size.
    pub fn fill(&mut self) -> io::Result<u64> {
        let SpoolDisk::Tmpfs { mount, ballast } = self else {
            return Err(io::Error::other("fill needs the tmpfs spool"));
        };
        let path = mount.join("ballast");
        let size = fill_until_full(&path)?;
        let keep = size.saturating_sub(SLIVER);
        OpenOptions::new().write(true).open(&path)?.set_len(keep)?;
        *ballast = Some(path);
        Ok(keep)
    }

    /// Tmpfs: removes the ballast (space returns).
    pub fn free(&mut self) -> io::Result<()> {
        if let SpoolDisk::Tmpfs { ballast, .. } = self {
            if let Some(path) = ballast.take() {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

/// Writes zeros to `path` until the filesystem is full; returns the bytes written.
pub fn fill_until_full(path: &Path) -> io::Result<u64> {
    let mut file = File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => return Ok(written),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => return Ok(written),
            Err(e) => return Err(e),
        }
    }
}

impl Drop for SpoolDisk {
    fn drop(&mut self) {
        if let SpoolDisk::Tmpfs { mount, .. } = self {
            let _ = Command::new("umount").arg("-l").arg(&*mount).status();
            let _ = fs::remove_dir(&*mount);
        }
    }
}
