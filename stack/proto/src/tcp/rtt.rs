//! Round-trip estimation and the retransmission timeout (RFC 6298), with Karn's rule.

use core::time::Duration;

use super::SeqNumber;
use crate::time::Instant;

/// Clock granularity G of RFC 6298 2.2; our clock is nanoseconds, so this is only a floor.
const GRANULARITY: Duration = Duration::from_millis(1);

/// SRTT, RTTVAR and the current RTO, plus the one segment being timed.
///
/// Durations are kept as nanoseconds in `u64` (over 500 years): `Duration`'s seconds-and-
/// nanoseconds arithmetic normalises on every operation, and this runs on every ACK. The
/// divisions by 2, 4 and 8 are exact on whole seconds, so the results equal `Duration`'s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttEstimator {
    srtt_ns: Option<u64>,
    rttvar_ns: u64,
    rto_ns: u64,
    backoff: u32,
    min_ns: u64,
    max_ns: u64,
    /// The segment being timed: its end sequence number and when it was sent.
    timing: Option<(SeqNumber, Instant)>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RttEstimator {
    /// An estimator with no samples yet (RTO = `initial`, RFC 6298 2.1).
    pub(crate) fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        let (min_ns, max_ns) = (nanos(min), nanos(max));
        assert!(min_ns <= max_ns, "RTO bounds out of order");
        RttEstimator {
            srtt_ns: None,
            rttvar_ns: 0,
            rto_ns: nanos(initial).clamp(min_ns, max_ns),
            backoff: 0,
            min_ns,
            max_ns,
            timing: None,
        }
    }

    /// The current RTO, backoff included.
    pub(crate) fn rto(&self) -> Duration {
        Duration::from_nanos(self.rto_ns())
    }

    /// [`rto`](Self::rto) in nanoseconds (timer arithmetic on the hot path stays in `u64`).
    pub(crate) fn rto_ns(&self) -> u64 {
        self.rto_ns.checked_mul(1 << self.backoff.min(16)).unwrap_or(self.max_ns).min(self.max_ns)
    }

    /// The smoothed RTT, once a sample exists.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt_ns.map(Duration::from_nanos)
    }

    /// [`srtt`](Self::srtt) in nanoseconds.
    #[inline]
    pub(crate) fn srtt_ns(&self) -> Option<u64> {
        self.srtt_ns
    }

    /// Starts timing a segment that ends at `end`, unless one is being timed already.
    pub(crate) fn on_send(&mut self, now: Instant, end: SeqNumber) {
        if self.timing.is_none() {
            self.timing = Some((end, now));
        }
    }

    /// Karn's rule: a retransmission makes the timed segment's sample ambiguous; drop it.
    pub(crate) fn on_retransmit(&mut self) {
        self.timing = None;
    }

    /// RTO expiry doubles the timeout (RFC 6298 5.5), up to the bound.
    pub(crate) fn back_off(&mut self) {
        if self.rto_ns() < self.max_ns {
            self.backoff += 1;
        }
    }

    /// An ACK up to `ack` arrived: take a sample if it covers the timed segment.
    pub(crate) fn on_ack(&mut self, now: Instant, ack: SeqNumber) {
        if let Some((end, sent)) = self.timing {
            if ack >= end {
                self.timing = None;
                self.sample(now.as_nanos().saturating_sub(sent.as_nanos()));
            }
        }
    }

    fn sample(&mut self, r: u64) {
        let srtt = match self.srtt_ns {
            None => {
                self.rttvar_ns = r / 2;
                r
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar_ns = self.rttvar_ns.saturating_mul(3).saturating_add(delta) / 4;
                srtt.saturating_mul(7).saturating_add(r) / 8
            }
        };
        self.srtt_ns = Some(srtt);
        let variance = nanos(GRANULARITY).max(self.rttvar_ns.saturating_mul(4));
        self.rto_ns = srtt.saturating_add(variance).clamp(self.min_ns, self.max_ns);
        // A new sample ends the backoff (RFC 6298 5.7 recomputes from fresh estimates).
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn follows_rfc6298_and_karns_rule() {
        let mut r = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!(r.rto(), ms(1000));
        let t0 = Instant::from_millis(10);
        r.on_send(t0, SeqNumber(100));
        r.on_send(t0 + ms(5), SeqNumber(200)); // already timing: ignored
        r.on_ack(t0 + ms(300), SeqNumber(100));
        // First sample: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR.
        assert_eq!(r.srtt(), Some(ms(300)));
        assert_eq!(r.rto(), ms(900));
        // A retransmitted segment gives no sample.
        r.on_send(t0 + ms(400), SeqNumber(300));
        r.on_retransmit();
        r.on_ack(t0 + ms(5000), SeqNumber(300));
        assert_eq!(r.srtt(), Some(ms(300)));
        // Second sample of 100 ms: RTTVAR = 3/4*150 + 1/4*200 = 162.5, SRTT = 275.
        r.on_send(t0, SeqNumber(400));
        r.on_ack(t0 + ms(100), SeqNumber(400));
        assert_eq!(r.srtt(), Some(ms(275)));
        assert_eq!(r.rto(), ms(275) + ms(650));
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_and_min_applies() {
        let mut r = RttEstimator::new(ms(1000), ms(200), ms(5000));
        r.back_off();
        assert_eq!(r.rto(), ms(2000));
        r.back_off();
        r.back_off();
        assert_eq!(r.rto(), ms(5000));
        for _ in 0..100 {
            r.back_off();
        }
        assert_eq!(r.rto(), ms(5000));
        r.on_send(Instant::ZERO, SeqNumber(1));
        r.on_ack(Instant::from_micros(50), SeqNumber(1));
        assert_eq!(r.rto(), ms(200), "clamped to the minimum, backoff cleared");
    }
}
