//! The program's per-CPU counters, summed over CPUs: one per decision it takes.

use std::fmt;

use crate::skel::types::steer_counter as c;

/// Declares [`Counter`] and [`Counters`] from one list, each entry tied to its
/// value in the C `enum steer_counter` (through the skeleton's BTF types).
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident, $field:ident = $c:ident;)*) => {
        /// One of the program's counters; the value is its index in the
        /// `counters` map (C `enum steer_counter`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant = c::$c.0,)*
        }

        impl Counter {
            /// Every counter, in map order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The counter's name, as the field of [`Counters`] has it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => stringify!($field),)*
                }
            }
        }

        /// Every counter of the program, summed over CPUs. Every frame the
        /// program sees increments exactly one of them.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl Counters {
            /// The value of `counter`.
            pub fn get(&self, counter: Counter) -> u64 {
                match counter {
                    $(Counter::$variant => self.$field,)*
                }
            }

            fn slot(&mut self, counter: Counter) -> &mut u64 {
                match counter {
                    $(Counter::$variant => &mut self.$field,)*
                }
            }
        }
    };
}

counters! {
    /// TCP frames redirected to an AF_XDP socket (to synack's ports, or to
    /// any port of a dedicated address).
    Redirected, redirected = CTR_REDIRECTED;
    /// ARP frames whose target is a dedicated address, redirected.
    ArpRedirected, arp_redirected = CTR_ARP_REDIRECTED;
    /// ICMP echo requests to a dedicated address, redirected.
    IcmpRedirected, icmp_redirected = CTR_ICMP_REDIRECTED;
    /// Frames for synack that found no socket registered for their queue and
    /// went to the kernel instead: a configuration problem when it grows.
    RedirectFailed, redirect_failed = CTR_REDIRECT_FAILED;
    /// Frames for synack dropped by the test knob (`drop_permille`).
    DroppedTestKnob, dropped_test_knob = CTR_DROPPED_TEST_KNOB;
    /// Passed: neither IPv4 nor ARP (IPv6, ...).
    PassedNotIpv4, passed_not_ipv4 = CTR_PASSED_NOT_IPV4;
    /// Passed: ARP that is not Ethernet/IPv4.
    PassedArp, passed_arp = CTR_PASSED_ARP;
    /// Passed: IPv4 header with a version other than 4 or an IHL below 5.
    PassedMalformed, passed_malformed = CTR_PASSED_MALFORMED;
    /// Passed: frame shorter than the headers it announces.
    PassedTruncated, passed_truncated = CTR_PASSED_TRUNCATED;
    /// Passed: destination address not owned by synack.
    PassedNotOwned, passed_not_owned = CTR_PASSED_NOT_OWNED;
    /// Passed: IPv4 fragment not of a flow synack owns (another protocol, or a
    /// later fragment of a shared address, which carries no ports).
    PassedFragment, passed_fragment = CTR_PASSED_FRAGMENT;
    /// Passed: owned address, but not TCP (nor an ICMP echo request to a
    /// dedicated address).
    PassedNotTcp, passed_not_tcp = CTR_PASSED_NOT_TCP;
    /// Passed: owned address and TCP, but neither a listening port nor in
    /// the local port range.
    PassedPortNotOurs, passed_port_not_ours = CTR_PASSED_PORT_NOT_OURS;
    /// Passed: Ethernet/IPv4 ARP whose target is a shared address: the
    /// kernel answers it (its sender is still recorded as a neighbour).
    PassedArpShared, passed_arp_shared = CTR_PASSED_ARP_SHARED;
    /// Dropped: a TCP fragment of a flow synack owns (any to a dedicated
    /// address; the first, with the ports, to synack's ports of a shared one):
    /// synack does not reassemble, and the kernel would answer it with a RST.
    DroppedFragment, dropped_fragment = CTR_DROPPED_FRAGMENT;
    /// ICMP fragmentation-needed quoting a TCP segment synack sent (from the
    /// owned address and, for a shared one, from synack's port), redirected.
    IcmpFragNeededRedirected, icmp_frag_needed_redirected = CTR_ICMP_FRAG_NEEDED_REDIRECTED;
    /// Passed: VLAN-tagged (802.1Q, 802.1ad or QinQ 0x9100 in the frame, or a
    /// tag the driver stripped into metadata, where the program can ask):
    /// synack serves untagged frames only.
    PassedVlan, passed_vlan = CTR_PASSED_VLAN;
}

// The list above must cover the C enum exactly; its entries are tied to the C
// values one by one, so equal lengths leave no room for a gap.
const _: () = assert!(Counter::ALL.len() == c::CTR_MAX.0 as usize);

impl Counters {
    /// Adds `value` to `counter` (used when summing CPUs).
    pub(crate) fn add(&mut self, counter: Counter, value: u64) {
        let slot = self.slot(counter);
        *slot = slot.wrapping_add(value);
    }

    /// Counts since `earlier`, counter by counter.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut delta = Counters::default();
        for &counter in Counter::ALL {
            *delta.slot(counter) = self.get(counter).wrapping_sub(earlier.get(counter));
        }
        delta
    }

    /// Sum of all counters: the number of frames the program has seen.
    pub fn total(&self) -> u64 {
        Counter::ALL.iter().fold(0u64, |sum, &counter| sum.wrapping_add(self.get(counter)))
    }

    /// Frames sent to synack's sockets (TCP, ARP and ICMP).
    pub fn steered(&self) -> u64 {
        self.redirected + self.arp_redirected + self.icmp_redirected + self.icmp_frag_needed_redirected
    }

    /// The counters that are not zero, in map order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&counter| (counter, self.get(counter))).filter(|&(_, value)| value != 0)
    }
}

/// One line, `name=value` for every counter.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &counter) in Counter::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", counter.name(), self.get(counter))?;
        }
        Ok(())
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_indexed_like_the_map() {
        for (index, &counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter as usize, index, "{counter}");
        }
    }

    #[test]
    fn since_total_and_display() {
        let mut before = Counters::default();
        before.add(Counter::Redirected, 3);
        let mut after = before;
        after.add(Counter::Redirected, 2);
        after.add(Counter::PassedNotOwned, 1);
        let delta = after.since(&before);
        assert_eq!(delta.redirected, 2);
        assert_eq!(delta.passed_not_owned, 1);
        assert_eq!(delta.total(), 3);
        assert_eq!(delta.nonzero().collect::<Vec<_>>(), vec![(Counter::Redirected, 2), (Counter::PassedNotOwned, 1)]);
        let line = delta.to_string();
        assert!(line.starts_with("redirected=2 arp_redirected=0"), "{line}");
        assert!(
            line.ends_with("passed_arp_shared=0 dropped_fragment=0 icmp_frag_needed_redirected=0 passed_vlan=0"),
            "{line}"
        );
    }
}
