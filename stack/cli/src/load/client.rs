//! The load generator's application, one per worker: opens connections on a schedule (open
//! loop, `--rate`) or keeps N in flight (closed loop, `--concurrency`), sends a request on each,
//! reads the response to its end, and closes first (or keeps the connection for the next
//! request). Its state per connection lives in an array indexed by the slab index, sized at
//! start; recording a latency is an increment in a preallocated histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use synack::iface::{App, ConnId, ConnectError, Interface};
use synack::tcp::{CloseReason, Endpoint};
use synack::time::Instant;

use super::histogram::Histogram;
use super::report::Tick;
use super::response::{Progress, ResponseReader};

/// Most connections one poll starts, so that a worker far behind its schedule still reads
/// its receive ring in between.
const STARTS_PER_POLL: usize = 256;
const SECOND: Duration = Duration::from_secs(1);

/// How the load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Open loop: this many starts per second over all workers, on a fixed schedule.
    Rate(u64),
    /// Closed loop: this many connections (or requests, with keep-alive) in flight per worker.
    Concurrency(usize),
}

/// What every worker does (the shared part of the configuration).
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Endpoint,
    pub mode: Mode,
    pub keepalive: bool,
    pub request: Arc<[u8]>,
    pub duration: Duration,
    pub workers: u32,
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct ConnState {
    /// The connection this slot now holds, if any.
    id: Option<ConnId>,
    /// When the current request was due: latency counts from here.
    due: Instant,
    /// Request bytes queued so far.
    sent: usize,
    reader: ResponseReader,
    /// A request is outstanding.
    busy: bool,
    /// Responses completed on this connection.
    responses: u32,
    /// We closed (or aborted) it.
    closing: bool,
    /// The peer closed its side.
    peer_closed: bool,
    /// It failed (a bad response): an error whatever the close.
    failed: bool,
}

/// One worker's load generator.
pub struct LoadClient {
    plan: Plan,
    worker: u32,
    /// The run's start, shared by the workers (nanoseconds of `Instant`; 0 until set).
    start_at: Arc<AtomicU64>,
    start: Option<Instant>,
    end: Instant,
    conns: Vec<ConnState>,
    /// Keep-alive connections waiting for a request (open loop), most recent last.
    idle: Vec<ConnId>,
    in_flight: usize,
    /// The next scheduled start of this worker (open loop).
    next_start: u64,
    second: u64,
    tick: Tick,
    report: mpsc::Sender<Tick>,
    recycled: mpsc::Receiver<Histogram>,
    closed_idle: bool,
    /// The last start found no port or slot: the next is due at once but cannot be made yet.
    blocked: bool,
}

impl LoadClient {
    pub fn new(
        plan: Plan,
        worker: u32,
        start_at: Arc<AtomicU64>,
        report: mpsc::Sender<Tick>,
        recycled: mpsc::Receiver<Histogram>,
    ) -> LoadClient {
        let max = plan.max_connections;
        LoadClient {
            conns: vec![ConnState::default(); max],
            idle: Vec::with_capacity(max),
            plan,
            worker,
            start_at,
            start: None,
            end: Instant::ZERO,
            in_flight: 0,
            next_start: 0,
            second: 0,
            tick: Tick::new(worker, 0, Histogram::new()),
            report,
            recycled,
            closed_idle: false,
            blocked: false,
        }
    }

    /// When this worker's `j`-th start is due: the global starts are `start + k / rate`, and
    /// worker `w` of `n` takes every k with k mod n = w.
    fn due(&self, start: Instant, rate: u64, j: u64) -> Instant {
        let k = j * u64::from(self.plan.workers) + u64::from(self.worker);
        start + Duration::from_nanos((u128::from(k) * 1_000_000_000 / u128::from(rate.max(1))) as u64)
    }

    /// How many of this worker's starts are due by `now` (and within the run).
    fn due_by(&self, start: Instant, rate: u64, now: Instant) -> u64 {
        let duration = self.plan.duration.as_nanos();
        if duration == 0 {
            return 0;
        }
        // The end is exclusive.
        let until = now.saturating_duration_since(start).as_nanos().min(duration - 1);
        // Global starts k with k / rate <= until: k = 0 ..= until * rate / 1e9.
        let global = until * u128::from(rate) / 1_000_000_000 + 1;
        let (n, w) = (u128::from(self.plan.workers), u128::from(self.worker));
        if global <= w {
            0
        } else {
            ((global - 1 - w) / n + 1) as u64
        }
    }

