//! Direct-mode throughput (issue 4): `spillway::Producer` against a vanilla rdkafka producer
//! with the same librdkafka settings, on the same broker, in the same run.
//!
//! For each broker (librdkafka's in-process mock cluster, 3 brokers; Tansu with SQLite
//! storage) and each record size, `rounds` rounds run the vanilla `BaseProducer`, the vanilla
//! `ThreadedProducer` and Spillway's producer one after the other (the order rotates each
//! round, so drift on a noisy machine does not favour one side). Each produces N keyless
//! records to a 3-partition topic and waits for every acks=all report; the vanilla records are
//! placed as Spillway's sticky chooser places its own (runs of 100 per partition, see
//! [`crate::vanilla`]). The ratio of a round is
//! Spillway ÷ vanilla `BaseProducer` (the baseline); the report gives the median of the
//! per-round ratios and the values themselves.
//!
//! A third vanilla run, `vanilla-id`, is the `BaseProducer` again with a `spillway.id` header on
//! every record, as Spillway's carry (DESIGN G4). The baseline has no header; the ratio
//! Spillway ÷ `vanilla-id` separates what the wrapper costs from what that header costs
//! librdkafka and the broker.
//!
//! Tansu is the limit on its own numbers (about 50 k records/s with SQLite, one core spent in
//! SQL): its rows are reported, but the target is judged on the mock cluster.

use serde::Serialize;
use spillway::IdGenerator;
use spillway_test_support::{MockKafka, TansuBroker};
use std::fmt::Write as _;
use std::time::Duration;

use crate::report::{
    Progress, Table, TargetRow, Verdict, fmt_ratio, fmt_runs, load_average, median, ratio,
};
use crate::vanilla::{
    Placement, Run, Vanilla, produce_spillway, produce_vanilla, producer_options, vanilla_config,
};

/// Which broker a case ran against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Broker {
    /// librdkafka's in-process mock cluster (3 brokers).
    Mock,
    /// Tansu 0.6.0, SQLite storage, a child process.
    Tansu,
}

