//! Seeded scenarios through `sim::Workers`: two or three workers of one host, routing the
//! frames that land on their queues with the runtime's own decision (`PortOwnership::route`),
//! against one peer, over links that lose, duplicate and reorder frames.
//!
//! - Workers as clients: each worker opens connections from its own port slice to the peer's
//!   echo server; the peer's replies land on a queue by flow hash, so most connections live on
//!   a worker that must be handed their segments. The workers ARP for the peer, and the reply
//!   lands on one worker only: the others hear of it through a copy.
//! - Workers as servers: the peer opens connections to the port every worker listens on; a
//!   listener's segments are never handed off, each flow stays on its queue.
//!
//! Every connection must echo its bytes exactly and close normally, and every table (the
//! connections and the TIME_WAIT records of every worker and the peer) must be empty at the
//! end. `SYNACK_WORKER_SCENARIOS=n` sets the count; a failing seed writes a pcap.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

mod common;

use synack_proto::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig};
use synack_proto::sim::{HandoffStats, LinkConfig, Rng, Workers};
use synack_proto::tcp::{CloseReason, Endpoint, RecvError, TcpConfig};
use synack_proto::wire::EthernetAddress;

const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 7;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Echoes what it reads, and closes once the peer has closed and everything is echoed.
#[derive(Default)]
struct Echo {
    peer_closed: Vec<ConnId>,
    closed: Vec<(ConnId, CloseReason)>,
}

impl Echo {
    fn pump(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
        if self.peer_closed.contains(&conn) && iface.recv_queue_len(conn) == 0 {
            iface.close(conn);
            self.peer_closed.retain(|&c| c != conn);
        }
    }
}

/// Sends its pattern on each connection, half-closes, and reads the echo to the end.
#[derive(Default)]
struct Client {
    /// By connection: (pattern, bytes sent, bytes echoed back so far).
    flows: HashMap<ConnId, (Vec<u8>, usize, Vec<u8>)>,
    closed: Vec<(ConnId, CloseReason)>,
    mismatch: Option<String>,
}

impl Client {
    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        let Some((data, sent, _)) = self.flows.get_mut(&conn) else { return };
        if *sent < data.len() {
            if let Ok(n) = iface.send(conn, &data[*sent..]) {
                *sent += n;
            }
            if *sent == data.len() {
                iface.shutdown(conn);
            }
        }
    }
}

/// The role of each node: the apps differ, the simulator wants one type.
enum Agent {
    Echo(Echo),
    Client(Client),
}

impl App for Agent {
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Agent::Client(c) = self {
            c.push(iface, conn);
        }
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        match self {
            Agent::Client(c) => c.push(iface, conn),
            Agent::Echo(e) => e.pump(iface, conn),
        }
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        match self {
            Agent::Echo(e) => e.pump(iface, conn),
            Agent::Client(c) => {
                let mut buf = [0u8; 4096];
                loop {
                    match iface.recv(conn, &mut buf) {
                        Ok(n) if n > 0 => {
                            if let Some((data, _, got)) = c.flows.get_mut(&conn) {
                                got.extend_from_slice(&buf[..n]);
                                if got.len() > data.len() || got[..] != data[..got.len()] {
                                    c.mismatch.get_or_insert(format!("{conn:?}: the echo differs"));
                                }
                            }
                        }
                        Err(RecvError::Finished) => {
                            iface.close(conn);
                            break;
                        }
                        _ => break,
                    }
                }
            }
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        match self {
            Agent::Echo(e) => {
                e.peer_closed.push(conn);
                e.pump(iface, conn);
            }
            Agent::Client(_) => {
                if iface.recv_queue_len(conn) == 0 {
                    iface.close(conn);
                }
            }
        }
    }
    fn on_closed(&mut self, _iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        match self {
            Agent::Echo(e) => e.closed.push((conn, reason)),
            Agent::Client(c) => c.closed.push((conn, reason)),
        }
    }
}

fn config(rng: &mut Rng, mac: u8, addr: Ipv4Addr) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, mac]), addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = 32;
    c.max_time_wait = 64;
    c.prefault_bytes = 0;
    c.local_ports = (40_000, 40_029);
    c.tcp = TcpConfig {
        send_buffer_len: 1 << (11 + rng.below(4)),
        recv_buffer_len: 1 << (11 + rng.below(4)),
        time_wait: Duration::from_secs(1),
        sack: rng.chance(0.7),
        timestamps: rng.chance(0.7),
        mss: 300 + rng.below(1160) as u16,
        ..TcpConfig::default()
    };
    c
}

/// What a scenario did.
struct Outcome {
    workers: usize,
    clients_are_workers: bool,
    connections: usize,
    bytes: usize,
    handoff: HandoffStats,
}

