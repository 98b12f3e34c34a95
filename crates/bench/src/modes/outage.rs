//! The outage cases: the drain of a spooled backlog after a blackhole heals, and RSS during a
//! long outage.

use super::*;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// The shortest outage the drain case measures: well past Spillway's stall detection (1.5 s
/// by default), as any outage that builds a backlog worth draining is.
const MIN_OUTAGE: Duration = Duration::from_secs(5);

/// Records delivered before the outage (per round), spread over the partitions by the sticky
/// partitioner's runs.
const WARM_UP: u64 = 3_000;

/// One drain round: vanilla through the proxies, then Spillway delivers a few records, spools
/// `opts.records` while every broker is blackholed (for at least [`MIN_OUTAGE`]), the brokers
/// heal, and the drain is timed.
pub async fn drain_run(
    opts: &ModesBenchOptions,
    base: &std::path::Path,
    round: usize,
) -> Result<DrainRun, ModesBenchError> {
    let kafka = MockKafka::with_proxies(3).map_err(mock_err)?;
    kafka.create_topic(TOPIC, 3).map_err(mock_err)?;
    // The baseline, through the same proxies.
    let bootstrap = kafka.bootstrap().to_string();
    let (records, size) = (opts.records, opts.record_bytes);
    let vanilla = tokio::task::spawn_blocking(move || {
        vanilla_run(&bootstrap, "vanilla", records, size, round)
    })
    .await
    .map_err(|e| ModesBenchError::Vanilla(e.to_string()))??;
    let dir = tempfile::Builder::new()
        .prefix("spillway-bench-drain")
        .tempdir_in(base)?;
    let sw = Spillway::start(config(
        opts,
        kafka.bootstrap(),
        dir.path(),
        Mode::SpoolFirst,
    ))
    .map_err(|e| ModesBenchError::Spillway(e.to_string()))?;
    // A service that was running when Kafka went away: it has delivered to every partition, so
    // it knows where each partition's tail stood (where its tail checks start).
    pump(&sw, WARM_UP, opts.record_bytes, None, opts.window).await;
    if !sw.flush(Duration::from_secs(60)).await {
        return Err(ModesBenchError::Spillway(
            "the warm-up records were not delivered".into(),
        ));
    }
    let brokers = kafka.broker_ids();
    for &b in &brokers {
        kafka
            .make_unreachable(b, Unreachable::Blackhole)
            .map_err(mock_err)?;
    }
    let blackholed = Instant::now();
    let start = Instant::now();
    let (ok, _) = pump(&sw, opts.records, opts.record_bytes, None, opts.window).await;
    let spool_per_s = ok as f64 / start.elapsed().as_secs_f64();
    let initial = sw.backlog();
    // An outage shorter than Spillway's stall detection is a blip, not the case measured: the
    // heal could race the detection (a cut just after the heal, then a tail check mid-drain).
    if let Some(rest) = MIN_OUTAGE.checked_sub(blackholed.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    for &b in &brokers {
        kafka.make_reachable(b).map_err(mock_err)?;
    }
    let healed = Instant::now();
    let cpu0 = crate::report::cpu_time();
    let mut samples = vec![(0.0, initial as f64)];
    let mut first: Option<Instant> = None;
    let limit = Duration::from_secs(900);
    loop {
        let left = sw.backlog();
        let now = Instant::now();
        if first.is_none() && left < initial {
            first = Some(now);
        }
        samples.push((now.duration_since(healed).as_secs_f64(), left as f64));
        if left == 0 {
            break;
        }
        if now.duration_since(healed) > limit {
            return Err(ModesBenchError::Spillway(format!(
                "the drain did not finish in {limit:?} ({left} left)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = Instant::now();
    let cpu = (crate::report::cpu_time() - cpu0).as_secs_f64();
    sw.shutdown(Duration::from_secs(10)).await;
    let first = first.unwrap_or(done);
    let drain_secs = done.duration_since(first).as_secs_f64();
    let drain_per_s = initial as f64 / drain_secs.max(1e-3);
    Ok(DrainRun {
        round,
        records: initial,
        spool_per_s,
        first_delivery_s: first.duration_since(healed).as_secs_f64(),
        drain_secs,
        drain_per_s,
        cpu_us_per_record: cpu * 1e6 / initial.max(1) as f64,
        vanilla_per_s: vanilla.records_per_s,
        ratio: ratio(drain_per_s, vanilla.records_per_s),
        backlog: thin(samples, 400),
    })
}

/// Keeps at most about `max` samples, evenly spaced, always the first and the last.
pub fn thin(samples: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if samples.len() <= max || max < 2 {
        return samples;
    }
    let step = samples.len().div_ceil(max - 1);
    let last = *samples.last().expect("non-empty");
    let mut out: Vec<(f64, f64)> = samples.into_iter().step_by(step).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// Records per second from (time, backlog) samples: the backlog's fall between samples at
/// least `window` seconds apart.
pub fn rate_from_backlog(samples: &[(f64, f64)], window: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    for &(t, b) in samples {
        match prev {
            None => prev = Some((t, b)),
            Some((pt, pb)) if t - pt >= window => {
                out.push((t, ((pb - b) / (t - pt)).max(0.0)));
                prev = Some((t, b));
            }
            Some(_) => {}
        }
    }
    out
}

pub async fn outage_rss(
    opts: &ModesBenchOptions,
    base: &std::path::Path,
) -> Result<OutageRss, ModesBenchError> {
    let kafka = MockKafka::with_proxies(3).map_err(mock_err)?;
    kafka.create_topic(TOPIC, 3).map_err(mock_err)?;
    let dir = tempfile::Builder::new()
        .prefix("spillway-bench-outage")
        .tempdir_in(base)?;
    let mut c = config(opts, kafka.bootstrap(), dir.path(), Mode::Failover);
    c.spool.capacity_bytes = 50 << 30;
    let sw = Spillway::start(c).map_err(|e| ModesBenchError::Spillway(e.to_string()))?;
    let keys = Some(opts.keys);
    let (ok, _) = pump(&sw, 2000, opts.record_bytes, keys, 500).await;
    if ok == 0 {
        return Err(ModesBenchError::Spillway(
            "no record accepted before the outage".into(),
        ));
    }
    for b in kafka.broker_ids() {
        kafka
            .make_unreachable(b, Unreachable::Blackhole)
            .map_err(mock_err)?;
    }
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.outage_rate.max(1)));
    let value = Arc::new(payload(opts.record_bytes));
    let mut inflight = FuturesUnordered::new();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut next_sample = start;
    let mut i = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < opts.outage {
        ticker.tick().await;
        // Send what the schedule owes by now.
        let due = (start.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64;
        while i < due {
            inflight.push(sw.send(record(i, keys, &value)));
            i += 1;
        }
        while let Some(Some(r)) = futures::FutureExt::now_or_never(inflight.next()) {
            if r.is_ok() {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        if Instant::now() >= next_sample {
            let rss = rss_bytes().unwrap_or(0) as f64 / 1e6;
            samples.push((start.elapsed().as_secs_f64(), rss));
            next_sample += Duration::from_secs(1);
        }
    }
    while let Some(r) = inflight.next().await {
        if r.is_ok() {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    let backlog_at_end = sw.backlog();
    for b in kafka.broker_ids() {
        kafka.make_reachable(b).map_err(mock_err)?;
    }
    sw.shutdown(Duration::from_secs(10)).await;
    let at = |frac: f64| -> f64 {
        let t = opts.outage.as_secs_f64() * frac;
        samples
            .iter()
            .find(|(s, _)| *s >= t)
            .or(samples.last())
            .map_or(0.0, |(_, r)| *r)
    };
    let rss_max_mb = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    Ok(OutageRss {
        outage_s: opts.outage.as_secs_f64(),
        rate: opts.outage_rate,
        accepted,
        rejected,
        backlog_at_end,
        rss_start_mb: at(0.0),
        rss_mid_mb: at(0.5),
        rss_end_mb: samples.last().map_or(0.0, |s| s.1),
        rss_max_mb,
        samples: thin(samples, 600),
    })
}
