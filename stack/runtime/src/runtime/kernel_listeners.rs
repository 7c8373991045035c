//! The kernel's listening TCP sockets in this network namespace, read from
//! `/proc/self/net/tcp{,6}`: on a shared address synack must not take over a port the kernel
//! already serves (its clients' SYNs would reach synack instead).

use std::net::{Ipv4Addr, Ipv6Addr};

/// TCP_LISTEN in the kernel's `st` column.
const LISTEN: &str = "0A";

/// The first of `ports` on which the kernel listens for `addr`: bound to it, to the IPv4
/// wildcard, or (dual-stack, as `bindv6only=0` makes them) to `::` or `::ffff:addr`. Returns
/// the port and the local address the kernel's socket is bound to. Unreadable procfs: none.
pub(super) fn first_taken(addr: Ipv4Addr, ports: &[u16]) -> Option<(u16, String)> {
    let v4 = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/self/net/tcp6").unwrap_or_default();
    taken_in(&v4, &v6, addr, ports)
}

/// [`first_taken`] over the text of `/proc/net/tcp` and `/proc/net/tcp6`.
fn taken_in(v4: &str, v6: &str, addr: Ipv4Addr, ports: &[u16]) -> Option<(u16, String)> {
    let mut listeners =
        listening_v4(v4).filter(|(a, _)| *a == addr || a.is_unspecified()).map(|(a, p)| (p, a.to_string())).chain(
            listening_v6(v6)
                .filter(|(a, _)| a.is_unspecified() || a.to_ipv4_mapped() == Some(addr))
                .map(|(a, p)| (p, format!("[{a}]"))),
        );
    listeners.find(|(p, _)| ports.contains(p))
}

/// The (address, port) of every IPv4 listening socket in `/proc/net/tcp` text.
fn listening_v4(text: &str) -> impl Iterator<Item = (Ipv4Addr, u16)> + '_ {
    listening(text).filter_map(|(addr, port)| {
        // The address is the network-order word printed as a host (little-endian) integer.
        let word = u32::from_str_radix(addr, 16).ok().filter(|_| addr.len() == 8)?;
        Some((Ipv4Addr::from(word.to_le_bytes()), port))
    })
}

/// The (address, port) of every IPv6 listening socket in `/proc/net/tcp6` text.
fn listening_v6(text: &str) -> impl Iterator<Item = (Ipv6Addr, u16)> + '_ {
    listening(text).filter_map(|(addr, port)| {
        if addr.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Some((Ipv6Addr::from(bytes), port))
    })
}

/// The hex local address and the port of every line in state LISTEN.
fn listening(text: &str) -> impl Iterator<Item = (&str, u16)> {
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let local = fields.next()?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        let (addr, port) = local.split_once(':')?;
        Some((addr, u16::from_str_radix(port, 16).ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
        0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   \
        1: 010012C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n   \
        2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n   \
        3: 010012C6:1F91 020012C6:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st\n   \
        0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 0A 0\n   \
        1: 0000000000000000FFFF0000010012C6:01BB 00000000000000000000000000000000:0000 0A 0\n   \
        2: 0000000000000000FFFF0000020012C6:1BB9 00000000000000000000000000000000:0000 0A 0\n";

    #[test]
    fn listening_sockets_are_read_in_little_endian_hex() {
        let v4: Vec<_> = listening_v4(TCP).collect();
        assert_eq!(
            v4,
            vec![(Ipv4Addr::new(127, 0, 0, 1), 8080), (Ipv4Addr::new(198, 18, 0, 1), 80), (Ipv4Addr::UNSPECIFIED, 22),],
            "an established socket (state 01) is not a listener"
        );
        let v6: Vec<_> = listening_v6(TCP6).collect();
        assert_eq!(v6[0], (Ipv6Addr::UNSPECIFIED, 53));
        assert_eq!(v6[1], (Ipv4Addr::new(198, 18, 0, 1).to_ipv6_mapped(), 443));
        assert_eq!(v6[2].0.to_ipv4_mapped(), Some(Ipv4Addr::new(198, 18, 0, 2)));
    }

    #[test]
    fn a_port_is_taken_by_the_address_or_a_wildcard() {
        let ours = Ipv4Addr::new(198, 18, 0, 1);
        let taken = |ports: &[u16]| taken_in(TCP, TCP6, ours, ports).map(|(p, _)| p);
        assert_eq!(taken(&[80]), Some(80), "bound to our address");
        assert_eq!(taken(&[22]), Some(22), "the IPv4 wildcard");
        assert_eq!(taken(&[53]), Some(53), "the dual-stack wildcard");
        assert_eq!(taken(&[443]), Some(443), "our address, v4-mapped");
        assert_eq!(taken(&[8080]), None, "bound to another address (loopback)");
        assert_eq!(taken(&[7097]), None, "another address, v4-mapped");
        assert_eq!(taken(&[8081]), None, "not listening");
        assert_eq!(taken(&[7, 8, 9]), None);
        assert_eq!(taken_in(TCP, TCP6, ours, &[80]).unwrap().1, "198.18.0.1");
    }
}
