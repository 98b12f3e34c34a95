//! Tests of the simulated filesystem.

use super::*;
use crate::fs::write_all_at;

#[test]
fn unsynced_contents_and_names_are_lost_at_restart() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let f = fs.create_new(Path::new("/d/a")).unwrap();
    write_all_at(f.as_ref(), b"durable", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    write_all_at(f.as_ref(), b"-lost", 7).unwrap();
    fs.create_new(Path::new("/d/b")).unwrap();
    fs.restart(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(Path::new("/d/a")).unwrap(), b"durable");
    assert!(!fs.exists(Path::new("/d/b")));
    assert!(f.len().is_err(), "old handles are dead after a restart");
}

#[test]
fn rename_without_dir_sync_is_undone_by_a_crash() {
    let fs = SimFs::new();
    let f = fs.create_new(Path::new("/a")).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.rename(Path::new("/a"), Path::new("/b")).unwrap();
    fs.restart(CrashMode::DropUnsynced);
    assert!(fs.exists(Path::new("/a")));
    assert!(!fs.exists(Path::new("/b")));
}

#[test]
fn crash_at_op_kills_every_later_operation() {
    let fs = SimFs::new();
    fs.set_faults(Faults {
        crash_at_op: Some(2),
        ..Faults::default()
    });
    let f = fs.create_new(Path::new("/a")).unwrap();
    assert!(f.write_at(b"x", 0).is_err());
    assert!(fs.is_dead());
    assert!(fs.create_new(Path::new("/b")).is_err());
}

#[test]
fn injected_enospc_fails_the_chosen_operation_only() {
    let fs = SimFs::new();
    fs.set_faults(Faults {
        fail: vec![FailRule {
            op: Op::Write,
            path_contains: None,
            errno: ENOSPC,
            skip: 1,
            times: 1,
        }],
        ..Faults::default()
    });
    let f = fs.create_new(Path::new("/a")).unwrap();
    assert!(f.write_at(b"1", 0).is_ok());
    let e = f.write_at(b"2", 1).unwrap_err();
    assert!(crate::fs::is_no_space(&e));
    assert!(f.write_at(b"3", 1).is_ok());
}

#[test]
fn crash_at_byte_lands_a_partial_write() {
    let fs = SimFs::new();
    let f = fs.create_new(Path::new("/a")).unwrap();
    fs.set_faults(Faults {
        crash_at_byte: Some(3),
        ..Faults::default()
    });
    assert!(write_all_at(f.as_ref(), b"abcdef", 0).is_err());
    assert_eq!(fs.read_file(Path::new("/a")).unwrap(), b"abc");
}
