//! TCP segments (RFC 9293 3.1) and their options: MSS, window scale, SACK-permitted, SACK
//! blocks, timestamps, NOP and EOL.

use core::ops::{BitAnd, BitOr, BitOrAssign};
use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::protocol;
use super::{read_u16, read_u32, write_u16, write_u32, ChecksumMode, WireError};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Length of the largest TCP header.
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header holds.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URGENT: usize = 18;
    pub(super) const OPTIONS: usize = 20;
}

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub(super) const EOL: u8 = 0;
    pub(super) const NOP: u8 = 1;
    pub(super) const MSS: u8 = 2;
    pub(super) const WINDOW_SCALE: u8 = 3;
    pub(super) const SACK_PERMITTED: u8 = 4;
    pub(super) const SACK: u8 = 5;
    pub(super) const TIMESTAMP: u8 = 8;
}

/// The eight TCP control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// No flags.
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }
    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// Both sets of flags.
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

/// One SACK block: the sequence numbers `[left, right)` were received (RFC 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SackBlock {
    /// First sequence number of the block.
    pub left: u32,
    /// Sequence number just past the block.
    pub right: u32,
}

/// Up to four SACK blocks, without allocation.
///
/// Equality compares the live blocks only, not stale slots past `len`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [SackBlock; 4],
    len: u8,
}

impl SackBlocks {
    /// Most blocks an option can carry.
    pub const CAPACITY: usize = 4;

    /// No blocks.
    pub const fn new() -> SackBlocks {
        SackBlocks { blocks: [SackBlock { left: 0, right: 0 }; 4], len: 0 }
    }
    /// Appends a block; false when four are held already.
    pub fn push(&mut self, block: SackBlock) -> bool {
        match self.blocks.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = block;
                self.len += 1;
                true
            }
            None => false,
        }
    }
    /// The blocks, first pushed first.
    pub fn as_slice(&self) -> &[SackBlock] {
        &self.blocks[..usize::from(self.len)]
    }
    /// How many blocks.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Removes every block.
    pub fn clear(&mut self) {
        self.len = 0;
    }
    /// Keeps the first `len` blocks.
    pub fn truncate(&mut self, len: usize) {
        if len < usize::from(self.len) {
            self.len = len as u8;
        }
    }
}

impl PartialEq for SackBlocks {
    fn eq(&self, other: &SackBlocks) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

/// The timestamps option (RFC 7323 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Timestamp {
    /// TSval: the sender's clock.
    pub tsval: u32,
    /// TSecr: the echo of the peer's latest TSval.
    pub tsecr: u32,
}

/// The options we understand; others are skipped when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift as received (SYN only; the core clamps it to 14).
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// SACK blocks; `emit` drops blocks from the end that do not fit in 40 bytes.
    pub sack_blocks: SackBlocks,
    /// Timestamps.
    pub timestamp: Option<Timestamp>,
}

impl TcpOptions {
    /// Bytes of the options other than SACK blocks, each group NOP-aligned to four bytes
    /// (the layout Linux uses, so that the timestamps sit on a 32-bit boundary).
    fn fixed_len(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let window_scale = if self.window_scale.is_some() { 4 } else { 0 }; // NOP, WS
        let sack_permitted_and_timestamp = match (self.sack_permitted, self.timestamp.is_some()) {
            (_, true) => 12,    // SACKOK or NOP NOP, then TS
            (true, false) => 4, // NOP NOP SACKOK
            (false, false) => 0,
        };
        mss + window_scale + sack_permitted_and_timestamp
    }

    /// How many SACK blocks `emit` writes: as many as fit beside the other options.
    fn sack_blocks_fit(&self, fixed_len: usize) -> usize {
        // NOP NOP, kind, length, then 8 bytes a block. The other options take at most 20
        // bytes, so at least two blocks always fit.
        let room = MAX_OPTIONS_LEN - fixed_len - 4;
        self.sack_blocks.len().min(room / 8)
    }

    /// Bytes the options take on the wire, padded to a multiple of four, at most 40.
    pub fn buffer_len(&self) -> usize {
        let fixed_len = self.fixed_len();
        if self.sack_blocks.is_empty() {
            return fixed_len;
        }
        match self.sack_blocks_fit(fixed_len) {
            0 => fixed_len,
            blocks => fixed_len + 4 + 8 * blocks,
        }
    }

