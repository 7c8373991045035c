//! Spoofed frames on an established connection: a station on the segment sends an
//! out-of-window RST and out-of-window data for the connection's 4-tuple from another MAC.
//! synack drops them, and the ACK the data gets still goes to the MAC of the handshake:
//! nothing goes to the spoofed MAC, and the Linux client still gets its echo.

use std::time::Duration;

use synack_tests::netns::TestNet;
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};

/// Connects, checks an echo, sends the spoofed RST (scapy), checks a second echo.
const CLIENT: &str = r#"
import socket, subprocess, sys, time
from scapy.all import AsyncSniffer, Ether, IP, TCP, sendp
ip, port, iface = sys.argv[1], int(sys.argv[2]), sys.argv[3]
SPOOFED = "02:00:00:00:be:ef"
s = socket.create_connection((ip, port), timeout=3)
s.sendall(b"first")
assert s.recv(5) == b"first", "no first echo"
local_ip, local_port = s.getsockname()
neigh = subprocess.run(["ip", "neigh", "show", ip, "dev", iface], capture_output=True, text=True).stdout.split()
server_mac = neigh[neigh.index("lladdr") + 1]
# Whatever synack sends to the spoofed MAC (the veth delivers it; the kernel would drop it).
sniffer = AsyncSniffer(iface=iface, lfilter=lambda p: p.haslayer(Ether) and p[Ether].dst == SPOOFED)
sniffer.start()
time.sleep(0.3)
# An out-of-window RST (dropped), then out-of-window data: its ACK goes out at once.
rst = Ether(src=SPOOFED, dst=server_mac) / IP(src=local_ip, dst=ip) / TCP(sport=local_port, dport=port, flags="R", seq=0x12345678)
data = Ether(src=SPOOFED, dst=server_mac) / IP(src=local_ip, dst=ip) / TCP(sport=local_port, dport=port, flags="PA", seq=0x12345678, ack=1) / b"x"
sendp(rst, iface=iface, verbose=0)
sendp(data, iface=iface, verbose=0)
time.sleep(0.5)
sniffer.stop()
print("frames to the spoofed MAC:", len(sniffer.results or []))
s.sendall(b"again")
s.settimeout(3)
try:
    got = s.recv(5)
except socket.timeout:
    got = b"<timeout>"
print("second echo:", got.decode())
"#;

#[test]
fn a_spoofed_rst_from_another_mac_does_not_redirect_the_connection() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::from_env();
    let net = TestNet::new("spoofed-mac");
    let server = Server::start(&backend, &net, &ServeConfig::new(App::Echo, Addressing::Dedicated, 7));
    let ip = net.dedicated_ip().to_string();
    // Debian's python3, which has scapy.
    let out = net.peer.run("/usr/bin/python3", &["-c", CLIENT, &ip, "7", &net.peer.iface], Duration::from_secs(20));
    let stopped = server.stop();
    println!("client: {}", out.all_text().trim());
    assert!(out.stdout.contains("frames to the spoofed MAC: 0"), "nothing went to the spoofed MAC: {}", out.describe());
    assert!(
        out.stdout.contains("second echo: again"),
        "the connection survived, its echo came back: {}",
        out.describe()
    );
    if !backend.is_kernel() {
        println!("server: {}", stopped.stdout.lines().find(|l| l.contains("counters:")).unwrap_or(""));
    }
}
