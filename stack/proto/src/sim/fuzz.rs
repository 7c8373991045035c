//! Stateful fuzz drivers: byte strings decoded into sequences of operations on real endpoints
//! (two [`Interface`]s joined by a lossy link, or two [`Connection`]s back to back), with
//! invariants checked after every step. The cargo-fuzz targets in `stack/proto/fuzz/` call
//! these; `stack/proto/tests/fuzz_corpus.rs` replays the committed seeds on the stable toolchain,
//! so CI runs every input that once found something.
//!
//! The decoding is structure-aware: a mutated byte changes one operation (deliver, drop,
//! duplicate, reorder, advance time, an application call, or a segment crafted from a real
//! one with a field changed and its checksums made valid again), so the fuzzer explores
//! states rather than checksum failures.

use core::time::Duration;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig, RxAction, VecSink};
use crate::tcp::{Endpoint, IsnGenerator, TcpConfig};
use crate::time::Instant;
use crate::wire::{
    emit_header, ip_protocol, ChecksumMode, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Ipv4Packet,
    Ipv4Repr, TcpFlags, TcpPacket, TcpRepr,
};

const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb]);
const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
const MAX_CONNECTIONS: usize = 16;
/// Most frames a link holds; beyond, the oldest is dropped (a bounded queue, like a NIC's).
const LINK_CAPACITY: usize = 256;
/// Most operations one input runs (inputs are bounded in work, not only in length).
const MAX_OPS: usize = 4_096;

/// Reads the input a byte at a time; an exhausted input reads as zeros, so every input is a
/// complete program.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The application on each side: keeps its connections' handles, reads what arrives unless
/// told to hold back (so full receive windows are explored), closes after the peer does.
#[derive(Default)]
struct FuzzApp {
    conns: Vec<ConnId>,
    hold_reads: bool,
    scratch: Vec<u8>,
    closed: u64,
    /// Handles the application has closed while quiescing.
    closing: Vec<ConnId>,
}

impl FuzzApp {
    fn new() -> FuzzApp {
        FuzzApp { scratch: vec![0; 4096], ..FuzzApp::default() }
    }
    fn pick(&self, byte: u8) -> Option<ConnId> {
        (!self.conns.is_empty()).then(|| self.conns[usize::from(byte) % self.conns.len()])
    }
}

impl App for FuzzApp {
    fn on_accept(&mut self, _iface: &mut Interface, conn: ConnId) {
        self.conns.push(conn);
    }
    fn on_connected(&mut self, _iface: &mut Interface, conn: ConnId) {
        if !self.conns.contains(&conn) {
            self.conns.push(conn);
        }
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        if !self.hold_reads {
            while matches!(iface.recv(conn, &mut self.scratch), Ok(n) if n > 0) {}
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        while matches!(iface.recv(conn, &mut self.scratch), Ok(n) if n > 0) {}
        iface.close(conn);
    }
    fn on_closed(&mut self, _iface: &mut Interface, conn: ConnId, _reason: crate::tcp::CloseReason) {
        self.conns.retain(|&c| c != conn);
        self.closed += 1;
    }
}

fn interface_config(mac: EthernetAddress, addr: Ipv4Addr, selector: u8) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(mac, addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = MAX_CONNECTIONS;
    c.max_time_wait = 32;
    c.syn_backlog = 4;
    c.prefault_bytes = 0;
    c.syn_cookies = selector & 1 == 0;
    c.time_wait_reuse = (selector & 2 == 0).then_some(Duration::from_millis(1));
    c.local_ports = (40_000, 40_063);
    c.tcp = TcpConfig {
        send_buffer_len: 4096,
        recv_buffer_len: 4096,
        time_wait: Duration::from_secs(2),
        timestamps: selector & 4 == 0,
        sack: selector & 8 == 0,
        window_scaling: selector & 16 == 0,
        ..TcpConfig::default()
    };
    c
}

/// One side of the pair.
struct Side {
    iface: Interface,
    app: FuzzApp,
}

/// Two interfaces, A listening on port 80 and B opening connections to it, joined by two
/// queues of frames that the input delivers, drops, duplicates, reorders and forges.
pub struct InterfacePair {
    a: Side,
    b: Side,
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
    now: Instant,
    sink: VecSink,
    frame: Vec<u8>,
}

impl InterfacePair {
    fn new(selector: u8) -> InterfacePair {
        let mut a = Interface::new(interface_config(MAC_A, ADDR_A, selector), IsnGenerator::with_key([1, 2]));
        let mut b = Interface::new(interface_config(MAC_B, ADDR_B, selector >> 5), IsnGenerator::with_key([3, 4]));
        // Either side may have to resolve the other by ARP first.
        if selector & 0x20 == 0 {
            a.learn_neighbor(ADDR_B, MAC_B);
        }
        if selector & 0x40 == 0 {
            b.learn_neighbor(ADDR_A, MAC_A);
        }
        let _ = a.listen(PORT);
        InterfacePair {
            a: Side { iface: a, app: FuzzApp::new() },
            b: Side { iface: b, app: FuzzApp::new() },
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            now: Instant::from_millis(1_000),
            sink: VecSink::new(),
            frame: vec![0; 2048],
        }
    }

