//! Injecting faults: the harness that owns the cluster, the gateway process and the spool's
//! disk, and runs one planned fault at a time, from start to heal.
//!
//! Composite faults make an outage first so the spool holds records when the interesting thing
//! happens: on Tansu the outage is the proxy blackholing or the broker killed (the plan's `pick`
//! chooses), on the mock cluster every broker blackholed.
//!
//! Between faults the harness checks two things: that the gateway did not exit on its own (that
//! is a bug of ours, recorded and reported, and the gateway is started again), and that Tansu
//! did not wedge on its known epoch-bump defect (then the broker is restarted and the wedge is
//! counted as the broker's, never as ours).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::cluster::Cluster;
use super::disk::SpoolDisk;
use super::netns::NetDrop;
use super::process::{Gateway, wait_healthy};
use super::schedule::{FaultKind, PlannedFault};
use super::torn::{Torn, tear_tail};

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    pub index: usize,
    pub kind: FaultKind,
    /// Seconds since the start of the run.
    pub start_s: f64,
    pub end_s: f64,
    pub note: String,
}

/// Owns everything faults act on.
#[derive(Debug)]
pub struct Harness {
    pub cluster: Cluster,
    pub gateway: Gateway,
    pub disk: SpoolDisk,
    pub topic: String,
    pub partitions: i32,
    pub base: String,
    pub client: reqwest::Client,
    pub rt: tokio::runtime::Handle,
    pub started: Instant,
    /// The gateway's pid for the memory sampler (0 while down).
    pub pid: Arc<AtomicU32>,
    pub events: Vec<FaultEvent>,
    /// Moments (seconds) Tansu was found wedged and restarted.
    pub wedges: Vec<f64>,
    pub torn: Vec<Torn>,
    /// Unexpected exits of the gateway: our bug, always reported.
    pub gateway_crashes: Vec<String>,
    /// The nftables DROP (inside the run's network namespace only).
    pub net_drop: Option<NetDrop>,
}

impl Harness {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Starts the gateway and waits until it answers.
    pub fn start_gateway(&mut self) -> anyhow::Result<()> {
        self.gateway.start()?;
        self.pid
            .store(self.gateway.pid().unwrap_or(0), Ordering::Relaxed);
        let healthy = self.rt.block_on(wait_healthy(
            &self.client,
            &self.base,
            Duration::from_secs(60),
        ));
        if let Err(e) = healthy {
            if let Some(status) = self.gateway.exited() {
                self.pid.store(0, Ordering::Relaxed);
                return Err(e).context(format!(
                    "the gateway exited with {status} while starting; see {}",
                    self.gateway.log_path().display()
                ));
            }
            return Err(e);
        }
        Ok(())
    }

    pub fn kill_gateway(&mut self) {
        self.pid.store(0, Ordering::Relaxed);
        self.gateway.kill9();
    }

    /// The spool's record count from `/status`.
    pub fn spool_records(&self) -> Option<u64> {
        self.rt.block_on(spool_records(&self.client, &self.base))
    }

