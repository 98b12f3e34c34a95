//! # spillway-spool: the durable segmented log
//!
//! (design doc: written below once the code settles)

mod checkpoint;
mod config;
mod error;
pub mod format;
pub mod fs;
pub mod inspect;
mod reader;
mod recovery;
mod segment;
mod spool;
mod stream;
mod sync_pool;
mod types;
mod writer;

pub use checkpoint::{Checkpoint, MAX_ACK_META_BYTES};
pub use config::{FsyncPolicy, RecoveryMode, SpoolConfig};
pub use error::{
    AckError, AppendError, FlushError, InspectError, OpenError, ReadError, ReaderError,
};
pub use reader::StreamReader;
pub use recovery::{QuarantineReport, RecoveryAction, RecoveryReport, Severity};
pub use spool::{LOCK_FILE, Spool};
pub use types::{InvalidStreamName, Position, Record, RecordIn, SegmentId, Seq, StreamName};
