//! The spool benchmark. In one run, for each concurrency and record size:
//! - **spool**: `Spool::append` with `FsyncPolicy::Always`, N concurrent writers (tokio tasks),
//!   one stream, then a many-streams variant (one stream per writer);
//! - **disk**: the disk's limit for the same bytes: plain sequential `write` + `fdatasync` in a
//!   loop, with the batch size the spool's group commit actually produced;
//! - **redis**: Redis with AOF `appendfsync always` (the Debian `redis-server`, started here on a
//!   free loopback port in a temp dir), N concurrent clients, each pipelining `RPUSH`es of the
//!   same records.
//!
//! Records/s, MB/s and append latency percentiles (hdrhistogram) are reported with the ratios
//! spool/disk (MB/s) and spool/redis (records/s). Nothing here is asserted: it measures.

use hdrhistogram::Histogram;
use serde::Serialize;
use spillway_spool::{RecordIn, Spool, SpoolConfig, StreamName};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct SpoolBenchOptions {
    /// Parent directory for the temporary spool and Redis directories (same disk as production
    /// spools, ideally). Default: the system temp dir.
    pub dir: Option<PathBuf>,
    /// Concurrent writers (and Redis clients).
    pub writers: Vec<usize>,
    /// Payload sizes in bytes.
    pub record_sizes: Vec<usize>,
    /// How long each case runs.
    pub duration: Duration,
    /// Include the many-streams variant (one stream per writer).
    pub many_streams: bool,
    /// Include the Redis baseline.
    pub redis: bool,
    /// The `redis-server` binary.
    pub redis_server: PathBuf,
    /// Commands per Redis pipeline. When above 1, the spool is also measured with each writer
    /// appending batches of this many records (`append_batch`), the same records in flight.
    pub redis_pipeline: usize,
    /// The spool's `sync_threads` (parallel fdatasyncs when a commit touches many streams).
    pub sync_threads: usize,
    /// The spool's `commits_in_flight` (pipelined group commit depth).
    pub commits_in_flight: usize,
    /// Also measure the many-streams variant with `syncfs_min_files = Some(2)` (one `syncfs`
    /// per group commit instead of one `fdatasync` per file).
    pub many_streams_syncfs: bool,
}

