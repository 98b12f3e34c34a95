//! One segment file: in-memory metadata with a sparse index, creation, and a scanner that
//! classifies every byte as valid records, damage, or a torn tail.

use crate::format::{
    self, Decoded, FRAME_LEN, HeaderError, RECORD_OVERHEAD, SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::fs::{FileHandle, FileSystem, read_full_at, write_all_at};
use crate::{RecoveryMode, SegmentId, Seq};
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// A sparse index entry: the record `seq` starts at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Sequence number of the record.
    pub seq: Seq,
    /// Its offset in the file.
    pub offset: u64,
}

/// What the spool keeps in memory about one segment: no per-record data, only counts, the
/// committed length and one index entry every `index_interval_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The segment (its first possible sequence number).
    pub id: SegmentId,
    /// One past the last record's sequence number (`id` when empty).
    pub next_seq: Seq,
    /// Records in the segment.
    pub records: u64,
    /// Committed length in bytes, header included: readers never read beyond it.
    pub len: u64,
    /// Append time of the first record.
    pub first_ts: Option<u64>,
    /// Sparse index, ascending.
    pub index: Vec<IndexEntry>,
}

impl SegmentMeta {
    /// Metadata of an empty segment.
    pub fn new(id: SegmentId) -> SegmentMeta {
        SegmentMeta {
            id,
            next_seq: Seq(id.0),
            records: 0,
            len: SEGMENT_HEADER_LEN as u64,
            first_ts: None,
            index: Vec::new(),
        }
    }

    /// Notes a record written at `offset` with `total_len` bytes.
    pub fn note_record(&mut self, seq: Seq, ts: u64, offset: u64, total_len: u64, interval: u64) {
        if self.records == 0 {
            self.first_ts = Some(ts);
        }
        let last = self
            .index
            .last()
            .map_or(SEGMENT_HEADER_LEN as u64, |e| e.offset);
        if offset >= last + interval {
            self.index.push(IndexEntry { seq, offset });
        }
        self.records += 1;
        self.next_seq = seq.next();
        self.len = offset + total_len;
    }

    /// The offset to start scanning from to find `seq`.
    pub fn seek(&self, seq: Seq) -> u64 {
        let i = self.index.partition_point(|e| e.seq <= seq);
        if i == 0 {
            SEGMENT_HEADER_LEN as u64
        } else {
            self.index[i - 1].offset
        }
    }
}

/// Creates a new segment file with its header (not synced: the caller syncs file and directory).
pub fn create(fs: &dyn FileSystem, dir: &Path, id: SegmentId) -> io::Result<Arc<dyn FileHandle>> {
    let file = fs.create_new(&dir.join(id.file_name()))?;
    let header = SegmentHeader {
        first_seq: Seq(id.0),
        created_ms: crate::types::now_ms(),
    };
    write_all_at(file.as_ref(), &header.encode(), 0)?;
    Ok(file)
}

/// A read window over a file, so scans read large blocks, not one record at a time.
#[derive(Debug)]
pub struct Window<'a> {
    file: &'a dyn FileHandle,
    buf: Vec<u8>,
    start: u64,
    /// Bytes of the file that may be read.
    pub end: u64,
}

const WINDOW_BYTES: usize = 1024 * 1024;

impl<'a> Window<'a> {
    /// A window over `file` up to `end`.
    pub fn new(file: &'a dyn FileHandle, end: u64) -> Window<'a> {
        Window {
            file,
            buf: Vec::new(),
            start: 0,
            end,
        }
    }

    /// Up to `len` bytes at `offset` (fewer at the end).
    pub fn get(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let want = (len as u64).min(self.end.saturating_sub(offset)) as usize;
        let have_end = self.start + self.buf.len() as u64;
        if offset < self.start || offset + want as u64 > have_end {
            let size = want.max(WINDOW_BYTES).min((self.end - offset) as usize);
            self.buf.resize(size, 0);
            let n = read_full_at(self.file, &mut self.buf, offset)?;
            self.buf.truncate(n);
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        let to = (from + want).min(self.buf.len());
        Ok(&self.buf[from..to])
    }
}

/// A region of a segment that is not valid records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Byte range of the damage.
    pub bytes: Range<u64>,
    /// Sequence numbers known to be lost in it (empty when unknown).
    pub lost_seqs: Range<u64>,
}

/// Everything a scan learned about a segment file.
#[derive(Debug, Clone)]
pub struct ScanResult {
    /// The header, or why it is unusable.
    pub header: Result<SegmentHeader, HeaderError>,
    /// Metadata of the records kept.
    pub meta: SegmentMeta,
    /// Byte ranges of the records kept, in order (one range when undamaged).
    pub kept: Vec<Range<u64>>,
    /// Damage in the middle (valid records follow it).
    pub damage: Vec<Damage>,
    /// Records valid but dropped because `TolerateTailCorruption` stops at the first damage.
    pub dropped_valid_records: u64,
    /// A torn tail: bytes from here to the end of the file are an unfinished write.
    pub torn_tail: Option<Range<u64>>,
    /// File length.
    pub file_len: u64,
}

impl ScanResult {
    /// Whether the segment must be rewritten and the original quarantined.
    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty()
            || self.dropped_valid_records > 0
            || (self.header.is_err() && self.meta.records > 0)
    }
}

