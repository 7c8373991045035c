//! Test 1: curl fetches 1,000 times from synack's http app with `Connection: close`.

use synack_tests::{scenarios, Backend};

#[test]
fn curl_1000_fetches_connection_close() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::curl_connection_close(&Backend::from_env(), 1000);
}
