//! Steering between workers: which worker owns a local port (the client port range cut into
//! one contiguous slice per worker, so that the connections a worker opens use only its own
//! ports, and a segment that arrives on another worker's queue can be sent to the owner by
//! its destination port alone), and where each received frame goes ([`PortOwnership::route`]).
//! I/O-free: the runtime's workers and the simulator's (`sim::Workers`) share it.

use crate::wire::{EtherType, EthernetFrame, Ipv4Packet};

/// The slice of `range` (inclusive) that `worker` of `workers` owns, or `None` when the worker
/// does not exist or the range has fewer ports than there are workers. Slices are contiguous,
/// in worker order, and differ in length by at most one (the first `len % workers` workers
/// get one port more).
pub fn port_slice(worker: usize, (lo, hi): (u16, u16), workers: usize) -> Option<(u16, u16)> {
    let len = range_len(lo, hi);
    if worker >= workers || len < workers {
        return None;
    }
    let (base, extra) = (len / workers, len % workers);
    let start = worker * base + worker.min(extra);
    let count = base + usize::from(worker < extra);
    // Both fit u16: start + count <= len, and lo + len - 1 == hi.
    let first = lo + start as u16;
    Some((first, first + (count - 1) as u16))
}

/// The worker whose slice of `range` (inclusive) holds `port`: the inverse of [`port_slice`].
/// `None` for a port outside the range, or when the range cannot be split over `workers`.
#[inline]
pub fn owner_of_port(port: u16, (lo, hi): (u16, u16), workers: usize) -> Option<usize> {
    let len = range_len(lo, hi);
    if port < lo || port > hi || workers == 0 || len < workers {
        return None;
    }
    let offset = usize::from(port - lo);
    let (base, extra) = (len / workers, len % workers);
    // The first `extra` slices hold `base + 1` ports each, the rest `base`.
    let long = extra * (base + 1);
    Some(if offset < long { offset / (base + 1) } else { extra + (offset - long) / base })
}

fn range_len(lo: u16, hi: u16) -> usize {
    if hi < lo {
        0
    } else {
        usize::from(hi - lo) + 1
    }
}

/// The destination port of an IPv4 TCP frame, read from the frame in place (no checksum, no
/// option parsing: the owner's [`Interface`](crate::iface::Interface) validates the frame).
/// `None` for anything else, and for a non-first fragment, which has no TCP header.
#[inline]
pub fn tcp_dst_port(frame: &[u8]) -> Option<u16> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != crate::wire::ip_protocol::TCP || ip.frag_offset() != 0 {
        return None;
    }
    match ip.payload() {
        [_, _, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// The local port of the TCP segment an ICMP fragmentation-needed message (type 3 code 4)
/// quotes: the quoted source port, read in place like [`tcp_dst_port`]. The message lands on
/// whatever queue the router's own flow hashes to, not on the connection's.
#[inline]
pub fn frag_needed_local_port(frame: &[u8]) -> Option<u16> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != crate::wire::ip_protocol::ICMP || ip.frag_offset() != 0 || ip.more_frags() {
        return None;
    }
    let icmp = ip.payload();
    if icmp.get(..2)? != [3, 4] {
        return None;
    }
    let quoted = icmp.get(8..)?;
    let ihl = usize::from(quoted.first()? & 0x0f) * 4;
    if *quoted.get(9)? != crate::wire::ip_protocol::TCP || ihl < 20 {
        return None;
    }
    let port = quoted.get(ihl..ihl + 2)?;
    Some(u16::from_be_bytes([port[0], port[1]]))
}

/// How one worker routes the frames it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortOwnership {
    /// This worker.
    pub me: usize,
    /// Workers in all.
    pub workers: usize,
    /// The whole client port range, shared by all workers.
    pub range: (u16, u16),
}

/// Where a frame a worker received goes ([`PortOwnership::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// A copy goes to every other worker: an ARP reply (any worker may wait for it, and on a
    /// dedicated address no kernel notes it for them all), or ICMP fragmentation-needed about
    /// an accepted connection (RSS chose its queue: each worker looks, the others count it
    /// ignored).
    pub copy_to_others: bool,
    /// Another worker opened the connection: the frame is handed to it and not processed here.
    /// `None`: this worker's interface takes the frame.
    pub owner: Option<usize>,
}

impl PortOwnership {
    /// The other worker that owns the destination port of `frame`, if the frame is a TCP
    /// segment to a port of the client range that is not ours. `listening` says whether a
    /// port has a listener here: a listener's segments are never handed off.
    /// An ICMP fragmentation-needed message goes the same way, by the local port it quotes.
    #[inline]
    pub fn foreign_owner(&self, frame: &[u8], listening: impl FnOnce(u16) -> bool) -> Option<usize> {
        let port = tcp_dst_port(frame).or_else(|| frag_needed_local_port(frame))?;
        let owner = owner_of_port(port, self.range, self.workers)?;
        (owner != self.me && !listening(port)).then_some(owner)
    }

