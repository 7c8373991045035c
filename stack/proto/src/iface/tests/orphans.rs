//! Orphans (closed by the application, close unfinished) are bounded: the oldest is reset.

use super::*;

/// Remembers the connections it accepted.
#[derive(Default)]
struct Acceptor(Vec<ConnId>);

impl App for Acceptor {
    fn on_accept(&mut self, _: &mut Interface, conn: ConnId) {
        self.0.push(conn);
    }
}

/// Opens a connection from B:`port` to A:PORT with crafted frames; returns it.
fn open(a: &mut Interface, app: &mut Acceptor, now: Instant, port: u16) -> ConnId {
    assert_eq!(feed(a, now, &tcp_frame(&syn(port, PORT), b"", ADDR_B, ADDR_A)), None);
    let mut sink = VecSink::new();
    a.poll(now, app, &mut sink);
    let (_, syn_ack) = parse_tcp(&sink.frames[0]);
    let ack = TcpRepr {
        src_port: port,
        dst_port: PORT,
        seq: 1001,
        ack: syn_ack.seq.wrapping_add(1),
        flags: TcpFlags::ACK,
        window: 65535,
        ..TcpRepr::default()
    };
    assert_eq!(feed(a, now, &tcp_frame(&ack, b"", ADDR_B, ADDR_A)), None);
    a.poll(now, app, &mut VecSink::new());
    *app.0.last().expect("accepted")
}

#[test]
fn beyond_max_orphans_the_oldest_orphan_is_reset() {
    let mut c = config(MAC_A, ADDR_A);
    c.max_orphans = 2;
    let mut a = Interface::new(c, IsnGenerator::with_key([1, 2]));
    a.listen(PORT).unwrap();
    let mut app = Acceptor::default();
    let now = Instant::from_millis(1000);
    let conns: Vec<ConnId> = (0..4).map(|i| open(&mut a, &mut app, now, 40000 + i)).collect();
    // The peer never acknowledges the FINs: each stays in FIN-WAIT-1, an orphan.
    for &id in &conns[..2] {
        a.close(id);
    }
    a.poll(now, &mut app, &mut VecSink::new());
    assert!(conns[..2].iter().all(|&id| a.state(id) == State::FinWait1));
    assert_eq!(a.counters().orphans_reset, 0, "two orphans are within the bound");
    a.close(conns[2]);
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    assert_eq!(a.counters().orphans_reset, 1);
    assert_ne!(a.state(conns[0]), State::FinWait1, "the oldest orphan went");
    assert_eq!(a.state(conns[1]), State::FinWait1);
    assert_eq!(a.state(conns[2]), State::FinWait1);
    assert_eq!(a.state(conns[3]), State::Established, "an open connection is no orphan");
    let rsts: Vec<u16> = sink
        .frames
        .iter()
        .map(|f| parse_tcp(f).1)
        .filter(|t| t.flags.contains(TcpFlags::RST))
        .map(|t| t.dst_port)
        .collect();
    assert_eq!(rsts, vec![40000], "the peer of the reset orphan is told");
    assert_eq!(a.connection_count(), 3);
}

#[test]
fn orphans_that_finished_do_not_count() {
    let mut c = config(MAC_A, ADDR_A);
    c.max_orphans = 1;
    let mut a = Interface::new(c, IsnGenerator::with_key([1, 2]));
    a.listen(PORT).unwrap();
    let mut app = Acceptor::default();
    let now = Instant::from_millis(1000);
    let first = open(&mut a, &mut app, now, 40000);
    a.close(first);
    a.poll(now, &mut app, &mut VecSink::new());
    // The peer resets it: the orphan is gone, and the next close takes its place.
    let rst = TcpRepr { src_port: 40000, dst_port: PORT, seq: 1001, flags: TcpFlags::RST, ..TcpRepr::default() };
    assert_eq!(feed(&mut a, now, &tcp_frame(&rst, b"", ADDR_B, ADDR_A)), None);
    a.poll(now, &mut app, &mut VecSink::new());
    let second = open(&mut a, &mut app, now, 40001);
    a.close(second);
    a.poll(now, &mut app, &mut VecSink::new());
    assert_eq!(a.counters().orphans_reset, 0);
    assert_eq!(a.state(second), State::FinWait1);
}
