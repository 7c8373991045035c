//! The local ports of the connections a worker opens.

use crate::tcp::{keyed_hash, Endpoint, IsnGenerator};
use std::net::Ipv4Addr;

/// Label of the port-offset key derived from the ISN secret.
const PORT_KEY_LABEL: u64 = 0x7266_6336_3035_3670; // "rfc6056p"

/// Hands out local ports from a range as RFC 6056 3.3.3 ("Simple Hash-Based Port Selection
/// Algorithm") does: each destination (address and port) starts from its own secret offset
/// into the range, a keyed hash, and a counter shared by all destinations moves on by one per
/// port tried. An off-path attacker cannot tell which port a connection will use, while to
/// one destination the ports still come in round-robin order, so that a port just freed is
/// the last to be reused: its TIME_WAIT, if any, has had the longest to run out, or to become
/// reusable (what `synack load` relies on).
///
/// The caller judges each port: free, reusable (its 4-tuple is in TIME_WAIT but may be taken
/// over), or in use. The first port in that order that is free or reusable is taken; a
/// reusable port is not passed over in search of a free one. Round robin already makes the
/// port at the cursor the least recently used, and reuse is safe when it is offered, so
/// preferring free ports would only cost a scan of the range per connection once it is full of
/// TIME_WAIT (thousands of lookups where one does).
#[derive(Debug, Clone)]
pub(crate) struct PortAllocator {
    lo: u16,
    hi: u16,
    /// RFC 6056's `next_ephemeral`: ports tried so far, all destinations together.
    counter: u32,
    key: [u64; 2],
}

impl PortAllocator {
    /// Ports `lo..=hi` (an empty range if `hi < lo`), offsets keyed from `isn`'s secret.
    pub(super) fn new(lo: u16, hi: u16, isn: &IsnGenerator) -> PortAllocator {
        let lo = lo.max(1);
        PortAllocator { lo, hi, counter: 0, key: isn.derived_key(PORT_KEY_LABEL) }
    }

    /// How many ports the range holds.
    pub(super) fn len(&self) -> usize {
        if self.hi < self.lo {
            0
        } else {
            usize::from(self.hi - self.lo) + 1
        }
    }

    /// The first port, in this destination's order from the counter on, that `judge` takes
    /// (`Some`, with what it says about the port: free, or how to reuse it), with its
    /// verdict; tries each port once.
    pub(super) fn allocate<T>(
        &mut self,
        local: Ipv4Addr,
        remote: Endpoint,
        mut judge: impl FnMut(u16) -> Option<T>,
    ) -> Option<(u16, T)> {
        let n = self.len() as u32;
        if n == 0 {
            return None;
        }
        let addrs = (u64::from(u32::from(local)) << 32) | u64::from(u32::from(remote.addr));
        let offset = (keyed_hash(self.key, addrs, u64::from(remote.port)) % u64::from(n)) as u32;
        for _ in 0..n {
            // Both terms are below 2^32; the sum is taken in u64 so it cannot overflow.
            let index = (u64::from(offset) + u64::from(self.counter % n)) % u64::from(n);
            self.counter = self.counter.wrapping_add(1);
            let port = self.lo + index as u16;
            if let Some(verdict) = judge(port) {
                return Some((port, verdict));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn dst(port: u16) -> Endpoint {
        Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), port)
    }

    fn alloc(lo: u16, hi: u16) -> PortAllocator {
        PortAllocator::new(lo, hi, &IsnGenerator::with_key([1, 2]))
    }

    #[test]
    fn ports_to_one_destination_go_round_robin_and_exhaustion_is_reported() {
        let mut p = alloc(100, 102);
        let (first, ()) = p.allocate(LOCAL, dst(80), |_| Some(())).unwrap();
        let next = |port: u16| if port == 102 { 100 } else { port + 1 };
        let (second, ()) = p.allocate(LOCAL, dst(80), |_| Some(())).unwrap();
        assert_eq!(second, next(first));
        // A port in use is skipped.
        let (third, ()) = p.allocate(LOCAL, dst(80), |port| (port != next(second)).then_some(())).unwrap();
        assert_eq!(third, next(next(second)));
        assert_eq!(p.allocate(LOCAL, dst(80), |_| None::<()>), None);
        assert_eq!(alloc(5, 4).allocate(LOCAL, dst(80), |_| Some(())), None);
        assert_eq!(alloc(0, 0).len(), 0, "port 0 is never handed out");
    }

    /// RFC 6056: the first port towards each destination comes from a keyed hash, not from a
    /// cursor an observer can follow, and another key gives other ports.
    #[test]
    fn destinations_start_from_secret_offsets() {
        let firsts = |key: [u64; 2]| -> Vec<u16> {
            let mut p = PortAllocator::new(10_000, 10_999, &IsnGenerator::with_key(key));
            (1..=64).map(|d| p.allocate(LOCAL, dst(d), |_| Some(())).unwrap().0).collect()
        };
        let a = firsts([1, 2]);
        let consecutive = a.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(consecutive < 8, "ports to successive destinations look round robin: {a:?}");
        assert!(a.iter().all(|p| (10_000..=10_999).contains(p)));
        assert_ne!(a, firsts([3, 4]), "another secret, other ports");
        assert_eq!(a, firsts([1, 2]), "a function of the secret");
    }

    /// Free or reusable, in order: a reusable port at the cursor is taken rather than skipped
    /// for a free one further on; each port is tried once.
    #[test]
    fn reusable_ports_are_taken_in_turn() {
        #[derive(Debug, PartialEq)]
        enum Verdict {
            Free,
            Reuse,
        }
        let mut p = alloc(10, 13);
        let mut order = Vec::new();
        assert_eq!(
            p.allocate(LOCAL, dst(80), |port| {
                order.push(port);
                None::<Verdict>
            }),
            None
        );
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![10, 11, 12, 13], "each port once");
        // order[0] reusable, order[1] in use, order[2] free, order[3] too recent.
        let judge = |port: u16| match order.iter().position(|&p| p == port) {
            Some(0) => Some(Verdict::Reuse),
            Some(2) => Some(Verdict::Free),
            _ => None,
        };
        // The counter is at a multiple of 4 again: the same order from its start.
        assert_eq!(p.allocate(LOCAL, dst(80), judge), Some((order[0], Verdict::Reuse)));
        assert_eq!(p.allocate(LOCAL, dst(80), judge), Some((order[2], Verdict::Free)));
        assert_eq!(p.allocate(LOCAL, dst(80), judge), Some((order[0], Verdict::Reuse)), "wrapped");
    }
}
