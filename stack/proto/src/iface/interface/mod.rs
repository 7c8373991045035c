//! [`Interface`]: one worker's frames, connections, listeners, TIME_WAIT records and
//! neighbours, driven by `receive` and `poll`.
//!
//! This file holds the `Interface` itself, its construction, accessors and the slab's
//! bookkeeping; the rest is split by concern, each an `impl Interface`: `receive` (receive and
//! demultiplex), `reply` (answers written in place), `poll` (timers, events, transmission and
//! retiring slots), `api` (the application's calls), `batch` (`receive_batch`) and
//! `syn_cookies`.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

mod api;
mod batch;
mod poll;
mod receive;
mod reply;
mod syn_cookies;

pub use self::batch::{RxFrames, VecFrames, RX_BATCH_MAX};

use self::receive::{Rx, TcpMeta};
use super::app::ConnId;
use super::config::InterfaceConfig;
use super::counters::Counters;
use super::neighbor::NeighborCache;
use super::ports::PortAllocator;
use super::ring_pool::Ring;
use super::table::ConnTable;
use super::time_wait_table::TimeWaitTable;
use super::timer_wheel::TimerWheel;
use crate::tcp::{FourTuple, IsnGenerator, SynCookies};
use crate::time::Instant;
use crate::wire::EthernetAddress;

/// Ethernet header bytes.
const ETH_LEN: usize = 14;
/// Ethernet plus a 20-byte IPv4 header: where the TCP segments we send start.
const L4_OFFSET: usize = ETH_LEN + 20;
/// An ARP packet for IPv4 over Ethernet, with its Ethernet header.
const ARP_FRAME_LEN: usize = ETH_LEN + 28;
/// Largest segment `splice` moves through the scratch buffer when a connection splices into
/// itself (an echo).
const SCRATCH_LEN: usize = 64 * 1024;

/// Errors from [`Interface::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The destination is off-link and no gateway is configured.
    #[error("no route to the destination (off-link, no gateway)")]
    NoRoute,
    /// Every local port is in use towards this destination.
    #[error("no local port available towards this destination")]
    NoPortAvailable,
    /// The connection table is full.
    #[error("connection table full")]
    TableFull,
    /// A zero address or port.
    #[error("unspecified address or port")]
    Unspecified,
    /// [`Interface::connect_from`]: the port is outside this interface's local port range
    /// (only those ports are steered to it, and with several workers owned by it).
    #[error("local port outside the interface's local port range")]
    PortOutOfRange,
}

/// Errors from [`Interface::listen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// Port 0.
    #[error("port 0 cannot be listened on")]
    PortZero,
    /// The port lies in the range of local ports used by `connect`.
    #[error("port is in the local port range used for outgoing connections")]
    InLocalPortRange,
}

