//! Stateful: sequences of deliveries, losses, duplicates, reorders, forged segments, time
//! steps and application calls on two interfaces joined by a link (`sim::fuzz::interface_pair`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = synack_proto::sim::fuzz::interface_pair(data);
});
