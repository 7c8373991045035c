//! A SYN flood from spoofed, random sources while legit clients connect.
//!
//! A raw-socket sender in the peer namespace sends SYNs to `synack serve --app http
//! --syn-backlog 16` from random sources, drawn only from two sub-ranges of 198.18.0.0/15 that
//! no host has: 198.19.0.0/16 (off synack's /24) and 198.18.N.128/25 (on synack's link, never
//! resolved by ARP). Meanwhile curl fetches from the peer's own address; every fetch must
//! succeed (through SYN cookies, the backlog being full of spoofed half-open entries).
//!
//! How synack answers a source it has no neighbour entry for: a passive connection's replies
//! (the SYN-ACK, its retransmissions, a cookie SYN-ACK) go to the Ethernet source of the SYN,
//! with no ARP and no neighbour entry, whatever the source address. So the flood makes no ARP
//! traffic and fills no neighbour cache (Linux would ARP for every on-link source and overflow
//! its neighbour table, and drop off-link ones it has no route for), and every reply goes back
//! to the one station on the test link the SYNs came from. An nftables ingress chain on the
//! peer's veth end counts what synack sends there: SYN-ACKs to the spoofed sources (all to the
//! peer's MAC) and ARP requests for them (none). The peer's kernel drops the SYN-ACKs (the
//! addresses are not its own; forwarding is off), so nothing leaves the link and no RST frees
//! the half-open entries.

use std::time::{Duration, Instant};

use synack_tests::netns::{TestNet, SETUP_TIMEOUT};
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};
use synack_tests::syn_flood::counter;

const PORT: u16 = 80;
/// Fetches, paced over about 5 s (`curl --rate`) so that they meet the flood all along.
const FETCHES: usize = 200;

/// Sends SYNs (with an MSS option) through a raw socket at `rate` per second, each from a
/// random source in 198.19.0.0/16 or in `<subnet>.128/25` and a random port; prints `flooding`
/// after the first burst and `sent N` when SIGTERM stops it (or after 60 s).
const FLOODER: &str = r#"
import random, signal, socket, struct, sys, time
dst, port, subnet, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF
dst_b = socket.inet_aton(dst)
def source():
    if random.random() < 0.8:
        return bytes([198, 19, random.randrange(256), random.randrange(1, 255)])
    return bytes([198, 18, subnet, random.randrange(128, 255)])
def syn(src):
    # 198.18.0.0/15 only, never anything else.
    assert src[0] == 198 and src[1] in (18, 19), src
    sport = random.randrange(1024, 65536)
    seq = random.getrandbits(32)
    options = struct.pack("!BBH", 2, 4, 1460)
    tcp = struct.pack("!HHIIBBHHH", sport, port, seq, 0, (5 + 1) << 4, 0x02, 64240, 0, 0) + options
    pseudo = src + dst_b + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, 6, 0, src, dst_b)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sent = 0
burst = max(1, rate // 100)
start = time.monotonic()
while not stop and time.monotonic() - start < 60:
    for _ in range(burst):
        s.sendto(syn(source()), (dst, 0))
        sent += 1
    if sent == burst:
        print("flooding", flush=True)
    # Paced against the clock, so a slow loop does not send in bursts to catch up.
    ahead = sent / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print("sent", sent, flush=True)
"#;

/// The peer's view of what synack sends: an nftables netdev ingress chain on its veth end.
fn count_replies(net: &TestNet, spoofed: &str, peer_mac: &str) {
    let iface = &net.peer.iface;
    let rules = format!(
        "table netdev e2e_spoof {{\n\
         chain ingress {{ type filter hook ingress device \"{iface}\" priority 0; policy accept;\n\
         ip daddr {spoofed} tcp flags & (syn | ack) == syn | ack counter comment \"synack_to_spoofed\"\n\
         ether daddr != {peer_mac} ip daddr {spoofed} counter comment \"to_another_mac\"\n\
         arp operation request arp daddr ip {spoofed} counter comment \"arp_for_spoofed\"\n\
         }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{}-spoof.nft", net.id));
    std::fs::write(&path, rules).expect("write nft rules");
    let out = net.peer.run("nft", &["-f", path.to_str().unwrap()], SETUP_TIMEOUT);
    let _ = std::fs::remove_file(&path);
    out.assert_success();
}

/// The packet count of the rule with comment `name` in the peer's `e2e_spoof` table.
fn replies(net: &TestNet, name: &str) -> u64 {
    let out = net.peer.run_ok("nft", &["list", "table", "netdev", "e2e_spoof"], SETUP_TIMEOUT);
    let line = out.stdout.lines().find(|l| l.contains(&format!("\"{name}\""))).unwrap_or_else(|| {
        panic!("no rule {name}: {}", out.stdout);
    });
    let at = line.find("packets ").expect("a counter") + 8;
    line[at..].split_whitespace().next().and_then(|n| n.parse().ok()).expect("a packet count")
}

