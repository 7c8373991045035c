//! Interface tests: crafted frames, and two interfaces joined back to back through their
//! frames by the frame-level simulator over a perfect wire (`sim::Network`: ARP, handshake,
//! data, both close orders, TIME_WAIT records and their expiry).

use core::time::Duration;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::sim::{Captured, LinkConfig, Network, Node};
use crate::tcp::{CloseReason, Endpoint, IsnGenerator, State, TcpConfig};
use crate::time::Instant;
use crate::wire::{
    emit_header, ArpOperation, ArpPacket, ArpRepr, ChecksumMode, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr,
};

const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb]);
const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 8080;

fn config(mac: EthernetAddress, addr: Ipv4Addr) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(mac, addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = 64;
    // Slots are made as needed, so the tests see the slab's high-water mark.
    c.prefault_bytes = 0;
    c.tcp = TcpConfig {
        send_buffer_len: 16 * 1024,
        recv_buffer_len: 16 * 1024,
        time_wait: Duration::from_secs(2),
        ..TcpConfig::default()
    };
    c
}

fn iface(mac: EthernetAddress, addr: Ipv4Addr) -> Interface {
    Interface::new(config(mac, addr), IsnGenerator::with_key([1, 2]))
}

/// A frame from B's MAC and address to A carrying a TCP segment.
fn tcp_frame(repr: &TcpRepr, payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let tcp_len = repr.header_len() + payload.len();
    let mut buf = vec![0u8; 14 + 20 + tcp_len];
    EthernetRepr { src_addr: MAC_B, dst_addr: MAC_A, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
    Ipv4Repr { src_addr: src, dst_addr: dst, protocol: crate::wire::ip_protocol::TCP, payload_len: tcp_len, ttl: 64 }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]));
    buf[34 + repr.header_len()..].copy_from_slice(payload);
    emit_header(&mut buf[34..], repr, src, dst, payload.len());
    buf
}

fn syn(src_port: u16, dst_port: u16) -> TcpRepr {
    TcpRepr { src_port, dst_port, seq: 1000, flags: TcpFlags::SYN, window: 65535, ..TcpRepr::default() }
}

/// Feeds one frame into a copy sized like a UMEM frame; returns the reply, if any.
fn feed(iface: &mut Interface, now: Instant, frame: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    match iface.receive(now, &mut buf, frame.len()) {
        RxAction::Release => None,
        RxAction::Transmit(n) => Some(buf[..n].to_vec()),
    }
}

fn parse_tcp(frame: &[u8]) -> (Ipv4Repr, TcpRepr) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip_packet = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let ip = Ipv4Repr::parse(&ip_packet, ChecksumMode::Verify).unwrap();
    let tcp = TcpPacket::new_checked(ip_packet.payload()).unwrap();
    let repr = TcpRepr::parse(&tcp, ip.src_addr, ip.dst_addr, ChecksumMode::Verify).unwrap();
    (ip, repr)
}

/// Remembers the connections it accepted.
#[derive(Default)]
struct Acceptor(Vec<ConnId>);

impl App for Acceptor {
    fn on_accept(&mut self, _: &mut Interface, conn: ConnId) {
        self.0.push(conn);
    }
}

/// Completes a passive handshake on `a` from B's `syn` (crafted frames, one poll each way):
/// returns the SYN-ACK `a` sent. The ACK carries SEQ = SYN.SEQ + 1.
fn accept_handshake(a: &mut Interface, app: &mut Acceptor, now: Instant, syn: &TcpRepr) -> TcpRepr {
    assert_eq!(feed(a, now, &tcp_frame(syn, b"", ADDR_B, ADDR_A)), None);
    let mut sink = VecSink::new();
    a.poll(now, app, &mut sink);
    let (_, syn_ack) = parse_tcp(&sink.frames[0]);
    assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
    let ack = TcpRepr {
        src_port: syn.src_port,
        dst_port: syn.dst_port,
        seq: syn.seq.wrapping_add(1),
        ack: syn_ack.seq.wrapping_add(1),
        flags: TcpFlags::ACK,
        window: 65535,
        ..TcpRepr::default()
    };
    assert_eq!(feed(a, now, &tcp_frame(&ack, b"", ADDR_B, ADDR_A)), None);
    a.poll(now, app, &mut VecSink::new());
    syn_ack
}

// ----- Crafted frames -----

