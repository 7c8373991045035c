//! The steering program's decisions on crafted frames, with BPF_PROG_TEST_RUN.
//!
//! How a decision is observed: no AF_XDP socket is registered in these tests
//! (binding one needs a UMEM and an interface: that is the end-to-end tests'
//! job). The program asks `bpf_redirect_map` to fall back to XDP_PASS when the
//! queue has no socket, and counts that case as `redirect_failed`, so a frame
//! the program decides to steer comes back as `Pass` + `RedirectFailed`, and a
//! frame it leaves to the kernel as `Pass` + the `Passed*` counter that says
//! why. The program counts exactly one counter per frame; `TestRun::reason`
//! returns it, and is `None` if that rule breaks. This is the production code
//! path: the program has no test mode.

mod common;

use std::net::Ipv4Addr;

use common::*;
use synack_xdp::{Counter, MapError, SteerObject, TestRunError, XdpAction, MAX_OWNED_ADDRS};

macro_rules! require_root {
    () => {
        if !common::have_root() {
            return;
        }
    };
}

const LISTEN_PORT: u16 = 80;

/// A loaded program owning `owned_addr()` and listening on port 80.
fn program() -> SteerObject {
    let mut program = SteerObject::load().expect("loading the program (verifier)");
    program.add_owned_addr(owned_addr()).unwrap();
    program.add_listen_port(LISTEN_PORT).unwrap();
    program
}

#[track_caller]
fn assert_decision(program: &SteerObject, frame: &[u8], action: XdpAction, reason: Counter) {
    let run = program.test_run(frame).expect("BPF_PROG_TEST_RUN");
    assert_eq!(
        (run.action, run.reason()),
        (action, Some(reason)),
        "frame of {} bytes; counters moved: {}",
        frame.len(),
        run.counted
    );
}

/// The program decided the frame is synack's (see the module comment).
#[track_caller]
fn assert_steered(program: &SteerObject, frame: &[u8]) {
    assert_decision(program, frame, XdpAction::Pass, Counter::RedirectFailed);
}

#[track_caller]
fn assert_passed(program: &SteerObject, frame: &[u8], reason: Counter) {
    assert_decision(program, frame, XdpAction::Pass, reason);
}

#[test]
fn owned_address_and_listening_port_is_steered() {
    require_root!();
    let program = program();
    assert_steered(&program, &tcp_frame(owned_addr(), LISTEN_PORT));
    // Don't-fragment (set by tcp_frame) is not fragmentation; a clear DF too.
    let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
    ip.flags_fragment = 0;
    assert_steered(&program, &tcp_frame_with(&ip, LISTEN_PORT));
    // A frame longer than its headers (payload) is fine.
    let mut frame = tcp_frame(owned_addr(), LISTEN_PORT);
    frame.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_steered(&program, &frame);
}

#[test]
fn other_port_is_passed() {
    require_root!();
    let program = program();
    for port in [LISTEN_PORT - 1, LISTEN_PORT + 1, 22, 443, 65535, 0] {
        assert_passed(&program, &tcp_frame(owned_addr(), port), Counter::PassedPortNotOurs);
    }
}

#[test]
fn other_address_is_passed() {
    require_root!();
    let program = program();
    for addr in [other_addr(), peer_addr(), Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED] {
        assert_passed(&program, &tcp_frame(addr, LISTEN_PORT), Counter::PassedNotOwned);
    }
}

#[test]
fn addresses_can_be_added_and_removed() {
    require_root!();
    let mut program = program();
    program.add_owned_addr(other_addr()).unwrap();
    assert_steered(&program, &tcp_frame(other_addr(), LISTEN_PORT));
    program.remove_owned_addr(other_addr()).unwrap();
    assert_passed(&program, &tcp_frame(other_addr(), LISTEN_PORT), Counter::PassedNotOwned);
    // Removing again is not an error, and the first address stays owned.
    program.remove_owned_addr(other_addr()).unwrap();
    assert_steered(&program, &tcp_frame(owned_addr(), LISTEN_PORT));
}

