//! The worker's ring memory: send and receive rings lent whole to the connections that hold
//! data, and given back once drained, so that an idle connection holds none.
//!
//! Two pools, one per ring size (send, receive), each bounded to the same number of rings so
//! that neither can take the other's share: a proxy whose receive rings wait for send rings
//! to drain into must always find send rings coming back (they drain on the peer's ACKs,
//! whatever the application does). A pool allocates while it grows to its high-water mark and
//! never after: lending and giving back move a `Box<[u8]>` in and out of a preallocated list.

use crate::tcp::{RecvBuffer, RingMemory, SendBuffer};

/// Which of a connection's two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ring {
    /// The send ring (`send`, `splice` into the connection).
    Send,
    /// The receive ring (data arriving).
    Recv,
}

/// Ring memory of one size.
#[derive(Debug)]
struct Pool {
    /// Rings not lent, the most recently given back last (lent first: its cache lines and
    /// pages are the warmest).
    free: Vec<Box<[u8]>>,
    ring_len: usize,
    /// Rings allocated so far (the high-water mark): lent plus free.
    created: usize,
    max: usize,
}

impl Pool {
    fn new(ring_len: usize, max: usize) -> Pool {
        Pool { free: Vec::with_capacity(max), ring_len, created: 0, max }
    }

    /// Allocates a ring while the pool may grow; its pages are written when `prefault`.
    fn grow(&mut self, prefault: bool) -> Option<Box<[u8]>> {
        if self.created == self.max {
            return None;
        }
        self.created += 1;
        let mut ring = vec![0u8; self.ring_len].into_boxed_slice();
        if prefault {
            // black_box: the compiler may know the allocation is zeroed and drop a zero fill.
            std::hint::black_box(&mut ring[..]).fill(0);
        }
        Some(ring)
    }

    fn lend(&mut self) -> Option<Box<[u8]>> {
        self.free.pop().or_else(|| self.grow(false))
    }

    fn give_back(&mut self, ring: Box<[u8]>) {
        debug_assert_eq!(ring.len(), self.ring_len, "a ring of another pool given back");
        debug_assert!(self.free.len() < self.created, "more rings given back than lent");
        self.free.push(ring);
    }

    /// Rings that could be lent now, free or yet to be allocated.
    fn available(&self) -> usize {
        self.free.len() + (self.max - self.created)
    }

    fn stats(&self) -> PoolStats {
        PoolStats { in_use: self.created - self.free.len(), free: self.free.len(), created: self.created }
    }
}

/// One pool's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Rings lent to connections now.
    pub in_use: usize,
    /// Rings allocated and not lent.
    pub free: usize,
    /// Rings allocated so far: the high-water mark of `in_use` (or the prefault, if more).
    pub created: usize,
}

/// The ring pools of one interface, for operators (`Interface::ring_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// The send rings.
    pub send: PoolStats,
    /// The receive rings.
    pub recv: PoolStats,
    /// Bytes of one send ring and of one receive ring.
    pub ring_bytes: (usize, usize),
    /// The most rings of each pool (`InterfaceConfig::ring_pool_bytes`).
    pub max_per_pool: usize,
}

impl RingStats {
    /// Bytes of ring memory allocated (lent and free).
    pub fn bytes_created(&self) -> usize {
        self.send.created * self.ring_bytes.0 + self.recv.created * self.ring_bytes.1
    }
}

/// The send and receive pools of one interface.
#[derive(Debug)]
pub(crate) struct RingPools {
    send: Pool,
    recv: Pool,
}

impl RingPools {
    /// Pools of the send and receive rings of connections configured for `send_len` and
    /// `recv_len` bytes (sized as the connections size them), as many of each as fit in
    /// `max_bytes` in pairs, at least one and at most `max_connections` (one of each per
    /// connection).
    pub(crate) fn new(send_len: usize, recv_len: usize, max_bytes: usize, max_connections: usize) -> RingPools {
        let (send_len, recv_len) = (SendBuffer::ring_len(send_len), RecvBuffer::ring_len(recv_len));
        let max = (max_bytes / (send_len + recv_len)).clamp(1, max_connections.max(1));
        RingPools { send: Pool::new(send_len, max), recv: Pool::new(recv_len, max) }
    }