#[test]
fn syn_to_a_port_without_listener_gets_an_rst_in_place() {
    let mut a = iface(MAC_A, ADDR_A);
    let reply = feed(&mut a, Instant::from_millis(1), &tcp_frame(&syn(5555, 81), b"", ADDR_B, ADDR_A)).expect("an RST");
    let (ip, rst) = parse_tcp(&reply);
    assert_eq!((ip.src_addr, ip.dst_addr), (ADDR_A, ADDR_B));
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!((rst.src_port, rst.dst_port, rst.ack), (81, 5555, 1001));
    assert_eq!(&reply[..6], &MAC_B.0, "the RST goes back to the sender's MAC");
    assert_eq!(a.counters().resets_sent, 1);
    // An RST is never answered.
    let rst_in = TcpRepr { flags: TcpFlags::RST, ..syn(5555, 81) };
    assert!(feed(&mut a, Instant::from_millis(2), &tcp_frame(&rst_in, b"", ADDR_B, ADDR_A)).is_none());
    assert_eq!(a.counters().drop_rst_ignored, 1);
}

#[test]
fn arp_requests_are_answered_in_place_only_for_a_dedicated_address() {
    let request = {
        let mut buf = vec![0u8; 42];
        EthernetRepr { src_addr: MAC_B, dst_addr: EthernetAddress::BROADCAST, ethertype: EtherType::ARP }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MAC_B,
            source_protocol_addr: ADDR_B,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ADDR_A,
        }
        .emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
        buf
    };
    let now = Instant::from_millis(1);
    let mut a = iface(MAC_A, ADDR_A);
    let reply = feed(&mut a, now, &request).expect("a reply");
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&reply[14..]).unwrap()).unwrap();
    assert_eq!(arp.operation, ArpOperation::Reply);
    assert_eq!((arp.source_hardware_addr, arp.source_protocol_addr), (MAC_A, ADDR_A));
    assert_eq!((arp.target_hardware_addr, arp.target_protocol_addr), (MAC_B, ADDR_B));
    assert_eq!(&reply[..6], &MAC_B.0);
    assert_eq!(a.neighbors_mut().lookup(ADDR_B, now), None, "a stranger's request creates no entry");

    let mut shared = config(MAC_A, ADDR_A);
    shared.address_mode = AddressMode::Shared;
    let mut a = Interface::new(shared, IsnGenerator::with_key([1, 2]));
    assert!(feed(&mut a, now, &request).is_none(), "the kernel answers for a shared address");
}

/// An ARP packet from `sender_mac` claiming `sender` is at it, to our MAC.
fn arp_frame(operation: ArpOperation, sender: Ipv4Addr, sender_mac: EthernetAddress, target: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; 42];
    EthernetRepr { src_addr: sender_mac, dst_addr: MAC_A, ethertype: EtherType::ARP }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
    ArpRepr {
        operation,
        source_hardware_addr: sender_mac,
        source_protocol_addr: sender,
        target_hardware_addr: MAC_A,
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    buf
}

/// ARP is learned only from the reply to our own request, and from a request for our address
/// by a neighbour we already know; unsolicited replies, strangers' requests and ARP aimed at
/// others teach nothing (they would let any station redirect our traffic).
#[test]
fn arp_learns_only_answers_to_our_requests_and_known_neighbours() {
    const EVIL: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xe]);
    let now = Instant::from_millis(1);
    let mut a = iface(MAC_A, ADDR_A);
    let c = Ipv4Addr::new(198, 18, 0, 3);
    // Unsolicited reply, and a gratuitous ARP about another address: nothing learned.
    let _ = feed(&mut a, now, &arp_frame(ArpOperation::Reply, ADDR_B, EVIL, ADDR_A));
    let _ = feed(&mut a, now, &arp_frame(ArpOperation::Request, c, EVIL, c));
    assert_eq!((a.neighbors_mut().lookup(ADDR_B, now), a.neighbors_mut().lookup(c, now)), (None, None));
    assert_eq!(a.counters().arp_not_learned, 1);
    // Our request's reply is learned.
    struct Opens(bool);
    impl App for Opens {
        fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
            if !self.0 {
                self.0 = true;
                iface.connect(Endpoint::new(ADDR_B, PORT)).unwrap();
            }
        }
    }
    let (mut app, mut sink) = (Opens(false), VecSink::new());
    a.poll(now, &mut app, &mut sink);
    a.poll(now, &mut app, &mut sink);
    assert_eq!(sink.frames.len(), 1, "an ARP request");
    assert!(a.is_resolving(ADDR_B));
    let _ = feed(&mut a, now, &arp_frame(ArpOperation::Reply, ADDR_B, MAC_B, ADDR_A));
    assert_eq!(a.neighbors_mut().lookup(ADDR_B, now), Some(MAC_B));
    // A second, unsolicited reply does not move it; a request from the known neighbour does.
    let _ = feed(&mut a, now, &arp_frame(ArpOperation::Reply, ADDR_B, EVIL, ADDR_A));
    assert_eq!(a.neighbors_mut().lookup(ADDR_B, now), Some(MAC_B));
    let moved = EthernetAddress([0x02, 0, 0, 0, 0, 0xc]);
    let _ = feed(&mut a, now, &arp_frame(ArpOperation::Request, ADDR_B, moved, ADDR_A));
    assert_eq!(a.neighbors_mut().lookup(ADDR_B, now), Some(moved));
}

