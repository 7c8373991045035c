//! In-memory benchmarks: one server worker's [`Interface`](synack::iface::Interface) and a few
//! client interfaces joined back to back through a fixed frame pool, on a simulated clock.
//! No sockets, no root, deterministic in what they do (only the wall-clock rates vary).
//!
//! - [`frames`]: the frame pool every frame on the in-memory wire comes from, with lend and
//!   return counts, so a leak shows.
//! - [`harness`]: the server (an HTTP-like app that closes first) and its clients, driven tick
//!   by tick of simulated time.
//! - [`lifecycles`]: 10 M connection lifecycles through one worker; slab, frames, TIME_WAIT
//!   and RSS must come back to their baseline.
//! - [`churn`]: TIME_WAIT churn with a 60 s 2MSL: 1 M records held, memory per record, RSS
//!   and the processing rate as the table fills.
//! - [`cases`]: the two as cases of `synack-sysbench`, printed and written to `bench/results/`.
//! - [`clock`]: wall-clock and thread CPU time (the machine is shared).
//! - [`rss`]: resident memory of a process, from `/proc`.

pub mod cases;
pub mod churn;
pub mod clock;
pub mod frames;
pub mod harness;
pub mod lifecycles;
pub mod rss;