    /// Writes the options into `buf`, which is exactly `buffer_len()` bytes. Order: MSS,
    /// window scale, SACK-permitted, timestamps, SACK blocks.
    fn emit(&self, buf: &mut [u8]) {
        // Fast path: the options of every segment after the handshake, NOP NOP TS.
        if let (Some(ts), None, None, false, true) =
            (self.timestamp, self.mss, self.window_scale, self.sack_permitted, self.sack_blocks.is_empty())
        {
            if let Ok(b) = <&mut [u8; 12]>::try_from(&mut *buf) {
                let [v0, v1, v2, v3] = ts.tsval.to_be_bytes();
                let [e0, e1, e2, e3] = ts.tsecr.to_be_bytes();
                *b = [kind::NOP, kind::NOP, kind::TIMESTAMP, 10, v0, v1, v2, v3, e0, e1, e2, e3];
                return;
            }
        }
        let mut at = 0;
        if let Some(mss) = self.mss {
            buf[at..at + 2].copy_from_slice(&[kind::MSS, 4]);
            write_u16(buf, at + 2, mss);
            at += 4;
        }
        if let Some(shift) = self.window_scale {
            buf[at..at + 4].copy_from_slice(&[kind::NOP, kind::WINDOW_SCALE, 3, shift]);
            at += 4;
        }
        match (self.sack_permitted, self.timestamp) {
            (sack_permitted, Some(ts)) => {
                let lead = if sack_permitted { [kind::SACK_PERMITTED, 2] } else { [kind::NOP, kind::NOP] };
                buf[at..at + 4].copy_from_slice(&[lead[0], lead[1], kind::TIMESTAMP, 10]);
                write_u32(buf, at + 4, ts.tsval);
                write_u32(buf, at + 8, ts.tsecr);
                at += 12;
            }
            (true, None) => {
                buf[at..at + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
                at += 4;
            }
            (false, None) => {}
        }
        let blocks = self.sack_blocks_fit(at);
        if blocks > 0 {
            buf[at..at + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * blocks) as u8]);
            at += 4;
            for block in &self.sack_blocks.as_slice()[..blocks] {
                write_u32(buf, at, block.left);
                write_u32(buf, at + 4, block.right);
                at += 8;
            }
        }
        debug_assert_eq!(at, buf.len());
    }

    /// Parses the option bytes of a header into a new value (see `parse_into`).
    #[cfg(test)]
    fn parse(bytes: &[u8]) -> Result<TcpOptions, WireError> {
        let mut options = TcpOptions::default();
        TcpOptions::parse_into(bytes, &mut options)?;
        Ok(options)
    }

    /// Parses the option bytes of a header (at most 40, so lengths cannot overflow) into
    /// `options`, which holds the defaults. Filling the caller's value in place rather than
    /// returning a new one saves copying the options (most of a `TcpRepr`) on every segment.
    fn parse_into(bytes: &[u8], options: &mut TcpOptions) -> Result<(), WireError> {
        // Fast path: an established Linux connection (and synack) sends exactly NOP NOP TS on
        // every segment.
        if let Some((&[kind::NOP, kind::NOP, kind::TIMESTAMP, 10], ts)) = bytes.split_first_chunk::<4>() {
            if let Ok(&[a0, a1, a2, a3, e0, e1, e2, e3]) = <&[u8; 8]>::try_from(ts) {
                options.timestamp = Some(Timestamp {
                    tsval: u32::from_be_bytes([a0, a1, a2, a3]),
                    tsecr: u32::from_be_bytes([e0, e1, e2, e3]),
                });
                return Ok(());
            }
        }
        let mut rest = bytes;
        loop {
            let (len, body) = match rest {
                [] | [kind::EOL, ..] => break,
                [kind::NOP, tail @ ..] => {
                    rest = tail;
                    continue;
                }
                [_] => return Err(WireError::BadOption),
                [_, len, ..] => {
                    let len = usize::from(*len);
                    if len < 2 || len > rest.len() {
                        return Err(WireError::BadOption);
                    }
                    (len, &rest[2..len])
                }
            };
            match rest[0] {
                kind::MSS => match body {
                    &[hi, lo] => options.mss = Some(u16::from_be_bytes([hi, lo])),
                    _ => return Err(WireError::BadOption),
                },
                kind::WINDOW_SCALE => match body {
                    &[shift] => options.window_scale = Some(shift),
                    _ => return Err(WireError::BadOption),
                },
                kind::SACK_PERMITTED => match body {
                    [] => options.sack_permitted = true,
                    _ => return Err(WireError::BadOption),
                },
                kind::SACK => {
                    if body.is_empty() || body.len() % 8 != 0 || body.len() > 8 * SackBlocks::CAPACITY {
                        return Err(WireError::BadOption);
                    }
                    options.sack_blocks.clear();
                    for block in body.chunks_exact(8) {
                        options.sack_blocks.push(SackBlock { left: read_u32(block, 0), right: read_u32(block, 4) });
                    }
                }
                kind::TIMESTAMP => {
                    if body.len() != 8 {
                        return Err(WireError::BadOption);
                    }
                    options.timestamp = Some(Timestamp { tsval: read_u32(body, 0), tsecr: read_u32(body, 4) });
                }
                // Unknown kinds are skipped by their length (RFC 9293 3.2).
                _ => {}
            }
            rest = &rest[len..];
        }
        Ok(())
    }
}

