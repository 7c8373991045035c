//! The receive ring with bounded out-of-order reassembly and SACK block generation.

use super::lent_memory::LentMemory;
use super::SeqNumber;
use crate::wire::{SackBlock, SackBlocks};

/// The largest receive ring: 1 GiB, the largest window TCP can advertise (65535 << 14).
pub(crate) const MAX_RING_LEN: usize = 1 << 30;

/// At most this many out-of-order ranges are held; a segment that would need another is
/// dropped (the sender retransmits it). Bounds memory and work per segment.
pub(super) const MAX_OOO_RANGES: usize = 8;

/// An out-of-order range, as offsets from RCV.NXT, with a recency stamp for SACK ordering.
/// `u32` offsets (a ring is at most [`MAX_RING_LEN`]): at `usize` the ranges took a sixth of
/// a connection slot.
#[derive(Debug, Clone, Copy, Default)]
struct Range {
    start: u32,
    end: u32,
    stamp: u32,
}

/// A fixed ring. Offset 0 is the first unread byte; `len` bytes from there are in order
/// (they end at RCV.NXT); out-of-order data sits at offsets beyond `len`, described by `ranges`
/// whose offsets are relative to RCV.NXT.
///
/// The ring's memory may be lent (see `iface::ring_pool`): without it the ring is empty and
/// still offers its whole size as the window (the memory comes with the data), unless it is
/// `starved`, when no memory could be had for data that came: then the window is closed until
/// memory is attached.
#[derive(Debug)]
pub(crate) struct RecvBuffer {
    /// The ring's memory, if attached.
    buf: LentMemory,
    /// The ring's size less one: the size is a power of two, attached or not.
    mask: usize,
    head: usize,
    len: usize,
    ranges: [Range; MAX_OOO_RANGES],
    range_count: usize,
    stamp: u32,
    starved: bool,
}

/// What an insertion did, for the ACK policy and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inserted {
    /// How far RCV.NXT moved (in-order bytes now readable, including reassembled ones).
    pub advanced: usize,
    /// Whether the data went out of order, filled a hole, or was dropped for lack of slots.
    pub out_of_order: bool,
}

impl RecvBuffer {
    /// A ring of at least `capacity` bytes (rounded up to a power of two, at least 1), its
    /// memory allocated now (a connection used on its own, not in a pool's interface).
    pub(crate) fn new(capacity: usize) -> RecvBuffer {
        let mut b = RecvBuffer::detached(capacity);
        b.buf = LentMemory::allocate(b.capacity());
        b
    }

    /// A ring of at least `capacity` bytes without its memory: data is stored only once
    /// [`RecvBuffer::attach`] gave it some.
    pub(crate) fn detached(capacity: usize) -> RecvBuffer {
        let capacity = RecvBuffer::ring_len(capacity);
        RecvBuffer {
            buf: LentMemory::default(),
            mask: capacity - 1,
            head: 0,
            len: 0,
            ranges: [Range::default(); MAX_OOO_RANGES],
            range_count: 0,
            stamp: 0,
            starved: false,
        }
    }

    /// The size of a ring asked to hold `capacity` bytes: rounded up to a power of two, at
    /// least 1, at most [`MAX_RING_LEN`].
    pub(crate) fn ring_len(capacity: usize) -> usize {
        capacity.clamp(1, MAX_RING_LEN).next_power_of_two()
    }

    /// Whether the ring has its memory.
    pub(crate) fn has_ring(&self) -> bool {
        self.buf.is_attached()
    }

    /// Whether data came and found no memory: the window stays closed until some is attached.
    pub(crate) fn is_starved(&self) -> bool {
        self.starved
    }

    /// Data came and no memory could be had: close the window until some is attached.
    pub(crate) fn starve(&mut self) {
        debug_assert!(!self.has_ring(), "a ring with memory starved");
        self.starved = true;
    }

    /// Opens a window closed for want of memory: memory can be had again.
    pub(crate) fn unstarve(&mut self) {
        self.starved = false;
    }

    /// Gives a ring without memory its memory, `capacity()` bytes; the window opens again.
    pub(crate) fn attach(&mut self, ring: Box<[u8]>) {
        self.buf.attach(ring, self.capacity());
        // Empty, and the window open again.
        self.clear();
    }

    /// Takes the ring's memory away, dropping whatever it held (a connection that ended);
    /// `None` when it had none.
    pub(crate) fn detach(&mut self) -> Option<Box<[u8]>> {
        // Without memory there is nothing to drop, and a closed window stays closed.
        let ring = self.buf.take()?;
        self.clear();
        Some(ring)
    }

    /// Takes the ring's memory away if it holds nothing: everything read, nothing out of order.
    pub(crate) fn detach_if_empty(&mut self) -> Option<Box<[u8]>> {
        if self.len == 0 && self.range_count == 0 {
            self.detach()
        } else {
            None
        }
    }

