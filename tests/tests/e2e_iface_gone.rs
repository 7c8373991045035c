//! The interface deleted under a serving synack: the worker sees it gone and stops, and
//! `serve` exits by itself, non-zero, saying why (rather than a zombie worker spinning).

use std::time::{Duration, Instant};

use synack_tests::netns::TestNet;
use synack_tests::server::{Addressing, App, Backend, ServeConfig, Server};

#[test]
fn serve_exits_when_its_interface_is_deleted() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let backend = Backend::from_env();
    if backend.is_kernel() {
        println!("SKIP (synack's own failure handling; nothing to compare with a kernel stand-in)");
        return;
    }
    // Sleeping poll (the default: an idle worker must notice too) and busy poll.
    for poll in ["sleep", "busy"] {
        deleted_under(&backend, poll);
    }
}

fn deleted_under(backend: &Backend, poll: &str) {
    let net = TestNet::new("iface-gone");
    let config = ServeConfig::new(App::Echo, Addressing::Dedicated, 7).arg("--poll").arg(poll);
    let mut server = Server::start(backend, &net, &config);
    server.assert_running();
    net.synack.run_ok("ip", &["link", "del", "dev", &net.synack.iface], Duration::from_secs(10));
    let deleted = Instant::now();
    let status = server.proc.wait_exit(Duration::from_secs(10));
    let took = deleted.elapsed();
    let out = server.proc.wait_output(Duration::from_secs(2));
    println!("--poll {poll}: exit {status:?} {took:?} after the delete; stderr: {}", out.stderr.trim());
    let status = status.unwrap_or_else(|| panic!("--poll {poll}: still running 10 s after: {}", out.describe()));
    assert!(!status.success(), "--poll {poll}: a non-zero exit: {}", out.describe());
    assert!(status.code().is_some(), "--poll {poll}: exits by itself, not by a signal");
    // 1 s is the goal; the margin is for a loaded 2-core machine.
    assert!(took < Duration::from_secs(3), "--poll {poll}: took {took:?}");
    assert!(out.stderr.contains("went away"), "--poll {poll}: names the cause: {}", out.describe());
}
