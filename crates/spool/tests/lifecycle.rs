//! Behaviour of an undamaged spool: append, read, ack, restart, rollover, capacity, locking.

mod common;

use common::*;
use spillway_spool::fs::sim::SimFs;
use spillway_spool::{
    AckError, AppendError, FsyncPolicy, OpenError, ReaderError, RecordIn, Seq, Spool,
};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

fn append_n(spool: &Spool, stream: &str, range: std::ops::Range<u64>, len: usize) -> Vec<Seq> {
    let s = name(stream);
    range
        .map(|i| {
            spool
                .append_blocking(&s, RecordIn::new(payload(stream, i, len)))
                .unwrap()
                .seq
        })
        .collect()
}

#[test]
fn appends_get_consecutive_positions_and_the_reader_sees_them_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, report) = Spool::open(tmp.path(), small_config()).unwrap();
    assert!(report.is_clean());
    let seqs = append_n(&spool, "orders.3", 0..20, 50);
    assert_eq!(seqs, (0..20).map(Seq).collect::<Vec<_>>());
    let records = read_all(&spool, &name("orders.3"));
    assert_eq!(records.len(), 20);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.position.seq, Seq(i as u64));
        assert_eq!(r.payload.as_ref(), payload("orders.3", i as u64, 50));
    }
}

#[test]
fn batch_append_is_one_unit_with_consecutive_sequence_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let s = name("b");
    let batch: Vec<RecordIn> = (0..30)
        .map(|i| RecordIn::new(payload("b", i, 40)).with_tag(i as u32))
        .collect();
    let positions = spool.append_batch_blocking(&s, batch).unwrap();
    assert_eq!(
        positions.iter().map(|p| p.seq.0).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    let records = read_all(&spool, &s);
    assert_eq!(
        records.iter().map(|r| r.tag).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
}

#[test]
fn sequence_numbers_continue_after_a_restart_even_when_everything_was_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let s = name("s");
    {
        let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
        append_n(&spool, "s", 0..25, 60);
        let mut reader = spool.reader(&s).unwrap();
        for r in reader.read_batch(100, usize::MAX).unwrap() {
            reader.ack(r.position.seq).unwrap();
        }
        spool.flush_blocking().unwrap();
    }
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    assert!(read_all(&spool, &s).is_empty());
    assert_eq!(append_n(&spool, "s", 25..26, 10), vec![Seq(25)]);
}

#[test]
fn unacknowledged_records_are_delivered_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = name("s");
    {
        let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
        append_n(&spool, "s", 0..10, 30);
        let mut reader = spool.reader(&s).unwrap();
        let batch = reader.read_batch(10, usize::MAX).unwrap();
        for r in &batch[..4] {
            reader.ack(r.position.seq).unwrap();
        }
        reader.ack(Seq(6)).unwrap(); // out of order: does not move the checkpoint past 4
        spool.flush_blocking().unwrap();
    }
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let seqs: Vec<u64> = read_all(&spool, &s)
        .iter()
        .map(|r| r.position.seq.0)
        .collect();
    assert_eq!(seqs, (4..10).collect::<Vec<_>>());
}

#[test]
fn ack_meta_is_stored_with_the_checkpoint_and_returned_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let s = name("orders.0");
    {
        let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
        append_n(&spool, "orders.0", 0..3, 10);
        let mut reader = spool.reader(&s).unwrap();
        let batch = reader.read_batch(3, usize::MAX).unwrap();
        spool
            .ack_with_meta(&batch[1].position, b"offset=41")
            .unwrap();
        spool
            .ack_with_meta(&batch[0].position, b"offset=40")
            .unwrap();
        let too_big = vec![0u8; spillway_spool::MAX_ACK_META_BYTES + 1];
        assert!(matches!(
            spool.ack_with_meta(&batch[2].position, &too_big),
            Err(AckError::MetaTooLarge { .. })
        ));
        spool.flush_blocking().unwrap();
    }
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let ckpt = spool.checkpoint(&s).unwrap();
    assert_eq!(ckpt.acked_upto, Seq(2));
    assert_eq!(
        ckpt.meta, b"offset=41",
        "meta of the highest acknowledged record in the prefix"
    );
}

