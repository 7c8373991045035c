//! Zero heap allocations per segment in steady state, shown with a counting allocator.
//!
//! This test binary installs the test kit's counting global allocator, then drives
//! established connections and whole connection lifetimes through the core and the wire codec.

use synack_proto::sim::Pair;
use synack_proto::tcp::TcpConfig;
use synack_testkit::counting_alloc::{thread_allocations, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

// Per thread: the test harness's own threads allocate while a test runs (seen as a handful of
// stray allocations on a loaded machine); only the thread that drives the stack is measured.
fn allocations() -> u64 {
    thread_allocations()
}

// Both checks live in one test; the count is this thread's alone.
#[test]
fn zero_allocations_per_segment_in_steady_state() {
    // The counter works: one allocation is seen, so a zero below is a measurement, not a
    // counting allocator that was never installed.
    let before = allocations();
    let probe = std::hint::black_box(vec![0u8; 64]);
    assert_eq!(allocations() - before, 1, "the counting allocator sees allocations");
    drop(probe);

    // Established data path: 10 MB through a pair, with out-of-order-free steady flow.
    let config = TcpConfig { send_buffer_len: 256 * 1024, recv_buffer_len: 256 * 1024, ..TcpConfig::default() };
    let mut pair = Pair::new(config);
    pair.open();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mut step = |pair: &mut Pair| {
        let _ = pair.client.send(&chunk);
        let _ = pair.server.send(&chunk[..512]);
        pair.exchange();
        while pair.server.recv(&mut sink).is_ok() {}
        while pair.client.recv(&mut sink).is_ok() {}
    };
    for _ in 0..100 {
        step(&mut pair); // warm-up
    }
    let before = allocations();
    let segments_before = pair.segments;
    for _ in 0..640 {
        step(&mut pair);
    }
    let data_allocs = allocations() - before;
    let data_segments = pair.segments - segments_before;

    // Whole lifecycles through reused connections: handshake, request, response, close,
    // TIME_WAIT expiry.
    let mut pair = Pair::new(TcpConfig { send_buffer_len: 4096, recv_buffer_len: 4096, ..TcpConfig::default() });
    let mut scratch = vec![0u8; 4096];
    pair.lifecycle(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", &mut scratch);
    let before = allocations();
    let segments_before = pair.segments;
    for _ in 0..10_000 {
        pair.lifecycle(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", &mut scratch);
    }
    let lifecycle_allocs = allocations() - before;
    let lifecycle_segments = pair.segments - segments_before;

    eprintln!("data path: {data_segments} segments, {data_allocs} allocations");
    eprintln!("lifecycles: 10000 lifecycles, {lifecycle_segments} segments, {lifecycle_allocs} allocations");
    assert!(data_segments > 5_000, "the data path carried segments ({data_segments})");
    assert_eq!(pair.rejected, 0);
    assert_eq!(data_allocs, 0, "allocations on the established data path");
    assert!(lifecycle_segments >= 60_000, "about six segments per lifecycle ({lifecycle_segments})");
    assert_eq!(lifecycle_allocs, 0, "allocations across connection lifetimes");

    zero_allocations_on_the_proxy_path_in_steady_state();
    zero_allocations_lending_and_returning_rings_in_steady_state();
    zero_allocations_in_the_dispatch_of_a_worker_among_several();
}

// ----- The proxy path: client -> proxy -> upstream, through three interfaces -----

mod proxy_path {
    use core::time::Duration;
    use std::net::Ipv4Addr;

    use synack_proto::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig, RxAction, TxSink};
    use synack_proto::tcp::{Endpoint, IsnGenerator, TcpConfig};
    use synack_proto::time::Instant;
    use synack_proto::wire::EthernetAddress;

    const FRAME: usize = 2048;
    const SLOTS: usize = 4096;
    const PROXY_PORT: u16 = 8000;
    const UPSTREAM_PORT: u16 = 80;

    /// Frames sent by one host in one step, in buffers allocated once.
    pub struct Outbox {
        pub bufs: Vec<Vec<u8>>,
        pub lens: Vec<usize>,
        pub n: usize,
    }

    impl Outbox {
        pub fn new() -> Outbox {
            Outbox { bufs: (0..SLOTS).map(|_| vec![0u8; FRAME]).collect(), lens: vec![0; SLOTS], n: 0 }
        }

        fn empty() -> Outbox {
            Outbox { bufs: Vec::new(), lens: Vec::new(), n: 0 }
        }
    }

    impl TxSink for Outbox {
        fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool> {
            if self.n == self.bufs.len() {
                return None;
            }
            let Some(len) = fill(&mut self.bufs[self.n]) else { return Some(false) };
            self.lens[self.n] = len;
            self.n += 1;
            Some(true)
        }
    }

    pub fn config(last: u8) -> InterfaceConfig {
        let mut c = InterfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, last]), Ipv4Addr::new(198, 18, 0, last));
        c.address_mode = AddressMode::Dedicated;
        c.max_connections = 16;
        c.max_time_wait = 16;
        c.tcp = TcpConfig { send_buffer_len: 64 * 1024, recv_buffer_len: 64 * 1024, ..TcpConfig::default() };
        c
    }

    /// Sends 16 KiB per poll and reads everything back.
    pub struct Client {
        pub conn: Option<ConnId>,
        pub received: u64,
        chunk: Vec<u8>,
        buf: Vec<u8>,
    }

    impl Client {
        pub fn new() -> Client {
            Client { conn: None, received: 0, chunk: vec![0x5a; 16 * 1024], buf: vec![0; 64 * 1024] }
        }
    }

    impl App for Client {
        fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
            match self.conn {
                None => {
                    self.conn = Some(iface.connect(Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), PROXY_PORT)).unwrap())
                }
                Some(conn) => {
                    let _ = iface.send(conn, &self.chunk);
                    while let Ok(n) = iface.recv(conn, &mut self.buf) {
                        self.received += n as u64;
                    }
                }
            }
        }
    }

    /// Splices each accepted connection to a new one towards the upstream, both ways, and
    /// re-arms the client's idle timer on every move: state in arrays sized at start.
    pub struct Proxy {
        peer: Vec<Option<ConnId>>,
        pub moved: u64,
    }

    impl Proxy {
        pub fn new() -> Proxy {
            Proxy { peer: vec![None; 16], moved: 0 }
        }
        fn pump(&mut self, iface: &mut Interface, from: ConnId) {
            let Some(to) = self.peer[from.index() as usize] else { return };
            let moved = iface.splice(from, to, usize::MAX).unwrap_or(0);
            if moved > 0 {
                self.moved += moved as u64;
                let now = iface.now();
                iface.set_timer(from, now + Duration::from_secs(60));
            }
        }
    }

    impl App for Proxy {
        fn on_accept(&mut self, iface: &mut Interface, client: ConnId) {
            let up = iface.connect(Endpoint::new(Ipv4Addr::new(198, 18, 0, 3), UPSTREAM_PORT)).unwrap();
            self.peer[client.index() as usize] = Some(up);
            self.peer[up.index() as usize] = Some(client);
        }
        fn on_connected(&mut self, iface: &mut Interface, up: ConnId) {
            if let Some(client) = self.peer[up.index() as usize] {
                self.pump(iface, client);
            }
        }
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            self.pump(iface, conn);
        }
        fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
            if let Some(from) = self.peer[conn.index() as usize] {
                self.pump(iface, from);
            }
        }
    }

    /// Echoes.
    pub struct Echo;

    impl App for Echo {
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            let _ = iface.splice(conn, conn, usize::MAX);
        }
        fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
            let _ = iface.splice(conn, conn, usize::MAX);
        }
    }

    /// Three hosts on a switch: 198.18.0.1 client, .2 proxy, .3 upstream.
    pub struct Net {
        pub ifaces: [Interface; 3],
        out: [Outbox; 3],
        replies: Outbox,
        pub now: Instant,
    }

    impl Net {
        pub fn new() -> Net {
            let isn = IsnGenerator::with_key([7, 8]);
            let mut ifaces =
                [Interface::new(config(1), isn), Interface::new(config(2), isn), Interface::new(config(3), isn)];
            ifaces[1].listen(PROXY_PORT).unwrap();
            ifaces[2].listen(UPSTREAM_PORT).unwrap();
            Net {
                ifaces,
                out: [Outbox::new(), Outbox::new(), Outbox::new()],
                replies: Outbox::new(),
                now: Instant::from_millis(1_000),
            }
        }

        fn deliver(ifaces: &mut [Interface; 3], now: Instant, from: &mut Outbox, replies: &mut Outbox) {
            for i in 0..from.n {
                let len = from.lens[i];
                let dst = EthernetAddress(from.bufs[i][..6].try_into().unwrap());
                for iface in ifaces.iter_mut() {
                    let mac = iface.config().mac;
                    let src = &from.bufs[i][6..12];
                    if (mac == dst || dst.is_broadcast()) && src != mac.0 {
                        if let RxAction::Transmit(n) = iface.receive(now, &mut from.bufs[i], len) {
                            let _ = replies.send_with(|buf| {
                                buf[..n].copy_from_slice(&from.bufs[i][..n]);
                                Some(n)
                            });
                        }
                    }
                }
            }
            from.n = 0;
        }

        pub fn step(&mut self, apps: (&mut Client, &mut Proxy, &mut Echo)) {
            let now = self.now;
            self.ifaces[0].poll(now, apps.0, &mut self.out[0]);
            self.ifaces[1].poll(now, apps.1, &mut self.out[1]);
            self.ifaces[2].poll(now, apps.2, &mut self.out[2]);
            for out in self.out.iter_mut() {
                Self::deliver(&mut self.ifaces, now, out, &mut self.replies);
            }
            // The in-place replies (ARP) of this step; a reply to a reply is not expected (an
            // empty sink takes none).
            let mut replies = core::mem::replace(&mut self.replies, Outbox::empty());
            Self::deliver(&mut self.ifaces, now, &mut replies, &mut Outbox::empty());
            self.replies = replies;
            self.now += Duration::from_micros(100);
        }
    }
}

