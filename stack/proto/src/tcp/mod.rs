//! The sans-IO TCP connection state machine (RFC 9293).
//!
//! A [`Connection`] is fed segments with [`Connection::handle_segment`] and time with
//! [`Connection::handle_timeout`]; it hands out segments through [`Connection::poll_transmit`]
//! and its next deadline through [`Connection::poll_timeout`]. It performs no I/O, reads no
//! clock and allocates only its rings, when it is created with them
//! ([`Connection::with_rings`]); an `Interface`'s connections are lent ring memory instead.

mod config;
mod congestion;
mod connection;
mod isn;
mod lent_memory;
mod loss_probe;
mod recv_buffer;
mod rtt;
mod sack;
mod send_buffer;
mod seq;
mod state;
mod syn_cookie;
mod time_wait;
mod timer;

use std::net::Ipv4Addr;

pub use config::{Keepalive, TcpConfig};
pub(crate) use connection::RingMemory;
pub use connection::{Connection, MIN_PATH_MTU};
pub(crate) use isn::keyed_hash;
pub use isn::IsnGenerator;
pub(crate) use recv_buffer::RecvBuffer;
pub(crate) use rtt::RttEstimator;
pub(crate) use send_buffer::SendBuffer;
pub use seq::SeqNumber;
pub use state::State;
pub(crate) use syn_cookie::{decode_timestamp, encode_timestamp, CookieOptions, SynCookies, MSS_TABLE};
pub use time_wait::{TimeWaitAction, TimeWaitRecord};
pub(crate) use timer::{Timer, TimerTable};

use crate::wire::{emit_header, TcpFlags, TcpRepr};

/// An IPv4 address and TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint.
    pub const fn new(addr: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint { addr, port }
    }

    /// The unspecified endpoint (0.0.0.0:0), e.g. the remote side of a listener.
    pub const UNSPECIFIED: Endpoint = Endpoint { addr: Ipv4Addr::UNSPECIFIED, port: 0 };
}

impl core::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// A connection's identity: our endpoint and the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourTuple {
    /// Our side.
    pub local: Endpoint,
    /// The peer's side.
    pub remote: Endpoint,
}

/// A received TCP segment, already parsed, with the IPv4 addresses it came with.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// IPv4 source (the peer).
    pub src_addr: Ipv4Addr,
    /// IPv4 destination (us).
    pub dst_addr: Ipv4Addr,
    /// The header.
    pub repr: TcpRepr,
    /// The segment text.
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// SEG.LEN: payload plus one for each of SYN and FIN.
    pub fn seq_len(&self) -> usize {
        self.payload.len()
            + usize::from(self.repr.flags.contains(TcpFlags::SYN))
            + usize::from(self.repr.flags.contains(TcpFlags::FIN))
    }
}

/// Loss-recovery counters of one connection, read-only for diagnostics and tests
/// ([`Connection::stats`]). They restart when the connection is reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Data segments (or FINs) sent again, whatever the cause.
    pub retransmitted_segments: u64,
    /// Retransmission timeouts that fired in a synchronized state (RFC 6298 5.4).
    pub rto_timeouts: u64,
    /// Fast retransmits: loss recoveries entered on duplicate ACKs (RFC 5681 3.2, RFC 6675).
    pub fast_retransmits: u64,
    /// Loss recoveries entered when the reordering window passed with SND.UNA missing below
    /// SACKed data (RFC 8985 6.3), with too few duplicates for fast retransmit.
    pub early_retransmits: u64,
    /// Retransmissions triggered by a partial ACK during recovery (RFC 6582 3.2 step 4).
    pub partial_ack_retransmits: u64,
    /// Holes retransmitted because the peer's SACK blocks revealed them (RFC 6675).
    pub sack_retransmits: u64,
    /// Retransmissions found lost from later SACKs, and sent again without waiting for the RTO.
    pub lost_retransmissions: u64,
    /// Duplicate ACKs received.
    pub dup_acks_received: u64,
    /// Segments received out of order (beyond RCV.NXT), each ACKed at once.
    pub out_of_order_received: u64,
    /// Tail loss probes sent (RFC 8985 7): the last segment again, ahead of the RTO.
    pub loss_probes: u64,
    /// Probes that repaired a loss (no D-SACK came back), followed by a halved window.
    pub loss_probe_recoveries: u64,
    /// Challenge ACKs and ACKs to unacceptable segments not sent: the per-connection rate
    /// limit (RFC 5961 7) had one out less than 500 ms before.
    pub acks_rate_limited: u64,
    /// Send MSS reductions from ICMP fragmentation-needed (RFC 1191).
    pub pmtu_reductions: u64,
}

/// Why a segment was not taken in, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Outside the receive window (an ACK is sent back).
    OutOfWindow,
    /// PAWS rejected an old duplicate (RFC 7323 5.3).
    Paws,
    /// An ACK for data never sent, or too old (RFC 5961 5.2).
    UnacceptableAck,
    /// An RST or SYN that got a challenge ACK instead (RFC 5961 3.2, 4.2).
    Challenged,
    /// An RST that matched nothing acceptable, or arrived in TIME_WAIT (RFC 1337).
    RstIgnored,
    /// Not a SYN in LISTEN, or a segment without ACK in a synchronized state.
    Unexpected,
}

