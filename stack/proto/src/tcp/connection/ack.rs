//! The fifth step of segment arrival for an acceptable ACK (RFC 9293 3.10.7.4): SND.UNA
//! advances, RTT and congestion control learn, loss is detected, the send window is updated
//! and the closing states move on.

use super::{Connection, EV_WRITABLE};
use crate::tcp::{CloseReason, SeqNumber, State, Timer};
use crate::time::Instant;
use crate::wire::SackBlocks;

impl Connection {
    /// Fifth step for an acceptable ACK: advance SND.UNA, feed RTT and congestion control,
    /// update the window, and move the close states along.
    pub(super) fn process_ack(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        ack: SeqNumber,
        window: u32,
        pure_ack: bool,
        sack: &SackBlocks,
    ) {
        let newly_sacked = self.recovery_on_ack(ack, pure_ack, sack);
        if ack > self.snd_una {
            let acked = ack.since(self.snd_una);
            // The SYN occupies the sequence number at ISS; the FIN the one after the data.
            let syn_part = u32::from(self.snd_una == self.iss);
            let data_acked = ((acked - syn_part.min(acked)) as usize).min(self.tx.len());
            self.tx.consume(data_acked);
            self.snd_una = ack;
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            self.rtt.on_ack(now, ack);
            self.retries = 0;
            // Progress: the user timeout starts again with the next stall.
            self.stalled_since = None;
            self.detect_loss_on_new_ack(ack, acked);
            if self.snd_una == self.snd_max {
                self.timers.clear(Timer::Retransmit);
            } else {
                // RFC 6298 5.3: restart the timer when new data is acknowledged.
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            }
            if data_acked > 0 && self.send_blocked {
                self.send_blocked = false;
                self.events |= EV_WRITABLE;
            }
        } else if ack == self.snd_una
            && self.snd_max > self.snd_una
            && ((pure_ack && window == self.snd_wnd) || newly_sacked > 0)
        {
            self.stats.dup_acks_received += 1;
            self.detect_loss_on_dup_ack();
        }
        self.detect_loss_after_ack(now, newly_sacked);

        // Window update (RFC 9293 3.10.7.4): only from a segment newer than the last one used.
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if was_zero && window > 0 && self.timers.is_armed(Timer::Persist) {
                // Leaving persist: resend from SND.UNA at once rather than waiting for an RTO.
                self.timers.clear(Timer::Persist);
                self.snd_nxt = self.snd_una;
                self.retries = 0;
                self.stalled_since = None;
            }
        }

        let fin_acked = self.fin_acked();
        match self.state {
            State::FinWait1 if fin_acked => {
                self.state = State::FinWait2;
                if self.orphaned {
                    self.timers.set(Timer::Close, now + self.config.fin_wait_2_timeout);
                }
            }
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => self.finish(CloseReason::Normal),
            _ => {}
        }
    }
}
