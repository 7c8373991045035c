//! Test 4: `synack connect` to a Linux echo server, 1 MB each way, in both close orders.

use synack_tests::scenarios::{self, CloseFirst};
use synack_tests::{Addressing, Backend};

const BYTES: u64 = 1_000_000;

#[test]
fn connect_1mb_close_local_first() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::client_exchange(&Backend::from_env(), BYTES, CloseFirst::Client, Addressing::Shared);
}

#[test]
fn connect_1mb_close_remote_first() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::client_exchange(&Backend::from_env(), BYTES, CloseFirst::Server, Addressing::Shared);
}

#[test]
fn connect_1mb_close_local_first_dedicated_address() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::client_exchange(&Backend::from_env(), BYTES, CloseFirst::Client, Addressing::Dedicated);
}
