//! The chaos report: what was sent, what was acknowledged, what Kafka holds, what the oracle
//! says, which faults ran. Printed as a table and written as JSON; the run fails on any
//! violation.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;
use spillway_test_support::TopicRecord;
use spillway_test_support::oracle::Verdict;

use super::faults::FaultEvent;
use super::load::LoadTally;

/// Records: offered, answered, found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RecordCounts {
    pub requests: u64,
    pub single_requests: u64,
    pub batch_requests: u64,
    pub attempted: u64,
    /// Answered 2xx: delivered + spooled.
    pub acknowledged: u64,
    pub acknowledged_delivered: u64,
    pub acknowledged_spooled: u64,
    pub rejected: u64,
    /// Not accepted, by HTTP status or `connection` / `timeout`.
    pub rejected_by_status: BTreeMap<String, u64>,
    /// Records of ours found in Kafka (every copy).
    pub delivered: u64,
    /// Found in Kafka though never acknowledged (allowed: e.g. the answer was lost in a kill).
    pub delivered_unacknowledged: u64,
}

/// The oracle's findings for acknowledged records; all must be zero.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OracleCounts {
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered_per_key: u64,
    pub split_keys: u64,
    /// Acknowledged records destroyed by the injected torn writes themselves (a fault no
    /// fsync'd record can suffer); not counted as lost.
    pub destroyed_by_torn_writes: u64,
    pub examples: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub command: String,
    pub cluster: String,
    pub mode: String,
    pub duration_s: f64,
    pub rate: u32,
    pub connections: usize,
    pub drain_dedup: bool,
    pub records: RecordCounts,
    pub oracle: OracleCounts,
    pub faults_total: u64,
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Tansu's epoch-bump wedge: the broker's defect, restarted, never counted as ours.
    pub broker_wedges: u64,
    pub gateway_starts: u32,
    pub gateway_crashes: Vec<String>,
    pub drained: bool,
    pub time_to_drain_s: f64,
    pub gateway_max_rss_kib: u64,
    pub spool_high_water_records: u64,
    pub spool_high_water_bytes: u64,
    pub disk_full_method: String,
    pub network_fault_method: String,
    pub warnings: Vec<String>,
    /// Partitions whose oldest records the cluster itself had deleted when they were read
    /// back (the mock broker's 5 MiB retention): their losses cannot be told from ours.
    pub pruned_partitions: Vec<i32>,
    /// Why the topic could not be read back at all (the oracle then had nothing to judge).
    pub read_back_error: Option<String>,
    pub violations: Vec<String>,
    pub verdict: String,
    pub events: Vec<FaultEvent>,
    pub timeline: Vec<Sample>,
}

/// One point of the timeline (one per second).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub acks_per_s: f64,
    pub spool_records: Option<u64>,
    pub gateway_rss_kib: Option<u64>,
}

/// The partitions whose first record read back is not at offset 0: the cluster deleted older
/// ones (retention), so what is missing there cannot be judged. Nothing in a chaos run deletes
/// records, and the topic is created fresh.
pub fn pruned_partitions(records: &[TopicRecord]) -> Vec<i32> {
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        let f = first.entry(r.partition).or_insert(r.offset);
        *f = (*f).min(r.offset);
    }
    first
        .into_iter()
        .filter(|(_, o)| *o > 0)
        .map(|(p, _)| p)
        .collect()
}

/// Record counts from the load's tally and the oracle's verdict.
pub fn record_counts(tally: &LoadTally, verdict: &Verdict) -> RecordCounts {
    RecordCounts {
        requests: tally.requests,
        single_requests: tally.single_requests,
        batch_requests: tally.batch_requests,
        attempted: tally.attempted,
        acknowledged: tally.delivered + tally.spooled,
        acknowledged_delivered: tally.delivered,
        acknowledged_spooled: tally.spooled,
        rejected: tally.rejected.values().sum(),
        rejected_by_status: tally.rejected.clone(),
        delivered: verdict.delivered as u64,
        delivered_unacknowledged: verdict.delivered_unacknowledged as u64,
    }
}

