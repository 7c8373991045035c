//! Replies written in place over the received frame: RSTs, ACKs of TIME_WAIT records, ARP
//! and ICMP echo replies, and the link and network headers of everything we send.

use std::net::Ipv4Addr;

use super::{Interface, ARP_FRAME_LEN, ETH_LEN, L4_OFFSET};
use crate::iface::app::RxAction;
use crate::wire::{
    emit_header, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Fragmentation,
    Ipv4Packet, Ipv4Repr, TcpRepr,
};

impl Interface {
    pub(super) fn reply_reset(
        &mut self,
        buf: &mut [u8],
        dst_mac: EthernetAddress,
        dst: Ipv4Addr,
        rst: Option<TcpRepr>,
    ) -> RxAction {
        match rst {
            Some(rst) => {
                self.counters.resets_sent += 1;
                self.reply_tcp(buf, dst_mac, dst, &rst)
            }
            None => {
                self.counters.drop_rst_ignored += 1;
                RxAction::Release
            }
        }
    }

    pub(super) fn reply_tcp(
        &mut self,
        buf: &mut [u8],
        dst_mac: EthernetAddress,
        dst: Ipv4Addr,
        repr: &TcpRepr,
    ) -> RxAction {
        let tcp_len = repr.header_len();
        if buf.len() < L4_OFFSET + tcp_len {
            self.counters.drop_truncated += 1;
            return RxAction::Release;
        }
        self.write_l2_l3(buf, dst_mac, dst, crate::wire::ip_protocol::TCP, tcp_len);
        let n = emit_header(&mut buf[L4_OFFSET..], repr, self.config.addr, dst, 0);
        RxAction::Transmit(L4_OFFSET + n)
    }

    /// Writes the Ethernet and a 20-byte IPv4 header for a packet from us to `dst`.
    #[inline]
    pub(super) fn write_l2_l3(
        &self,
        buf: &mut [u8],
        dst_mac: EthernetAddress,
        dst: Ipv4Addr,
        protocol: u8,
        payload_len: usize,
    ) {
        let l3 = L3 {
            src_mac: self.config.mac,
            dst_mac,
            src: self.config.addr,
            dst,
            ttl: self.config.ttl,
            fragmentation: Fragmentation::DontFragment,
        };
        l3.write(buf, protocol, payload_len);
    }

    pub(super) fn write_arp(&self, buf: &mut [u8], dst_mac: EthernetAddress, arp: &ArpRepr) {
        write_arp(buf, self.config.mac, dst_mac, arp);
    }
}

/// The link and network headers of a packet we send.
pub(super) struct L3 {
    pub(super) src_mac: EthernetAddress,
    pub(super) dst_mac: EthernetAddress,
    pub(super) src: Ipv4Addr,
    pub(super) dst: Ipv4Addr,
    pub(super) ttl: u8,
    /// DF, or not for a connection whose path is narrower than `tcp::MIN_PATH_MTU`.
    pub(super) fragmentation: Fragmentation,
}

impl L3 {
    /// Writes the Ethernet header and a 20-byte IPv4 header before `payload_len` bytes.
    #[inline]
    pub(super) fn write(&self, buf: &mut [u8], protocol: u8, payload_len: usize) {
        let eth = EthernetRepr { src_addr: self.src_mac, dst_addr: self.dst_mac, ethertype: EtherType::IPV4 };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..ETH_LEN]));
        let ip = Ipv4Repr { src_addr: self.src, dst_addr: self.dst, protocol, payload_len, ttl: self.ttl };
        ip.emit_with_flags(&mut Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..L4_OFFSET]), self.fragmentation);
    }
}

/// Writes an ARP packet with its Ethernet header.
pub(super) fn write_arp(buf: &mut [u8], src_mac: EthernetAddress, dst_mac: EthernetAddress, arp: &ArpRepr) {
    let eth = EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EtherType::ARP };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..ETH_LEN]));
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_LEN..ARP_FRAME_LEN]));
}
