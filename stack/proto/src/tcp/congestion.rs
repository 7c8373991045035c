//! Congestion control: slow start and congestion avoidance (RFC 5681) with NewReno fast
//! recovery (RFC 6582).

use super::SeqNumber;

/// What the sender must do after an ACK was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckAction {
    /// Nothing beyond sending what the window allows.
    None,
    /// Retransmit the first unacknowledged segment now (fast retransmit, or a partial ACK).
    Retransmit,
}

/// NewReno state of one connection, in bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewReno {
    cwnd: u32,
    ssthresh: u32,
    mss: u32,
    dup_acks: u32,
    /// RFC 6582 "recover": the highest sequence sent when recovery began.
    recover: SeqNumber,
    in_recovery: bool,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew (RFC 5681 3.1).
    bytes_acked: u32,
}

impl NewReno {
    /// A sender with `initial_segments` segments of initial window (RFC 6928).
    pub(super) fn new(mss: u32, initial_segments: u32, iss: SeqNumber) -> NewReno {
        let mss = mss.max(1);
        NewReno {
            cwnd: mss.saturating_mul(initial_segments.max(1)),
            ssthresh: u32::MAX,
            mss,
            dup_acks: 0,
            recover: iss,
            in_recovery: false,
            bytes_acked: 0,
        }
    }

    /// A smaller segment size (path MTU discovery): window increments follow it; the window
    /// itself, in bytes, stays.
    pub(super) fn set_mss(&mut self, mss: u32) {
        self.mss = mss.max(1);
    }

    /// The congestion window in bytes.
    pub(super) fn window(&self) -> u32 {
        self.cwnd
    }

    /// The slow-start threshold.
    pub(super) fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// Whether fast recovery is under way.
    pub(super) fn in_recovery(&self) -> bool {
        self.in_recovery
    }

    /// RFC 3042 limited transmit: how far beyond the congestion window new data may go, one
    /// segment for each of the first two duplicate ACKs, so that a small window still draws
    /// the duplicates that fast retransmit needs.
    pub(super) fn limited_transmit(&self) -> u32 {
        if self.in_recovery {
            0
        } else {
            self.dup_acks.min(2) * self.mss
        }
    }

