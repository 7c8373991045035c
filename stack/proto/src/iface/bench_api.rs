//! The crate-private tables, opened just enough for the benchmarks in `bench/benches/tables.rs`.
//! Not an API: hidden from the documentation, may change at any time.

use crate::tcp::{FourTuple, TcpConfig, TimeWaitRecord};
use crate::time::Instant;

use super::table;
use super::time_wait_table::{self, Inserted};
use super::timer_wheel::{self, Lane};

/// The connection table: a hashbrown map from 4-tuple to a slab index.
#[derive(Debug)]
pub struct ConnTable(table::ConnTable);

impl ConnTable {
    /// Room for `max` connections configured with `config` (slots hold no rings; the pool
    /// lends none here).
    pub fn new(max: usize, config: TcpConfig) -> ConnTable {
        ConnTable(table::ConnTable::new(max, config, 0))
    }
    /// Takes a slot for `tuple`; its index, or `None` when full.
    pub fn insert(&mut self, tuple: FourTuple) -> Option<u32> {
        self.0.insert(tuple).map(|id| id.index)
    }
    /// The slot of `tuple`.
    pub fn find(&self, tuple: &FourTuple) -> Option<u32> {
        self.0.find(tuple)
    }
    /// Frees the slot `index` of `tuple`.
    pub fn remove(&mut self, index: u32, tuple: &FourTuple) {
        self.0.remove(index, tuple)
    }
    /// Connections held.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// The TIME_WAIT table with a wheel of its own for the expiries.
#[derive(Debug)]
pub struct TimeWaitTable {
    table: time_wait_table::TimeWaitTable,
    wheel: timer_wheel::TimerWheel,
}

impl TimeWaitTable {
    /// Room for `max` records, allocated now.
    pub fn new(max: usize) -> TimeWaitTable {
        TimeWaitTable { table: time_wait_table::TimeWaitTable::new(max, 0), wheel: timer_wheel::TimerWheel::new(max) }
    }
    /// Stores a record; true when the oldest had to be evicted.
    pub fn insert(&mut self, record: &TimeWaitRecord) -> bool {
        self.table.insert(record, &mut self.wheel) == Inserted::EvictedOldest
    }
    /// The slab index of a 4-tuple's record.
    pub fn find(&self, tuple: &FourTuple) -> Option<u32> {
        self.table.find(tuple)
    }
    /// The record at a slab index.
    pub fn get(&self, i: u32) -> TimeWaitRecord {
        self.table.get(i, &self.wheel)
    }
    /// Ends the record at a slab index.
    pub fn remove(&mut self, i: u32) {
        self.table.remove(i, &mut self.wheel)
    }
    /// Ends the records expired at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((entry, _)) = self.wheel.pop_due(now) {
            self.table.expired(entry);
            n += 1;
        }
        n
    }
    /// Records held.
    pub fn len(&self) -> usize {
        self.table.len()
    }
    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
    /// The most records held.
    pub fn max(&self) -> usize {
        self.table.max()
    }
    /// Bytes allocated: slab, hash table and wheel entries.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }
    /// Bytes per record the table can hold.
    pub fn bytes_per_entry(&self) -> f64 {
        self.table.bytes_per_entry()
    }
}

/// The hierarchical timer wheel, with one lane.
#[derive(Debug)]
pub struct TimerWheel(timer_wheel::TimerWheel);

impl TimerWheel {
    /// A wheel for entries `0..capacity`.
    pub fn new(capacity: usize) -> TimerWheel {
        TimerWheel(timer_wheel::TimerWheel::new(capacity))
    }
    /// Arms `entry` for `at`, replacing its deadline.
    pub fn schedule(&mut self, entry: u32, at: Instant) {
        self.0.schedule(entry, Lane::Connection, at)
    }
    /// Disarms `entry`.
    pub fn cancel(&mut self, entry: u32) {
        self.0.cancel(entry)
    }
    /// One entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        self.0.pop_due(now).map(|(e, _)| e)
    }
    /// When `pop_due` next has work, at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.0.next_deadline()
    }
    /// Entries armed.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
    /// Bytes allocated.
    pub fn memory_bytes(&self) -> usize {
        self.0.memory_bytes()
    }
}
