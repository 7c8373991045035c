//! `synack proxy`: an L4 TCP proxy written only against the public `synack` API, as an
//! example for embedders.
//!
//! Each accepted client connection gets a connection to an upstream (round-robin or by a hash
//! of the client's address). Bytes are spliced ring to ring ([`Interface::splice`]), only as
//! many as the other side's send ring can take: a slow reader closes its sender's window, and
//! [`App::on_writable`] resumes the copy, so memory is bounded by the rings. A FIN is
//! forwarded once the data in front of it is; an RST (or any abnormal end) on one side resets
//! the other. The client's bytes are not moved before the upstream handshake completes, so an
//! upstream that refuses, has no route or does not answer within the connect timeout (an
//! application timer) is replaced by the next one; when none is left the client is reset.
//! Idle pairs are reset after the idle timeout (the client's timer, re-armed lazily).
//!
//! Per-connection state lives in an array indexed by the connection's slab index, sized at
//! start: nothing allocates while proxying.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;
use synack::iface::{App, ConnId, Interface};
use synack::runtime::Runtime;
use synack::tcp::{CloseReason, Endpoint};
use synack::time::Instant;

use crate::{stats, Common};

/// How an upstream is picked for a new client.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Balance {
    /// The next upstream in turn (per worker).
    RoundRobin,
    /// By a hash of the client's address (a client keeps its upstream while all are up).
    Hash,
}

/// `synack proxy` options besides the common ones.
#[derive(clap::Args, Clone, Debug)]
pub struct ProxyArgs {
    /// Ports to accept on, e.g. `80` or `80,8080`.
    #[arg(long, value_delimiter = ',', required = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub listen: Vec<u16>,
    /// Upstreams, IP:PORT[,IP:PORT...].
    #[arg(long, value_delimiter = ',', required = true)]
    pub upstream: Vec<SocketAddrV4>,
    /// How an upstream is chosen; a failed one is followed by the next in the list.
    #[arg(long, value_enum, default_value_t = Balance::RoundRobin)]
    pub balance: Balance,
    /// An upstream that has not completed its handshake after this long is given up (the
    /// next one is tried, or the client reset).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,
    /// A pair with no byte moving either way for this long is reset; 0: never.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_s: u64,
    /// On SIGTERM or SIGINT: stop accepting, let open connections finish for this long, then
    /// reset them. A second signal stops at once.
    #[arg(long, default_value_t = 10)]
    pub drain_s: u64,
    /// The gateway for upstreams off the interface's subnet.
    #[arg(long)]
    pub gateway: Option<std::net::Ipv4Addr>,
}

/// What the proxy counts, per worker, published for the main thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    pub accepted: u64,
    pub upstream_connected: u64,
    /// Upstreams that refused, had no route, or could not be opened.
    pub upstream_failed: u64,
    /// Upstreams that did not answer within the connect timeout.
    pub upstream_timed_out: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
    /// Clients and upstreams that ended their connection abnormally (an RST, mostly).
    pub resets_from_client: u64,
    pub resets_from_upstream: u64,
    /// Connections we reset: clients (no upstream left, the upstream reset, idle) and
    /// upstreams (the client reset, idle).
    pub resets_to_client: u64,
    pub resets_to_upstream: u64,
    pub idle_closed: u64,
}

const COUNTERS: usize = 11;

impl ProxyCounters {
    fn to_array(self) -> [u64; COUNTERS] {
        [
            self.accepted,
            self.upstream_connected,
            self.upstream_failed,
            self.upstream_timed_out,
            self.bytes_to_upstream,
            self.bytes_to_client,
            self.resets_from_client,
            self.resets_from_upstream,
            self.resets_to_client,
            self.resets_to_upstream,
            self.idle_closed,
        ]
    }

    fn from_array(a: [u64; COUNTERS]) -> ProxyCounters {
        ProxyCounters {
            accepted: a[0],
            upstream_connected: a[1],
            upstream_failed: a[2],
            upstream_timed_out: a[3],
            bytes_to_upstream: a[4],
            bytes_to_client: a[5],
            resets_from_client: a[6],
            resets_from_upstream: a[7],
            resets_to_client: a[8],
            resets_to_upstream: a[9],
            idle_closed: a[10],
        }
    }
}

