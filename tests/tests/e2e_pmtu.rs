//! Path MTU discovery through a router: a Linux client behind a link of MTU 1000 (a third
//! namespace, routed by the peer namespace's kernel) sends 400 KB to synack's echo app over
//! 1500-byte links. synack's full-size echo segments cannot cross the small link: the router
//! answers each with ICMP fragmentation-needed (DF is set), which the XDP program steers
//! to synack, and synack lowers the connection's MSS. Without that the transfer stalls.
//!
//! With a link of MTU 500, below the 552 that synack (as Linux's `min_pmtu`) goes down to,
//! segments sized for 552 still cannot cross it with DF set: synack must send them without DF
//! (`pmtu_df_cleared`) and the router fragments them; the client's kernel reassembles.

use std::time::Duration;

use synack_tests::netns::{delete_namespace, Host, TestNet};
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};

const CLIENT: &str = r#"
import socket, sys, threading
ip, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytes(i * 7 % 251 for i in range(total))
s = socket.create_connection((ip, port), timeout=5)
s.settimeout(15)
threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)), daemon=True).start()
got = bytearray()
try:
    while len(got) < total:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
except socket.timeout:
    pass
print("echoed", len(got), "of", total, "intact" if bytes(got) == data else "DIFFERENT")
"#;

/// Deletes the client namespace (and with it its veth pair) even on panic.
struct ClientNs(String);

impl Drop for ClientNs {
    fn drop(&mut self) {
        delete_namespace(&self.0);
    }
}

fn sh(host_ns: Option<&str>, args: &[&str]) {
    let mut cmd = std::process::Command::new("ip");
    if let Some(ns) = host_ns {
        cmd.args(["netns", "exec", ns]);
        cmd.args(args);
    } else {
        cmd.args(&args[1..]);
    }
    let out = cmd.output().expect("running ip");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_transfer_through_a_small_mtu_link_completes() {
    transfer_through_a_link_of(1000);
}

#[test]
fn a_transfer_through_a_link_narrower_than_the_floor_completes_fragmented() {
    if let Some(counters) = transfer_through_a_link_of(500) {
        assert_eq!(counter(&counters, "pmtu_df_cleared"), 1, "the one connection's DF cleared: {counters}");
    }
}

/// A counter of synack's `counters:` line (which leaves out the zeros).
fn counter(counters: &str, name: &str) -> u64 {
    counters
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs the transfer through a client link of `mtu`; returns synack's counters line (None
/// when skipped or run against the kernel stand-in).
fn transfer_through_a_link_of(mtu: u16) -> Option<String> {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return None;
    }
    let mtu = mtu.to_string();
    let backend = Backend::from_env();
    let net = TestNet::new("pmtu");
    let client_ns = ClientNs(format!("{}c", net.id));
    let (router_if, client_if) = (format!("{}r", net.id), format!("{}c", net.id));
    let router = net.peer.ns.as_str();
    sh(None, &["ip", "netns", "add", &client_ns.0]);
    sh(
        None,
        &[
            "ip",
            "link",
            "add",
            "name",
            &router_if,
            "netns",
            router,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &client_ns.0,
        ],
    );
    // The client's link is small both ways, but its route announces MSS 1460 (advmss), as a
    // host behind a tunnel that does not clamp would.
    sh(Some(router), &["ip", "link", "set", "dev", &router_if, "mtu", &mtu, "up"]);
    sh(Some(router), &["ip", "address", "add", "198.19.200.1/24", "dev", &router_if]);
    sh(Some(router), &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    sh(Some(&client_ns.0), &["ip", "link", "set", "dev", &client_if, "mtu", &mtu, "up"]);
    sh(Some(&client_ns.0), &["ip", "address", "add", "198.19.200.2/24", "dev", &client_if]);
    sh(Some(&client_ns.0), &["ip", "route", "add", "default", "via", "198.19.200.1", "advmss", "1460"]);
    for (ns, dev) in [(router, &router_if), (client_ns.0.as_str(), &client_if)] {
        sh(Some(ns), &["ethtool", "-K", dev, "tx", "off"]);
    }
    let client = Host { ns: client_ns.0.clone(), iface: client_if.clone(), ip: "198.19.200.2".parse().unwrap() };

    let server = Server::start(&backend, &net, &ServeConfig::new(App::Echo, Addressing::Shared, 7));
    let ip = net.synack.ip.to_string();
    let total = 400_000;
    let out = client.run("/usr/bin/python3", &["-c", CLIENT, &ip, "7", &total.to_string()], Duration::from_secs(30));
    let stopped = server.stop();
    let report = out.stdout.trim().to_string();
    println!("client: {report}");
    let counters = stopped.stdout.lines().find(|l| l.contains("counters:")).unwrap_or("").to_string();
    println!("server: {counters}");
    assert_eq!(report, format!("echoed {total} of {total} intact"), "{}\n{}", out.describe(), stopped.describe());
    if backend.is_kernel() {
        return None;
    }
    assert!(counter(&counters, "icmp_frag_needed") >= 1, "synack honoured fragmentation-needed: {counters}");
    Some(counters)
}
