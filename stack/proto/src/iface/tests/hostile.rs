//! Hostile frames on one interface: spoofed MACs, group addresses, invalid flag combinations,
//! rate limits of the answers a peer can provoke.

use super::*;

/// A station on the same segment that is not the peer.
const MAC_EVIL: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xe]);

/// `frame` with its Ethernet source replaced.
fn from_mac(mut frame: Vec<u8>, mac: EthernetAddress) -> Vec<u8> {
    frame[6..12].copy_from_slice(&mac.0);
    frame
}

/// A server (A, listening on PORT) with one connection from B:40000 established by crafted
/// frames. Returns the interface, its app, the connection, and the next sequence numbers of
/// the client (ours to send) and of the server.
fn established(now: Instant) -> (Interface, Acceptor, ConnId, u32, u32) {
    let mut a = iface(MAC_A, ADDR_A);
    a.listen(PORT).unwrap();
    let mut app = Acceptor::default();
    let syn_ack = accept_handshake(&mut a, &mut app, now, &syn(40000, PORT));
    assert_eq!(app.0.len(), 1, "accepted");
    let id = app.0[0];
    (a, app, id, 1001, syn_ack.seq.wrapping_add(1))
}

/// Sends `data` from the server and returns the frames that went out.
fn server_sends(a: &mut Interface, app: &mut Acceptor, id: ConnId, now: Instant, data: &[u8]) -> Vec<Vec<u8>> {
    a.send(id, data).unwrap();
    let mut sink = VecSink::new();
    a.poll(now, app, &mut sink);
    sink.frames
}

#[test]
fn a_spoofed_frame_never_moves_the_connections_return_mac() {
    let now = Instant::from_millis(1000);
    let (mut a, mut app, id, client_nxt, server_nxt) = established(now);
    let tcp = |seq: u32, flags: TcpFlags| TcpRepr {
        src_port: 40000,
        dst_port: PORT,
        seq,
        ack: server_nxt,
        flags,
        window: 65535,
        ..TcpRepr::default()
    };
    // An out-of-window RST (dropped), then an acceptable duplicate ACK, both from another
    // station on the segment: neither may redirect the connection.
    let rst = tcp(client_nxt.wrapping_add(1 << 30), TcpFlags::RST);
    let _ = feed(&mut a, now, &from_mac(tcp_frame(&rst, b"", ADDR_B, ADDR_A), MAC_EVIL));
    let dup = tcp(client_nxt, TcpFlags::ACK);
    let _ = feed(&mut a, now, &from_mac(tcp_frame(&dup, b"", ADDR_B, ADDR_A), MAC_EVIL));
    assert_eq!(a.state(id), State::Established);
    let frames = server_sends(&mut a, &mut app, id, now, b"hello");
    assert!(!frames.is_empty());
    for f in &frames {
        assert_eq!(&f[..6], &MAC_B.0, "frames still go to the MAC of the handshake");
    }
}

#[test]
fn frames_from_a_group_source_mac_are_dropped_and_counted() {
    let now = Instant::from_millis(1000);
    let mut a = iface(MAC_A, ADDR_A);
    a.listen(PORT).unwrap();
    let group = EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]);
    for mac in [group, EthernetAddress::BROADCAST] {
        let frame = from_mac(tcp_frame(&syn(40000, PORT), b"", ADDR_B, ADDR_A), mac);
        assert_eq!(feed(&mut a, now, &frame), None, "no SYN-ACK to a group address");
    }
    assert_eq!(a.connection_count(), 0);
    assert_eq!(a.counters().drop_multicast_src, 2);
    assert_eq!(a.counters().dropped(), 2);
}

