//! [`SimFs`]: an in-memory filesystem that models what survives a crash, and injects faults.
//!
//! Model:
//! - every file has a *cache* (what reads see) and a *durable* copy (what survives a crash);
//!   `sync_data` copies cache to durable;
//! - the namespace (which names exist in which directory) also has a live and a durable view;
//!   `sync_dir(d)` makes the live entries of `d` durable. Creates, renames and unlinks that were not
//!   followed by a `sync_dir` of their directory are lost at a crash;
//! - a crash is triggered by [`Faults::crash_at_op`] (the N-th mutating operation fails and the
//!   process is dead from then on: every later operation fails) or [`Faults::crash_at_byte`] (a
//!   write crossing that many bytes written in total lands partially, then the process is dead);
//! - [`SimFs::restart`] models the reboot: only durable state remains. With
//!   [`CrashMode::KeepSomeUnsynced`], each file may also keep a random prefix of its unsynced
//!   appended bytes (page write-back happened) and each directory may keep its unsynced entries,
//!   which produces torn tails and half-done renames.
//!
//! Injected errors ([`FailRule`]) return a chosen errno (EIO, ENOSPC, ...) from chosen operations.

mod handle;

use super::{DirEntry, FileHandle, FileSystem, LockGuard};
use handle::{SimHandle, SimLock};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Kinds of operation a [`FailRule`] can target. All but reads count as "mutating operations".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `write_at`.
    Write,
    /// `sync_data` of a file.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `rename`.
    Rename,
    /// `remove_file`.
    Remove,
    /// `create_new` / `create_truncate`.
    Create,
    /// `set_len`.
    SetLen,
    /// `create_dir_all`.
    Mkdir,
}

/// Makes matching operations fail with `errno`.
#[derive(Debug, Clone)]
pub struct FailRule {
    /// Which operation.
    pub op: Op,
    /// Only paths containing this substring (None: any path).
    pub path_contains: Option<String>,
    /// The errno returned, e.g. `libc::ENOSPC` (28) or `EIO` (5).
    pub errno: i32,
    /// Matching operations to let through before failing.
    pub skip: u32,
    /// How many times to fail (then the rule is spent). `u32::MAX`: until cleared.
    pub times: u32,
}

/// ENOSPC.
pub const ENOSPC: i32 = 28;
/// EIO.
pub const EIO: i32 = 5;

/// Fault plan. Default: no faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The mutating operation with this 1-based index is the crash point.
    pub crash_at_op: Option<u64>,
    /// Total written bytes at which the process dies mid-write.
    pub crash_at_byte: Option<u64>,
    /// Every write writes at most half its buffer (at least one byte).
    pub short_writes: bool,
    /// Injected errors.
    pub fail: Vec<FailRule>,
}

/// What a restart keeps of state that was not made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only fsync'd contents and dir-fsync'd names survive.
    DropUnsynced,
    /// Also keep, chosen by this seed, random prefixes of unsynced appends and some unsynced
    /// directory changes.
    KeepSomeUnsynced(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Default)]
struct SimFile {
    cache: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<u64, SimFile>,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    next_inode: u64,
    ops: u64,
    bytes_written: u64,
    faults: Faults,
    dead: bool,
    generation: u64,
    locks: HashSet<PathBuf>,
}

/// The simulated filesystem. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn dead_error() -> io::Error {
    io::Error::other("simulated crash: the process is dead")
}

impl State {
    /// Counts a mutating op and applies crash/fail rules.
    fn check(&mut self, op: Op, path: &Path) -> io::Result<()> {
        if self.dead {
            return Err(dead_error());
        }
        self.ops += 1;
        if self.faults.crash_at_op == Some(self.ops) {
            self.dead = true;
            return Err(dead_error());
        }
        let path = path.to_string_lossy();
        for rule in &mut self.faults.fail {
            let matches = rule.op == op
                && rule.times > 0
                && rule
                    .path_contains
                    .as_deref()
                    .is_none_or(|p| path.contains(p));
            if matches {
                if rule.skip > 0 {
                    rule.skip -= 1;
                } else {
                    if rule.times != u32::MAX {
                        rule.times -= 1;
                    }
                    return Err(err(rule.errno));
                }
            }
        }
        Ok(())
    }

    fn parent_is_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent().map(|p| self.live.get(p)) {
            Some(Some(Node::Dir)) => Ok(()),
            _ => Err(err(2)),
        }
    }

    fn new_file(&mut self, path: &Path) -> u64 {
        self.next_inode += 1;
        let inode = self.next_inode;
        self.files.insert(inode, SimFile::default());
        self.live.insert(path.to_path_buf(), Node::File(inode));
        inode
    }
}

impl SimFs {
    /// An empty filesystem with only `/`, durable.
    pub fn new() -> Self {
        let mut state = State::default();
        state.live.insert(PathBuf::from("/"), Node::Dir);
        state.durable.insert(PathBuf::from("/"), Node::Dir);
        SimFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().faults = faults;
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults = Faults::default();
    }

