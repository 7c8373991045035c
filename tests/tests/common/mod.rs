//! Frames for the AF_XDP tests: minimal IPv4/UDP frames between the two test hosts, built by
//! the test kit (`synack_testkit::frames`) with this file's mark and length.
// Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

use std::net::Ipv4Addr;

use synack_testkit::frames::{self, UdpFrame};

pub use synack_testkit::frames::{ipv4_checksum, set_seq, turn_around};

/// Length of a test frame: Ethernet 14 + IPv4 20 + UDP 8 + payload 18 = 60 (the Ethernet
/// minimum without FCS).
pub const FRAME_LEN: usize = 60;
/// Marks a test frame, at the start of the UDP payload.
pub const MAGIC: [u8; 4] = *b"SXA1";
/// UDP port used both ways (discard).
pub const PORT: u16 = 9;

/// An IPv4/UDP frame from `src` to `dst` carrying `seq`.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src_ip: Ipv4Addr, dst_ip: Ipv4Addr, seq: u64) -> [u8; FRAME_LEN] {
    let frame = UdpFrame { dst_mac, src_mac, src_ip, dst_ip, port: PORT, mark: MAGIC }.build(seq, FRAME_LEN);
    frame.try_into().expect("a frame of FRAME_LEN bytes")
}

/// The sequence number of a test frame, or `None` for any other frame.
pub fn test_seq(frame: &[u8]) -> Option<u64> {
    if frame.len() < FRAME_LEN {
        return None;
    }
    frames::marked_seq(frame, &MAGIC)
}
