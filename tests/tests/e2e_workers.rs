//! Two workers on two queues: a veth pair made with `numrxqueues 2 numtxqueues 2`.
//!
//! On veth the receive queue of a frame is the transmit queue the sender picked. The Linux
//! peer has no XPS map on its veth end, so each of its sockets picks a transmit queue by its
//! random `sk_txhash`: its flows spread over synack's two queues. As a server, synack's worker
//! of that queue owns the flow. As a client, synack's worker that opened a connection owns it
//! (by its local port), and the replies of the Linux server land on either queue, so about
//! half of them must be handed to the owner.

use std::time::Duration;

use synack_report::{ConnectSummary, Line};
use synack_tests::peer::{self, Report};
use synack_tests::queue_stats::{self, QueueStats};
use synack_tests::scenarios::ECHO_PORT;
use synack_tests::{Addressing, App, Backend, ServeConfig, Server, TestNet};

const CONNECTIONS: u64 = 200;

/// The interfaces' `rx_frames` counter at stop (hand-offs included), from `--json` output.
fn rx_frames(stdout: &str) -> Option<u64> {
    queue_stats::stopped(stdout).map(|s| s.counter("rx_frames"))
}

/// The `connect_summary` line of `synack connect --json`.
fn connect_summary(stdout: &str) -> Option<ConnectSummary> {
    synack_report::parse_lines(stdout).ok()?.into_iter().find_map(|line| match line {
        Line::ConnectSummary(s) => Some(s),
        _ => None,
    })
}

fn print_queues(queues: &[QueueStats]) {
    for q in queues {
        println!(
            "queue {}: accepted {} connected {} handed_off {} handoff_received {} handoff_dropped_full {}",
            q.queue, q.accepted, q.connected, q.handed_off, q.handoff_received, q.handoff_dropped_full
        );
    }
}

/// (a) `synack serve --app echo --queues 2`, 200 connections from Linux (50 at a time): all
/// succeed, and both workers accepted some of them.
#[test]
fn two_workers_serve_many_linux_clients() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::from_env();
    let net = TestNet::builder("workers-serve").queues(2).build();
    // `--json`: the counters at stop are read as the binary's own types (kernel: ignored).
    let config = ServeConfig::new(App::Echo, Addressing::Shared, ECHO_PORT).arg("--queues").arg("2").arg("--json");
    let server = Server::start(&backend, &net, &config);
    let args: Vec<String> = [
        "--ip",
        &net.shared_ip().to_string(),
        "--port",
        &ECHO_PORT.to_string(),
        "--connections",
        &CONNECTIONS.to_string(),
        "--parallel",
        "50",
        "--bytes",
        "2000",
        "--timeout",
        "60",
    ]
    .map(String::from)
    .to_vec();
    let out = peer::run(&net.peer, "echo-many", &args, Duration::from_secs(90));
    let r = Report::from_output(&out);
    println!("linux clients: {}", r.raw);
    let server_out = server.stop_cleanly(&net.synack);
    let context = format!("clients: {}\nserver: {}", out.describe(), server_out.describe());
    assert_eq!(r.u64("ok"), CONNECTIONS, "every exchange succeeds: {context}");
    assert_eq!(r.u64("failed"), 0, "{context}");
    if backend.is_kernel() {
        return;
    }
    let queues = queue_stats::parse(&server_out.stdout);
    print_queues(&queues);
    assert_eq!(queues.len(), 2, "one line per queue: {context}");
    let accepted: u64 = queues.iter().map(|q| q.accepted).sum();
    assert_eq!(accepted, CONNECTIONS, "every connection accepted once: {context}");
    assert!(
        queues.iter().all(|q| q.accepted > 0),
        "the peer's random per-socket TX queue choice should spread 200 flows over both queues: {queues:?}"
    );
}

/// (b) `synack connect --queues 2 --connections 200` to a Linux echo server: every exchange
/// succeeds, each worker opens half of them, and the replies that land on the other worker's
/// queue are handed off (counted on both sides, none dropped for want of room).
#[test]
fn two_client_workers_hand_off_replies_to_the_owner() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let Backend::Synack(bin) = Backend::from_env() else {
        println!("SKIP: synack connect has no kernel stand-in with several workers");
        return;
    };
    let net = TestNet::builder("workers-connect").queues(2).build();
    let mut server = peer::spawn_server(&net.peer, "echo", net.peer.ip, ECHO_PORT, None);
    server.wait_for_line("ready", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let (ip, target, n) =
        (net.shared_ip().to_string(), format!("{}:{ECHO_PORT}", net.peer.ip), CONNECTIONS.to_string());
    let args = [
        "connect",
        "--iface",
        &net.synack.iface,
        "--ip",
        &ip,
        "--target",
        &target,
        "--bytes",
        "20000",
        "--connections",
        &n,
        "--queues",
        "2",
        "--timeout-s",
        "60",
        "--json",
    ];
    let out = net.synack.run(bin.to_str().unwrap(), &args, Duration::from_secs(90));
    let server_out = server.stop(Duration::from_secs(2));
    let context = format!("client: {}\nserver: {}", out.describe(), server_out.describe());
    assert!(out.success(), "synack connect failed: {context}");
    let summary = connect_summary(&out.stdout).unwrap_or_else(|| panic!("no connect_summary line: {context}"));
    assert_eq!(
        (summary.connections, summary.echoed, summary.bytes, summary.closed, summary.error.as_deref()),
        (CONNECTIONS, CONNECTIONS, 20000, CONNECTIONS, None),
        "every connection echoed 20000 bytes and closed cleanly: {context}"
    );
    let queues = queue_stats::parse(&out.stdout);
    print_queues(&queues);
    assert_eq!(queues.len(), 2, "one line per queue: {context}");
    for q in &queues {
        assert_eq!(q.connected, CONNECTIONS / 2, "connection i opens on worker i mod 2: {queues:?}");
    }
    let handed_off: u64 = queues.iter().map(|q| q.handed_off).sum();
    let received: u64 = queues.iter().map(|q| q.handoff_received).sum();
    let dropped: u64 = queues.iter().map(|q| q.handoff_dropped_full).sum();
    let frames = rx_frames(&out.stdout);
    println!(
        "hand-offs: {handed_off} sent, {received} received, {dropped} dropped (queue full), of {frames:?} frames the \
         interfaces took in"
    );
    assert!(handed_off > 0, "replies landed on the other worker's queue and were handed off: {queues:?}");
    assert_eq!(handed_off, received, "every hand-off sent was received: {queues:?}");
    assert_eq!(queues[0].handed_off, queues[1].handoff_received);
    assert_eq!(queues[1].handed_off, queues[0].handoff_received);
    assert_eq!(dropped, 0, "no hand-off was dropped for want of room: {queues:?}");
    assert!(net.synack.xdp_attachment().is_none(), "XDP program still attached after synack connect exited");
}
