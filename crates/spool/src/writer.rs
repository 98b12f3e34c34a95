//! The writer thread: group commit. It takes every pending append, writes each stream's records
//! with one positional write per touched segment, fdatasyncs every touched file once (in
//! parallel through the sync pool), then publishes the records to readers and completes all
//! waiters. It also writes checkpoints and deletes the segments they free.

use crate::checkpoint;
use crate::format::{RecordHeader, SEGMENT_HEADER_LEN, encode_record, encoded_len};
use crate::fs::{FileHandle, write_all_at};
use crate::segment::{self, SegmentMeta};
use crate::spool::Shared;
use crate::stream::Stream;
use crate::sync_pool::{SyncJob, SyncPool};
use crate::{AppendError, FlushError, FsyncPolicy, Position, RecordIn, SegmentId, Seq, StreamName};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// Open segment files kept by the writer; beyond, idle streams' files are closed.
const MAX_OPEN_FILES: usize = 1024;

pub(crate) enum Command {
    Append(AppendRequest),
    Flush(oneshot::Sender<Result<(), FlushError>>),
}

pub(crate) struct AppendRequest {
    pub stream: Arc<Stream>,
    pub records: Vec<RecordIn>,
    /// Encoded bytes reserved in `pending_bytes`.
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<Vec<Position>, AppendError>>,
}

#[derive(Debug)]
struct Active {
    meta: SegmentMeta,
    file: Option<Arc<dyn FileHandle>>,
    /// Bytes actually in the file (`meta.len` runs ahead while a batch is being encoded).
    flushed_len: u64,
}

#[derive(Debug)]
struct WriterStream {
    stream: Arc<Stream>,
    dir_ready: bool,
    /// `None` after a failure: the next append starts a fresh segment.
    active: Option<Active>,
    /// Next sequence number to assign. Numbers of failed appends are not reused.
    next_seq: Seq,
    last_used: u64,
}

/// What one stream's part of a batch did, pending sync.
#[derive(Default)]
struct Staged {
    positions: Vec<Vec<Seq>>,
    files: Vec<Arc<dyn FileHandle>>,
    sync_dir: bool,
    sealed: Vec<SegmentMeta>,
    created: Vec<SegmentId>,
    written: u64,
    /// The active segment before the batch.
    before: Option<Before>,
}

/// The active segment as it was before a batch: what a rollback cuts back to.
struct Before {
    id: SegmentId,
    committed_len: u64,
    file: Option<Arc<dyn FileHandle>>,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    streams: HashMap<StreamName, WriterStream>,
    pool: SyncPool,
    dirty_files: HashMap<usize, Arc<dyn FileHandle>>,
    dirty_dirs: Vec<std::path::PathBuf>,
    batch_no: u64,
}

