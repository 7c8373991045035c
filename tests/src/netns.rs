//! `TestNet`: two network namespaces joined by a veth pair, deleted by a guard.
//!
//! ```text
//!  namespace <id>s                          namespace <id>p
//!  [<id>s] 198.18.N.1/24  <== veth ==>  [<id>p] 198.18.N.2/24  (TX checksum offload off)
//!          198.18.N.3 = synack's dedicated address, on no kernel interface
//! ```
//! Names are `e2e<pid>n<counter>` plus `s` or `p`, so that a later run can recognise (and
//! delete) what a killed run left behind: the pid in the name is no longer alive.

//!
//! The namespaces and the pair are `synack_testkit::netns` guards, registered with its cleanup
//! registry.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use synack_testkit::netns::{Netns, VethEnd, VethPair};

use crate::process::{run, run_ok, Output, Proc};

pub use synack_testkit::netns::SETUP_TIMEOUT;

/// Prefix of every namespace and link name this harness creates.
pub const NAME_PREFIX: &str = "e2e";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One end of the pair: a namespace, its veth end and its kernel address.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name; the veth end in it has the same name.
    pub ns: String,
    pub iface: String,
    /// The address assigned to `iface` in the kernel (`.1` or `.2`).
    pub ip: Ipv4Addr,
}

impl Host {
    /// `ip netns exec <ns> <program> <args...>`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd.args(args);
        cmd
    }

    /// Runs a command in this namespace with a time limit (never panics; check the `Output`).
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S], timeout: Duration) -> Output {
        run(self.command(program, args), timeout)
    }

    /// Runs a command in this namespace and panics with its output unless it succeeds in time.
    #[track_caller]
    pub fn run_ok<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S], timeout: Duration) -> Output {
        run_ok(self.command(program, args), timeout)
    }

    /// Starts a long-running command in this namespace (stopped when the `Proc` drops, and
    /// killed by the `TestNet` guard in any case).
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Proc {
        Proc::spawn(self.command(program, args))
    }

    /// `ip -d link show dev <iface>` in this namespace.
    pub fn link_details(&self) -> String {
        let out = run_ok(ip(&["-n", &self.ns, "-d", "link", "show", "dev", &self.iface]), SETUP_TIMEOUT);
        out.stdout
    }

    /// The XDP attachment of this host's interface, if any: the `prog/xdp...` or `xdp...`
    /// part of `ip -d link show` (e.g. `prog/xdp id 42`), `None` when nothing is attached.
    pub fn xdp_attachment(&self) -> Option<String> {
        parse_xdp_attachment(&self.link_details())
    }

    /// Current TCP sockets of this namespace (`ss -tanH`), one per line.
    pub fn tcp_sockets(&self) -> Vec<String> {
        let out = self.run_ok("ss", &["-tanH"], SETUP_TIMEOUT);
        out.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
    }
}

/// Finds the XDP attachment in `ip -d link show` output. iproute2 prints `xdp` (native),
/// `xdpgeneric`, `xdpoffload` or `xdpmulti` on the first line and `prog/xdp id N` below.
pub fn parse_xdp_attachment(link_details: &str) -> Option<String> {
    for line in link_details.lines() {
        let line = line.trim();
        if let Some(pos) = line.find("prog/xdp") {
            return Some(line[pos..].to_string());
        }
    }
    let first = link_details.lines().next().unwrap_or("");
    first
        .split_whitespace()
        .find(|w| matches!(*w, "xdp" | "xdpgeneric" | "xdpdrv" | "xdpoffload" | "xdpmulti"))
        .map(str::to_string)
}

fn ip(args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    cmd
}

/// Options of a `TestNet`.
#[derive(Debug, Clone)]
pub struct TestNetBuilder {
    label: String,
    queues: u32,
    peer_tx_checksum_offload: bool,
    bare_synack_side: bool,
}

impl TestNetBuilder {
    /// Number of RX and TX queues of both veth ends (default 1).
    pub fn queues(mut self, queues: u32) -> Self {
        self.queues = queues;
        self
    }

    /// Leave the peer's TX checksum offload on (default: off, see docs/machine-notes.md).
    pub fn peer_tx_checksum_offload(mut self, on: bool) -> Self {
        self.peer_tx_checksum_offload = on;
        self
    }

