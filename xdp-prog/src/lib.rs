//! synack's XDP steering program and its loader.
//!
//! Layers, from the wire up:
//! - `src/bpf/steer.bpf.c`: the XDP program. It parses Ethernet, IPv4 and TCP
//!   (or ARP, or ICMP echo) with bounds checks and redirects the frames that
//!   belong to synack into the AF_XDP socket of the queue they arrived on;
//!   everything else goes to the kernel (`XDP_PASS`). `build.rs` compiles it
//!   with clang and libbpf-cargo generates a skeleton for it.
//! - `skel` (private): that generated skeleton. It and `sys` (one
//!   `if_nametoindex` call) are the only modules allowed `unsafe`.
//! - [`SteerObject`]: the program and its maps, loaded into the kernel but not
//!   attached. Configure it (owned addresses, listening ports, the local port
//!   range, sockets), read its [`Counters`] and the neighbours it learnt, and
//!   run it on crafted frames with [`SteerObject::test_run`]
//!   (`BPF_PROG_TEST_RUN`).
//! - [`SteerProgram`]: a [`SteerObject`] attached to an interface through a
//!   BPF link. The link dies with the process, so a crashed synack never
//!   leaves the program on the interface; dropping the value detaches it.
//!
//! Which frames are synack's depends on how it owns their destination address
//! ([`AddressMode`]):
//! - [`AddressMode::Shared`]: the kernel has the address too. synack gets
//!   only TCP to its listening ports and its local port range; ARP, ICMP and
//!   other ports go to the kernel.
//! - [`AddressMode::Dedicated`]: the address is synack's alone. synack also
//!   gets ARP whose target is the address, ICMP echo requests to it, and TCP
//!   to any of its ports (so that it can answer closed ports with a RST).
//!
//! In both modes the program records the sender of every Ethernet/IPv4 ARP
//! request or reply whose target is an owned address, before passing or
//! redirecting it, in an LRU neighbour map that synack reads with
//! [`SteerObject::neighbor`]: for a shared address the kernel keeps the ARP
//! replies, and this is how synack learns the answers to its own ARP requests.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::Ipv4Addr;
//! use synack_xdp::AddressMode;
//! let mut steer = synack_xdp::SteerProgram::attach("veth0")?;
//! steer.add_owned_addr(Ipv4Addr::new(198, 18, 0, 1), AddressMode::Dedicated)?;
//! steer.add_listen_port(80)?;
//! steer.set_local_port_range(61000, 65535)?;
//! // steer.register_socket(queue, xsk_fd)?;   for each AF_XDP socket
//! println!("{}", steer.counters()?);
//! if let Some(mac) = steer.neighbor(Ipv4Addr::new(198, 18, 0, 2))? {
//!     println!("198.18.0.2 is at {mac:02x?}");
//! }
//! # Ok(()) }
//! ```
//!
//! Everything here needs privileges: root, or `CAP_BPF` with `CAP_NET_ADMIN`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod counters;
mod error;
mod logs;
mod program;
mod sys;

/// The skeleton libbpf-cargo generates from `src/bpf/steer.bpf.c`.
#[allow(unsafe_code, unused_imports, dead_code, missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/steer.skel.rs"));
}

pub use counters::{Counter, Counters};
pub use error::{AttachError, LoadError, MapError, TestRunError};
pub use logs::route_to_tracing;
pub use program::{
    AddressMode, CounterReader, NeighborReader, SteerObject, SteerProgram, TestRun, XdpAction, MAX_NEIGHBORS,
    MAX_OWNED_ADDRS, MAX_QUEUES,
};
