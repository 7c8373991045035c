//! `synack connect`: one active open to an echo server, N bytes there and back, a close in
//! the order asked, and a sha256 of what came back.

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};
use synack::iface::{App, ConnId, Interface};
use synack::runtime::{Runtime, RuntimeConfig};
use synack::tcp::{CloseReason, Endpoint};
use synack::time::Instant;

/// What the client reports to the main thread.
enum Progress {
    Received { bytes: u64, sha256: String },
    Closed(CloseReason),
    Failed(String),
}

struct Client {
    target: Endpoint,
    total: u64,
    close_first_local: bool,
    conn: Option<ConnId>,
    started: bool,
    sent: u64,
    received: u64,
    hash: Sha256,
    peer_closed: bool,
    closing: bool,
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
    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        while self.sent < self.total {
            let phase = (self.sent % 251) as usize;
            let want = (self.total - self.sent).min(65536) as usize;
            match iface.send(conn, &PATTERN[phase..phase + want]) {
                Ok(n) if n > 0 => self.sent += n as u64,
                _ => return,
            }
        }
    }

    fn maybe_close(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.closing || self.received < self.total {
            return;
        }
        if self.close_first_local || self.peer_closed {
            self.closing = true;
            iface.close(conn);
        }
    }
}

impl App for Client {
    fn on_poll(&mut self, iface: &mut Interface, _: Instant) {
        if !self.started {
            self.started = true;
            match iface.connect(self.target) {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => {
                    let _ = self.report.send(Progress::Failed(format!("connect: {e}")));
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
        let (a, b) = iface.recv_slices(conn);
        let n = a.len() + b.len();
        self.hash.update(a);
        self.hash.update(b);
        iface.recv_consume(conn, n);
        let before = self.received;
        self.received += n as u64;
        if before < self.total && self.received >= self.total {
            let sha256 = self.hash.clone().finalize().iter().map(|b| format!("{b:02x}")).collect();
            let _ = self.report.send(Progress::Received { bytes: self.received, sha256 });
        }
        self.maybe_close(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.peer_closed = true;
        self.maybe_close(iface, conn);
    }
    fn on_closed(&mut self, _: &mut Interface, _: ConnId, reason: CloseReason) {
        let _ = self.report.send(Progress::Closed(reason));
    }
}

pub fn run(
    config: RuntimeConfig,
    target: SocketAddrV4,
    bytes: u64,
    close_first_local: bool,
    timeout_s: u64,
) -> anyhow::Result<()> {
    if bytes == 0 {
        bail!("--bytes must be at least 1");
    }
    let (tx, rx) = mpsc::channel();
    let client = Client {
        target: Endpoint::new(*target.ip(), target.port()),
        total: bytes,
        close_first_local,
        conn: None,
        started: false,
        sent: 0,
        received: 0,
        hash: Sha256::new(),
        peer_closed: false,
        closing: false,
        report: tx,
    };
    let mut config = config;
    config.queues = 1;
    let ifname = config.ifname.clone();
    let mut slot = Some(client);
    let runtime = Runtime::start(config, move |_| slot.take().expect("one worker"))
        .with_context(|| format!("cannot start on {ifname}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout_s);
    let mut received = None;
    let outcome = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break Err(anyhow!("timed out after {timeout_s} s (received {:?})", received));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(Progress::Received { bytes, sha256 }) => {
                println!("received {bytes} bytes sha256 {sha256}");
                received = Some(bytes);
            }
            Ok(Progress::Closed(CloseReason::Normal)) if received.is_some() => {
                println!("closed");
                break Ok(());
            }
            Ok(Progress::Closed(reason)) => break Err(anyhow!("connection ended: {reason:?}")),
            Ok(Progress::Failed(message)) => break Err(anyhow!(message)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(anyhow!("the worker stopped")),
        }
    };
    let report = runtime.stop();
    eprintln!("synack counters: {}", report.counters);
    outcome
}
