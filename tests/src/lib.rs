//! End-to-end test support for synack: network namespaces, veth pairs and Linux peers.
//!
//! The tests themselves live in `tests/tests/`. They need root; without it each prints a
//! `SKIP (needs root: ...)` line and returns, so that `cargo test` works for everyone while CI,
//! which runs as root, exercises them for real.
//!
//! - [`testnet`]: throwaway namespaces joined by veth pairs for the AF_XDP socket tests.
//! - `netns`: `TestNet`, the end-to-end tests' two namespaces and veth pair, deleted by a guard.
//! - `process`: child processes with captured output, bounded waits, stop-on-drop guards.
//! - `server`: the server under test (`synack serve` or a kernel stand-in) and its guard.
//! - `peer`: the Linux peers of `py/peer.py` (kernel TCP clients and servers) and their reports.
//! - `scenarios`: the end-to-end scenarios, each runnable against either backend.
//! - `queue_stats`: the per-queue figures `synack serve/connect --json` print at stop.
//! - `iperf3`: Debian's iperf3 client against `synack serve --app iperf3`, its JSON checked.
//! - `load_report`: reads the output of `synack load --json` (seconds, summary, counters).
//! - [`is_root`], [`require_root`], [`skip_unless_root`]: the privilege checks.
#![deny(unsafe_code)]

pub mod curl;
pub mod iperf3;
pub mod load_report;
pub mod netns;
pub mod peer;
pub mod process;
pub mod queue_stats;
pub mod scenarios;
pub mod server;
pub mod stat;
pub mod syn_flood;

pub use netns::{Host, TestNet};
pub use process::{Output, Proc};
pub use server::{Addressing, App, Backend, ServeConfig, Server};

use std::io::Write;

pub mod testnet;

/// Whether the process runs as root (effective uid 0): the end-to-end tests need it for
/// network namespaces, veth pairs, XDP programs and AF_XDP sockets.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// True when running as root. Otherwise prints `SKIP (needs root: <needs>): <test>` and returns
/// false, so that a privileged test starts with `if !require_root("AF_XDP") { return; }`.
///
/// The line goes straight to stderr, past the test harness's output capture, so that a skipped
/// test is visible in a plain `cargo test` run and not mistaken for a pass.
pub fn require_root(needs: &str) -> bool {
    if is_root() {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().filter(|name| *name != "main").unwrap_or("test");
    let _ = writeln!(std::io::stderr().lock(), "SKIP (needs root: {needs}): {test}");
    false
}

/// Prints `SKIP (needs root: <what>)` and returns true when not root: `if skip_unless_root(..) { return; }`.
pub fn skip_unless_root(what: &str) -> bool {
    !require_root(what)
}
