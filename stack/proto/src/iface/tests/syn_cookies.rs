//! SYN cookies through frames: a server with a SYN backlog of one answers the other SYNs with
//! cookies, and the clients' ACKs open connections that carry data and close like any other.

use super::*;
use crate::tcp::Connection;

/// A server interface (B) with a backlog of one and large rings (a window scale above zero).
fn cookie_server(backlog: usize) -> Interface {
    let mut c = config(MAC_B, ADDR_B);
    c.syn_backlog = backlog;
    c.tcp.recv_buffer_len = 256 * 1024;
    let mut b = Interface::new(c, IsnGenerator::with_key([5, 6]));
    b.listen(PORT).unwrap();
    b
}

/// A client interface (A) whose TCP configuration is `tcp`.
fn client_with(tcp: TcpConfig) -> Interface {
    let mut c = config(MAC_A, ADDR_A);
    c.tcp = tcp;
    Interface::new(c, IsnGenerator::with_key([1, 2]))
}

fn big_window_tcp() -> TcpConfig {
    TcpConfig { recv_buffer_len: 256 * 1024, ..config(MAC_A, ADDR_A).tcp }
}

/// Echo that also records what each accepted connection negotiated, seen at accept.
#[derive(Default)]
struct RecordingEcho {
    echo: Echo,
    /// (timestamps, SACK, window scaling), the peer's window as we see it, our send MSS.
    accepted: Vec<((bool, bool, bool), u32, u16)>,
}

