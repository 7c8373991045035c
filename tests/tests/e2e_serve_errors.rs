//! Test 8: `synack serve` error cases: clear message, non-zero exit, nothing attached.

use synack_tests::{scenarios, Backend};

#[test]
fn serve_error_cases() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::serve_errors(&Backend::from_env());
}