#[test]
fn icmp_echo_requests_get_replies_in_place() {
    let data = b"ping payload 123";
    let icmp_len = 8 + data.len();
    let mut frame = vec![0u8; 34 + icmp_len];
    EthernetRepr { src_addr: MAC_B, dst_addr: MAC_A, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..14]));
    Ipv4Repr {
        src_addr: ADDR_B,
        dst_addr: ADDR_A,
        protocol: crate::wire::ip_protocol::ICMP,
        payload_len: icmp_len,
        ttl: 9,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..34]));
    Icmpv4Repr::EchoRequest { ident: 7, seq_no: 3, data }.emit(&mut Icmpv4Packet::new_unchecked(&mut frame[34..]));
    let mut a = iface(MAC_A, ADDR_A);
    let reply = feed(&mut a, Instant::from_millis(1), &frame).expect("an echo reply");
    let ip_packet = Ipv4Packet::new_checked(&reply[14..]).unwrap();
    let ip = Ipv4Repr::parse(&ip_packet, ChecksumMode::Verify).unwrap();
    assert_eq!((ip.src_addr, ip.dst_addr), (ADDR_A, ADDR_B));
    let icmp = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(ip_packet.payload()).unwrap(), ChecksumMode::Verify)
        .expect("the incrementally updated checksum verifies");
    assert_eq!(icmp, Icmpv4Repr::EchoReply { ident: 7, seq_no: 3, data });
}

#[test]
fn checksums_are_verified_unless_trusted() {
    let mut frame = tcp_frame(&syn(5555, PORT), b"", ADDR_B, ADDR_A);
    // A partial checksum, as a veth peer with TX offload sends: the pseudo-header sum only.
    frame[34 + 16] ^= 0x5a;
    let mut a = iface(MAC_A, ADDR_A);
    a.listen(PORT).unwrap();
    assert!(feed(&mut a, Instant::from_millis(1), &frame).is_none());
    assert_eq!(a.counters().drop_bad_checksum, 1);
    assert_eq!(a.connection_count(), 0);

    let mut trusting = config(MAC_A, ADDR_A);
    trusting.checksum = ChecksumMode::Trust;
    let mut a = Interface::new(trusting, IsnGenerator::with_key([1, 2]));
    a.listen(PORT).unwrap();
    assert!(feed(&mut a, Instant::from_millis(1), &frame).is_none());
    assert_eq!(a.counters().drop_bad_checksum, 0);
    assert_eq!(a.connection_count(), 1, "the SYN opened a connection");
    let mut sink = VecSink::new();
    a.poll(Instant::from_millis(1), &mut (), &mut sink);
    let (_, syn_ack) = parse_tcp(&sink.frames[0]);
    assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
}

#[test]
fn fragments_other_addresses_and_other_protocols_are_counted_drops() {
    let mut a = iface(MAC_A, ADDR_A);
    a.listen(PORT).unwrap();
    let now = Instant::from_millis(1);
    let mut fragment = tcp_frame(&syn(5555, PORT), b"", ADDR_B, ADDR_A);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut fragment[14..34]);
        ip.set_flags_and_frag_offset(false, true, 0);
        ip.fill_checksum();
    }
    assert!(feed(&mut a, now, &fragment).is_none());
    assert_eq!(a.counters().drop_fragment, 1);
    let other = tcp_frame(&syn(5555, PORT), b"", ADDR_B, Ipv4Addr::new(198, 18, 0, 9));
    assert!(feed(&mut a, now, &other).is_none());
    assert_eq!(a.counters().drop_not_ours, 1);
    let mut ipv6 = tcp_frame(&syn(5555, PORT), b"", ADDR_B, ADDR_A);
    ipv6[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
    assert!(feed(&mut a, now, &ipv6).is_none());
    assert_eq!(a.counters().drop_unsupported, 1);
    assert!(feed(&mut a, now, &[0u8; 10]).is_none());
    assert_eq!(a.counters().drop_truncated, 1);
    assert_eq!(a.counters().dropped(), 4);
    assert_eq!(a.counters().rx_frames, 4);
}

#[test]
fn a_full_table_refuses_syns_by_the_configured_policy() {
    for policy in [TableFullPolicy::Drop, TableFullPolicy::Reset] {
        let mut c = config(MAC_A, ADDR_A);
        c.max_connections = 2;
        c.table_full = policy;
        let mut a = Interface::new(c, IsnGenerator::with_key([1, 2]));
        a.listen(PORT).unwrap();
        let now = Instant::from_millis(1);
        for port in [5000, 5001] {
            assert!(feed(&mut a, now, &tcp_frame(&syn(port, PORT), b"", ADDR_B, ADDR_A)).is_none());
        }
        let third = feed(&mut a, now, &tcp_frame(&syn(5002, PORT), b"", ADDR_B, ADDR_A));
        assert_eq!(a.counters().drop_table_full, 1);
        assert_eq!(a.connection_count(), 2);
        match policy {
            TableFullPolicy::Drop => assert!(third.is_none()),
            TableFullPolicy::Reset => assert!(parse_tcp(&third.unwrap()).1.flags.contains(TcpFlags::RST)),
        }
    }
}

