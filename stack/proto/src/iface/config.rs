//! Configuration of one interface (one worker's shard).

use core::time::Duration;
use std::net::Ipv4Addr;

use crate::tcp::TcpConfig;
use crate::wire::{ChecksumMode, EthernetAddress};

/// Whether the kernel shares synack's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// The address is also assigned to the kernel's interface: the kernel answers ARP, and
    /// synack sees only the frames of its own ports.
    Shared,
    /// The address is synack's alone: synack answers ARP and ICMP echo itself, and answers
    /// every TCP port (an RST where nothing listens).
    Dedicated,
}

/// What a SYN meets when the connection table or the SYN backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFullPolicy {
    /// Drop the SYN silently, as Linux does with a full backlog: the client retries its SYN
    /// after its RTO, by which time room may have been made.
    Drop,
    /// Answer with an RST: the client fails at once instead of waiting.
    Reset,
}

/// Configuration of an [`Interface`](super::Interface).
#[derive(Debug, Clone, Copy)]
pub struct InterfaceConfig {
    /// Our MAC address.
    pub mac: EthernetAddress,
    /// Our IPv4 address.
    pub addr: Ipv4Addr,
    /// The prefix length of our subnet: addresses in it are on-link.
    pub prefix_len: u8,
    /// The next hop for addresses off-link, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Shared with the kernel or dedicated.
    pub address_mode: AddressMode,
    /// Answer ICMP echo requests (the XDP program steers them only for a dedicated address).
    pub icmp_echo: bool,
    /// Verify TCP checksums (default) or trust them (a veth peer with TX offload on sends
    /// partial checksums). IPv4 header checksums are always verified: no NIC or veth
    /// leaves them partial.
    pub checksum: ChecksumMode,
    /// The configuration of every connection.
    pub tcp: TcpConfig,
    /// The most connections (not counting TIME_WAIT records) the table holds.
    pub max_connections: usize,
    /// The most orphans: connections the application closed that have not finished their
    /// close (FIN-WAIT, CLOSING, LAST-ACK; TIME_WAIT records are bounded apart). Beyond it the
    /// oldest orphan is reset, counted in `orphans_reset` (Linux's `tcp_max_orphans`).
    pub max_orphans: usize,
    /// The most passive connections that may sit in SYN-RECEIVED at once.
    pub syn_backlog: usize,
    /// What a SYN meets when the table or the backlog is full (with `syn_cookies` on, only
    /// when the table is full).
    pub table_full: TableFullPolicy,
    /// Answer SYNs with SYN cookies (RFC 4987) while the SYN backlog is full, instead of
    /// applying `table_full`: no state is kept until the client's ACK returns a valid cookie.
    /// Default on, as Linux's `tcp_syncookies=1`.
    pub syn_cookies: bool,
    /// The most TIME_WAIT records held, allocated at start (about 58 bytes each); when full,
    /// the record nearest to expiry (the oldest, to within a timer-wheel slot) is ended early
    /// and counted in `time_wait_evicted`.
    pub max_time_wait: usize,
    /// Ring memory (and as many connection slots) is allocated and its pages touched up front,
    /// up to this many bytes of send and receive ring pairs (or `max_connections` pairs, or
    /// `ring_pool_bytes`, if fewer); more is allocated when first needed. First-touch page
    /// faults are slow (on a VM each may also fault in the host) and would otherwise land on
    /// the first connections, stalling a ramp-up.
    pub prefault_bytes: usize,
    /// The most bytes of send and receive rings the worker holds (default 512 MiB). Rings are
    /// not a connection's own: a connection is lent a receive ring when data arrives and a
    /// send ring when the application writes, and gives each back once drained (read; all
    /// acknowledged), so an idle connection holds none. Send and receive rings come in equal
    /// numbers, as many pairs as fit (at least one, at most `max_connections`). When none is
    /// free, data that arrives is dropped (`rx_no_ring`) and answered with a zero window until
    /// one frees (an ACK then announces the window open; the peer's probes find it too), and
    /// `send` takes nothing (`tx_no_ring`) until [`App::on_writable`](super::App::on_writable)
    /// says one is free.
    pub ring_pool_bytes: usize,
    /// The local ports connections opened by [`connect`](super::Interface::connect) use.
    pub local_ports: (u16, u16),
    /// Reuse a local port whose 4-tuple is in TIME_WAIT on our side once timestamps make it
    /// safe and this long (at least 1 ms) has passed since its last segment (RFC 6191; see
    /// `TimeWaitRecord::reuse_iss`); `None`: never.
    pub time_wait_reuse: Option<Duration>,
    /// How long a learned neighbour entry is trusted without being heard from.
    pub neighbor_ttl: Duration,
    /// Time between ARP requests for an unresolved neighbour.
    pub arp_retry_interval: Duration,
    /// ARP requests before connections waiting for a neighbour are aborted.
    pub arp_retries: u8,
    /// Time to live of the IPv4 packets we send.
    pub ttl: u8,
}

