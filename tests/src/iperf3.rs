//! Debian's iperf3 client against `synack serve --app iperf3` (or, to check the checks, against
//! Debian's `iperf3 -s`): each test's `-J` report is read and its byte counts are held against
//! each other and against the line synack prints when a test ends (`iperf3: test N done: ...`),
//! so that both sides' counts are checked: the client's own, and the server's.

use std::time::Duration;

use serde_json::Value;

use crate::netns::TestNet;
use crate::server::{Addressing, App, Backend, ServeConfig, Server};

/// iperf3's port.
pub const IPERF3_PORT: u16 = 5201;
/// How long one client run may take beyond its `-t`.
const CLIENT_SLACK: Duration = Duration::from_secs(20);

/// Who sends, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client sends (iperf3's default).
    Up,
    /// `-R`: the server sends.
    Down,
    /// `--bidir`.
    Both,
}

/// One iperf3 client run.
#[derive(Debug, Clone)]
pub struct Case {
    /// iperf3 arguments after `-c IP -p PORT -J`.
    pub args: Vec<String>,
    pub direction: Direction,
    /// `-P`.
    pub parallel: usize,
    /// `-n`: the client sends exactly this many bytes.
    pub bytes: Option<u64>,
    /// `-t`: the test's length.
    pub seconds: Option<u64>,
}

impl Case {
    /// `-t seconds` with extra arguments (`-R`, `-P 4`, `--bidir`).
    pub fn timed(seconds: u64, direction: Direction, parallel: usize) -> Case {
        let mut args = vec!["-t".to_string(), seconds.to_string(), "-P".into(), parallel.to_string()];
        match direction {
            Direction::Up => {}
            Direction::Down => args.push("-R".into()),
            Direction::Both => args.push("--bidir".into()),
        }
        Case { args, direction, parallel, bytes: None, seconds: Some(seconds) }
    }

    /// `-n bytes`, the client sending.
    pub fn bytes(bytes: u64) -> Case {
        Case {
            args: vec!["-n".into(), bytes.to_string()],
            direction: Direction::Up,
            parallel: 1,
            bytes: Some(bytes),
            seconds: None,
        }
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(5)) + CLIENT_SLACK
    }
}

/// Bytes one direction moved, per the client's report: what the sending side counted and what
/// the receiving side counted (one of them is the server's count, passed on in its results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub sent: u64,
    pub received: u64,
}

/// The totals of an `iperf3 -c ... -J` report.
#[derive(Debug, Clone)]
pub struct ClientReport {
    /// Client to server, and server to client.
    pub up: Flow,
    pub down: Flow,
    pub streams: usize,
    /// The receiving side's seconds of the main direction.
    pub seconds: f64,
}

fn sum(end: &Value, key: &str) -> Option<(Flow, f64)> {
    let s = end.get(key)?;
    Some((Flow { sent: s.get("bytes")?.as_u64()?, received: 0 }, s.get("seconds")?.as_f64()?))
}

impl ClientReport {
    /// Reads the report; `Err` with the reason (iperf3's own `error`, or a missing field).
    pub fn parse(json: &str, direction: Direction) -> Result<ClientReport, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {json}"))?;
        if let Some(error) = v.get("error") {
            return Err(format!("iperf3 reported an error: {error}"));
        }
        let end = v.get("end").ok_or("no `end` in the report")?;
        let flow = |sent: &str, received: &str| -> Result<(Flow, f64), String> {
            let (s, _) = sum(end, sent).ok_or(format!("no end.{sent}"))?;
            let (r, seconds) = sum(end, received).ok_or(format!("no end.{received}"))?;
            Ok((Flow { sent: s.sent, received: r.sent }, seconds))
        };
        let streams = end.get("streams").and_then(Value::as_array).map_or(0, Vec::len);
        let (main, seconds) = flow("sum_sent", "sum_received")?;
        let (up, down) = match direction {
            Direction::Up => (main, Flow::default()),
            Direction::Down => (Flow::default(), main),
            Direction::Both => (main, flow("sum_sent_bidir_reverse", "sum_received_bidir_reverse")?.0),
        };
        Ok(ClientReport { up, down, streams, seconds })
    }
}

/// The line synack prints when a test ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLine {
    pub test: u64,
    pub mode: String,
    pub streams: u64,
    pub seconds: f64,
    /// synack's counts, and the client's as its results message gave them.
    pub received: u64,
    pub sent: u64,
    pub client_sent: u64,
    pub client_received: u64,
}

