//! Two client workers (two [`Interface`]s with a slice of the port range each) against one
//! server interface, joined through their frames, with the server's frames delivered to the
//! workers' "queues" alternately, as a veth peer's transmit queue choice would: half of them
//! land on the worker that does not own the connection and must be handed off. Each worker
//! runs the runtime worker's per-frame step (`iface::dispatch`) over the real [`Handoff`]
//! mesh: handed-over frames first ([`receive_handed_off`]), then its queue ([`dispatch`]).

use core::time::Duration;
use std::net::Ipv4Addr;

use super::handoff::{mesh, Handoff, HandoffCounters};
use crate::iface::dispatch::{dispatch, receive_handed_off, Dispatched};
use crate::iface::steering::{port_slice, PortOwnership};
use crate::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig, RxAction, VecSink};
use crate::tcp::{Endpoint, IsnGenerator, State, TcpConfig};
use crate::time::Instant;
use crate::wire::EthernetAddress;

const MAC_CLIENT: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xa]);
const MAC_SERVER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xb]);
const ADDR_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ADDR_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const RANGE: (u16, u16) = (61000, 61009);
const PORT: u16 = 7;
const PER_WORKER: usize = 4;
const MESSAGE: &[u8] = b"hello from a client worker";

fn config(mac: EthernetAddress, addr: Ipv4Addr) -> InterfaceConfig {
    let mut c = InterfaceConfig::new(mac, addr);
    c.address_mode = AddressMode::Dedicated;
    c.max_connections = 16;
    c.tcp = TcpConfig {
        send_buffer_len: 4096,
        recv_buffer_len: 4096,
        time_wait: Duration::from_secs(1),
        ..TcpConfig::default()
    };
    c
}

/// Echoes what it reads.
struct Echo;
impl App for Echo {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = iface.splice(conn, conn, usize::MAX);
    }
}

/// Sends the message once connected and counts what comes back.
#[derive(Default)]
struct Client {
    connected: usize,
    echoed: usize,
}
impl App for Client {
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        self.connected += 1;
        assert_eq!(iface.send(conn, MESSAGE), Ok(MESSAGE.len()));
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let mut buf = [0u8; 256];
        while let Ok(n) = iface.recv(conn, &mut buf) {
            if n == 0 {
                break;
            }
            assert_eq!(&buf[..n], MESSAGE, "the echo is the message");
            self.echoed += n;
        }
    }
}

struct Outcome {
    established: usize,
    connected: usize,
    echoed: usize,
    resets_from_clients: u64,
    handoff: [HandoffCounters; 2],
    /// Frames that landed on the queue of the worker that does not own their connection.
    misdelivered: usize,
}

/// A UMEM-sized copy of `frame` fed to `iface`; the reply written in place, if any.
fn feed(iface: &mut Interface, now: Instant, frame: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    match iface.receive(now, &mut buf, frame.len()) {
        RxAction::Release => None,
        RxAction::Transmit(n) => Some(buf[..n].to_vec()),
    }
}