/// The oracle's counts, with the records the torn-write fault itself destroyed taken out of
/// `lost` (and counted apart).
pub fn oracle_counts(verdict: &Verdict, torn: &HashSet<String>) -> OracleCounts {
    let lost: Vec<&String> = verdict
        .lost
        .iter()
        .filter(|id| !torn.contains(*id))
        .collect();
    let destroyed = verdict.lost.len() - lost.len();
    let mut examples = Vec::new();
    examples.extend(lost.iter().take(5).map(|id| format!("lost {id}")));
    examples.extend(
        verdict
            .duplicated
            .iter()
            .take(5)
            .map(|(id, n)| format!("duplicated {id} x{n}")),
    );
    examples.extend(
        verdict
            .corrupted
            .iter()
            .take(5)
            .map(|id| format!("corrupted {id}")),
    );
    examples.extend(verdict.reordered.iter().take(5).map(|r| {
        format!(
            "reordered: {} acknowledged before {} was sent, but after it in Kafka",
            r.first, r.second
        )
    }));
    OracleCounts {
        lost: lost.len() as u64,
        duplicated: verdict.duplicated.len() as u64,
        corrupted: verdict.corrupted.len() as u64,
        reordered_per_key: verdict.reordered.len() as u64,
        split_keys: verdict.split.len() as u64,
        destroyed_by_torn_writes: destroyed as u64,
        examples,
    }
}

/// Acknowledgements per second: `ack_times` (seconds since start) counted in one-second
/// buckets `0..secs`.
pub fn acks_per_second(ack_times: &[f32], secs: usize) -> Vec<u64> {
    let mut buckets = vec![0u64; secs];
    for &t in ack_times {
        let i = (t.max(0.0) as usize).min(secs.saturating_sub(1));
        if let Some(b) = buckets.get_mut(i) {
            *b += 1;
        }
    }
    buckets
}

