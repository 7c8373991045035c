//! One TCP connection: the RFC 9293 state machine over fixed buffers, with no I/O.
//!
//! This file holds the transmission control block (`Connection`), its life cycle (open,
//! reset, reuse) and its accessors. The rest is split by concern, each an `impl Connection`:
//! `arrival` (segment arrival by state, RFC 9293 3.10.7), `ack` (the ACK field and the send
//! window), `recovery` (loss recovery: RFC 6675, RFC 6582, RFC 8985), `output` (building and
//! sending segments), `timers` and `api` (the application's calls and events).

mod ack;
mod api;
mod arrival;
mod output;
mod recovery;
mod timers;

use self::recovery::Recovery;

use core::time::Duration;

use crate::tcp::congestion::NewReno;
use crate::tcp::{
    CloseReason, ConnectionStats, Endpoint, FourTuple, IsnGenerator, OpenError, Outcome, RecvBuffer, RttEstimator,
    Segment, SendBuffer, SeqNumber, State, TcpConfig, TimeWaitRecord, Timer, TimerTable,
};
use crate::time::Instant;

/// RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// RFC 9293 3.7.1: the MSS to assume when the peer sends no MSS option.
const DEFAULT_PEER_MSS: u16 = 536;
/// A floor on the peer's MSS so that a hostile tiny MSS cannot make us send 1-byte segments.
const MIN_PEER_MSS: u16 = 64;
/// The smallest path MTU honoured from ICMP (Linux's `min_pmtu`, 552 = 512 + 40): a smaller
/// (possibly forged) next-hop MTU is taken as this one, so that segments never shrink to a
/// trickle (RFC 5927 7.2 warns of that attack). A path that really is narrower gets its
/// segments without DF, for routers to fragment (see [`Connection::dont_fragment`]).
pub const MIN_PATH_MTU: u16 = 552;
/// The IPv4 minimum MTU (RFC 791): an ICMP message claiming less is bogus.
const MIN_IPV4_MTU: u16 = 68;
use crate::tcp::config::IPV4_TCP_HEADERS;
/// Bytes of the timestamp option as it is laid out in data segments (with padding).
const TIMESTAMP_OPTION_LEN: u16 = 12;
/// The least time between two ACKs that answer unacceptable zero-length segments (Linux's
/// `tcp_invalid_ratelimit`, 500 ms), so that two ends that disagree cannot trade ACKs for ever.
const UNACCEPTABLE_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// The least time between two answers to window probes or keepalives at RCV.NXT - 1 (they come an
/// RTO or more apart; a burst of them is a loop, not a peer waiting).
const PROBE_ANSWER_INTERVAL: Duration = Duration::from_millis(100);
/// The least reordering window (RFC 8985 6.2 uses a quarter of the RTT; this floor keeps a
/// tiny RTT estimate from turning mild reordering into retransmissions).
const MIN_REORDER_WINDOW: Duration = Duration::from_micros(20);

/// Ring memory a connection gave back, for its owner's pool.
#[derive(Debug, Default)]
pub(crate) struct RingMemory {
    /// The send ring's memory.
    pub send: Option<Box<[u8]>>,
    /// The receive ring's memory.
    pub recv: Option<Box<[u8]>>,
}

// Pending application events, drained in this order by `poll_event`.
const EV_CONNECTED: u8 = 1;
const EV_READABLE: u8 = 2;
const EV_WRITABLE: u8 = 4;
const EV_PEER_CLOSED: u8 = 8;
const EV_CLOSED: u8 = 16;

