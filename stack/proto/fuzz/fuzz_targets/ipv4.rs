//! Fuzzes the IPv4 parser in both checksum modes, and that emit then parse round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_proto::wire::{ChecksumMode, Ipv4Packet, Ipv4Repr};

fuzz_target!(|data: &[u8]| {
    let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(data), ChecksumMode::Verify);
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.options(), packet.verify_checksum());
    let Ok(repr) = Ipv4Repr::parse(&packet, ChecksumMode::Trust) else {
        return;
    };
    assert_eq!(packet.payload().len(), repr.payload_len);
    let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
    assert_eq!(
        Ipv4Repr::parse(
            &Ipv4Packet::new_checked(&out[..]).unwrap(),
            ChecksumMode::Verify
        ),
        Ok(repr)
    );
});
