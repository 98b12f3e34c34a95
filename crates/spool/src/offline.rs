//! Reading one stream of a spool that is not open, for tools (`spillway spool export`).
//!
//! Read-only in every way: no lock is taken, nothing is repaired, no file is created. Each
//! segment is scanned the way recovery scans it ([`crate::RecoveryMode::TolerateAnyCorruption`]):
//! damaged regions are skipped and every valid record around them is returned, a torn tail ends
//! the segment. So an export of a damaged spool returns exactly the records a repair would
//! keep. Records come back in sequence order, from the first unacknowledged one unless told
//! otherwise; memory is one read buffer, whatever the size of the stream.
//!
//! The caller makes sure no process has the spool open (its writer may be appending and
//! deleting segments); [`crate::inspect::read_stream`] does not check.

use crate::checkpoint::{self, CheckpointRead};
use crate::format::{self, Decoded, FRAME_LEN, RECORD_OVERHEAD};
use crate::fs::{FileHandle, FileSystem, read_full_at};
use crate::recovery::{REWRITE_SUFFIX, STREAMS_DIR};
use crate::segment;
use crate::{InspectError, Position, Record, RecoveryMode, SegmentId, Seq, StreamName};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes read from a segment per step.
const READ_BYTES: usize = 1024 * 1024;
/// Index granularity of the scan (only used to seek to the first wanted record).
const INDEX_INTERVAL: u64 = 64 * 1024;

/// The records of one stream, read from its segment files: an iterator of
/// `Result<Record, InspectError>` that ends after the first error.
#[derive(Debug)]
pub struct StreamRecords {
    fs: Arc<dyn FileSystem>,
    name: StreamName,
    from: Seq,
    acked_upto: Seq,
    /// Segments not yet opened, oldest first, with the id of the segment after each.
    segments: VecDeque<(SegmentId, PathBuf, Option<SegmentId>)>,
    current: Option<Current>,
    done: bool,
}

#[derive(Debug)]
struct Current {
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    /// Byte ranges of valid records still to read.
    kept: VecDeque<Range<u64>>,
    buf: Bytes,
    buf_start: u64,
}

impl StreamRecords {
    /// The stream read.
    pub fn stream(&self) -> &StreamName {
        &self.name
    }

    /// The stream's checkpoint: every record below it was acknowledged (delivered). A missing
    /// or garbled checkpoint counts as the oldest segment, as recovery would rebuild it.
    pub fn acked_upto(&self) -> Seq {
        self.acked_upto
    }

    /// The first sequence number returned (at least).
    pub fn from(&self) -> Seq {
        self.from
    }

    fn next_record(&mut self) -> Result<Option<Record>, InspectError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let cur = self.current.as_mut().expect("opened");
            let Some(range) = cur.kept.front().cloned() else {
                self.current = None;
                continue;
            };
            if range.start >= range.end {
                cur.kept.pop_front();
                continue;
            }
            let record = cur.record_at(range.start, range.end)?;
            let Some((header, payload, total_len)) = record else {
                // Cannot happen after a scan of an unchanged file; the file changed under us.
                return Err(changed(&cur.path, range.start));
            };
            cur.kept[0].start += total_len as u64;
            if header.seq < self.from {
                continue;
            }
            return Ok(Some(Record {
                position: Position {
                    stream: self.name.clone(),
                    seq: header.seq,
                },
                timestamp_ms: header.timestamp_ms,
                tag: header.tag,
                payload,
            }));
        }
    }

    /// Opens and scans the next segment that may hold records at or after `from`. False when
    /// there is none.
    fn open_next(&mut self) -> Result<bool, InspectError> {
        while let Some((id, path, next)) = self.segments.pop_front() {
            if next.is_some_and(|n| n.0 <= self.from.0) {
                continue; // every record in it is below `from`
            }
            let io = |source| InspectError::Io {
                path: path.clone(),
                source,
            };
            let file = self.fs.open_read(&path).map_err(io)?;
            let scan = segment::scan(
                file.as_ref(),
                id,
                RecoveryMode::TolerateAnyCorruption,
                INDEX_INTERVAL,
            )
            .map_err(io)?;
            let seek = if id.0 <= self.from.0 {
                scan.meta.seek(self.from)
            } else {
                0
            };
            let kept: VecDeque<Range<u64>> = scan
                .kept
                .into_iter()
                .filter(|r| r.end > seek)
                .map(|r| r.start.max(seek)..r.end)
                .collect();
            if kept.is_empty() {
                continue;
            }
            self.current = Some(Current {
                path,
                file,
                kept,
                buf: Bytes::new(),
                buf_start: 0,
            });
            return Ok(true);
        }
        Ok(false)
    }
}