    /// An ACK advanced SND.UNA by `acked` bytes to `ack`.
    pub(super) fn on_new_ack(&mut self, ack: SeqNumber, acked: u32) -> AckAction {
        self.dup_acks = 0;
        if self.in_recovery {
            if ack >= self.recover {
                // Full acknowledgment (RFC 6582 3.2 step 3, option 2, as Linux's PRR ends):
                // cwnd = ssthresh. Option 1, min(ssthresh, FlightSize + SMSS), guards against a
                // burst but drops to two segments whenever the full ACK leaves little in
                // flight, which is the rule when the sender is application-limited (an echo),
                // and then slow start must climb back after every loss.
                self.in_recovery = false;
                self.cwnd = self.ssthresh;
                self.bytes_acked = 0;
                return AckAction::None;
            }
            // Partial acknowledgment (step 4): retransmit the next hole, deflate by what was
            // acked and add back one segment.
            self.cwnd = self.cwnd.saturating_sub(acked).saturating_add(self.mss).max(self.mss);
            return AckAction::Retransmit;
        }
        if self.cwnd < self.ssthresh {
            // Slow start, with appropriate byte counting limited to one SMSS per ACK (RFC 5681 3.1).
            self.cwnd = self.cwnd.saturating_add(acked.min(self.mss));
        } else {
            // Congestion avoidance: one SMSS per cwnd of bytes acknowledged (RFC 5681 3.1, the
            // byte counting it recommends). Adding SMSS*SMSS/cwnd per ACK instead grows half as
            // fast against a receiver that ACKs every second segment.
            self.bytes_acked = self.bytes_acked.saturating_add(acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
        }
        AckAction::None
    }

    /// A duplicate ACK arrived (RFC 5681, or RFC 6675: one that SACKs new data); `snd_max`
    /// is the highest sequence sent. `lost` says the SACK scoreboard deems SND.UNA lost
    /// (RFC 6675 IsLost), which starts recovery before the third duplicate.
    pub(super) fn on_dup_ack(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, flight: u32, lost: bool) -> AckAction {
        self.dup_acks += 1;
        if self.in_recovery {
            // Each further duplicate means a segment left the network: inflate.
            self.cwnd = self.cwnd.saturating_add(self.mss);
            return AckAction::None;
        }
        if self.dup_acks == 3 || lost {
            return self.on_loss(snd_una, snd_max, flight);
        }
        AckAction::None
    }

    /// Loss of SND.UNA was detected (three duplicates, or the SACK scoreboard): enter fast
    /// recovery, unless already in it or the loss predates the last recovery point
    /// (RFC 6582 3.2 step 2).
    pub(super) fn on_loss(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, flight: u32) -> AckAction {
        if self.in_recovery || snd_una.diff(self.recover) < 0 {
            return AckAction::None;
        }
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.recover = snd_max;
        self.cwnd = self.ssthresh + 3 * self.mss;
        self.in_recovery = true;
        AckAction::Retransmit
    }

    /// A tail loss probe repaired a loss (RFC 8985 7.4.2): halve the window as a fast
    /// recovery would have, without entering one (Linux's CWR state, ended at once).
    pub(super) fn on_probe_repaired_loss(&mut self) {
        if self.in_recovery {
            return;
        }
        self.ssthresh = (self.cwnd / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.dup_acks = 0;
    }

    /// The retransmission timer expired (RFC 5681 3.1 eqn 4; RFC 6582 4).
    pub(super) fn on_timeout(&mut self, snd_max: SeqNumber, flight: u32) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.dup_acks = 0;
        self.in_recovery = false;
        self.recover = snd_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance() {
        let mut c = NewReno::new(1000, 10, SeqNumber(0));
        assert_eq!(c.window(), 10_000);
        c.on_new_ack(SeqNumber(1000), 1000);
        assert_eq!(c.window(), 11_000);
        c.on_timeout(SeqNumber(5000), 8000);
        assert_eq!((c.window(), c.ssthresh()), (1000, 4000));
        for _ in 0..3 {
            c.on_new_ack(SeqNumber(6000), 1000);
        }
        assert_eq!(c.window(), 4000);
        for i in 0..4 {
            assert_eq!(c.window(), 4000, "no growth before a cwnd of bytes is acked ({i})");
            c.on_new_ack(SeqNumber(7000 + i * 1000), 1000);
        }
        assert_eq!(c.window(), 5000, "CA adds one MSS per cwnd of bytes acked");
    }

    #[test]
    fn three_dup_acks_enter_recovery_and_partial_acks_retransmit() {
        let mut c = NewReno::new(1000, 10, SeqNumber(0));
        let una = SeqNumber(1000);
        let max = SeqNumber(11_000);
        assert_eq!(c.on_dup_ack(una, max, 10_000, false), AckAction::None);
        assert_eq!(c.on_dup_ack(una, max, 10_000, false), AckAction::None);
        assert_eq!(c.on_dup_ack(una, max, 10_000, false), AckAction::Retransmit);
        assert!(c.in_recovery());
        assert_eq!(c.window(), 5000 + 3000);
        c.on_dup_ack(una, max, 10_000, false);
        assert_eq!(c.window(), 9000);
        assert_eq!(c.on_new_ack(SeqNumber(4000), 3000), AckAction::Retransmit);
        assert!(c.in_recovery());
        assert_eq!(c.on_new_ack(max, 7000), AckAction::None);
        assert!(!c.in_recovery());
        assert_eq!(c.window(), 5000, "deflated to ssthresh, however little is left in flight");
        // A second loss signal for data sent before `recover` does not start another recovery.
        let mut c2 = NewReno::new(1000, 10, SeqNumber(0));
        c2.on_timeout(SeqNumber(20_000), 10_000);
        for _ in 0..3 {
            assert_eq!(c2.on_dup_ack(SeqNumber(5000), SeqNumber(20_000), 4000, false), AckAction::None);
        }
    }
}
