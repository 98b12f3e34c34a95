//! The producer's two threads.
//!
//! - **supervisor** (every 100 ms, or woken): performs requested cuts, finds stalled
//!   partitions (and cuts), writes dead letters, re-places keyless records.
//! - **prober** (every `probe_interval`): probes the leaders of unhealthy partitions (ListOffsets,
//!   answered only by the leader), resolves possibly persisted keyless records by tail checks
//!   once their partition is healthy, and refreshes topic metadata (leaders).
//!
//! Both block on the network or on fsync at times, which is why neither runs in librdkafka's
//! poll thread.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use super::outcome::Outcome;
use super::session::Pending;
use crate::health::TopicPartition;
use crate::tail::{ProbeFailure, TailReader};

const TICK: Duration = Duration::from_millis(100);

pub(crate) fn spawn(shared: &Arc<Shared>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let tail = TailReader::new(&shared.config, shared.opts.max_tail_scan)
        .map_err(|e| std::io::Error::other(format!("creating the probe consumer: {e}")))?;
    let weak = Arc::downgrade(shared);
    let supervisor = std::thread::Builder::new()
        .name("spillway-supervisor".into())
        .spawn(move || supervise(weak))?;
    let weak = Arc::downgrade(shared);
    let prober = std::thread::Builder::new()
        .name("spillway-prober".into())
        .spawn(move || probe(weak, tail))?;
    Ok(vec![supervisor, prober])
}

fn supervise(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        {
            let (lock, cv) = &shared.wake;
            let mut woken = lock.lock();
            if !*woken {
                cv.wait_for(&mut woken, TICK);
            }
            *woken = false;
        }
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let current = shared.session.read().as_ref().map(|s| s.id);
        if let Some((session, reason)) = shared.cut_request.lock().take() {
            if Some(session) == current {
                shared.cut(&reason);
            }
        }
        let stalled = shared.health.lock().tick(Instant::now());
        shared.collect_events();
        if !stalled.is_empty() {
            let names: Vec<String> = stalled.iter().map(ToString::to_string).collect();
            shared.cut(&format!("stalled: {}", names.join(", ")));
        }
        shared.flush_dead_letters();
        shared.replace_requeued();
    }
}

fn probe(weak: Weak<Shared>, tail: TailReader) {
    let mut last_probe = Instant::now() - Duration::from_secs(3600);
    let mut reachable_since: HashMap<TopicPartition, Instant> = HashMap::new();
    loop {
        std::thread::sleep(TICK);
        let Some(shared) = weak.upgrade() else { return };
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        if last_probe.elapsed() < shared.opts.probe_interval {
            continue;
        }
        last_probe = Instant::now();
        probe_unhealthy(&shared, &tail);
        resolve_unresolved(&shared, &tail, &mut reachable_since);
        refresh_stale_metadata(&shared);
    }
}

/// One probe per leader broker of the unhealthy partitions; its result applies to every
/// unhealthy partition that broker leads.
fn probe_unhealthy(shared: &Shared, tail: &TailReader) {
    let unhealthy: Vec<TopicPartition> = shared
        .health
        .lock()
        .unhealthy()
        .into_iter()
        .map(|(tp, _, _)| tp)
        .collect();
    if unhealthy.is_empty() {
        return;
    }
    let mut by_leader: HashMap<Option<i32>, Vec<TopicPartition>> = HashMap::new();
    {
        let health = shared.health.lock();
        for tp in unhealthy {
            by_leader.entry(health.leader(&tp)).or_default().push(tp);
        }
    }
    for (leader, partitions) in by_leader {
        let groups: Vec<Vec<TopicPartition>> = match leader {
            Some(_) => vec![partitions],
            // Unknown leader: probe each partition on its own.
            None => partitions.into_iter().map(|tp| vec![tp]).collect(),
        };
        for group in groups {
            let first = &group[0];
            let result = tail.probe(&first.topic, first.partition, shared.opts.probe_timeout);
            tracing::debug!(partition = %first, ?leader, "probe: {result:?}");
            let ok = result.is_ok();
            let now = Instant::now();
            let mut health = shared.health.lock();
            for tp in &group {
                health.on_probe(tp, ok, now);
            }
        }
    }
    probe_suspects(shared, tail);
    shared.collect_events();
}

