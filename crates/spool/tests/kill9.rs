//! A real `kill -9`: a child process (this test binary, re-executed) appends with
//! `FsyncPolicy::Always` from several threads, acknowledges some records, and prints every
//! completed append and ack on stdout. The parent SIGKILLs it at random moments, then opens
//! the spool and checks that every reported append that was not acknowledged survived, intact
//! and in order. A few kills by default; 60 with `SPILLWAY_LONG=1`.

mod common;

use common::*;
use spillway_spool::{RecordIn, Spool, SpoolConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SPILLWAY_SPOOL_KILL9_CHILD";
const STREAMS: [&str; 2] = ["k.0", "k.1"];

fn config() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 64 * 1024,
        checkpoint_interval: Duration::from_millis(50),
        ..SpoolConfig::default()
    }
}

fn child_payload(writer: u64, i: u64) -> Vec<u8> {
    payload(
        &format!("w{writer}"),
        i,
        20 + (writer.wrapping_mul(31).wrapping_add(i.wrapping_mul(17)) % 700) as usize,
    )
}

/// Entry point of the child process; does nothing in a normal test run.
#[test]
fn kill9_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (spool, _) = Spool::open(&dir, config()).expect("child open");
    let out = Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut o = out.lock().unwrap();
        o.write_all(line.as_bytes()).unwrap();
        o.flush().unwrap();
    };
    // The test harness has printed "test kill9_child_process ... " without a newline: end
    // that line so the first report is not glued to it (and lost to the parser).
    say("\n".to_string());
    let deadline = Instant::now() + Duration::from_secs(30); // never outlive a dead parent long
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_000_000;
    std::thread::scope(|scope| {
        for w in 0..4u64 {
            let (spool, say) = (spool.clone(), &say);
            scope.spawn(move || {
                let stream = name(STREAMS[(w % 2) as usize]);
                let mut i = start;
                while Instant::now() < deadline {
                    i += 1;
                    let p = child_payload(w, i);
                    let crc = crc32c::crc32c(&p);
                    let pos = spool.append_blocking(&stream, RecordIn::new(p)).unwrap();
                    say(format!("A {} {} {crc}\n", pos.stream, pos.seq));
                }
            });
        }
        let (spool, say) = (spool.clone(), &say);
        scope.spawn(move || {
            let mut reader = spool.reader(&name(STREAMS[0])).unwrap();
            let mut expect = reader.position().0;
            say(format!("S {} {expect}\n", STREAMS[0]));
            while Instant::now() < deadline {
                for r in reader.read_batch(50, usize::MAX).unwrap() {
                    if r.position.seq.0 != expect {
                        say(format!("G {} {expect} {}\n", STREAMS[0], r.position.seq));
                    }
                    expect = r.position.seq.0 + 1;
                    // Announced before acking: once acked, the checkpoint may cover it at once.
                    say(format!("K {} {}\n", r.position.stream, r.position.seq));
                    reader.ack(r.position.seq).unwrap();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    });
    std::process::exit(0);
}

#[test]
fn every_append_reported_by_a_process_killed_with_sigkill_survives() {
    let rounds = if std::env::var("SPILLWAY_LONG").as_deref() == Ok("1") {
        60
    } else {
        4
    };
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut appended: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut acked: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill9_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut out = Vec::new();
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    out.push(String::from_utf8_lossy(&line).trim().to_string());
                }
                line.clear();
            }
            out
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut new_appends = 0;
        for line in lines.join().unwrap() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                ["A", s, seq, crc] => {
                    appended.insert((s.to_string(), seq.parse().unwrap()), crc.parse().unwrap());
                    new_appends += 1;
                }
                ["G", s, want, got] => {
                    panic!("round {round}: child reader of {s} expected {want}, got {got}")
                }
                ["S", s, start] => {
                    let start: u64 = start.parse().unwrap();
                    let first_unacked = appended
                        .range((s.to_string(), 0)..(s.to_string(), u64::MAX))
                        .find(|(k, _)| !acked.contains(k))
                        .map(|(k, _)| k.1);
                    if let Some(f) = first_unacked {
                        assert!(
                            start <= f,
                            "round {round}: child reader of {s} starts at {start}, after unacknowledged {f}"
                        );
                    }
                }
                ["K", s, seq] => {
                    acked.insert((s.to_string(), seq.parse().unwrap()));
                }
                _ => {}
            }
        }
        assert!(
            new_appends > 0 || round == 0,
            "round {round}: the child appended nothing"
        );

        let (spool, report) = Spool::open(tmp.path(), config()).unwrap();
        assert_eq!(
            report.quarantined(),
            0,
            "round {round}: {:?}",
            report.actions
        );
        for s in STREAMS {
            let records = read_all(&spool, &name(s));
            let found: BTreeMap<u64, u32> = records
                .iter()
                .map(|r| (r.position.seq.0, crc32c::crc32c(&r.payload)))
                .collect();
            assert!(
                records
                    .windows(2)
                    .all(|w| w[0].position.seq < w[1].position.seq)
            );
            for ((stream, seq), crc) in
                appended.range((s.to_string(), 0)..(s.to_string(), u64::MAX))
            {
                if acked.contains(&(stream.clone(), *seq)) {
                    continue;
                }
                if found.get(seq) != Some(crc) {
                    let keep = tmp.path().to_path_buf();
                    std::mem::forget(tmp);
                    panic!(
                        "round {round}: {s}@{seq} lost or damaged; found {:?}..{:?} ({} records), \
                         checkpoint {:?}, recovery {:?}, dir kept at {}",
                        found.keys().next(),
                        found.keys().last(),
                        found.len(),
                        spool.checkpoint(&name(s)),
                        report.actions,
                        keep.display()
                    );
                }
            }
        }
    }
    assert!(
        appended.len() > rounds,
        "too few appends to mean anything: {}",
        appended.len()
    );
}
