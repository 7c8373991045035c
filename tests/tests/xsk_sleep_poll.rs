//! Sleeping poll mode: an idle socket sleeps in `poll()` instead of spinning, and wakes as soon
//! as a frame arrives. Its own test binary, so that process CPU time measures only this test.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::time::{clock_gettime, ClockId};
use synack::xsk::{PollMode, RxVerdict, XskConfig, XskSocket};
use synack_tests::testnet::{TestNet, TestNetConfig};

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn idle_socket_sleeps_and_wakes_on_a_frame() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();

    let net = &net;
    // `move` closures, so that a panicking side drops its channel ends and frees the other.
    std::thread::scope(|scope| {
        let receiver = scope.spawn(move || {
            net.left.netns.enter_current_thread().expect("enter left");
            let mut config = XskConfig::new(net.left.ifname.clone(), 0);
            config.load_default_program = true;
            config.poll_mode = PollMode::Sleep { timeout: Duration::from_millis(100) };
            let mut socket = XskSocket::new(config).expect("bind");

            // One wait on an idle socket lasts its timeout.
            let start = Instant::now();
            let ready = socket.wait_idle(Duration::from_millis(100)).expect("poll");
            let waited = start.elapsed();
            println!("wait_idle(100 ms) on an idle socket returned {ready} after {waited:?}");
            assert!(!ready);
            assert!(waited >= Duration::from_millis(95), "{waited:?}");
            assert!(waited < Duration::from_millis(400), "{waited:?}");

            // A worker loop that finds no work for a second uses almost no CPU.
            let (cpu_start, wall_start) = (cpu_time(), Instant::now());
            let mut iterations = 0u32;
            while wall_start.elapsed() < Duration::from_secs(1) {
                iterations += 1;
                let received = socket.rx_batch(usize::MAX, |_| RxVerdict::Release);
                socket.maintain().expect("maintain");
                if received == 0 {
                    socket.idle();
                }
            }
            let (cpu, wall) = (cpu_time() - cpu_start, wall_start.elapsed());
            let share = cpu.as_secs_f64() / wall.as_secs_f64();
            println!("idle loop: {iterations} iterations, {cpu:?} CPU in {wall:?} = {:.3} %", 100.0 * share);
            assert!(share < 0.05, "idle loop used {:.1} % CPU", 100.0 * share);
            assert!(iterations <= 20, "{iterations} iterations: not sleeping");

            // A frame ends the sleep at once.
            ready_tx.send(()).expect("sender gone");
            go_rx.recv().expect("sender gone");
            let start = Instant::now();
            let ready = socket.wait_idle(Duration::from_secs(10)).expect("poll");
            let waited = start.elapsed();
            println!("wait_idle(10 s) with a frame on its way returned {ready} after {waited:?}");
            assert!(ready);
            assert!(waited < Duration::from_secs(2), "{waited:?}");
            let mut seqs = Vec::new();
            socket.rx_batch(usize::MAX, |frame| {
                seqs.extend(common::test_seq(frame));
                RxVerdict::Release
            });
            assert_eq!(seqs, vec![42]);
            socket.refill();
            socket.accounting().check().unwrap();
        });

        let sender = scope.spawn(move || {
            net.right.netns.enter_current_thread().expect("enter right");
            // TX only: no XDP program on this side (the production default).
            let mut socket = XskSocket::new(XskConfig::new(net.right.ifname.clone(), 0)).expect("bind sender");
            let frame = common::udp_frame(net.left.mac, net.right.mac, net.right.ipv4, net.left.ipv4, 42);
            ready_rx.recv().expect("receiver gone");
            go_tx.send(()).expect("receiver gone");
            // Let the receiver enter its wait first.
            std::thread::sleep(Duration::from_millis(100));
            socket.tx_alloc().expect("a free frame")[..frame.len()].copy_from_slice(&frame);
            socket.tx_submit(frame.len()).expect("submit");
            socket.flush().expect("flush");
            assert!(socket.drain_tx(Duration::from_secs(2)).expect("drain"));
            assert_eq!(socket.counters().tx_completed, 1);
        });
        for handle in [receiver, sender] {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}