impl Default for SpoolBenchOptions {
    fn default() -> Self {
        SpoolBenchOptions {
            dir: None,
            writers: vec![1, 8, 64, 256],
            record_sizes: vec![100, 1024],
            duration: Duration::from_secs(3),
            many_streams: true,
            redis: true,
            redis_server: PathBuf::from("redis-server"),
            redis_pipeline: 16,
            sync_threads: SpoolConfig::default().sync_threads,
            many_streams_syncfs: true,
            commits_in_flight: SpoolConfig::default().commits_in_flight,
        }
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `disk`, `spool`, `spool-many` or `redis`.
    pub system: String,
    /// Concurrent writers or clients.
    pub writers: usize,
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// Records stored.
    pub records: u64,
    /// Wall time in seconds.
    pub secs: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Median append latency (µs); for `disk`, one write + fdatasync.
    pub p50_us: u64,
    /// 99th percentile append latency (µs).
    pub p99_us: u64,
    /// Bytes per fdatasync (spool: average group-commit size; disk: the batch used).
    pub bytes_per_sync: u64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolBenchReport {
    /// Median latency of a 4 KiB write + fdatasync on this disk (µs).
    pub fsync_4k_p50_us: u64,
    /// All cases.
    pub cases: Vec<CaseResult>,
    /// The printed table (Markdown).
    pub table: String,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum SpoolBenchError {
    /// File system or process I/O.
    #[error("benchmark I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Opening or using the spool failed.
    #[error("spool error: {0}")]
    Spool(String),
    /// Redis could not be started or used.
    #[error("redis: {0}")]
    Redis(String),
}

/// Runs the whole benchmark, prints the table as it goes, and returns the results. Creates its
/// own tokio runtime: call it from a plain thread, not from inside a runtime.
pub fn run_spool_bench(opts: SpoolBenchOptions) -> Result<SpoolBenchReport, SpoolBenchError> {
    let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let fsync_4k = measure_disk(&base, 4096, Duration::from_secs(1))?;
    println!(
        "disk: 4 KiB write + fdatasync p50 {} µs ({:.0}/s)",
        fsync_4k.p50_us, fsync_4k.records_per_s
    );
    let mut cases = Vec::new();
    for &size in &opts.record_sizes {
        for &writers in &opts.writers {
            let case = |streams, batch| SpoolCase {
                writers,
                size,
                streams,
                batch,
                syncfs: false,
                opts: &opts,
            };
            let spool = rt.block_on(measure_spool(&base, case(1, 1)))?;
            let disk = measure_disk(&base, spool.bytes_per_sync.max(1) as usize, opts.duration)?;
            let disk = CaseResult {
                writers,
                record_bytes: size,
                records: disk.records * disk.bytes_per_sync / size as u64,
                records_per_s: disk.mb_per_s * 1e6 / size as f64,
                ..disk
            };
            print_case(&disk);
            print_case(&spool);
            cases.push(disk);
            cases.push(spool);
            if opts.many_streams && writers > 1 {
                let many = rt.block_on(measure_spool(&base, case(writers, 1)))?;
                print_case(&many);
                cases.push(many);
                if opts.many_streams_syncfs {
                    let syncfs = SpoolCase {
                        syncfs: true,
                        ..case(writers, 1)
                    };
                    let many = rt.block_on(measure_spool(&base, syncfs))?;
                    print_case(&many);
                    cases.push(many);
                }
            }
            if opts.redis {
                let redis = measure_redis(&rt, &opts, &base, writers, size, 1)?;
                print_case(&redis);
                cases.push(redis);
            }
            let p = opts.redis_pipeline;
            if p > 1 {
                let batched = rt.block_on(measure_spool(&base, case(1, p)))?;
                print_case(&batched);
                cases.push(batched);
                if opts.redis {
                    let redis = measure_redis(&rt, &opts, &base, writers, size, p)?;
                    print_case(&redis);
                    cases.push(redis);
                }
            }
        }
    }
    let table = render_table(fsync_4k.p50_us, &cases);
    println!("\n{table}");
    Ok(SpoolBenchReport {
        fsync_4k_p50_us: fsync_4k.p50_us,
        cases,
        table,
    })
}

fn print_case(c: &CaseResult) {
    println!(
        "{:<10} writers {:>3} record {:>5} B: {:>9.0} rec/s {:>7.1} MB/s p50 {:>6} µs p99 {:>6} µs ({} B/sync)",
        c.system,
        c.writers,
        c.record_bytes,
        c.records_per_s,
        c.mb_per_s,
        c.p50_us,
        c.p99_us,
        c.bytes_per_sync
    );
    let _ = std::io::stdout().flush();
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Sequential `write` of `batch` bytes + `fdatasync`, repeated for `duration`.
fn measure_disk(
    base: &std::path::Path,
    batch: usize,
    duration: Duration,
) -> Result<CaseResult, SpoolBenchError> {
    let dir = tempfile::Builder::new()
        .prefix("spillway-bench-disk")
        .tempdir_in(base)?;
    let mut file = std::fs::File::create(dir.path().join("data"))?;
    let buf = vec![0x5Au8; batch];
    let mut hist = histogram();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let t = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        hist.record(t.elapsed().as_micros().max(1) as u64).ok();
        n += 1;
        if n % 4096 == 0 {
            file.set_len(0)?; // keep the file small; the next writes extend it again
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(CaseResult {
        system: "disk".into(),
        writers: 1,
        record_bytes: batch,
        records: n,
        secs,
        records_per_s: n as f64 / secs,
        mb_per_s: (n * batch as u64) as f64 / secs / 1e6,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        bytes_per_sync: batch as u64,
    })
}

struct SpoolCase<'a> {
    writers: usize,
    size: usize,
    streams: usize,
    /// Records per `append_batch` (1: plain `append`).
    batch: usize,
    /// Use `syncfs` for commits touching 2+ files.
    syncfs: bool,
    opts: &'a SpoolBenchOptions,
}

async fn measure_spool(
    base: &std::path::Path,
    case: SpoolCase<'_>,
) -> Result<CaseResult, SpoolBenchError> {
    let SpoolCase {
        writers,
        size,
        streams,
        batch,
        syncfs,
        opts,
    } = case;
    let duration = opts.duration;
    let dir = tempfile::Builder::new()
        .prefix("spillway-bench-spool")
        .tempdir_in(base)?;
    let config = SpoolConfig {
        capacity_bytes: 1 << 40,
        sync_threads: opts.sync_threads,
        syncfs_min_files: syncfs.then_some(2),
        commits_in_flight: opts.commits_in_flight,
        ..SpoolConfig::default()
    };
    let (spool, _) =
        Spool::open(dir.path(), config).map_err(|e| SpoolBenchError::Spool(e.to_string()))?;
    let names: Vec<StreamName> = (0..streams)
        .map(|i| StreamName::new(&format!("bench.{i}")).expect("valid name"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let payload = bytes_of(size);
    let before = spool.stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (spool, stop, payload) = (spool.clone(), Arc::clone(&stop), payload.clone());
        let stream = names[w % streams].clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if batch == 1 {
                    spool
                        .append(&stream, RecordIn::new(payload.clone()))
                        .await?;
                } else {
                    let records = (0..batch).map(|_| RecordIn::new(payload.clone())).collect();
                    spool.append_batch(&stream, records).await?;
                }
                hist.record_n(t.elapsed().as_micros().max(1) as u64, batch as u64)
                    .ok();
            }
            Ok::<_, spillway_spool::AppendError>(hist)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = histogram();
    for t in tasks {
        let h = t
            .await
            .expect("writer task")
            .map_err(|e| SpoolBenchError::Spool(e.to_string()))?;
        hist.add(h).ok();
    }
    let secs = start.elapsed().as_secs_f64();
    let after = spool.stats();
    let n = hist.len();
    let commits = (after.group_commits - before.group_commits).max(1);
    let bytes = (after.used_bytes - before.used_bytes).max(1);
    drop(spool);
    Ok(CaseResult {
        system: match (streams > 1, batch > 1) {
            (true, _) if syncfs => "spool-many-syncfs".into(),
            (true, _) => "spool-many".into(),
            (false, true) => format!("spool-b{batch}"),
            (false, false) => "spool".into(),
        },
        writers,
        record_bytes: size,
        records: n,
        secs,
        records_per_s: n as f64 / secs,
        mb_per_s: (n * size as u64) as f64 / secs / 1e6,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        bytes_per_sync: bytes / commits,
    })
}

fn bytes_of(size: usize) -> bytes::Bytes {
    bytes::Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// A `redis-server` child with AOF `appendfsync always` in its own temp dir; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start(
        binary: &std::path::Path,
        base: &std::path::Path,
    ) -> Result<RedisServer, SpoolBenchError> {
        let dir = tempfile::Builder::new()
            .prefix("spillway-bench-redis")
            .tempdir_in(base)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                SpoolBenchError::Redis(format!(
                    "cannot start {} ({e}); install it with `apt-get install -y redis-server`",
                    binary.display()
                ))
            })?;
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(SpoolBenchError::Redis(
                    "redis-server did not start listening".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure_redis(
    rt: &tokio::runtime::Runtime,
    opts: &SpoolBenchOptions,
    base: &std::path::Path,
    clients: usize,
    size: usize,
    pipeline: usize,
) -> Result<CaseResult, SpoolBenchError> {
    let server = RedisServer::start(&opts.redis_server, base)?;
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let pipeline = pipeline.max(1);
    let duration = opts.duration;
    let result = rt.block_on(async move {
        let client = redis::Client::open(url).map_err(|e| SpoolBenchError::Redis(e.to_string()))?;
        let mut cons = Vec::new();
        for _ in 0..clients {
            cons.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| SpoolBenchError::Redis(e.to_string()))?,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let payload = bytes_of(size);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (c, mut con) in cons.into_iter().enumerate() {
            let (stop, payload) = (Arc::clone(&stop), payload.clone());
            let key = format!("bench.{c}");
            tasks.push(tokio::spawn(async move {
                let mut hist = histogram();
                while !stop.load(Ordering::Relaxed) {
                    let mut pipe = redis::pipe();
                    for _ in 0..pipeline {
                        pipe.cmd("RPUSH").arg(&key).arg(payload.as_ref()).ignore();
                    }
                    let t = Instant::now();
                    let () = pipe.query_async(&mut con).await?;
                    let us = t.elapsed().as_micros().max(1) as u64;
                    hist.record_n(us, pipeline as u64).ok();
                }
                Ok::<_, redis::RedisError>(hist)
            }));
        }
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut hist = histogram();
        for t in tasks {
            let h = t
                .await
                .expect("client task")
                .map_err(|e| SpoolBenchError::Redis(e.to_string()))?;
            hist.add(h).ok();
        }
        Ok::<_, SpoolBenchError>((hist, start.elapsed().as_secs_f64()))
    });
    drop(server);
    let (hist, secs) = result?;
    let n = hist.len();
    Ok(CaseResult {
        system: if pipeline > 1 {
            format!("redis-p{pipeline}")
        } else {
            "redis".into()
        },
        writers: clients,
        record_bytes: size,
        records: n,
        secs,
        records_per_s: n as f64 / secs,
        mb_per_s: (n * size as u64) as f64 / secs / 1e6,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        bytes_per_sync: 0,
    })
}

fn render_table(fsync_us: u64, cases: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "4 KiB write + fdatasync: p50 {fsync_us} µs\n");
    let _ = writeln!(
        t,
        "| system | writers | record | records/s | MB/s | p50 µs | p99 µs | B/sync | vs disk (MB/s) | spool vs redis, same in flight (rec/s) |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        let disk = cases.iter().find(|d| {
            d.system == "disk" && d.writers == c.writers && d.record_bytes == c.record_bytes
        });
        let peer = match c.system.strip_prefix("spool-b") {
            Some(p) => format!("redis-p{p}"),
            None => "redis".to_string(),
        };
        let redis = cases.iter().find(|d| {
            d.system == peer && d.writers == c.writers && d.record_bytes == c.record_bytes
        });
        let comparable = c.system == "spool" || c.system.starts_with("spool-many");
        let vs_disk = match (comparable, disk) {
            (true, Some(d)) => format!("{:.0} %", 100.0 * c.mb_per_s / d.mb_per_s),
            _ => String::new(),
        };
        let vs_redis = match (c.system.starts_with("spool"), redis) {
            (true, Some(r)) => format!("{:.2}×", c.records_per_s / r.records_per_s),
            _ => String::new(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} B | {:.0} | {:.1} | {} | {} | {} | {} | {} |",
            c.system,
            c.writers,
            c.record_bytes,
            c.records_per_s,
            c.mb_per_s,
            c.p50_us,
            c.p99_us,
            c.bytes_per_sync,
            vs_disk,
            vs_redis
        );
    }
    t
}
