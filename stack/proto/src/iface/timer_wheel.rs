//! One hierarchical timer wheel for every timer of a worker: connection timers and TIME_WAIT
//! expiries.
//!
//! Time is counted in ticks of 2^20 ns (about 1.05 ms). A deadline is rounded *up* to a tick
//! and fires when `poll` is called at or after the start of that tick: never early, late by
//! less than one tick. Six levels of 64 slots cover 2^36 ticks (about 2.2 years); a deadline
//! beyond waits in an overflow list that is sorted into the wheel when its turn comes.
//!
//! Entries are named by a `u32` index below the capacity fixed at construction; their links
//! are intrusive (`next`/`prev` indices in one preallocated array), so inserting, cancelling
//! and re-arming are O(1) and never allocate. Every entry belongs to a [`Lane`]: each lane has
//! its own lists and occupancy bits, so the earliest entry of one lane (the TIME_WAIT record to
//! evict when the table is full) is found in O(1) without walking the other lane's entries.
//!
//! Invariant (the one that makes `next_deadline` and `earliest` cheap): an entry at level L
//! shares every bit above level L with `elapsed` and sits in a slot strictly after
//! `elapsed`'s slot at that level. So within a level, the lowest occupied slot is the earliest,
//! and every entry of level L is due before any entry of level L+1.

use crate::time::Instant;

/// Log2 of a tick in nanoseconds.
pub(crate) const TICK_SHIFT: u32 = 20;
/// Bits of a tick count each level resolves.
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 6;
/// Ticks the levels cover; a deadline further from `elapsed` than this goes to overflow.
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;

const NIL: u32 = u32::MAX;
/// Marks a `prev` link that names a list head rather than an entry.
const HEAD: u32 = 1 << 31;

/// Lists per lane: `LEVELS * SLOTS` slots, then the due list, then the overflow list.
const LISTS_PER_LANE: usize = LEVELS * SLOTS + 2;
const DUE: usize = LEVELS * SLOTS;
const OVERFLOW: usize = LEVELS * SLOTS + 1;

/// Which kind of timer an entry is: lanes share the wheel but keep separate lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Lane {
    /// A connection's next deadline (retransmission, delayed ACK, keepalive, ...).
    Connection = 0,
    /// A TIME_WAIT record's 2MSL expiry.
    TimeWait = 1,
}
const LANES: usize = 2;

/// The deadline tick of an instant: rounded up, so that a timer never fires early.
#[inline]
pub(crate) fn tick_ceil(at: Instant) -> u64 {
    at.as_nanos().div_ceil(1 << TICK_SHIFT)
}

/// The tick an instant lies in (what has fully started by then).
#[inline]
fn tick_floor(at: Instant) -> u64 {
    at.as_nanos() >> TICK_SHIFT
}

/// The instant a tick starts.
#[inline]
pub(crate) fn tick_start(tick: u64) -> Instant {
    Instant::from_nanos(tick.saturating_mul(1 << TICK_SHIFT))
}

/// One entry's links and deadline: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    next: u32,
    /// The previous entry, or `HEAD | list` for the first of a list, or `NIL` when unlinked.
    prev: u32,
    tick: u64,
}

const UNLINKED: Entry = Entry { next: NIL, prev: NIL, tick: 0 };

/// The wheel: see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct TimerWheel {
    /// Entries up to the highest index used so far; capacity reserved for all of them.
    entries: Vec<Entry>,
    capacity: usize,
    heads: Box<[u32; LANES * LISTS_PER_LANE]>,
    /// Per lane and level, a bit per non-empty slot.
    occupied: [[u64; LEVELS]; LANES],
    /// Every deadline at or before this tick has been moved to a due list.
    elapsed: u64,
    len: usize,
}

impl TimerWheel {
    /// A wheel for entries `0..capacity` (at most 2^31 - 1), its link array reserved now.
    pub(super) fn new(capacity: usize) -> TimerWheel {
        let capacity = capacity.min(HEAD as usize - 1);
        TimerWheel {
            entries: Vec::with_capacity(capacity),
            capacity,
            heads: Box::new([NIL; LANES * LISTS_PER_LANE]),
            occupied: [[0; LEVELS]; LANES],
            elapsed: 0,
            len: 0,
        }
    }

