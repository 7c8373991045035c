//! The connection table of one worker: a slab of connections and a map from 4-tuple to slot.
//!
//! Slots are created on demand up to the configured maximum and never freed: a connection
//! that ends leaves its slot, with its rings, on a free list for the next one. So the table
//! allocates while it grows to its high-water mark and never after, and a handle
//! ([`ConnId`]) carries the slot's generation so that a stale one is refused.

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::ConnId;
use crate::tcp::{Connection, FourTuple, TcpConfig};
use crate::wire::EthernetAddress;

/// One slot of the slab.
#[derive(Debug)]
pub(crate) struct Slot {
    pub conn: Connection,
    pub generation: u32,
    pub in_use: bool,
    /// Where frames for this connection go.
    pub remote_mac: Option<EthernetAddress>,
    /// Opened by `connect` (its `Connected` event is `on_connected`, not `on_accept`).
    pub active: bool,
    /// The application knows the handle (accepted, or opened by it).
    pub announced: bool,
    /// Counted in the SYN backlog (a passive connection still in SYN-RECEIVED).
    pub half_open: bool,
    /// On the interface's dirty list.
    pub dirty: bool,
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
}

impl Slot {
    fn new(conn: Connection) -> Slot {
        Slot {
            conn,
            generation: 0,
            in_use: false,
            remote_mac: None,
            active: false,
            announced: false,
            half_open: false,
            dirty: false,
        }
    }
}

impl ConnTable {
    /// A table for at most `max` connections configured with `config`. The map and the slab's
    /// index are allocated now; each slot's rings when the slot is first used.
    pub fn new(max: usize, config: TcpConfig) -> ConnTable {
        ConnTable {
            slots: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            map: HashTable::with_capacity(max),
            hasher: DefaultHashBuilder::default(),
            max,
            config,
        }
    }

    /// Creates the first `n` slots now (at most the table's maximum), their rings allocated
    /// and written once: a connection that takes one of them later meets no allocation and no
    /// page fault. Slots beyond are created when first needed.
    pub fn prefill(&mut self, n: usize) {
        let n = n.min(self.max);
        while self.slots.len() < n {
            let mut conn = Connection::new(self.config);
            conn.prefault();
            self.slots.push(Slot::new(conn));
        }
        // Lowest index first out: the free list pops from its end.
        self.free.clear();
        self.free.extend((0..self.slots.len() as u32).rev().filter(|&i| !self.slots[i as usize].in_use));
    }

    /// The slot of a 4-tuple.
    #[inline]
    pub fn find(&self, tuple: &FourTuple) -> Option<u32> {
        self.find_hashed(self.hash(tuple), tuple)
    }

    /// The map's hash of a 4-tuple, for [`ConnTable::find_hashed`].
    #[inline]
    pub fn hash(&self, tuple: &FourTuple) -> u64 {
        self.hasher.hash_one(tuple)
    }

    /// The slot of a 4-tuple whose [`ConnTable::hash`] is `hash`.
    #[inline]
    pub fn find_hashed(&self, hash: u64, tuple: &FourTuple) -> Option<u32> {
        self.map.find(hash, |(t, _)| t == tuple).map(|&(_, index)| index)
    }

    /// Takes a free slot for `tuple`, which must not be in the table (its connection CLOSED,
    /// ready for `listen` or `connect`), or `None` when the table is full.
    pub fn insert(&mut self, tuple: FourTuple) -> Option<ConnId> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < self.max => {
                self.slots.push(Slot::new(Connection::new(self.config)));
                (self.slots.len() - 1) as u32
            }
            None => return None,
        };
        let slot = &mut self.slots[index as usize];
        slot.in_use = true;
        slot.remote_mac = None;
        slot.active = false;
        slot.announced = false;
        slot.half_open = false;
        slot.dirty = false;
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
    pub fn remove(&mut self, index: u32, tuple: &FourTuple) {
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.in_use);
        slot.in_use = false;
        slot.conn.recycle();
        slot.generation = slot.generation.wrapping_add(1);
        if let Ok(entry) = self.map.find_entry(self.hasher.hash_one(tuple), |(t, _)| t == tuple) {
            entry.remove();
        }
        self.free.push(index);
    }

    /// The slot at `index`, writable.
    #[inline]
    pub fn slot_mut(&mut self, index: u32) -> &mut Slot {
        &mut self.slots[index as usize]
    }

    /// The slot at `index` if it exists and is in use, writable.
    #[inline]
    pub fn slot_in_use_mut(&mut self, index: u32) -> Option<&mut Slot> {
        self.slots.get_mut(index as usize).filter(|s| s.in_use)
    }

    /// The slot a handle names, if the handle is current.
    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Slot> {
        self.slots.get(id.index as usize).filter(|s| s.in_use && s.generation == id.generation)
    }

    /// The slot a handle names, writable, if the handle is current.
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index as usize).filter(|s| s.in_use && s.generation == id.generation)
    }

    /// Two different slots at once, writable (for splicing one connection into another).
    pub fn get_pair_mut(&mut self, a: ConnId, b: ConnId) -> Option<[&mut Slot; 2]> {
        let [x, y] = self.slots.get_disjoint_mut([a.index as usize, b.index as usize]).ok()?;
        let current = |s: &Slot, id: ConnId| s.in_use && s.generation == id.generation;
        (current(x, a) && current(y, b)).then_some([x, y])
    }

    /// Connections in use.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Slots created so far (the high-water mark).
    pub fn slots_created(&self) -> usize {
        self.slots.len()
    }
}
