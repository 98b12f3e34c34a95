//! The `Spool` handle: open (lock + recovery), append, flush, readers, acks and statistics.

use crate::checkpoint::{Checkpoint, MAX_ACK_META_BYTES};
use crate::fs::{FileSystem, LockGuard, RealFs};
use crate::reader::StreamReader;
use crate::recovery::{self, QUARANTINE_DIR, RecoveryReport, STREAMS_DIR};
use crate::stream::Stream;
use crate::writer::{AppendRequest, Command, Writer};
use crate::{
    AckError, AppendError, FlushError, OpenError, Position, ReaderError, RecordIn, Seq,
    SpoolConfig, StreamName, format,
};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// State shared by the handle, the writer thread and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub streams_dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub config: SpoolConfig,
    pub streams: RwLock<HashMap<StreamName, Arc<Stream>>>,
    /// Bytes of segment files on disk.
    pub used_bytes: AtomicU64,
    /// Bytes of accepted appends not yet written.
    pub pending_bytes: AtomicU64,
    pub closed: AtomicBool,
    pub counters: Counters,
}

/// Monotonic counters, for metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appended_records: AtomicU64,
    pub group_commits: AtomicU64,
    pub fsyncs: AtomicU64,
    pub failed_commits: AtomicU64,
    pub checkpoints_written: AtomicU64,
    pub segments_deleted: AtomicU64,
}

impl Shared {
    pub fn stream(&self, name: &StreamName) -> Option<Arc<Stream>> {
        self.streams.read().get(name).cloned()
    }

    pub fn stream_or_create(&self, name: &StreamName) -> Arc<Stream> {
        if let Some(s) = self.stream(name) {
            return s;
        }
        let mut map = self.streams.write();
        let dir = self.streams_dir.join(name.as_str());
        let stream = map.entry(name.clone()).or_insert_with(|| {
            Arc::new(Stream::new(
                name.clone(),
                dir,
                Default::default(),
                Seq(0),
                Checkpoint::default(),
            ))
        });
        Arc::clone(stream)
    }
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    _lock: Box<dyn LockGuard>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        for stream in self.shared.streams.read().values() {
            stream.notify.notify_one();
        }
    }
}

/// A spool: named streams of durable records. Cheap to clone; the last clone dropped stops the
/// writer thread (after a final sync and checkpoint) and releases the directory lock.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

/// Name of the lock file in the spool directory.
pub const LOCK_FILE: &str = "LOCK";

impl Spool {
    /// Opens (creating if needed) the spool in `dir` on the real filesystem. Recovers from any
    /// damage and reports what it did; fails only if the spool is locked or the directory cannot
    /// be used at all.
    pub fn open(
        dir: impl AsRef<Path>,
        config: SpoolConfig,
    ) -> Result<(Spool, RecoveryReport), OpenError> {
        Self::open_with_fs(dir, config, Arc::new(RealFs))
    }