#[test]
fn listening_ports_are_bits_that_do_not_disturb_their_neighbours() {
    require_root!();
    let mut program = program();
    // 80 and 81 share a bitmap word; 1, 63, 64 and 65535 are word edges.
    for port in [81, 1, 63, 64, 65535] {
        program.add_listen_port(port).unwrap();
    }
    for port in [80, 81, 1, 63, 64, 65535] {
        assert_steered(&program, &tcp_frame(owned_addr(), port));
    }
    program.remove_listen_port(80).unwrap();
    program.remove_listen_port(64).unwrap();
    for port in [80, 64, 62, 65] {
        assert_passed(&program, &tcp_frame(owned_addr(), port), Counter::PassedPortNotOurs);
    }
    for port in [81, 1, 63, 65535] {
        assert_steered(&program, &tcp_frame(owned_addr(), port));
    }
    assert!(matches!(program.add_listen_port(0), Err(MapError::PortZero)));
}

#[test]
fn local_port_range_is_steered() {
    require_root!();
    let mut program = program();
    program.set_local_port_range(61000, 61999).unwrap();
    for port in [61000, 61500, 61999] {
        assert_steered(&program, &tcp_frame(owned_addr(), port));
    }
    for port in [60999, 62000] {
        assert_passed(&program, &tcp_frame(owned_addr(), port), Counter::PassedPortNotOurs);
    }
    // The range applies to owned addresses only.
    assert_passed(&program, &tcp_frame(other_addr(), 61000), Counter::PassedNotOwned);
    // A one-port range at the top of the port space.
    program.set_local_port_range(65535, 65535).unwrap();
    assert_steered(&program, &tcp_frame(owned_addr(), 65535));
    assert_passed(&program, &tcp_frame(owned_addr(), 61000), Counter::PassedPortNotOurs);
    program.clear_local_port_range().unwrap();
    assert_passed(&program, &tcp_frame(owned_addr(), 65535), Counter::PassedPortNotOurs);
    // Port 0 never matches, neither the cleared range nor a listening port.
    assert_passed(&program, &tcp_frame(owned_addr(), 0), Counter::PassedPortNotOurs);
    for (lo, hi) in [(0, 10), (20, 10), (0, 0)] {
        assert!(matches!(program.set_local_port_range(lo, hi), Err(MapError::InvalidPortRange { .. })));
    }
}

#[test]
fn arp_is_passed_by_default_and_steered_when_enabled_for_owned_targets() {
    require_root!();
    let mut program = program();
    let request = arp_frame(1, peer_addr(), owned_addr());
    let reply = arp_frame(2, peer_addr(), owned_addr());
    let for_other = arp_frame(1, peer_addr(), other_addr());
    assert_passed(&program, &request, Counter::PassedArp);
    assert_passed(&program, &reply, Counter::PassedArp);

    program.set_steer_arp(true).unwrap();
    assert_steered(&program, &request);
    assert_steered(&program, &reply);
    assert_passed(&program, &for_other, Counter::PassedNotOwned);
    // Truncated ARP, and ARP that is not Ethernet/IPv4, go to the kernel.
    assert_passed(&program, &request[..request.len() - 1], Counter::PassedTruncated);
    let mut not_ethernet = request.clone();
    not_ethernet[14..16].copy_from_slice(&6u16.to_be_bytes()); // IEEE 802
    assert_passed(&program, &not_ethernet, Counter::PassedArp);

    program.set_steer_arp(false).unwrap();
    assert_passed(&program, &request, Counter::PassedArp);
}

#[test]
fn icmp_echo_is_steered_only_when_enabled() {
    require_root!();
    let mut program = program();
    let echo_request = icmp_frame(8, owned_addr());
    assert_passed(&program, &echo_request, Counter::PassedNotTcp);
    program.set_steer_icmp(true).unwrap();
    assert_steered(&program, &echo_request);
    assert_passed(&program, &icmp_frame(0, owned_addr()), Counter::PassedNotTcp);
    assert_passed(&program, &icmp_frame(8, other_addr()), Counter::PassedNotOwned);
    program.set_steer_icmp(false).unwrap();
    assert_passed(&program, &echo_request, Counter::PassedNotTcp);
}

