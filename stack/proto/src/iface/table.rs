//! The connection table of one worker: a slab of connections and a map from 4-tuple to slot.
//!
//! Slots are created on demand up to the configured maximum and never freed: a connection
//! that ends leaves its slot on a free list for the next one. So the table allocates while it
//! grows to its high-water mark and never after, and a handle ([`ConnId`]) carries the slot's
//! generation so that a stale one is refused. A slot holds no ring memory of its own: the
//! table lends its connection rings from the worker's `ring_pool` while it holds data, and
//! takes them back when drained or when the slot is freed.

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::ring_pool::{Ring, RingPools, RingStats};
use super::ConnId;
use crate::tcp::{Connection, FourTuple, TcpConfig};
use crate::wire::EthernetAddress;

/// Where a slot is in its life, as the interface sees it (the connection's own state is the
/// TCP state). One value rather than a flag per fact, so that no impossible mix (half-open
/// yet known to the application, detached yet free) can be written.
///
/// ```text
/// Free -> Unannounced (taken) -> HalfOpen (a SYN accepted) -> Announced (connected)
///                             -> Announced (`connect`)
///                             -> Announced (opened from a SYN cookie, connected)
/// HalfOpen -> Unannounced (ended before it connected) -> Free
/// Announced -> Unannounced (told of the close) -> Free
/// Announced -> ClosedPending (closed, unread data) -> Unannounced (read, told) -> Free
/// ClosedPending -> Detached { told: false } (out of the map, its TIME_WAIT record made)
///               -> Detached { told: true } (read, told of the close) -> Free
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// On the free list.
    Free,
    /// In use, and the application holds no handle: a connection opened from a SYN cookie
    /// until it is connected, a passive one that ended before it was, or one whose end the
    /// application was told of, until its slot is freed.
    Unannounced,
    /// A passive open in SYN-RECEIVED, counted in the SYN backlog (`Interface::half_open`);
    /// the application does not know it yet.
    HalfOpen,
    /// The application holds the handle (accepted, or opened by it).
    Announced,
    /// Closed normally while holding data the application has not read: `on_closed` waits
    /// until it is read (or the application closes or aborts), and the slot with it.
    ClosedPending,
    /// As `ClosedPending`, but out of the 4-tuple map (its TIME_WAIT record, if any, stands
    /// for it on the wire), kept only for its unread data; `told` once `on_closed` went out
    /// and the slot only waits to be freed.
    Detached { told: bool },
}

impl SlotState {
    /// Taken (not on the free list).
    #[inline]
    pub(super) fn in_use(self) -> bool {
        self != SlotState::Free
    }

    /// The application knows the handle and has not been told of its close.
    #[inline]
    pub(super) fn announced(self) -> bool {
        matches!(self, SlotState::Announced | SlotState::ClosedPending | SlotState::Detached { told: false })
    }

    /// Closed with unread data, the close not told yet.
    #[inline]
    pub(super) fn closed_pending(self) -> bool {
        matches!(self, SlotState::ClosedPending | SlotState::Detached { told: false })
    }

    /// Out of the 4-tuple map.
    #[inline]
    pub(super) fn detached(self) -> bool {
        matches!(self, SlotState::Detached { .. })
    }

    /// The application was told of the close (`on_closed`): it no longer holds the handle.
    #[inline]
    pub(super) fn told_closed(self) -> SlotState {
        match self {
            SlotState::Detached { .. } => SlotState::Detached { told: true },
            SlotState::Free => SlotState::Free,
            _ => SlotState::Unannounced,
        }
    }
}

/// One slot of the slab.
#[derive(Debug)]
pub(crate) struct Slot {
    pub conn: Connection,
    pub generation: u32,
    /// Where the slot is in its life.
    pub state: SlotState,
    /// Where frames for this connection go.
    pub remote_mac: Option<EthernetAddress>,
    /// Opened by `connect` (its `Connected` event is `on_connected`, not `on_accept`).
    pub active: bool,
    /// On the interface's dirty list (bookkeeping of `poll`, not of the slot's life).
    pub dirty: bool,
    /// On the interface's list of connections waiting for a send ring (a `send` found none).
    pub waits_send_ring: bool,
    /// On the interface's list of connections waiting for a receive ring (data found none).
    pub waits_recv_ring: bool,
}

impl Slot {
    /// Whether the slot waits for a ring of the kind (on the interface's list for it).
    pub(super) fn waits_for(&mut self, ring: Ring) -> &mut bool {
        match ring {
            Ring::Send => &mut self.waits_send_ring,
            Ring::Recv => &mut self.waits_recv_ring,
        }
    }
}

