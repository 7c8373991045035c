//! Plumbing shared by synack's privileged tests (`tests/`) and its system benchmark (`bench/`):
//!
//! - [`cleanup`]: the one registry of what a run must remove (namespaces, child processes),
//!   emptied by the guards, and by a panic hook and a signal thread where installed;
//! - [`netns`]: network namespaces and veth pairs with guards, and the removal of what a killed
//!   earlier run left behind (recognised by the owner pid in the name);
//! - [`process`]: child processes with captured output, bounded waits and guards that stop
//!   them;
//! - [`frames`]: marked IPv4/UDP test frames (the AF_XDP tests, the packet ceiling);
//! - [`counting_alloc`]: the counting global allocator of the no-allocation tests (also
//!   synack-proto's, which takes this crate without the feature `sys`).
//!
//! Nothing here knows synack: it runs `ip`, `ethtool` and the programs it is given.
#![deny(unsafe_code)]

#[cfg(feature = "sys")]
pub mod cleanup;
pub mod counting_alloc;
pub mod frames;
#[cfg(feature = "sys")]
pub mod netns;
#[cfg(feature = "sys")]
pub mod process;
