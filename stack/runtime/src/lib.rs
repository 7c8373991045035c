//! synack: a kernel-bypass TCP/IPv4 stack on AF_XDP, the crate embedders depend on.
//!
//! Crates, bottom up (each a layer; a wrong dependency is a compile error):
//! - `synack-proto` (re-exported here as [`wire`], [`tcp`], [`iface`], [`time`]): the sans-IO
//!   core: wire codec, TCP state machine, one worker's interface. No I/O, no clock, no `unsafe`.
//! - `synack-xsk` (re-exported as [`xsk`]): the AF_XDP socket and UMEM, the only crate with
//!   `unsafe`.
//! - this crate: [`runtime`] (the XDP program attached, one AF_XDP socket and one pinned worker
//!   per queue, frames handed between workers), the worker's [`clock`] and the per-boot
//!   ISN/cookie [`key_file`].
//! - `synack-cli`: the `synack` binary.
//!
//! # Embedding: a proxy
//!
//! An application is an [`iface::App`]: callbacks run to completion inside the worker's poll,
//! with the worker's [`iface::Interface`] at hand. This one splices every client to a new
//! connection to an upstream, both ways (`synack proxy`, in `stack/cli/src/proxy.rs`, is the
//! complete version: upstream retries, idle timeout, counters, per-connection state in arrays):
//!
//! ```no_run
//! use std::collections::{HashMap, HashSet};
//! use std::net::Ipv4Addr;
//! use std::time::Duration;
//!
//! use synack::iface::{App, ConnId, Interface};
//! use synack::tcp::{CloseReason, Endpoint};
//! use synack::{Runtime, RuntimeConfig};
//!
//! struct Proxy {
//!     upstream: Endpoint,
//!     /// Each connection's other half.
//!     peer: HashMap<ConnId, ConnId>,
//!     /// Connections whose FIN arrived.
//!     eof: HashSet<ConnId>,
//! }
//!
//! impl Proxy {
//!     /// Moves what `to` has room for (back-pressure: the rest waits in `from`'s ring, whose
//!     /// window closes; `on_writable` resumes), then `from`'s FIN once its data is through.
//!     fn pump(&mut self, iface: &mut Interface, from: ConnId) {
//!         let Some(&to) = self.peer.get(&from) else { return };
//!         let _ = iface.splice(from, to, usize::MAX);
//!         if self.eof.contains(&from) && iface.recv_queue_len(from) == 0 {
//!             iface.shutdown(to);
//!         }
//!     }
//! }
//!
//! impl App for Proxy {
//!     fn on_accept(&mut self, iface: &mut Interface, client: ConnId) {
//!         let Ok(up) = iface.connect(self.upstream) else { return iface.abort(client) };
//!         // A connect timeout: the upstream's timer, on the worker's timer wheel.
//!         iface.set_timer(up, iface.now() + Duration::from_secs(2));
//!         self.peer.insert(client, up);
//!         self.peer.insert(up, client);
//!     }
//!     fn on_connected(&mut self, iface: &mut Interface, up: ConnId) {
//!         iface.cancel_timer(up);
//!     }
//!     fn on_timer(&mut self, iface: &mut Interface, up: ConnId) {
//!         iface.abort(up); // on_closed(Aborted) follows, which resets the client
//!     }
//!     fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
//!         self.pump(iface, conn);
//!     }
//!     fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
//!         if let Some(&from) = self.peer.get(&conn) {
//!             self.pump(iface, from);
//!         }
//!     }
//!     fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
//!         self.eof.insert(conn);
//!         self.pump(iface, conn);
//!     }
//!     fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
//!         // A normal close comes only once everything received on `conn` was read.
//!         self.eof.remove(&conn);
//!         if let Some(other) = self.peer.remove(&conn) {
//!             self.peer.remove(&other);
//!             match reason {
//!                 CloseReason::Normal => iface.shutdown(other),
//!                 // Reset, refused, timed out, no route, aborted: reset the other side.
//!                 _ => iface.abort(other),
//!             }
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = RuntimeConfig::new("veth0", Ipv4Addr::new(198, 18, 0, 1));
//! config.listen_ports = vec![8000];
//! // Every Interface setting (table bounds, TCP timers and buffers, ...) is in `interface`.
//! config.interface.max_connections = 16_384;
//! let upstream = Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), 80);
//! let runtime = Runtime::start(config, |_queue| Proxy { upstream, peer: HashMap::new(), eof: HashSet::new() })?;
//! std::thread::sleep(Duration::from_secs(60));
//! // A graceful stop: no new connections, 10 s for the open ones, then RST.
//! runtime.start_drain(Duration::from_secs(10));
//! while !runtime.is_finished() {
//!     std::thread::sleep(Duration::from_millis(50));
//! }
//! println!("{}", runtime.stop().counters);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod key_file;
pub mod runtime;

pub use runtime::{Runtime, RuntimeConfig};
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub use synack_proto::bench_api;
#[cfg(feature = "sim")]
pub use synack_proto::sim;
pub use synack_proto::{iface, tcp, time, wire};
pub use synack_xsk as xsk;
