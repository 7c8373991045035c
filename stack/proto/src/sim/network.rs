//! The frame-level simulator: two real [`Interface`]s, each with its [`App`], joined by seeded
//! Ethernet links that lose, duplicate, reorder, delay and rate-limit frames. Everything the
//! runtime's worker does with an interface happens here too (frames in, one by one or as a
//! batch, in-place replies, `poll` with the application until no output is pending, frames
//! out), so the connection table, the TIME_WAIT records, the timer wheel, SYN cookies, ARP and
//! port reuse are all under test, not only `Connection`.
//!
//! Virtual time jumps to the next frame arrival, timer or application wake-up. A run can keep
//! every frame it carried, with its direction ([`Network::capture`], [`Network::captured`]),
//! and hand them out as a pcap file ([`Network::pcap`]) that tcpdump, tshark or Wireshark
//! read, for a failing seed. Over [`LinkConfig::perfect`] it is the back-to-back wire of the
//! interface unit tests, with a per-poll TX frame limit ([`Network::with_tx_limit`]) for the
//! tests of scarce TX frames.

use core::time::Duration;

use crate::iface::{App, Interface, InterfaceConfig, RxAction, VecFrames, VecSink};
use crate::tcp::IsnGenerator;
use crate::time::Instant;

use super::link::{Frame, Link, LinkConfig};
use super::stepping;

/// One host: an interface and the application it runs.
pub struct Node<A> {
    /// The host's interface.
    pub iface: Interface,
    /// Its application.
    pub app: A,
}

impl<A> Node<A> {
    /// A host made of an interface (configured already: listeners, neighbours) and its app.
    pub fn new(iface: Interface, app: A) -> Node<A> {
        Node { iface, app }
    }
}

impl<A> core::fmt::Debug for Node<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node").field("addr", &self.iface.config().addr).finish_non_exhaustive()
    }
}

/// How a node takes the frames that reach it at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// One [`Interface::receive`] per frame.
    #[default]
    Frames,
    /// All of them in one [`Interface::receive_batch`], as a worker takes its RX ring.
    Batch,
}

/// A frame offered to a link, kept by [`Network::capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When it was sent.
    pub at: Instant,
    /// True for `a` to `b`.
    pub from_a: bool,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// Two nodes and a link each way; each node's application has its own type.
#[derive(Debug)]
pub struct Network<A, B = A> {
    /// Virtual time.
    pub now: Instant,
    /// The first node.
    pub a: Node<A>,
    /// The second node.
    pub b: Node<B>,
    /// Frames from `a` to `b`.
    pub a_to_b: Link<Frame>,
    /// Frames from `b` to `a`.
    pub b_to_a: Link<Frame>,
    sink: VecSink,
    frame: Vec<u8>,
    delivery: Delivery,
    largest_arrival: usize,
    captured: Option<Vec<Captured>>,
}

impl<A: App, B: App> Network<A, B> {
    /// Two nodes built from their configurations (each with its own ISN key) and applications,
    /// joined by `link` in both directions. The nodes learn each other's MAC only through ARP,
    /// unless the caller teaches them with [`Interface::learn_neighbor`].
    pub fn new(seed: u64, a: (InterfaceConfig, A), b: (InterfaceConfig, B), link: LinkConfig) -> Network<A, B> {
        let key = |s: u64| IsnGenerator::with_key([s.wrapping_mul(0x9e37_79b9_7f4a_7c15), s ^ 0x5151]);
        let a = Node::new(Interface::new(a.0, key(seed)), a.1);
        let b = Node::new(Interface::new(b.0, key(!seed)), b.1);
        Network::join(seed, a, b, link)
    }

    /// Two nodes made by the caller (their keys, listeners and neighbours set up already),
    /// joined by `link` in both directions; virtual time starts at 1 s.
    pub fn join(seed: u64, a: Node<A>, b: Node<B>, link: LinkConfig) -> Network<A, B> {
        // Frames of either side fit; 2048 bytes at least, as a UMEM frame.
        let frame_len = a.iface.config().max_frame_len().max(b.iface.config().max_frame_len()).max(2048);
        Network {
            now: Instant::from_millis(1_000),
            a,
            b,
            a_to_b: Link::new(link, seed.wrapping_mul(3).wrapping_add(1)),
            b_to_a: Link::new(link, seed.wrapping_mul(7).wrapping_add(2)),
            sink: VecSink::with_frame_len(None, frame_len),
            frame: vec![0; frame_len],
            delivery: Delivery::Frames,
            largest_arrival: 0,
            captured: None,
        }
    }

    /// Each poll may send at most `frames` frames (a TX ring that runs short); what is left
    /// is sent by the polls that follow at once, as a worker does while output is pending.
    ///
    /// # Panics
    /// If `frames` is 0: nothing could ever be sent.
    pub fn with_tx_limit(mut self, frames: usize) -> Network<A, B> {
        assert!(frames > 0, "a TX limit of 0 frames sends nothing");
        self.sink.limit = Some(frames);
        self
    }

    /// Delivers the frames that arrive at one instant as `delivery` says.
    pub fn with_delivery(mut self, delivery: Delivery) -> Network<A, B> {
        self.delivery = delivery;
        self
    }

    /// The nodes, for another network or a look without one.
    pub fn into_nodes(self) -> (Node<A>, Node<B>) {
        (self.a, self.b)
    }

    /// Keeps every frame offered to either link from now on, for [`Network::captured`] and
    /// [`Network::pcap`].
    pub fn capture(&mut self) {
        self.captured.get_or_insert_with(Vec::new);
    }