impl ServerLine {
    /// `iperf3: test 3 done: bidir 2 stream(s) 2.012 s: received R bytes (x Gbit/s) sent S bytes
    /// (y Gbit/s); client sent A received B bytes; cpu 31%`.
    pub fn parse(line: &str) -> Option<ServerLine> {
        let rest = line.split("iperf3: test ").nth(1)?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let after = |key: &str, skip: usize| -> Option<&str> {
            let at = words.iter().position(|w| *w == key)?;
            words.get(at + skip).copied()
        };
        let number = |key: &str| after(key, 1)?.parse().ok();
        Some(ServerLine {
            test: words.first()?.parse().ok()?,
            mode: words.get(2)?.to_string(),
            streams: words.get(3)?.parse().ok()?,
            seconds: words.get(5)?.parse().ok()?,
            received: number("received")?,
            sent: number("sent")?,
            client_sent: words.iter().position(|w| *w == "client").and_then(|c| words.get(c + 2)?.parse().ok())?,
            client_received: words
                .iter()
                .rposition(|w| *w == "received")
                .and_then(|c| words.get(c + 1)?.parse().ok())?,
        })
    }
}

/// What may be in flight per stream when the client ends a test, lost to the receiver's
/// count: the sender's socket buffer and the receiver's (up to 4 and 6 MiB for Linux), and
/// what the sender queues while TEST_END travels, which on a loaded machine can be tens of
/// milliseconds of data: 24 MiB a stream, or a quarter of what was sent if more. (16 MiB for
/// all streams was too little: the kernel's `-t 1 --bidir -P 2` left 29.7 MB of 110.9 MB
/// uncounted in a CI run.)
const IN_FLIGHT_PER_STREAM: u64 = 24 << 20;

/// The client's view of one direction is consistent: the receiver got no more than was sent,
/// and all of it but what can have been in flight when the client ended the test.
#[track_caller]
fn assert_flow(what: &str, flow: Flow, expect_data: bool, streams: usize) {
    if !expect_data {
        assert_eq!(flow, Flow::default(), "{what}: no data expected");
        return;
    }
    assert!(flow.received > 0, "{what}: nothing received: {flow:?}");
    assert!(flow.received <= flow.sent, "{what}: more received than sent: {flow:?}");
    let tolerance = (IN_FLIGHT_PER_STREAM * streams.max(1) as u64).max(flow.sent / 4);
    assert!(
        flow.received + tolerance >= flow.sent,
        "{what}: more than {tolerance} bytes sent were not received: {flow:?}"
    );
}

