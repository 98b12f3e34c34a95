//! The kernel-level network fault: an nftables DROP inside the run's own network namespace.
//!
//! The fault proxy's blackhole holds bytes in user space; a dropped packet is what a pulled
//! cable or a silent firewall does: SYNs and retransmissions vanish, nothing is refused, and
//! the gateway finds out only through its own timeouts. Rules like that must never touch the
//! machine's real network, so as root `spillway chaos` runs itself again inside a fresh network
//! namespace (`unshare --net`, loopback brought up with `ip`). Everything of the run — broker or
//! mock cluster, fault proxies, gateway, load — lives on that private loopback, and the rules
//! and the namespace vanish with the run's last process, even after a kill -9.
//!
//! The rule drops every packet to or from the ports the gateway reaches Kafka on (the fault
//! proxies'); the harness's own clients talk to the broker directly and are not affected.
//! Without root, `unshare`, `ip` or `nft`, the run stays where it is and the kind is left out
//! (the report says which method ran).

use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

/// Set in the child that runs inside the namespace.
const INSIDE: &str = "SPILLWAY_CHAOS_NETNS";
/// The nftables table the fault adds and deletes.
const TABLE: &str = "spillway_chaos";

fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs inside the run's private network namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// As root with the tools present and not inside yet: runs this same command again inside a
/// fresh network namespace, waits for it and returns its exit code. `None`: carry on here.
pub fn run_inside_namespace() -> Option<anyhow::Result<ExitCode>> {
    if inside() || !super::disk::running_as_root() {
        return None;
    }
    if !works("unshare", &["--net", "true"])
        || !works("nft", &["--version"])
        || !works("ip", &["-V"])
    {
        eprintln!(
            "note: running as root, but `unshare --net`, `nft` or `ip` is missing: the \
             nftables network fault is left out (scripts/setup installs them)"
        );
        return None;
    }
    Some(reexec())
}

fn reexec() -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding this executable")?;
    println!("spillway chaos: running in a private network namespace (nftables faults stay in it)");
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .status()
        .context("starting `unshare --net`")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

/// Inside the namespace: brings the loopback up (a new namespace starts with it down).
pub fn bring_loopback_up() -> anyhow::Result<()> {
    let ok = works("ip", &["link", "set", "lo", "up"]);
    anyhow::ensure!(
        ok,
        "`ip link set lo up` failed in the run's network namespace"
    );
    Ok(())
}

/// The DROP rule for the ports the gateway reaches Kafka on.
#[derive(Debug)]
pub struct NetDrop {
    ports: Vec<u16>,
    on: bool,
}

impl NetDrop {
    /// Available only inside the run's namespace.
    pub fn new(ports: Vec<u16>) -> Option<Self> {
        (inside() && !ports.is_empty()).then_some(Self { ports, on: false })
    }

    /// The nftables script that drops both directions of every connection to `ports`.
    fn script(ports: &[u16]) -> String {
        let set = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "table inet {TABLE} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    tcp dport {{ {set} }} drop\n    tcp sport {{ {set} }} drop\n  }}\n}}\n"
        )
    }

    /// Adds (`true`) or deletes (`false`) the rule.
    pub fn set(&mut self, on: bool) -> anyhow::Result<()> {
        if on == self.on {
            return Ok(());
        }
        let status = if on {
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .context("running nft")?;
            {
                use std::io::Write as _;
                let mut stdin = child.stdin.take().context("nft's stdin")?;
                stdin.write_all(Self::script(&self.ports).as_bytes())?;
            }
            child.wait()?
        } else {
            Command::new("nft")
                .args(["delete", "table", "inet", TABLE])
                .status()
                .context("running nft")?
        };
        anyhow::ensure!(status.success(), "nft exited with {status}");
        self.on = on;
        Ok(())
    }
}

impl Drop for NetDrop {
    fn drop(&mut self) {
        let _ = self.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_drops_both_directions_of_every_proxied_port() {
        let script = NetDrop::script(&[9092, 9093]);
        assert!(script.contains("tcp dport { 9092, 9093 } drop"), "{script}");
        assert!(script.contains("tcp sport { 9092, 9093 } drop"), "{script}");
        assert!(script.contains("hook output"), "{script}");
    }

    #[test]
    fn outside_the_runs_namespace_there_is_no_rule_to_set() {
        if !inside() {
            assert!(NetDrop::new(vec![9092]).is_none());
        }
    }
}