/// One worker's network interface: see the [module documentation](super).
#[derive(Debug)]
pub struct Interface {
    config: InterfaceConfig,
    isn: IsnGenerator,
    /// SYN cookies, keyed from the same secret as `isn`.
    cookies: SynCookies,
    /// When the last SYN cookie went out: unmatched ACKs are checked for cookies only shortly
    /// after.
    cookie_sent_at: Option<Instant>,
    table: ConnTable,
    time_wait: TimeWaitTable,
    /// Every timer: connection slot `i` is entry `i`, TIME_WAIT record `j` is entry `max + j`.
    timers: TimerWheel,
    neighbors: NeighborCache,
    /// Listening ports as a bitmap.
    listen_ports: Box<[u64; 1024]>,
    half_open: usize,
    ports: PortAllocator,
    /// Slots with work (events, segments to send, a state change) since the last `poll`.
    dirty: Vec<u32>,
    /// Connections closed by the application, oldest first; entries of orphans that finished
    /// since are dropped when the queue passes `max_orphans`. Preallocated.
    orphans: VecDeque<ConnId>,
    /// Slots still blocked at the end of a `poll` (no TX frame), for the next one.
    carry: Vec<u32>,
    /// Connections whose `send` found no send ring, oldest first: each is lent one, and told
    /// it may write, as rings free (`Slot::waits_send_ring` keeps each in once). Preallocated.
    send_waiters: VecDeque<ConnId>,
    /// Connections whose data found no receive ring (their window closed), oldest first: as
    /// rings free, each announces its window open again. Preallocated.
    recv_waiters: VecDeque<ConnId>,
    /// Active opens waiting for their next hop's MAC.
    arp_waiting: Vec<u32>,
    /// ARP requests to send.
    arp_out: Vec<Ipv4Addr>,
    /// Next hops whose resolution gave up, for this poll.
    arp_failed: Vec<Ipv4Addr>,
    scratch: Box<[u8]>,
    /// Wheel entry of slot 0's application timer: slot `i`'s is `app_timer_base + i`.
    app_timer_base: u32,
    /// Application timers found due by `run_timers`, delivered after `on_poll`.
    timers_fired: Vec<ConnId>,
    /// A drain started: nothing is listened on any more.
    draining: bool,
    /// The parsed segments of one pass of `receive_batch`.
    batch: Vec<batch::Parsed>,
    counters: Counters,
    /// The IPv4 identification of the last datagram sent without DF (see
    /// `Connection::dont_fragment`); DF datagrams carry 0.
    ip_ident: u16,
    now: Instant,
}
impl Interface {
    /// An interface with `config`, whose ISNs and timestamp offsets come from `isn`. Allocates
    /// its tables now, and rings (and as many connection slots) up to `prefault_bytes`;
    /// further slots and rings are allocated as they grow to their high-water marks.
    pub fn new(config: InterfaceConfig, isn: IsnGenerator) -> Interface {
        // Wheel entries are u32 indices below 2^31: the three ranges (connection timers,
        // TIME_WAIT records, application timers) share that space.
        let max = config.max_connections.clamp(1, 1 << 29);
        let max_time_wait = config.max_time_wait.clamp(1, (1 << 31) - 1 - 2 * max);
        let mut table = ConnTable::new(max, config.tcp, config.ring_pool_bytes);
        let ring_bytes = (config.tcp.send_buffer_len + config.tcp.recv_buffer_len).max(1);
        table.prefill(config.prefault_bytes / ring_bytes);
        Interface {
            table,
            time_wait: TimeWaitTable::new(max_time_wait, max as u32),
            timers: TimerWheel::new(2 * max + max_time_wait),
            app_timer_base: (max + max_time_wait) as u32,
            timers_fired: Vec::with_capacity(max),
            draining: false,
            neighbors: NeighborCache::new(config.neighbor_ttl, config.arp_retry_interval, config.arp_retries),
            listen_ports: Box::new([0; 1024]),
            half_open: 0,
            ports: PortAllocator::new(config.local_ports.0, config.local_ports.1, &isn),
            dirty: Vec::with_capacity(max),
            orphans: VecDeque::with_capacity(config.max_orphans.min(max) + 1),
            carry: Vec::with_capacity(max),
            send_waiters: VecDeque::with_capacity(max),
            recv_waiters: VecDeque::with_capacity(max),
            arp_waiting: Vec::with_capacity(max.min(4096)),
            arp_out: Vec::with_capacity(256),
            arp_failed: Vec::with_capacity(256),
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
            batch: batch::scratch(),
            counters: Counters::default(),
            ip_ident: 0,
            now: Instant::ZERO,
            cookies: SynCookies::from_isn(&isn),
            cookie_sent_at: None,
            config,
            isn,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &InterfaceConfig {
        &self.config
    }

    /// What happened so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The time of the last `receive` or `poll`: what `connect` stamps a new connection with.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Connections in the table (not counting TIME_WAIT records).
    pub fn connection_count(&self) -> usize {
        self.table.len()
    }

    /// The connections in the table (not TIME_WAIT records), for diagnostics such as
    /// `synack stat`: state, 4-tuple, queues, RTT, windows and loss counters of each.
    pub fn connections(&self) -> impl Iterator<Item = &crate::tcp::Connection> {
        self.table.iter()
    }

    /// Connection slots created so far (the slab's high-water mark; a slot holds no rings).
    pub fn slots_created(&self) -> usize {
        self.table.slots_created()
    }

    /// The ring pools: send and receive rings lent to connections, free, and allocated.
    pub fn ring_stats(&self) -> super::RingStats {
        self.table.ring_stats()
    }

    /// TIME_WAIT records held.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// Bytes the TIME_WAIT records take per record the table can hold: slab, hash table and
    /// timer wheel entries, allocated up to `max_time_wait` at start.
    pub fn time_wait_bytes_per_entry(&self) -> f64 {
        self.time_wait.bytes_per_entry()
    }

    /// The neighbour cache, for static entries.
    pub fn neighbors_mut(&mut self) -> &mut NeighborCache {
        &mut self.neighbors
    }

    /// Records that `addr` is at `mac`, learned outside the frames this interface sees (for a
    /// shared address the kernel receives the ARP replies; the XDP program notes them).
    /// Connections waiting for that neighbour go on.
    pub fn learn_neighbor(&mut self, addr: Ipv4Addr, mac: EthernetAddress) {
        if self.neighbors.learn(addr, mac, self.now) || !self.arp_waiting.is_empty() {
            self.wake_arp_waiters(addr, mac);
        }
    }

    /// The next hops whose resolution waits for an answer (copied out, at most 16).
    pub fn pending_resolutions(&self) -> impl Iterator<Item = Ipv4Addr> {
        let mut pending = [Ipv4Addr::UNSPECIFIED; 16];
        let n = self.neighbors.pending(&mut pending);
        pending.into_iter().take(n)
    }

    /// Whether any neighbour resolution waits for an answer.
    pub fn has_pending_resolutions(&self) -> bool {
        self.neighbors.next_deadline().is_some()
    }

    /// Whether a neighbour resolution is waiting for an answer.
    pub fn is_resolving(&self, addr: Ipv4Addr) -> bool {
        self.neighbors.is_pending(addr)
    }

    /// The earliest time `poll` has timer work: sleep no longer than this.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.timers.next_deadline(), self.neighbors.next_deadline()].into_iter().flatten().min()
    }

    /// Whether the last `poll` left work for lack of TX frames.
    pub fn has_pending_output(&self) -> bool {
        !self.dirty.is_empty() || !self.arp_out.is_empty()
    }

    #[inline]
    fn mark_dirty(&mut self, index: u32) {
        let slot = self.table.slot_mut(index);
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(index);
        }
    }

