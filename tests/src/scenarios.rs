//! The end-to-end scenarios. Each builds its own `TestNet`, runs against a `Backend` (synack
//! or the kernel stand-ins) and asserts; `tests/tests/e2e_*.rs` run them against synack at full
//! size, `tests/tests/harness.rs` against the kernel stand-ins at a small size.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns::{Host, TestNet};
use crate::peer::{self, Report};
use crate::server::{serve_args, Addressing, App, Backend, ServeConfig, Server};

/// The ports the scenarios serve on.
pub const HTTP_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 7;

fn addr(net: &TestNet, addressing: Addressing) -> Ipv4Addr {
    match addressing {
        Addressing::Shared => net.shared_ip(),
        Addressing::Dedicated => net.dedicated_ip(),
    }
}

/// Stops the server at the end of a scenario; for synack asserts the clean stop (exit 0 on
/// SIGTERM, XDP detached) and prints its final lines (counters). Returns its stdout.
fn finish(server: Server, net: &TestNet) -> String {
    let out = server.stop_cleanly(&net.synack);
    let tail: Vec<&str> = out.stdout.lines().rev().take(15).collect();
    println!("server final output (last lines):");
    for line in tail.iter().rev() {
        println!("  | {line}");
    }
    out.stdout
}

/// The loss-recovery counters synack prints when it stops (`tcp_retransmits`,
/// `tcp_rto_timeouts`, `tcp_fast_retransmits`, `tcp_early_retransmits`, `tcp_loss_probes`,
/// `tcp_lost_retransmissions`), from its `counters:` line; a counter it left out (zero) is 0.
/// `None` without a `counters:` line.
pub fn loss_recovery_counters(stdout: &str) -> Option<Vec<(&'static str, u64)>> {
    const NAMES: [&str; 6] = [
        "tcp_retransmits",
        "tcp_rto_timeouts",
        "tcp_fast_retransmits",
        "tcp_early_retransmits",
        "tcp_loss_probes",
        "tcp_lost_retransmissions",
    ];
    let line = stdout.lines().find(|l| l.contains("counters:"))?;
    let value = |name: &str| {
        line.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    Some(NAMES.iter().map(|&n| (n, value(n))).collect())
}

/// Waits (bounded) until `host` has no TCP socket towards `remote` other than in `allowed`
/// states; returns the sockets still there at the deadline.
fn wait_sockets_gone(host: &Host, remote: &str, allowed: &[&str], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<String> = host
            .tcp_sockets()
            .into_iter()
            .filter(|l| l.contains(remote) && !allowed.iter().any(|s| l.starts_with(s)))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn time_wait_towards(host: &Host, remote: &str) -> Vec<String> {
    host.tcp_sockets().into_iter().filter(|l| l.starts_with("TIME-WAIT") && l.contains(remote)).collect()
}

// ------------------------------------------------------------------------------------------
// 1. curl, Connection: close

/// `count` fetches by one curl process, each on a new connection (`Connection: close`), of
/// `GET /N` with N varying from 0 to 3000: every answer 200 with exactly N body bytes, and one
/// new connection per fetch.
pub fn curl_connection_close(backend: &Backend, count: usize) {
    let net = TestNet::new("curl-close");
    let server = Server::start(backend, &net, &ServeConfig::new(App::Http, Addressing::Shared, HTTP_PORT));
    let ip = net.shared_ip();
    let sizes: Vec<usize> = (0..count).map(|i| (i * 37) % 3001).collect();
    let start = Instant::now();
    let out = crate::curl::fetch_all(
        &net,
        sizes.iter().map(|n| format!("http://{ip}:{HTTP_PORT}/{n}")),
        &[
            "-sS",
            "--no-keepalive",
            // A broken server fails the run at its first failed fetch, not after 1,000 of them.
            "--fail-early",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            "-H",
            "Connection: close",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\\n",
        ],
        Duration::from_secs(180),
    );
    let elapsed = start.elapsed();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), count, "curl printed {} result lines for {count} URLs: {}", lines.len(), out.describe());
    let mut bad = Vec::new();
    for (i, (line, n)) in lines.iter().zip(&sizes).enumerate() {
        if *line != format!("200 {n} 1") {
            bad.push(format!("#{i} GET /{n}: `{line}` (want `200 {n} 1`: code, body bytes, new connections)"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {count} fetches wrong, first ones:\n{}\ncurl: {}",
        bad.len(),
        bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
        out.describe()
    );
    assert!(out.success(), "curl failed: {}", out.describe());
    println!(
        "curl: {count} fetches with Connection: close in {:.2} s ({:.0}/s) against {}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        backend.name()
    );
    finish(server, &net);
}

// ------------------------------------------------------------------------------------------
// 2. and 3. bulk echo; server closing first

/// A Linux client sends `bytes` through the echo app while reading the echo, half-closes after
/// sending (the client closes first) and reads until the server's FIN: every byte back, sha256
/// equal, a FIN (not a reset) at the end, and the client's socket in TIME-WAIT (it closed
/// first). With `loss_percent` > 0, nftables in the peer namespace drops that share of
/// packets in each direction, and the transfer must finish within `limit`.
pub fn echo_bulk(backend: &Backend, bytes: u64, addressing: Addressing, loss_percent: u32, limit: Duration) {
    let label = if loss_percent > 0 { "echo-loss" } else { "echo-bulk" };
    let net = TestNet::new(label);
    let server = Server::start(backend, &net, &ServeConfig::new(App::Echo, addressing, ECHO_PORT));
    if loss_percent > 0 {
        net.peer_random_loss(loss_percent);
    }
    let ip = addr(&net, addressing);
    let out = peer::run(
        &net.peer,
        "echo-client",
        &[
            "--ip".into(),
            ip.to_string(),
            "--port".into(),
            ECHO_PORT.to_string(),
            "--bytes".into(),
            bytes.to_string(),
            "--timeout".into(),
            limit.as_secs().to_string(),
        ],
        limit + Duration::from_secs(15),
    );
    let r = Report::from_output(&out);
    assert_eq!(r.opt("error"), None, "echo client error: {}\n{}", r.raw, out.describe());
    assert_eq!(r.u64("sent"), bytes, "{}", r.raw);
    assert_eq!(r.u64("received"), bytes, "echoed byte count wrong: {}", r.raw);
    assert_eq!(r.str("sha256"), r.str("expected_sha256"), "echoed bytes differ: {}", r.raw);
    assert!(r.bool("eof"), "no FIN from the server after the echo: {}", r.raw);
    let seconds = r.f64("seconds");
    assert!(seconds <= limit.as_secs_f64(), "took {seconds} s, limit {limit:?}");
    let remote = format!("{ip}:{ECHO_PORT}");
    let tw = time_wait_towards(&net.peer, &remote);
    assert_eq!(
        tw.len(),
        1,
        "the client closed first, so its socket must be in TIME-WAIT: {:?}",
        net.peer.tcp_sockets()
    );
    let mbit = bytes as f64 * 8.0 / seconds / 1e6;
    print!(
        "echo: {bytes} bytes there and back in {seconds:.2} s ({mbit:.0} Mbit/s each way) against {}",
        backend.name()
    );
    let mut dropped_incoming = 0;
    if loss_percent > 0 {
        let (input, output) = net.peer_loss_counters();
        println!(", {loss_percent}% loss: peer dropped {input} incoming and {output} outgoing packets");
        assert!(input > 0 && output > 0, "the loss rules dropped nothing: in {input}, out {output}");
        dropped_incoming = input;
    } else {
        println!();
    }
    let stdout = finish(server, &net);
    if loss_percent > 0 && !backend.is_kernel() {
        let counters = loss_recovery_counters(&stdout).expect("synack printed no counters line");
        let text: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("synack loss recovery: {}", text.join(" "));
        // The peer's input drops are synack's segments, nearly all data: it must have resent.
        let retransmits = counters[0].1;
        assert!(
            dropped_incoming < 20 || retransmits > 0,
            "peer dropped {dropped_incoming} of synack's packets, yet synack counted no retransmission"
        );
    }
}

/// The server closes first: `GET /<bytes>` with `Connection: close` from a Linux client that
/// never closes before EOF. Status 200, Content-Length and body length equal to `bytes`, the
/// server's FIN ends it, and the client's socket is gone within 3 s (our FIN was acknowledged:
/// nothing in LAST-ACK, and no TIME-WAIT on the client, which did not close first). With the
/// kernel stand-in the body is the pattern and its sha256 is checked too; synack's body bytes
/// are unspecified, so its sha256 is printed only.
pub fn http_bulk_server_closes_first(backend: &Backend, bytes: u64) {
    let net = TestNet::new("http-bulk");
    let server = Server::start(backend, &net, &ServeConfig::new(App::Http, Addressing::Shared, HTTP_PORT));
    let ip = net.shared_ip();
    let out = peer::run(
        &net.peer,
        "http-get",
        &[
            "--ip".into(),
            ip.to_string(),
            "--port".into(),
            HTTP_PORT.to_string(),
            "--path".into(),
            format!("/{bytes}"),
            "--timeout".into(),
            "60".into(),
        ],
        Duration::from_secs(75),
    );
    let r = Report::from_output(&out);
    assert_eq!(r.opt("error"), None, "http client error: {}\n{}", r.raw, out.describe());
    assert_eq!(r.u64("status"), 200, "{}", r.raw);
    assert_eq!(r.u64("content_length"), bytes, "{}", r.raw);
    assert_eq!(r.u64("body_len"), bytes, "{}", r.raw);
    assert!(r.bool("server_closed_first"), "{}", r.raw);
    if backend.is_kernel() {
        assert_eq!(r.str("sha256"), peer::pattern_sha256(bytes), "{}", r.raw);
    }
    let remote = format!("{ip}:{HTTP_PORT}");
    let left = wait_sockets_gone(&net.peer, &remote, &[], Duration::from_secs(3));
    assert!(left.is_empty(), "client socket not closed 3 s after the exchange (FIN not acknowledged?): {left:?}");
    let seconds = r.f64("seconds");
    println!(
        "http: GET /{bytes}, server closing first, in {seconds:.2} s ({:.0} Mbit/s), body sha256 {} against {}",
        bytes as f64 * 8.0 / seconds / 1e6,
        r.str("sha256"),
        backend.name()
    );
    finish(server, &net);
}

// ------------------------------------------------------------------------------------------
// 4. synack as the client

/// Which end of `synack connect` closes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseFirst {
    Client,
    Server,
}

impl CloseFirst {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseFirst::Client => "client",
            CloseFirst::Server => "server",
        }
    }
}

