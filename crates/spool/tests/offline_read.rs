//! `inspect::read_stream`: the records of a closed spool's stream, read-only, in order, the same
//! records a repair would keep.

mod common;

use common::*;
use spillway_spool::inspect::{read_stream, verify};
use spillway_spool::{InspectError, Record, RecordIn, Seq, Spool, SpoolConfig};
use std::path::Path;

/// Writes `n` records of `len` bytes to stream `s` over several segments, acknowledges the first
/// `acked`, closes the spool.
fn spool_with(dir: &Path, n: u64, len: usize, acked: u64, config: SpoolConfig) {
    let (spool, _) = Spool::open(dir, config).unwrap();
    for i in 0..n {
        spool
            .append_blocking(
                &name("s"),
                RecordIn::new(payload("s", i, len)).with_tag(i as u32),
            )
            .unwrap();
    }
    let mut reader = spool.reader(&name("s")).unwrap();
    let mut left = acked;
    while left > 0 {
        for r in reader.read_batch(left as usize, 1 << 20).unwrap() {
            spool.ack(&r.position).unwrap();
            left -= 1;
        }
    }
    drop(reader);
    spool.close().unwrap();
}

fn read(dir: &Path, from: Option<Seq>) -> Vec<Record> {
    read_stream(dir, &name("s"), from)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.position.seq.0).collect()
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn read_stream_returns_every_unacknowledged_record_in_order_with_payload_tag_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with(tmp.path(), 40, 50, 0, small_config());
    let records = read(tmp.path(), None);
    assert_eq!(seqs(&records), (0..40).collect::<Vec<_>>());
    for r in &records {
        let i = r.position.seq.0;
        assert_eq!(&r.payload[..], &payload("s", i, 50)[..]);
        assert_eq!(r.tag, i as u32);
        assert!(r.timestamp_ms > 1_600_000_000_000);
    }
    let segments = std::fs::read_dir(tmp.path().join("streams/s"))
        .unwrap()
        .count();
    assert!(segments > 3, "the records span several segments");
}

#[test]
fn read_stream_starts_at_the_checkpoint_unless_told_where() {
    let tmp = tempfile::tempdir().unwrap();
    // Large segments keep acknowledged records on disk.
    let config = SpoolConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    spool_with(tmp.path(), 30, 20, 12, config);
    let it = read_stream(tmp.path(), &name("s"), None).unwrap();
    assert_eq!(it.acked_upto(), Seq(12));
    assert_eq!(seqs(&read(tmp.path(), None)), (12..30).collect::<Vec<_>>());
    assert_eq!(
        seqs(&read(tmp.path(), Some(Seq(3)))),
        (3..30).collect::<Vec<_>>(),
        "acknowledged records not yet deleted are there on request"
    );
    assert_eq!(seqs(&read(tmp.path(), Some(Seq(29)))), vec![29]);
    assert!(read(tmp.path(), Some(Seq(30))).is_empty());
}

#[test]
fn read_stream_seeks_across_many_segments_to_the_wanted_record() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with(tmp.path(), 300, 30, 0, small_config());
    for from in [0u64, 1, 7, 8, 100, 151, 299] {
        assert_eq!(
            seqs(&read(tmp.path(), Some(Seq(from)))),
            (from..300).collect::<Vec<_>>(),
            "from {from}"
        );
    }
    // One large segment: the scan's index lets the reader start near the wanted record.
    let big = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 8 << 20,
        ..small_config()
    };
    spool_with(big.path(), 3000, 100, 0, config);
    for from in [0u64, 999, 1000, 2500, 2999] {
        let records = read(big.path(), Some(Seq(from)));
        assert_eq!(
            seqs(&records),
            (from..3000).collect::<Vec<_>>(),
            "from {from}"
        );
        assert_eq!(&records[0].payload[..], &payload("s", from, 100)[..]);
    }
}

#[test]
fn read_stream_changes_nothing_on_disk_and_takes_no_lock() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with(tmp.path(), 20, 50, 5, small_config());
    let before = snapshot(tmp.path());
    // While a reader is open, the spool can still be opened: no lock is held.
    let it = read_stream(tmp.path(), &name("s"), None).unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    drop(spool);
    let after_open = snapshot(tmp.path());
    assert_eq!(it.count(), 15);
    assert_eq!(snapshot(tmp.path()), after_open);
    assert_eq!(before.len(), after_open.len());
}

#[test]
fn read_stream_of_a_damaged_segment_returns_what_repair_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    spool_with(tmp.path(), 10, 40, 0, config.clone());
    let seg = tmp.path().join("streams/s/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let rec = 28 + 40;
    bytes[32 + 3 * rec + 30] ^= 0xFF; // inside record 3's payload
    bytes.extend_from_slice(&[9, 0, 0, 0, 1]); // and a torn tail
    std::fs::write(&seg, &bytes).unwrap();
    let exported = seqs(&read(tmp.path(), None));
    assert_eq!(exported, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    assert!(!verify(tmp.path()).unwrap().is_clean());
    let (spool, _) = Spool::open(tmp.path(), config).unwrap();
    let kept: Vec<u64> = read_all(&spool, &name("s"))
        .iter()
        .map(|r| r.position.seq.0)
        .collect();
    assert_eq!(exported, kept);
}

#[test]
fn read_stream_of_an_unknown_stream_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with(tmp.path(), 1, 10, 0, small_config());
    let err = read_stream(tmp.path(), &name("nope"), None).unwrap_err();
    assert!(matches!(err, InspectError::UnknownStream { .. }), "{err}");
    assert!(err.to_string().contains("no stream nope"));
}

#[test]
fn read_stream_with_a_garbled_checkpoint_starts_at_the_oldest_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    spool_with(tmp.path(), 8, 10, 5, config);
    std::fs::write(tmp.path().join("streams/s/checkpoint"), b"").unwrap();
    let it = read_stream(tmp.path(), &name("s"), None).unwrap();
    assert_eq!(it.acked_upto(), Seq(0));
    assert_eq!(
        it.count(),
        8,
        "delivered again rather than lost, as recovery does"
    );
}
