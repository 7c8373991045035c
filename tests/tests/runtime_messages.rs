//! The runtime's embedding hooks in a real worker: a message from another thread reaches a
//! sleeping worker's application at once (the mailbox's eventfd wakes it, not its 100 ms sleep
//! bound), and a drain with nothing open tells the application and ends the worker.

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use synack::iface::{App, Interface};
use synack::runtime::{Runtime, RuntimeConfig, SendMessageError};
use synack::time::Instant as SynackInstant;
use synack_tests::testnet::{TestNet, TestNetConfig};

enum Seen {
    Message(u64, Instant),
    Drain,
}

struct Recorder(mpsc::Sender<Seen>);

impl App for Recorder {
    fn on_message(&mut self, _: &mut Interface, message: u64) {
        let _ = self.0.send(Seen::Message(message, Instant::now()));
    }
    fn on_drain(&mut self, _: &mut Interface, _: SynackInstant) {
        let _ = self.0.send(Seen::Drain);
    }
}

#[test]
fn messages_wake_a_sleeping_worker_and_a_drain_ends_it() {
    if !synack_tests::require_root("network namespaces, XDP and AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    net.left.run(|| {
        let (tx, rx) = mpsc::channel();
        // A dedicated address in the link's /30 (the kernel has .1 and .2).
        let addr = Ipv4Addr::from(u32::from(net.left.ipv4) + 2);
        let mut config = RuntimeConfig::new(net.left.ifname.clone(), addr);
        config.interface.prefix_len = net.left.prefix_len;
        config.interface.max_connections = 64;
        config.mailbox_capacity = 4;
        let runtime = Runtime::start(config, move |_| Recorder(tx.clone())).expect("runtime");
        let handle = runtime.handle(0).expect("a handle to worker 0");
        assert!(runtime.handle(1).is_none());
        let mut latencies = Vec::new();
        for i in 0..5u64 {
            // Idle long enough to be asleep in poll() (its bound is 100 ms).
            std::thread::sleep(Duration::from_millis(150));
            let sent = Instant::now();
            handle.send(i).expect("room");
            match rx.recv_timeout(Duration::from_secs(2)).expect("delivered") {
                Seen::Message(m, at) => {
                    assert_eq!(m, i);
                    latencies.push(at.duration_since(sent));
                }
                Seen::Drain => panic!("no drain yet"),
            }
        }
        println!("message delivery to a sleeping worker: {latencies:?}");
        // Without the wake-up each would wait 0-100 ms (the sleep bound): five under 40 ms by
        // chance has a probability of 1 %.
        assert!(latencies.iter().all(|l| *l < Duration::from_millis(40)), "{latencies:?}");

        runtime.start_drain(Duration::from_secs(5));
        let start = Instant::now();
        while !runtime.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(2), "a drain with nothing open ends at once");
            std::thread::sleep(Duration::from_millis(10));
        }
        let seen: Vec<Seen> = rx.try_iter().collect();
        assert!(seen.iter().any(|s| matches!(s, Seen::Drain)), "the application was told of the drain");
        let report = runtime.stop();
        assert_eq!(report.workers.len(), 1);
        assert_eq!(handle.send(1), Err(SendMessageError::Gone), "the worker has ended");
    });
}