/// The slab and the 4-tuple map. The map is a raw `HashTable` so that a batch can hash its
/// 4-tuples once, up front, and look them up later with the hash in hand.
#[derive(Debug)]
pub(crate) struct ConnTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    map: HashTable<(FourTuple, u32)>,
    hasher: DefaultHashBuilder,
    max: usize,
    config: TcpConfig,
    /// The ring memory lent to the slots' connections.
    rings: RingPools,
}

impl Slot {
    fn new(conn: Connection) -> Slot {
        Slot {
            conn,
            generation: 0,
            state: SlotState::Free,
            remote_mac: None,
            active: false,
            dirty: false,
            waits_send_ring: false,
            waits_recv_ring: false,
        }
    }
}

impl ConnTable {
    /// A table for at most `max` connections configured with `config`, lending them rings
    /// from pools of at most `ring_pool_bytes`. The map, the slab's index and the pools' free
    /// lists are allocated now; slots and rings as they are first needed.
    pub(super) fn new(max: usize, config: TcpConfig, ring_pool_bytes: usize) -> ConnTable {
        ConnTable {
            slots: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            map: HashTable::with_capacity(max),
            hasher: DefaultHashBuilder::default(),
            max,
            config,
            rings: RingPools::new(config.send_buffer_len, config.recv_buffer_len, ring_pool_bytes, max),
        }
    }

    /// Creates the first `n` slots and `n` rings of each size now (at most the table's and the
    /// pools' maxima), the rings' pages written once: the first connections meet no allocation
    /// and no page fault. Slots and rings beyond are created when first needed.
    pub(super) fn prefill(&mut self, n: usize) {
        self.rings.prefill(n);
        let n = n.min(self.max);
        while self.slots.len() < n {
            self.slots.push(Slot::new(Connection::new(self.config)));
        }
        // Lowest index first out: the free list pops from its end.
        self.free.clear();
        self.free.extend((0..self.slots.len() as u32).rev().filter(|&i| !self.slots[i as usize].state.in_use()));
    }

    /// The slot of a 4-tuple.
    #[inline]
    pub(super) fn find(&self, tuple: &FourTuple) -> Option<u32> {
        self.find_hashed(self.hash(tuple), tuple)
    }

    /// The map's hash of a 4-tuple, for [`ConnTable::find_hashed`].
    #[inline]
    pub(super) fn hash(&self, tuple: &FourTuple) -> u64 {
        self.hasher.hash_one(tuple)
    }

    /// The slot of a 4-tuple whose [`ConnTable::hash`] is `hash`.
    #[inline]
    pub(super) fn find_hashed(&self, hash: u64, tuple: &FourTuple) -> Option<u32> {
        self.map.find(hash, |(t, _)| t == tuple).map(|&(_, index)| index)
    }

