//! File handles and locks of [`SimFs`](super::SimFs).

use super::{Op, SimFs, State, dead_error};
use crate::fs::{FileHandle, LockGuard};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) struct SimHandle {
    pub(super) fs: SimFs,
    pub(super) inode: u64,
    pub(super) generation: u64,
    pub(super) path: String,
}

impl SimHandle {
    fn with<T>(
        &self,
        op: Option<Op>,
        f: impl FnOnce(&mut State, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut s = self.fs.state.lock();
        if s.generation != self.generation || s.dead {
            return Err(dead_error());
        }
        if let Some(op) = op {
            s.check(op, Path::new(&self.path))?;
        }
        f(&mut s, self.inode)
    }
}

impl FileHandle for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(None, |s, i| {
            let data = &s.files[&i].cache;
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.with(Some(Op::Write), |s, i| {
            let mut n = buf.len();
            if s.faults.short_writes && n > 1 {
                n = n.div_ceil(2);
            }
            let mut crash = false;
            if let Some(limit) = s.faults.crash_at_byte {
                let room = limit.saturating_sub(s.bytes_written) as usize;
                if room < n {
                    n = room;
                    crash = true;
                }
            }
            s.bytes_written += n as u64;
            let data = &mut s.files.get_mut(&i).expect("inode").cache;
            let end = offset as usize + n;
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset as usize..end].copy_from_slice(&buf[..n]);
            if crash {
                s.dead = true;
                return Err(dead_error());
            }
            Ok(n)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(Some(Op::Sync), |s, i| {
            let f = s.files.get_mut(&i).expect("inode");
            f.durable.clone_from(&f.cache);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(Some(Op::SetLen), |s, i| {
            s.files
                .get_mut(&i)
                .expect("inode")
                .cache
                .resize(len as usize, 0);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(None, |s, i| Ok(s.files[&i].cache.len() as u64))
    }
}

#[derive(Debug)]
pub(super) struct SimLock {
    pub(super) fs: SimFs,
    pub(super) path: PathBuf,
    pub(super) generation: u64,
}
impl LockGuard for SimLock {}
impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.fs.state.lock();
        if s.generation == self.generation {
            s.locks.remove(&self.path);
        }
    }
}
