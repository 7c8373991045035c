//! One server worker and its clients back to back in memory, on a simulated clock.
//!
//! The server is an [`Interface`] listening on port 80 with an HTTP-like app that answers
//! `Connection: close` requests and closes first, so TIME_WAIT lands on the server, as in the
//! system benchmark. The clients are interfaces of their own, each with its own address (one
//! address has only 64 K ports, and a server holding a million TIME_WAIT records needs a
//! million distinct 4-tuples within 2MSL). Every frame comes from a [`FramePool`] and goes
//! through the real wire codec (checksums verified) on the other side. The server takes the
//! frames of each round as one batch (`receive_batch`, as a worker takes its RX ring), the
//! clients frame by frame.
//!
//! Time moves in ticks: [`BackToBack::tick`] opens connections, carries frames at the same
//! instant until nothing moves, then advances the clock by one tick. Timers (TIME_WAIT expiry
//! included) fire at the first tick past their deadline.

use core::time::Duration;
use std::net::Ipv4Addr;

use anyhow::{bail, ensure, Result};
use synack::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig, RxAction, RxFrames};
use synack::tcp::{CloseReason, Endpoint, IsnGenerator, TcpConfig};
use synack::time::Instant;
use synack::wire::EthernetAddress;

use super::frames::{FramePool, PoolSink, WireFrame};

/// The server's address; clients are 198.18.1.1, 198.18.1.2, ... on the same /16.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's port.
pub const SERVER_PORT: u16 = 80;
const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
/// Client ports: everything above the well-known ones.
pub const CLIENT_PORTS: (u16, u16) = (1024, 65535);
/// The most client interfaces (one /24 of addresses).
pub const MAX_CLIENTS: usize = 250;

/// What the client sends.
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.1\r\nConnection: close\r\n\r\n";
/// What the server answers before closing.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Rounds of frame exchange within one tick before the harness calls it a livelock.
const MAX_ROUNDS_PER_TICK: usize = 1000;

/// Sizes and durations of a [`BackToBack`].
#[derive(Debug, Clone, Copy)]
pub struct HarnessConfig {
    /// Client interfaces, each with its own address.
    pub clients: usize,
    /// 2MSL, on both sides.
    pub time_wait: Duration,
    /// TIME_WAIT records the server holds at most.
    pub max_time_wait: usize,
    /// Connections (not counting TIME_WAIT) each interface holds at most.
    pub max_connections: usize,
    /// Frames in the pool.
    pub frames: usize,
    /// Simulated time per tick.
    pub tick: Duration,
}

fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, (i + 1) as u8)
}

fn client_mac(i: usize) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0x01, (i + 1) as u8])
}

fn interface_config(mac: EthernetAddress, addr: Ipv4Addr, config: &HarnessConfig) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(mac, addr);
    c.prefix_len = 16;
    c.address_mode = AddressMode::Dedicated;
    // Small rings, as a connection-churn server would configure them.
    c.tcp =
        TcpConfig { send_buffer_len: 4096, recv_buffer_len: 4096, time_wait: config.time_wait, ..TcpConfig::default() };
    c.max_connections = config.max_connections;
    c.syn_backlog = config.max_connections;
    // Slots made as needed: these cases measure the slab's own growth and RSS around it.
    c.prefault_bytes = 0;
    c
}

/// The server's app: answers a complete request and closes.
#[derive(Debug)]
struct HttpServer {
    buf: [u8; 2048],
    served: u64,
}

impl App for HttpServer {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let mut last = 0;
        while let Ok(n) = iface.recv(conn, &mut self.buf) {
            if n == 0 {
                break;
            }
            last = n;
        }
        // The request fits one segment and one read; its blank line ends it.
        if last >= 4 && &self.buf[last - 4..last] == b"\r\n\r\n" {
            let _ = iface.send(conn, RESPONSE);
            iface.close(conn);
            self.served += 1;
        }
    }
}

