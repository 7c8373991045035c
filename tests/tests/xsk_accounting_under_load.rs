//! Frame accounting under load: one million frames from an AF_XDP blaster in the peer
//! namespace to a socket that echoes a quarter of them back in place and releases the rest.
//! At the end every frame of both sockets must be back in the pool or the fill ring, and
//! neither loop has allocated.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use synack::xsk::{BoundMode, Counters, FrameAccounting, RxFrame, RxVerdict, XdpStats, XskConfig, XskSocket};
use synack_testkit::counting_alloc::{self, CountingAllocator};
use synack_tests::testnet::{TestNet, TestNetConfig};

const FRAMES: u64 = 1_000_000;
/// Every ECHO_EVERY-th frame (by sequence number) is sent back.
const ECHO_EVERY: u64 = 4;
/// The whole exchange must end well within this.
const DEADLINE: Duration = Duration::from_secs(120);
/// The receiver stops after the blaster is done and nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(500);

// Counts the allocations of the threads that armed it (`count_allocations`): the hot loops
// must make none.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn count_allocations(on: bool) {
    counting_alloc::arm(on);
}

/// Sets a flag when dropped, so that a panicking thread still releases its peer.
struct SetOnDrop<'a>(&'a AtomicBool);
impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[derive(Debug)]
struct ReceiverReport {
    matched: u64,
    other: u64,
    echo_requests: u64,
    seconds: f64,
    counters: Counters,
    stats: XdpStats,
    accounting: FrameAccounting,
    drained: bool,
}

#[derive(Debug)]
struct BlasterReport {
    sent: u64,
    echoes: u64,
    seconds: f64,
    counters: Counters,
    accounting: FrameAccounting,
    drained: bool,
}

fn socket_config(ifname: &str) -> XskConfig {
    let mut config = XskConfig::new(ifname, 0);
    // libxdp's default program redirects everything arriving on queue 0 to the socket.
    config.load_default_program = true;
    config
}

fn receive(
    net: &TestNet,
    ready: mpsc::Sender<()>,
    blaster_done: &AtomicBool,
    receiver_done: &AtomicBool,
) -> ReceiverReport {
    let _done = SetOnDrop(receiver_done);
    let mut socket = XskSocket::new(socket_config(&net.left.ifname)).expect("bind receiver");
    assert_eq!(socket.mode(), BoundMode::Copy);
    assert!(socket.fd() >= 0);
    ready.send(()).expect("blaster gone");

    let (mut matched, mut other, mut echo_requests) = (0u64, 0u64, 0u64);
    let (mut first, mut last) = (None, Instant::now());
    let start = Instant::now();
    count_allocations(true);
    loop {
        let received = socket.rx_batch(usize::MAX, |frame| match common::test_seq(frame) {
            Some(seq) => {
                matched += 1;
                if seq % ECHO_EVERY == 0 {
                    echo_requests += 1;
                    common::turn_around(frame);
                    RxVerdict::Transmit(frame.len())
                } else {
                    RxVerdict::Release
                }
            }
            None => {
                other += 1;
                RxVerdict::Release
            }
        });
        socket.maintain().expect("receiver flush");
        if received > 0 {
            last = Instant::now();
            first.get_or_insert(last);
            continue;
        }
        if blaster_done.load(Ordering::Acquire) && last.elapsed() > QUIET {
            break;
        }
        if start.elapsed() > DEADLINE {
            break;
        }
        socket.wait_idle(Duration::from_millis(10)).expect("poll");
    }
    let drained = socket.drain_tx(Duration::from_secs(5)).expect("drain");
    socket.refill();
    count_allocations(false);
    ReceiverReport {
        matched,
        other,
        echo_requests,
        seconds: first.map_or(0.0, |first| (last - first).as_secs_f64()),
        counters: *socket.counters(),
        stats: socket.xdp_statistics().expect("XDP_STATISTICS"),
        accounting: socket.accounting(),
        drained,
    }
}

fn blast(
    net: &TestNet,
    ready: mpsc::Receiver<()>,
    blaster_done: &AtomicBool,
    receiver_done: &AtomicBool,
) -> BlasterReport {
    let done = SetOnDrop(blaster_done);
    ready.recv_timeout(Duration::from_secs(30)).expect("receiver did not bind");
    // The blaster's own default program brings the echoes to it.
    let mut socket = XskSocket::new(socket_config(&net.right.ifname)).expect("bind blaster");
    let template = common::udp_frame(net.left.mac, net.right.mac, net.right.ipv4, net.left.ipv4, 0);

    let (mut sent, mut echoes) = (0u64, 0u64);
    let start = Instant::now();
    count_allocations(true);
    while sent < FRAMES && start.elapsed() < DEADLINE {
        socket.reap_completions();
        for _ in 0..64 {
            if sent == FRAMES {
                break;
            }
            let Some(mut buf) = socket.tx_alloc() else {
                break;
            };
            buf[..common::FRAME_LEN].copy_from_slice(&template);
            common::set_seq(&mut buf, sent);
            socket.tx_submit(common::FRAME_LEN).expect("submit");
            sent += 1;
        }
        socket.flush().expect("blaster flush");
        socket.rx_batch(usize::MAX, count_echo(&mut echoes));
        socket.refill();
    }
    let drained = socket.drain_tx(Duration::from_secs(5)).expect("drain");
    count_allocations(false);
    let seconds = start.elapsed().as_secs_f64();
    drop(done);

    // Collect the last echoes until the receiver has stopped.
    let wait_start = Instant::now();
    while !receiver_done.load(Ordering::Acquire) && wait_start.elapsed() < DEADLINE {
        if socket.rx_batch(usize::MAX, count_echo(&mut echoes)) == 0 {
            let _ = socket.wait_idle(Duration::from_millis(10));
        }
        socket.refill();
    }
    while socket.rx_batch(usize::MAX, count_echo(&mut echoes)) > 0 {
        socket.refill();
    }
    socket.refill();
    BlasterReport { sent, echoes, seconds, counters: *socket.counters(), accounting: socket.accounting(), drained }
}

