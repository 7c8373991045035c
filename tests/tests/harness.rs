//! Tests of the harness itself, independent of synack: the `TestNet` guard, stale-namespace
//! cleanup, XDP detection, the error message for a missing binary, and every end-to-end
//! scenario run at a small size against the kernel stand-ins (`Backend::Kernel`). If these
//! fail, the synack e2e tests cannot be trusted either way.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synack_tests::netns::{self, parse_xdp_attachment, SETUP_TIMEOUT};
use synack_tests::process::run;
use synack_tests::scenarios::{self, CloseFirst};
use synack_tests::{skip_unless_root, Addressing, Backend, TestNet};

const NEEDS: &str = "network namespaces and veth";

fn namespaces() -> String {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "list"]);
    run(cmd, SETUP_TIMEOUT).stdout
}

fn has_namespace(name: &str) -> bool {
    namespaces().lines().any(|l| l.split_whitespace().next() == Some(name))
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; it only waits for its parent (init, for an orphan) to reap it.
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------- without root

#[test]
fn xdp_attachment_parsing() {
    let native = "3: a@b: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdp qdisc noqueue state UP\n    \
                  link/ether 92:c9:e0:81:00:82 brd ff:ff:ff:ff:ff:ff\n    \
                  prog/xdp id 323 name xdp_pass tag 614b434cd8324ecc jited\n";
    assert_eq!(
        parse_xdp_attachment(native).as_deref(),
        Some("prog/xdp id 323 name xdp_pass tag 614b434cd8324ecc jited")
    );
    let generic_first_line_only = "3: a@b: <BROADCAST> mtu 1500 xdpgeneric qdisc noop state DOWN\n";
    assert_eq!(parse_xdp_attachment(generic_first_line_only).as_deref(), Some("xdpgeneric"));
    let none = "3: a@b: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT\n    \
                veth addrgenmode eui64 numtxqueues 1 numrxqueues 1\n";
    assert_eq!(parse_xdp_attachment(none), None);
}

#[test]
fn owner_pid_of_names() {
    assert_eq!(netns::owner_pid("e2e1234n0s"), Some(1234));
    assert_eq!(netns::owner_pid("e2e1234n17p"), Some(1234));
    assert_eq!(netns::owner_pid("e2e1234n17"), None);
    assert_eq!(netns::owner_pid("e2etmps"), None);
    assert_eq!(netns::owner_pid("sxsb14203s"), None);
    assert_eq!(netns::owner_pid("e2e12x4n1s"), None);
}

#[test]
fn missing_binary_fails_with_build_instructions() {
    let missing = PathBuf::from("/nonexistent/e2e/synack");
    let err = catch_unwind(|| Backend::synack_at(missing)).expect_err("a missing binary must fail the test");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("cargo build --release -p synack-cli --bin synack"), "message: {msg}");
    assert!(msg.contains("/nonexistent/e2e/synack"), "message: {msg}");
}

#[test]
fn loss_recovery_counters_parsing() {
    let stdout = "synack ready: Echo on 198.18.1.3:7\n\
                  synack stopped; counters: rx_frames=16054 tx_frames=14141 drop_out_of_window=25 \
                  tcp_retransmits=309 tcp_fast_retransmits=255 tcp_loss_probes=22\n  queue 0: connections 0\n";
    let counters = scenarios::loss_recovery_counters(stdout).unwrap();
    assert_eq!(
        counters,
        vec![
            ("tcp_retransmits", 309),
            ("tcp_rto_timeouts", 0),
            ("tcp_fast_retransmits", 255),
            ("tcp_early_retransmits", 0),
            ("tcp_loss_probes", 22),
            ("tcp_lost_retransmissions", 0),
        ]
    );
    assert_eq!(scenarios::loss_recovery_counters("ready\n"), None);
}

