//! Attaching the program to a real veth interface through a BPF link.
//!
//! Each test makes its own veth pair between two fresh network namespaces,
//! `sxt<pid><tag>n` (near: the end `sxt<pid><tag>b`, where the program goes,
//! playing synack's host) and `sxt<pid><tag>f` (far: the end `sxt<pid><tag>a`,
//! the peer). Nothing is created in the namespace the tests run in. The
//! addresses come from a /29 of 198.18.0.0/15 chosen from the process id and
//! the test's slot, so that runs side by side use different subnets. A guard
//! deletes both namespaces (and with them the pair) even when the test panics.
//!
//! The program resolves and attaches to an interface in the calling thread's
//! namespace, so attaching happens on a thread that joined the near namespace
//! (`in_netns`); the link, the maps and the counters work from anywhere.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use synack_xdp::{AddressMode, AttachError, SteerProgram};

macro_rules! require_root {
    () => {
        if !common::have_root() {
            return;
        }
    };
}

/// Runs `ip` with `args`, panicking with its output if it fails.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("running ip (iproute2)");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Moves the calling thread into the network namespace `netns` (made by
/// `ip netns add`, which bind-mounts it under /run/netns).
fn enter_netns(netns: &str) {
    let path = format!("/run/netns/{netns}");
    let file = File::open(&path).unwrap_or_else(|error| panic!("opening {path}: {error}"));
    // Safety: setns only reads the fd, which `file` keeps open during the
    // call; CLONE_NEWNET changes this thread's network namespace alone.
    #[allow(unsafe_code)]
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(result, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Runs `body` on a thread of its own inside the namespace `netns`, so that
/// the test's thread stays where it was.
fn in_netns<T: Send>(netns: &str, body: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        let thread = scope.spawn(|| {
            enter_netns(netns);
            body()
        });
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Waits up to `limit` for `done`, polling every millisecond.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Parses `aa:bb:cc:dd:ee:ff`.
fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text.split(':').map(|byte| u8::from_str_radix(byte, 16).unwrap()).collect();
    bytes.try_into().unwrap_or_else(|_| panic!("not a MAC address: {text}"))
}

/// A veth pair between two namespaces made for the test; deleted on drop.
struct VethPair {
    /// The near end, where the program goes, in `near_netns`.
    near: String,
    near_netns: String,
    /// The far end, with `peer_addr`, in `far_netns`.
    far: String,
    far_netns: String,
    /// The far end's address; two more on its /29 for synack.
    peer_addr: Ipv4Addr,
    shared_addr: Ipv4Addr,
    dedicated_addr: Ipv4Addr,
}

impl VethPair {
    /// `tag` names the pair apart from the pairs of tests that run at the
    /// same time; `slot` (0 or 1) picks its subnet apart from theirs.
    fn new(tag: u8, slot: u32) -> VethPair {
        assert!(slot < 2);
        let pid = std::process::id();
        let base = format!("sxt{pid}{}", tag as char);
        // 198.18.0.0/15 holds 4096 /29s: two per process, 2048 processes
        // apart. Both ends live in the test's own namespaces anyway, so even
        // a clash would stay inside them.
        let index = (pid % 2048) * 2 + slot;
        let subnet = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + index * 8;
        let pair = VethPair {
            near: format!("{base}b"),
            near_netns: format!("{base}n"),
            far: format!("{base}a"),
            far_netns: format!("{base}f"),
            peer_addr: Ipv4Addr::from(subnet + 1),
            shared_addr: Ipv4Addr::from(subnet + 2),
            dedicated_addr: Ipv4Addr::from(subnet + 3),
        };
        // The guard exists before anything is created, so a failure halfway
        // still cleans up what was made.
        ip(&["netns", "add", &pair.near_netns]);
        ip(&["netns", "add", &pair.far_netns]);
        // Created inside the near namespace, the far end moved at once: no
        // interface ever appears in the tests' own namespace.
        ip(&[
            "-n",
            &pair.near_netns,
            "link",
            "add",
            "name",
            &pair.near,
            "type",
            "veth",
            "peer",
            "name",
            &pair.far,
            "netns",
            &pair.far_netns,
        ]);
        ip(&["-n", &pair.near_netns, "link", "set", "dev", &pair.near, "up"]);
        let peer_cidr = format!("{}/29", pair.peer_addr);
        ip(&["-n", &pair.far_netns, "addr", "add", &peer_cidr, "dev", &pair.far]);
        ip(&["-n", &pair.far_netns, "link", "set", "dev", &pair.far, "up"]);
        pair
    }

    /// `ip -d link show` of the near end.
    fn show_near(&self) -> String {
        ip(&["-n", &self.near_netns, "-d", "link", "show", "dev", &self.near])
    }

    /// The near end's interface index, as `ip` prints it.
    fn near_ifindex(&self) -> u32 {
        let show = ip(&["-n", &self.near_netns, "-o", "link", "show", "dev", &self.near]);
        show.split(':').next().unwrap().trim().parse().unwrap()
    }

    /// The MAC address of `dev` in `netns`.
    fn mac(netns: &str, dev: &str) -> String {
        let show = ip(&["-n", netns, "-o", "link", "show", "dev", dev]);
        let mut words = show.split_whitespace();
        words.find(|&word| word == "link/ether").unwrap();
        words.next().unwrap().to_owned()
    }

    /// Attaches the program to the near end, from inside its namespace.
    fn attach(&self) -> Result<SteerProgram, AttachError> {
        in_netns(&self.near_netns, || SteerProgram::attach(&self.near))
    }

    /// Starts a TCP connection from the far namespace to `addr:port` (bash's
    /// /dev/tcp); the caller kills it.
    fn connect_from_far(&self, addr: Ipv4Addr, port: u16) -> std::process::Child {
        let connect = format!("exec 3<>/dev/tcp/{addr}/{port}");
        Command::new("ip")
            .args(["netns", "exec", &self.far_netns, "bash", "-c", &connect])
            .stderr(Stdio::null())
            .spawn()
            .expect("bash in the far namespace")
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        // Errors are for things that were never created.
        for netns in [&self.near_netns, &self.far_netns] {
            let _ = Command::new("ip").args(["netns", "del", netns]).stderr(Stdio::null()).status();
        }
    }
}

fn xdp_prog_shown(show: &str, prog_id: u32) -> bool {
    show.contains(&format!("prog/xdp id {prog_id} "))
}

#[test]
fn attach_steers_live_traffic_and_detaches_on_drop() {
    require_root!();
    let veth = VethPair::new(b'd', 0);
    let mut program = veth.attach().expect("attach");
    let prog_id = program.prog_id();
    assert_eq!(program.ifindex(), veth.near_ifindex());
    assert_eq!(program.ifname(), veth.near);
    let show = veth.show_near();
    assert!(xdp_prog_shown(&show, prog_id), "{show}");
    // veth implements the VLAN tag kfunc (Linux 6.8): the program bound to it is attached.
    if kernel_at_least(6, 8) {
        assert!(program.vlan_metadata(), "the program bound to veth, which sees stripped VLAN tags");
    }

    // One link per interface: a second program is refused, naming the first.
    match veth.attach() {
        Err(AttachError::Busy { ifname, prog_id: other }) => {
            assert_eq!(ifname, veth.near);
            assert_eq!(other, prog_id);
        }
        Err(error) => panic!("expected Busy, got {error:?}"),
        Ok(_) => panic!("a second XDP program attached"),
    }
    let busy = AttachError::Busy { ifname: veth.near.clone(), prog_id };
    assert!(busy.to_string().contains("busy: another XDP program"), "{busy}");

    // A shared address, which the near kernel has too: the kernel answers
    // the far end's ARP request (the program records the far end's MAC on
    // the way), then the SYN to synack's port goes through the program. No
    // AF_XDP socket is registered, so the program counts redirect_failed and
    // lets the kernel have the SYN (it answers with a RST: nothing listens).
    let far_mac = parse_mac(&VethPair::mac(&veth.far_netns, &veth.far));
    let shared_cidr = format!("{}/29", veth.shared_addr);
    ip(&["-n", &veth.near_netns, "addr", "add", &shared_cidr, "dev", &veth.near]);
    program.add_owned_addr(veth.shared_addr, AddressMode::Shared).unwrap();
    program.add_listen_port(80).unwrap();
    let mut client = veth.connect_from_far(veth.shared_addr, 80);
    let seen = wait_for(Duration::from_secs(3), || program.counters().unwrap().redirect_failed >= 1);
    let _ = client.kill();
    let _ = client.wait();
    let counters = program.counters().unwrap();
    assert!(seen.is_some(), "no SYN seen by the program: {counters}");
    assert!(counters.passed_arp_shared >= 1, "the ARP request went elsewhere: {counters}");
    assert_eq!(counters.steered(), 0, "{counters}");
    assert_eq!(program.neighbor(veth.peer_addr).unwrap(), Some(far_mac));

    // A dedicated address, which the kernel does not have: the far end's ARP
    // request for it is synack's (redirect_failed again, with no socket), and
    // its sender is recorded. Nobody answers, so no SYN follows.
    program.forget_neighbor(veth.peer_addr).unwrap();
    program.add_owned_addr(veth.dedicated_addr, AddressMode::Dedicated).unwrap();
    let before = program.counters().unwrap();
    let mut client = veth.connect_from_far(veth.dedicated_addr, 22);
    let learnt = wait_for(Duration::from_secs(3), || program.neighbor(veth.peer_addr).unwrap().is_some());
    let _ = client.kill();
    let _ = client.wait();
    let counted = program.counters().unwrap().since(&before);
    assert!(learnt.is_some(), "no ARP request seen by the program: {counted}");
    assert_eq!(program.neighbor(veth.peer_addr).unwrap(), Some(far_mac));
    assert!(counted.redirect_failed >= 1, "{counted}");
    assert_eq!(counted.passed_arp_shared, 0, "{counted}");

    drop(program);
    let show = veth.show_near();
    assert!(!show.contains("prog/xdp"), "still attached after drop: {show}");
    // And unloaded: no fd keeps the program alive (the kernel frees it after
    // an RCU grace period).
    let unloaded = wait_for(Duration::from_secs(2), || libbpf_rs::Program::fd_from_id(prog_id).is_err());
    assert!(unloaded.is_some(), "program {prog_id} still loaded after drop");

    // The interface is free again; detach() is the explicit spelling.
    let program = veth.attach().expect("attach after detach");
    assert!(xdp_prog_shown(&veth.show_near(), program.prog_id()));
    program.detach();
    assert!(!veth.show_near().contains("prog/xdp"));
}

/// Whether the running kernel is at least `major.minor` (from uname's release).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Where the program bound to the interface cannot be attached (loopback has no native XDP:
/// generic mode refuses device-bound programs), the unbound one is, which sees VLAN tags in
/// frames only: loading never breaks for want of the VLAN metadata.
#[test]
fn without_native_xdp_the_unbound_program_is_attached() {
    require_root!();
    let veth = VethPair::new(b'l', 1);
    ip(&["-n", &veth.near_netns, "link", "set", "dev", "lo", "up"]);
    let program = in_netns(&veth.near_netns, || SteerProgram::attach("lo")).expect("attach to lo");
    assert!(!program.vlan_metadata(), "generic XDP: the unbound program");
    let show = ip(&["-n", &veth.near_netns, "-d", "link", "show", "dev", "lo"]);
    assert!(xdp_prog_shown(&show, program.prog_id()), "{show}");
}

#[test]
fn attach_to_missing_interface_names_it() {
    // Needs no privileges: the name is resolved before anything is loaded.
    let ifname = "sxtnosuch0";
    match SteerProgram::attach(ifname) {
        Err(error @ AttachError::NoSuchInterface { .. }) => {
            let message = error.to_string();
            assert!(message.contains(ifname), "{message}");
        }
        Err(error) => panic!("expected NoSuchInterface, got {error:?}"),
        Ok(_) => panic!("attached to a missing interface"),
    }
    assert!(matches!(SteerProgram::attach("a-name-longer-than-ifnamsiz"), Err(AttachError::NoSuchInterface { .. })));
}

/// The environment variables that turn `helper_attach_and_wait` on: the
/// interface, and the namespace it is in.
const HELPER_IFNAME: &str = "SYNACK_XDP_TEST_ATTACH_IFNAME";
const HELPER_NETNS: &str = "SYNACK_XDP_TEST_ATTACH_NETNS";

/// Not a test on its own: `link_dies_with_the_process` runs this test binary
/// again with only this test and `HELPER_IFNAME` and `HELPER_NETNS` set, to
/// have a process to kill. Without them it does nothing.
#[test]
fn helper_attach_and_wait() {
    let (Ok(ifname), Ok(netns)) = (std::env::var(HELPER_IFNAME), std::env::var(HELPER_NETNS)) else {
        return;
    };
    let program = in_netns(&netns, || SteerProgram::attach(&ifname)).expect("attach in the helper");
    println!("attached prog_id={}", program.prog_id());
    thread::sleep(Duration::from_secs(30));
    panic!("the helper was not killed");
}

#[test]
fn link_dies_with_the_process() {
    require_root!();
    let veth = VethPair::new(b'k', 1);
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_attach_and_wait", "--nocapture", "--test-threads=1"])
        .env(HELPER_IFNAME, &veth.near)
        .env(HELPER_NETNS, &veth.near_netns)
        .stdout(Stdio::piped())
        .spawn()
        .expect("running the helper");
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let prog_id: u32 = stdout
        .lines()
        .map_while(Result::ok)
        // libtest prints "test helper_attach_and_wait ... " before the line.
        .find_map(|line| line.split_once("attached prog_id=").map(|(_, id)| id.to_owned()))
        .expect("the helper exited without attaching")
        .parse()
        .unwrap();
    let show = veth.show_near();
    assert!(xdp_prog_shown(&show, prog_id), "{show}");

    helper.kill().unwrap(); // SIGKILL: no destructor runs
    helper.wait().unwrap();
    let gone = wait_for(Duration::from_secs(2), || !veth.show_near().contains("prog/xdp"));
    assert!(gone.is_some(), "still attached 2 s after kill -9: {}", veth.show_near());
    println!("detached {:?} after kill -9", gone.unwrap());
}