impl Writer {
    pub fn spawn(shared: Arc<Shared>, rx: mpsc::Receiver<Command>) -> io::Result<JoinHandle<()>> {
        let pool = SyncPool::new(Arc::clone(&shared.fs), shared.config.sync_threads)?;
        let writer = Writer {
            shared,
            streams: HashMap::new(),
            pool,
            dirty_files: HashMap::new(),
            dirty_dirs: Vec::new(),
            batch_no: 0,
        };
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let cfg = self.shared.config.clone();
        let interval = match cfg.fsync {
            FsyncPolicy::Interval(d) => Some(d),
            _ => None,
        };
        let mut next_checkpoint = Instant::now() + cfg.checkpoint_interval;
        let mut next_sync = interval.map(|d| Instant::now() + d);
        loop {
            let deadline = next_sync.map_or(next_checkpoint, |s| s.min(next_checkpoint));
            let timeout = deadline.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(timeout) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut appends = Vec::new();
            let mut flushes = Vec::new();
            let mut bytes = 0u64;
            let mut next = first;
            while let Some(cmd) = next {
                match cmd {
                    Command::Append(r) => {
                        bytes += r.bytes;
                        appends.push(r);
                    }
                    Command::Flush(reply) => flushes.push(reply),
                }
                next = if bytes < cfg.max_batch_bytes as u64 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !appends.is_empty() {
                self.commit(appends);
            }
            let now = Instant::now();
            let mut result = Ok(());
            if next_sync.is_some_and(|s| now >= s) || !flushes.is_empty() {
                result = self.sync_dirty();
                next_sync = interval.map(|d| now + d);
            }
            if now >= next_checkpoint || !flushes.is_empty() {
                let r = self.checkpoint_all();
                result = result.and(r);
                next_checkpoint = Instant::now() + cfg.checkpoint_interval;
            }
            for reply in flushes {
                let r = result.as_ref().map_err(|e| FlushError::Io {
                    source: Arc::new(io::Error::new(e.kind(), e.to_string())),
                });
                let _ = reply.send(r.copied());
            }
        }
        // Shutdown: last sync and checkpoint.
        if let Err(e) = self.sync_dirty().and(self.checkpoint_all()) {
            tracing::warn!("spool: final sync on close failed: {e}");
        }
    }

    fn writer_stream(&mut self, stream: &Arc<Stream>) -> &mut WriterStream {
        let fs = Arc::clone(&self.shared.fs);
        self.streams.entry(stream.name.clone()).or_insert_with(|| {
            let st = stream.state.lock();
            let active = st.segments.back().map(|meta| Active {
                meta: meta.clone(),
                file: None,
                flushed_len: meta.len,
            });
            WriterStream {
                stream: Arc::clone(stream),
                dir_ready: !st.segments.is_empty() || fs.exists(&stream.dir),
                active,
                next_seq: st.next_seq,
                last_used: 0,
            }
        })
    }

    /// One group commit.
    fn commit(&mut self, requests: Vec<AppendRequest>) {
        self.batch_no += 1;
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        counters.group_commits.fetch_add(1, Ordering::Relaxed);
        // Group by stream, keeping arrival order within each stream.
        let mut order: Vec<StreamName> = Vec::new();
        let mut groups: HashMap<StreamName, Vec<AppendRequest>> = HashMap::new();
        for r in requests {
            let name = r.stream.name.clone();
            groups.entry(name.clone()).or_insert_with(|| {
                order.push(name);
                Vec::new()
            });
            groups.get_mut(&r.stream.name).expect("inserted").push(r);
        }
        let mut staged: Vec<(StreamName, Vec<AppendRequest>, Staged)> = Vec::new();
        for name in order {
            let reqs = groups.remove(&name).expect("grouped");
            let stream = Arc::clone(&reqs[0].stream);
            let batch_no = self.batch_no;
            let shared = Arc::clone(&self.shared);
            let ws = self.writer_stream(&stream);
            ws.last_used = batch_no;
            let mut st = Staged::default();
            match write_group(&shared, ws, &reqs, &mut st) {
                Ok(()) => staged.push((name, reqs, st)),
                Err(e) => {
                    rollback(&shared, ws, st);
                    fail(&shared, reqs, &e);
                }
            }
        }
        // Sync (Always) or remember as dirty.
        let mut failed: Vec<Option<io::Error>> = staged.iter().map(|_| None).collect();
        if self.shared.config.fsync == FsyncPolicy::Always {
            let mut jobs = Vec::new();
            let mut owner = Vec::new();
            for (i, (name, _, st)) in staged.iter().enumerate() {
                for f in &st.files {
                    jobs.push(SyncJob::File(Arc::clone(f)));
                    owner.push(i);
                }
                if st.sync_dir {
                    jobs.push(SyncJob::Dir(self.shared.streams_dir.join(name.as_str())));
                    owner.push(i);
                }
            }
            let files = jobs
                .iter()
                .filter(|j| matches!(j, SyncJob::File(_)))
                .count();
            let use_syncfs = self
                .shared
                .config
                .syncfs_min_files
                .is_some_and(|min| files >= min);
            if use_syncfs {
                counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self.shared.fs.sync_filesystem(&self.shared.dir) {
                    for f in &mut failed {
                        f.get_or_insert(io::Error::new(e.kind(), e.to_string()));
                    }
                }
            } else {
                counters
                    .fsyncs
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for (r, i) in self.pool.run_all(&jobs).into_iter().zip(owner) {
                    if let Err(e) = r {
                        failed[i].get_or_insert(e);
                    }
                }
            }
        } else {
            for (name, _, st) in &staged {
                for f in &st.files {
                    self.dirty_files
                        .insert(Arc::as_ptr(f) as *const () as usize, Arc::clone(f));
                }
                if st.sync_dir {
                    self.dirty_dirs
                        .push(self.shared.streams_dir.join(name.as_str()));
                }
            }
        }
        for ((name, reqs, st), err) in staged.into_iter().zip(failed) {
            let shared = Arc::clone(&self.shared);
            let ws = self.streams.get_mut(&name).expect("writer stream");
            match err {
                Some(e) => {
                    tracing::warn!(stream = %name, "spool: sync failed, appends refused: {e}");
                    rollback(&shared, ws, st);
                    fail(&shared, reqs, &e);
                }
                None => publish(&shared, ws, reqs, st),
            }
        }
        self.close_idle_files();
    }

    fn close_idle_files(&mut self) {
        // Counting is O(streams): do it every 64 commits only.
        if self.batch_no % 64 != 0 || self.streams.len() <= MAX_OPEN_FILES {
            return;
        }
        let open = self
            .streams
            .values()
            .filter(|w| w.active.as_ref().is_some_and(|a| a.file.is_some()));
        if open.count() <= MAX_OPEN_FILES {
            return;
        }
        let mut by_age: Vec<(u64, StreamName)> = self
            .streams
            .values()
            .filter(|w| w.active.as_ref().is_some_and(|a| a.file.is_some()))
            .map(|w| (w.last_used, w.stream.name.clone()))
            .collect();
        by_age.sort();
        for (_, name) in by_age.into_iter().take(MAX_OPEN_FILES / 4) {
            if let Some(a) = self.streams.get_mut(&name).and_then(|w| w.active.as_mut()) {
                a.file = None; // dirty handles stay alive in `dirty_files` until synced
            }
        }
    }

    /// Syncs everything written but not yet synced (Interval/Never policies).
    fn sync_dirty(&mut self) -> io::Result<()> {
        let mut jobs: Vec<SyncJob> = self
            .dirty_files
            .drain()
            .map(|(_, f)| SyncJob::File(f))
            .collect();
        self.dirty_dirs.sort();
        self.dirty_dirs.dedup();
        jobs.extend(self.dirty_dirs.drain(..).map(SyncJob::Dir));
        self.shared
            .counters
            .fsyncs
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let mut first_err = Ok(());
        for (job, r) in jobs.iter().zip(self.pool.run_all(&jobs)) {
            if let Err(e) = r {
                // Keep it dirty: the next sync tries again.
                match job {
                    SyncJob::File(f) => {
                        self.dirty_files
                            .insert(Arc::as_ptr(f) as *const () as usize, Arc::clone(f));
                    }
                    SyncJob::Dir(d) => self.dirty_dirs.push(d.clone()),
                }
                if first_err.is_ok() {
                    first_err = Err(e);
                }
            }
        }
        first_err
    }

    /// Writes the checkpoint of every stream whose acknowledged prefix moved, then deletes the
    /// segments each durable checkpoint frees. Never deletes before the checkpoint is durable.
    fn checkpoint_all(&mut self) -> io::Result<()> {
        let streams: Vec<Arc<Stream>> = self.shared.streams.read().values().cloned().collect();
        let fs = self.shared.fs.as_ref();
        let mut first_err = Ok(());
        for stream in streams {
            let (ckpt, dirty) = {
                let st = stream.state.lock();
                let c = st.acks.checkpoint();
                let dirty = c != st.durable;
                (c, dirty)
            };
            if dirty && fs.exists(&stream.dir) {
                match checkpoint::write_durable(fs, &stream.dir, &ckpt) {
                    Ok(()) => {
                        self.shared
                            .counters
                            .checkpoints_written
                            .fetch_add(1, Ordering::Relaxed);
                        stream.state.lock().durable = ckpt;
                    }
                    Err(e) => {
                        tracing::warn!(stream = %stream.name, "spool: checkpoint failed: {e}");
                        if first_err.is_ok() {
                            first_err = Err(e);
                        }
                        continue;
                    }
                }
            }
            let freed: Vec<SegmentMeta> = {
                let mut st = stream.state.lock();
                let n = st.freeable(st.durable.acked_upto);
                st.segments.drain(..n).collect()
            };
            for seg in freed {
                match fs.remove_file(&stream.dir.join(seg.id.file_name())) {
                    Ok(()) => {
                        self.shared.used_bytes.fetch_sub(seg.len, Ordering::AcqRel);
                        self.shared
                            .counters
                            .segments_deleted
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    // Recovery deletes it at the next open (it is below the checkpoint).
                    Err(e) => tracing::warn!(stream = %stream.name, "spool: unlink failed: {e}"),
                }
            }
        }
        first_err
    }
}

/// Encodes and writes one stream's requests. On error the caller rolls back.
fn write_group(
    shared: &Shared,
    ws: &mut WriterStream,
    reqs: &[AppendRequest],
    out: &mut Staged,
) -> io::Result<()> {
    let fs = shared.fs.as_ref();
    let cfg = &shared.config;
    out.before = ws.active.as_ref().map(|a| Before {
        id: a.meta.id,
        committed_len: a.meta.len,
        file: a.file.clone(),
    });
    if !ws.dir_ready {
        fs.create_dir_all(&ws.stream.dir)?;
        fs.sync_dir(&shared.streams_dir)?;
        ws.dir_ready = true;
    }
    if ws.active.is_none() {
        roll(shared, ws, out)?;
    }
    let now = crate::types::now_ms();
    let mut buf = Vec::with_capacity(reqs.iter().map(|r| r.bytes as usize).sum());
    for req in reqs {
        let mut seqs = Vec::with_capacity(req.records.len());
        for rec in &req.records {
            let total = encoded_len(rec.payload.len()) as u64;
            let active = ws.active.as_mut().expect("active segment");
            if active.meta.len + total > cfg.segment_bytes && active.meta.records > 0 {
                flush_buf(fs, &ws.stream, active, &mut buf, out)?;
                roll(shared, ws, out)?;
            }
            let active = ws.active.as_mut().expect("active segment");
            let seq = ws.next_seq;
            let offset = active.meta.len;
            encode_record(
                &mut buf,
                &RecordHeader {
                    seq,
                    timestamp_ms: now,
                    tag: rec.tag,
                },
                &rec.payload,
            );
            active
                .meta
                .note_record(seq, now, offset, total, cfg.index_interval_bytes);
            ws.next_seq = seq.next();
            seqs.push(seq);
        }
        out.positions.push(seqs);
    }
    let active = ws.active.as_mut().expect("active segment");
    flush_buf(fs, &ws.stream, active, &mut buf, out)
}

fn flush_buf(
    fs: &dyn crate::fs::FileSystem,
    stream: &Stream,
    active: &mut Active,
    buf: &mut Vec<u8>,
    out: &mut Staged,
) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let file = match &active.file {
        Some(f) => Arc::clone(f),
        None => {
            let f = fs.open_rw(&stream.dir.join(active.meta.id.file_name()))?;
            active.file = Some(Arc::clone(&f));
            f
        }
    };
    write_all_at(file.as_ref(), buf, active.flushed_len)?;
    active.flushed_len += buf.len() as u64;
    out.written += buf.len() as u64;
    if !out.files.iter().any(|f| Arc::ptr_eq(f, &file)) {
        out.files.push(file);
    }
    buf.clear();
    Ok(())
}

/// Seals the active segment (if any) and starts a new one at the next sequence number.
fn roll(shared: &Shared, ws: &mut WriterStream, out: &mut Staged) -> io::Result<()> {
    let fs = shared.fs.as_ref();
    let id = SegmentId(ws.next_seq.0);
    let file = match segment::create(fs, &ws.stream.dir, id) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a failed batch whose cleanup failed: it holds nothing acknowledged.
            let f = fs.create_truncate(&ws.stream.dir.join(id.file_name()))?;
            let header = crate::format::SegmentHeader {
                first_seq: Seq(id.0),
                created_ms: 0,
            };
            write_all_at(f.as_ref(), &header.encode(), 0)?;
            f
        }
        other => other?,
    };
    out.created.push(id);
    out.sync_dir = true;
    out.written += SEGMENT_HEADER_LEN as u64;
    out.files.push(Arc::clone(&file));
    if let Some(old) = ws.active.take() {
        out.sealed.push(old.meta);
    }
    ws.active = Some(Active {
        meta: SegmentMeta::new(id),
        file: Some(file),
        flushed_len: SEGMENT_HEADER_LEN as u64,
    });
    Ok(())
}