/// Scans a whole segment file.
pub fn scan(
    file: &dyn FileHandle,
    id: SegmentId,
    mode: RecoveryMode,
    index_interval: u64,
) -> io::Result<ScanResult> {
    let file_len = file.len()?;
    let mut w = Window::new(file, file_len);
    let header = SegmentHeader::decode(w.get(0, SEGMENT_HEADER_LEN)?);
    // Records in segment `id` have sequence numbers ≥ id, whatever the header says.
    let floor = id.0;
    let mut meta = SegmentMeta::new(id);
    let mut kept: Vec<Range<u64>> = Vec::new();
    let mut damage = Vec::new();
    let mut dropped_valid_records = 0;
    let mut torn_tail = None;
    let mut offset = SEGMENT_HEADER_LEN as u64;
    let mut stop_keeping = false;
    let mut prev: Option<u64> = None;
    while offset < file_len {
        if let Some((seq, ts, total)) = valid_at(&mut w, offset, floor, prev)? {
            if stop_keeping {
                dropped_valid_records += 1;
            } else {
                meta.note_record(Seq(seq), ts, offset, total, index_interval);
                match kept.last_mut() {
                    Some(r) if r.end == offset => r.end = offset + total,
                    _ => kept.push(offset..offset + total),
                }
            }
            prev = Some(seq);
            offset += total;
            continue;
        }
        // Not a record: find the next valid one to tell damage from a torn tail.
        match resync(&mut w, offset + 1, floor, prev)? {
            None => {
                torn_tail = Some(offset..file_len);
                break;
            }
            Some((next_offset, next_seq)) => {
                let first_lost = prev.map_or(floor, |p| p + 1);
                damage.push(Damage {
                    bytes: offset..next_offset,
                    lost_seqs: first_lost..next_seq,
                });
                if mode == RecoveryMode::TolerateTailCorruption {
                    stop_keeping = true;
                }
                offset = next_offset;
            }
        }
    }
    // Numbers seen in records that were not kept are never handed out again.
    if let Some(p) = prev {
        meta.next_seq = meta.next_seq.max(Seq(p + 1));
    }
    Ok(ScanResult {
        header,
        meta,
        kept,
        damage,
        dropped_valid_records,
        torn_tail,
        file_len,
    })
}

/// A valid record at `offset` whose sequence number follows `prev` (and is ≥ `floor`).
fn valid_at(
    w: &mut Window<'_>,
    offset: u64,
    floor: u64,
    prev: Option<u64>,
) -> io::Result<Option<(u64, u64, u64)>> {
    let head = w.get(offset, RECORD_OVERHEAD)?;
    let Some(seq) = format::peek_seq(head) else {
        return Ok(None);
    };
    if seq.0 < floor || prev.is_some_and(|p| seq.0 <= p) {
        return Ok(None);
    }
    let len = format::le_u32(head) as usize;
    let bytes = w.get(offset, FRAME_LEN + len)?;
    Ok(match format::decode_record(bytes) {
        Decoded::Record {
            header, total_len, ..
        } => Some((header.seq.0, header.timestamp_ms, total_len as u64)),
        _ => None,
    })
}

