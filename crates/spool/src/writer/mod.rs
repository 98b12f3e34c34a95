//! The writer thread: pipelined group commit.
//!
//! The writer takes every queued append, writes each stream's records with one positional write
//! per touched segment, and hands the syncs of that *batch* (one `fdatasync` per touched file,
//! and the directory of any new segment, or one `syncfs`) to the sync pool. Without waiting, it
//! can write the next batch while the first one's syncs run; at most `commits_in_flight` batches
//! are in flight. The pool reports completion on the command channel; batches are finished
//! strictly in order: on success the records are published to readers and their waiters
//! completed, on failure the stream is cut back and its waiters get the error, and so do the
//! stream's appends in later in-flight batches (their bytes follow the failed ones).
//!
//! Between batches the writer syncs what the Interval/Never policies left dirty, writes
//! checkpoints and deletes the segments they free. A flush is a barrier in the queue: it runs
//! when everything before it is finished.

mod group;
mod upkeep;

use crate::fs::FileHandle;
use crate::segment::SegmentMeta;
use crate::spool::Shared;
use crate::stream::Stream;
use crate::sync_pool::{self, SyncJob, SyncPool};
use crate::{AppendError, FlushError, FsyncPolicy, RecordIn, Seq, StreamName};
use group::Staged;
use std::collections::{HashMap, VecDeque};
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
    /// From the sync pool: the syncs of batch `id` finished.
    Synced {
        id: u64,
        results: Vec<io::Result<()>>,
    },
    /// The last `Spool` handle is gone: finish everything queued, then stop.
    Shutdown,
}

