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

    /// Bytes the table holds allocated: the map's buckets and control bytes as hashbrown
    /// reports them, and the FIFO's buffer. Memory per record is this over `len`.
    pub fn allocated_bytes(&self) -> usize {
        self.map.allocation_size() + self.fifo.capacity() * core::mem::size_of::<(FourTuple, Instant)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::{Endpoint, SeqNumber};
    use std::net::Ipv4Addr;

    fn record(port: u16, expiry: Instant) -> TimeWaitRecord {
        TimeWaitRecord {
            tuple: FourTuple {
                local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80),
                remote: Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), port),
            },
            snd_nxt: SeqNumber(1),
            rcv_nxt: SeqNumber(1),
            ts_recent: 0,
            ts_offset: 0,
            expiry,
            window: 0,
            timestamps: false,
        }
    }

    #[test]
    fn allocated_bytes_covers_the_preallocated_room_and_stays_put_while_filling() {
        let mut table = TimeWaitTable::new(1000);
        let empty = table.allocated_bytes();
        let per_record =
            core::mem::size_of::<(FourTuple, TimeWaitRecord)>() + core::mem::size_of::<(FourTuple, Instant)>();
        assert!(empty >= 1000 * per_record, "{empty} bytes for 1000 records of at least {per_record}");
        for port in 0..1000 {
            assert_eq!(table.insert(record(port, Instant::from_millis(5))), Inserted::Stored);
        }
        assert_eq!(table.allocated_bytes(), empty, "room was allocated up front");
        assert_eq!(table.expire(Instant::from_millis(5)), 1000);
        assert_eq!(table.allocated_bytes(), empty);
    }
}
