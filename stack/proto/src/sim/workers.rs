//! Several workers of one host, as the runtime runs them, in the frame-level simulator: each
//! worker an [`Interface`] with its [`App`], all with the host's address, MAC, listeners and
//! ISN key, each opening connections from its own slice of the client port range. Frames from
//! the peer land on a worker's queue by a seeded hash of their flow (as RSS or a veth peer's
//! transmit queue choice would), and the worker routes each one with the runtime's own code,
//! [`dispatch`] (over [`PortOwnership::route`]): a segment for a connection another worker
//! opened is handed to it through a bounded in-memory queue, ARP replies are copied to every
//! worker, and a worker takes what was handed to it with [`receive_handed_off`].
//!
//! What it tests that [`Network`](super::Network) cannot: the hand-off path under loss,
//! duplication and reordering, ARP replies that land on a worker that did not ask, and
//! passive connections spread over workers.

use std::collections::VecDeque;

use crate::iface::dispatch::{dispatch, receive_handed_off, Dispatched, HandoffQueue, Offer};
use crate::iface::steering::{port_slice, PortOwnership};
use crate::iface::{App, Interface, InterfaceConfig, RxAction, VecSink};
use crate::tcp::IsnGenerator;
use crate::time::Instant;
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet};

use super::link::{Frame, Link, LinkConfig};
use super::network::Node;
use super::rng::Rng;
use super::stepping;

/// What the hand-off between workers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoffStats {
    /// Frames handed to the worker that owns their connection.
    pub handed_off: u64,
    /// Copies of ARP replies and fragmentation-needed messages sent to the other workers.
    pub copies: u64,
    /// Frames lost because the owner's queue was full.
    pub dropped_full: u64,
}

/// `n` workers of one host against one peer, through a link each way.
#[derive(Debug)]
pub struct Workers<A> {
    /// Virtual time.
    pub now: Instant,
    /// The workers, in queue order.
    pub workers: Vec<Node<A>>,
    /// The peer host.
    pub peer: Node<A>,
    /// Frames from the workers to the peer.
    pub to_peer: Link<Frame>,
    /// Frames from the peer to the workers.
    pub from_peer: Link<Frame>,
    /// The hand-off so far.
    pub handoff: HandoffStats,
    steering: Vec<PortOwnership>,
    inboxes: Vec<VecDeque<Vec<u8>>>,
    inbox_capacity: usize,
    rss_key: u64,
    rng: Rng,
    sink: VecSink,
    frame: Vec<u8>,
    captured: Option<Vec<(Instant, Vec<u8>)>>,
}

