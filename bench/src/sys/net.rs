//! The test network: a server namespace and a client namespace joined by one veth pair,
//! addressed from 198.18.N.0/24, deleted by guards (see [`cleanup`](super::cleanup)).
//!
//! Rules kept here (DESIGN.md, "Test network rules"): hosts are fresh namespaces; addresses
//! come from 198.18.0.0/15 only; names are unique per run (`sxsb<pid>s`, `sxsb<pid>c`);
//! every `ip` command spells out `name X` / `dev X`.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{bail, Context, Result};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::cleanup::{self, Registration, Resource};

/// Prefix of every namespace this benchmark creates.
pub const NAME_PREFIX: &str = "sxsb";

/// Runs `program args...`; an error carries the command and its stderr.
pub fn run_command(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Deletes namespaces `sxsb<pid>...` whose process is gone (a run killed with SIGKILL), with
/// whatever still runs inside them.
pub fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("sysbench: removing namespace {name} left by an earlier run");
            cleanup::delete_netns(&name);
        }
    }
}

/// A network namespace, deleted (with every interface and process in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    registration: Option<Registration>,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        run_command("ip", &["netns", "add", name])?;
        let netns =
            Netns { name: name.to_owned(), registration: Some(cleanup::register(Resource::Netns(name.to_owned()))) };
        netns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_command("ip", &full)
    }

    /// Runs `ip netns exec <name> program args...`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run_command("ip", &full)
    }

    /// A command that runs `program` inside the namespace, pinned to `cpu`:
    /// `ip netns exec <name> taskset -c <cpu> program` (both `exec` in turn, so the child's
    /// pid is the program's).
    pub fn command_on_cpu(&self, cpu: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, "taskset", "-c", &cpu.to_string(), program]);
        command
    }

    /// Runs `f` on a new thread inside the namespace, pinned to `cpu` when given, and returns
    /// its result.
    pub fn run<R: Send>(&self, cpu: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| -> Result<R> {
                self.enter_current_thread()?;
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu)?;
                }
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Moves the calling thread into the namespace: only for a thread spawned for it.
    pub fn enter_current_thread(&self) -> Result<()> {
        let file = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("cannot open netns {}", self.name))?;
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(io::Error::from)
            .with_context(|| format!("cannot enter netns {}", self.name))?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        cleanup::delete_netns(&self.name);
        if let Some(registration) = self.registration.take() {
            registration.release();
        }
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        bail!("cannot pin a thread to CPU {cpu}")
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

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The /24 this run uses, 198.18.`subnet`.0/24: inside 198.18.0.0/15 by construction.
pub fn subnet_address(subnet: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, subnet, host)
}

impl TestLink {
    /// Creates both namespaces and the veth pair, addresses both ends, and turns TX checksum
    /// offload off on both ends (a Linux sender over veth otherwise leaves partial checksums,
    /// which synack rejects; DESIGN.md).
    pub fn create(subnet: u8) -> Result<TestLink> {
        let pid = std::process::id();
        let base = format!("{NAME_PREFIX}{pid}");
        let (server_name, client_name) = (format!("{base}s"), format!("{base}c"));
        let server_ns = Netns::create(&server_name)?;
        let client_ns = Netns::create(&client_name)?;
        let p = pid.to_be_bytes();
        let mac = |side: u8| [0x02, 0x5b, p[1], p[2], p[3], side];
        let (server_mac, client_mac) = (mac(1), mac(2));
        run_command(
            "ip",
            &[
                "link",
                "add",
                "name",
                &server_name,
                "address",
                &format_mac(&server_mac),
                "netns",
                &server_name,
                "type",
                "veth",
                "peer",
                "name",
                &client_name,
                "address",
                &format_mac(&client_mac),
                "netns",
                &client_name,
            ],
        )?;
        let server =
            Host { netns: server_ns, ifname: server_name.clone(), mac: server_mac, ip: subnet_address(subnet, 1) };
        let client =
            Host { netns: client_ns, ifname: client_name.clone(), mac: client_mac, ip: subnet_address(subnet, 2) };
        for host in [&server, &client] {
            // No IPv6 link-local address: the link carries only what the benchmark sends.
            host.netns.ip(&["link", "set", "dev", &host.ifname, "addrgenmode", "none"])?;
            host.netns.ip(&["addr", "add", &format!("{}/24", host.ip), "dev", &host.ifname])?;
            host.netns.ip(&["link", "set", "dev", &host.ifname, "up"])?;
        }
        // Both ends: synack serves on the server's end, and `synack load` on the client's end
        // talks to nginx.
        for host in [&server, &client] {
            host.netns.exec("ethtool", &["-K", &host.ifname, "tx", "off"])?;
        }
        // Both ends know each other from the start: no ARP exchange inside a measurement.
        for (host, peer) in [(&server, &client), (&client, &server)] {
            host.netns.ip(&[
                "neigh",
                "replace",
                &peer.ip.to_string(),
                "lladdr",
                &format_mac(&peer.mac),
                "dev",
                &host.ifname,
                "nud",
                "permanent",
            ])?;
        }
        Ok(TestLink { server, client, next_load_host: AtomicU8::new(*LOAD_HOSTS.start()) })
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
        self.server.netns.ip(&[
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            &format_mac(&self.client.mac),
            "dev",
            &self.server.ifname,
            "nud",
            "permanent",
        ])?;
        Ok(ip)
    }

    /// Whether an XDP program is attached to the server's interface (`ip link` says `xdp`).
    pub fn server_has_xdp(&self) -> Result<bool> {
        let text = self.server.netns.ip(&["link", "show", "dev", &self.server.ifname])?;
        Ok(text.contains(" xdp") || text.contains("prog/xdp"))
    }
}

impl Drop for TestLink {
    fn drop(&mut self) {
        // Deleting the namespaces takes the pair with them; deleting it first keeps the
        // teardown order obvious, and works even if a namespace delete fails.
        let _ = self.server.netns.ip(&["link", "del", "dev", &self.server.ifname]);
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
