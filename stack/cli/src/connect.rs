//! `synack connect`: active opens to an echo server, N bytes there and back on each, a close in
//! the order asked, and a sha256 of what came back. One connection by default; with
//! `--connections K` and `--queues N`, K concurrent exchanges spread over N workers (connection
//! i on worker i mod N, from that worker's slice of the client port range).

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};
use synack::iface::{App, ConnId, Interface};
use synack::runtime::{Runtime, RuntimeConfig};
use synack::tcp::{CloseReason, Endpoint};
use synack::time::Instant;
use synack_report::{Closed, ConnectSummary, Line, Received};

/// Connections a worker opens per poll, so that a large `--connections` does not flood the TX
/// ring in one burst.
const OPENS_PER_POLL: usize = 32;
/// Marks a connection slot that is not one of ours.
const NO_EXCHANGE: u32 = u32::MAX;

/// What a worker reports to the main thread, per connection (`id`: its number, 0..K).
enum Progress {
    Received { id: usize, bytes: u64, sha256: String },
    Closed { id: usize, reason: CloseReason },
    Failed(String),
}

/// One connection's exchange.
struct Exchange {
    id: usize,
    conn: ConnId,
    sent: u64,
    received: u64,
    hash: Sha256,
    peer_closed: bool,
    closing: bool,
}

/// One worker's client: opens its share of the connections and runs each exchange.
struct Client {
    target: Endpoint,
    total: u64,
    close_first_local: bool,
    /// Connection numbers of this worker: `first_id`, `first_id + stride`, ...
    first_id: usize,
    stride: usize,
    to_open: usize,
    exchanges: Vec<Exchange>,
    /// Connection slot index -> position in `exchanges`.
    by_slot: Vec<u32>,
    report: mpsc::Sender<Progress>,
}

/// The bytes to send: byte i is `i % 251`.
static PATTERN: [u8; 65536 + 251] = {
    let mut p = [0u8; 65536 + 251];
    let mut i = 0;
    while i < p.len() {
        p[i] = (i % 251) as u8;
        i += 1;
    }
    p
};

impl Client {
    fn exchange(&mut self, conn: ConnId) -> Option<&mut Exchange> {
        let at = *self.by_slot.get(conn.index() as usize)?;
        self.exchanges.get_mut(at as usize).filter(|e| e.conn == conn)
    }

    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        let total = self.total;
        let Some(x) = self.exchange(conn) else { return };
        while x.sent < total {
            let phase = (x.sent % 251) as usize;
            let want = (total - x.sent).min(65536) as usize;
            match iface.send(conn, &PATTERN[phase..phase + want]) {
                Ok(n) if n > 0 => x.sent += n as u64,
                _ => return,
            }
        }
    }

    fn maybe_close(&mut self, iface: &mut Interface, conn: ConnId) {
        let (total, local_first) = (self.total, self.close_first_local);
        let Some(x) = self.exchange(conn) else { return };
        if x.closing || x.received < total {
            return;
        }
        if local_first || x.peer_closed {
            x.closing = true;
            iface.close(conn);
        }
    }
}

