//! Attaching the program to a real veth interface through a BPF link.
//!
//! Each test makes its own veth pair: `sxt<pid><tag>b` stays in this network
//! namespace and gets the program; its peer `sxt<pid><tag>a` lives in a fresh
//! namespace `sxt<pid><tag>` with an address from 198.18.0.0/15, so that
//! traffic can be sent through the program without touching the host's
//! addresses or routes. A guard deletes both even when the test panics.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use synack_xdp::{AttachError, SteerProgram};

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

/// A veth pair and a namespace for its far end; deleted on drop.
struct VethPair {
    /// The end in this namespace, where the program goes.
    near: String,
    /// The end in `netns`, with `peer_addr`.
    far: String,
    netns: String,
    /// The far end's address, and one on its subnet for synack.
    peer_addr: Ipv4Addr,
    synack_addr: Ipv4Addr,
}

impl VethPair {
    /// `tag` tells apart the pairs of tests that run at the same time.
    fn new(tag: u8) -> VethPair {
        let base = format!("sxt{}{}", std::process::id(), tag as char);
        // Each tag gets its own /24 in 198.18.0.0/15.
        let subnet = Ipv4Addr::new(198, 18, tag, 0).octets();
        let pair = VethPair {
            near: format!("{base}b"),
            far: format!("{base}a"),
            netns: base,
            peer_addr: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1),
            synack_addr: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 2),
        };
        // The guard exists before anything is created, so a failure halfway
        // still cleans up what was made.
        ip(&["netns", "add", &pair.netns]);
        ip(&["link", "add", "name", &pair.near, "type", "veth", "peer", "name", &pair.far]);
        ip(&["link", "set", "dev", &pair.far, "netns", &pair.netns]);
        ip(&["link", "set", "dev", &pair.near, "up"]);
        let peer_cidr = format!("{}/24", pair.peer_addr);
        ip(&["-n", &pair.netns, "addr", "add", &peer_cidr, "dev", &pair.far]);
        ip(&["-n", &pair.netns, "link", "set", "dev", &pair.far, "up"]);
        pair
    }

    /// `ip -d link show` of the near end.
    fn show_near(&self) -> String {
        ip(&["-d", "link", "show", "dev", &self.near])
    }

    /// The near end's interface index, as `ip` prints it.
    fn near_ifindex(&self) -> u32 {
        let show = ip(&["-o", "link", "show", "dev", &self.near]);
        show.split(':').next().unwrap().trim().parse().unwrap()
    }

    fn near_mac(&self) -> String {
        let show = ip(&["-o", "link", "show", "dev", &self.near]);
        let mut words = show.split_whitespace();
        words.find(|&word| word == "link/ether").unwrap();
        words.next().unwrap().to_owned()
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
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes last. Errors
        // are for things that were never created.
        let _ = Command::new("ip").args(["link", "del", "dev", &self.near]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).stderr(Stdio::null()).status();
    }
}

fn xdp_prog_shown(show: &str, prog_id: u32) -> bool {
    show.contains(&format!("prog/xdp id {prog_id} "))
}

#[test]
fn attach_steers_live_traffic_and_detaches_on_drop() {
    require_root!();
    let veth = VethPair::new(b'd');
    let mut program = SteerProgram::attach(&veth.near).expect("attach");
    let prog_id = program.prog_id();
    assert_eq!(program.ifindex(), veth.near_ifindex());
    assert_eq!(program.ifname(), veth.near);
    let show = veth.show_near();
    assert!(xdp_prog_shown(&show, prog_id), "{show}");

    // One link per interface: a second program is refused, naming the first.
    match SteerProgram::attach(&veth.near) {
        Err(AttachError::Busy { ifname, prog_id: other }) => {
            assert_eq!(ifname, veth.near);
            assert_eq!(other, prog_id);
        }
        Err(error) => panic!("expected Busy, got {error:?}"),
        Ok(_) => panic!("a second XDP program attached"),
    }
    let busy = AttachError::Busy { ifname: veth.near.clone(), prog_id };
    assert!(busy.to_string().contains("busy: another XDP program"), "{busy}");

    // A SYN from the far namespace to synack's address and port passes
    // through the attached program. No AF_XDP socket is registered, so the
    // program counts redirect_failed and lets the kernel have the frame (the
    // kernel, which does not own the address, drops it).
    program.add_owned_addr(veth.synack_addr).unwrap();
    program.add_listen_port(80).unwrap();
    let mac = veth.near_mac();
    let synack_addr = veth.synack_addr.to_string();
    ip(&["-n", &veth.netns, "neigh", "add", &synack_addr, "lladdr", &mac, "dev", &veth.far]);
    let connect = format!("exec 3<>/dev/tcp/{synack_addr}/80");
    let mut client = Command::new("ip")
        .args(["netns", "exec", &veth.netns, "bash", "-c", &connect])
        .stderr(Stdio::null())
        .spawn()
        .expect("bash in the far namespace");
    let seen = VethPair::wait_for(Duration::from_secs(3), || program.counters().unwrap().redirect_failed >= 1);
    let _ = client.kill();
    let _ = client.wait();
    let counters = program.counters().unwrap();
    assert!(seen.is_some(), "no SYN seen by the program: {counters}");
    assert_eq!(counters.steered(), 0, "{counters}");

    drop(program);
    let show = veth.show_near();
    assert!(!show.contains("prog/xdp"), "still attached after drop: {show}");
    // And unloaded: no fd keeps the program alive (the kernel frees it after
    // an RCU grace period).
    let unloaded = VethPair::wait_for(Duration::from_secs(2), || libbpf_rs::Program::fd_from_id(prog_id).is_err());
    assert!(unloaded.is_some(), "program {prog_id} still loaded after drop");

    // The interface is free again; detach() is the explicit spelling.
    let program = SteerProgram::attach(&veth.near).expect("attach after detach");
    assert!(xdp_prog_shown(&veth.show_near(), program.prog_id()));
    program.detach();
    assert!(!veth.show_near().contains("prog/xdp"));
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

/// The environment variable that turns `helper_attach_and_wait` on.
const HELPER_IFNAME: &str = "SYNACK_XDP_TEST_ATTACH_IFNAME";

/// Not a test on its own: `link_dies_with_the_process` runs this test binary
/// again with only this test and `HELPER_IFNAME` set, to have a process to
/// kill. Without the variable it does nothing.
#[test]
fn helper_attach_and_wait() {
    let Ok(ifname) = std::env::var(HELPER_IFNAME) else {
        return;
    };
    let program = SteerProgram::attach(&ifname).expect("attach in the helper");
    println!("attached prog_id={}", program.prog_id());
    thread::sleep(Duration::from_secs(30));
    panic!("the helper was not killed");
}

#[test]
fn link_dies_with_the_process() {
    require_root!();
    let veth = VethPair::new(b'k');
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_attach_and_wait", "--nocapture", "--test-threads=1"])
        .env(HELPER_IFNAME, &veth.near)
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
    let gone = VethPair::wait_for(Duration::from_secs(2), || !veth.show_near().contains("prog/xdp"));
    assert!(gone.is_some(), "still attached 2 s after kill -9: {}", veth.show_near());
    println!("detached {:?} after kill -9", gone.unwrap());
}
