//! Inspection for operators and the CLI: statistics of an open spool, and offline `inspect`,
//! `verify` (dry-run recovery: scans everything, changes nothing), `repair`, and `read_stream`
//! (the records of one stream, read-only).

use crate::format::{self, Decoded, RECORD_OVERHEAD, SEGMENT_HEADER_LEN};
use crate::fs::{FileSystem, RealFs, read_full_at};
use crate::recovery::{self, QUARANTINE_DIR, RecoveryReport};
use crate::segment::{SegmentMeta, Window};
use crate::{InspectError, OpenError, Seq, Spool, SpoolConfig, StreamName};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use crate::offline::StreamRecords;

/// One segment file.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentInfo {
    /// Path of the file.
    pub file: PathBuf,
    /// First sequence number it may hold.
    pub first_seq: u64,
    /// One past its last record.
    pub next_seq: u64,
    /// Records in it.
    pub records: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One stream's depth and files.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// Records not yet acknowledged (exact unless the stream has sequence gaps).
    pub records: u64,
    /// Bytes of its segment files (acknowledged records not yet deleted included).
    pub bytes: u64,
    /// Next sequence number to be assigned.
    pub next_seq: u64,
    /// Checkpoint: everything below is acknowledged.
    pub acked_upto: u64,
    /// Append time (ms since the epoch) of the oldest unacknowledged record.
    pub oldest_record_ms: Option<u64>,
    /// Its age in milliseconds, now.
    pub oldest_record_age_ms: Option<u64>,
    /// Size of the caller's blob in the checkpoint.
    pub checkpoint_meta_bytes: usize,
    /// Segment files, oldest first.
    pub segments: Vec<SegmentInfo>,
}

/// A file in `quarantine/` and its report.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    /// The quarantined segment.
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The JSON report written beside it, if readable.
    pub report: Option<serde_json::Value>,
}

/// Everything an operator needs to see about a spool directory.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// Streams, sorted by name.
    pub streams: Vec<StreamInfo>,
    /// Quarantined segments.
    pub quarantine: Vec<QuarantineEntry>,
    /// Bytes of all segments.
    pub used_bytes: u64,
    /// Problems found and what repair does about them (empty on an open spool: recovery ran).
    pub problems: RecoveryReport,
}

/// Live statistics of an open spool (cheap: no disk access except "oldest record" lookups,
/// which are cached per checkpoint position).
#[derive(Debug, Clone, Serialize)]
pub struct SpoolStats {
    /// Bytes of segment files.
    pub used_bytes: u64,
    /// Bytes of appends queued, not yet written.
    pub pending_bytes: u64,
    /// Configured capacity.
    pub capacity_bytes: u64,
    /// Unacknowledged records, all streams.
    pub records: u64,
    /// Per stream (segments left empty).
    pub streams: Vec<StreamInfo>,
    /// Records appended since open.
    pub appended_records: u64,
    /// Group commits since open.
    pub group_commits: u64,
    /// fdatasync/fsync calls for appends since open.
    pub fsyncs: u64,
    /// Group commits (per stream) that failed.
    pub failed_commits: u64,
    /// Checkpoints written.
    pub checkpoints_written: u64,
    /// Segments deleted.
    pub segments_deleted: u64,
}

