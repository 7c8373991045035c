//! Zero-copy wire formats: views over frames, parsed representations, checksums.
//!
//! Each protocol has a `XxxPacket<T: AsRef<[u8]>>` view (a table of field offsets over a
//! borrowed or owned buffer) and a `XxxRepr` with `parse`, `emit` and `buffer_len`:
//!
//! | layer    | view                                | representation      |
//! |----------|-------------------------------------|---------------------|
//! | Ethernet | [`EthernetFrame`]                   | [`EthernetRepr`]    |
//! | ARP      | [`ArpPacket`]                       | [`ArpRepr`]         |
//! | IPv4     | [`Ipv4Packet`]                      | [`Ipv4Repr`]        |
//! | ICMPv4   | [`Icmpv4Packet`]                    | [`Icmpv4Repr`]      |
//! | TCP      | [`TcpPacket`]                       | [`TcpRepr`]         |
//!
//! `new_checked` and every `parse` validate lengths first, so no input bytes make them panic,
//! and nothing here allocates: malformed input gets a small `Copy` [`WireError`]. The
//! accessors of a view made with `new_unchecked` may panic on a buffer too short for them;
//! that constructor is for buffers the stack built itself.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{protocol as ip_protocol, Fragmentation, Ipv4Packet, Ipv4Repr};
pub use std::net::Ipv4Addr;
pub use tcp::{
    emit_header, SackBlock, SackBlocks, TcpFlags, TcpOptions, TcpPacket, TcpRepr, Timestamp,
    HEADER_LEN as TCP_HEADER_LEN, MAX_HEADER_LEN,
};

/// Why bytes did not parse. Tiny and `Copy`: it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header or a length field says.
    Truncated,
    /// A field holds an impossible value.
    Malformed,
    /// The checksum does not match.
    BadChecksum,
    /// Not the protocol version we speak.
    BadVersion,
    /// A TCP option with a malformed length.
    BadOption,
    /// An IPv4 fragment (not reassembled).
    Fragment,
    /// A valid but unsupported variant (e.g. ARP for other hardware).
    Unsupported,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::Malformed => "malformed",
            WireError::BadChecksum => "bad checksum",
            WireError::BadVersion => "bad version",
            WireError::BadOption => "bad option",
            WireError::Fragment => "fragment",
            WireError::Unsupported => "unsupported",
        })
    }
}

impl std::error::Error for WireError {}

/// Whether parsing verifies checksums (the default) or trusts them: veth peers with TX
/// checksum offload send partial checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Verify every checksum.
    #[default]
    Verify,
    /// Trust checksums (for peers that offload them).
    Trust,
}

/// Reads a big-endian `u16` at `at`; the caller has checked the length.
#[inline(always)]
fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian `u32` at `at`; the caller has checked the length.
#[inline(always)]
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a big-endian `u16` at `at`.
#[inline(always)]
fn write_u16(b: &mut [u8], at: usize, value: u16) {
    b[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
#[inline(always)]
fn write_u32(b: &mut [u8], at: usize, value: u32) {
    b[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_and_are_std_errors() {
        let e: &dyn std::error::Error = &WireError::BadChecksum;
        assert_eq!(e.to_string(), "bad checksum");
        assert_eq!(ChecksumMode::default(), ChecksumMode::Verify);
    }
}