    /// The slab's accounting: slots in use and attached are the map's entries, each found in
    /// the map at its own index (a detached one is kept only for its unread data), free slots
    /// the rest, with their connections CLOSED; the half-open count is the slots in
    /// `SlotState::HalfOpen` (within the backlog), which are exactly the passive connections in
    /// SYN-RECEIVED; a slot closed with unread data holds a connection CLOSED or in TIME_WAIT;
    /// the dirty list is the slots marked dirty; connections and TIME_WAIT records within
    /// their maxima. A scan of the slab: only in builds with debug assertions (the `checked`
    /// profile), after every `poll`.
    fn debug_check_invariants(&self) {
        #[cfg(debug_assertions)]
        {
            use super::table::SlotState;
            use crate::tcp::State;
            let slots = self.table.slots();
            let in_use = slots.iter().filter(|s| s.state.in_use()).count();
            // A detached slot (closed, kept only for its unread data) is out of the map.
            let attached = slots.iter().filter(|s| s.state.in_use() && !s.state.detached()).count();
            let half_open = slots.iter().filter(|s| s.state == SlotState::HalfOpen).count();
            debug_assert_eq!(attached, self.table.len(), "attached slots vs. map entries");
            debug_assert_eq!(in_use + self.table.free_len(), slots.len(), "every slot in use or free");
            debug_assert_eq!(half_open, self.half_open, "half-open count");
            debug_assert!(self.half_open <= self.config.syn_backlog.max(1), "half-open beyond the backlog");
            debug_assert!(self.table.len() <= self.config.max_connections.max(1), "connections beyond the max");
            debug_assert!(self.time_wait.len() <= self.config.max_time_wait.max(1), "TIME_WAIT beyond the max");
            for (index, s) in slots.iter().enumerate() {
                let state = s.conn.state();
                if !s.state.in_use() {
                    debug_assert!(s.conn.is_closed(), "free slot {index} holds a connection in {state:?}");
                    continue;
                }
                if !s.state.detached() {
                    let found = self.table.find(&s.conn.tuple());
                    debug_assert_eq!(found, Some(index as u32), "slot {index} ({state:?}) not at its 4-tuple");
                }
                let syn_received = !s.active && state == State::SynReceived;
                debug_assert_eq!(
                    s.state == SlotState::HalfOpen,
                    syn_received,
                    "slot {index}: {:?} with a passive connection in {state:?}",
                    s.state
                );
                if s.state.closed_pending() || s.state.detached() {
                    debug_assert!(
                        matches!(state, State::Closed | State::TimeWait),
                        "slot {index}: {:?} with a connection in {state:?}",
                        s.state
                    );
                }
            }
            // Every ring lent is held by exactly one connection.
            let rings = self.table.ring_stats();
            let send_held = slots.iter().filter(|s| !s.conn.needs_send_ring()).count();
            let recv_held = slots.iter().filter(|s| !s.conn.needs_recv_ring()).count();
            debug_assert_eq!(send_held, rings.send.in_use, "send rings held vs. lent");
            debug_assert_eq!(recv_held, rings.recv.in_use, "receive rings held vs. lent");
            debug_assert!(
                slots.iter().all(|s| s.state.in_use() || (s.conn.needs_send_ring() && s.conn.needs_recv_ring())),
                "a free slot holds a ring"
            );
            let marked = slots.iter().filter(|s| s.dirty).count();
            debug_assert_eq!(marked, self.dirty.len(), "slots marked dirty vs. the dirty list");
            debug_assert!(self.dirty.iter().all(|&i| slots[i as usize].dirty), "an unmarked slot on the dirty list");
        }
    }

