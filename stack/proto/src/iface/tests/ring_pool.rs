//! The ring pool: an idle connection holds no ring, and a pool that runs short holds data
//! back (a zero window, a refused `send`) without losing a byte, until a ring frees.

use super::*;

/// Send and receive rings of the test configuration (16 KiB each): a pool of one pair.
const ONE_PAIR: usize = 32 * 1024;

/// A payload per connection, different for each, so that bytes crossing between rings show.
fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 7 + i * 101 + j / 251) as u8).collect()
}

/// Opens one connection per payload, sends it and shuts down; counts the `send`s that took
/// nothing before the connection sent its first byte.
struct Sender {
    payloads: Vec<Vec<u8>>,
    conns: Vec<ConnId>,
    sent: Vec<usize>,
    refused_first: Vec<usize>,
    closed: Vec<CloseReason>,
}

impl Sender {
    fn new(payloads: Vec<Vec<u8>>) -> Sender {
        let n = payloads.len();
        Sender { payloads, conns: Vec::new(), sent: vec![0; n], refused_first: vec![0; n], closed: Vec::new() }
    }

    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        let Some(i) = self.conns.iter().position(|&c| c == conn) else { return };
        while self.sent[i] < self.payloads[i].len() {
            match iface.send(conn, &self.payloads[i][self.sent[i]..]) {
                Ok(n) => self.sent[i] += n,
                Err(_) => {
                    if self.sent[i] == 0 {
                        self.refused_first[i] += 1;
                    }
                    return;
                }
            }
        }
        iface.shutdown(conn);
    }
}

