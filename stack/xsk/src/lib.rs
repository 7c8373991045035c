//! The AF_XDP socket layer: UMEM, accounted frame pool, and batched RX/TX over the four rings.
//!
//! One [`XskSocket`] is one AF_XDP socket bound to one `(interface, queue)`, with its own
//! UMEM. A worker owns it and drives it in a loop, without locks and without allocating:
//!
//! ```text
//!  kernel                          | this module (one worker)
//!  XDP -> XSKMAP[q] -> RX ring ----+--> rx_batch(f): f(&mut RxFrame) -> Release | Transmit(len)
//!                      fill ring <-+--- refill() <------- FramePool <--- Release, completions
//!                      TX ring <---+--- flush() <-------- pending <--- Transmit, tx_submit(len)
//!                                  |                               (tx_alloc() takes from pool)
//!                      completion -+--> reap_completions() -> FramePool
//! ```
//!
//! Layers, one module each:
//! - [`config`]: [`XskConfig`], checked before anything is allocated.
//! - [`pool`]: [`FramePool`], the fixed stack of free frames, and [`FrameAccounting`], which
//!   proves that every frame is in exactly one place.
//! - [`umem`]: [`Umem`], the frame memory and its geometry.
//! - [`socket`]: [`XskSocket`], binding and the four rings. With [`logs`], the only modules of
//!   the crate allowed `unsafe` (the crate root denies it); every block says why it holds.
//! - [`logs`]: libxdp's messages routed to `tracing` (debug level), away from stderr.
//! - [`stats`]: [`Counters`] kept by the socket and the kernel's [`XdpStats`].
//! - [`error`]: setup errors ([`XskError`]) and the small hot-path errors.
//! - [`netlink`]: a tiny `RTM_GETLINK` query (interface index, MAC, queue count).
//!
//! Binding uses xsk-rs (libxdp). By default the socket is created **without** an XDP program
//! (`load_default_program: false`): synack's own program puts [`XskSocket::fd`] into its
//! XSKMAP. Tests set `load_default_program: true` so that libxdp's default program redirects
//! every frame of the queue to the socket.
//!
//! It pulls in xsk-rs, libxdp and libbpf. The
//! syscalls xsk-rs does not make for us (kicks, `poll`, `XDP_OPTIONS`, `XDP_STATISTICS`,
//! netlink) go through rustix.
//!
//! Implemented: a UMEM of 2048- or 4096-byte frames allocated once; frame accounting (every
//! frame is free, lent for RX, in the application's hands, pending, or lent for TX, and
//! [`FrameAccounting::check`] proves the sum); binding in copy, zero-copy or auto mode with
//! need_wakeup, the granted mode read back from the kernel; in-place replies; busy and
//! sleeping poll modes; counters and the kernel's `XDP_STATISTICS`; setup errors that say what
//! failed and why. Not yet: a UMEM shared between sockets (one per socket for now),
//! multi-buffer frames (`XDP_USE_SG`), huge pages, TX metadata and offloads.
//!
//! A worker's loop, in outline:
//!
//! ```no_run
//! use synack_xsk::{RxVerdict, XskConfig, XskSocket};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut socket = XskSocket::new(XskConfig::new("eth0", 0))?;
//! loop {
//!     let received = socket.rx_batch(usize::MAX, |frame| {
//!         // Parse `frame`, maybe build a reply in place:
//!         RxVerdict::Release
//!     });
//!     socket.flush()?;
//!     socket.reap_completions();
//!     socket.refill();
//!     if received == 0 {
//!         socket.idle();
//!     }
//! }
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
pub mod config;
pub mod error;
pub mod logs;
pub mod netlink;
pub mod pool;
pub mod socket;
pub mod stats;
pub mod umem;

pub use config::{BindMode, BoundMode, PollMode, XskConfig};
pub use error::{BindFailure, KickError, TxSubmitError, XskError};
pub use pool::{AccountingError, FrameAccounting, FramePool};
pub use socket::{RxBatch, RxFrame, RxVerdict, TxBuf, XskSocket};
pub use stats::{Counters, XdpStats};
pub use umem::Umem;
