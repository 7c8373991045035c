//! The interface: Ethernet frames in and out, connections and listeners in between.
//!
//! [`Interface`] is the sans-IO layer between a frame ring and the TCP core. It is fed
//! received frames with [`Interface::receive`] and asked to make progress with
//! [`Interface::poll`], which runs due timers, tells the [`App`] what happened and writes the
//! frames to send into a [`TxSink`]. It owns one worker's shard: its connection table, its
//! TIME_WAIT records, its ring pool, its neighbour (ARP) cache, its listeners and its counters. Like the
//! core, it performs no I/O and reads no clock, so it is tested with crafted frames.
//!
//! Stateless answers (ARP replies, ICMP echo replies, RSTs for segments that match nothing,
//! ACKs from TIME_WAIT records) are written in place into the received frame
//! ([`RxAction::Transmit`]): no copy, no extra frame.

mod app;
#[doc(hidden)]
#[cfg(feature = "bench-internals")]
pub mod bench_api;
mod config;
mod counters;
pub mod dispatch;
mod interface;
mod neighbor;
mod ports;
mod ring_pool;
pub mod steering;
mod table;
mod time_wait_table;
mod timer_wheel;

pub use app::{App, ConnId, RxAction, TxSink, VecSink};
pub use config::{AddressMode, InterfaceConfig, TableFullPolicy};
pub use counters::Counters;
pub use interface::{ConnectError, Interface, ListenError, RxFrames, VecFrames, RX_BATCH_MAX};
pub use neighbor::NeighborCache;
pub use ring_pool::{PoolStats, RingStats};

#[cfg(test)]
mod tests;
