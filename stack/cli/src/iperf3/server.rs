//! The iperf3 server as an [`App`]: one test at a time per worker, as `iperf3 -s` does.
//!
//! The sequence (iperf_server_api.c): the client's control connection sends its cookie; the
//! server answers PARAM_EXCHANGE, reads the parameters, answers CREATE_STREAMS; the client
//! opens the data streams, each starting with the same cookie (receiving streams first, then
//! sending ones, for `--bidir`); with all of them open the server sends TEST_START and
//! TEST_RUNNING, and data flows until the client sends TEST_END. The server then closes the
//! streams, sends EXCHANGE_RESULTS, reads the client's results, sends its own and
//! DISPLAY_RESULTS; the client ends with IPERF_DONE.
//!
//! The data path (a stream's readable or writable event) only counts bytes: received data is
//! consumed in place, sent data comes from a static block. Nothing allocates there; the JSON
//! messages, once per test, do.

use std::time::Duration;

use synack::iface::{App, ConnId, Interface};
use synack::tcp::CloseReason;
use synack::time::Instant;

use super::proto::{self, Mode, Params, State, StreamResult, COOKIE_LEN, MAX_JSON, MAX_STREAMS};

/// How long a test may wait for its next control message outside the running phase (a client
/// that goes silent must not hold the server forever).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Past the test's duration (and omitted seconds), how long the server waits for TEST_END
/// before it ends the test itself (iperf_server_api.c `create_server_timers`: 5 s).
const END_GRACE: Duration = Duration::from_secs(5);
/// Bytes a sending stream queues per call.
pub(super) const SEND_CHUNK: usize = 64 * 1024;

/// What a sending stream sends: iperf3 does not look at the bytes.
pub(super) static SOURCE: [u8; SEND_CHUNK] = {
    let mut block = [0u8; SEND_CHUNK];
    let mut i = 0;
    while i < SEND_CHUNK {
        block[i] = (i % 251) as u8;
        i += 1;
    }
    block
};

/// What a connection of ours is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// No connection, or one whose events no longer matter (ended test).
    Idle,
    /// Accepted; its cookie has not arrived yet.
    Cookie,
    /// The test's control connection.
    Control,
    /// Data stream number n of the test.
    Stream(u16),
    /// Refused (ACCESS_DENIED sent): closing.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No test.
    Idle,
    /// PARAM_EXCHANGE sent; waiting for the parameters.
    Params,
    /// CREATE_STREAMS sent; waiting for the streams.
    Streams,
    /// TEST_RUNNING sent; data flows until TEST_END.
    Running,
    /// EXCHANGE_RESULTS sent; waiting for the client's results.
    Results,
    /// DISPLAY_RESULTS sent; waiting for IPERF_DONE.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    conn: ConnId,
    /// Sends (true) or receives.
    sender: bool,
    /// Bytes sent or received, and those of the omitted seconds.
    bytes: u64,
    omitted: u64,
    open: bool,
}

/// What a control message read gave.
enum Message {
    NotYet,
    /// A JSON message of this many bytes is in `control_buf`.
    Json,
    /// One state byte.
    State(u8),
    TooLong,
}

/// The iperf3 server of one worker.
pub struct Iperf3Server {
    roles: Vec<Role>,
    phase: Phase,
    control: Option<ConnId>,
    cookie: [u8; COOKIE_LEN],
    params: Params,
    streams: Vec<Stream>,
    /// When the current phase gives up, and when the omitted seconds end.
    deadline: Option<Instant>,
    omit_until: Option<Instant>,
    started: Instant,
    ended: Instant,
    cpu_at_start: Duration,
    /// Bytes all sending streams may still send (`-n`/`-k`), if limited.
    send_budget: Option<u64>,
    control_buf: Vec<u8>,
    tests: u64,
}

