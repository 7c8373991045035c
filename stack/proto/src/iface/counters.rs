//! Counters of one interface: every frame in is counted once, by what became of it.

use crate::tcp::{ConnectionStats, DropReason};
use crate::wire::WireError;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// What one interface did, frame by frame. Plain `u64`s owned by one worker; add the
        /// workers' values up with `+=` for a total.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Every counter with its name, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }

        impl core::ops::AddAssign for Counters {
            fn add_assign(&mut self, other: Counters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Frames received.
    rx_frames,
    /// TCP segments taken in by a connection, a listener or a TIME_WAIT record.
    rx_segments,
    /// ARP packets received and used.
    rx_arp,
    /// ICMP echo requests answered.
    icmp_echo_replies,
    /// ICMP fragmentation-needed messages honoured: a connection's send MSS lowered (RFC 1191),
    /// or its DF cleared (`pmtu_df_cleared`).
    icmp_frag_needed,
    /// Connections whose segments go out without DF from now on: a fragmentation-needed
    /// reported a next-hop MTU below `tcp::MIN_PATH_MTU` (552), so segments stay sized for
    /// that and routers fragment them (Linux's locked path MTU). Also counted in
    /// `icmp_frag_needed`: not a frame outcome of its own.
    pmtu_df_cleared,
    /// ARP replies sent for our address.
    arp_replies,
    /// ARP requests sent to resolve a neighbour.
    arp_requests,
    /// Frames sent from [`poll`](super::Interface::poll) (replies in place not included).
    tx_frames,
    /// RSTs sent for segments that matched no connection (RFC 9293 3.10.7.1).
    resets_sent,
    /// ACKs sent from TIME_WAIT records.
    time_wait_acks,
    /// Segments to TIME_WAIT records not answered: an ACK to an unacceptable segment of the
    /// 4-tuple went out, and segments kept coming less than 500 ms apart since (RFC 5961 7).
    time_wait_acks_limited,
    /// Connections accepted (handshake completed on a listener).
    accepted,
    /// Connections opened by `connect` that completed their handshake.
    connected,
    /// Connections that entered TIME_WAIT and became compact records.
    time_wait_entered,
    /// TIME_WAIT records that expired after 2MSL.
    time_wait_expired,
    /// TIME_WAIT records ended early because the record table was full.
    time_wait_evicted,
    /// TIME_WAIT 4-tuples reopened by a SYN that RFC 6191 allows.
    time_wait_reopened,
    /// TIME_WAIT 4-tuples of ours ended early to reuse their local port for a new connection.
    time_wait_reused,
    /// Dropped: a frame shorter than its headers.
    drop_truncated,
    /// Dropped: a header field with an impossible value.
    drop_malformed,
    /// Dropped: a bad IPv4 or TCP checksum.
    drop_bad_checksum,
    /// Dropped: a TCP option with a bad length.
    drop_bad_option,
    /// Dropped: an IPv4 fragment (synack does not reassemble).
    drop_fragment,
    /// Dropped: an EtherType, IP protocol or ARP/ICMP variant synack does not handle.
    drop_unsupported,
    /// Dropped: ICMP fragmentation-needed not believed or not useful: quoting no connection
    /// of ours, a sequence number outside the data in flight (RFC 5927 4.1), a bogus MTU, or
    /// one that makes no segment smaller.
    drop_icmp_frag_needed,
    /// Dropped: addressed to another MAC or IPv4 address.
    drop_not_ours,
    /// Dropped: a frame whose Ethernet source is a group (multicast or broadcast) address.
    drop_multicast_src,
    /// Dropped: an IPv4 frame sent to the broadcast MAC (TCP and ICMP echo are unicast).
    drop_not_unicast,
    /// Dropped: a TCP segment with both SYN and FIN.
    drop_syn_fin,
    /// Dropped: a TCP segment to a port of a shared address that is not ours.
    drop_port_not_ours,
    /// Dropped by a connection: outside the receive window (answered with an ACK).
    drop_out_of_window,
    /// Dropped by a connection: PAWS found an old duplicate (RFC 7323).
    drop_paws,
    /// Dropped by a connection: an unacceptable ACK (RFC 5961 5.2).
    drop_unacceptable_ack,
    /// Dropped by a connection: an RST or SYN answered with a challenge ACK (RFC 5961).
    drop_challenged,
    /// Dropped: an RST that matched nothing acceptable, or reached TIME_WAIT (RFC 1337).
    drop_rst_ignored,
    /// Dropped by a connection: a segment not expected in its state.
    drop_unexpected,
    /// Dropped by a TIME_WAIT record: a duplicate needing no answer.
    drop_time_wait,
    /// Orphans (closed by the application, not finished) reset because `max_orphans` were
    /// held: the oldest goes.
    orphans_reset,
    /// SYNs refused: the connection table was full.
    drop_table_full,
    /// SYNs refused: the SYN backlog was full (and SYN cookies are off).
    drop_backlog_full,
    /// SYNs answered with a SYN cookie (the backlog was full): SYN-ACKs sent in place.
    syn_cookies_sent,
    /// ACKs that returned a valid SYN cookie and opened a connection.
    syn_cookies_accepted,
    /// ACKs checked for a SYN cookie and refused (answered with an RST, or dropped).
    syn_cookies_rejected,
    /// Segments not sent yet because no TX frame was free (retried on the next poll).
    tx_no_frame,
    /// Segments whose data found no receive ring free in the ring pool: the data is dropped
    /// (the segment's ACK field is still taken) and our answer advertises a zero window, until
    /// a ring frees and an ACK announces it open (or the peer's probe finds one). Not a frame
    /// outcome of its own.
    rx_no_ring,
    /// `send`s (and splices) that took nothing because no send ring was free in the ring
    /// pool: `on_writable` follows when one frees.
    tx_no_ring,
    /// Connections aborted because their neighbour never answered ARP (or could not be
    /// resolved: too many resolutions under way).
    arp_failures,
    /// ARP packets for our address not learned from: unsolicited replies, requests from
    /// neighbours we do not know, senders off-link.
    arp_not_learned,
    /// Loss recovery of the connections that ended (`tcp::ConnectionStats`, added when a
    /// connection leaves its slot): segments sent again, whatever the cause.
    tcp_retransmits,
    /// Retransmission timeouts (RFC 6298).
    tcp_rto_timeouts,
    /// Fast retransmits on duplicate ACKs or SACKs (RFC 5681, RFC 6675).
    tcp_fast_retransmits,
    /// Recoveries started by the reordering timer (RFC 8985 6.3).
    tcp_early_retransmits,
    /// Tail loss probes (RFC 8985 7).
    tcp_loss_probes,
    /// Retransmissions found lost again and resent before the RTO.
    tcp_lost_retransmissions,
    /// Challenge ACKs and ACKs to unacceptable segments held back by the per-connection rate
    /// limit (RFC 5961 7: at most one per 500 ms per connection).
    tcp_acks_rate_limited,
    /// Send MSS reductions from ICMP fragmentation-needed (RFC 1191).
    tcp_pmtu_reductions,
}

impl Counters {
    /// Counts a frame dropped by the wire parser.
    pub(crate) fn wire_error(&mut self, error: WireError) {
        match error {
            WireError::Truncated => self.drop_truncated += 1,
            WireError::Malformed | WireError::BadVersion => self.drop_malformed += 1,
            WireError::BadChecksum => self.drop_bad_checksum += 1,
            WireError::BadOption => self.drop_bad_option += 1,
            WireError::Fragment => self.drop_fragment += 1,
            WireError::Unsupported => self.drop_unsupported += 1,
        }
    }

    /// Counts a segment a connection dropped.
    pub(crate) fn tcp_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::OutOfWindow => self.drop_out_of_window += 1,
            DropReason::Paws => self.drop_paws += 1,
            DropReason::UnacceptableAck => self.drop_unacceptable_ack += 1,
            DropReason::Challenged => self.drop_challenged += 1,
            DropReason::RstIgnored => self.drop_rst_ignored += 1,
            DropReason::Unexpected => self.drop_unexpected += 1,
        }
    }

    /// Adds the loss-recovery counters of a connection that ended.
    pub(crate) fn connection_ended(&mut self, stats: &ConnectionStats) {
        self.tcp_retransmits += stats.retransmitted_segments;
        self.tcp_rto_timeouts += stats.rto_timeouts;
        self.tcp_fast_retransmits += stats.fast_retransmits;
        self.tcp_early_retransmits += stats.early_retransmits;
        self.tcp_loss_probes += stats.loss_probes;
        self.tcp_lost_retransmissions += stats.lost_retransmissions;
        self.tcp_acks_rate_limited += stats.acks_rate_limited;
        self.tcp_pmtu_reductions += stats.pmtu_reductions;
    }

    /// The counters that say what became of a received frame: taken (a segment, ARP, an ICMP
    /// message answered or honoured) or dropped for a named reason. Every frame moves at least
    /// one of them (a segment a connection drops moves two: `rx_segments` and the reason).
    #[cfg(debug_assertions)]
    pub(crate) fn frame_outcomes(&self) -> u64 {
        self.rx_segments + self.rx_arp + self.icmp_echo_replies + self.icmp_frag_needed + self.dropped()
    }

    /// Frames dropped, all reasons together.
    pub fn dropped(&self) -> u64 {
        self.iter().filter(|(name, _)| name.starts_with("drop_")).map(|(_, v)| v).sum()
    }
}

impl core::fmt::Display for Counters {
    /// The non-zero counters as `name=value` pairs separated by spaces.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for (name, value) in self.iter().filter(|&(_, v)| v != 0) {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value}")?;
            first = false;
        }
        if first {
            f.write_str("(all zero)")?;
        }
        Ok(())
    }
}
