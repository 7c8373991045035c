//! Named whole-connection scenarios through the frame-level simulator (`sim::Network`): two
//! real `Interface`s, so each runs through ARP, the connection table, the listener's backlog
//! and SYN cookies, the TIME_WAIT table and the timer wheel, as on a worker. The same RFC
//! behaviours as `simulated_network.rs` checks on bare connections, here at the layer a
//! deployment runs.

use std::net::Ipv4Addr;
use std::time::Duration;

use synack_proto::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig};
use synack_proto::sim::{LinkConfig, Network};
use synack_proto::tcp::{CloseReason, Endpoint, TcpConfig};
use synack_proto::wire::EthernetAddress;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
const TIME_WAIT: Duration = Duration::from_secs(2);

/// An application for either side: keeps what arrives, echoes it if asked, closes after the
/// peer if asked, and records what the interface reports.
#[derive(Default)]
struct Host {
    echo: bool,
    close_after_peer: bool,
    accepted: Vec<ConnId>,
    connected: Vec<ConnId>,
    closed: Vec<(ConnId, CloseReason)>,
    received: Vec<u8>,
    buf: Vec<u8>,
}

impl Host {
    fn new(echo: bool, close_after_peer: bool) -> Host {
        Host { echo, close_after_peer, buf: vec![0; 4096], ..Host::default() }
    }
    fn reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.closed.iter().find(|(c, _)| *c == conn).map(|&(_, r)| r)
    }
}

impl App for Host {
    fn on_accept(&mut self, _iface: &mut Interface, conn: ConnId) {
        self.accepted.push(conn);
    }
    fn on_connected(&mut self, _iface: &mut Interface, conn: ConnId) {
        self.connected.push(conn);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.echo {
            let _ = iface.splice(conn, conn, usize::MAX);
            return;
        }
        while let Ok(n) = iface.recv(conn, &mut self.buf) {
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&self.buf[..n]);
        }
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.echo {
            let _ = iface.splice(conn, conn, usize::MAX);
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.on_readable(iface, conn);
        if self.close_after_peer {
            iface.close(conn);
        }
    }
    fn on_closed(&mut self, _iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        self.closed.push((conn, reason));
    }
}

fn config(mac: u8, addr: Ipv4Addr) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, mac]), addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = 64;
    c.max_time_wait = 64;
    c.prefault_bytes = 0;
    c.local_ports = (40_000, 40_000);
    c.tcp = TcpConfig {
        time_wait: TIME_WAIT,
        send_buffer_len: 64 * 1024,
        recv_buffer_len: 64 * 1024,
        ..TcpConfig::default()
    };
    c
}

fn network(link: LinkConfig, client: Host, server: Host) -> Network<Host> {
    network_with(link, config(0xa, CLIENT), client, config(0xb, SERVER), server)
}

fn network_with(link: LinkConfig, a: InterfaceConfig, client: Host, b: InterfaceConfig, server: Host) -> Network<Host> {
    let mut net = Network::new(7, (a, client), (b, server), link);
    net.b.iface.listen(PORT).expect("listen");
    net
}

fn until(net: &mut Network<Host>, seconds: u64, done: impl FnMut(&mut Network<Host>) -> bool) -> bool {
    let deadline = net.now + Duration::from_secs(seconds);
    net.drive(deadline, done)
}

#[test]
fn arp_then_handshake_then_echo() {
    let mut net = network(LinkConfig::default(), Host::new(false, true), Host::new(true, true));
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).expect("connect");
    assert!(until(&mut net, 5, |n| n.a.app.connected.contains(&conn) && n.b.app.accepted.len() == 1), "connected");
    assert!(net.a.iface.counters().arp_requests >= 1, "the client resolved the server first");
    assert_eq!(net.b.iface.counters().accepted, 1);
    net.a.iface.send(conn, b"hello over two interfaces").unwrap();
    assert!(until(&mut net, 5, |n| n.a.app.received.len() == 25));
    assert_eq!(&net.a.app.received[..], b"hello over two interfaces");
}

#[test]
fn client_closes_first_and_holds_time_wait_for_2msl() {
    let mut net = network(LinkConfig::default(), Host::new(false, false), Host::new(false, true));
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 5, |n| n.a.app.connected.contains(&conn)));
    net.a.iface.close(conn);
    assert!(until(&mut net, 5, |n| n.a.app.reason(conn).is_some() && n.b.app.closed.len() == 1));
    assert_eq!(net.a.app.reason(conn), Some(CloseReason::Normal));
    assert_eq!((net.a.iface.time_wait_count(), net.b.iface.time_wait_count()), (1, 0), "TIME_WAIT on the closer");
    assert_eq!((net.a.iface.connection_count(), net.b.iface.connection_count()), (0, 0), "slots freed");
    // The record was made when the server's FIN arrived, one link delay before its last ACK
    // reached the server (where the wait above ended); it expires 2MSL after, within a tick.
    let entered =
        synack_proto::time::Instant::from_nanos(net.now.as_nanos() - LinkConfig::default().delay.as_nanos() as u64);
    assert!(until(&mut net, 10, |n| n.a.iface.time_wait_count() == 0));
    let held = net.now - entered;
    assert!(held >= TIME_WAIT && held < TIME_WAIT + Duration::from_millis(5), "held {held:?}");
    assert_eq!(net.a.iface.counters().time_wait_expired, 1);
}

