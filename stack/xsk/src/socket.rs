//! The AF_XDP socket: binding, and the four rings (fill, RX, TX, completion) over one UMEM.
//!
//! This is the only module with `unsafe`: every ring operation and every view of frame memory
//! is unsafe in xsk-rs, because the kernel shares that memory. What makes each one sound is
//! the frame accounting: a frame's bytes are touched only while the frame is in the
//! application's hands (popped from the pool, or taken from the RX ring), and a frame is handed
//! to the kernel (fill or TX ring) only from there, and then forgotten until the kernel gives
//! it back (RX or completion ring).
#![allow(unsafe_code)]

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::xdp::XdpOptionsFlags;
use rustix::net::{recv, send, sockopt, RecvFlags, SendFlags};
use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::umem::frame::DataMut;
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue};

use crate::config::{BindMode, BoundMode, PollMode, XskConfig};
use crate::error::{BindFailure, KickError, TxSubmitError, XskError};
use crate::netlink;
use crate::pool::{FrameAccounting, FramePool};
use crate::stats::{Counters, XdpStats};
use crate::umem::{io_source, is_permission_error, Umem};

/// What the application does with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum RxVerdict {
    /// Done with it: the frame goes back to the pool (and from there to the fill ring).
    Release,
    /// The frame now holds a reply of this many bytes, built in place: send it. No copy.
    Transmit(usize),
}

/// One received frame, lent to the application inside [`XskSocket::rx_batch`].
///
/// Dereferences to the received bytes. [`buffer_mut`](Self::buffer_mut) gives the whole frame
/// (up to [`capacity`](Self::capacity) bytes), for a reply longer than the request. A packet that
/// arrived in several UMEM frames (multi-buffer) is lent joined, as one buffer of
/// `max_frame_len` bytes.
pub struct RxFrame<'a> {
    data: FrameBytes<'a>,
    len: usize,
}

/// Where a lent packet's bytes are: its UMEM frame, or the socket's buffer that joined a chain.
enum FrameBytes<'a> {
    Umem(DataMut<'a>),
    Joined(&'a mut [u8]),
}

impl FrameBytes<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            FrameBytes::Umem(data) => data.contents(),
            FrameBytes::Joined(buf) => buf,
        }
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            FrameBytes::Umem(data) => data.contents_mut(),
            FrameBytes::Joined(buf) => buf,
        }
    }
}

impl RxFrame<'_> {
    /// Bytes received.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty frame (the kernel never delivers one).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the frame can hold: the most a [`RxVerdict::Transmit`] can send.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.data.bytes().len()
    }

    /// The received bytes.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.data.bytes()[..self.len]
    }

    /// The received bytes, writable.
    #[inline]
    pub fn packet_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.data.bytes_mut()[..len]
    }

    /// The whole frame, writable; the first [`len`](Self::len) bytes are the received ones.
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.data.bytes_mut()
    }
}

impl Deref for RxFrame<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.packet()
    }
}

impl DerefMut for RxFrame<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.packet_mut()
    }
}

/// `XDP_PKT_CONTD` (linux/if_xdp.h): set on every descriptor of a multi-buffer packet but its
/// last.
const XDP_PKT_CONTD: u32 = 1;

/// One received packet of a batch: `count` descriptors of `rx_scratch` from `first` (more than
/// one for a chain), `len` bytes in all.
#[derive(Debug, Clone, Copy, Default)]
struct RxPacket {
    first: usize,
    count: usize,
    len: usize,
}

/// The frames of one RX batch, lent all together by [`XskSocket::rx_batch_all`], so that the
/// application can make several passes over them (parse them all, then look them all up, then
/// process them). Each frame gets a verdict; [`RxVerdict::Release`] unless set. A frame is a
/// packet: one that arrived in several UMEM frames is lent joined.
pub struct RxBatch<'a> {
    umem: &'a xsk_rs::Umem,
    descs: &'a mut [FrameDesc],
    packets: &'a [RxPacket],
    /// The joined chains: `max_frame_len` bytes for packet `i` at `i * max_frame_len`.
    joined: &'a mut [u8],
    max_frame_len: usize,
    verdicts: &'a mut [RxVerdict],
}

impl RxBatch<'_> {
    /// Frames in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True for an empty batch (never lent).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Frame `i`, for as long as this borrow of the batch lasts; it can be visited again.
    #[inline]
    pub fn frame(&mut self, i: usize) -> RxFrame<'_> {
        let packet = self.packets[i];
        if packet.count > 1 {
            let at = i * self.max_frame_len;
            return RxFrame {
                data: FrameBytes::Joined(&mut self.joined[at..at + self.max_frame_len]),
                len: packet.len,
            };
        }
        // Safety: every descriptor of the batch came from the RX ring in this batch and is in
        // no ring until the batch ends (accounted as rx_held); the view borrows the whole batch
        // mutably, so no other view of any of its frames exists meanwhile.
        let mut data = unsafe { self.umem.data_mut(&mut self.descs[packet.first]) };
        let mut cursor = data.cursor();
        let capacity = cursor.buf_len();
        cursor.set_pos(capacity);
        RxFrame { data: FrameBytes::Umem(data), len: packet.len }
    }

    /// What becomes of frame `i` when the batch ends.
    #[inline]
    pub fn set_verdict(&mut self, i: usize, verdict: RxVerdict) {
        self.verdicts[i] = verdict;
    }
}

