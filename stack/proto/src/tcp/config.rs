//! Per-connection configuration, fixed when a connection is set up.

use core::time::Duration;

/// Bytes of the IPv4 and TCP headers without options: what the MSS leaves of the MTU.
pub(crate) const IPV4_TCP_HEADERS: u16 = 40;

/// Keepalive parameters (RFC 1122 4.2.3.6): off unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is declared dead.
    pub probes: u8,
}

/// Configuration of one connection. `Copy` so that a listener can stamp it onto each
/// connection it spawns without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// The MSS we advertise: the largest segment payload we accept, and the most we send (the
    /// peer's MSS caps it further). [`TcpConfig::mss_for_mtu`] of the interface's MTU; 1460 by
    /// default (MTU 1500).
    pub mss: u16,
    /// Send ring size in bytes (rounded up to a power of two).
    pub send_buffer_len: usize,
    /// Receive ring size in bytes (rounded up to a power of two).
    pub recv_buffer_len: usize,
    /// How long TIME_WAIT lasts (2MSL). Linux uses 60 s.
    pub time_wait: Duration,
    /// How long an orphaned connection (after `close`) may sit in FIN_WAIT_2 (Linux: 60 s).
    pub fin_wait_2_timeout: Duration,
    /// Retransmission timeout before any RTT sample (RFC 6298 2.1: 1 s).
    pub rto_initial: Duration,
    /// Lower bound of the RTO (RFC 6298 says 1 s; Linux and most stacks use 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the RTO (RFC 6298 2.5 allows 60 s or more).
    pub rto_max: Duration,
    /// SYN retransmissions before an active open gives up.
    pub syn_retries: u8,
    /// SYN-ACK retransmissions before a passive open gives up.
    pub synack_retries: u8,
    /// Data retransmissions before an established connection gives up (Linux tcp_retries2);
    /// also the unanswered zero-window probes before it gives up on a peer that went away
    /// with its window closed (Linux's `tcp_probe_timer`).
    pub data_retries: u8,
    /// RFC 9293 3.8.3 and RFC 5482's USER TIMEOUT (Linux `TCP_USER_TIMEOUT`): a connection
    /// whose data (or zero-window probes) go unacknowledged for this long is aborted
    /// ([`CloseReason::TimedOut`](super::CloseReason::TimedOut)), however many retries
    /// `data_retries` would still allow, even while a live peer keeps its window closed.
    /// `None`: only `data_retries` bounds it.
    pub user_timeout: Option<Duration>,
    /// Delayed-ACK timeout (RFC 1122 4.2.3.2: under 0.5 s), or `None` to ACK every segment.
    pub delayed_ack: Option<Duration>,
    /// Nagle's algorithm (RFC 896); switch off for request/response latency.
    pub nagle: bool,
    /// Keepalive probing, off by default.
    pub keepalive: Option<Keepalive>,
    /// Offer and accept window scaling (RFC 7323).
    pub window_scaling: bool,
    /// Offer and accept timestamps and PAWS (RFC 7323).
    pub timestamps: bool,
    /// Offer and accept SACK-permitted; SACK blocks are then generated on receive (RFC 2018).
    pub sack: bool,
    /// Initial congestion window in segments (RFC 6928: 10).
    pub initial_window_segments: u32,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            mss: 1460,
            send_buffer_len: 64 * 1024,
            recv_buffer_len: 64 * 1024,
            time_wait: Duration::from_secs(60),
            fin_wait_2_timeout: Duration::from_secs(60),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            syn_retries: 6,
            synack_retries: 5,
            data_retries: 15,
            user_timeout: None,
            delayed_ack: Some(Duration::from_millis(40)),
            nagle: true,
            keepalive: None,
            window_scaling: true,
            timestamps: true,
            sack: true,
            initial_window_segments: 10,
        }
    }
}

impl TcpConfig {
    /// The MSS that fills an IPv4 packet of `mtu` bytes: `mtu - 40` (RFC 9293 3.7.1: IPv4 and
    /// TCP headers without options; options come out of the segment, not on top). 1460 for
    /// 1500, 8960 for 9000; at least 1.
    pub fn mss_for_mtu(mtu: u16) -> u16 {
        mtu.saturating_sub(IPV4_TCP_HEADERS).max(1)
    }

    /// The interface's MTU that this MSS fills (the inverse of [`TcpConfig::mss_for_mtu`]).
    pub fn mtu(&self) -> u16 {
        self.mss.saturating_add(IPV4_TCP_HEADERS)
    }

    /// The window-scale shift we offer: the smallest that lets the receive ring be advertised.
    pub fn recv_window_shift(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.recv_buffer_len.next_power_of_two() >> shift) > 65535 {
            shift += 1;
        }
        shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mss_fills_the_mtu() {
        assert_eq!(TcpConfig::mss_for_mtu(1500), 1460);
        assert_eq!(TcpConfig::mss_for_mtu(9000), 8960);
        assert_eq!(TcpConfig::mss_for_mtu(576), 536);
        assert_eq!(TcpConfig::mss_for_mtu(10), 1, "never 0");
        assert_eq!(TcpConfig::default().mss, TcpConfig::mss_for_mtu(1500), "the default is MTU 1500's");
        let jumbo = TcpConfig { mss: TcpConfig::mss_for_mtu(9000), ..TcpConfig::default() };
        assert_eq!(jumbo.mtu(), 9000);
    }
}
