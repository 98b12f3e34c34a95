//! Damage and faults: torn tails, corrupt records, bad checkpoints, ENOSPC, EIO, short writes.
//! Opening never refuses because of damage; it repairs and reports.

mod common;

use common::*;
use spillway_spool::fs::sim::{CrashMode, EIO, ENOSPC, FailRule, Faults, Op, SimFs};
use spillway_spool::inspect::{repair, verify};
use spillway_spool::{
    AppendError, RecordIn, RecoveryAction, RecoveryMode, Seq, Severity, Spool, SpoolConfig,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn big_segments() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    }
}

/// Writes `n` records of 40 bytes to stream `s` and returns the single segment's path.
fn spool_with_records(dir: &Path, n: u64) -> PathBuf {
    let (spool, _) = Spool::open(dir, big_segments()).unwrap();
    for i in 0..n {
        spool
            .append_blocking(&name("s"), RecordIn::new(payload("s", i, 40)))
            .unwrap();
    }
    dir.join("streams/s/00000000000000000000.seg")
}

const REC: u64 = 28 + 40;

fn seqs(spool: &Spool) -> Vec<u64> {
    read_all(spool, &name("s"))
        .iter()
        .map(|r| r.position.seq.0)
        .collect()
}

#[test]
fn a_torn_tail_is_cut_at_open_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = spool_with_records(tmp.path(), 5);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0x20, 0, 0, 0, 1, 2, 3]); // half a record
    std::fs::write(&seg, &bytes).unwrap();
    let (spool, report) = Spool::open(tmp.path(), big_segments()).unwrap();
    assert!(matches!(
        report.actions[..],
        [RecoveryAction::TruncatedTornTail { bytes: 7, .. }]
    ));
    assert_eq!(seqs(&spool), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        spool
            .append_blocking(&name("s"), RecordIn::new("x"))
            .unwrap()
            .seq,
        Seq(5)
    );
    drop(spool);
    let (_, report) = Spool::open(tmp.path(), big_segments()).unwrap();
    assert!(report.is_clean(), "{:?}", report.actions);
}

#[test]
fn a_corrupt_record_mid_segment_is_quarantined_with_a_report_and_every_valid_record_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = spool_with_records(tmp.path(), 6);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(32 + 2 * REC + 30) as usize] ^= 0xFF; // payload of record 2
    std::fs::write(&seg, &bytes).unwrap();
    let (spool, report) = Spool::open(tmp.path(), big_segments()).unwrap();
    assert_eq!(report.quarantined(), 1);
    let RecoveryAction::QuarantinedSegment {
        quarantine_file,
        records_kept,
        lost_seqs,
        ..
    } = &report.actions[0]
    else {
        panic!("{:?}", report.actions)
    };
    assert_eq!(*records_kept, 5);
    assert_eq!(lost_seqs.len(), 1);
    assert_eq!(lost_seqs[0], 2..3);
    assert_eq!(report.actions[0].severity(), Severity::Error);
    assert!(quarantine_file.exists());
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{}.json", quarantine_file.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(json["records_kept"], 5);
    assert_eq!(json["damage"][0]["lost_seqs"]["start"], 2);
    assert_eq!(seqs(&spool), vec![0, 1, 3, 4, 5]);
    for r in read_all(&spool, &name("s")) {
        assert_eq!(r.payload.as_ref(), payload("s", r.position.seq.0, 40));
    }
    let inspection = spool.inspect();
    assert_eq!(inspection.quarantine.len(), 1);
    assert!(inspection.quarantine[0].report.is_some());
    assert_eq!(
        spool
            .append_blocking(&name("s"), RecordIn::new("x"))
            .unwrap()
            .seq,
        Seq(6)
    );
}

#[test]
fn tolerate_tail_corruption_keeps_only_the_records_before_the_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = spool_with_records(tmp.path(), 6);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(32 + 2 * REC + 30) as usize] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    let cfg = SpoolConfig {
        recovery: RecoveryMode::TolerateTailCorruption,
        ..big_segments()
    };
    let (spool, report) = Spool::open(tmp.path(), cfg).unwrap();
    let RecoveryAction::QuarantinedSegment {
        dropped_valid_records,
        ..
    } = &report.actions[0]
    else {
        panic!("{:?}", report.actions)
    };
    assert_eq!(*dropped_valid_records, 3);
    assert_eq!(seqs(&spool), vec![0, 1]);
    assert_eq!(
        spool
            .append_blocking(&name("s"), RecordIn::new("x"))
            .unwrap()
            .seq,
        Seq(6)
    );
}