/// A free frame to write a packet into, from [`XskSocket::tx_alloc`]. Dereferences to the
/// whole frame (capacity bytes); how much of it to send is given to
/// [`XskSocket::tx_submit`]. With multi-buffer it is the socket's buffer of `max_frame_len`
/// bytes, which `tx_submit` splits into a chain of UMEM frames.
pub struct TxBuf<'a> {
    data: FrameBytes<'a>,
}

impl Deref for TxBuf<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.data.bytes()
    }
}

impl DerefMut for TxBuf<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.data.bytes_mut()
    }
}

/// One AF_XDP socket bound to `(interface, queue)`, with its own UMEM, rings and accounted
/// frames. Owned by one worker; nothing here locks or allocates after [`XskSocket::new`].
pub struct XskSocket {
    // Rings first, so they are dropped (and the socket closed) before the UMEM handle.
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    umem: Umem,
    raw_fd: RawFd,
    pool: FramePool,
    accounting: FrameAccounting,
    counters: Counters,
    /// The kernel's statistics as last read ([`kernel_stats`](Self::kernel_stats)).
    kernel_stats: XdpStats,
    /// Descriptors taken from the RX ring in one batch (a batch, plus the rest of a chain it
    /// cut).
    rx_scratch: Box<[FrameDesc]>,
    /// The packets of one batch and their verdicts.
    rx_packets: Box<[RxPacket]>,
    rx_verdicts: Box<[RxVerdict]>,
    /// Multi-buffer: the chains of one batch joined, `max_frame_len` bytes per packet (empty
    /// otherwise).
    rx_joined: Box<[u8]>,
    /// Multi-buffer: the buffer `tx_alloc` lends, `max_frame_len` bytes (empty otherwise).
    tx_joined: Box<[u8]>,
    /// Multi-buffer: the frames `tx_alloc` set aside for the packet in hand (enough for the
    /// longest), of which `tx_submit` uses what the packet needs.
    tx_reserved: Box<[u64]>,
    tx_reserved_len: usize,
    /// A chain was cut at the end of the last batch and dropped: its rest, at the start of
    /// the next, is dropped too.
    rx_drop_tail: bool,
    /// `config.multi_buffer()`, and the geometry the chains need.
    multi_buffer: bool,
    frame_capacity: usize,
    max_frame_len: usize,
    /// Descriptors taken from the completion ring in one reap.
    comp_scratch: Box<[FrameDesc]>,
    /// Descriptors handed to the fill ring in one refill.
    fill_scratch: Box<[FrameDesc]>,
    /// Frames submitted for TX, not yet in the TX ring. Never grows past its capacity.
    tx_pending: Vec<FrameDesc>,
    tx_in_hand: Option<FrameDesc>,
    /// The TX ring holds frames that no kick has yet made the kernel take.
    kick_outstanding: bool,
    mode: BoundMode,
    config: XskConfig,
}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("ifname", &self.config.ifname)
            .field("queue_id", &self.config.queue_id)
            .field("fd", &self.raw_fd)
            .field("mode", &self.mode)
            .field("accounting", &self.accounting)
            .finish_non_exhaustive()
    }
}