impl Broker {
    pub fn as_str(self) -> &'static str {
        match self {
            Broker::Mock => "mock",
            Broker::Tansu => "tansu",
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct DirectBenchOptions {
    pub brokers: Vec<Broker>,
    /// Payload sizes in bytes.
    pub record_sizes: Vec<usize>,
    /// Records per run on the mock cluster at 100 B (scaled by 100/size for larger records,
    /// at least a fifth of it).
    pub mock_records: u64,
    /// Records per run on Tansu.
    pub tansu_records: u64,
    /// Rounds (each runs every system once).
    pub rounds: usize,
    /// Also run the vanilla `ThreadedProducer`.
    pub threaded: bool,
    /// Also run the vanilla `BaseProducer` with an id header per record.
    pub id_header: bool,
    /// Reports Spillway's loop keeps outstanding at most.
    pub window: usize,
    pub progress: Progress,
}

impl Default for DirectBenchOptions {
    fn default() -> Self {
        DirectBenchOptions {
            brokers: vec![Broker::Mock, Broker::Tansu],
            record_sizes: vec![100, 1024],
            mock_records: 2_000_000,
            tansu_records: 100_000,
            rounds: 3,
            threaded: true,
            id_header: true,
            window: 100_000,
            progress: Progress::default(),
        }
    }
}

impl DirectBenchOptions {
    /// A short run: three rounds (a median needs three) of fewer records.
    pub fn quick() -> Self {
        DirectBenchOptions {
            mock_records: 1_000_000,
            tansu_records: 50_000,
            ..Self::default()
        }
    }

    fn records(&self, broker: Broker, size: usize) -> u64 {
        match broker {
            Broker::Mock => {
                let scaled = self.mock_records * 100 / size.max(1) as u64;
                scaled.max(self.mock_records / 5).min(self.mock_records)
            }
            Broker::Tansu => self.tansu_records,
        }
    }
}

/// One run of one system.
#[derive(Debug, Clone, Serialize)]
pub struct DirectRun {
    pub broker: Broker,
    pub record_bytes: usize,
    /// `vanilla`, `vanilla-threaded`, `vanilla-id` or `spillway`.
    pub system: String,
    pub round: usize,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub cpu_us_per_record: f64,
    pub run: Run,
}

/// The medians of one broker and size.
#[derive(Debug, Clone, Serialize)]
pub struct DirectCase {
    pub broker: Broker,
    pub record_bytes: usize,
    pub records: u64,
    pub vanilla_per_s: f64,
    pub threaded_per_s: Option<f64>,
    /// The vanilla `BaseProducer` with an id header per record.
    pub id_header_per_s: Option<f64>,
    pub spillway_per_s: f64,
    pub vanilla_mb_per_s: f64,
    pub spillway_mb_per_s: f64,
    pub vanilla_cpu_us: f64,
    pub threaded_cpu_us: Option<f64>,
    pub spillway_cpu_us: f64,
    /// Median of the per-round ratios Spillway ÷ vanilla `BaseProducer`.
    pub ratio: Option<f64>,
    /// The per-round ratios.
    pub ratios: Vec<f64>,
    /// Median of the per-round ratios Spillway ÷ vanilla `ThreadedProducer`.
    pub ratio_threaded: Option<f64>,
    /// Median of the per-round ratios Spillway ÷ vanilla `BaseProducer` with the id header.
    pub ratio_id_header: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct DirectBenchReport {
    pub runs: Vec<DirectRun>,
    pub cases: Vec<DirectCase>,
    /// Brokers that could not be used, and why.
    pub skipped: Vec<String>,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub table: String,
}

impl DirectBenchReport {
    /// The summary rows: the target on the mock cluster, Tansu for information.
    pub fn targets(&self) -> Vec<TargetRow> {
        self.cases
            .iter()
            .map(|c| {
                let what = format!(
                    "producer vs vanilla BaseProducer, {} B, {}",
                    c.record_bytes,
                    c.broker.as_str()
                );
                let measured = format!("{} {}", fmt_ratio(c.ratio), fmt_runs(&c.ratios));
                let verdict = match c.broker {
                    Broker::Mock => Verdict::at_least(c.ratio, 0.95),
                    Broker::Tansu => Verdict::Info,
                };
                let target = match c.broker {
                    Broker::Mock => "≥ 0.95×",
                    Broker::Tansu => "(Tansu is the limit; reported)",
                };
                TargetRow::new("direct", what, target, measured, verdict)
            })
            .collect()
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum DirectBenchError {
    #[error("mock cluster: {0}")]
    Mock(String),
    #[error("producing: {0}")]
    Produce(String),
}

/// Runs the benchmark (blocking; creates no runtime: the producers have their own threads).
pub fn run_direct_bench(opts: DirectBenchOptions) -> Result<DirectBenchReport, DirectBenchError> {
    let load_before = load_average();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for &broker in &opts.brokers {
        let (_mock, _tansu, bootstrap) = match broker {
            Broker::Mock => {
                let m = MockKafka::new(3).map_err(|e| DirectBenchError::Mock(e.to_string()))?;
                let b = m.bootstrap().to_string();
                (Some(m), None, b)
            }
            Broker::Tansu => match TansuBroker::start() {
                Ok(t) => {
                    let b = t.bootstrap();
                    (None, Some(t), b)
                }
                Err(e) => {
                    let why = format!("tansu: not run ({e})");
                    opts.progress.step(&why);
                    skipped.push(why);
                    continue;
                }
            },
        };
        for &size in &opts.record_sizes {
            let topic = format!("bench-direct-{size}");
            match (&_mock, &_tansu) {
                (Some(m), _) => m
                    .create_topic(&topic, 3)
                    .map_err(|e| DirectBenchError::Mock(e.to_string()))?,
                (_, Some(t)) => t
                    .create_topics(&[(topic.as_str(), 3)])
                    .map_err(|e| DirectBenchError::Mock(e.to_string()))?,
                _ => unreachable!(),
            }
            let n = opts.records(broker, size);
            for round in 0..opts.rounds {
                let mut systems = vec!["vanilla", "spillway"];
                if opts.threaded {
                    systems.insert(1, "vanilla-threaded");
                }
                if opts.id_header {
                    systems.insert(1, "vanilla-id");
                }
                let turn = round % systems.len();
                systems.rotate_left(turn);
                for system in systems {
                    opts.progress.step(&format!(
                        "direct: {} {size} B round {}/{}: {system} ({n} records)",
                        broker.as_str(),
                        round + 1,
                        opts.rounds
                    ));
                    let run = run_one(&bootstrap, system, &topic, n, size, opts.window)?;
                    let r = DirectRun {
                        broker,
                        record_bytes: size,
                        system: system.to_string(),
                        round,
                        records_per_s: run.records_per_s(),
                        mb_per_s: run.mb_per_s(size),
                        cpu_us_per_record: run.cpu_us_per_record(),
                        run,
                    };
                    opts.progress.step(&format!(
                        "direct: {} {size} B {system}: {:.0} records/s, {:.2} µs CPU/record",
                        broker.as_str(),
                        r.records_per_s,
                        r.cpu_us_per_record
                    ));
                    runs.push(r);
                }
            }
        }
    }
    let cases = summarise(&runs, &opts);
    let table = render(&cases, &skipped);
    Ok(DirectBenchReport {
        runs,
        cases,
        skipped,
        load_before,
        load_after: load_average(),
        table,
    })
}

fn run_one(
    bootstrap: &str,
    system: &str,
    topic: &str,
    n: u64,
    size: usize,
    window: usize,
) -> Result<Run, DirectBenchError> {
    let opts = producer_options(bootstrap);
    let timeout = Duration::from_secs(300);
    let err = |e: String| DirectBenchError::Produce(format!("{system}: {e}"));
    match system {
        "spillway" => {
            let producer = spillway::Producer::start(opts).map_err(|e| err(e.to_string()))?;
            let ids = IdGenerator::ephemeral();
            let run = produce_spillway(&producer, &ids, topic, n, size, window)
                .map_err(|e| err(e.to_string()))?;
            producer.close(Duration::from_secs(10));
            Ok(run)
        }
        _ => {
            let config = vanilla_config(&opts).map_err(err)?;
            let kind = match system {
                "vanilla" => Vanilla::Base,
                "vanilla-id" => Vanilla::BaseWithIdHeader,
                _ => Vanilla::Threaded,
            };
            produce_vanilla(
                &config,
                kind,
                Placement::like_spillway(3),
                topic,
                n,
                size,
                timeout,
            )
            .map_err(|e| err(e.to_string()))
        }
    }
}

fn summarise(runs: &[DirectRun], opts: &DirectBenchOptions) -> Vec<DirectCase> {
    let mut cases = Vec::new();
    for &broker in &opts.brokers {
        for &size in &opts.record_sizes {
            let of = |system: &str| -> Vec<&DirectRun> {
                runs.iter()
                    .filter(|r| r.broker == broker && r.record_bytes == size && r.system == system)
                    .collect()
            };
            let (v, t, s) = (of("vanilla"), of("vanilla-threaded"), of("spillway"));
            let h = of("vanilla-id");
            if v.is_empty() || s.is_empty() {
                continue;
            }
            let med = |rs: &[&DirectRun], f: fn(&DirectRun) -> f64| {
                median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
            };
            let per_round = |base: &[&DirectRun]| -> Vec<f64> {
                s.iter()
                    .filter_map(|sr| {
                        let b = base.iter().find(|b| b.round == sr.round)?;
                        ratio(sr.records_per_s, b.records_per_s)
                    })
                    .collect()
            };
            let ratios = per_round(&v);
            let ratios_t = per_round(&t);
            let ratios_h = per_round(&h);
            cases.push(DirectCase {
                broker,
                record_bytes: size,
                records: opts.records(broker, size),
                vanilla_per_s: med(&v, |r| r.records_per_s),
                threaded_per_s: (!t.is_empty()).then(|| med(&t, |r| r.records_per_s)),
                id_header_per_s: (!h.is_empty()).then(|| med(&h, |r| r.records_per_s)),
                spillway_per_s: med(&s, |r| r.records_per_s),
                vanilla_mb_per_s: med(&v, |r| r.mb_per_s),
                spillway_mb_per_s: med(&s, |r| r.mb_per_s),
                vanilla_cpu_us: med(&v, |r| r.cpu_us_per_record),
                threaded_cpu_us: (!t.is_empty()).then(|| med(&t, |r| r.cpu_us_per_record)),
                spillway_cpu_us: med(&s, |r| r.cpu_us_per_record),
                ratio: median(&ratios),
                ratios,
                ratio_threaded: median(&ratios_t),
                ratio_id_header: median(&ratios_h),
            });
        }
    }
    cases
}

/// The Markdown table of the medians.
pub fn render(cases: &[DirectCase], skipped: &[String]) -> String {
    let mut t = Table::new(&[
        "broker",
        "record",
        "vanilla Base records/s",
        "vanilla Threaded records/s",
        "vanilla Base + id header records/s",
        "spillway records/s",
        "vanilla MB/s",
        "spillway MB/s",
        "CPU µs/record (Base / Threaded / spillway)",
        "spillway ÷ Base (per round)",
        "spillway ÷ Threaded",
        "spillway ÷ Base + id header",
    ]);
    for c in cases {
        let opt = |v: Option<f64>, p: usize| v.map_or_else(|| "—".into(), |v| format!("{v:.p$}"));
        t.row(vec![
            c.broker.as_str().into(),
            format!("{} B", c.record_bytes),
            format!("{:.0}", c.vanilla_per_s),
            opt(c.threaded_per_s, 0),
            opt(c.id_header_per_s, 0),
            format!("{:.0}", c.spillway_per_s),
            format!("{:.1}", c.vanilla_mb_per_s),
            format!("{:.1}", c.spillway_mb_per_s),
            format!(
                "{:.2} / {} / {:.2}",
                c.vanilla_cpu_us,
                opt(c.threaded_cpu_us, 2),
                c.spillway_cpu_us
            ),
            format!("{} {}", fmt_ratio(c.ratio), fmt_runs(&c.ratios)),
            fmt_ratio(c.ratio_threaded),
            fmt_ratio(c.ratio_id_header),
        ]);
    }
    let mut out = t.render();
    for s in skipped {
        let _ = writeln!(out, "\n{s}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(system: &str, round: usize, per_s: f64) -> DirectRun {
        DirectRun {
            broker: Broker::Mock,
            record_bytes: 100,
            system: system.into(),
            round,
            records_per_s: per_s,
            mb_per_s: per_s * 100.0 / 1e6,
            cpu_us_per_record: 1.0,
            run: Run::default(),
        }
    }

    #[test]
    fn the_ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians() {
        let opts = DirectBenchOptions {
            brokers: vec![Broker::Mock],
            record_sizes: vec![100],
            threaded: false,
            id_header: false,
            ..DirectBenchOptions::default()
        };
        let runs = vec![
            run("vanilla", 0, 100.0),
            run("spillway", 0, 90.0),
            run("vanilla", 1, 200.0),
            run("spillway", 1, 100.0),
            run("vanilla", 2, 100.0),
            run("spillway", 2, 100.0),
        ];
        let cases = summarise(&runs, &opts);
        assert_eq!(cases.len(), 1);
        let c = &cases[0];
        assert_eq!(c.ratios, vec![0.9, 0.5, 1.0]);
        assert_eq!(c.ratio, Some(0.9));
        assert_eq!(c.vanilla_per_s, 100.0);
        assert_eq!(c.threaded_per_s, None);
        let md = render(&cases, &["tansu: not run (missing)".into()]);
        assert!(md.contains("| mock | 100 B | 100 | — | — | 100 |"), "{md}");
        assert!(md.contains("0.90× (0.90, 0.50, 1.00)"), "{md}");
        assert!(md.contains("tansu: not run"));
        let targets = DirectBenchReport {
            runs: runs.clone(),
            cases,
            skipped: vec![],
            load_before: None,
            load_after: None,
            table: md,
        }
        .targets();
        assert_eq!(targets[0].verdict, Verdict::Missed);
    }

    #[test]
    fn larger_records_run_fewer_but_not_too_few() {
        let o = DirectBenchOptions::default();
        assert_eq!(o.records(Broker::Mock, 100), 2_000_000);
        assert_eq!(o.records(Broker::Mock, 1024), 400_000);
        assert_eq!(o.records(Broker::Tansu, 1024), 100_000);
    }
}
