//! End-to-end test support for synack: network namespaces, veth pairs and Linux peers.
//!
//! The tests themselves live in `tests/tests/`. They need root; without it each prints a
//! `SKIP (needs root: ...)` line and passes vacuously, so that `cargo test` works for everyone
//! while CI, which runs as root, exercises them for real.
//!
//! - [`testnet`]: throwaway network namespaces joined by veth pairs, deleted by guards.
//! - [`is_root`], [`require_root`]: the privilege check every privileged test starts with.

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