impl App for RecordingEcho {
    fn on_accept(&mut self, iface: &mut Interface, conn: ConnId) {
        let c: &Connection = iface.connection(conn).expect("live");
        self.accepted.push((c.negotiated(), c.windows().0, c.send_mss()));
        self.echo.on_accept(iface, conn);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.echo.on_readable(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        self.echo.on_writable(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        self.echo.on_peer_closed(iface, conn);
    }
    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        self.echo.on_closed(iface, conn, reason);
    }
}

#[test]
fn a_full_backlog_answers_with_cookies_and_their_acks_make_working_connections() {
    let payload: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let client = Client::new(6, payload.clone(), false);
    let mut net = network(client_with(big_window_tcp()), client, cookie_server(1), RecordingEcho::default());
    net.run_for(Duration::from_secs(30));
    let (Node { iface: a, app: client }, Node { iface: b, app: server }) = net.into_nodes();

    let counters = *b.counters();
    // All six SYNs arrive together: one takes the backlog's place, five get cookies.
    assert_eq!(counters.syn_cookies_sent, 5, "{counters}");
    assert_eq!(counters.syn_cookies_accepted, 5, "{counters}");
    assert_eq!(counters.syn_cookies_rejected, 0, "{counters}");
    assert_eq!(counters.accepted, 6);
    assert_eq!(client.done.len(), 6);
    for (got, reason) in &client.done {
        assert_eq!(got, &payload, "every byte echoed in order");
        assert_eq!(*reason, CloseReason::Normal);
    }
    assert_eq!(server.echo.closed, vec![CloseReason::Normal; 6]);
    assert_eq!(a.counters().time_wait_entered, 6, "the client closed first, normally");
    // Every connection, cookie or not, has timestamps, SACK and window scaling; the client's
    // window of 256 KiB is seen scaled (shift 3: 32768 << 3), not as a bare 65535.
    assert_eq!(server.accepted.len(), 6);
    for &(negotiated, peer_window, mss) in &server.accepted {
        assert_eq!(negotiated, (true, true, true));
        assert_eq!(peer_window, 32768 << 3);
        // MSS 1460 (a table value) less the 12 bytes of timestamps.
        assert_eq!(mss, 1448);
    }
    assert_eq!(a.counters().dropped(), 0, "{}", a.counters());
    assert_eq!(b.counters().dropped(), 0, "{}", b.counters());
    assert_eq!((a.connection_count(), b.connection_count()), (0, 0));
}

#[test]
fn without_timestamps_a_cookie_connection_goes_without_window_scale_and_sack() {
    let tcp = TcpConfig { timestamps: false, mss: 1400, ..big_window_tcp() };
    let payload = vec![9u8; 5000];
    let client = Client::new(3, payload.clone(), false);
    let mut net = network(client_with(tcp), client, cookie_server(1), RecordingEcho::default());
    net.run_for(Duration::from_secs(30));
    let (Node { app: client, .. }, Node { iface: b, app: server }) = net.into_nodes();
    assert_eq!(b.counters().syn_cookies_accepted, 2, "{}", b.counters());
    assert_eq!(client.done.len(), 3);
    assert!(client.done.iter().all(|(got, r)| got == &payload && *r == CloseReason::Normal));
    let mut normal = 0;
    for &(negotiated, peer_window, mss) in &server.accepted {
        if negotiated == (false, true, true) {
            // The one that went through the backlog negotiated everything but timestamps.
            normal += 1;
            assert_eq!(mss, 1400);
        } else {
            assert_eq!(negotiated, (false, false, false), "as Linux: no options without timestamps");
            assert_eq!(peer_window, 65535, "unscaled");
            // The client's MSS of 1400 lands in the table's 1300 bucket.
            assert_eq!(mss, 1300);
        }
    }
    assert_eq!(normal, 1);
}

/// The SYN-ACK B answers a SYN from `port` with, parsed.
fn syn_ack_for(b: &mut Interface, now: Instant, syn: &TcpRepr) -> TcpRepr {
    let reply = feed(b, now, &tcp_frame_to_b(syn, b"")).expect("a SYN-ACK in place");
    let (_, repr) = parse_tcp(&reply);
    assert_eq!(repr.flags, TcpFlags::SYN | TcpFlags::ACK);
    repr
}

/// B's frames, with a server app, from B to A: raw frames are addressed to MAC_A.
fn tcp_frame_to_b(repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
    let mut frame = tcp_frame(repr, payload, ADDR_A, ADDR_B);
    frame[..6].copy_from_slice(&MAC_B.0);
    frame
}

#[test]
fn a_tampered_ack_gets_an_rst_and_a_valid_one_carries_its_data_in() {
    let mut b = cookie_server(1);
    let now = Instant::from_millis(5_000);
    let fill = |port: u16| TcpRepr {
        options: crate::wire::TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(crate::wire::Timestamp { tsval: 1000, tsecr: 0 }),
            ..Default::default()
        },
        ..syn(port, PORT)
    };
    // The first SYN fills the backlog (its SYN-ACK waits for poll); the second gets a cookie.
    assert!(feed(&mut b, now, &tcp_frame_to_b(&fill(4000), b"")).is_none());
    let syn2 = fill(4001);
    let syn_ack = syn_ack_for(&mut b, now, &syn2);
    assert_eq!(b.counters().syn_cookies_sent, 1);
    assert_eq!(b.connection_count(), 1, "no state for the cookie");
    assert_eq!(syn_ack.ack, syn2.seq + 1);
    let ts = syn_ack.options.timestamp.expect("timestamps agreed");
    assert_eq!(ts.tsecr, 1000);
    assert_eq!(syn_ack.options.window_scale, Some(3), "our own shift for 256 KiB");
    assert!(syn_ack.options.sack_permitted);

