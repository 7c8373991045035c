//! Runs the core benchmark's workloads a fixed number of times, for profilers that count
//! instructions (`valgrind --tool=callgrind`), where criterion's own work would blur the
//! figures. Usage: `profile_core lifecycle|segment|iface|iface_batch COUNT`. Run it with two
//! counts and divide the difference of the totals by the difference of the counts to get the
//! cost of one lifecycle or one segment without start-up.
//!
//! `iface` and `iface_batch` run the lifecycle through two `Interface`s and their frames
//! (Ethernet, IPv4, checksums, demux, timers, the App callbacks): frames handed over one by one
//! with `receive`, or a step's frames as one batch with `receive_batch`; 25 connections at a
//! time, so that a step carries a batch of frames (COUNT should be a multiple of 25).

use core::time::Duration;
use std::net::Ipv4Addr;

use synack::iface::{App, ConnId, Interface, InterfaceConfig, RxAction, RxFrames, TxSink};
use synack::sim::Pair;
use synack::tcp::{Endpoint, IsnGenerator, TcpConfig};
use synack::time::Instant;
use synack::wire::EthernetAddress;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "lifecycle".into());
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    match what.as_str() {
        "lifecycle" => {
            let config = TcpConfig { send_buffer_len: 4096, recv_buffer_len: 4096, ..TcpConfig::default() };
            let mut pair = Pair::new(config);
            let mut scratch = vec![0u8; 4096];
            for _ in 0..count {
                pair.lifecycle(REQUEST, RESPONSE, &mut scratch);
            }
            assert_eq!(pair.rejected, 0);
            println!("{count} lifecycles, {} segments", pair.segments);
        }
        "segment" => {
            let config = TcpConfig { send_buffer_len: 256 * 1024, recv_buffer_len: 256 * 1024, ..TcpConfig::default() };
            let mut pair = Pair::new(config);
            pair.open();
            let chunk = vec![0x5au8; 1448];
            let mut sink = vec![0u8; 64 * 1024];
            let start = pair.segments;
            while pair.segments - start < count {
                let _ = pair.client.send(&chunk);
                pair.exchange();
                while pair.server.recv(&mut sink).is_ok() {}
            }
            assert_eq!(pair.rejected, 0);
            println!("{} segments", pair.segments - start);
        }
        "iface" | "iface_batch" => {
            let mut pair = IfacePair::new(what == "iface_batch");
            for _ in 0..count / CONCURRENCY as u64 {
                pair.lifecycles();
            }
            println!("{count} lifecycles through frames, {} frames", pair.frames);
        }
        other => panic!("unknown workload {other}"),
    }
}

/// Connections open at once in the `iface` workloads.
const CONCURRENCY: usize = 25;
const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);
const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Frames in fixed buffers: a TX sink, then the peer's RX batch. Allocates only when made.
struct Frames {
    bufs: Vec<[u8; 2048]>,
    lens: Vec<usize>,
    n: usize,
}

impl Frames {
    fn new() -> Frames {
        Frames { bufs: vec![[0u8; 2048]; 128], lens: vec![0; 128], n: 0 }
    }
}

impl TxSink for Frames {
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool> {
        if self.n == self.bufs.len() {
            return None;
        }
        let Some(len) = fill(&mut self.bufs[self.n][..]) else { return Some(false) };
        self.lens[self.n] = len;
        self.n += 1;
        Some(true)
    }
}

impl RxFrames for Frames {
    fn len(&self) -> usize {
        self.n
    }
    fn with_frame<R>(&mut self, i: usize, f: impl FnOnce(&mut [u8], usize) -> R) -> R {
        f(&mut self.bufs[i][..], self.lens[i])
    }
    fn set_action(&mut self, _: usize, action: RxAction) {
        assert_eq!(action, RxAction::Release, "no in-place replies in a clean lifecycle");
    }
}

/// Opens one connection when asked, sends the request, reads the response, closes after the
/// server's FIN.
struct Client {
    open: usize,
    done: usize,
    buf: [u8; 512],
}

impl App for Client {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        for _ in 0..core::mem::take(&mut self.open) {
            iface.connect(Endpoint::new(ADDR_B, 80)).expect("connect");
        }
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.send(conn, REQUEST);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        while matches!(iface.recv(conn, &mut self.buf), Ok(n) if n > 0) {}
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        iface.close(conn);
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, _: synack::tcp::CloseReason) {
        self.done += 1;
    }
}

/// Answers the request and closes first (TIME_WAIT on the server, as in the benchmark).
struct Server {
    buf: [u8; 512],
}

impl App for Server {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        if matches!(iface.recv(conn, &mut self.buf), Ok(n) if n > 0) {
            let _ = iface.send(conn, RESPONSE);
            iface.close(conn);
        }
    }
}

struct IfacePair {
    a: Interface,
    b: Interface,
    client: Client,
    server: Server,
    to_a: Frames,
    to_b: Frames,
    now: Instant,
    batched: bool,
    frames: u64,
}

impl IfacePair {
    fn new(batched: bool) -> IfacePair {
        let tcp = TcpConfig {
            send_buffer_len: 4096,
            recv_buffer_len: 4096,
            time_wait: Duration::from_millis(100),
            ..TcpConfig::default()
        };
        let config = |mac, addr| InterfaceConfig { tcp, ..InterfaceConfig::new(mac, addr) };
        let mut a = Interface::new(config(MAC_A, ADDR_A), IsnGenerator::with_key([1, 2]));
        let mut b = Interface::new(config(MAC_B, ADDR_B), IsnGenerator::with_key([3, 4]));
        a.neighbors_mut().add_static(ADDR_B, MAC_B);
        b.neighbors_mut().add_static(ADDR_A, MAC_A);
        b.listen(80).expect("listen");
        IfacePair {
            a,
            b,
            client: Client { open: 0, done: 0, buf: [0; 512] },
            server: Server { buf: [0; 512] },
            to_a: Frames::new(),
            to_b: Frames::new(),
            now: Instant::from_millis(1_000),
            batched,
            frames: 0,
        }
    }

    fn deliver(iface: &mut Interface, now: Instant, frames: &mut Frames, batched: bool) -> u64 {
        let n = frames.n;
        if batched {
            iface.receive_batch(now, frames);
        } else {
            for i in 0..n {
                let len = frames.lens[i];
                let action = iface.receive(now, &mut frames.bufs[i][..], len);
                assert_eq!(action, RxAction::Release, "no in-place replies in a clean lifecycle");
            }
        }
        frames.n = 0;
        n as u64
    }

    fn lifecycles(&mut self) {
        self.client.open = CONCURRENCY;
        self.client.done = 0;
        for _ in 0..1000 {
            self.a.poll(self.now, &mut self.client, &mut self.to_b);
            self.frames += Self::deliver(&mut self.b, self.now, &mut self.to_b, self.batched);
            self.b.poll(self.now, &mut self.server, &mut self.to_a);
            self.frames += Self::deliver(&mut self.a, self.now, &mut self.to_a, self.batched);
            self.now += Duration::from_micros(10);
            if self.client.done == CONCURRENCY && !self.a.has_pending_output() && !self.b.has_pending_output() {
                return;
            }
        }
        panic!("a lifecycle did not finish");
    }
}
