//! Batched input: [`Interface::receive_batch`] takes a whole RX batch in three passes (parse
//! every frame and hash its 4-tuple, look every segment up with the hash in hand, then process
//! each), so that each pass runs its own small loop over the batch instead of the whole
//! receive path running once per frame.

use super::{Interface, Rx, TcpMeta};
use crate::iface::app::RxAction;
use crate::time::Instant;

/// Frames parsed per pass: a longer batch is taken in chunks of this many. The scratch for them
/// is allocated with the interface.
pub const RX_BATCH_MAX: usize = 64;

/// A batch of received frames that [`Interface::receive_batch`] can visit more than once: the
/// AF_XDP socket's RX batch in a worker, vectors in tests.
pub trait RxFrames {
    /// Frames in the batch.
    fn len(&self) -> usize;

    /// True for an empty batch.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lends frame `i` to `f`: its whole buffer (a reply is written over it) and the bytes
    /// received. (A closure, because a ring's frame view lives only inside its lender.)
    fn with_frame<R>(&mut self, i: usize, f: impl FnOnce(&mut [u8], usize) -> R) -> R;

    /// What to do with frame `i` (it is [`RxAction::Release`] until set).
    fn set_action(&mut self, i: usize, action: RxAction);
}

/// One parsed segment of a batch, waiting for its lookup and processing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parsed {
    /// Its frame in the batch.
    index: usize,
    meta: TcpMeta,
    hash: u64,
    found: Option<u32>,
}

/// The preallocated scratch of one pass.
pub(super) fn scratch() -> Vec<Parsed> {
    Vec::with_capacity(RX_BATCH_MAX)
}

impl Interface {
    /// Takes in a batch of received frames, as [`Interface::receive`] does one by one, and
    /// sets each frame's [`RxAction`]. The outcome is the same as `receive` frame after
    /// frame; what differs is the order of work: all parsing first (checksums, the 4-tuple
    /// and its hash), then all table lookups, then all processing. Allocates nothing.
    pub fn receive_batch<F: RxFrames>(&mut self, now: Instant, frames: &mut F) {
        #[cfg(debug_assertions)]
        let before = self.debug_frame_count();
        self.now = now;
        let n = frames.len();
        let mut parsed = core::mem::take(&mut self.batch);
        let mut base = 0;
        while base < n {
            let end = n.min(base + RX_BATCH_MAX);
            parsed.clear();
            for index in base..end {
                match frames.with_frame(index, |buf, len| self.classify(now, buf, len)) {
                    Rx::Done(action) => frames.set_action(index, action),
                    Rx::Tcp(meta) => {
                        let hash = self.table.hash(&meta.tuple);
                        parsed.push(Parsed { index, meta, hash, found: None });
                    }
                }
            }
            let mut seen = 0u32;
            for p in parsed.iter_mut() {
                p.found = self.table.find_hashed(p.hash, &p.meta.tuple);
                if p.found.is_none() {
                    // A miss is looked up in TIME_WAIT next (a SYN, mostly): its bucket's
                    // line is read now, with the others of the batch, not one by one later.
                    seen ^= self.time_wait.touch(&p.meta.tuple);
                }
            }
            // The reads must happen: bringing the lines in is their only use.
            core::hint::black_box(seen);
            for p in &parsed {
                // A hit stays valid through the batch: nothing in it removes a connection but
                // one it made itself (a refused SYN), and that was a miss. A miss is looked up
                // again: a SYN earlier in the batch may have made the connection since.
                let found = p.found.or_else(|| self.table.find_hashed(p.hash, &p.meta.tuple));
                let action = frames.with_frame(p.index, |buf, _| self.on_segment(now, buf, &p.meta, found));
                frames.set_action(p.index, action);
            }
            base = end;
        }
        self.batch = parsed;
        #[cfg(debug_assertions)]
        self.debug_check_frames_counted(before, n as u64);
    }
}

/// Frames held in vectors, as a [`RxFrames`] batch: for tests and benchmarks.
#[derive(Debug, Default)]
pub struct VecFrames {
    /// Each frame's buffer (sized like a UMEM frame, so that replies fit) and received length.
    pub frames: Vec<(Vec<u8>, usize)>,
    /// The action set for each frame.
    pub actions: Vec<RxAction>,
}

impl VecFrames {
    /// A batch of copies of `frames`, each in a buffer of `frame_len` bytes (at least its length).
    pub fn new<'a>(frames: impl IntoIterator<Item = &'a [u8]>, frame_len: usize) -> VecFrames {
        let mut batch = VecFrames::default();
        for frame in frames {
            let mut buf = vec![0u8; frame_len.max(frame.len())];
            buf[..frame.len()].copy_from_slice(frame);
            batch.frames.push((buf, frame.len()));
            batch.actions.push(RxAction::Release);
        }
        batch
    }

    /// The replies written in place, in frame order.
    pub fn replies(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().zip(&self.actions).filter_map(|((buf, _), action)| match action {
            RxAction::Transmit(n) => Some(&buf[..*n]),
            RxAction::Release => None,
        })
    }
}

impl RxFrames for VecFrames {
    fn len(&self) -> usize {
        self.frames.len()
    }

    fn with_frame<R>(&mut self, i: usize, f: impl FnOnce(&mut [u8], usize) -> R) -> R {
        let (buf, len) = &mut self.frames[i];
        f(buf, *len)
    }

    fn set_action(&mut self, i: usize, action: RxAction) {
        self.actions[i] = action;
    }
}
