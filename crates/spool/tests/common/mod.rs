//! Helpers shared by the spool's integration tests.
#![allow(dead_code)]

use parking_lot::{Condvar, Mutex};
use spillway_spool::fs::{DirEntry, FileHandle, FileSystem, LockGuard};
use spillway_spool::{FsyncPolicy, Record, Spool, SpoolConfig, StreamName};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub fn name(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

/// Small segments, checkpoints only on flush: tests decide when things happen.
pub fn small_config() -> SpoolConfig {
    SpoolConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 512,
        capacity_bytes: 1 << 30,
        checkpoint_interval: Duration::from_secs(3600),
        index_interval_bytes: 128,
        ..SpoolConfig::default()
    }
}

/// Reads everything visible from the stream's first unacknowledged record (a fresh reader).
pub fn read_all(spool: &Spool, stream: &StreamName) -> Vec<Record> {
    let mut reader = spool.reader(stream).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = reader.read_batch(1000, 1 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

pub fn payload(stream: &str, i: u64, len: usize) -> Vec<u8> {
    let mut p = format!("{stream}#{i}#").into_bytes();
    while p.len() < len {
        p.push(b'a' + (p.len() as u64 + i) as u8 % 26);
    }
    p.truncate(len.max(1));
    p
}

/// A filesystem whose `sync_data` blocks while the gate is closed, and counts syncs.
#[derive(Debug, Clone)]
pub struct GatedFs {
    inner: Arc<dyn FileSystem>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    pub syncs: Arc<AtomicU64>,
}

impl GatedFs {
    pub fn new(inner: Arc<dyn FileSystem>) -> GatedFs {
        GatedFs {
            inner,
            gate: Arc::new((Mutex::new(true), Condvar::new())),
            syncs: Arc::new(AtomicU64::new(0)),
        }
    }
    pub fn set_open(&self, open: bool) {
        *self.gate.0.lock() = open;
        self.gate.1.notify_all();
    }
    fn wrap(&self, f: Arc<dyn FileHandle>) -> Arc<dyn FileHandle> {
        Arc::new(GatedFile {
            inner: f,
            fs: self.clone(),
        })
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn FileHandle>,
    fs: GatedFs,
}

impl FileHandle for GatedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        let (lock, cv) = &*self.fs.gate;
        let mut open = lock.lock();
        while !*open {
            cv.wait(&mut open);
        }
        drop(open);
        self.fs.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.read_dir(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.inner.create_new(path).map(|f| self.wrap(f))
    }
    fn create_truncate(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.inner.create_truncate(path).map(|f| self.wrap(f))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.inner.open_rw(path).map(|f| self.wrap(f))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        self.inner.open_read(path).map(|f| self.wrap(f))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.try_lock(path)
    }
}