/// A proxy splicing a client's stream to an upstream and the upstream's echo back, with an
/// application timer re-armed on every move: no allocation in steady state. (Called from the
/// one test of this binary: counts seen in a test running beside another are not reliable.)
fn zero_allocations_on_the_proxy_path_in_steady_state() {
    use proxy_path::{Client, Echo, Net, Proxy};
    let mut net = Net::new();
    let (mut client, mut proxy, mut echo) = (Client::new(), Proxy::new(), Echo);
    for _ in 0..2_000 {
        net.step((&mut client, &mut proxy, &mut echo)); // handshakes, ARP, slow start
    }
    assert!(client.received > 0, "the echo came back through the proxy");
    let (received, moved) = (client.received, proxy.moved);
    let before = allocations();
    for _ in 0..2_000 {
        net.step((&mut client, &mut proxy, &mut echo));
    }
    let allocs = allocations() - before;
    let (received, moved) = (client.received - received, proxy.moved - moved);
    eprintln!("proxy path: {moved} bytes spliced, {received} bytes back at the client, {allocs} allocations");
    assert!(received > 10_000_000, "data flowed through the proxy both ways ({received} bytes)");
    assert_eq!(allocs, 0, "allocations on the proxy path");
}

// ----- Ring memory lent and given back: request and answer, one at a time -----