#[test]
fn other_protocols_are_passed() {
    require_root!();
    let program = program();
    let udp = ethernet(ETH_P_IP, &Ipv4::new(peer_addr(), owned_addr(), IPPROTO_UDP).packet(&[0; 8]));
    assert_passed(&program, &udp, Counter::PassedNotTcp);
}

#[test]
fn non_ipv4_is_passed() {
    require_root!();
    let program = program();
    let ip_and_tcp = &tcp_frame(owned_addr(), LISTEN_PORT)[14..];
    // The same bytes behind an IPv6 ethertype, and behind an 802.1Q tag.
    assert_passed(&program, &ethernet(ETH_P_IPV6, ip_and_tcp), Counter::PassedNotIpv4);
    let mut tagged = vec![0x00, 0x05];
    tagged.extend_from_slice(&ETH_P_IP.to_be_bytes());
    tagged.extend_from_slice(ip_and_tcp);
    assert_passed(&program, &ethernet(ETH_P_8021Q, &tagged), Counter::PassedNotIpv4);
    // An IPv4 ethertype with a version 6 header is malformed.
    let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
    ip.version = 6;
    assert_passed(&program, &tcp_frame_with(&ip, LISTEN_PORT), Counter::PassedMalformed);
}

#[test]
fn ipv4_fragments_are_passed() {
    require_root!();
    let program = program();
    // First fragment (MF), a middle one (MF + offset), the last (offset).
    for flags_fragment in [0x2000, 0x2000 | 185, 370, 0x4000 | 1] {
        let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
        ip.flags_fragment = flags_fragment;
        assert_passed(&program, &tcp_frame_with(&ip, LISTEN_PORT), Counter::PassedFragment);
    }
}

#[test]
fn ip_options_are_skipped_by_ihl() {
    require_root!();
    let program = program();
    // IHL 6 (one word of options: four NOPs) and IHL 15 (the maximum, 40
    // bytes: NOPs then End of Options List).
    let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
    for options in [vec![1; 4], [vec![1; 39], vec![0]].concat()] {
        ip.options = options;
        let frame = tcp_frame_with(&ip, LISTEN_PORT);
        assert_steered(&program, &frame);
        // The TCP port is read after the options: move it off port 80.
        assert_passed(&program, &tcp_frame_with(&ip, LISTEN_PORT + 1), Counter::PassedPortNotOurs);
        // Cut inside the options or inside TCP: truncated.
        let header_end = 14 + 20 + ip.options.len();
        for len in [header_end - 1, header_end, header_end + 19] {
            assert_passed(&program, &frame[..len], Counter::PassedTruncated);
        }
    }
    // An IHL below 5 is malformed, whatever follows.
    for ihl in [0, 4] {
        ip.options.clear();
        ip.ihl = Some(ihl);
        assert_passed(&program, &tcp_frame_with(&ip, LISTEN_PORT), Counter::PassedMalformed);
    }
}

#[test]
fn truncated_frames_of_every_length_are_passed() {
    require_root!();
    let program = program();
    let full = tcp_frame(owned_addr(), LISTEN_PORT);
    assert_eq!(full.len(), 54);
    for len in 0..=full.len() {
        let frame = &full[..len];
        match program.test_run(frame) {
            // The kernel refuses to run XDP on less than an Ethernet header;
            // no real frame that short reaches XDP either.
            Err(TestRunError::Run { source, .. }) if len < 14 => {
                assert_eq!(source.kind(), libbpf_rs::ErrorKind::InvalidInput, "{len}");
            }
            Ok(run) if len < full.len() => {
                assert_eq!(run.action, XdpAction::Pass, "{len}");
                assert_eq!(run.reason(), Some(Counter::PassedTruncated), "{len}: {}", run.counted);
            }
            Ok(run) => {
                assert_eq!(run.action, XdpAction::Pass, "{len}");
                assert_eq!(run.reason(), Some(Counter::RedirectFailed), "{len}: {}", run.counted);
            }
            Err(error) => panic!("{len} bytes: {error:?}"),
        }
    }
}

