//! Network namespaces and veth pairs, deleted by guards even when a test panics, and the
//! removal of what a killed earlier run left behind.
//!
//! Rules kept here (docs/testing.md): every host is a fresh namespace; names carry the pid of
//! the process that made them (`<prefix><pid><rest>`), so that a later run recognises what a
//! killed run left (its pid is gone) and deletes it ([`remove_stale`]); every `ip` command
//! spells out `name X` / `dev X`. Addresses (198.18.0.0/15 only) are the callers' choice.
//!
//! Each harness names its own: the end-to-end tests `e2e<pid>n<k>s|p` (`synack_tests::netns`),
//! the AF_XDP socket tests `sxa<pid>-<n>a|b` (`synack_tests::testnet`), the system benchmark
//! `sxsb<pid>s|c` (`synack_bench::sys::net`).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::cleanup::{self, Registration, Resource};
use crate::process;

/// Time limit of the setup and inspection commands (`ip`, `ethtool`, `nft`).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args...` (killed after [`SETUP_TIMEOUT`]) and returns its stdout; an error
/// carries the command and its output.
pub fn run_command(program: &str, args: &[&str]) -> io::Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = process::run(cmd, SETUP_TIMEOUT);
    if out.success() {
        Ok(out.stdout)
    } else if out.timed_out {
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("{program} {} timed out", args.join(" "))))
    } else {
        Err(io::Error::other(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status.map_or("killed".to_string(), |s| s.to_string()),
            out.stderr.trim()
        )))
    }
}

/// Runs `ip args...`.
pub fn ip(args: &[&str]) -> io::Result<String> {
    run_command("ip", args)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The pid in a name `<prefix><pid><rest>`, where `rest` is not empty and starts with a
/// non-digit; `None` for names that do not have this shape.
pub fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == rest.len() {
        return None;
    }
    rest[..digits].parse().ok()
}

/// Whether a process `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The namespaces whose owner, as `owner` reads it from the name, is gone.
pub fn stale_namespaces(owner: impl Fn(&str) -> Option<u32>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| owner(name).is_some_and(|pid| !pid_alive(pid)))
        .collect();
    names.sort();
    names
}

/// Deletes (with whatever runs inside) the namespaces `<prefix><pid>...` whose process is gone,
/// and returns their names.
pub fn remove_stale(prefix: &str) -> Vec<String> {
    let stale = stale_namespaces(|name| owner_pid(prefix, name));
    for name in &stale {
        cleanup::delete_netns(name);
    }
    stale
}

