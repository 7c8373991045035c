//! End-to-end test support for synack: network namespaces, veth pairs and Linux peers.
//!
//! The tests themselves live in `tests/tests/`. They need root; without it each prints a
//! line `SKIP (needs root: ...)` and returns, so that `cargo test` works for everyone while CI,
//! which runs as root, exercises them for real.
//!
//! - `netns`: `TestNet`, two namespaces joined by a veth pair, deleted by a guard.
//! - `process`: child processes with captured output, bounded waits, stop-on-drop guards.
//! - `server`: the server under test (`synack serve` or a kernel stand-in) and its guard.
//! - `peer`: the Linux peers of `py/peer.py` (kernel TCP clients and servers) and their reports.
//! - `scenarios`: the end-to-end scenarios, each runnable against either backend.
#![deny(unsafe_code)]

pub mod netns;
pub mod peer;
pub mod process;
pub mod scenarios;
pub mod server;

pub use netns::{Host, TestNet};
pub use process::{Output, Proc};
pub use server::{Addressing, App, Backend, ServeConfig, Server};

/// Whether the process runs as root (the end-to-end tests need it for namespaces and XDP).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Prints `SKIP (needs root: <what>)` and returns true when not root: `if skip_unless_root(..) { return; }`.
pub fn skip_unless_root(what: &str) -> bool {
    if is_root() {
        false
    } else {
        println!("SKIP (needs root: {what})");
        true
    }
}
