//! The sender's SACK scoreboard (RFC 6675): which bytes above SND.UNA the peer reported
//! holding, so that loss recovery retransmits the holes rather than one segment per round
//! trip, and counts every ACK that brings SACK news as a duplicate, even one that carries data.

use super::SeqNumber;
use crate::wire::SackBlock;

/// At most this many SACKed ranges are remembered; beyond that the highest is forgotten
/// (which only makes recovery more conservative).
const MAX_RANGES: usize = 8;

/// SACKed ranges above SND.UNA and the retransmission point of the current recovery.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Scoreboard {
    /// Disjoint `[start, end)` ranges, ascending, all above SND.UNA.
    ranges: [(SeqNumber, SeqNumber); MAX_RANGES],
    len: usize,
    /// RFC 6675 HighRxt: the end of the last hole retransmitted in this recovery.
    high_rxt: SeqNumber,
    /// SND.MAX when the latest retransmission went out: data above it was sent later.
    rxt_fence: SeqNumber,
}

impl Scoreboard {
    /// Forgets everything (RFC 2018 8: after a retransmission timeout the peer may have
    /// reneged, so SACK information is not trusted).
    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// Whether nothing is SACKed.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes in an ACK: forgets what lies below `snd_una` (the ACK already applied) and adds the
    /// valid blocks, those within (`snd_una`, `snd_max`]. Returns how many bytes were newly SACKed.
    pub(super) fn on_ack(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, blocks: &[SackBlock]) -> u32 {
        let mut kept = 0;
        for i in 0..self.len {
            let (start, end) = self.ranges[i];
            if end > snd_una {
                self.ranges[kept] = (start.max(snd_una), end);
                kept += 1;
            }
        }
        self.len = kept;
        let mut newly = 0;
        for b in blocks {
            let (start, end) = (SeqNumber(b.left), SeqNumber(b.right));
            // D-SACK blocks (below SND.UNA) and bogus ones (beyond what was sent) are ignored.
            if start >= end || end > snd_max || end <= snd_una || end.since(start) > snd_max.since(snd_una) {
                continue;
            }
            newly += self.insert(start.max(snd_una), end);
        }
        newly
    }

    fn insert(&mut self, mut start: SeqNumber, mut end: SeqNumber) -> u32 {
        let mut covered = 0;
        for &(s, e) in &self.ranges[..self.len] {
            covered += end.min(e).since(start.max(s));
        }
        let newly = end.since(start).saturating_sub(covered);
        if newly == 0 {
            return 0;
        }
        let mut i = 0;
        while i < self.len {
            let (s, e) = self.ranges[i];
            if s <= end && start <= e {
                start = start.min(s);
                end = end.max(e);
                self.ranges.copy_within(i + 1..self.len, i);
                self.len -= 1;
            } else {
                i += 1;
            }
        }
        let pos = self.ranges[..self.len].iter().position(|&(s, _)| s > start).unwrap_or(self.len);
        if self.len == MAX_RANGES {
            if pos == MAX_RANGES {
                return newly;
            }
            self.len -= 1;
        }
        self.ranges.copy_within(pos..self.len, pos + 1);
        self.ranges[pos] = (start, end);
        self.len += 1;
        newly
    }

    /// SACKed bytes above `seq`.
    pub(super) fn sacked_above(&self, seq: SeqNumber) -> u32 {
        self.ranges[..self.len].iter().map(|&(s, e)| e.since(s.max(seq))).sum()
    }

    /// RFC 6675 IsLost: the byte at `seq` is deemed lost once more than
    /// (DupThresh - 1) * SMSS bytes above it are SACKed.
    pub(super) fn is_lost(&self, seq: SeqNumber, mss: u32) -> bool {
        self.sacked_above(seq) > 2 * mss
    }

    /// Starts a recovery, or a new round of it: no hole has been retransmitted yet.
    pub(super) fn start_recovery(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) {
        self.high_rxt = snd_una;
        self.rxt_fence = snd_max;
    }

    /// Whether the retransmission of SND.UNA was lost as well: more than (DupThresh - 1) * SMSS
    /// bytes sent after the latest retransmission were SACKed, yet SND.UNA, retransmitted
    /// before that, is still missing (the lost-retransmission detection of RFC 8985 RACK and
    /// of Linux, by send order rather than time). Every hole retransmitted in this round is
    /// then lost, and a new round (`start_recovery`) resends them instead of waiting for the
    /// retransmission timeout.
    pub(super) fn retransmission_lost(&self, snd_una: SeqNumber, snd_max: SeqNumber, mss: u32) -> bool {
        self.retransmitted(snd_una, snd_una, snd_max)
            && self.rxt_fence.in_range(snd_una, snd_max + 1u32)
            && self.sacked_above(self.rxt_fence) > 2 * mss
    }