impl App for Sender {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        while self.conns.len() < self.payloads.len() {
            self.conns.push(iface.connect(Endpoint::new(ADDR_B, PORT)).expect("connect"));
        }
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        self.push(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.push(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        iface.close(conn);
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
        self.closed.push(reason);
    }
}

/// Keeps what it reads per connection; reads only while `reading`; closes after the peer's
/// FIN once everything is read.
#[derive(Default)]
struct Reader {
    reading: bool,
    conns: Vec<ConnId>,
    got: HashMap<ConnId, Vec<u8>>,
    peer_closed: Vec<ConnId>,
}

impl Reader {
    fn drain(&mut self, iface: &mut Interface, conn: ConnId) {
        if !self.reading {
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = iface.recv(conn, &mut buf) {
            self.got.entry(conn).or_default().extend_from_slice(&buf[..n]);
        }
        if self.peer_closed.contains(&conn) && iface.recv_queue_len(conn) == 0 {
            self.peer_closed.retain(|&c| c != conn);
            iface.close(conn);
        }
    }
}

impl App for Reader {
    fn on_accept(&mut self, _: &mut Interface, conn: ConnId) {
        self.conns.push(conn);
    }
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        for conn in self.conns.clone() {
            self.drain(iface, conn);
        }
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.drain(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.peer_closed.push(conn);
        self.drain(iface, conn);
    }
}

/// Sends a request once connected, reads the answer, and keeps the connection open.
#[derive(Default)]
struct Requester {
    conn: Option<ConnId>,
    got: Vec<u8>,
}

impl App for Requester {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        if self.conn.is_none() {
            self.conn = Some(iface.connect(Endpoint::new(ADDR_B, PORT)).expect("connect"));
        }
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        assert_eq!(iface.send(conn, b"GET / HTTP/1.1\r\n\r\n"), Ok(18));
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let mut buf = [0u8; 64];
        while let Ok(n) = iface.recv(conn, &mut buf) {
            self.got.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn an_idle_connection_holds_no_ring_once_its_exchange_is_read_and_acknowledged() {
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    let mut net = network(iface(MAC_A, ADDR_A), Requester::default(), b, Echo::default());
    net.run_for(Duration::from_secs(2));
    let (a, b) = (&net.a.iface, &net.b.iface);
    assert_eq!(net.a.app.got, b"GET / HTTP/1.1\r\n\r\n", "the request came back");
    assert_eq!((a.connection_count(), b.connection_count()), (1, 1), "the connection stays open, idle");
    assert_eq!(a.state(net.a.app.conn.unwrap()), State::Established);
    for rings in [a.ring_stats(), b.ring_stats()] {
        assert_eq!((rings.send.in_use, rings.recv.in_use), (0, 0), "every ring back in the pool: {rings:?}");
        assert_eq!((rings.send.created, rings.recv.created), (1, 1), "a ring of each was lent: {rings:?}");
    }
}

/// The TCP segments B sent (not its ARP), with when.
fn tcp_from_b<A: App, B: App>(net: &Network<A, B>) -> impl Iterator<Item = (Instant, TcpRepr)> + '_ {
    net.captured()
        .iter()
        .filter(|c| !c.from_a && c.frame[12..14] == [8, 0] && c.frame[23] == 6)
        .map(|c| (c.at, parse_tcp(&c.frame).1))
}

#[test]
fn data_that_finds_no_receive_ring_is_refused_with_a_zero_window_then_delivered_intact() {
    let mut c = config(MAC_B, ADDR_B);
    c.ring_pool_bytes = ONE_PAIR;
    let mut b = Interface::new(c, IsnGenerator::with_key([3, 4]));
    b.listen(PORT).unwrap();
    let payloads = vec![payload(0, 10_000), payload(1, 10_000)];
    let sender = Sender::new(payloads.clone());
    let mut net = network(iface(MAC_A, ADDR_A), sender, b, Reader::default());
    net.capture();
    // The reader reads nothing yet: the first connection's data holds the only receive ring.
    net.run_for(Duration::from_secs(2));
    let b = &net.b.iface;
    let conns = net.b.app.conns.clone();
    assert_eq!(conns.len(), 2);
    let queued: Vec<usize> = conns.iter().map(|&c| b.recv_queue_len(c)).collect();
    let (holder, starved) = if queued[0] > 0 { (conns[0], conns[1]) } else { (conns[1], conns[0]) };
    assert_eq!((b.recv_queue_len(holder), b.recv_queue_len(starved)), (10_000, 0), "queued: {queued:?}");
    assert!(b.counters().rx_no_ring > 0, "{}", b.counters());
    assert_eq!(b.ring_stats().recv, PoolStats { in_use: 1, free: 0, created: 1 });
    let starved_port = b.tuple(starved).unwrap().remote.port;
    let zero_window_acks = tcp_from_b(&net)
        .filter(|(_, r)| r.dst_port == starved_port && r.flags.contains(TcpFlags::ACK) && r.window == 0)
        .count();
    assert!(zero_window_acks > 0, "the refused data was answered with a zero window");

    // Reading the first connection frees the ring, and the second one announces its window
    // open at once rather than at the peer's next probe (probes back off to minutes); its data,
    // sent before the window closed, comes again when the peer's retransmission timer says.
    net.b.app.reading = true;
    let (freed_at, before) = (net.now, tcp_from_b(&net).count());
    net.flush();
    net.run_for(Duration::from_millis(1));
    let first = tcp_from_b(&net).skip(before).find(|(_, r)| r.dst_port == starved_port);
    let (at, update) = first.expect("an ACK announced the window open again");
    assert_eq!(at, freed_at, "at once");
    assert!(update.window > 0 && update.flags == TcpFlags::ACK, "{update:?}");
    net.run_for(Duration::from_secs(60));
    let (sender, reader) = (&net.a.app, &net.b.app);
    for (i, conn) in conns.iter().enumerate() {
        let sent_on = sender.payloads.iter().position(|p| p[..] == reader.got[conn][..]);
        assert!(sent_on.is_some(), "connection {i}: {} bytes, not one payload intact", reader.got[conn].len());
    }
    assert_ne!(reader.got[&conns[0]], reader.got[&conns[1]], "each payload arrived once");
    assert_eq!(sender.closed, vec![CloseReason::Normal; 2]);
    assert_eq!(net.b.iface.ring_stats().recv.in_use, 0);
}

#[test]
fn a_send_that_finds_no_send_ring_takes_nothing_and_is_woken_when_one_frees() {
    let mut c = config(MAC_A, ADDR_A);
    c.ring_pool_bytes = ONE_PAIR;
    let a = Interface::new(c, IsnGenerator::with_key([1, 2]));
    let mut b = iface(MAC_B, ADDR_B);
    b.listen(PORT).unwrap();
    // Each payload fills the 16 KiB ring more than twice: the ring stays lent until all of it
    // is acknowledged.
    let payloads = vec![payload(0, 40_000), payload(1, 40_000)];
    let reader = Reader { reading: true, ..Reader::default() };
    let mut net = network(a, Sender::new(payloads.clone()), b, reader);
    net.run_for(Duration::from_secs(60));
    let (sender, reader) = (&net.a.app, &net.b.app);
    assert_eq!(sender.refused_first.iter().filter(|&&n| n > 0).count(), 1, "one waited: {:?}", sender.refused_first);
    assert!(net.a.iface.counters().tx_no_ring > 0);
    let mut got: Vec<&Vec<u8>> = reader.got.values().collect();
    got.sort();
    let mut want: Vec<&Vec<u8>> = payloads.iter().collect();
    want.sort();
    assert_eq!(got, want, "both payloads arrived byte for byte");
    assert_eq!(sender.closed, vec![CloseReason::Normal; 2]);
    let rings = net.a.iface.ring_stats();
    assert_eq!((rings.send.created, rings.send.in_use), (1, 0), "one ring served both, and is back: {rings:?}");
}
