//! Test 2: 50 MB through synack with a Linux client, in both close orders.
//!
//! Client first: the echo app, client half-closes after sending, synack closes after echoing
//! everything (sha256 of the echo checked). Server first: the http app with `Connection: close`
//! and a 50 MB body; synack sends its FIN first (length checked; the body's bytes are not
//! specified, so no reference sha256). The server-first order with a checked sha256 is also
//! covered by `e2e_client.rs` (`synack connect --close-first client`).

use std::time::Duration;

use synack_tests::{scenarios, Addressing, Backend};

const BYTES: u64 = 50_000_000;

#[test]
fn echo_50mb_client_closes_first() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::echo_bulk(&Backend::from_env(), BYTES, Addressing::Shared, 0, Duration::from_secs(60));
}

#[test]
fn echo_50mb_client_closes_first_dedicated_address() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::echo_bulk(&Backend::from_env(), BYTES, Addressing::Dedicated, 0, Duration::from_secs(60));
}

#[test]
fn http_50mb_server_closes_first() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::http_bulk_server_closes_first(&Backend::from_env(), BYTES);
}
