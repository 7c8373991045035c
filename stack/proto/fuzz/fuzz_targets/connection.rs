//! Stateful: one connection fed segments crafted around its own sequence numbers, time steps
//! and application calls (`sim::fuzz::connection`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = synack_proto::sim::fuzz::connection(data);
});
