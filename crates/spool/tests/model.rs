//! Model-based property test: random appends, reads, acks, flushes, reader drops, crashes and
//! reopens run against the spool (on the simulated filesystem, with tiny segments so rollover and
//! deletion happen constantly) and against a plain in-memory model. Every read must return
//! exactly what the model predicts, also after crashes and reopens.

mod common;

use common::*;
use proptest::prelude::*;
use spillway_spool::fs::sim::{CrashMode, SimFs};
use spillway_spool::{RecordIn, Seq, Spool, SpoolConfig, StreamReader};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

const STREAMS: [&str; 3] = ["a.0", "a.1", "b.keyless"];

#[derive(Debug, Clone)]
enum Action {
    Append {
        stream: usize,
        len: usize,
        count: usize,
    },
    Read {
        stream: usize,
        max: usize,
    },
    Ack {
        stream: usize,
        pick: usize,
    },
    DropReader {
        stream: usize,
    },
    Flush,
    Crash,
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (0..3usize, 0..120usize, 1..4usize)
            .prop_map(|(stream, len, count)| Action::Append { stream, len, count }),
        4 => (0..3usize, 1..8usize).prop_map(|(stream, max)| Action::Read { stream, max }),
        4 => (0..3usize, any::<usize>()).prop_map(|(stream, pick)| Action::Ack { stream, pick }),
        1 => (0..3usize).prop_map(|stream| Action::DropReader { stream }),
        2 => Just(Action::Flush),
        1 => Just(Action::Crash),
        1 => Just(Action::Reopen),
    ]
}

/// The model of one stream.
#[derive(Debug, Default)]
struct ModelStream {
    records: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    /// Delivered to the current reader, in order, with their ack flag.
    inflight: VecDeque<(u64, bool)>,
    read_next: u64,
    prefix: u64,
    durable_prefix: u64,
}

impl ModelStream {
    fn ack(&mut self, seq: u64) {
        if let Some(e) = self.inflight.iter_mut().find(|e| e.0 == seq) {
            e.1 = true;
        }
        let mut moved = false;
        while self.inflight.front().is_some_and(|e| e.1) {
            self.inflight.pop_front();
            moved = true;
        }
        if moved {
            self.prefix = self.inflight.front().map_or(self.read_next, |e| e.0);
        }
    }
    fn reset_reader(&mut self) {
        self.inflight.clear();
        self.read_next = self.prefix;
    }
}

fn config() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 200,
        index_interval_bytes: 64,
        sync_threads: 2,
        ..small_config()
    }
}

struct Harness {
    fs: SimFs,
    spool: Option<Spool>,
    readers: HashMap<usize, StreamReader>,
    model: Vec<ModelStream>,
    counter: u64,
}

impl Harness {
    fn open(&mut self) {
        let (spool, report) =
            Spool::open_with_fs("/spool", config(), Arc::new(self.fs.clone())).unwrap();
        assert_eq!(report.quarantined(), 0, "{:?}", report.actions);
        for (i, m) in self.model.iter().enumerate() {
            if let Some(c) = spool.checkpoint(&name(STREAMS[i])) {
                assert_eq!(
                    c.acked_upto,
                    Seq(m.durable_prefix),
                    "{} checkpoint after reopen",
                    STREAMS[i]
                );
            }
        }
        self.spool = Some(spool);
    }

    fn spool(&self) -> &Spool {
        self.spool.as_ref().unwrap()
    }

    fn reader(&mut self, stream: usize) -> &mut StreamReader {
        let spool = self.spool.clone().unwrap();
        self.readers
            .entry(stream)
            .or_insert_with(|| spool.reader(&name(STREAMS[stream])).unwrap())
    }

    fn apply(&mut self, action: &Action) {
        match *action {
            Action::Append { stream, len, count } => {
                let records: Vec<Vec<u8>> = (0..count)
                    .map(|_| {
                        self.counter += 1;
                        payload(STREAMS[stream], self.counter, len)
                    })
                    .collect();
                let batch = records.iter().cloned().map(RecordIn::new).collect();
                let positions = self
                    .spool()
                    .append_batch_blocking(&name(STREAMS[stream]), batch)
                    .unwrap();
                let m = &mut self.model[stream];
                for (p, r) in positions.iter().zip(records) {
                    assert_eq!(
                        p.seq,
                        Seq(m.next_seq),
                        "sequence numbers are dense and continue"
                    );
                    m.records.insert(m.next_seq, r);
                    m.next_seq += 1;
                }
            }
            Action::Read { stream, max } => {
                let got = self.reader(stream).read_batch(max, usize::MAX).unwrap();
                let m = &mut self.model[stream];
                let want: Vec<(u64, Vec<u8>)> = m
                    .records
                    .range(m.read_next..)
                    .take(max)
                    .map(|(s, p)| (*s, p.clone()))
                    .collect();
                let got: Vec<(u64, Vec<u8>)> = got
                    .into_iter()
                    .map(|r| (r.position.seq.0, r.payload.to_vec()))
                    .collect();
                assert_eq!(got, want, "{} read", STREAMS[stream]);
                for (seq, _) in got {
                    m.inflight.push_back((seq, false));
                    m.read_next = seq + 1;
                }
            }
            Action::Ack { stream, pick } => {
                let unacked: Vec<u64> = self.model[stream]
                    .inflight
                    .iter()
                    .filter(|e| !e.1)
                    .map(|e| e.0)
                    .collect();
                if unacked.is_empty() {
                    return;
                }
                let seq = unacked[pick % unacked.len()];
                self.reader(stream).ack(Seq(seq)).unwrap();
                self.model[stream].ack(seq);
            }
            Action::DropReader { stream } => {
                self.readers.remove(&stream);
                self.model[stream].reset_reader();
            }
            Action::Flush => {
                self.spool().flush_blocking().unwrap();
                for m in &mut self.model {
                    m.durable_prefix = m.prefix;
                }
            }
            Action::Crash => {
                self.fs.kill();
                self.readers.clear();
                self.spool = None;
                self.fs.restart(CrashMode::DropUnsynced);
                for m in &mut self.model {
                    m.prefix = m.durable_prefix;
                    m.reset_reader();
                }
                self.open();
            }
            Action::Reopen => {
                self.readers.clear();
                self.spool = None; // clean close: final checkpoint
                for m in &mut self.model {
                    m.reset_reader();
                    m.durable_prefix = m.prefix;
                }
                self.open();
            }
        }
    }
}

proptest! {
    // 256 cases by default (about a second); 4096 with SPILLWAY_LONG=1.
    #![proptest_config(ProptestConfig {
        cases: if std::env::var("SPILLWAY_LONG").as_deref() == Ok("1") { 4096 } else { 256 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn spool_behaves_like_the_in_memory_model(actions in proptest::collection::vec(action(), 1..80)) {
        let mut h = Harness {
            fs: SimFs::new(),
            spool: None,
            readers: HashMap::new(),
            model: (0..STREAMS.len()).map(|_| ModelStream::default()).collect(),
            counter: 0,
        };
        h.open();
        for a in &actions {
            h.apply(a);
        }
        // Finally every unacknowledged record is still there, in order.
        h.readers.clear();
        let spool = h.spool.clone().unwrap();
        for (i, m) in h.model.iter_mut().enumerate() {
            m.reset_reader();
            let got: Vec<u64> = read_all(&spool, &name(STREAMS[i])).iter().map(|r| r.position.seq.0).collect();
            let want: Vec<u64> = m.records.range(m.prefix..).map(|(s, _)| *s).collect();
            prop_assert_eq!(got, want);
        }
    }
}
