//! HTTP intake (issue 6): records/s through the gateway's native API, against the library
//! alone and against the spool's own limit, in the same run.
//!
//! Load generator: in-process, `connections` keep-alive HTTP/1.1 connections on the same tokio
//! runtime as the gateway, each sending its next request as soon as the answer to the last one
//! is read (closed loop, like `wrk -c N`). The client is a minimal one written for this
//! benchmark ([`Client`]): it writes a prepared request and reads the status line, the headers
//! and a `Content-Length` (or chunked) body, nothing more, so it costs the machine as little as
//! a load generator can. It shares the 2 cores with the gateway, as any generator on this
//! machine would.
//!
//! Requests: `POST /v1/topics/bench-http/records` with `{"format":"string","records":[...]}`,
//! keyless records whose value is a `record_bytes`-character string; one record per request
//! (**single**) or 100 (**batch**).
//!
//! Cases, each for `duration`, in `rounds` rounds:
//! - **failover** (the default mode, Kafka healthy, so each answer is a Kafka ack, HTTP 200):
//!   HTTP vs the library alone (`connections` tasks calling `Spillway::send`, or `send_batch` of
//!   100, in the same closed loop): the overhead ratio http ÷ library.
//! - **spool_first** (HTTP 202 once spooled): HTTP vs the library alone, and vs the spool's
//!   limit from the spool benchmark run here with the same concurrency (`spool` row: one
//!   append in flight per writer; `spool-b100` row: batches of 100).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use spillway::settings::TopicSettings;
use spillway::{Mode, Record, Route, Spillway, SpillwayConfig};
use spillway_gateway::{Config, Server, SpillwayEngine};
use spillway_test_support::MockKafka;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::{
    Progress, Table, TargetRow, Verdict, fmt_ratio, fmt_runs, load_average, median, payload, ratio,
};
use crate::spool::{SpoolBenchOptions, run_spool_bench};

const TOPIC: &str = "bench-http";
const BATCH: usize = 100;

/// What to measure.
#[derive(Debug, Clone)]
pub struct HttpBenchOptions {
    pub connections: usize,
    pub record_bytes: usize,
    pub duration: Duration,
    pub rounds: usize,
    /// Also measure the spool's limit (the spool benchmark, same concurrency).
    pub spool_limit: bool,
    pub dir: Option<std::path::PathBuf>,
    pub progress: Progress,
}

impl Default for HttpBenchOptions {
    fn default() -> Self {
        HttpBenchOptions {
            connections: 64,
            record_bytes: 100,
            duration: Duration::from_secs(3),
            rounds: 3,
            spool_limit: true,
            dir: None,
            progress: Progress::default(),
        }
    }
}