#[test]
fn acking_a_position_that_was_never_delivered_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let p = spool
        .append_blocking(&name("s"), RecordIn::new("x"))
        .unwrap();
    assert!(matches!(spool.ack(&p), Err(AckError::NotDelivered(_))));
    let unknown = spillway_spool::Position {
        stream: name("nope"),
        seq: Seq(0),
    };
    assert!(matches!(
        spool.ack(&unknown),
        Err(AckError::UnknownStream(_))
    ));
}

#[test]
fn dropping_a_reader_makes_its_unacknowledged_records_deliverable_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let s = name("s");
    append_n(&spool, "s", 0..5, 10);
    let mut reader = spool.reader(&s).unwrap();
    assert!(matches!(spool.reader(&s), Err(ReaderError::Busy(_))));
    let batch = reader.read_batch(5, usize::MAX).unwrap();
    reader.ack(batch[0].position.seq).unwrap();
    drop(reader);
    let again: Vec<u64> = read_all(&spool, &s)
        .iter()
        .map(|r| r.position.seq.0)
        .collect();
    assert_eq!(again, vec![1, 2, 3, 4]);
}

#[test]
fn read_batch_honours_record_and_byte_limits_but_returns_at_least_one_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.segment_bytes = 1 << 20;
    let (spool, _) = Spool::open(tmp.path(), cfg).unwrap();
    let s = name("s");
    append_n(&spool, "s", 0..10, 100);
    spool
        .append_blocking(&s, RecordIn::new(vec![7u8; 100_000]))
        .unwrap();
    let mut reader = spool.reader(&s).unwrap();
    assert_eq!(reader.read_batch(3, usize::MAX).unwrap().len(), 3);
    assert_eq!(reader.read_batch(100, 250).unwrap().len(), 3);
    assert_eq!(reader.read_batch(100, 1).unwrap().len(), 1);
    let rest = reader.read_batch(100, usize::MAX).unwrap();
    assert_eq!(rest.len(), 4);
    assert_eq!(rest.last().unwrap().payload.len(), 100_000);
}

#[test]
fn segments_roll_over_at_the_configured_size_and_are_deleted_once_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let s = name("s");
    append_n(&spool, "s", 0..40, 100);
    let dir = tmp.path().join("streams/s");
    let segs = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
    };
    let before = segs();
    assert!(
        before >= 10,
        "512-byte segments with 128-byte records: {before}"
    );
    let used_before = spool.stats().used_bytes;
    let mut reader = spool.reader(&s).unwrap();
    for r in reader.read_batch(30, usize::MAX).unwrap() {
        reader.ack(r.position.seq).unwrap();
    }
    assert_eq!(
        segs(),
        before,
        "nothing deleted before the checkpoint is written"
    );
    spool.flush_blocking().unwrap();
    assert!(segs() < before);
    assert!(spool.stats().used_bytes < used_before);
    drop(reader);
    assert_eq!(read_all(&spool, &s).first().unwrap().position.seq, Seq(30));
}

#[test]
fn an_append_past_the_capacity_fails_fast_with_full_and_succeeds_after_acks_free_space() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.capacity_bytes = 4096;
    let (spool, _) = Spool::open(tmp.path(), cfg).unwrap();
    let s = name("s");
    let mut ok = 0;
    let err = loop {
        match spool.append_blocking(&s, RecordIn::new(vec![1u8; 100])) {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 100, "never full");
    };
    assert!(
        matches!(err, AppendError::Full { capacity: 4096, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    let mut reader = spool.reader(&s).unwrap();
    for r in reader.read_batch(1000, usize::MAX).unwrap() {
        reader.ack(r.position.seq).unwrap();
    }
    spool.flush_blocking().unwrap();
    spool
        .append_blocking(&s, RecordIn::new(vec![1u8; 100]))
        .unwrap();
}

#[test]
fn a_record_larger_than_the_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.max_record_bytes = 10;
    let (spool, _) = Spool::open(tmp.path(), cfg).unwrap();
    let e = spool
        .append_blocking(&name("s"), RecordIn::new(vec![0u8; 11]))
        .unwrap_err();
    assert!(matches!(
        e,
        AppendError::RecordTooLarge { len: 11, max: 10 }
    ));
    assert!(!e.is_retryable());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let err = Spool::open(tmp.path(), small_config()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }));
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    drop(spool);
    Spool::open(tmp.path(), small_config()).unwrap();
}

