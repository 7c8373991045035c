//! TIME_WAIT as a compact record: what RFC 9293, RFC 1337 and RFC 6191 need, nothing more.
//!
//! A connection that reaches TIME_WAIT can be swapped for a [`TimeWaitRecord`] (48 bytes)
//! so that churn holds little memory. The full [`Connection`](super::Connection) in
//! TIME_WAIT delegates to the same logic, so both behave identically on the wire.

use core::time::Duration;

use super::{emit_control, FourTuple, SeqNumber};
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr, Timestamp};

/// What to do with a segment that reached a TIME_WAIT 4-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum TimeWaitAction {
    /// Ignore it (an RST per RFC 1337, or a harmless duplicate ACK).
    Drop,
    /// Answer with an ACK of the state we hold (out-of-window or unacceptable SYN).
    Ack,
    /// A retransmitted FIN: ACK it again and restart 2MSL (RFC 9293 3.10.7.4).
    AckAndRestart,
    /// An unacceptable segment that would get an ACK, but one went out for this 4-tuple with
    /// no quiet `OOW_ACK_INTERVAL` since: drop it (RFC 5961 7, Linux's
    /// `tcp_timewait_check_oow_rate_limit`), so that a TIME_WAIT is no ACK amplifier.
    RateLimited,
    /// A new SYN that RFC 6191 allows: end TIME_WAIT and open a new incarnation with this ISS,
    /// which lies beyond anything the old incarnation sent.
    Reopen {
        /// The ISS the new incarnation must use.
        iss: SeqNumber,
    },
}

/// A connection in TIME_WAIT, reduced to what its remaining duties need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWaitRecord {
    /// The connection's 4-tuple.
    pub tuple: FourTuple,
    /// Our SND.NXT (after our FIN).
    pub snd_nxt: SeqNumber,
    /// Our RCV.NXT (after the peer's FIN).
    pub rcv_nxt: SeqNumber,
    /// TS.Recent: the last timestamp the peer sent, when timestamps are on.
    pub ts_recent: u32,
    /// Offset of our timestamp clock.
    pub ts_offset: u32,
    /// When 2MSL ends.
    pub expiry: Instant,
    /// When this 4-tuple last saw a segment, either way: the last one received (and the ACK
    /// answering it, sent at the same instant). Port reuse waits for both timestamp clocks to
    /// move past it ([`TimeWaitRecord::reuse_iss`]).
    pub last_segment: Instant,
    /// The raw window field we advertise in ACKs from this state.
    pub window: u16,
    /// Whether timestamps were negotiated.
    pub timestamps: bool,
    /// An ACK answered an unacceptable segment of this 4-tuple and no `OOW_ACK_INTERVAL`
    /// without segments followed: the next one is not answered (one bit of the packed record,
    /// where Linux keeps a time).
    pub oow_acked: bool,
}

/// While segments keep coming less than this apart after an ACK to an unacceptable one, no
/// further ACK answers them (Linux's `tcp_invalid_ratelimit`).
pub(super) const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

