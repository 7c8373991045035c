//! A seeded, lossy, reordering, duplicating link with delay and an MTU.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::rng::Rng;
use crate::time::Instant;

/// How a link mistreats packets. Probabilities are per packet, per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Extra uniform random delay, up to this.
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that a packet is held back by up to 3 delays, so that later ones overtake it.
    pub reorder: f64,
    /// The largest IP packet carried (TCP segment plus a 20-byte IPv4 header); larger ones
    /// are dropped and counted.
    pub mtu: usize,
    /// The link's rate in bits per second: a packet waits for the ones before it to be
    /// serialised (a queue that builds up, as on a real wire). `None`: no limit.
    pub bandwidth_bps: Option<u64>,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            delay: Duration::from_micros(50),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            mtu: 1500,
            bandwidth_bps: None,
        }
    }
}

impl LinkConfig {
    /// A wire that loses, delays and reorders nothing: a frame arrives the instant it is
    /// sent (the back-to-back wire of the interface unit tests).
    pub fn perfect() -> LinkConfig {
        LinkConfig { delay: Duration::ZERO, ..LinkConfig::default() }
    }

    /// A link with loss, duplication and reordering at the given rates, 1 ms delay.
    pub fn lossy(loss: f64, duplicate: f64, reorder: f64) -> LinkConfig {
        LinkConfig {
            delay: Duration::from_millis(1),
            jitter: Duration::from_micros(200),
            loss,
            duplicate,
            reorder,
            ..LinkConfig::default()
        }
    }
}

/// A packet in flight: an IPv4 source and destination around a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// The TCP segment, with its checksum.
    pub segment: Vec<u8>,
}

/// What a link carries: an IPv4 packet around a TCP segment ([`Packet`], the connection-level
/// simulator) or a whole Ethernet frame ([`Frame`], the interface-level one).
pub trait Carried: Clone {
    /// The IPv4 packet's length, which the MTU limits.
    fn ip_len(&self) -> usize;
    /// Bytes on the wire, which the bandwidth limits.
    fn wire_len(&self) -> usize {
        self.ip_len() + 14
    }
}

impl Carried for Packet {
    fn ip_len(&self) -> usize {
        self.segment.len() + 20
    }
}

/// An Ethernet frame on a simulated wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl Carried for Frame {
    fn ip_len(&self) -> usize {
        self.0.len().saturating_sub(14)
    }
}

/// Counters of what the link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered.
    pub sent: u64,
    /// Packets lost on purpose.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Packets held back for reordering.
    pub reordered: u64,
    /// Packets dropped for exceeding the MTU.
    pub oversize: u64,
    /// Packets delivered.
    pub delivered: u64,
}

/// One direction of a link.
#[derive(Debug)]
pub struct Link<P = Packet> {
    config: LinkConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    packets: std::collections::HashMap<u64, P>,
    next_id: u64,
    /// When the wire is free again (with a bandwidth limit).
    busy_until: Instant,
    /// What happened so far.
    pub stats: LinkStats,
}

impl<P: Carried> Link<P> {
    /// A link direction with its own seed.
    pub fn new(config: LinkConfig, seed: u64) -> Link<P> {
        Link {
            config,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            packets: std::collections::HashMap::new(),
            next_id: 0,
            busy_until: Instant::ZERO,
            stats: LinkStats::default(),
        }
    }

    /// The link's configuration.
    pub fn config(&self) -> LinkConfig {
        self.config
    }

    /// Changes loss and the rest for packets sent from now on.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    fn delay(&mut self) -> Duration {
        let jitter = self.config.jitter.as_nanos() as u64;
        self.config.delay + Duration::from_nanos(if jitter > 0 { self.rng.below(jitter) } else { 0 })
    }

    fn enqueue(&mut self, at: Instant, packet: P) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((at, id)));
        self.packets.insert(id, packet);
    }

    /// Offers a packet at `now`.
    pub fn send(&mut self, now: Instant, packet: P) {
        self.stats.sent += 1;
        if packet.ip_len() > self.config.mtu {
            self.stats.oversize += 1;
            return;
        }
        // Serialisation: the packet leaves once the wire is free, and occupies it for its
        // length at the link's rate (a lost packet used the wire too).
        let mut departs = now;
        if let Some(bps) = self.config.bandwidth_bps.filter(|&b| b > 0) {
            departs = now.max(self.busy_until);
            let wire_ns = (packet.wire_len() as u64 * 8).saturating_mul(1_000_000_000) / bps;
            self.busy_until = departs + Duration::from_nanos(wire_ns);
            departs = self.busy_until;
        }
        if self.rng.chance(self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut at = departs + self.delay();
        if self.rng.chance(self.config.reorder) {
            self.stats.reordered += 1;
            let extra = self.config.delay.as_nanos() as u64 * 3 + 1;
            at += Duration::from_nanos(self.rng.below(extra));
        }
        if self.rng.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            let later = at + self.delay();
            self.enqueue(later, packet.clone());
        }
        self.enqueue(at, packet);
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the next packet that has arrived by `now`.
    pub fn receive(&mut self, now: Instant) -> Option<P> {
        match self.queue.peek() {
            Some(Reverse((at, _))) if *at <= now => {}
            _ => return None,
        }
        let Reverse((_, id)) = self.queue.pop()?;
        self.stats.delivered += 1;
        self.packets.remove(&id)
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