    let ack = |ack: u32, tsecr: u32| TcpRepr {
        src_port: 4001,
        dst_port: PORT,
        seq: syn2.seq + 1,
        ack,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window: 1000,
        options: crate::wire::TcpOptions {
            timestamp: Some(crate::wire::Timestamp { tsval: 1001, tsecr }),
            ..Default::default()
        },
        ..TcpRepr::default()
    };
    // A wrong acknowledgment number: an RST with SEQ = SEG.ACK, counted.
    let tampered = syn_ack.seq.wrapping_add(1) ^ 0x0100_0000;
    let rst = feed(&mut b, now, &tcp_frame_to_b(&ack(tampered, ts.tsval), b"hello")).expect("an RST");
    let (_, rst) = parse_tcp(&rst);
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, tampered));
    // The ECN slot set in the echoed TSval: refused too.
    let rst = feed(&mut b, now, &tcp_frame_to_b(&ack(syn_ack.seq.wrapping_add(1), ts.tsval | 0x20), b"hello"));
    assert!(parse_tcp(&rst.expect("an RST")).1.flags.contains(TcpFlags::RST));
    assert_eq!(b.counters().syn_cookies_rejected, 2);
    assert_eq!(b.counters().resets_sent, 2);
    assert_eq!(b.connection_count(), 1);

    // The right one, a second later, with data: the connection is made and the data read.
    let later = now + Duration::from_secs(1);
    assert!(feed(&mut b, later, &tcp_frame_to_b(&ack(syn_ack.seq.wrapping_add(1), ts.tsval), b"hello")).is_none());
    assert_eq!(b.counters().syn_cookies_accepted, 1);
    assert_eq!(b.connection_count(), 2);
    let mut server = RecordingEcho::default();
    let mut sink = VecSink::new();
    b.poll(later, &mut server, &mut sink);
    assert_eq!(server.echo.accepted, 1, "accepted like any connection");
    let (negotiated, peer_window, _) = server.accepted[0];
    assert_eq!(negotiated, (true, true, true));
    assert_eq!(peer_window, 1000 << 7, "the window scale came back through the timestamp");
    let echoed: Vec<TcpRepr> = sink.frames.iter().map(|f| parse_tcp(f).1).filter(|r| r.dst_port == 4001).collect();
    let data = sink.frames.iter().find(|f| parse_tcp(f).1.dst_port == 4001 && f.len() > 34 + 32);
    assert!(data.is_some_and(|f| f.ends_with(b"hello")), "the ACK's data was taken in and echoed: {echoed:?}");
    let echo = echoed.iter().find(|r| r.seq == syn_ack.seq.wrapping_add(1)).expect("data from ISS + 1");
    assert_eq!(echo.ack, syn2.seq + 1 + 5);
    // Our TSvals go on from the cookie's, never backwards (the peer's PAWS).
    let tsval = echo.options.timestamp.expect("timestamps").tsval;
    assert!(tsval.wrapping_sub(ts.tsval) as i32 >= 0 && tsval.wrapping_sub(ts.tsval) < 2_000);
}

#[test]
fn unmatched_acks_are_not_checked_for_cookies_unless_cookies_went_out_recently() {
    let mut b = cookie_server(1);
    let now = Instant::from_millis(5_000);
    let stray = TcpRepr { src_port: 4001, dst_port: PORT, seq: 1, ack: 2, flags: TcpFlags::ACK, ..TcpRepr::default() };
    assert!(feed(&mut b, now, &tcp_frame_to_b(&stray, b"")).is_some());
    assert_eq!(b.counters().syn_cookies_rejected, 0, "not checked: no cookie was sent");
    assert_eq!(b.counters().resets_sent, 1);
    // Cookies on, then the backlog fills: checked (and refused) for two periods after.
    let _ = feed(&mut b, now, &tcp_frame_to_b(&syn(4000, PORT), b""));
    let _ = feed(&mut b, now, &tcp_frame_to_b(&syn(4002, PORT), b""));
    assert_eq!(b.counters().syn_cookies_sent, 1);
    let _ = feed(&mut b, now + Duration::from_secs(100), &tcp_frame_to_b(&stray, b""));
    assert_eq!(b.counters().syn_cookies_rejected, 1);
    let _ = feed(&mut b, now + Duration::from_secs(200), &tcp_frame_to_b(&stray, b""));
    assert_eq!(b.counters().syn_cookies_rejected, 1, "no longer checked");
    assert_eq!(b.counters().resets_sent, 3);
}

#[test]
fn with_cookies_off_a_full_backlog_drops_syns() {
    let mut c = config(MAC_B, ADDR_B);
    c.syn_backlog = 1;
    c.syn_cookies = false;
    let mut b = Interface::new(c, IsnGenerator::with_key([5, 6]));
    b.listen(PORT).unwrap();
    let now = Instant::from_millis(5_000);
    assert!(feed(&mut b, now, &tcp_frame_to_b(&syn(4000, PORT), b"")).is_none());
    assert!(feed(&mut b, now, &tcp_frame_to_b(&syn(4001, PORT), b"")).is_none());
    assert_eq!((b.counters().syn_cookies_sent, b.counters().drop_backlog_full), (0, 1));
}
