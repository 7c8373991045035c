//! TIME_WAIT as compact records: a map from 4-tuple to [`TimeWaitRecord`] and a FIFO of
//! expiries. Every record lasts the same 2MSL, so insertion order is expiry order and a
//! FIFO does what a timer would, in O(1).

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::tcp::{FourTuple, TimeWaitRecord};
use crate::time::Instant;

/// The TIME_WAIT records of one worker.
#[derive(Debug)]
pub(crate) struct TimeWaitTable {
    map: HashMap<FourTuple, TimeWaitRecord>,
    /// Each record's tuple once, oldest first, with the expiry it had when queued.
    fifo: VecDeque<(FourTuple, Instant)>,
    max: usize,
}

/// What [`TimeWaitTable::insert`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Stored.
    Stored,
    /// Stored after ending the oldest record early: the table was full.
    EvictedOldest,
}

impl TimeWaitTable {
    /// Room for `max` records, allocated now.
    pub fn new(max: usize) -> TimeWaitTable {
        let max = max.max(1);
        TimeWaitTable { map: HashMap::with_capacity(max), fifo: VecDeque::with_capacity(max), max }
    }

    /// Stores a record. When full, the oldest record (the nearest to expiry) is ended early.
    pub fn insert(&mut self, record: TimeWaitRecord) -> Inserted {
        let mut outcome = Inserted::Stored;
        if self.map.len() >= self.max {
            if let Some((old, _)) = self.fifo.pop_front() {
                self.map.remove(&old);
                outcome = Inserted::EvictedOldest;
            }
        }
        if self.map.insert(record.tuple, record).is_none() {
            self.fifo.push_back((record.tuple, record.expiry));
        }
        outcome
    }

    /// The record of a 4-tuple.
    #[inline]
    pub fn get_mut(&mut self, tuple: &FourTuple) -> Option<&mut TimeWaitRecord> {
        self.map.get_mut(tuple)
    }

    /// Whether a 4-tuple is in TIME_WAIT.
    #[inline]
    pub fn contains(&self, tuple: &FourTuple) -> bool {
        self.map.contains_key(tuple)
    }

    /// Ends a record (a SYN reopened its 4-tuple). Its FIFO entry is dropped when it reaches
    /// the front and finds no record (or a newer one, which it re-queues).
    pub fn remove(&mut self, tuple: &FourTuple) {
        self.map.remove(tuple);
    }

    /// Ends the records whose 2MSL is over; returns how many. A record whose 2MSL restarted
    /// (retransmitted FIN) goes back in the queue with its new expiry.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(tuple, queued)) = self.fifo.front() {
            if queued > now {
                break;
            }
            self.fifo.pop_front();
            match self.map.get(&tuple) {
                // Restarted by a retransmitted FIN, or a newer incarnation of a reopened tuple:
                // queue it again at its own expiry (a late entry only delays, never shortens).
                Some(r) if r.expiry > now => self.fifo.push_back((tuple, r.expiry)),
                Some(_) => {
                    self.map.remove(&tuple);
                    expired += 1;
                }
                None => {}
            }
        }
        expired
    }

    /// The earliest expiry queued.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.fifo.front().map(|&(_, t)| t)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}