mod ring_path {
    use std::net::Ipv4Addr;

    use super::proxy_path::Outbox;
    use synack_proto::iface::{App, ConnId, Interface, RxAction};
    use synack_proto::tcp::Endpoint;
    use synack_proto::time::Instant;

    /// Sends a request, reads the whole echo, sends the next: between two requests the
    /// connection is idle and both ends give their rings back.
    pub struct PingPong {
        pub conn: Option<ConnId>,
        pub rounds: u64,
        waiting: usize,
        buf: [u8; 512],
    }

    const REQUEST: &[u8; 100] = &[0x42; 100];

    impl PingPong {
        pub fn new() -> PingPong {
            PingPong { conn: None, rounds: 0, waiting: 0, buf: [0; 512] }
        }
        fn ask(&mut self, iface: &mut Interface, conn: ConnId) {
            assert_eq!(iface.send(conn, REQUEST), Ok(REQUEST.len()), "a ring is lent for the request");
            self.waiting = REQUEST.len();
        }
    }

    impl App for PingPong {
        fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
            if self.conn.is_none() {
                self.conn = Some(iface.connect(Endpoint::new(Ipv4Addr::new(198, 18, 0, 3), 80)).unwrap());
            }
        }
        fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
            self.ask(iface, conn);
        }
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            while let Ok(n) = iface.recv(conn, &mut self.buf) {
                self.waiting -= n;
            }
            if self.waiting == 0 {
                self.rounds += 1;
                self.ask(iface, conn);
            }
        }
    }

    /// Hands `from`'s frames to `to`, and the replies `to` writes in place (ARP) to `back`.
    pub fn deliver(from: &mut Outbox, to: &mut Interface, back: &mut Interface, now: Instant) {
        for i in 0..from.n {
            if let RxAction::Transmit(n) = to.receive(now, &mut from.bufs[i], from.lens[i]) {
                let _ = back.receive(now, &mut from.bufs[i], n);
            }
        }
        from.n = 0;
    }
}

