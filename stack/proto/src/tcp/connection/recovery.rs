//! Loss recovery (RFC 6675 SACK recovery, RFC 6582 NewReno partial ACKs, RFC 8985 RACK-TLP):
//! [`Recovery`] holds its state; the `impl Connection` below detects losses as ACKs arrive,
//! decides what a fast retransmit, a SACK hole, a partial ACK or a tail loss probe sends, ends
//! the reordering window (RFC 8985 6.3), and says how much congestion control lets out.

use super::{Connection, MIN_REORDER_WINDOW};
use crate::tcp::congestion::AckAction;
use crate::tcp::loss_probe::{LossProbe, ProbeOutcome};
use crate::tcp::sack::Scoreboard;
use crate::tcp::{SeqNumber, State, Timer};
use crate::time::Instant;
use crate::wire::SackBlocks;

/// The loss-recovery state of a connection: what the peer SACKed, the retransmissions owed,
/// the reordering timer and the tail loss probe. Congestion control (`NewReno`, whose
/// `in_recovery` marks an RFC 6582 recovery episode) stays beside it in the connection.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// What the peer SACKed (RFC 6675), and what the current recovery retransmitted.
    pub(super) sack: Scoreboard,
    /// The tail loss probe episode (RFC 8985 7).
    pub(super) loss_probe: LossProbe,
    /// Loss-recovery retransmissions owed (fast retransmit, partial ACKs, SACK holes), one
    /// per ACK that called for one.
    retransmits_due: u8,
    /// The loss probe is due to be sent.
    probe_due: bool,
    /// The retransmit timer runs as the reordering timer (RFC 8985 6.3); the RTO deadline to
    /// restore when it fires.
    reorder_timer: Option<Instant>,
}

impl Recovery {
    /// One more retransmission owed.
    #[inline]
    fn owe_retransmit(&mut self) {
        self.retransmits_due = self.retransmits_due.saturating_add(1);
    }

    /// A loss found at SND.UNA starts a recovery (or a new one, for a lost retransmission):
    /// the scoreboard marks the flight as sent before it, and SND.UNA's retransmission is owed.
    #[inline]
    fn start(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) {
        self.sack.start_recovery(snd_una, snd_max);
        self.owe_retransmit();
    }

    /// Forgets what was owed and learned (after a retransmission timeout or a smaller path
    /// MTU, sending starts again from SND.UNA and the scoreboard no longer matches it).
    pub(super) fn restart(&mut self) {
        self.retransmits_due = 0;
        self.sack.clear();
        self.loss_probe.cancel();
        self.probe_due = false;
    }

    /// Whether a retransmission or a loss probe is owed.
    #[inline]
    pub(super) fn is_owed(&self) -> bool {
        self.retransmits_due > 0 || self.probe_due
    }

    /// Whether the loss probe is due to be sent.
    #[inline]
    pub(super) fn probe_due(&self) -> bool {
        self.probe_due
    }

    /// The probe timeout passed: the probe is due.
    pub(super) fn set_probe_due(&mut self) {
        self.probe_due = true;
    }

    /// Takes the due loss probe, if any.
    #[inline]
    pub(super) fn take_probe(&mut self) -> bool {
        core::mem::take(&mut self.probe_due)
    }

    /// Takes one owed retransmission, if any.
    #[inline]
    pub(super) fn take_retransmit(&mut self) -> bool {
        if self.retransmits_due == 0 {
            return false;
        }
        self.retransmits_due -= 1;
        true
    }

    /// Nothing owed is left to send (new data goes out instead).
    #[inline]
    pub(super) fn forget_retransmits(&mut self) {
        self.retransmits_due = 0;
    }

    /// The RTO deadline to restore if the retransmit timer ran as the reordering timer.
    #[inline]
    pub(super) fn take_reorder_timer(&mut self) -> Option<Instant> {
        self.reorder_timer.take()
    }

    /// Without SACK nothing is SACKed, no reordering window runs (it opens on SACKed data)
    /// and no loss probe is due (probes need SACK to judge them). For `debug_check_invariants`.
    #[inline]
    pub(super) fn debug_check(&self, sack_enabled: bool) {
        debug_assert!(
            sack_enabled || (self.sack.is_empty() && self.reorder_timer.is_none() && !self.probe_due),
            "SACK recovery state without SACK: {self:?}"
        );
    }
}

