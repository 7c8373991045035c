//! ICMP fragmentation-needed (RFC 1191) checked against the connection (RFC 5927).

use super::*;
use crate::tcp::MIN_PATH_MTU;
use crate::wire::icmpv4::dst_unreachable;
use crate::wire::TcpOptions;

/// A connects to B:40000 announcing MSS 1460, crafted; returns A, its app and the connection.
fn established(now: Instant) -> (Interface, Acceptor, ConnId) {
    let mut a = iface(MAC_A, ADDR_A);
    a.listen(PORT).unwrap();
    let mut app = Acceptor::default();
    let mut syn = syn(40000, PORT);
    syn.options = TcpOptions { mss: Some(1460), ..TcpOptions::default() };
    accept_handshake(&mut a, &mut app, now, &syn);
    let id = app.0[0];
    (a, app, id)
}

/// The data segments among `frames`: (sequence number, payload length).
fn data_segments(frames: &[Vec<u8>]) -> Vec<(u32, usize)> {
    frames
        .iter()
        .map(|f| {
            let (ip, tcp) = parse_tcp(f);
            (tcp.seq, ip.payload_len - tcp.header_len())
        })
        .filter(|&(_, len)| len > 0)
        .collect()
}

/// A router's fragmentation-needed to A about the segment A sent to B from `from_port`
/// starting at `seq`, with `mtu` as the next hop's MTU.
fn frag_needed(from_port: u16, seq: u32, mtu: u16) -> Vec<u8> {
    let router = Ipv4Addr::new(198, 18, 0, 254);
    let mut quoted = [0u8; 28];
    Ipv4Repr {
        src_addr: ADDR_A,
        dst_addr: ADDR_B,
        protocol: crate::wire::ip_protocol::TCP,
        payload_len: 1440,
        ttl: 63,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut quoted[..20]));
    quoted[20..22].copy_from_slice(&from_port.to_be_bytes());
    quoted[22..24].copy_from_slice(&40000u16.to_be_bytes());
    quoted[24..28].copy_from_slice(&seq.to_be_bytes());
    let icmp_len = 8 + quoted.len();
    let mut frame = vec![0u8; 34 + icmp_len];
    EthernetRepr { src_addr: MAC_B, dst_addr: MAC_A, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..14]));
    Ipv4Repr {
        src_addr: router,
        dst_addr: ADDR_A,
        protocol: crate::wire::ip_protocol::ICMP,
        payload_len: icmp_len,
        ttl: 64,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..34]));
    Icmpv4Repr::DstUnreachable { code: dst_unreachable::FRAG_NEEDED, next_hop_mtu: mtu, data: &quoted }
        .emit(&mut Icmpv4Packet::new_unchecked(&mut frame[34..]));
    frame
}

fn send_mss(a: &Interface) -> u16 {
    a.connections().next().expect("one connection").send_mss()
}

/// 8 KiB sent by A in 1460-byte segments, none acknowledged: returns the segments.
fn in_flight(a: &mut Interface, app: &mut Acceptor, id: ConnId, now: Instant) -> Vec<(u32, usize)> {
    a.send(id, &[7u8; 8192]).unwrap();
    let mut sink = VecSink::new();
    a.poll(now, app, &mut sink);
    let sent = data_segments(&sink.frames);
    assert_eq!(sent.iter().map(|s| s.1).sum::<usize>(), 8192);
    assert_eq!(sent[0].1, 1460);
    sent
}

#[test]
fn frag_needed_for_data_in_flight_shrinks_the_segments_and_resends_them() {
    let now = Instant::from_millis(1000);
    let (mut a, mut app, id) = established(now);
    let sent = in_flight(&mut a, &mut app, id, now);
    // About the third segment: in SND.UNA..SND.MAX.
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[2].0, 1000)), None);
    assert_eq!(a.counters().icmp_frag_needed, 1);
    assert_eq!(send_mss(&a), 1000 - 40);
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    let resent = data_segments(&sink.frames);
    assert_eq!(resent.first().map(|s| s.0), Some(sent[0].0), "from SND.UNA, at once: {resent:?}");
    assert!(resent.iter().all(|&(_, len)| len <= 960), "{resent:?}");
    assert_eq!(resent.iter().map(|s| s.1).sum::<usize>(), 8192, "everything in flight again");
    assert!(sink.frames.iter().all(|f| f.len() <= 14 + 1000), "every frame fits the path");
    // A second message for the same path changes nothing; a larger MTU never raises it.
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[0].0, 1000)), None);
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[0].0, 1500)), None);
    assert_eq!(send_mss(&a), 960);
    assert_eq!(a.counters().drop_icmp_frag_needed, 2);
    // A tiny MTU is taken as the floor, not followed into one-byte segments (RFC 5927 7.2).
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[0].0, 100)), None);
    assert_eq!(send_mss(&a), MIN_PATH_MTU - 40);
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    assert!(data_segments(&sink.frames).iter().all(|&(_, len)| len <= usize::from(MIN_PATH_MTU - 40)));
}