    /// Takes a free slot for `tuple`, which must not be in the table (its connection CLOSED,
    /// ready for `listen` or `connect`), or `None` when the table is full.
    pub(super) fn insert(&mut self, tuple: FourTuple) -> Option<ConnId> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < self.max => {
                self.slots.push(Slot::new(Connection::new(self.config)));
                (self.slots.len() - 1) as u32
            }
            None => return None,
        };
        let slot = &mut self.slots[index as usize];
        debug_assert_eq!(slot.state, SlotState::Free, "slot {index} on the free list but in use");
        slot.state = SlotState::Unannounced;
        slot.remote_mac = None;
        slot.active = false;
        slot.dirty = false;
        slot.waits_send_ring = false;
        slot.waits_recv_ring = false;
        let generation = slot.generation;
        // Callers insert only a 4-tuple they just looked up and did not find (`connect`, a SYN
        // or a cookie ACK that matched nothing), so no second lookup here.
        debug_assert!(self.find(&tuple).is_none(), "{tuple:?} inserted twice");
        let hasher = &self.hasher;
        self.map.insert_unique(hasher.hash_one(tuple), (tuple, index), |(t, _)| hasher.hash_one(t));
        Some(ConnId { index, generation })
    }

    /// Frees the slot of `index` (its connection must be CLOSED or in TIME_WAIT, with nothing
    /// left to send); its handle becomes stale.
    pub(super) fn remove(&mut self, index: u32, tuple: &FourTuple) {
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.state.in_use());
        let detached = slot.state.detached();
        slot.state = SlotState::Free;
        self.rings.give_back(slot.conn.take_rings(true));
        slot.conn.recycle();
        slot.generation = slot.generation.wrapping_add(1);
        if !detached {
            self.unmap(tuple);
        }
        self.free.push(index);
    }

    /// Takes the slot of `index`, closed with unread data, out of the 4-tuple map but keeps
    /// it in use (for that data): segments for its 4-tuple no longer reach it.
    pub(super) fn detach(&mut self, index: u32, tuple: &FourTuple) {
        let slot = &mut self.slots[index as usize];
        if !slot.state.detached() {
            debug_assert_eq!(slot.state, SlotState::ClosedPending, "only a slot holding unread data is detached");
            slot.state = SlotState::Detached { told: !slot.state.closed_pending() };
            // Off the wire: it sends nothing more, and keeps only its receive ring.
            self.rings.give_back(slot.conn.take_rings(false));
            self.unmap(tuple);
        }
    }

    /// Lends the connection of slot `index` a ring of the kind if it has none: false when
    /// none is free.
    #[inline]
    pub(super) fn lend_ring(&mut self, index: u32, ring: Ring) -> bool {
        let conn = &mut self.slots[index as usize].conn;
        let needed = match ring {
            Ring::Send => conn.needs_send_ring(),
            Ring::Recv => conn.needs_recv_ring(),
        };
        if !needed {
            return true;
        }
        let Some(memory) = self.rings.lend(ring) else { return false };
        match ring {
            Ring::Send => conn.attach_send_ring(memory),
            Ring::Recv => conn.attach_recv_ring(memory),
        }
        true
    }

    /// Whether the connection of slot `index` has a send ring or could be lent one now.
    pub(super) fn can_send(&self, index: u32) -> bool {
        !self.slots[index as usize].conn.needs_send_ring() || self.rings.available(Ring::Send) > 0
    }

    /// Takes back the rings the connection of slot `index` has drained.
    #[inline]
    pub(super) fn take_drained_rings(&mut self, index: u32) {
        let rings = self.slots[index as usize].conn.take_drained_rings();
        self.rings.give_back(rings);
    }

    /// Rings of the kind that could be lent now.
    pub(super) fn rings_available(&self, ring: Ring) -> usize {
        self.rings.available(ring)
    }

    /// The ring pools' figures.
    pub(super) fn ring_stats(&self) -> RingStats {
        self.rings.stats()
    }

    fn unmap(&mut self, tuple: &FourTuple) {
        if let Ok(entry) = self.map.find_entry(self.hasher.hash_one(tuple), |(t, _)| t == tuple) {
            entry.remove();
        }
    }

    /// The slot at `index`, writable.
    #[inline]
    pub(super) fn slot_mut(&mut self, index: u32) -> &mut Slot {
        &mut self.slots[index as usize]
    }

    /// The slot at `index` if it exists and is in use, writable.
    #[inline]
    pub(super) fn slot_in_use_mut(&mut self, index: u32) -> Option<&mut Slot> {
        self.slots.get_mut(index as usize).filter(|s| s.state.in_use())
    }

    /// The slot a handle names, if the handle is current.
    #[inline]
    pub(super) fn get(&self, id: ConnId) -> Option<&Slot> {
        self.slots.get(id.index as usize).filter(|s| s.state.in_use() && s.generation == id.generation)
    }

    /// The slot a handle names, writable, if the handle is current.
    #[inline]
    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index as usize).filter(|s| s.state.in_use() && s.generation == id.generation)
    }

    /// Two different slots at once, writable (for splicing one connection into another).
    pub(super) fn get_pair_mut(&mut self, a: ConnId, b: ConnId) -> Option<[&mut Slot; 2]> {
        let [x, y] = self.slots.get_disjoint_mut([a.index as usize, b.index as usize]).ok()?;
        let current = |s: &Slot, id: ConnId| s.state.in_use() && s.generation == id.generation;
        (current(x, a) && current(y, b)).then_some([x, y])
    }

    /// Connections in use.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Slots created so far (the high-water mark).
    pub(super) fn slots_created(&self) -> usize {
        self.slots.len()
    }

    /// The connections in use, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.slots.iter().filter(|s| s.state.in_use()).map(|s| &s.conn)
    }

    /// Every slot created, in use or not (for invariant checks).
    #[cfg(debug_assertions)]
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Free slots on the free list.
    #[cfg(debug_assertions)]
    pub fn free_len(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot holds the control block and no ring memory: what an idle connection costs,
    /// besides its map entry and its timer wheel entries.
    #[test]
    fn a_slot_is_small() {
        let slot = core::mem::size_of::<Slot>();
        eprintln!("size_of::<Slot>() = {slot}, size_of::<Connection>() = {}", core::mem::size_of::<Connection>());
        assert!(slot <= 1024, "a slot of {slot} bytes");
    }
}
