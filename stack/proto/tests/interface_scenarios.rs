//! Seeded random scenarios through the frame-level simulator (`sim::Network`): two real
//! `Interface`s, a client opening one to three concurrent connections to a listening server,
//! over links that lose, duplicate, reorder and delay frames, with random writes, reads,
//! half-closes, closes and aborts on both sides. What the connection-level scenarios of
//! `simulated_network.rs` cannot reach is in the path here: ARP, the connection table, the
//! SYN backlog and SYN cookies, TIME_WAIT records in their table and the timer wheel, and
//! client port reuse.
//!
//! Each scenario must end with both tables empty (every connection closed, every TIME_WAIT
//! record expired) and every byte received a prefix of what was sent. A failing seed is
//! replayed with capture on and written as a pcap under the test's temporary directory;
//! `SYNACK_NET_SCENARIO_SEED=n` replays one seed, `SYNACK_NET_SCENARIOS=n` sets the count.

use std::net::Ipv4Addr;
use std::time::Duration;

mod common;

use synack_proto::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig};
use synack_proto::sim::{LinkConfig, Network, Rng};
use synack_proto::tcp::{CloseReason, Endpoint, RecvError, TcpConfig};
use synack_proto::wire::EthernetAddress;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
/// Steps one scenario may take, closing included; beyond, it is livelocked, not slow.
const STEP_BUDGET: u64 = 100_000;

/// Records what the interface reports; the scenario acts between steps.
#[derive(Default)]
struct Recorder {
    accepted: Vec<ConnId>,
    closed: Vec<(ConnId, CloseReason)>,
}

impl App for Recorder {
    fn on_accept(&mut self, _iface: &mut Interface, conn: ConnId) {
        self.accepted.push(conn);
    }
    fn on_closed(&mut self, _iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        self.closed.push((conn, reason));
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn interface_config(rng: &mut Rng, mac: u8, addr: Ipv4Addr, tcp: TcpConfig) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, mac]), addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = 8;
    c.max_time_wait = 16;
    c.prefault_bytes = 0;
    c.syn_backlog = 1 + rng.below(3) as usize;
    c.syn_cookies = rng.chance(0.5);
    // At least as many ports as a scenario's connections (three).
    c.local_ports = (40_000, 40_002 + rng.below(4) as u16);
    c.time_wait_reuse = rng.chance(0.5).then_some(Duration::from_millis(1));
    c.tcp = tcp;
    c
}

/// One direction of one connection: what its writer has sent and its reader received.
#[derive(Default, Clone)]
struct Flow {
    sent: usize,
    got: Vec<u8>,
}

/// What a scenario did: bytes delivered, whether every flow completed, steps taken.
type Outcome = (usize, bool, u64);