#[test]
fn drop_knob_drops_steered_frames_only() {
    require_root!();
    let mut program = program();
    let ours = tcp_frame(owned_addr(), LISTEN_PORT);
    let not_ours = tcp_frame(other_addr(), LISTEN_PORT);

    program.set_drop_permille(1000).unwrap();
    for _ in 0..20 {
        assert_decision(&program, &ours, XdpAction::Drop, Counter::DroppedTestKnob);
        assert_passed(&program, &not_ours, Counter::PassedNotOwned);
    }

    // 300 per thousand: 1000 frames drop 300 on average, with a standard
    // deviation of about 14.5, so [200, 400] fails once in 10^11 runs.
    program.set_drop_permille(300).unwrap();
    let before = program.counters().unwrap();
    for _ in 0..1000 {
        program.test_run(&ours).unwrap();
    }
    let counted = program.counters().unwrap().since(&before);
    assert_eq!(counted.dropped_test_knob + counted.redirect_failed, 1000);
    assert!((200..=400).contains(&counted.dropped_test_knob), "{counted}");

    program.set_drop_permille(0).unwrap();
    assert_steered(&program, &ours);
    assert!(matches!(program.set_drop_permille(1001), Err(MapError::InvalidPermille(1001))));
}

#[test]
fn counters_add_up_to_the_frames_seen() {
    require_root!();
    let program = program();
    assert_eq!(program.counters().unwrap().total(), 0);
    let frames = [
        tcp_frame(owned_addr(), LISTEN_PORT),
        tcp_frame(owned_addr(), LISTEN_PORT),
        tcp_frame(other_addr(), LISTEN_PORT),
        arp_frame(1, peer_addr(), owned_addr()),
    ];
    for frame in &frames {
        program.test_run(frame).unwrap();
    }
    let counters = program.counters().unwrap();
    assert_eq!(counters.total(), frames.len() as u64);
    assert_eq!(counters.redirect_failed, 2);
    assert_eq!(counters.passed_not_owned, 1);
    assert_eq!(counters.passed_arp, 1);
    assert_eq!(counters.steered(), 0);
    let line = counters.to_string();
    assert!(line.contains("redirect_failed=2"), "{line}");
}

#[test]
fn socket_registration_is_checked() {
    require_root!();
    let mut program = program();
    assert!(matches!(program.register_socket(64, 0), Err(MapError::QueueOutOfRange { queue: 64, max: 64 })));
    // A UDP socket is not an AF_XDP socket: the kernel refuses it.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let error = program.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&udp)).unwrap_err();
    assert!(matches!(error, MapError::RegisterSocket { queue: 0, .. }), "{error:?}");
    assert!(matches!(program.register_socket(1, -1), Err(MapError::RegisterSocket { queue: 1, fd: -1, .. })));
    // Emptying an empty slot is fine; out of range is not.
    program.unregister_socket(0).unwrap();
    program.unregister_socket(63).unwrap();
    assert!(matches!(program.unregister_socket(64), Err(MapError::QueueOutOfRange { .. })));
    // Nothing registered: frames for synack still reach the kernel.
    assert_steered(&program, &tcp_frame(owned_addr(), LISTEN_PORT));
}

#[test]
fn owned_addresses_are_bounded() {
    require_root!();
    let mut program = SteerObject::load().unwrap();
    for i in 0..MAX_OWNED_ADDRS {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
        program.add_owned_addr(addr).unwrap();
    }
    // Re-adding an owned address is an update, not a new entry.
    program.add_owned_addr(Ipv4Addr::new(198, 18, 0, 0)).unwrap();
    let error = program.add_owned_addr(Ipv4Addr::new(198, 19, 255, 255)).unwrap_err();
    assert!(matches!(error, MapError::Map { map: "owned_addrs", .. }), "{error:?}");
}
