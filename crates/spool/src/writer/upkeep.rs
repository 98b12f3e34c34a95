//! The writer's housekeeping between commits: syncing what the Interval/Never policies left
//! dirty, checkpointing, deleting freed segments, closing idle files.

use super::{MAX_OPEN_FILES, Writer};
use crate::StreamName;
use crate::checkpoint;
use crate::segment::SegmentMeta;
use crate::stream::Stream;
use crate::sync_pool::SyncJob;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Writer {
    pub(super) fn close_idle_files(&mut self) {
        // Counting is O(streams): do it every 64 commits only.
        if self.batch_no % 64 != 0 || self.streams.len() <= MAX_OPEN_FILES {
            return;
        }
        let is_open =
            |w: &&super::WriterStream| w.active.as_ref().is_some_and(|a| a.file.is_some());
        if self.streams.values().filter(is_open).count() <= MAX_OPEN_FILES {
            return;
        }
        let mut by_age: Vec<(u64, StreamName)> = self
            .streams
            .values()
            .filter(is_open)
            .map(|w| (w.last_used, w.stream.name.clone()))
            .collect();
        by_age.sort();
        for (_, name) in by_age.into_iter().take(MAX_OPEN_FILES / 4) {
            if let Some(a) = self.streams.get_mut(&name).and_then(|w| w.active.as_mut()) {
                // Batches in flight and `dirty_files` keep their own handle until synced.
                a.file = None;
            }
        }
    }

    /// Syncs everything written but not yet synced (Interval/Never policies).
    pub(super) fn sync_dirty(&mut self) -> io::Result<()> {
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
        for (job, r) in jobs.iter().zip(self.pool.run_all(jobs.clone())) {
            if let Err(e) = r {
                // Keep it dirty: the next sync tries again.
                match job {
                    SyncJob::File(f) => {
                        self.dirty_files
                            .insert(Arc::as_ptr(f) as *const () as usize, Arc::clone(f));
                    }
                    SyncJob::Dir(d) => self.dirty_dirs.push(d.clone()),
                    SyncJob::Filesystem(_) => {}
                }
                if first_err.is_ok() {
                    first_err = Err(e);
                }
            }
        }
        first_err
    }

    /// Writes the checkpoint of every stream whose acknowledged prefix moved, then deletes the
    /// segments each durable checkpoint frees. Never deletes before the checkpoint is durable,
    /// never the last published segment (batches in flight only write to it or to newer ones).
    pub(super) fn checkpoint_all(&mut self) -> io::Result<()> {
        let streams: Vec<Arc<Stream>> = self.shared.streams.read().values().cloned().collect();
        let fs = self.shared.fs.as_ref();
        let counters = &self.shared.counters;
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
                        counters.checkpoints_written.fetch_add(1, Ordering::Relaxed);
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
                        counters.segments_deleted.fetch_add(1, Ordering::Relaxed);
                    }
                    // Recovery deletes it at the next open (it is below the checkpoint).
                    Err(e) => tracing::warn!(stream = %stream.name, "spool: unlink failed: {e}"),
                }
            }
        }
        first_err
    }
}
