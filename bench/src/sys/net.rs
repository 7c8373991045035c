//! The test network: a server namespace and a client namespace joined by one veth pair,
//! addressed from 198.18.N.0/24, deleted by the test kit's guards (see [`cleanup`](super::cleanup)).
//!
//! Rules kept here (docs/testing.md): hosts are fresh namespaces; addresses
//! come from 198.18.0.0/15 only; names are unique per run (`sxsb<pid>s`, `sxsb<pid>c`);
//! every `ip` command spells out `name X` / `dev X`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{bail, Result};
use synack_testkit::netns::{VethEnd, VethPair};

pub use synack_testkit::netns::{format_mac, pin_current_thread, run_command, Netns};

/// Prefix of every namespace this benchmark creates.
pub const NAME_PREFIX: &str = "sxsb";

/// Deletes namespaces `sxsb<pid>...` whose process is gone (a run killed with SIGKILL), with
/// whatever still runs inside them.
pub fn remove_stale_namespaces() {
    for name in synack_testkit::netns::remove_stale(NAME_PREFIX) {
        eprintln!("sysbench: removed namespace {name} left by an earlier run");
    }
}

/// One end of the link.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace.
    pub netns: Netns,
    /// Its veth interface.
    pub ifname: String,
    /// The interface's MAC (locally administered).
    pub mac: [u8; 6],
    /// Its IPv4 address (/24).
    pub ip: Ipv4Addr,
}

/// The server and client namespaces and the veth pair between them.
#[derive(Debug)]
pub struct TestLink {
    // Dropped first (fields drop in declaration order): the pair, then the namespaces.
    _veth: VethPair,
    /// Runs the servers (synack or the kernel's); 198.18.N.1.
    pub server: Host,
    /// Runs the load generators; 198.18.N.2.
    pub client: Host,
    /// The host number of the next address [`fresh_load_address`](Self::fresh_load_address)
    /// hands out.
    next_load_host: AtomicU8,
}

/// Host numbers of the dedicated addresses of `synack load` in the run's /24.
pub const LOAD_HOSTS: std::ops::RangeInclusive<u8> = 10..=250;

/// Client ports of one dedicated `synack load` address (1024-65535).
pub const PORTS_PER_LOAD_ADDRESS: u64 = 64_512;

/// The /24 this run uses, 198.18.`subnet`.0/24: inside 198.18.0.0/15 by construction.
pub fn subnet_address(subnet: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, subnet, host)
}

impl TestLink {
    /// Creates both namespaces and the veth pair, addresses both ends, and turns TX checksum
    /// offload off on both ends (a Linux sender over veth otherwise leaves partial checksums,
    /// which synack rejects; docs/machine-notes.md).
    pub fn create(subnet: u8) -> Result<TestLink> {
        let pid = std::process::id();
        let base = format!("{NAME_PREFIX}{pid}");
        let (server_name, client_name) = (format!("{base}s"), format!("{base}c"));
        let server_ns = Netns::create(&server_name)?;
        let client_ns = Netns::create(&client_name)?;
        let p = pid.to_be_bytes();
        let mac = |side: u8| [0x02, 0x5b, p[1], p[2], p[3], side];
        let (server_mac, client_mac) = (mac(1), mac(2));
        let veth = VethPair::create(
            VethEnd::new(&server_ns, &server_name).mac(server_mac),
            VethEnd::new(&client_ns, &client_name).mac(client_mac),
        )?;
        let server =
            Host { netns: server_ns, ifname: server_name.clone(), mac: server_mac, ip: subnet_address(subnet, 1) };
        let client =
            Host { netns: client_ns, ifname: client_name.clone(), mac: client_mac, ip: subnet_address(subnet, 2) };
        for host in [&server, &client] {
            // No IPv6 link-local address: the link carries only what the benchmark sends.
            host.netns.no_ipv6_addrgen(&host.ifname)?;
            host.netns.add_address(&host.ifname, host.ip, 24)?;
            host.netns.link_up(&host.ifname)?;
        }
        // Both ends: synack serves on the server's end, and `synack load` on the client's end
        // talks to nginx.
        for host in [&server, &client] {
            host.netns.tx_checksum_off(&host.ifname)?;
        }
        // Both ends know each other from the start: no ARP exchange inside a measurement.
        for (host, peer) in [(&server, &client), (&client, &server)] {
            host.netns.neigh_permanent(&host.ifname, peer.ip, &peer.mac)?;
        }
        Ok(TestLink { _veth: veth, server, client, next_load_host: AtomicU8::new(*LOAD_HOSTS.start()) })
    }

    /// A client address for one `synack load` run that no earlier run used: 198.18.N.h,
    /// h from 10 up, not assigned to the kernel (so synack has every port of it), with a
    /// permanent neighbour entry on the server side (no ARP inside a measurement).
    ///
    /// Fresh, because a server keeps the TIME_WAIT records of a finished run for 2MSL, and a
    /// new `synack load` process draws a new timestamp offset: on the same 4-tuples about half
    /// of its SYNs would carry older timestamps than the records, which RFC 6191 refuses (a
    /// synack server then holds the 4-tuple for the rest of its 2MSL, since RFC 1337 makes it
    /// ignore the client's RST; a Linux server drops its record on that RST, after which the
    /// client's retransmitted SYN gets through a second later). New 4-tuples meet no record.
    pub fn fresh_load_address(&self) -> Result<Ipv4Addr> {
        let host = self.next_load_host.fetch_add(1, Ordering::Relaxed);
        if !LOAD_HOSTS.contains(&host) {
            self.next_load_host.store(*LOAD_HOSTS.end() + 1, Ordering::Relaxed);
            bail!("no fresh client address left in {}/24 (the run used {} of them)", self.client.ip, LOAD_HOSTS.len());
        }
        let subnet = self.server.ip.octets()[2];
        let ip = subnet_address(subnet, host);
        self.server.netns.neigh_permanent(&self.server.ifname, ip, &self.client.mac)?;
        Ok(ip)
    }

    /// Whether an XDP program is attached to the server's interface (`ip link` says `xdp`).
    pub fn server_has_xdp(&self) -> Result<bool> {
        let text = self.server.netns.ip(&["link", "show", "dev", &self.server.ifname])?;
        Ok(text.contains(" xdp") || text.contains("prog/xdp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_the_benchmark_range() {
        for subnet in [0u8, 7, 255] {
            for host in [1u8, 2] {
                let a = subnet_address(subnet, host).octets();
                assert_eq!((a[0], a[1] & 0xfe), (198, 18));
            }
        }
    }

    #[test]
    fn names_fit_interface_names() {
        let name = format!("{NAME_PREFIX}{}s", u32::MAX);
        assert!(name.len() <= 15, "{name}");
    }
}
