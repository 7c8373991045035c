//! Throwaway network namespaces joined by a veth pair, for privileged tests, deleted by guards
//! even when the test panics.
//!
//! Rules kept here (DESIGN.md, "Test network rules"): every host is a fresh network namespace;
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

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);
const NAME_PREFIX: &str = "sxa";

/// A name unique to this process and call: `sxa<pid>-<n>`, at most 14 bytes, so that a
/// one-letter suffix still fits an interface name (15 bytes).
pub fn unique_name() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("{NAME_PREFIX}{}-{n}", std::process::id())
}

/// Runs `ip args...`; an error carries the command and its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> io::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program} {}: {e}", args.join(" "))))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Deletes namespaces named `sxa<pid>-...` whose process is gone (a killed earlier run).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// A network namespace, deleted (with every interface in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add name`).
    pub fn create(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let netns = Netns { name: name.to_owned() };
        netns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args...`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `ip netns exec <name> program args...`, for tools without a namespace option
    /// (ethtool, nft, sysctl).
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Moves the calling thread into the namespace. Only for a thread spawned for the purpose
    /// (a test's own thread may be reused by the harness): prefer [`run`](Self::run).
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let file = File::open(format!("/var/run/netns/{}", self.name))?;
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
        Ok(())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result; a panic in `f`
    /// is resumed on the caller's thread.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                self.enter_current_thread().unwrap_or_else(|e| panic!("cannot enter netns {}: {e}", self.name));
                f()
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("testnet: cannot delete netns {}: {e}", self.name);
        }
    }
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
    /// segments with partial checksums over veth (DESIGN.md).
    pub tx_checksum_offload: bool,
}

impl Default for TestNetConfig {
    fn default() -> Self {
        TestNetConfig { queues: 1, tx_checksum_offload: false }
    }
}

/// Deletes the veth pair (both ends go together) when dropped.
#[derive(Debug)]
struct VethGuard {
    netns: String,
    ifname: String,
}

impl Drop for VethGuard {
    fn drop(&mut self) {
        // Deleting the namespaces would take the pair with them; deleting it first keeps
        // the order of teardown obvious and works even if a namespace delete fails.
        let _ = ip(&["-n", &self.netns, "link", "del", "dev", &self.ifname]);
    }
}

/// Two namespaces, `left` and `right`, joined by a veth pair with a /30 from 198.18.0.0/15.
/// IPv6 address generation is off on both ends so that the link carries only what a test
/// sends. Everything is deleted on drop.
#[derive(Debug)]
pub struct TestNet {
    // Dropped first: fields drop in declaration order.
    _veth: VethGuard,
    /// The first host (the one synack usually runs in).
    pub left: Host,
    /// The peer host.
    pub right: Host,
}

impl TestNet {
    /// Creates the namespaces and the link, addresses and brings up both ends.
    pub fn new(config: TestNetConfig) -> io::Result<TestNet> {
        static CLEAN_ONCE: Once = Once::new();
        CLEAN_ONCE.call_once(remove_stale_namespaces);

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
        let queues = config.queues.to_string();

        ip(&[
            "link",
            "add",
            "name",
            &left_name,
            "address",
            &format_mac(&left_mac),
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "netns",
            &left_name,
            "type",
            "veth",
            "peer",
            "name",
            &right_name,
            "address",
            &format_mac(&right_mac),
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "netns",
            &right_name,
        ])?;
        let veth = VethGuard { netns: left_name.clone(), ifname: left_name.clone() };
        for (netns, ifname, addr) in [(&left_ns, &left_name, left_ip), (&right_ns, &right_name, right_ip)] {
            netns.ip(&["link", "set", "dev", ifname, "addrgenmode", "none"])?;
            netns.ip(&["addr", "add", &format!("{addr}/30"), "dev", ifname])?;
            netns.ip(&["link", "set", "dev", ifname, "up"])?;
            if !config.tx_checksum_offload {
                netns.exec("ethtool", &["-K", ifname, "tx", "off"])?;
            }
        }
        Ok(TestNet {
            _veth: veth,
            left: Host { netns: left_ns, ifname: left_name, mac: left_mac, ipv4: left_ip, prefix_len: 30 },
            right: Host { netns: right_ns, ifname: right_name, mac: right_mac, ipv4: right_ip, prefix_len: 30 },
        })
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
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