/// A network namespace, registered with [`cleanup`], deleted (with every interface and process
/// in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    registration: Option<Registration>,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> io::Result<Netns> {
        let netns = Self::create_bare(name)?;
        netns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(netns)
    }

    /// Creates the namespace `name`, loopback down.
    pub fn create_bare(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        Ok(Netns { name: name.to_owned(), registration: Some(cleanup::register(Resource::Netns(name.to_owned()))) })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args...` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `ip netns exec <name> program args...`, for tools without a namespace option
    /// (ethtool, nft, sysctl), and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs `program` inside the namespace: `ip netns exec <name> program`
    /// (which execs, so the child's pid is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// A command that runs `program` inside the namespace, pinned to `cpu`:
    /// `ip netns exec <name> taskset -c <cpu> program` (both exec in turn).
    pub fn command_on_cpu(&self, cpu: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, "taskset", "-c", &cpu.to_string(), program]);
        command
    }

    /// Moves the calling thread into the namespace. Only for a thread spawned for the purpose
    /// (a test's own thread may be reused by the harness): prefer [`run`](Self::run).
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let file = File::open(format!("/var/run/netns/{}", self.name))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open netns {}: {e}", self.name)))?;
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("cannot enter netns {}: {e}", self.name)))?;
        Ok(())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result; a panic in `f`
    /// (or a failure to enter) is resumed on the caller's thread.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.run_pinned(None, f) {
            Ok(result) => result,
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs `f` on a new thread inside the namespace, pinned to `cpu` when given, and returns
    /// its result; a panic in `f` is resumed on the caller's thread.
    pub fn run_pinned<R: Send>(&self, cpu: Option<usize>, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| -> io::Result<R> {
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

    /// `ip -n <name> address add <addr>/<prefix_len> dev <ifname>`.
    pub fn add_address(&self, ifname: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        self.ip(&["address", "add", &format!("{addr}/{prefix_len}"), "dev", ifname]).map(drop)
    }

    /// `ip -n <name> link set dev <ifname> up`.
    pub fn link_up(&self, ifname: &str) -> io::Result<()> {
        self.ip(&["link", "set", "dev", ifname, "up"]).map(drop)
    }

    /// No IPv6 link-local address on `ifname`: the link carries only what a test sends.
    pub fn no_ipv6_addrgen(&self, ifname: &str) -> io::Result<()> {
        self.ip(&["link", "set", "dev", ifname, "addrgenmode", "none"]).map(drop)
    }

    /// `ethtool -K <ifname> tx off`: a Linux sender over veth otherwise leaves partial
    /// checksums, which synack rejects (docs/machine-notes.md).
    pub fn tx_checksum_off(&self, ifname: &str) -> io::Result<()> {
        self.exec("ethtool", &["-K", ifname, "tx", "off"]).map(drop)
    }

    /// A permanent neighbour entry: `addr` is at `mac` on `ifname` (no ARP exchange).
    pub fn neigh_permanent(&self, ifname: &str, addr: Ipv4Addr, mac: &[u8; 6]) -> io::Result<()> {
        self.ip(&["neigh", "replace", &addr.to_string(), "lladdr", &format_mac(mac), "dev", ifname, "nud", "permanent"])
            .map(drop)
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
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(io::Error::other(format!("cannot pin a thread to CPU {cpu}")))
    }
}

/// One end of a veth pair to create: its name, the namespace it goes to, and optionally its MAC
/// and its number of queues.
#[derive(Debug, Clone, Copy)]
pub struct VethEnd<'a> {
    pub netns: &'a Netns,
    pub ifname: &'a str,
    pub mac: Option<[u8; 6]>,
    /// RX and TX queues (the kernel's default when `None`).
    pub queues: Option<u32>,
}

impl<'a> VethEnd<'a> {
    /// `ifname` in `netns`, default MAC and queues.
    pub fn new(netns: &'a Netns, ifname: &'a str) -> Self {
        VethEnd { netns, ifname, mac: None, queues: None }
    }

    /// With this MAC.
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }

    /// With this many RX and TX queues.
    pub fn queues(mut self, queues: u32) -> Self {
        self.queues = Some(queues);
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["name".to_string(), self.ifname.to_string()];
        if let Some(mac) = self.mac {
            args.extend(["address".to_string(), format_mac(&mac)]);
        }
        if let Some(q) = self.queues {
            args.extend(["numtxqueues".to_string(), q.to_string(), "numrxqueues".to_string(), q.to_string()]);
        }
        args.extend(["netns".to_string(), self.netns.name().to_string()]);
        args
    }
}

/// A veth pair, deleted (both ends go together) when dropped. Deleting the namespaces would
/// take it with them; deleting it first keeps the teardown order obvious, and works even if a
/// namespace delete fails. Declare it before the namespaces in a struct (fields drop in order).
#[derive(Debug)]
pub struct VethPair {
    netns: String,
    ifname: String,
}

impl VethPair {
    /// Creates the pair `a` <-> `b`, each end in its namespace (links down, no address).
    pub fn create(a: VethEnd<'_>, b: VethEnd<'_>) -> io::Result<VethPair> {
        let mut args = vec!["link".to_string(), "add".to_string()];
        args.extend(a.args());
        args.extend(["type".to_string(), "veth".to_string(), "peer".to_string()]);
        args.extend(b.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ip(&args)?;
        Ok(VethPair { netns: a.netns.name().to_string(), ifname: a.ifname.to_string() })
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = ip(&["-n", &self.netns, "link", "del", "dev", &self.ifname]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_from_names() {
        assert_eq!(owner_pid("sxsb", "sxsb1234s"), Some(1234));
        assert_eq!(owner_pid("sxa", "sxa77-3a"), Some(77));
        assert_eq!(owner_pid("e2e", "e2e42n0p"), Some(42));
        assert_eq!(owner_pid("sxsb", "sxsb1234"), None, "nothing after the pid");
        assert_eq!(owner_pid("sxsb", "sxsbs"), None, "no pid");
        assert_eq!(owner_pid("sxsb", "other1s"), None);
    }

    #[test]
    fn macs_are_formatted() {
        assert_eq!(format_mac(&[2, 0, 0xab, 1, 2, 3]), "02:00:ab:01:02:03");
    }

    #[test]
    fn a_namespace_and_a_pair_live_and_die() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP (needs root: network namespaces): a_namespace_and_a_pair_live_and_die");
            return;
        }
        let base = format!("sxtk{}-", std::process::id());
        let (a_name, b_name) = (format!("{base}a"), format!("{base}b"));
        {
            let a = Netns::create(&a_name).unwrap();
            let b = Netns::create(&b_name).unwrap();
            assert!(cleanup::registry_contains(&Resource::Netns(a_name.clone())));
            let pair = VethPair::create(VethEnd::new(&a, &a_name).queues(2), VethEnd::new(&b, &b_name)).unwrap();
            a.add_address(&a_name, Ipv4Addr::new(198, 18, 250, 1), 30).unwrap();
            a.link_up(&a_name).unwrap();
            assert!(a.ip(&["-o", "address", "show", "dev", &a_name]).unwrap().contains("198.18.250.1/30"));
            assert!(b.ip(&["link", "show", "dev", &b_name]).is_ok());
            drop(pair);
            assert!(b.ip(&["link", "show", "dev", &b_name]).is_err(), "the peer went with the pair");
        }
        for name in [&a_name, &b_name] {
            assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
            assert!(!cleanup::registry_contains(&Resource::Netns(name.clone())));
        }
    }
}
