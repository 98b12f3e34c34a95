//! The torn-write fault: cut the end of a spool stream's last segment by a few bytes while the
//! gateway is down, as a crash in the middle of a write would leave it.
//!
//! A torn write can only hit bytes that were never fsync'd, so never a record the client was told
//! "accepted" (G1: with `fsync = always` that answer comes after the fsync). This fault cuts the
//! last record of a stream whatever it was told, so it can destroy a record that had been
//! acknowledged: the helper returns that record's `spillway.id`, and the report counts it as
//! destroyed by the fault instead of lost by Spillway. Every *other* record must survive: the
//! spool's recovery truncates the torn tail and delivers the rest.
//!
//! Only a record the stream has not acknowledged yet is cut (its sequence number at or above the
//! checkpoint's `acked_upto`): a record already delivered to Kafka and checkpointed cannot be
//! "in the middle of its write".

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use spillway::envelope::Envelope;
use spillway_spool::format::{self, Decoded, SEGMENT_HEADER_LEN};

/// What a torn write destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Torn {
    pub stream: String,
    pub segment: PathBuf,
    /// Bytes cut from the end of the last record.
    pub cut: u64,
    /// The torn record's sequence number in its stream.
    pub seq: u64,
    /// The torn record's `spillway.id` (when its payload was an envelope).
    pub id: Option<String>,
}

/// The last whole record of a segment: where it starts and ends, its seq and payload.
struct LastRecord {
    start: u64,
    end: u64,
    seq: u64,
    payload: Vec<u8>,
}

fn last_record(bytes: &[u8]) -> Option<LastRecord> {
    let mut at = SEGMENT_HEADER_LEN;
    let mut last = None;
    while at < bytes.len() {
        match format::decode_record(&bytes[at..]) {
            Decoded::Record {
                header,
                payload,
                total_len,
            } => {
                last = Some(LastRecord {
                    start: at as u64,
                    end: (at + total_len) as u64,
                    seq: header.seq.0,
                    payload: bytes[at + payload.start..at + payload.end].to_vec(),
                });
                at += total_len;
            }
            Decoded::Incomplete { .. } | Decoded::Corrupt(_) => break,
        }
    }
    last
}

/// `acked_upto` from a stream's checkpoint file (0 when there is none or it is unreadable).
fn acked_upto(stream_dir: &Path) -> u64 {
    let Ok(bytes) = fs::read(stream_dir.join("checkpoint")) else {
        return 0;
    };
    if bytes.len() < 20 || &bytes[..8] != b"SPWLCKP\0" {
        return 0;
    }
    u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"))
}

/// Tears the last record of one stream of the (closed) spool in `spool_dir`. `pick` chooses the
/// stream among the candidates and the number of bytes cut (1 to 24, never the whole record).
/// `Ok(None)` when no stream holds an unacknowledged record.
pub fn tear_tail(spool_dir: &Path, pick: u64) -> io::Result<Option<Torn>> {
    let streams = spool_dir.join("streams");
    let mut names: Vec<PathBuf> = match fs::read_dir(&streams) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    names.sort();
    let mut candidates = Vec::new();
    for dir in names {
        let mut segments: Vec<PathBuf> = fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segments.sort();
        let Some(segment) = segments.pop() else {
            continue;
        };
        let bytes = fs::read(&segment)?;
        let Some(last) = last_record(&bytes) else {
            continue;
        };
        if last.seq >= acked_upto(&dir) {
            candidates.push((dir, segment, last));
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let (dir, segment, last) = candidates.swap_remove((pick % candidates.len() as u64) as usize);
    let len = last.end - last.start;
    let cut = 1 + (pick >> 32) % (len - 1).min(24);
    let file = OpenOptions::new().write(true).open(&segment)?;
    file.set_len(last.end - cut)?;
    file.sync_all()?;
    Ok(Some(Torn {
        stream: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        segment,
        cut,
        seq: last.seq,
        id: Envelope::decode(&last.payload)
            .ok()
            .map(|e| e.record.id.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway::api::Priority;
    use spillway::record::{OutRecord, SpillwayId};
    use spillway_spool::{RecordIn, Spool, SpoolConfig, StreamName};

    fn envelope(seq: u64) -> Vec<u8> {
        let id = SpillwayId {
            instance: 0xabc,
            boot: 1,
            seq,
        };
        Envelope {
            record: OutRecord::new("t", id)
                .key("k")
                .value(format!("value {seq}")),
            priority: Priority::Critical,
            partition: Some(0),
            possibly_persisted: None,
        }
        .encode()
    }

    fn spool_with(dir: &Path, n: u64) {
        let (spool, _) = Spool::open(dir, SpoolConfig::default()).unwrap();
        let stream = StreamName::new("t.0").unwrap();
        for seq in 0..n {
            spool
                .append_blocking(&stream, RecordIn::new(envelope(seq)))
                .unwrap();
        }
        spool.close().unwrap();
    }

    fn ids_left(dir: &Path) -> Vec<String> {
        let (spool, _) = Spool::open(dir, SpoolConfig::default()).unwrap();
        let stream = StreamName::new("t.0").unwrap();
        let mut reader = spool.reader(&stream).unwrap();
        let mut ids = Vec::new();
        for r in reader.read_batch(1000, 1 << 20).unwrap() {
            ids.push(Envelope::decode(&r.payload).unwrap().record.id.to_string());
        }
        ids
    }

    #[test]
    fn tearing_cuts_only_the_last_record_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        spool_with(dir.path(), 5);
        let torn = tear_tail(dir.path(), 12345)
            .unwrap()
            .expect("a stream to tear");
        assert_eq!(torn.stream, "t.0");
        assert_eq!(torn.seq, 4);
        assert_eq!(torn.id.as_deref(), Some("0000000000000abc:1:4"));
        assert!((1..=24).contains(&torn.cut));
        let left = ids_left(dir.path());
        assert_eq!(
            left,
            (0..4)
                .map(|s| format!("0000000000000abc:1:{s}"))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_empty_spool_has_nothing_to_tear() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(tear_tail(dir.path(), 1).unwrap(), None);
        spool_with(dir.path(), 0);
        assert_eq!(tear_tail(dir.path(), 1).unwrap(), None);
    }

    #[test]
    fn a_record_below_the_checkpoint_is_never_torn() {
        let dir = tempfile::tempdir().unwrap();
        spool_with(dir.path(), 3);
        let stream_dir = dir.path().join("streams/t.0");
        let mut checkpoint = b"SPWLCKP\0".to_vec();
        checkpoint.extend_from_slice(&1u16.to_le_bytes());
        checkpoint.extend_from_slice(&0u16.to_le_bytes());
        checkpoint.extend_from_slice(&3u64.to_le_bytes());
        fs::write(stream_dir.join("checkpoint"), checkpoint).unwrap();
        assert_eq!(tear_tail(dir.path(), 1).unwrap(), None);
    }
}
