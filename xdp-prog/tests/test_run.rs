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
//!
//! The neighbour map is observed directly, with `SteerObject::neighbor`.

mod common;

use std::net::Ipv4Addr;

use common::*;
use synack_xdp::{AddressMode, Counter, MapError, SteerObject, TestRunError, XdpAction, MAX_OWNED_ADDRS};

macro_rules! require_root {
    () => {
        if !common::have_root() {
            return;
        }
    };
}

const LISTEN_PORT: u16 = 80;

/// A loaded program owning `owned_addr()` (shared with the kernel) and
/// `dedicated_addr()`, listening on port 80.
fn program() -> SteerObject {
    let mut program = SteerObject::load().expect("loading the program (verifier)");
    program.add_owned_addr(owned_addr(), AddressMode::Shared).unwrap();
    program.add_owned_addr(dedicated_addr(), AddressMode::Dedicated).unwrap();
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
    assert_eq!(program.owned_addr_mode(other_addr()).unwrap(), None);
    program.add_owned_addr(other_addr(), AddressMode::Shared).unwrap();
    assert_eq!(program.owned_addr_mode(other_addr()).unwrap(), Some(AddressMode::Shared));
    assert_steered(&program, &tcp_frame(other_addr(), LISTEN_PORT));
    program.remove_owned_addr(other_addr()).unwrap();
    assert_eq!(program.owned_addr_mode(other_addr()).unwrap(), None);
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
fn dedicated_address_takes_tcp_to_every_port() {
    require_root!();
    let program = program();
    // Closed ports too (synack answers them with a RST), port 0 included.
    for port in [LISTEN_PORT, LISTEN_PORT + 1, 22, 443, 61000, 65535, 0] {
        assert_steered(&program, &tcp_frame(dedicated_addr(), port));
    }
    // The same ports on the shared address stay the kernel's.
    for port in [LISTEN_PORT + 1, 22, 443, 61000, 65535, 0] {
        assert_passed(&program, &tcp_frame(owned_addr(), port), Counter::PassedPortNotOurs);
    }
    // Fragments are dropped (next test), no other protocols, no truncated TCP header.
    let mut ip = Ipv4::new(peer_addr(), dedicated_addr(), IPPROTO_TCP);
    ip.flags_fragment = 0x2000;
    assert_decision(&program, &tcp_frame_with(&ip, 22), XdpAction::Drop, Counter::DroppedFragment);
    let udp = ethernet(ETH_P_IP, &Ipv4::new(peer_addr(), dedicated_addr(), IPPROTO_UDP).packet(&[0; 8]));
    assert_passed(&program, &udp, Counter::PassedNotTcp);
    let frame = tcp_frame(dedicated_addr(), 22);
    assert_passed(&program, &frame[..frame.len() - 1], Counter::PassedTruncated);
}

#[test]
fn address_mode_can_be_changed() {
    require_root!();
    let mut program = program();
    assert_eq!(program.owned_addr_mode(owned_addr()).unwrap(), Some(AddressMode::Shared));
    assert_eq!(program.owned_addr_mode(dedicated_addr()).unwrap(), Some(AddressMode::Dedicated));
    program.add_owned_addr(owned_addr(), AddressMode::Dedicated).unwrap();
    assert_eq!(program.owned_addr_mode(owned_addr()).unwrap(), Some(AddressMode::Dedicated));
    assert_steered(&program, &tcp_frame(owned_addr(), 22));
    assert_steered(&program, &arp_frame(ARP_REQUEST, peer_addr(), owned_addr()));
    program.add_owned_addr(owned_addr(), AddressMode::Shared).unwrap();
    assert_passed(&program, &tcp_frame(owned_addr(), 22), Counter::PassedPortNotOurs);
    assert_passed(&program, &arp_frame(ARP_REQUEST, peer_addr(), owned_addr()), Counter::PassedArpShared);
}

#[test]
fn arp_for_a_dedicated_address_is_steered() {
    require_root!();
    let program = program();
    let request = arp_frame(ARP_REQUEST, peer_addr(), dedicated_addr());
    assert_steered(&program, &request);
    assert_steered(&program, &arp_frame(ARP_REPLY, peer_addr(), dedicated_addr()));
    // Truncated ARP, and ARP that is not Ethernet/IPv4, go to the kernel.
    assert_passed(&program, &request[..request.len() - 1], Counter::PassedTruncated);
    let mut not_ethernet = request.clone();
    not_ethernet[14..16].copy_from_slice(&6u16.to_be_bytes()); // IEEE 802
    assert_passed(&program, &not_ethernet, Counter::PassedArp);
}

#[test]
fn arp_for_a_shared_or_foreign_address_is_passed() {
    require_root!();
    let program = program();
    assert_passed(&program, &arp_frame(ARP_REQUEST, peer_addr(), owned_addr()), Counter::PassedArpShared);
    assert_passed(&program, &arp_frame(ARP_REPLY, peer_addr(), owned_addr()), Counter::PassedArpShared);
    assert_passed(&program, &arp_frame(ARP_REQUEST, peer_addr(), other_addr()), Counter::PassedNotOwned);
    // The target decides, not the sender: ARP from synack's own addresses to
    // someone else is not synack's (the kernel drops what is not for it).
    assert_passed(&program, &arp_frame(ARP_REQUEST, dedicated_addr(), other_addr()), Counter::PassedNotOwned);
}

#[test]
fn icmp_echo_is_steered_for_dedicated_addresses_only() {
    require_root!();
    let program = program();
    assert_steered(&program, &icmp_frame(8, dedicated_addr()));
    // Echo replies and other ICMP are not synack's, even when dedicated.
    assert_passed(&program, &icmp_frame(0, dedicated_addr()), Counter::PassedNotTcp);
    // The kernel answers pings to the address it shares.
    assert_passed(&program, &icmp_frame(8, owned_addr()), Counter::PassedNotTcp);
    assert_passed(&program, &icmp_frame(8, other_addr()), Counter::PassedNotOwned);
    // An ICMP header cut short.
    let frame = icmp_frame(8, dedicated_addr());
    assert_passed(&program, &frame[..14 + 20 + 7], Counter::PassedTruncated);
}

#[test]
fn frag_needed_about_synacks_segments_is_steered() {
    require_root!();
    let mut program = program();
    program.set_local_port_range(61000, 61999).unwrap();
    let quoting = |from: Ipv4Addr| Ipv4::new(from, peer_addr(), IPPROTO_TCP);
    let frag_needed = |to: Ipv4Addr, port: u16| frag_needed_frame(to, &quoting(to), port, 1400);
    let steered = |program: &SteerObject, frame: &[u8]| {
        assert_decision(program, frame, XdpAction::Pass, Counter::RedirectFailed);
    };
    // A shared address: from a listening port or from the local port range.
    steered(&program, &frag_needed(owned_addr(), LISTEN_PORT));
    steered(&program, &frag_needed(owned_addr(), 61500));
    // The kernel's own connections on the shared address keep theirs.
    assert_passed(&program, &frag_needed(owned_addr(), 22), Counter::PassedPortNotOurs);
    // A dedicated address: every TCP port is synack's.
    steered(&program, &frag_needed(dedicated_addr(), 22));
    // Quoting a datagram another host sent, or not TCP.
    let forged = frag_needed_frame(owned_addr(), &quoting(other_addr()), LISTEN_PORT, 1400);
    assert_passed(&program, &forged, Counter::PassedNotTcp);
    let udp = frag_needed_frame(owned_addr(), &Ipv4::new(owned_addr(), peer_addr(), 17), LISTEN_PORT, 1400);
    assert_passed(&program, &udp, Counter::PassedNotTcp);
    // Other unreachables stay the kernel's.
    let mut port_unreachable = frag_needed(dedicated_addr(), 22);
    port_unreachable[14 + 21] = 3;
    assert_passed(&program, &port_unreachable, Counter::PassedNotTcp);
    // The quoted header's options are skipped by its IHL.
    let mut with_options = quoting(owned_addr());
    with_options.options = vec![1; 8];
    steered(&program, &frag_needed_frame(owned_addr(), &with_options, LISTEN_PORT, 1400));
    // Cut before the quoted ports, or a quoted header that is not IPv4.
    let frame = frag_needed(owned_addr(), LISTEN_PORT);
    assert_passed(&program, &frame[..14 + 20 + 8 + 20 + 3], Counter::PassedTruncated);
    assert_passed(&program, &frame[..14 + 20 + 8 + 19], Counter::PassedTruncated);
    let mut v6 = quoting(owned_addr());
    v6.version = 6;
    assert_passed(&program, &frag_needed_frame(owned_addr(), &v6, LISTEN_PORT, 1400), Counter::PassedMalformed);
}

const MAC_OTHER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];