impl HttpBenchOptions {
    pub fn quick() -> Self {
        HttpBenchOptions {
            duration: Duration::from_secs(1),
            ..Self::default()
        }
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRun {
    /// `failover` or `spool_first`.
    pub mode: String,
    /// `library`, `http` or `spool-limit`.
    pub via: String,
    /// 1 or 100 records per request.
    pub batch: usize,
    pub round: usize,
    pub records: u64,
    pub requests: u64,
    /// Requests answered with something other than 200/202 (or library rejections).
    pub errors: u64,
    pub secs: f64,
    pub records_per_s: f64,
}

/// Medians of one (mode, batch).
#[derive(Debug, Clone, Serialize)]
pub struct HttpCase {
    pub mode: String,
    pub batch: usize,
    pub http_per_s: f64,
    pub library_per_s: f64,
    pub spool_limit_per_s: Option<f64>,
    /// http ÷ library, median of per-round ratios.
    pub overhead_ratio: Option<f64>,
    pub overhead_ratios: Vec<f64>,
    /// http ÷ spool limit (spool_first only).
    pub vs_spool_limit: Option<f64>,
    pub vs_spool_limit_ratios: Vec<f64>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct HttpBenchReport {
    pub connections: usize,
    pub record_bytes: usize,
    pub runs: Vec<HttpRun>,
    pub cases: Vec<HttpCase>,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub table: String,
}

impl HttpBenchReport {
    /// Issue 6 states no numeric target: the rows are information.
    pub fn targets(&self) -> Vec<TargetRow> {
        let mut rows = Vec::new();
        for c in &self.cases {
            let shape = if c.batch == 1 {
                "single-record requests".to_string()
            } else {
                format!("{}-record batches", c.batch)
            };
            rows.push(TargetRow::new(
                "http",
                format!("{} {shape}: HTTP ÷ library alone", c.mode),
                "(overhead ratio; reported)",
                format!(
                    "{} {} ({:.0} vs {:.0} records/s)",
                    fmt_ratio(c.overhead_ratio),
                    fmt_runs(&c.overhead_ratios),
                    c.http_per_s,
                    c.library_per_s
                ),
                Verdict::Info,
            ));
            if let Some(limit) = c.spool_limit_per_s {
                rows.push(TargetRow::new(
                    "http",
                    format!("{} {shape}: HTTP ÷ spool limit", c.mode),
                    "(reported)",
                    format!(
                        "{} {} ({:.0} vs {limit:.0} records/s)",
                        fmt_ratio(c.vs_spool_limit),
                        fmt_runs(&c.vs_spool_limit_ratios),
                        c.http_per_s
                    ),
                    Verdict::Info,
                ));
            }
        }
        rows
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpBenchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("mock cluster: {0}")]
    Mock(String),
    #[error("spillway: {0}")]
    Spillway(String),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("spool limit: {0}")]
    Spool(String),
}

/// Runs the benchmark. Creates its own tokio runtime: call it from a plain thread.
pub fn run_http_bench(opts: HttpBenchOptions) -> Result<HttpBenchReport, HttpBenchError> {
    let load_before = load_average();
    let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut runs = Vec::new();
    if opts.spool_limit {
        for round in 0..opts.rounds {
            opts.progress.step(&format!(
                "http: spool limit round {}/{} ({} writers)",
                round + 1,
                opts.rounds,
                opts.connections
            ));
            let report = run_spool_bench(SpoolBenchOptions {
                dir: Some(base.clone()),
                writers: vec![opts.connections],
                record_sizes: vec![opts.record_bytes],
                duration: opts.duration,
                many_streams: false,
                redis: false,
                redis_pipeline: BATCH,
                ..SpoolBenchOptions::default()
            })
            .map_err(|e| HttpBenchError::Spool(e.to_string()))?;
            for c in report.cases {
                let batch = match c.system.as_str() {
                    "spool" => 1,
                    s if s == format!("spool-b{BATCH}") => BATCH,
                    _ => continue,
                };
                runs.push(HttpRun {
                    mode: "spool_first".into(),
                    via: "spool-limit".into(),
                    batch,
                    round,
                    records: c.records,
                    requests: c.records / batch as u64,
                    errors: 0,
                    secs: c.secs,
                    records_per_s: c.records_per_s,
                });
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let kafka = MockKafka::new(3).map_err(|e| HttpBenchError::Mock(e.to_string()))?;
    kafka
        .create_topic(TOPIC, 3)
        .map_err(|e| HttpBenchError::Mock(e.to_string()))?;
    for (mode, name) in [
        (Mode::Failover, "failover"),
        (Mode::SpoolFirst, "spool_first"),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("spillway-bench-http")
            .tempdir_in(&base)?;
        let r = rt.block_on(measure_mode(
            &opts,
            kafka.bootstrap(),
            dir.path(),
            mode,
            name,
        ))?;
        runs.extend(r);
    }
    drop(rt);
    let cases = summarise(&runs);
    let table = render(&cases, opts.connections);
    Ok(HttpBenchReport {
        connections: opts.connections,
        record_bytes: opts.record_bytes,
        runs,
        cases,
        load_before,
        load_after: load_average(),
        table,
    })
}

async fn measure_mode(
    opts: &HttpBenchOptions,
    bootstrap: &str,
    dir: &std::path::Path,
    mode: Mode,
    name: &str,
) -> Result<Vec<HttpRun>, HttpBenchError> {
    let mut c = SpillwayConfig::new(bootstrap, dir);
    c.default_route = Route::new("*", mode);
    c.topics = vec![TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    let sw = Spillway::start(c).map_err(|e| HttpBenchError::Spillway(e.to_string()))?;
    let mut gw = Config::default();
    gw.http.listen = "127.0.0.1:0".parse().expect("address");
    gw.http.metrics_listen = "127.0.0.1:0".parse().expect("address");
    gw.limits.max_concurrent_requests = gw.limits.max_concurrent_requests.max(opts.connections * 2);
    let server = Server::bind(gw, Arc::new(SpillwayEngine::new(sw.clone())))
        .await
        .map_err(|e| HttpBenchError::Gateway(e.to_string()))?;
    let addr = server.api_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    // Warm up both paths.
    let _ = library_load(&sw, 4, 1, opts.record_bytes, Duration::from_millis(300)).await;
    let _ = http_load(addr, 4, 1, opts.record_bytes, Duration::from_millis(300)).await?;
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        for batch in [1, BATCH] {
            let mut order = ["library", "http"];
            if round % 2 == 1 {
                order.reverse();
            }
            for via in order {
                opts.progress.step(&format!(
                    "http: {name} {via}, {batch} record(s) per request, round {}/{}",
                    round + 1,
                    opts.rounds
                ));
                let (records, requests, errors, secs) = if via == "library" {
                    library_load(
                        &sw,
                        opts.connections,
                        batch,
                        opts.record_bytes,
                        opts.duration,
                    )
                    .await
                } else {
                    http_load(
                        addr,
                        opts.connections,
                        batch,
                        opts.record_bytes,
                        opts.duration,
                    )
                    .await?
                };
                let r = HttpRun {
                    mode: name.into(),
                    via: via.into(),
                    batch,
                    round,
                    records,
                    requests,
                    errors,
                    secs,
                    records_per_s: records as f64 / secs,
                };
                opts.progress.step(&format!(
                    "http: {name} {via} batch {batch}: {:.0} records/s ({errors} errors)",
                    r.records_per_s
                ));
                runs.push(r);
            }
        }
    }
    let _ = stop_tx.send(());
    let _ = serving.await;
    sw.shutdown(Duration::from_secs(10)).await;
    Ok(runs)
}

/// `connections` tasks, each calling the library in a closed loop; (records, calls, errors,
/// seconds).
async fn library_load(
    sw: &Spillway,
    connections: usize,
    batch: usize,
    size: usize,
    duration: Duration,
) -> (u64, u64, u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let value = payload(size);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (sw, stop, value) = (sw.clone(), stop.clone(), value.clone());
        let (records, calls, errors) = (records.clone(), calls.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let make = || Record::new(TOPIC).value(value.clone());
                let ok = if batch == 1 {
                    u64::from(sw.send(make()).await.is_ok())
                } else {
                    let answers = sw.send_batch((0..batch).map(|_| make()).collect()).await;
                    answers.iter().filter(|a| a.is_ok()).count() as u64
                };
                records.fetch_add(ok, Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
                if ok < batch as u64 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    (
        records.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        secs,
    )
}

/// The JSON body of one request: `batch` keyless records with string values of `size` chars.
pub fn request_body(batch: usize, size: usize) -> String {
    let value: String = (0..size)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let one = format!("{{\"value\":\"{value}\"}}");
    let records: Vec<&str> = (0..batch).map(|_| one.as_str()).collect();
    format!(
        "{{\"format\":\"string\",\"records\":[{}]}}",
        records.join(",")
    )
}

/// The whole request, head and body.
pub fn request_bytes(batch: usize, size: usize) -> Vec<u8> {
    let body = request_body(batch, size);
    let mut r = format!(
        "POST /v1/topics/{TOPIC}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

async fn http_load(
    addr: std::net::SocketAddr,
    connections: usize,
    batch: usize,
    size: usize,
    duration: Duration,
) -> Result<(u64, u64, u64, f64), HttpBenchError> {
    let request = Arc::new(request_bytes(batch, size));
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        let (stop, request) = (stop.clone(), request.clone());
        let (records, calls, errors) = (records.clone(), calls.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.call(&request).await {
                    Ok(200 | 202) => {
                        records.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((
        records.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        secs,
    ))
}

/// A minimal keep-alive HTTP/1.1 client: writes prepared requests, reads status and body.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends `request` and returns the response's status code (its body is read and dropped).
    pub async fn call(&mut self, request: &[u8]) -> std::io::Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(head) = parse_head(&self.buf) {
                let total = match head.body {
                    Body::Length(n) => head.len + n,
                    Body::Chunked => match chunked_end(&self.buf[head.len..]) {
                        Some(n) => head.len + n,
                        None => {
                            self.fill().await?;
                            continue;
                        }
                    },
                };
                if self.buf.len() >= total {
                    self.buf.drain(..total);
                    return Ok(head.status);
                }
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Body {
    Length(usize),
    Chunked,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the head, blank line included.
    len: usize,
    body: Body,
}

/// Parses a response head once it is complete.
fn parse_head(buf: &[u8]) -> Option<Head> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut body = Body::Length(0);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            body = Body::Length(value.parse().ok()?);
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            body = Body::Chunked;
        }
    }
    Some(Head {
        status,
        len: end,
        body,
    })
}

/// The length of a complete chunked body at the start of `buf`, if it is all there.
fn chunked_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let size_text = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers are not expected: the final CRLF follows.
            return (buf.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if buf.len() < at {
            return None;
        }
    }
}

fn summarise(runs: &[HttpRun]) -> Vec<HttpCase> {
    let mut cases = Vec::new();
    for mode in ["failover", "spool_first"] {
        for batch in [1, BATCH] {
            let of = |via: &str| -> Vec<&HttpRun> {
                runs.iter()
                    .filter(|r| r.mode == mode && r.batch == batch && r.via == via)
                    .collect()
            };
            let (h, l, s) = (of("http"), of("library"), of("spool-limit"));
            if h.is_empty() {
                continue;
            }
            let med =
                |rs: &[&HttpRun]| median(&rs.iter().map(|r| r.records_per_s).collect::<Vec<_>>());
            let per_round = |base: &[&HttpRun]| -> Vec<f64> {
                h.iter()
                    .filter_map(|r| {
                        let b = base.iter().find(|b| b.round == r.round)?;
                        ratio(r.records_per_s, b.records_per_s)
                    })
                    .collect()
            };
            let overhead = per_round(&l);
            let vs_limit = per_round(&s);
            cases.push(HttpCase {
                mode: mode.into(),
                batch,
                http_per_s: med(&h).unwrap_or(0.0),
                library_per_s: med(&l).unwrap_or(0.0),
                spool_limit_per_s: med(&s),
                overhead_ratio: median(&overhead),
                overhead_ratios: overhead,
                vs_spool_limit: median(&vs_limit),
                vs_spool_limit_ratios: vs_limit,
            });
        }
    }
    cases
}

/// The Markdown table of the medians.
pub fn render(cases: &[HttpCase], connections: usize) -> String {
    let mut t = Table::new(&[
        "mode",
        "records per request",
        "HTTP records/s",
        "library alone records/s",
        "HTTP ÷ library × (per round)",
        "spool limit records/s",
        "HTTP ÷ spool limit ×",
    ]);
    for c in cases {
        t.row(vec![
            c.mode.clone(),
            c.batch.to_string(),
            format!("{:.0}", c.http_per_s),
            format!("{:.0}", c.library_per_s),
            format!(
                "{} {}",
                fmt_ratio(c.overhead_ratio),
                fmt_runs(&c.overhead_ratios)
            ),
            c.spool_limit_per_s
                .map_or_else(|| "—".into(), |v| format!("{v:.0}")),
            if c.spool_limit_per_s.is_some() {
                format!(
                    "{} {}",
                    fmt_ratio(c.vs_spool_limit),
                    fmt_runs(&c.vs_spool_limit_ratios)
                )
            } else {
                "—".into()
            },
        ]);
    }
    format!("{connections} connections (closed loop)\n\n{}", t.render())
}

#[cfg(test)]
mod tests;