impl Iperf3Server {
    pub fn new(max_connections: usize) -> Iperf3Server {
        Iperf3Server {
            roles: vec![Role::Idle; max_connections],
            phase: Phase::Idle,
            control: None,
            cookie: [0; COOKIE_LEN],
            params: proto::parse_params(b"{}").expect("empty parameters are valid"),
            streams: Vec::with_capacity(2 * MAX_STREAMS as usize),
            deadline: None,
            omit_until: None,
            started: Instant::ZERO,
            ended: Instant::ZERO,
            cpu_at_start: Duration::ZERO,
            send_budget: None,
            control_buf: Vec::with_capacity(MAX_JSON + 4),
            tests: 0,
        }
    }

    fn role(&self, conn: ConnId) -> Role {
        self.roles.get(conn.index() as usize).copied().unwrap_or(Role::Idle)
    }

    fn set_role(&mut self, conn: ConnId, role: Role) {
        if let Some(r) = self.roles.get_mut(conn.index() as usize) {
            *r = role;
        }
    }

    /// Sends one state byte on the control connection (its buffer is empty between messages,
    /// so a byte always fits; a refusal means the connection is gone).
    fn send_state(&mut self, iface: &mut Interface, state: State) {
        if let Some(control) = self.control {
            let _ = iface.send(control, &[state.byte()]);
        }
    }

    /// Reads the cookie of a new connection: the first one while idle becomes a test's control
    /// connection; while the test waits for its streams, one with the test's cookie becomes a
    /// stream; anything else is refused with ACCESS_DENIED, as iperf3 refuses a second client.
    fn read_cookie(&mut self, iface: &mut Interface, conn: ConnId, now: Instant) {
        if iface.recv_queue_len(conn) < COOKIE_LEN {
            return;
        }
        let mut cookie = [0u8; COOKIE_LEN];
        let (a, b) = iface.recv_slices(conn);
        copy_prefix(a, b, &mut cookie);
        iface.recv_consume(conn, COOKIE_LEN);
        match self.phase {
            Phase::Idle => {
                self.cookie = cookie;
                self.control = Some(conn);
                self.set_role(conn, Role::Control);
                // One-byte states must not wait for an ACK (Nagle): TEST_END ends the timing.
                iface.set_nagle(conn, false);
                self.phase = Phase::Params;
                self.deadline = Some(now + SETUP_TIMEOUT);
                self.send_state(iface, State::ParamExchange);
                // A client that did not wait for PARAM_EXCHANGE: its parameters are here already.
                self.control_input(iface, conn, now);
            }
            Phase::Streams if cookie == self.cookie => self.add_stream(iface, conn, now),
            _ => {
                self.set_role(conn, Role::Refused);
                let _ = iface.send(conn, &[State::AccessDenied.byte()]);
                iface.close(conn);
            }
        }
    }

    /// A stream of the test: the first ones receive, the rest send (iperf_run_server). With all
    /// of them open the test starts.
    fn add_stream(&mut self, iface: &mut Interface, conn: ConnId, now: Instant) {
        let (receivers, senders) = self.params.streams();
        let n = self.streams.len();
        self.streams.push(Stream { conn, sender: n >= receivers, bytes: 0, omitted: 0, open: true });
        self.set_role(conn, Role::Stream(n as u16));
        if self.streams.len() < receivers + senders {
            return;
        }
        self.send_state(iface, State::TestStart);
        self.send_state(iface, State::TestRunning);
        self.phase = Phase::Running;
        self.started = now;
        self.cpu_at_start = process_cpu();
        self.omit_until = (self.params.omit_s > 0).then(|| now + Duration::from_secs(self.params.omit_s));
        self.send_budget = self.params.send_limit();
        // A timed test that the client does not end is ended by the server after a grace.
        self.deadline = (self.params.duration_s > 0)
            .then(|| now + Duration::from_secs(self.params.duration_s + self.params.omit_s) + END_GRACE);
        for i in 0..self.streams.len() {
            if self.streams[i].sender {
                self.pump(iface, i);
            }
        }
    }

