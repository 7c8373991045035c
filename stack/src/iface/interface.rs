//! [`Interface`]: one worker's frames, connections, listeners, TIME_WAIT records and
//! neighbours, driven by `receive` and `poll`.

use std::net::Ipv4Addr;

mod batch;
mod syn_cookies;

pub use self::batch::{RxFrames, VecFrames, RX_BATCH_MAX};

use self::syn_cookies::CookieAck;
use super::app::{App, ConnId, RxAction, TxSink};
use super::config::{AddressMode, InterfaceConfig, TableFullPolicy};
use super::counters::Counters;
use super::neighbor::{NeighborAction, NeighborCache};
use super::ports::PortAllocator;
use super::table::ConnTable;
use super::time_wait_table::{Inserted, TimeWaitTable};
use super::timer_wheel::{tick_ceil, Lane, TimerWheel};
use crate::tcp::{
    reset_for_unmatched, CloseReason, Endpoint, Event, FourTuple, IsnGenerator, Outcome, RecvError, Segment, SendError,
    State, SynCookies, TimeWaitAction,
};
use crate::time::Instant;
use crate::wire::{
    checksum, emit_header, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr, WireError,
};

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
    /// Slots still blocked at the end of a `poll` (no TX frame), for the next one.
    carry: Vec<u32>,
    /// Active opens waiting for their next hop's MAC.
    arp_waiting: Vec<u32>,
    /// ARP requests to send.
    arp_out: Vec<Ipv4Addr>,
    /// Next hops whose resolution gave up, for this poll.
    arp_failed: Vec<Ipv4Addr>,
    scratch: Box<[u8]>,
    /// The parsed segments of one pass of `receive_batch`.
    batch: Vec<batch::Parsed>,
    counters: Counters,
    now: Instant,
}

