//! Connection churn with the client closing first: `synack load` holds a connection rate from
//! a narrow port range for longer than twice its TIME_WAIT, which only works by reusing ports
//! from TIME_WAIT (RFC 6191, timestamps). Against `synack serve --app http`, then against nginx
//! on the Linux stack.
//!
//! ```text
//!  namespace ...s (load)                          namespace ...p (server)
//!  synack load 198.18.N.3 (dedicated) <== veth ==> synack serve 198.18.N.4 (dedicated)
//!                                                  or nginx on the kernel's 198.18.N.2
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use synack_tests::load_report::LoadReport;
use synack_tests::netns::{Host, SETUP_TIMEOUT};
use synack_tests::server::READY_TIMEOUT;
use synack_tests::{Backend, Output, TestNet};

/// TIME_WAIT on the load side, short so that the test outlasts it twice.
const TIME_WAIT_MS: u64 = 2_000;
const PORT: u16 = 8080;

fn synack_bin() -> PathBuf {
    match Backend::synack() {
        Backend::Synack(bin) => bin,
        Backend::Kernel => unreachable!("Backend::synack() is the binary"),
    }
}

/// The load run: what it is asked, and the smallest connection count that proves ports were
/// reused (more than the port range allows without reuse).
struct Churn {
    rate: u64,
    duration_s: u64,
    ports: (u16, u16),
    linger_s: u64,
}

impl Churn {
    fn port_count(&self) -> u64 {
        u64::from(self.ports.1 - self.ports.0) + 1
    }

    /// Without reuse every port waits out TIME_WAIT after each use: over the run, each can
    /// serve at most ceil(duration / TIME_WAIT) connections.
    fn ceiling_without_reuse(&self) -> u64 {
        self.port_count() * (self.duration_s * 1000).div_ceil(TIME_WAIT_MS)
    }

