//! Tail loss probes (RFC 8985 7, as Linux's `tcp_send_loss_probe`): when data is in flight and
//! no ACK has come for about two round trips, send one segment again instead of waiting for the
//! retransmission timeout, whose 200 ms floor is thousands of round trips on a short link.
//!
//! Two cases need it: the last segments of a flight were lost (nothing follows them to make
//! duplicate ACKs), or the peer holds its ACK back. A Linux receiver does the latter while its
//! application has not read, expecting to carry the ACK on data it sends soon; when its own
//! data is stuck (our window is small, or its transmission failed locally) nothing comes back
//! until its delayed-ACK timer (40 to 200 ms) or our RTO. Retransmitting the last segment
//! covers both: it repairs a lost tail, and a segment the peer already has is answered at once
//! (RFC 9293 3.10.7.4: an unacceptable segment gets an ACK), with a D-SACK from Linux. A probe
//! of new data, which RFC 8985 prefers, repairs nothing and a deferring peer may hold its ACK
//! to it as well.

use core::time::Duration;

use super::SeqNumber;
use crate::wire::SackBlock;

/// The least probe timeout. RFC 8985 asks for two smoothed round trips, which is 100 µs on a
/// veth pair; a peer that is merely descheduled for a moment would draw probes all the time.
/// Linux adds two jiffies; 2 ms is that at 1000 Hz and still a hundredth of the RTO floor.
pub(super) const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(2);

/// RFC 8985 7.2 WCDelAckT: with a single segment in flight the peer may rightly delay its ACK.
/// The RFC suggests 200 ms, which puts the probe after the RTO (200 ms at least), so a lost
/// last segment or FIN (an echo with a small window often has one segment out) always waited
/// for the RTO. Linux and synack delay ACKs by 40 ms (Linux longer only in its interactive
/// mode); a peer that waits longer draws one needless segment, which it answers at once.
pub(super) const WORST_CASE_DELAYED_ACK: Duration = Duration::from_millis(50);

/// The probe timeout (RFC 8985 7.2): two smoothed RTTs, at least [`MIN_PROBE_TIMEOUT`], plus
/// the peer's delayed ACK when only one segment (`flight` bytes, at most `mss`) is out, doubled
/// for each earlier probe that drew no progress (`unanswered`). Before any RTT sample,
/// `initial` (the RTO).
#[cfg(test)]
pub fn probe_timeout(srtt: Option<Duration>, initial: Duration, flight: u32, mss: u32, unanswered: u8) -> Duration {
    let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(probe_timeout_ns(srtt.map(ns), ns(initial), flight, mss, unanswered))
}

/// The probe timeout in nanoseconds, as the connection arms it on the hot path (see
/// `probe_timeout` for what it is).
#[inline]
pub(super) fn probe_timeout_ns(srtt_ns: Option<u64>, initial_ns: u64, flight: u32, mss: u32, unanswered: u8) -> u64 {
    const MIN: u64 = MIN_PROBE_TIMEOUT.as_nanos() as u64;
    const DELAYED_ACK: u64 = WORST_CASE_DELAYED_ACK.as_nanos() as u64;
    let Some(srtt) = srtt_ns else { return initial_ns };
    let mut pto = srtt.saturating_mul(2).max(MIN);
    if flight <= mss {
        pto = pto.saturating_add(DELAYED_ACK);
    }
    pto.saturating_mul(1u64 << unanswered.min(16))
}

/// How an ACK settled an outstanding probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeOutcome {
    /// Still open: the ACK does not tell yet.
    Pending,
    /// Both the original and the probe arrived (D-SACK, or a pure duplicate ACK): no loss.
    Spurious,
    /// The probe repaired a loss: congestion control must react to it (RFC 8985 7.4.2).
    RepairedLoss,
}

/// The probes of one connection: the open episode, whose outcome decides whether the window
/// must shrink (RFC 8985 7.4), and how many probes went unanswered.
///
/// RFC 8985 sends one probe per episode, and none in loss recovery, then leaves the rest to
/// the RTO; so does Linux. Here a probe that draws no progress is followed by another after
/// twice the wait, as long as that comes before the RTO, and recovery probes too: at 2 % loss
/// a probe or its answer is lost often enough, and in recovery a lost retransmission, or the
/// lost ACK of one, with nothing sent after it (a small window) otherwise waits out the 200 ms
/// RTO, which is what the veth echo test did. A probe costs one segment.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LossProbe {
    /// SND.MAX when the episode's first probe went out (RFC 8985 TLP.end_seq).
    end_seq: Option<SeqNumber>,
    /// Probes sent since the last sign of progress.
    unanswered: u8,
}

impl LossProbe {
    /// Whether an episode is open.
    #[cfg(test)]
    fn is_outstanding(&self) -> bool {
        self.end_seq.is_some()
    }

    /// Probes sent since the last sign of progress.
    pub(super) fn unanswered(&self) -> u8 {
        self.unanswered
    }

    /// Records that a probe went out while SND.MAX was `snd_max`; `in_recovery` probes open
    /// no episode (the recovery reduces the window itself).
    pub(super) fn sent(&mut self, snd_max: SeqNumber, in_recovery: bool) {
        self.unanswered = self.unanswered.saturating_add(1);
        if !in_recovery && self.end_seq.is_none() {
            self.end_seq = Some(snd_max);
        }
    }

