//! The neighbour cache: IPv4 next hops to MAC addresses, learned from the ARP replies to our
//! requests (and refreshed by ARP requests for our address), resolved with ARP requests and
//! retries, or set statically.

use core::time::Duration;
use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::time::Instant;
use crate::wire::EthernetAddress;

/// Most neighbours held; on-link peers of one interface are few. A full cache makes room for a
/// new resolution by evicting the learned entry nearest to expiry (never a static one or one
/// being resolved).
const MAX_NEIGHBORS: usize = 4096;
/// Most resolutions in progress at once.
const MAX_PENDING: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: Option<EthernetAddress>,
    /// When a learned entry stops being trusted (ignored for static ones).
    expires: Instant,
    is_static: bool,
    /// ARP requests sent while unresolved.
    requests: u8,
    next_request: Instant,
}

/// What [`NeighborCache::resolve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Resolution started: send an ARP request now.
    Request,
    /// Already under way: wait for its answer (or its failure).
    Waiting,
    /// Cannot start (too many resolutions under way, or a cache of static and pending entries
    /// only): fail what waits for it now rather than let it wait for ever.
    Failed,
}

/// What [`NeighborCache::poll`] asks of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NeighborAction {
    /// Send an ARP request for this address.
    Request(Ipv4Addr),
    /// Resolution gave up: abort what waits for this address.
    Failed(Ipv4Addr),
}

/// The neighbour cache of one interface.
#[derive(Debug)]
pub struct NeighborCache {
    entries: HashMap<Ipv4Addr, Entry>,
    pending: Vec<Ipv4Addr>,
    ttl: Duration,
    retry_interval: Duration,
    retries: u8,
}

impl NeighborCache {
    /// An empty cache: learned entries live `ttl`; resolution sends up to `retries` requests
    /// `retry_interval` apart.
    pub fn new(ttl: Duration, retry_interval: Duration, retries: u8) -> NeighborCache {
        NeighborCache {
            entries: HashMap::with_capacity(MAX_NEIGHBORS),
            pending: Vec::with_capacity(MAX_PENDING),
            ttl,
            retry_interval,
            retries: retries.max(1),
        }
    }

    /// The MAC of `addr`, if known and fresh.
    pub fn lookup(&self, addr: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        let e = self.entries.get(&addr)?;
        if e.is_static || now < e.expires {
            e.mac
        } else {
            None
        }
    }

    /// A permanent entry: never expires, never overwritten by what is learned.
    pub fn add_static(&mut self, addr: Ipv4Addr, mac: EthernetAddress) {
        self.entries.insert(
            addr,
            Entry { mac: Some(mac), expires: Instant::ZERO, is_static: true, requests: 0, next_request: Instant::ZERO },
        );
        self.pending.retain(|&a| a != addr);
    }

    /// Records that `addr` is at `mac` (from an ARP packet or a received frame). Returns true
    /// when this resolved a pending request or changed the entry.
    pub fn learn(&mut self, addr: Ipv4Addr, mac: EthernetAddress, now: Instant) -> bool {
        if !mac.is_unicast() || addr.is_unspecified() || addr.is_broadcast() {
            return false;
        }
        let expires = now + self.ttl;
        if let Some(e) = self.entries.get_mut(&addr) {
            if e.is_static {
                return false;
            }
            let changed = e.mac != Some(mac);
            e.mac = Some(mac);
            e.expires = expires;
            if changed {
                self.pending.retain(|&a| a != addr);
            }
            return changed;
        }
        if self.entries.len() >= MAX_NEIGHBORS && !self.evict_one(now) {
            return false;
        }
        self.entries.insert(addr, Entry { mac: Some(mac), expires, is_static: false, requests: 0, next_request: now });
        true
    }

    /// Starts resolving `addr` unless that is under way.
    pub(crate) fn resolve(&mut self, addr: Ipv4Addr, now: Instant) -> Resolution {
        if self.pending.contains(&addr) {
            return Resolution::Waiting;
        }
        if self.pending.len() >= MAX_PENDING {
            return Resolution::Failed;
        }
        let entry =
            Entry { mac: None, expires: now, is_static: false, requests: 1, next_request: now + self.retry_interval };
        match self.entries.get_mut(&addr) {
            // A static entry is never resolved (`lookup` answers for it).
            Some(e) if e.is_static => return Resolution::Failed,
            // A stale entry keeps its MAC for nothing: it is re-resolved.
            Some(e) => *e = entry,
            None => {
                if self.entries.len() >= MAX_NEIGHBORS && !self.evict_one(now) {
                    return Resolution::Failed;
                }
                self.entries.insert(addr, entry);
            }
        }
        self.pending.push(addr);
        Resolution::Request
    }

    /// Whether `addr` has an entry (resolved, stale or being resolved).
    pub(crate) fn knows(&self, addr: Ipv4Addr) -> bool {
        self.entries.contains_key(&addr)
    }

    /// Makes room in a full cache: the expired entries go, or else the learned entry nearest
    /// to expiry (a scan, only when full). False when everything is static or being resolved.
    fn evict_one(&mut self, now: Instant) -> bool {
        self.evict_expired(now);
        if self.entries.len() < MAX_NEIGHBORS {
            return true;
        }
        let pending = &self.pending;
        let victim = self
            .entries
            .iter()
            .filter(|(addr, e)| !e.is_static && !pending.contains(addr))
            .min_by_key(|(_, e)| e.expires)
            .map(|(&addr, _)| addr);
        victim.is_some_and(|addr| self.entries.remove(&addr).is_some())
    }

