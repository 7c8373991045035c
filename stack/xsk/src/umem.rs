//! The UMEM: one anonymous mapping of `frame_count` equal frames, allocated once at start-up,
//! and the arithmetic between frame addresses and frame indices.

use std::io;
use std::num::NonZeroU32;

use xsk_rs::config::{FrameSize, QueueSize, UmemConfig};
use xsk_rs::FrameDesc;

use crate::config::XskConfig;
use crate::error::XskError;

/// The frame memory of one socket.
///
/// Frames are addressed by the byte offset of their start (the "frame address"). The packet
/// of a frame starts `XDP_PACKET_HEADROOM + frame_headroom` bytes later. Frame sizes are
/// powers of two, so the frame of any address inside it is found with a mask: this is what
/// makes addresses returned by the kernel (which point at the packet) safe to map back.
#[derive(Debug)]
pub struct Umem {
    inner: xsk_rs::Umem,
    /// One descriptor per frame, pointing at the packet start, as xsk-rs creates them. The
    /// fill and TX rings take xsk-rs descriptors, which only xsk-rs can make, so frames in
    /// the pool are stored as addresses and turned back into these.
    descs: Box<[FrameDesc]>,
    frame_count: u32,
    frame_size: u32,
    frame_shift: u32,
    packet_offset: u32,
}

impl Umem {
    /// Maps and registers the UMEM described by `config` (frame count, size, headroom, fill
    /// and completion ring sizes). The kernel registration happens when the first socket is
    /// created on it.
    pub(crate) fn new(config: &XskConfig) -> Result<Umem, XskError> {
        let umem_error = |detail: String, source: io::Error| XskError::Umem {
            frame_count: config.frame_count,
            frame_size: config.frame_size,
            detail,
            source,
        };
        let invalid = |detail: String| umem_error(detail, io::ErrorKind::InvalidInput.into());
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(config.frame_size).map_err(|e| invalid(e.to_string()))?)
            .fill_queue_size(QueueSize::new(config.fill_ring_size).map_err(|e| invalid(e.to_string()))?)
            .comp_queue_size(QueueSize::new(config.comp_ring_size).map_err(|e| invalid(e.to_string()))?)
            .frame_headroom(config.frame_headroom)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let frame_count = NonZeroU32::new(config.frame_count).ok_or_else(|| invalid("frame_count is 0".into()))?;
        let (inner, descs) = xsk_rs::Umem::new(umem_config, frame_count, false).map_err(|e| {
            let source = io_source(&e);
            if is_permission_error(&source) {
                XskError::PermissionDenied { operation: "create an AF_XDP socket and register its UMEM", source }
            } else if source.raw_os_error() == Some(libc_enobufs()) {
                // The kernel charges the UMEM to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
                let bytes = u64::from(config.frame_count) * u64::from(config.frame_size);
                umem_error(
                    format!(
                        "{e}: the UMEM's {bytes} bytes exceed the locked-memory limit (RLIMIT_MEMLOCK): grant \
                         CAP_IPC_LOCK, or raise the limit (`ulimit -l unlimited`, systemd LimitMEMLOCK=infinity)"
                    ),
                    source,
                )
            } else {
                umem_error(e.to_string(), source)
            }
        })?;
        Ok(Umem {
            inner,
            descs: descs.into_boxed_slice(),
            frame_count: config.frame_count,
            frame_size: config.frame_size,
            frame_shift: config.frame_size.trailing_zeros(),
            packet_offset: umem_config.xdp_headroom() + umem_config.frame_headroom(),
        })
    }

    /// Frames in the UMEM.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Bytes of packet data a frame holds.
    pub fn frame_capacity(&self) -> usize {
        (self.frame_size - self.packet_offset) as usize
    }

    /// Bytes of the whole mapping.
    pub fn len(&self) -> usize {
        self.frame_count as usize * self.frame_size as usize
    }

    /// Never true: a UMEM has at least one frame.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the packet from the frame start.
    pub fn packet_offset(&self) -> u32 {
        self.packet_offset
    }

    /// The frame address of any address inside the UMEM, or `None` outside it.
    #[inline]
    pub fn frame_of(&self, addr: u64) -> Option<u64> {
        let index = addr >> self.frame_shift;
        (index < u64::from(self.frame_count)).then_some(index << self.frame_shift)
    }

    /// The xsk-rs handle, for the socket module.
    pub(crate) fn inner(&self) -> &xsk_rs::Umem {
        &self.inner
    }

    /// A fresh descriptor for the frame at `frame_addr` (which `frame_of` produced).
    #[inline]
    pub(crate) fn desc(&self, frame_addr: u64) -> FrameDesc {
        self.descs[(frame_addr >> self.frame_shift) as usize]
    }
}

/// The `io::Error` behind an xsk-rs error, or a generic one when it carries none.
pub(crate) fn io_source(error: &(dyn std::error::Error + 'static)) -> io::Error {
    match error.source().and_then(|source| source.downcast_ref::<io::Error>()) {
        Some(source) => match source.raw_os_error() {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::new(source.kind(), source.to_string()),
        },
        None => io::Error::other(error.to_string()),
    }
}

pub(crate) fn is_permission_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(errno) if errno == rustix::io::Errno::PERM.raw_os_error()
            || errno == rustix::io::Errno::ACCESS.raw_os_error()
    )
}

/// ENOBUFS: what registering a UMEM beyond RLIMIT_MEMLOCK fails with.
fn libc_enobufs() -> i32 {
    rustix::io::Errno::NOBUFS.raw_os_error()
}
