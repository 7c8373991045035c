//! Connection timers as a lazy min-heap of `(deadline, slot)`.
//!
//! A connection's next deadline moves on almost every segment (the retransmission timer
//! restarts with each ACK). Pushing on every move would fill the heap with stale entries, so
//! an entry is pushed only when the deadline moves *earlier* than the one armed; a later
//! deadline leaves the early entry in place, and when it pops, the slot's real deadline is
//! pushed instead. Each slot so has about one live entry, and stale ones are dropped as they
//! surface. (A hierarchical timer wheel for all timers is the planned replacement.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Instant;

/// Deadlines of connection slots.
#[derive(Debug)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl TimerQueue {
    /// Room for about `slots` connections.
    pub fn new(slots: usize) -> TimerQueue {
        TimerQueue { heap: BinaryHeap::with_capacity(slots.saturating_mul(2).max(16)) }
    }

    /// Queues `(deadline, index, generation)`.
    #[inline]
    pub fn push(&mut self, deadline: Instant, index: u32, generation: u32) {
        self.heap.push(Reverse((deadline, index, generation)));
    }

    /// The earliest entry due at `now`, removed.
    #[inline]
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((deadline, _, _))) if *deadline <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The earliest deadline queued (possibly stale, so possibly early: never late).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((d, _, _))| *d)
    }
}