/// While some leader is unreachable, the others are suspects too (a whole cluster may be
/// gone, and partitions without traffic would only find out when a record stalls on them):
/// probe one partition of every other leader, and mark its partitions unhealthy if that leader
/// fails to answer. A probe whose metadata request timed out may have been sent to the broker
/// that hangs: it blames a leader only if none of that leader's partitions had a record
/// acknowledged lately (it blamed healthy leaders still acknowledging, and left keyless records
/// nowhere to go).
fn probe_suspects(shared: &Shared, tail: &TailReader) {
    let suspects: Vec<(i32, TopicPartition)> = shared.health.lock().healthy_leaders();
    let lately = shared
        .opts
        .health
        .stall_after
        .max(shared.opts.probe_interval * 2);
    for (leader, tp) in suspects {
        let blamed = match tail.probe(&tp.topic, tp.partition, shared.opts.probe_timeout) {
            Ok(_) => false,
            Err(ProbeFailure::Leader(_)) => true,
            Err(ProbeFailure::Metadata(_)) => {
                !shared
                    .health
                    .lock()
                    .leader_acked_within(leader, lately, Instant::now())
            }
        };
        if blamed {
            let why = format!("leader broker {leader} did not answer a probe");
            shared
                .health
                .lock()
                .mark_leader(leader, &why, Instant::now());
        }
    }
}

/// Tail checks for possibly persisted keyless records whose partition is healthy again, and has
/// been for `resolve_settle`: when a network partition heals, requests that were stuck in it
/// still arrive at the broker; checking before they land would miss them and resend.
fn resolve_unresolved(
    shared: &Shared,
    tail: &TailReader,
    reachable_since: &mut HashMap<TopicPartition, Instant>,
) {
    let waiting: Vec<Pending> = std::mem::take(&mut *shared.unresolved.lock());
    if waiting.is_empty() {
        reachable_since.clear();
        return;
    }
    let mut keep = Vec::new();
    let mut ready: HashMap<TopicPartition, Vec<Pending>> = HashMap::new();
    {
        let health = shared.health.lock();
        let now = Instant::now();
        for p in waiting {
            if p.sent_at.elapsed() > shared.opts.resolve_timeout {
                keep.push((p, true));
            } else if health.healthy_for(&p.tp(), shared.opts.resolve_settle, now) {
                ready.entry(p.tp()).or_default().push(p);
            } else {
                keep.push((p, false));
            }
        }
    }
    for (p, expired) in keep {
        if expired {
            shared.give_up_resolving(p, "partition did not recover in time for a tail check");
        } else {
            shared.unresolved.lock().push(p);
        }
    }
    for (tp, pendings) in ready {
        // The leader must have answered us for `resolve_settle` before we trust its tail: a
        // request stuck in a network partition lands when the partition heals, which can be
        // after our health tracker (or this reader) first sees the leader again.
        let reachable = tail
            .watermarks(&tp.topic, tp.partition, shared.opts.probe_timeout)
            .is_ok();
        if !reachable {
            reachable_since.remove(&tp);
        }
        let settled = reachable
            && reachable_since
                .entry(tp.clone())
                .or_insert_with(Instant::now)
                .elapsed()
                >= shared.opts.resolve_settle;
        if !settled {
            shared.unresolved.lock().extend(pendings);
            continue;
        }
        let after = pendings.iter().map(|p| p.known_before).min().flatten();
        let ids: HashSet<_> = pendings.iter().map(|p| p.record.id.clone()).collect();
        match tail.find(
            &tp.topic,
            tp.partition,
            after,
            &ids,
            shared.opts.probe_timeout * 10,
        ) {
            Ok(checked) => {
                checked.report_partial(&tp.topic, tp.partition, &shared.opts.partial_tail_checks);
                for p in pendings {
                    match checked.found.get(&p.record.id) {
                        Some(offset) => {
                            shared
                                .counters
                                .resolved_found
                                .fetch_add(1, Ordering::Relaxed);
                            let partition = p.partition;
                            shared.finish(
                                p,
                                Outcome::Delivered {
                                    partition,
                                    offset: Some(*offset),
                                },
                            );
                        }
                        None => shared.requeue.lock().push_back(p),
                    }
                }
                shared.wake();
            }
            Err(e) => {
                tracing::warn!(partition = %tp, "tail check failed, will retry: {e}");
                shared.unresolved.lock().extend(pendings);
            }
        }
    }
}

fn refresh_stale_metadata(shared: &Shared) {
    let stale: Vec<String> = shared
        .meta
        .lock()
        .iter()
        .filter(|(_, m)| m.fetched.elapsed() >= shared.opts.metadata_ttl)
        .map(|(t, _)| t.clone())
        .collect();
    for topic in stale {
        if let Err(e) = shared.refresh_metadata(&topic) {
            tracing::debug!(%topic, "metadata refresh failed: {e}");
            // Keep the old entry; try again next round.
            if let Some(m) = shared.meta.lock().get_mut(&topic) {
                m.fetched = Instant::now();
            }
        }
    }
}
