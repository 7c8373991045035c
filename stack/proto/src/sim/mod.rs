//! A deterministic simulated network: hosts joined by seeded, lossy links (two TCP hosts, two
//! interfaces back to back, or any number of interfaces on one switched Ethernet segment).
//!
//! Virtual time jumps straight to the next event (a packet arrival or a timer), so a transfer
//! that takes minutes of TCP time runs in milliseconds, and every run replays from its seed.

pub mod fuzz;
mod host;
mod lan;
mod link;
mod network;
pub mod pair;
mod rng;
mod stepping;
mod workers;

use std::net::Ipv4Addr;

pub use host::{Host, HostStats};
pub use lan::{Lan, LanFrame};
pub use link::{Carried, Frame, Link, LinkConfig, LinkStats, Packet};
pub use network::{Captured, Delivery, Network, Node};
pub use pair::Pair;
pub use rng::Rng;
pub use workers::{HandoffStats, Workers};

use crate::tcp::TcpConfig;
use crate::time::Instant;

/// Two hosts, `a` and `b`, and a link in each direction.
#[derive(Debug)]
pub struct Sim {
    /// Virtual time.
    pub now: Instant,
    /// The first host (198.18.0.1).
    pub a: Host,
    /// The second host (198.18.0.2).
    pub b: Host,
    /// The direction a → b.
    pub a_to_b: Link,
    /// The direction b → a.
    pub b_to_a: Link,
    out: Vec<Packet>,
}

impl Sim {
    /// Address of host `a`.
    pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    /// Address of host `b`.
    pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// A simulation whose hosts use `config` and whose link behaves as `link` both ways.
    pub fn new(seed: u64, config: TcpConfig, link: LinkConfig) -> Sim {
        Sim {
            now: Instant::from_millis(1_000),
            a: Host::new(Sim::ADDR_A, config, seed),
            b: Host::new(Sim::ADDR_B, config, seed ^ 0x5555),
            a_to_b: Link::new(link, seed.wrapping_mul(3).wrapping_add(1)),
            b_to_a: Link::new(link, seed.wrapping_mul(7).wrapping_add(2)),
            out: Vec::new(),
        }
    }

    /// Lets both hosts send what is due now.
    pub fn flush(&mut self) {
        self.a.transmit(self.now, &mut self.out);
        for p in self.out.drain(..) {
            self.a_to_b.send(self.now, p);
        }
        self.b.transmit(self.now, &mut self.out);
        for p in self.out.drain(..) {
            self.b_to_a.send(self.now, p);
        }
    }

    /// The next instant anything happens: a packet arrives or a timer fires.
    pub fn next_event(&self) -> Option<Instant> {
        [self.a_to_b.next_arrival(), self.b_to_a.next_arrival(), self.a.next_timeout(), self.b.next_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends what is due, jumps time to the next event and processes everything due then.
    /// Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(p) = self.a_to_b.receive(self.now) {
            self.b.receive(self.now, &p);
        }
        while let Some(p) = self.b_to_a.receive(self.now) {
            self.a.receive(self.now, &p);
        }
        self.a.handle_timeouts(self.now);
        self.b.handle_timeouts(self.now);
        self.flush();
        true
    }

    /// Steps until `done` holds (checked after every step) or virtual time passes `deadline`.
    /// Returns whether `done` held.
    pub fn drive(&mut self, deadline: Instant, done: impl FnMut(&mut Sim) -> bool) -> bool {
        stepping::drive(self, deadline, done)
    }

    /// Steps until nothing is left to happen or `deadline` passes.
    pub fn drive_idle(&mut self, deadline: Instant) {
        while self.now <= deadline && self.step() {}
    }
}

stepping::impl_steps!([] Sim);
