//! Helpers shared by the integration tests: a root check and frame builders.
//!
//! Frames are built byte by byte here, independent of synack's own wire code,
//! so that the program is tested against the RFC layouts and not against
//! another part of the same project.
#![allow(dead_code)]

use std::net::Ipv4Addr;

/// True when the tests may use BPF; otherwise prints why the test is skipped.
/// CI runs as root, so there they always run.
pub fn have_root() -> bool {
    // Safety: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("SKIP (needs root: BPF_PROG_TEST_RUN)");
    }
    euid == 0
}

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_SYNACK: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet II frame around `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&MAC_SYNACK);
    frame.extend_from_slice(&MAC_PEER);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header fields a test varies; the rest is fixed.
#[derive(Clone)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// Options, a multiple of 4 bytes: IHL = 5 + options.len() / 4.
    pub options: Vec<u8>,
    /// Flags and fragment offset, host order (0x4000 = DF, 0x2000 = MF).
    pub flags_fragment: u16,
    /// Overrides the version nibble (4).
    pub version: u8,
    /// Overrides the IHL nibble computed from `options`.
    pub ihl: Option<u8>,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Ipv4 {
        Ipv4 { src, dst, protocol, options: Vec::new(), flags_fragment: 0x4000, version: 4, ihl: None }
    }

    /// The header followed by `payload`, with a correct header checksum.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0, "options must fill 32-bit words");
        let header_len = 20 + self.options.len();
        let ihl = self.ihl.unwrap_or((header_len / 4) as u8);
        let total_len = (header_len + payload.len()) as u16;
        let mut packet = Vec::with_capacity(header_len + payload.len());
        packet.push(self.version << 4 | (ihl & 0x0f));
        packet.push(0); // DSCP, ECN
        packet.extend_from_slice(&total_len.to_be_bytes());
        packet.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
        packet.extend_from_slice(&self.flags_fragment.to_be_bytes());
        packet.push(64); // TTL
        packet.push(self.protocol);
        packet.extend_from_slice(&[0, 0]); // checksum, below
        packet.extend_from_slice(&self.src.octets());
        packet.extend_from_slice(&self.dst.octets());
        packet.extend_from_slice(&self.options);
        let sum = checksum(&packet[..header_len]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        packet.extend_from_slice(payload);
        packet
    }
}

/// A 20-byte TCP SYN header (no options; checksum left zero, the program does
/// not read it).
pub fn tcp_syn(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut header = Vec::with_capacity(20);
    header.extend_from_slice(&src_port.to_be_bytes());
    header.extend_from_slice(&dst_port.to_be_bytes());
    header.extend_from_slice(&1u32.to_be_bytes()); // sequence number
    header.extend_from_slice(&0u32.to_be_bytes()); // acknowledgment number
    header.push(5 << 4); // data offset
    header.push(0x02); // SYN
    header.extend_from_slice(&65535u16.to_be_bytes()); // window
    header.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    header
}

/// A complete Ethernet/IPv4/TCP SYN frame: 54 bytes without IP options.
pub fn tcp_frame(dst: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    tcp_frame_with(&Ipv4::new(peer_addr(), dst, IPPROTO_TCP), dst_port)
}

pub fn tcp_frame_with(ip: &Ipv4, dst_port: u16) -> Vec<u8> {
    ethernet(ETH_P_IP, &ip.packet(&tcp_syn(40000, dst_port)))
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// An ARP (RFC 826) Ethernet/IPv4 frame from `MAC_PEER`: `op` 1 = request,
/// 2 = reply.
pub fn arp_frame(op: u16, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp_frame_from(op, MAC_PEER, sender, target)
}

/// An ARP frame whose sender hardware address is `sender_mac`.
pub fn arp_frame_from(op: u16, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    arp.extend_from_slice(&ETH_P_IP.to_be_bytes()); // protocol: IPv4
    arp.push(6);
    arp.push(4);
    arp.extend_from_slice(&op.to_be_bytes());
    arp.extend_from_slice(&sender_mac);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet(ETH_P_ARP, &arp)
}

/// An ICMP echo message (RFC 792): `icmp_type` 8 = request, 0 = reply.
pub fn icmp_frame(icmp_type: u8, dst: Ipv4Addr) -> Vec<u8> {
    let mut icmp = vec![icmp_type, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"ping");
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ethernet(ETH_P_IP, &Ipv4::new(peer_addr(), dst, IPPROTO_ICMP).packet(&icmp))
}

/// ICMP fragmentation needed (type 3 code 4, RFC 1191) from a router to `dst`,
/// quoting the IPv4 header `quoted` and the first 8 bytes of a TCP segment
/// from `src_port`.
pub fn frag_needed_frame(dst: Ipv4Addr, quoted: &Ipv4, src_port: u16, mtu: u16) -> Vec<u8> {
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    let segment = quoted.packet(&tcp_syn(src_port, 40000));
    icmp.extend_from_slice(&segment[..segment.len() - 12]);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ethernet(ETH_P_IP, &Ipv4::new(Ipv4Addr::new(198, 18, 0, 254), dst, IPPROTO_ICMP).packet(&icmp))
}

/// Addresses from 198.18.0.0/15, the range reserved for benchmarks.
pub fn owned_addr() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 2)
}

/// Owned in dedicated mode by the tests that need one.
pub fn dedicated_addr() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 4)
}

pub fn other_addr() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 3)
}

pub fn peer_addr() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1)
}
