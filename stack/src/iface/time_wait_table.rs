//! TIME_WAIT as compact records: a preallocated slab of 32-byte packed records, a hashbrown
//! `HashTable<u32>` of slab indices (the 4-tuple is hashed from the slab, not stored twice),
//! and each record's 2MSL expiry as an entry of the worker's [`TimerWheel`].
//!
//! Memory per record, everything the table allocates included: 32 bytes of record, 16 of wheel
//! links and deadline, and 4 bytes plus a control byte per hash bucket (hashbrown keeps at
//! most 7/8 of its power-of-two buckets full: 5.7 to 11.4 bytes per record). So 54 to 60
//! bytes at any maximum; [`TimeWaitTable::memory_bytes`] measures it.
//!
//! Full policy: when `max` records are held, inserting one ends the record nearest to expiry
//! early: the head of the wheel's earliest non-empty TIME_WAIT slot, which is the oldest
//! record to within one slot of its level (every record lasts the same 2MSL, so nearest to
//! expiry means oldest). The caller counts it (`time_wait_evicted`).

use core::hash::BuildHasher;
use std::net::Ipv4Addr;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::timer_wheel::{tick_ceil, tick_start, Lane, TimerWheel};
use crate::tcp::{Endpoint, FourTuple, SeqNumber, TimeWaitRecord};
use crate::time::Instant;

const NIL: u32 = u32::MAX;
const FLAG_LIVE: u16 = 1;
const FLAG_TIMESTAMPS: u16 = 2;
/// The top 14 bits of `flags`: how long before the expiry the 4-tuple's last segment was, in
/// units of [`QUIET_UNIT_NS`], rounded down and saturating. Unpacked against the wheel's expiry
/// (rounded up to its tick) that gives a time at or after the real last segment, never before
/// and less than a unit after: port reuse, which waits for the 4-tuple to be quiet, waits at
/// most 4 ms longer than it must (and the record stays 32 bytes).
const QUIET_SHIFT: u32 = 2;
const QUIET_MAX: u64 = (1 << (16 - QUIET_SHIFT)) - 1;
/// 4 ms: 14 bits cover 65.5 s, the default 2MSL of 60 s and then some.
const QUIET_UNIT_NS: u64 = 4_000_000;

/// A [`TimeWaitRecord`] without its expiry (kept by the wheel), packed in 32 bytes. A free
/// slab entry reuses `snd_nxt` as the link of the free list.
#[derive(Debug, Clone, Copy)]
struct PackedRecord {
    local_addr: u32,
    remote_addr: u32,
    local_port: u16,
    remote_port: u16,
    snd_nxt: u32,
    rcv_nxt: u32,
    ts_recent: u32,
    ts_offset: u32,
    window: u16,
    flags: u16,
}

impl PackedRecord {
    #[inline]
    fn pack(r: &TimeWaitRecord) -> PackedRecord {
        PackedRecord {
            local_addr: u32::from(r.tuple.local.addr),
            remote_addr: u32::from(r.tuple.remote.addr),
            local_port: r.tuple.local.port,
            remote_port: r.tuple.remote.port,
            snd_nxt: r.snd_nxt.0,
            rcv_nxt: r.rcv_nxt.0,
            ts_recent: r.ts_recent,
            ts_offset: r.ts_offset,
            window: r.window,
            flags: FLAG_LIVE
                | if r.timestamps { FLAG_TIMESTAMPS } else { 0 }
                | (Self::quiet_units(r) << QUIET_SHIFT) as u16,
        }
    }

    /// `expiry - last_segment` in [`QUIET_UNIT_NS`], rounded down, saturated at 14 bits.
    #[inline]
    fn quiet_units(r: &TimeWaitRecord) -> u64 {
        // Against the expiry as the wheel will hand it back (the start of its tick), so that
        // only the unit's rounding is lost.
        let expiry = tick_start(tick_ceil(r.expiry));
        let before = expiry.as_nanos().saturating_sub(r.last_segment.as_nanos());
        (before / QUIET_UNIT_NS).min(QUIET_MAX)
    }

    /// The last segment, from the expiry the wheel holds for the record.
    #[inline]
    fn last_segment(&self, expiry: Instant) -> Instant {
        let units = u64::from(self.flags >> QUIET_SHIFT);
        Instant::from_nanos(expiry.as_nanos().saturating_sub(units * QUIET_UNIT_NS))
    }