#[test]
fn the_syn_backlog_is_bounded() {
    let mut c = config(MAC_A, ADDR_A);
    c.syn_backlog = 3;
    c.syn_cookies = false;
    let mut a = Interface::new(c, IsnGenerator::with_key([1, 2]));
    a.listen(PORT).unwrap();
    for port in 5000..5010 {
        let _ = feed(&mut a, Instant::from_millis(1), &tcp_frame(&syn(port, PORT), b"", ADDR_B, ADDR_A));
    }
    assert_eq!(a.connection_count(), 3);
    assert_eq!(a.counters().drop_backlog_full, 7);
}

#[test]
fn listening_in_the_client_port_range_is_refused() {
    let mut a = iface(MAC_A, ADDR_A);
    assert_eq!(a.listen(0), Err(ListenError::PortZero));
    assert_eq!(a.listen(62000), Err(ListenError::InLocalPortRange));
    assert!(a.listen(80).is_ok());
    assert!(a.is_listening(80));
    a.unlisten(80);
    assert!(!a.is_listening(80));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// No bytes make `receive` panic, and every frame is counted.
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), len in 0usize..300) {
        let mut a = iface(MAC_A, ADDR_A);
        a.listen(PORT).unwrap();
        let mut buf = bytes.clone();
        let _ = a.receive(Instant::from_millis(1), &mut buf, len);
        prop_assert_eq!(a.counters().rx_frames, 1);
    }

    /// Any single-byte corruption of a valid SYN is handled without panic.
    #[test]
    fn corrupted_syns_never_panic(at in 0usize..54, value in any::<u8>(), cut in 0usize..60) {
        let mut a = iface(MAC_A, ADDR_A);
        a.listen(PORT).unwrap();
        let mut frame = tcp_frame(&syn(5555, PORT), b"", ADDR_B, ADDR_A);
        frame[at] = value;
        let len = frame.len().saturating_sub(cut);
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(&frame);
        let _ = a.receive(Instant::from_millis(1), &mut buf, len);
        let mut sink = VecSink::new();
        a.poll(Instant::from_millis(2), &mut (), &mut sink);
    }
}

// ----- Two interfaces back to back -----

/// Echoes every byte; closes after the peer's FIN.
#[derive(Default)]
struct Echo {
    accepted: usize,
    closed: Vec<CloseReason>,
}

impl App for Echo {
    fn on_accept(&mut self, _: &mut Interface, _: ConnId) {
        self.accepted += 1;
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        if iface.recv_queue_len(conn) == 0 {
            iface.close(conn);
        }
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
        self.closed.push(reason);
    }
}

/// Opens `count` connections, sends `payload` on each, reads the echo; closes first when it
/// has it all, or waits for the server's FIN when `server_closes` (then the server is sent
/// a shutdown and closes after echoing).
struct Client {
    count: usize,
    payload: Vec<u8>,
    opened: bool,
    got: HashMap<ConnId, Vec<u8>>,
    sent: HashMap<ConnId, usize>,
    done: Vec<(Vec<u8>, CloseReason)>,
    half_close: bool,
}

impl Client {
    fn new(count: usize, payload: Vec<u8>, half_close: bool) -> Client {
        Client {
            count,
            payload,
            opened: false,
            got: HashMap::new(),
            sent: HashMap::new(),
            done: Vec::new(),
            half_close,
        }
    }
    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        let sent = self.sent.entry(conn).or_default();
        while *sent < self.payload.len() {
            match iface.send(conn, &self.payload[*sent..]) {
                Ok(n) => *sent += n,
                Err(_) => break,
            }
        }
        if *sent == self.payload.len() && self.half_close {
            iface.shutdown(conn);
        }
    }
}

