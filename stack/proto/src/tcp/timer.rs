//! The timer table: one deadline per kind of timer; the next wake-up is their minimum.

use crate::time::Instant;

/// The timers a connection runs. Retransmit and Persist never run together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Timer {
    /// Retransmission of SYN, SYN-ACK, data or FIN (RFC 6298).
    Retransmit = 0,
    /// Zero-window probing (RFC 9293 3.8.6.1).
    Persist = 1,
    /// Delayed ACK (RFC 1122 4.2.3.2).
    DelayedAck = 2,
    /// Keepalive probing (RFC 1122 4.2.3.6).
    Keepalive = 3,
    /// 2MSL in TIME_WAIT, or the orphan timeout in FIN_WAIT_2.
    Close = 4,
    /// Tail loss probe (RFC 8985 7), ahead of the retransmission timeout.
    LossProbe = 5,
}

const COUNT: usize = 6;
const ALL: [Timer; COUNT] =
    [Timer::Retransmit, Timer::Persist, Timer::DelayedAck, Timer::Keepalive, Timer::Close, Timer::LossProbe];

/// Deadlines indexed by [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; COUNT],
}

impl TimerTable {
    /// Arms `timer` for `at`, replacing any earlier deadline.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    /// Arms `timer` unless it is already armed.
    pub(crate) fn set_if_idle(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.deadlines[timer as usize];
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// Disarms `timer`.
    pub(crate) fn clear(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Disarms every timer.
    pub(crate) fn clear_all(&mut self) {
        self.deadlines = [None; COUNT];
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Whether `timer` is armed.
    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize].is_some()
    }

    /// The earliest deadline of all.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, if any.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let mut best: Option<(Timer, Instant)> = None;
        for t in ALL {
            if let Some(at) = self.deadlines[t as usize] {
                if at <= now && best.is_none_or(|(_, b)| at < b) {
                    best = Some((t, at));
                }
            }
        }
        let (t, _) = best?;
        self.clear(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_minimum_and_expiry_is_in_order() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Close, Instant::from_millis(50));
        t.set(Timer::DelayedAck, Instant::from_millis(10));
        t.set_if_idle(Timer::DelayedAck, Instant::from_millis(1));
        assert_eq!(t.next(), Some(Instant::from_millis(10)));
        assert_eq!(t.pop_expired(Instant::from_millis(5)), None);
        assert_eq!(t.pop_expired(Instant::from_millis(60)), Some(Timer::DelayedAck));
        assert_eq!(t.pop_expired(Instant::from_millis(60)), Some(Timer::Close));
        assert_eq!(t.pop_expired(Instant::from_millis(60)), None);
    }
}
