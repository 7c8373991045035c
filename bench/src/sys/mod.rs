//! The veth system benchmark (`synack-sysbench`): synack against the Linux kernel stack over
//! a veth pair between two namespaces, same load generators, same pinned cores, plus the
//! AF_XDP packet ceiling measured in the same run.
//!
//! - [`run`]: the orchestration, the table and the JSON.
//! - [`net`]: namespaces and the veth pair (198.18.N.0/24), over the test kit's guards.
//! - [`procs`]: servers and load generators, pinned with `taskset`.
//! - [`cleanup`]: the test kit's cleanup registry, its panic hook and signal thread.
//! - [`parse`]: wrk and sockperf output; [`load`]: `synack load` and `synack serve` stats, read
//!   from their `--json` lines.
//! - [`matrix`]: the connection-rate matrix (wrk and `synack load` against nginx and synack),
//!   with the server's packets per connection counted by [`packets`].
//! - [`churn`]: TIME_WAIT churn over veth, the server closing first, for longer than 2MSL.
//! - [`bulk`]: one connection's throughput with iperf3's and synack's clients and servers.
//! - [`concurrency`]: memory per idle connection, N held by a Linux client (`synack-hold`),
//!   synack's RSS against the Linux server's kernel memory ([`kernel_memory`]) and RSS.
//! - [`proxy`]: wrk through `synack proxy` and haproxy to nginx, and direct.
//! - [`xsk`]: the AF_XDP packet ceiling (the only user of the AF_XDP layer), with [`frame`].
//! - [`report`]: medians, table rendering, time stamps.

pub mod bulk;
pub mod churn;
pub mod cleanup;
pub mod concurrency;
pub mod frame;
pub mod kernel_memory;
pub mod load;
pub mod matrix;
pub mod net;
pub mod packets;
pub mod parse;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod run;
pub mod xsk;
