//! `synack iperf3`: an iperf3 client (TCP) on synack, for bulk transfers against
//! `synack serve --app iperf3` or the kernel's `iperf3 -s`.
//!
//! The client's side of the sequence in `server.rs`: cookie, parameters after PARAM_EXCHANGE,
//! the streams one after the other after CREATE_STREAMS (each starting with the cookie; the
//! sending ones first), data from TEST_RUNNING until the time or the byte count is reached,
//! TEST_END, its results after EXCHANGE_RESULTS, the server's results, and IPERF_DONE after
//! DISPLAY_RESULTS.

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use synack::iface::{App, ConnId, Interface};
use synack::runtime::{Runtime, RuntimeConfig};
use synack::tcp::{CloseReason, Endpoint};
use synack::time::Instant;

use super::proto::{self, Mode, State, StreamResult, COOKIE_LEN, MAX_JSON, MAX_STREAMS};
use super::server::{copy_prefix, process_cpu, SEND_CHUNK, SOURCE};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub target: SocketAddrV4,
    pub mode: Mode,
    pub parallel: u64,
    /// `-t` seconds, or `-n` bytes (0: none).
    pub seconds: u64,
    pub bytes: u64,
}

/// The test's outcome, for the main thread.
pub(super) enum Progress {
    Done(String),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    /// Waiting for PARAM_EXCHANGE, CREATE_STREAMS, TEST_START and TEST_RUNNING in turn.
    Setup,
    Running,
    /// TEST_END sent; waiting for EXCHANGE_RESULTS.
    Ended,
    /// Our results sent; waiting for the server's.
    Results,
    /// Waiting for DISPLAY_RESULTS.
    Display,
    Finished,
}

struct Stream {
    conn: ConnId,
    sender: bool,
    bytes: u64,
    open: bool,
}

pub(super) struct Client {
    plan: Plan,
    report: mpsc::Sender<Progress>,
    phase: Phase,
    cookie: [u8; COOKIE_LEN],
    control: Option<ConnId>,
    streams: Vec<Stream>,
    /// The stream being opened (its cookie is sent once it connects, then the next opens).
    opening: Option<ConnId>,
    started: Instant,
    ended: Instant,
    cpu_at_start: Duration,
    sent: u64,
    received: u64,
    control_buf: Vec<u8>,
    server_results: Vec<(u32, u64)>,
}

impl Client {
    pub(super) fn new(plan: Plan, report: mpsc::Sender<Progress>) -> Client {
        Client {
            plan,
            report,
            phase: Phase::Start,
            cookie: make_cookie(),
            control: None,
            streams: Vec::with_capacity(2 * plan.parallel as usize),
            opening: None,
            started: Instant::ZERO,
            ended: Instant::ZERO,
            cpu_at_start: Duration::ZERO,
            sent: 0,
            received: 0,
            control_buf: Vec::with_capacity(MAX_JSON + 4),
            server_results: Vec::new(),
        }
    }

