//! Configuration of one AF_XDP socket and its UMEM, checked before anything is allocated.

use std::time::Duration;

use crate::error::XskError;

/// Which binding mode to ask the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Try zero-copy first, fall back to copy mode if the driver refuses it.
    Auto,
    /// Copy mode (`XDP_COPY`): works on every driver, including veth.
    #[default]
    Copy,
    /// Zero-copy mode (`XDP_ZEROCOPY`) or fail: veth refuses it with `EOPNOTSUPP`.
    ZeroCopy,
}

/// The mode a socket actually ended up bound in, as the kernel reports it (`XDP_OPTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundMode {
    /// The kernel copies frames between its buffers and the UMEM.
    Copy,
    /// The driver reads and writes the UMEM directly.
    ZeroCopy,
}

/// What [`XskSocket::idle`](crate::XskSocket::idle) does when a loop iteration found no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Spin: lowest latency, one core at 100 % even when idle.
    Busy,
    /// Sleep in `poll(POLLIN)` on the socket for at most `timeout`: an idle worker uses about
    /// no CPU, and wakes as soon as a frame arrives. The timeout bounds how late a timer can
    /// fire while no frame arrives; a worker with timers should use
    /// [`XskSocket::wait_idle`](crate::XskSocket::wait_idle) with its next deadline instead.
    Sleep {
        /// The longest sleep.
        timeout: Duration,
    },
}

impl Default for PollMode {
    fn default() -> Self {
        PollMode::Sleep { timeout: Duration::from_millis(1) }
    }
}

/// Everything needed to create an [`XskSocket`](crate::XskSocket).
///
/// Sizes are in frames (rings) and bytes (frames). Ring sizes must be powers of two. The
/// kernel is lent at most `rx_ring_size` frames for receiving (fill and RX ring together);
/// the rest of the UMEM stays available for TX, so `frame_count = 2 * rx_ring_size` (the
/// default) splits it evenly between receiving and sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskConfig {
    /// Interface to bind to, in the calling thread's network namespace.
    pub ifname: String,
    /// Queue of that interface.
    pub queue_id: u32,
    /// Frames in the UMEM, allocated once at creation.
    pub frame_count: u32,
    /// Bytes per frame: 2048 (default) or 4096. The kernel takes no larger frame (chunk) than a
    /// page; a longer packet spans several frames ([`max_frame_len`](Self::max_frame_len)).
    pub frame_size: u32,
    /// The longest Ethernet frame (without FCS) the socket must receive and send: the
    /// interface's MTU + 14. Default 1514. When it exceeds [`frame_capacity`](Self::frame_capacity)
    /// the socket is bound with `XDP_USE_SG` (multi-buffer, Linux 6.6): such a frame arrives and
    /// leaves as a chain of frames, which the socket joins into one contiguous buffer for the
    /// application and splits again for sending ([`multi_buffer`](Self::multi_buffer)).
    pub max_frame_len: u32,
    /// Bytes reserved for the application at the start of every frame, before the kernel's
    /// own `XDP_PACKET_HEADROOM` (256). 0 by default.
    pub frame_headroom: u32,
    /// Descriptors in the RX ring.
    pub rx_ring_size: u32,
    /// Descriptors in the TX ring.
    pub tx_ring_size: u32,
    /// Descriptors in the fill ring.
    pub fill_ring_size: u32,
    /// Descriptors in the completion ring; should be at least `tx_ring_size`.
    pub comp_ring_size: u32,
    /// Most frames one [`rx_batch`](crate::XskSocket::rx_batch) hands out (default 64).
    pub batch_size: u32,
    /// Copy, zero-copy, or zero-copy with a fallback to copy.
    pub bind_mode: BindMode,
    /// What [`idle`](crate::XskSocket::idle) does.
    pub poll_mode: PollMode,
    /// Let libxdp attach its default XDP program, which redirects every frame of this queue
    /// to this socket. For tests. synack's own program registers [`fd`](crate::XskSocket::fd)
    /// in its XSKMAP instead, so the default is `false` (`XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD`).
    pub load_default_program: bool,
    /// Most `sendto()` kicks one [`flush`](crate::XskSocket::flush) makes. In copy mode the
    /// kernel sends at most 32 frames per kick and answers `EAGAIN` when more are waiting, so
    /// this bounds the frames one flush can push out to about `32 * max_kicks_per_flush`.
    pub max_kicks_per_flush: u32,
}