    /// Queues data on sending stream `i` until its buffer or the byte budget is full.
    fn pump(&mut self, iface: &mut Interface, i: usize) {
        if self.phase != Phase::Running {
            return;
        }
        let stream = &mut self.streams[i];
        if !stream.open || !stream.sender {
            return;
        }
        loop {
            let want = self.send_budget.map_or(SEND_CHUNK, |left| left.min(SEND_CHUNK as u64) as usize);
            if want == 0 {
                return;
            }
            match iface.send(stream.conn, &SOURCE[..want]) {
                Ok(n) if n > 0 => {
                    stream.bytes += n as u64;
                    if let Some(left) = &mut self.send_budget {
                        *left -= n as u64;
                    }
                    if n < want {
                        return; // the buffer is full: on_writable resumes
                    }
                }
                _ => return,
            }
        }
    }

    /// Consumes what receiving stream `i` has buffered and counts it.
    fn drain(&mut self, iface: &mut Interface, i: usize) {
        let stream = &mut self.streams[i];
        let (a, b) = iface.recv_slices(stream.conn);
        let n = a.len() + b.len();
        if n == 0 {
            return;
        }
        iface.recv_consume(stream.conn, n);
        if !stream.sender {
            stream.bytes += n as u64;
        }
    }

    /// Takes the next control message the phase expects, if it has arrived whole.
    fn take_message(&mut self, iface: &mut Interface, conn: ConnId, json: bool) -> Message {
        let available = iface.recv_queue_len(conn);
        let (a, b) = iface.recv_slices(conn);
        if !json {
            return match a.first().or(b.first()) {
                Some(&byte) => {
                    iface.recv_consume(conn, 1);
                    Message::State(byte)
                }
                None => Message::NotYet,
            };
        }
        if available < 4 {
            return Message::NotYet;
        }
        let mut len = [0u8; 4];
        copy_prefix(a, b, &mut len);
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_JSON {
            return Message::TooLong;
        }
        if available < 4 + len {
            return Message::NotYet;
        }
        self.control_buf.clear();
        self.control_buf.resize(4 + len, 0);
        copy_prefix(a, b, &mut self.control_buf);
        iface.recv_consume(conn, 4 + len);
        self.control_buf.drain(..4);
        Message::Json
    }

    /// Runs the control connection's messages for the phase.
    fn control_input(&mut self, iface: &mut Interface, conn: ConnId, now: Instant) {
        loop {
            let json = matches!(self.phase, Phase::Params | Phase::Results);
            let message = match self.phase {
                Phase::Idle => return,
                _ => self.take_message(iface, conn, json),
            };
            match (self.phase, message) {
                (_, Message::NotYet) => return,
                (_, Message::TooLong) => {
                    return self.fail(
                        iface,
                        proto::ParamError::Malformed.iperf_errno(),
                        "a control message is too long",
                    )
                }
                (Phase::Params, Message::Json) => match proto::parse_params(&self.control_buf) {
                    Ok(params) => {
                        self.params = params;
                        self.streams.clear();
                        self.phase = Phase::Streams;
                        self.deadline = Some(now + SETUP_TIMEOUT);
                        self.send_state(iface, State::CreateStreams);
                    }
                    Err(e) => return self.fail(iface, e.iperf_errno(), &format!("parameters refused: {e:?}")),
                },
                (Phase::Results, Message::Json) => {
                    let client = proto::parse_client_results(&self.control_buf).unwrap_or_default();
                    self.send_results(iface, now, &client);
                }
                (_, Message::State(byte)) => match State::from_byte(byte) {
                    Some(State::TestEnd) if matches!(self.phase, Phase::Running | Phase::Streams) => {
                        self.end_streams(iface, now);
                        self.phase = Phase::Results;
                        self.deadline = Some(now + SETUP_TIMEOUT);
                        self.send_state(iface, State::ExchangeResults);
                    }
                    Some(State::IperfDone) => {
                        iface.close(conn);
                        self.reset(iface);
                        return;
                    }
                    Some(State::ClientTerminate) => {
                        println!("iperf3: test {}: the client terminated it", self.tests + 1);
                        iface.close(conn);
                        self.end_streams(iface, now);
                        self.reset(iface);
                        return;
                    }
                    // iperf3's server ignores a TEST_START from the client.
                    Some(State::TestStart) => {}
                    _ => {
                        return self.fail(iface, proto::IE_MESSAGE, &format!("unexpected control byte {}", byte as i8))
                    }
                },
                // JSON is read only in the Params and Results phases.
                (_, Message::Json) => return,
            }
        }
    }

