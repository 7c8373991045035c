//! ICMPv4 (RFC 792): echo request and reply, and destination unreachable; other types are
//! `Unsupported`.

use super::checksum;
use super::{read_u16, write_u16, ChecksumMode, WireError};

/// Length of the ICMP header: type, code, checksum and the four-byte rest of header.
pub const HEADER_LEN: usize = 8;

/// ICMP message types.
pub mod message {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
}

/// Destination-unreachable codes.
pub mod dst_unreachable {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
}

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQ_NO: usize = 6;
    pub(super) const UNUSED: usize = 4;
    pub(super) const NEXT_HOP_MTU: usize = 6;
    pub(super) const DATA: usize = 8;
}

/// A zero-copy view of an ICMPv4 message; the buffer is exactly the IP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// A view without any check; accessors panic if the buffer is shorter than the header.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// A view of untrusted bytes, after [`Icmpv4Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, WireError> {
        let packet = Icmpv4Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the eight-byte header fits.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
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

    /// Message type (see [`message`]).
    pub fn msg_type(&self) -> u8 {
        self.b()[field::TYPE]
    }
    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.b()[field::CODE]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.b(), field::CHECKSUM)
    }
    /// Identifier of an echo message.
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.b(), field::ECHO_IDENT)
    }
    /// Sequence number of an echo message.
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.b(), field::ECHO_SEQ_NO)
    }
    /// Next-hop MTU of a fragmentation-needed message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.b(), field::NEXT_HOP_MTU)
    }
    /// Everything after the header: echo data, or the original datagram's start.
    pub fn payload(&self) -> &[u8] {
        &self.b()[field::DATA..]
    }
    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.b())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.bm()[field::TYPE] = value;
    }
    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.bm()[field::CODE] = value;
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.bm(), field::CHECKSUM, value);
    }
    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.bm(), field::ECHO_IDENT, value);
    }
    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.bm(), field::ECHO_SEQ_NO, value);
    }
    /// Sets the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.bm(), field::NEXT_HOP_MTU, value);
    }
    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.b());
        self.set_checksum(c);
    }
    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::DATA..]
    }
}