    /// Sends the ticks of every second that has ended.
    fn roll_seconds(&mut self, iface: &Interface, start: Instant, now: Instant) {
        while now >= start + SECOND * (self.second as u32 + 1) {
            let latency = self.recycled.try_recv().unwrap_or_default();
            let mut tick = std::mem::replace(&mut self.tick, Tick::new(self.worker, self.second + 1, latency));
            self.tick.max_in_flight = self.in_flight;
            tick.time_wait = iface.time_wait_count();
            tick.reused_total = iface.counters().time_wait_reused;
            tick.in_flight = self.in_flight;
            if let Mode::Rate(rate) = self.plan.mode {
                tick.behind = self.due_by(start, rate, now).saturating_sub(self.next_start);
            }
            let _ = self.report.send(tick);
            self.second += 1;
        }
    }

    /// Starts what is due: connections, or requests on idle keep-alive connections.
    fn start_work(&mut self, iface: &mut Interface, start: Instant, now: Instant) {
        self.blocked = false;
        match self.plan.mode {
            Mode::Rate(rate) => {
                for _ in 0..STARTS_PER_POLL {
                    let due = self.due(start, rate, self.next_start);
                    if due > now || due >= self.end {
                        break;
                    }
                    if self.plan.keepalive {
                        if let Some(conn) = self.pop_idle(iface) {
                            self.next_start += 1;
                            self.send_request(iface, conn, due);
                            continue;
                        }
                    }
                    if !self.open(iface, due) {
                        break;
                    }
                }
            }
            Mode::Concurrency(n) => {
                for _ in 0..STARTS_PER_POLL {
                    if self.in_flight >= n || !self.open(iface, now) {
                        break;
                    }
                }
            }
        }
    }

    /// Opens a connection for a request due at `due`; false when it must wait for a port or a
    /// slot (the start stays due, and its latency grows: no coordinated omission).
    fn open(&mut self, iface: &mut Interface, due: Instant) -> bool {
        match iface.connect(self.plan.target) {
            Ok(id) => {
                let Some(state) = self.conns.get_mut(id.index() as usize) else {
                    // More slots than the array: cannot happen (both are max_connections).
                    iface.abort(id);
                    self.tick.errors.aborted += 1;
                    return false;
                };
                *state = ConnState { id: Some(id), due, ..ConnState::default() };
                self.in_flight += 1;
                self.tick.max_in_flight = self.tick.max_in_flight.max(self.in_flight);
                self.next_start += 1;
                true
            }
            Err(ConnectError::NoPortAvailable | ConnectError::TableFull) => {
                self.tick.start_waits += 1;
                self.blocked = true;
                false
            }
            Err(ConnectError::NoRoute | ConnectError::Unspecified | ConnectError::PortOutOfRange) => {
                self.tick.errors.connect_failed += 1;
                self.next_start += 1;
                true
            }
        }
    }

    fn pop_idle(&mut self, iface: &Interface) -> Option<ConnId> {
        while let Some(id) = self.idle.pop() {
            let state = &self.conns[id.index() as usize];
            if state.id == Some(id) && !state.busy && !state.closing && iface.tuple(id).is_some() {
                return Some(id);
            }
        }
        None
    }

    fn send_request(&mut self, iface: &mut Interface, conn: ConnId, due: Instant) {
        let state = &mut self.conns[conn.index() as usize];
        state.due = due;
        state.sent = 0;
        state.busy = true;
        state.reader.reset();
        self.push(iface, conn);
    }

    /// Queues what is left of the request.
    fn push(&mut self, iface: &mut Interface, conn: ConnId) {
        let state = &mut self.conns[conn.index() as usize];
        while state.busy && state.sent < self.plan.request.len() {
            match iface.send(conn, &self.plan.request[state.sent..]) {
                Ok(n) if n > 0 => state.sent += n,
                _ => return, // resumed by on_writable
            }
        }
    }

    /// A response is complete.
    fn complete(&mut self, iface: &mut Interface, conn: ConnId) {
        let now = iface.now();
        let state = &mut self.conns[conn.index() as usize];
        state.busy = false;
        state.responses += 1;
        self.tick.requests += 1;
        self.tick.latency.record(now.saturating_duration_since(state.due).as_nanos() as u64);
        if !self.plan.keepalive || now >= self.end || state.peer_closed || state.reader.closes() {
            // Closing first puts TIME_WAIT on this side: what port reuse is for.
            state.closing = true;
            iface.close(conn);
            return;
        }
        match self.plan.mode {
            Mode::Rate(_) => self.idle.push(conn),
            Mode::Concurrency(_) => self.send_request(iface, conn, now),
        }
    }