    /// Allocates up to `n` rings of each size now and writes their pages once, so that the
    /// first connections to hold data meet no allocation and no page fault.
    pub(crate) fn prefill(&mut self, n: usize) {
        for pool in [&mut self.send, &mut self.recv] {
            while pool.created < n {
                let Some(ring) = pool.grow(true) else { break };
                pool.free.push(ring);
            }
        }
    }

    fn pool(&mut self, ring: Ring) -> &mut Pool {
        match ring {
            Ring::Send => &mut self.send,
            Ring::Recv => &mut self.recv,
        }
    }

    /// A ring of the kind, if one is free or may still be allocated.
    #[inline]
    pub(crate) fn lend(&mut self, ring: Ring) -> Option<Box<[u8]>> {
        self.pool(ring).lend()
    }

    /// Takes back the rings a connection gave up.
    #[inline]
    pub(crate) fn give_back(&mut self, RingMemory { send, recv }: RingMemory) {
        if let Some(ring) = send {
            self.send.give_back(ring);
        }
        if let Some(ring) = recv {
            self.recv.give_back(ring);
        }
    }

    /// Rings of the kind that could be lent now.
    pub(crate) fn available(&self, ring: Ring) -> usize {
        match ring {
            Ring::Send => self.send.available(),
            Ring::Recv => self.recv.available(),
        }
    }

    /// The pools' figures.
    pub(crate) fn stats(&self) -> RingStats {
        RingStats {
            send: self.send.stats(),
            recv: self.recv.stats(),
            ring_bytes: (self.send.ring_len, self.recv.ring_len),
            max_per_pool: self.send.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_grow_to_their_bound_and_lend_given_back_rings_first() {
        // 3 pairs of 1 KiB + 4 KiB fit in 16 KiB; sizes are rounded up to powers of two.
        let mut pools = RingPools::new(1000, 4096, 16 * 1024, 100);
        assert_eq!(pools.stats().max_per_pool, 3);
        assert_eq!(pools.stats().ring_bytes, (1024, 4096));
        let rings: Vec<_> = (0..3).map(|_| pools.lend(Ring::Send).expect("within the bound")).collect();
        assert!(pools.lend(Ring::Send).is_none(), "never beyond the bound");
        assert_eq!((pools.available(Ring::Send), pools.available(Ring::Recv)), (0, 3));
        assert_eq!(pools.stats().send, PoolStats { in_use: 3, free: 0, created: 3 });
        assert_eq!(pools.stats().recv, PoolStats::default(), "the receive pool is apart");
        let last = rings[2].as_ptr();
        for ring in rings {
            pools.give_back(RingMemory { send: Some(ring), recv: None });
        }
        assert_eq!(pools.stats().send, PoolStats { in_use: 0, free: 3, created: 3 });
        let ring = pools.lend(Ring::Send).expect("a free ring");
        assert_eq!((ring.len(), ring.as_ptr()), (1024, last), "the last given back is lent first");
        assert_eq!(pools.stats().send.created, 3, "a free ring is reused, none allocated");
    }

    #[test]
    fn prefill_allocates_within_the_bound_and_the_bound_is_at_least_one_and_at_most_a_pair_per_connection() {
        let mut pools = RingPools::new(4096, 4096, 1 << 30, 5);
        pools.prefill(10);
        let stats = pools.stats();
        assert_eq!((stats.max_per_pool, stats.send.free, stats.recv.free), (5, 5, 5));
        assert_eq!(stats.bytes_created(), 10 * 4096);
        assert_eq!(RingPools::new(4096, 4096, 0, 5).stats().max_per_pool, 1);
    }
}
