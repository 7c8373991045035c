//! The iperf3 server and client against each other, on two interfaces joined back to back
//! through their frames (sans-IO: virtual time, no network, no root).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc;
use std::time::Duration;

use synack::iface::{AddressMode, App, Interface, InterfaceConfig, RxAction, VecSink};
use synack::tcp::{IsnGenerator, TcpConfig};
use synack::time::Instant;
use synack::wire::EthernetAddress;

use super::client::{Client, Plan, Progress};
use super::proto::Mode;
use super::Iperf3Server;

const MAC_S: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x1]);
const MAC_C: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x2]);
const ADDR_S: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ADDR_C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 5201;
const MAX_CONNECTIONS: usize = 64;

fn iface(mac: EthernetAddress, addr: Ipv4Addr, peer: (Ipv4Addr, EthernetAddress)) -> Interface {
    let mut c = InterfaceConfig::new(mac, addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = MAX_CONNECTIONS;
    c.max_time_wait = 64;
    c.prefault_bytes = 0;
    c.tcp = TcpConfig { send_buffer_len: 64 * 1024, recv_buffer_len: 64 * 1024, ..TcpConfig::default() };
    let mut i = Interface::new(c, IsnGenerator::with_key([1, 2]));
    i.learn_neighbor(peer.0, peer.1);
    i
}

/// Hands `from`'s frames to `to` (and in-place replies back into `back`).
fn deliver(now: Instant, from: &mut VecSink, to: &mut Interface, back: &mut Vec<Vec<u8>>) -> usize {
    let frames = std::mem::take(&mut from.frames);
    let n = frames.len();
    for frame in frames {
        let mut buf = [0u8; 2048];
        buf[..frame.len()].copy_from_slice(&frame);
        if let RxAction::Transmit(len) = to.receive(now, &mut buf, frame.len()) {
            back.push(buf[..len].to_vec());
        }
    }
    n
}

/// The two interfaces, the frames between them and the virtual clock.
struct Net {
    s: Interface,
    c: Interface,
    to_c: VecSink,
    to_s: VecSink,
    now: Instant,
}

impl Net {
    fn new() -> Net {
        let mut s = iface(MAC_S, ADDR_S, (ADDR_C, MAC_C));
        s.listen(PORT).unwrap();
        let c = iface(MAC_C, ADDR_C, (ADDR_S, MAC_S));
        Net { s, c, to_c: VecSink::new(), to_s: VecSink::new(), now: Instant::from_millis(1) }
    }

    /// One round: both poll, then each one's frames reach the other; 1 ms of virtual time.
    fn round(&mut self, server: &mut Iperf3Server, client: &mut dyn App) {
        self.s.poll(self.now, server, &mut self.to_c);
        self.c.poll(self.now, client, &mut self.to_s);
        let (mut back_s, mut back_c) = (Vec::new(), Vec::new());
        deliver(self.now, &mut self.to_c, &mut self.c, &mut back_c);
        deliver(self.now, &mut self.to_s, &mut self.s, &mut back_s);
        self.to_s.frames.extend(back_c);
        self.to_c.frames.extend(back_s);
        self.now += Duration::from_millis(1);
    }

    /// Runs the client side's app against the server until the client reports (and 50 ms
    /// more, for its IPERF_DONE and close to land); returns the client's line.
    fn drive(
        &mut self,
        server: &mut Iperf3Server,
        client: &mut dyn App,
        rx: &mpsc::Receiver<Progress>,
        seconds: u64,
    ) -> String {
        for _ in 0..(seconds * 1000 + 20_000) {
            self.round(server, client);
            match rx.try_recv() {
                Ok(Progress::Done(line)) => {
                    for _ in 0..50 {
                        self.round(server, client);
                    }
                    return line;
                }
                Ok(Progress::Failed(why)) => panic!("the client failed: {why}"),
                Err(_) => {}
            }
        }
        panic!("the test did not finish");
    }

    fn run(&mut self, plan: Plan, server: &mut Iperf3Server) -> String {
        let (tx, rx) = mpsc::channel();
        self.drive(server, &mut Client::new(plan, tx), &rx, plan.seconds)
    }
}

fn plan(mode: Mode, parallel: u64, seconds: u64, bytes: u64) -> Plan {
    Plan { target: SocketAddrV4::new(ADDR_S, PORT), mode, parallel, seconds, bytes }
}

/// (sent, received, server received, server sent) from the client's line.
fn counts(line: &str) -> [u64; 4] {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str, nth: usize| -> u64 {
        let at = words.iter().enumerate().filter(|(_, w)| **w == key).nth(nth).expect(key).0;
        words[at + 1].parse().expect("a number")
    };
    [after("sent", 0), after("received", 0), after("received", 1), after("sent", 1)]
}

#[test]
fn a_byte_count_test_moves_exactly_that_many_bytes() {
    let (mut net, mut server) = (Net::new(), Iperf3Server::new(MAX_CONNECTIONS));
    let line = net.run(plan(Mode::Forward, 1, 0, 3_000_000), &mut server);
    assert_eq!(counts(&line), [3_000_000, 0, 3_000_000, 0], "{line}");
    // The server is free again: a reverse test with two streams follows.
    let line = net.run(plan(Mode::Reverse, 2, 0, 2_000_000), &mut server);
    let [sent, received, server_received, server_sent] = counts(&line);
    assert_eq!((sent, server_received), (0, 0), "{line}");
    assert_eq!(server_sent, 2_000_000, "the server sends -n bytes in all: {line}");
    assert!(received >= 2_000_000 - 64 * 1024 * 2 && received <= server_sent, "{line}");
}

#[test]
fn a_timed_bidirectional_test_counts_both_directions_on_both_sides() {
    let (mut net, mut server) = (Net::new(), Iperf3Server::new(MAX_CONNECTIONS));
    let line = net.run(plan(Mode::Bidirectional, 2, 1, 0), &mut server);
    assert!(line.contains("bidir 2 stream(s) 1.0"), "{line}");
    let [sent, received, server_received, server_sent] = counts(&line);
    assert!(sent > 1_000_000 && server_sent > 1_000_000, "{line}");
    // What is in flight when TEST_END is sent is lost to the receiver's count: the rings
    // (64 KiB each way per stream), and what the sender queues while TEST_END travels.
    let in_flight = 2 * 4 * 64 * 1024;
    assert!(server_received <= sent && server_received + in_flight >= sent, "{line}");
    assert!(received <= server_sent && received + in_flight >= server_sent, "{line}");
}

/// The client side of `a_second_client_is_refused_while_a_test_runs`: a client, and a second
/// connection opened 100 ms in that sends a cookie and records the byte it gets back.
struct WithIntruder {
    client: Client,
    intruder: Option<synack::iface::ConnId>,
    answer: Vec<u8>,
}

impl App for WithIntruder {
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        if self.intruder.is_none() && now >= Instant::from_millis(100) {
            self.intruder = iface.connect(synack::tcp::Endpoint::new(ADDR_S, PORT)).ok();
        }
        self.client.on_poll(iface, now);
    }
    fn next_wakeup(&self) -> Option<Instant> {
        self.client.next_wakeup()
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: synack::iface::ConnId) {
        if Some(conn) == self.intruder {
            let _ = iface.send(conn, &[b'x'; super::proto::COOKIE_LEN]);
        } else {
            self.client.on_connected(iface, conn);
        }
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: synack::iface::ConnId) {
        if Some(conn) == self.intruder {
            let (a, _) = iface.recv_slices(conn);
            self.answer.extend_from_slice(a);
            let n = a.len();
            iface.recv_consume(conn, n);
        } else {
            self.client.on_readable(iface, conn);
        }
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: synack::iface::ConnId) {
        self.client.on_writable(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: synack::iface::ConnId) {
        if Some(conn) == self.intruder {
            iface.close(conn);
        } else {
            self.client.on_peer_closed(iface, conn);
        }
    }
    fn on_closed(&mut self, iface: &mut Interface, conn: synack::iface::ConnId, reason: synack::tcp::CloseReason) {
        if Some(conn) != self.intruder {
            self.client.on_closed(iface, conn, reason);
        }
    }
}

#[test]
fn a_second_client_is_refused_while_a_test_runs() {
    let (mut net, mut server) = (Net::new(), Iperf3Server::new(MAX_CONNECTIONS));
    let (tx, rx) = mpsc::channel();
    let plan = plan(Mode::Forward, 1, 1, 0);
    let mut app = WithIntruder { client: Client::new(plan, tx), intruder: None, answer: Vec::new() };
    let line = net.drive(&mut server, &mut app, &rx, 1);
    assert!(app.intruder.is_some(), "the second connection was opened");
    assert_eq!(app.answer, [super::proto::State::AccessDenied.byte()], "ACCESS_DENIED, nothing else");
    let [sent, _, server_received, _] = counts(&line);
    assert!(sent > 0 && server_received > 0, "the first test went on: {line}");
}

/// A client that sends its cookie and parameters at once, a round after the handshake (so
/// that they arrive after the server accepted), and records what comes back.
struct Eager {
    conn: Option<synack::iface::ConnId>,
    connected: bool,
    sent: bool,
    got: Vec<u8>,
}

impl App for Eager {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        match self.conn {
            None => self.conn = iface.connect(synack::tcp::Endpoint::new(ADDR_S, PORT)).ok(),
            Some(conn) if self.connected && !self.sent => {
                let mut message = vec![b'e'; super::proto::COOKIE_LEN];
                super::proto::frame(br#"{"tcp":true,"parallel":1,"time":1}"#, &mut message);
                self.sent = iface.send(conn, &message) == Ok(message.len());
            }
            Some(_) => {}
        }
    }
    fn on_connected(&mut self, _: &mut Interface, _: synack::iface::ConnId) {
        self.connected = true;
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: synack::iface::ConnId) {
        let (a, _) = iface.recv_slices(conn);
        self.got.extend_from_slice(a);
        let n = a.len();
        iface.recv_consume(conn, n);
    }
}

#[test]
fn parameters_sent_with_the_cookie_are_read() {
    let (mut net, mut server) = (Net::new(), Iperf3Server::new(MAX_CONNECTIONS));
    let mut eager = Eager { conn: None, connected: false, sent: false, got: Vec::new() };
    for _ in 0..50 {
        net.round(&mut server, &mut eager);
    }
    let expected = [super::proto::State::ParamExchange.byte(), super::proto::State::CreateStreams.byte()];
    assert_eq!(eager.got, expected, "PARAM_EXCHANGE, then CREATE_STREAMS for the parameters already sent");
}