/// A parsed ICMPv4 message; borrows its data from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data to echo.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echoed data.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Why (see [`dst_unreachable`]).
        code: u8,
        /// The next-hop MTU with [`dst_unreachable::FRAG_NEEDED`] (RFC 1191); zero otherwise.
        next_hop_mtu: u16,
        /// The original datagram's IP header and the first eight bytes of its payload.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses a message, verifying its checksum unless `mode` is [`ChecksumMode::Trust`].
    /// Echo messages must have code 0. A destination-unreachable message must quote an
    /// IPv4 header (version 4, IHL at least 5) and eight bytes after it; `data` is cut to
    /// exactly those bytes. Other message types are [`WireError::Unsupported`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        mode: ChecksumMode,
    ) -> Result<Icmpv4Repr<'a>, WireError> {
        packet.check_len()?;
        if mode == ChecksumMode::Verify && !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        // Borrow from the underlying buffer, not from the view, so the repr outlives it.
        let data = packet.buffer.as_ref().get(field::DATA..).unwrap_or_default();
        match packet.msg_type() {
            message::ECHO_REQUEST | message::ECHO_REPLY => {
                if packet.msg_code() != 0 {
                    return Err(WireError::Malformed);
                }
                let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
                Ok(if packet.msg_type() == message::ECHO_REQUEST {
                    Icmpv4Repr::EchoRequest { ident, seq_no, data }
                } else {
                    Icmpv4Repr::EchoReply { ident, seq_no, data }
                })
            }
            message::DST_UNREACHABLE => {
                let &first = data.first().ok_or(WireError::Truncated)?;
                if first >> 4 != 4 {
                    return Err(WireError::Malformed);
                }
                let header_len = usize::from(first & 0x0f) * 4;
                if header_len < 20 {
                    return Err(WireError::Malformed);
                }
                let quoted = data.get(..header_len + 8).ok_or(WireError::Truncated)?;
                Ok(Icmpv4Repr::DstUnreachable {
                    code: packet.msg_code(),
                    next_hop_mtu: packet.next_hop_mtu(),
                    data: quoted,
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    /// The data after the header.
    pub const fn data(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::DstUnreachable { data, .. } => data,
        }
    }

    /// Length of the message `emit` writes: header and data.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message, data included, and its checksum into the front of `packet`.
    ///
    /// Panics if the buffer is shorter than [`Icmpv4Repr::buffer_len`] (a caller's bug).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Icmpv4Packet<&mut T>) {
        let b = &mut packet.buffer.as_mut()[..self.buffer_len()];
        let (msg_type, code, rest_hi, rest_lo) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => (message::ECHO_REQUEST, 0, ident, seq_no),
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => (message::ECHO_REPLY, 0, ident, seq_no),
            Icmpv4Repr::DstUnreachable { code, next_hop_mtu, .. } => (message::DST_UNREACHABLE, code, 0, next_hop_mtu),
        };
        b[field::TYPE] = msg_type;
        b[field::CODE] = code;
        write_u16(b, field::CHECKSUM, 0);
        write_u16(b, field::UNUSED, rest_hi);
        write_u16(b, field::NEXT_HOP_MTU, rest_lo);
        b[field::DATA..].copy_from_slice(self.data());
        let c = checksum::checksum(b);
        write_u16(b, field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ping from Linux: ident 0x1c46, seq 1, 8 bytes of data, checksum computed below.
    fn echo_request() -> Vec<u8> {
        let mut b = vec![8, 0, 0, 0, 0x1c, 0x46, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    /// A port unreachable quoting a UDP datagram's header and its eight-byte UDP header.
    fn port_unreachable() -> Vec<u8> {
        let mut b = vec![3, 3, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ]);
        b.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x5f, 0x12, 0x34]);
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn parses_and_reemits_an_echo_request() {
        let b = echo_request();
        assert_eq!(checksum::checksum(&b), 0, "fill_checksum made the sum all ones");
        let packet = Icmpv4Packet::new_checked(&b[..]).unwrap();
        let repr = Icmpv4Repr::parse(&packet, ChecksumMode::Verify).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest { ident: 0x1c46, seq_no: 1, data: &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4] }
        );
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
    }

    #[test]
    fn parses_a_port_unreachable() {
        let mut b = port_unreachable();
        let quoted = b[8..].to_vec();
        // Extra quoted bytes (RFC 1812 allows more) are cut off.
        b.extend_from_slice(&[0xaa; 12]);
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        let packet = Icmpv4Packet::new_checked(&b[..]).unwrap();
        let repr = Icmpv4Repr::parse(&packet, ChecksumMode::Verify).unwrap();
        assert_eq!(repr, Icmpv4Repr::DstUnreachable { code: dst_unreachable::PORT, next_hop_mtu: 0, data: &quoted });
    }

    #[test]
    fn every_truncation_is_reported() {
        let b = echo_request();
        for len in 0..HEADER_LEN {
            assert_eq!(Icmpv4Packet::new_checked(&b[..len]).err(), Some(WireError::Truncated));
            assert_eq!(
                Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..len]), ChecksumMode::Trust),
                Err(WireError::Truncated)
            );
        }
        let b = port_unreachable();
        for len in HEADER_LEN..b.len() {
            let p = Icmpv4Packet::new_checked(&b[..len]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p, ChecksumMode::Trust), Err(WireError::Truncated), "len {len}");
        }
    }

    #[test]
    fn malformed_messages_get_their_errors() {
        let mut b = echo_request();
        b[12] ^= 1;
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, ChecksumMode::Verify), Err(WireError::BadChecksum));
        assert!(Icmpv4Repr::parse(&p, ChecksumMode::Trust).is_ok());

        for (at, value, error) in [
            (1, 1, WireError::Malformed),    // echo with a code
            (0, 11, WireError::Unsupported), // time exceeded
            (0, 5, WireError::Unsupported),  // redirect
        ] {
            let mut b = echo_request();
            b[at] = value;
            let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p, ChecksumMode::Trust), Err(error), "byte {at} = {value}");
        }
        for (value, error) in [(0x65, WireError::Malformed), (0x44, WireError::Malformed), (0x46, WireError::Truncated)]
        {
            let mut b = port_unreachable();
            b[8] = value;
            let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p, ChecksumMode::Trust), Err(error), "quoted first byte {value:#x}");
        }
    }

    fn arb_quoted() -> impl Strategy<Value = Vec<u8>> {
        (0usize..=10, proptest::collection::vec(any::<u8>(), 68)).prop_map(|(options_words, mut bytes)| {
            bytes[0] = 0x45 + options_words as u8;
            bytes.truncate(20 + options_words * 4 + 8);
            bytes
        })
    }

    proptest! {
        #[test]
        fn echo_round_trips(request: bool, ident: u16, seq_no: u16, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let repr = if request {
                Icmpv4Repr::EchoRequest { ident, seq_no, data: &data }
            } else {
                Icmpv4Repr::EchoReply { ident, seq_no, data: &data }
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Icmpv4Repr::parse(&packet, ChecksumMode::Verify).unwrap(), repr);
        }

        #[test]
        fn unreachable_round_trips(code: u8, next_hop_mtu: u16, data in arb_quoted()) {
            let repr = Icmpv4Repr::DstUnreachable { code, next_hop_mtu, data: &data };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Icmpv4Repr::parse(&packet, ChecksumMode::Verify).unwrap(), repr);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Verify);
            let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Trust);
        }

        #[test]
        fn parse_never_panics_on_unreachables(code: u8, rest in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut bytes = vec![3, code, 0, 0, 0, 0, 0, 0];
            bytes.extend_from_slice(&rest);
            let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Trust);
        }
    }
}
