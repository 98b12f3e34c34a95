//! Crash consistency: a workload of appends, rollovers, acks, checkpoints and segment deletions
//! runs on the simulated filesystem; the process "dies" at every mutating operation in turn (and
//! at many byte offsets inside writes). After a restart that keeps only what was made durable
//! (or, in a second mode, also random prefixes of unsynced data), the spool must open, and:
//! every record whose append returned Ok under `Always` and that was not acknowledged is
//! readable, in order, intact; every record read is intact and in order.

mod common;

use common::*;
use spillway_spool::fs::sim::{CrashMode, Faults, SimFs};
use spillway_spool::{RecordIn, Spool, SpoolConfig, StreamName};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const STREAMS: [&str; 2] = ["orders.0", "orders.keyless"];

fn config() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 300,
        sync_threads: 2,
        ..small_config()
    }
}

#[derive(Default, Debug)]
struct Log {
    /// (stream, seq) -> attempt index, for appends that returned Ok.
    appended: BTreeMap<(String, u64), u64>,
    /// Acknowledged positions.
    acked: BTreeSet<(String, u64)>,
}

fn rec(stream: &str, i: u64) -> RecordIn {
    RecordIn::new(payload(stream, i, 40 + (i as usize * 7) % 50))
}

/// The workload; returns at the first error (after a crash every operation fails).
fn workload(spool: &Spool, log: &mut Log) -> Result<(), String> {
    let mut attempt = [0u64; 2];
    let mut append = |log: &mut Log, s: usize, n: u64, batch: bool| -> Result<(), String> {
        let stream = StreamName::new(STREAMS[s]).unwrap();
        let first = attempt[s];
        attempt[s] += n;
        let records: Vec<RecordIn> = (first..first + n).map(|i| rec(STREAMS[s], i)).collect();
        let positions = if batch {
            spool
                .append_batch_blocking(&stream, records)
                .map_err(|e| e.to_string())?
        } else {
            let mut out = Vec::new();
            for r in records {
                out.push(
                    spool
                        .append_blocking(&stream, r)
                        .map_err(|e| e.to_string())?,
                );
            }
            out
        };
        for (k, p) in positions.into_iter().enumerate() {
            log.appended
                .insert((STREAMS[s].to_string(), p.seq.0), first + k as u64);
        }
        Ok(())
    };
    let ack_some = |log: &mut Log, s: usize, n: usize| -> Result<(), String> {
        let stream = StreamName::new(STREAMS[s]).unwrap();
        let mut reader = spool.reader(&stream).map_err(|e| e.to_string())?;
        let batch = reader
            .read_batch(n, usize::MAX)
            .map_err(|e| e.to_string())?;
        // Acknowledge out of order: last first.
        for r in batch.iter().rev() {
            reader.ack(r.position.seq).map_err(|e| e.to_string())?;
            log.acked.insert((STREAMS[s].to_string(), r.position.seq.0));
        }
        spool.flush_blocking().map_err(|e| e.to_string())
    };
    append(log, 0, 6, false)?;
    append(log, 1, 3, true)?;
    append(log, 0, 5, true)?;
    ack_some(log, 0, 7)?;
    append(log, 0, 4, false)?;
    append(log, 1, 2, false)?;
    ack_some(log, 1, 4)?;
    ack_some(log, 0, 5)?;
    append(log, 0, 3, true)?;
    Ok(())
}

fn check(fs: &SimFs, log: &Log, what: &str) {
    let (spool, report) = Spool::open_with_fs("/spool", config(), Arc::new(fs.clone()))
        .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    assert_eq!(
        report.quarantined(),
        0,
        "{what}: a crash caused quarantine: {:?}",
        report.actions
    );
    for s in STREAMS {
        let records = read_all(&spool, &name(s));
        // Append order is per writer: payload number n is writer n / 1000, index n % 1000.
        let mut last_seq: Option<u64> = None;
        let mut last_index: BTreeMap<u64, u64> = BTreeMap::new();
        for r in &records {
            let text = String::from_utf8_lossy(&r.payload).to_string();
            let i: u64 = text
                .split('#')
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| {
                    panic!("{what}: {s}@{} garbled payload {text:?}", r.position.seq)
                });
            assert_eq!(
                r.payload.as_ref(),
                rec(s, i).payload.as_ref(),
                "{what}: {s}@{} not intact",
                r.position.seq
            );
            assert!(
                last_seq.is_none_or(|l| r.position.seq.0 > l),
                "{what}: {s} seq out of order"
            );
            if let Some(prev) = last_index.insert(i / 1000, i % 1000) {
                assert!(
                    i % 1000 > prev,
                    "{what}: {s} writer {} out of order",
                    i / 1000
                );
            }
            if let Some(&logged) = log.appended.get(&(s.to_string(), r.position.seq.0)) {
                assert_eq!(
                    logged, i,
                    "{what}: {s}@{} holds another record",
                    r.position.seq
                );
            }
            last_seq = Some(r.position.seq.0);
        }
        let present: BTreeSet<u64> = records.iter().map(|r| r.position.seq.0).collect();
        for ((stream, seq), _) in log
            .appended
            .range((s.to_string(), 0)..(s.to_string(), u64::MAX))
        {
            if !log.acked.contains(&(stream.clone(), *seq)) {
                assert!(
                    present.contains(seq),
                    "{what}: acknowledged append {s}@{seq} lost; {:?}",
                    report.actions
                );
            }
        }
    }
    // The spool keeps working after recovery.
    spool
        .append_blocking(&name(STREAMS[0]), RecordIn::new("after"))
        .unwrap();
}

fn run_with(faults: Faults, mode: CrashMode, what: &str) -> bool {
    run_with_config(config(), faults, mode, what)
}

