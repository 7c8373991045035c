//! `--pcap FILE`: a curl fetch from `synack serve --app http` is captured whole (handshake,
//! request, response, both FINs), as tshark reads it; `--pcap-max-frames N` stops at N frames.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use synack_tests::process::run;
use synack_tests::{Addressing, App, Backend, ServeConfig, Server, TestNet};

/// A capture file under the temp directory, removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One line per frame: `src dst syn ack fin rst tcp_len epoch`.
fn tshark(path: &PathBuf) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(["-T", "fields", "-E", "separator=,"]);
    for field in [
        "ip.src",
        "ip.dst",
        "tcp.flags.syn",
        "tcp.flags.ack",
        "tcp.flags.fin",
        "tcp.flags.reset",
        "tcp.len",
        "frame.time_epoch",
    ] {
        cmd.args(["-e", field]);
    }
    let out = run(cmd, Duration::from_secs(30));
    assert!(out.success(), "tshark -r {}: {}", path.display(), out.describe());
    out.stdout.lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

fn serve_and_fetch(net: &TestNet, pcap: &TempFile, extra: &[&str]) -> String {
    let mut config = ServeConfig::new(App::Http, Addressing::Dedicated, 80).arg("--pcap").arg(pcap.0.to_str().unwrap());
    for a in extra {
        config = config.arg(a);
    }
    let server = Server::start(&Backend::synack(), net, &config);
    let url = format!("http://{}/", net.dedicated_ip());
    let out = net.peer.run(
        "curl",
        &["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", &url],
        Duration::from_secs(10),
    );
    assert_eq!(out.stdout.trim(), "200", "curl: {}", out.describe());
    // The close finishes (synack's FIN, curl's FIN and the last ACK) before the stop: wait
    // until the peer holds no socket to the server but in TIME-WAIT (a fixed sleep can lose
    // the race on a loaded machine), then a little for synack's capture of the last ACK.
    let server_addr = format!("{}:80", net.dedicated_ip());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let open = |l: &String| l.ends_with(&server_addr) && !l.starts_with("TIME-WAIT");
    while net.peer.tcp_sockets().iter().any(open) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    server.stop_cleanly(&net.synack).stdout
}

#[test]
fn a_curl_fetch_is_captured_whole() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let net = TestNet::new("pcap");
    let pcap = TempFile(std::env::temp_dir().join(format!("synack-e2e-{}.pcap", std::process::id())));
    let stdout = serve_and_fetch(&net, &pcap, &[]);
    let frames = tshark(&pcap.0);
    let (server, client) = (net.dedicated_ip().to_string(), net.peer.ip.to_string());
    for f in &frames {
        println!("{}", f.join(" "));
    }
    let has = |src: &str, syn: &str, ack: &str, fin: &str, data: bool| {
        frames.iter().any(|f| {
            f.len() == 8
                && f[0] == src
                && f[2] == syn
                && f[3] == ack
                && f[4] == fin
                && (f[6].parse::<u32>().unwrap_or(0) > 0) == data
        })
    };
    assert!(has(&client, "1", "0", "0", false), "the client's SYN is missing");
    assert!(has(&server, "1", "1", "0", false), "synack's SYN-ACK is missing");
    assert!(frames.iter().any(|f| f.len() == 8 && f[0] == client && f[6] != "0"), "the request is missing");
    assert!(frames.iter().any(|f| f.len() == 8 && f[0] == server && f[6] != "0"), "the response is missing");
    assert!(frames.iter().any(|f| f.len() == 8 && f[0] == client && f[4] == "1"), "the client's FIN is missing");
    assert!(frames.iter().any(|f| f.len() == 8 && f[0] == server && f[4] == "1"), "synack's FIN is missing");
    assert!(!frames.iter().any(|f| f.len() == 8 && f[5] == "1"), "an RST in a clean fetch");
    // Wall-clock timestamps, in order.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let times: Vec<f64> = frames.iter().filter_map(|f| f.get(7)?.parse().ok()).collect();
    assert!(times.iter().all(|t| (now - t).abs() < 120.0), "timestamps far from now ({now}): {times:?}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "timestamps out of order: {times:?}");
    let line = stdout.lines().find(|l| l.contains("pcap:")).unwrap_or("");
    assert!(
        line.contains(&format!("{} frames written", frames.len())),
        "the stop line {line:?} vs {} frames",
        frames.len()
    );
    println!("{} frames captured: {line}", frames.len());
}

#[test]
fn the_frame_bound_stops_the_capture() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let net = TestNet::new("pcapmax");
    let pcap = TempFile(std::env::temp_dir().join(format!("synack-e2e-max-{}.pcap", std::process::id())));
    serve_and_fetch(&net, &pcap, &["--pcap-max-frames", "3"]);
    let frames = tshark(&pcap.0);
    assert_eq!(frames.len(), 3, "--pcap-max-frames 3: {frames:?}");
    // The first three frames in order: the ARP request and synack's reply (dedicated address),
    // then the client's SYN.
    let syn = frames.iter().position(|f| f[2] == "1" && f[3] == "0");
    assert_eq!(syn, Some(2), "the SYN is the third frame, after ARP: {frames:?}");
    assert!(frames[..2].iter().all(|f| f[0].is_empty()), "two ARP frames first: {frames:?}");
}
