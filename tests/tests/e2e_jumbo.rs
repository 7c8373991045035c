//! Jumbo frames: a veth pair at MTU 9000, a Linux client sends 1 GB through `synack serve --app
//! echo` and reads it back. synack serves at the interface's MTU (MSS 8960), so its frames of
//! up to 9014 bytes span three 4096-byte UMEM frames each way (AF_XDP multi-buffer): the
//! sha256 of the echo must match, the peer's kernel must have seen segments over 8000 bytes
//! both ways (`ss -ti`: `mss` what it sends, `rcvmss` what it received), and synack's sockets
//! must have received and sent chains (`rx_chained`, `tx_chained` of the `stopped` line).
//! And 9000-byte pings to a dedicated address: synack answers each in place, its reply written
//! into the joined frame and copied back into the chain's own UMEM frames.

use std::time::{Duration, Instant};

use synack_tests::netns::SETUP_TIMEOUT;
use synack_tests::peer::{self, Report};
use synack_tests::queue_stats;
use synack_tests::scenarios::ECHO_PORT;
use synack_tests::{Addressing, App, Backend, Host, ServeConfig, Server, TestNet};

const MTU: u32 = 9000;
const BYTES: u64 = 1_000_000_000;
const LIMIT: Duration = Duration::from_secs(45);

/// ICMP echo from a raw socket: `PING IP SIZE COUNT` sends COUNT echo requests of SIZE payload
/// bytes with DF set, one at a time, and prints `answered N of COUNT` (replies with the same
/// payload).
const PING: &str = r#"
import os, socket, struct, sys, time
ip, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER: IP_PMTUDISC_DO
def checksum(b):
    total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    total = (total >> 16) + (total & 0xffff)
    return ~(total + (total >> 16)) & 0xffff
ident, ok = os.getpid() & 0xffff, 0
for seq in range(count):
    payload = bytes((seq + i) % 251 for i in range(size))
    body = struct.pack("!HH", ident, seq) + payload
    s.sendto(struct.pack("!BBH", 8, 0, checksum(struct.pack("!BBH", 8, 0, 0) + body)) + body, (ip, 0))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65535)
        except socket.timeout:
            break
        ihl = (data[0] & 15) * 4
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if kind == 0 and rid == ident and rseq == seq:
            ok += data[ihl + 8:] == payload
            break
print(f"answered {ok} of {count}")
"#;

/// The sum over queues of one socket counter of a `stopped` line.
fn socket_counter(stopped: &synack_report::Stopped, f: fn(&synack_report::SocketCounters) -> u64) -> u64 {
    stopped.queues.iter().map(|q| f(&q.socket)).sum()
}

/// Sets the MTU of `host`'s veth end.
fn set_mtu(host: &Host, mtu: u32) {
    host.run_ok("ip", &["link", "set", "dev", &host.iface, "mtu", &mtu.to_string()], SETUP_TIMEOUT);
}