impl TimeWaitRecord {
    /// Decides what a segment does to this record; updates the expiry on restart.
    pub fn on_segment(&mut self, now: Instant, seg: &TcpRepr, payload_len: usize, two_msl: Duration) -> TimeWaitAction {
        let flags = seg.flags;
        if now.saturating_duration_since(self.last_segment) >= OOW_ACK_INTERVAL {
            self.oow_acked = false;
        }
        // Every segment counts, even one dropped below: whatever answers it carries a TSval
        // of this millisecond, and a reused port must send newer ones.
        self.last_segment = self.last_segment.max(now);
        // RFC 1337: an RST must not cut TIME_WAIT short (TIME-WAIT assassination).
        if flags.contains(TcpFlags::RST) {
            return TimeWaitAction::Drop;
        }
        let seq = SeqNumber(seg.seq);
        let ts = seg.options.timestamp;
        if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            // RFC 6191 2: with timestamps on the old incarnation and on the SYN, the SYN's
            // timestamp must be newer; otherwise its sequence number must be beyond RCV.NXT.
            let acceptable = match (self.timestamps, ts) {
                (true, Some(t)) => t.tsval.wrapping_sub(self.ts_recent) as i32 > 0,
                _ => seq > self.rcv_nxt,
            };
            if acceptable {
                // As Linux does: start the new incarnation's sequence space beyond the old one's.
                return TimeWaitAction::Reopen { iss: self.snd_nxt + 65_537u32 };
            }
            // RFC 9293 3.10.7.4 (RFC 5961 4.2): a SYN on a synchronized connection gets a
            // challenge ACK, which also tells a restarting client its SYN was old.
            return self.oow_ack();
        }
        // PAWS (RFC 7323 5.3): an old duplicate is answered with an ACK and dropped.
        if let (true, Some(t)) = (self.timestamps, ts) {
            if (t.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                return self.oow_ack();
            }
        }
        if flags.contains(TcpFlags::FIN) && seq + payload_len + 1u32 == self.rcv_nxt {
            if let (true, Some(t)) = (self.timestamps, ts) {
                self.ts_recent = t.tsval;
            }
            self.expiry = now + two_msl;
            return TimeWaitAction::AckAndRestart;
        }
        if seq == self.rcv_nxt && payload_len == 0 && !flags.contains(TcpFlags::FIN) {
            return TimeWaitAction::Drop;
        }
        self.oow_ack()
    }

    /// An ACK to an unacceptable segment, unless the rate limit holds it back.
    fn oow_ack(&mut self) -> TimeWaitAction {
        if self.oow_acked {
            return TimeWaitAction::RateLimited;
        }
        self.oow_acked = true;
        TimeWaitAction::Ack
    }

    /// Whether the side holding this TIME_WAIT may open a new connection on the same 4-tuple
    /// now, and with which ISS: RFC 6191 applied by the closer, as Linux's `tcp_tw_reuse`
    /// does, at millisecond rather than second granularity.
    ///
    /// It is safe when timestamps were on and at least `quiet` (never under 1 ms) has passed
    /// since the 4-tuple's last segment:
    /// - our TSvals are `ts_offset + now_ms` with the same offset for the same 4-tuple, so the
    ///   new SYN's TSval is above every one the old incarnation sent, and a peer that still
    ///   holds its own TIME_WAIT accepts the SYN (RFC 6191 2);
    /// - the peer's timestamp clock has ticked too (at 1 kHz or faster, as Linux's does), so
    ///   its new TSvals are above those of the old incarnation's segments, and PAWS (RFC 7323
    ///   5) drops an old duplicate that reaches the new connection;
    /// - the new ISS starts beyond anything the old incarnation sent (as Linux does:
    ///   `tw_snd_nxt + 65535 + 2`), so no old ACK acknowledges new data.
    ///
    /// `None` when reuse is not safe: no timestamps (the sequence-number rule alone cannot
    /// protect the new connection from old duplicates), or too soon.
    pub fn reuse_iss(&self, now: Instant, quiet: Duration) -> Option<SeqNumber> {
        if !self.timestamps {
            return None;
        }
        let quiet = quiet.max(Duration::from_millis(1));
        if now.saturating_duration_since(self.last_segment) < quiet {
            return None;
        }
        Some(self.snd_nxt + 65_537u32)
    }

    /// The ACK this record sends.
    pub fn ack_repr(&self, now: Instant) -> TcpRepr {
        let mut repr = TcpRepr {
            src_port: self.tuple.local.port,
            dst_port: self.tuple.remote.port,
            seq: self.snd_nxt.0,
            ack: self.rcv_nxt.0,
            flags: TcpFlags::ACK,
            window: self.window,
            ..TcpRepr::default()
        };
        if self.timestamps {
            repr.options.timestamp =
                Some(Timestamp { tsval: self.ts_offset.wrapping_add(now.as_millis() as u32), tsecr: self.ts_recent });
        }
        repr
    }

    /// Writes the ACK into `buf` (a TCP segment with a complete checksum); returns its length.
    pub fn emit_ack(&self, now: Instant, buf: &mut [u8]) -> usize {
        emit_control(&self.ack_repr(now), &self.tuple, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::Endpoint;
    use std::net::Ipv4Addr;

    const MSL2: Duration = Duration::from_secs(60);

    fn record(timestamps: bool) -> TimeWaitRecord {
        TimeWaitRecord {
            tuple: FourTuple {
                local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80),
                remote: Endpoint::new(Ipv4Addr::new(198, 18, 0, 2), 40000),
            },
            snd_nxt: SeqNumber(5000),
            rcv_nxt: SeqNumber(9000),
            ts_recent: 700,
            ts_offset: 0,
            expiry: Instant::from_millis(60_000),
            last_segment: Instant::ZERO,
            window: 1000,
            timestamps,
            oow_acked: false,
        }
    }

    fn seg(flags: TcpFlags, seq: u32, tsval: Option<u32>) -> TcpRepr {
        let mut r = TcpRepr { src_port: 40000, dst_port: 80, seq, ack: 5000, flags, ..TcpRepr::default() };
        r.options.timestamp = tsval.map(|tsval| Timestamp { tsval, tsecr: 0 });
        r
    }

    #[test]
    fn rst_is_ignored_rfc1337() {
        let mut tw = record(true);
        assert_eq!(tw.on_segment(Instant::ZERO, &seg(TcpFlags::RST, 9000, None), 0, MSL2), TimeWaitAction::Drop);
    }

    #[test]
    fn retransmitted_fin_restarts_2msl() {
        let mut tw = record(true);
        let now = Instant::from_millis(30_000);
        let fin = seg(TcpFlags::FIN | TcpFlags::ACK, 8999, Some(701));
        assert_eq!(tw.on_segment(now, &fin, 0, MSL2), TimeWaitAction::AckAndRestart);
        assert_eq!(tw.expiry, now + MSL2);
        assert_eq!(tw.ts_recent, 701);
    }

    #[test]
    fn rfc6191_syn_acceptance() {
        // Timestamps: newer TSval accepted even with an old sequence number.
        let mut tw = record(true);
        let a = tw.on_segment(Instant::ZERO, &seg(TcpFlags::SYN, 1, Some(701)), 0, MSL2);
        assert_eq!(a, TimeWaitAction::Reopen { iss: SeqNumber(5000 + 65_537) });
        // Older or equal TSval refused, even with a higher sequence number.
        assert_eq!(tw.on_segment(Instant::ZERO, &seg(TcpFlags::SYN, 20000, Some(700)), 0, MSL2), TimeWaitAction::Ack);
        // No timestamps: the sequence number decides.
        let mut tw = record(false);
        assert!(matches!(
            tw.on_segment(Instant::ZERO, &seg(TcpFlags::SYN, 9001, None), 0, MSL2),
            TimeWaitAction::Reopen { .. }
        ));
        assert_eq!(tw.on_segment(Instant::ZERO, &seg(TcpFlags::SYN, 9000, None), 0, MSL2), TimeWaitAction::Ack);
    }

    #[test]
    fn paws_and_duplicates() {
        let mut tw = record(true);
        assert_eq!(tw.on_segment(Instant::ZERO, &seg(TcpFlags::ACK, 9000, Some(600)), 0, MSL2), TimeWaitAction::Ack);
        assert_eq!(tw.on_segment(Instant::ZERO, &seg(TcpFlags::ACK, 9000, Some(700)), 0, MSL2), TimeWaitAction::Drop);
        let later = Instant::from_millis(500);
        assert_eq!(tw.on_segment(later, &seg(TcpFlags::ACK, 9000, Some(700)), 10, MSL2), TimeWaitAction::Ack);
        let ack = tw.ack_repr(Instant::from_millis(5));
        assert_eq!((ack.seq, ack.ack, ack.flags), (5000, 9000, TcpFlags::ACK));
        assert_eq!(ack.options.timestamp, Some(Timestamp { tsval: 5, tsecr: 700 }));
    }

    #[test]
    fn acks_to_unacceptable_segments_are_rate_limited() {
        let mut tw = record(true);
        let old = seg(TcpFlags::ACK, 8000, Some(650));
        let at = Instant::from_millis;
        assert_eq!(tw.on_segment(at(1000), &old, 0, MSL2), TimeWaitAction::Ack);
        // A flood gets nothing more while it goes on, an old SYN included...
        for ms in (1001..3000).step_by(100) {
            assert_eq!(tw.on_segment(at(ms), &old, 0, MSL2), TimeWaitAction::RateLimited, "{ms}");
        }
        assert_eq!(tw.on_segment(at(3050), &seg(TcpFlags::SYN, 1, Some(600)), 0, MSL2), TimeWaitAction::RateLimited);
        // ...but a retransmitted FIN is always answered (its sender waits for that ACK)...
        let fin = seg(TcpFlags::FIN | TcpFlags::ACK, 8999, Some(701));
        assert_eq!(tw.on_segment(at(3100), &fin, 0, MSL2), TimeWaitAction::AckAndRestart);
        // ...and after 500 ms without segments the next one is answered again.
        assert_eq!(tw.on_segment(at(3600), &old, 0, MSL2), TimeWaitAction::Ack);
        assert_eq!(tw.on_segment(at(3601), &old, 0, MSL2), TimeWaitAction::RateLimited);
    }

    #[test]
    fn reuse_needs_timestamps_and_a_quiet_millisecond() {
        let quiet = Duration::from_millis(1);
        let mut tw = record(true);
        tw.last_segment = Instant::from_millis(100);
        // Same millisecond, or under the quiet time: our TSval could equal one already sent.
        assert_eq!(tw.reuse_iss(Instant::from_millis(100), quiet), None);
        assert_eq!(tw.reuse_iss(Instant::from_micros(100_999), quiet), None);
        // 1 ms later: reusable, with an ISS beyond the old SND.NXT.
        let iss = tw.reuse_iss(Instant::from_millis(101), quiet).expect("reusable");
        assert_eq!(iss, SeqNumber(5000 + 65_537));
        assert!(iss > tw.snd_nxt);
        // A longer quiet time is honoured; a shorter one than 1 ms is raised to 1 ms.
        assert_eq!(tw.reuse_iss(Instant::from_millis(101), Duration::from_secs(1)), None);
        assert!(tw.reuse_iss(Instant::from_millis(1100), Duration::from_secs(1)).is_some());
        assert_eq!(tw.reuse_iss(Instant::from_micros(100_500), Duration::ZERO), None);
        // A segment received in TIME_WAIT (here an old duplicate, answered with an ACK) moves
        // the quiet time on: the ACK carried this millisecond's TSval.
        let dup = seg(TcpFlags::ACK, 8000, Some(650));
        assert_eq!(tw.on_segment(Instant::from_millis(150), &dup, 0, MSL2), TimeWaitAction::Ack);
        assert_eq!(tw.reuse_iss(Instant::from_millis(150), quiet), None);
        assert!(tw.reuse_iss(Instant::from_millis(151), quiet).is_some());
        // Without timestamps the new connection could not tell old duplicates: never reused.
        let mut tw = record(false);
        tw.last_segment = Instant::from_millis(100);
        assert_eq!(tw.reuse_iss(Instant::from_millis(50_000), quiet), None);
    }

    #[test]
    fn record_is_compact() {
        assert!(core::mem::size_of::<TimeWaitRecord>() <= 48, "{}", core::mem::size_of::<TimeWaitRecord>());
    }
}