    /// Leave the synack namespace without any address, `lo` down included (default: `.1` and
    /// `lo` up): a namespace whose kernel has no local routing table yet.
    pub fn bare_synack_side(mut self, bare: bool) -> Self {
        self.bare_synack_side = bare;
        self
    }

    /// Creates the namespaces and the veth pair. Panics (after cleaning up) on failure.
    #[track_caller]
    pub fn build(self) -> TestNet {
        remove_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{NAME_PREFIX}{}n{n}", std::process::id());
        // 198.18.N.0/24 with N from the counter: unique among this process's tests; other
        // processes' tests live in other namespaces, where the same subnet does not collide.
        let subnet = (n % 250 + 1) as u8;
        let synack = Host { ns: format!("{id}s"), iface: format!("{id}s"), ip: Ipv4Addr::new(198, 18, subnet, 1) };
        let peer = Host { ns: format!("{id}p"), iface: format!("{id}p"), ip: Ipv4Addr::new(198, 18, subnet, 2) };
        assert!(synack.ns.len() <= 15, "interface name {} too long", synack.ns);
        let label = self.label.clone();
        // On a failure the guards made so far delete what exists, as the panic unwinds.
        let fail = |what: &str, e: std::io::Error| -> ! { panic!("[{label}] {what} failed: {e}") };
        let synack_ns = Netns::create_bare(&synack.ns).unwrap_or_else(|e| fail("network setup", e));
        let peer_ns = Netns::create_bare(&peer.ns).unwrap_or_else(|e| fail("network setup", e));
        let veth = VethPair::create(
            VethEnd::new(&synack_ns, &synack.iface).queues(self.queues),
            VethEnd::new(&peer_ns, &peer.iface).queues(self.queues),
        )
        .unwrap_or_else(|e| fail("network setup", e));
        let net = TestNet {
            _veth: veth,
            _namespaces: [synack_ns, peer_ns],
            label: self.label.clone(),
            id,
            subnet,
            synack,
            peer,
            queues: self.queues,
        };
        net.setup(&self);
        println!(
            "[{}] net {}: {} {} <-> {} {} (queues {})",
            net.label, net.id, net.synack.ns, net.synack.ip, net.peer.ns, net.peer.ip, net.queues
        );
        net
    }
}

/// Two namespaces joined by a veth pair. Dropping it deletes the pair, kills every process
/// left in the namespaces and deletes them, also when the test panics.
#[derive(Debug)]
pub struct TestNet {
    // Dropped first (fields drop in declaration order): the pair, then the namespaces.
    _veth: VethPair,
    _namespaces: [Netns; 2],
    pub label: String,
    /// `e2e<pid>n<counter>`: the stem of every name.
    pub id: String,
    /// N of 198.18.N.0/24.
    pub subnet: u8,
    /// Where synack (or its kernel stand-in) runs: `.1`.
    pub synack: Host,
    /// The Linux peer: `.2`.
    pub peer: Host,
    pub queues: u32,
}

impl TestNet {
    /// A builder; `label` names the test in messages.
    pub fn builder(label: &str) -> TestNetBuilder {
        TestNetBuilder { label: label.to_string(), queues: 1, peer_tx_checksum_offload: false, bare_synack_side: false }
    }

    /// The default topology (1 queue, peer TX checksum offload off).
    #[track_caller]
    pub fn new(label: &str) -> TestNet {
        Self::builder(label).build()
    }

    /// The shared address: synack's address that is also the kernel's (`.1`).
    pub fn shared_ip(&self) -> Ipv4Addr {
        self.synack.ip
    }

