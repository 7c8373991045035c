//! Fuzzes the TCP parser (options included) in both checksum modes, and that emit then parse
//! round-trips with the payload intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_proto::wire::{emit_header, ChecksumMode, Ipv4Addr, TcpPacket, TcpRepr};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    let _ = TcpRepr::parse(
        &TcpPacket::new_unchecked(data),
        SRC,
        DST,
        ChecksumMode::Verify,
    );
    let Ok(packet) = TcpPacket::new_checked(data) else {
        return;
    };
    let Ok(repr) = TcpRepr::parse(&packet, SRC, DST, ChecksumMode::Trust) else {
        return;
    };
    let payload = packet.payload();
    let mut out = vec![0u8; repr.buffer_len(payload.len())];
    out[repr.header_len()..].copy_from_slice(payload);
    let len = emit_header(&mut out, &repr, SRC, DST, payload.len());
    assert_eq!(len, out.len());
    let again = TcpPacket::new_checked(&out[..]).unwrap();
    let parsed = TcpRepr::parse(&again, SRC, DST, ChecksumMode::Verify).unwrap();
    // Emit may drop SACK blocks that do not fit beside the other options; all else survives.
    let mut expected = repr;
    expected
        .options
        .sack_blocks
        .truncate(parsed.options.sack_blocks.len());
    assert_eq!(parsed, expected);
    assert_eq!(again.payload(), payload);
});