fn run_with_config(cfg: SpoolConfig, faults: Faults, mode: CrashMode, what: &str) -> bool {
    let fs = SimFs::new();
    let (spool, _) = Spool::open_with_fs("/spool", cfg, Arc::new(fs.clone())).unwrap();
    // Crash points count from the start of the workload.
    let mut faults = faults;
    faults.crash_at_op = faults.crash_at_op.map(|k| fs.ops() + k);
    faults.crash_at_byte = faults.crash_at_byte.map(|b| fs.bytes_written() + b);
    fs.set_faults(faults);
    let mut log = Log::default();
    let finished = workload(&spool, &mut log).is_ok();
    fs.kill();
    drop(spool);
    fs.restart(mode);
    check(&fs, &log, what);
    finished
}

fn total_ops_and_bytes() -> (u64, u64) {
    total_ops_and_bytes_with(config())
}

fn total_ops_and_bytes_with(cfg: SpoolConfig) -> (u64, u64) {
    let fs = SimFs::new();
    let (spool, _) = Spool::open_with_fs("/spool", cfg, Arc::new(fs.clone())).unwrap();
    let start = (fs.ops(), fs.bytes_written());
    workload(&spool, &mut Log::default()).unwrap();
    let stats = spool.stats();
    assert!(
        stats.segments_deleted >= 2,
        "the workload must delete segments: {stats:?}"
    );
    assert!(
        spool.inspect().streams[0].segments.len() >= 2,
        "and roll over"
    );
    (fs.ops() - start.0, fs.bytes_written() - start.1)
}

#[test]
fn every_acknowledged_append_survives_a_crash_at_every_operation() {
    let (ops, _) = total_ops_and_bytes();
    assert!(ops > 60, "workload too small: {ops} operations");
    for k in 1..=ops + 1 {
        let what = format!("crash at op {k}/{ops}");
        run_with(
            Faults {
                crash_at_op: Some(k),
                ..Faults::default()
            },
            CrashMode::DropUnsynced,
            &what,
        );
    }
}

#[test]
fn every_acknowledged_append_survives_a_crash_that_keeps_random_unsynced_bytes() {
    let (ops, _) = total_ops_and_bytes();
    for k in 1..=ops + 1 {
        for seed in [k, k * 7919 + 1] {
            let what = format!("crash at op {k}/{ops}, write-back seed {seed}");
            let faults = Faults {
                crash_at_op: Some(k),
                ..Faults::default()
            };
            run_with(faults, CrashMode::KeepSomeUnsynced(seed), &what);
        }
    }
}

#[test]
fn every_acknowledged_append_survives_a_crash_in_the_middle_of_a_write() {
    let (_, bytes) = total_ops_and_bytes();
    let mut byte = 1;
    while byte < bytes {
        let what = format!("crash at byte {byte}/{bytes}");
        let faults = Faults {
            crash_at_byte: Some(byte),
            ..Faults::default()
        };
        run_with(faults, CrashMode::KeepSomeUnsynced(byte), &what);
        byte += 13;
    }
}

#[test]
fn every_acknowledged_append_survives_a_crash_at_every_operation_when_commits_use_syncfs() {
    let cfg = SpoolConfig {
        syncfs_min_files: Some(1),
        ..config()
    };
    let (ops, _) = total_ops_and_bytes_with(cfg.clone());
    for k in 1..=ops + 1 {
        for mode in [CrashMode::DropUnsynced, CrashMode::KeepSomeUnsynced(k)] {
            let what = format!("syncfs: crash at op {k}/{ops}, {mode:?}");
            let faults = Faults {
                crash_at_op: Some(k),
                ..Faults::default()
            };
            run_with_config(cfg.clone(), faults, mode, &what);
        }
    }
}

/// Concurrent appenders, so batches of the same stream are in flight together (pipelined
/// group commit): a crash may hit while one batch syncs and the next is being written.
fn concurrent_workload(spool: &Spool, log: &std::sync::Mutex<Log>) {
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            scope.spawn(move || {
                let s = STREAMS[(t % 2) as usize];
                for i in 0..12u64 {
                    let n = 1000 * (t + 1) + i;
                    let Ok(p) = spool.append_blocking(&name(s), rec(s, n)) else {
                        return;
                    };
                    log.lock()
                        .unwrap()
                        .appended
                        .insert((s.to_string(), p.seq.0), n);
                }
            });
        }
    });
}

#[test]
fn every_acknowledged_concurrent_append_survives_a_crash_at_every_operation() {
    // Two commits in flight: a crash may hit while one batch syncs and the next is written.
    let cfg = SpoolConfig {
        commits_in_flight: 2,
        ..config()
    };
    let reference = SimFs::new();
    let (spool, _) =
        Spool::open_with_fs("/spool", cfg.clone(), Arc::new(reference.clone())).unwrap();
    let start = reference.ops();
    concurrent_workload(&spool, &std::sync::Mutex::new(Log::default()));
    let ops = reference.ops() - start;
    drop(spool);
    for k in 1..=ops + 10 {
        for mode in [CrashMode::DropUnsynced, CrashMode::KeepSomeUnsynced(k)] {
            let fs = SimFs::new();
            let (spool, _) =
                Spool::open_with_fs("/spool", cfg.clone(), Arc::new(fs.clone())).unwrap();
            let crash_at = fs.ops() + k;
            fs.set_faults(Faults {
                crash_at_op: Some(crash_at),
                ..Faults::default()
            });
            let log = std::sync::Mutex::new(Log::default());
            concurrent_workload(&spool, &log);
            fs.kill();
            drop(spool);
            fs.restart(mode);
            check(
                &fs,
                &log.into_inner().unwrap(),
                &format!("concurrent: crash at op {k}/{ops}, {mode:?}"),
            );
        }
    }
}
