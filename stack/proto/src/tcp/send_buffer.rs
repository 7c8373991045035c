//! The send ring: bytes the application queued, from SND.UNA onward, sized once at setup.

/// A fixed ring of bytes. Offset 0 is the byte at SND.UNA; bytes leave only when acknowledged,
/// so retransmission reads them again from here.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    buf: Box<[u8]>,
    mask: usize,
    head: usize,
    len: usize,
}

impl SendBuffer {
    /// A ring of at least `capacity` bytes (rounded up to a power of two, at least 1).
    pub(crate) fn new(capacity: usize) -> SendBuffer {
        let capacity = capacity.max(1).next_power_of_two();
        SendBuffer { buf: vec![0u8; capacity].into_boxed_slice(), mask: capacity - 1, head: 0, len: 0 }
    }

    /// Writes every byte once, so the ring's pages are mapped now rather than at a first use
    /// on the hot path (a page fault, and on a VM possibly a host fault as well).
    pub(crate) fn prefault(&mut self) {
        // black_box: the compiler may know the allocation is zeroed and drop a zero fill.
        std::hint::black_box(&mut self.buf[..]).fill(0);
    }

    /// Total capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes queued (sent but unacknowledged, plus unsent).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free space in bytes.
    pub(crate) fn free(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Forgets all contents (connection reuse).
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends as much of `data` as fits; returns how much.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
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
}