    #[inline]
    fn tuple(&self) -> FourTuple {
        FourTuple {
            local: Endpoint::new(Ipv4Addr::from(self.local_addr), self.local_port),
            remote: Endpoint::new(Ipv4Addr::from(self.remote_addr), self.remote_port),
        }
    }

    #[inline]
    fn is(&self, tuple: &FourTuple) -> bool {
        self.remote_addr == u32::from(tuple.remote.addr)
            && self.remote_port == tuple.remote.port
            && self.local_port == tuple.local.port
            && self.local_addr == u32::from(tuple.local.addr)
    }
}

/// The TIME_WAIT records of one worker.
#[derive(Debug)]
pub(crate) struct TimeWaitTable {
    records: Vec<PackedRecord>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// First free slab entry below the high-water mark (`records.len()`), or `NIL`.
    free: u32,
    len: usize,
    max: usize,
    /// The wheel entry of record 0: record `i` is wheel entry `wheel_base + i`.
    wheel_base: u32,
}

/// What [`TimeWaitTable::insert`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Stored.
    Stored,
    /// Stored after ending the record nearest to expiry early: the table was full.
    EvictedOldest,
}

impl TimeWaitTable {
    /// Room for `max` records, allocated now; their expiries are wheel entries
    /// `wheel_base..wheel_base + max` (the wheel must have room for them).
    pub fn new(max: usize, wheel_base: u32) -> TimeWaitTable {
        let max = max.max(1);
        TimeWaitTable {
            records: Vec::with_capacity(max),
            index: HashTable::with_capacity(max),
            hasher: DefaultHashBuilder::default(),
            free: NIL,
            len: 0,
            max,
            wheel_base,
        }
    }

    #[inline]
    fn hash(&self, tuple: &FourTuple) -> u64 {
        self.hasher.hash_one(tuple)
    }