    /// The frames kept since [`Network::capture`], in the order they were sent (empty
    /// without it).
    pub fn captured(&self) -> &[Captured] {
        self.captured.as_deref().unwrap_or_default()
    }

    /// The most frames that reached one node at one instant (one batch, with
    /// [`Delivery::Batch`]).
    pub fn largest_arrival(&self) -> usize {
        self.largest_arrival
    }

    /// Polls both nodes at the current time and puts what they send on the links.
    pub fn flush(&mut self) {
        self.a.iface.poll(self.now, &mut self.a.app, &mut self.sink);
        for frame in self.sink.frames.drain(..) {
            send(&mut self.captured, &mut self.a_to_b, self.now, true, frame);
        }
        self.b.iface.poll(self.now, &mut self.b.app, &mut self.sink);
        for frame in self.sink.frames.drain(..) {
            send(&mut self.captured, &mut self.b_to_a, self.now, false, frame);
        }
    }

    /// The next instant anything happens: a frame arrives, a timer fires, an app wakes up, or
    /// (now) a node has output its last poll could not send.
    pub fn next_event(&self) -> Option<Instant> {
        let pending = self.a.iface.has_pending_output() || self.b.iface.has_pending_output();
        [
            pending.then_some(self.now),
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

    /// Hands a node every frame that has reached it by now, one by one or as one batch; the
    /// replies written in place go back on the other link.
    fn arrive(&mut self, to_a: bool) {
        let now = self.now;
        let link = if to_a { &mut self.b_to_a } else { &mut self.a_to_b };
        let frames: Vec<Vec<u8>> = core::iter::from_fn(|| link.receive(now).map(|Frame(f)| f)).collect();
        let iface = if to_a { &mut self.a.iface } else { &mut self.b.iface };
        let mut replies = Vec::new();
        hand_over(iface, now, self.delivery, &frames, &mut self.frame, &mut replies);
        let back = if to_a { &mut self.a_to_b } else { &mut self.b_to_a };
        for reply in replies {
            send(&mut self.captured, back, now, to_a, reply);
        }
        self.largest_arrival = self.largest_arrival.max(frames.len());
    }

    /// Sends what is due, jumps time to the next event and processes everything due then
    /// (frames, then timers and the applications through `poll`). Returns false when nothing
    /// is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(now) = stepping::next_instant(self) else {
            return false;
        };
        self.now = now;
        self.arrive(false);
        self.arrive(true);
        self.flush();
        true
    }

    /// Steps until `done` holds (checked after every step), nothing is left to happen, or
    /// virtual time passes `deadline`. Returns whether `done` held.
    pub fn drive(&mut self, deadline: Instant, done: impl FnMut(&mut Network<A, B>) -> bool) -> bool {
        stepping::drive(self, deadline, done)
    }

    /// Steps through every event before `limit` from now has passed, and stops at the last
    /// one (nothing later is processed, so a run of 500 ms leaves a 2 s TIME_WAIT record in
    /// place). Returns the time it stopped at.
    ///
    /// # Panics
    /// After a million steps: virtual time stands still (a livelock).
    pub fn run_for(&mut self, limit: Duration) -> Instant {
        stepping::run_for(self, limit)
    }

    /// The captured frames as a pcap file (Ethernet link type, microsecond timestamps of
    /// virtual time). Empty when [`Network::capture`] was not called.
    pub fn pcap(&self) -> Vec<u8> {
        pcap_of(self.captured().iter().map(|c| (c.at, c.frame.as_slice())))
    }
}

stepping::impl_steps!([A: App, B: App] Network<A, B>);

/// Hands `frames` to `iface` at `now` as a worker does, one by one through a buffer sized like
/// a UMEM frame (`buf`) or as one batch; the replies written in place go to `replies`.
pub(super) fn hand_over(
    iface: &mut Interface,
    now: Instant,
    delivery: Delivery,
    frames: &[Vec<u8>],
    buf: &mut [u8],
    replies: &mut Vec<Vec<u8>>,
) {
    match delivery {
        Delivery::Frames => {
            for frame in frames {
                let len = frame.len().min(buf.len());
                buf[..len].copy_from_slice(&frame[..len]);
                if let RxAction::Transmit(n) = iface.receive(now, buf, len) {
                    replies.push(buf[..n.min(buf.len())].to_vec());
                }
            }
        }
        Delivery::Batch if !frames.is_empty() => {
            let mut batch = VecFrames::new(frames.iter().map(Vec::as_slice), buf.len());
            iface.receive_batch(now, &mut batch);
            replies.extend(batch.replies().map(<[u8]>::to_vec));
        }
        Delivery::Batch => {}
    }
}

/// Offers `frame` to `link`, keeping a copy when capturing.
fn send(captured: &mut Option<Vec<Captured>>, link: &mut Link<Frame>, now: Instant, from_a: bool, frame: Vec<u8>) {
    if let Some(c) = captured.as_mut() {
        c.push(Captured { at: now, from_a, frame: frame.clone() });
    }
    link.send(now, Frame(frame));
}

/// Frames as a pcap file: Ethernet link type, microsecond timestamps of virtual time.
pub(super) fn pcap(frames: &[(Instant, Vec<u8>)]) -> Vec<u8> {
    pcap_of(frames.iter().map(|(at, f)| (*at, f.as_slice())))
}

pub(super) fn pcap_of<'a>(frames: impl Iterator<Item = (Instant, &'a [u8])> + Clone) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + frames.clone().map(|(_, f)| 16 + f.len()).sum::<usize>());
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
