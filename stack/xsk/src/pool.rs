//! The free-frame pool, a fixed stack of frame addresses, and the frame accounting that proves
//! no frame is ever lost or in two places at once.

use std::fmt;

/// A fixed-capacity stack of free frame addresses (byte offsets of frame starts in the UMEM).
///
/// All memory is taken at creation; `push` and `pop` never allocate. A push beyond the
/// capacity means a frame was freed twice: it is refused and reported, never stored.
#[derive(Debug, Clone)]
pub struct FramePool {
    addrs: Box<[u64]>,
    len: usize,
}

/// A frame was pushed into a full pool: the same frame was freed twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame pool overflow pushing frame address {addr:#x}: a frame was freed twice")]
pub struct PoolOverflow {
    /// The frame address that did not fit.
    pub addr: u64,
}

impl FramePool {
    /// An empty pool able to hold `capacity` frames.
    pub fn with_capacity(capacity: usize) -> Self {
        FramePool { addrs: vec![0; capacity].into_boxed_slice(), len: 0 }
    }

    /// A full pool holding all `frame_count` frames of `frame_size` bytes, lowest address on
    /// top.
    pub fn full(frame_count: u32, frame_size: u32) -> Self {
        let mut pool = FramePool::with_capacity(frame_count as usize);
        for index in (0..u64::from(frame_count)).rev() {
            // Cannot overflow: the pool was sized for exactly these frames.
            let _ = pool.push(index * u64::from(frame_size));
        }
        pool
    }

    /// Takes a free frame, or `None` when the pool is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<u64> {
        let new_len = self.len.checked_sub(1)?;
        self.len = new_len;
        Some(self.addrs[new_len])
    }

    /// Gives a frame back.
    #[inline]
    pub fn push(&mut self, addr: u64) -> Result<(), PoolOverflow> {
        match self.addrs.get_mut(self.len) {
            Some(slot) => {
                *slot = addr;
                self.len += 1;
                Ok(())
            }
            None => Err(PoolOverflow { addr }),
        }
    }

    /// Free frames in the pool.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no frame is free.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most frames the pool can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.addrs.len()
    }

    /// The free frame addresses, in no particular order.
    pub fn as_slice(&self) -> &[u64] {
        &self.addrs[..self.len]
    }
}

/// Where every frame of a UMEM is. Each frame is in exactly one place, so the fields always
/// sum to `frame_count`; [`check`](Self::check) verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameAccounting {
    /// Frames in the UMEM.
    pub frame_count: usize,
    /// In the free pool.
    pub free: usize,
    /// Lent to the kernel for receiving: in the fill ring, being written, or waiting in the
    /// RX ring (the kernel moves frames between these without telling us).
    pub fill: usize,
    /// Taken from the RX ring and in the application's hands (only inside `rx_batch`).
    pub rx_held: usize,
    /// Taken with `tx_alloc` and not yet submitted.
    pub tx_in_hand: usize,
    /// Submitted, waiting in the local batch for the next `flush`.
    pub tx_pending: usize,
    /// Lent to the kernel for sending: in the TX ring, in flight, or waiting in the
    /// completion ring.
    pub tx_queued: usize,
}

/// The places of [`FrameAccounting`] do not add up to the frame count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame accounting does not add up: {accounting}")]
pub struct AccountingError {
    /// The accounting that failed the check.
    pub accounting: FrameAccounting,
}

impl FrameAccounting {
    /// All frames free.
    pub fn all_free(frame_count: usize) -> Self {
        FrameAccounting { frame_count, free: frame_count, ..FrameAccounting::default() }
    }

    /// Frames in all places together.
    pub fn total(&self) -> usize {
        self.free + self.fill + self.rx_held + self.tx_in_hand + self.tx_pending + self.tx_queued
    }

    /// Frames the application or the TX path hold (everything but free and fill).
    pub fn in_use(&self) -> usize {
        self.rx_held + self.tx_in_hand + self.tx_pending + self.tx_queued
    }

    /// Ok when every frame is in exactly one place.
    pub fn check(&self) -> Result<(), AccountingError> {
        if self.total() == self.frame_count {
            Ok(())
        } else {
            Err(AccountingError { accounting: *self })
        }
    }
}

impl fmt::Display for FrameAccounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "free {} + fill {} + rx_held {} + tx_in_hand {} + tx_pending {} + tx_queued {} = {} \
             of {} frames",
            self.free,
            self.fill,
            self.rx_held,
            self.tx_in_hand,
            self.tx_pending,
            self.tx_queued,
            self.total(),
            self.frame_count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_pool_hands_out_every_frame_once() {
        let mut pool = FramePool::full(8, 2048);
        assert_eq!(pool.len(), 8);
        let mut seen = Vec::new();
        while let Some(addr) = pool.pop() {
            seen.push(addr);
        }
        assert_eq!(seen, (0..8).map(|i| i * 2048).collect::<Vec<_>>());
        assert!(pool.is_empty());
        assert_eq!(pool.pop(), None);
    }

    #[test]
    fn push_beyond_capacity_is_refused() {
        let mut pool = FramePool::full(2, 4096);
        assert_eq!(pool.push(0), Err(PoolOverflow { addr: 0 }));
        assert_eq!(pool.len(), 2);
        let addr = pool.pop().unwrap();
        pool.push(addr).unwrap();
        assert_eq!(pool.capacity(), 2);
    }

    #[test]
    fn pool_is_lifo() {
        let mut pool = FramePool::with_capacity(3);
        pool.push(10).unwrap();
        pool.push(20).unwrap();
        assert_eq!(pool.as_slice(), &[10, 20]);
        assert_eq!(pool.pop(), Some(20));
        assert_eq!(pool.pop(), Some(10));
    }

    #[test]
    fn accounting_check() {
        let mut accounting = FrameAccounting::all_free(16);
        accounting.check().unwrap();
        accounting.free -= 5;
        accounting.fill += 3;
        accounting.tx_queued += 2;
        accounting.check().unwrap();
        assert_eq!(accounting.in_use(), 2);
        accounting.rx_held += 1;
        let error = accounting.check().unwrap_err();
        assert!(error.to_string().contains("= 17 of 16"), "{error}");
    }
}
