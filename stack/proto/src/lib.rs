//! synack-proto: the sans-IO core of synack, a kernel-bypass TCP/IPv4 stack on AF_XDP.
//!
//! This crate performs no I/O, reads no clock and has no `unsafe`; time and the ISN/cookie
//! key are inputs. The runtime (crate `synack`) feeds it frames and time from AF_XDP sockets.
//!
//! Layers, bottom up:
//! - [`wire`]: zero-copy views and parsed representations of Ethernet, ARP, IPv4, ICMPv4
//!   and TCP, with checksums. Untrusted input gets a typed [`wire::WireError`], never a panic.
//! - [`tcp`]: the TCP connection state machine (RFC 9293). It is fed segments and time, and
//!   hands out segments and timer deadlines.
//! - [`iface`]: one worker's interface: Ethernet frames in and out, ARP, ICMP echo, the
//!   connection table and listeners, TIME_WAIT records, and the [`iface::App`] callbacks.
//! - [`time`]: the virtual [`time::Instant`] the core runs on; only the runtime's worker reads
//!   a clock.
//! - `sim` (feature `sim`): a deterministic simulated network that joins two endpoints through
//!   a seeded lossy link, used by the tests and the core benchmark.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub use iface::bench_api;
pub mod iface;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod tcp;
pub mod time;
pub mod wire;