impl Connection {
    /// First for every acceptable ACK (RFC 6675 5): the scoreboard takes the SACK blocks (an
    /// ACK that SACKs new data is a duplicate even when it carries data, as ACKs do when both
    /// sides send), the loss probe episode learns whether its probe repaired a loss (RFC 8985
    /// 7.4), and progress restarts the probe timeout. Returns the bytes newly SACKed.
    pub(super) fn recovery_on_ack(&mut self, ack: SeqNumber, pure_ack: bool, sack: &SackBlocks) -> u32 {
        let newly_sacked = if self.sack_enabled {
            self.recovery.sack.on_ack(ack.max(self.snd_una), self.snd_max, sack.as_slice())
        } else {
            0
        };
        match self.recovery.loss_probe.on_ack(ack, ack > self.snd_una, !pure_ack || newly_sacked > 0, sack.as_slice()) {
            ProbeOutcome::RepairedLoss => {
                self.cc.on_probe_repaired_loss();
                self.stats.loss_probe_recoveries += 1;
            }
            ProbeOutcome::Spurious | ProbeOutcome::Pending => {}
        }
        if ack > self.snd_una || newly_sacked > 0 {
            // RFC 8985 7.2: an ACK that advances restarts the probe timeout; so does one that
            // SACKs new data, which shows the peer alive in recovery.
            self.timers.clear(Timer::LossProbe);
            self.recovery.loss_probe.on_progress();
        }
        newly_sacked
    }

    /// SND.UNA just advanced by `acked` to `ack`: a NewReno partial ACK (RFC 6582) owes the
    /// next hole's retransmission; outside recovery, SACK blocks that show SND.UNA lost start
    /// one (RFC 6675 5). Either way the reordering window is over.
    pub(super) fn detect_loss_on_new_ack(&mut self, ack: SeqNumber, acked: u32) {
        let mss = u32::from(self.send_mss);
        if self.cc.on_new_ack(ack, acked) == AckAction::Retransmit {
            self.recovery.owe_retransmit();
            self.stats.partial_ack_retransmits += 1;
        } else if self.snd_max > self.snd_una
            && self.recovery.sack.is_lost(self.snd_una, mss)
            && self.cc.on_loss(self.snd_una, self.snd_max, self.snd_max.since(self.snd_una)) == AckAction::Retransmit
        {
            // RFC 6675 5: the SACK blocks of a cumulative ACK show the next byte lost.
            self.recovery.start(self.snd_una, self.snd_max);
            self.stats.fast_retransmits += 1;
        }
        self.recovery.reorder_timer = None;
    }

    /// A duplicate ACK: the third (or RFC 6675 IsLost) triggers fast retransmit; in recovery,
    /// a further hole the SACK blocks show lost is retransmitted.
    pub(super) fn detect_loss_on_dup_ack(&mut self) {
        let mss = u32::from(self.send_mss);
        let lost = self.recovery.sack.is_lost(self.snd_una, mss);
        let flight = self.snd_max.since(self.snd_una);
        if self.cc.on_dup_ack(self.snd_una, self.snd_max, flight, lost) == AckAction::Retransmit {
            // RFC 5681 3.2: the third duplicate ACK (or RFC 6675 IsLost) triggers fast
            // retransmit.
            self.recovery.start(self.snd_una, self.snd_max);
            self.stats.fast_retransmits += 1;
        } else if self.cc.in_recovery() && self.recovery.sack.next_lost(self.snd_una, self.snd_max, mss).is_some() {
            // RFC 6675 NextSeg rule 1: a further hole the SACK blocks show lost. It replaces
            // a segment that left the network, as the inflated window assumes.
            self.recovery.owe_retransmit();
            self.stats.sack_retransmits += 1;
        }
    }

    /// Last for every acceptable ACK: in recovery the loss probe stands down and a lost
    /// retransmission starts the recovery again; outside it, newly SACKed data opens the
    /// reordering window (RFC 8985 6.3).
    pub(super) fn detect_loss_after_ack(&mut self, now: Instant, newly_sacked: u32) {
        let mss = u32::from(self.send_mss);
        if self.cc.in_recovery() {
            // The recovery reduces the window itself (RFC 8985 7.4.2 leaves it to it).
            self.recovery.loss_probe.cancel();
        }
        if self.sack_enabled
            && self.cc.in_recovery()
            && self.recovery.sack.retransmission_lost(self.snd_una, self.snd_max, mss)
        {
            self.recovery.start(self.snd_una, self.snd_max);
            self.stats.lost_retransmissions += 1;
        }
        if newly_sacked > 0
            && !self.cc.in_recovery()
            && self.snd_max > self.snd_una
            && self.recovery.reorder_timer.is_none()
        {
            // RFC 8985 6.3, by send order: SND.UNA went out before the data just SACKed; if it
            // has not arrived a quarter of an RTT later, it is lost, even when too little
            // follows it for three duplicates (a lost limited-transmit or tail segment).
            let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
            let at = now + (srtt / 4).max(MIN_REORDER_WINDOW);
            let rto_at = self.timers.get(Timer::Retransmit).unwrap_or(now + self.rtt.rto());
            if at < rto_at {
                self.timers.set(Timer::Retransmit, at);
                self.recovery.reorder_timer = Some(rto_at);
            }
        }
    }

