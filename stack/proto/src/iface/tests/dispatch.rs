//! The per-frame step shared by the runtime's and the simulator's workers (`iface::dispatch`).

use super::*;
use crate::iface::dispatch::{dispatch, receive_handed_off, Dispatched, HandoffQueue, Offer};
use crate::iface::steering::PortOwnership;

/// Records what it is offered; takes it while `room` holds.
struct Recorder {
    offers: Vec<(usize, Vec<u8>, Offer)>,
    room: bool,
}

impl HandoffQueue for Recorder {
    fn offer(&mut self, to: usize, frame: &[u8], why: Offer) -> bool {
        self.offers.push((to, frame.to_vec(), why));
        self.room
    }
}

/// Worker `me` of `workers` over the default client port range (61000-65535).
fn worker(me: usize, workers: usize) -> PortOwnership {
    PortOwnership { me, workers, range: InterfaceConfig::new(MAC_A, ADDR_A).local_ports }
}

/// `frame` at the start of a UMEM-sized buffer, dispatched by worker `me` of `workers` on `a`.
fn dispatched(
    a: &mut Interface,
    me: usize,
    workers: usize,
    frame: &[u8],
    queue: &mut Recorder,
) -> (Dispatched, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let out = dispatch(&worker(me, workers), a, Instant::from_millis(1), &mut buf, frame.len(), queue);
    (out, buf)
}

#[test]
fn a_segment_to_another_workers_port_goes_to_it_and_is_not_received_here() {
    // Port 64000 is worker 1's of two.
    let frame = tcp_frame(&syn(5555, 64000), b"", ADDR_B, ADDR_A);
    let mut a = iface(MAC_A, ADDR_A);
    let mut queue = Recorder { offers: Vec::new(), room: true };
    let (out, _) = dispatched(&mut a, 0, 2, &frame, &mut queue);
    assert_eq!(out, Dispatched::HandedOff { queued: true });
    assert_eq!(queue.offers, vec![(1, frame.clone(), Offer::Owner)], "the received bytes, not the whole buffer");
    assert_eq!(*a.counters(), Counters::default(), "the interface never saw it");
    // A full queue loses it, and says so; it is still not received here.
    let mut full = Recorder { offers: Vec::new(), room: false };
    assert_eq!(dispatched(&mut a, 0, 2, &frame, &mut full).0, Dispatched::HandedOff { queued: false });
    assert_eq!(full.offers.len(), 1);
    assert_eq!(*a.counters(), Counters::default());
}

#[test]
fn a_segment_to_our_own_port_or_of_a_lone_worker_is_received_here() {
    let frame = tcp_frame(&syn(5555, 64000), b"", ADDR_B, ADDR_A);
    for (me, workers) in [(1, 2), (0, 1)] {
        let mut a = iface(MAC_A, ADDR_A);
        let mut queue = Recorder { offers: Vec::new(), room: true };
        let (out, buf) = dispatched(&mut a, me, workers, &frame, &mut queue);
        // No connection on that port: the interface answers with an RST in place.
        let Dispatched::Received(RxAction::Transmit(n)) = out else { panic!("worker {me} of {workers}: {out:?}") };
        assert_eq!(parse_tcp(&buf[..n]).1.flags, TcpFlags::RST | TcpFlags::ACK);
        assert!(queue.offers.is_empty(), "worker {me} of {workers} offered {:?}", queue.offers);
        assert_eq!(a.counters().resets_sent, 1);
    }
}

/// An interface that has asked for B's MAC and waits for the reply.
fn resolving_b() -> Interface {
    let mut a = iface(MAC_A, ADDR_A);
    a.connect(Endpoint::new(ADDR_B, PORT)).unwrap();
    a.poll(Instant::from_millis(1), &mut Acceptor::default(), &mut VecSink::new());
    assert!(a.is_resolving(ADDR_B));
    a
}

#[test]
fn an_arp_reply_is_copied_to_every_other_worker_and_received_here_too() {
    let frame = arp_frame(ArpOperation::Reply, ADDR_B, MAC_B, ADDR_A);
    let now = Instant::from_millis(1);
    let mut a = resolving_b();
    let mut queue = Recorder { offers: Vec::new(), room: true };
    let (out, _) = dispatched(&mut a, 1, 3, &frame, &mut queue);
    assert_eq!(out, Dispatched::Received(RxAction::Release));
    assert_eq!(queue.offers, vec![(0, frame.clone(), Offer::Copy), (2, frame.clone(), Offer::Copy)]);
    assert_eq!(a.neighbors_mut().lookup(ADDR_B, now), Some(MAC_B), "this worker took the reply");
    // Lost copies (full queues) do not keep it from this worker.
    let mut b = resolving_b();
    let mut full = Recorder { offers: Vec::new(), room: false };
    assert_eq!(dispatched(&mut b, 1, 3, &frame, &mut full).0, Dispatched::Received(RxAction::Release));
    assert_eq!(full.offers.len(), 2);
    assert_eq!(b.neighbors_mut().lookup(ADDR_B, now), Some(MAC_B));
}

#[test]
fn a_reply_to_a_handed_off_frame_goes_out_through_the_sink_or_is_reported_lost() {
    let frame = tcp_frame(&syn(5555, 81), b"", ADDR_B, ADDR_A);
    let now = Instant::from_millis(1);
    let mut a = iface(MAC_A, ADDR_A);
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(&frame);
    let mut sink = VecSink::new();
    assert!(receive_handed_off(&mut a, now, &mut buf, frame.len(), &mut sink));
    assert_eq!(sink.frames.len(), 1);
    let (ip, rst) = parse_tcp(&sink.frames[0]);
    assert_eq!(ip.dst_addr, ADDR_B);
    assert_eq!((rst.flags, rst.dst_port), (TcpFlags::RST | TcpFlags::ACK, 5555), "the reply written in place");
    // No TX frame: the reply is lost, and the caller is told.
    buf[..frame.len()].copy_from_slice(&frame);
    assert!(!receive_handed_off(&mut a, now, &mut buf, frame.len(), &mut VecSink::with_limit(Some(0))));
    assert_eq!(a.counters().resets_sent, 2);
    // A frame without a reply sends nothing.
    let arp = arp_frame(ArpOperation::Reply, ADDR_B, MAC_B, ADDR_A);
    buf[..arp.len()].copy_from_slice(&arp);
    let mut quiet = VecSink::with_limit(Some(0));
    assert!(receive_handed_off(&mut a, now, &mut buf, arp.len(), &mut quiet));
}
