//! The local ports of the connections a worker opens.

use std::net::Ipv4Addr;

/// Hands out local ports from a range, round robin, so that a port just freed is the last to
/// be reused (its TIME_WAIT, if any, has the longest to run out).
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

    /// The first port, from the cursor on, that `usable` accepts; tries each port once.
    pub fn allocate(&mut self, remote: Ipv4Addr, mut usable: impl FnMut(u16) -> bool) -> Option<u16> {
        let _ = remote;
        for _ in 0..self.len() {
            let port = self.next;
            self.next = if self.next >= self.hi { self.lo } else { self.next + 1 };
            if usable(port) {
                return Some(port);
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
        assert_eq!(p.allocate(any, |_| true), Some(100));
        assert_eq!(p.allocate(any, |port| port != 101), Some(102));
        assert_eq!(p.allocate(any, |_| true), Some(100));
        assert_eq!(p.allocate(any, |_| false), None);
        assert_eq!(PortAllocator::new(5, 4).allocate(any, |_| true), None);
    }
}
