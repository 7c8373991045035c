//! synack: a kernel-bypass TCP/IPv4 stack on AF_XDP.
//!
//! Layers, bottom up:
//! - [`xsk`] (feature `xdp`, on by default): the AF_XDP socket layer (UMEM, frame pool,
//!   batched rings), with which a worker moves frames between the NIC queue and the layers above.
//!   It is the only module with `unsafe`, fenced in `xsk::socket`.
//! - [`wire`]: zero-copy views and parsed representations of Ethernet, ARP, IPv4, ICMPv4
//!   and TCP, with checksums. Untrusted input gets a typed [`wire::WireError`], never a panic.
//! - [`tcp`]: the sans-IO TCP connection state machine (RFC 9293). It is fed segments and
//!   time, and hands out segments and timer deadlines; it performs no I/O and reads no clock.
//! - [`iface`]: one worker's interface: Ethernet frames in and out, ARP, ICMP echo, the
//!   connection table and listeners, TIME_WAIT records, and the [`iface::App`] callbacks.
//!   Sans-IO like the core.
//! - [`runtime`] (feature `xdp`): the XDP program attached, one AF_XDP socket and one pinned
//!   worker per queue, each running an [`iface::Interface`] over batches of frames.
//! - [`time`]: the virtual [`time::Instant`] the core runs on; only the worker reads a clock.
//! - [`sim`]: a deterministic simulated network that joins two endpoints through a seeded
//!   lossy link, used by the tests and the core benchmark.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub use iface::bench_api;
pub mod iface;
#[cfg(feature = "xdp")]
pub mod runtime;
pub mod sim;
pub mod tcp;
pub mod time;
pub mod wire;
#[cfg(feature = "xdp")]
pub mod xsk;