    /// The dedicated address: synack's alone, assigned to no kernel interface (`.3`).
    pub fn dedicated_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet, 3)
    }

    /// Adds `addr/24` to the synack-side kernel interface (for kernel stand-ins of a
    /// dedicated address).
    pub fn add_kernel_address(&self, addr: Ipv4Addr) {
        run_ok(
            ip(&["-n", &self.synack.ns, "address", "add", &format!("{addr}/24"), "dev", &self.synack.iface]),
            SETUP_TIMEOUT,
        );
    }

    /// Whether `addr` is assigned to any kernel interface of the synack namespace.
    pub fn kernel_has_address(&self, addr: Ipv4Addr) -> bool {
        let out = run_ok(ip(&["-n", &self.synack.ns, "-o", "address", "show"]), SETUP_TIMEOUT);
        let needle = format!("inet {addr}/");
        out.stdout.contains(&needle)
    }

    fn setup(&self, opts: &TestNetBuilder) {
        let [synack_ns, peer_ns] = &self._namespaces;
        let (s, p) = (&self.synack, &self.peer);
        let fail = |what: &str, e: std::io::Error| -> ! { panic!("[{}] {what} failed: {e}", self.label) };
        // A bare synack side: no address, lo down.
        if !opts.bare_synack_side {
            synack_ns.add_address(&s.iface, s.ip, 24).unwrap_or_else(|e| fail("network setup", e));
        }
        peer_ns.add_address(&p.iface, p.ip, 24).unwrap_or_else(|e| fail("network setup", e));
        if !opts.bare_synack_side {
            synack_ns.link_up("lo").unwrap_or_else(|e| fail("network setup", e));
        }
        peer_ns.link_up("lo").unwrap_or_else(|e| fail("network setup", e));
        synack_ns.link_up(&s.iface).unwrap_or_else(|e| fail("network setup", e));
        peer_ns.link_up(&p.iface).unwrap_or_else(|e| fail("network setup", e));
        if !opts.peer_tx_checksum_offload {
            peer_ns.tx_checksum_off(&p.iface).unwrap_or_else(|e| fail("turning off TX checksum offload", e));
        }
        // Wait (bounded) until both ends report carrier, so the first packet is not lost.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let up = [s, p].iter().all(|h| h.link_details().contains("LOWER_UP"));
            if up {
                break;
            }
            if Instant::now() > deadline {
                panic!("[{}] veth pair not up within 5 s", self.label);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Installs nftables rules in the peer namespace that drop `percent` % of packets at
    /// random in both directions (input and output hooks), with counters.
    ///
    /// Segmentation and receive offloads go off on both ends first: with them a Linux
    /// sender hands nftables a few dozen 64 KB super-packets for megabytes of data, so a
    /// 2 % rule may drop nothing at all, and a drop would cost a whole burst at once.
    pub fn peer_random_loss(&self, percent: u32) {
        for host in [&self.peer, &self.synack] {
            host.run_ok("ethtool", &["-K", &host.iface, "gso", "off", "tso", "off", "gro", "off"], SETUP_TIMEOUT);
        }
        let rules = format!(
            "table inet e2e_loss {{\n\
             chain input {{ type filter hook input priority 0; policy accept; numgen random mod 100 < {percent} counter drop; }}\n\
             chain output {{ type filter hook output priority 0; policy accept; numgen random mod 100 < {percent} counter drop; }}\n\
             }}\n"
        );
        let path = std::env::temp_dir().join(format!("{}-loss.nft", self.id));
        std::fs::write(&path, rules).expect("write nft rules");
        let out = self.peer.run("nft", &["-f", path.to_str().unwrap()], SETUP_TIMEOUT);
        let _ = std::fs::remove_file(&path);
        out.assert_success();
    }

    /// Packets dropped so far by `peer_random_loss`: (input, output).
    pub fn peer_loss_counters(&self) -> (u64, u64) {
        let out = self.peer.run_ok("nft", &["list", "table", "inet", "e2e_loss"], SETUP_TIMEOUT);
        let mut counts = Vec::new();
        for line in out.stdout.lines() {
            if let Some(pos) = line.find("packets ") {
                let n = line[pos + 8..].split_whitespace().next().unwrap_or("0");
                counts.push(n.parse::<u64>().unwrap_or(0));
            }
        }
        assert_eq!(counts.len(), 2, "unexpected nft output: {}", out.stdout);
        (counts[0], counts[1])
    }
}

/// Kills every process inside `ns` (bounded wait) and deletes the namespace.
pub fn delete_namespace(ns: &str) {
    synack_testkit::cleanup::delete_netns(ns);
}

/// Namespaces named by this harness (`e2e<pid>n<k>s|p`) whose creating process is gone.
pub fn stale_namespaces() -> Vec<String> {
    synack_testkit::netns::stale_namespaces(owner_pid)
}

/// The pid in a name of ours, `e2e<pid>n<k>s|p`.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let rest = rest.strip_suffix('s').or_else(|| rest.strip_suffix('p'))?;
    let (pid, k) = rest.split_once('n')?;
    if pid.is_empty() || k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Deletes what killed earlier runs left behind (see `stale_namespaces`).
pub fn remove_stale() {
    for ns in stale_namespaces() {
        println!("removing namespace {ns} left by an earlier run");
        delete_namespace(&ns);
    }
}