impl App for Client {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        if !self.opened {
            self.opened = true;
            for _ in 0..self.count {
                let id = iface.connect(Endpoint::new(ADDR_B, PORT)).expect("connect");
                self.got.insert(id, Vec::new());
            }
        }
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        self.push(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.push(iface, conn);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = iface.recv(conn, &mut buf) {
            self.got.get_mut(&conn).unwrap().extend_from_slice(&buf[..n]);
        }
        if !self.half_close && self.got[&conn].len() == self.payload.len() {
            iface.close(conn);
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.half_close {
            iface.close(conn);
        }
    }
    fn on_closed(&mut self, _: &mut Interface, conn: ConnId, reason: CloseReason) {
        let got = self.got.remove(&conn).unwrap_or_default();
        self.done.push((got, reason));
    }
}

/// Two interfaces joined back to back by the frame-level simulator over a perfect wire
/// (`sim::Network` on `LinkConfig::perfect`: every frame arrives the instant it is sent),
/// starting at 1 s of virtual time.
fn network<A: App, B: App>(a: Interface, app_a: A, b: Interface, app_b: B) -> Network<A, B> {
    Network::join(1, Node::new(a, app_a), Node::new(b, app_b), LinkConfig::perfect())
}

/// The last instant a frame was sent, of those `net` captured.
fn last_sent<A: App, B: App>(net: &Network<A, B>) -> Instant {
    net.captured().last().expect("frames were sent").at
}

#[test]
fn echo_through_frames_client_closes_first_then_time_wait_records_expire() {
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut net = network(iface(MAC_A, ADDR_A), Client::new(20, payload.clone(), false), b, Echo::default());
    net.run_for(Duration::from_secs(30));
    let (Node { iface: a, app: client }, Node { iface: b, app: server }) = net.into_nodes();

    assert_eq!(client.done.len(), 20);
    for (got, reason) in &client.done {
        assert_eq!(got, &payload, "every byte echoed in order");
        assert_eq!(*reason, CloseReason::Normal);
    }
    assert_eq!(server.accepted, 20);
    assert_eq!(server.closed, vec![CloseReason::Normal; 20]);
    // ARP resolved the server once; the server answered it in place.
    assert_eq!(a.counters().arp_requests, 1);
    assert_eq!(b.counters().arp_replies, 1);
    // The client closed first: its side went through TIME_WAIT, as records, and they expired.
    assert_eq!(a.counters().time_wait_entered, 20);
    assert_eq!(a.counters().time_wait_expired, 20);
    assert_eq!(b.counters().time_wait_entered, 0);
    assert_eq!((a.connection_count(), a.time_wait_count(), b.connection_count()), (0, 0, 0));
    assert_eq!(a.counters().dropped(), 0, "{}", a.counters());
    assert_eq!(b.counters().dropped(), 0, "{}", b.counters());
}

#[test]
fn server_closing_first_puts_time_wait_on_the_server_and_slots_are_reused() {
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    // The server closes as soon as it has echoed the request; the client closes when it has
    // the whole echo, which comes with (or before) the server's FIN.
    struct CloseAfter(usize, usize);
    impl App for CloseAfter {
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            self.1 += iface.splice(conn, conn, usize::MAX).unwrap_or(0);
            if self.1.is_multiple_of(self.0) {
                iface.close(conn);
            }
        }
    }
    let payload = vec![7u8; 1000];
    let mut net = network(iface(MAC_A, ADDR_A), Client::new(0, Vec::new(), false), b, CloseAfter(1000, 0));
    for round in 0..3 {
        net.a.app = Client::new(10, payload.clone(), false);
        net.b.app = CloseAfter(1000, 0);
        // A round stops before its records' 2MSL ends, so they pile up over the rounds.
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.a.app.done.len(), 10, "round {round}");
        assert_eq!(net.b.iface.time_wait_count(), 10 * (round + 1), "TIME_WAIT on the server, which closed first");
        assert_eq!(net.a.iface.time_wait_count(), 0);
    }
    let b = &net.b.iface;
    assert!(b.slots_created() <= 10, "slots are reused: {}", b.slots_created());
    // The records expire 2MSL (2 s here) later.
    let record_count = b.time_wait_count();
    net.a.app = Client::new(0, Vec::new(), false);
    let end = net.run_for(Duration::from_secs(5));
    assert!(end > Instant::from_millis(1_000) + Duration::from_secs(2));
    assert_eq!(net.b.iface.counters().time_wait_expired as usize, record_count);
    assert_eq!(net.b.iface.time_wait_count(), 0);
}

#[test]
fn a_full_time_wait_table_evicts_its_oldest_records_and_counts_them() {
    let mut config_b = config(MAC_B, ADDR_B);
    config_b.max_time_wait = 15;
    let mut b = Interface::new(config_b, IsnGenerator::with_key([3, 4]));
    b.listen(PORT).unwrap();
    struct CloseAfterEcho;
    impl App for CloseAfterEcho {
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            let _ = iface.splice(conn, conn, usize::MAX);
            iface.close(conn);
        }
    }
    let mut net = network(iface(MAC_A, ADDR_A), Client::new(0, Vec::new(), false), b, CloseAfterEcho);
    for round in 0..2 {
        net.a.app = Client::new(10, vec![1u8; 100], false);
        net.run_for(Duration::from_millis(500));
        assert_eq!(net.a.app.done.len(), 10, "round {round}");
    }
    let b = &net.b.iface;
    assert_eq!(b.counters().time_wait_entered, 20);
    assert_eq!(b.counters().time_wait_evicted, 5, "the table holds 15");
    assert_eq!(b.time_wait_count(), 15);
    // The survivors expire 2MSL (2 s) on; which ones are evicted is tested on the table.
    net.a.app = Client::new(0, Vec::new(), false);
    net.run_for(Duration::from_secs(4));
    assert_eq!(net.b.iface.time_wait_count(), 0);
    assert_eq!(net.b.iface.counters().time_wait_expired, 15);
}