    /// [`Spool::open`] on any [`FileSystem`] (tests use [`crate::fs::sim::SimFs`]).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        config: SpoolConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(Spool, RecoveryReport), OpenError> {
        config.validate().map_err(OpenError::InvalidConfig)?;
        let dir = dir.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        if !fs.exists(&dir) {
            fs.create_dir_all(&dir).map_err(io(&dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs.sync_dir(parent).map_err(io(parent))?;
            }
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs
            .try_lock(&lock_path)
            .map_err(io(&lock_path))?
            .ok_or_else(|| OpenError::Locked {
                dir: dir.clone(),
                lock: lock_path.clone(),
            })?;
        let mut created = false;
        for sub in [STREAMS_DIR, QUARANTINE_DIR] {
            let path = dir.join(sub);
            if !fs.exists(&path) {
                fs.create_dir_all(&path).map_err(io(&path))?;
                created = true;
            }
        }
        if created {
            fs.sync_dir(&dir).map_err(io(&dir))?;
        }
        let (recovered, report) = recovery::recover(
            fs.as_ref(),
            &dir,
            config.recovery,
            config.index_interval_bytes,
            true,
        )
        .map_err(io(&dir))?;
        let mut streams = HashMap::new();
        let mut used = 0;
        for r in recovered {
            used += r.segments.iter().map(|s| s.len).sum::<u64>();
            let stream = Stream::new(r.name.clone(), r.dir, r.segments, r.next_seq, r.checkpoint);
            streams.insert(r.name, Arc::new(stream));
        }
        let shared = Arc::new(Shared {
            streams_dir: dir.join(STREAMS_DIR),
            dir,
            fs,
            config,
            streams: RwLock::new(streams),
            used_bytes: AtomicU64::new(used),
            pending_bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::spawn(Arc::clone(&shared), tx.clone(), rx).map_err(io(&shared.dir))?;
        let inner = Inner {
            shared,
            tx: Some(tx),
            writer: Some(writer),
            _lock: lock,
        };
        Ok((
            Spool {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Appends one record. Resolves once the record is durable per the [`crate::FsyncPolicy`]
    /// (with `Always`: after the covering fdatasync). Capacity and size are checked before
    /// anything is queued, so `Full` is immediate. Dropping the future does not cancel the
    /// write: the record may still be stored, it is only not acknowledged.
    pub async fn append(
        &self,
        stream: &StreamName,
        record: RecordIn,
    ) -> Result<Position, AppendError> {
        let seq = self.append_detached(stream, record).await?;
        Ok(Position {
            stream: stream.clone(),
            seq,
        })
    }

    /// [`Spool::append`], queued now rather than at the first poll, with a future that
    /// borrows nothing and resolves to the record's sequence number. The hot path of callers
    /// that keep the stream's name themselves.
    pub fn append_detached(
        &self,
        stream: &StreamName,
        record: RecordIn,
    ) -> impl Future<Output = Result<Seq, AppendError>> + Send + 'static {
        let submitted = self.submit(stream, vec![record]);
        async move { submitted?.await.map_err(|_| AppendError::Closed)? }
    }

    /// Appends records to one stream together: consecutive sequence numbers, one write, one
    /// fdatasync; all succeed or all fail.
    pub async fn append_batch(
        &self,
        stream: &StreamName,
        records: Vec<RecordIn>,
    ) -> Result<Vec<Position>, AppendError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = records.len() as u64;
        let first = self
            .submit(stream, records)?
            .await
            .map_err(|_| AppendError::Closed)??;
        Ok(positions(stream, first, n))
    }

    /// Blocking [`Spool::append`] for synchronous callers. Must not be called from inside an
    /// async runtime's worker thread.
    pub fn append_blocking(
        &self,
        stream: &StreamName,
        record: RecordIn,
    ) -> Result<Position, AppendError> {
        let seq = self
            .submit(stream, vec![record])?
            .blocking_recv()
            .map_err(|_| AppendError::Closed)??;
        Ok(Position {
            stream: stream.clone(),
            seq,
        })
    }

    /// Blocking [`Spool::append_batch`].
    pub fn append_batch_blocking(
        &self,
        stream: &StreamName,
        records: Vec<RecordIn>,
    ) -> Result<Vec<Position>, AppendError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = records.len() as u64;
        let first = self
            .submit(stream, records)?
            .blocking_recv()
            .map_err(|_| AppendError::Closed)??;
        Ok(positions(stream, first, n))
    }

    fn submit(
        &self,
        name: &StreamName,
        records: Vec<RecordIn>,
    ) -> Result<oneshot::Receiver<Result<Seq, AppendError>>, AppendError> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        let max = shared.config.max_record_bytes;
        let mut bytes = 0u64;
        for r in &records {
            if r.payload.len() > max {
                return Err(AppendError::RecordTooLarge {
                    len: r.payload.len(),
                    max,
                });
            }
            bytes += format::encoded_len(r.payload.len()) as u64;
        }
        let before = shared.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        let release = || shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > shared.config.max_pending_bytes as u64 {
            release();
            return Err(AppendError::Overloaded { pending: before });
        }
        let used = shared.used_bytes.load(Ordering::Acquire) + before;
        let capacity = shared.config.capacity_bytes;
        if used + bytes > capacity {
            release();
            return Err(AppendError::Full {
                needed: bytes,
                used,
                capacity,
            });
        }
        let stream = shared.stream_or_create(name);
        let (reply, rx) = oneshot::channel();
        let request = AppendRequest {
            stream,
            records,
            bytes,
            reply,
        };
        let sent = self
            .inner
            .tx
            .as_ref()
            .map(|tx| tx.send(Command::Append(request)));
        if !matches!(sent, Some(Ok(()))) {
            release();
            return Err(AppendError::Closed);
        }
        Ok(rx)
    }

    /// Makes everything written durable and checkpoints every stream's acknowledged progress
    /// (deleting the segments it frees).
    pub async fn flush(&self) -> Result<(), FlushError> {
        self.flush_request()?
            .await
            .map_err(|_| FlushError::Closed)?
    }

    /// Blocking [`Spool::flush`].
    pub fn flush_blocking(&self) -> Result<(), FlushError> {
        self.flush_request()?
            .blocking_recv()
            .map_err(|_| FlushError::Closed)?
    }

    fn flush_request(&self) -> Result<oneshot::Receiver<Result<(), FlushError>>, FlushError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(FlushError::Closed)?;
        tx.send(Command::Flush(reply))
            .map_err(|_| FlushError::Closed)?;
        Ok(rx)
    }

    /// Opens the reader of `stream` (creating the stream if it does not exist yet). It starts at
    /// the first record not acknowledged. One reader per stream at a time.
    pub fn reader(&self, stream: &StreamName) -> Result<StreamReader, ReaderError> {
        if self.inner.shared.closed.load(Ordering::Acquire) {
            return Err(ReaderError::Closed);
        }
        let s = self.inner.shared.stream_or_create(stream);
        StreamReader::new(Arc::clone(&self.inner.shared), s)
    }

    /// Acknowledges a delivered record. Acks may come in any order; the checkpoint advances
    /// over the contiguous acknowledged prefix and is made durable at the next checkpoint
    /// interval or [`Spool::flush`].
    pub fn ack(&self, position: &Position) -> Result<(), AckError> {
        self.ack_inner(position, None)
    }

    /// [`Spool::ack`] with a small caller blob (≤ [`MAX_ACK_META_BYTES`]) stored in the checkpoint
    /// once the prefix covers this position, and returned by [`Spool::checkpoint`] after a
    /// restart (the library keeps "last Kafka offset delivered" there).
    pub fn ack_with_meta(&self, position: &Position, meta: &[u8]) -> Result<(), AckError> {
        if meta.len() > MAX_ACK_META_BYTES {
            return Err(AckError::MetaTooLarge {
                len: meta.len(),
                max: MAX_ACK_META_BYTES,
            });
        }
        self.ack_inner(position, Some(meta))
    }

    fn ack_inner(&self, position: &Position, meta: Option<&[u8]>) -> Result<(), AckError> {
        let stream = self
            .inner
            .shared
            .stream(&position.stream)
            .ok_or_else(|| AckError::UnknownStream(position.stream.clone()))?;
        stream
            .state
            .lock()
            .acks
            .ack(&position.stream, position.seq, meta)
            .map(|_| ())
    }

    /// The stream's last durable checkpoint (acknowledged prefix and caller blob), as found at
    /// open or written since. `None` for an unknown stream.
    pub fn checkpoint(&self, stream: &StreamName) -> Option<Checkpoint> {
        self.inner
            .shared
            .stream(stream)
            .map(|s| s.state.lock().durable.clone())
    }

    /// Every stream known to the spool, sorted.
    pub fn streams(&self) -> Vec<StreamName> {
        let mut names: Vec<StreamName> = self.inner.shared.streams.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Closes this handle (blocking). If it is the last clone, waits for the writer to finish its
    /// final sync and checkpoint. Returns the result of a flush made first. Readers of a closed
    /// spool get `ReadError::Closed` once they have read everything.
    pub fn close(self) -> Result<(), FlushError> {
        let result = self.flush_blocking();
        drop(self);
        result
    }

    /// Async [`Spool::close`]: flushes, then drops this handle (the last drop joins the writer
    /// thread, a short blocking wait after the flush).
    pub async fn shutdown(self) -> Result<(), FlushError> {
        let result = self.flush().await;
        drop(self);
        result
    }
}

/// The positions of `n` records appended together from `first` on.
fn positions(stream: &StreamName, first: Seq, n: u64) -> Vec<Position> {
    (0..n)
        .map(|i| Position {
            stream: stream.clone(),
            seq: Seq(first.0 + i),
        })
        .collect()
}
