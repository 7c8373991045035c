//! A SYN flood against `synack serve --app http` with a tiny SYN backlog, while curl fetches.
//!
//! hping3 in the peer namespace sends SYNs from the peer's own address (no spoofing: docs/testing.md
//! keeps every source in 198.18.0.0/15) with a new source port each, and an nftables rule
//! there drops the peer kernel's RSTs to synack's SYN-ACKs, so each flood SYN that synack
//! queues stays half-open until its SYN-ACK retries run out: the backlog stays full.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::netns::{Host, TestNet, SETUP_TIMEOUT};
use crate::process::Output;
use crate::server::{Addressing, App, Backend, ServeConfig, Server};

/// The port served.
pub const PORT: u16 = 80;
/// The SYN backlog synack gets: the flood fills it at once.
pub const SYN_BACKLOG: usize = 4;

/// synack's interface counters, read from the `counters:` line it prints when it stops (it
/// prints the non-zero ones as `name=value`).
pub fn counter(out: &Output, name: &str) -> u64 {
    let line = out.stdout.lines().find(|l| l.contains("counters:")).unwrap_or("");
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Drops every RST the peer's kernel sends to `to` (it answers the flood's SYN-ACKs with them).
fn drop_peer_resets(net: &TestNet, to: Ipv4Addr) {
    let rules = format!(
        "table inet e2e_flood {{\n\
         chain output {{ type filter hook output priority 0; policy accept; ip daddr {to} tcp flags & rst == rst counter drop; }}\n\
         }}\n"
    );
    let path = std::env::temp_dir().join(format!("{}-flood.nft", net.id));
    std::fs::write(&path, rules).expect("write nft rules");
    let out = net.peer.run("nft", &["-f", path.to_str().unwrap()], SETUP_TIMEOUT);
    let _ = std::fs::remove_file(&path);
    out.assert_success();
}

/// RSTs dropped by `drop_peer_resets` so far.
fn peer_resets_dropped(peer: &Host) -> u64 {
    let out = peer.run_ok("nft", &["list", "table", "inet", "e2e_flood"], SETUP_TIMEOUT);
    out.stdout
        .lines()
        .find_map(|l| l.find("packets ").map(|p| l[p + 8..].split_whitespace().next().unwrap_or("0").to_string()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What one flooded run saw.
pub struct FloodRun {
    /// curl's result lines that were right (`200 N 1`), of `fetches`.
    pub fetched: usize,
    pub fetches: usize,
    /// The peer's RSTs to SYN-ACKs that nftables dropped.
    pub resets_dropped: u64,
    /// synack's final output.
    pub server: Output,
}

/// Serves http with a backlog of [`SYN_BACKLOG`] (cookies on or off), floods it with hping3 at
/// about 2,000 SYN/s, and runs `fetches` curl fetches with `Connection: close` meanwhile.
pub fn curl_through_syn_flood(bin: &Backend, fetches: usize, cookies: bool) -> FloodRun {
    let net = TestNet::new(if cookies { "syn-flood" } else { "syn-flood-nocookie" });
    let mut config =
        ServeConfig::new(App::Http, Addressing::Shared, PORT).arg("--syn-backlog").arg(&SYN_BACKLOG.to_string());
    if !cookies {
        config = config.arg("--no-syn-cookies");
    }
    let server = Server::start(bin, &net, &config);
    let ip = net.shared_ip();
    drop_peer_resets(&net, ip);
    // -S: SYN; -i u500: every 500 us; source ports increase from a random base, so every SYN
    // is a new 4-tuple. Bounded by its count (about 30 s) and stopped below anyway.
    let mut flood =
        net.peer.spawn("hping3", &["-q", "-S", "-p", &PORT.to_string(), "-i", "u500", "-c", "60000", &ip.to_string()]);
    std::thread::sleep(Duration::from_millis(500));

    let sizes: Vec<usize> = (0..fetches).map(|i| (i * 53) % 2001).collect();
    let out = crate::curl::fetch_all(
        &net,
        sizes.iter().map(|n| format!("http://{ip}:{PORT}/{n}")),
        &[
            "-sS",
            "--no-keepalive",
            "--connect-timeout",
            "2",
            "--max-time",
            "4",
            "-H",
            "Connection: close",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\\n",
        ],
        Duration::from_secs(120),
    );
    let fetched = out.stdout.lines().zip(&sizes).filter(|(line, n)| *line == format!("200 {n} 1")).count();
    println!(
        "curl under SYN flood (cookies {}): {fetched} of {fetches} fetches right",
        if cookies { "on" } else { "off" }
    );
    assert!(flood.try_status().is_none(), "hping3 ended early: {}", flood.snapshot().describe());
    let resets_dropped = peer_resets_dropped(&net.peer);
    let _ = flood.stop(Duration::from_secs(1));
    let server_out = server.stop_cleanly(&net.synack);
    for line in server_out.stdout.lines().filter(|l| l.contains("counters:")) {
        println!("  | {line}");
    }
    FloodRun { fetched, fetches, resets_dropped, server: server_out }
}