    fn args(&self, net: &TestNet, target: &str) -> Vec<String> {
        let load_ip = Ipv4Addr::new(198, 18, net.subnet, 3);
        [
            "load",
            "--iface",
            &net.synack.iface,
            "--ip",
            &load_ip.to_string(),
            "--target",
            target,
            "--rate",
            &self.rate.to_string(),
            "--duration",
            &self.duration_s.to_string(),
            "--local-ports",
            &format!("{}-{}", self.ports.0, self.ports.1),
            "--time-wait-ms",
            &TIME_WAIT_MS.to_string(),
            "--linger",
            &self.linger_s.to_string(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs `synack load` in the load namespace.
    fn run(&self, net: &TestNet, target: &str) -> Output {
        let bin = synack_bin();
        let out = net.synack.run(bin.to_str().unwrap(), &self.args(net, target), Duration::from_secs(90));
        println!("{}", out.stdout.trim_end());
        println!("{}", out.stderr.trim_end());
        out
    }

    /// Checks what every churn run must show.
    fn check_output(&self, out: &Output) {
        assert!(out.success(), "synack load failed: {}", out.describe());
        let report = LoadReport::parse(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
        self.check(&report, out);
    }

    fn check(&self, r: &LoadReport, out: &Output) {
        let offered = self.rate * self.duration_s;
        let connections = r.get("connections") as u64;
        let achieved = r.get("conn_per_s");
        println!(
            "achieved {achieved:.0} connections/s of {} offered ({connections} of {offered} connections); \
             {} without port reuse at most",
            self.rate,
            self.ceiling_without_reuse()
        );
        if connections < offered {
            println!(
                "NOTE: this machine did not hold {} connections/s (achieved {achieved:.0}/s, not started {})",
                self.rate,
                r.get("not_started")
            );
        }
        // No failed connection, none left unfinished, nothing the server answered wrongly.
        assert_eq!(r.get("errors"), 0.0, "errors: {}", out.describe());
        assert_eq!(r.get("unfinished"), 0.0);
        assert!(r.lines.iter().all(|l| l.errors == 0));
        // More connections than the ports could carry without reuse, and the reuse path taken.
        assert!(
            connections > self.ceiling_without_reuse(),
            "{connections} connections: no more than the {} that {} ports allow without reuse",
            self.ceiling_without_reuse(),
            self.port_count()
        );
        let reuses = r.get("port_reuses") as u64;
        assert!(reuses > 0, "no port was reused from TIME_WAIT");
        assert_eq!(r.lines.iter().map(|l| l.reused).sum::<u64>(), reuses, "the per-second reuses add up");
        assert_eq!(r.stopped.counter("time_wait_reused"), reuses, "the interface counted the reuses: {:?}", r.stopped);
        // TIME_WAIT appears during the load, bounded by the port range (one record per port and
        // destination), and expires after the load: the last seconds show it falling to 0.
        let peak = r.lines.iter().map(|l| l.time_wait).max().unwrap_or(0);
        assert!(peak > 0, "no TIME_WAIT during the load");
        assert!(peak <= self.port_count(), "TIME_WAIT {peak} above the {} ports", self.port_count());
        assert_eq!(r.get("time_wait_peak") as u64, peak);
        let after: Vec<_> = r.lines.iter().filter(|l| l.t > self.duration_s).collect();
        assert!(after.len() as u64 >= self.linger_s, "lingered {} s", after.len());
        let first_after = after.first().expect("lines after the load");
        let last = r.lines.last().expect("lines");
        assert!(
            first_after.time_wait > 0 || r.lines[self.duration_s as usize - 1].time_wait > 0,
            "TIME_WAIT was there when the load ended"
        );
        assert_eq!(last.time_wait, 0, "TIME_WAIT expired {} s after the load", self.linger_s);
        assert_eq!(r.get("time_wait_end"), 0.0);
        // Nothing starts after the load (in-flight connections may still finish).
        assert!(after.iter().all(|l| l.reused == 0));
    }
}

/// `synack serve --app http` on the peer's dedicated address 198.18.N.4, ready.
fn start_synack_http(net: &TestNet) -> (synack_tests::Proc, Ipv4Addr) {
    let ip = Ipv4Addr::new(198, 18, net.subnet, 4);
    let bin = synack_bin();
    let args =
        ["serve", "--iface", &net.peer.iface, "--ip", &ip.to_string(), "--port", &PORT.to_string(), "--app", "http"];
    let mut server = net.peer.spawn(bin.to_str().unwrap(), &args);
    server.wait_for_line("ready", READY_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    (server, ip)
}

#[test]
fn churn_against_synack_serve_reuses_time_wait_ports() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let net = TestNet::new("churn");
    let (server, server_ip) = start_synack_http(&net);
    // 1,000 ports and a 2 s TIME_WAIT allow 500 connections/s without reuse; ask ten times that
    // for 2.5 TIME_WAIT lengths.
    let churn = Churn { rate: 5_000, duration_s: 5, ports: (40_000, 40_999), linger_s: 3 };
    let out = churn.run(&net, &format!("{server_ip}:{PORT}"));
    let server_out = server.stop(synack_tests::process::STOP_GRACE);
    println!("server: {}", server_out.stdout.trim_end());
    churn.check_output(&out);
    assert!(server_out.success(), "synack serve: {}", server_out.describe());
    let counters = server_out.stdout.lines().find(|l| l.contains("counters:")).unwrap_or_default();
    assert!(!counters.contains("time_wait_entered"), "the client closed first: no TIME_WAIT on the server: {counters}");
}

/// nginx on the Linux stack: one worker, `return 200` from memory, no access log.
fn start_nginx(host: &Host, addr: Ipv4Addr, dir: &std::path::Path) -> synack_tests::Proc {
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
           server {{\n    listen {addr}:{PORT} backlog=4096;\n\
             location / {{ default_type text/plain; return 200 \"hello, synack!\\n\"; }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let error_log = dir.join("error.log");
    let mut nginx = host.spawn("nginx", &["-e", error_log.to_str().unwrap(), "-c", path.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listening = format!("{addr}:{PORT}");
    loop {
        let ss = host.run_ok("ss", &["-Htln"], SETUP_TIMEOUT);
        if ss.stdout.contains(&listening) {
            return nginx;
        }
        assert!(nginx.try_status().is_none(), "nginx exited: {}", nginx.snapshot().describe());
        assert!(std::time::Instant::now() < deadline, "nginx not listening on {listening} after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn churn_against_nginx_on_the_linux_stack() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let net = TestNet::new("churn-nginx");
    let dir = std::env::temp_dir().join(format!("{}-nginx", net.id));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _dir_guard = RemoveDir(dir.clone());
    let _nginx = start_nginx(&net.peer, net.peer.ip, &dir);
    // 500 ports and a 2 s TIME_WAIT: at most 250 connections/s without reuse; ask 1,000/s.
    let churn = Churn { rate: 1_000, duration_s: 5, ports: (40_000, 40_499), linger_s: 3 };
    let out = churn.run(&net, &format!("{}:{PORT}", net.peer.ip));
    churn.check_output(&out);
    // The client closed first: Linux went through LAST_ACK and kept no TIME_WAIT.
    let ss = net.peer.run_ok("ss", &["-Htan", "state", "time-wait"], SETUP_TIMEOUT);
    assert_eq!(ss.stdout.trim(), "", "TIME_WAIT on the Linux server");
}

/// A restarted `synack load` meets a server that still holds TIME_WAIT for the 4-tuples of the
/// previous run (the server closes first, 60 s TIME_WAIT, a 100-port range used again). The new
/// process's SYNs must carry newer timestamps than the old one's (a per-boot key and a
/// boot-relative clock), so the server reopens the 4-tuples (RFC 6191) instead of holding them
/// for the rest of 2MSL: no failed connection in the second run.
#[test]
fn a_restarted_load_reopens_the_servers_time_wait() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let bin = synack_bin();
    let net = TestNet::new("churn-restart");
    let (server, server_ip) = start_synack_http(&net);
    let load_ip = Ipv4Addr::new(198, 18, net.subnet, 3);
    let target = format!("{server_ip}:{PORT}");
    let args: Vec<String> = [
        "load",
        "--iface",
        &net.synack.iface,
        "--ip",
        &load_ip.to_string(),
        "--target",
        &target,
        "--concurrency",
        "16",
        "--close-first",
        "server",
        "--local-ports",
        "40000-40099",
        "--duration",
        "1",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut runs = Vec::new();
    for run in 1..=2 {
        let out = net.synack.run(bin.to_str().unwrap(), &args, Duration::from_secs(30));
        assert!(out.success(), "run {run}: {}", out.describe());
        let r = LoadReport::parse(&out.stdout).unwrap_or_else(|e| panic!("run {run}: {e}: {}", out.describe()));
        println!(
            "restart run {run}: {} connections, {} errors, {:.0}/s",
            r.get("connections"),
            r.get("errors"),
            r.get("conn_per_s")
        );
        runs.push(r);
    }
    let server_out = server.stop(synack_tests::process::STOP_GRACE);
    let counters = server_out.stdout.lines().find(|l| l.contains("counters:")).unwrap_or_default().to_string();
    println!("server: {counters}");
    assert!(runs[0].get("connections") > 100.0, "the first run used the ports more than once");
    assert_eq!(runs[1].get("errors"), 0.0, "the second run met the first run's TIME_WAIT and failed");
    assert!(runs[1].get("connections") > 100.0);
    let reopened = counters
        .split_whitespace()
        .find_map(|w| w.strip_prefix("time_wait_reopened="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(reopened > 0, "the server reopened TIME_WAIT 4-tuples for the new process: {counters}");
}