#[test]
fn wrk_output_parsing() {
    let clean =
        "Running 3s test @ http://x/100\n  2 threads and 16 connections\n  1234 requests in 3.00s, 1.2MB read\n\
                 Requests/sec:    411.30\nTransfer/sec:    1KB\n";
    let s = scenarios::parse_wrk(clean).unwrap();
    assert_eq!((s.requests, s.socket_errors, s.non_2xx_3xx), (1234, 0, 0));
    assert!((s.requests_per_second - 411.3).abs() < 1e-9);
    let bad = "  99 requests in 3.00s, 1KB read\n  Socket errors: connect 1, read 2, write 0, timeout 4\n  \
               Non-2xx or 3xx responses: 7\nRequests/sec: 33.0\n";
    let s = scenarios::parse_wrk(bad).unwrap();
    assert_eq!((s.requests, s.socket_errors, s.non_2xx_3xx), (99, 7, 7));
    assert!(scenarios::parse_wrk("wrk: unable to connect").is_none());
}

// ---------------------------------------------------------------- TestNet

#[test]
fn testnet_builds_and_cleans_up() {
    if skip_unless_root(NEEDS) {
        return;
    }
    let net = TestNet::builder("harness-build").queues(2).build();
    let (s, p) = (net.synack.clone(), net.peer.clone());
    assert!(has_namespace(&s.ns) && has_namespace(&p.ns), "namespaces missing: {}", namespaces());
    for h in [&s, &p] {
        let details = h.link_details();
        assert!(details.contains("numrxqueues 2") && details.contains("numtxqueues 2"), "{details}");
        assert!(h.xdp_attachment().is_none(), "fresh link with XDP: {details}");
    }
    let features = p.run_ok("ethtool", &["-k", &p.iface], SETUP_TIMEOUT).stdout;
    assert!(features.contains("tx-checksumming: off"), "peer TX checksum offload still on:\n{features}");
    let addrs = s.run_ok("ip", &["-o", "address", "show", "dev", &s.iface], SETUP_TIMEOUT).stdout;
    assert!(addrs.contains(&format!("inet {}/24", net.shared_ip())), "{addrs}");
    assert!(!net.kernel_has_address(net.dedicated_ip()), "dedicated address assigned: {addrs}");
    assert!(net.shared_ip().octets()[..2] == [198, 18], "address outside 198.18.0.0/15");
    drop(net);
    assert!(!has_namespace(&s.ns) && !has_namespace(&p.ns), "namespaces left: {}", namespaces());
}

#[test]
fn testnet_cleans_up_after_a_panic_and_kills_its_processes() {
    if skip_unless_root(NEEDS) {
        return;
    }
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let net = TestNet::new("harness-panic");
        // A process no guard of its own knows about: an orphaned sleep inside the namespace.
        let out = net.peer.run_ok("sh", &["-c", "sleep 60 >/dev/null 2>&1 & echo $!"], SETUP_TIMEOUT);
        let pid: u32 = out.stdout.trim().parse().unwrap();
        assert!(process_alive(pid));
        seen = Some((net.synack.ns.clone(), net.peer.ns.clone(), pid));
        panic!("deliberate panic inside a test");
    }));
    assert!(result.is_err());
    let (s, p, pid) = seen.expect("the closure ran");
    assert!(!has_namespace(&s) && !has_namespace(&p), "namespaces left after a panic: {}", namespaces());
    let deadline = Instant::now() + Duration::from_secs(3);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!process_alive(pid), "process {pid} started in the namespace survived the guard");
}

#[test]
fn stale_namespaces_of_dead_runs_are_removed() {
    if skip_unless_root(NEEDS) {
        return;
    }
    // A live run's namespace (ours) must survive. (Built first: building removes stale ones.)
    let live = TestNet::new("harness-stale");
    // A pid that is not running now (a killed earlier run).
    let dead = (3_000_000u32..3_100_000).find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let names = [format!("e2e{dead}n0s"), format!("e2e{dead}n0p")];
    for n in &names {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "add", n]);
        run(cmd, SETUP_TIMEOUT).assert_success();
    }
    assert!(names.iter().all(|n| has_namespace(n)));
    netns::remove_stale();
    assert!(names.iter().all(|n| !has_namespace(n)), "stale namespaces left: {}", namespaces());
    assert!(has_namespace(&live.synack.ns), "a live run's namespace was removed");
}