/// A zero-copy view of a TCP segment: header, options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without any check; accessors panic if the buffer is too short for them.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// A view of untrusted bytes, after [`TcpPacket::check_len`].
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let packet = TcpPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header fits ([`WireError::Truncated`]) and that the data offset
    /// is at least five words and within the segment ([`WireError::Malformed`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.b().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(WireError::Malformed);
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

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.b(), field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.b(), field::DST_PORT)
    }
    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(self.b(), field::SEQ)
    }
    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        read_u32(self.b(), field::ACK)
    }
    /// Header length in bytes, from the data offset.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::DATA_OFFSET] >> 4) * 4
    }
    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.b()[field::FLAGS])
    }
    /// Raw window field, unscaled.
    pub fn window_len(&self) -> u16 {
        read_u16(self.b(), field::WINDOW)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.b(), field::CHECKSUM)
    }
    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.b(), field::URGENT)
    }
    /// The option bytes.
    pub fn options(&self) -> &[u8] {
        &self.b()[field::OPTIONS..self.header_len()]
    }
    /// The payload: everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
    /// Whether the checksum over pseudo-header, header and payload is right. A buffer longer
    /// than any IP payload can be fails.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.b();
        let Ok(len) = u16::try_from(b.len()) else {
            return false;
        };
        let sum = checksum::pseudo_header(src, dst, protocol::TCP, len) + checksum::sum(b);
        checksum::fold(sum) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.bm(), field::SRC_PORT, value);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.bm(), field::DST_PORT, value);
    }
    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.bm(), field::SEQ, value);
    }
    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.bm(), field::ACK, value);
    }
    /// Sets the header length in bytes (a multiple of four, 20 to 60).
    pub fn set_header_len(&mut self, header_len: usize) {
        self.bm()[field::DATA_OFFSET] = ((header_len / 4) as u8) << 4;
    }
    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.bm()[field::FLAGS] = flags.bits();
    }
    /// Sets the raw window field.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.bm(), field::WINDOW, value);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.bm(), field::CHECKSUM, value);
    }
    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.bm(), field::URGENT, value);
    }
    /// Computes and writes the checksum over pseudo-header and the whole buffer.
    ///
    /// Panics if the buffer is longer than 65535 bytes (a caller's bug).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.b();
        let len = u16::try_from(b.len()).expect("TCP segment over 65535 bytes");
        let c = !checksum::fold(checksum::pseudo_header(src, dst, protocol::TCP, len) + checksum::sum(b));
        self.set_checksum(c);
    }
    /// The option bytes, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.bm()[field::OPTIONS..header_len]
    }
    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.bm()[header_len..]
    }
}