impl XskSocket {
    /// Creates the UMEM, binds a socket to `(config.ifname, config.queue_id)` in the calling
    /// thread's network namespace, and fills the fill ring. With `BindMode::Auto`, zero-copy is
    /// tried first; [`mode`](Self::mode) tells which mode was granted.
    ///
    /// Allocates (the UMEM, scratch arrays); nothing else does. A queue whose previous socket
    /// was closed a moment ago can still be busy for some milliseconds (the kernel releases it
    /// from a work queue; about 40 ms was measured on veth): a caller that rebinds at once
    /// should retry on [`BindFailure::Busy`] for a short while.
    pub fn new(config: XskConfig) -> Result<XskSocket, XskError> {
        crate::logs::route_to_tracing();
        config.validate()?;
        let link = netlink::interface_info(&config.ifname).map_err(|source| {
            if netlink::is_no_such_device(&source) {
                XskError::NoSuchInterface { ifname: config.ifname.clone() }
            } else {
                XskError::Io { ifname: config.ifname.clone(), operation: "look the interface up (RTM_GETLINK)", source }
            }
        })?;
        let umem = Umem::new(&config)?;

        let attempts: &[BindFlags] = match config.bind_mode {
            BindMode::Copy => &[BindFlags::XDP_COPY],
            BindMode::ZeroCopy => &[BindFlags::XDP_ZEROCOPY],
            BindMode::Auto => &[BindFlags::XDP_ZEROCOPY, BindFlags::XDP_COPY],
        };
        // Multi-buffer (Linux 6.6): a packet longer than a frame arrives as a chain of frames,
        // instead of being dropped, and may be sent as one.
        let sg = if config.multi_buffer() { BindFlags::XDP_USE_SG } else { BindFlags::empty() };
        let mut last_error = None;
        let mut rings = None;
        for &mode_flag in attempts {
            match bind(&config, &umem, mode_flag | sg | BindFlags::XDP_USE_NEED_WAKEUP) {
                Ok(bound) => {
                    rings = Some(bound);
                    break;
                }
                Err(source) => last_error = Some(source),
            }
        }
        let Some((tx, rx, fill, comp)) = rings else {
            let source = last_error.unwrap_or_else(|| io::Error::other("no bind attempted"));
            return Err(bind_error(&config, link.rx_queues, source));
        };

        let raw_fd = rx.fd().as_raw_fd();
        // Safety: the fd belongs to the xsk-rs socket, which `rx` keeps open; the borrow does
        // not outlive this function.
        let fd = unsafe { BorrowedFd::borrow_raw(raw_fd) };
        let options = sockopt::xdp_options(fd).map_err(|e| XskError::Io {
            ifname: config.ifname.clone(),
            operation: "read the socket's XDP_OPTIONS",
            source: e.into(),
        })?;
        let mode =
            if options.contains(XdpOptionsFlags::XDP_OPTIONS_ZEROCOPY) { BoundMode::ZeroCopy } else { BoundMode::Copy };

        let frame_count = config.frame_count as usize;
        let batch = config.batch_size as usize;
        let multi_buffer = config.multi_buffer();
        let per_packet = config.frames_per_packet() as usize;
        let max_frame_len = config.max_frame_len as usize;
        let joined_len = |len: usize| if multi_buffer { len } else { 0 };
        let mut socket = XskSocket {
            rx,
            tx,
            fill,
            comp,
            raw_fd,
            pool: FramePool::full(config.frame_count, config.frame_size),
            accounting: FrameAccounting::all_free(frame_count),
            counters: Counters::default(),
            kernel_stats: XdpStats::default(),
            rx_scratch: vec![FrameDesc::default(); batch + per_packet - 1].into_boxed_slice(),
            rx_packets: vec![RxPacket::default(); batch].into_boxed_slice(),
            rx_verdicts: vec![RxVerdict::Release; batch].into_boxed_slice(),
            rx_joined: vec![0; joined_len(batch * max_frame_len)].into_boxed_slice(),
            tx_joined: vec![0; joined_len(max_frame_len)].into_boxed_slice(),
            tx_reserved: vec![0; joined_len(per_packet)].into_boxed_slice(),
            tx_reserved_len: 0,
            rx_drop_tail: false,
            multi_buffer,
            frame_capacity: umem.frame_capacity(),
            max_frame_len,
            comp_scratch: vec![FrameDesc::default(); config.comp_ring_size as usize].into_boxed_slice(),
            fill_scratch: vec![FrameDesc::default(); config.fill_ring_size as usize].into_boxed_slice(),
            tx_pending: Vec::with_capacity(config.tx_ring_size as usize),
            tx_in_hand: None,
            kick_outstanding: false,
            mode,
            umem,
            config,
        };
        socket.refill();
        Ok(socket)
    }

    /// The socket's file descriptor, for an XSKMAP entry or an event loop. Valid as long as
    /// the socket lives.
    #[inline]
    pub fn fd(&self) -> RawFd {
        self.raw_fd
    }

    /// The mode the kernel granted.
    pub fn mode(&self) -> BoundMode {
        self.mode
    }

    /// The configuration the socket was created with.
    pub fn config(&self) -> &XskConfig {
        &self.config
    }

    /// The UMEM's geometry.
    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// Where every frame is now.
    pub fn accounting(&self) -> FrameAccounting {
        self.accounting
    }

    /// Every frame in exactly one place (checked in builds with debug assertions).
    #[inline]
    fn debug_check_accounting(&self) {
        debug_assert_eq!(
            self.accounting.total(),
            self.accounting.frame_count,
            "frames lost or doubled: {:?}",
            self.accounting
        );
        debug_assert_eq!(self.accounting.free, self.pool.len(), "the pool and its count disagree");
    }

    /// The socket's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The kernel's statistics for this socket.
    pub fn xdp_statistics(&self) -> io::Result<XdpStats> {
        let stats = sockopt::xdp_statistics(self.as_fd())?;
        Ok(XdpStats {
            rx_dropped: stats.rx_dropped,
            rx_invalid_descs: stats.rx_invalid_descs,
            tx_invalid_descs: stats.tx_invalid_descs,
            rx_ring_full: stats.rx_ring_full.unwrap_or(0),
            rx_fill_ring_empty_descs: stats.rx_fill_ring_empty_descs.unwrap_or(0),
            tx_ring_empty_descs: stats.tx_ring_empty_descs.unwrap_or(0),
        })
    }

    /// The kernel's statistics for this socket, read now; the last figures read if the read
    /// fails, so that counters published from them never go down. A system call: for
    /// housekeeping, not the packet path.
    pub fn kernel_stats(&mut self) -> XdpStats {
        if let Ok(stats) = self.xdp_statistics() {
            self.kernel_stats = stats;
        }
        self.kernel_stats
    }