impl std::fmt::Display for ProxyCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {} upstream_connected {} upstream_failed {} upstream_timed_out {} bytes_to_upstream {} \
             bytes_to_client {} resets_from_client {} resets_from_upstream {} resets_to_client {} \
             resets_to_upstream {} idle_closed {}",
            self.accepted,
            self.upstream_connected,
            self.upstream_failed,
            self.upstream_timed_out,
            self.bytes_to_upstream,
            self.bytes_to_client,
            self.resets_from_client,
            self.resets_from_upstream,
            self.resets_to_client,
            self.resets_to_upstream,
            self.idle_closed
        )
    }
}

/// A worker's counters as the main thread reads them (plain relaxed stores on the worker's
/// side, once per poll: no locked instruction per event).
#[derive(Debug, Default)]
pub struct SharedCounters([AtomicU64; COUNTERS]);

impl SharedCounters {
    fn publish(&self, c: &ProxyCounters) {
        for (slot, v) in self.0.iter().zip(c.to_array()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    pub fn read(&self) -> ProxyCounters {
        ProxyCounters::from_array(core::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// One connection of a pair.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    /// This connection (`None`: the slot is not ours, or its pair is gone).
    id: Option<ConnId>,
    /// The other connection of the pair, while it is open.
    peer: Option<ConnId>,
    upstream: bool,
    /// An upstream's handshake completed (a client's is, when accepted).
    connected: bool,
    /// Its FIN arrived.
    eof: bool,
    /// We forwarded a FIN to it.
    shut: bool,
    /// A client's upstreams tried so far, from `base` on in the list.
    attempts: u32,
    base: u32,
    /// A client's last byte moved either way (for the idle timeout).
    last_active: Instant,
}

/// The proxy application of one worker.
pub struct Proxy {
    upstreams: Vec<Endpoint>,
    balance: Balance,
    next: usize,
    connect_timeout: Duration,
    idle_timeout: Option<Duration>,
    sides: Vec<Side>,
    counters: ProxyCounters,
    shared: Arc<SharedCounters>,
}

impl Proxy {
    /// A proxy for up to `max_connections` connections (clients and upstreams together).
    pub fn new(args: &ProxyArgs, max_connections: usize, first: usize, shared: Arc<SharedCounters>) -> Proxy {
        Proxy {
            upstreams: args.upstream.iter().map(|u| Endpoint::new(*u.ip(), u.port())).collect(),
            balance: args.balance,
            next: first,
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            idle_timeout: (args.idle_timeout_s > 0).then(|| Duration::from_secs(args.idle_timeout_s)),
            sides: vec![Side::default(); max_connections],
            counters: ProxyCounters::default(),
            shared,
        }
    }

    fn side(&mut self, conn: ConnId) -> Option<&mut Side> {
        self.sides.get_mut(conn.index() as usize).filter(|s| s.id == Some(conn))
    }

    /// Opens the client's next upstream; resets the client when every one was tried.
    fn connect_upstream(&mut self, iface: &mut Interface, client: ConnId) {
        let n = self.upstreams.len();
        loop {
            let Some(side) = self.side(client) else { return };
            if side.attempts as usize >= n {
                side.peer = None;
                self.counters.resets_to_client += 1;
                iface.abort(client);
                return;
            }
            let attempt = side.attempts as usize;
            side.attempts += 1;
            let index = (side.base as usize + attempt) % n;
            let target = self.upstreams[index];
            match iface.connect(target) {
                Ok(up) => {
                    if let Some(side) = self.side(client) {
                        side.peer = Some(up);
                    }
                    self.sides[up.index() as usize] = Side {
                        id: Some(up),
                        peer: Some(client),
                        upstream: true,
                        last_active: iface.now(),
                        ..Side::default()
                    };
                    iface.set_timer(up, iface.now() + self.connect_timeout);
                    return;
                }
                Err(_) => self.counters.upstream_failed += 1,
            }
        }
    }

    /// Moves what `to` can take of `from`'s data, and forwards `from`'s FIN once its data
    /// is through. Nothing moves before the upstream's handshake (the client's bytes must
    /// stay replayable to another upstream).
    fn pump(&mut self, iface: &mut Interface, from: ConnId) {
        let Some(side) = self.side(from).copied() else { return };
        let Some(to) = side.peer else { return };
        let Some(other) = self.side(to).copied() else { return };
        let (client, upstream) = if side.upstream { (to, from) } else { (from, to) };
        if !self.side(upstream).is_some_and(|s| s.connected) {
            return;
        }
        let moved = iface.splice(from, to, usize::MAX).unwrap_or(0);
        if moved > 0 {
            if side.upstream {
                self.counters.bytes_to_client += moved as u64;
            } else {
                self.counters.bytes_to_upstream += moved as u64;
            }
            let now = iface.now();
            if let Some(c) = self.side(client) {
                c.last_active = now;
            }
        }
        if side.eof && !other.shut && iface.recv_queue_len(from) == 0 {
            if let Some(o) = self.side(to) {
                o.shut = true;
            }
            iface.shutdown(to);
        }
    }

    /// Resets the pair of `conn` (idle, or at the end of a drain).
    fn reset_pair(&mut self, iface: &mut Interface, conn: ConnId) {
        let peer = self.side(conn).and_then(|s| s.peer);
        for id in [Some(conn), peer].into_iter().flatten() {
            if let Some(side) = self.side(id) {
                side.peer = None;
                if side.upstream {
                    self.counters.resets_to_upstream += 1;
                } else {
                    self.counters.resets_to_client += 1;
                }
                iface.abort(id);
            }
        }
    }
}

/// A spread of a client address over the upstreams (Fibonacci hashing).
fn hash_addr(addr: u32) -> usize {
    (u64::from(addr).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

impl App for Proxy {
    fn on_accept(&mut self, iface: &mut Interface, client: ConnId) {
        self.counters.accepted += 1;
        let now = iface.now();
        let Some(slot) = self.sides.get_mut(client.index() as usize) else {
            iface.abort(client);
            return;
        };
        let base = match self.balance {
            Balance::RoundRobin => {
                self.next = self.next.wrapping_add(1);
                self.next
            }
            Balance::Hash => iface.tuple(client).map_or(0, |t| hash_addr(u32::from(t.remote.addr))),
        } % self.upstreams.len();
        *slot = Side { id: Some(client), connected: true, last_active: now, base: base as u32, ..Side::default() };
        if let Some(idle) = self.idle_timeout {
            iface.set_timer(client, now + idle);
        }
        self.connect_upstream(iface, client);
    }

    fn on_connected(&mut self, iface: &mut Interface, up: ConnId) {
        let Some(side) = self.side(up) else {
            // Given up already (timed out as its SYN-ACK came): not ours any more.
            iface.abort(up);
            return;
        };
        side.connected = true;
        let client = side.peer;
        self.counters.upstream_connected += 1;
        iface.cancel_timer(up);
        if let Some(client) = client {
            // The client's bytes (and FIN) that waited for the handshake.
            self.pump(iface, client);
        }
    }

    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.pump(iface, conn);
    }

    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Some(from) = self.side(conn).and_then(|s| s.peer) {
            self.pump(iface, from);
        }
    }

    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Some(side) = self.side(conn) {
            side.eof = true;
        }
        self.pump(iface, conn);
    }

    fn on_timer(&mut self, iface: &mut Interface, conn: ConnId) {
        let Some(side) = self.side(conn).copied() else { return };
        if side.upstream {
            if !side.connected {
                // The connect timeout: the next upstream, or the client is reset.
                self.counters.upstream_timed_out += 1;
                self.sides[conn.index() as usize] = Side::default();
                iface.abort(conn);
                if let Some(client) = side.peer {
                    if let Some(c) = self.side(client) {
                        c.peer = None;
                    }
                    self.connect_upstream(iface, client);
                }
            }
            return;
        }
        let Some(idle) = self.idle_timeout else { return };
        let due = side.last_active + idle;
        if iface.now() >= due {
            self.counters.idle_closed += 1;
            self.reset_pair(iface, conn);
        } else {
            iface.set_timer(conn, due);
        }
    }

    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        let Some(side) = self.side(conn).map(core::mem::take) else {
            self.shared.publish(&self.counters);
            return;
        };
        let abnormal = reason != CloseReason::Normal;
        if side.upstream && !side.connected {
            // Refused, no route, SYN retries out: the next upstream (nothing of the
            // client's was sent).
            if reason == CloseReason::TimedOut {
                self.counters.upstream_timed_out += 1;
            } else {
                self.counters.upstream_failed += 1;
            }
            if let Some(client) = side.peer {
                if let Some(c) = self.side(client) {
                    c.peer = None;
                }
                self.connect_upstream(iface, client);
            }
        } else if let Some(peer) = side.peer {
            if abnormal && reason != CloseReason::Aborted {
                if side.upstream {
                    self.counters.resets_from_upstream += 1;
                } else {
                    self.counters.resets_from_client += 1;
                }
            }
            if let Some(p) = self.side(peer) {
                p.peer = None;
                if abnormal {
                    if p.upstream {
                        self.counters.resets_to_upstream += 1;
                    } else {
                        self.counters.resets_to_client += 1;
                    }
                    iface.abort(peer);
                } else if !p.shut {
                    // Everything of `conn` was read (`on_closed` waits for that): its FIN
                    // follows to the peer.
                    p.shut = true;
                    iface.shutdown(peer);
                }
            }
        }
        self.shared.publish(&self.counters);
    }

    fn on_poll(&mut self, _: &mut Interface, _: Instant) {
        self.shared.publish(&self.counters);
    }
}

/// Runs the proxy until a signal: the first drains, a second stops at once.
pub fn run(common: Common, args: ProxyArgs) -> anyhow::Result<()> {
    if args.upstream.is_empty() {
        bail!("at least one --upstream is needed");
    }
    let signal = Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(s, signal.clone()).context("cannot install a signal handler")?;
    }
    let mut config = common.runtime_config();
    config.listen_ports = args.listen.clone();
    config.interface.gateway = args.gateway;
    let shared: Vec<Arc<SharedCounters>> = (0..common.queues).map(|_| Arc::default()).collect();
    let runtime = Runtime::start(config, |queue| {
        Proxy::new(&args, common.max_connections, queue as usize, shared[queue as usize].clone())
    })
    .with_context(|| format!("cannot proxy on {} {}", common.iface, common.ip))?;
    let ports: Vec<String> = args.listen.iter().map(u16::to_string).collect();
    let upstreams: Vec<String> = args.upstream.iter().map(SocketAddrV4::to_string).collect();
    println!(
        "synack ready: proxy {}:{} -> {} ({:?}) via {} ({} queue(s), {:?} address)",
        common.ip,
        ports.join(","),
        upstreams.join(","),
        args.balance,
        common.iface,
        common.queues,
        runtime.address_mode()
    );
    while !signal.load(Ordering::Relaxed) && runtime.is_running() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed = !runtime.is_running() && !signal.load(Ordering::Relaxed);
    if !failed {
        signal.store(false, Ordering::Relaxed);
        println!("synack draining: no new connections; open ones have {} s", args.drain_s);
        runtime.start_drain(Duration::from_secs(args.drain_s));
        while !runtime.is_finished() && !signal.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if signal.load(Ordering::Relaxed) {
            println!("synack: second signal, stopping now");
        }
    }
    let xdp = runtime.xdp_counters();
    let report = runtime.stop();
    let total = shared.iter().map(|s| s.read().to_array()).fold([0u64; COUNTERS], |mut acc, c| {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
        acc
    });
    println!("synack stopped; proxy: {}", ProxyCounters::from_array(total));
    println!("  counters: {}", report.counters);
    stats::print_workers(&report);
    if let Some(xdp) = xdp {
        println!("  xdp: {xdp}");
    }
    if failed {
        bail!("a worker stopped unexpectedly");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use synack::iface::{AddressMode, InterfaceConfig, RxAction, VecSink};
    use synack::tcp::{IsnGenerator, RecvError};
    use synack::wire::EthernetAddress;

    use super::*;

    fn iface(last: u8) -> Interface {
        let mut c = InterfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, last]), Ipv4Addr::new(198, 18, 0, last));
        c.address_mode = AddressMode::Dedicated;
        c.max_connections = 16;
        c.max_time_wait = 16;
        c.prefault_bytes = 0;
        Interface::new(c, IsnGenerator::with_key([5, 6]))
    }

    /// Hosts on a switch, polled every 100 µs of virtual time for `limit`.
    fn run(hosts: &mut [(&mut Interface, &mut dyn App)], limit: Duration) {
        let mut now = Instant::from_millis(1_000);
        let end = now + limit;
        while now < end {
            let mut frames = Vec::new();
            for (i, (iface, app)) in hosts.iter_mut().enumerate() {
                let mut sink = VecSink::new();
                iface.poll(now, &mut **app, &mut sink);
                frames.extend(sink.frames.into_iter().map(|f| (i, f)));
            }
            while let Some((from, frame)) = frames.pop() {
                for (j, (iface, _)) in hosts.iter_mut().enumerate() {
                    let mac = iface.config().mac;
                    if j == from || (frame[..6] != mac.0 && frame[..6] != [0xff; 6]) {
                        continue;
                    }
                    let mut buf = frame.clone();
                    buf.resize(2048, 0);
                    if let RxAction::Transmit(n) = iface.receive(now, &mut buf, frame.len()) {
                        frames.push((j, buf[..n].to_vec()));
                    }
                }
            }
            now += Duration::from_micros(100);
        }
    }

    /// Sends a request and its FIN at once, reads to the end.
    struct Client {
        conn: Option<ConnId>,
        got: Vec<u8>,
        closed: Option<CloseReason>,
    }

    impl App for Client {
        fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
            if self.conn.is_none() {
                let conn = iface.connect(Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), 8000)).unwrap();
                assert_eq!(iface.send(conn, b"hello through the proxy"), Ok(23));
                iface.shutdown(conn);
                self.conn = Some(conn);
            }
        }
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            let mut buf = [0u8; 256];
            loop {
                match iface.recv(conn, &mut buf) {
                    Ok(n) => self.got.extend_from_slice(&buf[..n]),
                    Err(RecvError::Finished) => return iface.close(conn),
                    Err(_) => return,
                }
            }
        }
        fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
            self.on_readable(iface, conn);
        }
        fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
            self.closed = Some(reason);
        }
    }

    /// Echoes, and closes after the peer's FIN once everything is echoed.
    struct Echo;

    impl Echo {
        fn pump(iface: &mut Interface, conn: ConnId) {
            let _ = iface.splice(conn, conn, usize::MAX);
            if iface.recv_queue_len(conn) == 0 && iface.state(conn) == synack::tcp::State::CloseWait {
                iface.close(conn);
            }
        }
    }

    impl App for Echo {
        fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
            Self::pump(iface, conn);
        }
        fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
            Self::pump(iface, conn);
        }
        fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
            Self::pump(iface, conn);
        }
    }

    fn args(upstreams: &[u16]) -> ProxyArgs {
        ProxyArgs {
            listen: vec![8000],
            upstream: upstreams.iter().map(|&p| SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 3), p)).collect(),
            balance: Balance::RoundRobin,
            connect_timeout_ms: 500,
            idle_timeout_s: 0,
            drain_s: 1,
            gateway: None,
        }
    }

    /// The first upstream tried (round-robin from the worker's turn) refuses: the next one
    /// serves, the request and its FIN go through, the echo and the upstream's FIN come back.
    #[test]
    fn a_refusing_upstream_is_skipped_and_the_request_with_its_fin_is_answered() {
        let (mut a, mut b, mut c) = (iface(1), iface(2), iface(3));
        b.listen(8000).unwrap();
        c.listen(80).unwrap();
        let shared = Arc::new(SharedCounters::default());
        // Worker 0's first client starts at upstream 1: port 81, where nothing listens.
        let mut proxy = Proxy::new(&args(&[80, 81]), 16, 0, shared.clone());
        let mut client = Client { conn: None, got: Vec::new(), closed: None };
        run(&mut [(&mut a, &mut client), (&mut b, &mut proxy), (&mut c, &mut Echo)], Duration::from_secs(2));
        assert_eq!(client.got, b"hello through the proxy");
        assert_eq!(client.closed, Some(CloseReason::Normal));
        let counters = shared.read();
        assert_eq!((counters.accepted, counters.upstream_failed, counters.upstream_connected), (1, 1, 1));
        assert_eq!((counters.bytes_to_upstream, counters.bytes_to_client), (23, 23));
        assert_eq!(counters.resets_to_client + counters.resets_to_upstream, 0);
        assert_eq!(b.connection_count(), 0, "both of the proxy's connections ended");
    }

    /// An upstream that never answers (nothing at its address: ARP goes unanswered) is given
    /// up at the connect timeout, and with no other upstream the client is reset.
    #[test]
    fn with_no_upstream_answering_the_client_is_reset_at_the_connect_timeout() {
        let (mut a, mut b) = (iface(1), iface(2));
        b.listen(8000).unwrap();
        let shared = Arc::new(SharedCounters::default());
        let mut proxy = Proxy::new(&args(&[80]), 16, 0, shared.clone());
        let mut client = Client { conn: None, got: Vec::new(), closed: None };
        run(&mut [(&mut a, &mut client), (&mut b, &mut proxy)], Duration::from_secs(2));
        assert_eq!(client.closed, Some(CloseReason::Reset));
        let counters = shared.read();
        assert_eq!((counters.upstream_timed_out, counters.resets_to_client), (1, 1));
    }
}