    /// The reordering window passed with SND.UNA still missing below SACKed data: recover.
    pub(super) fn on_reorder_timeout(&mut self, now: Instant, rto_at: Instant) {
        self.timers.set(Timer::Retransmit, rto_at.max(now));
        let flight = self.snd_max.since(self.snd_una);
        if self.recovery.sack.sacked_above(self.snd_una) > 0
            && self.cc.on_loss(self.snd_una, self.snd_max, flight) == AckAction::Retransmit
        {
            self.recovery.start(self.snd_una, self.snd_max);
            self.stats.early_retransmits += 1;
        }
    }

    /// Where a loss-recovery retransmission starts and how long it may be: the next hole the
    /// SACK scoreboard deems lost, else SND.UNA unless this recovery retransmitted it already.
    pub(super) fn retransmit_target(&self, mss: usize) -> Option<(SeqNumber, usize)> {
        if self.tx.is_empty() && self.fin_seq.is_none() {
            return None;
        }
        if self.sack_enabled {
            if let Some((seq, len)) = self.recovery.sack.next_lost(self.snd_una, self.snd_max, mss as u32) {
                return Some((seq, len as usize));
            }
            if self.recovery.sack.retransmitted(self.snd_una, self.snd_una, self.snd_max) {
                return None;
            }
        }
        Some((self.snd_una, mss))
    }

    /// The segment a loss probe sends again: the last one sent, up to `mss` bytes ending where
    /// the data ends (a FIN sent after it is added by the caller); in recovery the first one,
    /// SND.UNA, whose retransmission is the likeliest loss when no ACK comes.
    pub(super) fn probe_target(&self, mss: usize) -> Option<(SeqNumber, usize)> {
        if self.snd_max <= self.snd_una {
            return None;
        }
        let sent = (self.snd_max.since(self.snd_una) as usize).min(self.tx.len());
        let len = sent.min(mss);
        if self.cc.in_recovery() {
            return Some((self.snd_una, len));
        }
        Some((self.snd_una + (sent - len), len))
    }

    /// Whether a loss probe may be scheduled (RFC 8985 7.2, in recovery too, see
    /// `loss_probe`): data is in flight, SACK can tell what the probe found, and no other loss
    /// detection is under way or owed.
    pub(super) fn loss_probe_allowed(&self) -> bool {
        self.sack_enabled
            && matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
            )
            && self.snd_max > self.snd_una
            && self.snd_wnd > 0
            && self.recovery.reorder_timer.is_none()
            && self.recovery.retransmits_due == 0
    }

    /// How many more bytes congestion control lets out, `in_flight` being SND.NXT - SND.UNA.
    pub(super) fn congestion_room(&self, in_flight: u32) -> u32 {
        let new_data = self.snd_nxt == self.snd_max;
        let sacked = if new_data { self.recovery.sack.sacked_above(self.snd_una) } else { 0 };
        if self.cc.in_recovery() {
            if sacked > 0 {
                // RFC 6675 5 step 4: in recovery, send while the pipe (what is in flight less
                // what the peer SACKed) is below cwnd = ssthresh. Counting duplicate ACKs
                // instead (NewReno's inflation) undercounts when one ACK SACKs several
                // segments, and leaves nothing new sent whose SACK could show a lost
                // retransmission.
                return self.cc.ssthresh().saturating_sub(in_flight - sacked);
            }
            return self.cc.window().saturating_sub(in_flight);
        }
        // RFC 3042 limited transmit, counting SACKed segments as duplicates (a cumulative ACK
        // may SACK too).
        let limited =
            if new_data { self.cc.limited_transmit().max(sacked.min(2 * u32::from(self.send_mss))) } else { 0 };
        self.cc.window().saturating_add(limited).saturating_sub(in_flight)
    }
}
