//! Debian's iperf3 client against `synack serve --app iperf3`: forward, reverse (`-R`), four
//! streams (`-P 4`), both directions (`--bidir`) and a byte count (`-n`), each with its `-J`
//! report checked against itself and against the counts synack prints (see
//! `synack_tests::iperf3`). Each run is a few seconds.

use synack_tests::iperf3::{self, Case, Direction};
use synack_tests::Backend;

const NEEDS: &str = "network namespaces, veth and XDP";

#[test]
fn iperf3_forward_2s() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    iperf3::run_cases(&Backend::from_env(), "iperf3-fwd", &[Case::timed(2, Direction::Up, 1)]);
}

#[test]
fn iperf3_reverse_2s() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    iperf3::run_cases(&Backend::from_env(), "iperf3-rev", &[Case::timed(2, Direction::Down, 1)]);
}

#[test]
fn iperf3_four_streams_2s() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    iperf3::run_cases(&Backend::from_env(), "iperf3-p4", &[Case::timed(2, Direction::Up, 4)]);
}

#[test]
fn iperf3_bidir_2s() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    iperf3::run_cases(&Backend::from_env(), "iperf3-bidir", &[Case::timed(2, Direction::Both, 1)]);
}

/// `-n 50M`, then the other tests again on the same server: it serves test after test.
#[test]
fn iperf3_50mib_then_more_tests() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    let cases = [Case::bytes(50 * 1024 * 1024), Case::timed(1, Direction::Down, 2), Case::timed(1, Direction::Both, 2)];
    iperf3::run_cases(&Backend::from_env(), "iperf3-bytes", &cases);
}

#[test]
fn iperf3_busy_server_refuses_a_second_client() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    iperf3::busy_server_refuses(&Backend::from_env());
}

/// synack's own iperf3 client (`synack iperf3 --bidir`) against synack's server and the kernel's.
#[test]
fn synack_iperf3_client_against_synack_and_kernel() {
    if synack_tests::skip_unless_root(NEEDS) {
        return;
    }
    if let Backend::Synack(bin) = Backend::from_env() {
        iperf3::synack_client(&bin);
    }
}
