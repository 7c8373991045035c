//! The frame-level simulator's Ethernet segment: any number of real [`Interface`]s, each with
//! its [`App`], on one switch. A frame goes to the node whose MAC it is addressed to (a
//! broadcast to every node but its sender) through that node's inbound [`Link`], which loses,
//! duplicates, reorders, delays and rate-limits as its [`LinkConfig`] says. Everything else is
//! as in [`super::Network`], the two-node case: frames in one by one or as a batch, in-place
//! replies, `poll` until no output is pending, virtual time that jumps to the next event, and a
//! capture that makes a pcap file.

use core::time::Duration;

use crate::iface::{App, VecSink};
use crate::time::Instant;
use crate::wire::EthernetAddress;

use super::link::{Frame, Link, LinkConfig};
use super::network::{hand_over, pcap_of, Delivery, Node};
use super::stepping;

/// A frame a node put on the segment, kept by [`Lan::capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanFrame {
    /// When it was sent.
    pub at: Instant,
    /// The index of the node that sent it.
    pub from: usize,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// Nodes on one switched Ethernet segment, each behind its own inbound link. All apps have one
/// type: an enum of the roles, or `&mut dyn App` for apps the caller keeps.
#[derive(Debug)]
pub struct Lan<A> {
    /// Virtual time.
    pub now: Instant,
    /// The nodes, in the order they were joined.
    pub nodes: Vec<Node<A>>,
    /// The switch's port towards each node (`links[i]` carries the frames for `nodes[i]`).
    pub links: Vec<Link<Frame>>,
    sink: VecSink,
    frame: Vec<u8>,
    delivery: Delivery,
    largest_arrival: usize,
    unswitched: u64,
    captured: Option<Vec<LanFrame>>,
}

impl<A: App> Lan<A> {
    /// Nodes made by the caller (their keys, listeners and neighbours set up already) on one
    /// segment, each behind a link that behaves as `link`; virtual time starts at 1 s.
    pub fn join(seed: u64, nodes: Vec<Node<A>>, link: LinkConfig) -> Lan<A> {
        let links = (0..nodes.len() as u64)
            .map(|i| Link::new(link, seed.wrapping_mul(2 * i + 3).wrapping_add(i + 1)))
            .collect();
        // Frames of every node fit; 2048 bytes at least, as a UMEM frame.
        let frame_len = nodes.iter().map(|n| n.iface.config().max_frame_len()).fold(2048, usize::max);
        Lan {
            now: Instant::from_millis(1_000),
            nodes,
            links,
            sink: VecSink::with_frame_len(None, frame_len),
            frame: vec![0; frame_len],
            delivery: Delivery::Frames,
            largest_arrival: 0,
            unswitched: 0,
            captured: None,
        }
    }

    /// Each poll may send at most `frames` frames; the polls that follow at once send the rest.
    ///
    /// # Panics
    /// If `frames` is 0: nothing could ever be sent.
    pub fn with_tx_limit(mut self, frames: usize) -> Lan<A> {
        assert!(frames > 0, "a TX limit of 0 frames sends nothing");
        self.sink.limit = Some(frames);
        self
    }

    /// Delivers the frames that reach a node at one instant as `delivery` says.
    pub fn with_delivery(mut self, delivery: Delivery) -> Lan<A> {
        self.delivery = delivery;
        self
    }

    /// The nodes, in the order they were joined.
    pub fn into_nodes(self) -> Vec<Node<A>> {
        self.nodes
    }

    /// Keeps every frame put on the segment from now on (once, however many nodes it reaches),
    /// for [`Lan::captured`] and [`Lan::pcap`].
    pub fn capture(&mut self) {
        self.captured.get_or_insert_with(Vec::new);
    }

    /// The frames kept since [`Lan::capture`], in the order they were sent.
    pub fn captured(&self) -> &[LanFrame] {
        self.captured.as_deref().unwrap_or_default()
    }

    /// The captured frames as a pcap file (Ethernet, microseconds of virtual time).
    pub fn pcap(&self) -> Vec<u8> {
        pcap_of(self.captured().iter().map(|c| (c.at, c.frame.as_slice())))
    }

    /// The most frames that reached one node at one instant.
    pub fn largest_arrival(&self) -> usize {
        self.largest_arrival
    }

    /// Unicast frames for a MAC no other node has: the switch dropped them.
    pub fn unswitched(&self) -> u64 {
        self.unswitched
    }

    /// Puts `frame` from node `from` on the links of the nodes it is addressed to.
    fn switch(&mut self, from: usize, frame: Vec<u8>) {
        let Some(dst) = frame.get(..6).map(|d| EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])) else {
            self.unswitched += 1;
            return;
        };
        let mut reached = false;
        for (to, node) in self.nodes.iter().enumerate() {
            if to != from && (dst.is_broadcast() || node.iface.config().mac == dst) {
                self.links[to].send(self.now, Frame(frame.clone()));
                reached = true;
            }
        }
        if !reached {
            self.unswitched += 1;
        }
        if let Some(c) = self.captured.as_mut() {
            c.push(LanFrame { at: self.now, from, frame });
        }
    }

    /// Polls every node at the current time and switches what they send.
    pub fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            node.iface.poll(self.now, &mut node.app, &mut self.sink);
            let sent = core::mem::take(&mut self.sink.frames);
            for frame in sent {
                self.switch(i, frame);
            }
        }
    }

    /// The next instant anything happens: a frame arrives, a timer fires, an app wakes up, or
    /// (now) a node has output its last poll could not send.
    pub fn next_event(&self) -> Option<Instant> {
        let nodes = self.nodes.iter().flat_map(|n| {
            [n.iface.has_pending_output().then_some(self.now), n.iface.next_deadline(), n.app.next_wakeup()]
        });
        nodes.chain(self.links.iter().map(Link::next_arrival)).flatten().min()
    }

    /// Hands node `to` every frame that has reached it by now; its in-place replies are
    /// switched like any other frame.
    fn arrive(&mut self, to: usize) {
        let now = self.now;
        let link = &mut self.links[to];
        let frames: Vec<Vec<u8>> = core::iter::from_fn(|| link.receive(now).map(|Frame(f)| f)).collect();
        let mut replies = Vec::new();
        hand_over(&mut self.nodes[to].iface, now, self.delivery, &frames, &mut self.frame, &mut replies);
        for reply in replies {
            self.switch(to, reply);
        }
        self.largest_arrival = self.largest_arrival.max(frames.len());
    }

    /// Sends what is due, jumps time to the next event and processes everything due then
    /// (frames, node by node, then timers and the applications through `poll`). Returns false
    /// when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(now) = stepping::next_instant(self) else {
            return false;
        };
        self.now = now;
        for to in 0..self.nodes.len() {
            self.arrive(to);
        }
        self.flush();
        true
    }

    /// Steps until `done` holds, nothing is left to happen, or virtual time passes `deadline`
    /// (as [`super::Network::drive`]).
    pub fn drive(&mut self, deadline: Instant, done: impl FnMut(&mut Lan<A>) -> bool) -> bool {
        stepping::drive(self, deadline, done)
    }

    /// Steps through every event within `limit` from now (as [`super::Network::run_for`]).
    ///
    /// # Panics
    /// After a million steps: virtual time stands still (a livelock).
    pub fn run_for(&mut self, limit: Duration) -> Instant {
        stepping::run_for(self, limit)
    }
}

stepping::impl_steps!([A: App] Lan<A>);
