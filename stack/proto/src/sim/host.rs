//! A simulated host: a connection table and listeners over the sans-IO core, fed raw segments.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use super::link::Packet;
use crate::tcp::{
    reset_for_unmatched, Connection, DropReason, Endpoint, FourTuple, IsnGenerator, Outcome, Segment, State, TcpConfig,
};
use crate::time::Instant;
use crate::wire::{emit_header, ChecksumMode, TcpFlags, TcpPacket, TcpRepr};

/// Counters of what a host saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Segments received.
    pub segments_in: u64,
    /// Segments sent.
    pub segments_out: u64,
    /// Segments whose bytes did not parse (bad checksum included).
    pub malformed: u64,
    /// RSTs sent for segments that matched no connection.
    pub resets_unmatched: u64,
    /// Drops reported by connections, by reason.
    pub drops: HashMap<DropReason, u64>,
    /// TIME_WAIT 4-tuples reopened by a new SYN (RFC 6191).
    pub reopened: u64,
    /// The largest TCP segment sent.
    pub max_segment: usize,
}

/// A host with one IPv4 address.
#[derive(Debug)]
pub struct Host {
    /// Our address.
    pub addr: Ipv4Addr,
    /// The configuration given to new connections.
    pub config: TcpConfig,
    isn: IsnGenerator,
    conns: HashMap<FourTuple, Connection>,
    listeners: Vec<u16>,
    accept_queue: VecDeque<FourTuple>,
    unmatched_resets: Vec<(Ipv4Addr, TcpRepr)>,
    /// What happened so far.
    pub stats: HostStats,
    scratch: Vec<u8>,
}

impl Host {
    /// A host at `addr` whose connections use `config`, with ISNs keyed by `seed`.
    pub fn new(addr: Ipv4Addr, config: TcpConfig, seed: u64) -> Host {
        Host {
            addr,
            config,
            isn: IsnGenerator::with_key([seed, seed.rotate_left(17) ^ 0xABCD]),
            conns: HashMap::new(),
            listeners: Vec::new(),
            accept_queue: VecDeque::new(),
            unmatched_resets: Vec::new(),
            stats: HostStats::default(),
            scratch: vec![0u8; 65_536 + 60],
        }
    }

    /// Accepts SYNs on `port`.
    pub fn listen(&mut self, port: u16) {
        if !self.listeners.contains(&port) {
            self.listeners.push(port);
        }
    }

    /// Opens a connection from `local_port` to `remote`; returns its 4-tuple.
    pub fn connect(&mut self, now: Instant, local_port: u16, remote: Endpoint) -> FourTuple {
        let local = Endpoint::new(self.addr, local_port);
        let tuple = FourTuple { local, remote };
        let config = self.config;
        let conn = self.conns.entry(tuple).or_insert_with(|| Connection::with_rings(config));
        if !conn.is_closed() {
            panic!("sim: connect on a 4-tuple in use ({})", conn.state());
        }
        conn.connect(now, local, remote, self.isn).expect("sim: connect");
        tuple
    }

    /// The next connection a listener accepted (it may still be in SYN-RECEIVED).
    pub fn accept(&mut self) -> Option<FourTuple> {
        self.accept_queue.pop_front()
    }

    /// The connection of a 4-tuple.
    pub fn conn(&mut self, tuple: &FourTuple) -> Option<&mut Connection> {
        self.conns.get_mut(tuple)
    }

    /// The state of a 4-tuple (`Closed` if unknown).
    pub fn state(&self, tuple: &FourTuple) -> State {
        self.conns.get(tuple).map_or(State::Closed, Connection::state)
    }

    /// All connections.
    pub fn connections(&mut self) -> impl Iterator<Item = (&FourTuple, &mut Connection)> {
        self.conns.iter_mut()
    }

    /// How many connections are not CLOSED.
    pub fn open_count(&self) -> usize {
        self.conns.values().filter(|c| !c.is_closed()).count()
    }

    /// How many connections are in TIME_WAIT.
    pub fn time_wait_count(&self) -> usize {
        self.conns.values().filter(|c| c.state() == State::TimeWait).count()
    }

    fn drop_count(&mut self, outcome: Outcome) {
        if let Outcome::Dropped(reason) = outcome {
            *self.stats.drops.entry(reason).or_default() += 1;
        }
    }

    /// Takes in one packet.
    pub fn receive(&mut self, now: Instant, packet: &Packet) {
        self.stats.segments_in += 1;
        let Ok(view) = TcpPacket::new_checked(&packet.segment[..]) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(repr) = TcpRepr::parse(&view, packet.src, packet.dst, ChecksumMode::Verify) else {
            self.stats.malformed += 1;
            return;
        };
        let payload = &packet.segment[repr.header_len()..];
        let seg = Segment { src_addr: packet.src, dst_addr: packet.dst, repr, payload };
        let tuple = FourTuple {
            local: Endpoint::new(packet.dst, repr.dst_port),
            remote: Endpoint::new(packet.src, repr.src_port),
        };
        let listening = self.listeners.contains(&repr.dst_port);
        let is_syn = repr.flags.contains(TcpFlags::SYN) && !repr.flags.contains(TcpFlags::ACK);
        let mut forced_iss = None;
        if let Some(conn) = self.conns.get_mut(&tuple) {
            if !(conn.is_closed() && listening && is_syn) {
                match conn.handle_segment(now, &seg) {
                    Outcome::NoConnection => self.reset_unmatched(&seg),
                    Outcome::Reopen { iss } => {
                        self.stats.reopened += 1;
                        forced_iss = Some(iss);
                    }
                    other => self.drop_count(other),
                }
                if forced_iss.is_none() {
                    return;
                }
            }
        }
        if !listening {
            self.reset_unmatched(&seg);
            return;
        }
        let config = self.config;
        let conn = self.conns.entry(tuple).or_insert_with(|| Connection::with_rings(config));
        if conn.listen(Endpoint::new(self.addr, repr.dst_port), self.isn).is_err() {
            return;
        }
        if let Some(iss) = forced_iss {
            conn.force_iss(iss);
        }
        match conn.handle_segment(now, &seg) {
            Outcome::Accepted => self.accept_queue.push_back(tuple),
            Outcome::NoConnection => self.reset_unmatched(&seg),
            other => self.drop_count(other),
        }
    }

    fn reset_unmatched(&mut self, seg: &Segment<'_>) {
        if let Some(rst) = reset_for_unmatched(seg) {
            self.stats.resets_unmatched += 1;
            self.unmatched_resets.push((seg.src_addr, rst));
        }
    }

    /// Collects every segment due at `now` into `out`.
    pub fn transmit(&mut self, now: Instant, out: &mut Vec<Packet>) {
        for (dst, rst) in self.unmatched_resets.drain(..) {
            let n = emit_header(&mut self.scratch, &rst, self.addr, dst, 0);
            out.push(Packet { src: self.addr, dst, segment: self.scratch[..n].to_vec() });
            self.stats.segments_out += 1;
        }
        for (tuple, conn) in self.conns.iter_mut() {
            while let Some(n) = conn.poll_transmit(now, &mut self.scratch) {
                self.stats.segments_out += 1;
                self.stats.max_segment = self.stats.max_segment.max(n);
                out.push(Packet { src: tuple.local.addr, dst: tuple.remote.addr, segment: self.scratch[..n].to_vec() });
            }
        }
    }

    /// The earliest timer deadline of all connections.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(Connection::poll_timeout).min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeouts(&mut self, now: Instant) {
        for conn in self.conns.values_mut() {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
        }
    }
}