/// A parsed TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number: meaningful only with ACK set; emitted as given.
    pub ack: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Raw 16-bit window field, unscaled.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Parses a TCP segment whose buffer is exactly the IP payload, verifying the checksum
    /// against the pseudo-header unless `mode` is [`ChecksumMode::Trust`].
    ///
    /// Options: NOP and EOL are handled and unknown kinds skipped by their length. A length
    /// below 2 or past the header, a wrong fixed length for MSS (4), window scale (3),
    /// SACK-permitted (2) or timestamps (10), or a SACK length other than 2 + 8n with n in
    /// 1..=4 is [`WireError::BadOption`]. A data offset below five words or past the segment
    /// is [`WireError::Malformed`], a segment shorter than 20 bytes [`WireError::Truncated`].
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        mode: ChecksumMode,
    ) -> Result<TcpRepr, WireError> {
        // The checks of `check_len`, on a fixed-size view of the header so that the field
        // reads below need no bounds checks.
        let b = packet.b();
        let Some(h) = b.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        let header_len = usize::from(h[field::DATA_OFFSET] >> 4) * 4;
        if header_len < HEADER_LEN || header_len > b.len() {
            return Err(WireError::Malformed);
        }
        if mode == ChecksumMode::Verify && !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let mut repr = TcpRepr {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            flags: TcpFlags(h[field::FLAGS]),
            window: u16::from_be_bytes([h[14], h[15]]),
            urgent: u16::from_be_bytes([h[18], h[19]]),
            options: TcpOptions::default(),
        };
        if header_len > HEADER_LEN {
            TcpOptions::parse_into(&b[HEADER_LEN..header_len], &mut repr.options)?;
        }
        Ok(repr)
    }

    /// Length of the header `emit` writes: 20 plus the options' `buffer_len()`.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Length of the segment: header and `payload_len` bytes of payload.
    pub fn buffer_len(&self, payload_len: usize) -> usize {
        self.header_len() + payload_len
    }

    /// Writes the header and options into the front of `packet`, whose payload of
    /// `payload_len` bytes is already in place at `header_len()`, then the checksum over
    /// pseudo-header, header and payload. When the options do not fit in 40 bytes, SACK
    /// blocks are dropped from the end until they do (beside timestamps, three fit).
    ///
    /// Panics if the buffer is shorter than `buffer_len(payload_len)` or the segment is longer
    /// than 65535 bytes (a caller's bug).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut TcpPacket<&mut T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload_len: usize,
    ) {
        emit_header(packet.buffer.as_mut(), self, src, dst, payload_len);
    }
}

