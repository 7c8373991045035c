//! Round-trip estimation and the retransmission timeout (RFC 6298), with Karn's rule.

use core::time::Duration;

use super::SeqNumber;
use crate::time::Instant;

/// Clock granularity G of RFC 6298 2.2; our clock is nanoseconds, so this is only a floor.
const GRANULARITY: Duration = Duration::from_millis(1);

/// SRTT, RTTVAR and the current RTO, plus the one segment being timed.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    backoff: u32,
    min: Duration,
    max: Duration,
    /// The segment being timed: its end sequence number and when it was sent.
    timing: Option<(SeqNumber, Instant)>,
}

impl RttEstimator {
    /// An estimator with no samples yet (RTO = `initial`, RFC 6298 2.1).
    pub fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial.clamp(min, max),
            backoff: 0,
            min,
            max,
            timing: None,
        }
    }

    /// The current RTO, backoff included.
    pub fn rto(&self) -> Duration {
        self.rto.checked_mul(1 << self.backoff.min(16)).unwrap_or(self.max).min(self.max)
    }

    /// The smoothed RTT, once a sample exists.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Starts timing a segment that ends at `end`, unless one is being timed already.
    pub fn on_send(&mut self, now: Instant, end: SeqNumber) {
        if self.timing.is_none() {
            self.timing = Some((end, now));
        }
    }

    /// Karn's rule: a retransmission makes the timed segment's sample ambiguous; drop it.
    pub fn on_retransmit(&mut self) {
        self.timing = None;
    }

    /// RTO expiry doubles the timeout (RFC 6298 5.5), up to the bound.
    pub fn back_off(&mut self) {
        if self.rto() < self.max {
            self.backoff += 1;
        }
    }

    /// Number of consecutive backoffs.
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    /// An ACK up to `ack` arrived: take a sample if it covers the timed segment.
    pub fn on_ack(&mut self, now: Instant, ack: SeqNumber) {
        if let Some((end, sent)) = self.timing {
            if ack >= end {
                self.timing = None;
                self.sample(now.saturating_duration_since(sent));
            }
        }
    }

    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + GRANULARITY.max(self.rttvar * 4)).clamp(self.min, self.max);
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
