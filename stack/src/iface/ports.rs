//! The local ports of the connections a worker opens.

use std::net::Ipv4Addr;

/// Hands out local ports from a range, round robin, so that a port just freed is the last to
/// be reused: its TIME_WAIT, if any, has had the longest to run out, or to become reusable.
///
/// The caller judges each port: free, reusable (its 4-tuple is in TIME_WAIT but may be taken
/// over), or in use. The first port from the cursor on that is free or reusable is taken; a
/// reusable port is not passed over in search of a free one. Round robin already makes the
/// port at the cursor the least recently used, and reuse is safe when it is offered, so
/// preferring free ports would only cost a scan of the range per connection once it is full of
/// TIME_WAIT (thousands of lookups where one does).
#[derive(Debug, Clone)]
pub(crate) struct PortAllocator {
    lo: u16,
    hi: u16,
    next: u16,
}

impl PortAllocator {
    /// Ports `lo..=hi` (an empty range if `hi < lo`).
    pub fn new(lo: u16, hi: u16) -> PortAllocator {
        let lo = lo.max(1);
        PortAllocator { lo, hi, next: lo }
    }

    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        if self.hi < self.lo {
            0
        } else {
            usize::from(self.hi - self.lo) + 1
        }
    }

    /// The first port, from the cursor on, that `judge` takes (`Some`, with what it says about
    /// the port: free, or how to reuse it), with its verdict; tries each port once.
    pub fn allocate<T>(&mut self, remote: Ipv4Addr, mut judge: impl FnMut(u16) -> Option<T>) -> Option<(u16, T)> {
        let _ = remote;
        for _ in 0..self.len() {
            let port = self.next;
            self.next = if self.next >= self.hi { self.lo } else { self.next + 1 };
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

    #[test]
    fn round_robin_skips_ports_in_use_and_reports_exhaustion() {
        let mut p = PortAllocator::new(100, 102);
        let any = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(p.allocate(any, |_| Some(())), Some((100, ())));
        assert_eq!(p.allocate(any, |port| (port != 101).then_some(())), Some((102, ())));
        assert_eq!(p.allocate(any, |_| Some(())), Some((100, ())));
        assert_eq!(p.allocate(any, |_| None::<()>), None);
        assert_eq!(PortAllocator::new(5, 4).allocate(any, |_| Some(())), None);
        assert_eq!(PortAllocator::new(0, 0).len(), 0, "port 0 is never handed out");
    }

    /// Free or reusable, in round-robin order: a reusable port at the cursor is taken rather
    /// than skipped for a free one further on.
    #[test]
    fn reusable_ports_are_taken_in_turn() {
        #[derive(Debug, PartialEq)]
        enum Verdict {
            Free,
            Reuse,
        }
        let mut p = PortAllocator::new(10, 13);
        let any = Ipv4Addr::new(198, 18, 0, 2);
        // 10 in TIME_WAIT and reusable, 11 in use, 12 free, 13 in TIME_WAIT and too recent.
        let judge = |port: u16| match port {
            10 => Some(Verdict::Reuse),
            12 => Some(Verdict::Free),
            _ => None,
        };
        assert_eq!(p.allocate(any, judge), Some((10, Verdict::Reuse)));
        assert_eq!(p.allocate(any, judge), Some((12, Verdict::Free)));
        assert_eq!(p.allocate(any, judge), Some((10, Verdict::Reuse)), "13 skipped, wrapped to 10");
        let mut tried = Vec::new();
        assert_eq!(
            p.allocate(any, |port| {
                tried.push(port);
                None::<Verdict>
            }),
            None
        );
        assert_eq!(tried, vec![11, 12, 13, 10], "each port once, from the cursor");
    }
}