    /// Mutating operations performed so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.state.lock().bytes_written
    }

    /// Whether a crash point was hit.
    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    /// Kills the process now (every later operation fails until [`SimFs::restart`]).
    pub fn kill(&self) {
        self.state.lock().dead = true;
    }

    /// Reboot: drops everything not durable (see [`CrashMode`]), releases locks, clears faults,
    /// and invalidates every handle opened before.
    pub fn restart(&self, mode: CrashMode) {
        let mut s = self.state.lock();
        let mut rng = match mode {
            CrashMode::DropUnsynced => None,
            CrashMode::KeepSomeUnsynced(seed) => Some(XorShift(seed | 1)),
        };
        if let Some(rng) = rng.as_mut() {
            // Some directories had their entries written back anyway.
            let dirs: Vec<PathBuf> = s
                .live
                .iter()
                .filter(|(_, n)| **n == Node::Dir)
                .map(|(p, _)| p.clone())
                .collect();
            for dir in dirs {
                if rng.next() % 2 == 0 {
                    sync_dir_entries(&mut s, &dir);
                }
            }
        }
        // Prune durable entries whose parent directory is not durable.
        let paths: Vec<PathBuf> = s.durable.keys().cloned().collect();
        for path in paths {
            if let Some(parent) = path.parent() {
                if s.durable.get(parent) != Some(&Node::Dir) {
                    s.durable.remove(&path);
                }
            }
        }
        s.live = s.durable.clone();
        let reachable: HashSet<u64> = s
            .live
            .values()
            .filter_map(|n| {
                if let Node::File(i) = n {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect();
        s.files.retain(|inode, _| reachable.contains(inode));
        for file in s.files.values_mut() {
            let mut keep = file.durable.clone();
            if let Some(rng) = rng.as_mut() {
                if file.cache.len() > keep.len() && file.cache.starts_with(&keep) {
                    let extra = (rng.next() % (file.cache.len() - keep.len() + 1) as u64) as usize;
                    keep = file.cache[..keep.len() + extra].to_vec();
                }
            }
            file.durable = keep.clone();
            file.cache = keep;
        }
        s.dead = false;
        s.faults = Faults::default();
        s.locks.clear();
        s.generation += 1;
    }

    /// Reads a whole file (test helper; no faults).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state.lock();
        match s.live.get(path) {
            Some(Node::File(i)) => Ok(s.files[i].cache.clone()),
            _ => Err(err(2)),
        }
    }

    /// Overwrites a whole file durably (test helper for corruption scenarios; no faults).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        let inode = match s.live.get(path) {
            Some(Node::File(i)) => *i,
            _ => {
                s.parent_is_dir(path)?;
                let i = s.new_file(path);
                s.durable.insert(path.to_path_buf(), Node::File(i));
                i
            }
        };
        let f = s.files.get_mut(&inode).expect("inode");
        f.cache = bytes.to_vec();
        f.durable = bytes.to_vec();
        Ok(())
    }

    /// Lists every live file path (test helper).
    pub fn list_files(&self) -> Vec<PathBuf> {
        let s = self.state.lock();
        s.live
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn handle(&self, inode: u64, path: &Path) -> Arc<dyn FileHandle> {
        let generation = self.state.lock().generation;
        let path = path.to_string_lossy().into_owned();
        Arc::new(SimHandle {
            fs: self.clone(),
            inode,
            generation,
            path,
        })
    }

    fn create(&self, path: &Path, exclusive: bool) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.state.lock();
        s.check(Op::Create, path)?;
        s.parent_is_dir(path)?;
        let inode = match s.live.get(path) {
            Some(Node::File(_)) if exclusive => return Err(err(17)),
            Some(Node::File(i)) => {
                let i = *i;
                s.files.get_mut(&i).expect("inode").cache.clear();
                i
            }
            Some(Node::Dir) => return Err(err(21)),
            None => s.new_file(path),
        };
        drop(s);
        Ok(self.handle(inode, path))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let s = self.state.lock();
        if s.dead {
            return Err(dead_error());
        }
        match s.live.get(path) {
            Some(Node::File(i)) => {
                let i = *i;
                drop(s);
                Ok(self.handle(i, path))
            }
            Some(Node::Dir) => Err(err(21)),
            None => Err(err(2)),
        }
    }
}

fn sync_dir_entries(s: &mut State, dir: &Path) {
    let live: Vec<(PathBuf, Node)> = s
        .live
        .iter()
        .filter(|(p, _)| p.parent() == Some(dir))
        .map(|(p, n)| (p.clone(), *n))
        .collect();
    s.durable.retain(|p, _| p.parent() != Some(dir));
    s.durable.extend(live);
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Mkdir, path)?;
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            match s.live.get(p) {
                Some(Node::Dir) => break,
                Some(Node::File(_)) => return Err(err(17)),
                None => missing.push(p.to_path_buf()),
            }
            cur = p.parent();
        }
        for p in missing.into_iter().rev() {
            s.live.insert(p, Node::Dir);
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let s = self.state.lock();
        if s.dead {
            return Err(dead_error());
        }
        if s.live.get(path) != Some(&Node::Dir) {
            return Err(err(2));
        }
        Ok(s.live
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, n)| DirEntry {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                is_dir: *n == Node::Dir,
            })
            .collect())
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.create(path, true)
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.create(path, false)
    }

    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.open(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Rename, from)?;
        s.parent_is_dir(to)?;
        match s.live.get(from).copied() {
            Some(Node::File(i)) => {
                s.live.remove(from);
                s.live.insert(to.to_path_buf(), Node::File(i));
                Ok(())
            }
            Some(Node::Dir) => Err(err(21)),
            None => Err(err(2)),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Remove, path)?;
        match s.live.get(path) {
            Some(Node::File(_)) => {
                s.live.remove(path);
                Ok(())
            }
            Some(Node::Dir) => Err(err(21)),
            None => Err(err(2)),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::SyncDir, path)?;
        if s.live.get(path) != Some(&Node::Dir) {
            return Err(err(2));
        }
        sync_dir_entries(&mut s, path);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.state.lock().live.contains_key(path)
    }

    fn sync_filesystem(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Sync, path)?;
        for f in s.files.values_mut() {
            f.durable.clone_from(&f.cache);
        }
        s.durable = s.live.clone();
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut s = self.state.lock();
        if s.dead {
            return Err(dead_error());
        }
        if !s.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        let generation = s.generation;
        drop(s);
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            generation,
        })))
    }
}

#[cfg(test)]
mod tests;