    /// TEST_END: counts what the receiving streams hold, closes every stream, stops the clock.
    fn end_streams(&mut self, iface: &mut Interface, now: Instant) {
        self.ended = now;
        for i in 0..self.streams.len() {
            if self.streams[i].open {
                self.drain(iface, i);
                self.streams[i].open = false;
                iface.close(self.streams[i].conn);
            }
            self.set_role(self.streams[i].conn, Role::Idle);
        }
    }

    /// Sends the server's results and DISPLAY_RESULTS, and prints the test's line.
    fn send_results(&mut self, iface: &mut Interface, now: Instant, client: &[(u32, u64)]) {
        let start = self.omit_until.map_or(self.started, |o| o.max(self.started));
        let seconds = self.ended.saturating_duration_since(start).as_secs_f64();
        let results: Vec<StreamResult> = self
            .streams
            .iter()
            .enumerate()
            .map(|(n, s)| StreamResult { id: proto::stream_id(n), bytes: s.bytes - s.omitted, seconds })
            .collect();
        let wall = self.ended.saturating_duration_since(self.started).as_secs_f64();
        let cpu = process_cpu().saturating_sub(self.cpu_at_start).as_secs_f64();
        let cpu_percent = if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 };
        let server_sends = self.params.mode != Mode::Forward;
        let json = proto::results_json([cpu_percent, 0.0, 0.0], server_sends, &results);
        let mut message = Vec::with_capacity(4 + json.len());
        proto::frame(&json, &mut message);
        if let Some(control) = self.control {
            if iface.send_capacity(control) < message.len() {
                return self.fail(
                    iface,
                    proto::IE_SEND_RESULTS,
                    "the results do not fit the control connection's buffer",
                );
            }
            let _ = iface.send(control, &message);
        }
        self.send_state(iface, State::DisplayResults);
        self.phase = Phase::Done;
        self.deadline = Some(now + SETUP_TIMEOUT);
        self.tests += 1;

        let sum = |sender: bool| {
            results.iter().zip(&self.streams).filter(|(_, s)| s.sender == sender).map(|(r, _)| r.bytes).sum::<u64>()
        };
        let (received, sent) = (sum(false), sum(true));
        // The client's counts: it sent on the streams we received on, and the reverse.
        let client_sum = |we_sent: bool| {
            client
                .iter()
                .filter(|(id, _)| results.iter().zip(&self.streams).any(|(r, s)| r.id == *id && s.sender == we_sent))
                .map(|(_, b)| b)
                .sum::<u64>()
        };
        let gbit = |bytes: u64| if seconds > 0.0 { bytes as f64 * 8.0 / seconds / 1e9 } else { 0.0 };
        println!(
            "iperf3: test {} done: {} {} stream(s) {:.3} s: received {received} bytes ({:.3} Gbit/s) sent {sent} bytes \
             ({:.3} Gbit/s); client sent {} received {} bytes; cpu {cpu_percent:.0}%",
            self.tests,
            self.params.mode.name(),
            self.params.parallel,
            seconds,
            gbit(received),
            gbit(sent),
            client_sum(false),
            client_sum(true),
        );
    }

    /// Ends the test with SERVER_ERROR (and iperf3's error number, which the client prints).
    fn fail(&mut self, iface: &mut Interface, iperf_errno: i32, why: &str) {
        println!("iperf3: test {}: {why}; SERVER_ERROR sent", self.tests + 1);
        if let Some(control) = self.control {
            let mut message = [0u8; 9];
            message[0] = State::ServerError.byte();
            message[1..5].copy_from_slice(&iperf_errno.to_be_bytes());
            let _ = iface.send(control, &message);
            iface.close(control);
        }
        self.end_streams(iface, iface.now());
        self.reset(iface);
    }

    /// Back to no test (the connections were closed by the caller).
    fn reset(&mut self, iface: &mut Interface) {
        for i in 0..self.streams.len() {
            if self.streams[i].open {
                iface.abort(self.streams[i].conn);
                self.set_role(self.streams[i].conn, Role::Idle);
            }
        }
        if let Some(control) = self.control.take() {
            self.set_role(control, Role::Idle);
        }
        self.streams.clear();
        self.phase = Phase::Idle;
        self.deadline = None;
        self.omit_until = None;
    }

    /// The control connection ended (FIN or reset) before IPERF_DONE.
    fn control_lost(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.phase != Phase::Idle {
            println!("iperf3: test {}: the client closed the control connection; test abandoned", self.tests + 1);
        }
        iface.close(conn);
        self.end_streams(iface, iface.now());
        self.reset(iface);
    }
}