#[test]
fn arp_to_an_owned_address_records_the_sender() {
    require_root!();
    let program = program();
    let peer = peer_addr();
    assert_eq!(program.neighbor(peer).unwrap(), None);
    // A reply to the shared address: passed to the kernel, and recorded.
    assert_passed(&program, &arp_frame(ARP_REPLY, peer, owned_addr()), Counter::PassedArpShared);
    assert_eq!(program.neighbor(peer).unwrap(), Some(MAC_PEER));

    // A request to the dedicated address records its sender too.
    let second = Ipv4Addr::new(198, 18, 0, 9);
    assert_steered(&program, &arp_frame_from(ARP_REQUEST, MAC_OTHER, second, dedicated_addr()));
    assert_eq!(program.neighbor(second).unwrap(), Some(MAC_OTHER));
    assert_eq!(program.neighbor(peer).unwrap(), Some(MAC_PEER), "the first entry stays");

    // A new MAC for a known address replaces the old one.
    assert_passed(&program, &arp_frame_from(ARP_REQUEST, MAC_OTHER, peer, owned_addr()), Counter::PassedArpShared);
    assert_eq!(program.neighbor(peer).unwrap(), Some(MAC_OTHER));
}

#[test]
fn neighbors_can_be_forgotten() {
    require_root!();
    let mut program = program();
    program.test_run(&arp_frame(ARP_REPLY, peer_addr(), owned_addr())).unwrap();
    assert_eq!(program.neighbor(peer_addr()).unwrap(), Some(MAC_PEER));
    program.forget_neighbor(peer_addr()).unwrap();
    assert_eq!(program.neighbor(peer_addr()).unwrap(), None);
    // Forgetting an unknown neighbour is not an error.
    program.forget_neighbor(peer_addr()).unwrap();
}

