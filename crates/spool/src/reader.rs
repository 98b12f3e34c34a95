//! Reading a stream in order from its first unacknowledged record.

use crate::format::{self, Decoded, SEGMENT_HEADER_LEN};
use crate::fs::{FileHandle, read_full_at};
use crate::spool::Shared;
use crate::stream::Stream;
use crate::{AckError, Position, ReadError, ReaderError, Record, SegmentId, Seq, StreamName};
use bytes::BytesMut;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Bytes read from disk per step when the caller's byte budget is small.
const MIN_READ_BYTES: usize = 16 * 1024;
/// Most bytes read from disk per step.
const MAX_READ_BYTES: usize = 4 * 1024 * 1024;

/// The (only) reader of one stream. It sees records once their append completed, in sequence
/// order, starting at the first unacknowledged record. Dropping it forgets what it delivered
/// without acknowledgement: the next reader delivers those records again (at-least-once).
///
/// Memory: no buffer is kept between calls; a `read_batch` allocates what it returns.
#[derive(Debug)]
pub struct StreamReader {
    shared: Arc<Shared>,
    stream: Arc<Stream>,
    cursor: Option<Cursor>,
}

#[derive(Debug)]
struct Cursor {
    segment: SegmentId,
    file: Arc<dyn FileHandle>,
    offset: u64,
}

impl StreamReader {
    pub(crate) fn new(shared: Arc<Shared>, stream: Arc<Stream>) -> Result<Self, ReaderError> {
        {
            let mut st = stream.state.lock();
            if st.has_reader {
                return Err(ReaderError::Busy(stream.name.clone()));
            }
            st.has_reader = true;
            st.acks.reset_reader();
        }
        Ok(StreamReader {
            shared,
            stream,
            cursor: None,
        })
    }

    /// The stream read.
    pub fn stream(&self) -> &StreamName {
        &self.stream.name
    }

    /// The next sequence number this reader will deliver (at least).
    pub fn position(&self) -> Seq {
        self.stream.state.lock().acks.read_next()
    }

