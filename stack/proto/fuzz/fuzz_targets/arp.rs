//! Fuzzes the ARP parser, and that emit then parse gives the same repr.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synack_proto::wire::{ArpPacket, ArpRepr};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (packet.source_hardware_addr(), packet.target_protocol_addr());
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let mut out = [0u8; 28];
    repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
    assert_eq!(
        ArpRepr::parse(&ArpPacket::new_unchecked(&out[..])),
        Ok(repr)
    );
});
