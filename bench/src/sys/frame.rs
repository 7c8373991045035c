//! The frames of the packet-ceiling measurement: 64-byte (and full-size, 1514-byte) IPv4/UDP
//! frames from the client namespace to the discard port (9) of the server namespace, marked so
//! that the receiver counts only them.

use std::net::Ipv4Addr;

use synack_testkit::frames::{self, UdpFrame};

pub use synack_testkit::frames::{ipv4_checksum, set_seq};

/// Length of a ceiling frame: Ethernet 14 + IPv4 20 + UDP 8 + payload 22 = 64 bytes (veth
/// carries no FCS).
pub const FRAME_LEN: usize = 64;
/// A full-size frame at MTU 1500: Ethernet 14 + 1500 bytes of IPv4 (what a TCP segment of MSS
/// 1460 fills; 1448 bytes of payload with timestamps).
pub const FULL_FRAME_LEN: usize = frames::MAX_FRAME_LEN;
/// UDP port both ways: discard. Nothing listens there; the receiver's XDP program takes the
/// frames before the kernel would drop them.
pub const DISCARD_PORT: u16 = 9;
/// Marks a ceiling frame, at the start of the UDP payload.
pub const MAGIC: [u8; 4] = *b"SXSB";

/// A ceiling frame of `len` bytes (`FRAME_LEN..=FULL_FRAME_LEN`) from `src` to `dst` carrying
/// sequence number `seq` (the test kit's marked frame).
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    seq: u64,
    len: usize,
) -> Vec<u8> {
    let frame = UdpFrame { dst_mac, src_mac, src_ip, dst_ip, port: DISCARD_PORT, mark: MAGIC };
    frame.build(seq, len.clamp(FRAME_LEN, FULL_FRAME_LEN))
}

/// True for a ceiling frame.
#[inline]
pub fn is_ceiling_frame(frame: &[u8]) -> bool {
    frame.len() >= FRAME_LEN && frames::marked_seq(frame, &MAGIC).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_well_formed_and_stay_in_range() {
        let src = Ipv4Addr::new(198, 18, 9, 2);
        let dst = Ipv4Addr::new(198, 18, 9, 1);
        let frame = udp_frame([2; 6], [3; 6], src, dst, 42, FRAME_LEN);
        assert_eq!(frame.len(), 64);
        assert_eq!(ipv4_checksum(&frame[14..34]), 0);
        assert_eq!(&frame[30..34], &dst.octets());
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 50);
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 30);
        assert!(is_ceiling_frame(&frame));
        assert!(!is_ceiling_frame(&frame[..60]));
        let mut other = frame;
        other[frames::PAYLOAD_OFFSET] = b'X';
        assert!(!is_ceiling_frame(&other));
        let full = udp_frame([2; 6], [3; 6], src, dst, 42, FULL_FRAME_LEN);
        assert_eq!(full.len(), 1514);
        assert_eq!(ipv4_checksum(&full[14..34]), 0);
        assert_eq!(u16::from_be_bytes([full[16], full[17]]), 1500);
        assert_eq!(u16::from_be_bytes([full[38], full[39]]), 1480);
        assert!(is_ceiling_frame(&full));
    }
}
