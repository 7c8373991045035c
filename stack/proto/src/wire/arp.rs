//! ARP (RFC 826) for Ethernet and IPv4 only; other hardware or protocols are `Unsupported`.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetAddress};
use super::{read_u16, read_u32, write_u16, write_u32, WireError};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
const HARDWARE_ETHERNET: u16 = 1;

mod field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    /// The addresses start here; their offsets depend on HLEN and PLEN.
    pub(super) const ADDRESSES: usize = 8;
}

/// An ARP operation we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has the target protocol address?
    Request,
    /// The source has the source protocol address.
    Reply,
}

impl ArpOperation {
    /// The operation of a wire value, if it is one we speak.
    pub const fn from_u16(value: u16) -> Option<ArpOperation> {
        match value {
            1 => Some(ArpOperation::Request),
            2 => Some(ArpOperation::Reply),
            _ => None,
        }
    }
    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// A zero-copy view of an ARP packet of any hardware and protocol address lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// A view without any check; accessors panic if the buffer is too short for them.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// A view of untrusted bytes, after [`ArpPacket::check_len`].
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, WireError> {
        let packet = ArpPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed part and the four addresses its lengths announce fit.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::ADDRESSES || len < self.addresses_end() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    fn addresses_end(&self) -> usize {
        field::ADDRESSES + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }
    fn sha_at(&self) -> usize {
        field::ADDRESSES
    }
    fn spa_at(&self) -> usize {
        self.sha_at() + usize::from(self.hardware_len())
    }
    fn tha_at(&self) -> usize {
        self.spa_at() + usize::from(self.protocol_len())
    }
    fn tpa_at(&self) -> usize {
        self.tha_at() + usize::from(self.hardware_len())
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.b(), field::HTYPE)
    }
    /// Protocol type (an EtherType; 0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.b(), field::PTYPE)
    }
    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.b()[field::HLEN]
    }
    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.b()[field::PLEN]
    }
    /// Raw operation.
    pub fn operation(&self) -> u16 {
        read_u16(self.b(), field::OPER)
    }
    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.b()[self.sha_at()..self.spa_at()]
    }
    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.b()[self.spa_at()..self.tha_at()]
    }
    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.b()[self.tha_at()..self.tpa_at()]
    }
    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.b()[self.tpa_at()..self.addresses_end()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.bm(), field::HTYPE, value);
    }
    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        write_u16(self.bm(), field::PTYPE, value);
    }
    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.bm()[field::HLEN] = value;
    }
    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.bm()[field::PLEN] = value;
    }
    /// Sets the raw operation.
    pub fn set_operation(&mut self, value: u16) {
        write_u16(self.bm(), field::OPER, value);
    }
    /// Sets the sender hardware address; `addr` must be `hardware_len()` bytes.
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let (start, end) = (self.sha_at(), self.spa_at());
        self.bm()[start..end].copy_from_slice(addr);
    }
    /// Sets the sender protocol address; `addr` must be `protocol_len()` bytes.
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let (start, end) = (self.spa_at(), self.tha_at());
        self.bm()[start..end].copy_from_slice(addr);
    }
    /// Sets the target hardware address; `addr` must be `hardware_len()` bytes.
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let (start, end) = (self.tha_at(), self.tpa_at());
        self.bm()[start..end].copy_from_slice(addr);
    }
    /// Sets the target protocol address; `addr` must be `protocol_len()` bytes.
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let (start, end) = (self.tpa_at(), self.addresses_end());
        self.bm()[start..end].copy_from_slice(addr);
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address (ignored in a request; zero by convention).
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an ARP packet. Hardware other than Ethernet, protocols other than IPv4, and
    /// operations other than request and reply are [`WireError::Unsupported`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ArpPacket<&T>) -> Result<ArpRepr, WireError> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != EtherType::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        let operation = ArpOperation::from_u16(packet.operation()).ok_or(WireError::Unsupported)?;
        // The lengths are 6 and 4 and check_len passed: the fixed offsets below are in bounds.
        let b = packet.b();
        let mac = |at: usize| EthernetAddress([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]);
        Ok(ArpRepr {
            operation,
            source_hardware_addr: mac(8),
            source_protocol_addr: Ipv4Addr::from(read_u32(b, 14)),
            target_hardware_addr: mac(18),
            target_protocol_addr: Ipv4Addr::from(read_u32(b, 24)),
        })
    }

    /// Length of the packet `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the front of `packet`.
    ///
    /// Panics if the buffer is shorter than [`PACKET_LEN`] (a caller's bug).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut ArpPacket<&mut T>) {
        let b = &mut packet.buffer.as_mut()[..PACKET_LEN];
        write_u16(b, field::HTYPE, HARDWARE_ETHERNET);
        write_u16(b, field::PTYPE, EtherType::IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        write_u16(b, field::OPER, self.operation.to_u16());
        b[8..14].copy_from_slice(&self.source_hardware_addr.0);
        write_u32(b, 14, u32::from(self.source_protocol_addr));
        b[18..24].copy_from_slice(&self.target_hardware_addr.0);
        write_u32(b, 24, u32::from(self.target_protocol_addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "Who has 192.168.1.1? Tell 192.168.1.100", as captured, with Ethernet padding.
    const REQUEST: [u8; 46] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet, IPv4, 6, 4, request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 192, 168, 1, 100, // sender
        0, 0, 0, 0, 0, 0, 192, 168, 1, 1, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn parses_a_request() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                source_protocol_addr: Ipv4Addr::new(192, 168, 1, 100),
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: Ipv4Addr::new(192, 168, 1, 1),
            }
        );
        assert_eq!(packet.target_protocol_addr(), &[192, 168, 1, 1]);
        let mut out = [0u8; PACKET_LEN];
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out[..], REQUEST[..PACKET_LEN]);
    }

    #[test]
    fn every_truncation_is_reported() {
        for len in 0..PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&REQUEST[..len]).err(), Some(WireError::Truncated), "len {len}");
            assert_eq!(ArpRepr::parse(&ArpPacket::new_unchecked(&REQUEST[..len])), Err(WireError::Truncated));
        }
        // Announced lengths beyond the buffer are truncation too.
        let mut long = REQUEST;
        long[4] = 255;
        assert_eq!(ArpPacket::new_checked(&long[..]).err(), Some(WireError::Truncated));
    }

    #[test]
    fn other_hardware_protocols_and_operations_are_unsupported() {
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16), (7, 3), (7, 0)] {
            let mut b = [0u8; 64];
            b[..46].copy_from_slice(&REQUEST);
            b[at] = value;
            let packet = ArpPacket::new_checked(&b[..]).unwrap();
            assert_eq!(ArpRepr::parse(&packet), Err(WireError::Unsupported), "byte {at} = {value}");
        }
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(reply: bool, sha: [u8; 6], spa: u32, tha: [u8; 6], tpa: u32) {
            let repr = ArpRepr {
                operation: if reply { ArpOperation::Reply } else { ArpOperation::Request },
                source_hardware_addr: EthernetAddress(sha),
                source_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            };
            let mut buf = [0u8; PACKET_LEN];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            let packet = ArpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&packet).unwrap(), repr);
            prop_assert_eq!(packet.source_hardware_addr(), &sha[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&bytes[..]));
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.source_hardware_addr(), p.source_protocol_addr(), p.target_hardware_addr(), p.target_protocol_addr());
            }
        }

        #[test]
        fn parse_never_panics_on_plausible_headers(hlen: u8, plen: u8, rest in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = vec![0, 1, 8, 0, hlen, plen, 0, 1];
            bytes.extend_from_slice(&rest);
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&bytes[..]));
        }
    }
}
