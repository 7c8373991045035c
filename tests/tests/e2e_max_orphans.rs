//! `--max-orphans`: 200 idle connections to `synack serve --app http --idle-timeout-s 2
//! --max-orphans 50` from a Linux client that never closes its side. The idle timeout closes
//! all 200 at once (a FIN each); the client's kernel ACKs the FINs, so each would wait in
//! FIN-WAIT-2 for the client's FIN. The orphan limit keeps the newest 50 and resets the 150
//! older ones: `orphans_reset` is 150, `synack stat` shows 50 connections in FIN-WAIT-2, and
//! the client's kernel holds exactly 50 sockets in CLOSE-WAIT (the others were reset, some
//! after their FIN: the client reads those as an EOF).

use std::time::{Duration, Instant};

use synack_tests::netns::TestNet;
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};
use synack_tests::syn_flood::counter;

const PORT: u16 = 80;
const CONNECTIONS: u64 = 200;
const MAX_ORPHANS: u64 = 50;

/// Opens N connections, prints `open N`, then counts how each ends (EOF or reset) without
/// ever closing one; prints `eof E reset R` once all have ended or after 20 s, and holds its
/// sockets until killed.
const CLIENT: &str = r#"
import select, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection((ip, port), timeout=5) for _ in range(n)]
print("open", len(socks), flush=True)
live = list(socks)
eof = reset = 0
deadline = time.monotonic() + 20
while live and time.monotonic() < deadline:
    ready, _, _ = select.select(live, [], [], 0.5)
    for s in ready:
        live.remove(s)
        try:
            if s.recv(100) == b"":
                eof += 1
        except ConnectionResetError:
            reset += 1
print("eof", eof, "reset", reset, flush=True)
time.sleep(60)
"#;

/// synack's connections in `state` (a `synack stat --state` name), all queues.
fn connections_in(bin: &str, pid: u32, state: &str) -> usize {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["stat", "--pid", &pid.to_string(), "--json", "--state", state]);
    let out = synack_tests::process::run(cmd, Duration::from_secs(15));
    assert!(out.success(), "synack stat: {}", out.describe());
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("stat JSON");
    v["connections"].as_array().expect("connections").len()
}

#[test]
fn beyond_max_orphans_the_oldest_orphans_are_reset() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::from_env();
    let Backend::Synack(bin) = &backend else {
        println!("SKIP (synack's orphan limit; nothing to compare with a kernel stand-in)");
        return;
    };
    let bin = bin.to_str().unwrap().to_string();
    let net = TestNet::new("max-orphans");
    let config = ServeConfig::new(App::Http, Addressing::Shared, PORT)
        .arg("--idle-timeout-s")
        .arg("2")
        .arg("--max-orphans")
        .arg(&MAX_ORPHANS.to_string());
    let server = Server::start(&backend, &net, &config);
    let pid = server.proc.pid();
    let ip = net.shared_ip().to_string();
    let mut client = net.peer.spawn("python3", &["-c", CLIENT, &ip, &PORT.to_string(), &CONNECTIONS.to_string()]);
    client.wait_for_line("open", Duration::from_secs(20)).expect("the client opens its connections");
    let line = client.wait_for_line("eof", Duration::from_secs(30)).expect("every connection ends");
    // The orphans left wait in FIN-WAIT-2 for the client's FIN (stat lags up to 100 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fin_wait_2 = connections_in(&bin, pid, "fin-wait-2");
    while fin_wait_2 != MAX_ORPHANS as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fin_wait_2 = connections_in(&bin, pid, "fin-wait-2");
    }
    let close_wait = || {
        let sockets = net.peer.tcp_sockets();
        sockets.iter().filter(|l| l.starts_with("CLOSE-WAIT") && l.contains(&format!("{ip}:{PORT}"))).count()
    };
    let mut peer_close_wait = close_wait();
    while peer_close_wait != MAX_ORPHANS as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        peer_close_wait = close_wait();
    }
    drop(client);
    let out = server.stop_cleanly(&net.synack);
    println!(
        "client: {line}, {peer_close_wait} in CLOSE-WAIT; synack: {fin_wait_2} in FIN-WAIT-2, orphans_reset {}, idle_timeouts {:?}",
        counter(&out, "orphans_reset"),
        out.stdout.lines().find_map(|l| l.trim().strip_prefix("app: idle_timeouts "))
    );
    let words: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(words.iter().sum::<u64>(), CONNECTIONS, "every connection ended: {line}");
    assert_eq!(peer_close_wait, MAX_ORPHANS as usize, "the client holds the kept orphans' other ends");
    assert_eq!(counter(&out, "orphans_reset"), CONNECTIONS - MAX_ORPHANS);
    assert_eq!(fin_wait_2, MAX_ORPHANS as usize, "the newest orphans wait for the client's FIN");
}
