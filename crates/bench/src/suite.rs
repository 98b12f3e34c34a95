//! The whole report: runs the selected benchmarks one after the other in this process, gathers
//! every target in one summary table, and writes `report.md`, `report.json` and the charts into
//! an output directory. `spillway bench` is a thin front end to [`run_suite`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::direct::{DirectBenchOptions, DirectBenchReport, run_direct_bench};
use crate::http::{HttpBenchOptions, HttpBenchReport, run_http_bench};
use crate::kafka3686::{Kafka3686Options, Kafka3686Report, run_kafka3686_bench};
use crate::modes::{ModesBenchOptions, ModesBenchReport, rate_from_backlog, run_modes_bench};
use crate::plot::{Axes, line_chart_with};
use crate::report::{Progress, TargetRow, Verdict, load_average, render_targets};
use crate::spool::{SpoolBenchOptions, SpoolBenchReport, run_spool_bench};

/// One benchmark of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bench {
    Spool,
    Direct,
    Kafka3686,
    Modes,
    Http,
}

impl Bench {
    pub const ALL: [Bench; 5] = [
        Bench::Spool,
        Bench::Direct,
        Bench::Kafka3686,
        Bench::Modes,
        Bench::Http,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Bench::Spool => "spool",
            Bench::Direct => "direct",
            Bench::Kafka3686 => "kafka3686",
            Bench::Modes => "modes",
            Bench::Http => "http",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub benches: Vec<Bench>,
    /// Shorter runs (fewer records, shorter cases): minutes instead of tens of minutes.
    pub quick: bool,
    /// Where `report.md`, `report.json` and the charts go.
    pub out: PathBuf,
    /// Records per throughput run and in the drain backlog (modes), overriding the default.
    pub records: Option<u64>,
    /// Bytes of each record's value (modes), overriding the default (100).
    pub record_bytes: Option<usize>,
    /// Length of the RSS outage (modes), overriding the default; zero skips it.
    pub outage: Option<Duration>,
    /// Rounds per case, overriding the default.
    pub rounds: Option<usize>,
    /// Skip the Tansu rows of `direct`.
    pub no_tansu: bool,
    pub progress: Progress,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            benches: Bench::ALL.to_vec(),
            quick: false,
            out: PathBuf::from("bench-out"),
            records: None,
            record_bytes: None,
            outage: None,
            rounds: None,
            no_tansu: false,
            progress: Progress::default(),
        }
    }
}

/// Where the suite ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

impl Machine {
    fn probe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            load_before: load_average(),
            load_after: None,
        }
    }
}

/// Everything the suite measured.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub quick: bool,
    pub machine: Machine,
    pub secs: f64,
    pub spool: Option<SpoolBenchReport>,
    pub direct: Option<DirectBenchReport>,
    pub kafka3686: Option<Kafka3686Report>,
    pub modes: Option<ModesBenchReport>,
    pub http: Option<HttpBenchReport>,
    /// Benchmarks that failed, and why.
    pub failed: Vec<(String, String)>,
    pub targets: Vec<TargetRow>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

impl SuiteReport {
    /// The report as Markdown: the summary of targets, then each benchmark's table.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut md = format!(
            "# Spillway benchmark report{}\n\nMachine: {} CPUs ({}), kernel {}; load average {} before, {} after; {:.0} s.\n\n## Targets\n\n{}",
            if self.quick { " (quick)" } else { "" },
            m.cpus,
            m.cpu_model.as_deref().unwrap_or("?"),
            m.kernel.as_deref().unwrap_or("?"),
            m.load_before.map_or("?".into(), |l| format!("{l:.2}")),
            m.load_after.map_or("?".into(), |l| format!("{l:.2}")),
            self.secs,
            render_targets(&self.targets)
        );
        for (name, why) in &self.failed {
            md.push_str(&format!("\n**{name} failed:** {why}\n"));
        }
        let mut section = |title: &str, table: Option<&str>| {
            if let Some(t) = table {
                md.push_str(&format!("\n## {title}\n\n{t}"));
            }
        };
        section("Spool", self.spool.as_ref().map(|r| r.table.as_str()));
        section("Direct", self.direct.as_ref().map(|r| r.table.as_str()));
        section(
            "KAFKA-3686",
            self.kafka3686.as_ref().map(|r| r.table.as_str()),
        );
        section("Modes", self.modes.as_ref().map(|r| r.table.as_str()));
        section("HTTP intake", self.http.as_ref().map(|r| r.table.as_str()));
        md
    }
}