/// A TCP connection (RFC 9293): the transmission control block and its buffers.
///
/// Created once, with its rings' memory ([`Connection::with_rings`], a connection used on its
/// own) or without it ([`Connection::new`], a connection of an `Interface`, which lends it
/// ring memory from its pool while it holds data); reused for any number of lifetimes through
/// [`Connection::listen`] or [`Connection::connect`] once it is CLOSED.
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
    /// A router reported a next-hop MTU below [`MIN_PATH_MTU`]: segments are sized for that
    /// floor and sent without DF (Linux's locked path MTU).
    df_cleared: bool,
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
    /// An RST to send, by its sequence number (its header is built when it goes out: a
    /// whole `TcpRepr` here would make every connection 70 bytes bigger).
    rst_pending: Option<SeqNumber>,
    /// Loss recovery: the SACK scoreboard, the retransmissions owed, the reordering timer and
    /// the tail loss probe.
    recovery: Recovery,
    persist_probe: bool,
    keepalive_probe: bool,
    /// `close` found us in FIN-WAIT-2: the next timer update arms the orphan timeout.
    orphan_timer_due: bool,

    timers: TimerTable,
    rtt: RttEstimator,
    cc: NewReno,
    retries: u8,
    keepalive_probes: u8,
    /// Zero-window probes sent since the peer last answered (RFC 9293 3.8.6.1).
    persist_probes: u8,
    /// When the current run of retransmissions or zero-window probes without progress began:
    /// what `TcpConfig::user_timeout` is measured from.
    stalled_since: Option<Instant>,

    events: u8,
    send_blocked: bool,
    close_reason: Option<CloseReason>,
    stats: ConnectionStats,
}
impl Connection {
    /// A CLOSED connection whose rings have no memory: it allocates nothing. It advertises
    /// its whole receive window, but stores data and takes `send`s only once its owner
    /// attached ring memory (`attach_recv_ring`, `attach_send_ring`), which it gives back
    /// when drained (`take_drained_rings`); the `Interface` does that from its ring pool.
    pub fn new(config: TcpConfig) -> Connection {
        Connection::with_buffers(
            config,
            SendBuffer::detached(config.send_buffer_len),
            RecvBuffer::detached(config.recv_buffer_len),
        )
    }