fn scenario(seed: u64, capture: bool) -> Result<Outcome, (String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let link = LinkConfig {
        delay: Duration::from_micros(100 + rng.below(2000)),
        jitter: Duration::from_micros(rng.below(500)),
        loss: rng.below(12) as f64 / 100.0,
        duplicate: rng.below(5) as f64 / 100.0,
        reorder: rng.below(10) as f64 / 100.0,
        mtu: 1500,
        bandwidth_bps: rng.chance(0.3).then(|| 10_000_000 + rng.below(1_000_000_000)),
    };
    let tcp = TcpConfig {
        send_buffer_len: 1 << (11 + rng.below(4)),
        recv_buffer_len: 1 << (11 + rng.below(4)),
        time_wait: Duration::from_secs(1 + rng.below(4)),
        nagle: rng.chance(0.5),
        delayed_ack: rng.chance(0.5).then_some(Duration::from_millis(40)),
        timestamps: rng.chance(0.8),
        sack: rng.chance(0.8),
        window_scaling: rng.chance(0.8),
        mss: 200 + rng.below(1260) as u16,
        ..TcpConfig::default()
    };
    let client_config = interface_config(&mut rng, 0xa, CLIENT, tcp);
    let server_config = interface_config(&mut rng, 0xb, SERVER, tcp);
    let mut net = Network::new(seed, (client_config, Recorder::default()), (server_config, Recorder::default()), link);
    if capture {
        net.capture();
    }
    if rng.chance(0.5) {
        net.a.iface.learn_neighbor(SERVER, net.b.iface.config().mac);
        net.b.iface.learn_neighbor(CLIENT, net.a.iface.config().mac);
    }
    net.b.iface.listen(PORT).map_err(|e| (format!("seed {seed}: listen: {e:?}"), Vec::new()))?;

    let n = 1 + rng.below(3) as usize;
    let mut client: Vec<Option<ConnId>> = Vec::new();
    for _ in 0..n {
        client.push(net.a.iface.connect(Endpoint::new(SERVER, PORT)).ok());
    }
    let mut server: Vec<Option<ConnId>> = vec![None; n];
    let data: Vec<[Vec<u8>; 2]> = (0..n)
        .map(|i| {
            let s = seed.wrapping_mul(31).wrapping_add(i as u64);
            [pattern(rng.below(20_000) as usize, s), pattern(rng.below(20_000) as usize, !s)]
        })
        .collect();
    let mut flows: Vec<[Flow; 2]> = vec![Default::default(); n];
    let mut done: Vec<[bool; 2]> = vec![[false; 2]; n];
    let mut aborted: Vec<[bool; 2]> = vec![[false; 2]; n];
    let aborts: Vec<[bool; 2]> = (0..n).map(|_| [rng.chance(0.04), rng.chance(0.04)]).collect();
    let mut buf = vec![0u8; 4096];
    let mut steps = 0u64;
    let mut idle_turns = 0;
    let fail = |net: &Network<Recorder>, what: String| (what, net.pcap());

    loop {
        if steps >= STEP_BUDGET {
            return Err(fail(&net, format!("seed {seed}: no end after {steps} steps (virtual {:?})", net.now)));
        }
        // Match accepted connections to the client's by the client's port.
        for &conn in &net.b.app.accepted {
            let Some(tuple) = net.b.iface.tuple(conn) else { continue };
            for i in 0..n {
                let port = client[i].and_then(|c| net.a.iface.tuple(c)).map(|t| t.local.port);
                if port == Some(tuple.remote.port) && server[i].is_none() {
                    server[i] = Some(conn);
                }
            }
        }
        net.b.app.accepted.retain(|&c| !server.contains(&Some(c)));
        for i in 0..n {
            for side in 0..2 {
                let (iface, conn) =
                    if side == 0 { (&mut net.a.iface, client[i]) } else { (&mut net.b.iface, server[i]) };
                let Some(conn) = conn else { continue };
                if done[i][side] || iface.tuple(conn).is_none() {
                    continue;
                }
                let flow = &mut flows[i][side];
                let out = &data[i][side];
                if rng.chance(0.7) && flow.sent < out.len() {
                    let end = (flow.sent + 1 + rng.below(6000) as usize).min(out.len());
                    if let Ok(k) = iface.send(conn, &out[flow.sent..end]) {
                        flow.sent += k;
                    }
                }
                let inbound = &mut flows[i][1 - side];
                if rng.chance(0.6) {
                    let want = 1 + rng.below(4096) as usize;
                    if let Ok(k) = iface.recv(conn, &mut buf[..want]) {
                        inbound.got.extend_from_slice(&buf[..k]);
                    }
                }
                if aborts[i][side] && inbound.got.len() > 100 && rng.chance(0.1) {
                    iface.abort(conn);
                    done[i][side] = true;
                    aborted[i][side] = true;
                    continue;
                }
                let all_sent = flows[i][side].sent == out.len();
                if all_sent && rng.chance(0.3) {
                    iface.shutdown(conn);
                }
                if all_sent && matches!(iface.recv(conn, &mut buf[..0]), Err(RecvError::Finished)) {
                    iface.close(conn);
                    done[i][side] = true;
                }
            }
        }
        steps += 1;
        if net.step() {
            idle_turns = 0;
        } else {
            idle_turns += 1;
            if idle_turns > 50 {
                break;
            }
        }
        let all_done = (0..n).all(|i| done[i][0] && done[i][1]);
        if all_done && net.a.iface.connection_count() == 0 && net.b.iface.connection_count() == 0 {
            break;
        }
    }
    // Finish: read what is left, close the rest, and let every timer run out.
    for i in 0..n {
        for side in 0..2 {
            let (iface, conn) = if side == 0 { (&mut net.a.iface, client[i]) } else { (&mut net.b.iface, server[i]) };
            let Some(conn) = conn else { continue };
            while let Ok(k) = iface.recv(conn, &mut buf) {
                if k == 0 {
                    break;
                }
                flows[i][1 - side].got.extend_from_slice(&buf[..k]);
            }
            if !done[i][side] && iface.tuple(conn).is_some() {
                iface.close(conn);
            }
        }
    }
    // Connections the server accepted that the client never knew of (a lost final ACK, a
    // cookie) are closed too.
    for conn in std::mem::take(&mut net.b.app.accepted) {
        net.b.iface.close(conn);
    }
    let deadline = net.now + Duration::from_secs(3_000);
    while net.now <= deadline && net.step() {
        steps += 1;
        if steps >= STEP_BUDGET {
            return Err(fail(&net, format!("seed {seed}: no quiet after {steps} steps (virtual {:?})", net.now)));
        }
    }
    for (name, node) in [("client", &net.a), ("server", &net.b)] {
        let (c, tw) = (node.iface.connection_count(), node.iface.time_wait_count());
        if c != 0 || tw != 0 {
            return Err(fail(
                &net,
                format!("seed {seed}: {name} holds {c} connections and {tw} TIME_WAIT records at the end"),
            ));
        }
    }
    let mut bytes = 0;
    let mut complete = true;
    let reason = |node: &synack_proto::sim::Node<Recorder>, conn: Option<ConnId>| {
        conn.and_then(|c| node.app.closed.iter().find(|(id, _)| *id == c).map(|&(_, r)| r))
    };
    for i in 0..n {
        // No data is lost: an end whose connection closed normally (its FIN acknowledged, so
        // everything before it too), on a connection nobody aborted, delivered every byte it
        // sent; the receiving application reads until the end before it closes.
        let reasons = [reason(&net.a, client[i]), reason(&net.b, server[i])];
        if aborted[i] == [false, false] {
            for side in 0..2 {
                let (sent, got) = (data[i][side].len(), flows[i][side].got.len());
                if reasons[side] == Some(CloseReason::Normal) && got != sent {
                    return Err(fail(
                        &net,
                        format!(
                            "seed {seed}: connection {i}: side {side} closed normally ({reasons:?}) but {got} of its {sent} bytes arrived"
                        ),
                    ));
                }
            }
        }
        for side in 0..2 {
            let (sent, got) = (&data[i][side], &flows[i][side].got);
            if got.len() > sent.len() || got[..] != sent[..got.len()] {
                return Err(fail(&net, format!("seed {seed}: connection {i} side {side}: bytes are not a prefix")));
            }
            bytes += got.len();
            complete &= got.len() == sent.len();
        }
    }
    Ok((bytes, complete, steps))
}

