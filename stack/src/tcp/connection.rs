//! One TCP connection: the RFC 9293 state machine over fixed buffers, with no I/O.

use core::time::Duration;

use super::congestion::{AckAction, NewReno};
use super::loss_probe::{self, LossProbe, ProbeOutcome};
use super::sack::Scoreboard;
use super::{
    CloseReason, ConnectionStats, DropReason, Endpoint, Event, FourTuple, IsnGenerator, OpenError, Outcome, RecvBuffer,
    RecvError, RttEstimator, Segment, SendBuffer, SendError, SeqNumber, State, TcpConfig, TimeWaitAction,
    TimeWaitRecord, Timer, TimerTable,
};
use crate::time::Instant;
use crate::wire::{emit_header, SackBlocks, TcpFlags, TcpOptions, TcpRepr, Timestamp, MAX_HEADER_LEN};

/// RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// RFC 9293 3.7.1: the MSS to assume when the peer sends no MSS option.
const DEFAULT_PEER_MSS: u16 = 536;
/// A floor on the peer's MSS so that a hostile tiny MSS cannot make us send 1-byte segments.
const MIN_PEER_MSS: u16 = 64;
/// Bytes of the timestamp option as it is laid out in data segments (with padding).
const TIMESTAMP_OPTION_LEN: u16 = 12;
/// The least time between two ACKs that answer unacceptable zero-length segments (Linux's
/// `tcp_invalid_ratelimit`, 500 ms), so that two ends that disagree cannot trade ACKs for ever.
const UNACCEPTABLE_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// The least reordering window (RFC 8985 6.2 uses a quarter of the RTT; this floor keeps a
/// tiny RTT estimate from turning mild reordering into retransmissions).
const MIN_REORDER_WINDOW: Duration = Duration::from_micros(20);

// Pending application events, drained in this order by `poll_event`.
const EV_CONNECTED: u8 = 1;
const EV_READABLE: u8 = 2;
const EV_WRITABLE: u8 = 4;
const EV_PEER_CLOSED: u8 = 8;
const EV_CLOSED: u8 = 16;

/// A TCP connection (RFC 9293): the transmission control block and its buffers.
///
/// Created once with [`Connection::new`], which allocates its rings; reused for any number of
/// lifetimes through [`Connection::listen`] or [`Connection::connect`] once it is CLOSED.
#[derive(Debug)]
pub struct Connection {
    config: TcpConfig,
    isn: IsnGenerator,
    state: State,
    tuple: FourTuple,

    // Send sequence space (RFC 9293 3.3.1). `snd_max` is the highest sequence number sent;
    // `snd_nxt` rewinds below it on retransmission timeout.
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    snd_max: SeqNumber,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    snd_wscale: u8,
    /// Payload bytes per segment we send (peer's MSS, less our options).
    send_mss: u16,
    /// Where our FIN sits, once it was sent.
    fin_seq: Option<SeqNumber>,
    /// The end of the last segment shorter than the MSS (Minshall's variant of Nagle).
    snd_sml: SeqNumber,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    rcv_wscale: u8,
    /// The right edge of the window we last advertised.
    rcv_adv: SeqNumber,
    last_ack_sent: SeqNumber,

    // Negotiated options.
    ts_enabled: bool,
    ts_recent: u32,
    ts_recent_at: Instant,
    ts_offset: u32,
    sack_enabled: bool,
    iss_forced: Option<SeqNumber>,
    /// Opened by `connect` (matters for an RST in SYN-RECEIVED after a simultaneous open).
    active_open: bool,

    tx: SendBuffer,
    rx: RecvBuffer,

    /// The application shut down its write side: FIN follows the queued data.
    fin_queued: bool,
    fin_received: bool,
    /// `close` was called: incoming data is unwanted and FIN_WAIT_2 is bounded.
    orphaned: bool,
    nagle: bool,

    // Output obligations.
    ack_now: bool,
    /// When we last answered an unacceptable zero-length segment (see `ack_unacceptable`).
    last_unacceptable_ack: Option<Instant>,
    segments_since_ack: u8,
    rst_pending: Option<TcpRepr>,
    /// Loss-recovery retransmissions owed (fast retransmit, partial ACKs, SACK holes), one
    /// per ACK that called for one.
    retransmits_due: u8,
    /// The retransmit timer runs as the reordering timer (RFC 8985 6.3); the RTO deadline to
    /// restore when it fires.
    reorder_timer: Option<Instant>,
    /// The tail loss probe episode (RFC 8985 7), and whether its probe is due to be sent.
    loss_probe: LossProbe,
    probe_due: bool,
    persist_probe: bool,
    keepalive_probe: bool,
    /// `close` found us in FIN-WAIT-2: the next timer update arms the orphan timeout.
    orphan_timer_due: bool,

    timers: TimerTable,
    rtt: RttEstimator,
    cc: NewReno,
    /// What the peer SACKed (RFC 6675).
    sack: Scoreboard,
    retries: u8,
    keepalive_probes: u8,

    events: u8,
    send_blocked: bool,
    close_reason: Option<CloseReason>,
    stats: ConnectionStats,
}

impl Connection {
    /// A CLOSED connection with its rings allocated (the only allocation it makes).
    pub fn new(config: TcpConfig) -> Connection {
        Connection::with_buffers(
            config,
            SendBuffer::new(config.send_buffer_len),
            RecvBuffer::new(config.recv_buffer_len),
        )
    }