/// The first offset from `from` holding a valid record with a plausible sequence number.
fn resync(
    w: &mut Window<'_>,
    from: u64,
    floor: u64,
    prev: Option<u64>,
) -> io::Result<Option<(u64, u64)>> {
    let mut offset = from;
    let lowest = prev.map_or(floor, |p| p + 1);
    while offset + RECORD_OVERHEAD as u64 <= w.end {
        // Cheap plausibility filter before any checksum: the sequence number must be one that
        // could follow, given how many records fit in the bytes seen so far.
        let head = w.get(offset, RECORD_OVERHEAD)?;
        if let Some(seq) = format::peek_seq(head) {
            let max_plausible = lowest + (offset - from) / RECORD_OVERHEAD as u64 + 1;
            if seq.0 >= lowest && seq.0 <= max_plausible {
                if let Some((seq, _, _)) = valid_at(w, offset, floor, prev)? {
                    return Ok(Some((offset, seq)));
                }
            }
        }
        offset += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{RecordHeader, encode_record};
    use crate::fs::sim::SimFs;

    fn segment(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = SegmentHeader {
            first_seq: Seq(records.first().map_or(0, |r| r.0)),
            created_ms: 1,
        }
        .encode()
        .to_vec();
        for (seq, payload) in records {
            encode_record(
                &mut out,
                &RecordHeader {
                    seq: Seq(*seq),
                    timestamp_ms: 7,
                    tag: 0,
                },
                payload,
            );
        }
        out
    }

    fn scan_bytes(bytes: &[u8], id: u64, mode: RecoveryMode) -> ScanResult {
        let fs = SimFs::new();
        fs.write_file(Path::new("/seg"), bytes).unwrap();
        let f = fs.open_read(Path::new("/seg")).unwrap();
        scan(f.as_ref(), SegmentId(id), mode, 64).unwrap()
    }

    const RECS: &[(u64, &[u8])] = &[(5, b"alpha"), (6, b"bravo-bravo"), (7, b"c"), (8, b"delta")];

    #[test]
    fn scan_of_a_clean_segment_keeps_every_record() {
        let bytes = segment(RECS);
        let r = scan_bytes(&bytes, 5, RecoveryMode::default());
        assert_eq!(r.meta.records, 4);
        assert_eq!(r.meta.next_seq, Seq(9));
        assert_eq!(r.kept, vec![32..bytes.len() as u64]);
        assert!(r.damage.is_empty() && r.torn_tail.is_none() && !r.is_damaged());
    }

    #[test]
    fn scan_truncated_at_every_byte_reports_a_torn_tail_and_keeps_the_whole_records() {
        let full = segment(RECS);
        let ends: Vec<u64> = {
            let r = scan_bytes(&full, 5, RecoveryMode::default());
            let mut ends = vec![32];
            let mut off = 32u64;
            for (_, p) in RECS {
                off += (RECORD_OVERHEAD + p.len()) as u64;
                ends.push(off);
            }
            assert_eq!(r.meta.len, off);
            ends
        };
        for cut in SEGMENT_HEADER_LEN..full.len() {
            let r = scan_bytes(&full[..cut], 5, RecoveryMode::default());
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count() as u64 - 1;
            assert_eq!(r.meta.records, whole, "cut {cut}");
            assert!(r.damage.is_empty(), "cut {cut}: {:?}", r.damage);
            let at_boundary = ends.contains(&(cut as u64));
            assert_eq!(r.torn_tail.is_none(), at_boundary, "cut {cut}");
        }
    }

    #[test]
    fn scan_with_any_byte_flipped_never_returns_a_wrong_record() {
        let full = segment(RECS);
        for i in SEGMENT_HEADER_LEN..full.len() {
            let mut damaged = full.clone();
            damaged[i] ^= 0x20;
            let r = scan_bytes(&damaged, 5, RecoveryMode::TolerateAnyCorruption);
            // Exactly one record is hit; every other one is kept, in order.
            assert_eq!(r.meta.records, 3, "flip at {i}: {r:?}");
            for range in &r.kept {
                let mut off = range.start;
                while off < range.end {
                    match format::decode_record(&damaged[off as usize..range.end as usize]) {
                        Decoded::Record {
                            header,
                            payload,
                            total_len,
                        } => {
                            let want = RECS.iter().find(|r| r.0 == header.seq.0).unwrap();
                            assert_eq!(&damaged[off as usize..][payload], want.1);
                            off += total_len as u64;
                        }
                        other => panic!("flip at {i}: kept range holds {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn damage_in_the_middle_is_reported_with_the_lost_sequence_numbers() {
        let mut bytes = segment(RECS);
        let second = 32 + RECORD_OVERHEAD + 5;
        bytes[second + 10] ^= 0xFF;
        let r = scan_bytes(&bytes, 5, RecoveryMode::TolerateAnyCorruption);
        assert_eq!(r.meta.records, 3);
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].lost_seqs, 6..7);
        assert!(r.is_damaged());
        let r = scan_bytes(&bytes, 5, RecoveryMode::TolerateTailCorruption);
        assert_eq!(r.meta.records, 1);
        assert_eq!(r.dropped_valid_records, 2);
    }

    #[test]
    fn sparse_index_seeks_to_at_or_before_the_wanted_record() {
        let payload = [0u8; 40];
        let recs: Vec<(u64, &[u8])> = (0..50).map(|s| (s, &payload[..])).collect();
        let r = scan_bytes(&segment(&recs), 0, RecoveryMode::default());
        assert!(r.meta.index.len() > 10);
        for seq in 0..50 {
            let off = r.meta.seek(Seq(seq));
            let rec_off = 32 + seq * (RECORD_OVERHEAD as u64 + 40);
            assert!(off <= rec_off && rec_off - off < 64 + 68, "seq {seq}");
        }
    }
}