/// Runs `iperf3 -c` for `case` from the peer and checks its report (and, for synack, the
/// server's line for test number `test`). Returns the report.
#[track_caller]
pub fn run_case(backend: &Backend, net: &TestNet, server: &mut Server, case: &Case, test: u64) -> ClientReport {
    let ip = server.ip.to_string();
    let port = server.port.to_string();
    let mut args: Vec<String> =
        vec!["-c".into(), ip, "-p".into(), port, "-J".into(), "--connect-timeout".into(), "3000".into()];
    args.extend(case.args.iter().cloned());
    let out = net.peer.run("iperf3", &args, case.limit());
    let report = ClientReport::parse(&out.stdout, case.direction)
        .unwrap_or_else(|e| panic!("iperf3 {}: {e}\n{}", case.args.join(" "), out.describe()));
    assert!(out.success(), "iperf3 failed: {}", out.describe());
    let per_direction = if case.direction == Direction::Both { 2 } else { 1 };
    assert_eq!(report.streams, case.parallel * per_direction, "streams in the report");
    assert_flow("client to server", report.up, case.direction != Direction::Down, case.parallel);
    assert_flow("server to client", report.down, case.direction != Direction::Up, case.parallel);
    if let Some(bytes) = case.bytes {
        // iperf3 stops once it has sent at least -n; each stream may have one more block
        // (128 KiB for TCP) in flight when the total is reached (seen against the kernel's
        // server: 10 MiB + 128 KiB with -P 2).
        let most = bytes + case.parallel as u64 * 128 * 1024;
        assert!(
            (bytes..=most).contains(&report.up.sent),
            "-n {bytes}: the client sent {} (at least that, at most a block per stream more)",
            report.up.sent
        );
    }
    if let Some(seconds) = case.seconds {
        let s = seconds as f64;
        assert!(
            report.seconds > s * 0.8 && report.seconds < s * 1.5 + 1.0,
            "-t {seconds}: the test lasted {} s",
            report.seconds
        );
    }
    let gbit = |f: Flow| f.received as f64 * 8.0 / report.seconds / 1e9;
    println!(
        "iperf3 {}: up {:?} down {:?} in {:.2} s: {:.2} + {:.2} Gbit/s against {}",
        case.args.join(" "),
        report.up,
        report.down,
        report.seconds,
        gbit(report.up),
        gbit(report.down),
        backend.name()
    );
    if let Backend::Synack(_) = backend {
        let needle = format!("iperf3: test {test} done");
        let line = server.proc.wait_for_line(&needle, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
        let s = ServerLine::parse(&line).unwrap_or_else(|| panic!("unreadable server line: {line}"));
        println!("synack: {line}");
        // synack's counts are what the client reports for synack's side...
        assert_eq!(s.received, report.up.received, "bytes synack received vs the client's report: {line}");
        assert_eq!(s.sent, report.down.sent, "bytes synack sent vs the client's report: {line}");
        // ...and the client's own counts reached synack unchanged.
        assert_eq!(s.client_sent, report.up.sent, "the client's sent bytes as synack read them: {line}");
        assert_eq!(s.client_received, report.down.received, "the client's received bytes as synack read them: {line}");
        assert_eq!(s.streams as usize, case.parallel, "{line}");
    }
    report
}

/// Starts the iperf3 server (synack's app, or the kernel's iperf3) on a fresh network, runs
/// `cases` one after the other against it (the server serves them in turn), stops it and, for
/// synack, checks that it accepted exactly the control connection and the streams of each test.
pub fn run_cases(backend: &Backend, label: &str, cases: &[Case]) {
    let net = TestNet::new(label);
    // `--json`: the counters at stop are read as the binary's own types (kernel: ignored).
    let config = ServeConfig::new(App::Iperf3, Addressing::Shared, IPERF3_PORT).arg("--json");
    let mut server = Server::start(backend, &net, &config);
    for (i, case) in cases.iter().enumerate() {
        run_case(backend, &net, &mut server, case, i as u64 + 1);
    }
    let out = server.stop();
    if let Backend::Synack(_) = backend {
        assert!(out.success(), "synack serve did not stop cleanly: {}", out.describe());
        let connections: usize =
            cases.iter().map(|c| 1 + c.parallel * if c.direction == Direction::Both { 2 } else { 1 }).sum();
        let accepted: usize = crate::queue_stats::parse(&out.stdout).iter().map(|q| q.accepted as usize).sum();
        assert_eq!(accepted, connections, "connections accepted (a control connection and the streams per test)");
    }
}

/// While one test runs, a second client is refused (iperf3 serves one test at a time) and the
/// first test completes.
pub fn busy_server_refuses(backend: &Backend) {
    let net = TestNet::new("iperf3-busy");
    let mut server = Server::start(backend, &net, &ServeConfig::new(App::Iperf3, Addressing::Shared, IPERF3_PORT));
    let (ip, port) = (server.ip.to_string(), server.port.to_string());
    let mut first = net.peer.spawn("iperf3", &["-c", &ip, "-p", &port, "-J", "-t", "5"]);
    // The second client must arrive while the first test runs, not before it started (a fixed
    // sleep raced a slow start on a loaded machine): wait for the control connection and the
    // data stream, both established from the peer.
    let server_addr = format!("{ip}:{port}");
    let peer_conns =
        || net.peer.tcp_sockets().iter().filter(|l| l.starts_with("ESTAB") && l.ends_with(&server_addr)).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while peer_conns() < 2 {
        assert!(std::time::Instant::now() < deadline, "the first test did not start: {:?}", net.peer.tcp_sockets());
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = net.peer.run(
        "iperf3",
        &["-c", &ip, "-p", &port, "-t", "1", "--connect-timeout", "3000"],
        Duration::from_secs(15),
    );
    assert!(!second.success(), "a second client was served during a test: {}", second.describe());
    assert!(
        second.all_text().contains("busy"),
        "the second client was not told the server is busy: {}",
        second.describe()
    );
    assert!(first.wait_exit(Duration::from_secs(20)).is_some(), "the first test did not end");
    let out = first.snapshot();
    let report = ClientReport::parse(&out.stdout, Direction::Up).unwrap_or_else(|e| panic!("{e}"));
    assert_flow("the first test", report.up, true, 1);
    server.assert_running();
    let _ = server.stop();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_line_is_read() {
        let line = "iperf3: test 4 done: bidir 2 stream(s) 2.001 s: received 365055512 bytes (1.459 Gbit/s) sent \
                    199430632 bytes (0.797 Gbit/s); client sent 365986576 received 199365096 bytes; cpu 37%";
        let s = ServerLine::parse(line).expect("parses");
        assert_eq!(
            s,
            ServerLine {
                test: 4,
                mode: "bidir".into(),
                streams: 2,
                seconds: 2.001,
                received: 365055512,
                sent: 199430632,
                client_sent: 365986576,
                client_received: 199365096,
            }
        );
        assert_eq!(ServerLine::parse("iperf3: test x"), None);
    }

    #[test]
    fn a_bidirectional_report_is_read() {
        let json = r#"{"start":{},"end":{"streams":[{},{}],
            "sum_sent":{"bytes":100,"seconds":2.0},"sum_received":{"bytes":90,"seconds":2.01},
            "sum_sent_bidir_reverse":{"bytes":50,"seconds":2.0},"sum_received_bidir_reverse":{"bytes":49,"seconds":2.0}}}"#;
        let r = ClientReport::parse(json, Direction::Both).unwrap();
        assert_eq!((r.up, r.down, r.streams), (Flow { sent: 100, received: 90 }, Flow { sent: 50, received: 49 }, 2));
        assert_eq!(r.seconds, 2.01);
        let down = ClientReport::parse(json, Direction::Down).unwrap();
        assert_eq!((down.up, down.down), (Flow::default(), Flow { sent: 100, received: 90 }));
        assert!(ClientReport::parse(r#"{"error":"unable to connect"}"#, Direction::Up).unwrap_err().contains("unable"));
        assert!(ClientReport::parse(r#"{"end":{}}"#, Direction::Up).is_err());
    }

    #[test]
    fn the_client_line_is_read() {
        let line = "iperf3 client: bidir 1 stream(s) 2.000 s: sent 407416576 bytes (1.630 Gbit/s) received 397305296 \
                    bytes (1.589 Gbit/s); server received 407284752 sent 397430200 bytes";
        assert_eq!(
            ClientLine::parse(line),
            Some(ClientLine {
                up: Flow { sent: 407416576, received: 407284752 },
                down: Flow { sent: 397430200, received: 397305296 }
            })
        );
    }
}

/// The line `synack iperf3` prints: `iperf3 client: MODE P stream(s) S s: sent X bytes (..)
/// received Y bytes (..); server received A sent B bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLine {
    pub up: Flow,
    pub down: Flow,
}

impl ClientLine {
    pub fn parse(line: &str) -> Option<ClientLine> {
        let words: Vec<&str> = line.split("iperf3 client: ").nth(1)?.split_whitespace().collect();
        let after = |key: &str, nth: usize| -> Option<u64> {
            let at = words.iter().enumerate().filter(|(_, w)| **w == key).nth(nth)?.0;
            words.get(at + 1)?.parse().ok()
        };
        Some(ClientLine {
            up: Flow { sent: after("sent", 0)?, received: after("received", 1)? },
            down: Flow { sent: after("sent", 1)?, received: after("received", 0)? },
        })
    }
}

/// `synack iperf3 -t 1 --bidir` from the peer namespace against synack's iperf3 server (its
/// counts checked against the server's line) and then against the kernel's `iperf3 -s`.
pub fn synack_client(bin: &std::path::Path) {
    let net = TestNet::new("iperf3-client");
    // The kernel server's frames must carry whole checksums for synack to verify them.
    net.synack.run_ok("ethtool", &["-K", &net.synack.iface, "tx", "off"], Duration::from_secs(10));
    let run_client = |target: &str| {
        let args = [
            "iperf3",
            "--iface",
            &net.peer.iface,
            "--ip",
            &net.peer.ip.to_string(),
            "-c",
            target,
            "-t",
            "1",
            "--bidir",
        ]
        .map(str::to_string);
        let out = net.peer.run(bin.to_str().unwrap(), &args, Duration::from_secs(30));
        assert!(out.success(), "synack iperf3 failed: {}", out.describe());
        let line = out.stdout.lines().find(|l| l.contains("iperf3 client:")).unwrap_or_default().to_string();
        let parsed = ClientLine::parse(&line).unwrap_or_else(|| panic!("no client line: {}", out.describe()));
        println!("{line}");
        assert_flow("client to server", parsed.up, true, 1);
        assert_flow("server to client", parsed.down, true, 1);
        parsed
    };
    let backend = Backend::synack_at(bin.to_path_buf());
    let mut server = Server::start(&backend, &net, &ServeConfig::new(App::Iperf3, Addressing::Shared, IPERF3_PORT));
    let target = format!("{}:{IPERF3_PORT}", server.ip);
    let client = run_client(&target);
    let line =
        server.proc.wait_for_line("iperf3: test 1 done", Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    let s = ServerLine::parse(&line).unwrap_or_else(|| panic!("unreadable server line: {line}"));
    assert_eq!((s.received, s.sent), (client.up.received, client.down.sent), "server {line} vs client {client:?}");
    assert_eq!((s.client_sent, s.client_received), (client.up.sent, client.down.received), "{line}");
    let _ = server.stop();
    let mut kernel =
        Server::start(&Backend::Kernel, &net, &ServeConfig::new(App::Iperf3, Addressing::Shared, IPERF3_PORT));
    run_client(&target);
    kernel.assert_running();
    let _ = kernel.stop();
}