    /// Stores a record, its expiry in `wheel`. When full, the record nearest to expiry is ended
    /// early. A record for a 4-tuple already held replaces it.
    pub fn insert(&mut self, record: &TimeWaitRecord, wheel: &mut TimerWheel) -> Inserted {
        if let Some(i) = self.find(&record.tuple) {
            self.records[i as usize] = PackedRecord::pack(record);
            wheel.schedule(self.wheel_base + i, Lane::TimeWait, record.expiry);
            return Inserted::Stored;
        }
        let mut outcome = Inserted::Stored;
        if self.len >= self.max {
            if let Some(oldest) = wheel.earliest(Lane::TimeWait) {
                self.remove(oldest - self.wheel_base, wheel);
                outcome = Inserted::EvictedOldest;
            }
        }
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.records[i as usize].snd_nxt;
            self.records[i as usize] = PackedRecord::pack(record);
            i
        } else if self.records.len() < self.max {
            // Within the reserved capacity: no reallocation.
            self.records.push(PackedRecord::pack(record));
            (self.records.len() - 1) as u32
        } else {
            // Every record is in the wheel, so a full table always had one to evict.
            debug_assert!(false, "TIME_WAIT table full with nothing to evict");
            return Inserted::EvictedOldest;
        };
        let hash = self.hash(&record.tuple);
        let (records, hasher) = (&self.records, &self.hasher);
        self.index.insert_unique(hash, i, |&j| hasher.hash_one(records[j as usize].tuple()));
        self.len += 1;
        wheel.schedule(self.wheel_base + i, Lane::TimeWait, record.expiry);
        outcome
    }

    /// The slab index of a 4-tuple's record.
    #[inline]
    pub fn find(&self, tuple: &FourTuple) -> Option<u32> {
        let records = &self.records;
        self.index.find(self.hash(tuple), |&i| records[i as usize].is(tuple)).copied()
    }

    /// Whether a 4-tuple is in TIME_WAIT.
    #[cfg(test)]
    pub fn contains(&self, tuple: &FourTuple) -> bool {
        self.find(tuple).is_some()
    }

    /// The record at slab index `i` (from [`find`](Self::find)), its expiry read from the
    /// wheel (the start of the tick it fires in).
    pub fn get(&self, i: u32, wheel: &TimerWheel) -> TimeWaitRecord {
        let p = &self.records[i as usize];
        let expiry = tick_start(wheel.armed_tick(self.wheel_base + i).unwrap_or(0));
        TimeWaitRecord {
            tuple: p.tuple(),
            snd_nxt: SeqNumber(p.snd_nxt),
            rcv_nxt: SeqNumber(p.rcv_nxt),
            ts_recent: p.ts_recent,
            ts_offset: p.ts_offset,
            expiry,
            last_segment: p.last_segment(expiry),
            window: p.window,
            timestamps: p.flags & FLAG_TIMESTAMPS != 0,
        }
    }

    /// Writes back a record changed by its logic (a restarted 2MSL moves its wheel entry).
    pub fn update(&mut self, i: u32, record: &TimeWaitRecord, wheel: &mut TimerWheel) {
        self.records[i as usize] = PackedRecord::pack(record);
        let entry = self.wheel_base + i;
        if wheel.armed_tick(entry) != Some(tick_ceil(record.expiry)) {
            wheel.schedule(entry, Lane::TimeWait, record.expiry);
        }
    }

    /// Ends the record at slab index `i` before its expiry (a SYN reopened its 4-tuple).
    pub fn remove(&mut self, i: u32, wheel: &mut TimerWheel) {
        wheel.cancel(self.wheel_base + i);
        self.release(i);
    }

    /// Ends the record whose wheel entry `entry` fired (2MSL is over).
    pub fn expired(&mut self, entry: u32) {
        if let Some(i) = entry.checked_sub(self.wheel_base) {
            if self.records.get(i as usize).is_some_and(|p| p.flags & FLAG_LIVE != 0) {
                self.release(i);
            }
        }
    }

    fn release(&mut self, i: u32) {
        let tuple = self.records[i as usize].tuple();
        if let Ok(entry) = self.index.find_entry(self.hash(&tuple), |&j| j == i) {
            entry.remove();
        }
        let p = &mut self.records[i as usize];
        p.flags = 0;
        p.snd_nxt = self.free;
        self.free = i;
        self.len -= 1;
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The most records held.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes allocated for the records: the slab, the hash table (buckets and control bytes)
    /// and the wheel entries of the records.
    pub fn memory_bytes(&self) -> usize {
        self.records.capacity() * core::mem::size_of::<PackedRecord>()
            + self.index.allocation_size()
            + self.max * TimerWheel::ENTRY_BYTES
    }

    /// [`memory_bytes`](Self::memory_bytes) per record the table can hold (the allocation is
    /// made up front, so this is also the cost per record at full load).
    pub fn bytes_per_entry(&self) -> f64 {
        self.memory_bytes() as f64 / self.max as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;
    use core::time::Duration;

    fn record(n: u32, expiry: Instant) -> TimeWaitRecord {
        TimeWaitRecord {
            tuple: FourTuple {
                local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80),
                remote: Endpoint::new(Ipv4Addr::from(0xc612_0000 | (n >> 16)), n as u16),
            },
            snd_nxt: SeqNumber(n.wrapping_mul(7)),
            rcv_nxt: SeqNumber(n.wrapping_mul(13)),
            ts_recent: n,
            ts_offset: !n,
            expiry,
            // A multiple of the 4 ms unit before the expiry: it round-trips exactly.
            last_segment: Instant::from_nanos(expiry.as_nanos().saturating_sub(8_000_000)),
            window: n as u16,
            timestamps: n.is_multiple_of(2),
        }
    }

    #[test]
    fn record_round_trips_and_is_packed() {
        assert_eq!(core::mem::size_of::<PackedRecord>(), 32);
        let mut wheel = TimerWheel::new(8);
        let mut table = TimeWaitTable::new(4, 4);
        let r = record(0x0003_1234, tick_start(tick_ceil(Instant::from_millis(60_000))));
        assert_eq!(table.insert(&r, &mut wheel), Inserted::Stored);
        let i = table.find(&r.tuple).unwrap();
        assert_eq!(table.get(i, &wheel), r);
        assert!(!table.contains(&record(7, Instant::ZERO).tuple));
    }

    #[test]
    fn last_segment_unpacks_at_or_after_the_real_one() {
        let mut wheel = TimerWheel::new(8);
        let mut table = TimeWaitTable::new(4, 4);
        let expiry = Instant::from_micros(61_234_567);
        for (n, before) in [(1u32, 0u64), (2, 1_500_000), (3, 59_999_999_999), (4, 90_000_000_000)] {
            let mut r = record(n, expiry);
            r.last_segment = Instant::from_nanos(expiry.as_nanos().saturating_sub(before));
            table.insert(&r, &mut wheel);
            let got = table.get(table.find(&r.tuple).unwrap(), &wheel).last_segment;
            assert!(got >= r.last_segment, "never earlier: {got:?} < {:?}", r.last_segment);
            if before < 65_000_000_000 {
                // Within the 4 ms unit.
                assert!(got.as_nanos() - r.last_segment.as_nanos() < 4_000_000, "{n}: {got:?}");
            }
        }
    }

    #[test]
    fn expiry_restart_reopen_and_eviction_of_the_oldest() {
        let mut wheel = TimerWheel::new(3);
        let mut table = TimeWaitTable::new(3, 0);
        for n in 0..3 {
            let r = record(n, Instant::from_millis(60_000 + u64::from(n) * 1_000));
            assert_eq!(table.insert(&r, &mut wheel), Inserted::Stored);
        }
        // Full: the fourth ends record 0, the nearest to expiry.
        assert_eq!(table.insert(&record(3, Instant::from_millis(63_000)), &mut wheel), Inserted::EvictedOldest);
        assert!(!table.contains(&record(0, Instant::ZERO).tuple));
        assert_eq!(table.len(), 3);
        // Record 1's 2MSL restarts (a retransmitted FIN): it now outlives the others.
        let i = table.find(&record(1, Instant::ZERO).tuple).unwrap();
        let mut r = table.get(i, &wheel);
        r.expiry = Instant::from_millis(30_000) + Duration::from_secs(60);
        table.update(i, &r, &mut wheel);
        // Record 2 is reopened by a SYN.
        let j = table.find(&record(2, Instant::ZERO).tuple).unwrap();
        table.remove(j, &mut wheel);
        let mut fired = Vec::new();
        while let Some((entry, lane)) = wheel.pop_due(Instant::from_millis(80_000)) {
            assert_eq!(lane, Lane::TimeWait);
            fired.push(entry);
            table.expired(entry);
        }
        assert_eq!(table.len(), 1, "record 3 expired, record 1 restarted, record 2 reopened");
        assert!(table.contains(&record(1, Instant::ZERO).tuple));
        assert!(wheel.pop_due(Instant::from_millis(90_001)).is_some_and(|(e, _)| e == i));
        table.expired(i);
        assert_eq!((table.len(), wheel.len(), fired.len()), (0, 0, 1));
    }

    /// The target of issue 4: at most 64 bytes per TIME_WAIT record, table overhead included,
    /// measured on a table filled with 1 M records (and at a maximum that is not a power of two).
    #[test]
    fn a_million_records_take_at_most_64_bytes_each() {
        for max in [1usize << 20, 1_000_000, 1_900_000] {
            let mut wheel = TimerWheel::new(max);
            let mut table = TimeWaitTable::new(max, 0);
            for n in 0..max as u32 {
                let r = record(n, Instant::from_millis(60_000 + u64::from(n % 1000)));
                assert_eq!(table.insert(&r, &mut wheel), Inserted::Stored);
            }
            assert_eq!(table.len(), max);
            for n in (0..max as u32).step_by(9973) {
                assert!(table.contains(&record(n, Instant::ZERO).tuple));
            }
            // The hash table did not grow and the slab did not reallocate: what was counted at
            // construction is what is held at full load.
            let per_entry = table.bytes_per_entry();
            println!("TIME_WAIT table, max {max}: {} bytes, {per_entry:.1} bytes per record", table.memory_bytes());
            assert!(per_entry <= 64.0, "{per_entry} bytes per record at max {max}");
            assert_eq!(
                table.insert(&record(max as u32, Instant::from_millis(70_000)), &mut wheel),
                Inserted::EvictedOldest
            );
            assert_eq!(table.len(), max);
            assert!(table.bytes_per_entry() <= 64.0);
        }
    }
}