#[test]
fn transfers_complete_when_tx_frames_are_scarce() {
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let client = Client::new(4, payload.clone(), false);
    let mut net = network(iface(MAC_A, ADDR_A), client, b, Echo::default()).with_tx_limit(2);
    net.run_for(Duration::from_secs(60));
    let (Node { iface: a, app: client }, Node { iface: b, .. }) = net.into_nodes();
    assert_eq!(client.done.len(), 4);
    assert!(client.done.iter().all(|(got, r)| got == &payload && *r == CloseReason::Normal));
    assert!(a.counters().tx_no_frame > 0 && b.counters().tx_no_frame > 0, "the limit was hit");
}

#[test]
fn a_stale_handle_is_refused() {
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    let mut net = network(iface(MAC_A, ADDR_A), Client::new(1, b"hello".to_vec(), false), b, Echo::default());
    net.run_for(Duration::from_secs(5));
    let (Node { iface: mut a, .. }, _) = net.into_nodes();
    let stale = ConnId { index: 0, generation: 0 };
    assert_eq!(a.state(stale), State::Closed);
    assert_eq!(a.send(stale, b"x"), Err(crate::tcp::SendError::InvalidState));
    let id = a.connect(Endpoint::new(ADDR_B, PORT)).unwrap();
    assert_eq!(id.index, 0, "the slot is reused");
    assert_ne!(id, stale, "with a new generation");
    assert_eq!(a.send(stale, b"x"), Err(crate::tcp::SendError::InvalidState));
}

#[test]
fn an_unanswered_arp_aborts_the_connection() {
    struct One(Option<CloseReason>, bool);
    impl App for One {
        fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
            if !self.1 {
                self.1 = true;
                iface.connect(Endpoint::new(Ipv4Addr::new(198, 18, 0, 77), 80)).unwrap();
            }
        }
        fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
            self.0 = Some(reason);
        }
    }
    let mut a = iface(MAC_A, ADDR_A);
    let mut app = One(None, false);
    let mut now = Instant::from_millis(1000);
    let mut requests = 0;
    for _ in 0..10 {
        let mut sink = VecSink::new();
        a.poll(now, &mut app, &mut sink);
        requests += sink.frames.len();
        now += Duration::from_secs(1);
    }
    assert_eq!(requests, 3, "three ARP requests, a second apart");
    assert_eq!(app.0, Some(CloseReason::NoRoute), "told apart from an abort by the app");
    assert_eq!(a.counters().arp_failures, 1);
    assert_eq!(a.connection_count(), 0);
    assert_eq!(
        a.connect(Endpoint::new(Ipv4Addr::new(8, 8, 8, 8), 80)),
        Err(ConnectError::NoRoute),
        "off-link without a gateway"
    );
}

/// A connection reset in this batch stays in the table until the next poll; a new SYN for its
/// 4-tuple in the same batch must not be refused with an RST (the client would give up): it
/// is dropped, and its retransmission opens the connection.
#[test]
fn a_syn_meeting_a_connection_closed_in_the_same_batch_is_dropped_not_refused() {
    let mut b = iface(MAC_A, ADDR_A);
    b.listen(PORT).unwrap();
    let mut server = Echo::default();
    let now = Instant::from_millis(1000);
    assert_eq!(feed(&mut b, now, &tcp_frame(&syn(40000, PORT), &[], ADDR_B, ADDR_A)), None);
    let mut sink = VecSink::new();
    b.poll(now, &mut server, &mut sink);
    assert_eq!(sink.frames.len(), 1, "SYN-ACK");
    // The client resets it (exactly at RCV.NXT), and in the same batch opens anew.
    let rst = TcpRepr { src_port: 40000, dst_port: PORT, seq: 1001, flags: TcpFlags::RST, ..TcpRepr::default() };
    assert_eq!(feed(&mut b, now, &tcp_frame(&rst, &[], ADDR_B, ADDR_A)), None);
    let mut again = syn(40000, PORT);
    again.seq = 90_000;
    assert_eq!(feed(&mut b, now, &tcp_frame(&again, &[], ADDR_B, ADDR_A)), None, "no RST to the SYN");
    assert_eq!(b.counters().resets_sent, 0);
    let mut sink = VecSink::new();
    b.poll(now, &mut server, &mut sink);
    assert_eq!(b.connection_count(), 0, "the reset connection left");
    // The SYN's retransmission is accepted.
    let later = now + Duration::from_secs(1);
    assert_eq!(feed(&mut b, later, &tcp_frame(&again, &[], ADDR_B, ADDR_A)), None);
    let mut sink = VecSink::new();
    b.poll(later, &mut server, &mut sink);
    let (_, syn_ack) = parse_tcp(&sink.frames[0]);
    assert_eq!((syn_ack.flags, syn_ack.ack), (TcpFlags::SYN | TcpFlags::ACK, 90_001));
}

