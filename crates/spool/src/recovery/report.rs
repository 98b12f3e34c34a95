//! What recovery reports: actions with their severity, and the quarantine report.

use crate::segment;
use serde::Serialize;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine cleanup after an interrupted operation; nothing lost.
    Info,
    /// Repaired without losing acknowledged data, or data that was never acknowledged.
    Warning,
    /// Records were lost or set aside in quarantine.
    Error,
}

/// One thing recovery did (or, for `verify`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RecoveryAction {
    /// An unfinished write at the end of a segment was cut off.
    TruncatedTornTail {
        /// Stream.
        stream: String,
        /// Segment file.
        segment: String,
        /// New length.
        offset: u64,
        /// Bytes removed.
        bytes: u64,
    },
    /// A segment with damage was moved to `quarantine/` and replaced by a copy of its valid
    /// records; a JSON report sits beside the quarantined file.
    QuarantinedSegment {
        /// Stream.
        stream: String,
        /// Segment file.
        segment: String,
        /// Where the original now is.
        quarantine_file: PathBuf,
        /// Records kept and still delivered.
        records_kept: u64,
        /// Sequence numbers known lost.
        lost_seqs: Vec<Range<u64>>,
        /// Valid records dropped because the mode stops at the first damage.
        dropped_valid_records: u64,
        /// Bytes not carried over.
        lost_bytes: u64,
    },
    /// A segment whose creation was torn (short or unreadable header, no records) got a fresh
    /// header (last segment) or was removed (older segment).
    RepairedSegmentHeader {
        /// Stream.
        stream: String,
        /// Segment file.
        segment: String,
        /// Whether it was removed rather than repaired.
        removed: bool,
    },
    /// The checkpoint was missing or garbled; reading restarts at the oldest segment (records
    /// are delivered again rather than lost) and the caller's meta blob is lost.
    RebuiltCheckpoint {
        /// Stream.
        stream: String,
        /// What was wrong.
        reason: String,
        /// Where reading now starts.
        acked_upto: u64,
    },
    /// A leftover temporary file of an interrupted operation was removed or completed.
    CleanedUpTempFile {
        /// The file.
        path: PathBuf,
    },
    /// A fully acknowledged segment whose deletion was interrupted was deleted.
    DeletedAckedSegment {
        /// Stream.
        stream: String,
        /// Segment file.
        segment: String,
    },
    /// The checkpoint is ahead of the data (acknowledged records written without fsync were
    /// lost in a crash); sequence numbers continue after the checkpoint.
    CheckpointAheadOfData {
        /// Stream.
        stream: String,
        /// The checkpoint.
        acked_upto: u64,
        /// One past the last record found.
        next_seq: u64,
    },
    /// A file or directory the spool does not know was left alone.
    IgnoredUnknownEntry {
        /// The entry.
        path: PathBuf,
    },
}

impl RecoveryAction {
    /// How serious it is.
    pub fn severity(&self) -> Severity {
        use RecoveryAction::*;
        match self {
            QuarantinedSegment { .. } => Severity::Error,
            TruncatedTornTail { .. }
            | RepairedSegmentHeader { .. }
            | RebuiltCheckpoint { .. }
            | CheckpointAheadOfData { .. }
            | IgnoredUnknownEntry { .. } => Severity::Warning,
            CleanedUpTempFile { .. } | DeletedAckedSegment { .. } => Severity::Info,
        }
    }
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RecoveryAction::*;
        match self {
            TruncatedTornTail {
                stream,
                segment,
                offset,
                bytes,
            } => {
                write!(
                    f,
                    "{stream}/{segment}: torn tail of {bytes} bytes cut at offset {offset}"
                )
            }
            QuarantinedSegment {
                stream,
                segment,
                quarantine_file,
                records_kept,
                lost_seqs,
                ..
            } => {
                write!(
                    f,
                    "{stream}/{segment}: damaged, moved to {}; {records_kept} records kept, lost \
                     sequence numbers {lost_seqs:?}",
                    quarantine_file.display()
                )
            }
            RepairedSegmentHeader {
                stream,
                segment,
                removed,
            } => {
                let what = if *removed {
                    "removed"
                } else {
                    "header rewritten"
                };
                write!(f, "{stream}/{segment}: torn segment creation, {what}")
            }
            RebuiltCheckpoint {
                stream,
                reason,
                acked_upto,
            } => {
                write!(
                    f,
                    "{stream}: checkpoint rebuilt ({reason}), reading from {acked_upto}"
                )
            }
            CleanedUpTempFile { path } => {
                write!(f, "{}: leftover temp file handled", path.display())
            }
            DeletedAckedSegment { stream, segment } => {
                write!(f, "{stream}/{segment}: acknowledged segment deleted")
            }
            CheckpointAheadOfData {
                stream,
                acked_upto,
                next_seq,
            } => write!(
                f,
                "{stream}: checkpoint {acked_upto} ahead of data end {next_seq} (unsynced data lost)"
            ),
            IgnoredUnknownEntry { path } => write!(f, "{}: unknown entry ignored", path.display()),
        }
    }
}

/// What recovery found and did, returned by `Spool::open` and `repair`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Streams found.
    pub streams: usize,
    /// Segments kept.
    pub segments: usize,
    /// Records in the kept segments.
    pub records: u64,
    /// Bytes of the kept segments.
    pub bytes: u64,
    /// Every action, in order.
    pub actions: Vec<RecoveryAction>,
}

impl RecoveryReport {
    /// Whether nothing needed repair (informational cleanups aside).
    pub fn is_clean(&self) -> bool {
        self.actions.iter().all(|a| a.severity() == Severity::Info)
    }

    /// Segments moved to quarantine.
    pub fn quarantined(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, RecoveryAction::QuarantinedSegment { .. }))
            .count()
    }
}

/// The JSON file written beside a quarantined segment.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineReport {
    /// Stream.
    pub stream: String,
    /// Original path.
    pub original: PathBuf,
    /// When, milliseconds since the epoch.
    pub quarantined_at_ms: u64,
    /// Recovery mode used.
    pub mode: String,
    /// Original file length.
    pub file_len: u64,
    /// Header problem, if any.
    pub header_error: Option<String>,
    /// Records carried over to the replacement segment.
    pub records_kept: u64,
    /// Damaged byte ranges and the sequence numbers lost in each.
    pub damage: Vec<segment::Damage>,
    /// Valid records not carried over (mode stops at first damage).
    pub dropped_valid_records: u64,
    /// Torn tail bytes at the end, if any.
    pub torn_tail_bytes: u64,
}