/// Runs the exchange; `hand_off` false makes each worker take what lands on its queue itself.
fn run(hand_off: bool) -> Outcome {
    let mut server = Interface::new(config(MAC_SERVER, ADDR_SERVER), IsnGenerator::with_key([3, 4]));
    server.listen(PORT).unwrap();
    server.learn_neighbor(ADDR_CLIENT, MAC_CLIENT);
    let mut workers: Vec<Interface> = (0..2)
        .map(|w| {
            let mut c = config(MAC_CLIENT, ADDR_CLIENT);
            c.local_ports = port_slice(w, RANGE, 2).unwrap();
            let mut iface = Interface::new(c, IsnGenerator::with_key([1, 2]));
            iface.learn_neighbor(ADDR_SERVER, MAC_SERVER);
            iface
        })
        .collect();
    let ownership = [0, 1].map(|me| PortOwnership { me, workers: 2, range: RANGE });
    // The control routes as a worker alone on its host does: everything is its own.
    let routing = if hand_off { ownership } else { [0, 1].map(|me| PortOwnership { me, workers: 1, range: RANGE }) };
    let mut handoffs: Vec<Handoff> = mesh(2, 8, 2048).unwrap();
    let mut apps = [Client::default(), Client::default()];
    let mut conns = Vec::new();
    for (w, iface) in workers.iter_mut().enumerate() {
        for _ in 0..PER_WORKER {
            let conn = iface.connect(Endpoint::new(ADDR_SERVER, PORT)).unwrap();
            let port = iface.tuple(conn).unwrap().local.port;
            assert_eq!(super::owner_of_port(port, RANGE, 2), Some(w), "worker {w} opens from its own slice");
            conns.push((w, conn));
        }
    }

    let mut to_server: Vec<Vec<u8>> = Vec::new();
    let mut next_queue = 0usize;
    let mut misdelivered = 0;
    let mut now = Instant::from_millis(1);
    for _ in 0..200 {
        now += Duration::from_millis(1);
        for (w, iface) in workers.iter_mut().enumerate() {
            let mut sink = VecSink::new();
            iface.poll(now, &mut apps[w], &mut sink);
            to_server.extend(sink.frames);
        }
        let mut to_clients = Vec::new();
        for frame in to_server.drain(..) {
            to_clients.extend(feed(&mut server, now, &frame));
        }
        let mut sink = VecSink::new();
        server.poll(now, &mut Echo, &mut sink);
        to_clients.extend(sink.frames);
        // The "veth" picks the queue, alternately.
        let mut queues: [Vec<Vec<u8>>; 2] = Default::default();
        for frame in to_clients {
            let q = next_queue % 2;
            next_queue += 1;
            misdelivered += usize::from(ownership[q].foreign_owner(&frame, |p| workers[q].is_listening(p)).is_some());
            queues[q].push(frame);
        }
        for (w, iface) in workers.iter_mut().enumerate() {
            // What the other worker handed over, first, as the runtime's worker does.
            let mut sink = VecSink::new();
            handoffs[w].drain(64, |buf, len| assert!(receive_handed_off(iface, now, buf, len, &mut sink)));
            to_server.extend(sink.frames);
            for frame in &queues[w] {
                let mut buf = vec![0u8; 2048];
                buf[..frame.len()].copy_from_slice(frame);
                match dispatch(&routing[w], iface, now, &mut buf, frame.len(), &mut handoffs[w]) {
                    Dispatched::HandedOff { queued } => assert!(queued, "the owner's inbox has room"),
                    Dispatched::Received(RxAction::Transmit(n)) => to_server.push(buf[..n].to_vec()),
                    Dispatched::Received(RxAction::Release) => {}
                }
            }
        }
    }
    let established = conns.iter().filter(|&&(w, c)| workers[w].state(c) == State::Established).count();
    Outcome {
        established,
        connected: apps.iter().map(|a| a.connected).sum(),
        echoed: apps.iter().map(|a| a.echoed).sum(),
        resets_from_clients: workers.iter().map(|w| w.counters().resets_sent).sum(),
        handoff: [handoffs[0].counters(), handoffs[1].counters()],
        misdelivered,
    }
}

#[test]
fn segments_on_the_wrong_queue_reach_the_connection_through_a_hand_off() {
    let out = run(true);
    let total = 2 * PER_WORKER;
    assert_eq!(out.established, total, "every connection is established");
    assert_eq!(out.connected, total);
    assert_eq!(out.echoed, total * MESSAGE.len(), "every echo came back");
    assert_eq!(out.resets_from_clients, 0, "no worker answered another's segment with an RST");
    let [h0, h1] = out.handoff;
    assert!(h0.handed_off > 0 && h1.handed_off > 0, "both workers handed off: {h0:?} {h1:?}");
    assert_eq!(h0.handed_off, h1.handoff_received);
    assert_eq!(h1.handed_off, h0.handoff_received);
    assert_eq!(h0.handoff_dropped_full + h1.handoff_dropped_full, 0);
    assert_eq!(h0.handed_off + h1.handed_off, out.misdelivered as u64, "what landed on the wrong queue, and only that");
}

#[test]
fn without_the_hand_off_the_wrong_worker_resets_the_connections() {
    // The control: the same deliveries, each worker keeping what lands on its queue. It shows
    // that the exchange above depends on the hand-off.
    let out = run(false);
    assert!(out.misdelivered > 0);
    assert!(out.resets_from_clients > 0, "the non-owner answers a SYN-ACK with an RST");
    assert!(out.established < 2 * PER_WORKER, "some connections fail: {} established", out.established);
    assert_eq!(out.handoff[0].handed_off + out.handoff[1].handed_off, 0);
}