/// [`TcpRepr::emit`] for callers that hold a plain buffer: writes `repr`'s header and options
/// at the front of `buf`, where `payload_len` bytes of payload already follow at
/// `repr.header_len()`, and the checksum. Returns the length of the whole segment,
/// `repr.buffer_len(payload_len)` (the header's length is `repr.header_len()`).
///
/// Panics if `buf` is shorter than `repr.buffer_len(payload_len)` or the segment is longer
/// than 65535 bytes (a caller's bug).
// Inlined into each of the core's few call sites (data, pure ACK, SYN, RST): the call and
// its register saves cost about 17 instructions a segment, and each site's options are
// partly known there (callgrind: 10,958 -> 10,739 instructions per connection lifecycle).
#[inline(always)]
pub fn emit_header(buf: &mut [u8], repr: &TcpRepr, src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> usize {
    let options_len = repr.options.buffer_len();
    let header_len = HEADER_LEN + options_len;
    let total_len = header_len + payload_len;
    let len = u16::try_from(total_len).expect("TCP segment over 65535 bytes");
    let b = &mut buf[..total_len];
    // The fixed header is built in a register-sized array (no bounds checks) and stored at
    // once; the checksum field is zero while the sum is taken.
    let [s0, s1] = repr.src_port.to_be_bytes();
    let [d0, d1] = repr.dst_port.to_be_bytes();
    let [q0, q1, q2, q3] = repr.seq.to_be_bytes();
    let [a0, a1, a2, a3] = repr.ack.to_be_bytes();
    let [w0, w1] = repr.window.to_be_bytes();
    let [u0, u1] = repr.urgent.to_be_bytes();
    let offset = ((header_len / 4) as u8) << 4;
    let header = [s0, s1, d0, d1, q0, q1, q2, q3, a0, a1, a2, a3, offset, repr.flags.bits(), w0, w1, 0, 0, u0, u1];
    let Some((fixed, rest)) = b.split_first_chunk_mut::<HEADER_LEN>() else {
        unreachable!("a segment is at least a fixed header long")
    };
    *fixed = header;
    repr.options.emit(&mut rest[..options_len]);
    let sum = checksum::pseudo_header(src, dst, protocol::TCP, len) + checksum::sum(b);
    write_u16(b, field::CHECKSUM, !checksum::fold(sum));
    total_len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A SYN laid out as Linux sends one: port 48598 -> 80, MSS 1460, SACK-permitted,
    /// timestamps, NOP, window scale 7, window 64240; checksum 0x0786 for 10.0.0.1 -> 10.0.0.2.
    const LINUX_SYN: [u8; 40] = [
        0xbd, 0xd6, 0x00, 0x50, 0x5c, 0x3a, 0x19, 0x8e, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x07, 0x86,
        0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x8e, 0x2b, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    fn emit_to_vec(repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len(payload.len())];
        buf[repr.header_len()..].copy_from_slice(payload);
        let n = emit_header(&mut buf, repr, SRC, DST, payload.len());
        assert_eq!(n, buf.len());
        buf
    }

    fn parse(bytes: &[u8]) -> Result<TcpRepr, WireError> {
        TcpRepr::parse(&TcpPacket::new_unchecked(bytes), SRC, DST, ChecksumMode::Verify)
    }

    fn parse_trusted(bytes: &[u8]) -> Result<TcpRepr, WireError> {
        TcpRepr::parse(&TcpPacket::new_unchecked(bytes), SRC, DST, ChecksumMode::Trust)
    }

    /// A 20-byte header followed by `options`, with a right checksum.
    fn segment_with_options(options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 20];
        b[12] = (((20 + options.len()) / 4) as u8) << 4;
        b.extend_from_slice(options);
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum(SRC, DST);
        b
    }

    #[test]
    fn parses_a_linux_syn() {
        let p = TcpPacket::new_checked(&LINUX_SYN[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST), "the captured checksum is right");
        let r = TcpRepr::parse(&p, SRC, DST, ChecksumMode::Verify).unwrap();
        assert_eq!((r.src_port, r.dst_port, r.seq, r.ack), (48598, 80, 0x5c3a_198e, 0));
        assert_eq!((r.flags, r.window, r.urgent), (TcpFlags::SYN, 64240, 0));
        assert_eq!(
            r.options,
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                sack_blocks: SackBlocks::new(),
                timestamp: Some(Timestamp { tsval: 0x8e2b_6f6c, tsecr: 0 }),
            }
        );
        assert!(p.payload().is_empty());
        // Our layout of the same options is as long as Linux's and round-trips.
        assert_eq!(r.header_len(), 40);
        assert_eq!(parse(&emit_to_vec(&r, &[])).unwrap(), r);
    }

    #[test]
    fn emits_a_known_layout() {
        let mut r = TcpRepr {
            src_port: 80,
            dst_port: 48598,
            seq: 1,
            ack: 2,
            flags: TcpFlags::ACK,
            window: 502,
            ..TcpRepr::default()
        };
        r.options.timestamp = Some(Timestamp { tsval: 0x0102_0304, tsecr: 0x0506_0708 });
        r.options.sack_blocks.push(SackBlock { left: 0x11, right: 0x22 });
        let b = emit_to_vec(&r, b"hi");
        assert_eq!(
            &b[20..44],
            &[
                1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, // NOP NOP TS
                1, 1, 5, 10, 0, 0, 0, 0x11, 0, 0, 0, 0x22, // NOP NOP SACK
            ]
        );
        assert_eq!(b[12], 11 << 4);
        assert_eq!(&b[44..], b"hi");
        assert_eq!(checksum::fold(checksum::pseudo_header(SRC, DST, 6, 46) + checksum::sum(&b)), 0xffff);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), b"hi");
        assert_eq!(p.options().len(), 24);
    }

    #[test]
    fn bad_checksum_unless_trusted() {
        let mut b = LINUX_SYN;
        b[16] ^= 0xff;
        assert_eq!(parse(&b), Err(WireError::BadChecksum));
        assert_eq!(parse_trusted(&b).unwrap().options.mss, Some(1460));
        // The pseudo-header counts: other addresses, other checksum.
        let p = TcpPacket::new_checked(&LINUX_SYN[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, DST, DST, ChecksumMode::Verify), Err(WireError::BadChecksum));
    }

    #[test]
    fn every_truncation_is_reported() {
        for len in 0..HEADER_LEN {
            assert_eq!(TcpPacket::new_checked(&LINUX_SYN[..len]).err(), Some(WireError::Truncated), "len {len}");
            assert_eq!(parse_trusted(&LINUX_SYN[..len]), Err(WireError::Truncated));
        }
        // Past 20 bytes the data offset (40) points past the segment.
        for len in HEADER_LEN..LINUX_SYN.len() {
            assert_eq!(TcpPacket::new_checked(&LINUX_SYN[..len]).err(), Some(WireError::Malformed), "len {len}");
            assert_eq!(parse_trusted(&LINUX_SYN[..len]), Err(WireError::Malformed));
        }
    }

    #[test]
    fn bad_data_offsets_are_malformed() {
        for offset in [0u8, 1, 4, 11, 15] {
            let mut b = LINUX_SYN;
            b[12] = offset << 4;
            assert_eq!(TcpPacket::new_checked(&b[..]).err(), Some(WireError::Malformed), "offset {offset}");
            assert_eq!(parse_trusted(&b), Err(WireError::Malformed));
        }
    }

    #[test]
    fn malformed_option_lengths_are_rejected() {
        let cases: &[&[u8]] = &[
            &[2],                      // kind without a length
            &[2, 0],                   // length 0
            &[2, 1],                   // length 1
            &[30, 1],                  // length 1 on an unknown kind
            &[30, 200],                // past the header
            &[2, 3, 0],                // MSS too short
            &[2, 5, 0, 0, 0],          // MSS too long
            &[3, 2],                   // window scale too short
            &[3, 4, 0, 0],             // window scale too long
            &[4, 3, 0],                // SACK-permitted too long
            &[8, 8, 0, 0, 0, 0, 0, 0], // timestamps too short
            &[8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[5, 2], // SACK with no block
            &[5, 9, 0, 0, 0, 0, 0, 0, 0],
            &[5, 26, 0, 0, 0, 0, 0, 0, 0, 0], // three blocks announced, one present
            &[1, 1, 1, 2],                    // NOPs then a truncated MSS
        ];
        for &bad in cases {
            let mut options = bad.to_vec();
            options.resize(options.len().div_ceil(4) * 4, 1); // pad with NOPs
            assert_eq!(TcpOptions::parse(&options), Err(WireError::BadOption), "{bad:?}");
            let b = segment_with_options(&options);
            assert_eq!(parse(&b), Err(WireError::BadOption), "{bad:?}");
        }
    }

    #[test]
    fn five_sack_blocks_are_rejected() {
        // 42 bytes cannot sit in a header; the parser rejects them on their own too.
        let mut options = vec![5, 42];
        options.resize(42, 0);
        assert_eq!(TcpOptions::parse(&options), Err(WireError::BadOption));
    }

    #[test]
    fn unknown_options_are_skipped_and_eol_ends_the_list() {
        // Unknown kind 30 of length 4, MSS, EOL, then garbage that must be ignored.
        let options = [30, 4, 1, 2, 2, 4, 5, 180, 0, 9, 9, 9];
        let r = parse(&segment_with_options(&options)).unwrap();
        assert_eq!(r.options, TcpOptions { mss: Some(1460), ..TcpOptions::default() });
        // A later option of the same kind wins; four SACK blocks parse.
        let r = parse(&segment_with_options(&[3, 3, 2, 3, 3, 9, 1, 1])).unwrap();
        assert_eq!(r.options.window_scale, Some(9));
        let mut options = vec![1, 1, 5, 34];
        for i in 0..8u32 {
            options.extend_from_slice(&i.to_be_bytes());
        }
        let r = parse(&segment_with_options(&options)).unwrap();
        assert_eq!(r.options.sack_blocks.len(), 4);
        assert_eq!(r.options.sack_blocks.as_slice()[3], SackBlock { left: 6, right: 7 });
    }

    #[test]
    fn timestamp_fast_path_matches_the_general_parser() {
        let options = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let fast = TcpOptions::parse(&options).unwrap();
        let slow = TcpOptions::parse(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1]).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast.timestamp, Some(Timestamp { tsval: 1, tsecr: 2 }));
    }

    #[test]
    fn sack_blocks_are_cut_to_fit() {
        let mut r = TcpRepr::default();
        for i in 0..4 {
            r.options.sack_blocks.push(SackBlock { left: i * 10, right: i * 10 + 5 });
        }
        assert!(!r.options.sack_blocks.push(SackBlock::default()), "a fifth block does not fit");
        assert_eq!(r.header_len(), 20 + 4 + 32);
        r.options.timestamp = Some(Timestamp { tsval: 1, tsecr: 2 });
        assert_eq!(r.header_len(), 20 + 12 + 4 + 24);
        let back = parse(&emit_to_vec(&r, &[])).unwrap();
        assert_eq!(back.options.sack_blocks.as_slice(), &r.options.sack_blocks.as_slice()[..3]);
        r.options.mss = Some(1460);
        r.options.window_scale = Some(7);
        r.options.sack_permitted = true;
        assert_eq!(r.header_len(), 60);
        let back = parse(&emit_to_vec(&r, &[])).unwrap();
        assert_eq!(back.options.sack_blocks.len(), 2);
    }

    #[test]
    fn flags_compose() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::ACK) && !f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert_eq!((f & TcpFlags::SYN).bits(), 0x02);
        let mut g = TcpFlags::empty();
        g |= TcpFlags::FIN;
        assert_eq!(g, TcpFlags::FIN);
        assert_eq!(TcpFlags::CWR.union(TcpFlags::ECE).bits(), 0xc0);
    }

    #[test]
    fn sack_blocks_compare_live_blocks_only() {
        let mut a = SackBlocks::new();
        a.push(SackBlock { left: 1, right: 2 });
        a.push(SackBlock { left: 3, right: 4 });
        a.truncate(1);
        let mut b = SackBlocks::new();
        b.push(SackBlock { left: 1, right: 2 });
        assert_eq!(a, b);
        a.clear();
        assert_eq!(a, SackBlocks::default());
        assert!(a.is_empty());
    }

    #[test]
    fn setters_write_the_fields() {
        let mut b = [0u8; 24];
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_number(3);
        p.set_ack_number(4);
        p.set_header_len(24);
        p.set_flags(TcpFlags::RST);
        p.set_window_len(5);
        p.set_urgent_at(6);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.fill_checksum(SRC, DST);
        let r = parse(&b).unwrap();
        assert_eq!(
            (r.src_port, r.dst_port, r.seq, r.ack, r.flags, r.window, r.urgent),
            (1, 2, 3, 4, TcpFlags::RST, 5, 6)
        );
    }

    fn arb_repr() -> impl Strategy<Value = TcpRepr> {
        (
            any::<(u16, u16, u32, u32, u8, u16, u16)>(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        )
            .prop_map(
                |(
                    (src_port, dst_port, seq, ack, flags, window, urgent),
                    mss,
                    window_scale,
                    sack_permitted,
                    ts,
                    sacks,
                )| {
                    let mut options = TcpOptions {
                        mss,
                        window_scale,
                        sack_permitted,
                        timestamp: ts.map(|(tsval, tsecr)| Timestamp { tsval, tsecr }),
                        ..TcpOptions::default()
                    };
                    for (left, right) in sacks {
                        options.sack_blocks.push(SackBlock { left, right });
                    }
                    // Keep only the blocks that fit, so that the round trip is exact.
                    let fit = options.sack_blocks_fit(options.fixed_len());
                    options.sack_blocks.truncate(fit);
                    TcpRepr { src_port, dst_port, seq, ack, flags: TcpFlags(flags), window, urgent, options }
                },
            )
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(repr in arb_repr(), payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let buf = emit_to_vec(&repr, &payload);
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.header_len(), repr.header_len());
            prop_assert!(repr.header_len() <= MAX_HEADER_LEN && repr.header_len() % 4 == 0);
            prop_assert_eq!(TcpRepr::parse(&p, SRC, DST, ChecksumMode::Verify).unwrap(), repr);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn emit_via_packet_matches_emit_header(repr in arb_repr(), payload in proptest::collection::vec(any::<u8>(), 0..20)) {
            let expected = emit_to_vec(&repr, &payload);
            let mut buf = vec![0xaa; expected.len()];
            buf[repr.header_len()..].copy_from_slice(&payload);
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), SRC, DST, payload.len());
            prop_assert_eq!(buf, expected);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse(&bytes);
            let _ = parse_trusted(&bytes);
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (p.options(), p.payload());
            }
        }

        #[test]
        fn option_parse_never_panics(options in proptest::collection::vec(any::<u8>(), 0..=40)) {
            let _ = TcpOptions::parse(&options);
        }

        #[test]
        fn option_parse_never_panics_on_plausible_options(
            options in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(5), Just(8), Just(10), any::<u8>()],
                0..=40)
        ) {
            let _ = TcpOptions::parse(&options);
        }
    }
}
