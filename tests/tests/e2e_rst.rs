//! Test 5: a SYN to a port without a listener on synack's dedicated address gets a reset.

use synack_tests::{scenarios, Backend};

#[test]
fn syn_to_closed_port_of_dedicated_address_is_reset() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::rst_on_dedicated_address(&Backend::from_env());
}