impl Interface {
    /// An interface with `config`, whose ISNs and timestamp offsets come from `isn`. Allocates
    /// its tables now, and the first connection slots up to `prefault_bytes` of rings; the
    /// rings of further slots are allocated as the slab grows to its high-water mark.
    pub fn new(config: InterfaceConfig, isn: IsnGenerator) -> Interface {
        // Wheel entries are u32 indices below 2^31: the two ranges share that space.
        let max = config.max_connections.clamp(1, 1 << 30);
        let max_time_wait = config.max_time_wait.clamp(1, (1 << 31) - 1 - max);
        let mut table = ConnTable::new(max, config.tcp);
        let ring_bytes = (config.tcp.send_buffer_len + config.tcp.recv_buffer_len).max(1);
        table.prefill(config.prefault_bytes / ring_bytes);
        Interface {
            table,
            time_wait: TimeWaitTable::new(max_time_wait, max as u32),
            timers: TimerWheel::new(max + max_time_wait),
            neighbors: NeighborCache::new(config.neighbor_ttl, config.arp_retry_interval, config.arp_retries),
            listen_ports: Box::new([0; 1024]),
            half_open: 0,
            ports: PortAllocator::new(config.local_ports.0, config.local_ports.1),
            dirty: Vec::with_capacity(max),
            carry: Vec::with_capacity(max),
            arp_waiting: Vec::with_capacity(max.min(4096)),
            arp_out: Vec::with_capacity(256),
            arp_failed: Vec::with_capacity(256),
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
            batch: batch::scratch(),
            counters: Counters::default(),
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

    /// Connection slots created so far (each holds its rings for reuse).
    pub fn slots_created(&self) -> usize {
        self.table.slots_created()
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

    // ----- Listening and opening -----

    /// Accepts connections on `port` from now on.
    pub fn listen(&mut self, port: u16) -> Result<(), ListenError> {
        if port == 0 {
            return Err(ListenError::PortZero);
        }
        let (lo, hi) = self.config.local_ports;
        if (lo..=hi).contains(&port) {
            return Err(ListenError::InLocalPortRange);
        }
        self.listen_ports[usize::from(port / 64)] |= 1 << (port % 64);
        Ok(())
    }

    /// Stops accepting on `port`; connections already accepted go on.
    pub fn unlisten(&mut self, port: u16) {
        self.listen_ports[usize::from(port / 64)] &= !(1 << (port % 64));
    }

    /// Whether `port` is listened on.
    #[inline]
    pub fn is_listening(&self, port: u16) -> bool {
        self.listen_ports[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    /// Opens a connection to `remote` from a free local port (active open). The SYN goes out
    /// on the next `poll` (after ARP, if the next hop's MAC is unknown);
    /// [`App::on_connected`] follows the handshake.
    pub fn connect(&mut self, remote: Endpoint) -> Result<ConnId, ConnectError> {
        if remote.port == 0 || remote.addr.is_unspecified() {
            return Err(ConnectError::Unspecified);
        }
        let hop = self.config.next_hop(remote.addr).ok_or(ConnectError::NoRoute)?;
        let (local_addr, now, reuse) = (self.config.addr, self.now, self.config.time_wait_reuse);
        let (table, time_wait, timers) = (&self.table, &self.time_wait, &self.timers);
        // Each port is free (`Some(None)`), reusable from TIME_WAIT with an ISS and the record
        // to end (`Some(Some)`), or in use (`None`).
        let (port, reuse_iss) = self
            .ports
            .allocate(remote.addr, |port| {
                let tuple = FourTuple { local: Endpoint::new(local_addr, port), remote };
                if table.find(&tuple).is_some() {
                    return None;
                }
                match time_wait.find(&tuple) {
                    None => Some(None),
                    Some(i) => Some(Some((time_wait.get(i, timers).reuse_iss(now, reuse?)?, i))),
                }
            })
            .ok_or(ConnectError::NoPortAvailable)?;
        let local = Endpoint::new(local_addr, port);
        let tuple = FourTuple { local, remote };
        let id = self.table.insert(tuple).ok_or(ConnectError::TableFull)?;
        let mac = self.neighbors.lookup(hop, now);
        let slot = self.table.slot_mut(id.index);
        if slot.conn.connect(now, local, remote, self.isn).is_err() {
            self.free_slot(id.index, &tuple);
            return Err(ConnectError::Unspecified);
        }
        if let Some((iss, record)) = reuse_iss {
            // The old incarnation's TIME_WAIT ends here (RFC 6191, as the closer).
            slot.conn.force_iss(iss);
            self.time_wait.remove(record, &mut self.timers);
            self.counters.time_wait_reused += 1;
        }
        slot.active = true;
        slot.announced = true;
        slot.remote_mac = mac;
        self.mark_dirty(id.index);
        Ok(id)
    }

    // ----- The application's calls on a connection -----

    /// Queues data to send; returns how much was taken (back-pressure: less than `data`, or
    /// [`SendError::BufferFull`]; [`App::on_writable`] follows when room frees).
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, SendError> {
        let slot = self.table.get_mut(id).ok_or(SendError::InvalidState)?;
        let sent = slot.conn.send(data);
        self.mark_dirty(id.index);
        sent
    }

    /// Reads in-order data into `buf`.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, RecvError> {
        let slot = self.table.get_mut(id).ok_or(RecvError::InvalidState)?;
        let read = slot.conn.recv(buf);
        if read.is_ok() {
            // Reading may open the window enough to announce it.
            self.mark_dirty(id.index);
        }
        read
    }

    /// The readable data in place, as up to two slices (the ring may wrap); consume with
    /// [`Interface::recv_consume`]. Empty slices for a stale handle.
    pub fn recv_slices(&self, id: ConnId) -> (&[u8], &[u8]) {
        match self.table.get(id) {
            Some(slot) => slot.conn.recv_slices(),
            None => (&[], &[]),
        }
    }

    /// Consumes `n` bytes seen through [`Interface::recv_slices`].
    pub fn recv_consume(&mut self, id: ConnId, n: usize) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.recv_consume(n);
            self.mark_dirty(id.index);
        }
    }

    /// Moves up to `max` readable bytes of `from` into the send buffer of `to`, as much as it
    /// has room for, without an intermediate buffer (the proxy's copy). `from == to` echoes.
    /// Returns the bytes moved.
    pub fn splice(&mut self, from: ConnId, to: ConnId, max: usize) -> Result<usize, SendError> {
        let moved = if from == to {
            let slot = self.table.get_mut(from).ok_or(SendError::InvalidState)?;
            let room = slot.conn.send_capacity().min(max).min(self.scratch.len());
            let readable = slot.conn.recv_queue_len();
            if room < readable.min(max) {
                // More to move than fits: resume on Writable.
                slot.conn.notify_when_writable();
            }
            if room == 0 {
                return Err(SendError::BufferFull);
            }
            let n = slot.conn.recv(&mut self.scratch[..room]).unwrap_or(0);
            if n > 0 {
                slot.conn.send(&self.scratch[..n])?;
            }
            n
        } else {
            let [src, dst] = self.table.get_pair_mut(from, to).ok_or(SendError::InvalidState)?;
            let room = dst.conn.send_capacity().min(max);
            if room < src.conn.recv_queue_len().min(max) {
                dst.conn.notify_when_writable();
            }
            if room == 0 {
                return Err(SendError::BufferFull);
            }
            let (first, second) = src.conn.recv_slices();
            let mut moved = 0;
            for part in [first, second] {
                let want = part.len().min(room - moved);
                if want == 0 {
                    break;
                }
                moved += dst.conn.send(&part[..want])?;
            }
            src.conn.recv_consume(moved);
            moved
        };
        self.mark_dirty(from.index);
        self.mark_dirty(to.index);
        Ok(moved)
    }

    /// Shuts down the write side: FIN follows the queued data.
    pub fn shutdown(&mut self, id: ConnId) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.shutdown();
            self.mark_dirty(id.index);
        }
    }