/// One request and its echo at a time: both ends are lent a receive and a send ring for each
/// exchange and give them back once it is read and acknowledged, with no allocation in steady
/// state (the pools only grow to their high-water mark). (Called from the one test of this
/// binary.)
fn zero_allocations_lending_and_returning_rings_in_steady_state() {
    use core::time::Duration;
    use proxy_path::{config, Echo, Outbox};
    use ring_path::{deliver, PingPong};
    use synack_proto::iface::Interface;
    use synack_proto::tcp::IsnGenerator;
    use synack_proto::time::Instant;

    let isn = IsnGenerator::with_key([7, 8]);
    let mut client = Interface::new(config(1), isn);
    let mut server = Interface::new(config(3), isn);
    server.listen(80).unwrap();
    let (mut app, mut out_client, mut out_server) = (PingPong::new(), Outbox::new(), Outbox::new());
    let mut now = Instant::from_millis(1_000);
    // The server's receive ring: lent when a request arrives, given back by the poll that
    // echoes it.
    let given_back = std::cell::Cell::new(0u64);
    let mut step = |client: &mut Interface, server: &mut Interface, app: &mut PingPong, now: Instant| {
        client.poll(now, app, &mut out_client);
        deliver(&mut out_client, server, client, now);
        let lent = server.ring_stats().recv.in_use;
        server.poll(now, &mut Echo, &mut out_server);
        if server.ring_stats().recv.in_use < lent {
            given_back.set(given_back.get() + 1);
        }
        deliver(&mut out_server, client, server, now);
    };
    for _ in 0..1_000 {
        step(&mut client, &mut server, &mut app, now); // ARP, handshake, the pools' growth
        now += Duration::from_micros(100);
    }
    assert!(app.rounds > 0, "the echo came back");
    let rounds = app.rounds;
    given_back.set(0);
    let before = allocations();
    for _ in 0..20_000 {
        step(&mut client, &mut server, &mut app, now);
        now += Duration::from_micros(100);
    }
    let allocs = allocations() - before;
    let rounds = app.rounds - rounds;
    let given_back = given_back.get();
    let rings = (client.ring_stats(), server.ring_stats());
    eprintln!("rings: {rounds} exchanges, {given_back} receive rings given back, {allocs} allocations, {rings:?}");
    assert!(rounds > 5_000, "exchanges went on ({rounds})");
    assert!(given_back >= rounds, "the server gave its receive ring back after each exchange ({given_back})");
    assert_eq!(allocs, 0, "allocations lending and giving back rings");
}

// ----- The per-frame step of a worker among several (iface::dispatch) -----

mod dispatch_path {
    use std::net::Ipv4Addr;

    use super::proxy_path::Outbox;
    use synack_proto::iface::dispatch::{HandoffQueue, Offer};
    use synack_proto::iface::TxSink;
    use synack_proto::wire::{
        emit_header, ip_protocol, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
        EthernetRepr, Ipv4Packet, Ipv4Repr, TcpFlags, TcpRepr,
    };

    pub const HOST_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    pub const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// A hand-off queue in an [`Outbox`]'s buffers, emptied by the test (`n = 0`); counts what
    /// it was offered.
    pub struct Queue {
        pub slots: Outbox,
        pub owners: u64,
        pub copies: u64,
    }

    impl HandoffQueue for Queue {
        fn offer(&mut self, _to: usize, frame: &[u8], why: Offer) -> bool {
            match why {
                Offer::Owner => self.owners += 1,
                Offer::Copy => self.copies += 1,
            }
            let queued = self.slots.send_with(|buf| {
                buf[..frame.len()].copy_from_slice(frame);
                Some(frame.len())
            });
            queued == Some(true)
        }
    }

