//! End-to-end test support for synack: network namespaces, veth pairs and Linux peers.
//!
//! The tests themselves live in `tests/tests/`. They need root; without it each prints a
//! line saying so and passes vacuously, so that `cargo test` works for everyone while CI,
//! which runs as root, exercises them for real.

/// Whether the process runs as root (the end-to-end tests need it for namespaces and XDP).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
