//! Per-stream shared state: committed segments, visibility, and acknowledgement tracking.

use crate::checkpoint::Checkpoint;
use crate::segment::SegmentMeta;
use crate::{AckError, Position, Seq, StreamName};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::PathBuf;

/// A stream as every thread sees it. The writer thread owns the open files separately.
#[derive(Debug)]
pub(crate) struct Stream {
    pub name: StreamName,
    pub dir: PathBuf,
    pub state: Mutex<StreamState>,
    /// Woken (one permit) whenever records become visible or the spool closes.
    pub notify: tokio::sync::Notify,
}

#[derive(Debug)]
pub(crate) struct StreamState {
    /// Committed segments, oldest first; the last one is the active segment.
    pub segments: VecDeque<SegmentMeta>,
    /// One past the last visible record: readers see every record below it.
    pub next_seq: Seq,
    /// Acknowledgement tracking.
    pub acks: AckTracker,
    /// Whether a reader exists.
    pub has_reader: bool,
    /// The checkpoint last made durable.
    pub durable: Checkpoint,
    /// Cache for "oldest record age": (acked_upto it was computed for, timestamp).
    pub oldest_cache: Option<(Seq, Option<u64>)>,
}

impl Stream {
    pub fn new(
        name: StreamName,
        dir: PathBuf,
        segments: VecDeque<SegmentMeta>,
        next_seq: Seq,
        durable: Checkpoint,
    ) -> Stream {
        let acks = AckTracker::new(durable.acked_upto, durable.meta.clone());
        Stream {
            name,
            dir,
            state: Mutex::new(StreamState {
                segments,
                next_seq,
                acks,
                has_reader: false,
                durable,
                oldest_cache: None,
            }),
            notify: tokio::sync::Notify::new(),
        }
    }
}

impl StreamState {
    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Records not yet acknowledged (exact unless the stream has sequence gaps).
    pub fn depth(&self) -> u64 {
        let acked = self.acks.acked_upto().0;
        self.segments
            .iter()
            .map(|s| {
                if s.id.0 >= acked {
                    s.records
                } else {
                    s.records.min(s.next_seq.0.saturating_sub(acked))
                }
            })
            .sum()
    }

    /// Segments (never the active one) whose every record is below `acked_upto`.
    pub fn freeable(&self, acked_upto: Seq) -> usize {
        let sealed = self.segments.len().saturating_sub(1);
        self.segments
            .iter()
            .take(sealed)
            .take_while(|s| s.next_seq <= acked_upto)
            .count()
    }
}

#[derive(Debug)]
struct InFlight {
    seq: Seq,
    acked: bool,
    meta: Option<Box<[u8]>>,
}

/// Tracks which delivered records are acknowledged. Acks may come in any order; the checkpoint
/// moves only over the contiguous acknowledged prefix of what the reader delivered. Memory is
/// one small entry per record delivered and not yet acknowledged.
#[derive(Debug)]
pub(crate) struct AckTracker {
    /// Records delivered to the current reader, not all acknowledged, in order.
    inflight: VecDeque<InFlight>,
    /// The next sequence number the reader will deliver.
    read_next: Seq,
    /// Everything below is acknowledged.
    acked_upto: Seq,
    /// The blob of the latest acknowledgement in the prefix.
    meta: Vec<u8>,
}

impl AckTracker {
    pub fn new(acked_upto: Seq, meta: Vec<u8>) -> AckTracker {
        AckTracker {
            inflight: VecDeque::new(),
            read_next: acked_upto,
            acked_upto,
            meta,
        }
    }

    pub fn acked_upto(&self) -> Seq {
        self.acked_upto
    }

    pub fn read_next(&self) -> Seq {
        self.read_next
    }

    /// The reader delivered `seq` (ascending).
    pub fn delivered(&mut self, seq: Seq) {
        debug_assert!(seq >= self.read_next);
        self.inflight.push_back(InFlight {
            seq,
            acked: false,
            meta: None,
        });
        self.read_next = seq.next();
    }

    /// The reader's position without delivering (it skipped a gap).
    pub fn skip_to(&mut self, seq: Seq) {
        if seq > self.read_next {
            self.read_next = seq;
            if self.inflight.is_empty() {
                self.acked_upto = seq;
            }
        }
    }

    /// Acknowledges `seq` of `stream`. Returns whether the acknowledged prefix moved.
    pub fn ack(
        &mut self,
        stream: &StreamName,
        seq: Seq,
        meta: Option<&[u8]>,
    ) -> Result<bool, AckError> {
        if seq < self.acked_upto {
            return Ok(false);
        }
        if self.inflight.front().is_some_and(|f| f.seq == seq) {
            // In order, the usual case: the prefix moves by this record, without a search and
            // without keeping a copy of its blob.
            self.inflight.pop_front();
            if let Some(m) = meta {
                self.meta.clear();
                self.meta.extend_from_slice(m);
            }
        } else {
            let Ok(i) = self.inflight.binary_search_by_key(&seq, |f| f.seq) else {
                return Err(AckError::NotDelivered(Position {
                    stream: stream.clone(),
                    seq,
                }));
            };
            let entry = &mut self.inflight[i];
            entry.acked = true;
            if let Some(m) = meta {
                entry.meta = Some(m.into());
            }
            return Ok(self.advance());
        }
        self.advance();
        self.acked_upto = self.inflight.front().map_or(self.read_next, |f| f.seq);
        Ok(true)
    }