    /// Closes the connection: FIN after the queued data; data still arriving is discarded.
    /// [`App::on_closed`] follows when the close completes.
    pub fn close(&mut self, id: ConnId) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.close();
            self.mark_dirty(id.index);
        }
    }

    /// Aborts the connection with an RST.
    pub fn abort(&mut self, id: ConnId) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.abort();
            self.mark_dirty(id.index);
        }
    }

    /// Switches Nagle's algorithm for one connection.
    pub fn set_nagle(&mut self, id: ConnId, on: bool) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.set_nagle(on);
        }
    }

    /// The state of a connection (`Closed` for a stale handle).
    pub fn state(&self, id: ConnId) -> State {
        self.table.get(id).map_or(State::Closed, |s| s.conn.state())
    }

    /// The 4-tuple of a connection.
    pub fn tuple(&self, id: ConnId) -> Option<FourTuple> {
        self.table.get(id).map(|s| s.conn.tuple())
    }

    /// Bytes waiting to be read.
    pub fn recv_queue_len(&self, id: ConnId) -> usize {
        self.table.get(id).map_or(0, |s| s.conn.recv_queue_len())
    }

    /// Free space in the send buffer.
    pub fn send_capacity(&self, id: ConnId) -> usize {
        self.table.get(id).map_or(0, |s| s.conn.send_capacity())
    }

    // ----- Input -----

    /// Takes in one received frame: `buf` is the whole frame buffer, of which the first `len`
    /// bytes were received. Stateless answers are written over it in place
    /// ([`RxAction::Transmit`]); everything else waits for the next [`Interface::poll`].
    /// Every frame is counted, and none can make this panic.
    pub fn receive(&mut self, now: Instant, buf: &mut [u8], len: usize) -> RxAction {
        self.now = now;
        // Matched by reference: moving the parsed segment out is a copy of ~150 bytes.
        let rx = self.classify(now, buf, len);
        match &rx {
            Rx::Done(action) => *action,
            Rx::Tcp(meta) => {
                let found = self.table.find(&meta.tuple);
                self.on_segment(now, buf, meta, found)
            }
        }
    }

    /// The first step of `receive`: checks the frame, handles everything but a TCP segment,
    /// and parses a segment for the lookup. Inlined with `on_ipv4` and `parse_tcp`, so that
    /// the parsed segment is built where it is used rather than copied out through returns
    /// (a copy per level cost about 80 instructions per frame).
    #[inline(always)]
    fn classify(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Rx {
        self.counters.rx_frames += 1;
        let len = len.min(buf.len());
        let (src_mac, ethertype) = {
            let frame = match EthernetFrame::new_checked(&buf[..len]) {
                Ok(frame) => frame,
                Err(e) => return Rx::Done(self.wire_drop(e)),
            };
            let dst = frame.dst_addr();
            if dst != self.config.mac && !dst.is_broadcast() {
                self.counters.drop_not_ours += 1;
                return Rx::Done(RxAction::Release);
            }
            (frame.src_addr(), frame.ethertype())
        };
        match ethertype {
            EtherType::IPV4 => self.on_ipv4(buf, len, src_mac),
            EtherType::ARP => Rx::Done(self.on_arp(now, buf, len)),
            _ => {
                self.counters.drop_unsupported += 1;
                Rx::Done(RxAction::Release)
            }
        }
    }

    fn wire_drop(&mut self, error: WireError) -> RxAction {
        self.counters.wire_error(error);
        RxAction::Release
    }

    fn on_arp(&mut self, now: Instant, buf: &mut [u8], len: usize) -> RxAction {
        let arp = match ArpPacket::new_checked(&buf[ETH_LEN..len]).and_then(|p| ArpRepr::parse(&p)) {
            Ok(arp) => arp,
            Err(e) => return self.wire_drop(e),
        };
        let (sender, sender_mac) = (arp.source_protocol_addr, arp.source_hardware_addr);
        if arp.target_protocol_addr != self.config.addr {
            // RFC 826: someone else's ARP only refreshes an entry we already have.
            if self.neighbors.lookup(sender, now).is_some() {
                self.neighbors.learn(sender, sender_mac, now);
            }
            self.counters.drop_not_ours += 1;
            return RxAction::Release;
        }
        self.counters.rx_arp += 1;
        if self.config.is_on_link(sender) {
            self.learn_neighbor(sender, sender_mac);
        }
        if arp.operation != ArpOperation::Request || self.config.address_mode != AddressMode::Dedicated {
            // With a shared address the kernel answers (it sees the same request).
            return RxAction::Release;
        }
        if buf.len() < ARP_FRAME_LEN {
            self.counters.drop_truncated += 1;
            return RxAction::Release;
        }
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.config.addr,
            target_hardware_addr: sender_mac,
            target_protocol_addr: sender,
        };
        self.write_arp(buf, sender_mac, &reply);
        self.counters.arp_replies += 1;
        RxAction::Transmit(ARP_FRAME_LEN)
    }

    #[inline(always)]
    fn on_ipv4(&mut self, buf: &mut [u8], len: usize, src_mac: EthernetAddress) -> Rx {
        let (ip, ip_header_len) = {
            let packet = match Ipv4Packet::new_checked(&buf[ETH_LEN..len]) {
                Ok(p) => p,
                Err(e) => return Rx::Done(self.wire_drop(e)),
            };
            // The IPv4 header checksum is always verified: no veth or NIC leaves it partial.
            match Ipv4Repr::parse(&packet, crate::wire::ChecksumMode::Verify) {
                Ok(ip) => (ip, packet.header_len()),
                Err(e) => return Rx::Done(self.wire_drop(e)),
            }
        };
        if ip.dst_addr != self.config.addr {
            self.counters.drop_not_ours += 1;
            return Rx::Done(RxAction::Release);
        }
        let start = ETH_LEN + ip_header_len;
        let end = start + ip.payload_len;
        match ip.protocol {
            crate::wire::ip_protocol::TCP => self.parse_tcp(buf, start, end, &ip, src_mac),
            crate::wire::ip_protocol::ICMP if self.config.icmp_echo => {
                Rx::Done(self.on_icmp(buf, start, end, &ip, src_mac))
            }
            _ => {
                self.counters.drop_unsupported += 1;
                Rx::Done(RxAction::Release)
            }
        }
    }

    fn on_icmp(
        &mut self,
        buf: &mut [u8],
        start: usize,
        end: usize,
        ip: &Ipv4Repr,
        src_mac: EthernetAddress,
    ) -> RxAction {
        let parsed = Icmpv4Packet::new_checked(&buf[start..end]).and_then(|p| {
            Icmpv4Repr::parse(&p, crate::wire::ChecksumMode::Verify)
                .map(|r| matches!(r, Icmpv4Repr::EchoRequest { .. }))
        });
        match parsed {
            Ok(true) => {}
            Ok(false) => {
                self.counters.drop_unsupported += 1;
                return RxAction::Release;
            }
            Err(e) => return self.wire_drop(e),
        }
        // Echo reply in place (RFC 792): swap the addresses, type 8 -> 0, and mend the ICMP
        // checksum incrementally (RFC 1624); the echoed data stays where it is.
        let old_checksum = u16::from_be_bytes([buf[start + 2], buf[start + 3]]);
        let old_word = u16::from_be_bytes([buf[start], buf[start + 1]]);
        buf[start] = 0;
        let new_word = u16::from_be_bytes([buf[start], buf[start + 1]]);
        let c = checksum::update(old_checksum, old_word, new_word);
        buf[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
        self.write_l2_l3(buf, src_mac, ip.src_addr, crate::wire::ip_protocol::ICMP, end - start);
        // A header with options was replaced by a 20-byte one: move the message up to it.
        if start != L4_OFFSET {
            buf.copy_within(start..end, L4_OFFSET);
        }
        self.counters.icmp_echo_replies += 1;
        RxAction::Transmit(L4_OFFSET + (end - start))
    }

    /// Parses a TCP segment (checksum included) for `on_segment`.
    #[inline(always)]
    fn parse_tcp(&mut self, buf: &[u8], start: usize, end: usize, ip: &Ipv4Repr, src_mac: EthernetAddress) -> Rx {
        let (repr, header_len) = {
            let packet = match TcpPacket::new_checked(&buf[start..end]) {
                Ok(p) => p,
                Err(e) => return Rx::Done(self.wire_drop(e)),
            };
            match TcpRepr::parse(&packet, ip.src_addr, ip.dst_addr, self.config.checksum) {
                Ok(repr) => (repr, packet.header_len()),
                Err(e) => return Rx::Done(self.wire_drop(e)),
            }
        };
        let tuple = FourTuple {
            local: Endpoint::new(ip.dst_addr, repr.dst_port),
            remote: Endpoint::new(ip.src_addr, repr.src_port),
        };
        Rx::Tcp(TcpMeta { payload_start: start + header_len, end, src_mac, repr, tuple })
    }

    /// Processes a parsed segment; `found` is its connection's slot, looked up by the caller
    /// (`receive` one frame at a time, `receive_batch` for a whole batch).
    #[inline]
    fn on_segment(&mut self, now: Instant, buf: &mut [u8], meta: &TcpMeta, found: Option<u32>) -> RxAction {
        let (tuple, src_mac) = (meta.tuple, meta.src_mac);
        let peer = tuple.remote.addr;
        let seg = Segment {
            src_addr: peer,
            dst_addr: tuple.local.addr,
            repr: meta.repr,
            payload: &buf[meta.payload_start..meta.end],
        };
        let repr = &seg.repr;

        if let Some(index) = found {
            let slot = self.table.slot_mut(index);
            // The peer's MAC (or its gateway's) as last heard: where our frames go.
            slot.remote_mac = Some(src_mac);
            let outcome = slot.conn.handle_segment(now, &seg);
            self.counters.rx_segments += 1;
            self.mark_dirty(index);
            return match outcome {
                Outcome::Accepted => RxAction::Release,
                Outcome::Dropped(reason) => {
                    self.counters.tcp_drop(reason);
                    RxAction::Release
                }
                // The connection ended in this batch and leaves the table at the next poll. A
                // new SYN for its 4-tuple is dropped, not refused: the listener (or a reused
                // client port's owner) will meet its retransmission.
                Outcome::NoConnection
                    if repr.flags & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) == TcpFlags::SYN =>
                {
                    self.counters.drop_unexpected += 1;
                    RxAction::Release
                }
                Outcome::NoConnection => {
                    let rst = reset_for_unmatched(&seg);
                    self.reply_reset(buf, src_mac, peer, rst)
                }
                // A full connection still in TIME_WAIT (it becomes a record at the end of this
                // poll): the client's SYN retransmission will meet the record.
                Outcome::Reopen { .. } => {
                    self.counters.drop_unexpected += 1;
                    RxAction::Release
                }
            };
        }

        let mut forced_iss = None;
        if let Some(i) = self.time_wait.find(&tuple) {
            self.counters.rx_segments += 1;
            let mut record = self.time_wait.get(i, &self.timers);
            match record.on_segment(now, repr, seg.payload.len(), self.config.tcp.time_wait) {
                TimeWaitAction::Drop => {
                    // The record noted the segment (port reuse waits for a quiet 4-tuple).
                    self.time_wait.update(i, &record, &mut self.timers);
                    if repr.flags.contains(TcpFlags::RST) {
                        self.counters.drop_rst_ignored += 1;
                    } else {
                        self.counters.drop_time_wait += 1;
                    }
                    return RxAction::Release;
                }
                TimeWaitAction::Ack | TimeWaitAction::AckAndRestart => {
                    let ack = record.ack_repr(now);
                    // RFC 9293 3.10.7.4: a restarted 2MSL (and TS.Recent) go back, and the
                    // time of this segment, which port reuse waits out.
                    self.time_wait.update(i, &record, &mut self.timers);
                    self.counters.time_wait_acks += 1;
                    return self.reply_tcp(buf, src_mac, peer, &ack);
                }
                TimeWaitAction::Reopen { iss } => {
                    self.time_wait.remove(i, &mut self.timers);
                    self.counters.time_wait_reopened += 1;
                    forced_iss = Some(iss);
                }
            }
        }

        let is_syn = repr.flags.contains(TcpFlags::SYN) && !repr.flags.intersects(TcpFlags::ACK | TcpFlags::RST);
        if is_syn && self.is_listening(repr.dst_port) {
            if self.half_open >= self.config.syn_backlog && self.config.syn_cookies && forced_iss.is_none() {
                // RFC 4987: the backlog is full, so a cookie stands in for the SYN's state.
                self.counters.rx_segments += 1;
                return self.reply_syn_cookie(now, buf, repr, tuple, src_mac);
            }
            if self.accept_syn(now, &seg, tuple, src_mac, forced_iss) {
                let rst = reset_for_unmatched(&seg);
                return self.reply_reset(buf, src_mac, peer, rst);
            }
            return RxAction::Release;
        }
        if self.may_return_cookie(now, repr.flags) && self.is_listening(repr.dst_port) {
            match self.accept_cookie_ack(now, &seg, tuple, src_mac) {
                CookieAck::Accepted | CookieAck::TableFull => return RxAction::Release,
                CookieAck::Invalid => {}
            }
        }
        // RFC 9293 3.10.7.1: a segment for no connection gets an RST (none for an RST).
        self.counters.rx_segments += 1;
        let rst = reset_for_unmatched(&seg);
        self.reply_reset(buf, src_mac, peer, rst)
    }

    /// Opens a passive connection for a SYN on a listening port; true when the SYN is refused
    /// and the policy says to answer with an RST.
    fn accept_syn(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        tuple: FourTuple,
        src_mac: EthernetAddress,
        forced_iss: Option<crate::tcp::SeqNumber>,
    ) -> bool {
        self.counters.rx_segments += 1;
        let refused = if self.half_open >= self.config.syn_backlog {
            self.counters.drop_backlog_full += 1;
            true
        } else if self.table.len() >= self.config.max_connections {
            self.counters.drop_table_full += 1;
            true
        } else {
            false
        };
        let inserted = if refused { None } else { self.table.insert(tuple) };
        let Some(id) = inserted else {
            if !refused {
                self.counters.drop_table_full += 1;
            }
            return self.config.table_full == TableFullPolicy::Reset;
        };
        let slot = self.table.slot_mut(id.index);
        let _ = slot.conn.listen(tuple.local, self.isn);
        if let Some(iss) = forced_iss {
            slot.conn.force_iss(iss);
        }
        match slot.conn.handle_segment(now, seg) {
            Outcome::Accepted => {
                slot.remote_mac = Some(src_mac);
                slot.half_open = true;
                self.half_open += 1;
                self.mark_dirty(id.index);
            }
            other => {
                if let Outcome::Dropped(reason) = other {
                    self.counters.tcp_drop(reason);
                }
                self.free_slot(id.index, &tuple);
            }
        }
        false
    }

    // ----- Replies written in place -----

    fn reply_reset(
        &mut self,
        buf: &mut [u8],
        dst_mac: EthernetAddress,
        dst: Ipv4Addr,
        rst: Option<TcpRepr>,
    ) -> RxAction {
        match rst {
            Some(rst) => {
                self.counters.resets_sent += 1;
                self.reply_tcp(buf, dst_mac, dst, &rst)
            }
            None => {
                self.counters.drop_rst_ignored += 1;
                RxAction::Release
            }
        }
    }

    fn reply_tcp(&mut self, buf: &mut [u8], dst_mac: EthernetAddress, dst: Ipv4Addr, repr: &TcpRepr) -> RxAction {
        let tcp_len = repr.header_len();
        if buf.len() < L4_OFFSET + tcp_len {
            self.counters.drop_truncated += 1;
            return RxAction::Release;
        }
        self.write_l2_l3(buf, dst_mac, dst, crate::wire::ip_protocol::TCP, tcp_len);
        let n = emit_header(&mut buf[L4_OFFSET..], repr, self.config.addr, dst, 0);
        RxAction::Transmit(L4_OFFSET + n)
    }

    /// Writes the Ethernet and a 20-byte IPv4 header for a packet from us to `dst`.
    #[inline]
    fn write_l2_l3(&self, buf: &mut [u8], dst_mac: EthernetAddress, dst: Ipv4Addr, protocol: u8, payload_len: usize) {
        let l3 = L3 { src_mac: self.config.mac, dst_mac, src: self.config.addr, dst, ttl: self.config.ttl };
        l3.write(buf, protocol, payload_len);
    }

    fn write_arp(&self, buf: &mut [u8], dst_mac: EthernetAddress, arp: &ArpRepr) {
        write_arp(buf, self.config.mac, dst_mac, arp);
    }

    // ----- Progress -----

    #[inline]
    fn mark_dirty(&mut self, index: u32) {
        let slot = self.table.slot_mut(index);
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(index);
        }
    }

    /// Makes progress at `now`: runs due timers and TIME_WAIT expiries, retries ARP, lets the
    /// application start work ([`App::on_poll`]), delivers every pending event to `app`, then
    /// writes every segment due into `tx`. What does not fit in `tx` waits for the next poll.
    pub fn poll<A: App + ?Sized, S: TxSink + ?Sized>(&mut self, now: Instant, app: &mut A, tx: &mut S) {
        self.now = now;
        self.run_timers(now);
        self.poll_neighbors(now);
        app.on_poll(self, now);
        self.deliver_events(app);
        self.transmit(now, tx);
    }

    /// Runs the wheel's due entries: TIME_WAIT records end, connections run their timers.
    /// A connection's entry may be early (it is not moved when its deadline moves later, see
    /// `retire_or_arm`); then it is armed again for the real deadline.
    fn run_timers(&mut self, now: Instant) {
        while let Some((entry, lane)) = self.timers.pop_due(now) {
            if lane == Lane::TimeWait {
                self.time_wait.expired(entry);
                self.counters.time_wait_expired += 1;
                continue;
            }
            let Some(slot) = self.table.slot_in_use_mut(entry) else { continue };
            match slot.conn.poll_timeout() {
                Some(due) if due <= now => {
                    slot.conn.handle_timeout(now);
                    self.mark_dirty(entry);
                }
                Some(later) => self.timers.schedule(entry, Lane::Connection, later),
                None => {}
            }
        }
    }

    fn poll_neighbors(&mut self, now: Instant) {
        let (arp_out, failed) = (&mut self.arp_out, &mut self.arp_failed);
        self.neighbors.poll(now, |action| {
            let list = match action {
                NeighborAction::Request(_) => &mut *arp_out,
                NeighborAction::Failed(_) => &mut *failed,
            };
            let (NeighborAction::Request(addr) | NeighborAction::Failed(addr)) = action;
            if list.len() < list.capacity() {
                list.push(addr);
            }
        });
        while let Some(addr) = self.arp_failed.pop() {
            self.fail_arp_waiters(addr);
        }
    }

    fn wake_arp_waiters(&mut self, hop: Ipv4Addr, mac: EthernetAddress) {
        let mut i = 0;
        while i < self.arp_waiting.len() {
            let index = self.arp_waiting[i];
            let slot = self.table.slot_mut(index);
            if !slot.in_use {
                self.arp_waiting.swap_remove(i);
                continue;
            }
            if self.config.next_hop(slot.conn.tuple().remote.addr) == Some(hop) {
                slot.remote_mac = Some(mac);
                self.arp_waiting.swap_remove(i);
                self.mark_dirty(index);
                continue;
            }
            i += 1;
        }
    }

    fn fail_arp_waiters(&mut self, hop: Ipv4Addr) {
        let mut i = 0;
        while i < self.arp_waiting.len() {
            let index = self.arp_waiting[i];
            let slot = self.table.slot_mut(index);
            if slot.in_use
                && slot.remote_mac.is_none()
                && self.config.next_hop(slot.conn.tuple().remote.addr) == Some(hop)
            {
                slot.conn.abort();
                self.counters.arp_failures += 1;
                self.arp_waiting.swap_remove(i);
                self.mark_dirty(index);
                continue;
            }
            if !slot.in_use {
                self.arp_waiting.swap_remove(i);
                continue;
            }
            i += 1;
        }
    }

    /// Delivers the events of every dirty slot; callbacks may dirty more slots, which are
    /// delivered in the same pass.
    fn deliver_events<A: App + ?Sized>(&mut self, app: &mut A) {
        let mut i = 0;
        while i < self.dirty.len() {
            let index = self.dirty[i];
            i += 1;
            loop {
                let slot = self.table.slot_mut(index);
                if !slot.in_use {
                    break;
                }
                let Some(event) = slot.conn.poll_event() else { break };
                let id = ConnId { index, generation: slot.generation };
                let announced = slot.announced;
                match event {
                    Event::Connected => {
                        if slot.half_open {
                            slot.half_open = false;
                            self.half_open -= 1;
                        }
                        slot.announced = true;
                        if slot.active {
                            self.counters.connected += 1;
                            app.on_connected(self, id);
                        } else {
                            self.counters.accepted += 1;
                            app.on_accept(self, id);
                        }
                    }
                    Event::Readable if announced => app.on_readable(self, id),
                    Event::Writable if announced => app.on_writable(self, id),
                    Event::PeerClosed if announced => app.on_peer_closed(self, id),
                    Event::Closed(reason) => {
                        if slot.half_open {
                            slot.half_open = false;
                            self.half_open -= 1;
                        }
                        if announced {
                            slot.announced = false;
                            app.on_closed(self, id, reason);
                        }
                    }
                    // Events of a connection the application has not been given yet.
                    Event::Readable | Event::Writable | Event::PeerClosed => {}
                }
            }
        }
    }

    fn transmit<S: TxSink + ?Sized>(&mut self, now: Instant, tx: &mut S) {
        while let Some(&addr) = self.arp_out.last() {
            let request = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: self.config.mac,
                source_protocol_addr: self.config.addr,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: addr,
            };
            let our_mac = self.config.mac;
            let sent = tx.send_with(|buf| {
                if buf.len() < ARP_FRAME_LEN {
                    return None;
                }
                write_arp(buf, our_mac, EthernetAddress::BROADCAST, &request);
                Some(ARP_FRAME_LEN)
            });
            if sent != Some(true) {
                break;
            }
            self.arp_out.pop();
            self.counters.arp_requests += 1;
        }

        let mut dirty = core::mem::take(&mut self.dirty);
        self.carry.clear();
        let mut blocked = false;
        for &index in &dirty {
            let slot = self.table.slot_mut(index);
            if !slot.in_use || !slot.dirty {
                continue;
            }
            slot.dirty = false;
            // Once one connection found no TX frame, the rest wait too (in order).
            if blocked || self.transmit_slot(now, index, tx) {
                blocked = true;
                self.table.slot_mut(index).dirty = true;
                self.carry.push(index);
                continue;
            }
            if !self.retire_or_arm(index) {
                // Closed, but the application has yet to hear it: next poll.
                self.table.slot_mut(index).dirty = true;
                self.carry.push(index);
            }
        }
        dirty.clear();
        // The blocked ones start the next poll's dirty list.
        dirty.extend_from_slice(&self.carry);
        self.carry.clear();
        self.dirty = dirty;
    }

    /// Sends what the connection has due; true when it ran out of TX frames.
    fn transmit_slot<S: TxSink + ?Sized>(&mut self, now: Instant, index: u32, tx: &mut S) -> bool {
        let slot = self.table.slot_mut(index);
        let tuple = slot.conn.tuple();
        let mac = match slot.remote_mac {
            Some(mac) => mac,
            None => {
                if slot.conn.is_closed() {
                    // Never reached the wire (aborted while resolving): nothing to send.
                    while slot.conn.poll_transmit(now, &mut self.scratch).is_some() {}
                    return false;
                }
                let Some(hop) = self.config.next_hop(tuple.remote.addr) else {
                    slot.conn.abort();
                    return false;
                };
                if let Some(mac) = self.neighbors.lookup(hop, now) {
                    slot.remote_mac = Some(mac);
                    mac
                } else {
                    if self.neighbors.resolve(hop, now) && self.arp_out.len() < self.arp_out.capacity() {
                        self.arp_out.push(hop);
                    }
                    if !self.arp_waiting.contains(&index) && self.arp_waiting.len() < self.arp_waiting.capacity() {
                        self.arp_waiting.push(index);
                    }
                    return false;
                }
            }
        };
        let (our_mac, ttl) = (self.config.mac, self.config.ttl);
        loop {
            let conn = &mut slot.conn;
            let sent = tx.send_with(|buf| {
                if buf.len() <= L4_OFFSET {
                    return None;
                }
                let n = conn.poll_transmit(now, &mut buf[L4_OFFSET..])?;
                let l3 = L3 { src_mac: our_mac, dst_mac: mac, src: tuple.local.addr, dst: tuple.remote.addr, ttl };
                l3.write(buf, crate::wire::ip_protocol::TCP, n);
                Some(L4_OFFSET + n)
            });
            match sent {
                None => {
                    self.counters.tx_no_frame += 1;
                    return true;
                }
                Some(true) => self.counters.tx_frames += 1,
                Some(false) => return false,
            }
        }
    }

    /// After a slot's output is out: a connection in TIME_WAIT becomes a compact record and a
    /// CLOSED one frees its slot; any other gets its timer armed. False when a CLOSED slot
    /// must wait because the application has not been told yet.
    fn retire_or_arm(&mut self, index: u32) -> bool {
        let slot = self.table.slot_mut(index);
        let state = slot.conn.state();
        match state {
            State::Closed if slot.announced => false,
            State::TimeWait | State::Closed => {
                let tuple = slot.conn.tuple();
                self.counters.connection_ended(slot.conn.stats());
                if state == State::TimeWait {
                    if let Some(mut record) = slot.conn.time_wait_record() {
                        // Our last segment (the ACK of the peer's FIN) went out in this poll.
                        record.last_segment = record.last_segment.max(self.now);
                        self.counters.time_wait_entered += 1;
                        if self.time_wait.insert(&record, &mut self.timers) == Inserted::EvictedOldest {
                            self.counters.time_wait_evicted += 1;
                        }
                    }
                }
                if slot.half_open {
                    slot.half_open = false;
                    self.half_open -= 1;
                }
                self.free_slot(index, &tuple);
                true
            }
            _ => {
                // Armed only when the deadline moves earlier than the entry's tick: a later
                // one (the retransmission timer restarting on each ACK) leaves the entry, which
                // fires early and re-arms (`run_timers`). So the common re-arm is a compare.
                if let Some(deadline) = slot.conn.poll_timeout() {
                    let tick = tick_ceil(deadline);
                    if self.timers.armed_tick(index).is_none_or(|armed| tick < armed) {
                        self.timers.schedule_tick(index, Lane::Connection, tick);
                    }
                }
                true
            }
        }
    }

    /// Frees a connection's slot and disarms its timer.
    fn free_slot(&mut self, index: u32, tuple: &FourTuple) {
        self.timers.cancel(index);
        self.table.remove(index, tuple);
    }

    /// The close reason a connection would report; for tests and diagnostics.
    pub fn close_reason(&self, id: ConnId) -> Option<CloseReason> {
        self.table.get(id).and_then(|s| s.conn.close_reason())
    }
}

