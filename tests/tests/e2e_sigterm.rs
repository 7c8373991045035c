//! SIGTERM to `synack serve` with connections open: every peer is told (an RST at once by
//! default, or a FIN from a connection that finishes within `--drain-s`), instead of being
//! left to its own timeouts on a silent address.

use std::time::Duration;

use synack_tests::netns::TestNet;
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};

/// Opens N connections to the echo server, checks each echoes, prints `open N`, then waits
/// (up to 20 s) until every socket has ended and prints how: `eof E reset R open O`.
const CLIENT: &str = r#"
import select, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection((ip, port), timeout=5)
    s.sendall(b"ping")
    got = b""
    while len(got) < 4:
        got += s.recv(4 - len(got))
    socks.append(s)
print("open", len(socks), flush=True)
eof = reset = 0
live = list(socks)
deadline = time.monotonic() + 20
while live and time.monotonic() < deadline:
    ready, _, _ = select.select(live, [], [], 0.5)
    for s in ready:
        try:
            data = s.recv(100)
            if data == b"":
                eof += 1
                live.remove(s)
        except (ConnectionResetError, BrokenPipeError):
            reset += 1
            live.remove(s)
print("eof", eof, "reset", reset, "open", len(live), flush=True)
"#;

fn run(drain_s: Option<u64>, connections: usize) -> (u64, u64, u64) {
    let backend = Backend::from_env();
    let net = TestNet::new("sigterm");
    let mut config = ServeConfig::new(App::Echo, Addressing::Dedicated, 7);
    if let Some(s) = drain_s {
        config = config.arg("--drain-s").arg(&s.to_string());
    }
    let server = Server::start(&backend, &net, &config);
    let ip = net.dedicated_ip().to_string();
    let mut client = net.peer.spawn("python3", &["-c", CLIENT, &ip, "7", &connections.to_string()]);
    if let Err(e) = client.wait_for_line("open", Duration::from_secs(30)) {
        panic!("the client did not open its connections: {e}");
    }
    let out = server.stop_cleanly(&net.synack);
    let client = client.wait_output(Duration::from_secs(40));
    let line = client.stdout.lines().find(|l| l.starts_with("eof ")).unwrap_or("").to_string();
    println!("server: {}", out.stdout.lines().find(|l| l.starts_with("synack stopped")).unwrap_or(""));
    println!("client: {line}");
    let field = |name: &str| {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == name {
                return words.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
            }
        }
        u64::MAX
    };
    (field("eof"), field("reset"), field("open"))
}

#[test]
fn sigterm_resets_every_open_connection() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    if Backend::from_env().is_kernel() {
        println!("SKIP (synack's stop; a kernel stand-in's is the kernel's)");
        return;
    }
    let (eof, reset, open) = run(None, 200);
    assert_eq!(open, 0, "every peer learned of the stop");
    assert_eq!(eof + reset, 200, "eof {eof} reset {reset}");
    assert!(reset > 0, "the default drain of 0 s resets at once");
}

#[test]
fn a_drain_gives_connections_their_grace_then_resets_them() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    if Backend::from_env().is_kernel() {
        println!("SKIP (synack's stop; a kernel stand-in's is the kernel's)");
        return;
    }
    // The echo connections stay open through the 1 s grace (the client sends nothing more),
    // then are reset: none is left hanging.
    let started = std::time::Instant::now();
    let (eof, reset, open) = run(Some(1), 50);
    assert_eq!((eof + reset, open), (50, 0), "eof {eof} reset {reset} open {open}");
    assert!(started.elapsed() < Duration::from_secs(40));
}