    /// Total capacity in bytes, whether the memory is attached or not.
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// In-order bytes waiting for the application.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no in-order bytes wait.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The receive window: space from RCV.NXT to the end of the ring (none while starved).
    pub(crate) fn window(&self) -> usize {
        if self.starved {
            0
        } else {
            self.capacity() - self.len
        }
    }

    /// Whether out-of-order data is held (a hole exists).
    pub(crate) fn has_out_of_order(&self) -> bool {
        self.range_count > 0
    }

    /// How many out-of-order ranges are held (the SACK blocks available).
    pub(crate) fn out_of_order_ranges(&self) -> usize {
        self.range_count
    }

    /// Forgets all contents (connection reuse).
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.range_count = 0;
        self.starved = false;
    }

    fn copy_in(&mut self, offset_from_head: usize, data: &[u8]) {
        let start = (self.head + offset_from_head) & self.mask;
        let first = data.len().min(self.buf.len() - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Stores `data` that starts `offset` bytes after RCV.NXT; anything beyond the window is
    /// cut off. Returns how far RCV.NXT advanced.
    pub(crate) fn insert(&mut self, offset: usize, data: &[u8]) -> Inserted {
        let window = self.window();
        // Without memory nothing is stored: the caller attaches it before data arrives.
        if offset >= window || data.is_empty() || !self.has_ring() {
            return Inserted { advanced: 0, out_of_order: offset > 0 };
        }
        let data = &data[..data.len().min(window - offset)];
        if offset > 0 {
            let stored = self.add_range(offset, offset + data.len());
            if stored {
                self.copy_in(self.len + offset, data);
            }
            return Inserted { advanced: 0, out_of_order: true };
        }
        self.copy_in(self.len, data);
        // Filling all or part of a hole counts as out of order: it is ACKed at once.
        let filled_hole = self.range_count > 0;
        let mut advanced = data.len();
        // Pull in every held range that now touches the in-order data.
        loop {
            let mut merged = false;
            let mut i = 0;
            while i < self.range_count {
                let r = self.ranges[i];
                if r.start as usize <= advanced {
                    advanced = advanced.max(r.end as usize);
                    self.remove_range(i);
                    merged = true;
                } else {
                    i += 1;
                }
            }
            if !merged {
                break;
            }
        }
        for r in &mut self.ranges[..self.range_count] {
            // Below the window, so below MAX_RING_LEN.
            r.start -= advanced as u32;
            r.end -= advanced as u32;
        }
        self.len += advanced;
        Inserted { advanced, out_of_order: filled_hole }
    }

    fn remove_range(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.range_count, i);
        self.range_count -= 1;
    }

    /// Records [start, end) as held, merging overlaps. False if no slot was free.
    fn add_range(&mut self, start: usize, end: usize) -> bool {
        // Offsets within the window: below MAX_RING_LEN.
        let (mut start, mut end) = (start as u32, end as u32);
        self.stamp = self.stamp.wrapping_add(1);
        let mut i = 0;
        // Absorb every overlapping or adjacent range into the new one.
        while i < self.range_count {
            let r = self.ranges[i];
            if r.start <= end && start <= r.end {
                start = start.min(r.start);
                end = end.max(r.end);
                self.remove_range(i);
            } else {
                i += 1;
            }
        }
        if self.range_count == MAX_OOO_RANGES {
            return false;
        }
        self.ranges[self.range_count] = Range { start, end, stamp: self.stamp };
        self.range_count += 1;
        true
    }

    /// SACK blocks for the held ranges, most recently changed first (RFC 2018 4), at most `max`.
    pub(crate) fn sack_blocks(&self, rcv_nxt: SeqNumber, max: usize) -> SackBlocks {
        let mut order = [0usize; MAX_OOO_RANGES];
        for (i, o) in order.iter_mut().enumerate().take(self.range_count) {
            *o = i;
        }
        let order = &mut order[..self.range_count];
        // Newest first: the age of a range is how many stamps ago it last changed.
        order.sort_unstable_by_key(|&i| self.stamp.wrapping_sub(self.ranges[i].stamp));
        let mut blocks = SackBlocks::new();
        for &i in order.iter().take(max) {
            let r = self.ranges[i];
            blocks.push(SackBlock { left: (rcv_nxt + r.start).0, right: (rcv_nxt + r.end).0 });
        }
        blocks
    }

    /// Copies in-order bytes into `dst` and consumes them; returns how many.
    pub(crate) fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.peek(dst);
        self.consume(n);
        n
    }

    /// Copies in-order bytes into `dst` without consuming them.
    pub(crate) fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len);
        let first = n.min(self.buf.len() - self.head);
        dst[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        dst[first..n].copy_from_slice(&self.buf[..n - first]);
        n
    }

    /// The in-order bytes as up to two slices, for zero-copy reading.
    pub(crate) fn slices(&self) -> (&[u8], &[u8]) {
        let first = self.len.min(self.buf.len() - self.head);
        (&self.buf[self.head..self.head + first], &self.buf[..self.len - first])
    }

    /// Consumes `n` in-order bytes (after `slices` or `peek`).
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) & self.mask;
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(b: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0u8; b.len()];
        b.read(&mut out);
        out
    }

    #[test]
    fn in_order_data_is_readable() {
        let mut b = RecvBuffer::new(16);
        assert_eq!(b.insert(0, b"hello").advanced, 5);
        assert_eq!(b.window(), 11);
        assert_eq!(read_all(&mut b), b"hello");
        assert_eq!(b.window(), 16);
    }

    #[test]
    fn a_ring_without_memory_offers_its_window_until_starved_and_lends_it_only_when_empty() {
        let mut b = RecvBuffer::detached(16);
        assert_eq!((b.window(), b.has_ring()), (16, false), "the memory comes with the data");
        b.starve();
        assert_eq!(b.window(), 0, "data found no memory: the window closes");
        assert!(b.detach_if_empty().is_none() && b.detach().is_none(), "no memory to give back");
        assert_eq!(b.window(), 0, "and the window stays closed");
        b.unstarve();
        assert_eq!(b.window(), 16, "until memory can be had");
        b.starve();
        b.attach(vec![0u8; 16].into_boxed_slice());
        assert_eq!(b.window(), 16);
        b.insert(4, b"EF");
        assert!(b.detach_if_empty().is_none(), "out-of-order data keeps the ring");
        b.insert(0, b"ABCD");
        assert!(b.detach_if_empty().is_none(), "unread data keeps the ring");
        assert_eq!(read_all(&mut b), b"ABCDEF");
        let ring = b.detach_if_empty().expect("a drained ring is given back");
        assert_eq!((ring.len(), b.has_ring(), b.window()), (16, false, 16));
        assert_eq!(b.insert(0, b"x").advanced, 0, "nothing is stored without memory");
    }

    #[test]
    fn holes_are_filled_and_ranges_merged() {
        let mut b = RecvBuffer::new(32);
        let r = b.insert(4, b"EFGH");
        assert_eq!(r, Inserted { advanced: 0, out_of_order: true });
        assert!(b.insert(10, b"KL").out_of_order);
        assert!(b.insert(8, b"IJ").out_of_order, "adjacent ranges merge");
        let blocks = b.sack_blocks(SeqNumber(100), 4);
        assert_eq!(blocks.as_slice(), &[SackBlock { left: 104, right: 112 }]);
        let r = b.insert(0, b"ABCD");
        assert_eq!(r.advanced, 12);
        assert!(!b.has_out_of_order());
        assert_eq!(read_all(&mut b), b"ABCDEFGHIJKL");
    }

    #[test]
    fn data_beyond_the_window_is_cut() {
        let mut b = RecvBuffer::new(8);
        assert_eq!(b.insert(0, b"0123456789").advanced, 8);
        assert_eq!(b.window(), 0);
        assert_eq!(b.insert(0, b"x").advanced, 0);
        assert_eq!(read_all(&mut b), b"01234567");
    }

    #[test]
    fn range_slots_are_bounded_and_sacks_are_most_recent_first() {
        let mut b = RecvBuffer::new(1024);
        for i in 0..MAX_OOO_RANGES {
            b.insert(10 + i * 10, b"x");
        }
        assert_eq!(b.range_count, MAX_OOO_RANGES);
        // No slot for a ninth hole: dropped, not stored.
        b.insert(500, b"y");
        assert_eq!(b.range_count, MAX_OOO_RANGES);
        let blocks = b.sack_blocks(SeqNumber(0), 3);
        let lefts: Vec<u32> = blocks.as_slice().iter().map(|s| s.left).collect();
        assert_eq!(lefts, vec![80, 70, 60]);
        // Touching an old range makes it the most recent.
        b.insert(11, b"z");
        assert_eq!(b.sack_blocks(SeqNumber(0), 1).as_slice()[0], SackBlock { left: 10, right: 12 });
    }

    #[test]
    fn reassembly_matches_a_model_for_random_arrivals() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        for seed in 0..200 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut b = RecvBuffer::new(1024);
            let mut delivered = Vec::new();
            let mut rcv_nxt = 0usize;
            while delivered.len() < data.len() {
                let start = rcv_nxt + rng.gen_range(0..600);
                let len = rng.gen_range(1..200);
                let end = (start + len).min(data.len());
                if start >= end {
                    delivered.extend(read_all(&mut b));
                    continue;
                }
                let r = b.insert(start - rcv_nxt, &data[start..end]);
                rcv_nxt += r.advanced;
                if rng.gen_bool(0.5) {
                    delivered.extend(read_all(&mut b));
                }
                if rng.gen_bool(0.1) {
                    delivered.extend(read_all(&mut b));
                    // Sometimes the in-order byte arrives so progress is guaranteed.
                    let e = (rcv_nxt + 100).min(data.len());
                    rcv_nxt += b.insert(0, &data[rcv_nxt..e]).advanced;
                }
            }
            assert_eq!(delivered, data, "seed {seed}");
        }
    }
}