    fn fail(&mut self, iface: &mut Interface, why: String) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        if let Some(c) = self.control {
            iface.abort(c);
        }
        for s in &self.streams {
            iface.abort(s.conn);
        }
        let _ = self.report.send(Progress::Failed(why));
    }

    fn send_state(&mut self, iface: &mut Interface, state: State) {
        if let Some(c) = self.control {
            let _ = iface.send(c, &[state.byte()]);
        }
    }

    fn send_json(&mut self, iface: &mut Interface, json: &[u8]) {
        let mut message = Vec::with_capacity(4 + json.len());
        proto::frame(json, &mut message);
        if let Some(c) = self.control {
            let _ = iface.send(c, &message);
        }
    }

    fn open_next_stream(&mut self, iface: &mut Interface) {
        let (receivers, senders) = self.wanted();
        if self.streams.len() + usize::from(self.opening.is_some()) >= receivers + senders {
            return;
        }
        match iface.connect(Endpoint::new(*self.plan.target.ip(), self.plan.target.port())) {
            Ok(conn) => self.opening = Some(conn),
            Err(e) => self.fail(iface, format!("cannot open a stream: {e}")),
        }
    }

    /// The client's streams: sending ones (the server's receiving ones, first), receiving ones.
    fn wanted(&self) -> (usize, usize) {
        let p = self.plan.parallel as usize;
        match self.plan.mode {
            Mode::Forward => (p, 0),
            Mode::Reverse => (0, p),
            Mode::Bidirectional => (p, p),
        }
    }

    fn pump(&mut self, iface: &mut Interface, i: usize) {
        if self.phase != Phase::Running {
            return;
        }
        let limit = self.plan.bytes;
        let stream = &mut self.streams[i];
        if !stream.sender || !stream.open {
            return;
        }
        loop {
            let want = if limit > 0 { (limit - self.sent).min(SEND_CHUNK as u64) as usize } else { SEND_CHUNK };
            if want == 0 {
                return;
            }
            match iface.send(stream.conn, &SOURCE[..want]) {
                Ok(n) if n > 0 => {
                    stream.bytes += n as u64;
                    self.sent += n as u64;
                    if n < want {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn end_test(&mut self, iface: &mut Interface, now: Instant) {
        self.ended = now;
        self.phase = Phase::Ended;
        self.send_state(iface, State::TestEnd);
    }

    /// Whether the byte count (`-n`) is reached in the main direction.
    fn bytes_done(&self) -> bool {
        let b = self.plan.bytes;
        b > 0 && (self.sent >= b || self.received >= b)
    }

    fn control_input(&mut self, iface: &mut Interface, conn: ConnId, now: Instant) {
        loop {
            let available = iface.recv_queue_len(conn);
            if self.phase == Phase::Results {
                // The server's results: a length, then JSON.
                if available < 4 {
                    return;
                }
                let (a, b) = iface.recv_slices(conn);
                let mut len = [0u8; 4];
                copy_prefix(a, b, &mut len);
                let len = u32::from_be_bytes(len) as usize;
                if len > MAX_JSON {
                    return self.fail(iface, "the server's results are too long".into());
                }
                if available < 4 + len {
                    return;
                }
                self.control_buf.clear();
                self.control_buf.resize(4 + len, 0);
                copy_prefix(a, b, &mut self.control_buf);
                iface.recv_consume(conn, 4 + len);
                self.server_results = proto::parse_client_results(&self.control_buf[4..]).unwrap_or_default();
                self.phase = Phase::Display;
                continue;
            }
            let (a, b) = iface.recv_slices(conn);
            let Some(byte) = a.first().or(b.first()).copied() else { return };
            iface.recv_consume(conn, 1);
            match State::from_byte(byte) {
                Some(State::ParamExchange) if self.phase == Phase::Setup => {
                    let p = &self.plan;
                    let mut params = json!({
                        "tcp": true, "omit": 0, "time": p.seconds, "num": p.bytes, "blockcount": 0,
                        "parallel": p.parallel, "len": SEND_CHUNK, "pacing_timer": 1000,
                        "client_version": "3.12",
                    });
                    match p.mode {
                        Mode::Forward => {}
                        Mode::Reverse => params["reverse"] = json!(true),
                        Mode::Bidirectional => params["bidirectional"] = json!(true),
                    }
                    let json = serde_json::to_vec(&params).unwrap_or_default();
                    self.send_json(iface, &json);
                }
                Some(State::CreateStreams) if self.phase == Phase::Setup => self.open_next_stream(iface),
                Some(State::TestStart) if self.phase == Phase::Setup => {}
                Some(State::TestRunning) if self.phase == Phase::Setup => {
                    self.phase = Phase::Running;
                    self.started = now;
                    self.cpu_at_start = process_cpu();
                    for i in 0..self.streams.len() {
                        self.pump(iface, i);
                        // Data the server sent before this byte was read waited in the ring.
                        let conn = self.streams[i].conn;
                        self.count_received(iface, conn);
                    }
                }
                Some(State::ExchangeResults) if matches!(self.phase, Phase::Ended | Phase::Running) => {
                    if self.phase == Phase::Running {
                        self.ended = now; // the server ended the test
                    }
                    let seconds = self.ended.saturating_duration_since(self.started).as_secs_f64();
                    let results: Vec<StreamResult> = self
                        .streams
                        .iter()
                        .enumerate()
                        .map(|(n, s)| StreamResult { id: proto::stream_id(n), bytes: s.bytes, seconds })
                        .collect();
                    let cpu = process_cpu().saturating_sub(self.cpu_at_start).as_secs_f64();
                    let cpu = if seconds > 0.0 { 100.0 * cpu / seconds } else { 0.0 };
                    let json = proto::results_json([cpu, 0.0, 0.0], self.plan.mode != Mode::Reverse, &results);
                    self.send_json(iface, &json);
                    for s in &mut self.streams {
                        if s.open {
                            s.open = false;
                            iface.close(s.conn);
                        }
                    }
                    self.phase = Phase::Results;
                }
                Some(State::DisplayResults) if self.phase == Phase::Display => {
                    self.send_state(iface, State::IperfDone);
                    iface.close(conn);
                    self.phase = Phase::Finished;
                    let _ = self.report.send(Progress::Done(self.summary()));
                    return;
                }
                Some(State::AccessDenied) => return self.fail(iface, "the server is busy running a test".into()),
                Some(State::ServerError) => {
                    let mut code = [0u8; 4];
                    let (a, b) = iface.recv_slices(conn);
                    if a.len() + b.len() >= 4 {
                        copy_prefix(a, b, &mut code);
                    }
                    let code = i32::from_be_bytes(code);
                    return self.fail(iface, format!("the server refused the test (iperf3 error {code})"));
                }
                _ => return self.fail(iface, format!("unexpected control byte {} in {:?}", byte as i8, self.phase)),
            }
        }
    }

    fn summary(&self) -> String {
        let seconds = self.ended.saturating_duration_since(self.started).as_secs_f64();
        let gbit = |b: u64| if seconds > 0.0 { b as f64 * 8.0 / seconds / 1e9 } else { 0.0 };
        let server = |client_sent: bool| {
            self.server_results
                .iter()
                .filter(|(id, _)| {
                    self.streams.iter().enumerate().any(|(n, s)| proto::stream_id(n) == *id && s.sender == client_sent)
                })
                .map(|(_, b)| b)
                .sum::<u64>()
        };
        format!(
            "iperf3 client: {} {} stream(s) {seconds:.3} s: sent {} bytes ({:.3} Gbit/s) received {} bytes ({:.3} Gbit/s); \
             server received {} sent {} bytes",
            self.plan.mode.name(),
            self.plan.parallel,
            self.sent,
            gbit(self.sent),
            self.received,
            gbit(self.received),
            server(true),
            server(false),
        )
    }

    /// Consumes a stream's data, counted while the test runs. Before TEST_RUNNING is read it
    /// stays in the ring (the server starts sending as it sends TEST_RUNNING, and the streams'
    /// data can be delivered before the control connection's byte).
    fn count_received(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.phase == Phase::Setup && self.stream_index(conn).is_some() {
            return;
        }
        let (a, b) = iface.recv_slices(conn);
        let n = a.len() + b.len();
        iface.recv_consume(conn, n);
        if let Some(i) = self.stream_index(conn) {
            if !self.streams[i].sender && self.phase == Phase::Running && n > 0 {
                self.streams[i].bytes += n as u64;
                self.received += n as u64;
                if self.bytes_done() {
                    self.end_test(iface, iface.now());
                }
            }
        }
    }

    fn stream_index(&self, conn: ConnId) -> Option<usize> {
        self.streams.iter().position(|s| s.conn == conn)
    }
}

impl App for Client {
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        match self.phase {
            Phase::Start => {
                self.phase = Phase::Setup;
                match iface.connect(Endpoint::new(*self.plan.target.ip(), self.plan.target.port())) {
                    Ok(conn) => self.control = Some(conn),
                    Err(e) => self.fail(iface, format!("cannot connect: {e}")),
                }
            }
            Phase::Running => {
                let timed_out = self.plan.seconds > 0
                    && now.saturating_duration_since(self.started) >= Duration::from_secs(self.plan.seconds);
                if timed_out || self.bytes_done() {
                    self.end_test(iface, now);
                }
            }
            _ => {}
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        (self.phase == Phase::Running && self.plan.seconds > 0)
            .then(|| self.started + Duration::from_secs(self.plan.seconds))
    }

    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        if Some(conn) == self.control {
            // One-byte states must not wait for an ACK (Nagle): TEST_END ends the timing.
            iface.set_nagle(conn, false);
        }
        let _ = iface.send(conn, &self.cookie);
        if self.opening == Some(conn) {
            self.opening = None;
            let (senders, _) = self.wanted();
            let sender = self.streams.len() < senders;
            self.streams.push(Stream { conn, sender, bytes: 0, open: true });
            self.open_next_stream(iface);
        }
    }

    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        if Some(conn) == self.control {
            return self.control_input(iface, conn, iface.now());
        }
        self.count_received(iface, conn);
    }

    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Some(i) = self.stream_index(conn) {
            self.pump(iface, i);
            if self.bytes_done() && self.phase == Phase::Running {
                self.end_test(iface, iface.now());
            }
        }
    }

    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        if Some(conn) == self.control {
            self.control_input(iface, conn, iface.now());
            if self.phase != Phase::Finished {
                self.fail(iface, format!("the server closed the control connection in {:?}", self.phase));
            }
            return;
        }
        self.on_readable(iface, conn);
        if let Some(i) = self.stream_index(conn) {
            self.streams[i].open = false;
        }
        iface.close(conn);
    }

    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        if Some(conn) == self.control && self.phase != Phase::Finished {
            self.fail(iface, format!("the control connection ended: {reason:?}"));
        } else if self.opening == Some(conn) {
            self.fail(iface, format!("a stream did not connect: {reason:?}"));
        }
    }
}