    fn fail(&mut self, iface: &mut Interface, conn: ConnId) {
        let state = &mut self.conns[conn.index() as usize];
        if !state.failed {
            state.failed = true;
            state.closing = true;
            iface.abort(conn);
        }
    }

    fn state_of(&self, conn: ConnId) -> Option<&ConnState> {
        self.conns.get(conn.index() as usize).filter(|s| s.id == Some(conn))
    }
}

impl App for LoadClient {
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        let start = match self.start {
            Some(start) => start,
            None => {
                let nanos = self.start_at.load(Ordering::Acquire);
                if nanos == 0 || now < Instant::from_nanos(nanos) {
                    return;
                }
                let start = Instant::from_nanos(nanos);
                self.start = Some(start);
                self.end = start + self.plan.duration;
                start
            }
        };
        self.roll_seconds(iface, start, now);
        if now < self.end {
            self.start_work(iface, start, now);
        } else if !self.closed_idle {
            self.closed_idle = true;
            while let Some(id) = self.pop_idle(iface) {
                self.conns[id.index() as usize].closing = true;
                iface.close(id);
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let start = match self.start {
            Some(start) => start,
            // Not started yet: look again soon.
            None => return Some(synack::clock::now() + Duration::from_millis(1)),
        };
        let next_second = start + SECOND * (self.second as u32 + 1);
        let next_start = match self.plan.mode {
            // Waiting for a port or a slot: only a frame or a timer can free one, and either
            // wakes the worker; a start due in the past would make it spin instead of sleep.
            Mode::Rate(_) if self.blocked => None,
            Mode::Rate(rate) => Some(self.due(start, rate, self.next_start)).filter(|&due| due < self.end),
            Mode::Concurrency(_) => None,
        };
        Some(next_start.map_or(next_second, |due| due.min(next_second)))
    }

    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        if let Some(state) = self.state_of(conn) {
            let due = state.due;
            self.send_request(iface, conn, due);
        }
    }

    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        if self.state_of(conn).is_some() {
            self.push(iface, conn);
        }
    }

    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let Some(state) = self.conns.get_mut(conn.index() as usize).filter(|s| s.id == Some(conn)) else {
            return;
        };
        let (a, b) = iface.recv_slices(conn);
        let len = a.len() + b.len();
        let mut outcome = Ok(Progress::Incomplete);
        if state.busy {
            outcome = state.reader.feed(a);
            if outcome == Ok(Progress::Incomplete) {
                outcome = state.reader.feed(b);
            }
        } else if len > 0 && !state.closing {
            // Bytes nobody asked for.
            outcome = Err(super::response::BadResponse::StatusLine);
        }
        // One request is outstanding at a time, so whatever follows a response is not ours
        // to keep: consume it all.
        iface.recv_consume(conn, len);
        match outcome {
            Ok(Progress::Complete { .. }) => self.complete(iface, conn),
            Ok(Progress::Incomplete) => {}
            Err(_) => self.fail(iface, conn),
        }
    }

    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        let Some(state) = self.conns.get_mut(conn.index() as usize).filter(|s| s.id == Some(conn)) else {
            return;
        };
        state.peer_closed = true;
        if state.busy {
            match state.reader.eof() {
                Ok(_) => self.complete(iface, conn),
                Err(_) => return self.fail(iface, conn),
            }
        }
        let state = &mut self.conns[conn.index() as usize];
        if !state.closing {
            state.closing = true;
            iface.close(conn);
        }
    }

    fn on_closed(&mut self, _: &mut Interface, conn: ConnId, reason: CloseReason) {
        let Some(state) = self.conns.get_mut(conn.index() as usize).filter(|s| s.id == Some(conn)) else {
            return;
        };
        let state = std::mem::take(state);
        self.in_flight = self.in_flight.saturating_sub(1);
        let errors = &mut self.tick.errors;
        match reason {
            _ if state.failed => errors.bad_response += 1,
            CloseReason::Normal if state.responses > 0 && !state.busy => self.tick.connections += 1,
            // Closed normally by the peer before (or in the middle of) a response.
            CloseReason::Normal => errors.bad_response += 1,
            CloseReason::Refused => errors.refused += 1,
            CloseReason::Reset => errors.reset += 1,
            CloseReason::TimedOut => errors.timed_out += 1,
            _ => errors.aborted += 1,
        }
    }
}
