//! The connection's timers: retransmission (RFC 6298), persist (RFC 9293 3.8.6.1),
//! keepalive (RFC 1122 4.2.3.6), delayed ACK, tail loss probe (RFC 8985 7) and the close
//! timers of TIME_WAIT and an orphan's FIN-WAIT-2.

use super::Connection;
use crate::tcp::loss_probe;
use crate::tcp::{CloseReason, State, Timer};
use crate::time::Instant;

impl Connection {
    /// The next instant at which [`Connection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Retransmit => match self.recovery.take_reorder_timer() {
                    Some(rto_at) => self.on_reorder_timeout(now, rto_at),
                    None => self.on_retransmit_timeout(now),
                },
                Timer::Persist => {
                    // RFC 9293 3.8.6.1 lets a zero window be probed for ever while the peer
                    // answers; a peer that went away answers nothing, and a probe without end
                    // would hold the connection for ever. As Linux (`tcp_probe_timer`): give
                    // up after `data_retries` unanswered probes, or after the user timeout.
                    let stalled = *self.stalled_since.get_or_insert(now);
                    let timed_out =
                        self.config.user_timeout.is_some_and(|t| now.saturating_duration_since(stalled) >= t);
                    if timed_out || self.persist_probes >= self.config.data_retries {
                        self.finish(CloseReason::TimedOut);
                        return;
                    }
                    self.persist_probes += 1;
                    // Probe with one byte from SND.UNA; back off like the RTO.
                    self.persist_probe = true;
                    self.snd_nxt = self.snd_una;
                    self.rtt.back_off();
                }
                Timer::DelayedAck => self.ack_now = true,
                Timer::LossProbe => {
                    if self.loss_probe_allowed() {
                        self.recovery.set_probe_due();
                    }
                }
                Timer::Keepalive => self.on_keepalive_timeout(now),
                Timer::Close => match self.state {
                    State::TimeWait => {
                        self.state = State::Closed;
                        self.timers.clear_all();
                    }
                    State::FinWait2 => {
                        // An orphan whose peer never closed: reset it, as Linux does.
                        self.abort();
                    }
                    _ => {}
                },
            }
        }
        self.update_timers(now);
        self.debug_check_invariants();
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        self.retries = self.retries.saturating_add(1);
        let limit = match self.state {
            State::SynSent => self.config.syn_retries,
            State::SynReceived => self.config.synack_retries,
            _ => self.config.data_retries,
        };
        let stalled = *self.stalled_since.get_or_insert(now);
        let timed_out = self.state.is_synchronized()
            && self.config.user_timeout.is_some_and(|t| now.saturating_duration_since(stalled) >= t);
        if self.retries > limit || timed_out {
            self.finish(CloseReason::TimedOut);
            return;
        }
        match self.state {
            State::SynSent | State::SynReceived => self.snd_nxt = self.iss,
            _ => {
                // RFC 5681 3.1 and RFC 6298 5.4-5.6: collapse the window, go back to SND.UNA.
                self.stats.rto_timeouts += 1;
                self.cc.on_timeout(self.snd_max, self.snd_max.since(self.snd_una));
                self.snd_nxt = self.snd_una;
                self.recovery.restart();
            }
        }
        self.rtt.back_off();
        self.rtt.on_retransmit();
        let at = self.clamp_to_user_timeout(now + self.rtt.rto());
        self.timers.set(Timer::Retransmit, at);
    }

    /// Brings a retransmission or zero-window probe deadline forward to the end of the user
    /// timeout, so that the check in [`Connection::handle_timeout`] runs when the timeout
    /// expires rather than at the next backed-off firing, up to twice as late (Linux
    /// `tcp_clamp_rto_to_user_timeout`, `tcp_clamp_probe0_to_user_timeout`). Only once a
    /// stall has begun, and only when synchronized: the handshake is bounded by its retries.
    fn clamp_to_user_timeout(&self, at: Instant) -> Instant {
        match (self.stalled_since, self.config.user_timeout) {
            (Some(stalled), Some(timeout)) if self.state.is_synchronized() => at.min(stalled + timeout),
            _ => at,
        }
    }

    fn on_keepalive_timeout(&mut self, now: Instant) {
        let Some(k) = self.config.keepalive else { return };
        if !matches!(self.state, State::Established | State::CloseWait) {
            return;
        }
        if self.keepalive_probes >= k.probes {
            self.abort();
            self.close_reason = Some(CloseReason::TimedOut);
            return;
        }
        self.keepalive_probes += 1;
        self.keepalive_probe = true;
        self.timers.set(Timer::Keepalive, now + k.interval);
    }

    /// Keeps the retransmit, persist and keepalive timers consistent with the state.
    pub(super) fn update_timers(&mut self, now: Instant) {
        match self.state {
            State::Closed | State::Listen | State::TimeWait => return,
            _ => {}
        }
        if self.orphan_timer_due {
            self.orphan_timer_due = false;
            if self.state == State::FinWait2 && !self.timers.is_armed(Timer::Close) {
                self.timers.set(Timer::Close, now + self.config.fin_wait_2_timeout);
            }
        }
        let can_send_data = matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
        );
        if can_send_data && self.snd_wnd == 0 && !self.tx.is_empty() {
            // Zero window with data waiting: persist instead of retransmitting.
            self.timers.clear(Timer::Retransmit);
            let at = self.clamp_to_user_timeout(now + self.rtt.rto());
            self.timers.set_if_idle(Timer::Persist, at);
        } else {
            self.timers.clear(Timer::Persist);
            if self.snd_max > self.snd_una {
                if !self.timers.is_armed(Timer::Retransmit) {
                    let at = Instant::from_nanos(now.as_nanos().saturating_add(self.rtt.rto_ns()));
                    self.timers.set(Timer::Retransmit, self.clamp_to_user_timeout(at));
                }
            } else {
                self.timers.clear(Timer::Retransmit);
            }
        }
        self.arm_loss_probe(now);
        if let Some(k) = self.config.keepalive {
            if matches!(self.state, State::Established | State::CloseWait) {
                self.timers.set_if_idle(Timer::Keepalive, now + k.idle);
            } else {
                self.timers.clear(Timer::Keepalive);
            }
        }
    }

    /// Arms the tail loss probe timer when a probe may be sent and would come before the RTO
    /// (RFC 8985 7.2); disarms it otherwise. Restarting it is its callers' business (new data
    /// sent, SND.UNA advanced): they clear it first.
    fn arm_loss_probe(&mut self, now: Instant) {
        if !self.loss_probe_allowed() || self.recovery.probe_due() {
            self.timers.clear(Timer::LossProbe);
            return;
        }
        if self.timers.is_armed(Timer::LossProbe) {
            return;
        }
        let Some(rto_at) = self.timers.get(Timer::Retransmit) else {
            self.timers.clear(Timer::LossProbe);
            return;
        };
        let flight = self.snd_max.since(self.snd_una);
        let pto = loss_probe::probe_timeout_ns(
            self.rtt.srtt_ns(),
            self.rtt.rto_ns(),
            flight,
            u32::from(self.send_mss),
            self.recovery.loss_probe.unanswered(),
        );
        let at = now.as_nanos().saturating_add(pto);
        if at < rto_at.as_nanos() {
            self.timers.set(Timer::LossProbe, Instant::from_nanos(at));
        } else {
            self.timers.clear(Timer::LossProbe);
        }
    }
}