fn scenario(seed: u64, capture: bool) -> Result<Outcome, (String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let n = 2 + rng.below(2) as usize;
    let clients_are_workers = rng.chance(0.6);
    let link = LinkConfig {
        delay: Duration::from_micros(50 + rng.below(1000)),
        jitter: Duration::from_micros(rng.below(300)),
        loss: rng.below(8) as f64 / 100.0,
        duplicate: rng.below(3) as f64 / 100.0,
        reorder: rng.below(8) as f64 / 100.0,
        mtu: 1500,
        bandwidth_bps: None,
    };
    let host = config(&mut rng, 0xa, HOST);
    let peer = config(&mut rng, 0xb, PEER);
    let make = |client: bool| if client { Agent::Client(Client::default()) } else { Agent::Echo(Echo::default()) };
    let mut sim =
        Workers::new(seed, n, host, |_| make(clients_are_workers), (peer, make(!clients_are_workers)), link, 64)
            .ok_or_else(|| (format!("seed {seed}: the port range does not split over {n} workers"), Vec::new()))?;
    if capture {
        sim.capture();
    }
    let per = 1 + rng.below(3) as usize;
    let mut expected = 0;
    if clients_are_workers {
        sim.peer.iface.listen(PORT).map_err(|e| (format!("listen: {e:?}"), Vec::new()))?;
        for w in 0..n {
            for i in 0..per {
                let conn = sim.workers[w]
                    .iface
                    .connect(Endpoint::new(PEER, PORT))
                    .map_err(|e| (format!("seed {seed}: connect: {e:?}"), Vec::new()))?;
                let data = pattern(rng.below(30_000) as usize, seed ^ (w * 16 + i) as u64);
                if let Agent::Client(c) = &mut sim.workers[w].app {
                    c.flows.insert(conn, (data, 0, Vec::new()));
                }
                expected += 1;
            }
        }
    } else {
        for w in 0..n {
            sim.workers[w].iface.listen(PORT).map_err(|e| (format!("listen: {e:?}"), Vec::new()))?;
        }
        for i in 0..per * n {
            let conn = sim
                .peer
                .iface
                .connect(Endpoint::new(HOST, PORT))
                .map_err(|e| (format!("seed {seed}: connect: {e:?}"), Vec::new()))?;
            let data = pattern(rng.below(30_000) as usize, seed ^ i as u64);
            if let Agent::Client(c) = &mut sim.peer.app {
                c.flows.insert(conn, (data, 0, Vec::new()));
            }
            expected += 1;
        }
    }
    let deadline = sim.now + Duration::from_secs(600);
    let mut steps = 0u64;
    while sim.now <= deadline && sim.step() {
        steps += 1;
        if steps > 200_000 {
            return Err((format!("seed {seed}: no quiet after {steps} steps (virtual {:?})", sim.now), sim.pcap()));
        }
    }
    let fail = |sim: &Workers<Agent>, what: String| Err((format!("seed {seed}: {what}"), sim.pcap()));
    let nodes = sim.workers.iter().map(|w| ("worker", w)).chain(std::iter::once(("peer", &sim.peer)));
    for (name, node) in nodes {
        let (c, tw) = (node.iface.connection_count(), node.iface.time_wait_count());
        if c != 0 || tw != 0 {
            return fail(&sim, format!("a {name} holds {c} connections and {tw} TIME_WAIT records at the end"));
        }
    }
    let clients: Vec<&Client> = sim
        .workers
        .iter()
        .map(|w| &w.app)
        .chain(std::iter::once(&sim.peer.app))
        .filter_map(|a| if let Agent::Client(c) = a { Some(c) } else { None })
        .collect();
    let mut bytes = 0;
    let mut connections = 0;
    for c in &clients {
        if let Some(m) = &c.mismatch {
            return fail(&sim, m.clone());
        }
        for (conn, (data, sent, got)) in &c.flows {
            let reason = c.closed.iter().find(|(id, _)| id == conn).map(|&(_, r)| r);
            if reason != Some(CloseReason::Normal) || *sent != data.len() || got != data {
                return fail(
                    &sim,
                    format!("{conn:?}: closed {reason:?}, sent {sent} of {}, {} echoed", data.len(), got.len()),
                );
            }
            bytes += got.len();
            connections += 1;
        }
    }
    if connections != expected {
        return fail(&sim, format!("{connections} of {expected} connections accounted for"));
    }
    Ok(Outcome { workers: n, clients_are_workers, connections, bytes, handoff: sim.handoff })
}

/// Runs a seed; on failure replays it with capture on and writes the pcap.
fn run(seed: u64) -> Result<Outcome, String> {
    common::run_seed("workers-scenario", seed, scenario)
}

#[test]
fn workers_hand_off_and_serve_over_lossy_links() {
    let count: u64 = std::env::var("SYNACK_WORKER_SCENARIOS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let (mut connections, mut bytes, mut as_clients, mut as_servers) = (0, 0, 0, 0);
    let mut handoff = HandoffStats::default();
    let mut three = 0;
    for seed in 0..count {
        match run(seed) {
            Ok(o) => {
                connections += o.connections;
                bytes += o.bytes;
                handoff.handed_off += o.handoff.handed_off;
                handoff.copies += o.handoff.copies;
                handoff.dropped_full += o.handoff.dropped_full;
                three += usize::from(o.workers == 3);
                if o.clients_are_workers {
                    as_clients += 1;
                } else {
                    as_servers += 1;
                    // A listener's segments stay on their queue.
                    assert_eq!(o.handoff.handed_off, 0, "seed {seed}: a server worker handed off a segment");
                }
            }
            Err(e) => failures.push(e),
        }
    }
    println!(
        "{count} scenarios ({as_clients} with client workers, {as_servers} with server workers, {three} with 3 workers) \
         in {:?}: {connections} connections, {bytes} bytes echoed, {handoff:?}",
        started.elapsed()
    );
    assert!(failures.is_empty(), "{} failing scenario(s):\n{}", failures.len(), failures.join("\n"));
    assert!(as_clients > 0 && as_servers > 0 && three > 0);
    assert!(handoff.handed_off > 0, "client workers' segments were handed to their owners");
    assert!(handoff.copies > 0, "ARP replies were copied to the workers that did not receive them");
}
