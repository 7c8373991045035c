//! Test 7: wrk against the http app, keep-alive and `Connection: close`.

use std::time::Duration;

use synack_tests::{scenarios, Backend};

#[test]
fn wrk_keepalive_no_errors() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::wrk_http(&Backend::from_env(), false, Duration::from_secs(3), 1000);
}

#[test]
fn wrk_connection_close_no_errors() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::wrk_http(&Backend::from_env(), true, Duration::from_secs(3), 500);
}
