//! A full TX ring: `tx_alloc` lends a frame only when it can be queued, so a caller that
//! builds a segment in it (advancing a connection) never has to throw the segment away.

mod common;

use synack::xsk::{XskConfig, XskSocket};
use synack_tests::testnet::{TestNet, TestNetConfig};

#[test]
fn a_full_tx_ring_refuses_frames_before_they_are_built() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    net.left.netns.enter_current_thread().expect("enter left");
    let mut config = XskConfig::new(net.left.ifname.clone(), 0);
    config.load_default_program = true;
    config.tx_ring_size = 64;
    config.comp_ring_size = 64;
    let mut socket = XskSocket::new(config).expect("bind");
    let free_before = socket.accounting().free;
    assert!(free_before > 2 * 64, "more free frames ({free_before}) than the ring and the batch hold");

    // No flush: nothing leaves the TX ring (copy mode needs a kick), so it fills up.
    let mut built = 0;
    while let Some(mut frame) = socket.tx_alloc() {
        frame[..60].fill(0xab);
        built += 1;
        socket.tx_submit(60).unwrap_or_else(|e| panic!("frame {built} was built but cannot be queued: {e:?}"));
        assert!(built <= free_before, "tx_alloc never refuses");
    }
    println!("frames queued before back-pressure: {built}; counters {:?}", socket.counters());
    assert_eq!(built, 128, "the ring (64) and the pending batch (64)");
    assert!(socket.counters().tx_ring_full >= 1);
    assert_eq!(socket.accounting().tx_in_hand, 0, "no built frame left in hand");
    // Kicks drain it, and frames are lent again.
    for _ in 0..100 {
        socket.maintain().expect("maintain");
        if socket.accounting().tx_queued + socket.accounting().tx_pending == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!("after the kicks: {:?} {:?}", socket.accounting(), socket.counters());
    assert!(socket.tx_alloc().is_some(), "room again after the kernel sent them");
}
