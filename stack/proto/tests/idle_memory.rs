//! What an idle established connection costs one worker: a million of them, each after a
//! request that was read, held by one `Interface`, measured as resident memory. Run on demand
//! (a few seconds and about a GiB): `cargo test --profile testing -p synack-proto --test
//! idle_memory -- --ignored --nocapture`.

use std::net::Ipv4Addr;

use synack_proto::iface::{AddressMode, App, ConnId, Interface, InterfaceConfig, RxAction, VecSink};
use synack_proto::tcp::{IsnGenerator, TcpConfig};
use synack_proto::time::Instant;
use synack_proto::wire::{
    emit_header, ip_protocol, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, TcpFlags,
    TcpPacket, TcpRepr,
};

const CONNECTIONS: usize = 1 << 20;
const BATCH: usize = 4096;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 80;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: synack\r\n\r\n";

/// Reads every request, answers nothing: the connections stay open, idle.
struct Reader {
    read: usize,
    buf: [u8; 256],
}

impl App for Reader {
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        while let Ok(n) = iface.recv(conn, &mut self.buf) {
            self.read += n;
        }
    }
}

/// The peer of connection `i`: one of 64 addresses, a port from 1024.
fn peer(i: usize) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(10, 1, (i % 64) as u8, 1), 1024 + (i / 64) as u16)
}

fn frame(buf: &mut [u8], src: (Ipv4Addr, u16), repr: &TcpRepr, payload: &[u8]) -> usize {
    let tcp_len = repr.header_len() + payload.len();
    EthernetRepr { src_addr: PEER_MAC, dst_addr: SERVER_MAC, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
    Ipv4Repr { src_addr: src.0, dst_addr: SERVER, protocol: ip_protocol::TCP, payload_len: tcp_len, ttl: 64 }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]));
    buf[34 + repr.header_len()..34 + tcp_len].copy_from_slice(payload);
    emit_header(&mut buf[34..], repr, src.0, SERVER, payload.len());
    34 + tcp_len
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<usize>().ok()).expect("a size in kB") * 1024
}

#[test]
#[ignore = "a GiB and some seconds: run on demand"]
fn a_million_idle_connections_cost_a_slot_each_and_hold_no_ring() {
    let mut config = InterfaceConfig::new(SERVER_MAC, SERVER);
    config.address_mode = AddressMode::Dedicated;
    config.max_connections = CONNECTIONS;
    config.syn_backlog = CONNECTIONS;
    config.max_time_wait = 1;
    config.prefault_bytes = 0;
    config.tcp = TcpConfig { send_buffer_len: 64 * 1024, recv_buffer_len: 64 * 1024, ..TcpConfig::default() };
    let before = rss_bytes();
    let mut iface = Interface::new(config, IsnGenerator::with_key([1, 2]));
    iface.listen(PORT).unwrap();
    let (mut app, mut sink, mut buf) = (Reader { read: 0, buf: [0; 256] }, VecSink::new(), vec![0u8; 2048]);
    let now = Instant::from_millis(1_000);
    for start in (0..CONNECTIONS).step_by(BATCH) {
        for i in start..start + BATCH {
            let syn = TcpRepr {
                src_port: peer(i).1,
                dst_port: PORT,
                seq: 1000,
                flags: TcpFlags::SYN,
                window: 65535,
                ..TcpRepr::default()
            };
            let len = frame(&mut buf, peer(i), &syn, b"");
            assert_eq!(iface.receive(now, &mut buf, len), RxAction::Release);
        }
        iface.poll(now, &mut app, &mut sink);
        assert_eq!(sink.frames.len(), BATCH, "a SYN-ACK each");
        for syn_ack in sink.frames.drain(..) {
            let ip = Ipv4Packet::new_checked(&syn_ack[14..]).unwrap();
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            let (to, port, iss) = (ip.dst_addr(), tcp.dst_port(), tcp.seq_number());
            let ack = TcpRepr {
                src_port: port,
                dst_port: PORT,
                seq: 1001,
                ack: iss.wrapping_add(1),
                flags: TcpFlags::ACK | TcpFlags::PSH,
                window: 65535,
                ..TcpRepr::default()
            };
            let len = frame(&mut buf, (to, port), &ack, REQUEST);
            assert_eq!(iface.receive(now, &mut buf, len), RxAction::Release);
        }
        iface.poll(now, &mut app, &mut sink);
        sink.frames.clear();
    }
    let after = rss_bytes();
    let rings = iface.ring_stats();
    let per_connection = (after - before) as f64 / CONNECTIONS as f64;
    eprintln!(
        "{} idle connections: RSS {:.1} MiB more ({per_connection:.0} bytes each, tables included); rings {rings:?}",
        iface.connection_count(),
        (after - before) as f64 / (1 << 20) as f64
    );
    assert_eq!(iface.connection_count(), CONNECTIONS);
    assert_eq!(app.read, CONNECTIONS * REQUEST.len(), "every request read");
    assert_eq!((rings.send.in_use, rings.recv.in_use), (0, 0), "idle connections hold no ring");
    assert!(per_connection <= 4096.0, "{per_connection:.0} bytes per idle connection");
}