impl<A: App> Workers<A> {
    /// `n` workers configured from `host` (worker `w` opens connections from slice `w` of
    /// `host.local_ports`, [`port_slice`]) with the apps `make_app(w)` makes, and a peer, joined
    /// by `link` both ways; each worker's hand-off queue holds `inbox_capacity` frames. `None`
    /// when the port range cannot be split over `n` workers (or `n` is 0).
    pub fn new(
        seed: u64,
        n: usize,
        host: InterfaceConfig,
        mut make_app: impl FnMut(usize) -> A,
        peer: (InterfaceConfig, A),
        link: LinkConfig,
        inbox_capacity: usize,
    ) -> Option<Workers<A>> {
        let range = host.local_ports;
        // The runtime's workers share the per-boot key: a SYN cookie one worker sent, any
        // worker validates.
        let key = IsnGenerator::with_key([seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), seed ^ 0x5151]);
        let mut workers = Vec::with_capacity(n);
        let mut steering = Vec::with_capacity(n);
        for w in 0..n {
            let mut config = host;
            config.local_ports = port_slice(w, range, n)?;
            workers.push(Node { iface: Interface::new(config, key), app: make_app(w) });
            steering.push(PortOwnership { me: w, workers: n, range });
        }
        if workers.is_empty() {
            return None;
        }
        let peer_key = IsnGenerator::with_key([!seed, seed.rotate_left(17)]);
        // Frames of either side fit; 2048 bytes at least, as a UMEM frame.
        let frame_len = host.max_frame_len().max(peer.0.max_frame_len()).max(2048);
        Some(Workers {
            now: Instant::from_millis(1_000),
            workers,
            peer: Node { iface: Interface::new(peer.0, peer_key), app: peer.1 },
            to_peer: Link::new(link, seed.wrapping_mul(3).wrapping_add(1)),
            from_peer: Link::new(link, seed.wrapping_mul(7).wrapping_add(2)),
            handoff: HandoffStats::default(),
            steering,
            inboxes: (0..n).map(|_| VecDeque::with_capacity(inbox_capacity)).collect(),
            inbox_capacity,
            rss_key: seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1,
            rng: Rng::new(seed ^ 0xa5a5),
            sink: VecSink::with_frame_len(None, frame_len),
            frame: vec![0; frame_len],
            captured: None,
        })
    }

    /// Keeps every frame offered to either link from now on, for [`Workers::pcap`].
    pub fn capture(&mut self) {
        self.captured.get_or_insert_with(Vec::new);
    }

    /// The captured frames as a pcap file (see [`Network::pcap`](super::Network::pcap)).
    pub fn pcap(&self) -> Vec<u8> {
        self.captured.as_deref().map(super::network::pcap).unwrap_or_default()
    }

    /// The queue a frame from the peer lands on: a hash of its IPv4 addresses and ports (the
    /// same for every frame of a flow, as RSS), or any queue for what has no ports (ARP).
    fn queue_of(&mut self, frame: &[u8]) -> usize {
        let n = self.workers.len() as u64;
        match flow_key(frame) {
            Some(key) => {
                let h = (key ^ self.rss_key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                ((u128::from(h) * u128::from(n)) >> 64) as usize
            }
            None => self.rng.below(n) as usize,
        }
    }

    /// Polls every node at the current time and puts what they send on the links.
    pub fn flush(&mut self) {
        for w in 0..self.workers.len() {
            let node = &mut self.workers[w];
            node.iface.poll(self.now, &mut node.app, &mut self.sink);
            send_sunk(&mut self.sink, &mut self.captured, self.now, &mut self.to_peer);
        }
        self.peer.iface.poll(self.now, &mut self.peer.app, &mut self.sink);
        send_sunk(&mut self.sink, &mut self.captured, self.now, &mut self.from_peer);
    }

    /// The next instant anything happens: a frame arrives, a hand-off is waiting, a timer
    /// fires, an app wakes up.
    pub fn next_event(&self) -> Option<Instant> {
        let waiting = self.inboxes.iter().any(|q| !q.is_empty()).then_some(self.now);
        let nodes = self.workers.iter().chain(core::iter::once(&self.peer));
        [waiting, self.to_peer.next_arrival(), self.from_peer.next_arrival()]
            .into_iter()
            .chain(nodes.flat_map(|n| [n.iface.next_deadline(), n.app.next_wakeup()]))
            .flatten()
            .min()
    }

    /// The peer takes one frame, as a worker does: a reply written in place goes back on the
    /// link it came from.
    fn deliver_to_peer(&mut self, frame: &[u8]) {
        let len = self.load(frame);
        if let RxAction::Transmit(n) = self.peer.iface.receive(self.now, &mut self.frame, len) {
            let reply = self.reply_in_place(n);
            self.from_peer.send(self.now, reply);
        }
    }

    /// Copies `frame` into the UMEM-sized receive buffer, for replies written in place.
    fn load(&mut self, frame: &[u8]) -> usize {
        let len = frame.len().min(self.frame.len());
        self.frame[..len].copy_from_slice(&frame[..len]);
        len
    }

    /// The reply of `n` bytes written in place into the receive buffer, captured.
    fn reply_in_place(&mut self, n: usize) -> Frame {
        let reply = self.frame[..n.min(self.frame.len())].to_vec();
        record(&mut self.captured, self.now, &reply);
        Frame(reply)
    }

    /// Sends what is due, jumps time to the next event and processes everything due then:
    /// the peer's frames; then each worker in turn takes what was handed to it, then the
    /// frames on its queue, routed as the runtime's worker routes them; then timers and the
    /// applications through `poll`. Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(Frame(f)) = self.to_peer.receive(self.now) {
            self.deliver_to_peer(&f);
        }
        let mut queues: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.workers.len()];
        while let Some(Frame(f)) = self.from_peer.receive(self.now) {
            let q = self.queue_of(&f);
            queues[q].push(f);
        }
        for (w, queue) in queues.into_iter().enumerate() {
            // Handed-off frames first: they are older, as in the runtime's worker.
            while let Some(f) = self.inboxes[w].pop_front() {
                let len = self.load(&f);
                // The sink has no limit: no reply is lost.
                let _ = receive_handed_off(&mut self.workers[w].iface, self.now, &mut self.frame, len, &mut self.sink);
                send_sunk(&mut self.sink, &mut self.captured, self.now, &mut self.to_peer);
            }
            for f in queue {
                let len = self.load(&f);
                let mut inboxes =
                    Inboxes { queues: &mut self.inboxes, capacity: self.inbox_capacity, stats: &mut self.handoff };
                let iface = &mut self.workers[w].iface;
                let dispatched = dispatch(&self.steering[w], iface, self.now, &mut self.frame, len, &mut inboxes);
                if let Dispatched::Received(RxAction::Transmit(n)) = dispatched {
                    let reply = self.reply_in_place(n);
                    self.to_peer.send(self.now, reply);
                }
            }
        }
        self.flush();
        true
    }

    /// Steps until `done` holds (checked after every step), nothing is left to happen, or
    /// virtual time passes `deadline`. Returns whether `done` held.
    pub fn drive(&mut self, deadline: Instant, done: impl FnMut(&mut Workers<A>) -> bool) -> bool {
        stepping::drive(self, deadline, done)
    }
}

