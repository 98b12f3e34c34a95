//! `spillway spool inspect | verify | repair` on real spools written by the library, intact and
//! damaged by the test (a torn tail; a flipped byte mid-segment).

mod spool_common;

use spool_common::*;

fn dir_arg(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().unwrap()
}

#[test]
fn inspect_shows_every_stream_with_its_depth_age_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let sent = make_spool(tmp.path(), 200, 7);
    let run = spool(&["inspect", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for header in [
        "STREAM",
        "RECORDS",
        "BYTES",
        "SEGMENTS",
        "OLDEST RECORD",
        "AGE",
    ] {
        assert!(run.stdout.contains(header), "{header} in\n{}", run.stdout);
    }
    assert!(run.stdout.contains("orders.keyless"));
    assert!(run.stdout.contains("quarantine: empty"));
    assert!(run.stdout.contains("problems: none"));
    assert!(run.stdout.contains("200 records not yet delivered"));

    let json = spool(&["inspect", dir_arg(&tmp), "--json"]).json();
    assert_eq!(json["records"], sent.len() as u64);
    let streams = json["streams"].as_array().unwrap();
    assert!(
        streams.len() >= 2,
        "keyed partitions and the keyless stream"
    );
    let total: u64 = streams.iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert_eq!(total, 200);
    for s in streams {
        assert!(s["bytes"].as_u64().unwrap() > 0);
        assert!(s["oldest_record_age_ms"].as_u64().unwrap() < 600_000);
        assert!(!s["segments"].as_array().unwrap().is_empty());
    }
    assert_eq!(json["problems_status"], "ok");
    assert_eq!(json["dead_letters"]["entries"], 0);
    assert!(json["instance"]["id"].as_str().unwrap().len() == 16);
}

#[test]
fn verify_of_an_intact_spool_is_clean_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    make_spool(tmp.path(), 60, 5);
    let run = spool(&["verify", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("OK: 0 errors, 0 warnings"));
    let json = spool(&["verify", dir_arg(&tmp), "--json"]).json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["records"], 60);
}

#[test]
fn a_torn_tail_is_a_warning_that_repair_cuts_and_then_verify_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    make_spool(tmp.path(), 80, 3);
    let stream = busiest_stream(tmp.path());
    truncate_tail(tmp.path(), &stream, 5);
    let before: Vec<_> = walk(tmp.path());

    let run = spool(&["verify", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("torn tail"), "{}", run.stdout);
    assert!(run.stdout.contains("WARNING"));
    assert_eq!(walk(tmp.path()), before, "verify changes nothing");
    let json = spool(&["verify", dir_arg(&tmp), "--json"]).json();
    assert_eq!(
        json["findings"][0]["repair"]["action"],
        "truncated_torn_tail"
    );
    assert_eq!(json["exit_code"], 1);

    let inspect = spool(&["inspect", dir_arg(&tmp)]);
    assert!(
        inspect
            .stdout
            .contains("what `spillway spool repair` would do")
    );

    let run = spool(&["repair", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("repaired"));
    assert!(run.stdout.contains(&stream));
    assert!(run.stdout.contains("torn tail"));

    let run = spool(&["verify", dir_arg(&tmp)]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let run = spool(&["repair", dir_arg(&tmp)]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("nothing to repair"), "{}", run.stdout);
}

#[test]
fn a_flipped_byte_is_an_error_that_repair_quarantines_with_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    make_spool(tmp.path(), 120, 2);
    let stream = busiest_stream(tmp.path());
    flip_middle_byte(tmp.path(), &stream);

    let run = spool(&["verify", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("damaged"), "{}", run.stdout);
    assert!(run.stdout.contains("ERROR"));

    let run = spool(&["repair", dir_arg(&tmp), "--json"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let json = run.json();
    let action = &json["actions"][0];
    assert_eq!(action["action"], "quarantined_segment");
    assert_eq!(action["severity"], "error");
    assert_eq!(action["stream"], stream.as_str());
    assert!(action["records_kept"].as_u64().unwrap() > 0);
    assert!(!action["lost_seqs"].as_array().unwrap().is_empty());

    let inspect = spool(&["inspect", dir_arg(&tmp)]);
    eprintln!("{}", inspect.stdout);
    assert!(inspect.stdout.contains("quarantine: 1 damaged segments"));
    assert!(inspect.stdout.contains("lost sequence numbers"));
    let json = spool(&["inspect", dir_arg(&tmp), "--json"]).json();
    let q = &json["quarantine"][0];
    assert_eq!(q["report"]["stream"], stream.as_str());

    // The damage is repaired; what is left to see is the quarantine.
    let run = spool(&["verify", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("quarantine"));
    for f in std::fs::read_dir(tmp.path().join("quarantine")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    assert_eq!(spool(&["verify", dir_arg(&tmp)]).code, 0);
}

#[test]
fn verify_reports_a_record_that_is_not_an_envelope_as_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_spool(tmp.path(), 10, 2);
    let (spool_handle, _) =
        spillway_spool::Spool::open(tmp.path(), spillway_spool::SpoolConfig::default()).unwrap();
    let stream = spillway_spool::StreamName::new(&format!("{TOPIC}.p1")).unwrap();
    spool_handle
        .append_blocking(&stream, spillway_spool::RecordIn::new("not an envelope"))
        .unwrap();
    spool_handle.close().unwrap();
    let run = spool(&["verify", dir_arg(&tmp)]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.contains("cannot be delivered"), "{}", run.stdout);
}

#[test]
fn the_commands_say_what_they_are_in_help_and_a_usage_error_exits_3() {
    let help = spool(&["--help"]);
    assert_eq!(help.code, 0);
    for cmd in ["inspect", "verify", "repair", "export", "replay"] {
        assert!(help.stdout.contains(cmd), "{cmd} in\n{}", help.stdout);
    }
    for cmd in ["inspect", "verify", "repair", "export", "replay"] {
        let h = spool(&[cmd, "--help"]);
        assert_eq!(h.code, 0);
        assert!(
            h.stdout.contains("LOCK"),
            "{cmd} --help names the lock:\n{}",
            h.stdout
        );
    }
    assert!(spool(&["verify", "--help"]).stdout.contains("1 warnings"));
    let bad = spool(&["verify"]);
    assert_eq!(bad.code, 3, "{}", bad.stderr);
    let not_a_spool = tempfile::tempdir().unwrap();
    let run = spool(&["verify", dir_arg(&not_a_spool)]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("not a spool directory"),
        "{}",
        run.stderr
    );
}

fn walk(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            let len = std::fs::metadata(&p).unwrap().len();
            out.push((p.display().to_string(), len));
        }
    }
    out.sort();
    out
}