#[test]
fn tcp_to_the_broadcast_mac_is_dropped_and_counted() {
    let now = Instant::from_millis(1000);
    let mut a = iface(MAC_A, ADDR_A);
    a.listen(PORT).unwrap();
    // To a listener (would open a connection) and to a closed port (would get an RST).
    for port in [PORT, 81] {
        let mut frame = tcp_frame(&syn(40000, port), b"", ADDR_B, ADDR_A);
        frame[..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
        assert_eq!(feed(&mut a, now, &frame), None);
    }
    a.poll(now, &mut (), &mut VecSink::new());
    assert_eq!(a.connection_count(), 0);
    assert_eq!((a.counters().drop_not_unicast, a.counters().resets_sent), (2, 0));
    // The same SYN to our MAC is taken.
    assert_eq!(feed(&mut a, now, &tcp_frame(&syn(40000, PORT), b"", ADDR_B, ADDR_A)), None);
    assert_eq!(a.connection_count(), 1);
}

#[test]
fn syn_fin_segments_are_dropped_and_counted() {
    let now = Instant::from_millis(1000);
    let (mut a, mut app, id, client_nxt, server_nxt) = established(now);
    let syn_fin =
        |dst_port: u16, src_port: u16| TcpRepr { flags: TcpFlags::SYN | TcpFlags::FIN, ..syn(src_port, dst_port) };
    // To the listener, to a closed port, and on the established connection (in window).
    let mut on_conn = syn_fin(PORT, 40000);
    on_conn.seq = client_nxt;
    on_conn.ack = server_nxt;
    for seg in [syn_fin(PORT, 40001), syn_fin(81, 40002), on_conn] {
        assert_eq!(feed(&mut a, now, &tcp_frame(&seg, b"", ADDR_B, ADDR_A)), None, "no answer in place");
    }
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    assert!(sink.frames.is_empty(), "nothing sent");
    assert_eq!(a.counters().drop_syn_fin, 3);
    assert_eq!((a.connection_count(), a.state(id)), (1, State::Established));
}

/// ACKs sent by `a` at `now`.
fn acks_sent(a: &mut Interface, app: &mut Acceptor, now: Instant) -> Vec<TcpRepr> {
    let mut sink = VecSink::new();
    a.poll(now, app, &mut sink);
    sink.frames.iter().map(|f| parse_tcp(f).1).filter(|r| r.flags == TcpFlags::ACK).collect()
}

#[test]
fn challenge_acks_are_rate_limited_per_connection() {
    let now = Instant::from_millis(1000);
    let (mut a, mut app, id, client_nxt, server_nxt) = established(now);
    // A second connection, from another port.
    accept_handshake(&mut a, &mut app, now, &syn(40001, PORT));
    assert_eq!(app.0.len(), 2);

    // In-window SYNs and RSTs not at RCV.NXT, and ACKs of data never sent (RFC 5961 4.2, 3.2,
    // 5.2): each would get a challenge ACK; a flood of them gets one per 500 ms.
    let challenge = |port: u16, seq: u32, ack: u32, flags: TcpFlags| TcpRepr {
        src_port: port,
        dst_port: PORT,
        seq,
        ack,
        flags,
        window: 65535,
        ..TcpRepr::default()
    };
    let mut t = now + Duration::from_millis(1);
    for round in 0..3 {
        for i in 0..30u32 {
            let seg = match i % 3 {
                0 => challenge(40000, client_nxt + 100 + i, 0, TcpFlags::SYN),
                1 => challenge(40000, client_nxt + 100 + i, 0, TcpFlags::RST),
                _ => challenge(40000, client_nxt, server_nxt.wrapping_add(1 << 20), TcpFlags::ACK),
            };
            let _ = feed(&mut a, t, &tcp_frame(&seg, b"", ADDR_B, ADDR_A));
            t += Duration::from_millis(3);
        }
        let acks = acks_sent(&mut a, &mut app, t);
        assert_eq!(acks.len(), if round == 0 { 1 } else { 0 }, "round {round}: one challenge ACK per 500 ms");
        // The budget is per connection: the other one still answers at once.
        if round == 0 {
            let seg = challenge(40001, 1001 + 50, 0, TcpFlags::SYN);
            let _ = feed(&mut a, t, &tcp_frame(&seg, b"", ADDR_B, ADDR_A));
            let acks = acks_sent(&mut a, &mut app, t);
            assert_eq!(acks.len(), 1, "the other connection's challenge ACK");
            assert_eq!(acks[0].dst_port, 40001);
        }
        t += Duration::from_millis(50);
    }
    // Past the interval the next one is answered.
    t += Duration::from_millis(500);
    let seg = challenge(40000, client_nxt + 100, 0, TcpFlags::SYN);
    let _ = feed(&mut a, t, &tcp_frame(&seg, b"", ADDR_B, ADDR_A));
    assert_eq!(acks_sent(&mut a, &mut app, t).len(), 1);
    assert_eq!((a.state(id), a.counters().drop_challenged > 0), (State::Established, true));
}
