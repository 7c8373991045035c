//! synack tells a dedicated address from a shared one by the kernel's local routes, also in a
//! namespace where the kernel has no address at all (no local table: a UDP bind to any address
//! succeeds there, which once made synack take its dedicated address for a shared one and
//! answer no ARP).

use std::time::Duration;

use synack_tests::{Addressing, App, Backend, ServeConfig, Server, TestNet};

#[test]
fn a_dedicated_address_in_a_bare_namespace_is_dedicated() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    let net = TestNet::builder("bare").bare_synack_side(true).build();
    assert!(!net.kernel_has_address(net.shared_ip()), "the synack side has no address");
    let server = Server::start(&Backend::synack(), &net, &ServeConfig::new(App::Http, Addressing::Dedicated, 80));
    assert!(server.ready_line.contains("Dedicated address"), "{}", server.ready_line);
    let url = format!("http://{}/", net.dedicated_ip());
    let out = net.peer.run(
        "curl",
        &["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", &url],
        Duration::from_secs(10),
    );
    assert_eq!(out.stdout.trim(), "200", "curl (synack must answer ARP): {}", out.describe());
    server.stop_cleanly(&net.synack);
}