/// A cookie iperf3 accepts: 36 characters of [a-z2-7] and a NUL.
fn make_cookie() -> [u8; COOKIE_LEN] {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut cookie = [0u8; COOKIE_LEN];
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in cookie[..COOKIE_LEN - 1].chunks_mut(12).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        let mut bits = h.finish();
        for c in chunk {
            *c = ALPHABET[(bits & 31) as usize];
            bits >>= 5;
        }
    }
    cookie
}

/// Runs one test and prints its line.
pub fn run(config: RuntimeConfig, plan: Plan) -> anyhow::Result<()> {
    if config.queues != 1 {
        bail!("synack iperf3 runs on one queue: drop --queues");
    }
    if !(1..=MAX_STREAMS).contains(&plan.parallel) {
        bail!("--parallel must be 1..={MAX_STREAMS}");
    }
    if (plan.seconds == 0) == (plan.bytes == 0) {
        bail!("give exactly one of --time and --bytes");
    }
    let (tx, rx) = mpsc::channel();
    let mut app = Some(Client::new(plan, tx));
    let ifname = config.ifname.clone();
    let runtime = Runtime::start(config, |_| app.take().expect("one worker"))
        .with_context(|| format!("cannot start on {ifname}"))?;
    let limit = Duration::from_secs(plan.seconds + 30);
    let outcome = match rx.recv_timeout(limit) {
        Ok(Progress::Done(line)) => {
            println!("{line}");
            Ok(())
        }
        Ok(Progress::Failed(why)) => Err(anyhow!(why)),
        Err(_) => Err(anyhow!("no result within {} s", limit.as_secs())),
    };
    // Let the last segments (IPERF_DONE, FINs) leave before the workers stop.
    std::thread::sleep(Duration::from_millis(100));
    let report = runtime.stop();
    eprintln!("synack counters: {}", report.counters);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_iperf3_cookies() {
        let (a, b) = (make_cookie(), make_cookie());
        assert_eq!(a[COOKIE_LEN - 1], 0, "NUL-terminated");
        assert!(a[..COOKIE_LEN - 1].iter().all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(c)));
        assert_ne!(a, b, "two tests get two cookies");
    }
}
