//! Counters kept by the socket on the hot path, and the kernel's own `XDP_STATISTICS`.

/// Event counts of one socket since creation. Plain integers: the socket has one owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Frames taken from the RX ring.
    pub rx_frames: u64,
    /// `rx_batch` calls that returned at least one frame.
    pub rx_batches: u64,
    /// `rx_batch` calls that found the RX ring empty while the kernel held no receive frame:
    /// the fill ring had run dry, so arriving frames were being dropped.
    pub fill_empty_events: u64,
    /// `refill` calls that wanted to top up the fill ring but found the pool empty.
    pub refill_pool_empty: u64,
    /// `recvfrom()` wake-ups of the fill ring (zero-copy drivers that sleep).
    pub rx_kicks: u64,
    /// Frames published to the TX ring.
    pub tx_frames: u64,
    /// Frames the kernel has finished sending (taken from the completion ring).
    pub tx_completed: u64,
    /// `sendto()` kicks made.
    pub tx_kicks: u64,
    /// Kicks that answered `EAGAIN`, `EBUSY`, `ENOBUFS` or `ENETDOWN`: retried on the next
    /// flush. In copy mode `EAGAIN` is routine: the kernel sends 32 frames per kick.
    pub tx_kick_errors: u64,
    /// `tx_alloc` calls that found the pool empty (back-pressure).
    pub tx_alloc_failures: u64,
    /// `tx_alloc` calls refused because the TX ring and the pending batch were full
    /// (back-pressure: nothing is built that could not be queued).
    pub tx_ring_full: u64,
    /// In-place replies dropped because the TX ring and the pending batch were full, or whose
    /// length was out of range.
    pub tx_dropped: u64,
    /// Descriptors from the kernel whose address lies outside the UMEM (never expected).
    pub invalid_addresses: u64,
    /// Packets received in several frames (multi-buffer, `XskConfig::max_frame_len`), joined
    /// into one buffer for the application.
    pub rx_chained: u64,
    /// Received chains dropped whole: longer than `max_frame_len`, cut short, or holding an
    /// address outside the UMEM (never expected).
    pub rx_chains_dropped: u64,
    /// Packets sent in several frames (multi-buffer).
    pub tx_chained: u64,
}

/// The kernel's per-socket statistics (`getsockopt(SOL_XDP, XDP_STATISTICS)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpStats {
    /// Frames the kernel could not deliver to the socket (no free fill frame, frame too long).
    pub rx_dropped: u64,
    /// Invalid descriptors found in the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors found in the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Frames dropped because the fill ring was empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when asked to send.
    pub tx_ring_empty_descs: u64,
}