#[test]
fn a_garbled_or_zero_length_checkpoint_is_rebuilt_and_records_are_delivered_again() {
    for garbage in [&b""[..], b"not a checkpoint at all, no no"] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
            for i in 0..30 {
                spool
                    .append_blocking(&name("s"), RecordIn::new(payload("s", i, 40)))
                    .unwrap();
            }
            let mut reader = spool.reader(&name("s")).unwrap();
            for r in reader.read_batch(20, usize::MAX).unwrap() {
                reader.ack(r.position.seq).unwrap();
            }
            spool.flush_blocking().unwrap();
        }
        let ckpt = tmp.path().join("streams/s/checkpoint");
        std::fs::write(&ckpt, garbage).unwrap();
        let (spool, report) = Spool::open(tmp.path(), small_config()).unwrap();
        assert!(
            matches!(
                report.actions[..],
                [RecoveryAction::RebuiltCheckpoint { .. }]
            ),
            "{:?}",
            report.actions
        );
        let got = seqs(&spool);
        assert_eq!(*got.last().unwrap(), 29);
        assert!(
            got[0] <= 20,
            "re-delivers from the oldest segment, never skips: {}",
            got[0]
        );
    }
}

#[test]
fn a_torn_segment_creation_gets_a_fresh_header() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with_records(tmp.path(), 3);
    let torn = tmp.path().join("streams/s/00000000000000000003.seg");
    std::fs::write(&torn, [b'S', b'P']).unwrap();
    let (spool, report) = Spool::open(tmp.path(), big_segments()).unwrap();
    assert!(matches!(
        report.actions[..],
        [RecoveryAction::RepairedSegmentHeader { removed: false, .. }]
    ));
    assert_eq!(seqs(&spool), vec![0, 1, 2]);
    assert_eq!(
        spool
            .append_blocking(&name("s"), RecordIn::new("x"))
            .unwrap()
            .seq,
        Seq(3)
    );
    assert_eq!(seqs(&spool), vec![0, 1, 2, 3]);
}

#[test]
fn verify_reports_problems_without_changing_anything_and_repair_fixes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = spool_with_records(tmp.path(), 6);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(32 + REC + 30) as usize] ^= 0x01;
    bytes.extend_from_slice(b"torn");
    std::fs::write(&seg, &bytes).unwrap();
    let report = verify(tmp.path()).unwrap();
    assert_eq!(report.quarantined(), 1);
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        bytes,
        "verify changed the segment"
    );
    assert!(
        std::fs::read_dir(tmp.path().join("quarantine"))
            .unwrap()
            .next()
            .is_none()
    );
    let repaired = repair(tmp.path(), big_segments()).unwrap();
    assert_eq!(repaired.quarantined(), 1);
    assert!(verify(tmp.path()).unwrap().is_clean());
}

#[test]
fn unknown_files_are_left_alone_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with_records(tmp.path(), 1);
    std::fs::write(tmp.path().join("streams/s/notes.txt"), b"hi").unwrap();
    std::fs::create_dir(tmp.path().join("streams/bad name")).unwrap();
    let (_, report) = Spool::open(tmp.path(), big_segments()).unwrap();
    assert_eq!(report.actions.len(), 2);
    assert!(tmp.path().join("streams/s/notes.txt").exists());
}

fn rule(op: Op, errno: i32, path: Option<&str>, times: u32) -> FailRule {
    FailRule {
        op,
        path_contains: path.map(str::to_string),
        errno,
        skip: 0,
        times,
    }
}

#[test]
fn enospc_is_a_typed_error_leaves_no_half_record_and_the_spool_recovers_when_space_returns() {
    let fs = SimFs::new();
    let (spool, _) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs.clone())).unwrap();
    let s = name("s");
    for i in 0..3 {
        spool
            .append_blocking(&s, RecordIn::new(payload("s", i, 40)))
            .unwrap();
    }
    fs.set_faults(Faults {
        short_writes: true,
        fail: vec![rule(Op::Write, ENOSPC, None, u32::MAX)],
        ..Faults::default()
    });
    for _ in 0..3 {
        let e = spool
            .append_blocking(&s, RecordIn::new(vec![9u8; 300]))
            .unwrap_err();
        assert!(matches!(e, AppendError::NoSpace { .. }), "{e}");
        assert!(e.is_retryable());
    }
    fs.clear_faults();
    let p = spool
        .append_blocking(&s, RecordIn::new(payload("s", 99, 40)))
        .unwrap();
    let got = read_all(&spool, &s);
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].payload.as_ref(), payload("s", 99, 40));
    assert!(p.seq >= Seq(3));
    drop(spool);
    fs.restart(CrashMode::DropUnsynced);
    let (spool, report) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs)).unwrap();
    assert_eq!(read_all(&spool, &s).len(), 4, "{:?}", report.actions);
    assert_eq!(report.quarantined(), 0);
}

