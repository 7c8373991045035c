//! Throwaway network namespaces joined by a veth pair, for privileged tests, deleted by guards
//! even when the test panics.
//!
//! Rules kept here (docs/testing.md): every host is a fresh network namespace;
//! addresses come from 198.18.0.0/15 only; names are unique per run (`sxa<pid>-<n><side>`);
//! every `ip` command spells out `name X` / `dev X`. Namespaces left behind by a run that was
//! killed are removed by the next run (their process id no longer exists).
//!
//! ```no_run
//! use synack_tests::testnet::{TestNet, TestNetConfig};
//! if !synack_tests::require_root("network namespaces") {
//!     return;
//! }
//! let net = TestNet::new(TestNetConfig::default()).unwrap();
//! // Work inside `left` on a thread of its own:
//! let info = net.left.run(|| synack::xsk::netlink::interface_info(&net.left.ifname));
//! assert_eq!(info.unwrap().mac, Some(net.left.mac));
//! ```

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

pub use synack_testkit::netns::{format_mac, Netns};
use synack_testkit::netns::{VethEnd, VethPair};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);
const NAME_PREFIX: &str = "sxa";

/// A name unique to this process and call: `sxa<pid>-<n>`, at most 14 bytes, so that a
/// one-letter suffix still fits an interface name (15 bytes).
pub fn unique_name() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("{NAME_PREFIX}{}-{n}", std::process::id())
}

/// One end of the test link: a namespace with one veth interface in it.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace.
    pub netns: Netns,
    /// The veth interface in it.
    pub ifname: String,
    /// The interface's MAC (locally administered, unique to the run).
    pub mac: [u8; 6],
    /// The interface's IPv4 address, in 198.18.0.0/15.
    pub ipv4: Ipv4Addr,
    /// The prefix length of `ipv4` (30).
    pub prefix_len: u8,
}

impl Host {
    /// Runs `f` on a new thread inside this host's namespace; see [`Netns::run`].
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.netns.run(f)
    }
}

/// Shape of a [`TestNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestNetConfig {
    /// RX and TX queues of each veth end.
    pub queues: u32,
    /// Leave TX checksum offload on. Off by default: with it on, a Linux peer sends TCP
    /// segments with partial checksums over veth (docs/machine-notes.md).
    pub tx_checksum_offload: bool,
}

impl Default for TestNetConfig {
    fn default() -> Self {
        TestNetConfig { queues: 1, tx_checksum_offload: false }
    }
}

/// Two namespaces, `left` and `right`, joined by a veth pair with a /30 from 198.18.0.0/15.
/// IPv6 address generation is off on both ends so that the link carries only what a test
/// sends. Everything is deleted on drop.
#[derive(Debug)]
pub struct TestNet {
    // Dropped first: fields drop in declaration order.
    _veth: VethPair,
    /// The first host (the one synack usually runs in).
    pub left: Host,
    /// The peer host.
    pub right: Host,
}

impl TestNet {
    /// Creates the namespaces and the link, addresses and brings up both ends.
    pub fn new(config: TestNetConfig) -> io::Result<TestNet> {
        static CLEAN_ONCE: Once = Once::new();
        CLEAN_ONCE.call_once(|| {
            synack_testkit::netns::remove_stale(NAME_PREFIX);
        });

        let base = unique_name();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (left_name, right_name) = (format!("{base}a"), format!("{base}b"));
        let left_ns = Netns::create(&left_name)?;
        let right_ns = Netns::create(&right_name)?;

        // A /30 inside 198.18.0.0/15 (32768 of them), chosen from pid and counter.
        let subnet = (std::process::id().wrapping_mul(64).wrapping_add(id)) % (1 << 15);
        let base_addr = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + subnet * 4;
        let (left_ip, right_ip) = (Ipv4Addr::from(base_addr + 1), Ipv4Addr::from(base_addr + 2));
        let pid = std::process::id().to_be_bytes();
        let mac = |side: u8| [0x02, pid[1], pid[2], pid[3], id as u8, side];
        let (left_mac, right_mac) = (mac(0x0a), mac(0x0b));

        let veth = VethPair::create(
            VethEnd::new(&left_ns, &left_name).mac(left_mac).queues(config.queues),
            VethEnd::new(&right_ns, &right_name).mac(right_mac).queues(config.queues),
        )?;
        for (netns, ifname, addr) in [(&left_ns, &left_name, left_ip), (&right_ns, &right_name, right_ip)] {
            netns.no_ipv6_addrgen(ifname)?;
            netns.add_address(ifname, addr, 30)?;
            netns.link_up(ifname)?;
            if !config.tx_checksum_offload {
                netns.tx_checksum_off(ifname)?;
            }
        }
        Ok(TestNet {
            _veth: veth,
            left: Host { netns: left_ns, ifname: left_name, mac: left_mac, ipv4: left_ip, prefix_len: 30 },
            right: Host { netns: right_ns, ifname: right_name, mac: right_mac, ipv4: right_ip, prefix_len: 30 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::require_root;
    use synack::xsk::netlink;

    #[test]
    fn unique_names_fit_interface_names() {
        let a = unique_name();
        let b = unique_name();
        assert_ne!(a, b);
        assert!(a.len() < 15, "{a}");
        assert!(a.starts_with("sxa"));
    }

    #[test]
    fn mac_format() {
        assert_eq!(format_mac(&[2, 0, 0xab, 1, 2, 3]), "02:00:ab:01:02:03");
    }

    #[test]
    fn testnet_lives_and_dies() {
        if !require_root("network namespaces") {
            return;
        }
        let net = TestNet::new(TestNetConfig::default()).unwrap();
        let left_ns = net.left.netns.name().to_owned();
        assert!(net.left.ipv4.octets()[0] == 198 && (net.left.ipv4.octets()[1] & 0xfe) == 18);
        let info = net.left.run(|| netlink::interface_info(&net.left.ifname).unwrap());
        assert_eq!(info.mac, Some(net.left.mac));
        assert_eq!(info.rx_queues, Some(1));
        // The interface is not visible from this (root) namespace.
        assert!(netlink::interface_info(&net.right.ifname).is_err());
        drop(net);
        assert!(!std::path::Path::new(&format!("/var/run/netns/{left_ns}")).exists());
    }

    #[test]
    fn guard_cleans_up_after_a_panic() {
        if !require_root("network namespaces") {
            return;
        }
        let mut names = None;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let net = TestNet::new(TestNetConfig::default()).unwrap();
            names = Some((net.left.netns.name().to_owned(), net.right.netns.name().to_owned()));
            net.left.run(|| panic!("deliberate"));
        }));
        assert!(result.is_err());
        let (left, right) = names.unwrap();
        for name in [left, right] {
            assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
        }
    }
}
