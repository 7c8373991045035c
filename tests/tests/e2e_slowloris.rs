//! Slowloris against the http app: a client that trickles a request head one byte at a time,
//! and one that says nothing, are cut once the idle timeout passes; a normal client is served.

use std::time::Duration;

use synack_tests::netns::TestNet;
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};

/// Connects, sends a request line and a header, then one byte every 300 ms (never the blank
/// line that ends the head) or nothing (`silent`); prints how the connection ended and when.
const CLIENT: &str = r#"
import socket, sys, time
ip, port, silent = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "silent"
s = socket.create_connection((ip, port), timeout=3)
if not silent:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
start = time.monotonic()
s.settimeout(0.3)
result = "open"
while time.monotonic() - start < 15:
    try:
        if not silent:
            s.sendall(b"X")
        data = s.recv(100)
        result = "eof" if data == b"" else "data"
        break
    except socket.timeout:
        continue
    except (ConnectionResetError, BrokenPipeError):
        result = "reset"
        break
print(result, round(time.monotonic() - start, 2))
"#;

#[test]
fn slowloris_and_silent_clients_are_cut_after_the_idle_timeout() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::from_env();
    if backend.is_kernel() {
        println!("SKIP (synack's own idle timeout; nothing to compare with a kernel stand-in)");
        return;
    }
    let net = TestNet::new("slowloris");
    let config = ServeConfig::new(App::Http, Addressing::Shared, 80).arg("--idle-timeout-s").arg("2");
    let server = Server::start(&backend, &net, &config);
    let ip = net.shared_ip().to_string();
    let slow = net.peer.spawn("python3", &["-c", CLIENT, &ip, "80", "slow"]);
    let silent = net.peer.run("python3", &["-c", CLIENT, &ip, "80", "silent"], Duration::from_secs(30));
    let slow = slow.wait_output(Duration::from_secs(30));
    // A normal client is still served.
    let curl = net.peer.run(
        "curl",
        &["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{ip}:80/100")],
        Duration::from_secs(10),
    );
    let out = server.stop_cleanly(&net.synack);
    for (name, run) in [("slowloris", &slow), ("silent", &silent)] {
        let line = run.stdout.trim().to_string();
        println!("{name} client: {line}");
        let mut parts = line.split_whitespace();
        let (how, secs) = (parts.next().unwrap_or(""), parts.next().and_then(|s| s.parse::<f64>().ok()));
        assert!(how == "eof" || how == "reset", "{name}: the server never cut it: {}", run.describe());
        let secs = secs.expect("elapsed seconds");
        // 2 s timeout, swept every 0.5 s; generous upper bound for a busy machine.
        assert!((1.5..8.0).contains(&secs), "{name}: cut after {secs} s");
    }
    assert_eq!(curl.stdout.trim(), "200", "a normal client is served: {}", curl.describe());
    let cut =
        out.stdout.lines().find_map(|l| l.trim().strip_prefix("app: idle_timeouts ")).map(|n| n.trim().parse::<u64>());
    println!("server: idle_timeouts {cut:?}");
    assert!(matches!(cut, Some(Ok(n)) if n >= 2), "{}", out.stdout);
}