    /// The next hole to retransmit (RFC 6675 NextSeg rule 1): the first un-SACKed range at or
    /// above HighRxt that is deemed lost, as its start and a length of at most `mss`.
    pub(super) fn next_lost(&self, snd_una: SeqNumber, snd_max: SeqNumber, mss: u32) -> Option<(SeqNumber, u32)> {
        let mut at = if self.high_rxt.in_range(snd_una, snd_max) { self.high_rxt } else { snd_una };
        for &(s, e) in &self.ranges[..self.len] {
            if at < s {
                // Holes further up have less SACKed above them: if this one is not lost, none is.
                return self.is_lost(at, mss).then(|| (at, s.since(at).min(mss)));
            }
            at = at.max(e);
        }
        None
    }

    /// Whether `seq` was retransmitted in this recovery already.
    pub(super) fn retransmitted(&self, seq: SeqNumber, snd_una: SeqNumber, snd_max: SeqNumber) -> bool {
        self.high_rxt.in_range(snd_una, snd_max + 1u32) && seq < self.high_rxt
    }

    /// Records that everything up to `end` was retransmitted, with `snd_max` as it is now.
    pub(super) fn mark_retransmitted(&mut self, end: SeqNumber, snd_max: SeqNumber) {
        self.high_rxt = self.high_rxt.max(end);
        self.rxt_fence = snd_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(left: u32, right: u32) -> SackBlock {
        SackBlock { left, right }
    }

    #[test]
    fn merges_prunes_and_finds_lost_holes() {
        let mut sb = Scoreboard::default();
        let una = SeqNumber(1000);
        let max = SeqNumber(20_000);
        sb.start_recovery(una, max);
        assert_eq!(sb.on_ack(una, max, &[block(2000, 3000)]), 1000);
        assert_eq!(sb.on_ack(una, max, &[block(2000, 3000)]), 0, "nothing new");
        assert_eq!(sb.next_lost(una, max, 500), None, "1000 SACKed bytes: not yet lost");
        assert_eq!(sb.on_ack(una, max, &[block(3000, 4000), block(5000, 6000)]), 2000);
        assert_eq!(sb.sacked_above(una), 3000);
        // [1000, 2000) has 3000 bytes SACKed above: lost, retransmitted in MSS pieces.
        assert_eq!(sb.next_lost(una, max, 500), Some((SeqNumber(1000), 500)));
        sb.mark_retransmitted(SeqNumber(1500), max);
        assert_eq!(sb.next_lost(una, max, 800), Some((SeqNumber(1500), 500)));
        sb.mark_retransmitted(SeqNumber(2000), SeqNumber(6000));
        assert!(!sb.retransmission_lost(una, max, 500));
        // Three segments sent after the retransmissions are SACKed: those were lost.
        sb.on_ack(una, max, &[block(6000, 7600)]);
        assert!(sb.retransmission_lost(una, max, 500));
        sb.start_recovery(una, max);
        assert_eq!(sb.next_lost(una, max, 500), Some((SeqNumber(1000), 500)));
        assert!(!sb.retransmission_lost(una, max, 500));
        sb.mark_retransmitted(SeqNumber(2000), max);
        // [4000, 5000) has 2600 SACKed above it now: lost too.
        assert_eq!(sb.next_lost(una, max, 500), Some((SeqNumber(4000), 500)));
        assert!(sb.retransmitted(SeqNumber(1200), una, max));
        // Bogus and D-SACK blocks are ignored; an ACK prunes.
        assert_eq!(sb.on_ack(una, max, &[block(500, 900), block(19_000, 21_000)]), 0);
        let una = SeqNumber(3500);
        assert_eq!(sb.on_ack(una, max, &[]), 0);
        assert_eq!(sb.sacked_above(una), 3100);
        assert_eq!(sb.on_ack(una, max, &[block(4000, 5000)]), 1000);
        assert_eq!(sb.sacked_above(una), 4100);
    }

    #[test]
    fn bounded_ranges_forget_the_highest() {
        let mut sb = Scoreboard::default();
        let una = SeqNumber(u32::MAX - 100);
        let max = una + 100_000u32;
        for i in 0..(MAX_RANGES as u32 + 2) {
            let left = una + (1000 + i * 2000);
            sb.on_ack(una, max, &[block(left.0, (left + 1000u32).0)]);
        }
        assert_eq!(sb.len, MAX_RANGES);
        assert_eq!(sb.ranges[0].0, una + 1000u32, "wraps around zero");
        // A low block still gets in, pushing the highest out.
        assert_eq!(sb.on_ack(una, max, &[block((una + 10u32).0, (una + 20u32).0)]), 10);
        assert_eq!(sb.ranges[0], (una + 10u32, una + 20u32));
        assert_eq!(sb.len, MAX_RANGES);
    }
}
