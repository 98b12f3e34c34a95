//! Configuration: durability, sizes, recovery, and the sync observer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// When appended bytes are made durable. Mirrors mrecordlog's `PersistPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// An append completes only after the `fdatasync` that covers it returned (group commit: one
    /// fdatasync per touched file per batch). Spillway's default, and what G1 requires.
    Always,
    /// An append completes once written to the page cache; dirty files are fdatasync'd at this
    /// interval. A crash loses at most about this much acknowledged data.
    Interval(Duration),
    /// Appends complete once written; data is fdatasync'd only by `Spool::flush` and at close.
    /// Checkpoints are still fsync'd before segments are deleted.
    Never,
}

/// What recovery at open does with a corrupt record in the middle of a segment. Whatever the
/// mode, opening never fails because of damage: damage is repaired and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Keep every record whose checksum is valid, also those after the damage (found by scanning
    /// forward for the next valid record with a plausible sequence number). The damaged file goes
    /// to `quarantine/` with a JSON report of what was lost. The default.
    #[default]
    TolerateAnyCorruption,
    /// Keep the records before the first damage only; the rest of that segment goes to
    /// `quarantine/` with the report. Later segments of the stream are kept.
    TolerateTailCorruption,
}

/// Spool configuration. `SpoolConfig::default()` is a sensible production start.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Durability of appends.
    pub fsync: FsyncPolicy,
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// Disk bytes all segments may use together; an append beyond fails with `Full`.
    pub capacity_bytes: u64,
    /// Largest payload accepted.
    pub max_record_bytes: usize,
    /// Bytes of appends accepted but not yet written; beyond, appends fail with `Overloaded`.
    pub max_pending_bytes: usize,
    /// Most bytes one group commit writes before syncing.
    pub max_batch_bytes: usize,
    /// How often acknowledged progress is checkpointed (and freed segments deleted).
    pub checkpoint_interval: Duration,
    /// Threads that issue `fdatasync` in parallel when a batch touches several files.
    pub sync_threads: usize,
    /// Group commits whose syncs may run at the same time (pipelining: the writer writes batch
    /// N+1 while batch N's fdatasync runs; results are still published in order). 1, the
    /// default, disables it: on the 2-core benchmark machine two in flight was not measurably
    /// faster (see `docs/benchmarks.md`); try 2 on machines with more cores or faster disks.
    pub commits_in_flight: usize,
    /// When one group commit touches at least this many files (many streams), make them durable
    /// with one `syncfs(2)` of the spool's filesystem instead of one `fdatasync` per file (about
    /// 4× faster for 64 files here). `syncfs` also flushes everything else written on that
    /// filesystem, so enable it when the spool has a filesystem of its own. Needs Linux ≥ 5.8
    /// (earlier kernels do not report write-back errors from `syncfs`). `None`: never.
    pub syncfs_min_files: Option<usize>,
    /// Bytes between two entries of a segment's sparse in-memory index.
    pub index_interval_bytes: u64,
    /// Recovery of corrupt segments at open.
    pub recovery: RecoveryMode,
    /// Called after every sync the writer makes for appends (see [`SyncObserver`]), e.g. to
    /// export an fsync latency histogram. `None`: nothing is measured.
    pub on_sync: Option<SyncObserver>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 * 1024 * 1024,
            capacity_bytes: 10 * 1024 * 1024 * 1024,
            max_record_bytes: 8 * 1024 * 1024,
            max_pending_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
            sync_threads: 32,
            commits_in_flight: 1,
            syncfs_min_files: None,
            index_interval_bytes: 256 * 1024,
            recovery: RecoveryMode::default(),
            on_sync: None,
        }
    }
}

/// What was made durable by one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// `fdatasync` of a segment file.
    File,
    /// fsync of a stream directory (after a segment file was created).
    Directory,
    /// One `syncfs(2)` of the spool's filesystem, instead of a file sync per touched file
    /// (see [`SpoolConfig::syncfs_min_files`]).
    Filesystem,
}

/// One sync the writer made: what, how long it took, whether it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncEvent {
    /// What was synced.
    pub kind: SyncKind,
    /// Wall time of the system call.
    pub duration: Duration,
    /// Whether it succeeded (a failed sync fails the appends it covered).
    pub ok: bool,
}

/// A callback observing every sync the writer makes for appends: with
/// [`FsyncPolicy::Always`], each `fdatasync`, directory fsync or `syncfs` of a group commit
/// (the syncs of one commit may run in parallel, one event each); with the other policies,
/// each sync of dirty files. Checkpoint writes are not reported. Exactly one event per sync
/// counted in `SpoolStats::fsyncs`.
///
/// It runs on the writer thread or a sync thread, right after the system call, so it must be
/// cheap and must not block (a histogram observation or a counter is fine).
///
/// ```
/// use spillway_spool::{SpoolConfig, SyncObserver};
/// let config = SpoolConfig {
///     on_sync: Some(SyncObserver::new(|event| {
///         let _seconds = event.duration.as_secs_f64(); // histogram.observe(...)
///     })),
///     ..SpoolConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct SyncObserver(Arc<dyn Fn(&SyncEvent) + Send + Sync>);

impl SyncObserver {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&SyncEvent) + Send + Sync + 'static) -> SyncObserver {
        SyncObserver(Arc::new(f))
    }

    /// Reports one event.
    pub fn observe(&self, event: &SyncEvent) {
        (self.0)(event)
    }
}

impl fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncObserver(..)")
    }
}

impl SpoolConfig {
    /// Checks the values; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < 64 {
            return Err("segment_bytes must be at least 64".into());
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > crate::format::MAX_PAYLOAD_LEN {
            return Err(format!(
                "max_record_bytes must be 1..={}",
                crate::format::MAX_PAYLOAD_LEN
            ));
        }
        if !(1..=8).contains(&self.commits_in_flight) {
            return Err("commits_in_flight must be 1..=8".into());
        }
        if self.sync_threads == 0 {
            return Err("sync_threads must be at least 1".into());
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid_and_absurd_values_are_refused() {
        assert!(SpoolConfig::default().validate().is_ok());
        assert!(
            SpoolConfig {
                segment_bytes: 10,
                ..SpoolConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SpoolConfig {
                sync_threads: 0,
                ..SpoolConfig::default()
            }
            .validate()
            .is_err()
        );
        let huge = crate::format::MAX_PAYLOAD_LEN + 1;
        assert!(
            SpoolConfig {
                max_record_bytes: huge,
                ..SpoolConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
