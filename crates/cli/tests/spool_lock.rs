//! Every `spillway spool` command refuses a spool another process has open, says so clearly
//! (naming the process), and changes nothing.

mod spool_common;

use spool_common::*;

#[test]
fn every_command_refuses_a_spool_another_process_has_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 20, 3);
    let stream = busiest_stream(tmp.path());
    // This test process opens the spool, as a running Spillway would.
    let (open, _) =
        spillway_spool::Spool::open(tmp.path(), spillway_spool::SpoolConfig::default()).unwrap();
    let before = std::fs::read_dir(tmp.path()).unwrap().count();
    let dead = spillway_test_support::dead_port().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["inspect", dir],
        vec!["inspect", dir, "--json"],
        vec!["verify", dir],
        vec!["repair", dir],
        vec!["export", dir, "--stream", &stream],
        vec!["replay", dir, "--bootstrap", &dead],
        vec!["replay", dir, "--bootstrap", &dead, "--dead-letters"],
    ];
    for args in commands {
        let run = spool(&args);
        assert_eq!(run.code, 3, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.is_empty(), "{args:?} printed {}", run.stdout);
        assert!(run.stderr.contains("is in use"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("LOCK"), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("process {}", std::process::id())),
            "{args:?} names the holder: {}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), before);
    let instance_before = std::fs::read_to_string(tmp.path().join("instance.id")).unwrap();
    drop(open);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("instance.id")).unwrap(),
        instance_before,
        "a refused replay did not even start an identity"
    );
    // Released: they run.
    assert_eq!(spool(&["verify", dir]).code, 0);
}

#[test]
fn read_only_commands_work_on_a_spool_without_a_lock_file_and_create_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 10, 2);
    std::fs::remove_file(tmp.path().join("LOCK")).unwrap();
    let stream = busiest_stream(tmp.path());
    assert_eq!(spool(&["inspect", dir]).code, 0);
    assert_eq!(spool(&["verify", dir]).code, 0);
    assert_eq!(spool(&["export", dir, "--stream", &stream]).code, 0);
    assert!(!tmp.path().join("LOCK").exists());
}