    /// Where `frame` goes: copies to the other workers, and the one worker that processes it.
    #[inline]
    pub fn route(&self, frame: &[u8], listening: impl Fn(u16) -> bool) -> Route {
        let copy_to_others =
            self.workers > 1 && (is_arp_reply(frame) || frag_needed_local_port(frame).is_some_and(&listening));
        let owner = if self.workers > 1 { self.foreign_owner(frame, &listening) } else { None };
        Route { copy_to_others, owner }
    }
}

/// Whether a frame is an ARP reply (Ethernet type 0x0806, operation 2).
#[inline]
pub fn is_arp_reply(frame: &[u8]) -> bool {
    frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[20..22] == [0, 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{emit_header, EthernetAddress, EthernetRepr, Ipv4Repr, TcpFlags, TcpRepr};
    use std::net::Ipv4Addr;

    #[test]
    fn slices_cover_the_range_in_order_without_overlap() {
        for &(lo, hi) in &[(61000u16, 65535u16), (1, 10), (100, 100), (65530, 65535), (1, 65535)] {
            for workers in 1..=7usize {
                let len = usize::from(hi - lo) + 1;
                if len < workers {
                    assert_eq!(port_slice(0, (lo, hi), workers), None);
                    continue;
                }
                let mut next = lo as u32;
                let mut sizes = Vec::new();
                for w in 0..workers {
                    let (a, b) = port_slice(w, (lo, hi), workers).unwrap();
                    assert_eq!(a as u32, next, "slice {w} of {workers} starts where {} ended", w.wrapping_sub(1));
                    assert!(b >= a);
                    sizes.push(usize::from(b - a) + 1);
                    next = b as u32 + 1;
                }
                assert_eq!(next, hi as u32 + 1, "the slices end at the range's end");
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
                assert_eq!(port_slice(workers, (lo, hi), workers), None);
            }
        }
    }

    #[test]
    fn the_owner_of_every_port_is_the_worker_whose_slice_holds_it() {
        for &(lo, hi) in &[(61000u16, 65535u16), (1, 10), (7, 9), (65000, 65535)] {
            for workers in 1..=5usize {
                if usize::from(hi - lo) + 1 < workers {
                    continue;
                }
                for w in 0..workers {
                    let (a, b) = port_slice(w, (lo, hi), workers).unwrap();
                    for port in a..=b {
                        assert_eq!(owner_of_port(port, (lo, hi), workers), Some(w), "port {port}");
                    }
                }
            }
        }
        // Two workers over the default range: 2268 ports each.
        assert_eq!(port_slice(0, (61000, 65535), 2), Some((61000, 63267)));
        assert_eq!(port_slice(1, (61000, 65535), 2), Some((63268, 65535)));
        assert_eq!(owner_of_port(63267, (61000, 65535), 2), Some(0));
        assert_eq!(owner_of_port(63268, (61000, 65535), 2), Some(1));
    }

    #[test]
    fn ports_outside_the_range_and_impossible_splits_have_no_owner() {
        assert_eq!(owner_of_port(60999, (61000, 65535), 2), None);
        assert_eq!(owner_of_port(80, (61000, 65535), 2), None);
        assert_eq!(owner_of_port(61000, (61000, 65535), 0), None);
        assert_eq!(owner_of_port(5, (5, 6), 3), None, "3 workers cannot share 2 ports");
        assert_eq!(owner_of_port(5, (6, 5), 1), None, "an empty range");
        assert_eq!(port_slice(0, (6, 5), 1), None);
    }

    fn tcp_frame(dst_port: u16) -> Vec<u8> {
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 1));
        let repr = TcpRepr { src_port: 7, dst_port, seq: 1, flags: TcpFlags::SYN, window: 1000, ..TcpRepr::default() };
        let mut buf = vec![0u8; 14 + 20 + repr.header_len()];
        EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EtherType::IPV4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..14]));
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: crate::wire::ip_protocol::TCP,
            payload_len: repr.header_len(),
            ttl: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]));
        emit_header(&mut buf[34..], &repr, src, dst, 0);
        buf
    }

    #[test]
    fn the_destination_port_is_read_from_tcp_frames_only() {
        let frame = tcp_frame(63300);
        assert_eq!(tcp_dst_port(&frame), Some(63300));
        // Truncated anywhere: no port, no panic.
        for len in 0..frame.len() {
            let _ = tcp_dst_port(&frame[..len]);
        }
        assert_eq!(tcp_dst_port(&frame[..30]), None);
        let mut udp = frame.clone();
        udp[14 + 9] = crate::wire::ip_protocol::UDP;
        assert_eq!(tcp_dst_port(&udp), None);
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
        assert_eq!(tcp_dst_port(&arp), None);
        let mut later_fragment = frame;
        later_fragment[14 + 7] = 1; // fragment offset 8 bytes
        assert_eq!(tcp_dst_port(&later_fragment), None);
    }

    #[test]
    fn only_segments_to_another_workers_port_are_routed_away() {
        let range = (61000, 65535);
        let w0 = PortOwnership { me: 0, workers: 2, range };
        let w1 = PortOwnership { me: 1, workers: 2, range };
        let theirs = tcp_frame(64000); // worker 1's
        assert_eq!(w0.foreign_owner(&theirs, |_| false), Some(1));
        assert_eq!(w1.foreign_owner(&theirs, |_| false), None, "its own port stays");
        assert_eq!(w0.foreign_owner(&theirs, |p| p == 64000), None, "a listener's port stays");
        assert_eq!(w0.foreign_owner(&tcp_frame(80), |_| false), None, "outside the range");
        let single = PortOwnership { me: 0, workers: 1, range };
        assert_eq!(single.foreign_owner(&theirs, |_| false), None);
        assert_eq!(w0.route(&theirs, |_| false), Route { copy_to_others: false, owner: Some(1) });
        assert_eq!(w1.route(&theirs, |_| false), Route { copy_to_others: false, owner: None });
        assert_eq!(single.route(&theirs, |_| false), Route { copy_to_others: false, owner: None });
    }

    #[test]
    fn arp_replies_are_copied_to_every_other_worker() {
        let w0 = PortOwnership { me: 0, workers: 2, range: (61000, 65535) };
        let mut reply = vec![0u8; 42];
        reply[12..14].copy_from_slice(&[0x08, 0x06]);
        reply[20..22].copy_from_slice(&[0, 2]);
        assert_eq!(w0.route(&reply, |_| false), Route { copy_to_others: true, owner: None });
        let mut request = reply.clone();
        request[21] = 1;
        assert_eq!(w0.route(&request, |_| false), Route { copy_to_others: false, owner: None });
        assert!(!is_arp_reply(&reply[..41]), "truncated");
        let single = PortOwnership { me: 0, workers: 1, range: (61000, 65535) };
        assert_eq!(single.route(&reply, |_| false), Route { copy_to_others: false, owner: None });
    }

    /// ICMP fragmentation-needed from a router, quoting a TCP segment from `src_port`.
    fn frag_needed_frame(src_port: u16) -> Vec<u8> {
        let segment = tcp_frame(9);
        // The quoted datagram: the segment's IPv4 header and 8 bytes of TCP, with the ports
        // of a segment we sent (swapped from the test frame's).
        let mut quoted = segment[14..14 + 28].to_vec();
        quoted[20..22].copy_from_slice(&src_port.to_be_bytes());
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
        icmp.extend_from_slice(&quoted);
        let mut buf = segment[..14].to_vec();
        buf.resize(14 + 20 + icmp.len(), 0);
        Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 254),
            dst_addr: Ipv4Addr::new(198, 18, 0, 1),
            protocol: crate::wire::ip_protocol::ICMP,
            payload_len: icmp.len(),
            ttl: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..34]));
        buf[34..].copy_from_slice(&icmp);
        buf
    }

    #[test]
    fn frag_needed_goes_to_the_owner_of_the_port_it_quotes() {
        let range = (61000, 65535);
        let w0 = PortOwnership { me: 0, workers: 2, range };
        let w1 = PortOwnership { me: 1, workers: 2, range };
        let theirs = frag_needed_frame(64000);
        assert_eq!(frag_needed_local_port(&theirs), Some(64000));
        assert_eq!(w0.foreign_owner(&theirs, |_| false), Some(1));
        assert_eq!(w1.foreign_owner(&theirs, |_| false), None);
        assert_eq!(w1.foreign_owner(&frag_needed_frame(80), |_| false), None, "a listener's port");
        assert_eq!(w1.route(&frag_needed_frame(80), |p| p == 80), Route { copy_to_others: true, owner: None });
        assert_eq!(w0.route(&theirs, |_| false), Route { copy_to_others: false, owner: Some(1) });
        for len in 0..theirs.len() {
            let _ = frag_needed_local_port(&theirs[..len]);
        }
        let mut port_unreachable = theirs.clone();
        port_unreachable[35] = 3;
        assert_eq!(frag_needed_local_port(&port_unreachable), None);
        assert_eq!(frag_needed_local_port(&tcp_frame(64000)), None);
    }
}