    /// A CLOSED connection with its rings' memory allocated now and kept for good (the only
    /// allocation it makes): for a connection used on its own, without a ring pool.
    pub fn with_rings(config: TcpConfig) -> Connection {
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
            df_cleared: false,
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
            recovery: Recovery::default(),
            persist_probe: false,
            keepalive_probe: false,
            orphan_timer_due: false,
            timers: TimerTable::default(),
            retries: 0,
            keepalive_probes: 0,
            persist_probes: 0,
            stalled_since: None,
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
            df_cleared,
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
            recovery,
            persist_probe,
            keepalive_probe,
            orphan_timer_due,
            timers,
            rtt,
            cc,
            retries,
            keepalive_probes,
            persist_probes,
            stalled_since,
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
        *df_cleared = false;
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
        *recovery = Recovery::default();
        *persist_probe = false;
        *keepalive_probe = false;
        *orphan_timer_due = false;
        *timers = TimerTable::default();
        *rtt = RttEstimator::new(c.rto_initial, c.rto_min, c.rto_max);
        *cc = NewReno::new(u32::from(c.mss), c.initial_window_segments, SeqNumber(0));
        *retries = 0;
        *keepalive_probes = 0;
        *persist_probes = 0;
        *stalled_since = None;
        *events = 0;
        *send_blocked = false;
        *close_reason = None;
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
            let owned = self.tx.has_ring();
            *self = if owned { Connection::with_rings(config) } else { Connection::new(config) };
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

    // ----- Ring memory, lent by the owner (the `Interface`'s ring pool) -----

    /// Whether the receive ring has no memory: data that comes needs some attached first.
    pub(crate) fn needs_recv_ring(&self) -> bool {
        !self.rx.has_ring()
    }

    /// Whether the send ring has no memory: a `send` needs some attached first.
    pub(crate) fn needs_send_ring(&self) -> bool {
        !self.tx.has_ring()
    }

    /// Whether data found no ring memory: the window we advertise is closed until some comes.
    pub(crate) fn recv_starved(&self) -> bool {
        self.rx.is_starved()
    }

    /// Gives the receive ring its memory (`recv_buffer_len` rounded up to a power of two);
    /// a window closed for want of it opens again.
    pub(crate) fn attach_recv_ring(&mut self, ring: Box<[u8]>) {
        self.rx.attach(ring);
    }

    /// Gives the send ring its memory (`send_buffer_len` rounded up to a power of two).
    pub(crate) fn attach_send_ring(&mut self, ring: Box<[u8]>) {
        self.tx.attach(ring);
    }

    /// Data is arriving and no receive ring memory could be had: the data is dropped (the
    /// window is closed) and the ACK that answers it advertises the closed window, so the
    /// peer holds its data and probes until memory is free (RFC 9293 3.8.6.1).
    pub(crate) fn refuse_data_for_want_of_ring(&mut self) {
        self.rx.starve();
        self.ack_now = true;
    }

    /// Takes back the memory of the rings that hold nothing: the send ring once every byte
    /// was acknowledged, the receive ring once everything was read and nothing is held out of
    /// order. An idle connection then holds no ring memory.
    pub(crate) fn take_drained_rings(&mut self) -> RingMemory {
        RingMemory { send: self.tx.detach_if_empty(), recv: self.rx.detach_if_empty() }
    }

    /// Takes back all ring memory, dropping what the rings held: for a connection that will
    /// send nothing more (`send`) or has ended (`recv` too).
    pub(crate) fn take_rings(&mut self, recv: bool) -> RingMemory {
        RingMemory { send: self.tx.detach(), recv: if recv { self.rx.detach() } else { None } }
    }

    /// The receive ring's memory could not be had and now can: the window closed for want of
    /// it opens again, and an ACK says so at once rather than when the peer next probes (its
    /// probes back off to minutes). The memory itself comes with the data.
    pub(crate) fn reopen_window(&mut self) {
        self.rx.unstarve();
        if self.state.can_receive() {
            self.ack_now = true;
        }
    }

    /// A `send` was refused for want of ring memory, which is free again: tells the
    /// application it may write ([`Event::Writable`](crate::tcp::Event::Writable)).
    pub(crate) fn wake_writable(&mut self) {
        if self.accepts_data() {
            self.send_blocked = false;
            self.events |= EV_WRITABLE;
        }
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

    /// Whether this connection's segments go out with DF set (RFC 1191 path MTU discovery).
    /// False once a router reported a next-hop MTU below [`MIN_PATH_MTU`]: segments stay
    /// sized for that floor and routers must fragment them, as Linux does for a path whose
    /// reported MTU is below `min_pmtu` (the MTU is locked and DF cleared).
    pub fn dont_fragment(&self) -> bool {
        !self.df_cleared
    }

    /// Whether timestamps, SACK and window scaling were negotiated.
    pub fn negotiated(&self) -> (bool, bool, bool) {
        (self.ts_enabled, self.sack_enabled, self.snd_wscale > 0 || self.rcv_wscale > 0)
    }

    /// The smoothed round-trip time (RFC 6298), once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
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
            oow_acked: false,
        })
    }

    // ----- Endings and invariants -----

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

    /// The send sequence space in order (RFC 9293 3.3.1: SND.UNA <= SND.NXT <= SND.MAX), no
    /// more in flight than the send buffer holds (plus SYN and FIN), the send window within
    /// the largest seen, a FIN sent only when queued and within what was sent, and no SACK
    /// recovery state without SACK. Checked after every entry point in builds with debug
    /// assertions (the `checked` profile).
    #[inline]
    fn debug_check_invariants(&self) {
        if matches!(self.state, State::Closed | State::Listen) {
            return;
        }
        debug_assert!(
            self.snd_una <= self.snd_nxt && self.snd_nxt <= self.snd_max,
            "SND.UNA {:?} <= SND.NXT {:?} <= SND.MAX {:?} in {:?}",
            self.snd_una,
            self.snd_nxt,
            self.snd_max,
            self.state
        );
        debug_assert!(
            self.snd_max.since(self.snd_una) as usize <= self.tx.len() + 2,
            "in flight {} beyond the {} bytes buffered (+ SYN, FIN) in {:?}",
            self.snd_max.since(self.snd_una),
            self.tx.len(),
            self.state
        );
        debug_assert!(
            self.snd_wnd <= self.max_snd_wnd,
            "SND.WND {} beyond MAX.SND.WND {}",
            self.snd_wnd,
            self.max_snd_wnd
        );
        debug_assert!(
            self.fin_seq.is_none_or(|f| self.fin_queued && f < self.snd_max),
            "FIN at {:?} unqueued or not below SND.MAX {:?}",
            self.fin_seq,
            self.snd_max
        );
        self.recovery.debug_check(self.sack_enabled);
    }
}
