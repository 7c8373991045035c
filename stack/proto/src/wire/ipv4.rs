//! IPv4 headers (RFC 791): options skipped, fragments reported rather than reassembled.

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, ChecksumMode, WireError};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Length of the largest IPv4 header.
pub const MAX_HEADER_LEN: usize = 60;

/// IP protocol numbers.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

mod field {
    use core::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLAGS_FRAG_OFFSET: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC_ADDR: usize = 12;
    pub(super) const DST_ADDR: usize = 16;
}

const FLAG_DONT_FRAGMENT: u16 = 0x4000;
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without any check; accessors panic if the buffer is too short for them.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// A view of untrusted bytes, after [`Ipv4Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let packet = Ipv4Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version (the other checks read version-4 fields), that the header its IHL
    /// announces fits, and that the total length covers the header and fits in the buffer.
    /// Bytes past the total length (Ethernet padding) are allowed and ignored.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::Malformed);
        }
        if total_len > len {
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
    fn flags_frag_offset(&self) -> u16 {
        read_u16(self.b(), field::FLAGS_FRAG_OFFSET)
    }

    /// IP version.
    pub fn version(&self) -> u8 {
        self.b()[field::VER_IHL] >> 4
    }
    /// Header length in bytes, from the IHL.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }
    /// The DSCP and ECN byte (formerly TOS).
    pub fn dscp_ecn(&self) -> u8 {
        self.b()[field::DSCP_ECN]
    }
    /// Total length of header and payload.
    pub fn total_len(&self) -> u16 {
        read_u16(self.b(), field::LENGTH)
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.b(), field::IDENT)
    }
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag_offset() & FLAG_DONT_FRAGMENT != 0
    }
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_frag_offset() & FLAG_MORE_FRAGMENTS != 0
    }
    /// Fragment offset in bytes (the field counts units of eight).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag_offset() & FRAG_OFFSET_MASK) << 3
    }
    /// Whether this is a piece of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.flags_frag_offset() & (FLAG_MORE_FRAGMENTS | FRAG_OFFSET_MASK) != 0
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }
    /// Protocol of the payload (see [`protocol`]).
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.b(), field::CHECKSUM.start)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.b(), field::SRC_ADDR))
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.b(), field::DST_ADDR))
    }
    /// The option bytes, skipped by the parser.
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }
    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.b()[..self.header_len()])) == 0xffff
    }
    /// The payload: exactly `total_len - header_len` bytes, without any link padding.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets version 4 and the header length in bytes (a multiple of four, 20 to 60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.bm()[field::VER_IHL] = 0x40 | (header_len / 4) as u8 & 0x0f;
    }
    /// Sets the DSCP and ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.bm()[field::DSCP_ECN] = value;
    }
    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.bm(), field::LENGTH, value);
    }
    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.bm(), field::IDENT, value);
    }
    /// Sets the flags and fragment offset: `frag_offset` in bytes, a multiple of eight.
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, frag_offset: u16) {
        let mut value = (frag_offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            value |= FLAG_DONT_FRAGMENT;
        }
        if more_frags {
            value |= FLAG_MORE_FRAGMENTS;
        }
        write_u16(self.bm(), field::FLAGS_FRAG_OFFSET, value);
    }
    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.bm()[field::TTL] = value;
    }
    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: u8) {
        self.bm()[field::PROTOCOL] = value;
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.bm(), field::CHECKSUM.start, value);
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.bm(), field::SRC_ADDR, u32::from(addr));
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.bm(), field::DST_ADDR, u32::from(addr));
    }
    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let c = checksum::checksum(&self.b()[..header_len]);
        self.set_checksum(c);
    }
    /// The payload, writable: exactly `total_len - header_len` bytes.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.bm()[start..end]
    }
}