    /// Copies the addresses being resolved into `out`; returns how many.
    pub(crate) fn pending(&self, out: &mut [Ipv4Addr]) -> usize {
        let n = self.pending.len().min(out.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        n
    }

    /// Whether a resolution of `addr` is under way.
    pub fn is_pending(&self, addr: Ipv4Addr) -> bool {
        self.pending.contains(&addr)
    }

    /// Retries due requests and gives up on exhausted ones, telling `act` about each.
    pub(crate) fn poll(&mut self, now: Instant, mut act: impl FnMut(NeighborAction)) {
        let mut i = 0;
        while i < self.pending.len() {
            let addr = self.pending[i];
            let Some(e) = self.entries.get_mut(&addr) else {
                self.pending.swap_remove(i);
                continue;
            };
            if e.mac.is_some() && now < e.expires {
                self.pending.swap_remove(i);
                continue;
            }
            if now >= e.next_request {
                if e.requests >= self.retries {
                    self.entries.remove(&addr);
                    self.pending.swap_remove(i);
                    act(NeighborAction::Failed(addr));
                    continue;
                }
                e.requests += 1;
                e.next_request = now + self.retry_interval;
                act(NeighborAction::Request(addr));
            }
            i += 1;
        }
    }

    /// The earliest time [`poll`](Self::poll) has work, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().filter_map(|a| self.entries.get(a)).map(|e| e.next_request).min()
    }

    fn evict_expired(&mut self, now: Instant) {
        let pending = &self.pending;
        self.entries.retain(|addr, e| e.is_static || now < e.expires || pending.contains(addr));
    }

    /// Entries held (resolved or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn cache() -> NeighborCache {
        NeighborCache::new(Duration::from_secs(60), Duration::from_secs(1), 3)
    }

    #[test]
    fn learned_entries_expire_and_static_ones_do_not() {
        let mut c = cache();
        let t0 = Instant::from_millis(1000);
        assert!(c.learn(A, MAC, t0));
        assert_eq!(c.lookup(A, t0 + Duration::from_secs(59)), Some(MAC));
        assert_eq!(c.lookup(A, t0 + Duration::from_secs(61)), None);
        let b = Ipv4Addr::new(198, 18, 0, 3);
        c.add_static(b, MAC);
        assert_eq!(c.lookup(b, t0 + Duration::from_secs(1_000_000)), Some(MAC));
        assert!(!c.learn(b, EthernetAddress([2, 0, 0, 0, 0, 9]), t0), "static entries are not overwritten");
        assert!(!c.learn(A, EthernetAddress::BROADCAST, t0), "a broadcast MAC is never learned");
    }

    #[test]
    fn a_full_cache_evicts_the_entry_nearest_to_expiry() {
        let mut c = cache();
        let t0 = Instant::from_millis(1000);
        let addr = |i: usize| Ipv4Addr::from(0xc612_0000 + i as u32 + 10);
        for i in 0..MAX_NEIGHBORS {
            assert!(c.learn(addr(i), MAC, t0 + Duration::from_millis(i as u64)));
        }
        assert_eq!(c.len(), MAX_NEIGHBORS);
        // Nothing expired: the oldest learned entry makes room, the resolution starts.
        let new = Ipv4Addr::new(198, 19, 0, 1);
        assert_eq!(c.resolve(new, t0 + Duration::from_secs(1)), Resolution::Request);
        assert_eq!(c.len(), MAX_NEIGHBORS);
        assert!(!c.knows(addr(0)), "the entry nearest to expiry went");
        assert!(c.knows(addr(1)));
        // Learning a new neighbour into a full cache also evicts.
        assert!(c.learn(Ipv4Addr::new(198, 19, 0, 2), MAC, t0 + Duration::from_secs(2)));
        assert!(!c.knows(addr(1)));
        assert_eq!(c.len(), MAX_NEIGHBORS);
    }

    #[test]
    fn resolution_retries_then_fails() {
        let mut c = cache();
        let t0 = Instant::from_millis(1000);
        assert_eq!(c.resolve(A, t0), Resolution::Request);
        assert_eq!(c.resolve(A, t0), Resolution::Waiting, "one resolution at a time");
        let mut actions = Vec::new();
        for s in 0..5 {
            c.poll(t0 + Duration::from_millis(1000 * s + 1), |a| actions.push(a));
        }
        assert_eq!(actions, vec![NeighborAction::Request(A), NeighborAction::Request(A), NeighborAction::Failed(A)]);
        assert!(!c.is_pending(A));
        assert_eq!(c.lookup(A, t0), None);
    }

    #[test]
    fn an_answer_ends_the_resolution() {
        let mut c = cache();
        let t0 = Instant::from_millis(1000);
        assert_eq!(c.resolve(A, t0), Resolution::Request);
        assert_eq!(c.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(c.learn(A, MAC, t0 + Duration::from_millis(5)));
        assert!(!c.is_pending(A));
        let mut actions = Vec::new();
        c.poll(t0 + Duration::from_secs(10), |a| actions.push(a));
        assert!(actions.is_empty());
        assert_eq!(c.lookup(A, t0 + Duration::from_secs(10)), Some(MAC));
    }
}