    /// Returns up to `max_records` visible records totalling about `max_bytes` of payload (at
    /// least one record if any is visible, whatever its size), without waiting. Empty when the
    /// reader is caught up.
    pub fn read_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, ReadError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_records && (out.is_empty() || bytes < max_bytes) {
            // Where to read, and how far is committed, under the stream lock.
            let (read_next, seg_id, seg_start, committed, sealed) = {
                let st = self.stream.state.lock();
                let read_next = st.acks.read_next();
                if read_next >= st.next_seq {
                    break;
                }
                let Some(i) = st.segments.iter().position(|s| s.next_seq > read_next) else {
                    break;
                };
                let seg = &st.segments[i];
                let start = if seg.id.0 <= read_next.0 {
                    seg.seek(read_next)
                } else {
                    SEGMENT_HEADER_LEN as u64
                };
                (read_next, seg.id, start, seg.len, i + 1 < st.segments.len())
            };
            if self
                .cursor
                .as_ref()
                .is_none_or(|c| c.segment != seg_id || c.offset > committed)
            {
                let path = self.path(seg_id);
                let file = self
                    .shared
                    .fs
                    .open_read(&path)
                    .map_err(|source| ReadError::Io { path, source })?;
                self.cursor = Some(Cursor {
                    segment: seg_id,
                    file,
                    offset: seg_start,
                });
            }
            let path = self.path(seg_id);
            let cursor = self.cursor.as_mut().expect("cursor");
            if cursor.offset < seg_start {
                cursor.offset = seg_start;
            }
            if cursor.offset >= committed {
                if !sealed {
                    break;
                }
                // Rest of this segment is gone (gap); move on.
                let next = self
                    .stream
                    .state
                    .lock()
                    .segments
                    .iter()
                    .find(|s| s.id > seg_id)
                    .map(|s| s.id);
                if let Some(next) = next {
                    self.stream.state.lock().acks.skip_to(Seq(next.0));
                }
                self.cursor = None;
                continue;
            }
            let budget = max_bytes
                .saturating_sub(bytes)
                .clamp(MIN_READ_BYTES, MAX_READ_BYTES);
            let want =
                (budget as u64 + format::RECORD_OVERHEAD as u64).min(committed - cursor.offset);
            let mut buf = BytesMut::zeroed(want as usize);
            let n =
                read_full_at(cursor.file.as_ref(), &mut buf, cursor.offset).map_err(|source| {
                    ReadError::Io {
                        path: path.clone(),
                        source,
                    }
                })?;
            buf.truncate(n);
            let chunk = buf.freeze();
            let mut at = 0usize;
            let mut delivered = Vec::new();
            while at < chunk.len()
                && out.len() < max_records
                && (out.is_empty() || bytes < max_bytes)
            {
                match format::decode_record(&chunk[at..]) {
                    Decoded::Record {
                        header,
                        payload,
                        total_len,
                    } => {
                        if header.seq >= read_next {
                            bytes += payload.len();
                            delivered.push(header.seq);
                            out.push(Record {
                                position: Position {
                                    stream: self.stream.name.clone(),
                                    seq: header.seq,
                                },
                                timestamp_ms: header.timestamp_ms,
                                tag: header.tag,
                                payload: chunk.slice(at + payload.start..at + payload.end),
                            });
                        }
                        at += total_len;
                    }
                    Decoded::Incomplete { needed } => {
                        if at == 0 {
                            // One record larger than the chunk: read exactly it.
                            let mut big = BytesMut::zeroed(needed);
                            let got = read_full_at(cursor.file.as_ref(), &mut big, cursor.offset)
                                .map_err(|source| ReadError::Io {
                                path: path.clone(),
                                source,
                            })?;
                            if got < needed {
                                return Err(ReadError::Corrupt {
                                    path,
                                    offset: cursor.offset,
                                });
                            }
                            let big = big.freeze();
                            if let Decoded::Record {
                                header,
                                payload,
                                total_len,
                            } = format::decode_record(&big)
                            {
                                if header.seq >= read_next {
                                    bytes += payload.len();
                                    delivered.push(header.seq);
                                    out.push(Record {
                                        position: Position {
                                            stream: self.stream.name.clone(),
                                            seq: header.seq,
                                        },
                                        timestamp_ms: header.timestamp_ms,
                                        tag: header.tag,
                                        payload: big.slice(payload),
                                    });
                                }
                                at += total_len;
                            } else {
                                return Err(ReadError::Corrupt {
                                    path,
                                    offset: cursor.offset,
                                });
                            }
                        }
                        break;
                    }
                    Decoded::Corrupt(_) => {
                        return Err(ReadError::Corrupt {
                            path,
                            offset: cursor.offset + at as u64,
                        });
                    }
                }
            }
            cursor.offset += at as u64;
            let mut st = self.stream.state.lock();
            for seq in delivered {
                st.acks.delivered(seq);
            }
        }
        Ok(out)
    }

    /// Waits until a record is visible (or the spool closes), then reads like
    /// [`StreamReader::read_batch`]. Cancel-safe: dropping the future loses nothing.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, ReadError> {
        loop {
            let batch = self.read_batch(max_records, max_bytes)?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(ReadError::Closed);
            }
            self.stream.notify.notified().await;
        }
    }

    /// Whether records are visible that this reader has not delivered.
    pub fn has_more(&self) -> bool {
        let st = self.stream.state.lock();
        st.acks.read_next() < st.next_seq
    }

    /// Acknowledges a record this reader delivered (see [`crate::Spool::ack`]).
    pub fn ack(&self, seq: Seq) -> Result<(), AckError> {
        self.stream
            .state
            .lock()
            .acks
            .ack(&self.stream.name, seq, None)
            .map(|_| ())
    }

    /// Acknowledges with a caller blob (see [`crate::Spool::ack_with_meta`]).
    pub fn ack_with_meta(&self, seq: Seq, meta: &[u8]) -> Result<(), AckError> {
        let max = crate::MAX_ACK_META_BYTES;
        if meta.len() > max {
            return Err(AckError::MetaTooLarge {
                len: meta.len(),
                max,
            });
        }
        self.stream
            .state
            .lock()
            .acks
            .ack(&self.stream.name, seq, Some(meta))
            .map(|_| ())
    }

    fn path(&self, id: SegmentId) -> PathBuf {
        self.stream.dir.join(id.file_name())
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut st = self.stream.state.lock();
        st.has_reader = false;
        st.acks.reset_reader();
    }
}