    /// Moves the prefix over acknowledged records at the front. Returns whether it moved.
    fn advance(&mut self) -> bool {
        let mut moved = false;
        while self.inflight.front().is_some_and(|f| f.acked) {
            let f = self.inflight.pop_front().expect("front");
            if let Some(m) = f.meta {
                self.meta = m.into_vec();
            }
            moved = true;
        }
        if moved {
            self.acked_upto = self.inflight.front().map_or(self.read_next, |f| f.seq);
        }
        moved
    }

    /// The reader went away: undelivered and unacknowledged records will be delivered again.
    pub fn reset_reader(&mut self) {
        self.inflight.clear();
        self.read_next = self.acked_upto;
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            acked_upto: self.acked_upto,
            meta: self.meta.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> StreamName {
        StreamName::new("s").unwrap()
    }

    #[test]
    fn acks_in_order_move_the_prefix_one_by_one_and_keep_the_latest_blob() {
        let mut t = AckTracker::new(Seq(10), b"old".to_vec());
        for s in 10..13 {
            t.delivered(Seq(s));
        }
        assert!(t.ack(&name(), Seq(10), Some(b"ten")).unwrap());
        assert_eq!(t.acked_upto(), Seq(11));
        assert_eq!(t.checkpoint().meta, b"ten");
        assert!(t.ack(&name(), Seq(11), None).unwrap());
        assert_eq!(
            t.checkpoint().meta,
            b"ten",
            "an ack without a blob keeps the last one"
        );
        assert!(t.ack(&name(), Seq(12), Some(b"12")).unwrap());
        assert_eq!(t.acked_upto(), Seq(13));
        assert_eq!(t.checkpoint().meta, b"12");
    }

    #[test]
    fn out_of_order_acks_advance_only_the_contiguous_prefix() {
        let mut t = AckTracker::new(Seq(0), vec![]);
        for s in 0..4 {
            t.delivered(Seq(s));
        }
        assert!(!t.ack(&name(), Seq(2), Some(b"two")).unwrap());
        assert_eq!(t.acked_upto(), Seq(0));
        assert!(t.ack(&name(), Seq(0), Some(b"zero")).unwrap());
        assert_eq!(t.acked_upto(), Seq(1));
        assert_eq!(t.checkpoint().meta, b"zero");
        assert!(t.ack(&name(), Seq(1), None).unwrap());
        assert_eq!(t.acked_upto(), Seq(3), "2 was already acknowledged");
        assert_eq!(
            t.checkpoint().meta,
            b"two",
            "meta of the latest ack in the prefix"
        );
        assert!(t.ack(&name(), Seq(3), None).unwrap());
        assert_eq!(t.acked_upto(), Seq(4));
    }

    #[test]
    fn acking_an_undelivered_position_is_refused() {
        let mut t = AckTracker::new(Seq(5), vec![]);
        assert!(matches!(
            t.ack(&name(), Seq(5), None),
            Err(AckError::NotDelivered(_))
        ));
        t.delivered(Seq(5));
        assert!(matches!(
            t.ack(&name(), Seq(6), None),
            Err(AckError::NotDelivered(_))
        ));
    }

    #[test]
    fn acking_twice_or_below_the_checkpoint_is_harmless() {
        let mut t = AckTracker::new(Seq(3), vec![]);
        assert!(!t.ack(&name(), Seq(1), None).unwrap());
        t.delivered(Seq(3));
        assert!(t.ack(&name(), Seq(3), None).unwrap());
        assert!(!t.ack(&name(), Seq(3), None).unwrap());
    }

    #[test]
    fn a_new_reader_starts_again_at_the_first_unacknowledged_record() {
        let mut t = AckTracker::new(Seq(0), vec![]);
        for s in 0..3 {
            t.delivered(Seq(s));
        }
        t.ack(&name(), Seq(0), None).unwrap();
        t.ack(&name(), Seq(2), None).unwrap();
        t.reset_reader();
        assert_eq!(t.read_next(), Seq(1));
        assert_eq!(t.acked_upto(), Seq(1));
    }

    #[test]
    fn the_prefix_jumps_over_sequence_gaps_the_reader_skipped() {
        let mut t = AckTracker::new(Seq(0), vec![]);
        t.delivered(Seq(0));
        t.delivered(Seq(7));
        t.ack(&name(), Seq(0), None).unwrap();
        assert_eq!(t.acked_upto(), Seq(7));
        t.ack(&name(), Seq(7), None).unwrap();
        assert_eq!(t.acked_upto(), Seq(8));
    }
}