// ----- Client port reuse from TIME_WAIT (RFC 6191, as the closer) -----

/// Opens `count` connections on its first poll and leaves them idle.
struct Opener {
    count: usize,
    opened: Vec<ConnId>,
    connected: usize,
}

impl App for Opener {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        while self.opened.len() < self.count {
            self.opened.push(iface.connect(Endpoint::new(ADDR_B, PORT)).expect("connect"));
        }
    }
    fn on_connected(&mut self, _: &mut Interface, _: ConnId) {
        self.connected += 1;
    }
}

/// The TCP segments of `wire` in one direction, with their payload lengths.
fn segments(wire: &[Captured], a_to_b: bool) -> Vec<(TcpRepr, usize)> {
    wire.iter()
        .filter(|c| {
            c.from_a == a_to_b && EthernetFrame::new_checked(&c.frame[..]).unwrap().ethertype() == EtherType::IPV4
        })
        .map(|c| {
            let (ip, tcp) = parse_tcp(&c.frame);
            (tcp, ip.payload_len - tcp.header_len())
        })
        .collect()
}

/// A client with two ports and a 60 s TIME_WAIT closes first twice; its next connections
/// reuse the ports from TIME_WAIT once a millisecond has passed, with ISS and TSval beyond the
/// old incarnation's, and the old incarnation's duplicates are still rejected by PAWS.
#[test]
fn a_client_reuses_its_ports_from_time_wait_and_old_duplicates_stay_out() {
    let mut config_a = config(MAC_A, ADDR_A);
    config_a.local_ports = (40000, 40001);
    config_a.tcp.time_wait = Duration::from_secs(60);
    let a = Interface::new(config_a, IsnGenerator::with_key([1, 2]));
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();

    let mut net = network(a, Client::new(2, b"hello".to_vec(), false), b, Echo::default());
    net.capture();
    net.run_for(Duration::from_millis(500));
    let quiet_from = last_sent(&net);
    let old_wire = net.captured().to_vec();
    let (Node { iface: mut a, app: client }, Node { iface: b, .. }) = net.into_nodes();
    assert!(client.done.iter().all(|(got, r)| got == b"hello" && *r == CloseReason::Normal));
    assert_eq!((a.time_wait_count(), b.time_wait_count()), (2, 0), "the client closed first");

    // Within the same millisecond as the last segment, both ports are still taken.
    let mut sink = VecSink::new();
    a.poll(quiet_from + Duration::from_micros(500), &mut (), &mut sink);
    assert_eq!(a.connect(Endpoint::new(ADDR_B, PORT)), Err(ConnectError::NoPortAvailable));
    assert_eq!(a.counters().time_wait_reused, 0);

    // A few milliseconds later both are reused (1 ms of quiet, plus up to 4 ms the packed
    // record rounds its last segment up by): the handshakes complete, TIME_WAIT ended early.
    let opener = Opener { count: 2, opened: Vec::new(), connected: 0 };
    let mut net = network(a, opener, b, Echo::default());
    net.now = quiet_from + Duration::from_millis(5);
    net.capture();
    let now = net.run_for(Duration::from_millis(100));
    let new_wire = net.captured().to_vec();
    let (Node { iface: mut a, app: opener }, _) = net.into_nodes();
    assert_eq!(opener.connected, 2);
    assert_eq!(a.counters().time_wait_reused, 2);
    assert_eq!(a.time_wait_count(), 0);
    assert_eq!(a.counters().time_wait_expired, 0, "ended by reuse, not by expiry");
    for &id in &opener.opened {
        assert_eq!(a.state(id), State::Established);
    }

    // Each new SYN starts beyond the old SND.NXT (after the old FIN) and carries a newer TSval
    // than anything the old incarnation sent on that port.
    let old_from_a = segments(&old_wire, true);
    for (syn, _) in segments(&new_wire, true).iter().filter(|(r, _)| r.flags.contains(TcpFlags::SYN)) {
        let old: Vec<&TcpRepr> = old_from_a.iter().map(|(r, _)| r).filter(|r| r.src_port == syn.src_port).collect();
        let old_fin = old.iter().find(|r| r.flags.contains(TcpFlags::FIN)).expect("old FIN");
        assert_eq!(syn.seq, old_fin.seq.wrapping_add(1).wrapping_add(65_537));
        let new_tsval = syn.options.timestamp.expect("timestamps").tsval;
        for r in &old {
            let old_tsval = r.options.timestamp.unwrap().tsval;
            assert!((new_tsval.wrapping_sub(old_tsval) as i32) > 0, "TSval {new_tsval} after {old_tsval}");
        }
    }

    // Old duplicates from the server's first incarnation (its echo and its FIN) reach the new
    // connections: PAWS drops them, nothing is delivered, the connections go on.
    let paws_before = a.counters().drop_paws;
    let mut replayed = 0;
    for Captured { from_a: dir, frame, .. } in &old_wire {
        if EthernetFrame::new_checked(&frame[..]).unwrap().ethertype() != EtherType::IPV4 {
            continue;
        }
        let (_, tcp) = parse_tcp(frame);
        if !dir && (tcp.flags.contains(TcpFlags::FIN) || frame.len() > 14 + 20 + tcp.header_len()) {
            let reply = feed(&mut a, now, frame);
            // The drop is answered with an ACK of the new connection's state (RFC 7323 5.3).
            if let Some(reply) = reply {
                let (_, ack) = parse_tcp(&reply);
                assert!(ack.flags == TcpFlags::ACK, "an ACK, not an RST: {:?}", ack.flags);
            }
            replayed += 1;
        }
    }
    assert_eq!(replayed, 4, "two echoes and two FINs");
    let mut sink = VecSink::new();
    a.poll(now, &mut (), &mut sink);
    assert_eq!(a.counters().drop_paws - paws_before, 4, "{}", a.counters());
    for &id in &opener.opened {
        assert_eq!((a.state(id), a.recv_queue_len(id)), (State::Established, 0));
    }
}

