//! The frame-level simulator: two real [`Interface`]s, each with its [`App`], joined by seeded
//! Ethernet links that lose, duplicate, reorder, delay and rate-limit frames. Everything the
//! runtime's worker does with an interface happens here too (frames in, in-place replies,
//! `poll` with the application, frames out), so the connection table, the TIME_WAIT records,
//! the timer wheel, SYN cookies, ARP and port reuse are all under test, not only `Connection`.
//!
//! Virtual time jumps to the next frame arrival, timer or application wake-up. A run can keep
//! every frame it carried ([`Network::capture`]) and hand them out as a pcap file
//! ([`Network::pcap`]) that tcpdump, tshark or Wireshark read, for a failing seed.

use crate::iface::{App, Interface, InterfaceConfig, RxAction, VecSink};
use crate::tcp::IsnGenerator;
use crate::time::Instant;

use super::link::{Frame, Link, LinkConfig};

/// One host: an interface and the application it runs.
pub struct Node<A> {
    /// The host's interface.
    pub iface: Interface,
    /// Its application.
    pub app: A,
}

impl<A> core::fmt::Debug for Node<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node").field("addr", &self.iface.config().addr).finish_non_exhaustive()
    }
}

/// Two nodes and a link each way.
#[derive(Debug)]
pub struct Network<A> {
    /// Virtual time.
    pub now: Instant,
    /// The first node.
    pub a: Node<A>,
    /// The second node.
    pub b: Node<A>,
    /// Frames from `a` to `b`.
    pub a_to_b: Link<Frame>,
    /// Frames from `b` to `a`.
    pub b_to_a: Link<Frame>,
    sink: VecSink,
    frame: Vec<u8>,
    captured: Option<Vec<(Instant, Vec<u8>)>>,
}

impl<A: App> Network<A> {
    /// Two nodes built from their configurations (each with its own ISN key) and applications,
    /// joined by `link` in both directions. The nodes learn each other's MAC only through ARP,
    /// unless the caller teaches them with [`Interface::learn_neighbor`].
    pub fn new(seed: u64, a: (InterfaceConfig, A), b: (InterfaceConfig, A), link: LinkConfig) -> Network<A> {
        let key = |s: u64| IsnGenerator::with_key([s.wrapping_mul(0x9e37_79b9_7f4a_7c15), s ^ 0x5151]);
        // Frames of either side fit; 2048 bytes at least, as a UMEM frame.
        let frame_len = a.0.max_frame_len().max(b.0.max_frame_len()).max(2048);
        Network {
            now: Instant::from_millis(1_000),
            a: Node { iface: Interface::new(a.0, key(seed)), app: a.1 },
            b: Node { iface: Interface::new(b.0, key(!seed)), app: b.1 },
            a_to_b: Link::new(link, seed.wrapping_mul(3).wrapping_add(1)),
            b_to_a: Link::new(link, seed.wrapping_mul(7).wrapping_add(2)),
            sink: VecSink::with_frame_len(None, frame_len),
            frame: vec![0; frame_len],
            captured: None,
        }
    }

    /// Keeps every frame offered to either link from now on, for [`Network::pcap`].
    pub fn capture(&mut self) {
        self.captured.get_or_insert_with(Vec::new);
    }

    /// Polls both nodes at the current time and puts what they send on the links.
    pub fn flush(&mut self) {
        for from_a in [true, false] {
            let node = if from_a { &mut self.a } else { &mut self.b };
            node.iface.poll(self.now, &mut node.app, &mut self.sink);
            for frame in self.sink.frames.drain(..) {
                if let Some(c) = self.captured.as_mut() {
                    c.push((self.now, frame.clone()));
                }
                let link = if from_a { &mut self.a_to_b } else { &mut self.b_to_a };
                link.send(self.now, Frame(frame));
            }
        }
    }

    /// The next instant anything happens: a frame arrives, a timer fires, an app wakes up.
    pub fn next_event(&self) -> Option<Instant> {
        [
            self.a_to_b.next_arrival(),
            self.b_to_a.next_arrival(),
            self.a.iface.next_deadline(),
            self.b.iface.next_deadline(),
            self.a.app.next_wakeup(),
            self.b.app.next_wakeup(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Hands one frame to a node, as a worker does: a reply written in place goes back on
    /// the other link.
    fn deliver(&mut self, to_a: bool, frame: &[u8]) {
        let len = frame.len().min(self.frame.len());
        self.frame[..len].copy_from_slice(&frame[..len]);
        let node = if to_a { &mut self.a } else { &mut self.b };
        if let RxAction::Transmit(n) = node.iface.receive(self.now, &mut self.frame, len) {
            let reply = self.frame[..n.min(self.frame.len())].to_vec();
            if let Some(c) = self.captured.as_mut() {
                c.push((self.now, reply.clone()));
            }
            let back = if to_a { &mut self.a_to_b } else { &mut self.b_to_a };
            back.send(self.now, Frame(reply));
        }
    }

    /// Sends what is due, jumps time to the next event and processes everything due then
    /// (frames, then timers and the applications through `poll`). Returns false when nothing
    /// is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(Frame(f)) = self.a_to_b.receive(self.now) {
            self.deliver(false, &f);
        }
        while let Some(Frame(f)) = self.b_to_a.receive(self.now) {
            self.deliver(true, &f);
        }
        self.flush();
        true
    }

    /// Steps until `done` holds (checked after every step), nothing is left to happen, or
    /// virtual time passes `deadline`. Returns whether `done` held.
    pub fn drive(&mut self, deadline: Instant, mut done: impl FnMut(&mut Network<A>) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.now > deadline || !self.step() {
                return done(self);
            }
        }
    }

    /// The captured frames as a pcap file (Ethernet link type, microsecond timestamps of
    /// virtual time). Empty when [`Network::capture`] was not called.
    pub fn pcap(&self) -> Vec<u8> {
        self.captured.as_deref().map(pcap).unwrap_or_default()
    }
}

/// Frames as a pcap file: Ethernet link type, microsecond timestamps of virtual time.
pub(super) fn pcap(frames: &[(Instant, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + frames.iter().map(|(_, f)| 16 + f.len()).sum::<usize>());
    // Global header: magic, version 2.4, zone 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (at, frame) in frames {
        let micros = at.as_nanos() / 1_000;
        let len = frame.len() as u32;
        for word in [(micros / 1_000_000) as u32, (micros % 1_000_000) as u32, len, len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(frame);
    }
    out
}