impl Report {
    /// Fills `violations` and `verdict` from the rest.
    pub fn judge(&mut self) {
        if let Some(why) = &self.read_back_error {
            self.violations = vec![format!(
                "INCONCLUSIVE: the topic could not be read back, so the oracle judged nothing: {why}"
            )];
            self.verdict = "INCONCLUSIVE".into();
            return;
        }
        let o = &self.oracle;
        let mut v = Vec::new();
        for (n, what) in [
            (o.lost, "acknowledged records lost"),
            (o.duplicated, "records duplicated"),
            (o.corrupted, "acknowledged records corrupted"),
            (
                o.reordered_per_key,
                "pairs of records reordered within a key",
            ),
            (o.split_keys, "keys split over several partitions"),
        ] {
            if n > 0 {
                v.push(format!("{n} {what}"));
            }
        }
        if !self.drained {
            v.push(format!(
                "the spool did not drain within {:.0}s",
                self.time_to_drain_s
            ));
        }
        v.extend(
            self.gateway_crashes
                .iter()
                .map(|c| format!("gateway crash: {c}")),
        );
        if self.records.acknowledged == 0 {
            v.push("no record was acknowledged: the run tested nothing".into());
        }
        self.verdict = if v.is_empty() { "PASS" } else { "FAIL" }.into();
        if !self.pruned_partitions.is_empty() {
            v.push(format!(
                "INCONCLUSIVE: the cluster deleted the oldest records of partitions {:?} before \
                 they were read back (the mock broker keeps 5 MiB per partition): rerun with \
                 more --partitions or a lower --rate",
                self.pruned_partitions
            ));
            self.verdict = "INCONCLUSIVE".into();
        }
        self.violations = v;
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let r = &self.records;
        let o = &self.oracle;
        let _ = writeln!(s, "\n== spillway chaos report ==");
        let _ = writeln!(s, "command         {}", self.command);
        let _ = writeln!(
            s,
            "seed            {}   cluster {}   mode {}   {:.0}s at {} records/s over {} connections{}",
            self.seed,
            self.cluster,
            self.mode,
            self.duration_s,
            self.rate,
            self.connections,
            if self.drain_dedup {
                ""
            } else {
                "   DRAIN DEDUP OFF (planted bug)"
            }
        );
        let _ = writeln!(s, "\n| records | count |\n|---|---:|");
        let rows: Vec<(String, u64)> = vec![
            (
                format!(
                    "attempted ({} requests: {} single, {} batch)",
                    r.requests, r.single_requests, r.batch_requests
                ),
                r.attempted,
            ),
            ("acknowledged (2xx)".into(), r.acknowledged),
            ("  delivered at once (200)".into(), r.acknowledged_delivered),
            ("  spooled (202)".into(), r.acknowledged_spooled),
            ("rejected".into(), r.rejected),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        for (status, n) in &r.rejected_by_status {
            let _ = writeln!(s, "|   rejected: {status} | {n} |");
        }
        let _ = writeln!(s, "| delivered (in Kafka) | {} |", r.delivered);
        let _ = writeln!(
            s,
            "|   of which never acknowledged (allowed) | {} |",
            r.delivered_unacknowledged
        );
        let _ = writeln!(s, "\n| oracle (acknowledged records) | count |\n|---|---:|");
        if self.read_back_error.is_some() {
            let _ = writeln!(s, "| not judged: the topic could not be read back | — |");
        }
        for (k, v) in [
            ("lost", o.lost),
            ("duplicated", o.duplicated),
            ("corrupted", o.corrupted),
            ("reordered per key", o.reordered_per_key),
            ("keys split over partitions", o.split_keys),
            (
                "destroyed by injected torn writes (not lost by us)",
                o.destroyed_by_torn_writes,
            ),
        ]
        .into_iter()
        .filter(|_| self.read_back_error.is_none())
        {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        for e in o.examples.iter().filter(|_| self.read_back_error.is_none()) {
            let _ = writeln!(s, "  e.g. {e}");
        }
        let _ = writeln!(s, "\n| faults | count |\n|---|---:|");
        for (k, v) in &self.faults_by_kind {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let _ = writeln!(s, "| **total** | **{}** |", self.faults_total);
        let _ = writeln!(
            s,
            "| Tansu wedges and hangs (broker defects, restarted; not ours) | {} |",
            self.broker_wedges
        );
        let _ = writeln!(s, "\n| run | value |\n|---|---:|");
        let _ = writeln!(
            s,
            "| time to drain after the last fault | {:.1} s{} |",
            self.time_to_drain_s,
            if self.drained { "" } else { " (NOT drained)" }
        );
        let _ = writeln!(
            s,
            "| gateway max RSS (VmHWM) | {:.1} MiB |",
            self.gateway_max_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(
            s,
            "| spool high-water mark | {} records, {:.1} MiB |",
            self.spool_high_water_records,
            self.spool_high_water_bytes as f64 / (1024.0 * 1024.0)
        );
        let _ = writeln!(s, "| gateway starts | {} |", self.gateway_starts);
        let _ = writeln!(s, "| disk full by | {} |", self.disk_full_method);
        let _ = writeln!(s, "| network faults by | {} |", self.network_fault_method);
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        if self.passed() {
            let _ = writeln!(
                s,
                "\nverdict: PASS — nothing acknowledged was lost, duplicated, corrupted or reordered"
            );
        } else {
            let _ = writeln!(s, "\nverdict: {}", self.verdict);
            for v in &self.violations {
                let _ = writeln!(s, "  violation: {v}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_test_support::oracle::Reordering;

    fn report(oracle: OracleCounts) -> Report {
        Report {
            seed: 1,
            command: "spillway chaos".into(),
            cluster: "tansu".into(),
            mode: "failover".into(),
            duration_s: 10.0,
            rate: 100,
            connections: 2,
            drain_dedup: true,
            records: RecordCounts {
                acknowledged: 10,
                ..RecordCounts::default()
            },
            oracle,
            faults_total: 0,
            faults_by_kind: BTreeMap::new(),
            broker_wedges: 0,
            gateway_starts: 1,
            gateway_crashes: Vec::new(),
            drained: true,
            time_to_drain_s: 1.0,
            gateway_max_rss_kib: 0,
            spool_high_water_records: 0,
            spool_high_water_bytes: 0,
            disk_full_method: String::new(),
            network_fault_method: String::new(),
            warnings: Vec::new(),
            pruned_partitions: Vec::new(),
            read_back_error: None,
            violations: Vec::new(),
            verdict: String::new(),
            events: Vec::new(),
            timeline: Vec::new(),
        }
    }

    fn read_back(partition: i32, offset: i64) -> TopicRecord {
        TopicRecord {
            partition,
            offset,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn partitions_read_back_from_past_offset_zero_were_pruned_by_the_cluster() {
        let records = [
            read_back(0, 0),
            read_back(0, 1),
            read_back(1, 7),
            read_back(2, 0),
        ];
        assert_eq!(pruned_partitions(&records), vec![1]);
    }

    #[test]
    fn a_run_whose_topic_could_not_be_read_back_is_inconclusive_and_claims_no_loss() {
        let verdict = Verdict {
            lost: vec!["a".into()],
            ..Verdict::default()
        };
        let mut r = report(oracle_counts(&verdict, &HashSet::new()));
        r.read_back_error = Some("reading topic chaos back timed out".into());
        r.judge();
        assert_eq!(r.verdict, "INCONCLUSIVE");
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(!r.violations[0].contains("lost"), "{:?}", r.violations);
        assert!(!r.render().contains("| lost |"), "no loss is claimed");
    }

    #[test]
    fn a_run_whose_records_the_cluster_pruned_is_inconclusive_not_passed() {
        let mut r = report(OracleCounts::default());
        r.pruned_partitions = vec![2];
        r.judge();
        assert!(!r.passed());
        assert_eq!(r.verdict, "INCONCLUSIVE");
        assert!(r.render().contains("verdict: INCONCLUSIVE"));
    }

    #[test]
    fn record_counts_add_up_acknowledgements_and_rejections_by_status() {
        let mut tally = LoadTally {
            requests: 5,
            attempted: 12,
            delivered: 6,
            spooled: 3,
            ..LoadTally::default()
        };
        tally.rejected.insert("503".into(), 2);
        tally.rejected.insert("connection".into(), 1);
        let verdict = Verdict {
            delivered: 10,
            delivered_unacknowledged: 1,
            ..Verdict::default()
        };
        let c = record_counts(&tally, &verdict);
        assert_eq!(c.acknowledged, 9);
        assert_eq!(c.rejected, 3);
        assert_eq!(c.acknowledged + c.rejected, c.attempted);
        assert_eq!(c.delivered, 10);
        assert_eq!(c.delivered_unacknowledged, 1);
    }

    #[test]
    fn records_destroyed_by_a_torn_write_are_not_counted_as_lost() {
        let verdict = Verdict {
            lost: vec!["a".into(), "b".into()],
            ..Verdict::default()
        };
        let torn: HashSet<String> = ["a".to_string()].into();
        let o = oracle_counts(&verdict, &torn);
        assert_eq!((o.lost, o.destroyed_by_torn_writes), (1, 1));
        assert_eq!(o.examples, vec!["lost b".to_string()]);
    }

    #[test]
    fn any_duplicate_or_reordering_fails_the_run() {
        let verdict = Verdict {
            duplicated: vec![("x".into(), 2)],
            reordered: vec![Reordering {
                order_key: b"k".to_vec(),
                first: "a".into(),
                second: "b".into(),
            }],
            ..Verdict::default()
        };
        let mut r = report(oracle_counts(&verdict, &HashSet::new()));
        r.judge();
        assert!(!r.passed());
        assert_eq!(r.verdict, "FAIL");
        assert_eq!(r.violations.len(), 2, "{:?}", r.violations);
        assert!(r.render().contains("violation: 1 records duplicated"));
    }

    #[test]
    fn a_clean_drained_run_passes_and_an_undrained_one_fails() {
        let mut r = report(OracleCounts::default());
        r.judge();
        assert!(r.passed(), "{:?}", r.violations);
        assert!(r.render().contains("verdict: PASS"));
        r.drained = false;
        r.judge();
        assert!(!r.passed());
    }

    #[test]
    fn acknowledgements_are_counted_in_one_second_buckets() {
        let b = acks_per_second(&[0.1, 0.9, 1.0, 2.5, 99.0], 3);
        assert_eq!(b, vec![2, 1, 2]);
    }

    #[test]
    fn the_json_report_names_every_field_the_docs_promise() {
        let mut r = report(OracleCounts::default());
        r.judge();
        let json = serde_json::to_value(&r).unwrap();
        for field in [
            "seed",
            "records",
            "oracle",
            "faults_by_kind",
            "broker_wedges",
            "time_to_drain_s",
            "gateway_max_rss_kib",
            "spool_high_water_records",
            "verdict",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["oracle"]["lost"], 0);
    }
}