    /// What [`Interface::debug_check_frames_counted`] compares: frames received, and the
    /// counters that say what became of them.
    #[cfg(debug_assertions)]
    fn debug_frame_count(&self) -> (u64, u64) {
        (self.counters.rx_frames, self.counters.frame_outcomes())
    }

    /// Frame accounting after `receive` or `receive_batch` of `frames` frames: each was counted
    /// once as received, and each moved at least one counter saying what became of it; the
    /// half-open count and the table stay within their bounds.
    #[cfg(debug_assertions)]
    fn debug_check_frames_counted(&self, (rx_before, outcomes_before): (u64, u64), frames: u64) {
        let (rx, outcomes) = self.debug_frame_count();
        debug_assert_eq!(rx - rx_before, frames, "frames received vs. frames counted");
        debug_assert!(
            outcomes - outcomes_before >= frames,
            "{frames} frames but {} outcomes counted: {}",
            outcomes - outcomes_before,
            self.counters
        );
        debug_assert!(self.half_open <= self.config.syn_backlog.max(1), "half-open beyond the backlog");
        debug_assert!(self.table.len() <= self.config.max_connections.max(1), "connections beyond the max");
    }

    /// Puts the connection of `id` on the list of those waiting for a ring of the kind, once.
    fn wait_for_ring(&mut self, id: ConnId, ring: Ring) {
        let waits = self.table.slot_mut(id.index).waits_for(ring);
        if *waits {
            return;
        }
        *waits = true;
        let queue = match ring {
            Ring::Send => &mut self.send_waiters,
            Ring::Recv => &mut self.recv_waiters,
        };
        if queue.len() == queue.capacity() {
            // Full of entries of slots freed since: only current waiters stay, one per slot,
            // fewer than the slots (this one is not among them), so the push never grows it.
            let table = &mut self.table;
            queue.retain(|&w| w != id && table.get_mut(w).is_some_and(|s| *s.waits_for(ring)));
        }
        queue.push_back(id);
    }

    /// Frees a connection's slot and disarms its timer.
    fn free_slot(&mut self, index: u32, tuple: &FourTuple) {
        self.timers.cancel(index);
        self.timers.cancel(self.app_timer_base + index);
        self.table.remove(index, tuple);
    }
}