pub(crate) struct AppendRequest {
    pub stream: Arc<Stream>,
    pub records: Vec<RecordIn>,
    /// Encoded bytes reserved in `pending_bytes`.
    pub bytes: u64,
    /// The sequence number of the first record; the others follow it without gaps.
    pub reply: oneshot::Sender<Result<Seq, AppendError>>,
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

/// One stream's part of a batch.
struct Group {
    name: StreamName,
    reqs: Vec<AppendRequest>,
    staged: Staged,
    /// Failed already because an earlier batch of the same stream failed.
    poisoned: bool,
}

/// A batch written, whose syncs are running.
struct Batch {
    id: u64,
    groups: Vec<Group>,
    /// For each sync job, the group it belongs to (`None`: all groups, e.g. `syncfs`).
    owner: Vec<Option<usize>>,
    results: Option<Vec<io::Result<()>>>,
}

/// Queue entries waiting to be staged: appends, and flushes as barriers.
enum Queued {
    Append(AppendRequest),
    Flush(oneshot::Sender<Result<(), FlushError>>),
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    streams: HashMap<StreamName, WriterStream>,
    pool: SyncPool,
    in_flight: VecDeque<Batch>,
    dirty_files: HashMap<usize, Arc<dyn FileHandle>>,
    dirty_dirs: Vec<std::path::PathBuf>,
    batch_no: u64,
}

impl Writer {
    pub fn spawn(
        shared: Arc<Shared>,
        tx: mpsc::Sender<Command>,
        rx: mpsc::Receiver<Command>,
    ) -> io::Result<JoinHandle<()>> {
        let pool = SyncPool::new(
            Arc::clone(&shared.fs),
            shared.config.sync_threads,
            shared.config.on_sync.clone(),
        )?;
        let writer = Writer {
            shared,
            tx,
            streams: HashMap::new(),
            pool,
            in_flight: VecDeque::new(),
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
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut queued_bytes = 0u64;
        let mut shutting_down = false;
        loop {
            // 1. Wait for something to do (or take what is there without waiting).
            let ready = match queue.front() {
                Some(Queued::Append(_)) => self.in_flight.len() < cfg.commits_in_flight,
                Some(Queued::Flush(_)) => self.in_flight.is_empty(),
                None => false,
            };
            let first = if ready {
                rx.try_recv().ok()
            } else {
                let deadline = next_sync.map_or(next_checkpoint, |s| s.min(next_checkpoint));
                let timeout = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(timeout) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    // Cannot happen while we hold a sender; stop cleanly anyway.
                    Err(mpsc::RecvTimeoutError::Disconnected) => Some(Command::Shutdown),
                }
            };
            let mut next = first;
            while let Some(cmd) = next {
                match cmd {
                    Command::Append(r) => {
                        queued_bytes += r.bytes;
                        queue.push_back(Queued::Append(r));
                    }
                    Command::Flush(reply) => queue.push_back(Queued::Flush(reply)),
                    Command::Synced { id, results } => {
                        if let Some(b) = self.in_flight.iter_mut().find(|b| b.id == id) {
                            b.results = Some(results);
                        }
                    }
                    Command::Shutdown => shutting_down = true,
                }
                next = if queued_bytes < cfg.max_batch_bytes as u64 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            // 2. Finish synced batches, in order.
            self.finish_synced();
            // 3. A flush runs once everything before it is finished.
            while matches!(queue.front(), Some(Queued::Flush(_))) && self.in_flight.is_empty() {
                let Some(Queued::Flush(reply)) = queue.pop_front() else {
                    unreachable!()
                };
                let result = self.sync_dirty().and(self.checkpoint_all());
                next_checkpoint = Instant::now() + cfg.checkpoint_interval;
                let _ = reply.send(result.map_err(|e| FlushError::Io {
                    source: Arc::new(e),
                }));
            }
            // 4. Write the next batch while earlier ones sync.
            if self.in_flight.len() < cfg.commits_in_flight
                && matches!(queue.front(), Some(Queued::Append(_)))
            {
                let mut appends = Vec::new();
                let mut bytes = 0u64;
                while let Some(Queued::Append(r)) = queue.front() {
                    if bytes > 0 && bytes + r.bytes > cfg.max_batch_bytes as u64 {
                        break;
                    }
                    bytes += r.bytes;
                    let Some(Queued::Append(r)) = queue.pop_front() else {
                        unreachable!()
                    };
                    appends.push(r);
                }
                queued_bytes -= bytes;
                self.stage(appends);
                self.finish_synced();
            }
            // 5. Timers.
            let now = Instant::now();
            if next_sync.is_some_and(|s| now >= s) {
                if let Err(e) = self.sync_dirty() {
                    tracing::warn!("spool: interval sync failed: {e}");
                }
                next_sync = interval.map(|d| now + d);
            }
            if now >= next_checkpoint {
                if let Err(e) = self.checkpoint_all() {
                    tracing::warn!("spool: checkpoint failed: {e}");
                }
                next_checkpoint = Instant::now() + cfg.checkpoint_interval;
            }
            if shutting_down && queue.is_empty() && self.in_flight.is_empty() {
                break;
            }
        }
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

    /// Writes one batch and starts its syncs.
    fn stage(&mut self, requests: Vec<AppendRequest>) {
        self.batch_no += 1;
        let id = self.batch_no;
        let shared = Arc::clone(&self.shared);
        shared
            .counters
            .group_commits
            .fetch_add(1, Ordering::Relaxed);
        let mut order: Vec<StreamName> = Vec::new();
        let mut by_stream: HashMap<StreamName, Vec<AppendRequest>> = HashMap::new();
        for r in requests {
            let name = r.stream.name.clone();
            by_stream.entry(name.clone()).or_insert_with(|| {
                order.push(name.clone());
                Vec::new()
            });
            by_stream.get_mut(&name).expect("inserted").push(r);
        }
        let mut groups = Vec::new();
        for name in order {
            let reqs = by_stream.remove(&name).expect("grouped");
            let stream = Arc::clone(&reqs[0].stream);
            let ws = self.writer_stream(&stream);
            ws.last_used = id;
            let mut staged = Staged::default();
            match group::write_group(&shared, ws, &reqs, &mut staged) {
                Ok(()) => groups.push(Group {
                    name,
                    reqs,
                    staged,
                    poisoned: false,
                }),
                Err(e) => {
                    group::rollback(&shared, ws, &mut staged);
                    group::fail(&shared, reqs, &e);
                }
            }
        }
        let mut jobs = Vec::new();
        let mut owner = Vec::new();
        if shared.config.fsync == FsyncPolicy::Always {
            let files: usize = groups.iter().map(|g| g.staged.files.len()).sum();
            if shared
                .config
                .syncfs_min_files
                .is_some_and(|min| files >= min)
            {
                jobs.push(SyncJob::Filesystem(shared.dir.clone()));
                owner.push(None);
            } else {
                for (i, g) in groups.iter().enumerate() {
                    for f in &g.staged.files {
                        jobs.push(SyncJob::File(Arc::clone(f)));
                        owner.push(Some(i));
                    }
                    if g.staged.sync_dir {
                        jobs.push(SyncJob::Dir(g.reqs[0].stream.dir.clone()));
                        owner.push(Some(i));
                    }
                }
            }
        } else {
            for g in &groups {
                for f in &g.staged.files {
                    self.dirty_files
                        .insert(Arc::as_ptr(f) as *const () as usize, Arc::clone(f));
                }
                if g.staged.sync_dir {
                    self.dirty_dirs.push(g.reqs[0].stream.dir.clone());
                }
            }
        }
        shared
            .counters
            .fsyncs
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        if self.in_flight.is_empty() && jobs.len() <= 1 {
            // Nothing else in flight and one sync: run it here, sparing two thread hand-offs
            // (the latency of a lone writer). Appends arriving meanwhile form the next batch.
            let results = jobs
                .iter()
                .map(|j| sync_pool::run(shared.fs.as_ref(), shared.config.on_sync.as_ref(), j))
                .collect();
            self.in_flight.push_back(Batch {
                id,
                groups,
                owner,
                results: Some(results),
            });
            return;
        }
        self.in_flight.push_back(Batch {
            id,
            groups,
            owner,
            results: None,
        });
        let tx = self.tx.clone();
        self.pool.submit(
            jobs,
            Box::new(move |results| {
                let _ = tx.send(Command::Synced { id, results });
            }),
        );
    }

    /// Finishes the synced batches at the front of the pipeline, in order.
    fn finish_synced(&mut self) {
        while self.in_flight.front().is_some_and(|b| b.results.is_some()) {
            let batch = self.in_flight.pop_front().expect("front");
            self.finish(batch);
        }
    }

    /// Publishes or fails a synced batch (the oldest in flight).
    fn finish(&mut self, batch: Batch) {
        let shared = Arc::clone(&self.shared);
        let results = batch.results.expect("synced");
        let mut errors: Vec<Option<io::Error>> = batch.groups.iter().map(|_| None).collect();
        for (r, owner) in results.into_iter().zip(&batch.owner) {
            let Err(e) = r else { continue };
            match owner {
                Some(i) => {
                    errors[*i].get_or_insert(e);
                }
                None => {
                    for slot in &mut errors {
                        slot.get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
                    }
                }
            }
        }
        for (mut g, err) in batch.groups.into_iter().zip(errors) {
            if g.poisoned {
                continue;
            }
            let ws = self.streams.get_mut(&g.name).expect("writer stream");
            match err {
                None => group::publish(&shared, &ws.stream, g.reqs, g.staged),
                Some(e) => {
                    tracing::warn!(stream = %g.name, "spool: sync failed, appends refused: {e}");
                    group::rollback(&shared, ws, &mut g.staged);
                    group::fail(&shared, g.reqs, &e);
                    // Later batches of this stream wrote after the failed bytes: fail them too.
                    for later in &mut self.in_flight {
                        for lg in later.groups.iter_mut().filter(|lg| lg.name == g.name) {
                            if !lg.poisoned {
                                lg.poisoned = true;
                                group::remove_created(&shared, ws, &lg.staged);
                                group::fail(&shared, std::mem::take(&mut lg.reqs), &e);
                            }
                        }
                    }
                }
            }
        }
        self.close_idle_files();
    }
}