/// The largest `mss:` and `rcvmss:` of the TCP sockets towards `remote` (`ss -tin`), 0 where none.
fn segment_sizes(host: &Host, remote: &str) -> (u64, u64) {
    let out = host.run("ss", &["-tinH", "dst", remote], SETUP_TIMEOUT);
    let value = |key: &str| {
        out.stdout
            .split_whitespace()
            .filter_map(|word| word.strip_prefix(key))
            .filter_map(|v| v.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    (value("mss:"), value("rcvmss:"))
}

#[test]
fn a_gigabyte_echoed_at_mtu_9000() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::synack();
    let net = TestNet::new("jumbo");
    set_mtu(&net.synack, MTU);
    set_mtu(&net.peer, MTU);
    let server =
        Server::start(&backend, &net, &ServeConfig::new(App::Echo, Addressing::Shared, ECHO_PORT).arg("--json"));
    let ip = net.shared_ip();
    let remote = format!("{ip}:{ECHO_PORT}");
    let args = [
        "--ip".to_string(),
        ip.to_string(),
        "--port".into(),
        ECHO_PORT.to_string(),
        "--bytes".into(),
        BYTES.to_string(),
        "--timeout".into(),
        LIMIT.as_secs().to_string(),
    ];
    let mut client = peer::spawn(&net.peer, "echo-client", &args);
    // The kernel's view of the connection while it runs: the segment sizes both ways.
    let (mut mss, mut rcvmss) = (0, 0);
    let deadline = Instant::now() + LIMIT + Duration::from_secs(15);
    while client.try_status().is_none() && Instant::now() < deadline {
        let (m, r) = segment_sizes(&net.peer, &remote);
        (mss, rcvmss) = (mss.max(m), rcvmss.max(r));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = client.wait_output(Duration::from_secs(15));
    let r = Report::from_output(&out);
    assert_eq!(r.opt("error"), None, "echo client error: {}\n{}", r.raw, out.describe());
    assert_eq!(r.u64("received"), BYTES, "echoed byte count wrong: {}", r.raw);
    assert_eq!(r.str("sha256"), r.str("expected_sha256"), "echoed bytes differ: {}", r.raw);
    assert!(r.bool("eof"), "no FIN from synack after the echo: {}", r.raw);
    let seconds = r.f64("seconds");
    println!(
        "jumbo: {BYTES} bytes there and back at MTU {MTU} in {seconds:.2} s ({:.0} Mbit/s each way); \
         peer's mss {mss}, rcvmss {rcvmss}",
        BYTES as f64 * 8.0 / seconds / 1e6
    );
    assert!(mss > 8000, "the peer sent segments of at most {mss} bytes: synack did not advertise MTU 9000's MSS");
    assert!(rcvmss > 8000, "the peer received segments of at most {rcvmss} bytes from synack");

    let stdout = server.stop_cleanly(&net.synack).stdout;
    let stopped = queue_stats::stopped(&stdout).expect("no stopped line from synack serve --json");
    let socket =
        |f: fn(&synack_report::SocketCounters) -> u64| stopped.queues.iter().map(|q| f(&q.socket)).sum::<u64>();
    let (rx_chained, tx_chained, dropped) =
        (socket(|s| s.rx_chained), socket(|s| s.tx_chained), socket(|s| s.rx_chains_dropped));
    println!("synack sockets: rx_chained {rx_chained} tx_chained {tx_chained} rx_chains_dropped {dropped}");
    // 1 GB in segments of 8948 bytes is 111,757 of them each way (109,008 and 108,058 chains
    // measured: the ends of the client's writes make some shorter).
    assert!(rx_chained > 50_000, "synack received {rx_chained} multi-buffer frames");
    assert!(tx_chained > 50_000, "synack sent {tx_chained} multi-buffer frames");
    assert_eq!(dropped, 0, "received chains dropped");
}

#[test]
fn pings_of_9000_bytes_are_answered_in_place() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::synack();
    let net = TestNet::new("jumbo-ping");
    set_mtu(&net.synack, MTU);
    set_mtu(&net.peer, MTU);
    // A dedicated address: synack answers its ARP and ICMP echo itself.
    let server =
        Server::start(&backend, &net, &ServeConfig::new(App::Echo, Addressing::Dedicated, ECHO_PORT).arg("--json"));
    // 8972 bytes of payload: a 9000-byte IPv4 packet, a 9014-byte frame in three UMEM frames.
    let ip = net.dedicated_ip().to_string();
    let out = net.peer.run("/usr/bin/python3", &["-c", PING, &ip, "8972", "3"], Duration::from_secs(20));
    assert!(out.stdout.contains("answered 3 of 3"), "pings of 9000 bytes: {}", out.describe());
    let stdout = server.stop_cleanly(&net.synack).stdout;
    let stopped = queue_stats::stopped(&stdout).expect("no stopped line from synack serve --json");
    let (rx_chained, tx_chained) =
        (socket_counter(&stopped, |s| s.rx_chained), socket_counter(&stopped, |s| s.tx_chained));
    println!("jumbo pings: answered 3 of 3; synack sockets: rx_chained {rx_chained} tx_chained {tx_chained}");
    assert!(rx_chained >= 3 && tx_chained >= 3, "the pings and their replies were not chains");
}
