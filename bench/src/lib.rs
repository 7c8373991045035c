//! synack's benchmarks: `benches/core.rs` measures the sans-IO TCP core with criterion;
//! [`sys`] is the veth system benchmark behind the `synack-sysbench` binary, which compares
//! synack with the Linux kernel stack over a veth pair and measures the AF_XDP packet ceiling;
//! [`hold`] is `synack-hold`, its Linux client and server of many idle connections.
#![deny(unsafe_code)]

pub mod curve;
pub mod hold;
pub mod mem;
pub mod sys;
