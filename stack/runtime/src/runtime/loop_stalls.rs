//! How long a worker's loop went round without looking at its rings: the time between two
//! iterations that did not sleep. A busy worker's p99 latency is at least its longest stall
//! (the frames that arrived meanwhile wait), so this is where a latency spike is told apart
//! from the network: a stall means the worker was busy (a long batch, a page fault) or not
//! on its core (preempted by another task, a host hiccup).

use core::time::Duration;

use synack_proto::time::Instant;

/// Stall counts of one worker, from the loop's one clock read per iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStalls {
    /// The longest time between two consecutive iterations, sleeps left out.
    pub longest: Duration,
    /// Iterations that came 1 ms or more after the previous one (sleeps left out).
    pub over_1ms: u64,
    /// Of those, 10 ms or more.
    pub over_10ms: u64,
}

/// Follows the loop: [`StallClock::tick`] with each iteration's clock reading.
#[derive(Debug, Default)]
pub(crate) struct StallClock {
    /// The previous iteration's reading; `None` after a sleep (its gap is idle time).
    last: Option<Instant>,
    stalls: LoopStalls,
}

impl StallClock {
    /// An iteration began at `now`.
    #[inline]
    pub(crate) fn tick(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap >= Duration::from_millis(1) {
                self.record(gap);
            }
        }
        self.last = Some(now);
    }

    #[cold]
    fn record(&mut self, gap: Duration) {
        self.stalls.over_1ms += 1;
        if gap >= Duration::from_millis(10) {
            self.stalls.over_10ms += 1;
        }
        self.stalls.longest = self.stalls.longest.max(gap);
    }

    /// The worker is about to sleep: the next gap is not a stall.
    #[inline]
    pub(crate) fn sleeping(&mut self) {
        self.last = None;
    }

    pub(crate) fn stalls(&self) -> LoopStalls {
        self.stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_between_busy_iterations_only() {
        let t0 = Instant::from_millis(1_000);
        let mut c = StallClock::default();
        c.tick(t0);
        c.tick(t0 + Duration::from_micros(900));
        assert_eq!(c.stalls(), LoopStalls::default(), "a gap under 1 ms is not a stall");
        c.tick(t0 + Duration::from_micros(2_900));
        c.tick(t0 + Duration::from_micros(17_900));
        c.sleeping();
        c.tick(t0 + Duration::from_secs(5));
        c.tick(t0 + Duration::from_secs(5) + Duration::from_micros(1_500));
        let s = c.stalls();
        assert_eq!((s.over_1ms, s.over_10ms), (3, 1), "2 ms, 15 ms and 1.5 ms; the sleep left out");
        assert_eq!(s.longest, Duration::from_millis(15));
    }
}
