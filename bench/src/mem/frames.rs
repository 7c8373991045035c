//! The in-memory wire's frames: a fixed pool of UMEM-sized buffers allocated up front, lent
//! to an interface's TX path and given back when the receiving interface is done with them.
//! Like the AF_XDP frame pool it stands in for, it counts what it lends and what comes back,
//! so a frame that goes missing shows as frames in use at a quiet moment.

use synack::iface::TxSink;

/// Bytes per frame, as a UMEM chunk.
pub const FRAME_LEN: usize = 2048;

/// A frame on the wire: its index in the pool and the bytes written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFrame {
    /// The frame's index in the pool.
    pub index: u32,
    /// The frame's length.
    pub len: u32,
}

/// A fixed set of frames and the free list.
#[derive(Debug)]
pub struct FramePool {
    memory: Box<[u8]>,
    free: Vec<u32>,
    count: usize,
    /// Frames handed out so far.
    pub lent: u64,
    /// Frames given back so far.
    pub returned: u64,
    /// Times a sender found no free frame.
    pub exhausted: u64,
    /// The most frames out at once.
    pub peak_in_use: usize,
}

impl FramePool {
    /// `count` frames of [`FRAME_LEN`] bytes, all free.
    pub fn new(count: usize) -> FramePool {
        FramePool {
            memory: vec![0u8; count * FRAME_LEN].into_boxed_slice(),
            // Popped from the end: frame 0 first.
            free: (0..count as u32).rev().collect(),
            count,
            lent: 0,
            returned: 0,
            exhausted: 0,
            peak_in_use: 0,
        }
    }

    /// Frames out of the pool now.
    pub fn in_use(&self) -> usize {
        self.count - self.free.len()
    }

    /// Frames in the pool.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// Takes a free frame.
    pub fn take(&mut self) -> Option<u32> {
        let Some(index) = self.free.pop() else {
            self.exhausted += 1;
            return None;
        };
        self.lent += 1;
        self.peak_in_use = self.peak_in_use.max(self.in_use());
        Some(index)
    }

    /// Gives a frame back.
    pub fn give_back(&mut self, index: u32) {
        debug_assert!(self.free.len() < self.count, "a frame given back twice");
        self.returned += 1;
        self.free.push(index);
    }

    /// The bytes of frame `index`.
    pub fn frame_mut(&mut self, index: u32) -> &mut [u8] {
        let start = index as usize * FRAME_LEN;
        &mut self.memory[start..start + FRAME_LEN]
    }
}

/// A [`TxSink`] that writes into frames of a pool and queues them on a wire.
pub struct PoolSink<'a> {
    /// Where frames come from.
    pub pool: &'a mut FramePool,
    /// Where written frames go.
    pub wire: &'a mut Vec<WireFrame>,
}

impl TxSink for PoolSink<'_> {
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool> {
        let index = self.pool.take()?;
        match fill(self.pool.frame_mut(index)) {
            Some(len) => {
                self.wire.push(WireFrame { index, len: len as u32 });
                Some(true)
            }
            None => {
                self.pool.give_back(index);
                Some(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_lent_and_returned_and_exhaustion_is_counted() {
        let mut pool = FramePool::new(2);
        let mut wire = Vec::new();
        let mut sink = PoolSink { pool: &mut pool, wire: &mut wire };
        assert_eq!(sink.send_with(|buf| Some(buf.len().min(60))), Some(true));
        assert_eq!(sink.send_with(|_| None), Some(false), "a frame not written goes back");
        assert_eq!(sink.send_with(|_| Some(42)), Some(true));
        assert_eq!(sink.send_with(|_| Some(42)), None, "two frames out: none left");
        assert_eq!(wire, vec![WireFrame { index: 0, len: 60 }, WireFrame { index: 1, len: 42 }]);
        assert_eq!((pool.in_use(), pool.exhausted, pool.peak_in_use), (2, 1, 2));
        for f in wire.drain(..) {
            pool.give_back(f.index);
        }
        assert_eq!((pool.in_use(), pool.lent, pool.returned), (0, 3, 3));
    }
}