/// Smallest frame the kernel accepts in an aligned UMEM (`XDP_UMEM_MIN_CHUNK_SIZE`).
pub const MIN_FRAME_SIZE: u32 = 2048;
/// Headroom the kernel keeps before the packet in every frame (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// Longest Ethernet frame without FCS and VLAN tag: every frame must hold at least this.
pub const MAX_ETHERNET_FRAME: u32 = 1514;
/// Largest frame (chunk) the kernel accepts in an aligned UMEM: a page (`PAGE_SIZE`). Linux
/// refuses larger chunks with `EINVAL` even on huge pages (measured on 6.18).
pub const MAX_FRAME_SIZE: u32 = 4096;
/// Most frames one packet may span: the kernel builds a sent chain into one skb of at most
/// `MAX_SKB_FRAGS` (17) fragments after its head; 16 keeps a margin.
pub const MAX_FRAMES_PER_PACKET: u32 = 16;
/// Bytes of the Ethernet header (no VLAN tag): a frame is the MTU plus this.
pub const ETHERNET_HEADER_LEN: u32 = 14;

impl XskConfig {
    /// Defaults for `(ifname, queue_id)`: 4096 frames of 2048 bytes (8 MiB), rings of 2048,
    /// batches of 64, copy mode, sleeping poll, no default XDP program.
    pub fn new(ifname: impl Into<String>, queue_id: u32) -> Self {
        XskConfig {
            ifname: ifname.into(),
            queue_id,
            frame_count: 4096,
            frame_size: 2048,
            max_frame_len: MAX_ETHERNET_FRAME,
            frame_headroom: 0,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            fill_ring_size: 2048,
            comp_ring_size: 2048,
            batch_size: 64,
            bind_mode: BindMode::default(),
            poll_mode: PollMode::default(),
            load_default_program: false,
            max_kicks_per_flush: 8,
        }
    }

    /// Bytes of packet data one frame holds: `frame_size - XDP_PACKET_HEADROOM - frame_headroom`.
    pub fn frame_capacity(&self) -> u32 {
        self.frame_size.saturating_sub(XDP_PACKET_HEADROOM).saturating_sub(self.frame_headroom)
    }

    /// Sizes the frames for an interface MTU: `max_frame_len = mtu + 14`, and the smallest
    /// frame size that holds such a frame whole (2048 up to MTU 1778, the default, so an MTU of
    /// 1500 changes nothing), else 4096, chained beyond MTU 3826 ([`multi_buffer`](Self::multi_buffer)).
    pub fn set_mtu(&mut self, mtu: u32) {
        self.max_frame_len = mtu.saturating_add(ETHERNET_HEADER_LEN).max(MAX_ETHERNET_FRAME);
        self.frame_size = MIN_FRAME_SIZE;
        if self.frame_capacity() < self.max_frame_len {
            self.frame_size = MAX_FRAME_SIZE;
        }
    }

    /// Whether a frame of `max_frame_len` takes more than one UMEM frame: the socket is then
    /// bound with `XDP_USE_SG` and chains frames.
    pub fn multi_buffer(&self) -> bool {
        self.max_frame_len > self.frame_capacity()
    }

    /// UMEM frames the longest packet takes: 1 unless [`multi_buffer`](Self::multi_buffer).
    pub fn frames_per_packet(&self) -> u32 {
        self.max_frame_len.div_ceil(self.frame_capacity().max(1)).max(1)
    }

