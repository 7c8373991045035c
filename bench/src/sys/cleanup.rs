//! Cleanup that happens however a run ends: normally, on an error, on a panic, or on Ctrl-C.
//!
//! The test kit's one registry ([`synack_testkit::cleanup`]): every namespace and every child
//! process group the benchmark creates is registered by its guard, and removed by the guard's
//! `Drop`, by the panic hook (release builds abort on panic, so `Drop` would not run), or by
//! the signal thread (the first SIGINT/SIGTERM/SIGHUP sets [`interrupted`], which every wait
//! polls, so the run unwinds through its guards; a second signal cleans up at once).
//!
//! Children run in process groups of their own ([`ChildGuard`]), so a terminal's Ctrl-C
//! reaches only the benchmark, which then stops them in order.

pub use synack_testkit::cleanup::*;
pub use synack_testkit::process::{ChildGuard, WaitError};

/// Installs the signal thread and the panic hook. Call once, first thing in `main`.
pub fn install() -> std::io::Result<()> {
    synack_testkit::cleanup::install("sysbench")
}