/// A client's app: opens what it is told to, sends the request, reads the answer, closes
/// after the server's FIN, and checks that the whole answer came.
#[derive(Debug)]
struct HttpClient {
    server: Endpoint,
    to_open: usize,
    /// Response bytes received, by slab index.
    received: Vec<u32>,
    buf: [u8; 2048],
    completed: u64,
    failed: u64,
    short_answers: u64,
    connect_errors: u64,
}

impl App for HttpClient {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        while self.to_open > 0 {
            self.to_open -= 1;
            match iface.connect(self.server) {
                Ok(conn) => self.received[conn.index() as usize] = 0,
                Err(_) => self.connect_errors += 1,
            }
        }
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.send(conn, REQUEST);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        while let Ok(n) = iface.recv(conn, &mut self.buf) {
            if n == 0 {
                break;
            }
            self.received[conn.index() as usize] += n as u32;
        }
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        iface.close(conn);
    }
    fn on_closed(&mut self, _: &mut Interface, conn: ConnId, reason: CloseReason) {
        match reason {
            CloseReason::Normal if self.received[conn.index() as usize] as usize == RESPONSE.len() => {
                self.completed += 1
            }
            CloseReason::Normal => self.short_answers += 1,
            _ => self.failed += 1,
        }
    }
}

/// Counts over all clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Lifecycles that ended normally with the whole answer.
    pub completed: u64,
    /// Connections that ended otherwise (reset, timed out, aborted).
    pub failed: u64,
    /// Connections that closed normally with a short answer.
    pub short_answers: u64,
    /// `connect` refusals (no port, table full).
    pub connect_errors: u64,
    /// Requests the server answered.
    pub served: u64,
    /// Frames the wire could not deliver (no such client).
    pub misrouted: u64,
}

/// The server, its clients, the frame pool and the clock.
#[derive(Debug)]
pub struct BackToBack {
    /// The server worker's interface.
    pub server: Interface,
    server_app: HttpServer,
    /// The clients' interfaces.
    pub clients: Vec<Interface>,
    client_apps: Vec<HttpClient>,
    /// Every frame on the wire comes from here.
    pub pool: FramePool,
    to_server: Vec<WireFrame>,
    to_clients: Vec<WireFrame>,
    inbox: Vec<WireFrame>,
    /// What the server did with each frame of its inbox.
    actions: Vec<RxAction>,
    /// Clients to poll in the next round (they received frames).
    touched: Vec<bool>,
    /// Simulated time.
    pub now: Instant,
    tick: Duration,
    next_client: usize,
    misrouted: u64,
    /// Exchange rounds so far (for the curious: rounds per tick).
    pub rounds: u64,
}

impl BackToBack {
    /// Builds the server (listening on [`SERVER_PORT`]) and its clients; allocates all tables
    /// and the frame pool now.
    pub fn new(config: HarnessConfig) -> Result<BackToBack> {
        ensure!((1..=MAX_CLIENTS).contains(&config.clients), "1 to {MAX_CLIENTS} clients");
        ensure!(config.frames > 0 && !config.tick.is_zero(), "frames and tick must be non-zero");
        let mut server_config = interface_config(SERVER_MAC, SERVER_ADDR, &config);
        server_config.max_time_wait = config.max_time_wait;
        let mut server = Interface::new(server_config, IsnGenerator::with_key([0x5e, 0x77]));
        server.listen(SERVER_PORT)?;
        let mut clients = Vec::with_capacity(config.clients);
        let mut client_apps = Vec::with_capacity(config.clients);
        for i in 0..config.clients {
            let mut c = interface_config(client_mac(i), client_addr(i), &config);
            c.local_ports = CLIENT_PORTS;
            // Clients close second: they keep no TIME_WAIT.
            c.max_time_wait = 1024;
            let mut iface = Interface::new(c, IsnGenerator::with_key([0xc1, i as u64]));
            iface.neighbors_mut().add_static(SERVER_ADDR, SERVER_MAC);
            clients.push(iface);
            client_apps.push(HttpClient {
                server: Endpoint::new(SERVER_ADDR, SERVER_PORT),
                to_open: 0,
                received: vec![0; config.max_connections],
                buf: [0; 2048],
                completed: 0,
                failed: 0,
                short_answers: 0,
                connect_errors: 0,
            });
        }
        Ok(BackToBack {
            server,
            server_app: HttpServer { buf: [0; 2048], served: 0 },
            clients,
            client_apps,
            pool: FramePool::new(config.frames),
            to_server: Vec::with_capacity(config.frames),
            to_clients: Vec::with_capacity(config.frames),
            inbox: Vec::with_capacity(config.frames),
            actions: Vec::with_capacity(config.frames),
            touched: vec![true; config.clients],
            now: Instant::from_millis(1_000),
            tick: config.tick,
            next_client: 0,
            misrouted: 0,
            rounds: 0,
        })
    }

