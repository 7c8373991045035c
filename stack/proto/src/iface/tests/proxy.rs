//! Two connections spliced through one interface (a proxy between a client and an upstream):
//! no byte the proxy acknowledged is lost, whatever the order of FINs and however full the
//! rings are.

use std::collections::HashSet;

use super::*;
use crate::sim::Lan;

const MAC_C: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xc]);
const ADDR_C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const UPSTREAM_PORT: u16 = 80;

/// Runs interfaces on one perfectly switched segment (`sim::Lan` over `LinkConfig::perfect`)
/// for `limit` of virtual time from 1 s, keeping the frames sent; returns the segment.
fn run_hosts(hosts: Vec<(Interface, &mut dyn App)>, limit: Duration) -> Lan<&mut dyn App> {
    let nodes = hosts.into_iter().map(|(iface, app)| Node::new(iface, app)).collect();
    let mut lan = Lan::join(1, nodes, LinkConfig::perfect());
    lan.capture();
    lan.run_for(limit);
    lan
}

/// Every frame of a client -> proxy -> upstream run went where a switch sends it: the client
/// and the upstream never address each other, and a frame to one MAC reached only that node.
fn assert_switched<A: App>(lan: &Lan<A>) {
    let macs: Vec<EthernetAddress> = lan.nodes.iter().map(|n| n.iface.config().mac).collect();
    assert_eq!(lan.unswitched(), 0, "every frame had a receiver");
    // Frames each node received (unicast) and sent as broadcasts.
    let (mut unicast, mut broadcast) = ([0u64; 3], [0u64; 3]);
    for sent in lan.captured() {
        let dst = EthernetAddress(sent.frame[..6].try_into().unwrap());
        if dst.is_broadcast() {
            broadcast[sent.from] += 1;
            continue;
        }
        let to = macs.iter().position(|m| *m == dst).expect("a node's MAC");
        assert_ne!(to, sent.from, "not to itself");
        assert!(to == 1 || sent.from == 1, "the client and the upstream talk only to the proxy");
        unicast[to] += 1;
    }
    assert!(broadcast[0] > 0 && broadcast[1] > 0, "the client and the proxy asked ARP");
    let all: u64 = broadcast.iter().sum();
    for (i, link) in lan.links.iter().enumerate() {
        assert_eq!(
            link.stats.delivered,
            unicast[i] + all - broadcast[i],
            "node {i}: its frames and the others' broadcasts"
        );
    }
}

/// A minimal L4 proxy: each accepted connection is spliced to a new one towards `upstream`,
/// both ways, forwarding a FIN once the data in front of it is forwarded, and an abnormal end
/// of one side as an abort of the other.
#[derive(Default)]
struct SpliceProxy {
    upstream: Option<Endpoint>,
    peer: HashMap<ConnId, ConnId>,
    /// Connections whose FIN arrived.
    eof: HashSet<ConnId>,
    /// Connections we shut down.
    shut: HashSet<ConnId>,
    closed: Vec<CloseReason>,
}

impl SpliceProxy {
    fn pump(&mut self, iface: &mut Interface, from: ConnId) {
        let Some(&to) = self.peer.get(&from) else { return };
        let _ = iface.splice(from, to, usize::MAX);
        if self.eof.contains(&from) && iface.recv_queue_len(from) == 0 && self.shut.insert(to) {
            iface.shutdown(to);
        }
    }
}

impl App for SpliceProxy {
    fn on_accept(&mut self, iface: &mut Interface, client: ConnId) {
        let up = iface.connect(self.upstream.unwrap()).expect("connect upstream");
        self.peer.insert(client, up);
        self.peer.insert(up, client);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Some(&from) = self.peer.get(&conn) {
            self.pump(iface, from);
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.eof.insert(conn);
        self.pump(iface, conn);
    }
    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        self.closed.push(reason);
        if let Some(other) = self.peer.remove(&conn) {
            self.peer.remove(&other);
            if reason != CloseReason::Normal {
                iface.abort(other);
            } else if self.shut.insert(other) {
                iface.shutdown(other);
            }
        }
    }
}