#[test]
fn arp_for_a_foreign_target_records_nothing() {
    require_root!();
    let program = program();
    for op in [ARP_REQUEST, ARP_REPLY] {
        assert_passed(&program, &arp_frame(op, peer_addr(), other_addr()), Counter::PassedNotOwned);
    }
    assert_eq!(program.neighbor(peer_addr()).unwrap(), None);
}

#[test]
fn malformed_or_odd_arp_records_nothing() {
    require_root!();
    let program = program();
    let peer = peer_addr();
    let reply = arp_frame(ARP_REPLY, peer, owned_addr());
    assert_eq!(reply.len(), 14 + 28);

    // Cut at every length from an empty ARP body to one byte short.
    for len in 14..reply.len() {
        assert_passed(&program, &reply[..len], Counter::PassedTruncated);
    }
    // Not Ethernet/IPv4: wrong hardware type, protocol, or address lengths.
    for (offset, bytes) in [(14, &[0, 6][..]), (16, &[0x86, 0xdd][..]), (18, &[8][..]), (19, &[16][..])] {
        let mut frame = reply.clone();
        frame[offset..offset + bytes.len()].copy_from_slice(bytes);
        assert_passed(&program, &frame, Counter::PassedArp);
    }
    // Well-formed, owned target, but nothing to learn: an operation other
    // than request or reply (RARP 3, InARP 8), an RFC 5227 probe (sender
    // 0.0.0.0), a sender that claims the target address itself, and a group
    // sender MAC. Each is still passed as ARP for a shared address.
    let odd = [
        arp_frame(3, peer, owned_addr()),
        arp_frame(8, peer, owned_addr()),
        arp_frame(ARP_REQUEST, Ipv4Addr::UNSPECIFIED, owned_addr()),
        arp_frame(ARP_REQUEST, owned_addr(), owned_addr()),
        arp_frame_from(ARP_REPLY, [0xff; 6], peer, owned_addr()),
        arp_frame_from(ARP_REPLY, [0x01, 0, 0x5e, 0, 0, 1], peer, owned_addr()),
    ];
    for frame in &odd {
        assert_passed(&program, frame, Counter::PassedArpShared);
    }
    for addr in [peer, Ipv4Addr::UNSPECIFIED, owned_addr()] {
        assert_eq!(program.neighbor(addr).unwrap(), None, "{addr}");
    }
    // Trailing bytes after the ARP body (Ethernet padding to 60) are fine.
    let mut padded = reply.clone();
    padded.resize(60, 0);
    assert_passed(&program, &padded, Counter::PassedArpShared);
    assert_eq!(program.neighbor(peer).unwrap(), Some(MAC_PEER));
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
    // The same bytes behind an IPv6 ethertype.
    assert_passed(&program, &ethernet(ETH_P_IPV6, ip_and_tcp), Counter::PassedNotIpv4);
}

/// synack serves untagged frames only: TCP to its port (and ARP for a dedicated address) behind
/// an 802.1Q tag, an 802.1ad one (QinQ) or the pre-standard 0x9100 passes to the kernel,
/// counted as VLAN.
#[test]
fn vlan_tagged_frames_are_passed() {
    require_root!();
    let program = program();
    let ip_and_tcp = &tcp_frame(owned_addr(), LISTEN_PORT)[14..];
    for tpid in [0x8100u16, 0x88a8, 0x9100] {
        // VLAN 5, then the IPv4 ethertype and packet; for QinQ an inner 802.1Q tag too.
        let mut tagged = vec![0x00, 0x05];
        if tpid != 0x8100 {
            tagged.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            tagged.extend_from_slice(&[0x00, 0x06]);
        }
        tagged.extend_from_slice(&ETH_P_IP.to_be_bytes());
        tagged.extend_from_slice(ip_and_tcp);
        assert_passed(&program, &ethernet(tpid, &tagged), Counter::PassedVlan);
    }
    let arp = &arp_frame(ARP_REQUEST, peer_addr(), dedicated_addr())[14..];
    let mut tagged = vec![0x00, 0x05];
    tagged.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    tagged.extend_from_slice(arp);
    assert_passed(&program, &ethernet(ETH_P_8021Q, &tagged), Counter::PassedVlan);
    assert_eq!(program.counters().unwrap().passed_vlan, 4);
}