/// What the first step of receiving made of a frame.
enum Rx {
    /// Handled (or dropped) already.
    Done(RxAction),
    /// A TCP segment, parsed, to look up and process.
    Tcp(TcpMeta),
}

/// A parsed TCP segment within its frame: what `on_segment` needs besides the frame.
#[derive(Debug, Clone, Copy)]
struct TcpMeta {
    /// Where the segment's payload starts and ends in the frame.
    payload_start: usize,
    end: usize,
    src_mac: EthernetAddress,
    repr: TcpRepr,
    tuple: FourTuple,
}

/// The link and network headers of a packet we send.
struct L3 {
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
}

impl L3 {
    /// Writes the Ethernet header and a 20-byte IPv4 header before `payload_len` bytes.
    #[inline]
    fn write(&self, buf: &mut [u8], protocol: u8, payload_len: usize) {
        let eth = EthernetRepr { src_addr: self.src_mac, dst_addr: self.dst_mac, ethertype: EtherType::IPV4 };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..ETH_LEN]));
        let ip = Ipv4Repr { src_addr: self.src, dst_addr: self.dst, protocol, payload_len, ttl: self.ttl };
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..L4_OFFSET]));
    }
}

/// Writes an ARP packet with its Ethernet header.
fn write_arp(buf: &mut [u8], src_mac: EthernetAddress, dst_mac: EthernetAddress, arp: &ArpRepr) {
    let eth = EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EtherType::ARP };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..ETH_LEN]));
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_LEN..ARP_FRAME_LEN]));
}