    fn with_buffers(config: TcpConfig, tx: SendBuffer, rx: RecvBuffer) -> Connection {
        let isn = IsnGenerator::with_key([0, 0]);
        Connection {
            tx,
            rx,
            rtt: RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max),
            cc: NewReno::new(u32::from(config.mss), config.initial_window_segments, SeqNumber(0)),
            config,
            isn,
            state: State::Closed,
            tuple: FourTuple { local: Endpoint::UNSPECIFIED, remote: Endpoint::UNSPECIFIED },
            iss: SeqNumber(0),
            snd_una: SeqNumber(0),
            snd_nxt: SeqNumber(0),
            snd_max: SeqNumber(0),
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: SeqNumber(0),
            snd_wscale: 0,
            send_mss: DEFAULT_PEER_MSS,
            fin_seq: None,
            snd_sml: SeqNumber(0),
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_wscale: 0,
            rcv_adv: SeqNumber(0),
            last_ack_sent: SeqNumber(0),
            ts_enabled: false,
            ts_recent: 0,
            ts_recent_at: Instant::ZERO,
            ts_offset: 0,
            sack_enabled: false,
            iss_forced: None,
            active_open: false,
            fin_queued: false,
            fin_received: false,
            orphaned: false,
            nagle: config.nagle,
            ack_now: false,
            last_unacceptable_ack: None,
            segments_since_ack: 0,
            rst_pending: None,
            retransmits_due: 0,
            reorder_timer: None,
            loss_probe: LossProbe::default(),
            probe_due: false,
            persist_probe: false,
            keepalive_probe: false,
            orphan_timer_due: false,
            timers: TimerTable::default(),
            sack: Scoreboard::default(),
            retries: 0,
            keepalive_probes: 0,
            events: 0,
            send_blocked: false,
            close_reason: None,
            stats: ConnectionStats::default(),
        }
    }

    /// Returns a CLOSED connection to its pristine state (the state `with_buffers` builds),
    /// keeping its rings.
    ///
    /// Fields are reset in place rather than by building a new `Connection` and moving it over
    /// this one: that move copies the whole control block, rings' headers included, and showed
    /// up as a tenth of the cost of a short connection. The exhaustive destructuring makes a
    /// new field a compile error here until it is reset too.
    fn reset(&mut self) {
        let Connection {
            config,
            isn,
            state,
            tuple,
            iss,
            snd_una,
            snd_nxt,
            snd_max,
            snd_wnd,
            max_snd_wnd,
            snd_wl1,
            snd_wl2,
            snd_wscale,
            send_mss,
            fin_seq,
            snd_sml,
            irs,
            rcv_nxt,
            rcv_wscale,
            rcv_adv,
            last_ack_sent,
            ts_enabled,
            ts_recent,
            ts_recent_at,
            ts_offset,
            sack_enabled,
            iss_forced,
            active_open,
            tx,
            rx,
            fin_queued,
            fin_received,
            orphaned,
            nagle,
            ack_now,
            last_unacceptable_ack,
            segments_since_ack,
            rst_pending,
            retransmits_due,
            reorder_timer,
            loss_probe,
            probe_due,
            persist_probe,
            keepalive_probe,
            orphan_timer_due,
            timers,
            rtt,
            cc,
            sack,
            retries,
            keepalive_probes,
            events,
            send_blocked,
            close_reason,
            stats,
        } = self;
        let c = &*config;
        *isn = IsnGenerator::with_key([0, 0]);
        *state = State::Closed;
        *tuple = FourTuple { local: Endpoint::UNSPECIFIED, remote: Endpoint::UNSPECIFIED };
        for s in [iss, snd_una, snd_nxt, snd_max, snd_wl1, snd_wl2, snd_sml, irs, rcv_nxt, rcv_adv, last_ack_sent] {
            *s = SeqNumber(0);
        }
        *snd_wnd = 0;
        *max_snd_wnd = 0;
        *snd_wscale = 0;
        *send_mss = DEFAULT_PEER_MSS;
        *fin_seq = None;
        *rcv_wscale = 0;
        *ts_enabled = false;
        *ts_recent = 0;
        *ts_recent_at = Instant::ZERO;
        *ts_offset = 0;
        *sack_enabled = false;
        *iss_forced = None;
        *active_open = false;
        tx.clear();
        rx.clear();
        *fin_queued = false;
        *fin_received = false;
        *orphaned = false;
        *nagle = c.nagle;
        *ack_now = false;
        *last_unacceptable_ack = None;
        *segments_since_ack = 0;
        *rst_pending = None;
        *retransmits_due = 0;
        *reorder_timer = None;
        *loss_probe = LossProbe::default();
        *probe_due = false;
        *persist_probe = false;
        *keepalive_probe = false;
        *orphan_timer_due = false;
        *timers = TimerTable::default();
        *rtt = RttEstimator::new(c.rto_initial, c.rto_min, c.rto_max);
        *cc = NewReno::new(u32::from(c.mss), c.initial_window_segments, SeqNumber(0));
        *retries = 0;
        *keepalive_probes = 0;
        *events = 0;
        *send_blocked = false;
        *close_reason = None;
        *sack = Scoreboard::default();
        *stats = ConnectionStats::default();
    }

    /// Makes the connection CLOSED and reusable at once, keeping its rings: for a table that
    /// handed the TIME_WAIT duties to a [`TimeWaitRecord`], or freed a CLOSED slot. Pending
    /// output and events are dropped.
    pub fn recycle(&mut self) {
        self.reset();
    }

    /// Changes the configuration of a CLOSED connection whose ring sizes stay the same.
    pub fn set_config(&mut self, config: TcpConfig) -> Result<(), OpenError> {
        if self.state != State::Closed {
            return Err(OpenError::InUse);
        }
        if config.send_buffer_len.max(1).next_power_of_two() != self.tx.capacity()
            || config.recv_buffer_len.max(1).next_power_of_two() != self.rx.capacity()
        {
            *self = Connection::new(config);
        } else {
            self.config = config;
            self.nagle = config.nagle;
        }
        Ok(())
    }

    /// Passive open: wait in LISTEN on `local` (its address may be unspecified) for a SYN.
    pub fn listen(&mut self, local: Endpoint, isn: IsnGenerator) -> Result<(), OpenError> {
        if self.state != State::Closed {
            return Err(OpenError::InUse);
        }
        if local.port == 0 {
            return Err(OpenError::Unspecified);
        }
        self.reset();
        self.isn = isn;
        self.tuple = FourTuple { local, remote: Endpoint::UNSPECIFIED };
        self.state = State::Listen;
        Ok(())
    }

    /// Maps the pages of the connection's rings now (see [`Interface`'s slot
    /// prefill](crate::iface::InterfaceConfig::prefault_bytes)).
    pub fn prefault(&mut self) {
        self.tx.prefault();
        self.rx.prefault();
    }

    /// In LISTEN, makes the next SYN use `iss` instead of a generated one (RFC 6191 reopening
    /// of a TIME_WAIT 4-tuple, see [`Outcome::Reopen`]). In SYN-SENT before the SYN went out,
    /// starts the sequence space at `iss` (a client reusing a port in TIME_WAIT).
    pub fn force_iss(&mut self, iss: SeqNumber) {
        if self.state == State::Listen {
            self.iss_forced = Some(iss);
        } else if self.state == State::SynSent && self.snd_max == self.iss {
            self.start_sequence(iss);
        }
    }

    /// Passive open from a SYN cookie (RFC 4987): `syn` is the SYN the cookie stood for, rebuilt
    /// by the caller (the client's ISN, the MSS, window scale and SACK-permitted the cookie
    /// carried, and the timestamp of the ACK that returned it), and `iss` is the cookie. The
    /// connection is left in SYN-RECEIVED with its SYN-ACK counted as sent, so the ACK fed next
    /// through [`Connection::handle_segment`] establishes it and delivers any data it carries.
    /// No RTT sample is taken: when the SYN-ACK left is unknown.
    pub fn open_from_cookie(
        &mut self,
        now: Instant,
        local: Endpoint,
        isn: IsnGenerator,
        syn: &Segment<'_>,
        iss: SeqNumber,
    ) -> Result<(), OpenError> {
        self.listen(local, isn)?;
        self.iss_forced = Some(iss);
        if self.on_listen(now, syn) != Outcome::Accepted {
            self.reset();
            return Err(OpenError::Unspecified);
        }
        self.snd_nxt = iss + 1u32;
        self.snd_max = self.snd_nxt;
        self.snd_sml = self.snd_nxt;
        self.after_ack_sent(self.rx.window().min(0xffff) as u16);
        Ok(())
    }

    /// Active open: send a SYN from `local` to `remote`.
    pub fn connect(
        &mut self,
        now: Instant,
        local: Endpoint,
        remote: Endpoint,
        isn: IsnGenerator,
    ) -> Result<(), OpenError> {
        if self.state != State::Closed {
            return Err(OpenError::InUse);
        }
        if local.port == 0 || remote.port == 0 || local.addr.is_unspecified() || remote.addr.is_unspecified() {
            return Err(OpenError::Unspecified);
        }
        self.reset();
        self.isn = isn;
        self.tuple = FourTuple { local, remote };
        let (iss, ts_offset) = isn.isn_and_ts_offset(now, &self.tuple);
        self.ts_offset = ts_offset;
        self.start_sequence(iss);
        self.active_open = true;
        self.state = State::SynSent;
        Ok(())
    }

    fn start_sequence(&mut self, iss: SeqNumber) {
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss;
        self.snd_max = iss;
        self.snd_sml = iss;
        self.rtt = RttEstimator::new(self.config.rto_initial, self.config.rto_min, self.config.rto_max);
    }

    // ----- Accessors -----

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The 4-tuple (the remote side is unspecified in LISTEN).
    pub fn tuple(&self) -> FourTuple {
        self.tuple
    }

    /// The configuration.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// Whether the connection is CLOSED. A closed connection may still hold an RST to send:
    /// drain [`Connection::poll_transmit`] before reusing it.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Bytes queued for sending (unacknowledged or unsent).
    pub fn send_queue_len(&self) -> usize {
        self.tx.len()
    }

    /// Free space in the send ring.
    pub fn send_capacity(&self) -> usize {
        self.tx.free()
    }

    /// In-order bytes waiting to be read.
    pub fn recv_queue_len(&self) -> usize {
        self.rx.len()
    }

    /// SND.UNA, SND.NXT and RCV.NXT, for tests and diagnostics.
    pub fn sequence(&self) -> (SeqNumber, SeqNumber, SeqNumber) {
        (self.snd_una, self.snd_nxt, self.rcv_nxt)
    }

    /// The peer's window as last advertised (scaled), and our congestion window.
    pub fn windows(&self) -> (u32, u32) {
        (self.snd_wnd, self.cc.window())
    }

    /// Payload bytes per segment we send.
    pub fn send_mss(&self) -> u16 {
        self.send_mss
    }

    /// Whether timestamps, SACK and window scaling were negotiated.
    pub fn negotiated(&self) -> (bool, bool, bool) {
        (self.ts_enabled, self.sack_enabled, self.snd_wscale > 0 || self.rcv_wscale > 0)
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Loss-recovery counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Switches Nagle's algorithm for this connection.
    pub fn set_nagle(&mut self, on: bool) {
        self.nagle = on;
    }

    /// The compact TIME_WAIT record of this connection, when it is in TIME_WAIT: the worker
    /// may keep that instead of the whole connection.
    pub fn time_wait_record(&self) -> Option<TimeWaitRecord> {
        if self.state != State::TimeWait {
            return None;
        }
        Some(TimeWaitRecord {
            tuple: self.tuple,
            snd_nxt: self.snd_nxt,
            rcv_nxt: self.rcv_nxt,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            expiry: self.timers.get(Timer::Close).unwrap_or(Instant::ZERO),
            // The peer's last timestamped segment; the interface stamps the record with its
            // own clock when it stores it (the ACK of that segment goes out then).
            last_segment: self.ts_recent_at,
            window: self.advertised_window_raw(),
            timestamps: self.ts_enabled,
        })
    }

    // ----- Application interface -----

    /// Queues data to send; returns how much was taken. Partial writes happen when the
    /// ring fills; `BufferFull` when nothing fit.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if !self.state.can_send() || self.fin_queued {
            return Err(SendError::InvalidState);
        }
        let n = self.tx.write(data);
        if n < data.len() {
            self.send_blocked = true;
            if n == 0 {
                return Err(SendError::BufferFull);
            }
        }
        Ok(n)
    }

    /// Asks for [`Event::Writable`] when acknowledged data frees send-buffer space, as a
    /// refused `send` does: for a caller that sized its write to the free space (a splice)
    /// and still has more to write.
    pub fn notify_when_writable(&mut self) {
        self.send_blocked = true;
    }

    /// Reads in-order data into `buf`.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if !self.rx.is_empty() {
            let n = self.rx.read(buf);
            self.after_read();
            return Ok(n);
        }
        self.recv_empty_error()
    }

    /// The readable bytes as up to two slices, without consuming them (zero-copy reading;
    /// follow with [`Connection::recv_consume`]).
    pub fn recv_slices(&self) -> (&[u8], &[u8]) {
        self.rx.slices()
    }

    /// Consumes `n` bytes after [`Connection::recv_slices`].
    pub fn recv_consume(&mut self, n: usize) {
        self.rx.consume(n);
        self.after_read();
    }

    fn recv_empty_error(&self) -> Result<usize, RecvError> {
        if self.fin_received {
            Err(RecvError::Finished)
        } else if matches!(self.state, State::Closed | State::Listen) {
            Err(RecvError::InvalidState)
        } else {
            Err(RecvError::WouldBlock)
        }
    }

    /// After the application read: announce a window that grew enough (RFC 1122 4.2.3.3,
    /// receiver-side silly window avoidance).
    fn after_read(&mut self) {
        let advertised = self.rcv_adv.since(self.rcv_nxt) as usize;
        let threshold = (self.rx.capacity() / 2).min(usize::from(self.config.mss));
        if self.state.can_receive() && self.rx.window() >= advertised + threshold {
            self.ack_now = true;
        }
    }

    /// Shuts down the write side: FIN follows the queued data. Reading goes on.
    pub fn shutdown(&mut self) {
        match self.state {
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            // RFC 9293 3.10.4: the FIN goes out once the handshake completes.
            State::SynReceived => self.fin_queued = true,
            State::SynSent | State::Listen => self.finish(CloseReason::Normal),
            _ => {}
        }
    }

    /// Closes: shuts down the write side and gives up reading. Unread data makes this an abort
    /// (RFC 1122 4.2.2.13), so the peer learns that data was lost.
    pub fn close(&mut self) {
        if !self.rx.is_empty() {
            self.abort();
            return;
        }
        self.orphaned = true;
        self.shutdown();
        // Half-closed earlier and our FIN acknowledged: nothing of ours is in flight to time
        // out, so only the orphan timeout can end a peer that never sends its FIN. `close`
        // has no clock; the next timer update arms it.
        self.orphan_timer_due = self.state == State::FinWait2;
    }

    /// Aborts: sends RST (in synchronized states) and closes at once.
    pub fn abort(&mut self) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if self.state.is_synchronized() || self.state == State::SynReceived {
            // SND.MAX, not a rewound SND.NXT: RFC 5961 3.2 lets only an RST at exactly the
            // peer's RCV.NXT reset it, and the peer may hold everything up to SND.MAX.
            self.rst_pending = Some(self.control_repr(TcpFlags::RST, self.snd_max));
        }
        self.finish(CloseReason::Aborted);
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events == 0 {
            return None;
        }
        // The lowest pending bit first: the bits are numbered in the order events are drained.
        let bit = self.events & self.events.wrapping_neg();
        self.events &= !bit;
        Some(match bit {
            EV_CONNECTED => Event::Connected,
            EV_READABLE => Event::Readable,
            EV_WRITABLE => Event::Writable,
            EV_PEER_CLOSED => Event::PeerClosed,
            _ => Event::Closed(self.close_reason.unwrap_or(CloseReason::Normal)),
        })
    }

    /// Ends the connection for the application; TIME_WAIT keeps the state machine running.
    fn finish(&mut self, reason: CloseReason) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
            self.events |= EV_CLOSED;
        }
        if self.state != State::TimeWait {
            self.state = State::Closed;
            self.timers.clear_all();
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timers.clear_all();
        self.timers.set(Timer::Close, now + self.config.time_wait);
        self.finish(CloseReason::Normal);
    }

    // ----- Input -----

    /// Processes one received segment (already demultiplexed to this connection).
    pub fn handle_segment(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let outcome = match self.state {
            State::Closed => Outcome::NoConnection,
            State::Listen => self.on_listen(now, seg),
            State::SynSent => self.on_syn_sent(now, seg),
            State::TimeWait => self.on_time_wait(now, seg),
            _ => self.on_synchronized(now, seg),
        };
        self.update_timers(now);
        outcome
    }

    fn negotiate(&mut self, now: Instant, options: &TcpOptions) {
        let c = &self.config;
        let peer_mss = options.mss.unwrap_or(DEFAULT_PEER_MSS).max(MIN_PEER_MSS);
        match options.window_scale {
            Some(shift) if c.window_scaling => {
                // RFC 7323 2.3: a shift above 14 is treated as 14.
                self.snd_wscale = shift.min(14);
                self.rcv_wscale = c.recv_window_shift();
            }
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.ts_enabled = c.timestamps && options.timestamp.is_some();
        if let Some(ts) = options.timestamp.filter(|_| self.ts_enabled) {
            self.ts_recent = ts.tsval;
            self.ts_recent_at = now;
        }
        self.sack_enabled = c.sack && options.sack_permitted;
        let option_room = if self.ts_enabled { TIMESTAMP_OPTION_LEN } else { 0 };
        self.send_mss = peer_mss.min(c.mss).saturating_sub(option_room).max(1);
        self.cc = NewReno::new(u32::from(self.send_mss), c.initial_window_segments, self.iss);
    }

    // Inlined into `handle_segment` as when it was its only caller (`open_from_cookie`, the
    // cold one, came later): about 50 instructions per passive open.
    #[inline(always)]
    fn on_listen(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let r = &seg.repr;
        if r.flags.contains(TcpFlags::RST) {
            return Outcome::Dropped(DropReason::RstIgnored);
        }
        if r.flags.contains(TcpFlags::ACK) {
            // RFC 9293 3.10.7.2: any ACK in LISTEN is bad; the caller answers with an RST.
            return Outcome::NoConnection;
        }
        if !r.flags.contains(TcpFlags::SYN) {
            return Outcome::Dropped(DropReason::Unexpected);
        }
        self.tuple.local.addr = seg.dst_addr;
        self.tuple.remote = Endpoint::new(seg.src_addr, r.src_port);
        let (iss, ts_offset) = self.isn.isn_and_ts_offset(now, &self.tuple);
        let iss = self.iss_forced.take().unwrap_or(iss);
        self.ts_offset = ts_offset;
        self.start_sequence(iss);
        self.irs = SeqNumber(r.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.negotiate(now, &r.options);
        // RFC 7323 2.2: the window of a SYN is never scaled.
        self.snd_wnd = u32::from(r.window);
        self.max_snd_wnd = self.snd_wnd;
        self.state = State::SynReceived;
        Outcome::Accepted
    }

    fn on_syn_sent(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let r = &seg.repr;
        let ack = SeqNumber(r.ack);
        let has_ack = r.flags.contains(TcpFlags::ACK);
        // RFC 9293 3.10.7.3, first: an ACK must cover our SYN and nothing unsent.
        if has_ack && (ack <= self.iss || ack > self.snd_max) {
            if !r.flags.contains(TcpFlags::RST) {
                // <SEQ=SEG.ACK><CTL=RST>
                self.rst_pending = Some(self.control_repr(TcpFlags::RST, ack));
            }
            return Outcome::Dropped(DropReason::UnacceptableAck);
        }
        if r.flags.contains(TcpFlags::RST) {
            if has_ack {
                self.finish(CloseReason::Refused);
                return Outcome::Accepted;
            }
            return Outcome::Dropped(DropReason::RstIgnored);
        }
        if !r.flags.contains(TcpFlags::SYN) {
            return Outcome::Dropped(DropReason::Unexpected);
        }
        self.irs = SeqNumber(r.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.negotiate(now, &r.options);
        self.snd_wnd = u32::from(r.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.snd_wl2 = ack;
        if has_ack {
            self.snd_una = ack;
            self.rtt.on_ack(now, ack);
            self.retries = 0;
            self.establish();
            self.ack_now = true;
        } else {
            // Simultaneous open (RFC 9293 figure 8): answer with SYN-ACK from the same ISS.
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
            self.rtt.on_retransmit();
        }
        Outcome::Accepted
    }

    fn establish(&mut self) {
        self.events |= EV_CONNECTED;
        self.state = if self.fin_queued { State::FinWait1 } else { State::Established };
    }

    fn on_time_wait(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let Some(mut record) = self.time_wait_record() else {
            return Outcome::NoConnection;
        };
        match record.on_segment(now, &seg.repr, seg.payload.len(), self.config.time_wait) {
            TimeWaitAction::Drop if seg.repr.flags.contains(TcpFlags::RST) => Outcome::Dropped(DropReason::RstIgnored),
            TimeWaitAction::Drop => Outcome::Accepted,
            TimeWaitAction::Ack => {
                self.ack_now = true;
                Outcome::Dropped(DropReason::OutOfWindow)
            }
            TimeWaitAction::AckAndRestart => {
                self.ts_recent = record.ts_recent;
                self.ts_recent_at = now;
                self.timers.set(Timer::Close, record.expiry);
                self.ack_now = true;
                Outcome::Accepted
            }
            TimeWaitAction::Reopen { iss } => {
                self.state = State::Closed;
                self.timers.clear_all();
                Outcome::Reopen { iss }
            }
        }
    }

    /// RFC 9293 3.10.7.4: segments in SYN-RECEIVED and the synchronized states.
    fn on_synchronized(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let r = &seg.repr;
        let flags = r.flags;
        let mut seq = SeqNumber(r.seq);
        let mut syn = flags.contains(TcpFlags::SYN);
        let mut payload = seg.payload;

        // A copy of the peer's SYN (our SYN-ACK or its ACK was lost, or a simultaneous open's
        // SYN-ACK): strip the SYN and judge the rest.
        let dup_syn = syn && seq == self.irs;
        if dup_syn {
            syn = false;
            seq += 1u32;
            if !flags.contains(TcpFlags::ACK) {
                if self.state == State::SynReceived {
                    self.snd_nxt = self.iss;
                    self.rtt.on_retransmit();
                    return Outcome::Accepted;
                }
                self.ack_now = true;
                return Outcome::Dropped(DropReason::OutOfWindow);
            }
            if self.state != State::SynReceived {
                // The peer is still in SYN-RECEIVED: our ACK was lost. ACK again.
                self.ack_now = true;
                return Outcome::Dropped(DropReason::OutOfWindow);
            }
        }

        // PAWS (RFC 7323 5.3, R1-R3), before the window check.
        let ts = r.options.timestamp.filter(|_| self.ts_enabled);
        if let Some(t) = ts {
            if !flags.contains(TcpFlags::RST)
                && (t.tsval.wrapping_sub(self.ts_recent) as i32) < 0
                && now.saturating_duration_since(self.ts_recent_at) < PAWS_IDLE
            {
                let seg_len = payload.len() + usize::from(syn) + usize::from(flags.contains(TcpFlags::FIN));
                self.ack_unacceptable(now, seg_len);
                return Outcome::Dropped(DropReason::Paws);
            }
        }

        // First: sequence acceptability (RFC 9293 3.10.7.4 table).
        let fin = flags.contains(TcpFlags::FIN);
        let seg_len = payload.len() + usize::from(syn) + usize::from(fin);
        let rcv_wnd = self.rx.window() as u32;
        let win_end = self.rcv_nxt + rcv_wnd;
        let mut acceptable = if seg_len == 0 {
            // RCV.NXT =< SEG.SEQ =< RCV.NXT+RCV.WND: the right edge included, as Linux
            // (`tcp_sequence`) and the BSDs do. A peer's pure ACK carries its SND.MAX, which is
            // the right edge when its last window's worth of data was lost; refusing that ACK
            // would leave a SYN-RECEIVED end unable to learn that its SYN-ACK arrived.
            seq >= self.rcv_nxt && seq <= win_end
        } else if rcv_wnd == 0 {
            false
        } else {
            seq.in_range(self.rcv_nxt, win_end) || (seq + (seg_len - 1)).in_range(self.rcv_nxt, win_end)
        };
        // With a zero window, a segment at RCV.NXT still carries a valid ACK, RST or window
        // (RFC 9293 "special allowance"); its text is dropped below.
        let zero_window_allowance = !acceptable && rcv_wnd == 0 && seq == self.rcv_nxt;
        if zero_window_allowance {
            acceptable = true;
            payload = &[];
        }
        // A zero-length segment at RCV.NXT - 1 is a window probe (Linux's `tcp_xmit_probe_skb`,
        // sent while our window is closed) or a keepalive. Its ACK field is as valid as any:
        // Linux's own `tcp_sequence` admits it. Dropping it unread, as the table above would,
        // left SND.UNA behind what the peer held, and the next RTO (400 ms after a backoff) resent
        // acknowledged data. It is answered with our window, one ACK per probe: that ACK
        // carries SND.MAX, which the peer accepts without answering, so no loop can start.
        if !acceptable && seg_len == 0 && seq + 1u32 == self.rcv_nxt && !flags.contains(TcpFlags::RST) {
            acceptable = true;
            self.ack_now = true;
        }
        if !acceptable {
            if !flags.contains(TcpFlags::RST) {
                self.ack_unacceptable(now, seg_len);
            }
            return Outcome::Dropped(DropReason::OutOfWindow);
        }

        // Second: RST (RFC 5961 3.2): only an exact match resets; others get a challenge ACK.
        if flags.contains(TcpFlags::RST) {
            if seq == self.rcv_nxt {
                // RFC 9293 3.10.7.4: in SYN-RECEIVED from an active open, the peer refused.
                let reason = if self.state == State::SynReceived && self.active_open {
                    CloseReason::Refused
                } else {
                    CloseReason::Reset
                };
                self.finish(reason);
                return Outcome::Accepted;
            }
            self.ack_now = true;
            return Outcome::Dropped(DropReason::Challenged);
        }

        // Fourth: a SYN in a synchronized state gets a challenge ACK (RFC 5961 4.2).
        if syn {
            self.ack_now = true;
            return Outcome::Dropped(DropReason::Challenged);
        }

        // Fifth: the ACK field.
        if !flags.contains(TcpFlags::ACK) {
            return Outcome::Dropped(DropReason::Unexpected);
        }
        let ack = SeqNumber(r.ack);
        if self.state == State::SynReceived {
            if ack > self.snd_una && ack <= self.snd_max {
                self.snd_wnd = u32::from(r.window) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                self.establish();
            } else {
                self.rst_pending = Some(self.control_repr(TcpFlags::RST, ack));
                return Outcome::Dropped(DropReason::UnacceptableAck);
            }
        }
        if ack > self.snd_max || ack < self.snd_una - self.max_snd_wnd.max(1) {
            // RFC 5961 5.2: outside [SND.UNA - MAX.SND.WND, SND.NXT] gets a challenge ACK.
            self.ack_now = true;
            return Outcome::Dropped(DropReason::UnacceptableAck);
        }

        // RFC 7323 4.3: take TS.Recent from a segment that covers the last ACK we sent.
        if let Some(t) = ts {
            if seq <= self.last_ack_sent && (t.tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                self.ts_recent = t.tsval;
                self.ts_recent_at = now;
            }
        }

        let window = u32::from(r.window) << self.snd_wscale;
        self.process_ack(now, seq, ack, window, payload.is_empty() && !fin, &r.options.sack_blocks);
        if self.state == State::Closed {
            return Outcome::Accepted;
        }

        // Keepalive restarts with any acceptable segment.
        if self.keepalive_probes > 0 || self.timers.is_armed(Timer::Keepalive) {
            self.keepalive_probes = 0;
            if let Some(k) = self.config.keepalive {
                self.timers.set(Timer::Keepalive, now + k.idle);
            }
        }

        // Seventh: segment text.
        let mut fin_seq_ok = fin;
        if !payload.is_empty() {
            // Trim what we already have.
            let dup = self.rcv_nxt.since(seq) as usize;
            let fresh = payload.get(dup..).unwrap_or(&[]);
            let offset = seq.since(self.rcv_nxt) as usize;
            if self.state.can_receive() && !fresh.is_empty() {
                if self.orphaned {
                    // RFC 1122 4.2.2.13 (as Linux): data for a closed socket is lost; say so.
                    self.abort();
                    return Outcome::Accepted;
                }
                let inserted = self.rx.insert(offset, fresh);
                self.rcv_nxt += inserted.advanced as u32;
                if inserted.advanced > 0 {
                    self.events |= EV_READABLE;
                }
                let cut = offset == 0 && inserted.advanced < fresh.len();
                if offset > 0 {
                    self.stats.out_of_order_received += 1;
                }
                if inserted.out_of_order || offset > 0 || cut {
                    // RFC 5681 4.2: out-of-order data and hole fills are ACKed at once.
                    self.ack_now = true;
                    fin_seq_ok = fin_seq_ok && !cut;
                } else {
                    self.segments_since_ack = self.segments_since_ack.saturating_add(1);
                    match self.config.delayed_ack {
                        Some(delay) if self.segments_since_ack < 2 => {
                            self.timers.set_if_idle(Timer::DelayedAck, now + delay);
                        }
                        _ => self.ack_now = true,
                    }
                }
            } else if !fresh.is_empty() {
                self.ack_now = true;
            }
        }

        // Eighth: FIN, once everything before it has arrived.
        if fin_seq_ok && seq + seg.payload.len() == self.rcv_nxt && !self.fin_received {
            self.rcv_nxt += 1;
            self.fin_received = true;
            self.ack_now = true;
            self.events |= EV_PEER_CLOSED;
            match self.state {
                State::SynReceived | State::Established => self.state = State::CloseWait,
                State::FinWait1 => self.state = State::Closing,
                State::FinWait2 => self.enter_time_wait(now),
                _ => {}
            }
        } else if fin && self.fin_received && seq + seg.payload.len() + 1u32 == self.rcv_nxt {
            // A retransmitted FIN: our ACK was lost.
            self.ack_now = true;
        }
        Outcome::Accepted
    }

    /// RFC 9293 3.10.7.4: an unacceptable segment is answered with an ACK. For zero-length
    /// segments the answers are rate-limited, as Linux does (`tcp_oow_rate_limited`): such a
    /// segment is usually itself an ACK, so answering each one lets two ends whose views of the
    /// sequence space disagree, or a hostile peer, keep an ACK loop going without end. Segments
    /// that occupy sequence space are always answered, since their sender waits for the ACK.
    fn ack_unacceptable(&mut self, now: Instant, seg_len: usize) {
        if seg_len == 0 {
            let recent = self
                .last_unacceptable_ack
                .is_some_and(|at| now.saturating_duration_since(at) < UNACCEPTABLE_ACK_INTERVAL);
            if recent {
                return;
            }
            self.last_unacceptable_ack = Some(now);
        }
        self.ack_now = true;
    }

    /// Fifth step for an acceptable ACK: advance SND.UNA, feed RTT and congestion control,
    /// update the window, and move the close states along.
    fn process_ack(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        ack: SeqNumber,
        window: u32,
        pure_ack: bool,
        sack: &SackBlocks,
    ) {
        // RFC 6675 5: the scoreboard first; an ACK that SACKs new data is a duplicate even
        // when it carries data, as ACKs do when both sides send.
        let newly_sacked =
            if self.sack_enabled { self.sack.on_ack(ack.max(self.snd_una), self.snd_max, sack.as_slice()) } else { 0 };
        let mss = u32::from(self.send_mss);
        match self.loss_probe.on_ack(ack, ack > self.snd_una, !pure_ack || newly_sacked > 0, sack.as_slice()) {
            ProbeOutcome::RepairedLoss => {
                self.cc.on_probe_repaired_loss();
                self.stats.loss_probe_recoveries += 1;
            }
            ProbeOutcome::Spurious | ProbeOutcome::Pending => {}
        }
        if ack > self.snd_una || newly_sacked > 0 {
            // RFC 8985 7.2: an ACK that advances restarts the probe timeout; so does one that
            // SACKs new data, which shows the peer alive in recovery.
            self.timers.clear(Timer::LossProbe);
            self.loss_probe.on_progress();
        }
        if ack > self.snd_una {
            let acked = ack.since(self.snd_una);
            // The SYN occupies the sequence number at ISS; the FIN the one after the data.
            let syn_part = u32::from(self.snd_una == self.iss);
            let data_acked = ((acked - syn_part.min(acked)) as usize).min(self.tx.len());
            self.tx.consume(data_acked);
            self.snd_una = ack;
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            self.rtt.on_ack(now, ack);
            self.retries = 0;
            if self.cc.on_new_ack(ack, acked) == AckAction::Retransmit {
                self.retransmits_due = self.retransmits_due.saturating_add(1);
                self.stats.partial_ack_retransmits += 1;
            } else if self.snd_max > self.snd_una
                && self.sack.is_lost(self.snd_una, mss)
                && self.cc.on_loss(self.snd_una, self.snd_max, self.snd_max.since(self.snd_una))
                    == AckAction::Retransmit
            {
                // RFC 6675 5: the SACK blocks of a cumulative ACK show the next byte lost.
                self.sack.start_recovery(self.snd_una, self.snd_max);
                self.retransmits_due = self.retransmits_due.saturating_add(1);
                self.stats.fast_retransmits += 1;
            }
            self.reorder_timer = None;
            if self.snd_una == self.snd_max {
                self.timers.clear(Timer::Retransmit);
            } else {
                // RFC 6298 5.3: restart the timer when new data is acknowledged.
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            }
            if data_acked > 0 && self.send_blocked {
                self.send_blocked = false;
                self.events |= EV_WRITABLE;
            }
        } else if ack == self.snd_una
            && self.snd_max > self.snd_una
            && ((pure_ack && window == self.snd_wnd) || newly_sacked > 0)
        {
            self.stats.dup_acks_received += 1;
            let lost = self.sack.is_lost(self.snd_una, mss);
            let flight = self.snd_max.since(self.snd_una);
            if self.cc.on_dup_ack(self.snd_una, self.snd_max, flight, lost) == AckAction::Retransmit {
                // RFC 5681 3.2: the third duplicate ACK (or RFC 6675 IsLost) triggers fast
                // retransmit.
                self.sack.start_recovery(self.snd_una, self.snd_max);
                self.retransmits_due = self.retransmits_due.saturating_add(1);
                self.stats.fast_retransmits += 1;
            } else if self.cc.in_recovery() && self.sack.next_lost(self.snd_una, self.snd_max, mss).is_some() {
                // RFC 6675 NextSeg rule 1: a further hole the SACK blocks show lost. It replaces
                // a segment that left the network, as the inflated window assumes.
                self.retransmits_due = self.retransmits_due.saturating_add(1);
                self.stats.sack_retransmits += 1;
            }
        }
        if self.cc.in_recovery() {
            // The recovery reduces the window itself (RFC 8985 7.4.2 leaves it to it).
            self.loss_probe.cancel();
        }
        if self.sack_enabled && self.cc.in_recovery() && self.sack.retransmission_lost(self.snd_una, self.snd_max, mss)
        {
            self.sack.start_recovery(self.snd_una, self.snd_max);
            self.retransmits_due = self.retransmits_due.saturating_add(1);
            self.stats.lost_retransmissions += 1;
        }
        if newly_sacked > 0 && !self.cc.in_recovery() && self.snd_max > self.snd_una && self.reorder_timer.is_none() {
            // RFC 8985 6.3, by send order: SND.UNA went out before the data just SACKed; if it
            // has not arrived a quarter of an RTT later, it is lost, even when too little
            // follows it for three duplicates (a lost limited-transmit or tail segment).
            let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
            let at = now + (srtt / 4).max(MIN_REORDER_WINDOW);
            let rto_at = self.timers.get(Timer::Retransmit).unwrap_or(now + self.rtt.rto());
            if at < rto_at {
                self.timers.set(Timer::Retransmit, at);
                self.reorder_timer = Some(rto_at);
            }
        }

        // Window update (RFC 9293 3.10.7.4): only from a segment newer than the last one used.
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if was_zero && window > 0 && self.timers.is_armed(Timer::Persist) {
                // Leaving persist: resend from SND.UNA at once rather than waiting for an RTO.
                self.timers.clear(Timer::Persist);
                self.snd_nxt = self.snd_una;
                self.retries = 0;
            }
        }

        let fin_acked = self.fin_acked();
        match self.state {
            State::FinWait1 if fin_acked => {
                self.state = State::FinWait2;
                if self.orphaned {
                    self.timers.set(Timer::Close, now + self.config.fin_wait_2_timeout);
                }
            }
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => self.finish(CloseReason::Normal),
            _ => {}
        }
    }

    // ----- Timers -----

    /// The next instant at which [`Connection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Retransmit => match self.reorder_timer.take() {
                    Some(rto_at) => self.on_reorder_timeout(now, rto_at),
                    None => self.on_retransmit_timeout(now),
                },
                Timer::Persist => {
                    // Probe with one byte from SND.UNA; back off like the RTO (RFC 9293 3.8.6.1).
                    self.persist_probe = true;
                    self.snd_nxt = self.snd_una;
                    self.rtt.back_off();
                }
                Timer::DelayedAck => self.ack_now = true,
                Timer::LossProbe => {
                    if self.loss_probe_allowed() {
                        self.probe_due = true;
                    }
                }
                Timer::Keepalive => self.on_keepalive_timeout(now),
                Timer::Close => match self.state {
                    State::TimeWait => {
                        self.state = State::Closed;
                        self.timers.clear_all();
                    }
                    State::FinWait2 => {
                        // An orphan whose peer never closed: reset it, as Linux does.
                        self.abort();
                    }
                    _ => {}
                },
            }
        }
        self.update_timers(now);
    }

    /// The reordering window passed with SND.UNA still missing below SACKed data: recover.
    fn on_reorder_timeout(&mut self, now: Instant, rto_at: Instant) {
        self.timers.set(Timer::Retransmit, rto_at.max(now));
        let flight = self.snd_max.since(self.snd_una);
        if self.sack.sacked_above(self.snd_una) > 0
            && self.cc.on_loss(self.snd_una, self.snd_max, flight) == AckAction::Retransmit
        {
            self.sack.start_recovery(self.snd_una, self.snd_max);
            self.retransmits_due = self.retransmits_due.saturating_add(1);
            self.stats.early_retransmits += 1;
        }
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        self.retries = self.retries.saturating_add(1);
        let limit = match self.state {
            State::SynSent => self.config.syn_retries,
            State::SynReceived => self.config.synack_retries,
            _ => self.config.data_retries,
        };
        if self.retries > limit {
            self.finish(CloseReason::TimedOut);
            return;
        }
        match self.state {
            State::SynSent | State::SynReceived => self.snd_nxt = self.iss,
            _ => {
                // RFC 5681 3.1 and RFC 6298 5.4-5.6: collapse the window, go back to SND.UNA.
                self.stats.rto_timeouts += 1;
                self.cc.on_timeout(self.snd_max, self.snd_max.since(self.snd_una));
                self.snd_nxt = self.snd_una;
                self.retransmits_due = 0;
                self.sack.clear();
                self.loss_probe.cancel();
                self.probe_due = false;
            }
        }
        self.rtt.back_off();
        self.rtt.on_retransmit();
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    fn on_keepalive_timeout(&mut self, now: Instant) {
        let Some(k) = self.config.keepalive else { return };
        if !matches!(self.state, State::Established | State::CloseWait) {
            return;
        }
        if self.keepalive_probes >= k.probes {
            self.abort();
            self.close_reason = Some(CloseReason::TimedOut);
            return;
        }
        self.keepalive_probes += 1;
        self.keepalive_probe = true;
        self.timers.set(Timer::Keepalive, now + k.interval);
    }

    /// Keeps the retransmit, persist and keepalive timers consistent with the state.
    fn update_timers(&mut self, now: Instant) {
        match self.state {
            State::Closed | State::Listen | State::TimeWait => return,
            _ => {}
        }
        if self.orphan_timer_due {
            self.orphan_timer_due = false;
            if self.state == State::FinWait2 && !self.timers.is_armed(Timer::Close) {
                self.timers.set(Timer::Close, now + self.config.fin_wait_2_timeout);
            }
        }
        let can_send_data = matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
        );
        if can_send_data && self.snd_wnd == 0 && !self.tx.is_empty() {
            // Zero window with data waiting: persist instead of retransmitting.
            self.timers.clear(Timer::Retransmit);
            self.timers.set_if_idle(Timer::Persist, now + self.rtt.rto());
        } else {
            self.timers.clear(Timer::Persist);
            if self.snd_max > self.snd_una {
                if !self.timers.is_armed(Timer::Retransmit) {
                    let at = now.as_nanos().saturating_add(self.rtt.rto_ns());
                    self.timers.set(Timer::Retransmit, Instant::from_nanos(at));
                }
            } else {
                self.timers.clear(Timer::Retransmit);
            }
        }
        self.arm_loss_probe(now);
        if let Some(k) = self.config.keepalive {
            if matches!(self.state, State::Established | State::CloseWait) {
                self.timers.set_if_idle(Timer::Keepalive, now + k.idle);
            } else {
                self.timers.clear(Timer::Keepalive);
            }
        }
    }

    /// Arms the tail loss probe timer when a probe may be sent and would come before the RTO
    /// (RFC 8985 7.2); disarms it otherwise. Restarting it is its callers' business (new data
    /// sent, SND.UNA advanced): they clear it first.
    fn arm_loss_probe(&mut self, now: Instant) {
        if !self.loss_probe_allowed() || self.probe_due {
            self.timers.clear(Timer::LossProbe);
            return;
        }
        if self.timers.is_armed(Timer::LossProbe) {
            return;
        }
        let Some(rto_at) = self.timers.get(Timer::Retransmit) else {
            self.timers.clear(Timer::LossProbe);
            return;
        };
        let flight = self.snd_max.since(self.snd_una);
        let pto = loss_probe::probe_timeout_ns(
            self.rtt.srtt_ns(),
            self.rtt.rto_ns(),
            flight,
            u32::from(self.send_mss),
            self.loss_probe.unanswered(),
        );
        let at = now.as_nanos().saturating_add(pto);
        if at < rto_at.as_nanos() {
            self.timers.set(Timer::LossProbe, Instant::from_nanos(at));
        } else {
            self.timers.clear(Timer::LossProbe);
        }
    }

    // ----- Output -----

    fn advertised_window_raw(&self) -> u16 {
        let max = 0xffffusize << self.rcv_wscale;
        (self.rx.window().min(max) >> self.rcv_wscale) as u16
    }

    fn timestamp_option(&self, now: Instant) -> Option<Timestamp> {
        self.ts_enabled
            .then(|| Timestamp { tsval: self.ts_offset.wrapping_add(now.as_millis() as u32), tsecr: self.ts_recent })
    }

    /// A segment header with our ports and the given flags and sequence number; ACK fields
    /// are filled when ACK is set.
    fn control_repr(&self, flags: TcpFlags, seq: SeqNumber) -> TcpRepr {
        TcpRepr {
            src_port: self.tuple.local.port,
            dst_port: self.tuple.remote.port,
            seq: seq.0,
            ack: if flags.contains(TcpFlags::ACK) { self.rcv_nxt.0 } else { 0 },
            flags,
            window: if flags.contains(TcpFlags::RST) { 0 } else { self.advertised_window_raw() },
            ..TcpRepr::default()
        }
    }

    /// Writes the next segment to send into `buf` (TCP header, options and payload, with a
    /// complete checksum) and returns its length, or `None` if nothing is due. `buf` should
    /// hold at least 60 bytes plus the MSS. Call until it returns `None`.
    #[must_use]
    #[inline]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.rst_pending.is_none() && self.nothing_to_send() {
            // The common answer, as a caller drains until `None`: no segment and no timer to
            // revise. Everything `update_timers` looks at (the state, SND.UNA and SND.MAX, the
            // window, the ring) changes only in `handle_segment`, `handle_timeout`, a
            // transmission, or `send` (which leaves unsent data, so this path is not taken),
            // and each of those brings the timers up to date. This test is inlined into the
            // caller's drain loop; the rest is not.
            return None;
        }
        self.transmit(now, buf)
    }

    /// `poll_transmit` once something may be due.
    fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < MAX_HEADER_LEN {
            return None;
        }
        if let Some(rst) = self.rst_pending.take() {
            return Some(emit_header(buf, &rst, self.tuple.local.addr, self.tuple.remote.addr, 0));
        }
        let len = match self.state {
            State::Closed | State::Listen => None,
            State::SynSent => self.transmit_syn(now, buf, false),
            State::SynReceived => self.transmit_syn(now, buf, true),
            State::TimeWait => self.ack_now.then(|| self.transmit_ack(now, buf, self.snd_nxt)),
            _ => self.transmit_data(now, buf).or_else(|| {
                if self.keepalive_probe {
                    self.keepalive_probe = false;
                    // RFC 1122 4.2.3.6: a probe carries SEG.SEQ = SND.NXT - 1 and no data.
                    return Some(self.transmit_ack(now, buf, self.snd_una - 1u32));
                }
                // A pure ACK carries SND.MAX, not SND.NXT, as BSD's tcp_output does: after a
                // retransmission timeout or a persist probe SND.NXT has gone back to SND.UNA,
                // below what the peer may already hold. RFC 9293 3.10.7.4 makes the peer drop
                // a zero-length segment left of RCV.NXT unprocessed (its ACK field unread) and
                // answer it with an ACK; two ends that both rewound then drop each other's ACKs
                // for ever, each ACK provoking the next.
                self.ack_now.then(|| self.transmit_ack(now, buf, self.snd_max))
            }),
        };
        self.update_timers(now);
        len
    }

    /// Whether our FIN was sent and acknowledged.
    #[inline]
    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|f| self.snd_una > f)
    }

    /// Whether `poll_transmit` would certainly find nothing to send: a cheap test of the
    /// obligations that make a segment, before the full computation of `transmit_data`.
    #[inline]
    fn nothing_to_send(&self) -> bool {
        if self.ack_now
            || self.retransmits_due > 0
            || self.probe_due
            || self.persist_probe
            || self.keepalive_probe
            || self.orphan_timer_due
        {
            return false;
        }
        match self.state {
            State::Closed | State::Listen | State::TimeWait => true,
            State::SynSent | State::SynReceived => self.snd_nxt != self.iss,
            _ => {
                let offset = self.snd_nxt.since(self.snd_una) as usize;
                let fin_unsent = self.fin_queued && offset <= self.tx.len() && !self.fin_acked();
                offset >= self.tx.len() && !fin_unsent
            }
        }
    }

    fn transmit_syn(&mut self, now: Instant, buf: &mut [u8], syn_ack: bool) -> Option<usize> {
        if self.snd_nxt != self.iss && !(syn_ack && self.ack_now) {
            return None;
        }
        let flags = if syn_ack { TcpFlags::SYN | TcpFlags::ACK } else { TcpFlags::SYN };
        let mut repr = self.control_repr(flags, self.iss);
        // RFC 7323 2.2: the window of a SYN is not scaled.
        repr.window = self.rx.window().min(0xffff) as u16;
        let c = &self.config;
        repr.options.mss = Some(c.mss);
        if syn_ack {
            repr.options.window_scale = (self.snd_wscale > 0 || self.rcv_wscale > 0).then_some(self.rcv_wscale);
            repr.options.sack_permitted = self.sack_enabled;
            repr.options.timestamp = self.timestamp_option(now);
        } else {
            repr.options.window_scale = c.window_scaling.then(|| c.recv_window_shift());
            repr.options.sack_permitted = c.sack;
            repr.options.timestamp = c
                .timestamps
                .then(|| Timestamp { tsval: self.ts_offset.wrapping_add(now.as_millis() as u32), tsecr: 0 });
        }
        let len = emit_header(buf, &repr, self.tuple.local.addr, self.tuple.remote.addr, 0);
        if self.snd_nxt == self.iss {
            self.snd_nxt = self.iss + 1u32;
            if self.snd_max < self.snd_nxt {
                self.snd_max = self.snd_nxt;
                self.rtt.on_send(now, self.snd_nxt);
            }
        }
        self.after_ack_sent(repr.window);
        Some(len)
    }

    fn transmit_ack(&mut self, now: Instant, buf: &mut [u8], seq: SeqNumber) -> usize {
        let mut repr = self.control_repr(TcpFlags::ACK, seq);
        self.add_data_options(now, &mut repr);
        let len = emit_header(buf, &repr, self.tuple.local.addr, self.tuple.remote.addr, 0);
        self.after_ack_sent(repr.window);
        len
    }

    fn add_data_options(&self, now: Instant, repr: &mut TcpRepr) {
        repr.options.timestamp = self.timestamp_option(now);
        if self.sack_enabled && self.rx.has_out_of_order() {
            let max = if self.ts_enabled { 3 } else { 4 };
            repr.options.sack_blocks = self.rx.sack_blocks(self.rcv_nxt, max);
        }
    }

    fn after_ack_sent(&mut self, window_raw: u16) {
        self.ack_now = false;
        self.segments_since_ack = 0;
        self.timers.clear(Timer::DelayedAck);
        self.last_ack_sent = self.rcv_nxt;
        let shift = if self.state == State::SynSent || self.state == State::SynReceived { 0 } else { self.rcv_wscale };
        let edge = self.rcv_nxt + (u32::from(window_raw) << shift);
        if edge > self.rcv_adv || self.rcv_adv.since(self.rcv_nxt) > self.rx.window() as u32 {
            self.rcv_adv = edge;
        }
    }

    /// Payload bytes that fit in the next segment. SACK blocks take room from the MSS as the
    /// timestamp option does (RFC 9293 3.7.1: the MSS excludes TCP options; Linux's
    /// `tcp_current_mss`): a full-sized segment with SACK blocks would exceed the path MTU.
    fn current_mss(&self) -> usize {
        let mss = usize::from(self.send_mss);
        if !(self.sack_enabled && self.rx.has_out_of_order()) {
            return mss;
        }
        let blocks = self.rx.out_of_order_ranges().min(if self.ts_enabled { 3 } else { 4 });
        // Two NOPs, kind, length and 8 bytes per block, padded to 4 bytes.
        mss.saturating_sub((2 + 8 * blocks + 3) & !3).max(1)
    }

    /// Where a loss-recovery retransmission starts and how long it may be: the next hole the
    /// SACK scoreboard deems lost, else SND.UNA unless this recovery retransmitted it already.
    fn retransmit_target(&self, mss: usize) -> Option<(SeqNumber, usize)> {
        if self.tx.is_empty() && self.fin_seq.is_none() {
            return None;
        }
        if self.sack_enabled {
            if let Some((seq, len)) = self.sack.next_lost(self.snd_una, self.snd_max, mss as u32) {
                return Some((seq, len as usize));
            }
            if self.sack.retransmitted(self.snd_una, self.snd_una, self.snd_max) {
                return None;
            }
        }
        Some((self.snd_una, mss))
    }

    /// The segment a loss probe sends again: the last one sent, up to `mss` bytes ending where
    /// the data ends (a FIN sent after it is added by the caller); in recovery the first one,
    /// SND.UNA, whose retransmission is the likeliest loss when no ACK comes.
    fn probe_target(&self, mss: usize) -> Option<(SeqNumber, usize)> {
        if self.snd_max <= self.snd_una {
            return None;
        }
        let sent = (self.snd_max.since(self.snd_una) as usize).min(self.tx.len());
        let len = sent.min(mss);
        if self.cc.in_recovery() {
            return Some((self.snd_una, len));
        }
        Some((self.snd_una + (sent - len), len))
    }

    /// Whether a loss probe may be scheduled (RFC 8985 7.2, in recovery too, see
    /// `loss_probe`): data is in flight, SACK can tell what the probe found, and no other loss
    /// detection is under way or owed.
    fn loss_probe_allowed(&self) -> bool {
        self.sack_enabled
            && matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
            )
            && self.snd_max > self.snd_una
            && self.snd_wnd > 0
            && self.reorder_timer.is_none()
            && self.retransmits_due == 0
    }

    /// How many more bytes congestion control lets out, `in_flight` being SND.NXT - SND.UNA.
    fn congestion_room(&self, in_flight: u32) -> u32 {
        let new_data = self.snd_nxt == self.snd_max;
        let sacked = if new_data { self.sack.sacked_above(self.snd_una) } else { 0 };
        if self.cc.in_recovery() {
            if sacked > 0 {
                // RFC 6675 5 step 4: in recovery, send while the pipe (what is in flight less
                // what the peer SACKed) is below cwnd = ssthresh. Counting duplicate ACKs
                // instead (NewReno's inflation) undercounts when one ACK SACKs several
                // segments, and leaves nothing new sent whose SACK could show a lost
                // retransmission.
                return self.cc.ssthresh().saturating_sub(in_flight - sacked);
            }
            return self.cc.window().saturating_sub(in_flight);
        }
        // RFC 3042 limited transmit, counting SACKed segments as duplicates (a cumulative ACK
        // may SACK too).
        let limited =
            if new_data { self.cc.limited_transmit().max(sacked.min(2 * u32::from(self.send_mss))) } else { 0 };
        self.cc.window().saturating_add(limited).saturating_sub(in_flight)
    }

    /// Sends data and/or FIN if the windows, Nagle and the state allow.
    fn transmit_data(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let mss = self.current_mss();
        let probe = if self.probe_due { self.probe_target(mss) } else { None };
        self.probe_due = false;
        let target = if probe.is_some() {
            probe
        } else if self.retransmits_due > 0 {
            self.retransmits_due -= 1;
            self.retransmit_target(mss)
        } else {
            None
        };
        let (seq, len, fin) = if let Some((seq, len)) = target {
            // Fast retransmit, a NewReno partial ACK, a SACK hole or a tail loss probe: one
            // segment, outside cwnd.
            let offset = seq.since(self.snd_una) as usize;
            let len = self.tx.len().saturating_sub(offset).min(len);
            let fin = self.fin_queued && offset + len == self.tx.len();
            (seq, len, fin)
        } else {
            self.retransmits_due = 0;
            let offset = self.snd_nxt.since(self.snd_una) as usize;
            // Once acknowledged the FIN is out of the ring's reckoning (SND.UNA is past it and
            // the ring empty), so the offset alone would call it unsent.
            let fin_sent = offset > self.tx.len() || self.fin_acked();
            let unsent = self.tx.len().saturating_sub(offset);
            let in_flight = self.snd_nxt.since(self.snd_una);
            let usable = self.snd_wnd.saturating_sub(in_flight).min(self.congestion_room(in_flight)) as usize;
            let mut len = unsent.min(usable).min(mss);
            if self.persist_probe && unsent > 0 && len == 0 {
                len = 1;
            }
            let fin = self.fin_queued && !fin_sent && len == unsent;
            if len < mss && len < unsent && in_flight > 0 && !self.persist_probe {
                // Sender-side silly window avoidance: wait for a fuller window.
                if len == 0 || (len as u32) < self.max_snd_wnd / 2 {
                    return None;
                }
            }
            if self.nagle && len < mss && len > 0 && self.snd_sml > self.snd_una && !fin && !self.persist_probe {
                // Nagle (RFC 896) in Minshall's variant, as Linux: hold a small segment only
                // while an earlier small one is unacknowledged. FIN flushes.
                return None;
            }
            if len == 0 && !fin {
                return None;
            }
            (self.snd_nxt, len, fin)
        };
        self.persist_probe = false;

        let mut repr = self.control_repr(TcpFlags::ACK, seq);
        self.add_data_options(now, &mut repr);
        let header_len = repr.header_len();
        // Never exceed the peer's MSS plus the options it was reduced by (timestamps).
        let base_len = 20 + if self.ts_enabled { usize::from(TIMESTAMP_OPTION_LEN) } else { 0 };
        let room = (usize::from(self.send_mss) + base_len).saturating_sub(header_len).max(1);
        let len = len.min(room).min(buf.len() - header_len);
        let offset = seq.since(self.snd_una) as usize;
        let copied = self.tx.read_at(offset, &mut buf[header_len..header_len + len]);
        let fin = fin && offset + copied == self.tx.len();
        if copied > 0 && offset + copied == self.tx.len() {
            repr.flags |= TcpFlags::PSH;
        }
        if fin {
            repr.flags |= TcpFlags::FIN;
        }
        let total = emit_header(buf, &repr, self.tuple.local.addr, self.tuple.remote.addr, copied);

        let end = seq + copied + usize::from(fin);
        let is_retransmission = seq < self.snd_max;
        if probe.is_some() {
            self.loss_probe.sent(self.snd_max, self.cc.in_recovery());
            self.stats.loss_probes += 1;
        } else if target.is_some() && self.sack_enabled {
            self.sack.mark_retransmitted(end, self.snd_max.max(end));
        }
        if is_retransmission {
            self.stats.retransmitted_segments += 1;
            self.rtt.on_retransmit();
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
            if !is_retransmission {
                self.rtt.on_send(now, end);
            }
            // RFC 8985 7.2: the probe timeout restarts when new data goes out.
            self.timers.clear(Timer::LossProbe);
            self.loss_probe.on_progress();
        }
        if fin {
            self.fin_seq = Some(end - 1u32);
        }
        if copied < mss {
            self.snd_sml = self.snd_sml.max(end);
        }
        self.after_ack_sent(repr.window);
        Some(total)
    }
}
