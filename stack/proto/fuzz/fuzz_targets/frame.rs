//! Fuzzes the receive path's chain: Ethernet, then IPv4, then TCP, ICMPv4 or ARP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_proto::wire::{
    ip_protocol, ArpPacket, ArpRepr, ChecksumMode, EtherType, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the checksum mode, so both paths get explored.
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mode = if mode & 1 == 0 {
        ChecksumMode::Verify
    } else {
        ChecksumMode::Trust
    };
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let Ok(eth) = EthernetRepr::parse(&frame) else {
        return;
    };
    match eth.ethertype {
        EtherType::ARP => {
            if let Ok(packet) = ArpPacket::new_checked(frame.payload()) {
                let _ = ArpRepr::parse(&packet);
            }
        }
        EtherType::IPV4 => {
            let Ok(packet) = Ipv4Packet::new_checked(frame.payload()) else {
                return;
            };
            let Ok(ip) = Ipv4Repr::parse(&packet, mode) else {
                return;
            };
            match ip.protocol {
                ip_protocol::TCP => {
                    if let Ok(segment) = TcpPacket::new_checked(packet.payload()) {
                        let _ = TcpRepr::parse(&segment, ip.src_addr, ip.dst_addr, mode);
                    }
                }
                ip_protocol::ICMP => {
                    if let Ok(message) = Icmpv4Packet::new_checked(packet.payload()) {
                        let _ = Icmpv4Repr::parse(&message, mode);
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
});
