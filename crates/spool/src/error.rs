//! One error enum per operation. Each variant says when it happens and whether to retry.

use crate::{Position, StreamName};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Opening a spool failed. Damage never causes this: it is repaired and reported.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (or another `Spool` in this one) has the spool open. Retry after it exits.
    #[error("spool {dir} is locked by another process (lock file {lock})")]
    Locked {
        /// The spool directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The configuration is invalid. Not retryable without fixing it.
    #[error("invalid spool configuration: {0}")]
    InvalidConfig(String),
    /// A real I/O error on the directory (permissions, EIO, ENOSPC while repairing). Retryable
    /// once the cause is fixed.
    #[error("spool I/O error at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// An append was not accepted: the record is not in the spool (not acknowledged), and the caller
/// still owns it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The spool's capacity would be exceeded. Retry after readers acknowledge records (segments
    /// are freed at the next checkpoint). Map to 503.
    #[error(
        "spool full: {needed} more bytes would exceed the capacity ({used} of {capacity} used)"
    )]
    Full {
        /// Bytes the append needed.
        needed: u64,
        /// Bytes in use (segments plus appends in flight).
        used: u64,
        /// The configured capacity.
        capacity: u64,
    },
    /// The disk is full (ENOSPC/EDQUOT). Nothing half-written remains; retry when space returns.
    #[error("no space left on the spool's disk: {source}")]
    NoSpace {
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Writing or syncing failed (EIO...). Nothing of this append is acknowledged; the stream
    /// moves to a fresh segment; retry may succeed.
    #[error("spool I/O error: {source}")]
    Io {
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The payload is larger than `max_record_bytes`. Not retryable.
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Payload size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many bytes are queued for the writer (`max_pending_bytes`). Retry shortly.
    #[error("spool writer overloaded: {pending} bytes already queued")]
    Overloaded {
        /// Bytes queued.
        pending: u64,
    },
    /// The spool was closed (or its writer thread stopped). Not retryable on this handle.
    #[error("spool is closed")]
    Closed,
}

impl AppendError {
    pub(crate) fn from_io(e: io::Error) -> AppendError {
        if crate::fs::is_no_space(&e) {
            AppendError::NoSpace {
                source: Arc::new(e),
            }
        } else {
            AppendError::Io {
                source: Arc::new(e),
            }
        }
    }

    /// Whether retrying the same append later can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            AppendError::RecordTooLarge { .. } | AppendError::Closed
        )
    }
}

/// A reader could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The stream already has a reader; drop it first. (One reader per stream keeps acks simple.)
    #[error("stream {0} already has a reader")]
    Busy(StreamName),
    /// The spool is closed.
    #[error("spool is closed")]
    Closed,
}

/// Reading failed. The reader's position is unchanged; records already returned stay valid.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading a segment failed. Retryable.
    #[error("reading {path} failed: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Acknowledged data failed its checksum after open (bit rot or outside interference). Reopen
    /// the spool: recovery quarantines the segment and delivers the rest.
    #[error("corrupt record in {path} at offset {offset}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
    },
    /// The spool was closed.
    #[error("spool is closed")]
    Closed,
}

/// An acknowledgement was refused; the checkpoint is unchanged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AckError {
    /// The position was not delivered by the stream's current reader (never read, or read by a
    /// reader that was dropped since: it will be delivered again). A caller bug, not retryable.
    #[error("position {0} was not delivered by the current reader")]
    NotDelivered(Position),
    /// The metadata blob is larger than [`crate::MAX_ACK_META_BYTES`].
    #[error("ack metadata of {len} bytes exceeds {max}")]
    MetaTooLarge {
        /// Size given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream does not exist in this spool.
    #[error("unknown stream {0}")]
    UnknownStream(StreamName),
}

/// `flush` could not make everything durable. Retryable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    /// A sync or checkpoint write failed.
    #[error("spool flush failed: {source}")]
    Io {
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The spool is closed.
    #[error("spool is closed")]
    Closed,
}

/// Offline inspection failed to read the directory at all.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The spool has no stream of this name (`read_stream`). Not retryable.
    #[error("spool {dir} has no stream {stream}")]
    UnknownStream {
        /// The spool directory.
        dir: PathBuf,
        /// The stream asked for.
        stream: StreamName,
    },
    /// An I/O error reading the directory tree.
    #[error("cannot inspect {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