impl InterfaceConfig {
    /// Defaults for `mac` and `addr` on a /24: 4096 connections, 1024 half-open, TIME_WAIT
    /// records for up to 1 M 4-tuples, client ports 61000-65535 (above Linux's default
    /// `ip_local_port_range`) reused from TIME_WAIT after 1 ms, checksums verified.
    pub fn new(mac: EthernetAddress, addr: Ipv4Addr) -> InterfaceConfig {
        InterfaceConfig {
            mac,
            addr,
            prefix_len: 24,
            gateway: None,
            address_mode: AddressMode::Shared,
            icmp_echo: true,
            checksum: ChecksumMode::Verify,
            tcp: TcpConfig::default(),
            max_connections: 4096,
            max_orphans: 4096,
            syn_backlog: 1024,
            table_full: TableFullPolicy::Drop,
            syn_cookies: true,
            max_time_wait: 1 << 20,
            prefault_bytes: 128 << 20,
            ring_pool_bytes: 512 << 20,
            local_ports: (61000, 65535),
            time_wait_reuse: Some(Duration::from_millis(1)),
            neighbor_ttl: Duration::from_secs(60),
            arp_retry_interval: Duration::from_secs(1),
            arp_retries: 3,
            ttl: 64,
        }
    }

    /// Fits the interface to a link MTU: the MSS advertised and used becomes `mtu - 40`
    /// ([`TcpConfig::mss_for_mtu`]), so that a full segment fills a packet of `mtu` bytes.
    pub fn set_mtu(&mut self, mtu: u16) {
        self.tcp.mss = TcpConfig::mss_for_mtu(mtu);
    }

    /// The longest Ethernet frame this interface sends a TCP segment in: its MTU
    /// (`tcp.mss + 40`) plus the 14-byte Ethernet header. Received frames of the same link are
    /// no longer; a buffer that takes frames needs this many bytes.
    pub fn max_frame_len(&self) -> usize {
        usize::from(self.tcp.mtu()) + crate::wire::ethernet::HEADER_LEN
    }

    /// Whether `addr` is in our subnet.
    pub fn is_on_link(&self, addr: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len.min(32))) };
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }

    /// The next hop towards `addr`, or `None` when it is off-link and there is no gateway.
    pub fn next_hop(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.is_on_link(addr) {
            Some(addr)
        } else {
            self.gateway
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mtu_sets_the_mss_and_the_longest_frame() {
        let mut config = InterfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!((config.tcp.mss, config.max_frame_len()), (1460, 1514), "the defaults are MTU 1500's");
        config.set_mtu(9000);
        assert_eq!((config.tcp.mss, config.max_frame_len()), (8960, 9014));
        config.set_mtu(1500);
        assert_eq!(config.tcp, TcpConfig::default(), "back at 1500, nothing else changed");
    }
}