    /// A SYN from the peer to the host's `port`.
    pub fn syn_to(port: u16) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: 5555,
            dst_port: port,
            seq: 1,
            flags: TcpFlags::SYN,
            window: 1000,
            ..TcpRepr::default()
        };
        let mut buf = vec![0u8; 14 + 20 + repr.header_len()];
        EthernetRepr { src_addr: PEER_MAC, dst_addr: HOST_MAC, ethertype: EtherType::IPV4 }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
        Ipv4Repr {
            src_addr: PEER,
            dst_addr: HOST,
            protocol: ip_protocol::TCP,
            payload_len: repr.header_len(),
            ttl: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]));
        emit_header(&mut buf[34..], &repr, PEER, HOST, 0);
        buf
    }

    /// An ARP reply from the peer (unasked for: counted, not learned).
    pub fn arp_reply() -> Vec<u8> {
        let mut buf = vec![0u8; 42];
        EthernetRepr { src_addr: PEER_MAC, dst_addr: HOST_MAC, ethertype: EtherType::ARP }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: PEER_MAC,
            source_protocol_addr: PEER,
            target_hardware_addr: HOST_MAC,
            target_protocol_addr: HOST,
        }
        .emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
        buf
    }
}

/// Worker 0 of three routes a frame for worker 1's port (handed off), one for its own (an RST
/// in place) and an ARP reply (copied to both others, taken here), then takes the frames it
/// handed off as their owner would (an RST copied into a TX frame): no allocation in
/// `dispatch` or `receive_handed_off`. (Called from the one test of this binary.)
fn zero_allocations_in_the_dispatch_of_a_worker_among_several() {
    use dispatch_path::{arp_reply, syn_to, Queue, HOST, HOST_MAC};
    use proxy_path::Outbox;
    use synack_proto::iface::dispatch::{dispatch, receive_handed_off, Dispatched};
    use synack_proto::iface::steering::PortOwnership;
    use synack_proto::iface::{AddressMode, Interface, InterfaceConfig, RxAction};
    use synack_proto::tcp::IsnGenerator;
    use synack_proto::time::Instant;

    let mut config = InterfaceConfig::new(HOST_MAC, HOST);
    config.address_mode = AddressMode::Dedicated;
    // Three workers over 61000-65535: worker 0 owns 61000-62511, worker 1 62512-64023.
    let ownership = PortOwnership { me: 0, workers: 3, range: config.local_ports };
    let mut iface = Interface::new(config, IsnGenerator::with_key([1, 2]));
    let frames = [syn_to(64000), syn_to(61001), arp_reply()];
    let mut queue = Queue { slots: Outbox::new(), owners: 0, copies: 0 };
    let (mut buf, mut tx) = (vec![0u8; 2048], Outbox::new());
    let (mut in_place, mut sent) = (0u64, 0u64);
    let now = Instant::from_millis(1);
    let mut round = |iface: &mut Interface| {
        for frame in &frames {
            buf[..frame.len()].copy_from_slice(frame);
            if let Dispatched::Received(RxAction::Transmit(_)) =
                dispatch(&ownership, iface, now, &mut buf, frame.len(), &mut queue)
            {
                in_place += 1;
            }
        }
        let handed = &mut queue.slots;
        for i in 0..handed.n {
            assert!(receive_handed_off(iface, now, &mut handed.bufs[i], handed.lens[i], &mut tx));
        }
        sent += tx.n as u64;
        (handed.n, tx.n) = (0, 0);
    };
    for _ in 0..100 {
        round(&mut iface); // warm-up
    }
    let before = allocations();
    for _ in 0..10_000 {
        round(&mut iface);
    }
    let allocs = allocations() - before;
    eprintln!(
        "dispatch: {} handed off, {} copies, {in_place} replies in place, {sent} replies sent, {allocs} allocations",
        queue.owners, queue.copies
    );
    assert_eq!((queue.owners, queue.copies), (10_100, 20_200), "one hand-off and two copies a round");
    assert_eq!((in_place, sent), (10_100, 10_100), "an RST in place, an RST for the handed-off SYN");
    assert_eq!(allocs, 0, "allocations in the per-frame step of a worker among several");
}