#[test]
fn malformed_ipv4_is_passed() {
    require_root!();
    let program = program();
    // An IPv4 ethertype with a version 6 header is malformed.
    let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
    ip.version = 6;
    assert_passed(&program, &tcp_frame_with(&ip, LISTEN_PORT), Counter::PassedMalformed);
}

/// First fragment (MF), a middle one (MF + offset), the last (offset).
const FRAGMENTS: [u16; 4] = [0x2000, 0x2000 | 185, 370, 0x4000 | 1];

/// Fragments of synack's flows never reach the kernel, which would reset them (no socket of
/// its own) on a shared address: every TCP fragment to a dedicated address, and the first
/// fragment to synack's ports of a shared one, are dropped and counted.
#[test]
fn fragments_of_owned_flows_are_dropped_and_counted() {
    require_root!();
    let mut program = program();
    program.set_local_port_range(61000, 61999).unwrap();
    for flags_fragment in FRAGMENTS {
        let mut ip = Ipv4::new(peer_addr(), dedicated_addr(), IPPROTO_TCP);
        ip.flags_fragment = flags_fragment;
        for port in [LISTEN_PORT, 22] {
            assert_decision(&program, &tcp_frame_with(&ip, port), XdpAction::Drop, Counter::DroppedFragment);
        }
    }
    for port in [LISTEN_PORT, 61000, 61999] {
        let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
        ip.flags_fragment = 0x2000;
        assert_decision(&program, &tcp_frame_with(&ip, port), XdpAction::Drop, Counter::DroppedFragment);
    }
    assert_eq!(program.counters().unwrap().dropped_fragment, 11);
}

/// What cannot be synack's passes: fragments to the kernel's ports of a shared address, later
/// fragments of a shared address (no ports to tell), other protocols, other addresses.
#[test]
fn other_fragments_are_passed() {
    require_root!();
    let program = program();
    for flags_fragment in FRAGMENTS {
        let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
        ip.flags_fragment = flags_fragment;
        assert_passed(&program, &tcp_frame_with(&ip, 22), Counter::PassedFragment);
        if flags_fragment & 0x1fff != 0 {
            assert_passed(&program, &tcp_frame_with(&ip, LISTEN_PORT), Counter::PassedFragment);
        }
        let mut udp = Ipv4::new(peer_addr(), dedicated_addr(), IPPROTO_UDP);
        udp.flags_fragment = flags_fragment;
        assert_passed(&program, &ethernet(ETH_P_IP, &udp.packet(&[0; 8])), Counter::PassedFragment);
        let mut other = Ipv4::new(peer_addr(), other_addr(), IPPROTO_TCP);
        other.flags_fragment = flags_fragment;
        assert_passed(&program, &tcp_frame_with(&other, LISTEN_PORT), Counter::PassedNotOwned);
    }
    // A first fragment too short to hold the ports.
    let mut ip = Ipv4::new(peer_addr(), owned_addr(), IPPROTO_TCP);
    ip.flags_fragment = 0x2000;
    let short = ethernet(ETH_P_IP, &ip.packet(&[0, 80]));
    assert_passed(&program, &short, Counter::PassedTruncated);
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
        arp_frame(ARP_REQUEST, peer_addr(), owned_addr()),
        tcp_frame(dedicated_addr(), 22),
    ];
    for frame in &frames {
        program.test_run(frame).unwrap();
    }
    let counters = program.counters().unwrap();
    assert_eq!(counters.total(), frames.len() as u64);
    assert_eq!(counters.redirect_failed, 3);
    assert_eq!(counters.passed_not_owned, 1);
    assert_eq!(counters.passed_arp_shared, 1);
    assert_eq!(counters.steered(), 0);
    let line = counters.to_string();
    assert!(line.contains("redirect_failed=3"), "{line}");
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
        program.add_owned_addr(addr, AddressMode::Shared).unwrap();
    }
    // Re-adding an owned address is an update, not a new entry.
    program.add_owned_addr(Ipv4Addr::new(198, 18, 0, 0), AddressMode::Dedicated).unwrap();
    let error = program.add_owned_addr(Ipv4Addr::new(198, 19, 255, 255), AddressMode::Shared).unwrap_err();
    assert!(matches!(error, MapError::Map { map: "owned_addrs", .. }), "{error:?}");
}