    fn push(queue: &mut VecDeque<Vec<u8>>, frame: Vec<u8>) {
        if queue.len() >= LINK_CAPACITY {
            queue.pop_front();
        }
        queue.push_back(frame);
    }

    /// Polls both sides and moves what they send onto the links.
    fn poll(&mut self) {
        for to_a in [true, false] {
            let side = if to_a { &mut self.b } else { &mut self.a };
            side.iface.poll(self.now, &mut side.app, &mut self.sink);
            let queue = if to_a { &mut self.to_a } else { &mut self.to_b };
            for frame in self.sink.frames.drain(..) {
                Self::push(queue, frame);
            }
        }
        self.check();
    }

    /// Delivers one frame to A (`to_a`) or B; an in-place reply goes back on the other link.
    fn deliver(&mut self, to_a: bool, frame: &[u8]) {
        let len = frame.len().min(self.frame.len());
        self.frame[..len].copy_from_slice(&frame[..len]);
        let side = if to_a { &mut self.a } else { &mut self.b };
        if let RxAction::Transmit(n) = side.iface.receive(self.now, &mut self.frame, len) {
            let reply = self.frame[..n.min(self.frame.len())].to_vec();
            Self::push(if to_a { &mut self.to_b } else { &mut self.to_a }, reply);
        }
    }