    /// Moves up to `min(max, batch_size)` descriptors from the RX ring into `rx_scratch`, with
    /// their frames accounted as held by us, and with multi-buffer the rest of a chain the
    /// batch cut (the kernel publishes a packet's descriptors together); returns how many.
    fn take_rx(&mut self, max: usize) -> usize {
        let want = max.min(self.rx_packets.len());
        if want == 0 {
            return 0;
        }
        // Safety: the descriptors written are taken from the RX ring, which moves those frames
        // from the kernel to us (accounted just below); each is used once and then released or
        // queued for TX.
        let mut received = unsafe { self.rx.consume(&mut self.rx_scratch[..want]) };
        if received == 0 {
            if self.accounting.fill == 0 {
                self.counters.fill_empty_events += 1;
            }
            return 0;
        }
        while self.multi_buffer
            && received < self.rx_scratch.len()
            && self.rx_scratch[received - 1].options() & XDP_PKT_CONTD != 0
        {
            // Safety: as above.
            let more = unsafe { self.rx.consume_one(&mut self.rx_scratch[received]) };
            if more == 0 {
                break;
            }
            received += more;
        }
        self.accounting.fill -= received;
        self.accounting.rx_held += received;
        self.counters.rx_frames += received as u64;
        self.counters.rx_batches += 1;
        received
    }

    /// Groups the `received` descriptors of `rx_scratch` into packets (`rx_packets`, their
    /// descriptors moved to the front in order), joining each chain into its place in
    /// `rx_joined`. Frames that make no packet are released or, outside the UMEM, forgotten,
    /// and counted. Returns the number of packets.
    fn collect_packets(&mut self, received: usize) -> usize {
        let (mut packets, mut kept, mut next) = (0, 0, 0);
        while next < received {
            let first = next;
            while next < received && self.rx_scratch[next].options() & XDP_PKT_CONTD != 0 {
                next += 1;
            }
            // The last descriptor of the packet; past the end when the chain was cut short.
            let complete = next < received;
            next = (next + 1).min(received);
            let count = next - first;
            let mut len = 0;
            let mut owned = true;
            for desc in &self.rx_scratch[first..next] {
                len += desc.lengths().data();
                owned &= self.umem.frame_of(desc.addr() as u64).is_some();
            }
            let max_len = if count > 1 { self.max_frame_len } else { usize::MAX };
            // The rest of a chain dropped in an earlier batch is no packet: lent, its first
            // bytes (payload the sender chose) would be read as a frame.
            let tail = core::mem::replace(&mut self.rx_drop_tail, !complete);
            if tail || !(complete && owned && len <= max_len) {
                // Not a packet we can lend. A descriptor outside the UMEM owns no frame of
                // ours: it is neither used nor returned, and the accounting misses a frame,
                // which `check` reports.
                for i in first..next {
                    let addr = self.rx_scratch[i].addr() as u64;
                    self.accounting.rx_held -= 1;
                    match self.umem.frame_of(addr) {
                        Some(frame_addr) => self.release(frame_addr),
                        None => self.counters.invalid_addresses += 1,
                    }
                }
                if !tail && (count > 1 || !complete) {
                    self.counters.rx_chains_dropped += 1;
                }
                continue;
            }
            if count > 1 {
                let mut at = packets * self.max_frame_len;
                for desc in &self.rx_scratch[first..next] {
                    // Safety: the frame was taken from the RX ring in this batch and is in no
                    // ring and no other view (accounted as rx_held); this view only reads.
                    let data = unsafe { self.umem.inner().data(desc) };
                    let bytes = data.contents();
                    self.rx_joined[at..at + bytes.len()].copy_from_slice(bytes);
                    at += bytes.len();
                }
                self.counters.rx_chained += 1;
            } else {
                // The kernel wrote this frame on another core (the sender's, in copy mode):
                // ask for its headers now, so that a batch's misses overlap instead of
                // stalling the stack once per frame when it reaches each.
                // Safety: as above; this view only reads, and only until the next line.
                let data = unsafe { self.umem.inner().data(&self.rx_scratch[first]) };
                prefetch_headers(data.contents());
            }
            self.rx_scratch.copy_within(first..next, kept);
            self.rx_packets[packets] = RxPacket { first: kept, count, len };
            self.rx_verdicts[packets] = RxVerdict::Release;
            kept += count;
            packets += 1;
        }
        packets
    }