/// Runs a seed; on failure replays it with capture on and writes the pcap.
fn run(seed: u64) -> Result<Outcome, String> {
    common::run_seed("net-scenario", seed, scenario)
}

#[test]
fn interface_scenarios_10000() {
    if let Some(seed) = std::env::var("SYNACK_NET_SCENARIO_SEED").ok().and_then(|v| v.parse().ok()) {
        let result = run(seed);
        eprintln!("seed {seed}: {result:?}");
        assert!(result.is_ok());
        return;
    }
    let n: u64 = std::env::var("SYNACK_NET_SCENARIOS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut failures = Vec::new();
    let (mut bytes, mut complete, mut most_steps) = (0usize, 0u64, 0u64);
    for seed in 0..n {
        match run(seed) {
            Ok((b, c, steps)) => {
                bytes += b;
                complete += u64::from(c);
                most_steps = most_steps.max(steps);
            }
            Err(e) => failures.push(e),
        }
    }
    eprintln!("{n} scenarios through two Interfaces: {bytes} bytes, {complete} complete, at most {most_steps} steps");
    assert!(
        failures.is_empty(),
        "{} of {n} scenarios failed:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(complete * 10 >= n * 7, "only {complete} of {n} scenarios delivered everything");
}

#[test]
fn a_failing_run_can_be_captured_as_pcap() {
    // The capture is a real pcap: header, then one record per frame with the frame's bytes.
    let link = LinkConfig::default();
    let tcp = TcpConfig::default();
    let mut rng = Rng::new(1);
    let a = interface_config(&mut rng, 0xa, CLIENT, tcp);
    let b = interface_config(&mut rng, 0xb, SERVER, tcp);
    let mut net = Network::new(1, (a, Recorder::default()), (b, Recorder::default()), link);
    net.capture();
    net.b.iface.listen(PORT).unwrap();
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    let deadline = net.now + Duration::from_secs(5);
    assert!(net.drive(deadline, |net| net.b.app.accepted.len() == 1));
    assert!(net.a.iface.tuple(conn).is_some());
    let pcap = net.pcap();
    assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes());
    // ARP request and reply, SYN, SYN-ACK, ACK: at least five records.
    let mut records = 0;
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
        records += 1;
    }
    assert_eq!(at, pcap.len(), "records tile the file");
    assert!(records >= 5, "{records} records");
}