#[test]
fn legit_clients_connect_through_a_syn_flood_from_spoofed_sources() {
    if synack_tests::skip_unless_root("network namespaces, veth, XDP, raw sockets and nftables") {
        return;
    }
    let backend = Backend::from_env();
    if backend.is_kernel() {
        println!("SKIP (synack's SYN cookies and reply path; the kernel stand-in has no route to the sources)");
        return;
    }
    let net = TestNet::new("spoofed-flood");
    // The peer forwards nothing: a SYN-ACK to a spoofed source ends at its veth end.
    net.peer.run_ok("sysctl", &["-qw", "net.ipv4.ip_forward=0"], SETUP_TIMEOUT);
    let peer_mac = net.peer.run_ok("cat", &[format!("/sys/class/net/{}/address", net.peer.iface)], SETUP_TIMEOUT);
    let peer_mac = peer_mac.stdout.trim().to_string();
    let spoofed = format!("{{ 198.19.0.0/16, 198.18.{}.128/25 }}", net.subnet);
    count_replies(&net, &spoofed, &peer_mac);

    let config = ServeConfig::new(App::Http, Addressing::Shared, PORT).arg("--syn-backlog").arg("16");
    let server = Server::start(&backend, &net, &config);
    let ip = net.shared_ip().to_string();
    let mut flood =
        net.peer.spawn("python3", &["-c", FLOODER, &ip, &PORT.to_string(), &net.subnet.to_string(), "4000"]);
    if let Err(e) = flood.wait_for_line("flooding", Duration::from_secs(10)) {
        panic!("the flooder did not start: {e}");
    }
    // The flood is on once synack answers it (far beyond the backlog of 16).
    let deadline = Instant::now() + Duration::from_secs(20);
    while replies(&net, "synack_to_spoofed") < 2000 {
        assert!(Instant::now() < deadline, "synack did not answer the flood: {}", flood.snapshot().describe());
        std::thread::sleep(Duration::from_millis(100));
    }

    let sizes: Vec<usize> = (0..FETCHES).map(|i| (i * 53) % 2001).collect();
    let started = Instant::now();
    let curl = synack_tests::curl::fetch_all(
        &net,
        sizes.iter().map(|n| format!("http://{ip}:{PORT}/{n}")),
        &[
            "-sS",
            "--no-keepalive",
            "--rate",
            "40/s",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            "-H",
            "Connection: close",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\\n",
        ],
        Duration::from_secs(60),
    );
    let curl_secs = started.elapsed().as_secs_f64();
    assert!(flood.try_status().is_none(), "the flooder ended early: {}", flood.snapshot().describe());
    let flood = flood.stop(Duration::from_secs(3));
    let sent: u64 = flood
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the flooder's count: {}", flood.describe()));
    let (to_spoofed, to_other_mac, arp) =
        (replies(&net, "synack_to_spoofed"), replies(&net, "to_another_mac"), replies(&net, "arp_for_spoofed"));
    let out = server.stop_cleanly(&net.synack);

    let fetched = curl.stdout.lines().zip(&sizes).filter(|(line, n)| *line == format!("200 {n} 1")).count();
    let cookies = |name| counter(&out, name);
    println!(
        "flood: {sent} spoofed SYNs; curl: {fetched} of {FETCHES} fetches right in {curl_secs:.1} s; \
         SYN-ACKs to spoofed sources {to_spoofed} (to another MAC {to_other_mac}), ARP requests for them {arp}; \
         synack: syn_cookies_sent {} accepted {} rejected {}, arp_requests {}, drop_backlog_full {}",
        cookies("syn_cookies_sent"),
        cookies("syn_cookies_accepted"),
        cookies("syn_cookies_rejected"),
        cookies("arp_requests"),
        cookies("drop_backlog_full"),
    );
    assert_eq!(fetched, FETCHES, "every legit fetch succeeds during the flood: {}", curl.describe());
    assert!(sent > 5000, "the flood ran: {sent} SYNs");
    // Every flood SYN that reached synack was answered (no state beyond the backlog: cookies).
    assert!(to_spoofed * 10 >= sent * 9, "{to_spoofed} SYN-ACKs for {sent} SYNs");
    assert!(cookies("syn_cookies_sent") * 10 >= sent * 9, "the flood met cookies");
    // The backlog stays full of spoofed entries: (nearly) every fetch went through a cookie.
    assert!(cookies("syn_cookies_accepted") as usize >= FETCHES * 9 / 10, "fetches through cookies");
    assert_eq!(cookies("syn_cookies_rejected"), 0, "no ACK returned a bad cookie");
    assert_eq!(cookies("drop_backlog_full"), 0, "no SYN dropped with cookies on");
    // Replies stay on the link, to the station the SYNs came from; no ARP for spoofed sources.
    assert_eq!(to_other_mac, 0, "every reply to a spoofed source went to the peer's MAC");
    assert_eq!(arp, 0, "synack sent no ARP request for a spoofed source");
    assert_eq!(cookies("arp_requests"), 0, "synack resolved no neighbour");
}