#[test]
fn eio_on_fsync_refuses_the_append_and_later_appends_succeed_in_a_fresh_segment() {
    let fs = SimFs::new();
    let (spool, _) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs.clone())).unwrap();
    let s = name("s");
    spool.append_blocking(&s, RecordIn::new("a")).unwrap();
    fs.set_faults(Faults {
        fail: vec![rule(Op::Sync, EIO, None, 1)],
        ..Faults::default()
    });
    let e = spool
        .append_blocking(&s, RecordIn::new("lost"))
        .unwrap_err();
    assert!(matches!(e, AppendError::Io { .. }), "{e}");
    spool.append_blocking(&s, RecordIn::new("b")).unwrap();
    let got: Vec<_> = read_all(&spool, &s)
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    assert_eq!(got, vec!["a", "b"]);
    drop(spool);
    fs.restart(CrashMode::DropUnsynced);
    let (spool, _) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs)).unwrap();
    let got: Vec<_> = read_all(&spool, &s)
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    assert_eq!(got, vec!["a", "b"]);
}

#[test]
fn a_failed_checkpoint_rename_deletes_no_segment() {
    let fs = SimFs::new();
    let (spool, _) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs.clone())).unwrap();
    let s = name("s");
    for i in 0..20 {
        spool
            .append_blocking(&s, RecordIn::new(payload("s", i, 60)))
            .unwrap();
    }
    let files_before = fs.list_files().len();
    let mut reader = spool.reader(&s).unwrap();
    for r in reader.read_batch(15, usize::MAX).unwrap() {
        reader.ack(r.position.seq).unwrap();
    }
    fs.set_faults(Faults {
        fail: vec![rule(Op::Rename, EIO, None, 1)],
        ..Faults::default()
    });
    assert!(spool.flush_blocking().is_err());
    assert_eq!(
        fs.list_files().len(),
        files_before + 1,
        "only checkpoint.tmp was added"
    );
    spool.flush_blocking().unwrap();
    assert!(fs.list_files().len() < files_before);
}

#[test]
fn short_writes_are_completed_transparently() {
    let fs = SimFs::new();
    let (spool, _) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs.clone())).unwrap();
    fs.set_faults(Faults {
        short_writes: true,
        ..Faults::default()
    });
    let s = name("s");
    for i in 0..10 {
        spool
            .append_blocking(&s, RecordIn::new(payload("s", i, 100)))
            .unwrap();
    }
    let got = read_all(&spool, &s);
    assert_eq!(got.len(), 10);
    assert_eq!(got[9].payload.as_ref(), payload("s", 9, 100));
}

#[test]
fn a_failed_sync_with_a_later_batch_in_flight_fails_both_and_nothing_after_it_is_visible() {
    // Two commits in flight, so a later batch of the stream is written while one syncs.
    let cfg = SpoolConfig {
        commits_in_flight: 2,
        ..small_config()
    };
    for skip in 0..12 {
        let fs = SimFs::new();
        let (spool, _) = Spool::open_with_fs("/spool", cfg.clone(), Arc::new(fs.clone())).unwrap();
        let s = name("s");
        spool.append_blocking(&s, RecordIn::new("first")).unwrap();
        fs.set_faults(Faults {
            fail: vec![FailRule {
                op: Op::Sync,
                path_contains: None,
                errno: EIO,
                skip,
                times: 1,
            }],
            ..Faults::default()
        });
        let results: Vec<(u64, Result<spillway_spool::Position, AppendError>)> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8u64)
                    .map(|t| {
                        let (spool, s) = (spool.clone(), s.clone());
                        scope.spawn(move || {
                            (0..6u64)
                                .map(|i| {
                                    let n = t * 100 + i;
                                    (
                                        n,
                                        spool.append_blocking(
                                            &s,
                                            RecordIn::new(payload("s", n, 30)),
                                        ),
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect()
            });
        let ok: std::collections::BTreeMap<u64, u64> = results
            .iter()
            .filter_map(|(n, r)| r.as_ref().ok().map(|p| (p.seq.0, *n)))
            .collect();
        let check = |spool: &Spool, what: &str| {
            let got = read_all(spool, &s);
            let got_ok: Vec<(u64, u64)> = got[1..]
                .iter()
                .map(|r| {
                    let n: u64 = String::from_utf8_lossy(&r.payload)
                        .split('#')
                        .nth(1)
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(r.payload.as_ref(), payload("s", n, 30), "{what}: damaged");
                    (r.position.seq.0, n)
                })
                .collect();
            let want: Vec<(u64, u64)> = ok.iter().map(|(s, n)| (*s, *n)).collect();
            assert_eq!(
                got_ok, want,
                "{what} (skip {skip}): exactly the acknowledged appends, in order"
            );
        };
        check(&spool, "live");
        drop(spool);
        fs.restart(CrashMode::DropUnsynced);
        let (spool, report) = Spool::open_with_fs("/spool", small_config(), Arc::new(fs)).unwrap();
        assert_eq!(report.quarantined(), 0, "{:?}", report.actions);
        check(&spool, "after restart");
    }
}
