//! The send ring: bytes the application queued, from SND.UNA onward, of a size fixed at setup.
//! The ring's memory may be lent (see `iface::ring_pool`): a buffer without it holds nothing.

use super::lent_memory::LentMemory;

/// A fixed ring of bytes. Offset 0 is the byte at SND.UNA; bytes leave only when acknowledged,
/// so retransmission reads them again from here.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    /// The ring's memory, if attached.
    buf: LentMemory,
    /// The ring's size less one: the size is a power of two, attached or not.
    mask: usize,
    head: usize,
    len: usize,
}

impl SendBuffer {
    /// A ring of at least `capacity` bytes (rounded up to a power of two, at least 1), its
    /// memory allocated now (a connection used on its own, not in a pool's interface).
    pub(crate) fn new(capacity: usize) -> SendBuffer {
        let mut b = SendBuffer::detached(capacity);
        b.buf = LentMemory::allocate(b.capacity());
        b
    }

    /// A ring of at least `capacity` bytes without its memory: it takes bytes only once
    /// [`SendBuffer::attach`] gave it some.
    pub(crate) fn detached(capacity: usize) -> SendBuffer {
        let capacity = SendBuffer::ring_len(capacity);
        SendBuffer { buf: LentMemory::default(), mask: capacity - 1, head: 0, len: 0 }
    }

    /// The size of a ring asked to hold `capacity` bytes: rounded up to a power of two, at
    /// least 1.
    pub(crate) fn ring_len(capacity: usize) -> usize {
        capacity.max(1).next_power_of_two()
    }

    /// Whether the ring has its memory.
    pub(crate) fn has_ring(&self) -> bool {
        self.buf.is_attached()
    }

    /// Gives a ring without memory its memory, `capacity()` bytes.
    pub(crate) fn attach(&mut self, ring: Box<[u8]>) {
        self.buf.attach(ring, self.capacity());
        self.clear();
    }

    /// Takes the ring's memory away, dropping whatever it held (a connection that will send
    /// nothing more); `None` when it had none.
    pub(crate) fn detach(&mut self) -> Option<Box<[u8]>> {
        let ring = self.buf.take()?;
        self.clear();
        Some(ring)
    }

    /// Takes the ring's memory away if it holds nothing (every byte acknowledged).
    pub(crate) fn detach_if_empty(&mut self) -> Option<Box<[u8]>> {
        if self.len == 0 {
            self.detach()
        } else {
            None
        }
    }

    /// Total capacity in bytes, whether the memory is attached or not.
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Bytes queued (sent but unacknowledged, plus unsent).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free space in bytes (of the ring's nominal size: a ring without memory is empty).
    pub(crate) fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Forgets all contents (connection reuse).
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends as much of `data` as fits; returns how much (nothing without memory).
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        if !self.has_ring() {
            return 0;
        }
        let n = data.len().min(self.free());
        let start = (self.head + self.len) & self.mask;
        let first = n.min(self.buf.len() - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Copies bytes starting `offset` bytes after SND.UNA into `dst`; returns how many.
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = dst.len().min(self.len - offset);
        let start = (self.head + offset) & self.mask;
        let first = n.min(self.buf.len() - start);
        dst[..first].copy_from_slice(&self.buf[start..start + first]);
        dst[first..n].copy_from_slice(&self.buf[..n - first]);
        n
    }

    /// Drops `n` acknowledged bytes from the front.
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) & self.mask;
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around_and_reads_at_offsets() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.write(b"abcdef"), 6);
        b.consume(4);
        assert_eq!(b.write(b"ghijklmn"), 6, "only the free space is taken");
        assert_eq!(b.len(), 8);
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"efghijkl");
        assert_eq!(b.read_at(3, &mut out[..2]), 2);
        assert_eq!(&out[..2], b"hi");
        assert_eq!(b.read_at(8, &mut out), 0);
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.free(), 8);
    }

    #[test]
    fn a_ring_without_memory_takes_nothing_and_lends_its_memory_only_when_empty() {
        let mut b = SendBuffer::detached(5);
        assert_eq!((b.capacity(), b.free(), b.has_ring()), (8, 8, false));
        assert_eq!(b.write(b"abc"), 0, "no memory, no bytes");
        b.attach(vec![0u8; 8].into_boxed_slice());
        assert_eq!(b.write(b"abc"), 3);
        assert!(b.detach_if_empty().is_none(), "unacknowledged bytes keep the ring");
        b.consume(3);
        let ring = b.detach_if_empty().expect("an empty ring is given back");
        assert_eq!((ring.len(), b.has_ring(), b.free()), (8, false, 8));
        b.attach(ring);
        assert_eq!(b.write(b"defghijkl"), 8, "the ring starts afresh");
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"defghijk");
    }
}