    /// Start of an outage: the blackhole, or (Tansu, odd `pick`) the broker killed.
    fn outage_start(&mut self, pick: u64) -> anyhow::Result<&'static str> {
        if self.cluster.is_tansu() && pick & 1 == 1 {
            self.cluster.kill_broker()?;
            Ok("broker killed")
        } else {
            self.cluster.blackhole(true)?;
            Ok("blackhole")
        }
    }

    fn outage_end(&mut self) -> anyhow::Result<()> {
        self.cluster.heal()
    }

    /// Runs one fault from start to heal, and records it.
    pub fn inject(&mut self, fault: &PlannedFault) -> anyhow::Result<()> {
        let start_s = self.now();
        let hold = fault.hold;
        let note = match fault.kind {
            FaultKind::BrokerKill => {
                self.cluster.kill_broker()?;
                Cluster::hold(hold);
                self.cluster.restart_broker()?;
                format!("down {:.1}s", hold.as_secs_f64())
            }
            FaultKind::BrokerPause => {
                self.cluster.pause_broker(true)?;
                Cluster::hold(hold);
                self.cluster.pause_broker(false)?;
                format!("stopped {:.1}s", hold.as_secs_f64())
            }
            FaultKind::Blackhole => {
                self.cluster.blackhole(true)?;
                Cluster::hold(hold);
                self.cluster.blackhole(false)?;
                format!("{:.1}s", hold.as_secs_f64())
            }
            FaultKind::NetDrop => {
                let drop = self
                    .net_drop
                    .as_mut()
                    .context("net-drop needs the run's network namespace (root, nft, ip)")?;
                drop.set(true)?;
                Cluster::hold(hold);
                drop.set(false)?;
                format!("{:.1}s", hold.as_secs_f64())
            }
            FaultKind::LeaderUnreachable => {
                let broker = (fault.pick % 3) as i32 + 1;
                self.cluster.broker_unreachable(broker, true)?;
                Cluster::hold(hold);
                self.cluster.broker_unreachable(broker, false)?;
                format!(
                    "broker {broker} unreachable, listed, {:.1}s",
                    hold.as_secs_f64()
                )
            }
            FaultKind::LeaderMove => {
                let partition = (fault.pick % self.partitions as u64) as i32;
                let to = ((fault.pick >> 16) % 3) as i32 + 1;
                self.cluster.move_leader(&self.topic, partition, to)?;
                Cluster::hold(hold / 3);
                format!("partition {partition} led by broker {to}")
            }
            FaultKind::GatewayKill => {
                self.kill_gateway();
                Cluster::hold(fault.down);
                self.start_gateway()?;
                "during normal flow".to_string()
            }
            FaultKind::GatewayKillOutage => {
                let how = self.outage_start(fault.pick)?;
                Cluster::hold(hold / 2);
                let spooled = self.spool_records().unwrap_or(0);
                self.kill_gateway();
                Cluster::hold(fault.down);
                self.start_gateway()?;
                Cluster::hold(hold / 2);
                self.outage_end()?;
                format!("outage by {how}; {spooled} records in the spool at the kill")
            }
            FaultKind::GatewayKillDrain => {
                let how = self.outage_start(fault.pick)?;
                Cluster::hold(hold);
                self.outage_end()?;
                let when = self.wait_drain_started(Duration::from_secs(20));
                self.kill_gateway();
                Cluster::hold(fault.down);
                self.start_gateway()?;
                format!("outage by {how}; {when}")
            }
            FaultKind::DiskFull => {
                let how = self.outage_start(fault.pick)?;
                let filled = self.disk_full(true)?;
                Cluster::hold(hold);
                self.disk_full(false)?;
                self.outage_end()?;
                format!("outage by {how}; {filled}")
            }
            FaultKind::TornWrite => {
                let how = self.outage_start(fault.pick)?;
                Cluster::hold(hold);
                self.kill_gateway();
                let torn = tear_tail(&self.disk.spool_dir(), fault.pick)
                    .context("tearing the spool's tail")?;
                let what = match &torn {
                    Some(t) => format!(
                        "stream {} seq {} cut by {} bytes (record {})",
                        t.stream,
                        t.seq,
                        t.cut,
                        t.id.as_deref().unwrap_or("?")
                    ),
                    None => "no unacknowledged record to tear".to_string(),
                };
                self.torn.extend(torn);
                Cluster::hold(fault.down);
                self.start_gateway()?;
                self.outage_end()?;
                format!("outage by {how}; {what}")
            }
        };
        let event = FaultEvent {
            index: fault.index,
            kind: fault.kind,
            start_s,
            end_s: self.now(),
            note,
        };
        println!(
            "{:>7.1}s  fault {:>3} {:<20} {:>5.1}s  {}",
            event.start_s,
            event.index,
            event.kind.name(),
            event.end_s - event.start_s,
            event.note
        );
        self.events.push(event);
        Ok(())
    }

    /// After an outage healed: waits until the spool is seen shrinking (the drain is under way)
    /// and says what the kill will interrupt.
    fn wait_drain_started(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut peak = 0u64;
        while Instant::now() < deadline {
            if let Some(n) = self.spool_records() {
                if n > 0 && n < peak {
                    return format!("killed mid-drain, {n} of {peak} records left");
                }
                if n == 0 && peak > 0 {
                    return format!("drain of {peak} records finished before the kill");
                }
                if n == 0 && peak == 0 {
                    return "nothing spooled to drain".to_string();
                }
                peak = peak.max(n);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("drain not seen within {timeout:?} ({peak} records)")
    }

    /// Disk full on (`true`) or off. Returns a note for the report.
    fn disk_full(&mut self, on: bool) -> anyhow::Result<String> {
        if self.disk.is_tmpfs() {
            if on {
                let bytes = self.disk.fill().context("filling the spool's tmpfs")?;
                return Ok(format!("tmpfs filled ({} MiB ballast)", bytes >> 20));
            }
            self.disk.free().context("removing the ballast")?;
            return Ok(String::new());
        }
        // Capacity-limit fallback: restart the gateway with a spool just above its usage.
        let env = if on {
            let used = self
                .rt
                .block_on(spool_used(&self.client, &self.base))
                .unwrap_or(0);
            vec![(
                "SPILLWAY_LIBRARY__SPOOL__CAPACITY_BYTES".to_string(),
                (used + (256 << 10)).to_string(),
            )]
        } else {
            Vec::new()
        };
        self.kill_gateway();
        self.gateway.set_env(env);
        self.start_gateway()?;
        Ok("capacity limit lowered (gateway restarted)".to_string())
    }

    /// Between faults: restarts a gateway that exited on its own (recording it) and a wedged
    /// Tansu (counting the wedge).
    pub fn check_health(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.gateway.exited() {
            let what = format!(
                "{:.1}s: the gateway exited on its own ({status}); see {}",
                self.now(),
                self.gateway.log_path().display()
            );
            eprintln!("!! {what}");
            self.gateway_crashes.push(what);
            self.start_gateway()?;
        }
        if self.cluster.wedged() {
            let at = self.now();
            println!(
                "{at:>7.1}s  Tansu wedged (its known epoch-bump defect, not ours): restarting the broker"
            );
            self.wedges.push(at);
            self.cluster.restart_broker()?;
        }
        Ok(())
    }

    /// Restarts Tansu if it stopped answering (its silent hang, a broker defect); counted with
    /// the wedges. Returns whether it did.
    pub fn restart_if_hung(&mut self) -> anyhow::Result<bool> {
        if !self.cluster.hung() {
            return Ok(false);
        }
        let at = self.now();
        println!("{at:>7.1}s  Tansu stopped answering (a broker defect, not ours): restarting it");
        self.wedges.push(at);
        self.cluster.restart_broker()?;
        Ok(true)
    }

    /// Ends every fault: proxies pass, the broker runs, the disk has room, the gateway runs
    /// with its normal configuration.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        self.cluster.heal()?;
        if let Some(drop) = self.net_drop.as_mut() {
            drop.set(false)?;
        }
        if self.disk.is_tmpfs() {
            self.disk.free()?;
        }
        self.check_health()?;
        if self.gateway.pid().is_none() {
            self.gateway.set_env(Vec::new());
            self.start_gateway()?;
        }
        Ok(())
    }
}

/// `engine.spool.records` of `GET /status`.
pub async fn spool_records(client: &reqwest::Client, base: &str) -> Option<u64> {
    status(client, base).await?["engine"]["spool"]["records"].as_u64()
}

async fn spool_used(client: &reqwest::Client, base: &str) -> Option<u64> {
    status(client, base).await?["engine"]["spool"]["used_bytes"].as_u64()
}

/// `GET /status` as JSON.
pub async fn status(client: &reqwest::Client, base: &str) -> Option<Value> {
    client
        .get(format!("{base}/status"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}
