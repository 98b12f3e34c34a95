//! # spillway-spool: the durable segmented log
//!
//! The spool is where a record lives when Kafka cannot take it. It knows nothing of Kafka or
//! HTTP: it stores opaque records in named *streams*, makes them durable with group-commit
//! fsync, hands them back in order, and forgets them once the reader acknowledges them.
//! Spillway's guarantees G1 (acknowledge only what is durable) and G2 (lose nothing
//! acknowledged) rest on it; G5 (bounded memory and disk) is enforced here too.
//!
//! ## Design constraints
//!
//! - **Durable before acknowledged.** With [`FsyncPolicy::Always`] an append completes only after
//!   the `fdatasync` covering its bytes returned (and, for a new segment file, the fsync of its
//!   directory). Readers see a record only once its append completed.
//! - **Throughput scales with concurrency.** One writer thread takes every pending append, writes
//!   each stream's share with one positional write, syncs every touched file once (a fixed pool
//!   of sync threads issues the syncs of different files in parallel, or one `syncfs` when
//!   configured), then completes all waiters. The group commit can be pipelined: while one
//!   batch's fdatasync runs, the writer already writes the next (`commits_in_flight`; off by
//!   default, as it did not pay on the 2-core benchmark machine); batches are still published
//!   strictly in order. Waiting works for async callers and blocking ones (a tokio `oneshot`,
//!   no runtime needed here).
//! - **Thousands of streams are cheap.** A stream is a directory and its files; no thread, no
//!   buffer. The writer keeps at most 1024 segment files open and closes idle ones.
//! - **Memory independent of the backlog.** No record is kept in memory beyond the batch being
//!   written and what a read returns. Per segment the spool keeps counts and a sparse index (one
//!   entry per `index_interval_bytes`, 256 KiB by default); per stream, one small entry per record
//!   delivered and not yet acknowledged.
//! - **Own the bytes.** The format below is ours, little-endian, checksummed with CRC-32C
//!   (pinned by a known-answer test); no serialisation crate touches records.
//! - **Never refuse to start because of damage.** Recovery repairs, quarantines and reports; open
//!   fails only when another process holds the lock or the directory itself is unusable.
//!
//! ## On disk
//!
//! ```text
//! <spool dir>/                    0700
//!   LOCK                          flock'ed while open: a second process gets OpenError::Locked
//!   streams/
//!     orders.3/                   one directory per stream, named as the stream (validated:
//!                                 1-255 of A-Z a-z 0-9 . _ -, not starting with '.')
//!       00000000000000000000.seg  segments, named by their first sequence number (20 digits)
//!       00000000000000004711.seg  the last one is the active segment; the others are sealed
//!       checkpoint                the acknowledged prefix and the caller's blob
//!   quarantine/
//!     orders.3.00000000000000000000.seg        a damaged segment, moved aside untouched
//!     orders.3.00000000000000000000.seg.json   what was kept and what was lost
//! ```
//! Files are created 0600, directories 0700.
//!
//! ### Segment file
//!
//! ```text
//! offset  size  segment header (32 bytes)
//!      0     8  magic "SPWLSEG\0"
//!      8     2  format version = 1
//!     10     2  reserved flags = 0
//!     12     8  first_seq: sequence number of the first record it may hold (= file name)
//!     20     8  created_ms: creation time, ms since the Unix epoch (informational)
//!     28     4  CRC-32C of bytes 0..28
//!     32        records, back to back, until the end of the file
//!
//! record (28 bytes + payload)
//!      0     4  len: bytes of header + payload (20 + payload length)
//!      4     4  crc: CRC-32C of the len bytes that follow (header and payload)
//!      8     8  seq: sequence number in the stream
//!     16     8  timestamp_ms: append time, ms since the Unix epoch
//!     24     4  tag: the caller's flags, opaque to the spool
//!     28   len-20  payload: opaque bytes
//! ```
//! A record's `seq` is inside the checksummed part, so recovery knows exactly which numbers a
//! damaged region held and can resynchronise after it: the next valid record is a position
//! whose length, checksum and (plausible, increasing) sequence number all check out.
//!
//! ### Checkpoint file
//!
//! ```text
//!      0     8  magic "SPWLCKP\0"
//!      8     2  version = 1
//!     10     2  meta_len (≤ 1024)
//!     12     8  acked_upto: every record with a smaller seq is acknowledged
//!     20  meta_len  meta: the caller's blob from the latest acknowledgement covered
//!      …     4  CRC-32C of everything before
//! ```
//! Written as `checkpoint.tmp`, fdatasync'd, renamed over `checkpoint`, then the directory is
//! fsync'd.
//!
//! ## Semantics
//!
//! **Append.** [`Spool::append`] (and `append_batch`, `append_blocking`) checks the size limit,
//! the queue limit (`Overloaded`) and the capacity (`Full`) at once, without waiting, then queues
//! the records. The writer assigns sequence numbers (per stream, increasing, continued after a
//! restart), encodes, writes, syncs per the [`FsyncPolicy`], publishes the new committed length
//! to readers and completes the waiters with their [`Position`]s. A segment is sealed and a new
//! one created (file fsync + directory fsync before anything in it is acknowledged) when the
//! next record would take it past `segment_bytes`.
//!
//! **Failure of a group commit** (ENOSPC, EIO on write or sync): every append of that stream in
//! the batch gets a typed error ([`AppendError::NoSpace`] / [`AppendError::Io`]), and so does
//! every append of that stream in a later batch already written (its bytes follow the failed
//! ones); the active segment is cut back to its length before the failed batch, segments created
//! by the failed batches are removed, and the next append starts a fresh segment, so no later
//! record ever follows a half-written one.
//! The sequence numbers given to the failed records are not reused (a later record may carry a
//! larger gap; readers simply skip gaps). Other streams in the batch are unaffected. When space
//! returns, appends succeed again.
//!
//! **Read.** One [`StreamReader`] per stream. It starts at the first unacknowledged record and
//! returns records in sequence order, only those whose append completed, via a non-blocking
//! [`StreamReader::read_batch`] or the async [`StreamReader::next_batch`] (woken by a tokio
//! `Notify`). A dropped reader's unacknowledged records are delivered again by the next reader.
//!
//! **Acknowledge.** [`Spool::ack`] / [`Spool::ack_with_meta`] take positions the reader delivered,
//! in any order. The *acknowledged prefix* advances over the delivered records that are all
//! acknowledged; the blob of the highest acknowledgement in the prefix goes with it. The writer
//! thread writes each stream's checkpoint durably every `checkpoint_interval` and on
//! [`Spool::flush`] and close; after a crash reading resumes at the last durable checkpoint
//! (at-least-once).
//!
//! **Delete.** A sealed segment whose every record is below the *durable* checkpoint is unlinked,
//! strictly after that checkpoint's rename and directory fsync. The active segment is never
//! deleted, so the next sequence number can always be recovered from the segments.
//!
//! **Capacity.** `capacity_bytes` bounds the bytes of all segment files plus queued appends; an
//! append beyond fails fast with [`AppendError::Full`]. Space comes back when segments are
//! deleted. `max_pending_bytes` bounds the memory of queued appends.
//!
//! ## Recovery (at every open)
//!
//! For each stream directory, in order:
//! 1. leftovers of interrupted operations: `checkpoint.tmp` is removed; a `*.seg.rewrite` from an
//!    interrupted quarantine is removed (the original is still in place and is redone) or
//!    renamed into place (the original was already moved away);
//! 2. every segment is scanned. A torn creation (short or unreadable header, no record) gets a
//!    fresh header if it is the last segment, and is removed otherwise. A *torn tail* (bytes
//!    after the last valid record with no valid record after them) is truncated. *Damage* (an
//!    invalid region followed by valid records, or an unreadable header before valid records) is
//!    handled per [`RecoveryMode`]: the valid records (all of them, or those before the first
//!    damage) are copied into `<segment>.rewrite`, fsync'd; the original is renamed into
//!    `quarantine/` with a JSON [`QuarantineReport`] beside it; the copy is renamed into place;
//! 3. the checkpoint is read. Missing (when segments were already deleted), zero-length or
//!    garbled: it is rebuilt at the oldest segment, so records are delivered again rather than
//!    lost;
//! 4. sealed segments wholly below the checkpoint (an interrupted deletion) are deleted;
//! 5. the next sequence number is the larger of the end of the data (including numbers seen in
//!    records not kept) and the checkpoint.
//!
//! Every step is a [`RecoveryAction`] with a [`Severity`] in the [`RecoveryReport`];
//! [`inspect::verify`] runs the same analysis without changing anything, [`inspect::repair`]
//! applies it. [`inspect::read_stream`] reads one stream of a closed spool without the lock and
//! without changing anything, skipping damage as recovery would (the records a repair keeps).
//!
//! ## Observation
//!
//! [`SpoolConfig::on_sync`] is called after every sync made for appends (each `fdatasync`,
//! directory fsync or `syncfs`) with a [`SyncEvent`]: kind, duration, success. The library
//! feeds its fsync latency histogram from it. [`Spool::stats`] gives the counters.
//!
//! ## Invariants
//!
//! 1. A record is visible to readers and acknowledged to its writer only after it is durable per
//!    the policy; with `Always`, after its fdatasync (and its segment's directory entry fsync).
//! 2. Within a stream, sequence numbers strictly increase with append order, across segments and
//!    restarts; a number handed out is never handed out again.
//! 3. A segment file is unlinked only when a checkpoint covering all its records is durable.
//! 4. The durable checkpoint never passes a record that was not delivered and acknowledged.
//! 5. Nothing after a failed or torn write is ever acknowledged: bytes past the committed length
//!    are cut off before the next write or at recovery.
//! 6. Recovery never deletes a valid record that is not below the checkpoint; damaged files are
//!    moved, not deleted.
//!
//! ## Testing
//!
//! The [`fs::FileSystem`] trait is the seam: [`fs::RealFs`] in production,
//! [`fs::sim::SimFs`] in tests (page cache versus durable content, lost directory entries,
//! crash at operation N or at byte N, injected EIO/ENOSPC and short writes). Tests next to each
//! module decode every truncation and every flipped byte; `tests/crash.rs` crashes a workload at
//! every operation; `tests/model.rs` is a proptest against an in-memory model; `tests/kill9.rs`
//! SIGKILLs a real child process.

mod checkpoint;
mod config;
mod error;
pub mod format;
pub mod fs;
pub mod inspect;
mod offline;
mod reader;
mod recovery;
mod segment;
mod spool;
mod stream;
mod sync_pool;
mod types;
mod writer;

pub use checkpoint::{Checkpoint, MAX_ACK_META_BYTES};
pub use config::{FsyncPolicy, RecoveryMode, SpoolConfig, SyncEvent, SyncKind, SyncObserver};
pub use error::{
    AckError, AppendError, FlushError, InspectError, OpenError, ReadError, ReaderError,
};
pub use reader::StreamReader;
pub use recovery::{QuarantineReport, RecoveryAction, RecoveryReport, Severity};
pub use spool::{LOCK_FILE, Spool};
pub use types::{InvalidStreamName, Position, Record, RecordIn, SegmentId, Seq, StreamName};
