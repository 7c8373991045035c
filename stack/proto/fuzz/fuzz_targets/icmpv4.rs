//! Fuzzes the ICMPv4 parser in both checksum modes, and that emit then parse round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_proto::wire::{ChecksumMode, Icmpv4Packet, Icmpv4Repr};

fuzz_target!(|data: &[u8]| {
    let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(data), ChecksumMode::Verify);
    let Ok(repr) = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(data), ChecksumMode::Trust)
    else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
    assert_eq!(
        Icmpv4Repr::parse(
            &Icmpv4Packet::new_checked(&out[..]).unwrap(),
            ChecksumMode::Verify
        ),
        Ok(repr)
    );
});