impl Spool {
    /// Live statistics.
    pub fn stats(&self) -> SpoolStats {
        let shared = self.shared();
        let streams: Vec<_> = shared.streams.read().values().cloned().collect();
        let now = crate::types::now_ms();
        let mut infos = Vec::new();
        for stream in streams {
            let (records, bytes, next_seq, acked, meta_len, cached, segs) = {
                let st = stream.state.lock();
                let acked = st.acks.acked_upto();
                let cached = st
                    .oldest_cache
                    .filter(|(s, _)| *s == acked)
                    .map(|(_, ts)| ts);
                let segs = if cached.is_none() {
                    st.segments.clone()
                } else {
                    VecDeque::new()
                };
                (
                    st.depth(),
                    st.bytes(),
                    st.next_seq,
                    acked,
                    st.durable.meta.len(),
                    cached,
                    segs,
                )
            };
            let oldest = match cached {
                Some(ts) => ts,
                None => {
                    let ts = oldest_unacked(shared.fs.as_ref(), &stream.dir, &segs, acked);
                    stream.state.lock().oldest_cache = Some((acked, ts));
                    ts
                }
            };
            infos.push(StreamInfo {
                name: stream.name.to_string(),
                records,
                bytes,
                next_seq: next_seq.0,
                acked_upto: acked.0,
                oldest_record_ms: oldest,
                oldest_record_age_ms: oldest.map(|ts| now.saturating_sub(ts)),
                checkpoint_meta_bytes: meta_len,
                segments: Vec::new(),
            });
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        let c = &shared.counters;
        SpoolStats {
            used_bytes: shared.used_bytes.load(Ordering::Acquire),
            pending_bytes: shared.pending_bytes.load(Ordering::Acquire),
            capacity_bytes: shared.config.capacity_bytes,
            records: infos.iter().map(|i| i.records).sum(),
            streams: infos,
            appended_records: c.appended_records.load(Ordering::Relaxed),
            group_commits: c.group_commits.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            checkpoints_written: c.checkpoints_written.load(Ordering::Relaxed),
            segments_deleted: c.segments_deleted.load(Ordering::Relaxed),
        }
    }

    /// Inspection of the open spool: streams with their segment files, and the quarantine.
    pub fn inspect(&self) -> Inspection {
        let shared = self.shared();
        let stats = self.stats();
        let mut streams = stats.streams;
        for info in &mut streams {
            let Ok(name) = crate::StreamName::new(&info.name) else {
                continue;
            };
            if let Some(s) = shared.stream(&name) {
                let st = s.state.lock();
                info.segments = st
                    .segments
                    .iter()
                    .map(|m| segment_info(&s.dir, m))
                    .collect();
            }
        }
        Inspection {
            dir: shared.dir.clone(),
            streams,
            quarantine: list_quarantine(shared.fs.as_ref(), &shared.dir),
            used_bytes: stats.used_bytes,
            problems: RecoveryReport::default(),
        }
    }
}

fn segment_info(dir: &Path, m: &SegmentMeta) -> SegmentInfo {
    SegmentInfo {
        file: dir.join(m.id.file_name()),
        first_seq: m.id.0,
        next_seq: m.next_seq.0,
        records: m.records,
        bytes: m.len,
    }
}

/// Append time of the first record at or after `acked` (reads at most one index interval).
fn oldest_unacked(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &VecDeque<SegmentMeta>,
    acked: Seq,
) -> Option<u64> {
    let seg = segments
        .iter()
        .find(|s| s.next_seq > acked && s.records > 0)?;
    let start = if seg.id.0 <= acked.0 {
        seg.seek(acked)
    } else {
        SEGMENT_HEADER_LEN as u64
    };
    let file = fs.open_read(&dir.join(seg.id.file_name())).ok()?;
    let mut w = Window::new(file.as_ref(), seg.len);
    let mut offset = start;
    while offset < seg.len {
        let len = format::le_u32(w.get(offset, RECORD_OVERHEAD).ok()?) as usize;
        match format::decode_record(w.get(offset, format::FRAME_LEN + len).ok()?) {
            Decoded::Record {
                header, total_len, ..
            } => {
                if header.seq >= acked {
                    return Some(header.timestamp_ms);
                }
                offset += total_len as u64;
            }
            _ => return None,
        }
    }
    None
}

fn list_quarantine(fs: &dyn FileSystem, root: &Path) -> Vec<QuarantineEntry> {
    let qdir = root.join(QUARANTINE_DIR);
    let Ok(entries) = fs.read_dir(&qdir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !e.is_dir && !e.name.ends_with(".json"))
    {
        let file = qdir.join(&e.name);
        let bytes = fs.open_read(&file).and_then(|f| f.len()).unwrap_or(0);
        let report = fs
            .open_read(&recovery::json_path(&file))
            .ok()
            .and_then(|f| {
                let len = f.len().ok()? as usize;
                let mut buf = vec![0u8; len];
                read_full_at(f.as_ref(), &mut buf, 0).ok()?;
                serde_json::from_slice(&buf).ok()
            });
        out.push(QuarantineEntry {
            file,
            bytes,
            report,
        });
    }
    out
}

/// Offline inspection of a spool directory on the real filesystem. Read-only: it neither locks
/// nor repairs, so on a spool open elsewhere the live tail may show as a torn tail.
pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection, InspectError> {
    inspect_with_fs(&RealFs, dir.as_ref(), &SpoolConfig::default())
}

/// [`inspect`] on any filesystem.
pub fn inspect_with_fs(
    fs: &dyn FileSystem,
    dir: &Path,
    config: &SpoolConfig,
) -> Result<Inspection, InspectError> {
    let (streams, problems) =
        recovery::recover(fs, dir, config.recovery, config.index_interval_bytes, false).map_err(
            |source| InspectError::Io {
                path: dir.to_path_buf(),
                source,
            },
        )?;
    let now = crate::types::now_ms();
    let mut infos = Vec::new();
    for s in streams {
        let acked = s.checkpoint.acked_upto;
        let state_depth: u64 = s
            .segments
            .iter()
            .map(|m| {
                if m.id >= crate::SegmentId(acked.0) {
                    m.records
                } else {
                    m.records.min(m.next_seq.0.saturating_sub(acked.0))
                }
            })
            .sum();
        let oldest = oldest_unacked(fs, &s.dir, &s.segments, acked);
        infos.push(StreamInfo {
            name: s.name.to_string(),
            records: state_depth,
            bytes: s.segments.iter().map(|m| m.len).sum(),
            next_seq: s.next_seq.0,
            acked_upto: acked.0,
            oldest_record_ms: oldest,
            oldest_record_age_ms: oldest.map(|ts| now.saturating_sub(ts)),
            checkpoint_meta_bytes: s.checkpoint.meta.len(),
            segments: s.segments.iter().map(|m| segment_info(&s.dir, m)).collect(),
        });
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Inspection {
        dir: dir.to_path_buf(),
        used_bytes: infos.iter().map(|i| i.bytes).sum(),
        streams: infos,
        quarantine: list_quarantine(fs, dir),
        problems,
    })
}

/// Scans everything and reports, by severity, what recovery would do. Changes nothing.
pub fn verify(dir: impl AsRef<Path>) -> Result<RecoveryReport, InspectError> {
    verify_with_fs(&RealFs, dir.as_ref(), &SpoolConfig::default())
}

/// [`verify`] on any filesystem.
pub fn verify_with_fs(
    fs: &dyn FileSystem,
    dir: &Path,
    config: &SpoolConfig,
) -> Result<RecoveryReport, InspectError> {
    recovery::recover(fs, dir, config.recovery, config.index_interval_bytes, false)
        .map(|(_, report)| report)
        .map_err(|source| InspectError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Applies recovery (takes the lock, repairs, closes) and reports what was done.
pub fn repair(dir: impl AsRef<Path>, config: SpoolConfig) -> Result<RecoveryReport, OpenError> {
    repair_with_fs(dir.as_ref(), config, Arc::new(RealFs))
}

/// [`repair`] on any filesystem.
pub fn repair_with_fs(
    dir: &Path,
    config: SpoolConfig,
    fs: Arc<dyn FileSystem>,
) -> Result<RecoveryReport, OpenError> {
    let (spool, report) = Spool::open_with_fs(dir, config, fs)?;
    drop(spool);
    Ok(report)
}

/// The records of `stream` in the (closed) spool at `dir`, in sequence order, starting at `from`
/// or, when `None`, at the first record not acknowledged. Read-only: takes no lock, repairs
/// nothing, creates nothing; damaged regions are skipped as recovery would skip them, so the
/// records returned are those a repair keeps. Acknowledged records whose segment was not yet
/// deleted are returned when `from` asks for them. The caller must make sure no process has the
/// spool open (check its `LOCK`), or the records may change under the reader.
pub fn read_stream(
    dir: impl AsRef<Path>,
    stream: &StreamName,
    from: Option<Seq>,
) -> Result<StreamRecords, InspectError> {
    crate::offline::read_stream(Arc::new(RealFs), dir.as_ref(), stream, from)
}

/// [`read_stream`] on any filesystem.
pub fn read_stream_with_fs(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    stream: &StreamName,
    from: Option<Seq>,
) -> Result<StreamRecords, InspectError> {
    crate::offline::read_stream(fs, dir, stream, from)
}