/// Why the suite could not write its report.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("writing the report to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The spool benchmark's targets (issue 3): 64+ writers, 1 KiB records.
pub fn spool_targets(r: &SpoolBenchReport) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    let find = |system: &str, writers: usize| {
        r.cases
            .iter()
            .find(|c| c.system == system && c.writers == writers && c.record_bytes == 1024)
    };
    for writers in [64, 256] {
        let (Some(spool), disk, redis) = (
            find("spool", writers),
            find("disk", writers),
            find("redis", writers),
        ) else {
            continue;
        };
        if let Some(d) = disk {
            let v = crate::report::ratio(spool.mb_per_s, d.mb_per_s);
            rows.push(TargetRow::new(
                "spool",
                format!("spool ÷ disk MB/s, {writers} writers, 1 KiB"),
                "≥ 0.60×",
                crate::report::fmt_ratio(v),
                Verdict::at_least(v, 0.60),
            ));
        }
        if let Some(rd) = redis {
            let v = crate::report::ratio(spool.records_per_s, rd.records_per_s);
            rows.push(TargetRow::new(
                "spool",
                format!("spool ÷ Redis AOF always, {writers} writers, 1 KiB"),
                "≥ 3×",
                crate::report::fmt_ratio(v),
                Verdict::at_least(v, 3.0),
            ));
        }
    }
    rows
}