impl Current {
    /// The record at `offset` (a valid record found by the scan), reading ahead up to `end`.
    fn record_at(
        &mut self,
        offset: u64,
        end: u64,
    ) -> Result<Option<(format::RecordHeader, Bytes, usize)>, InspectError> {
        let head = self.bytes(offset, RECORD_OVERHEAD, end)?;
        if head.len() < RECORD_OVERHEAD {
            return Ok(None);
        }
        let total = FRAME_LEN + format::le_u32(&head) as usize;
        let bytes = self.bytes(offset, total, end)?;
        Ok(match format::decode_record(&bytes) {
            Decoded::Record {
                header,
                payload,
                total_len,
            } => Some((header, bytes.slice(payload), total_len)),
            _ => None,
        })
    }

    /// `len` bytes at `offset` (fewer only at `end`), from the buffer or read into it.
    fn bytes(&mut self, offset: u64, len: usize, end: u64) -> Result<Bytes, InspectError> {
        let want = (len as u64).min(end.saturating_sub(offset)) as usize;
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start || offset + want as u64 > buf_end {
            let size = want.max(READ_BYTES).min((end - offset) as usize);
            let mut buf = BytesMut::zeroed(size);
            let n = read_full_at(self.file.as_ref(), &mut buf, offset).map_err(|source| {
                InspectError::Io {
                    path: self.path.clone(),
                    source,
                }
            })?;
            buf.truncate(n);
            self.buf = buf.freeze();
            self.buf_start = offset;
        }
        let from = (offset - self.buf_start) as usize;
        let to = (from + want).min(self.buf.len());
        Ok(self.buf.slice(from..to))
    }
}

impl Iterator for StreamRecords {
    type Item = Result<Record, InspectError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn changed(path: &Path, offset: u64) -> InspectError {
    InspectError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record at offset {offset} changed while reading (is the spool open?)"),
        ),
    }
}

/// See [`crate::inspect::read_stream`].
pub(crate) fn read_stream(
    fs: Arc<dyn FileSystem>,
    root: &Path,
    stream: &StreamName,
    from: Option<Seq>,
) -> Result<StreamRecords, InspectError> {
    let dir = root.join(STREAMS_DIR).join(stream.as_str());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InspectError::Io { path, source }
    };
    if !fs.exists(&dir) {
        return Err(InspectError::UnknownStream {
            dir: root.to_path_buf(),
            stream: stream.clone(),
        });
    }
    let entries = fs.read_dir(&dir).map_err(io(&dir))?;
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut ids: Vec<(SegmentId, PathBuf)> = Vec::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        if let Some(id) = SegmentId::parse(&e.name) {
            ids.push((id, dir.join(&e.name)));
        } else if let Some(original) = e.name.strip_suffix(REWRITE_SUFFIX) {
            // An interrupted quarantine whose original was already moved away: the rewrite is
            // the segment (recovery would rename it into place).
            if let Some(id) = SegmentId::parse(original).filter(|_| !names.contains(&original)) {
                ids.push((id, dir.join(&e.name)));
            }
        }
    }
    ids.sort();
    let first = ids.first().map_or(Seq(0), |(id, _)| Seq(id.0));
    let acked_upto = match checkpoint::read(fs.as_ref(), &dir).map_err(io(&dir))? {
        CheckpointRead::Valid(c) => c.acked_upto,
        CheckpointRead::Missing | CheckpointRead::Garbled(_) => first,
    };
    let nexts: Vec<Option<SegmentId>> = ids
        .iter()
        .skip(1)
        .map(|(id, _)| Some(*id))
        .chain(std::iter::once(None))
        .collect();
    let segments = ids
        .into_iter()
        .zip(nexts)
        .map(|((id, path), next)| (id, path, next))
        .collect();
    Ok(StreamRecords {
        fs,
        name: stream.clone(),
        from: from.unwrap_or(acked_upto),
        acked_upto,
        segments,
        current: None,
        done: false,
    })
}
