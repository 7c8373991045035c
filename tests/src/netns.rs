//! `TestNet`: two network namespaces joined by a veth pair, deleted by a guard.
//!
//! ```text
//!  namespace <id>s                          namespace <id>p
//!  [<id>s] 198.18.N.1/24  <== veth ==>  [<id>p] 198.18.N.2/24  (TX checksum offload off)
//!          198.18.N.3 = synack's dedicated address, on no kernel interface
//! ```
//! Names are `e2e<pid>n<counter>` plus `s` or `p`, so that a later run can recognise (and
//! delete) what a killed run left behind: the pid in the name is no longer alive.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{run, run_ok, Output, Proc};

/// Prefix of every namespace and link name this harness creates.
pub const NAME_PREFIX: &str = "e2e";
/// Time limit of the setup and inspection commands (`ip`, `ethtool`, `nft`).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl TestNetBuilder {
    /// Number of RX and TX queues of both veth ends (default 1).
    pub fn queues(mut self, queues: u32) -> Self {
        self.queues = queues;
        self
    }

    /// Leave the peer's TX checksum offload on (default: off, see DESIGN.md).
    pub fn peer_tx_checksum_offload(mut self, on: bool) -> Self {
        self.peer_tx_checksum_offload = on;
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
        let net = TestNet { label: self.label.clone(), id, subnet, synack, peer, queues: self.queues };
        net.setup(&self);
        println!(
            "[{}] net {}: {} {} <-> {} {} (queues {})",
            net.label, net.id, net.synack.ns, net.synack.ip, net.peer.ns, net.peer.ip, net.queues
        );
        net
    }
}

/// Two namespaces joined by a veth pair. Dropping it kills every process left in them and
/// deletes them (which deletes the veth pair), also when the test panics.
#[derive(Debug)]
pub struct TestNet {
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
        TestNetBuilder { label: label.to_string(), queues: 1, peer_tx_checksum_offload: false }
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
        let q = self.queues.to_string();
        let (s, p) = (&self.synack, &self.peer);
        let steps: Vec<Vec<String>> = vec![
            vec!["netns", "add", &s.ns],
            vec!["netns", "add", &p.ns],
            vec![
                "-n",
                &s.ns,
                "link",
                "add",
                "name",
                &s.iface,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                &p.iface,
                "netns",
                &p.ns,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
            vec!["-n", &s.ns, "address", "add", &format!("{}/24", s.ip), "dev", &s.iface],
            vec!["-n", &p.ns, "address", "add", &format!("{}/24", p.ip), "dev", &p.iface],
            vec!["-n", &s.ns, "link", "set", "dev", "lo", "up"],
            vec!["-n", &p.ns, "link", "set", "dev", "lo", "up"],
            vec!["-n", &s.ns, "link", "set", "dev", &s.iface, "up"],
            vec!["-n", &p.ns, "link", "set", "dev", &p.iface, "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(str::to_string).collect())
        .collect();
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            let out = run(ip(&args), SETUP_TIMEOUT);
            if !out.success() {
                self.teardown();
                panic!("[{}] network setup failed: {}", self.label, out.describe());
            }
        }
        if !opts.peer_tx_checksum_offload {
            let out = p.run("ethtool", &["-K", &p.iface, "tx", "off"], SETUP_TIMEOUT);
            if !out.success() {
                self.teardown();
                panic!("[{}] turning off TX checksum offload failed: {}", self.label, out.describe());
            }
        }
        // Wait (bounded) until both ends report carrier, so the first packet is not lost.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let up = [s, p].iter().all(|h| h.link_details().contains("LOWER_UP"));
            if up {
                break;
            }
            if Instant::now() > deadline {
                self.teardown();
                panic!("[{}] veth pair not up within 5 s", self.label);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn teardown(&self) {
        for host in [&self.synack, &self.peer] {
            delete_namespace(&host.ns);
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

impl Drop for TestNet {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Kills every process inside `ns` (bounded wait) and deletes the namespace.
pub fn delete_namespace(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = namespace_pids(ns);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            // Safety: kill(2) on a pid read from `ip netns pids` just now; the worst case of a
            // race is a signal to a process that already exited.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = run(ip(&["netns", "delete", ns]), SETUP_TIMEOUT);
}

fn namespace_pids(ns: &str) -> Vec<i32> {
    let out = run(ip(&["netns", "pids", ns]), SETUP_TIMEOUT);
    out.stdout.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Namespaces named by this harness (`e2e<pid>n<k>s|p`) whose creating process is gone.
pub fn stale_namespaces() -> Vec<String> {
    let out = run(ip(&["netns", "list"]), SETUP_TIMEOUT);
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| match owner_pid(name) {
            Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        })
        .map(str::to_string)
        .collect()
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
