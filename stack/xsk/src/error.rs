//! Errors: [`XskError`] with context for setup, and small `Copy` errors for the hot path.

use std::fmt;
use std::io;

/// Why a socket could not be set up. Every variant names what was being set up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A configuration field is out of range.
    #[error("invalid AF_XDP configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field of [`XskConfig`](crate::XskConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The interface does not exist in the calling thread's network namespace.
    #[error("no network interface named {ifname:?} in this network namespace")]
    NoSuchInterface {
        /// The name asked for.
        ifname: String,
    },

    /// The process lacks the privileges for AF_XDP.
    #[error(
        "permission denied to {operation}: AF_XDP needs root, or CAP_NET_RAW and \
         CAP_NET_ADMIN (and CAP_BPF, CAP_PERFMON to load an XDP program; deploy/capabilities.txt lists the set)"
    )]
    PermissionDenied {
        /// What was refused.
        operation: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },

    /// The UMEM could not be created or registered.
    #[error("cannot create a UMEM of {frame_count} frames of {frame_size} bytes: {detail}")]
    Umem {
        /// Frames asked for.
        frame_count: u32,
        /// Bytes per frame.
        frame_size: u32,
        /// Which step failed.
        detail: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },

    /// The socket could not be bound to the queue.
    #[error("cannot bind an AF_XDP socket to {ifname} queue {queue}: {reason}")]
    Bind {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The likely cause, from the error code and the interface's queue count.
        reason: BindFailure,
        /// The kernel's (or libxdp's) answer.
        #[source]
        source: io::Error,
    },

    /// A query about the interface or the socket failed.
    #[error("AF_XDP socket on {ifname}: cannot {operation}")]
    Io {
        /// The interface.
        ifname: String,
        /// What failed.
        operation: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

/// The likely cause of a [`XskError::Bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    /// The queue id is not below the interface's number of receive queues (`EINVAL`).
    QueueOutOfRange {
        /// Receive queues the interface has, when it could be read.
        rx_queue_count: Option<u32>,
    },
    /// Another AF_XDP socket holds the queue, or an XDP program that libxdp will not replace
    /// is attached (`EBUSY`, `EEXIST`).
    Busy,
    /// Zero-copy was required but the driver does not support it (`EOPNOTSUPP`).
    ZeroCopyUnsupported,
    /// The interface vanished between the lookup and the bind (`ENODEV`, `ENXIO`).
    InterfaceGone,
    /// Anything else: see the source error.
    Other,
}

impl fmt::Display for BindFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindFailure::QueueOutOfRange { rx_queue_count: Some(count) } => write!(
                f,
                "queue id out of range: the interface has {count} receive queue(s), \
                 numbered from 0 (see `ethtool -l`)"
            ),
            BindFailure::QueueOutOfRange { rx_queue_count: None } => write!(
                f,
                "queue id out of range (EINVAL): it must be below the interface's number of \
                 receive queues (see `ethtool -l`)"
            ),
            BindFailure::Busy => write!(
                f,
                "the queue is busy: another AF_XDP socket is bound to it, or the interface \
                 carries an XDP program that libxdp will not replace"
            ),
            BindFailure::ZeroCopyUnsupported => write!(
                f,
                "the driver does not support zero-copy AF_XDP (veth never does): use \
                 bind_mode Copy or Auto"
            ),
            BindFailure::InterfaceGone => write!(f, "the interface disappeared"),
            BindFailure::Other => write!(f, "the kernel refused the bind"),
        }
    }
}

/// A `sendto()` kick failed in a way that retrying will not fix (for example `ENXIO`: the
/// device is gone). Transient results (`EAGAIN`, `EBUSY`, `ENOBUFS`, `ENETDOWN`) are not
/// errors: they are counted in [`Counters::tx_kick_errors`](crate::Counters::tx_kick_errors)
/// and the kick is retried on the next flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AF_XDP TX kick failed: {}", io::Error::from_raw_os_error(*errno))]
pub struct KickError {
    /// The `errno` of `sendto()`.
    pub errno: i32,
}

/// Why [`XskSocket::tx_submit`](crate::XskSocket::tx_submit) refused a frame. The frame
/// stays in hand, so the caller can fix the length or flush and submit again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxSubmitError {
    /// No frame was taken with `tx_alloc`.
    #[error("no TX frame in hand: call tx_alloc first")]
    NoFrameInHand,
    /// The length is 0 or larger than the frame.
    #[error("TX length {len} is not between 1 and the frame capacity {capacity}")]
    BadLength {
        /// Length asked for.
        len: usize,
        /// Bytes the frame holds.
        capacity: usize,
    },
    /// Both the pending batch and the TX ring are full: flush (and reap) first.
    #[error("TX ring full: flush and reap completions, then submit again")]
    RingFull,
}