    /// Bytes of the longest packet the socket hands out or takes: a frame's capacity, or
    /// `max_frame_len` with multi-buffer. The buffers a caller copies frames into (hand-offs,
    /// captures) need this many.
    pub fn packet_capacity(&self) -> u32 {
        self.max_frame_len.max(self.frame_capacity())
    }

    /// Checks every field; the first problem found is returned as
    /// [`XskError::InvalidConfig`].
    pub fn validate(&self) -> Result<(), XskError> {
        let invalid = |field: &'static str, reason: String| Err(XskError::InvalidConfig { field, reason });
        if self.ifname.is_empty() || self.ifname.len() > 15 || self.ifname.contains('\0') {
            return invalid("ifname", format!("{:?} is not an interface name (1 to 15 bytes, no NUL)", self.ifname));
        }
        if self.frame_size != MIN_FRAME_SIZE && self.frame_size != MAX_FRAME_SIZE {
            return invalid(
                "frame_size",
                format!(
                    "{} is not 2048 or 4096 (the kernel takes no frame larger than a page: longer packets \
                     span several frames, see max_frame_len)",
                    self.frame_size
                ),
            );
        }
        if self.frame_count == 0 {
            return invalid("frame_count", "must be at least 1".into());
        }
        if u64::from(self.frame_count) * u64::from(self.frame_size) > 1 << 32 {
            return invalid(
                "frame_count",
                format!("{} frames of {} bytes exceed 4 GiB", self.frame_count, self.frame_size),
            );
        }
        if self.frame_capacity() < MAX_ETHERNET_FRAME {
            return invalid(
                "frame_headroom",
                format!(
                    "{} leaves {} bytes per frame, less than a \
                     {MAX_ETHERNET_FRAME}-byte Ethernet frame",
                    self.frame_headroom,
                    self.frame_capacity()
                ),
            );
        }
        if self.max_frame_len < MAX_ETHERNET_FRAME {
            return invalid("max_frame_len", format!("{} is below {MAX_ETHERNET_FRAME}", self.max_frame_len));
        }
        if self.frames_per_packet() > MAX_FRAMES_PER_PACKET {
            return invalid(
                "max_frame_len",
                format!(
                    "{} bytes would span {} frames of {} bytes; at most {MAX_FRAMES_PER_PACKET}",
                    self.max_frame_len,
                    self.frames_per_packet(),
                    self.frame_capacity()
                ),
            );
        }
        for (field, size) in [
            ("rx_ring_size", self.rx_ring_size),
            ("tx_ring_size", self.tx_ring_size),
            ("fill_ring_size", self.fill_ring_size),
            ("comp_ring_size", self.comp_ring_size),
        ] {
            if !size.is_power_of_two() {
                return invalid(field, format!("{size} is not a power of two"));
            }
        }
        if self.multi_buffer() && self.bind_mode != BindMode::Copy {
            return invalid(
                "bind_mode",
                format!(
                    "frames of {} bytes need several UMEM frames each, which synack supports in copy mode only",
                    self.max_frame_len
                ),
            );
        }
        if self.batch_size == 0 || self.batch_size > self.rx_ring_size {
            return invalid(
                "batch_size",
                format!("{} is not between 1 and rx_ring_size ({})", self.batch_size, self.rx_ring_size),
            );
        }
        if self.frames_per_packet() > self.batch_size || self.frames_per_packet() > self.tx_ring_size {
            return invalid(
                "batch_size",
                format!(
                    "a packet of {} frames must fit in one batch ({}) and in the TX ring ({})",
                    self.frames_per_packet(),
                    self.batch_size,
                    self.tx_ring_size
                ),
            );
        }
        if self.frame_count <= self.rx_ring_size {
            return invalid(
                "frame_count",
                format!(
                    "{} frames leave none for TX: the kernel may hold up to rx_ring_size ({}) \
                     for receiving",
                    self.frame_count, self.rx_ring_size
                ),
            );
        }
        if self.max_kicks_per_flush == 0 {
            return invalid("max_kicks_per_flush", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<(), XskError>) -> &'static str {
        match result {
            Err(XskError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = XskConfig::new("eth0", 0);
        config.validate().unwrap();
        assert_eq!(config.frame_capacity(), 2048 - 256);
    }

    #[test]
    fn frame_size_must_be_2048_or_4096() {
        let mut config = XskConfig::new("eth0", 0);
        config.frame_size = 4096;
        config.validate().unwrap();
        config.frame_size = 3000;
        assert_eq!(field_of(config.validate()), "frame_size");
        config.frame_size = 1024;
        assert_eq!(field_of(config.validate()), "frame_size");
    }

    #[test]
    fn an_mtu_of_1500_keeps_the_default_frames() {
        let mut config = XskConfig::new("eth0", 0);
        let default = config.clone();
        config.set_mtu(1500);
        assert_eq!(config, default, "MTU 1500 must change nothing");
        assert!(!config.multi_buffer());
        assert_eq!(config.frames_per_packet(), 1);
        assert_eq!(config.packet_capacity(), 2048 - 256);
    }

    #[test]
    fn frames_follow_the_mtu() {
        let mut config = XskConfig::new("eth0", 0);
        // The largest MTU a 2048-byte frame holds whole: 2048 - 256 - 14.
        config.set_mtu(1778);
        assert_eq!((config.frame_size, config.max_frame_len, config.multi_buffer()), (2048, 1792, false));
        config.set_mtu(1779);
        assert_eq!((config.frame_size, config.multi_buffer()), (4096, false));
        config.set_mtu(4096 - 256 - 14);
        assert_eq!((config.frame_size, config.multi_buffer()), (4096, false));
        config.set_mtu(9000);
        assert_eq!((config.frame_size, config.max_frame_len), (4096, 9014));
        assert!(config.multi_buffer());
        assert_eq!(config.frames_per_packet(), 3, "9014 bytes in frames of 3840");
        assert_eq!(config.packet_capacity(), 9014);
        config.validate().unwrap();
        // A tiny MTU still leaves room for a standard frame.
        config.set_mtu(576);
        assert_eq!((config.frame_size, config.max_frame_len), (2048, 1514));
    }

    #[test]
    fn multi_buffer_limits_are_checked() {
        let mut config = XskConfig::new("eth0", 0);
        config.set_mtu(65_000);
        assert_eq!(field_of(config.validate()), "max_frame_len", "17 frames of 3840");
        config.set_mtu(9000);
        config.bind_mode = BindMode::ZeroCopy;
        assert_eq!(field_of(config.validate()), "bind_mode");
        config.bind_mode = BindMode::Copy;
        config.batch_size = 2;
        assert_eq!(field_of(config.validate()), "batch_size", "a 3-frame packet in batches of 2");
        config.max_frame_len = 1000;
        assert_eq!(field_of(config.validate()), "max_frame_len");
    }

    #[test]
    fn rings_must_be_powers_of_two() {
        let mut config = XskConfig::new("eth0", 0);
        config.comp_ring_size = 1000;
        assert_eq!(field_of(config.validate()), "comp_ring_size");
    }

    #[test]
    fn headroom_must_leave_room_for_a_full_frame() {
        let mut config = XskConfig::new("eth0", 0);
        config.frame_headroom = 2048 - 256 - 1513;
        assert_eq!(field_of(config.validate()), "frame_headroom");
        config.frame_headroom = 2048 - 256 - 1514;
        config.validate().unwrap();
    }

    #[test]
    fn some_frames_must_be_left_for_tx() {
        let mut config = XskConfig::new("eth0", 0);
        config.frame_count = 2048;
        assert_eq!(field_of(config.validate()), "frame_count");
        config.rx_ring_size = 1024;
        config.batch_size = 64;
        config.validate().unwrap();
    }

    #[test]
    fn ifname_and_batch_are_checked() {
        let mut config = XskConfig::new("a-name-that-is-too-long", 0);
        assert_eq!(field_of(config.validate()), "ifname");
        config.ifname = "eth0".into();
        config.batch_size = 0;
        assert_eq!(field_of(config.validate()), "batch_size");
    }
}