stepping::impl_steps!([A: App] Workers<A>);

/// The workers' bounded in-memory hand-off queues, as one worker offers to them, with the
/// counters of what they took and lost.
struct Inboxes<'a> {
    queues: &'a mut [VecDeque<Vec<u8>>],
    capacity: usize,
    stats: &'a mut HandoffStats,
}

impl HandoffQueue for Inboxes<'_> {
    fn offer(&mut self, to: usize, frame: &[u8], why: Offer) -> bool {
        let inbox = &mut self.queues[to];
        if inbox.len() >= self.capacity {
            self.stats.dropped_full += 1;
            return false;
        }
        inbox.push_back(frame.to_vec());
        match why {
            Offer::Owner => self.stats.handed_off += 1,
            Offer::Copy => self.stats.copies += 1,
        }
        true
    }
}

/// Puts what a node sent into `sink` on `link`, captured.
fn send_sunk(sink: &mut VecSink, captured: &mut Option<Vec<(Instant, Vec<u8>)>>, now: Instant, link: &mut Link<Frame>) {
    for frame in sink.frames.drain(..) {
        record(captured, now, &frame);
        link.send(now, Frame(frame));
    }
}

fn record(captured: &mut Option<Vec<(Instant, Vec<u8>)>>, now: Instant, frame: &[u8]) {
    if let Some(c) = captured.as_mut() {
        c.push((now, frame.to_vec()));
    }
}

/// The flow of an IPv4 frame that carries ports (TCP, UDP), for the queue hash: addresses and
/// ports folded into one word. `None` for ARP, ICMP and fragments.
fn flow_key(frame: &[u8]) -> Option<u64> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let ports = ip.payload().get(..4)?;
    let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
    let ports = u32::from_be_bytes([ports[0], ports[1], ports[2], ports[3]]);
    Some((u64::from(src ^ dst) << 32 | u64::from(ports)) ^ u64::from(ip.protocol()) << 56)
}
