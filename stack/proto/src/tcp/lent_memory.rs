//! A ring's memory as its owner lends it: attached, or an empty box (no allocation) while
//! none is, shared by the send and the receive ring.

use core::ops::{Deref, DerefMut};

/// The bytes of a ring, or none while its memory is lent elsewhere.
#[derive(Debug, Default)]
pub(crate) struct LentMemory(Box<[u8]>);

impl LentMemory {
    /// `len` zeroed bytes, allocated now (a ring that keeps its memory for good).
    pub(crate) fn allocate(len: usize) -> LentMemory {
        LentMemory(vec![0u8; len].into_boxed_slice())
    }

    /// Whether memory is attached.
    pub(crate) fn is_attached(&self) -> bool {
        !self.0.is_empty()
    }

    /// Attaches `ring`, which must be `len` bytes, where none is attached.
    pub(crate) fn attach(&mut self, ring: Box<[u8]>, len: usize) {
        debug_assert!(!self.is_attached(), "ring memory attached over another");
        debug_assert_eq!(ring.len(), len, "ring memory of the wrong size");
        self.0 = ring;
    }

    /// Takes the memory away, if any is attached.
    pub(crate) fn take(&mut self) -> Option<Box<[u8]>> {
        self.is_attached().then(|| core::mem::take(&mut self.0))
    }
}

impl Deref for LentMemory {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for LentMemory {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
