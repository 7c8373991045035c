//! TIME_WAIT as compact records: a map from 4-tuple to a slot, and the slots on an intrusive
//! list in expiry order. Every record lasts the same 2MSL, so insertion order is expiry order
//! and the list does what a timer would, in O(1); a record can also leave from the middle
//! (a SYN reopened its 4-tuple, or a client reused its port) without leaving anything behind.

use hashbrown::HashMap;

use crate::tcp::{FourTuple, TimeWaitRecord};
use crate::time::Instant;

/// No slot: the end of the list.
const NIL: u32 = u32::MAX;

/// A record on the expiry list.
#[derive(Debug, Clone, Copy)]
struct Node {
    record: TimeWaitRecord,
    /// The expiry the record had when it was put on the list: its place in the order. A FIN
    /// retransmitted into TIME_WAIT restarts 2MSL and only moves `record.expiry` later, so the
    /// node is moved to the tail when it reaches the head (a late move only delays, never
    /// shortens).
    queued: Instant,
    prev: u32,
    next: u32,
}

/// The TIME_WAIT records of one worker.
#[derive(Debug)]
pub(crate) struct TimeWaitTable {
    map: HashMap<FourTuple, u32>,
    /// Slots, created up to `max` and then reused through `free`.
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// The oldest record (the next to expire) and the newest.
    head: u32,
    tail: u32,
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
        let max = max.clamp(1, NIL as usize - 1);
        TimeWaitTable {
            map: HashMap::with_capacity(max),
            nodes: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            head: NIL,
            tail: NIL,
            max,
        }
    }

    /// Stores a record (replacing one of the same 4-tuple). When full, the oldest record (the
    /// nearest to expiry) is ended early.
    pub fn insert(&mut self, record: TimeWaitRecord) -> Inserted {
        if let Some(&index) = self.map.get(&record.tuple) {
            self.unlink(index);
            self.push_back(index, record);
            return Inserted::Stored;
        }
        let mut outcome = Inserted::Stored;
        if self.map.len() >= self.max && self.head != NIL {
            let oldest = self.head;
            self.release(oldest);
            outcome = Inserted::EvictedOldest;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.nodes.push(Node { record, queued: record.expiry, prev: NIL, next: NIL });
                (self.nodes.len() - 1) as u32
            }
        };
        self.push_back(index, record);
        self.map.insert(record.tuple, index);
        outcome
    }

    /// The record of a 4-tuple.
    #[inline]
    pub fn get(&self, tuple: &FourTuple) -> Option<&TimeWaitRecord> {
        self.map.get(tuple).map(|&i| &self.nodes[i as usize].record)
    }

    /// The record of a 4-tuple, to update.
    #[inline]
    pub fn get_mut(&mut self, tuple: &FourTuple) -> Option<&mut TimeWaitRecord> {
        self.map.get(tuple).map(|&i| &mut self.nodes[i as usize].record)
    }

    /// Ends a record before its time (a SYN reopened its 4-tuple, or its port is reused) and
    /// returns it.
    pub fn remove(&mut self, tuple: &FourTuple) -> Option<TimeWaitRecord> {
        let index = *self.map.get(tuple)?;
        let record = self.nodes[index as usize].record;
        self.release(index);
        Some(record)
    }

    /// Ends the records whose 2MSL is over; returns how many. A record whose 2MSL restarted
    /// (retransmitted FIN) goes back to the tail with its new expiry.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while self.head != NIL {
            let index = self.head;
            let node = self.nodes[index as usize];
            if node.queued > now {
                break;
            }
            if node.record.expiry > now {
                self.unlink(index);
                self.push_back(index, node.record);
                continue;
            }
            self.release(index);
            expired += 1;
        }
        expired
    }

    /// The earliest expiry queued (a restarted record may move it later, never earlier).
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.head != NIL).then(|| self.nodes[self.head as usize].queued)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Unlinks a slot, forgets its 4-tuple and frees it.
    fn release(&mut self, index: u32) {
        self.unlink(index);
        let tuple = self.nodes[index as usize].record.tuple;
        self.map.remove(&tuple);
        self.free.push(index);
    }

    fn unlink(&mut self, index: u32) {
        let Node { prev, next, .. } = self.nodes[index as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_back(&mut self, index: u32, record: TimeWaitRecord) {
        self.nodes[index as usize] = Node { record, queued: record.expiry, prev: self.tail, next: NIL };
        match self.tail {
            NIL => self.head = index,
            t => self.nodes[t as usize].next = index,
        }
        self.tail = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::{Endpoint, SeqNumber};
    use std::net::Ipv4Addr;

    fn record(port: u16, expiry_ms: u64) -> TimeWaitRecord {
        TimeWaitRecord {
            tuple: FourTuple {
                local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), port),
                remote: Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), 80),
            },
            snd_nxt: SeqNumber(1),
            rcv_nxt: SeqNumber(2),
            ts_recent: 0,
            ts_offset: 0,
            expiry: Instant::from_millis(expiry_ms),
            last_segment: Instant::ZERO,
            window: 0,
            timestamps: true,
        }
    }

    #[test]
    fn records_expire_in_order_and_removal_leaves_nothing_behind() {
        let mut t = TimeWaitTable::new(8);
        for port in 1..=4 {
            assert_eq!(t.insert(record(port, 100 * u64::from(port))), Inserted::Stored);
        }
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(100)));
        // Port 2 is reused from the middle, then enters TIME_WAIT again, later.
        assert_eq!(t.remove(&record(2, 0).tuple).map(|r| r.expiry), Some(Instant::from_millis(200)));
        assert_eq!(t.remove(&record(2, 0).tuple), None);
        t.insert(record(2, 500));
        assert_eq!(t.len(), 4);
        assert_eq!(t.expire(Instant::from_millis(250)), 1, "only port 1: port 2's old entry is gone");
        assert_eq!(t.expire(Instant::from_millis(400)), 2);
        assert!(t.get(&record(2, 0).tuple).is_some());
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(500)));
        assert_eq!(t.expire(Instant::from_millis(500)), 1);
        assert_eq!((t.len(), t.next_deadline()), (0, None));
        // Slots are reused: churn through the same tuples allocates no more nodes.
        for round in 0..100u64 {
            for port in 1..=4 {
                t.remove(&record(port, 0).tuple);
                t.insert(record(port, 1000 + round));
            }
        }
        assert_eq!(t.len(), 4);
        assert!(t.nodes.len() <= 4, "{} nodes for 4 records", t.nodes.len());
    }

    #[test]
    fn a_restarted_record_moves_back_and_a_full_table_evicts_the_oldest() {
        let mut t = TimeWaitTable::new(3);
        for port in 1..=3 {
            t.insert(record(port, 100 * u64::from(port)));
        }
        // A retransmitted FIN restarted port 1's 2MSL.
        t.get_mut(&record(1, 0).tuple).unwrap().expiry = Instant::from_millis(1000);
        assert_eq!(t.expire(Instant::from_millis(300)), 2, "ports 2 and 3");
        assert!(t.get(&record(1, 0).tuple).is_some());
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(1000)));
        t.insert(record(4, 1100));
        t.insert(record(5, 1200));
        assert_eq!(t.insert(record(6, 1300)), Inserted::EvictedOldest);
        assert!(t.get(&record(1, 0).tuple).is_none(), "the oldest went");
        assert_eq!(t.len(), 3);
        // Re-inserting a tuple replaces its record instead of adding one.
        assert_eq!(t.insert(record(5, 2000)), Inserted::Stored);
        assert_eq!(t.len(), 3);
        assert_eq!(t.expire(Instant::from_millis(1300)), 2);
        assert_eq!(t.get(&record(5, 0).tuple).map(|r| r.expiry), Some(Instant::from_millis(2000)));
    }
}