/// An RX handler that counts test frames and releases everything.
fn count_echo(echoes: &mut u64) -> impl FnMut(&mut RxFrame<'_>) -> RxVerdict + '_ {
    move |frame| {
        if common::test_seq(frame).is_some() {
            *echoes += 1;
        }
        RxVerdict::Release
    }
}

fn assert_all_home(who: &str, accounting: FrameAccounting) {
    accounting.check().unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(accounting.in_use(), 0, "{who}: frames still out after draining: {accounting}");
    assert_eq!(accounting.free + accounting.fill, accounting.frame_count, "{who}: {accounting}");
}

#[test]
fn frame_accounting_under_load() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    let blaster_done = AtomicBool::new(false);
    let receiver_done = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();

    let (receiver, blaster) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            net.left.netns.enter_current_thread().expect("enter left");
            receive(&net, ready_tx, &blaster_done, &receiver_done)
        });
        let blaster = scope.spawn(|| {
            net.right.netns.enter_current_thread().expect("enter right");
            blast(&net, ready_rx, &blaster_done, &receiver_done)
        });
        (receiver.join(), blaster.join())
    });
    let (receiver, blaster) = match (receiver, blaster) {
        (Ok(r), Ok(b)) => (r, b),
        (Err(panic), _) | (_, Err(panic)) => std::panic::resume_unwind(panic),
    };

    let lost = blaster.sent - receiver.matched;
    println!(
        "blaster: sent {} frames in {:.2} s ({:.0} frames/s), {} kicks ({} retried), \
         {} echoes back",
        blaster.sent,
        blaster.seconds,
        blaster.sent as f64 / blaster.seconds,
        blaster.counters.tx_kicks,
        blaster.counters.tx_kick_errors,
        blaster.echoes
    );
    println!(
        "receiver: {} test frames ({} other) in {:.2} s = {:.0} frames/s; {} lost ({:.2} %); \
         echoed {} of {} requested",
        receiver.matched,
        receiver.other,
        receiver.seconds,
        receiver.matched as f64 / receiver.seconds.max(1e-9),
        lost,
        100.0 * lost as f64 / blaster.sent as f64,
        receiver.counters.tx_frames,
        receiver.echo_requests
    );
    let explained = receiver.stats.rx_dropped + receiver.stats.rx_ring_full;
    println!(
        "receiver XDP_STATISTICS: {:?}; they explain {explained} of the {lost} lost frames \
         (the rest, if any, were dropped by veth before XDP)",
        receiver.stats
    );
    println!("receiver counters: {:?}", receiver.counters);
    println!("receiver frames: {}", receiver.accounting);
    println!("blaster frames: {}", blaster.accounting);

    // The hot loops of both sides allocated nothing.
    assert_eq!(counting_alloc::armed_allocations(), 0, "allocations in the hot loops");

    // Every frame is home, on both sides.
    assert!(receiver.drained, "receiver TX did not drain");
    assert!(blaster.drained, "blaster TX did not drain");
    assert_all_home("receiver", receiver.accounting);
    assert_all_home("blaster", blaster.accounting);
    assert_eq!(receiver.counters.invalid_addresses, 0);
    assert_eq!(blaster.counters.invalid_addresses, 0);

    // Everything the blaster sent was completed; everything received was counted once.
    assert_eq!(blaster.sent, FRAMES);
    assert_eq!(blaster.counters.tx_frames, FRAMES);
    assert_eq!(blaster.counters.tx_completed, FRAMES);
    assert_eq!(receiver.counters.rx_frames, receiver.matched + receiver.other);
    assert!(receiver.matched <= FRAMES);
    // Drops the kernel counted for this socket are frames that were sent and not received.
    assert!(receiver.matched + explained <= FRAMES);
    // veth may drop under pressure: demand most, not all.
    assert!(receiver.matched >= FRAMES / 2, "only {} of {FRAMES} frames arrived", receiver.matched);

    // Echoes: every request was queued or counted as dropped, every queued one completed,
    // and they reached the blaster.
    assert_eq!(receiver.counters.tx_frames + receiver.counters.tx_dropped, receiver.echo_requests);
    assert_eq!(receiver.counters.tx_completed, receiver.counters.tx_frames);
    assert!(blaster.echoes <= receiver.counters.tx_frames);
    assert!(
        blaster.echoes >= receiver.counters.tx_frames / 2,
        "only {} of {} echoes came back",
        blaster.echoes,
        receiver.counters.tx_frames
    );
}

#[test]
fn test_frames_are_well_formed() {
    let a = std::net::Ipv4Addr::new(198, 18, 0, 1);
    let b = std::net::Ipv4Addr::new(198, 18, 0, 2);
    let mut frame = common::udp_frame([2; 6], [3; 6], b, a, 7);
    assert_eq!(common::test_seq(&frame), Some(7));
    assert_eq!(common::ipv4_checksum(&frame[14..34]), 0);
    common::turn_around(&mut frame);
    assert_eq!(&frame[0..6], &[3; 6]);
    assert_eq!(&frame[26..30], &a.octets());
    assert_eq!(common::ipv4_checksum(&frame[14..34]), 0);
}