    /// Opens `opens` connections, spread round robin over the clients, carries frames at the
    /// current instant until nothing moves, then advances the clock by one tick.
    pub fn tick(&mut self, opens: usize) -> Result<()> {
        let n = self.clients.len();
        for _ in 0..opens {
            self.client_apps[self.next_client].to_open += 1;
            self.touched[self.next_client] = true;
            self.next_client = (self.next_client + 1) % n;
        }
        self.settle()?;
        self.now += self.tick;
        // Due timers may be anywhere: every client is polled once per tick.
        self.touched.iter_mut().for_each(|t| *t = true);
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        let now = self.now;
        for _ in 0..MAX_ROUNDS_PER_TICK {
            self.rounds += 1;
            for (i, (iface, app)) in self.clients.iter_mut().zip(&mut self.client_apps).enumerate() {
                if core::mem::take(&mut self.touched[i]) || iface.has_pending_output() {
                    iface.poll(now, app, &mut PoolSink { pool: &mut self.pool, wire: &mut self.to_server });
                }
            }
            self.server.poll(
                now,
                &mut self.server_app,
                &mut PoolSink { pool: &mut self.pool, wire: &mut self.to_clients },
            );
            if self.to_server.is_empty() && self.to_clients.is_empty() && !self.pending_output() {
                return Ok(());
            }
            // Server to clients: a reply written in place goes straight back.
            core::mem::swap(&mut self.to_clients, &mut self.inbox);
            for frame in self.inbox.drain(..) {
                let buf = self.pool.frame_mut(frame.index);
                let Some(i) = client_of(buf) else {
                    self.misrouted += 1;
                    self.pool.give_back(frame.index);
                    continue;
                };
                self.touched[i] = true;
                match self.clients[i].receive(now, buf, frame.len as usize) {
                    RxAction::Transmit(len) => self.to_server.push(WireFrame { index: frame.index, len: len as u32 }),
                    RxAction::Release => self.pool.give_back(frame.index),
                }
            }
            // Clients to server: one receive batch, as a worker takes its RX ring.
            core::mem::swap(&mut self.to_server, &mut self.inbox);
            self.actions.clear();
            self.actions.resize(self.inbox.len(), RxAction::Release);
            let mut batch = InboxBatch { pool: &mut self.pool, frames: &self.inbox, actions: &mut self.actions };
            self.server.receive_batch(now, &mut batch);
            for (frame, &action) in self.inbox.drain(..).zip(&self.actions) {
                match action {
                    RxAction::Transmit(len) => self.to_clients.push(WireFrame { index: frame.index, len: len as u32 }),
                    RxAction::Release => self.pool.give_back(frame.index),
                }
            }
        }
        bail!("the in-memory wire was still busy after {MAX_ROUNDS_PER_TICK} rounds at {:?}", self.now)
    }

    fn pending_output(&self) -> bool {
        self.server.has_pending_output() || self.clients.iter().any(Interface::has_pending_output)
    }

