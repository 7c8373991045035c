//! Binding: each way it can fail gives a clear, specific error; Auto falls back to copy mode.

use synack::xsk::{BindFailure, BindMode, BoundMode, XskConfig, XskError, XskSocket};
use synack_tests::testnet::{TestNet, TestNetConfig};

#[test]
fn nonexistent_interface() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    // The right host's interface exists, but not in the left namespace.
    let missing = net.right.ifname.clone();
    let error = net.left.run(|| XskSocket::new(XskConfig::new(missing.clone(), 0)).unwrap_err());
    println!("{error}");
    match &error {
        XskError::NoSuchInterface { ifname } => assert_eq!(ifname, &missing),
        other => panic!("expected NoSuchInterface, got {other:?}"),
    }
    assert!(error.to_string().contains(&missing));
}

#[test]
fn queue_out_of_range() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    for load_default_program in [false, true] {
        let error = net.left.run(|| {
            let mut config = XskConfig::new(net.left.ifname.clone(), 5);
            config.load_default_program = load_default_program;
            XskSocket::new(config).unwrap_err()
        });
        println!("{error}");
        match &error {
            XskError::Bind {
                ifname,
                queue: 5,
                reason: BindFailure::QueueOutOfRange { rx_queue_count: Some(1) },
                ..
            } => assert_eq!(ifname, &net.left.ifname),
            other => panic!("expected Bind QueueOutOfRange, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains("queue 5"), "{message}");
        assert!(message.contains("out of range"), "{message}");
        assert!(message.contains("1 receive queue"), "{message}");
    }
}

#[test]
fn busy_queue() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    net.left.run(|| {
        let first = XskSocket::new(XskConfig::new(net.left.ifname.clone(), 0)).expect("first");
        let error = XskSocket::new(XskConfig::new(net.left.ifname.clone(), 0)).unwrap_err();
        println!("{error}");
        assert!(matches!(error, XskError::Bind { reason: BindFailure::Busy, .. }), "expected Bind Busy, got {error:?}");
        assert!(error.to_string().contains("busy"));
        drop(first);
        // Once the first socket is gone the queue is free again: the kernel releases it from
        // a workqueue, so shortly after.
        let start = std::time::Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match XskSocket::new(XskConfig::new(net.left.ifname.clone(), 0)) {
                Ok(_) => break,
                Err(XskError::Bind { reason: BindFailure::Busy, .. })
                    if start.elapsed() < std::time::Duration::from_secs(2) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("rebind: {e:?}"),
            }
        }
        println!("rebound after {:?} ({attempts} attempts)", start.elapsed());
    });
}

#[test]
fn zero_copy_on_veth_and_auto_fallback() {
    if !synack_tests::require_root("AF_XDP") {
        return;
    }
    let net = TestNet::new(TestNetConfig::default()).expect("test network");
    net.left.run(|| {
        let mut config = XskConfig::new(net.left.ifname.clone(), 0);
        config.bind_mode = BindMode::ZeroCopy;
        let error = XskSocket::new(config.clone()).unwrap_err();
        println!("{error}");
        assert!(
            matches!(error, XskError::Bind { reason: BindFailure::ZeroCopyUnsupported, .. }),
            "expected ZeroCopyUnsupported, got {error:?}"
        );

        config.bind_mode = BindMode::Auto;
        let socket = XskSocket::new(config).expect("auto bind");
        assert_eq!(socket.mode(), BoundMode::Copy);
        let accounting = socket.accounting();
        accounting.check().unwrap();
        // At creation the fill ring is full and the rest of the UMEM is free for TX.
        assert_eq!(accounting.fill, 2048);
        assert_eq!(accounting.free, 2048);
    });
}

#[test]
fn invalid_config_is_refused_before_the_kernel_sees_it() {
    // No privileges needed: validation comes first.
    let mut config = XskConfig::new("lo", 0);
    config.frame_size = 3000;
    match XskSocket::new(config).unwrap_err() {
        XskError::InvalidConfig { field: "frame_size", .. } => {}
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