    /// Bytes the wheel allocates for each entry it can hold.
    pub(super) const ENTRY_BYTES: usize = core::mem::size_of::<Entry>();

    /// Bytes allocated in all (links of every entry, and the list heads).
    #[cfg(feature = "bench-internals")]
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * Self::ENTRY_BYTES + core::mem::size_of::<[u32; LANES * LISTS_PER_LANE]>()
    }

    /// Entries armed (including those due and not yet popped).
    #[cfg(any(test, feature = "bench-internals"))]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The tick `entry` is armed for, if it is armed.
    #[inline]
    pub(super) fn armed_tick(&self, entry: u32) -> Option<u64> {
        self.entries.get(entry as usize).filter(|e| e.prev != NIL).map(|e| e.tick)
    }

    /// Arms `entry` for the tick of `at` (rounded up), replacing any deadline it had.
    /// An index beyond the capacity is ignored (the callers size the wheel for every index
    /// they use, so this does not happen; it must not panic either).
    #[inline]
    pub(super) fn schedule(&mut self, entry: u32, lane: Lane, at: Instant) {
        self.schedule_tick(entry, lane, tick_ceil(at));
    }

    /// Arms `entry` for `tick`, replacing any deadline it had.
    pub(super) fn schedule_tick(&mut self, entry: u32, lane: Lane, tick: u64) {
        let i = entry as usize;
        if i >= self.entries.len() {
            if i >= self.capacity {
                return;
            }
            // Within the reserved capacity: no reallocation.
            self.entries.resize(i + 1, UNLINKED);
        }
        if self.entries[i].prev != NIL {
            self.unlink(entry);
        } else {
            self.len += 1;
        }
        self.entries[i].tick = tick;
        self.link(entry, lane, tick);
    }

    /// Disarms `entry` (nothing if it is not armed).
    #[inline]
    pub(super) fn cancel(&mut self, entry: u32) {
        if self.entries.get(entry as usize).is_some_and(|e| e.prev != NIL) {
            self.unlink(entry);
            self.len -= 1;
        }
    }

    /// Pops one entry due at `now`, with its lane; `None` when nothing more is due. Moves the
    /// wheel forward to `now`, cascading entries of higher levels down on the way.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(u32, Lane)> {
        let now_tick = tick_floor(now);
        loop {
            for lane in [Lane::Connection, Lane::TimeWait] {
                let head = self.heads[list_id(lane, DUE)];
                // A due entry is at or before `elapsed`, so at or before `now` unless the
                // caller's clock went back: then it waits (rather than firing early, and
                // rather than being re-armed into the due list over and over).
                if head != NIL && self.entries[head as usize].tick <= now_tick {
                    self.unlink(head);
                    self.len -= 1;
                    return Some((head, lane));
                }
            }
            match self.next_event() {
                Some((tick, list)) if tick <= now_tick => {
                    self.elapsed = tick;
                    self.process(list);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now_tick);
                    return None;
                }
            }
        }
    }

    /// A time at which `pop_due` has work: never later than the earliest armed deadline's
    /// tick (it may be earlier: a higher level's slot only cascades when its time comes).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        for lane in [Lane::Connection, Lane::TimeWait] {
            if self.heads[list_id(lane, DUE)] != NIL {
                return Some(tick_start(self.elapsed));
            }
        }
        self.next_event().map(|(tick, _)| tick_start(tick))
    }

    /// The entry of `lane` due soonest, to within one slot of its level: the head of the
    /// lane's earliest non-empty list.
    pub(super) fn earliest(&self, lane: Lane) -> Option<u32> {
        let due = self.heads[list_id(lane, DUE)];
        if due != NIL {
            return Some(due);
        }
        for level in 0..LEVELS {
            let bits = self.occupied[lane as usize][level];
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                return Some(self.heads[list_id(lane, level * SLOTS + slot)]);
            }
        }
        let over = self.heads[list_id(lane, OVERFLOW)];
        (over != NIL).then_some(over)
    }

    /// The earliest slot (or overflow list) that needs processing, with its start tick,
    /// as `(tick, list of the Connection lane)`; the same list of the other lane is
    /// processed with it.
    fn next_event(&self) -> Option<(u64, usize)> {
        let mut best: Option<(u64, usize)> = None;
        for level in 0..LEVELS {
            let bits = self.occupied[0][level] | self.occupied[1][level];
            if bits == 0 {
                continue;
            }
            let slot = u64::from(bits.trailing_zeros());
            let shift = SLOT_BITS * level as u32;
            let rotation_start = self.elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
            let tick = rotation_start + (slot << shift);
            if best.is_none_or(|(b, _)| tick < b) {
                best = Some((tick, level * SLOTS + slot as usize));
            }
            // Every entry of a higher level is due after this one (module invariant).
            break;
        }
        if best.is_none()
            && (self.heads[list_id(Lane::Connection, OVERFLOW)] != NIL
                || self.heads[list_id(Lane::TimeWait, OVERFLOW)] != NIL)
        {
            // Overflow entries join the wheel when the top level starts a new rotation.
            let tick = ((self.elapsed >> WHEEL_BITS) + 1) << WHEEL_BITS;
            best = Some((tick, OVERFLOW));
        }
        best
    }

    /// Empties `list` of both lanes at `elapsed`: entries due go to the due lists, the others
    /// are placed again relative to `elapsed` (a lower level, or overflow again).
    fn process(&mut self, list: usize) {
        for lane in [Lane::Connection, Lane::TimeWait] {
            let id = list_id(lane, list);
            let mut entry = self.heads[id];
            self.heads[id] = NIL;
            if list < DUE {
                self.occupied[lane as usize][list / SLOTS] &= !(1u64 << (list % SLOTS));
            }
            while entry != NIL {
                let next = self.entries[entry as usize].next;
                let tick = self.entries[entry as usize].tick;
                self.link(entry, lane, tick);
                entry = next;
            }
        }
    }

    /// Puts an unlinked entry at the front of the list its tick belongs to.
    #[inline]
    fn link(&mut self, entry: u32, lane: Lane, tick: u64) {
        let list = if tick <= self.elapsed {
            DUE
        } else {
            // The highest 6-bit group in which the tick differs from `elapsed` is its level.
            let differing = (self.elapsed ^ tick) | (SLOTS as u64 - 1);
            let level = ((63 - differing.leading_zeros()) / SLOT_BITS) as usize;
            if level >= LEVELS {
                OVERFLOW
            } else {
                let slot = ((tick >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1);
                self.occupied[lane as usize][level] |= 1u64 << slot;
                level * SLOTS + slot
            }
        };
        let id = list_id(lane, list);
        let old = self.heads[id];
        if old != NIL {
            self.entries[old as usize].prev = entry;
        }
        let e = &mut self.entries[entry as usize];
        e.next = old;
        e.prev = HEAD | id as u32;
        self.heads[id] = entry;
    }

    /// Takes a linked entry out of its list.
    #[inline]
    fn unlink(&mut self, entry: u32) {
        let Entry { next, prev, .. } = self.entries[entry as usize];
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev & HEAD != 0 {
            let id = (prev & !HEAD) as usize;
            self.heads[id] = next;
            let (lane, list) = (id / LISTS_PER_LANE, id % LISTS_PER_LANE);
            if next == NIL && list < DUE {
                self.occupied[lane][list / SLOTS] &= !(1u64 << (list % SLOTS));
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        let e = &mut self.entries[entry as usize];
        e.next = NIL;
        e.prev = NIL;
    }
}

#[inline]
fn list_id(lane: Lane, list: usize) -> usize {
    lane as usize * LISTS_PER_LANE + list
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    const TICK_NS: u64 = 1 << TICK_SHIFT;

    fn drain(wheel: &mut TimerWheel, now: Instant) -> Vec<(u32, Lane)> {
        let mut out = Vec::new();
        while let Some(e) = wheel.pop_due(now) {
            out.push(e);
        }
        out
    }

    #[test]
    fn fires_at_its_tick_never_before() {
        let mut wheel = TimerWheel::new(8);
        let at = Instant::from_millis(40);
        wheel.schedule(3, Lane::Connection, at);
        assert_eq!(wheel.armed_tick(3), Some(tick_ceil(at)));
        // The wake-up it asks for is never after the tick the deadline rounds up to.
        assert!(wheel.next_deadline().unwrap() <= tick_start(tick_ceil(at)));
        assert!(drain(&mut wheel, Instant::from_nanos(at.as_nanos() - 1)).is_empty());
        // Within the tick the deadline lies in (40 ms is not a whole tick), but before it: not yet.
        assert!(drain(&mut wheel, tick_start(tick_floor(at))).is_empty());
        assert_eq!(drain(&mut wheel, tick_start(tick_ceil(at))), vec![(3, Lane::Connection)]);
        assert_eq!((wheel.len(), wheel.next_deadline()), (0, None));
    }

    #[test]
    fn cancel_and_rearm_earlier_and_later() {
        let mut wheel = TimerWheel::new(8);
        wheel.schedule(1, Lane::Connection, Instant::from_millis(500));
        wheel.schedule(2, Lane::TimeWait, Instant::from_millis(60_000));
        wheel.schedule(1, Lane::Connection, Instant::from_millis(5));
        wheel.cancel(2);
        wheel.cancel(2);
        assert_eq!(wheel.len(), 1);
        assert_eq!(drain(&mut wheel, Instant::from_millis(100_000)), vec![(1, Lane::Connection)]);
        // A deadline already past when armed is due at the next poll.
        wheel.schedule(4, Lane::TimeWait, Instant::from_millis(1));
        assert_eq!(wheel.next_deadline(), Some(tick_start(tick_floor(Instant::from_millis(100_000)))));
        assert_eq!(drain(&mut wheel, Instant::from_millis(100_000)), vec![(4, Lane::TimeWait)]);
    }

    #[test]
    fn earliest_of_a_lane_ignores_the_other_lane() {
        let mut wheel = TimerWheel::new(300);
        for i in 0..200u32 {
            wheel.schedule(i, Lane::Connection, Instant::from_millis(u64::from(i) + 1));
        }
        for i in 200..300u32 {
            wheel.schedule(i, Lane::TimeWait, Instant::from_millis(60_000 + u64::from(300 - i) * 100));
        }
        // The last TIME_WAIT entry has the earliest expiry; it is alone in its level-1 slot.
        assert_eq!(wheel.earliest(Lane::TimeWait), Some(299));
        assert!(wheel.earliest(Lane::Connection).is_some_and(|e| e < 2));
    }

    #[test]
    fn far_future_deadlines_beyond_the_top_level_wait_in_overflow() {
        let mut wheel = TimerWheel::new(4);
        let far = (1u64 << WHEEL_BITS) * 3 + 12_345; // ticks: about 6.6 years
        wheel.schedule_tick(0, Lane::Connection, far);
        wheel.schedule_tick(1, Lane::TimeWait, u64::MAX >> TICK_SHIFT);
        wheel.schedule_tick(2, Lane::Connection, 10);
        assert_eq!(drain(&mut wheel, tick_start(10)), vec![(2, Lane::Connection)]);
        assert!(drain(&mut wheel, tick_start(far - 1)).is_empty());
        assert!(wheel.next_deadline().unwrap() <= tick_start(far));
        assert_eq!(drain(&mut wheel, tick_start(far)), vec![(0, Lane::Connection)]);
        assert_eq!(wheel.earliest(Lane::TimeWait), Some(1));
        assert_eq!(drain(&mut wheel, Instant::from_nanos(u64::MAX)), vec![(1, Lane::TimeWait)]);
    }

    #[test]
    fn a_clock_that_goes_back_delays_but_never_fires_early_or_spins() {
        let mut wheel = TimerWheel::new(4);
        assert!(drain(&mut wheel, Instant::from_millis(5_000)).is_empty());
        // Armed for 3 s while the wheel has seen 5 s: due at once for a monotonic caller...
        wheel.schedule(0, Lane::Connection, Instant::from_millis(3_000));
        // ...but a caller whose clock reads 1 s does not get it before 3 s.
        assert!(drain(&mut wheel, Instant::from_millis(1_000)).is_empty());
        assert_eq!(drain(&mut wheel, Instant::from_millis(3_002)), vec![(0, Lane::Connection)]);
    }

    #[test]
    fn out_of_range_index_is_ignored() {
        let mut wheel = TimerWheel::new(2);
        wheel.schedule(5, Lane::Connection, Instant::from_millis(1));
        assert_eq!(wheel.len(), 0);
    }

    /// Random inserts, re-arms, cancels and polls at random times against a BTreeMap of
    /// deadlines: nothing fires before its deadline, nothing is lost, and nothing fires more
    /// than one tick late (when polled at least once per tick around it).
    #[test]
    fn randomized_against_a_reference() {
        for seed in 0..20u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let n = 512u32;
            let mut wheel = TimerWheel::new(n as usize);
            let mut reference: BTreeMap<u32, (u64, Lane)> = BTreeMap::new(); // entry -> deadline ns
            let mut now: u64 = rng.gen_range(0..1u64 << 40);
            for _ in 0..20_000 {
                match rng.gen_range(0..10) {
                    0..=4 => {
                        let entry = rng.gen_range(0..n);
                        let lane = if entry % 3 == 0 { Lane::TimeWait } else { Lane::Connection };
                        // Spread over every level and beyond the top one.
                        let span = 1u64 << rng.gen_range(0..60);
                        let at =
                            now.saturating_add(rng.gen_range(0..span)).saturating_sub(rng.gen_range(0..2) * TICK_NS);
                        wheel.schedule(entry, lane, Instant::from_nanos(at));
                        reference.insert(entry, (at, lane));
                    }
                    5 => {
                        let entry = rng.gen_range(0..n);
                        wheel.cancel(entry);
                        reference.remove(&entry);
                    }
                    _ => {
                        // Mostly small steps, sometimes a jump across levels.
                        let step = if rng.gen_bool(0.9) {
                            rng.gen_range(0..4 * TICK_NS)
                        } else {
                            1u64 << rng.gen_range(20..50)
                        };
                        now = now.saturating_add(step);
                        let due: Vec<_> = drain(&mut wheel, Instant::from_nanos(now));
                        for (entry, lane) in due {
                            let (at, ref_lane) = reference.remove(&entry).expect("fired an entry that was not armed");
                            assert_eq!(lane, ref_lane);
                            assert!(at <= now, "seed {seed}: entry {entry} fired early: deadline {at}, now {now}");
                        }
                        // Nothing due is left behind: every deadline a whole tick in the past fired.
                        for (&entry, &(at, _)) in &reference {
                            assert!(
                                tick_ceil(Instant::from_nanos(at)) > now >> TICK_SHIFT,
                                "seed {seed}: entry {entry} with deadline {at} not fired at {now}"
                            );
                        }
                        assert_eq!(wheel.len(), reference.len());
                        if let Some(next) = wheel.next_deadline() {
                            let earliest = reference.values().map(|&(at, _)| tick_ceil(Instant::from_nanos(at))).min();
                            assert!(Some(tick_floor(next)) <= earliest, "seed {seed}: next_deadline too late");
                        } else {
                            assert!(reference.is_empty());
                        }
                    }
                }
            }
            // Everything armed fires eventually.
            let left = drain(&mut wheel, Instant::from_nanos(u64::MAX));
            assert_eq!(left.len(), reference.len(), "seed {seed}: entries lost");
        }
    }
}