/// This process's CPU time so far (for the results' CPU share).
pub(super) fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Copies the first `out.len()` bytes of `a` then `b`.
pub(super) fn copy_prefix(a: &[u8], b: &[u8], out: &mut [u8]) {
    let from_a = a.len().min(out.len());
    out[..from_a].copy_from_slice(&a[..from_a]);
    let rest = out.len() - from_a;
    out[from_a..].copy_from_slice(&b[..rest]);
}

impl App for Iperf3Server {
    fn on_accept(&mut self, iface: &mut Interface, conn: ConnId) {
        self.set_role(conn, Role::Cookie);
        self.read_cookie(iface, conn, iface.now());
    }

    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        match self.role(conn) {
            Role::Stream(n) => self.drain(iface, n as usize),
            Role::Control => self.control_input(iface, conn, iface.now()),
            Role::Cookie => self.read_cookie(iface, conn, iface.now()),
            Role::Idle | Role::Refused => {
                let n = iface.recv_queue_len(conn);
                iface.recv_consume(conn, n);
            }
        }
    }

    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Role::Stream(n) = self.role(conn) {
            self.pump(iface, n as usize);
        }
    }

    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        match self.role(conn) {
            Role::Control => {
                // Messages that came with the FIN first (IPERF_DONE, then the close).
                self.control_input(iface, conn, iface.now());
                if self.control == Some(conn) {
                    self.control_lost(iface, conn);
                }
            }
            Role::Stream(n) => {
                self.drain(iface, n as usize);
                self.streams[n as usize].open = false;
                self.set_role(conn, Role::Idle);
                iface.close(conn);
            }
            Role::Cookie | Role::Refused | Role::Idle => {
                self.set_role(conn, Role::Idle);
                iface.close(conn);
            }
        }
    }

    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, _: CloseReason) {
        match self.role(conn) {
            Role::Control if self.control == Some(conn) => self.control_lost(iface, conn),
            Role::Stream(n) => {
                if let Some(stream) = self.streams.get_mut(n as usize) {
                    stream.open = false;
                }
            }
            _ => {}
        }
        self.set_role(conn, Role::Idle);
    }

    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        if let Some(omit) = self.omit_until {
            if now >= omit && self.phase == Phase::Running {
                // The omitted seconds are over: the results count from here (iperf_reset_stats).
                for s in &mut self.streams {
                    s.omitted = s.bytes;
                }
                self.omit_until = None;
                self.started = omit;
            }
        }
        if self.deadline.is_some_and(|d| now >= d) {
            println!("iperf3: test {}: timed out in phase {:?}; test abandoned", self.tests + 1, self.phase);
            if let Some(control) = self.control {
                iface.abort(control);
            }
            self.end_streams(iface, now);
            self.reset(iface);
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        match (self.deadline, self.omit_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
