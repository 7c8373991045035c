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
        }
    }
}

impl LinkConfig {
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
pub struct Link {
    config: LinkConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    packets: std::collections::HashMap<u64, Packet>,
    next_id: u64,
    /// What happened so far.
    pub stats: LinkStats,
}

impl Link {
    /// A link direction with its own seed.
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            packets: std::collections::HashMap::new(),
            next_id: 0,
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

    fn enqueue(&mut self, at: Instant, packet: Packet) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((at, id)));
        self.packets.insert(id, packet);
    }

    /// Offers a packet at `now`.
    pub fn send(&mut self, now: Instant, packet: Packet) {
        self.stats.sent += 1;
        if packet.segment.len() + 20 > self.config.mtu {
            self.stats.oversize += 1;
            return;
        }
        if self.rng.chance(self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut at = now + self.delay();
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
    pub fn receive(&mut self, now: Instant) -> Option<Packet> {
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
