//! Test 6: after `kill -9` of `synack serve` the XDP program is gone within 1 s and the
//! kernel answers on the shared address again.

use synack_tests::{scenarios, Backend};

#[test]
fn kill9_detaches_xdp_and_kernel_answers_again() {
    if synack_tests::skip_unless_root("network namespaces, veth and XDP") {
        return;
    }
    scenarios::kill9_detaches(&Backend::from_env());
}