#[test]
fn files_are_private_to_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("spool");
    let (spool, _) = Spool::open(&root, small_config()).unwrap();
    append_n(&spool, "s", 0..3, 10);
    let mut reader = spool.reader(&name("s")).unwrap();
    let r = reader.read_batch(1, 100).unwrap();
    reader.ack(r[0].position.seq).unwrap();
    spool.flush_blocking().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [
        root.clone(),
        root.join("streams"),
        root.join("quarantine"),
        root.join("streams/s"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in std::fs::read_dir(root.join("streams/s")).unwrap() {
        let p = f.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[test]
fn thousands_of_streams_cost_one_small_directory_each() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let names: Vec<_> = (0..1500).map(|i| name(&format!("topic.{i}"))).collect();
    std::thread::scope(|scope| {
        for chunk in names.chunks(150) {
            let spool = spool.clone();
            scope.spawn(move || {
                for n in chunk {
                    spool
                        .append_blocking(n, RecordIn::new(n.as_str().as_bytes().to_vec()))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(spool.streams().len(), 1500);
    // A second round: the writer keeps at most 1024 files open, so it reopens some here.
    for n in &names {
        spool.append_blocking(n, RecordIn::new("second")).unwrap();
    }
    drop(spool);
    let (spool, report) = Spool::open(tmp.path(), small_config()).unwrap();
    assert_eq!(report.streams, 1500);
    for i in [0, 777, 1499] {
        let r = read_all(&spool, &names[i]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].payload.as_ref(), format!("topic.{i}").as_bytes());
        assert_eq!(r[1].payload.as_ref(), b"second");
    }
}

#[test]
fn append_is_not_acknowledged_before_fsync_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let gated = common::GatedFs::new(Arc::new(spillway_spool::fs::RealFs));
    let (spool, _) =
        Spool::open_with_fs(tmp.path(), small_config(), Arc::new(gated.clone())).unwrap();
    let s = name("s");
    spool.append_blocking(&s, RecordIn::new("first")).unwrap();
    gated.set_open(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let spool2 = spool.clone();
    let s2 = s.clone();
    let t =
        std::thread::spawn(move || tx.send(spool2.append_blocking(&s2, RecordIn::new("second"))));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "acknowledged before fsync"
    );
    assert_eq!(
        read_all(&spool, &s).len(),
        1,
        "not visible to readers before fsync"
    );
    gated.set_open(true);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .seq,
        Seq(1)
    );
    t.join().unwrap().ok();
    assert_eq!(read_all(&spool, &s).len(), 2);
}

#[test]
fn concurrent_appends_share_fsyncs_through_group_commit() {
    let fs = SimFs::new();
    let gated = common::GatedFs::new(Arc::new(fs));
    let (spool, _) =
        Spool::open_with_fs("/spool", small_config(), Arc::new(gated.clone())).unwrap();
    let s = name("s");
    spool.append_blocking(&s, RecordIn::new("warm")).unwrap();
    let before = gated.syncs.load(std::sync::atomic::Ordering::SeqCst);
    gated.set_open(false);
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (spool, s) = (spool.clone(), s.clone());
            std::thread::spawn(move || {
                spool
                    .append_blocking(&s, RecordIn::new(vec![i as u8; 8]))
                    .unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    gated.set_open(true);
    for h in handles {
        h.join().unwrap();
    }
    let syncs = gated.syncs.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(syncs < 16, "64 concurrent appends took {syncs} fsyncs");
    assert_eq!(read_all(&spool, &s).len(), 65);
}

#[tokio::test]
async fn an_async_reader_wakes_up_when_records_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    let s = name("s");
    let mut reader = spool.reader(&s).unwrap();
    let waiter =
        tokio::spawn(async move { reader.next_batch(10, usize::MAX).await.map(|b| b.len()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    spool.append(&s, RecordIn::new("hello")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, 1);
}

#[test]
fn interval_and_never_policies_acknowledge_after_the_write_and_flush_makes_it_durable() {
    for policy in [
        FsyncPolicy::Interval(Duration::from_millis(20)),
        FsyncPolicy::Never,
    ] {
        let fs = SimFs::new();
        let mut cfg = small_config();
        cfg.fsync = policy;
        let (spool, _) = Spool::open_with_fs("/spool", cfg.clone(), Arc::new(fs.clone())).unwrap();
        let s = name("s");
        for i in 0..10 {
            spool
                .append_blocking(&s, RecordIn::new(payload("s", i, 20)))
                .unwrap();
        }
        assert_eq!(read_all(&spool, &s).len(), 10);
        spool.flush_blocking().unwrap();
        drop(spool);
        fs.restart(spillway_spool::fs::sim::CrashMode::DropUnsynced);
        let (spool, _) = Spool::open_with_fs("/spool", cfg, Arc::new(fs.clone())).unwrap();
        assert_eq!(read_all(&spool, &s).len(), 10, "{policy:?}");
    }
}

#[test]
fn stats_and_inspect_report_depth_bytes_age_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(tmp.path(), small_config()).unwrap();
    append_n(&spool, "a", 0..10, 100);
    append_n(&spool, "b", 0..2, 10);
    std::thread::sleep(Duration::from_millis(20));
    let mut reader = spool.reader(&name("a")).unwrap();
    for r in reader.read_batch(3, usize::MAX).unwrap() {
        reader.ack(r.position.seq).unwrap();
    }
    let stats = spool.stats();
    assert_eq!(stats.records, 9);
    let a = stats.streams.iter().find(|s| s.name == "a").unwrap();
    assert_eq!((a.records, a.acked_upto, a.next_seq), (7, 3, 10));
    assert!(a.oldest_record_age_ms.unwrap() >= 20);
    assert!(stats.used_bytes >= 12 * 28);
    let inspection = spool.inspect();
    assert!(
        inspection
            .streams
            .iter()
            .find(|s| s.name == "a")
            .unwrap()
            .segments
            .len()
            > 1
    );
    spool.flush_blocking().unwrap();
    drop(reader);
    drop(spool);
    let offline = spillway_spool::inspect::inspect(tmp.path()).unwrap();
    let a = offline.streams.iter().find(|s| s.name == "a").unwrap();
    assert_eq!((a.records, a.acked_upto), (7, 3));
    assert!(offline.problems.is_clean());
    assert!(
        serde_json::to_string(&offline)
            .unwrap()
            .contains("\"streams\"")
    );
}

#[test]
fn a_concurrent_reader_sees_every_record_exactly_once_in_order_while_writers_append() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.segment_bytes = 4096;
    cfg.index_interval_bytes = 512;
    cfg.checkpoint_interval = Duration::from_millis(5);
    let (spool, _) = Spool::open(tmp.path(), cfg).unwrap();
    let s = name("s");
    let total = 4 * 1500;
    std::thread::scope(|scope| {
        for w in 0..4u64 {
            let (spool, s) = (spool.clone(), s.clone());
            scope.spawn(move || {
                for i in 0..1500u64 {
                    let len = 20 + ((w * 31 + i * 17) % 300) as usize;
                    spool
                        .append_blocking(&s, RecordIn::new(payload("s", i, len)))
                        .unwrap();
                }
            });
        }
        let (spool, s) = (spool.clone(), s.clone());
        scope.spawn(move || {
            let mut reader = spool.reader(&s).unwrap();
            let mut next = 0u64;
            while next < total {
                for r in reader.read_batch(37, 5000).unwrap() {
                    assert_eq!(
                        r.position.seq.0, next,
                        "reader skipped or repeated a record"
                    );
                    next += 1;
                    reader.ack(r.position.seq).unwrap();
                }
            }
        });
    });
}