    fn check(&self) {
        for side in [&self.a, &self.b] {
            assert!(side.iface.connection_count() <= MAX_CONNECTIONS, "connection table over its bound");
            assert!(side.app.conns.len() <= MAX_CONNECTIONS, "the app holds more handles than connections exist");
            for &conn in &side.app.conns {
                // A handle the app still holds was not reported closed: it must be live.
                assert!(side.iface.tuple(conn).is_some(), "a live handle lost its connection");
            }
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let to_a = op & 0x80 != 0;
        match op & 0x0f {
            0 => {
                let port = if op & 0x10 != 0 { PORT + 1 } else { PORT };
                if let Ok(conn) = self.b.iface.connect(Endpoint::new(ADDR_A, port)) {
                    self.b.app.conns.push(conn);
                }
            }
            1 => {
                // Up to ~65 s, quadratic so that short steps are common.
                let n = u64::from(input.byte());
                self.now += Duration::from_micros(n * n * 1_000);
            }
            2..=4 => {
                let queue = if to_a { &mut self.to_a } else { &mut self.to_b };
                if let Some(frame) = queue.pop_front() {
                    self.deliver(to_a, &frame);
                }
            }
            5 => {
                let queue = if to_a { &mut self.to_a } else { &mut self.to_b };
                queue.pop_front();
            }
            6 => {
                let queue = if to_a { &mut self.to_a } else { &mut self.to_b };
                if let Some(frame) = queue.front().cloned() {
                    self.deliver(to_a, &frame);
                }
            }
            7 => {
                let queue = if to_a { &mut self.to_a } else { &mut self.to_b };
                let i = usize::from(input.byte());
                if queue.len() > 1 {
                    let j = i % queue.len();
                    queue.swap(0, j);
                }
            }
            8 => {
                let queue = if to_a { &self.to_a } else { &self.to_b };
                let template = queue.front().cloned();
                if let Some(forged) = template.and_then(|t| forge(&t, input)) {
                    self.deliver(to_a, &forged);
                }
            }
            9 => {
                // A segment made from nothing but the input, with valid checksums.
                let forged = craft(input, to_a);
                self.deliver(to_a, &forged);
            }
            10 | 11 => {
                let side = if to_a { &mut self.a } else { &mut self.b };
                let action = input.byte();
                if let Some(conn) = side.app.pick(input.byte()) {
                    act(&mut side.iface, &mut side.app, conn, action);
                }
            }
            12 => {
                let side = if to_a { &mut self.a } else { &mut self.b };
                side.app.hold_reads = !side.app.hold_reads;
            }
            13 => {
                // Raw bytes as a frame: the parsers' paths.
                let len = usize::from(input.byte());
                let mut raw = Vec::with_capacity(len);
                for _ in 0..len {
                    raw.push(input.byte());
                }
                self.deliver(to_a, &raw);
            }
            _ => {}
        }
        self.poll();
    }

    /// Closes everything and runs the pair on a lossless link until both are empty: whatever
    /// the input did, every connection must end and every TIME_WAIT record expire.
    fn quiesce(&mut self) {
        self.a.app.hold_reads = false;
        self.b.app.hold_reads = false;
        // 30 minutes of virtual time in 100 ms steps: beyond every retry, orphan and
        // TIME_WAIT bound. The steps bound the work.
        for _ in 0..18_000 {
            // A connection can still be accepted now (a handshake completing, or a cookie ACK
            // that a closed client sent earlier): the application closes those too, or an idle
            // one would rightly stay open for ever.
            for side in [&mut self.a, &mut self.b] {
                for conn in side.app.conns.clone() {
                    if !side.app.closing.contains(&conn) {
                        side.app.closing.push(conn);
                        side.iface.close(conn);
                    }
                }
            }
            self.poll();
            let mut moved = 0;
            while let Some(frame) = self.to_a.pop_front() {
                self.deliver(true, &frame);
                moved += 1;
            }
            while let Some(frame) = self.to_b.pop_front() {
                self.deliver(false, &frame);
                moved += 1;
            }
            self.poll();
            let idle = self.to_a.is_empty() && self.to_b.is_empty();
            let empty =
                [&self.a, &self.b].iter().all(|s| s.iface.connection_count() == 0 && s.iface.time_wait_count() == 0);
            if idle && empty && moved == 0 {
                return;
            }
            if moved == 0 {
                self.now += Duration::from_millis(100);
            }
        }
        let states = |s: &Side| s.app.conns.iter().map(|&c| (s.iface.state(c), s.iface.tuple(c))).collect::<Vec<_>>();
        panic!(
            "no quiescence after 30 minutes: A {} connections {} TIME_WAIT {:?}, B {} connections {} TIME_WAIT {:?}",
            self.a.iface.connection_count(),
            self.a.iface.time_wait_count(),
            states(&self.a),
            self.b.iface.connection_count(),
            self.b.iface.time_wait_count(),
            states(&self.b),
        );
    }
}

fn act(iface: &mut Interface, app: &mut FuzzApp, conn: ConnId, action: u8) {
    match action % 8 {
        0..=2 => {
            let n = usize::from(action) * 37 % 3000 + 1;
            let data = [action; 3000];
            let _ = iface.send(conn, &data[..n]);
        }
        3 => {
            let _ = iface.recv(conn, &mut app.scratch);
        }
        4 => iface.shutdown(conn),
        5 => iface.close(conn),
        6 => iface.abort(conn),
        _ => iface.set_nagle(conn, action & 0x10 != 0),
    }
}

/// Parses a frame as Ethernet/IPv4/TCP.
fn parse(frame: &[u8]) -> Option<(EthernetRepr, Ipv4Repr, TcpRepr, Vec<u8>)> {
    let eth_frame = EthernetFrame::new_checked(frame).ok()?;
    let eth = EthernetRepr::parse(&eth_frame).ok()?;
    let ip_packet = Ipv4Packet::new_checked(eth_frame.payload()).ok()?;
    let ip = Ipv4Repr::parse(&ip_packet, ChecksumMode::Trust).ok()?;
    let tcp = TcpPacket::new_checked(ip_packet.payload()).ok()?;
    let repr = TcpRepr::parse(&tcp, ip.src_addr, ip.dst_addr, ChecksumMode::Trust).ok()?;
    let payload = tcp.payload().to_vec();
    Some((eth, ip, repr, payload))
}

/// Builds a frame with valid IPv4 and TCP checksums.
fn build(eth: EthernetRepr, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
    let tcp_len = repr.header_len() + payload.len();
    let mut buf = vec![0u8; 14 + 20 + tcp_len];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
    Ipv4Repr { src_addr: src, dst_addr: dst, protocol: ip_protocol::TCP, payload_len: tcp_len, ttl: 64 }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]));
    buf[34 + repr.header_len()..].copy_from_slice(payload);
    emit_header(&mut buf[34..], repr, src, dst, payload.len());
    buf
}