/// `synack connect` (or a kernel client) to a Linux echo server in the peer namespace:
/// `bytes` exchanged, sha256 right on both sides, and the close in the requested order, clean
/// on both sides (FINs, no reset): `local`: the server saw the client's FIN first, and the
/// server's socket is gone within 3 s (no LAST-ACK, no TIME-WAIT on the passive closer);
/// `remote`: the client had not closed when the server closed, and the server's socket is in
/// TIME-WAIT. synack's client port must come from its range (61000-65535).
pub fn client_exchange(backend: &Backend, bytes: u64, close_first: CloseFirst, addressing: Addressing) {
    let net = TestNet::new("client");
    let local_ip = addr(&net, addressing);
    if backend.is_kernel() && addressing == Addressing::Dedicated {
        net.add_kernel_address(local_ip);
    }
    let port = 5001u16;
    let mut server = peer::spawn(
        &net.peer,
        "echo-once",
        &[
            "--ip".into(),
            net.peer.ip.to_string(),
            "--port".into(),
            port.to_string(),
            "--bytes".into(),
            bytes.to_string(),
            "--close-first".into(),
            close_first.as_str().into(),
            "--timeout".into(),
            "30".into(),
        ],
    );
    server.wait_for_line("ready", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let target = format!("{}:{port}", net.peer.ip);
    let start = Instant::now();
    let out = match backend {
        Backend::Synack(bin) => {
            let mut args = vec!["connect", "--iface", &net.synack.iface];
            let ip = local_ip.to_string();
            let b = bytes.to_string();
            args.extend(["--ip", &ip, "--target", &target, "--bytes", &b, "--close-first", close_first.as_str()]);
            net.synack.run(bin.to_str().unwrap(), &args, Duration::from_secs(40))
        }
        Backend::Kernel => peer::run(
            &net.synack,
            "connect",
            &[
                "--ip".into(),
                local_ip.to_string(),
                "--target".into(),
                target.clone(),
                "--bytes".into(),
                bytes.to_string(),
                "--close-first".into(),
                close_first.as_str().into(),
            ],
            Duration::from_secs(40),
        ),
    };
    let elapsed = start.elapsed();
    let expected_sha = peer::pattern_sha256(bytes);
    // After a failed client, the server has nothing more to wait for: do not wait long.
    let server_wait = if out.success() { Duration::from_secs(15) } else { Duration::from_secs(2) };
    let server_out = server.wait_output(server_wait);
    let r = Report::from_output(&server_out);
    let context = format!("client: {}\nserver: {}", out.describe(), server_out.describe());
    assert!(out.success(), "the client failed: {context}");
    let want = format!("received {bytes} bytes sha256 {expected_sha}");
    assert!(out.stdout.lines().any(|l| l.contains(&want)), "client did not print `{want}`: {context}");
    assert!(
        out.stdout.lines().any(|l| l.trim() == "closed" || l.contains("closed")),
        "client did not print `closed`: {context}"
    );
    if !backend.is_kernel() {
        // synack connect reports its time and throughput: 2 x bytes moved.
        let line = out.stdout.lines().find(|l| l.starts_with("elapsed ")).unwrap_or("");
        assert!(
            line.contains("1 of 1 echoed") && line.contains(&format!("({} bytes both ways)", 2 * bytes)),
            "client did not print its elapsed time and throughput: {context}"
        );
    }
    assert_eq!(r.opt("error"), None, "server error: {context}");
    assert_eq!(r.u64("received"), bytes, "{context}");
    assert_eq!(r.str("sha256"), expected_sha, "server received other bytes: {context}");
    assert!(r.bool("eof"), "the server saw no FIN from the client: {context}");
    assert_eq!(r.u64("bytes_after_own_fin"), 0, "{context}");
    let client_fin_first = r.bool("client_fin_first");
    let client_addr = r.str("client").to_string();
    match close_first {
        CloseFirst::Client => {
            assert!(client_fin_first, "the client (local) should have closed first: {context}");
            let left = wait_sockets_gone(&net.peer, &client_addr, &[], Duration::from_secs(3));
            assert!(left.is_empty(), "server socket still there 3 s after the close (FIN not acknowledged?): {left:?}");
        }
        CloseFirst::Server => {
            assert!(!client_fin_first, "the client sent its FIN before the server's: {context}");
            let tw = time_wait_towards(&net.peer, &client_addr);
            assert_eq!(tw.len(), 1, "the server closed first, so it must hold TIME-WAIT: {:?}", net.peer.tcp_sockets());
        }
    }
    if let Backend::Synack(_) = backend {
        let port: u32 = client_addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!((61000..=65535).contains(&port), "synack's client port {port} is outside 61000-65535");
        assert!(net.synack.xdp_attachment().is_none(), "XDP program still attached after synack connect exited");
    }
    println!(
        "client: {bytes} bytes exchanged and closed ({}) from {client_addr} in {:.2} s against {}",
        close_first.as_str(),
        elapsed.as_secs_f64(),
        backend.name()
    );
}

// ------------------------------------------------------------------------------------------
// 5. RST from the dedicated address

/// A SYN to a port of synack's dedicated address without a listener is answered by a reset
/// (the client's connect is refused quickly), while the listening port accepts (so the
/// address is reachable and the reset is synack's: the kernel does not have the address).
pub fn rst_on_dedicated_address(backend: &Backend) {
    let net = TestNet::new("rst");
    let server = Server::start(backend, &net, &ServeConfig::new(App::Echo, Addressing::Dedicated, ECHO_PORT));
    let ip = net.dedicated_ip();
    let probe = |port: u16| {
        let out = peer::run(
            &net.peer,
            "connect-probe",
            &["--ip".into(), ip.to_string(), "--port".into(), port.to_string(), "--timeout".into(), "3".into()],
            Duration::from_secs(10),
        );
        Report::from_output(&out)
    };
    let open = probe(ECHO_PORT);
    assert_eq!(open.str("outcome"), "connected", "control: the listening port must accept: {}", open.raw);
    for port in [ECHO_PORT + 1, 443, 65000] {
        let closed = probe(port);
        assert_eq!(closed.str("outcome"), "refused", "SYN to {ip}:{port} (no listener) not reset: {}", closed.raw);
        println!("rst: connect to {ip}:{port} refused after {} s", closed.str("seconds"));
    }
    if !backend.is_kernel() {
        assert!(!net.kernel_has_address(ip), "the kernel must not have the dedicated address {ip}");
    }
    finish(server, &net);
}

// ------------------------------------------------------------------------------------------
// 6. kill -9

/// The body of the kernel listener that shares synack's port in the kill -9 scenario.
pub const KERNEL_LISTENER_BODY: &str = "kernel-listener";

/// `synack serve` on the shared address and port 80, then a kernel listener on the same address
/// and port: synack answers (`GET /7` gives 7 bytes, not the kernel listener's body) and its
/// XDP program is attached. After `kill -9` the XDP program must be gone within 1 s
/// and the kernel listener must answer within 1 s. With the kernel backend the "server" is a
/// dummy process (nothing attached), which checks the measuring side of the harness.
pub fn kill9_detaches(backend: &Backend) {
    let net = TestNet::new("kill9");
    let ip = net.shared_ip();
    // The kernel's listener on the same port starts once synack serves: synack refuses, on a
    // shared address, a port the kernel already listens on.
    let start_listener = || {
        let mut listener = peer::spawn_server(&net.synack, "http", ip, HTTP_PORT, Some(KERNEL_LISTENER_BODY));
        listener.wait_for_line("ready", Duration::from_secs(10)).unwrap_or_else(|e| panic!("kernel listener: {e}"));
        listener
    };
    let _listener;
    let get = |path: &str| {
        let out = peer::run(
            &net.peer,
            "http-get",
            &[
                "--ip".into(),
                ip.to_string(),
                "--port".into(),
                HTTP_PORT.to_string(),
                "--path".into(),
                path.into(),
                "--timeout".into(),
                "5".into(),
            ],
            Duration::from_secs(10),
        );
        Report::from_output(&out)
    };
    let mut server = match backend {
        Backend::Synack(_) => {
            let server = Server::start(backend, &net, &ServeConfig::new(App::Http, Addressing::Shared, HTTP_PORT));
            let xdp = net.synack.xdp_attachment();
            assert!(xdp.is_some(), "no XDP program attached while synack serves:\n{}", net.synack.link_details());
            println!("kill9: attached while serving: {}", xdp.unwrap());
            let r = get("/7");
            assert_eq!(r.opt("error"), None, "{}", r.raw);
            assert_eq!(r.u64("body_len"), 7, "synack must answer GET /7: {}", r.raw);
            _listener = start_listener();
            let r = get("/7");
            assert_eq!(r.u64("body_len"), 7, "synack still answers GET /7, not the kernel listener: {}", r.raw);
            server.proc
        }
        Backend::Kernel => {
            _listener = start_listener();
            let r = get("/7");
            assert_eq!(r.u64("body_len"), KERNEL_LISTENER_BODY.len() as u64, "{}", r.raw);
            let mut dummy = net.synack.spawn("sh", &["-c", "echo ready; exec sleep 60"]);
            dummy.wait_for_line("ready", Duration::from_secs(5)).unwrap();
            dummy
        }
    };
    let mut poller = peer::spawn(
        &net.peer,
        "wait-body",
        &[
            "--ip".into(),
            ip.to_string(),
            "--port".into(),
            HTTP_PORT.to_string(),
            "--expect".into(),
            KERNEL_LISTENER_BODY.into(),
            "--within".into(),
            "3".into(),
            "--attempt-timeout".into(),
            "0.05".into(),
        ],
    );
    poller.wait_for_line("ready", Duration::from_secs(10)).unwrap_or_else(|e| panic!("poller: {e}"));

    let killed_at = Instant::now();
    server.signal(libc::SIGKILL);
    poller.write_stdin("go\n");
    let mut detached_after = None;
    while killed_at.elapsed() < Duration::from_secs(3) {
        if net.synack.xdp_attachment().is_none() {
            detached_after = Some(killed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let answer = poller.wait_for_line("answered", Duration::from_secs(5));
    let answered_after = killed_at.elapsed();
    let status = server.wait_exit(Duration::from_secs(2));
    assert!(status.is_some(), "the server survived kill -9");
    let answer = answer.unwrap_or_else(|e| panic!("poller: {e}"));
    let report = peer::parse_flat_json(&answer).expect("poller JSON");
    let detached_after = detached_after.expect("XDP program still attached 3 s after kill -9");
    println!(
        "kill9: XDP gone {:.1} ms after kill -9; kernel listener answered {:.1} ms after (poller: {answer}) against {}",
        detached_after.as_secs_f64() * 1e3,
        answered_after.as_secs_f64() * 1e3,
        backend.name()
    );
    assert_eq!(report.get("answered").map(String::as_str), Some("true"), "kernel listener never answered: {answer}");
    assert!(detached_after <= Duration::from_secs(1), "XDP detached only after {detached_after:?}");
    let poller_seconds: f64 = report["seconds"].parse().unwrap();
    assert!(poller_seconds <= 1.0, "the kernel answered only {poller_seconds} s after kill -9");
}

// ------------------------------------------------------------------------------------------
// 7. wrk

/// wrk's summary.
#[derive(Debug, Clone, Default)]
pub struct WrkSummary {
    pub requests: u64,
    pub requests_per_second: f64,
    /// `Socket errors: connect A, read B, write C, timeout D`, summed (0 if absent).
    pub socket_errors: u64,
    pub socket_errors_line: Option<String>,
    /// `Non-2xx or 3xx responses: N` (0 if absent).
    pub non_2xx_3xx: u64,
}

/// Parses wrk's text output.
pub fn parse_wrk(text: &str) -> Option<WrkSummary> {
    let mut s = WrkSummary::default();
    let mut saw_requests = false;
    for line in text.lines().map(str::trim) {
        if let Some(pos) = line.find(" requests in ") {
            s.requests = line[..pos].trim().parse().ok()?;
            saw_requests = true;
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            s.requests_per_second = rest.trim().parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            s.socket_errors_line = Some(line.to_string());
            s.socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last())
                .map(|n| n.parse::<u64>().unwrap_or(u64::MAX / 8))
                .sum();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            s.non_2xx_3xx = rest.trim().parse().ok()?;
        }
    }
    saw_requests.then_some(s)
}

/// wrk, 16 connections, 2 threads, for `duration`, against `GET /100`, keep-alive or with
/// `Connection: close`: at least `min_requests` done, no socket error, no non-2xx answer.
pub fn wrk_http(backend: &Backend, connection_close: bool, duration: Duration, min_requests: u64) {
    let net = TestNet::new(if connection_close { "wrk-close" } else { "wrk-keepalive" });
    let server = Server::start(backend, &net, &ServeConfig::new(App::Http, Addressing::Shared, HTTP_PORT));
    let url = format!("http://{}:{HTTP_PORT}/100", net.shared_ip());
    let secs = format!("{}s", duration.as_secs().max(1));
    let mut args = vec!["-t2", "-c16", "-d", &secs, "--timeout", "2s"];
    if connection_close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(&url);
    let out = net.peer.run("wrk", &args, duration + Duration::from_secs(20));
    assert!(out.success(), "wrk failed: {}", out.describe());
    let s = parse_wrk(&out.stdout).unwrap_or_else(|| panic!("cannot parse wrk's output: {}", out.describe()));
    let mode = if connection_close { "Connection: close" } else { "keep-alive" };
    println!(
        "wrk ({mode}): {} requests, {:.0} requests/s, socket errors {}, non-2xx/3xx {} against {}",
        s.requests,
        s.requests_per_second,
        s.socket_errors_line.as_deref().unwrap_or("none"),
        s.non_2xx_3xx,
        backend.name()
    );
    // The python stand-in manages a few hundred requests per second; synack must do far more.
    let min_requests = if backend.is_kernel() { min_requests / 10 } else { min_requests };
    assert!(s.requests >= min_requests, "only {} requests ({mode}), want {min_requests}: {}", s.requests, out.stdout);
    let hint = if connection_close {
        "\n(wrk counts a read error for every connection the server closes unless the response \
         carries `Connection: close`, RFC 9112 9.6)"
    } else {
        ""
    };
    assert_eq!(s.socket_errors, 0, "socket errors ({mode}): {}{hint}", out.stdout);
    assert_eq!(s.non_2xx_3xx, 0, "non-2xx/3xx responses ({mode}): {}", out.stdout);
    finish(server, &net);
}

// ------------------------------------------------------------------------------------------
// 8. errors of synack serve

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the binary where the unprivileged user can execute it (the worktree may not be
/// readable by `nobody`, which would make the permission case fail for the wrong reason).
fn world_executable_copy(bin: &Path, id: &str) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("{id}-bin"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("synack");
    std::fs::copy(bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (TempDir(dir), copy)
}

/// Key files an attacker could have left, one directory each (mode 0700 unless named
/// otherwise): `symlink` (to /dev/zero), `short` (5 bytes), `mode` (0644), `owner` (nobody's),
/// `open-dir` (a good key in a directory of mode 0777).
fn tampered_key_files(id: &str) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("{id}-keys"));
    let _ = std::fs::remove_dir_all(&root);
    let guard = TempDir(root.clone());
    let make = |name: &str, dir_mode: u32| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
        dir.join("isn-key")
    };
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    std::os::unix::fs::symlink("/dev/zero", make("symlink", 0o700)).unwrap();
    write(&make("short", 0o700), b"short", 0o600);
    write(&make("mode", 0o700), &[7; 16], 0o644);
    let owner = make("owner", 0o700);
    write(&owner, &[7; 16], 0o600);
    let status = std::process::Command::new("chown").args(["65534", owner.to_str().unwrap()]).status().unwrap();
    assert!(status.success(), "chown to nobody");
    write(&make("open-dir", 0o777), &[7; 16], 0o600);
    (guard, root)
}

/// One error case: what to change, and words of which the message must contain at least one.
struct ErrorCase {
    name: &'static str,
    args: Vec<String>,
    as_nobody: bool,
    keywords: &'static [&'static str],
}

/// `synack serve` with a bad interface, too many or too few queues, address, port, a tampered key file, or without
/// privileges: each exits
/// by itself (no signal, no panic) with a non-zero status within 10 s, without printing
/// `ready`, with a message naming the problem, and leaves no XDP program attached. A control
/// run with valid arguments must become ready first (so the cases fail for their own reason).
pub fn serve_errors(backend: &Backend) {
    let bin = match backend {
        Backend::Synack(bin) => bin.clone(),
        Backend::Kernel => {
            println!("serve errors: nothing to check against kernel stand-ins (synack's own argument checks)");
            return;
        }
    };
    // Two receive queues: serving one of them is refused unless asked for.
    let net = TestNet::builder("serve-errors").queues(2).build();
    let valid = ServeConfig::new(App::Echo, Addressing::Shared, ECHO_PORT).arg("--queues").arg("2");
    let control = Server::start(backend, &net, &valid);
    finish(control, &net);

    let base = serve_args(&net, &valid);
    let with = |flag: &str, value: &str| -> Vec<String> {
        let mut args = base.clone();
        let i = args.iter().position(|a| a == flag).map(|i| i + 1);
        match i {
            Some(i) => args[i] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
        args
    };
    // Kernel listeners on the shared address and on the wildcard: those ports are the kernel's.
    let shared = net.shared_ip();
    let _kernel_listeners =
        [format!("TCP4-LISTEN:7001,bind={shared},reuseaddr,fork"), "TCP4-LISTEN:7002,reuseaddr,fork".into()]
            .map(|listen| net.synack.spawn("socat", &[listen.as_str(), "EXEC:/bin/cat"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !["7001", "7002"]
        .iter()
        .all(|p| net.synack.tcp_sockets().iter().any(|s| s.starts_with("LISTEN") && s.contains(&format!(":{p} "))))
    {
        assert!(std::time::Instant::now() < deadline, "socat never listened: {:?}", net.synack.tcp_sockets());
        std::thread::sleep(Duration::from_millis(50));
    }
    let missing_if = format!("{}x", net.id);
    let (_keys, tampered) = tampered_key_files(&net.id);
    let key = |name: &str| with("--key-file", tampered.join(name).join("isn-key").to_str().unwrap());
    let cases = vec![
        ErrorCase {
            name: "key file a symlink to /dev/zero",
            args: key("symlink"),
            as_nobody: false,
            keywords: &["symbolic link"],
        },
        ErrorCase { name: "key file of 5 bytes", args: key("short"), as_nobody: false, keywords: &["16"] },
        ErrorCase { name: "key file mode 0644", args: key("mode"), as_nobody: false, keywords: &["mode"] },
        ErrorCase { name: "key file owned by nobody", args: key("owner"), as_nobody: false, keywords: &["owned by"] },
        ErrorCase {
            name: "key directory mode 0777",
            args: key("open-dir"),
            as_nobody: false,
            keywords: &["mode 0777"],
        },
        ErrorCase {
            name: "no such interface",
            args: with("--iface", &missing_if),
            as_nobody: false,
            keywords: &["interface", "no such device", "not found", "does not exist"],
        },
        ErrorCase {
            name: "queue out of range (--queues 4 on a 2-queue veth)",
            args: with("--queues", "4"),
            as_nobody: false,
            keywords: &["queue"],
        },
        ErrorCase {
            name: "--queues 1 on a 2-queue veth",
            args: with("--queues", "1"),
            as_nobody: false,
            keywords: &["--allow-partial-queues"],
        },
        ErrorCase {
            name: "bad address 300.1.1.1",
            args: with("--ip", "300.1.1.1"),
            as_nobody: false,
            keywords: &["300.1.1.1", "address"],
        },
        ErrorCase {
            name: "port the kernel listens on (socat bound to the shared address)",
            args: with("--port", "7001"),
            as_nobody: false,
            keywords: &["kernel already listens on port 7001"],
        },
        ErrorCase {
            name: "port the kernel listens on (socat on the wildcard)",
            args: with("--port", "7002"),
            as_nobody: false,
            keywords: &["kernel already listens on port 7002"],
        },
        ErrorCase { name: "bad port 0", args: with("--port", "0"), as_nobody: false, keywords: &["port"] },
        ErrorCase {
            name: "bad port 70000",
            args: with("--port", "70000"),
            as_nobody: false,
            keywords: &["port", "70000"],
        },
        ErrorCase {
            name: "no privileges (nobody)",
            args: base.clone(),
            as_nobody: true,
            keywords: &["permission", "privilege", "not permitted", "root", "cap_"],
        },
    ];
    let (_tmp, nobody_bin) = world_executable_copy(&bin, &net.id);
    let mut failures = Vec::new();
    for case in &cases {
        let out = if case.as_nobody {
            let mut args: Vec<String> =
                ["--reuid=65534", "--regid=65534", "--clear-groups", "--"].iter().map(|s| s.to_string()).collect();
            args.push(nobody_bin.to_string_lossy().into_owned());
            args.extend(case.args.iter().cloned());
            net.synack.run("setpriv", &args, Duration::from_secs(10))
        } else {
            net.synack.run(bin.to_str().unwrap(), &case.args, Duration::from_secs(10))
        };
        let text = out.all_text();
        let lower = text.to_lowercase();
        let mut problems = Vec::new();
        if out.timed_out {
            problems.push("still running after 10 s".to_string());
        }
        match out.status.and_then(|s| s.code()) {
            Some(0) => problems.push("exit status 0".into()),
            Some(_) => {}
            None if !out.timed_out => problems.push(format!("killed by a signal ({:?}): a crash?", out.status)),
            None => {}
        }
        if out.stdout.lines().any(|l| l.contains("ready")) {
            problems.push("printed `ready`".into());
        }
        if lower.contains("panicked at") {
            problems.push("panicked instead of a clear message".into());
        }
        if text.trim().is_empty() {
            problems.push("no message at all".into());
        } else if !case.keywords.iter().any(|k| lower.contains(k)) {
            problems.push(format!("message names none of {:?}", case.keywords));
        }
        if case.as_nobody && lower.contains("setpriv:") {
            problems.push("setpriv itself failed (the case did not run)".into());
        }
        if let Some(xdp) = net.synack.xdp_attachment() {
            problems.push(format!("left an XDP program attached: {xdp}"));
        }
        let message = text.trim().lines().last().unwrap_or("").to_string();
        println!("serve error case `{}`: exit {:?}, message: {message}", case.name, out.status.and_then(|s| s.code()));
        if !problems.is_empty() {
            failures.push(format!("case `{}`: {}\n{}", case.name, problems.join("; "), out.describe()));
        }
    }
    assert!(failures.is_empty(), "{} error case(s) wrong:\n{}", failures.len(), failures.join("\n\n"));
}
