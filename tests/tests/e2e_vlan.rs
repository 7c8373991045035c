//! VLAN-tagged frames are not synack's. The peer tags everything its veth end sends with VLAN
//! 10 (a TCX egress BPF program calling `bpf_skb_vlan_push`, loaded by a small python helper:
//! this kernel has no 802.1Q support, so no VLAN sub-interface, but the frames are the ones a
//! sub-interface sends) and curl tries synack's dedicated address (its MAC in a static
//! neighbour entry, since ARP is tagged too). synack serves untagged frames only: whether the
//! tag is in the frame (the peer's TX VLAN offload off: ethertype 0x8100) or travels in
//! metadata (offload on, veth's default: the XDP program bound to the interface asks
//! `bpf_xdp_metadata_rx_vlan_tag`), the program passes the frame to the kernel (which has no
//! VLAN 10 and drops it) and counts it `passed_vlan`: synack answers nothing (an untagged answer
//! would leak across VLANs). Once the tagger is gone, the same client is served.

use std::time::Duration;

use synack_tests::netns::{TestNet, SETUP_TIMEOUT};
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};
use synack_tests::syn_flood::counter;

/// The XDP program's counter `name` from the `xdp:` line synack prints at stop.
fn xdp_counter(out: &synack_tests::Output, name: &str) -> u64 {
    let line = out.stdout.lines().find(|l| l.trim_start().starts_with("xdp:")).unwrap_or("");
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no xdp counter {name} in {}", out.stdout))
}

/// Tags every frame `iface` sends with VLAN `vid` until killed: loads a five-instruction
/// SCHED_CLS program (`bpf_skb_vlan_push`, which puts the tag in the skb's metadata; the device
/// inserts it into the frame unless its TX VLAN offload is on) and attaches it with a TCX
/// egress link (Linux 6.6), which goes away with the process. Prints `tagging` once attached.
const TAGGER: &str = r#"
import ctypes, socket, struct, sys, time
iface, vid = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(321, ctypes.c_long(cmd), buf, ctypes.c_long(128))  # SYS_bpf, x86-64
    if fd < 0:
        raise OSError(ctypes.get_errno(), "bpf(%d)" % cmd)
    return fd
def insn(code, dst, imm):
    return struct.pack("<BBhi", code, dst, 0, imm)
code = b"".join([
    insn(0xb7, 2, 0x0081),  # r2 = htons(ETH_P_8021Q)
    insn(0xb7, 3, vid),     # r3 = the VLAN id
    insn(0x85, 0, 18),      # call bpf_skb_vlan_push(skb, r2, r3)
    insn(0xb7, 0, 0),       # r0 = TCX_PASS
    insn(0x95, 0, 0),       # exit
])
insns = ctypes.create_string_buffer(code, len(code))
gpl = ctypes.create_string_buffer(b"GPL")
# BPF_PROG_LOAD: BPF_PROG_TYPE_SCHED_CLS; then BPF_LINK_CREATE: BPF_TCX_EGRESS.
prog = bpf(5, struct.pack("<IIQQIIQII16s", 3, len(code) // 8, ctypes.addressof(insns), ctypes.addressof(gpl), 0, 0, 0, 0, 0, b"vlan_tag"))
link = bpf(28, struct.pack("<IIII", prog, socket.if_nametoindex(iface), 47, 0))
print("tagging", iface, "vlan", vid, flush=True)
time.sleep(60)
"#;

fn run(tx_vlan_offload: bool) {
    let backend = Backend::from_env();
    if backend.is_kernel() {
        println!("SKIP (synack's XDP program; a kernel stand-in has none)");
        return;
    }
    let net = TestNet::new(if tx_vlan_offload { "vlan-stripped" } else { "vlan-tagged" });
    let server = Server::start(&backend, &net, &ServeConfig::new(App::Http, Addressing::Dedicated, 80));
    let ip = net.dedicated_ip().to_string();
    let mac = net.synack.run_ok("cat", &[format!("/sys/class/net/{}/address", net.synack.iface)], SETUP_TIMEOUT);
    let p = &net.peer;
    let neigh = ["neigh", "replace", &ip, "lladdr", mac.stdout.trim(), "dev", &p.iface, "nud", "permanent"];
    p.run_ok("ip", &neigh, SETUP_TIMEOUT);
    p.run_ok("ethtool", &["-K", &p.iface, "txvlan", if tx_vlan_offload { "on" } else { "off" }], SETUP_TIMEOUT);
    let url = format!("http://{ip}:80/100");
    let curl = |what: &str| {
        let out = p.run(
            "curl",
            &["-sS", "--connect-timeout", "2", "-o", "/dev/null", "-w", "%{http_code}", &url],
            Duration::from_secs(10),
        );
        println!("curl {what}: {:?} {}", out.stdout.trim(), out.stderr.trim());
        out.stdout.trim().to_string()
    };
    let mut tagger = p.spawn("python3", &["-c", TAGGER, &p.iface, "10"]);
    if let Err(e) = tagger.wait_for_line("tagging", Duration::from_secs(10)) {
        panic!("the VLAN tagger did not start: {e}");
    }
    let tagged = curl("tagged with VLAN 10");
    let tagger = tagger.stop(Duration::from_secs(3));
    assert!(tagger.stderr.trim().is_empty(), "{}", tagger.describe());
    let untagged = curl("untagged");
    let out = server.stop_cleanly(&net.synack);
    println!("{}", out.stdout.lines().find(|l| l.trim_start().starts_with("xdp:")).unwrap_or(""));
    assert_ne!(tagged, "200", "synack must not answer a tagged client");
    assert!(xdp_counter(&out, "passed_vlan") >= 2, "the SYN and its retransmission passed as VLAN");
    assert_eq!(counter(&out, "accepted"), 1, "only the untagged client was accepted");
    assert_eq!(untagged, "200", "an untagged client is served");
}

#[test]
fn frames_tagged_in_the_packet_pass_to_the_kernel() {
    if synack_tests::skip_unless_root("network namespaces, veth, VLAN and XDP") {
        return;
    }
    run(false);
}

#[test]
fn frames_whose_tag_was_stripped_into_metadata_pass_to_the_kernel() {
    if synack_tests::skip_unless_root("network namespaces, veth, VLAN and XDP") {
        return;
    }
    run(true);
}
