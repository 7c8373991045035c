//! Frames for the AF_XDP tests: minimal IPv4/UDP frames between the two test hosts.
#![allow(dead_code)]

use std::net::Ipv4Addr;

/// Length of a test frame: Ethernet 14 + IPv4 20 + UDP 8 + payload 18 = 60 (the Ethernet
/// minimum without FCS).
pub const FRAME_LEN: usize = 60;
/// Marks a test frame, at the start of the UDP payload.
pub const MAGIC: [u8; 4] = *b"SXA1";
/// UDP port used both ways (discard).
pub const PORT: u16 = 9;

const PAYLOAD: usize = 42;

/// An IPv4/UDP frame from `src` to `dst` carrying `seq`.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src_ip: Ipv4Addr, dst_ip: Ipv4Addr, seq: u64) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4 header.
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    f[22] = 64; // TTL
    f[23] = 17; // UDP
    f[26..30].copy_from_slice(&src_ip.octets());
    f[30..34].copy_from_slice(&dst_ip.octets());
    let checksum = ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&checksum.to_be_bytes());
    // UDP header; checksum 0 (none), allowed over IPv4.
    f[34..36].copy_from_slice(&PORT.to_be_bytes());
    f[36..38].copy_from_slice(&PORT.to_be_bytes());
    f[38..40].copy_from_slice(&((FRAME_LEN - 34) as u16).to_be_bytes());
    f[PAYLOAD..PAYLOAD + 4].copy_from_slice(&MAGIC);
    set_seq(&mut f, seq);
    f
}

/// Writes `seq` into a test frame.
pub fn set_seq(frame: &mut [u8], seq: u64) {
    frame[PAYLOAD + 4..PAYLOAD + 12].copy_from_slice(&seq.to_be_bytes());
}

/// The sequence number of a test frame, or `None` for any other frame.
pub fn test_seq(frame: &[u8]) -> Option<u64> {
    if frame.len() < FRAME_LEN
        || frame[12..14] != [0x08, 0x00]
        || frame[23] != 17
        || frame[PAYLOAD..PAYLOAD + 4] != MAGIC
    {
        return None;
    }
    Some(u64::from_be_bytes(frame[PAYLOAD + 4..PAYLOAD + 12].try_into().ok()?))
}

/// Turns a test frame around in place: swaps MACs and IPv4 addresses (the IPv4 checksum
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
    let mut sum: u32 = header.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
