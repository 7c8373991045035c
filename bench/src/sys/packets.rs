//! Packets per connection at the server, counted rather than assumed: for `synack serve`
//! from its counters printed at stop (`--json`) (every frame its AF_XDP sockets received and sent, and
//! the connections it accepted), for the kernel from the server namespace's `/proc/net/snmp`
//! (TCP segments in and out, passive opens) before and after the load.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use synack_report::Line;

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

/// Reads what `synack serve --json` printed at stop (its `stopped` line): the connections it
/// accepted, and the frames its AF_XDP sockets received and sent, summed over the queues,
/// which count every frame, replies written in place included.
pub fn parse_synack_stop(output: &str) -> Result<ServerPackets> {
    let lines = synack_report::parse_lines(output).map_err(anyhow::Error::msg)?;
    let stopped = lines
        .into_iter()
        .find_map(|line| match line {
            Line::Stopped(s) => Some(s),
            _ => None,
        })
        .context("synack printed no `stopped` line (run it with --json)")?;
    if stopped.queues.is_empty() {
        bail!("synack printed no per-queue socket counters");
    }
    Ok(ServerPackets {
        rx: stopped.queues.iter().map(|q| q.socket.rx_frames).sum(),
        tx: stopped.queues.iter().map(|q| q.socket.tx_frames).sum(),
        connections: stopped.counter("accepted"),
    })
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
    use synack_report::{Queue, Stopped};

    #[test]
    fn synack_stop_counters_give_packets_per_connection() {
        let p = parse_synack_stop(include_str!("testdata/synack_serve.jsonl")).unwrap();
        assert_eq!(p, ServerPackets { rx: 488_568, tx: 488_568, connections: 162_856 });
        assert!((p.per_connection().unwrap() - 6.0).abs() < 0.01, "{:?}", p.per_connection());
        assert!(parse_synack_stop("synack ready\n").is_err(), "no stop line");
        let no_queue = Line::Stopped(Stopped::default()).to_json();
        assert!(parse_synack_stop(&no_queue).is_err(), "no queue");
        let none = Line::Stopped(Stopped { queues: vec![Queue::default()], ..Stopped::default() }).to_json();
        assert_eq!(parse_synack_stop(&none).unwrap().per_connection(), None);
        let text = "synack stopped; counters: accepted=5\n  queue 0: socket Counters { rx_frames: 1, tx_frames: 1 }\n";
        assert!(parse_synack_stop(text).is_err(), "the Debug text is not read");
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