#[test]
fn forged_frag_needed_outside_the_data_in_flight_is_ignored() {
    let now = Instant::from_millis(1000);
    let (mut a, mut app, id) = established(now);
    let sent = in_flight(&mut a, &mut app, id, now);
    let una = sent[0].0;
    let max = una.wrapping_add(8192);
    for (seq, mtu, from_port) in [
        (max, 1000, PORT),                       // SND.MAX: nothing sent there yet
        (max.wrapping_add(100_000), 1000, PORT), // far ahead
        (una.wrapping_sub(1), 1000, PORT),       // already acknowledged (the SYN)
        (una, 1000, PORT + 1),                   // no such connection
        (una, 0, PORT),                          // no MTU: a pre-RFC 1191 router
    ] {
        assert_eq!(feed(&mut a, now, &frag_needed(from_port, seq, mtu)), None);
    }
    assert_eq!(a.counters().drop_icmp_frag_needed, 5);
    assert_eq!(a.counters().icmp_frag_needed, 0);
    assert_eq!(send_mss(&a), 1460);
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    assert!(data_segments(&sink.frames).is_empty(), "nothing resent: {:?}", data_segments(&sink.frames));
    // A corrupted message is a checksum drop, never looked at.
    let mut bad = frag_needed(PORT, una, 1000);
    bad[34 + 8 + 24] ^= 1;
    assert_eq!(feed(&mut a, now, &bad), None);
    assert_eq!(a.counters().drop_bad_checksum, 1);
    assert_eq!(send_mss(&a), 1460);
}

/// The frames to B's `port` among `frames`: (DF set, IPv4 identification, frame length,
/// payload length).
fn frames_to(frames: &[Vec<u8>], port: u16) -> Vec<(bool, u16, usize, usize)> {
    frames
        .iter()
        .filter_map(|f| {
            let (ip, tcp) = parse_tcp(f);
            let header = Ipv4Packet::new_checked(&f[14..]).unwrap();
            let df = header.dont_frag();
            let ident = u16::from_be_bytes([f[14 + 4], f[14 + 5]]);
            (tcp.dst_port == port).then_some((df, ident, f.len() - 14, ip.payload_len - tcp.header_len()))
        })
        .collect()
}

#[test]
fn a_path_mtu_below_the_floor_clears_df_for_that_connection_only() {
    let now = Instant::from_millis(1000);
    let (mut a, mut app, id) = established(now);
    let mut other = syn(40001, PORT);
    other.options = TcpOptions { mss: Some(1460), ..TcpOptions::default() };
    accept_handshake(&mut a, &mut app, now, &other);
    let other_id = app.0[1];
    let sent = in_flight(&mut a, &mut app, id, now);

    // At the floor itself: smaller segments, DF kept (the path may really be 552 wide).
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[0].0, MIN_PATH_MTU)), None);
    assert_eq!((a.counters().icmp_frag_needed, a.counters().pmtu_df_cleared), (1, 0));
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    let resent = frames_to(&sink.frames, 40000);
    assert!(!resent.is_empty() && resent.iter().all(|&(df, _, len, _)| df && len <= 552), "{resent:?}");

    // Narrower than the floor: the MSS is already there, but every full segment is still
    // dropped on that link (the old NotSmaller answer stalled the connection). DF goes,
    // the flight is sent again, and the segment size stays at the floor.
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[0].0, 500)), None);
    assert_eq!((a.counters().icmp_frag_needed, a.counters().pmtu_df_cleared), (2, 1));
    assert_eq!(send_mss(&a), MIN_PATH_MTU - 40);
    a.send(other_id, &[9u8; 4096]).unwrap();
    let mut sink = VecSink::new();
    a.poll(now, &mut app, &mut sink);
    let narrow = frames_to(&sink.frames, 40000);
    assert_eq!(narrow.iter().map(|f| f.3).sum::<usize>(), 8192, "the flight again: {narrow:?}");
    assert!(narrow.iter().all(|&(df, _, len, _)| !df && len <= usize::from(MIN_PATH_MTU)), "{narrow:?}");
    let mut idents: Vec<u16> = narrow.iter().map(|f| f.1).collect();
    idents.sort_unstable();
    idents.dedup();
    assert_eq!(idents.len(), narrow.len(), "fragmentable datagrams need distinct identifications: {narrow:?}");
    let wide = frames_to(&sink.frames, 40001);
    assert_eq!(wide.iter().map(|f| f.3).sum::<usize>(), 4096, "{wide:?}");
    assert!(wide.iter().all(|&(df, ident, _, _)| df && ident == 0), "the other connection keeps DF: {wide:?}");
    assert_eq!(wide[0].3, 1460, "and its segment size: {wide:?}");

    // Once cleared, a still smaller report changes nothing.
    assert_eq!(feed(&mut a, now, &frag_needed(PORT, sent[0].0, 400)), None);
    assert_eq!((a.counters().pmtu_df_cleared, a.counters().drop_icmp_frag_needed), (1, 1));
}
