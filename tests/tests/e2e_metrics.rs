//! `--metrics`: synack serves Prometheus text at /metrics while it serves traffic; a real
//! parser (python3-prometheus-client's `text_string_to_metric_families`) reads every family,
//! and the figures match the traffic (curl fetches counted as accepted connections).

use std::time::Duration;

use synack_tests::{Addressing, App, Backend, ServeConfig, Server, TestNet};

/// Debian's python3, where python3-prometheus-client installs (not a python3 earlier on PATH).
const PYTHON: &str = "/usr/bin/python3";

/// Scrapes `url` in the synack namespace, parses the text with prometheus_client and prints
/// `name{labels} value` per sample (or fails with the parser's error).
const SCRAPE: &str = r#"
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    assert r.status == 200, r.status
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    text = r.read().decode()
families = list(text_string_to_metric_families(text))
assert families, "no metric families"
for f in families:
    for s in f.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{f.type} {s.name}{{{labels}}} {s.value}")
print(f"families {len(families)}")
"#;

fn scrape(net: &TestNet, url: &str) -> Vec<String> {
    let out = net.synack.run(PYTHON, &["-c", SCRAPE, url], Duration::from_secs(20));
    assert!(out.success(), "scraping {url} with prometheus_client failed: {}", out.describe());
    out.stdout.lines().map(str::to_string).collect()
}

/// The value of the sample `name{labels}` (labels sorted, as SCRAPE prints them).
fn sample(lines: &[String], name_labels: &str) -> Option<f64> {
    lines.iter().find_map(|l| {
        let mut parts = l.split(' ');
        let (_kind, sample, value) = (parts.next()?, parts.next()?, parts.next()?);
        (sample == name_labels).then(|| value.parse().ok()).flatten()
    })
}

#[test]
fn metrics_parse_and_count_the_traffic() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::synack();
    let net = TestNet::builder("metrics").queues(2).build();
    let metrics = "127.0.0.1:9105";
    let config =
        ServeConfig::new(App::Http, Addressing::Dedicated, 80).arg("--queues").arg("2").arg("--metrics").arg(metrics);
    let mut server = Server::start(&backend, &net, &config);
    let url = format!("http://{metrics}/metrics");

    let before = scrape(&net, &url);
    assert!(sample(&before, "synack_build_info{command=\"serve\",version=\"0.1.0\"}") == Some(1.0), "{before:?}");
    // 40 fetches, then a scrape while the server still runs.
    let fetches = 40;
    let target = format!("http://{}/", net.dedicated_ip());
    for _ in 0..fetches {
        let out = net.peer.run("curl", &["-sS", "-m", "5", "-o", "/dev/null", &target], Duration::from_secs(10));
        assert!(out.success(), "curl: {}", out.describe());
    }
    // Two connections held open by a Linux client: ESTABLISHED in the counts by state.
    let hold = format!(
        "import socket, time\ns = [socket.create_connection(('{}', 80)) for _ in range(2)]\nprint('open', flush=True)\ntime.sleep(20)",
        net.dedicated_ip()
    );
    let mut client = net.peer.spawn(PYTHON, &["-c", &hold]);
    client.wait_for_line("open", Duration::from_secs(10)).expect("the client connects");
    // Each worker publishes its counters and its connections by state every 100 ms, each
    // queue on its own schedule: scrape until both queues' latest figures show every
    // connection accepted and the two held ones established (a loaded machine can delay a
    // publication well past one period), then check them all.
    let held = |lines: &[String]| {
        let sum = |name: &str| (0..2).filter_map(|q| sample(lines, &format!("{name}{{queue=\"{q}\"}}"))).sum::<f64>();
        let established = (0..2)
            .filter_map(|q| {
                sample(lines, &format!("synack_connections_by_state{{queue=\"{q}\",state=\"ESTABLISHED\"}}"))
            })
            .sum::<f64>();
        established == 2.0 && sum("synack_accepted_total") == fetches as f64 + 2.0
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines = scrape(&net, &url);
    while !held(&lines) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        lines = scrape(&net, &url);
    }
    server.assert_running();
    let per_queue = |name: &str| -> f64 {
        (0..2)
            .map(|q| {
                sample(&lines, &format!("{name}{{queue=\"{q}\"}}")).unwrap_or_else(|| panic!("no {name} for queue {q}"))
            })
            .sum()
    };
    let accepted = per_queue("synack_accepted_total");
    assert_eq!(accepted, fetches as f64 + 2.0, "accepted connections over both queues");
    let established: f64 = (0..2)
        .filter_map(|q| sample(&lines, &format!("synack_connections_by_state{{queue=\"{q}\",state=\"ESTABLISHED\"}}")))
        .sum();
    assert_eq!(established, 2.0, "connections by state: {lines:?}");
    drop(client);
    assert!(per_queue("synack_rx_frames_total") >= 3.0 * fetches as f64, "frames received");
    assert!(per_queue("synack_xsk_tx_frames_total") > 0.0);
    let _ = per_queue("synack_connections");
    let _ = per_queue("synack_time_wait_records");
    let _ = per_queue("synack_handed_off_total");
    let _ = per_queue("synack_syn_cookies_sent_total");
    let _ = per_queue("synack_tcp_retransmits_total");
    // Stalls are counted, never more of 10 ms than of 1 ms.
    assert!(per_queue("synack_loop_stalls_10ms_total") <= per_queue("synack_loop_stalls_total"));
    let _ = per_queue("synack_loop_longest_stall_seconds");
    // The kernel's drops of each socket: none at this rate, with 2048 frames lent per socket.
    assert_eq!(per_queue("synack_xsk_kernel_rx_fill_ring_empty_total"), 0.0, "{lines:?}");
    assert_eq!(per_queue("synack_xsk_kernel_rx_ring_full_total"), 0.0, "{lines:?}");
    let _ = per_queue("synack_xsk_kernel_rx_dropped_total");
    assert_eq!(per_queue("synack_xsk_kernel_invalid_descs_total"), 0.0);
    assert!(
        sample(&lines, "synack_drops_total{queue=\"0\",reason=\"bad_checksum\"}").is_some(),
        "drops by reason: {lines:?}"
    );
    let redirected = sample(&lines, "synack_xdp_packets_total{result=\"redirected\"}").expect("XDP counters");
    assert!(redirected >= 3.0 * fetches as f64, "the XDP program redirected {redirected}");
    // A counter never goes down between scrapes.
    assert!(
        sample(&before, "synack_accepted_total{queue=\"0\"}").unwrap()
            <= sample(&lines, "synack_accepted_total{queue=\"0\"}").unwrap()
    );
    println!("{} samples; accepted {accepted}, xdp redirected {redirected}", lines.len() - 1);
    // Anything else is a 404.
    let out = net.synack.run(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9105/nope"],
        Duration::from_secs(10),
    );
    assert_eq!(out.stdout.trim(), "404");
    server.stop_cleanly(&net.synack);
}