#[test]
fn xdp_attachment_detected_on_a_real_link() {
    if skip_unless_root(NEEDS) {
        return;
    }
    let mut clang = std::process::Command::new("clang");
    clang.arg("--version");
    let have_clang = run(clang, SETUP_TIMEOUT).success();
    assert!(have_clang, "clang is needed (scripts/deps.sh build installs it)");
    let net = TestNet::new("harness-xdp");
    let dir = std::env::temp_dir().join(format!("{}-xdp", net.id));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("pass.c");
    let obj = dir.join("pass.o");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n\
         __attribute__((section(\"xdp\"), used)) int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }\n\
         char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
    )
    .unwrap();
    let mut cc = std::process::Command::new("clang");
    cc.args(["-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c"]).arg(&src).arg("-o").arg(&obj);
    run(cc, Duration::from_secs(60)).assert_success();
    let h = &net.synack;
    assert!(h.xdp_attachment().is_none());
    let ip_set = |args: &[&str]| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["-n", &h.ns, "link", "set", "dev", &h.iface]).args(args);
        run(cmd, SETUP_TIMEOUT).assert_success();
    };
    ip_set(&["xdp", "obj", obj.to_str().unwrap(), "sec", "xdp"]);
    let attached = h.xdp_attachment();
    ip_set(&["xdp", "off"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(attached.as_deref().is_some_and(|a| a.contains("prog/xdp")), "not detected: {attached:?}");
    assert!(h.xdp_attachment().is_none(), "still detected after `xdp off`");
}

// ---------------------------------------------------------------- scenarios on kernel stand-ins

#[test]
fn kernel_curl_connection_close() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::curl_connection_close(&Backend::Kernel, 200);
}

#[test]
fn kernel_echo_bulk_shared_and_dedicated() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::echo_bulk(&Backend::Kernel, 5_000_000, Addressing::Shared, 0, Duration::from_secs(30));
    scenarios::echo_bulk(&Backend::Kernel, 5_000_000, Addressing::Dedicated, 0, Duration::from_secs(30));
}

#[test]
fn kernel_http_bulk_server_closes_first() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::http_bulk_server_closes_first(&Backend::Kernel, 5_000_000);
}

#[test]
fn kernel_echo_with_loss() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::echo_bulk(&Backend::Kernel, 5_000_000, Addressing::Dedicated, 2, Duration::from_secs(30));
}

#[test]
fn kernel_client_both_close_orders() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::client_exchange(&Backend::Kernel, 1_000_000, CloseFirst::Client, Addressing::Shared);
    scenarios::client_exchange(&Backend::Kernel, 1_000_000, CloseFirst::Server, Addressing::Shared);
}

#[test]
fn kernel_rst_on_unassigned_port() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::rst_on_dedicated_address(&Backend::Kernel);
}

#[test]
fn kernel_kill9_measurement() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::kill9_detaches(&Backend::Kernel);
}

#[test]
fn kernel_wrk_both_modes() {
    if skip_unless_root(NEEDS) {
        return;
    }
    scenarios::wrk_http(&Backend::Kernel, false, Duration::from_secs(1), 1000);
    scenarios::wrk_http(&Backend::Kernel, true, Duration::from_secs(1), 1000);
}

/// The iperf3 checks hold for Debian's iperf3 client against Debian's iperf3 server.
#[test]
fn kernel_iperf3_cases() {
    if skip_unless_root(NEEDS) {
        return;
    }
    use synack_tests::iperf3::{self, Case, Direction};
    let cases = [Case::bytes(10 * 1024 * 1024), Case::timed(1, Direction::Both, 2)];
    iperf3::run_cases(&Backend::Kernel, "kernel-iperf3", &cases);
    iperf3::busy_server_refuses(&Backend::Kernel);
}
