//! `SpoolConfig::on_sync`: one event per sync the writer makes for appends, with its kind, its
//! duration and whether it worked.

mod common;

use common::*;
use parking_lot::Mutex;
use spillway_spool::fs::sim::{EIO, FailRule, Faults, Op, SimFs};
use spillway_spool::{
    FsyncPolicy, RecordIn, Spool, SpoolConfig, SyncEvent, SyncKind, SyncObserver,
};
use std::sync::Arc;
use std::time::Duration;

fn recording(config: SpoolConfig) -> (SpoolConfig, Arc<Mutex<Vec<SyncEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let config = SpoolConfig {
        on_sync: Some(SyncObserver::new(move |e| sink.lock().push(*e))),
        ..config
    };
    (config, events)
}

fn count(events: &[SyncEvent], kind: SyncKind) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

#[test]
fn every_group_commit_sync_is_observed_once_with_its_kind_and_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, events) = recording(small_config());
    let (spool, _) = Spool::open(tmp.path(), config).unwrap();
    for i in 0..20 {
        spool
            .append_blocking(&name("a"), RecordIn::new(payload("a", i, 100)))
            .unwrap();
    }
    let stats = spool.stats();
    let events = events.lock().clone();
    assert_eq!(
        events.len() as u64,
        stats.fsyncs,
        "one event per sync counted in the statistics"
    );
    assert!(count(&events, SyncKind::File) >= 20, "{events:?}");
    assert!(
        count(&events, SyncKind::Directory) >= 2,
        "new segments (512-byte segments roll often) sync their directory: {events:?}"
    );
    assert!(events.iter().all(|e| e.ok));
    assert!(events.iter().all(|e| e.duration > Duration::ZERO));
    assert!(events.iter().all(|e| e.duration < Duration::from_secs(10)));
}

#[test]
fn syncs_issued_in_parallel_by_the_sync_pool_are_observed_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, events) = recording(small_config());
    let (spool, _) = Spool::open(tmp.path(), config).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|s| {
            let (spool, barrier) = (spool.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..10 {
                    let stream = name(&format!("s{s}"));
                    spool
                        .append_blocking(&stream, RecordIn::new(payload("s", i, 30)))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = spool.stats();
    assert_eq!(events.lock().len() as u64, stats.fsyncs);
    assert!(count(&events.lock(), SyncKind::File) >= 10);
    assert!(stats.fsyncs >= stats.group_commits);
}

#[test]
fn one_syncfs_is_one_event_of_kind_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, events) = recording(SpoolConfig {
        syncfs_min_files: Some(1),
        ..small_config()
    });
    let (spool, _) = Spool::open(tmp.path(), config).unwrap();
    for i in 0..5 {
        spool
            .append_blocking(&name("a"), RecordIn::new(payload("a", i, 10)))
            .unwrap();
    }
    let events = events.lock().clone();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(count(&events, SyncKind::Filesystem), 5);
    assert_eq!(events.len() as u64, spool.stats().fsyncs);
}

#[test]
fn a_failed_sync_is_observed_as_failed() {
    let fs = SimFs::new();
    let (config, events) = recording(small_config());
    let (spool, _) = Spool::open_with_fs("/spool", config, Arc::new(fs.clone()) as Arc<_>).unwrap();
    spool
        .append_blocking(&name("a"), RecordIn::new("first"))
        .unwrap();
    fs.set_faults(Faults {
        fail: vec![FailRule {
            op: Op::Sync,
            path_contains: None,
            errno: EIO,
            skip: 0,
            times: 1,
        }],
        ..Faults::default()
    });
    assert!(
        spool
            .append_blocking(&name("a"), RecordIn::new("second"))
            .is_err()
    );
    let events = events.lock().clone();
    let failed: Vec<_> = events.iter().filter(|e| !e.ok).collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].kind, SyncKind::File);
}

#[test]
fn interval_policy_syncs_are_observed_when_they_happen() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, events) = recording(SpoolConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(20)),
        ..small_config()
    });
    let (spool, _) = Spool::open(tmp.path(), config).unwrap();
    spool
        .append_blocking(&name("a"), RecordIn::new("x"))
        .unwrap();
    // The stream directory's sync (a segment was created) may come first: wait for the file's.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count(&events.lock(), SyncKind::File) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        count(&events.lock(), SyncKind::File) >= 1,
        "{:?}",
        events.lock()
    );
    spool.flush_blocking().unwrap();
    assert_eq!(events.lock().len() as u64, spool.stats().fsyncs);
}

#[test]
fn a_configuration_with_an_observer_is_still_debug_and_clone() {
    let (config, _) = recording(SpoolConfig::default());
    let copy = config.clone();
    assert!(format!("{copy:?}").contains("SyncObserver(..)"));
    assert!(copy.validate().is_ok());
}