/// Undoes a failed batch as far as possible: cut the old active segment back to its committed
/// length, remove segments created in the batch, and start a fresh segment at the next append
/// (sequence numbers of the failed records are not reused).
fn rollback(shared: &Shared, ws: &mut WriterStream, st: Staged) {
    let fs = shared.fs.as_ref();
    shared
        .counters
        .failed_commits
        .fetch_add(1, Ordering::Relaxed);
    if let Some(Before {
        id,
        committed_len: len,
        file,
    }) = st.before
    {
        let file = file
            .map(Ok)
            .unwrap_or_else(|| fs.open_rw(&ws.stream.dir.join(id.file_name())));
        if let Err(e) = file.and_then(|f| f.set_len(len).and_then(|_| f.sync_data())) {
            tracing::warn!(stream = %ws.stream.name, "spool: truncate after failure failed: {e}");
        }
    }
    for id in &st.created {
        let _ = fs.remove_file(&ws.stream.dir.join(id.file_name()));
    }
    if !st.created.is_empty() {
        let _ = fs.sync_dir(&ws.stream.dir);
    }
    ws.active = None;
}

fn fail(shared: &Shared, reqs: Vec<AppendRequest>, e: &io::Error) {
    for r in reqs {
        shared.pending_bytes.fetch_sub(r.bytes, Ordering::AcqRel);
        let copy = io::Error::new(e.kind(), e.to_string());
        let copy = match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => copy,
        };
        let _ = r.reply.send(Err(AppendError::from_io(copy)));
    }
}

/// Makes a committed batch visible to readers and completes its waiters.
fn publish(shared: &Shared, ws: &mut WriterStream, reqs: Vec<AppendRequest>, st: Staged) {
    let active = ws.active.as_ref().expect("active after success");
    {
        let mut state = ws.stream.state.lock();
        for meta in st.sealed.iter().chain(std::iter::once(&active.meta)) {
            match state.segments.back_mut() {
                Some(last) if last.id == meta.id => *last = meta.clone(),
                _ => state.segments.push_back(meta.clone()),
            }
        }
        state.next_seq = ws.next_seq;
    }
    ws.stream.notify.notify_one();
    shared.used_bytes.fetch_add(st.written, Ordering::AcqRel);
    let mut records = 0;
    for (r, seqs) in reqs.into_iter().zip(st.positions) {
        shared.pending_bytes.fetch_sub(r.bytes, Ordering::AcqRel);
        records += seqs.len() as u64;
        let name = &r.stream.name;
        let positions = seqs
            .into_iter()
            .map(|seq| Position {
                stream: name.clone(),
                seq,
            })
            .collect();
        let _ = r.reply.send(Ok(positions));
    }
    shared
        .counters
        .appended_records
        .fetch_add(records, Ordering::Relaxed);
}