    /// The peer acknowledged or SACKed new data: the next probe waits the base timeout again.
    pub(super) fn on_progress(&mut self) {
        self.unanswered = 0;
    }

    /// Ends the episode without a verdict (a retransmission timeout or a loss recovery took
    /// over, and reduces the window itself).
    pub(super) fn cancel(&mut self) {
        self.end_seq = None;
    }

    /// Takes in an ACK (RFC 8985 7.4.2, as Linux's `tcp_process_tlp_ack`). `ack` is its
    /// acknowledgment number, `advanced` whether it moved SND.UNA, `news` whether it carried
    /// data or SACKed something new; `blocks` its SACK blocks.
    pub(super) fn on_ack(&mut self, ack: SeqNumber, advanced: bool, news: bool, blocks: &[SackBlock]) -> ProbeOutcome {
        let Some(end) = self.end_seq else { return ProbeOutcome::Pending };
        if ack < end {
            return ProbeOutcome::Pending;
        }
        let outcome = if dsack_reaches(blocks, ack, end) {
            ProbeOutcome::Spurious
        } else if ack > end {
            // Newer data is acknowledged and no D-SACK said the probe was a duplicate.
            ProbeOutcome::RepairedLoss
        } else if !advanced && !news {
            // A pure duplicate ACK at `end`: the answer to a probe the peer already had.
            ProbeOutcome::Spurious
        } else {
            // The ACK that covers `end` may be the original's; the probe's answer follows.
            return ProbeOutcome::Pending;
        };
        self.end_seq = None;
        outcome
    }
}

/// Whether the first SACK block is a D-SACK (RFC 2883 4: below the cumulative ACK, or inside
/// the second block) that reports a duplicate of the byte before `end`.
fn dsack_reaches(blocks: &[SackBlock], ack: SeqNumber, end: SeqNumber) -> bool {
    let Some(first) = blocks.first() else { return false };
    let (left, right) = (SeqNumber(first.left), SeqNumber(first.right));
    let is_dsack = right <= ack
        || blocks.get(1).is_some_and(|second| left >= SeqNumber(second.left) && right <= SeqNumber(second.right));
    is_dsack && left < end && right >= end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(left: u32, right: u32) -> SackBlock {
        SackBlock { left, right }
    }

    #[test]
    fn timeout_is_two_rtts_with_a_floor_and_room_for_a_delayed_ack() {
        let initial = Duration::from_secs(1);
        assert_eq!(probe_timeout(None, initial, 10_000, 1000, 0), initial);
        let ms = Duration::from_millis;
        assert_eq!(probe_timeout(Some(ms(10)), initial, 10_000, 1000, 0), ms(20));
        assert_eq!(probe_timeout(Some(Duration::from_micros(50)), initial, 10_000, 1000, 0), MIN_PROBE_TIMEOUT);
        assert_eq!(probe_timeout(Some(ms(10)), initial, 1000, 1000, 0), ms(70));
        assert_eq!(probe_timeout(Some(ms(10)), initial, 10_000, 1000, 2), ms(80), "doubled per unanswered probe");
    }

    #[test]
    fn the_ack_decides_whether_the_probe_repaired_a_loss() {
        let end = SeqNumber(10_000);
        let mut p = LossProbe::default();
        assert_eq!(p.on_ack(end, true, false, &[]), ProbeOutcome::Pending, "no probe out");
        p.sent(end, false);
        assert!(p.is_outstanding());
        assert_eq!(p.on_ack(SeqNumber(8000), true, false, &[]), ProbeOutcome::Pending, "below the probe");
        assert_eq!(p.on_ack(end, true, false, &[]), ProbeOutcome::Pending, "maybe the original's ACK");
        // The probe's own answer: a D-SACK below the ACK.
        assert_eq!(p.on_ack(end, false, false, &[block(9000, 10_000)]), ProbeOutcome::Spurious);
        assert!(!p.is_outstanding());

        p.sent(end, false);
        assert_eq!(p.on_ack(end, false, false, &[]), ProbeOutcome::Spurious, "a pure duplicate ACK");
        p.sent(end, false);
        // A D-SACK inside the second block (RFC 2883 4.1.2) counts too.
        let blocks = [block(9000, 10_000), block(8000, 10_000)];
        assert_eq!(p.on_ack(SeqNumber(7000), false, true, &blocks), ProbeOutcome::Pending);
        assert_eq!(p.on_ack(SeqNumber(11_000), true, false, &[block(9000, 10_000)]), ProbeOutcome::Spurious);

        p.sent(end, false);
        // A D-SACK of another segment does not clear the probe; new data acked without one does.
        assert_eq!(p.on_ack(SeqNumber(12_000), true, false, &[block(5000, 6000)]), ProbeOutcome::RepairedLoss);
        assert!(!p.is_outstanding());
        p.sent(end, false);
        p.cancel();
        assert_eq!(p.unanswered(), 5);
        p.on_progress();
        assert_eq!(p.unanswered(), 0);
        p.sent(end, true);
        assert!(!p.is_outstanding(), "a probe in recovery opens no episode");
        assert_eq!(p.on_ack(SeqNumber(12_000), true, false, &[]), ProbeOutcome::Pending);
    }
}