/// Without timestamps (or with reuse switched off) a port in TIME_WAIT stays taken for 2MSL.
#[test]
fn without_timestamps_or_with_reuse_off_time_wait_ports_stay_taken() {
    for timestamps in [false, true] {
        let mut config_a = config(MAC_A, ADDR_A);
        config_a.local_ports = (40000, 40000);
        config_a.tcp.timestamps = timestamps;
        if timestamps {
            config_a.time_wait_reuse = None;
        }
        let a = Interface::new(config_a, IsnGenerator::with_key([1, 2]));
        let mut b = iface(MAC_B, ADDR_B);
        b.listen(PORT).unwrap();
        let mut net = network(a, Client::new(1, b"x".to_vec(), false), b, Echo::default());
        net.capture();
        net.run_for(Duration::from_millis(500));
        let quiet_from = last_sent(&net);
        let (Node { iface: mut a, app: client }, _) = net.into_nodes();
        assert_eq!(client.done.len(), 1);
        assert_eq!(a.time_wait_count(), 1);
        let mut sink = VecSink::new();
        a.poll(quiet_from + Duration::from_secs(1), &mut (), &mut sink);
        assert_eq!(a.connect(Endpoint::new(ADDR_B, PORT)), Err(ConnectError::NoPortAvailable), "ts {timestamps}");
        // After 2MSL the record is gone and the port free again.
        a.poll(quiet_from + Duration::from_secs(3), &mut (), &mut sink);
        assert_eq!(a.time_wait_count(), 0);
        assert!(a.connect(Endpoint::new(ADDR_B, PORT)).is_ok());
        assert_eq!(a.counters().time_wait_reused, 0);
    }
}
mod batch;
mod dispatch;
mod hostile;
mod orphans;
mod pmtu;
mod proxy;
mod ring_pool;
mod syn_cookies;

/// With `prefault_bytes`, the first slots and rings exist (the rings written) before the first
/// connection, and connections take them instead of growing the slab and the pools.
#[test]
fn slots_are_prefilled_up_to_the_ring_budget_and_taken_first() {
    let mut c = config(MAC_B, ADDR_B);
    c.prefault_bytes = 3 * 32 * 1024 + 100; // three slots of 16 + 16 KiB rings
    let mut b = Interface::new(c, IsnGenerator::with_key([3, 4]));
    assert_eq!(b.slots_created(), 3);
    b.listen(PORT).unwrap();
    let mut net = network(iface(MAC_A, ADDR_A), Client::new(2, b"hi".to_vec(), false), b, Echo::default());
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.a.app.done.len(), 2);
    let b = &net.b.iface;
    assert_eq!(b.slots_created(), 3, "the prefilled slots served, none was added");
    let rings = b.ring_stats();
    assert_eq!((rings.send.created, rings.recv.created), (3, 3), "rings prefilled in pairs, none added: {rings:?}");
    assert_eq!((rings.send.in_use, rings.recv.in_use), (0, 0), "all back in the pool once the echoes ended");
    let mut c = config(MAC_B, ADDR_B);
    c.prefault_bytes = usize::MAX;
    assert_eq!(Interface::new(c, IsnGenerator::with_key([3, 4])).slots_created(), 64, "never beyond the maximum");
}
