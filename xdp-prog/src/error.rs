//! Errors of loading, attaching, configuring and test-running the program.

use std::os::fd::RawFd;

/// What to tell a user who lacks the privileges BPF needs.
const PRIVILEGES: &str = "run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (the verifier allows the \
                          program's packet pointer arithmetic only with CAP_PERFMON; CAP_SYS_ADMIN on kernels before \
                          5.8); deploy/capabilities.txt lists the whole set";

/// Loading the program and its maps into the kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The caller may not create BPF maps or programs.
    #[error("permission denied loading the XDP program: {PRIVILEGES}")]
    PermissionDenied {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Any other failure, the verifier's rejection included (libbpf's log, the verifier's
    /// among it, goes to `tracing` at debug level: `RUST_LOG=libbpf=debug`).
    #[error(
        "loading the XDP steering program failed (RUST_LOG=libbpf=debug shows libbpf's log, the verifier's among it)"
    )]
    Load {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

impl LoadError {
    pub(crate) fn new(source: libbpf_rs::Error) -> LoadError {
        if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
            LoadError::PermissionDenied { source }
        } else {
            LoadError::Load { source }
        }
    }
}

/// Loading the program or attaching it to an interface failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No interface has that name in this network namespace.
    #[error("no network interface named `{ifname}` in this network namespace")]
    NoSuchInterface {
        /// The name asked for.
        ifname: String,
    },
    /// The caller may not load or attach XDP programs.
    #[error("permission denied: loading and attaching XDP programs needs privileges: {PRIVILEGES}")]
    PermissionDenied {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Loading the program failed (see [`LoadError::Load`]).
    #[error(
        "loading the XDP steering program failed (RUST_LOG=libbpf=debug shows libbpf's log, the verifier's among it)"
    )]
    Load {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Another XDP program is attached to the interface (EBUSY).
    #[error(
        "interface `{ifname}` busy: another XDP program (id {prog_id}) is attached; see `ip link show dev {ifname}`"
    )]
    Busy {
        /// The interface.
        ifname: String,
        /// The id of the program already attached (`bpftool prog show id ..`).
        prog_id: u32,
    },
    /// Any other attach failure.
    #[error("attaching the XDP program to `{ifname}` failed")]
    Attach {
        /// The interface.
        ifname: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

impl From<LoadError> for AttachError {
    fn from(error: LoadError) -> AttachError {
        match error {
            LoadError::PermissionDenied { source } => AttachError::PermissionDenied { source },
            LoadError::Load { source } => AttachError::Load { source },
        }
    }
}

/// Changing the program's configuration or reading its counters failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The queue index has no slot in the XSKMAP.
    #[error("queue {queue} is out of range: the program serves queues 0 to {}", max - 1)]
    QueueOutOfRange {
        /// The queue asked for.
        queue: u32,
        /// The number of queues the XSKMAP holds.
        max: u32,
    },
    /// Port 0 is never a destination.
    #[error("port 0 cannot be a listening port")]
    PortZero,
    /// The local port range is empty or includes port 0.
    #[error("invalid local port range {lo}..={hi}: need 1 <= lo <= hi")]
    InvalidPortRange {
        /// The first port asked for.
        lo: u16,
        /// The last port asked for.
        hi: u16,
    },
    /// More than a thousand per thousand.
    #[error("drop_permille {0} is above 1000")]
    InvalidPermille(u16),
    /// The kernel refused the socket (it must be a bound AF_XDP socket).
    #[error("registering fd {fd} as the AF_XDP socket of queue {queue} failed (is it a bound AF_XDP socket?)")]
    RegisterSocket {
        /// The queue.
        queue: u32,
        /// The file descriptor given.
        fd: RawFd,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A map operation failed (e.g. `owned_addrs` is full: E2BIG).
    #[error("{op} on BPF map `{map}` failed")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The operation: lookup, update or delete.
        op: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

/// Running the program on a crafted frame failed.
#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    /// `BPF_PROG_TEST_RUN` failed. The kernel refuses frames shorter than an
    /// Ethernet header (14 bytes) with EINVAL.
    #[error("BPF_PROG_TEST_RUN of the XDP program on a {len}-byte frame failed")]
    Run {
        /// The frame's length.
        len: usize,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Reading the counters around the run failed.
    #[error("reading the counters around the test run failed")]
    Counters(#[from] MapError),
}