    /// Counts over all clients and the server.
    pub fn totals(&self) -> Totals {
        let mut t = Totals { served: self.server_app.served, misrouted: self.misrouted, ..Totals::default() };
        for app in &self.client_apps {
            t.completed += app.completed;
            t.failed += app.failed;
            t.short_answers += app.short_answers;
            t.connect_errors += app.connect_errors;
        }
        t
    }

    /// Connections open on the clients.
    pub fn client_connections(&self) -> usize {
        self.clients.iter().map(Interface::connection_count).sum()
    }

    /// Time per tick.
    pub fn tick_len(&self) -> Duration {
        self.tick
    }
}

/// The server's inbox as an RX batch for [`Interface::receive_batch`].
struct InboxBatch<'a> {
    pool: &'a mut FramePool,
    frames: &'a [WireFrame],
    actions: &'a mut [RxAction],
}

impl RxFrames for InboxBatch<'_> {
    fn len(&self) -> usize {
        self.frames.len()
    }

    fn with_frame<R>(&mut self, i: usize, f: impl FnOnce(&mut [u8], usize) -> R) -> R {
        let frame = self.frames[i];
        f(self.pool.frame_mut(frame.index), frame.len as usize)
    }

    fn set_action(&mut self, i: usize, action: RxAction) {
        self.actions[i] = action;
    }
}

/// Bytes the TIME_WAIT table of `iface` holds allocated: what it reports per record it can
/// hold (slab, hash table, wheel entries, all allocated at start) times that room.
pub fn time_wait_table_bytes(iface: &Interface) -> usize {
    (iface.time_wait_bytes_per_entry() * iface.config().max_time_wait as f64) as usize
}

/// The client a frame from the server is for, by its destination address (198.18.1.N).
fn client_of(frame: &[u8]) -> Option<usize> {
    // Ethernet (14 bytes), then IPv4 with the destination at offset 16.
    let dst = frame.get(30..34)?;
    (dst[0..3] == [198, 18, 1] && dst[3] >= 1 && usize::from(dst[3]) <= MAX_CLIENTS).then(|| usize::from(dst[3]) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(clients: usize) -> BackToBack {
        BackToBack::new(HarnessConfig {
            clients,
            time_wait: Duration::from_millis(50),
            max_time_wait: 4096,
            max_connections: 256,
            frames: 1024,
            tick: Duration::from_millis(1),
        })
        .unwrap()
    }

    #[test]
    fn lifecycles_complete_with_time_wait_on_the_server_until_2msl_ends() {
        let mut net = small(3);
        for _ in 0..10 {
            net.tick(30).unwrap();
        }
        let t = net.totals();
        assert_eq!(
            (t.completed, t.served, t.failed, t.short_answers, t.connect_errors, t.misrouted),
            (300, 300, 0, 0, 0, 0)
        );
        assert_eq!(net.server.time_wait_count(), 300, "the server closed first: all its 4-tuples wait");
        assert!(net.clients.iter().all(|c| c.time_wait_count() == 0));
        assert_eq!((net.server.connection_count(), net.client_connections(), net.pool.in_use()), (0, 0, 0));
        // 50 ms of 2MSL: the records of the first tick expire at tick 51.
        for _ in 0..45 {
            net.tick(0).unwrap();
        }
        assert!(net.server.time_wait_count() > 0);
        for _ in 0..10 {
            net.tick(0).unwrap();
        }
        assert_eq!(net.server.time_wait_count(), 0);
        assert_eq!(net.server.counters().time_wait_expired, 300);
        assert!(net.pool.lent > 0 && net.pool.lent == net.pool.returned);
    }

    #[test]
    fn frames_for_unknown_addresses_are_recognised() {
        let mut frame = [0u8; 64];
        frame[30..34].copy_from_slice(&[198, 18, 1, 3]);
        assert_eq!(client_of(&frame), Some(2));
        frame[30..34].copy_from_slice(&[198, 18, 0, 3]);
        assert_eq!(client_of(&frame), None);
        frame[33] = 0;
        assert_eq!(client_of(&frame[..20]), None);
    }
}
