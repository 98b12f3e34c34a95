//! `spillway spool export`: the records of a real spool, one JSON line each, round-tripped
//! against what was sent.

mod spool_common;

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use spool_common::*;

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v["base64"].as_str().unwrap()).unwrap()
}

/// Every stream's records, exported, by stream name.
fn export_all(dir: &str) -> HashMap<String, Vec<Value>> {
    let inspect = spool(&["inspect", dir, "--json"]).json();
    let mut out = HashMap::new();
    for s in inspect["streams"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap().to_string();
        let run = spool(&["export", dir, "--stream", &name]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        out.insert(name, run.lines());
    }
    out
}

#[test]
fn export_round_trips_every_record_with_its_key_value_headers_and_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 150, 6);
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|s| (s.id.as_str(), s)).collect();
    let exported = export_all(dir);
    let mut seen = 0;
    for (stream, lines) in &exported {
        let mut last_seq = None;
        for l in lines {
            assert_eq!(l["stream"], stream.as_str());
            let seq = l["seq"].as_u64().unwrap();
            assert!(last_seq.is_none_or(|p| seq > p), "in sequence order");
            last_seq = Some(seq);
            assert_eq!(l["topic"], TOPIC);
            assert!(l["appended_at"].as_str().unwrap().ends_with('Z'));
            assert_eq!(l["priority"], "normal");
            assert_eq!(l["possibly_persisted"], false);
            let s = by_id[l["id"].as_str().unwrap()];
            match &s.key {
                Some(k) => {
                    assert_eq!(b64(&l["key"]), *k);
                    assert_eq!(l["key"]["utf8"], String::from_utf8(k.clone()).unwrap());
                    let p = l["partition"].as_i64().unwrap();
                    assert_eq!(*stream, format!("{TOPIC}.p{p}"));
                }
                None => {
                    assert!(l["key"].is_null());
                    assert!(l["partition"].is_null(), "keyless: chosen at delivery");
                    assert_eq!(*stream, format!("{TOPIC}.keyless"));
                }
            }
            assert_eq!(b64(&l["value"]), s.value);
            match std::str::from_utf8(&s.value) {
                Ok(text) => assert_eq!(l["value"]["utf8"], text),
                Err(_) => assert!(l["value"].get("utf8").is_none(), "no utf8 rendering"),
            }
            let headers = l["headers"].as_array().unwrap();
            assert_eq!(headers.len(), s.headers.len());
            for (h, (name, value)) in headers.iter().zip(&s.headers) {
                assert_eq!(h["name"], name.as_str());
                assert_eq!(b64(h), *value);
            }
            seen += 1;
        }
    }
    assert_eq!(seen, sent.len(), "every record exported once");
    // Per key, the spool's order is the order of sending.
    for lines in exported.values() {
        let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| sent.iter().position(|s| s.id == *id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn export_from_seq_and_limit_select_a_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 60, 2);
    let stream = busiest_stream(tmp.path());
    let all = spool(&["export", dir, "--stream", &stream]).lines();
    assert!(all.len() > 10);
    let window = spool(&[
        "export",
        dir,
        "--stream",
        &stream,
        "--from-seq",
        "5",
        "--limit",
        "3",
        "--format",
        "jsonl",
    ])
    .lines();
    let seqs: Vec<u64> = window.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![5, 6, 7]);
    assert_eq!(window[0], all[5]);
}

#[test]
fn export_of_a_damaged_spool_gives_the_records_repair_keeps_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 100, 2);
    let stream = busiest_stream(tmp.path());
    let before = spool(&["export", dir, "--stream", &stream]).lines();
    let seg = flip_middle_byte(tmp.path(), &stream);
    let damaged_bytes = std::fs::read(&seg).unwrap();
    let after = spool(&["export", dir, "--stream", &stream]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    let after = after.lines();
    assert_eq!(after.len(), before.len() - 1, "one record hit by the flip");
    assert!(after.iter().all(|l| before.contains(l)));
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        damaged_bytes,
        "nothing repaired"
    );
    assert_eq!(spool(&["repair", dir]).code, 2);
    let repaired = spool(&["export", dir, "--stream", &stream]).lines();
    assert_eq!(repaired, after);
}

#[test]
fn export_of_an_unknown_stream_or_a_bad_name_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 3, 1);
    let run = spool(&["export", dir, "--stream", "nope.p0"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("no stream nope.p0"), "{}", run.stderr);
    let run = spool(&["export", dir, "--stream", "../etc"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("invalid stream name"), "{}", run.stderr);
}

#[test]
fn export_prints_a_record_that_is_not_an_envelope_raw_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 4, 1);
    let (s, _) =
        spillway_spool::Spool::open(tmp.path(), spillway_spool::SpoolConfig::default()).unwrap();
    let stream = spillway_spool::StreamName::new("orders.p0").unwrap();
    s.append_blocking(&stream, spillway_spool::RecordIn::new(vec![9u8, 9, 9]))
        .unwrap();
    s.close().unwrap();
    let run = spool(&["export", dir, "--stream", "orders.p0"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let last = run.lines().pop().unwrap();
    assert!(last["error"].as_str().unwrap().contains("version"));
    assert_eq!(b64(&last["payload"]), vec![9u8, 9, 9]);
}
