//! Test 3: 20 MB echo with 2 % random loss in each direction (nftables in the peer namespace).

use std::time::Duration;

use synack_tests::{scenarios, Addressing, Backend};

#[test]
fn echo_20mb_with_2_percent_loss_within_60s() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::echo_bulk(&Backend::from_env(), 20_000_000, Addressing::Dedicated, 2, Duration::from_secs(60));
}
