//! Marked IPv4/UDP test frames: what the AF_XDP tests and the packet-ceiling benchmark send
//! between two namespaces. Each carries, at the start of its UDP payload, a four-byte mark
//! (the user's) and a 64-bit sequence number, so that a receiver counts only its own frames
//! and can tell losses and duplicates apart.
//!
//! ```text
//! Ethernet 14 | IPv4 20 (checksum valid, TTL 64) | UDP 8 (checksum 0: none, allowed over IPv4)
//! | mark 4 | seq 8 | zeros up to the length asked for
//! ```

use std::net::Ipv4Addr;

/// Where the UDP payload starts.
pub const PAYLOAD_OFFSET: usize = 42;
/// The shortest marked frame: headers, mark and sequence number.
pub const MIN_FRAME_LEN: usize = PAYLOAD_OFFSET + 12;
/// The longest: a full frame at MTU 1500 (Ethernet 14 + 1500 bytes of IPv4).
pub const MAX_FRAME_LEN: usize = 1514;

/// Where a frame goes, and how it is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// UDP source and destination port.
    pub port: u16,
    /// The mark at the start of the payload.
    pub mark: [u8; 4],
}

impl UdpFrame {
    /// A frame of `len` bytes (clamped to `MIN_FRAME_LEN..=MAX_FRAME_LEN`) carrying `seq`.
    pub fn build(&self, seq: u64, len: usize) -> Vec<u8> {
        let len = len.clamp(MIN_FRAME_LEN, MAX_FRAME_LEN);
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        // IPv4 header.
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[22] = 64; // TTL
        f[23] = 17; // UDP
        f[26..30].copy_from_slice(&self.src_ip.octets());
        f[30..34].copy_from_slice(&self.dst_ip.octets());
        let checksum = ipv4_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&checksum.to_be_bytes());
        // UDP header; checksum 0 (none), allowed over IPv4.
        f[34..36].copy_from_slice(&self.port.to_be_bytes());
        f[36..38].copy_from_slice(&self.port.to_be_bytes());
        f[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        f[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&self.mark);
        set_seq(&mut f, seq);
        f
    }
}

/// Writes `seq` into a marked frame.
#[inline]
pub fn set_seq(frame: &mut [u8], seq: u64) {
    frame[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 12].copy_from_slice(&seq.to_be_bytes());
}

/// The sequence number of a frame marked with `mark`, or `None` for any other frame (not
/// IPv4/UDP, too short, another mark).
#[inline]
pub fn marked_seq(frame: &[u8], mark: &[u8; 4]) -> Option<u64> {
    if frame.len() < MIN_FRAME_LEN
        || frame[12..14] != [0x08, 0x00]
        || frame[23] != 17
        || frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4] != mark[..]
    {
        return None;
    }
    Some(u64::from_be_bytes(frame[PAYLOAD_OFFSET + 4..PAYLOAD_OFFSET + 12].try_into().ok()?))
}

/// Turns a frame around in place: swaps the MACs and the IPv4 addresses (the IPv4 checksum
/// does not change: the same words are summed).
pub fn turn_around(frame: &mut [u8]) {
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(26 + i, 30 + i);
    }
}

/// The Internet checksum of an IPv4 header (0 when the header's own checksum is right).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 =
        header.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: [u8; 4] = *b"TEST";

    fn frame() -> UdpFrame {
        UdpFrame {
            dst_mac: [2; 6],
            src_mac: [3; 6],
            src_ip: Ipv4Addr::new(198, 18, 9, 2),
            dst_ip: Ipv4Addr::new(198, 18, 9, 1),
            port: 9,
            mark: MARK,
        }
    }

    #[test]
    fn frames_are_well_formed_marked_and_turned_around() {
        let f = frame().build(42, 64);
        assert_eq!(f.len(), 64);
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
        assert_eq!((&f[26..30], &f[30..34]), (&[198, 18, 9, 2][..], &[198, 18, 9, 1][..]));
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 50);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 30);
        assert_eq!(marked_seq(&f, &MARK), Some(42));
        assert_eq!(marked_seq(&f, b"ELSE"), None);
        assert_eq!(marked_seq(&f[..MIN_FRAME_LEN - 1], &MARK), None);
        let mut back = f.clone();
        set_seq(&mut back, 7);
        turn_around(&mut back);
        assert_eq!((&back[0..6], &back[6..12]), (&[3; 6][..], &[2; 6][..]));
        assert_eq!(&back[30..34], &[198, 18, 9, 2]);
        assert_eq!(ipv4_checksum(&back[14..34]), 0);
        assert_eq!(marked_seq(&back, &MARK), Some(7));
        let full = frame().build(1, 9000);
        assert_eq!(full.len(), MAX_FRAME_LEN);
        assert_eq!(u16::from_be_bytes([full[16], full[17]]), 1500);
        assert_eq!(ipv4_checksum(&full[14..34]), 0);
        assert_eq!(frame().build(1, 0).len(), MIN_FRAME_LEN);
    }
}