/// Opens one connection to `target`; sends `request` and shuts down its side as soon as
/// `connect` returns (still in SYN-SENT when `early`, else once connected); reads only from
/// `read_after` on; closes after the peer's FIN.
struct RequestClient {
    target: Endpoint,
    request: Vec<u8>,
    early: bool,
    read_after: Instant,
    /// Polled at or after `read_after` with a connection already.
    woken: bool,
    conn: Option<ConnId>,
    got: Vec<u8>,
    fin: bool,
    closed: Option<CloseReason>,
}

impl RequestClient {
    fn new(target: Endpoint, request: &[u8], early: bool, read_after: Instant) -> RequestClient {
        RequestClient {
            target,
            request: request.to_vec(),
            early,
            read_after,
            woken: false,
            conn: None,
            got: Vec::new(),
            fin: false,
            closed: None,
        }
    }
    fn send_request(&mut self, iface: &mut Interface, conn: ConnId) {
        assert_eq!(iface.send(conn, &self.request), Ok(self.request.len()));
        iface.shutdown(conn);
    }
    fn read(&mut self, iface: &mut Interface) {
        let Some(conn) = self.conn else { return };
        if iface.now() < self.read_after {
            return;
        }
        self.woken = true;
        let mut buf = [0u8; 4096];
        loop {
            match iface.recv(conn, &mut buf) {
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(crate::tcp::RecvError::Finished) => {
                    if !self.fin {
                        self.fin = true;
                        iface.close(conn);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

impl App for RequestClient {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        if self.conn.is_none() && self.closed.is_none() {
            let conn = iface.connect(self.target).expect("connect");
            self.conn = Some(conn);
            if self.early {
                self.send_request(iface, conn);
            }
        }
        self.read(iface);
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        if !self.early {
            self.send_request(iface, conn);
        }
    }
    fn on_readable(&mut self, iface: &mut Interface, _: ConnId) {
        self.read(iface);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, _: ConnId) {
        self.read(iface);
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
        self.closed = Some(reason);
    }
    fn next_wakeup(&self) -> Option<Instant> {
        (!self.woken).then_some(self.read_after)
    }
}

/// Reads a request up to its FIN, then answers with `response` and closes.
struct Responder {
    response: Vec<u8>,
    request: Vec<u8>,
    sent: usize,
    answering: bool,
}

impl Responder {
    fn new(response: Vec<u8>) -> Responder {
        Responder { response, request: Vec::new(), sent: 0, answering: false }
    }
    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        while self.answering && self.sent < self.response.len() {
            match iface.send(conn, &self.response[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(_) => return,
            }
        }
        if self.answering && self.sent == self.response.len() {
            self.answering = false;
            iface.close(conn);
        }
    }
}

impl App for Responder {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = iface.recv(conn, &mut buf) {
            self.request.extend_from_slice(&buf[..n]);
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.on_readable(iface, conn);
        self.answering = true;
        self.push(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.push(iface, conn);
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8).collect()
}

/// Runs client (A) -> proxy (B) -> upstream (C) and returns the client, the proxy and the
/// upstream after `limit`.
fn through_proxy(
    request: &[u8],
    response: Vec<u8>,
    early: bool,
    read_after: Instant,
) -> (RequestClient, SpliceProxy, Responder, Interface) {
    let a = iface(MAC_A, ADDR_A);
    let mut b = iface(MAC_B, ADDR_B);
    let mut c = iface(MAC_C, ADDR_C);
    b.listen(PORT).unwrap();
    c.listen(UPSTREAM_PORT).unwrap();
    let mut client = RequestClient::new(Endpoint::new(ADDR_B, PORT), request, early, read_after);
    let mut proxy = SpliceProxy { upstream: Some(Endpoint::new(ADDR_C, UPSTREAM_PORT)), ..SpliceProxy::default() };
    let mut upstream = Responder::new(response);
    let hosts: Vec<(Interface, &mut dyn App)> = vec![(a, &mut client), (b, &mut proxy), (c, &mut upstream)];
    let lan = run_hosts(hosts, Duration::from_secs(6));
    assert_switched(&lan);
    let Node { iface: b, .. } = lan.into_nodes().swap_remove(1);
    (client, proxy, upstream, b)
}

/// The upstream's last bytes and FIN arrive while the client's side is full: the proxy's
/// upstream connection enters TIME_WAIT holding unread data, which must still reach the client.
#[test]
fn a_tail_held_in_the_proxy_at_time_wait_still_reaches_a_slow_client() {
    let request = pattern(1_000, 1);
    // Client receive ring, proxy send ring and proxy receive ring are 16 KiB each: the last
    // 8 KiB or more sit unread in the proxy when the upstream's FIN comes.
    let response = pattern(40_000, 2);
    let (client, proxy, upstream, b) = through_proxy(&request, response.clone(), false, Instant::from_millis(3_000));
    assert!(upstream.request == request, "the request reached the upstream ({} bytes)", upstream.request.len());
    assert_eq!(client.got.len(), response.len(), "every byte of the response reached the client");
    assert!(client.got == response, "unchanged");
    assert_eq!(client.closed, Some(CloseReason::Normal));
    assert_eq!(proxy.closed, [CloseReason::Normal; 2]);
    assert_eq!(b.connection_count(), 0, "both of the proxy's slots are freed");
    assert_eq!(b.counters().time_wait_entered, 1, "the upstream side left a TIME_WAIT record");
}

/// A request and its FIN queued while the upstream connection is still in SYN-SENT: both go
/// out after the handshake, and the answer comes back.
#[test]
fn a_request_and_fin_queued_before_the_upstream_handshake_are_delivered() {
    let request = pattern(3_000, 3);
    let response = pattern(5_000, 4);
    let (client, proxy, upstream, b) = through_proxy(&request, response.clone(), true, Instant::ZERO);
    assert!(upstream.request == request, "the request reached the upstream ({} bytes)", upstream.request.len());
    assert!(client.got == response, "the response came back whole");
    assert_eq!(client.closed, Some(CloseReason::Normal));
    assert_eq!(proxy.closed, [CloseReason::Normal; 2]);
    assert_eq!(b.connection_count(), 0);
}

/// `shutdown` in SYN-SENT on a plain connection: the data queued before it and the FIN follow
/// the handshake.
#[test]
fn shutdown_in_syn_sent_queues_the_fin_behind_the_data() {
    let mut c = iface(MAC_C, ADDR_C);
    c.listen(UPSTREAM_PORT).unwrap();
    let request = pattern(2_000, 5);
    let client = RequestClient::new(Endpoint::new(ADDR_C, UPSTREAM_PORT), &request, true, Instant::ZERO);
    let mut net = network(iface(MAC_A, ADDR_A), client, c, Responder::new(b"ok".to_vec()));
    net.run_for(Duration::from_secs(2));
    let (Node { app: client, .. }, Node { app: upstream, .. }) = net.into_nodes();
    assert!(upstream.request == request, "the request reached the upstream ({} bytes)", upstream.request.len());
    assert_eq!(client.got, b"ok");
    assert_eq!(client.closed, Some(CloseReason::Normal));
}

/// Reads nothing before `read_after` (and asks to be woken then); shuts down its side as soon
/// as the peer's FIN comes, so that its connection reaches CLOSED (through LAST-ACK) with the
/// data still unread.
struct LateReader {
    read_after: Instant,
    conn: Option<ConnId>,
    /// Polled at or after `read_after` already.
    woken: bool,
    got: Vec<u8>,
    closed: Option<(CloseReason, usize)>,
}

impl App for LateReader {
    fn on_accept(&mut self, _: &mut Interface, conn: ConnId) {
        self.conn = Some(conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        iface.shutdown(conn);
    }
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        let Some(conn) = self.conn.filter(|_| now >= self.read_after) else { return };
        self.woken = true;
        let mut buf = [0u8; 1000];
        while let Ok(n) = iface.recv(conn, &mut buf) {
            self.got.extend_from_slice(&buf[..n]);
        }
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
        self.closed = Some((reason, self.got.len()));
    }
    fn next_wakeup(&self) -> Option<Instant> {
        (self.conn.is_some() && !self.woken).then_some(self.read_after)
    }
}

#[test]
fn data_unread_at_last_ack_to_closed_stays_readable_until_read() {
    let mut c = iface(MAC_C, ADDR_C);
    c.listen(UPSTREAM_PORT).unwrap();
    let request = pattern(10_000, 6);
    let client = RequestClient::new(Endpoint::new(ADDR_C, UPSTREAM_PORT), &request, false, Instant::ZERO);
    let reader =
        LateReader { read_after: Instant::from_millis(2_000), conn: None, woken: false, got: Vec::new(), closed: None };
    let mut net = network(iface(MAC_A, ADDR_A), client, c, reader);
    net.run_for(Duration::from_secs(3));
    let (Node { app: client, .. }, Node { iface: c, app: reader }) = net.into_nodes();
    assert_eq!(client.closed, Some(CloseReason::Normal), "the client saw the whole close");
    assert!(reader.got == request, "the data stayed readable after CLOSED");
    assert_eq!(reader.closed, Some((CloseReason::Normal, request.len())), "on_closed came after the data");
    assert_eq!(c.connection_count(), 0);
}

/// Opens one connection at start and, at `second_at` (woken then), another; records when its
/// timer fired and how each connection ended. The first connection's timer is armed at the
/// handshake for `timer` later, moved once, and aborts the connection when it fires.
struct TimedClient {
    target: Endpoint,
    timer: Duration,
    second_at: Instant,
    conns: Vec<ConnId>,
    connected_at: Option<Instant>,
    fired: Vec<Instant>,
    closed: Vec<(ConnId, CloseReason)>,
}

impl App for TimedClient {
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        if self.conns.is_empty() || (self.conns.len() == 1 && now >= self.second_at) {
            self.conns.push(iface.connect(self.target).expect("connect"));
        }
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        if conn == self.conns[0] {
            let now = iface.now();
            self.connected_at = Some(now);
            assert!(iface.set_timer(conn, now + Duration::from_millis(1)));
            iface.cancel_timer(conn);
            assert!(iface.set_timer(conn, now + self.timer), "moved: one timer per connection");
        }
    }
    fn on_timer(&mut self, iface: &mut Interface, conn: ConnId) {
        self.fired.push(iface.now());
        iface.abort(conn);
    }
    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        assert!(!iface.set_timer(conn, iface.now()), "a stale handle takes no timer");
        self.closed.push((conn, reason));
    }
    fn next_wakeup(&self) -> Option<Instant> {
        (self.conns.len() == 1).then_some(self.second_at)
    }
}

#[test]
fn an_application_timer_fires_once_at_its_deadline_and_can_abort() {
    let mut c = iface(MAC_C, ADDR_C);
    c.listen(UPSTREAM_PORT).unwrap();
    let client = TimedClient {
        target: Endpoint::new(ADDR_C, UPSTREAM_PORT),
        timer: Duration::from_millis(300),
        second_at: Instant::from_millis(1_000_000),
        conns: Vec::new(),
        connected_at: None,
        fired: Vec::new(),
        closed: Vec::new(),
    };
    let mut net = network(iface(MAC_A, ADDR_A), client, c, ());
    net.run_for(Duration::from_secs(2));
    let (Node { app: client, .. }, Node { iface: c, .. }) = net.into_nodes();
    let connected = client.connected_at.expect("connected");
    assert_eq!(client.fired.len(), 1, "fired once (the cancelled deadline never)");
    let late = client.fired[0].saturating_duration_since(connected + Duration::from_millis(300));
    assert!(client.fired[0] >= connected + Duration::from_millis(300), "never early");
    assert!(late <= Duration::from_millis(2), "late by at most a tick and a step: {late:?}");
    assert_eq!(client.closed, [(client.conns[0], CloseReason::Aborted)]);
    assert_eq!(c.connection_count(), 0, "the peer was reset");
}

/// Echoes; drains at `drain_at` and resets what is left at `abort_at` (woken at both).
struct DrainingServer {
    drain_at: Instant,
    abort_at: Instant,
    /// Polled at or after `drain_at`, `abort_at` already.
    past: (bool, bool),
    accepted: usize,
    closed: Vec<CloseReason>,
}

impl App for DrainingServer {
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        if now >= self.drain_at {
            self.past.0 = true;
            if !iface.is_draining() {
                iface.drain();
            }
        }
        if now >= self.abort_at {
            self.past.1 = true;
            if iface.connection_count() > 0 {
                iface.abort_all();
            }
        }
    }
    fn next_wakeup(&self) -> Option<Instant> {
        match self.past {
            (false, _) => Some(self.drain_at),
            (true, false) => Some(self.abort_at),
            (true, true) => None,
        }
    }
    fn on_accept(&mut self, _: &mut Interface, _: ConnId) {
        self.accepted += 1;
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
        self.closed.push(reason);
    }
}

#[test]
fn a_drain_refuses_new_connections_keeps_open_ones_then_resets_them() {
    let mut c = iface(MAC_C, ADDR_C);
    c.listen(UPSTREAM_PORT).unwrap();
    let client = TimedClient {
        target: Endpoint::new(ADDR_C, UPSTREAM_PORT),
        timer: Duration::from_secs(1_000),
        second_at: Instant::from_millis(1_500),
        conns: Vec::new(),
        connected_at: None,
        fired: Vec::new(),
        closed: Vec::new(),
    };
    let server = DrainingServer {
        drain_at: Instant::from_millis(1_200),
        abort_at: Instant::from_millis(2_000),
        past: (false, false),
        accepted: 0,
        closed: Vec::new(),
    };
    let mut net = network(iface(MAC_A, ADDR_A), client, c, server);
    net.run_for(Duration::from_secs(2));
    let (Node { app: client, .. }, Node { iface: c, app: server }) = net.into_nodes();
    assert_eq!(server.accepted, 1, "nothing accepted while draining");
    assert_eq!(client.conns.len(), 2);
    assert_eq!(
        client.closed,
        [(client.conns[1], CloseReason::Refused), (client.conns[0], CloseReason::Reset)],
        "the new connection refused at once, the open one reset only at the deadline"
    );
    assert_eq!(server.closed, [CloseReason::Aborted]);
    assert_eq!(c.connection_count(), 0);
}

#[test]
fn connect_from_uses_the_chosen_port_within_the_range_once_per_destination() {
    let mut a = iface(MAC_A, ADDR_A);
    let mut c = iface(MAC_C, ADDR_C);
    c.listen(UPSTREAM_PORT).unwrap();
    let upstream = Endpoint::new(ADDR_C, UPSTREAM_PORT);
    let (lo, hi) = a.config().local_ports;
    assert_eq!(a.connect_from(lo - 1, upstream), Err(ConnectError::PortOutOfRange));
    assert_eq!(a.connect_from(0, upstream), Err(ConnectError::Unspecified));
    let id = a.connect_from(hi, upstream).expect("a free port in the range");
    assert_eq!(a.tuple(id).unwrap().local.port, hi);
    assert_eq!(a.connect_from(hi, upstream), Err(ConnectError::NoPortAvailable), "its 4-tuple is taken");
    let other = a.connect_from(hi, Endpoint::new(ADDR_C, UPSTREAM_PORT + 1)).expect("another destination");
    assert_eq!(a.tuple(other).unwrap().local.port, hi);
    let mut net = network(a, (), c, ());
    net.run_for(Duration::from_millis(100));
    let (Node { iface: a, .. }, Node { iface: c, .. }) = net.into_nodes();
    assert_eq!(a.state(id), State::Established, "the handshake completed from the chosen port");
    assert_eq!(c.counters().accepted, 1);
    assert_eq!(a.state(other), State::Closed, "nothing listens there: refused");
}