#[test]
fn server_closes_first_and_holds_time_wait() {
    let mut net = network(LinkConfig::default(), Host::new(false, true), Host::new(false, false));
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 5, |n| n.b.app.accepted.len() == 1));
    let server_conn = net.b.app.accepted[0];
    net.b.iface.send(server_conn, b"bye").unwrap();
    net.b.iface.close(server_conn);
    assert!(until(&mut net, 5, |n| n.a.app.reason(conn).is_some()));
    assert_eq!(&net.a.app.received[..], b"bye");
    assert_eq!((net.a.iface.time_wait_count(), net.b.iface.time_wait_count()), (0, 1));
}

#[test]
fn simultaneous_close_puts_both_in_time_wait() {
    let mut net = network(
        LinkConfig { delay: Duration::from_millis(5), ..LinkConfig::default() },
        Host::new(false, false),
        Host::new(false, false),
    );
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 5, |n| n.b.app.accepted.len() == 1 && n.a.app.connected.len() == 1));
    let server_conn = net.b.app.accepted[0];
    // Both FINs leave before either arrives (5 ms one way).
    net.a.iface.close(conn);
    net.b.iface.close(server_conn);
    assert!(until(&mut net, 5, |n| n.a.app.closed.len() == 1 && n.b.app.closed.len() == 1));
    assert_eq!((net.a.iface.time_wait_count(), net.b.iface.time_wait_count()), (1, 1), "RFC 9293 CLOSING -> TIME_WAIT");
}

#[test]
fn syn_to_a_closed_port_is_refused() {
    let mut net = network(LinkConfig::default(), Host::new(false, false), Host::new(false, false));
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT + 1)).unwrap();
    assert!(until(&mut net, 5, |n| n.a.app.reason(conn).is_some()));
    assert_eq!(net.a.app.reason(conn), Some(CloseReason::Refused));
    assert_eq!(net.b.iface.counters().resets_sent, 1);
}

#[test]
fn an_unanswered_arp_ends_the_connect_with_no_route() {
    let mut net = network(LinkConfig::default(), Host::new(false, false), Host::new(false, false));
    // Nobody has this address: ARP goes unanswered.
    let conn = net.a.iface.connect(Endpoint::new(Ipv4Addr::new(198, 18, 0, 99), PORT)).unwrap();
    assert!(until(&mut net, 30, |n| n.a.app.reason(conn).is_some()));
    assert_eq!(net.a.app.reason(conn), Some(CloseReason::NoRoute));
    assert!(net.a.iface.counters().arp_failures >= 1);
}

#[test]
fn a_new_syn_reopens_the_servers_time_wait_when_rfc6191_allows() {
    // The server closes first and holds TIME_WAIT; the client's only port comes back with a
    // newer timestamp at once, and the server takes it (RFC 6191).
    let mut net = network(LinkConfig::default(), Host::new(false, true), Host::new(false, false));
    let first = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 5, |n| n.b.app.accepted.len() == 1));
    net.b.iface.close(net.b.app.accepted[0]);
    assert!(until(&mut net, 5, |n| n.a.app.reason(first).is_some() && n.b.iface.time_wait_count() == 1));
    net.now += Duration::from_millis(10);
    net.flush();
    let second = net.a.iface.connect(Endpoint::new(SERVER, PORT)).expect("the client's port is free again");
    assert_eq!(net.a.iface.tuple(second).unwrap().local.port, 40_000, "the same 4-tuple");
    assert!(until(&mut net, 5, |n| n.a.app.connected.contains(&second)));
    assert_eq!(net.b.iface.counters().time_wait_reopened, 1);
    assert_eq!(net.b.iface.time_wait_count(), 0);
}

#[test]
fn the_client_reuses_its_port_from_its_own_time_wait() {
    // The client closes first, so TIME_WAIT lands on its only port; with reuse on it opens the
    // same 4-tuple again 1 ms later (timestamps make it safe), as Linux's tcp_tw_reuse.
    let mut a = config(0xa, CLIENT);
    a.time_wait_reuse = Some(Duration::from_millis(1));
    let mut net =
        network_with(LinkConfig::default(), a, Host::new(false, false), config(0xb, SERVER), Host::new(false, true));
    let first = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 5, |n| n.a.app.connected.contains(&first)));
    net.a.iface.close(first);
    assert!(until(&mut net, 5, |n| n.a.app.reason(first).is_some()));
    assert_eq!(net.a.iface.time_wait_count(), 1);
    net.now += Duration::from_millis(20);
    net.flush(); // the interfaces learn the time as a worker's batch tells them
    let second = net.a.iface.connect(Endpoint::new(SERVER, PORT)).expect("reused from TIME_WAIT");
    assert!(until(&mut net, 5, |n| n.a.app.connected.contains(&second) && n.b.app.accepted.len() == 2));
    assert_eq!(net.a.iface.counters().time_wait_reused, 1);
    assert_eq!(net.b.iface.counters().accepted, 2);
}