/// A real segment with one or two fields changed: what an attacker on the path, or a broken
/// middlebox, sends.
fn forge(template: &[u8], input: &mut Input<'_>) -> Option<Vec<u8>> {
    let (eth, ip, mut repr, payload) = parse(template)?;
    let what = input.byte();
    let delta = i32::from(input.u16() as i16);
    let mut payload = payload;
    match what % 8 {
        0 => repr.flags = TcpFlags(input.byte()),
        1 => repr.seq = repr.seq.wrapping_add(delta as u32),
        2 => repr.ack = repr.ack.wrapping_add(delta as u32),
        3 => repr.window = input.u16(),
        4 => payload.truncate(usize::from(input.byte())),
        5 => {
            repr.seq = repr.seq.wrapping_add(delta as u32);
            repr.flags = TcpFlags(input.byte());
        }
        6 => repr.options.timestamp = None,
        _ => {
            let extra = usize::from(input.byte());
            payload.extend(core::iter::repeat_n(what, extra));
        }
    }
    Some(build(eth, ip.src_addr, ip.dst_addr, &repr, &payload))
}

/// A segment built from the input alone, between the pair's addresses (ports from the small
/// ranges in use, so it meets real connections often).
fn craft(input: &mut Input<'_>, to_a: bool) -> Vec<u8> {
    let (src, dst, src_mac, dst_mac) =
        if to_a { (ADDR_B, ADDR_A, MAC_B, MAC_A) } else { (ADDR_A, ADDR_B, MAC_A, MAC_B) };
    let client_port = 40_000 + u16::from(input.byte() % 64);
    let (src_port, dst_port) = if to_a { (client_port, PORT) } else { (PORT, client_port) };
    let repr = TcpRepr {
        src_port,
        dst_port,
        seq: u32::from(input.u16()) << 16 | u32::from(input.u16()),
        ack: u32::from(input.u16()) << 16 | u32::from(input.u16()),
        flags: TcpFlags(input.byte()),
        window: input.u16(),
        ..TcpRepr::default()
    };
    let payload = vec![0x5a; usize::from(input.byte() % 64)];
    build(EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EtherType::IPV4 }, src, dst, &repr, &payload)
}

/// What one input did, so that tests can tell a seed that reaches deep states from one that
/// stops at the first byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairReport {
    /// Operations run.
    pub ops: usize,
    /// Connections A accepted.
    pub accepted: u64,
    /// Connections B opened that completed their handshake.
    pub connected: u64,
    /// TIME_WAIT records made, both sides.
    pub time_wait_entered: u64,
    /// Segments taken in, both sides.
    pub segments: u64,
}

/// Runs one input through an [`InterfacePair`]: operations until the input ends, then the
/// quiescence check. Panics on a violated invariant.
pub fn interface_pair(data: &[u8]) -> PairReport {
    let mut input = Input { data };
    let mut pair = InterfacePair::new(input.byte());
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        pair.step(&mut input);
        ops += 1;
    }
    pair.quiesce();
    let (a, b) = (pair.a.iface.counters(), pair.b.iface.counters());
    PairReport {
        ops,
        accepted: a.accepted,
        connected: b.connected,
        time_wait_entered: a.time_wait_entered + b.time_wait_entered,
        segments: a.rx_segments + b.rx_segments,
    }
}

/// What one input did to a single [`Connection`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionReport {
    /// Operations run.
    pub ops: usize,
    /// Segments the connection sent.
    pub sent: u64,
    /// Whether it reached ESTABLISHED at some point.
    pub established: bool,
}

