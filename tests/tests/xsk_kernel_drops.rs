//! The kernel's drops are visible: a socket that lends the kernel only 64 frames and does not
//! receive while 1,000 frames arrive must report, in `kernel_stats`, the frames the kernel could
//! not deliver (fill ring empty, or RX ring full), and deliver the rest intact. These figures
//! are what the stop line's `kernel` field and the `synack_xsk_kernel_*` metrics show.

mod common;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use synack::xsk::{RxVerdict, XskConfig, XskSocket};
use synack_tests::testnet::{TestNet, TestNetConfig};

const SENT: u64 = 1_000;
const LENT: u32 = 64;

#[test]
fn frames_the_kernel_could_not_deliver_are_counted() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (sent_tx, sent_rx) = mpsc::channel::<u64>();

    let net = &net;
    std::thread::scope(|scope| {
        let receiver = scope.spawn(move || {
            net.left.netns.enter_current_thread().expect("enter left");
            let mut config = XskConfig::new(net.left.ifname.clone(), 0);
            config.load_default_program = true;
            config.rx_ring_size = LENT;
            config.fill_ring_size = LENT;
            config.frame_count = 4 * LENT;
            let mut socket = XskSocket::new(config).expect("bind");
            // Lend the kernel its 64 frames, then receive nothing until the sender is done.
            socket.refill();
            let before = socket.kernel_stats();
            assert_eq!(before.rx_dropped + before.rx_ring_full, 0, "{before:?}");
            ready_tx.send(()).expect("sender gone");
            let completed = sent_rx.recv_timeout(Duration::from_secs(60)).expect("sender gone");
            assert_eq!(completed, SENT, "the sender's frames all left");
            // The last frames cross the veth in the sender's softirq; give it a moment.
            std::thread::sleep(Duration::from_millis(200));

            let mut seqs = BTreeSet::new();
            loop {
                let n = socket.rx_batch(usize::MAX, |frame| {
                    seqs.extend(common::test_seq(frame));
                    RxVerdict::Release
                });
                if n == 0 {
                    break;
                }
            }
            let stats = socket.kernel_stats();
            let delivered = seqs.len() as u64;
            let dropped = stats.rx_dropped.max(stats.rx_fill_ring_empty_descs) + stats.rx_ring_full;
            println!("delivered {delivered} of {SENT}; kernel: {stats:?}");
            assert!(delivered >= 1 && delivered <= u64::from(LENT), "delivered {delivered}");
            assert!(seqs.iter().all(|&s| s < SENT), "only the sender's sequence numbers: {seqs:?}");
            // Every frame is either delivered or counted as dropped (other frames the
            // namespace's kernel sends on the link may add to the drops, never take away).
            assert!(delivered + dropped >= SENT, "delivered {delivered} + dropped {dropped} < {SENT}: {stats:?}");
            assert!(stats.rx_invalid_descs == 0 && stats.tx_invalid_descs == 0, "{stats:?}");
            socket.refill();
            socket.accounting().check().unwrap();
        });

        let sender = scope.spawn(move || {
            net.right.netns.enter_current_thread().expect("enter right");
            let mut socket = XskSocket::new(XskConfig::new(net.right.ifname.clone(), 0)).expect("bind sender");
            ready_rx.recv().expect("receiver gone");
            for seq in 0..SENT {
                let frame = common::udp_frame(net.left.mac, net.right.mac, net.right.ipv4, net.left.ipv4, seq);
                loop {
                    if let Some(mut buf) = socket.tx_alloc() {
                        buf[..frame.len()].copy_from_slice(&frame);
                        socket.tx_submit(frame.len()).expect("submit");
                        break;
                    }
                    socket.flush().expect("flush");
                    socket.reap_completions();
                }
            }
            socket.flush().expect("flush");
            assert!(socket.drain_tx(Duration::from_secs(10)).expect("drain"));
            sent_tx.send(socket.counters().tx_completed).expect("receiver gone");
        });
        for handle in [receiver, sender] {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}