/// Whether routers may fragment a datagram we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fragmentation {
    /// DF set: path MTU discovery (RFC 1191), the default.
    DontFragment,
    /// DF clear, for a path whose MTU is below what we will go down to: routers fragment.
    Allowed {
        /// The identification field (RFC 6864 4.1).
        ident: u16,
    },
}

/// A parsed IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload (see [`protocol`]).
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Parses a header: version 4, IHL at least 5, a total length that covers the header and
    /// fits the buffer, and the header checksum unless `checksum` is [`ChecksumMode::Trust`].
    /// Options are skipped. A fragment that is otherwise valid is [`WireError::Fragment`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Ipv4Packet<&T>,
        checksum: ChecksumMode,
    ) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        if checksum == ChecksumMode::Verify && !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Fragment);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
        })
    }

    /// Length of the header `emit` writes: always 20, as we emit no options.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the header `emit` writes (same as [`Ipv4Repr::buffer_len`]).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with DF set, identification 0, DSCP/ECN 0 and the header
    /// checksum. The payload is the caller's.
    ///
    /// Panics if the buffer is shorter than 20 bytes or `payload_len` exceeds 65515 (a
    /// caller's bug).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Ipv4Packet<&mut T>) {
        self.emit_with_flags(packet, Fragmentation::DontFragment);
    }

    /// [`Ipv4Repr::emit`] with the choice of DF: [`Fragmentation::Allowed`] clears it and
    /// writes `ident` as the identification, which RFC 6864 4.1 wants unique among the
    /// fragmentable datagrams to one destination in flight (a DF datagram is atomic and
    /// needs none).
    pub fn emit_with_flags<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Ipv4Packet<&mut T>,
        fragmentation: Fragmentation,
    ) {
        let total_len = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 payload over 65515 bytes");
        let (ident, flags) = match fragmentation {
            Fragmentation::DontFragment => (0, FLAG_DONT_FRAGMENT),
            Fragmentation::Allowed { ident } => (ident, 0),
        };
        let b = &mut packet.buffer.as_mut()[..HEADER_LEN];
        b[field::VER_IHL] = 0x45;
        b[field::DSCP_ECN] = 0;
        write_u16(b, field::LENGTH, total_len);
        write_u16(b, field::IDENT, ident);
        write_u16(b, field::FLAGS_FRAG_OFFSET, flags);
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol;
        write_u16(b, field::CHECKSUM.start, 0);
        write_u32(b, field::SRC_ADDR, u32::from(self.src_addr));
        write_u32(b, field::DST_ADDR, u32::from(self.dst_addr));
        let c = checksum::checksum(b);
        write_u16(b, field::CHECKSUM.start, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A captured UDP packet's header: 192.168.0.1 -> 192.168.0.199, DF, TTL 64, checksum b861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    fn packet() -> Vec<u8> {
        let mut b = HEADER.to_vec();
        b.extend((0..0x73 - 20).map(|i| i as u8));
        b
    }

    fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.fill_checksum();
        b
    }

    #[test]
    fn parses_a_known_header() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(p.dont_frag() && !p.is_fragment());
        let repr = Ipv4Repr::parse(&p, ChecksumMode::Verify).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src_addr: Ipv4Addr::new(192, 168, 0, 1),
                dst_addr: Ipv4Addr::new(192, 168, 0, 199),
                protocol: protocol::UDP,
                payload_len: 0x73 - 20,
                ttl: 64,
            }
        );
        // Our emit writes exactly the captured header (DF, ident 0, TOS 0).
        let mut out = [0u8; 20];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HEADER);
        // Fragmentable: DF clear, the identification written, the checksum still right.
        let mut b = packet();
        repr.emit_with_flags(&mut Ipv4Packet::new_unchecked(&mut b[..20]), Fragmentation::Allowed { ident: 0xbeef });
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!p.dont_frag() && !p.is_fragment() && p.verify_checksum());
        assert_eq!(b[4..8], [0xbe, 0xef, 0, 0]);
    }

    #[test]
    fn payload_ignores_link_padding() {
        let mut b = HEADER.to_vec();
        b[3] = 26; // six bytes of payload
        let mut b = with_checksum(b);
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0, 0, 0]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Verify).unwrap().payload_len, 6);
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn options_are_skipped() {
        let mut b = HEADER.to_vec();
        b[0] = 0x46;
        b[3] = 28; // 24 of header, 4 of payload
        b.extend_from_slice(&[0x94, 0x04, 0, 0]); // router alert
        b.extend_from_slice(&[9, 9, 9, 9]);
        let b = with_checksum(b);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Verify).unwrap().payload_len, 4);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
    }

    #[test]
    fn every_truncation_is_reported() {
        let b = packet();
        for len in 0..b.len() {
            assert_eq!(Ipv4Packet::new_checked(&b[..len]).err(), Some(WireError::Truncated), "len {len}");
            let p = Ipv4Packet::new_unchecked(&b[..len]);
            assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Trust), Err(WireError::Truncated));
        }
    }

    #[test]
    fn malformed_headers_get_their_errors() {
        let cases: [(usize, u8, WireError); 6] = [
            (0, 0x65, WireError::BadVersion),
            (0, 0x44, WireError::Malformed), // IHL 4
            (0, 0x40, WireError::Malformed), // IHL 0
            (0, 0x4f, WireError::Truncated), // a 60-byte header in a 40-byte buffer
            (3, 19, WireError::Malformed),   // total length below the header
            (3, 41, WireError::Truncated),   // total length past the buffer
        ];
        for (at, value, error) in cases {
            let mut b = HEADER.to_vec();
            b[3] = 40;
            b.resize(40, 0);
            b[at] = value;
            assert_eq!(Ipv4Packet::new_checked(&b[..]).err(), Some(error), "byte {at} = {value:#x}");
            assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&b[..]), ChecksumMode::Trust), Err(error));
        }
    }

    #[test]
    fn bad_checksum_unless_trusted() {
        let mut b = packet();
        b[8] = 63; // TTL changed, checksum not
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Verify), Err(WireError::BadChecksum));
        assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Trust).unwrap().ttl, 63);
    }

    #[test]
    fn fragments_are_reported() {
        for (flags_offset, fragment) in
            [(0x4000u16, false), (0x2000, true), (0x0001, true), (0x3fff, true), (0x8000, false)]
        {
            let mut b = packet();
            b[6..8].copy_from_slice(&flags_offset.to_be_bytes());
            let b = with_checksum(b);
            let p = Ipv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(p.is_fragment(), fragment);
            assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Verify).err(), fragment.then_some(WireError::Fragment));
        }
        let mut b = packet();
        Ipv4Packet::new_unchecked(&mut b[..]).set_flags_and_frag_offset(false, true, 1480);
        let p = Ipv4Packet::new_unchecked(&b[..]);
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(src: u32, dst: u32, protocol: u8, ttl: u8,
                                       payload in proptest::collection::vec(any::<u8>(), 0..64),
                                       padding in 0usize..20) {
            let repr = Ipv4Repr {
                src_addr: Ipv4Addr::from(src),
                dst_addr: Ipv4Addr::from(dst),
                protocol,
                payload_len: payload.len(),
                ttl,
            };
            let mut buf = vec![0u8; repr.buffer_len() + payload.len() + padding];
            buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(&payload);
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p, ChecksumMode::Verify).unwrap(), repr);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Verify);
            let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Trust);
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (p.payload(), p.options(), p.verify_checksum(), p.frag_offset());
            }
        }

        #[test]
        fn parse_never_panics_on_plausible_headers(ihl in 0u8..16, total_len: u16,
                                                   rest in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut bytes = vec![0x40 | ihl, 0];
            bytes.extend_from_slice(&total_len.to_be_bytes());
            bytes.extend_from_slice(&rest);
            let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Trust);
        }
    }
}
