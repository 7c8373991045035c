//! Packets per connection at the server, counted rather than assumed: for `synack serve`
//! from its counters printed at stop (every frame its AF_XDP sockets received and sent, and
//! the connections it accepted), for the kernel from the server namespace's `/proc/net/snmp`
//! (TCP segments in and out, passive opens) before and after the load.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::net::Netns;

/// Frames a server received and sent, and the connections it accepted, over one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerPackets {
    /// Frames (or TCP segments, for the kernel) received.
    pub rx: u64,
    /// Frames (or TCP segments) sent.
    pub tx: u64,
    /// Connections accepted.
    pub connections: u64,
}

impl ServerPackets {
    /// Packets in and out per connection; `None` without connections.
    pub fn per_connection(&self) -> Option<f64> {
        (self.connections > 0).then(|| (self.rx + self.tx) as f64 / self.connections as f64)
    }
}

/// The number after `key` (as `key: 12,` or `key=12`) in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Reads what `synack serve` printed at stop: `accepted=N` on the `synack stopped; counters:`
/// line, and each queue's socket counters (`socket Counters { rx_frames: N, ... tx_frames:
/// N, ...`), which count every frame, replies written in place included.
pub fn parse_synack_stop(output: &str) -> Result<ServerPackets> {
    let counters = output
        .lines()
        .find_map(|l| l.split_once("synack stopped; counters:").map(|(_, rest)| rest))
        .context("synack printed no `synack stopped; counters:` line")?;
    // A counter at zero is not printed.
    let connections = number_after(counters, " accepted=").unwrap_or(0);
    let mut packets = ServerPackets { connections, ..ServerPackets::default() };
    let mut queues = 0;
    for socket in output.lines().filter_map(|l| l.split_once("socket Counters {").map(|(_, rest)| rest)) {
        packets.rx += number_after(socket, "rx_frames: ").context("socket counters without rx_frames")?;
        packets.tx += number_after(socket, " tx_frames: ").context("socket counters without tx_frames")?;
        queues += 1;
    }
    if queues == 0 {
        bail!("synack printed no per-queue socket counters");
    }
    Ok(packets)
}

/// The `Tcp:` counters of `/proc/net/snmp` that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KernelTcp {
    /// `InSegs`.
    pub in_segs: u64,
    /// `OutSegs`.
    pub out_segs: u64,
    /// `PassiveOpens`.
    pub passive_opens: u64,
}

impl KernelTcp {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &KernelTcp) -> ServerPackets {
        ServerPackets {
            rx: self.in_segs.saturating_sub(before.in_segs),
            tx: self.out_segs.saturating_sub(before.out_segs),
            connections: self.passive_opens.saturating_sub(before.passive_opens),
        }
    }
}

/// Reads the `Tcp:` header and value lines of `/proc/net/snmp`.
pub fn parse_snmp(text: &str) -> Result<KernelTcp> {
    let mut tcp = text.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next().context("no Tcp: header")?, tcp.next().context("no Tcp: values")?);
    let pairs: Vec<(&str, &str)> = names.split_whitespace().zip(values.split_whitespace()).collect();
    let get = |name: &str| -> Result<u64> {
        let (_, v) = pairs.iter().find(|(n, _)| *n == name).with_context(|| format!("no Tcp {name}"))?;
        v.parse().with_context(|| format!("Tcp {name} is not a number: {v}"))
    };
    Ok(KernelTcp { in_segs: get("InSegs")?, out_segs: get("OutSegs")?, passive_opens: get("PassiveOpens")? })
}

/// The kernel's TCP counters in `netns`.
pub fn kernel_tcp(netns: &Netns) -> Result<KernelTcp> {
    parse_snmp(&netns.exec("cat", &["/proc/net/snmp"])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synack_stop_counters_give_packets_per_connection() {
        let p = parse_synack_stop(include_str!("testdata/synack_serve_stop.txt")).unwrap();
        assert_eq!(p, ServerPackets { rx: 673_812, tx: 673_812, connections: 224_604 });
        assert!((p.per_connection().unwrap() - 6.0).abs() < 0.01, "{:?}", p.per_connection());
        assert!(parse_synack_stop("synack ready\n").is_err(), "no stop line");
        assert!(parse_synack_stop("synack stopped; counters: accepted=5\n").is_err(), "no queue line");
        let none = parse_synack_stop(
            "synack stopped; counters: (all zero)\n  queue 0: socket Counters { rx_frames: 0, tx_frames: 0 }\n",
        )
        .unwrap();
        assert_eq!(none.per_connection(), None);
    }

    #[test]
    fn proc_net_snmp_gives_the_kernel_tcp_counters() {
        let before = parse_snmp(include_str!("testdata/proc_net_snmp.txt")).unwrap();
        assert_eq!(before, KernelTcp { in_segs: 10_137, out_segs: 6_034, passive_opens: 4 });
        let after = KernelTcp { in_segs: 10_137 + 700, out_segs: 6_034 + 600, passive_opens: 104 };
        let p = after.since(&before);
        assert_eq!(p, ServerPackets { rx: 700, tx: 600, connections: 100 });
        assert_eq!(p.per_connection(), Some(13.0));
        assert!(parse_snmp("Udp: InDatagrams\nUdp: 1\n").is_err());
    }
}