impl App for Client {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        for _ in 0..self.to_open.min(OPENS_PER_POLL) {
            self.to_open -= 1;
            let id = self.first_id + self.exchanges.len() * self.stride;
            match iface.connect(self.target) {
                Ok(conn) => {
                    if let Some(slot) = self.by_slot.get_mut(conn.index() as usize) {
                        *slot = self.exchanges.len() as u32;
                    }
                    self.exchanges.push(Exchange {
                        id,
                        conn,
                        sent: 0,
                        received: 0,
                        hash: Sha256::new(),
                        peer_closed: false,
                        closing: false,
                    });
                }
                Err(e) => {
                    let _ = self.report.send(Progress::Failed(format!("connect (connection {id}): {e}")));
                }
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
        let total = self.total;
        let Some(at) = self.by_slot.get(conn.index() as usize).copied() else { return };
        let Some(x) = self.exchanges.get_mut(at as usize).filter(|e| e.conn == conn) else { return };
        let (a, b) = iface.recv_slices(conn);
        let n = a.len() + b.len();
        x.hash.update(a);
        x.hash.update(b);
        iface.recv_consume(conn, n);
        let before = x.received;
        x.received += n as u64;
        if before < total && x.received >= total {
            let sha256 = x.hash.clone().finalize().iter().map(|b| format!("{b:02x}")).collect();
            let _ = self.report.send(Progress::Received { id: x.id, bytes: x.received, sha256 });
        }
        self.maybe_close(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Some(x) = self.exchange(conn) {
            x.peer_closed = true;
        }
        self.maybe_close(iface, conn);
    }
    fn on_closed(&mut self, _: &mut Interface, conn: ConnId, reason: CloseReason) {
        if let Some(id) = self.exchange(conn).map(|x| x.id) {
            let _ = self.report.send(Progress::Closed { id, reason });
        }
    }
}

/// What `synack connect` does.
pub struct Plan {
    pub target: SocketAddrV4,
    pub bytes: u64,
    pub connections: usize,
    pub close_first_local: bool,
    pub timeout_s: u64,
    /// `synack_report` lines on stdout instead of text.
    pub json: bool,
}

pub fn run(config: RuntimeConfig, plan: Plan, metrics: Option<crate::metrics::Endpoint>) -> anyhow::Result<()> {
    let Plan { target, bytes, connections, close_first_local, timeout_s, json } = plan;
    if bytes == 0 {
        bail!("--bytes must be at least 1");
    }
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    let workers = config.queues as usize;
    let max_connections = config.interface.max_connections;
    if connections.div_ceil(workers) > max_connections {
        bail!("--connections {connections} over {workers} worker(s) exceeds --max-connections {max_connections}");
    }
    let (tx, rx) = mpsc::channel();
    let make_client = |worker: u32| {
        let w = worker as usize;
        Client {
            target: Endpoint::new(*target.ip(), target.port()),
            total: bytes,
            close_first_local,
            first_id: w,
            stride: workers,
            to_open: connections / workers + usize::from(w < connections % workers),
            exchanges: Vec::with_capacity(connections.div_ceil(workers)),
            by_slot: vec![NO_EXCHANGE; max_connections],
            report: tx.clone(),
        }
    };
    let (ifname, addr) = (config.ifname.clone(), config.interface.addr);
    let runtime = Runtime::start(config, make_client).with_context(|| format!("cannot start on {ifname}"))?;
    let _stat = crate::serve_metrics(metrics, &runtime, "connect", &ifname, addr)?;
    drop(tx);
    // The clock starts once the workers run (before the first SYN): the elapsed time covers
    // the handshakes, the transfer and the echo.
    let started = std::time::Instant::now();
    let mut last_echo = Duration::ZERO;
    let expected_sha256: String = {
        let mut hash = Sha256::new();
        let mut fed = 0u64;
        while fed < bytes {
            let want = (bytes - fed).min(65536) as usize;
            let phase = (fed % 251) as usize;
            hash.update(&PATTERN[phase..phase + want]);
            fed += want as u64;
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    };

    let deadline = started + Duration::from_secs(timeout_s);
    let mut received = vec![None::<u64>; connections];
    let (mut echoed, mut closed) = (0usize, 0usize);
    let outcome = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break Err(anyhow!(
                "timed out after {timeout_s} s: {echoed} of {connections} connection(s) echoed, {closed} closed"
            ));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(Progress::Received { id, bytes: n, sha256 }) => {
                if connections == 1 && json {
                    let received = Received { bytes: n, sha256: sha256.clone() };
                    println!("{}", Line::Received(received).to_json());
                } else if connections == 1 {
                    println!("received {n} bytes sha256 {sha256}");
                } else if sha256 != expected_sha256 {
                    break Err(anyhow!("connection {id}: the echo differs from what was sent (sha256 {sha256})"));
                }
                if let Some(r) = received.get_mut(id) {
                    *r = Some(n);
                }
                echoed += 1;
                last_echo = started.elapsed();
            }
            Ok(Progress::Closed { id, reason: CloseReason::Normal })
                if received.get(id).is_some_and(Option::is_some) =>
            {
                closed += 1;
                if connections == 1 && json {
                    println!("{}", Line::Closed(Closed {}).to_json());
                } else if connections == 1 {
                    println!("closed");
                }
                if closed == connections {
                    break Ok(());
                }
            }
            Ok(Progress::Closed { id, reason }) => break Err(anyhow!("connection {id} ended: {reason:?}")),
            Ok(Progress::Failed(message)) => break Err(anyhow!(message)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(anyhow!("the workers stopped")),
        }
    };
    let elapsed = started.elapsed();
    let xdp_by_name = if json { runtime.stats_source().xdp_counters() } else { Vec::new() };
    let report = runtime.stop();
    // Bytes sent and echoed back, over the time from start to the last close (or the error).
    let moved = 2 * bytes * echoed as u64;
    let mbit_per_s = moved as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    if json {
        let summary = ConnectSummary {
            connections: connections as u64,
            echoed: echoed as u64,
            closed: closed as u64,
            bytes,
            workers: workers as u64,
            elapsed_s: elapsed.as_secs_f64(),
            mbit_per_s,
            transfer_s: last_echo.as_secs_f64(),
            error: outcome.as_ref().err().map(|e| format!("{e:#}")),
        };
        println!("{}", Line::ConnectSummary(summary).to_json());
        println!("{}", Line::Stopped(crate::stats::stopped(&report, None, &xdp_by_name)).to_json());
        return outcome;
    }
    println!(
        "elapsed {:.3} s, {echoed} of {connections} echoed, {mbit_per_s:.1} Mbit/s ({moved} bytes both ways)",
        elapsed.as_secs_f64(),
    );
    if echoed > 0 {
        // Each byte crossed the link twice (there and back); the rate is per direction.
        let bytes_each_way = bytes * echoed as u64;
        let seconds = last_echo.as_secs_f64();
        println!(
            "transferred {bytes_each_way} bytes each way in {seconds:.3} s ({:.3} Gbit/s each way); all done after {:.3} s",
            bytes_each_way as f64 * 8.0 / seconds / 1e9,
            elapsed.as_secs_f64()
        );
    }
    if connections > 1 {
        println!(
            "connections {connections}: {echoed} echoed {bytes} bytes, {closed} closed cleanly, over {workers} worker(s)"
        );
    }
    eprintln!("synack counters: {}", report.counters);
    crate::stats::print_workers(&report);
    if let Some(pcap) = report.pcap {
        eprintln!("  pcap: {} frames written, {} not captured (the writer was behind)", pcap.written, pcap.dropped);
    }
    outcome
}