/// Runs the selected benchmarks, then writes the report into `opts.out`. A benchmark that
/// fails is reported as failed; the others still run. Call from a plain thread.
pub fn run_suite(opts: SuiteOptions) -> Result<SuiteReport, SuiteError> {
    let started = Instant::now();
    let mut report = SuiteReport {
        quick: opts.quick,
        machine: Machine::probe(),
        secs: 0.0,
        spool: None,
        direct: None,
        kafka3686: None,
        modes: None,
        http: None,
        failed: Vec::new(),
        targets: Vec::new(),
        files: Vec::new(),
    };
    let p = opts.progress.clone();
    for bench in &opts.benches {
        p.step(&format!("starting {}", bench.as_str()));
        let result: Result<(), String> = match bench {
            Bench::Spool => {
                let mut o = SpoolBenchOptions::default();
                if opts.quick {
                    o.writers = vec![64];
                    o.record_sizes = vec![1024];
                    o.duration = Duration::from_secs(1);
                    o.many_streams = false;
                }
                o.redis = which("redis-server");
                run_spool_bench(o)
                    .map(|r| {
                        report.targets.extend(spool_targets(&r));
                        report.spool = Some(r);
                    })
                    .map_err(|e| e.to_string())
            }
            Bench::Direct => {
                let mut o = if opts.quick {
                    DirectBenchOptions::quick()
                } else {
                    DirectBenchOptions::default()
                };
                if opts.no_tansu {
                    o.brokers.retain(|b| *b != crate::direct::Broker::Tansu);
                }
                if let Some(r) = opts.rounds {
                    o.rounds = r;
                }
                o.progress = p.clone();
                run_direct_bench(o)
                    .map(|r| {
                        report.targets.extend(r.targets());
                        report.direct = Some(r);
                    })
                    .map_err(|e| e.to_string())
            }
            Bench::Kafka3686 => {
                let mut o = if opts.quick {
                    Kafka3686Options::quick()
                } else {
                    Kafka3686Options::default()
                };
                if let Some(r) = opts.rounds {
                    o.rounds = r;
                }
                o.progress = p.clone();
                run_kafka3686_bench(o)
                    .map(|r| {
                        report.targets.extend(r.targets());
                        report.kafka3686 = Some(r);
                    })
                    .map_err(|e| e.to_string())
            }
            Bench::Modes => {
                let mut o = if opts.quick {
                    ModesBenchOptions::quick()
                } else {
                    ModesBenchOptions::default()
                };
                if let Some(n) = opts.records {
                    o.records = n;
                }
                if let Some(b) = opts.record_bytes {
                    o.record_bytes = b;
                }
                if let Some(d) = opts.outage {
                    o.outage = d;
                }
                if let Some(r) = opts.rounds {
                    o.rounds = r;
                }
                o.progress = p.clone();
                run_modes_bench(o)
                    .map(|r| {
                        report.targets.extend(r.targets());
                        report.modes = Some(r);
                    })
                    .map_err(|e| e.to_string())
            }
            Bench::Http => {
                let mut o = if opts.quick {
                    HttpBenchOptions::quick()
                } else {
                    HttpBenchOptions::default()
                };
                if let Some(r) = opts.rounds {
                    o.rounds = r;
                }
                o.progress = p.clone();
                run_http_bench(o)
                    .map(|r| {
                        report.targets.extend(r.targets());
                        report.http = Some(r);
                    })
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(why) = result {
            p.step(&format!("{} failed: {why}", bench.as_str()));
            report.failed.push((bench.as_str().to_string(), why));
        }
    }
    report.machine.load_after = load_average();
    report.secs = started.elapsed().as_secs_f64();
    write_outputs(&opts.out, &mut report)?;
    Ok(report)
}

fn which(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

fn write_outputs(out: &Path, report: &mut SuiteReport) -> Result<(), SuiteError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SuiteError::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(werr(out))?;
    let mut files = Vec::new();
    if let Some(m) = &report.modes {
        if let Some(d) = m.drains.first() {
            let path = out.join("drain.svg");
            let rate = rate_from_backlog(&d.backlog, 0.25);
            let series = [
                ("drain, records/s", rate),
                (
                    "vanilla rate (same run), records/s",
                    vec![
                        (0.0, d.vanilla_per_s),
                        (d.backlog.last().map_or(1.0, |l| l.0), d.vanilla_per_s),
                    ],
                ),
            ];
            let axes = Axes {
                x: "seconds since the brokers were healed",
                y: "records/s",
            };
            if line_chart_with(
                &path,
                "Drain of the outage backlog: throughput over time",
                axes,
                &series,
            )
            .is_ok()
            {
                files.push(path);
            }
            let path = out.join("drain-backlog.svg");
            let axes = Axes {
                x: "seconds since the brokers were healed",
                y: "records in the spool",
            };
            if line_chart_with(
                &path,
                "Drain of the outage backlog: spool depth",
                axes,
                &[("backlog", d.backlog.clone())],
            )
            .is_ok()
            {
                files.push(path);
            }
        }
        if let Some(r) = &m.rss {
            let path = out.join("outage-rss.svg");
            let axes = Axes {
                x: "seconds into the outage",
                y: "RSS, MB",
            };
            let title = format!("RSS during an outage at {} records/s", r.rate);
            if line_chart_with(&path, &title, axes, &[("VmRSS", r.samples.clone())]).is_ok() {
                files.push(path);
            }
        }
    }
    let md_path = out.join("report.md");
    let json_path = out.join("report.json");
    files.push(md_path.clone());
    files.push(json_path.clone());
    report.files = files;
    std::fs::write(&md_path, report.markdown()).map_err(werr(&md_path))?;
    let json = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other);
    std::fs::write(&json_path, json.map_err(werr(&json_path))?).map_err(werr(&json_path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(quick: bool) -> SuiteReport {
        SuiteReport {
            quick,
            machine: Machine {
                cpus: 2,
                cpu_model: Some("cpu".into()),
                kernel: Some("6".into()),
                load_before: Some(1.0),
                load_after: Some(2.0),
            },
            secs: 1.0,
            spool: None,
            direct: None,
            kafka3686: None,
            modes: None,
            http: None,
            failed: vec![("http".into(), "no".into())],
            targets: vec![TargetRow::new("x", "y", "≥ 1×", "2×", Verdict::Met)],
            files: vec![],
        }
    }

    #[test]
    fn the_markdown_report_starts_with_the_machine_and_the_targets() {
        let md = empty(true).markdown();
        assert!(md.starts_with("# Spillway benchmark report (quick)\n\nMachine: 2 CPUs (cpu)"));
        assert!(md.contains("load average 1.00 before, 2.00 after"));
        assert!(md.contains("| x | y | ≥ 1× | 2× | met |"));
        assert!(md.contains("**http failed:** no"));
    }

    #[test]
    fn outputs_are_written_even_with_nothing_measured() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = empty(false);
        write_outputs(dir.path(), &mut r).unwrap();
        assert!(dir.path().join("report.md").is_file());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["targets"][0]["verdict"], "met");
        assert_eq!(r.files.len(), 2);
    }
}