    /// Takes up to `min(max, batch_size)` received frames and hands each to `f`, which reads
    /// it, may rewrite it, and decides: release it, or send it back as it now is (a reply
    /// built in place, without a copy). Returns the number of UMEM frames received (a chain
    /// counts each of its frames).
    ///
    /// Released frames go to the pool; call [`refill`](Self::refill) to lend them to the
    /// kernel again. Frames to transmit join the pending TX batch; [`flush`](Self::flush)
    /// sends it.
    pub fn rx_batch<F>(&mut self, max: usize, mut f: F) -> usize
    where
        F: FnMut(&mut RxFrame<'_>) -> RxVerdict,
    {
        let received = self.take_rx(max);
        let packets = self.collect_packets(received);
        for i in 0..packets {
            let packet = self.rx_packets[i];
            let verdict = if packet.count > 1 {
                let at = i * self.max_frame_len;
                let joined = &mut self.rx_joined[at..at + self.max_frame_len];
                f(&mut RxFrame { data: FrameBytes::Joined(joined), len: packet.len })
            } else {
                // Safety: the frame was just taken from the RX ring and is in no ring and no
                // other view until this block ends (accounted as rx_held).
                let mut data = unsafe { self.umem.inner().data_mut(&mut self.rx_scratch[packet.first]) };
                let mut cursor = data.cursor();
                let capacity = cursor.buf_len();
                cursor.set_pos(capacity);
                f(&mut RxFrame { data: FrameBytes::Umem(data), len: packet.len })
            };
            self.apply_verdict(i, verdict);
        }
        received
    }

    /// Like [`rx_batch`](Self::rx_batch), but lends the whole batch at once to `f`, which may
    /// visit each frame several times and sets each one's verdict ([`RxBatch`]). Returns the
    /// number of UMEM frames received.
    pub fn rx_batch_all<F>(&mut self, max: usize, f: F) -> usize
    where
        F: FnOnce(&mut RxBatch<'_>),
    {
        let received = self.take_rx(max);
        if received == 0 {
            return 0;
        }
        let packets = self.collect_packets(received);
        if packets > 0 {
            let mut batch = RxBatch {
                umem: self.umem.inner(),
                descs: &mut self.rx_scratch[..],
                packets: &self.rx_packets[..packets],
                joined: &mut self.rx_joined[..],
                max_frame_len: self.max_frame_len,
                verdicts: &mut self.rx_verdicts[..packets],
            };
            f(&mut batch);
        }
        for i in 0..packets {
            self.apply_verdict(i, self.rx_verdicts[i]);
        }
        received
    }

    /// Room left in the pending TX batch, publishing first when it has less than `needed`.
    #[inline]
    fn tx_room(&mut self, needed: usize) -> usize {
        if self.tx_pending.capacity() - self.tx_pending.len() < needed {
            self.publish_tx();
        }
        self.tx_pending.capacity() - self.tx_pending.len()
    }

    /// Sends received packet `i` back as a reply in place, or releases it. A chain's reply is
    /// written back from the joined buffer into the chain's own frames.
    #[inline]
    fn apply_verdict(&mut self, i: usize, verdict: RxVerdict) {
        let RxPacket { first, count, .. } = self.rx_packets[i];
        self.accounting.rx_held -= count;
        let capacity = self.frame_capacity;
        // A lone frame holds what its view holds (its packet may start off the usual offset);
        // a chain holds `capacity` bytes per frame.
        let room = if count == 1 { self.rx_frame_room(first) } else { count * capacity };
        // Frames of the chain the reply takes: none when it cannot be sent.
        let used = match verdict {
            RxVerdict::Transmit(len) if len > 0 && len <= room => {
                let used = if count == 1 { 1 } else { len.div_ceil(capacity) };
                if self.tx_room(used) >= used {
                    used
                } else {
                    self.counters.tx_dropped += 1;
                    0
                }
            }
            RxVerdict::Transmit(_) => {
                self.counters.tx_dropped += 1;
                0
            }
            RxVerdict::Release => 0,
        };
        if let RxVerdict::Transmit(len) = verdict {
            for k in 0..used {
                let mut desc = self.rx_scratch[first + k];
                let piece = if count == 1 { len } else { (len - k * capacity).min(capacity) };
                // Safety: the frame is still ours (taken from the RX ring in this batch, its
                // view ended with the batch); it goes to the TX ring just below.
                let mut data = unsafe { self.umem.inner().data_mut(&mut desc) };
                // The view's contents are the descriptor's length: set it first.
                data.cursor().set_pos(piece);
                if count > 1 {
                    let at = i * self.max_frame_len + k * capacity;
                    data.contents_mut().copy_from_slice(&self.rx_joined[at..at + piece]);
                }
                desc.set_options(if k + 1 < used { XDP_PKT_CONTD } else { 0 });
                self.tx_pending.push(desc);
            }
            self.accounting.tx_pending += used;
            if used > 1 {
                self.counters.tx_chained += 1;
            }
        }
        for k in used..count {
            let addr = self.rx_scratch[first + k].addr() as u64;
            // Checked in `collect_packets`: every descriptor kept is a frame of ours.
            if let Some(frame_addr) = self.umem.frame_of(addr) {
                self.release(frame_addr);
            }
        }
    }

    /// Bytes the view of received frame `rx_scratch[index]` holds.
    #[inline]
    fn rx_frame_room(&mut self, index: usize) -> usize {
        // Safety: the frame is ours (taken from the RX ring in this batch, no view left); this
        // view only measures it.
        let mut data = unsafe { self.umem.inner().data_mut(&mut self.rx_scratch[index]) };
        data.cursor().buf_len()
    }

    /// A free frame to build a packet in, or `None` when the pool is empty or the TX ring and
    /// the pending batch are full (back-pressure: flush, reap completions and try again).
    /// A frame it returns can always be submitted: a caller that builds a segment in it (and
    /// advances a connection's state) never has to throw the segment away. Calling it again
    /// before [`tx_submit`](Self::tx_submit) returns the same frame.
    ///
    /// With multi-buffer it lends the socket's buffer of `max_frame_len` bytes and sets aside
    /// the frames the longest packet takes; `tx_submit` copies the packet into as many of them
    /// as it needs and frees the others.
    pub fn tx_alloc(&mut self) -> Option<TxBuf<'_>> {
        let per_packet = self.tx_reserved.len().max(1);
        if self.tx_room(per_packet) < per_packet {
            self.counters.tx_ring_full += 1;
            return None;
        }
        if self.multi_buffer {
            if self.tx_reserved_len == 0 {
                if self.pool.len() < per_packet {
                    self.counters.tx_alloc_failures += 1;
                    return None;
                }
                for slot in self.tx_reserved.iter_mut() {
                    // Cannot fail: the pool holds at least `per_packet` frames.
                    *slot = self.pool.pop().unwrap_or_default();
                }
                self.tx_reserved_len = per_packet;
                self.accounting.free -= per_packet;
                self.accounting.tx_in_hand += per_packet;
            }
            return Some(TxBuf { data: FrameBytes::Joined(&mut self.tx_joined[..]) });
        }
        if self.tx_in_hand.is_none() {
            let Some(frame_addr) = self.pool.pop() else {
                self.counters.tx_alloc_failures += 1;
                return None;
            };
            self.accounting.free -= 1;
            self.accounting.tx_in_hand += 1;
            self.tx_in_hand = Some(self.umem.desc(frame_addr));
        }
        let desc = self.tx_in_hand.as_mut()?;
        // Safety: the frame in hand came from the free pool, so neither the kernel nor another
        // view touches it; the view borrows `self` mutably, so it ends before the frame is
        // submitted.
        let mut data = unsafe { self.umem.inner().data_mut(desc) };
        let mut cursor = data.cursor();
        let capacity = cursor.buf_len();
        cursor.set_pos(capacity);
        Some(TxBuf { data: FrameBytes::Umem(data) })
    }

    /// Queues the frame taken with [`tx_alloc`](Self::tx_alloc), holding `len` bytes, for the
    /// next [`flush`](Self::flush). On error the frame stays in hand.
    pub fn tx_submit(&mut self, len: usize) -> Result<(), TxSubmitError> {
        if self.multi_buffer {
            return self.tx_submit_chain(len);
        }
        let Some(mut desc) = self.tx_in_hand else {
            return Err(TxSubmitError::NoFrameInHand);
        };
        let capacity = self.umem.frame_capacity();
        if !self.set_len(&mut desc, len) {
            return Err(TxSubmitError::BadLength { len, capacity });
        }
        if self.tx_room(1) == 0 {
            return Err(TxSubmitError::RingFull);
        }
        self.tx_pending.push(desc);
        self.tx_in_hand = None;
        self.accounting.tx_in_hand -= 1;
        self.accounting.tx_pending += 1;
        Ok(())
    }

    /// `tx_submit` with multi-buffer: the packet in `tx_joined` is copied into as many of the
    /// reserved frames as it needs, queued as a chain; the other reserved frames go back.
    fn tx_submit_chain(&mut self, len: usize) -> Result<(), TxSubmitError> {
        if self.tx_reserved_len == 0 {
            return Err(TxSubmitError::NoFrameInHand);
        }
        if len == 0 || len > self.max_frame_len {
            return Err(TxSubmitError::BadLength { len, capacity: self.max_frame_len });
        }
        let capacity = self.frame_capacity;
        let used = len.div_ceil(capacity);
        if self.tx_room(used) < used {
            return Err(TxSubmitError::RingFull);
        }
        for k in 0..used {
            let mut desc = self.umem.desc(self.tx_reserved[k]);
            let piece = (len - k * capacity).min(capacity);
            // Safety: the reserved frames came from the free pool and are in no ring and no
            // other view; each goes to the TX ring just below.
            let mut data = unsafe { self.umem.inner().data_mut(&mut desc) };
            // The view's contents are the descriptor's length: set it first.
            data.cursor().set_pos(piece);
            data.contents_mut().copy_from_slice(&self.tx_joined[k * capacity..k * capacity + piece]);
            desc.set_options(if k + 1 < used { XDP_PKT_CONTD } else { 0 });
            self.tx_pending.push(desc);
        }
        let reserved = self.tx_reserved_len;
        self.tx_reserved_len = 0;
        self.accounting.tx_in_hand -= reserved;
        self.accounting.tx_pending += used;
        for k in used..reserved {
            self.release(self.tx_reserved[k]);
        }
        if used > 1 {
            self.counters.tx_chained += 1;
        }
        Ok(())
    }

    /// Puts the pending TX batch in the TX ring (as much as fits) and kicks the kernel with
    /// `sendto(MSG_DONTWAIT)` when the ring asks for it (always, in copy mode). Returns the
    /// frames put in the ring. Transient kick failures are counted and retried on the next
    /// flush; only a hard failure (device gone) is an error.
    pub fn flush(&mut self) -> Result<usize, KickError> {
        let published = self.publish_tx();
        if published > 0 {
            self.kick_outstanding = true;
        }
        if !self.kick_outstanding {
            return Ok(published);
        }
        if self.mode == BoundMode::ZeroCopy && !self.tx.needs_wakeup() {
            // The driver is polling the ring by itself.
            self.kick_outstanding = false;
            return Ok(published);
        }
        for _ in 0..self.config.max_kicks_per_flush {
            self.counters.tx_kicks += 1;
            match send(self.as_fd(), &[], SendFlags::DONTWAIT) {
                Ok(_) => {
                    self.kick_outstanding = false;
                    break;
                }
                // EAGAIN: in copy mode the kernel sends 32 frames per kick and says EAGAIN
                // when more wait; kick again while the budget lasts.
                Err(Errno::AGAIN) => self.counters.tx_kick_errors += 1,
                Err(Errno::BUSY | Errno::NOBUFS | Errno::NETDOWN) => {
                    self.counters.tx_kick_errors += 1;
                    break;
                }
                Err(Errno::INTR) => {}
                Err(errno) => return Err(KickError { errno: errno.raw_os_error() }),
            }
        }
        Ok(published)
    }

    /// Takes the frames the kernel has finished sending from the completion ring back into
    /// the pool. Returns how many.
    pub fn reap_completions(&mut self) -> usize {
        // Safety: entries of the completion ring are frames the kernel has finished with;
        // they were accounted as tx_queued and return to the pool below.
        let completed = unsafe { self.comp.consume(&mut self.comp_scratch) };
        self.accounting.tx_queued -= completed;
        self.counters.tx_completed += completed as u64;
        for i in 0..completed {
            let addr = self.comp_scratch[i].addr() as u64;
            match self.umem.frame_of(addr) {
                Some(frame_addr) => self.release(frame_addr),
                // As in `rx_batch`: counted, and `check` reports the missing frame.
                None => self.counters.invalid_addresses += 1,
            }
        }
        completed
    }

    /// Lends free frames to the kernel for receiving: as many as the fill ring takes and the
    /// pool has, up to `rx_ring_size` frames held by the kernel for receiving in all (fill
    /// ring and RX ring together). Frames beyond that could not be delivered anyway (the RX
    /// ring would be full), and keeping them in the pool guarantees that at least
    /// `frame_count - rx_ring_size` frames stay available for TX. Returns how many.
    pub fn refill(&mut self) -> usize {
        let free = self.pool.len();
        let wanted = (self.config.rx_ring_size as usize).saturating_sub(self.accounting.fill);
        if wanted == 0 {
            self.debug_check_accounting();
            return 0;
        }
        let room = self.fill.nb_free(wanted as u32) as usize;
        let count = wanted.min(room).min(free).min(self.fill_scratch.len());
        if count == 0 {
            if room > 0 {
                self.counters.refill_pool_empty += 1;
            }
            return 0;
        }
        for slot in &mut self.fill_scratch[..count] {
            // Cannot fail: `count <= free`.
            let frame_addr = self.pool.pop().unwrap_or_default();
            *slot = self.umem.desc(frame_addr);
        }
        // Safety: the frames came from the free pool, so nothing else uses them; once in the
        // fill ring they are forgotten until the RX ring returns them.
        let produced = unsafe { self.fill.produce(&self.fill_scratch[..count]) };
        // The ring has one producer, us, and had room for `count`: `produced == count`. Should
        // it not be, the frames not produced go back.
        for desc in &self.fill_scratch[produced..count] {
            let _ = self.pool.push(desc.addr() as u64 & !(u64::from(self.umem.frame_size()) - 1));
        }
        self.accounting.free -= produced;
        self.accounting.fill += produced;
        if produced > 0 && self.fill.needs_wakeup() {
            self.counters.rx_kicks += 1;
            // A zero-length receive only wakes the driver; EAGAIN is its normal answer.
            let _ = recv(self.as_fd(), &mut [0u8; 0][..], RecvFlags::DONTWAIT);
        }
        self.debug_check_accounting();
        produced
    }

    /// The usual end of a loop iteration: flush TX, reap completions, refill.
    pub fn maintain(&mut self) -> Result<(), KickError> {
        self.flush()?;
        self.reap_completions();
        self.refill();
        Ok(())
    }

    /// What to do when a loop iteration found no work, per the configured [`PollMode`]:
    /// spin once, or sleep in `poll()` until a frame arrives or the timeout passes. Returns
    /// true when frames are ready.
    pub fn idle(&mut self) -> bool {
        match self.config.poll_mode {
            PollMode::Busy => {
                std::hint::spin_loop();
                false
            }
            PollMode::Sleep { timeout } => self.wait_idle(timeout).unwrap_or(false),
        }
    }

    /// Sleeps in `poll(POLLIN)` on the socket until a frame is ready to receive or `timeout`
    /// passes. Returns true when frames are ready. In copy mode the kernel also pushes out
    /// pending TX frames during the poll.
    pub fn wait_idle(&self, timeout: Duration) -> io::Result<bool> {
        let timeout = rustix::time::Timespec::try_from(timeout)
            .unwrap_or(rustix::time::Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        let fd = self.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(fds[0].revents().contains(PollFlags::IN)),
            Err(Errno::INTR) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Flushes and reaps until every TX frame is back in the pool, or `timeout` passes.
    /// Returns true when none is left in flight. For shutdown and tests.
    pub fn drain_tx(&mut self, timeout: Duration) -> Result<bool, KickError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap_completions();
            if self.accounting.tx_pending == 0 && self.accounting.tx_queued == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.kick_outstanding |= self.accounting.tx_queued > 0;
            self.flush()?;
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Returns a frame to the pool.
    #[inline]
    fn release(&mut self, frame_addr: u64) {
        if self.pool.push(frame_addr).is_ok() {
            self.accounting.free += 1;
        } else {
            // The pool is as large as the UMEM, so a full pool means this frame was already
            // free: the accounting would be wrong either way, so make it visible.
            self.counters.invalid_addresses += 1;
        }
    }

    /// Sets a frame descriptor's length for TX; false when out of range.
    #[inline]
    fn set_len(&self, desc: &mut FrameDesc, len: usize) -> bool {
        // Safety: only the descriptor's length changes; no frame byte is read or written.
        let mut data = unsafe { self.umem.inner().data_mut(desc) };
        let mut cursor = data.cursor();
        if len == 0 || len > cursor.buf_len() {
            return false;
        }
        cursor.set_pos(len);
        true
    }

    /// Moves as much of the pending TX batch into the TX ring as fits. Returns how many.
    fn publish_tx(&mut self) -> usize {
        let pending = self.tx_pending.len();
        if pending == 0 {
            return 0;
        }
        let mut room = (self.tx.nb_free(pending as u32) as usize).min(pending);
        // Whole chains only: the kernel would otherwise meet a packet whose end is not yet
        // in the ring.
        while room > 0 && self.tx_pending[room - 1].options() & XDP_PKT_CONTD != 0 {
            room -= 1;
        }
        if room == 0 {
            return 0;
        }
        // Safety: pending frames are ours alone (taken from the pool or the RX ring, with no
        // view left); once in the TX ring they are forgotten until the completion ring returns
        // them.
        let produced = unsafe { self.tx.produce(&self.tx_pending[..room]) };
        self.tx_pending.drain(..produced);
        self.accounting.tx_pending -= produced;
        self.accounting.tx_queued += produced;
        self.counters.tx_frames += produced as u64;
        // Whoever published (flush, or tx_alloc/tx_submit making room), the next flush kicks:
        // frames in the ring without a kick would wait there for ever in copy mode.
        self.kick_outstanding |= produced > 0;
        produced
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // Safety: the fd belongs to the xsk-rs socket owned by `self.rx` (and the other
        // rings), which stays open as long as `self`, and so as long as the borrow.
        unsafe { BorrowedFd::borrow_raw(self.raw_fd) }
    }
}

type Rings = (TxQueue, RxQueue, FillQueue, CompQueue);

/// Creates the socket on `umem` and binds it with `bind_flags`.
fn bind(config: &XskConfig, umem: &Umem, bind_flags: BindFlags) -> io::Result<Rings> {
    let ring_size =
        |size: u32| QueueSize::new(size).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
    let libxdp_flags = if config.load_default_program {
        LibxdpFlags::empty()
    } else {
        LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD
    };
    let socket_config = SocketConfig::builder()
        .rx_queue_size(ring_size(config.rx_ring_size)?)
        .tx_queue_size(ring_size(config.tx_ring_size)?)
        .libxdp_flags(libxdp_flags)
        .bind_flags(bind_flags)
        .build();
    let ifname: Interface =
        config.ifname.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // Safety: xsk-rs asks that no other socket of this UMEM is bound to the same (interface,
    // queue): this UMEM is private to this socket. Another process's socket on the queue is the
    // kernel's to refuse (EBUSY).
    let (tx, rx, fill_and_comp) =
        unsafe { Socket::new(socket_config, umem.inner(), &ifname, config.queue_id) }.map_err(|e| io_source(&e))?;
    let (fill, comp) = fill_and_comp
        .ok_or_else(|| io::Error::other("xsk-rs returned no fill and completion rings for a private UMEM"))?;
    Ok((tx, rx, fill, comp))
}

fn bind_error(config: &XskConfig, rx_queues: Option<u32>, source: io::Error) -> XskError {
    if is_permission_error(&source) {
        return XskError::PermissionDenied { operation: "bind an AF_XDP socket", source };
    }
    let errno = source.raw_os_error().map(Errno::from_raw_os_error);
    let reason = match errno {
        Some(Errno::INVAL) => match rx_queues {
            Some(count) if config.queue_id >= count => BindFailure::QueueOutOfRange { rx_queue_count: Some(count) },
            Some(_) => BindFailure::Other,
            None => BindFailure::QueueOutOfRange { rx_queue_count: None },
        },
        Some(Errno::BUSY | Errno::EXIST) => BindFailure::Busy,
        Some(Errno::OPNOTSUPP) if config.bind_mode == BindMode::ZeroCopy => BindFailure::ZeroCopyUnsupported,
        Some(Errno::NODEV | Errno::NXIO) => BindFailure::InterfaceGone,
        _ => BindFailure::Other,
    };
    XskError::Bind { ifname: config.ifname.clone(), queue: config.queue_id, reason, source }
}

/// Hints the CPU to fetch the first two cache lines of a frame (Ethernet, IP and TCP headers
/// with their options) into L1. A hint only: it reads nothing the program sees.
#[inline(always)]
fn prefetch_headers(frame: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = frame.as_ptr();
        // Safety: a prefetch never faults and has no effect the program can observe, whatever
        // the address; both addresses lie within the frame's slice anyway.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(start.cast());
            if frame.len() > 64 {
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(64).cast());
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = frame;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_can_move_to_its_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<XskSocket>();
    }
}