#[test]
fn syn_cookies_open_every_connection_once_the_backlog_is_full() {
    let mut a = config(0xa, CLIENT);
    a.local_ports = (40_000, 40_031);
    let mut b = config(0xb, SERVER);
    b.syn_backlog = 2;
    let mut net = network_with(
        LinkConfig { delay: Duration::from_millis(2), ..LinkConfig::default() },
        a,
        Host::new(false, false),
        b,
        Host::new(false, false),
    );
    net.a.iface.learn_neighbor(SERVER, net.b.iface.config().mac);
    let conns: Vec<_> = (0..16).map(|_| net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap()).collect();
    assert!(until(&mut net, 10, |n| n.b.app.accepted.len() == 16 && n.a.app.connected.len() == 16));
    assert!(net.b.iface.counters().syn_cookies_sent > 0, "the backlog of 2 overflowed");
    assert_eq!(net.b.iface.counters().syn_cookies_accepted, net.b.iface.counters().syn_cookies_sent);
    for conn in conns {
        assert!(net.a.iface.tuple(conn).is_some());
    }
}

/// Sends `bytes` of a pattern from `a` on `conn`, which `b` echoes, and checks that exactly
/// they come back within `seconds` of virtual time.
fn echo_exactly(net: &mut Network<Host>, conn: ConnId, bytes: u32, seconds: u64) {
    let data: Vec<u8> = (0..bytes).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut sent = 0;
    let ok = until(net, seconds, |n| {
        if sent < data.len() {
            if let Ok(k) = n.a.iface.send(conn, &data[sent..]) {
                sent += k;
            }
        }
        n.a.app.received.len() == data.len()
    });
    assert!(ok, "echoed {} of {} bytes", net.a.app.received.len(), data.len());
    assert!(net.a.app.received == data, "the echo is the data");
}

#[test]
fn a_megabyte_survives_five_percent_loss_each_way() {
    let link = LinkConfig::lossy(0.05, 0.01, 0.02);
    let mut net = network(link, Host::new(false, true), Host::new(true, true));
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 30, |n| n.a.app.connected.contains(&conn)));
    echo_exactly(&mut net, conn, 1_000_000, 600);
    assert!(net.a_to_b.stats.lost > 0 && net.b_to_a.stats.lost > 0, "the link lost frames");
}

/// Echoes `bytes` from `a` through `b` with both interfaces fitted to their MTUs and returns the
/// longest frame each side sent (by source MAC, from the capture).
fn echo_at_mtus(mtu_a: u16, mtu_b: u16, bytes: u32) -> (usize, usize) {
    let (mut a, mut b) = (config(0xa, CLIENT), config(0xb, SERVER));
    a.set_mtu(mtu_a);
    b.set_mtu(mtu_b);
    assert_eq!(a.max_frame_len(), usize::from(mtu_a) + 14);
    // The wire carries the larger MTU: only the MSS keeps the other side's segments small.
    let link = LinkConfig { mtu: usize::from(mtu_a.max(mtu_b)), ..LinkConfig::default() };
    let mut net = network_with(link, a, Host::new(false, true), b, Host::new(true, true));
    net.capture();
    let conn = net.a.iface.connect(Endpoint::new(SERVER, PORT)).unwrap();
    assert!(until(&mut net, 5, |n| n.a.app.connected.contains(&conn)));
    echo_exactly(&mut net, conn, bytes, 60);
    assert_eq!(net.a_to_b.stats.oversize + net.b_to_a.stats.oversize, 0, "no packet beyond the wire's MTU");
    // pcap: a 24-byte file header, then per frame 16 bytes (captured length at 8) and the frame.
    let pcap = net.pcap();
    let (mut longest_a, mut longest_b, mut at) = (0, 0, 24);
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..at + 16 + len];
        let longest = if frame[11] == 0xa { &mut longest_a } else { &mut longest_b };
        *longest = (*longest).max(len);
        at += 16 + len;
    }
    (longest_a, longest_b)
}

#[test]
fn segments_fill_the_mtu_both_ways() {
    // MTU 9000: MSS 8960 advertised, 8948 bytes of payload beside the timestamps, 9014-byte
    // frames both ways.
    assert_eq!(echo_at_mtus(9000, 9000, 1_000_000), (9014, 9014));
    // MTU 1500 is what it always was.
    assert_eq!(echo_at_mtus(1500, 1500, 200_000), (1514, 1514));
}

#[test]
fn the_peers_mss_caps_what_a_jumbo_interface_sends() {
    // The client could send 9014-byte frames, the server takes 1460-byte segments: each sends
    // no more than the other's MSS allows.
    assert_eq!(echo_at_mtus(9000, 1500, 200_000), (1514, 1514));
    assert_eq!(echo_at_mtus(1500, 9000, 200_000), (1514, 1514));
}