/// What [`Connection::handle_segment`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Processed.
    Accepted,
    /// Dropped, for the reason given.
    Dropped(DropReason),
    /// The connection is CLOSED: answer with [`reset_for_unmatched`].
    NoConnection,
    /// A SYN that RFC 6191 lets end TIME_WAIT: close this connection and open a new one from
    /// the SYN, with this ISS.
    Reopen {
        /// The ISS for the new incarnation.
        iss: SeqNumber,
    },
}

/// What [`Connection::on_frag_needed`] did with an ICMP fragmentation-needed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum PmtuOutcome {
    /// The send MSS was lowered and the data in flight will be sent again in smaller segments.
    Lowered,
    /// The next-hop MTU is below [`MIN_PATH_MTU`]: segments are sized for that floor (the
    /// MSS lowered if they were larger), go out without DF from now on so that routers
    /// fragment them, and the data in flight will be sent again.
    DfCleared,
    /// The connection has no data in flight that the message could be about (not
    /// synchronized, or TIME_WAIT).
    NotInFlight,
    /// The quoted sequence number is outside SND.UNA..SND.MAX: forged or stale (RFC 5927 4.1).
    OutOfWindow,
    /// A next-hop MTU below the IPv4 minimum of 68 (RFC 791), or zero (a pre-RFC 1191 router).
    BadMtu,
    /// The MTU does not make segments smaller than they are (RFC 1191 3: never raise it).
    NotSmaller,
}

/// Why a connection ended. More reasons may come: match with a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both sides closed and the close sequence completed.
    Normal,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (RST in answer to our SYN).
    Refused,
    /// Retransmissions (of SYN, SYN-ACK, data or keepalive probes) ran out.
    TimedOut,
    /// The application aborted it.
    Aborted,
    /// No route to the peer: its next hop's MAC could not be resolved (ARP went unanswered),
    /// or it is off-link with no gateway. Nothing reached the wire.
    NoRoute,
}

/// Something the application should hear about, from [`Connection::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// In-order data can be read.
    Readable,
    /// Send-buffer space freed after a send was refused.
    Writable,
    /// The peer sent FIN: after the data already readable, `recv` reports the end.
    PeerClosed,
    /// The connection is over.
    Closed(CloseReason),
}

/// Errors from [`Connection::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send buffer is full: wait for [`Event::Writable`].
    #[error("send buffer full")]
    BufferFull,
    /// The connection cannot send (closed, or shut down for writing).
    #[error("connection cannot send in its current state")]
    InvalidState,
}

/// Errors from [`Connection::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// No data now: wait for [`Event::Readable`].
    #[error("no data available")]
    WouldBlock,
    /// The peer closed its side and everything has been read.
    #[error("peer closed the connection")]
    Finished,
    /// The connection is closed (reset, aborted or never opened).
    #[error("connection is closed")]
    InvalidState,
}

/// Errors from opening a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// `connect` or `listen` on a connection that is not CLOSED.
    #[error("connection is already in use")]
    InUse,
    /// An address or port of zero.
    #[error("unspecified address or port")]
    Unspecified,
}

/// Writes a control segment (no payload) for `tuple` into `buf`; returns its length.
pub(crate) fn emit_control(repr: &TcpRepr, tuple: &FourTuple, buf: &mut [u8]) -> usize {
    emit_header(buf, repr, tuple.local.addr, tuple.remote.addr, 0)
}

/// The RST that answers a segment matching no connection (RFC 9293 3.10.7.1), or `None`
/// when the segment is itself an RST. Ports are swapped: the result is sent back to the source.
pub fn reset_for_unmatched(seg: &Segment<'_>) -> Option<TcpRepr> {
    let r = &seg.repr;
    if r.flags.contains(TcpFlags::RST) {
        return None;
    }
    let mut rst = TcpRepr { src_port: r.dst_port, dst_port: r.src_port, ..TcpRepr::default() };
    if r.flags.contains(TcpFlags::ACK) {
        // <SEQ=SEG.ACK><CTL=RST>
        rst.seq = r.ack;
        rst.flags = TcpFlags::RST;
    } else {
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
        rst.ack = (SeqNumber(r.seq) + seg.seq_len()).0;
        rst.flags = TcpFlags::RST | TcpFlags::ACK;
    }
    Some(rst)
}

#[cfg(test)]
mod reset_tests {
    use super::*;

    fn seg(flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            src_addr: Ipv4Addr::new(198, 18, 0, 2),
            dst_addr: Ipv4Addr::new(198, 18, 0, 1),
            repr: TcpRepr { src_port: 4000, dst_port: 80, seq, ack, flags, ..TcpRepr::default() },
            payload,
        }
    }

    #[test]
    fn unmatched_segments_get_rfc9293_resets() {
        let syn = reset_for_unmatched(&seg(TcpFlags::SYN, 100, 0, b"")).unwrap();
        assert_eq!((syn.seq, syn.ack, syn.flags), (0, 101, TcpFlags::RST | TcpFlags::ACK));
        assert_eq!((syn.src_port, syn.dst_port), (80, 4000));
        let data = reset_for_unmatched(&seg(TcpFlags::PSH, 100, 0, b"abc")).unwrap();
        assert_eq!(data.ack, 103);
        let ack = reset_for_unmatched(&seg(TcpFlags::ACK | TcpFlags::FIN, 100, 777, b"")).unwrap();
        assert_eq!((ack.seq, ack.flags), (777, TcpFlags::RST));
        assert!(reset_for_unmatched(&seg(TcpFlags::RST, 1, 0, b"")).is_none());
    }
}

#[cfg(test)]
mod tests;
