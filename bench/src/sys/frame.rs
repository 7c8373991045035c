//! The frames of the packet-ceiling measurement: 64-byte IPv4/UDP frames from the client
//! namespace to the discard port (9) of the server namespace, marked so that the receiver
//! counts only them.

use std::net::Ipv4Addr;

/// Length of a ceiling frame: Ethernet 14 + IPv4 20 + UDP 8 + payload 22 = 64 bytes (veth
/// carries no FCS).
pub const FRAME_LEN: usize = 64;
/// UDP port both ways: discard. Nothing listens there; the receiver's XDP program takes the
/// frames before the kernel would drop them.
pub const DISCARD_PORT: u16 = 9;
/// Marks a ceiling frame, at the start of the UDP payload.
pub const MAGIC: [u8; 4] = *b"SXSB";

const PAYLOAD: usize = 42;

/// A ceiling frame from `src` to `dst` carrying sequence number `seq`.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src_ip: Ipv4Addr, dst_ip: Ipv4Addr, seq: u64) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    f[22] = 64; // TTL
    f[23] = 17; // UDP
    f[26..30].copy_from_slice(&src_ip.octets());
    f[30..34].copy_from_slice(&dst_ip.octets());
    let checksum = ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&checksum.to_be_bytes());
    f[34..36].copy_from_slice(&DISCARD_PORT.to_be_bytes());
    f[36..38].copy_from_slice(&DISCARD_PORT.to_be_bytes());
    f[38..40].copy_from_slice(&((FRAME_LEN - 34) as u16).to_be_bytes());
    // UDP checksum 0: none, allowed over IPv4.
    f[PAYLOAD..PAYLOAD + 4].copy_from_slice(&MAGIC);
    set_seq(&mut f, seq);
    f
}

/// Writes `seq` into a ceiling frame.
#[inline]
pub fn set_seq(frame: &mut [u8], seq: u64) {
    frame[PAYLOAD + 4..PAYLOAD + 12].copy_from_slice(&seq.to_be_bytes());
}

/// True for a ceiling frame.
#[inline]
pub fn is_ceiling_frame(frame: &[u8]) -> bool {
    frame.len() >= FRAME_LEN && frame[12..14] == [0x08, 0x00] && frame[23] == 17 && frame[PAYLOAD..PAYLOAD + 4] == MAGIC
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

    #[test]
    fn frames_are_well_formed_and_stay_in_range() {
        let src = Ipv4Addr::new(198, 18, 9, 2);
        let dst = Ipv4Addr::new(198, 18, 9, 1);
        let frame = udp_frame([2; 6], [3; 6], src, dst, 42);
        assert_eq!(frame.len(), 64);
        assert_eq!(ipv4_checksum(&frame[14..34]), 0);
        assert_eq!(&frame[30..34], &dst.octets());
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 50);
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 30);
        assert!(is_ceiling_frame(&frame));
        assert!(!is_ceiling_frame(&frame[..60]));
        let mut other = frame;
        other[PAYLOAD] = b'X';
        assert!(!is_ceiling_frame(&other));
    }
}
