//! Which worker owns a local port: the client port range cut into one contiguous slice per
//! worker, so that the connections a worker opens use only its own ports, and a segment that
//! arrives on another worker's queue can be sent to the owner by its destination port alone.

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

/// How one worker routes the TCP segments it receives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortOwnership {
    /// This worker.
    pub me: usize,
    /// Workers in all.
    pub workers: usize,
    /// The whole client port range, shared by all workers.
    pub range: (u16, u16),
}

impl PortOwnership {
    /// The other worker that owns the destination port of `frame`, if the frame is a TCP
    /// segment to a port of the client range that is not ours. `listening` says whether a
    /// port has a listener here: a listener's segments are never handed off.
    #[inline]
    pub fn foreign_owner(&self, frame: &[u8], listening: impl FnOnce(u16) -> bool) -> Option<usize> {
        let port = tcp_dst_port(frame)?;
        let owner = owner_of_port(port, self.range, self.workers)?;
        (owner != self.me && !listening(port)).then_some(owner)
    }
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
    }
}