/// Runs one input against a single [`crate::tcp::Connection`]: the input plays the peer,
/// crafting segments around the connection's own SND.UNA, SND.NXT and RCV.NXT (so most land
/// near or in the window), advances time and makes application calls. After every step each
/// segment the connection sends must parse with a valid checksum, and SND.UNA <= SND.NXT.
pub fn connection(data: &[u8]) -> ConnectionReport {
    use crate::tcp::{Connection, FourTuple, Segment, State};
    let mut input = Input { data };
    let selector = input.byte();
    let config = TcpConfig {
        send_buffer_len: 4096,
        recv_buffer_len: 4096,
        time_wait: Duration::from_secs(2),
        timestamps: selector & 1 == 0,
        sack: selector & 2 == 0,
        window_scaling: selector & 4 == 0,
        ..TcpConfig::default()
    };
    let us = Endpoint::new(ADDR_A, PORT);
    let peer = Endpoint::new(ADDR_B, 40_000);
    let isn = IsnGenerator::with_key([5, 6]);
    let mut conn = Connection::with_rings(config);
    let mut now = Instant::from_millis(1_000);
    let mut out = vec![0u8; 2048];
    let mut scratch = vec![0u8; 4096];
    let mut report = ConnectionReport::default();
    let mut peer_ts = 1u32;
    while !input.is_empty() && report.ops < MAX_OPS {
        report.ops += 1;
        let op = input.byte();
        match op % 6 {
            0 if conn.state() == State::Closed => {
                let _ = if op & 0x10 != 0 { conn.connect(now, us, peer, isn) } else { conn.listen(us, isn) };
            }
            1 | 2 => {
                let (snd_una, snd_nxt, rcv_nxt) = conn.sequence();
                let near = |base: crate::tcp::SeqNumber, d: u8, far: bool| {
                    let delta = if far { i32::from(d) << 20 } else { i32::from(d as i8) };
                    base.0.wrapping_add(delta as u32)
                };
                let how = input.byte();
                let flags = TcpFlags(input.byte());
                let seq = if how & 1 == 0 { near(rcv_nxt, input.byte(), how & 2 != 0) } else { u32::from(input.u16()) };
                let ack_base = if how & 4 == 0 { snd_una } else { snd_nxt };
                let ack = near(ack_base, input.byte(), how & 8 != 0);
                let mut repr = TcpRepr {
                    src_port: peer.port,
                    dst_port: us.port,
                    seq,
                    ack,
                    flags,
                    window: input.u16(),
                    ..TcpRepr::default()
                };
                if how & 0x10 != 0 {
                    repr.options.mss = Some(input.u16());
                }
                if how & 0x20 != 0 {
                    peer_ts = peer_ts.wrapping_add(u32::from(input.byte()));
                    repr.options.timestamp = Some(crate::wire::Timestamp { tsval: peer_ts, tsecr: 0 });
                }
                if how & 0x40 != 0 {
                    repr.options.window_scale = Some(input.byte() % 16);
                    repr.options.sack_permitted = true;
                }
                let payload = [0x42u8; 1460];
                let len = usize::from(input.byte()) * 6 % payload.len();
                let seg = Segment { src_addr: ADDR_B, dst_addr: ADDR_A, repr, payload: &payload[..len] };
                let _ = conn.handle_segment(now, &seg);
            }
            3 => {
                let n = u64::from(input.byte());
                now += Duration::from_micros(n * n * 1_000);
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
            }
            4 => match input.byte() % 6 {
                0 | 1 => {
                    let _ = conn.send(&scratch[..usize::from(op)]);
                }
                2 => {
                    let _ = conn.recv(&mut scratch);
                }
                3 => conn.shutdown(),
                4 => conn.close(),
                _ => conn.abort(),
            },
            _ => {
                if conn.is_closed() && input.byte() & 1 == 0 {
                    conn.recycle();
                }
            }
        }
        while conn.poll_event().is_some() {}
        let tuple = FourTuple { local: us, remote: peer };
        let mut sent_here = 0;
        while let Some(n) = conn.poll_transmit(now, &mut out) {
            sent_here += 1;
            assert!(sent_here <= 1_000, "one step sends without bound");
            let view = TcpPacket::new_checked(&out[..n]).expect("we emit a well-formed header");
            let repr = TcpRepr::parse(&view, ADDR_A, ADDR_B, ChecksumMode::Verify).expect("we emit valid checksums");
            assert_eq!((repr.src_port, repr.dst_port), (tuple.local.port, tuple.remote.port));
        }
        report.sent += sent_here;
        let (snd_una, snd_nxt, _) = conn.sequence();
        assert!(snd_una <= snd_nxt, "SND.UNA {snd_una} beyond SND.NXT {snd_nxt}");
        report.established |= conn.state() == State::Established;
    }
    report
}
