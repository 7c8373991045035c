//! Segment arrival (RFC 9293 3.10.7), state by state: CLOSED and LISTEN, SYN-SENT, the
//! synchronized states (with SYN-RECEIVED) and TIME_WAIT; and ICMP fragmentation-needed.

use super::{
    Connection, DEFAULT_PEER_MSS, EV_CONNECTED, EV_PEER_CLOSED, EV_READABLE, IPV4_TCP_HEADERS, MIN_IPV4_MTU,
    MIN_PATH_MTU, MIN_PEER_MSS, PAWS_IDLE, PROBE_ANSWER_INTERVAL, TIMESTAMP_OPTION_LEN, UNACCEPTABLE_ACK_INTERVAL,
};
use crate::tcp::congestion::NewReno;
use crate::tcp::{
    CloseReason, DropReason, Endpoint, Outcome, PmtuOutcome, Segment, SeqNumber, State, TimeWaitAction, Timer,
};
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpOptions};

impl Connection {
    /// Processes one received segment (already demultiplexed to this connection).
    pub fn handle_segment(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let outcome = match self.state {
            State::Closed => Outcome::NoConnection,
            State::Listen => self.on_listen(now, seg),
            State::SynSent => self.on_syn_sent(now, seg),
            State::TimeWait => self.on_time_wait(now, seg),
            _ => self.on_synchronized(now, seg),
        };
        self.update_timers(now);
        self.debug_check_invariants();
        outcome
    }

    fn negotiate(&mut self, now: Instant, options: &TcpOptions) {
        let c = &self.config;
        let peer_mss = options.mss.unwrap_or(DEFAULT_PEER_MSS).max(MIN_PEER_MSS);
        match options.window_scale {
            Some(shift) if c.window_scaling => {
                // RFC 7323 2.3: a shift above 14 is treated as 14.
                self.snd_wscale = shift.min(14);
                self.rcv_wscale = c.recv_window_shift();
            }
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.ts_enabled = c.timestamps && options.timestamp.is_some();
        if let Some(ts) = options.timestamp.filter(|_| self.ts_enabled) {
            self.ts_recent = ts.tsval;
            self.ts_recent_at = now;
        }
        self.sack_enabled = c.sack && options.sack_permitted;
        let option_room = if self.ts_enabled { TIMESTAMP_OPTION_LEN } else { 0 };
        self.send_mss = peer_mss.min(c.mss).saturating_sub(option_room).max(1);
        self.cc = NewReno::new(u32::from(self.send_mss), c.initial_window_segments, self.iss);
    }

    // Inlined into `handle_segment` as when it was its only caller (`open_from_cookie`, the
    // cold one, came later): about 50 instructions per passive open.
    #[inline(always)]
    pub(super) fn on_listen(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let r = &seg.repr;
        if r.flags.contains(TcpFlags::RST) {
            return Outcome::Dropped(DropReason::RstIgnored);
        }
        if r.flags.contains(TcpFlags::ACK) {
            // RFC 9293 3.10.7.2: any ACK in LISTEN is bad; the caller answers with an RST.
            return Outcome::NoConnection;
        }
        if !r.flags.contains(TcpFlags::SYN) {
            return Outcome::Dropped(DropReason::Unexpected);
        }
        self.tuple.local.addr = seg.dst_addr;
        self.tuple.remote = Endpoint::new(seg.src_addr, r.src_port);
        let (iss, ts_offset) = self.isn.isn_and_ts_offset(now, &self.tuple);
        let iss = self.iss_forced.take().unwrap_or(iss);
        self.ts_offset = ts_offset;
        self.start_sequence(iss);
        self.irs = SeqNumber(r.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.negotiate(now, &r.options);
        // RFC 7323 2.2: the window of a SYN is never scaled.
        self.snd_wnd = u32::from(r.window);
        self.max_snd_wnd = self.snd_wnd;
        self.state = State::SynReceived;
        Outcome::Accepted
    }

    fn on_syn_sent(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let r = &seg.repr;
        let ack = SeqNumber(r.ack);
        let has_ack = r.flags.contains(TcpFlags::ACK);
        // RFC 9293 3.10.7.3, first: an ACK must cover our SYN and nothing unsent.
        if has_ack && (ack <= self.iss || ack > self.snd_max) {
            if !r.flags.contains(TcpFlags::RST) {
                // <SEQ=SEG.ACK><CTL=RST>
                self.rst_pending = Some(ack);
            }
            return Outcome::Dropped(DropReason::UnacceptableAck);
        }
        if r.flags.contains(TcpFlags::RST) {
            if has_ack {
                self.finish(CloseReason::Refused);
                return Outcome::Accepted;
            }
            return Outcome::Dropped(DropReason::RstIgnored);
        }
        if !r.flags.contains(TcpFlags::SYN) {
            return Outcome::Dropped(DropReason::Unexpected);
        }
        self.irs = SeqNumber(r.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.negotiate(now, &r.options);
        self.snd_wnd = u32::from(r.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.snd_wl2 = ack;
        if has_ack {
            self.snd_una = ack;
            self.rtt.on_ack(now, ack);
            self.retries = 0;
            self.establish();
            self.ack_now = true;
        } else {
            // Simultaneous open (RFC 9293 figure 8): answer with SYN-ACK from the same ISS.
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
            self.rtt.on_retransmit();
        }
        Outcome::Accepted
    }

    fn establish(&mut self) {
        // A stall of the handshake is not one of the data.
        self.stalled_since = None;
        self.events |= EV_CONNECTED;
        self.state = if self.fin_queued { State::FinWait1 } else { State::Established };
    }

    fn on_time_wait(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let Some(mut record) = self.time_wait_record() else {
            return Outcome::NoConnection;
        };
        match record.on_segment(now, &seg.repr, seg.payload.len(), self.config.time_wait) {
            TimeWaitAction::Drop if seg.repr.flags.contains(TcpFlags::RST) => Outcome::Dropped(DropReason::RstIgnored),
            TimeWaitAction::Drop => Outcome::Accepted,
            // The full connection keeps its own budget (the record's flag is for the table).
            TimeWaitAction::Ack | TimeWaitAction::RateLimited => {
                self.challenge_ack(now);
                Outcome::Dropped(DropReason::OutOfWindow)
            }
            TimeWaitAction::AckAndRestart => {
                self.ts_recent = record.ts_recent;
                self.ts_recent_at = now;
                self.timers.set(Timer::Close, record.expiry);
                self.ack_now = true;
                Outcome::Accepted
            }
            TimeWaitAction::Reopen { iss } => {
                self.state = State::Closed;
                self.timers.clear_all();
                Outcome::Reopen { iss }
            }
        }
    }

    /// RFC 9293 3.10.7.4: segments in SYN-RECEIVED and the synchronized states, in the RFC's
    /// steps (the third, security, does not apply).
    fn on_synchronized(&mut self, now: Instant, seg: &Segment<'_>) -> Outcome {
        let flags = seg.repr.flags;
        // First: the sequence number.
        let (seq, syn, payload) = match self.check_sequence(now, seg) {
            Ok(accepted) => accepted,
            Err(outcome) => return outcome,
        };

        // Second: RST (RFC 5961 3.2): only an exact match resets; others get a challenge ACK.
        if flags.contains(TcpFlags::RST) {
            if seq == self.rcv_nxt {
                // RFC 9293 3.10.7.4: in SYN-RECEIVED from an active open, the peer refused.
                let reason = if self.state == State::SynReceived && self.active_open {
                    CloseReason::Refused
                } else {
                    CloseReason::Reset
                };
                self.finish(reason);
                return Outcome::Accepted;
            }
            self.challenge_ack(now);
            return Outcome::Dropped(DropReason::Challenged);
        }

        // Fourth: a SYN in a synchronized state gets a challenge ACK (RFC 5961 4.2).
        if syn {
            self.challenge_ack(now);
            return Outcome::Dropped(DropReason::Challenged);
        }

        // Fifth: the ACK field.
        let fin = flags.contains(TcpFlags::FIN);
        if let Err(outcome) = self.receive_ack(now, seg, seq, payload.is_empty() && !fin) {
            return outcome;
        }
        // Sixth: the URG bit is ignored (RFC 6093 advises against new uses). Seventh: the text.
        let fin_seq_ok = match self.receive_text(now, seq, payload, fin) {
            Ok(fin_seq_ok) => fin_seq_ok,
            Err(outcome) => return outcome,
        };
        // Eighth: FIN, once everything before it has arrived.
        self.receive_fin(now, seq, seg.payload.len(), fin, fin_seq_ok);
        Outcome::Accepted
    }

    /// The first step: whether the segment is acceptable (RFC 9293 3.10.7.4 table), after a
    /// copy of the peer's SYN is stripped and PAWS (RFC 7323 5.3) is applied; with a zero
    /// window a segment at RCV.NXT is taken without its text, and a window probe at RCV.NXT - 1
    /// is taken too. Returns the segment's sequence number, SYN and text as they are to be
    /// processed, or the outcome of a segment that goes no further.
    #[inline]
    fn check_sequence<'a>(&mut self, now: Instant, seg: &Segment<'a>) -> Result<(SeqNumber, bool, &'a [u8]), Outcome> {
        let r = &seg.repr;
        let flags = r.flags;
        let mut seq = SeqNumber(r.seq);
        let mut syn = flags.contains(TcpFlags::SYN);
        let mut payload = seg.payload;

        // A copy of the peer's SYN (our SYN-ACK or its ACK was lost, or a simultaneous open's
        // SYN-ACK): strip the SYN and judge the rest.
        let dup_syn = syn && seq == self.irs;
        if dup_syn {
            syn = false;
            seq += 1u32;
            if !flags.contains(TcpFlags::ACK) {
                if self.state == State::SynReceived {
                    self.snd_nxt = self.iss;
                    self.rtt.on_retransmit();
                    return Err(Outcome::Accepted);
                }
                self.ack_now = true;
                return Err(Outcome::Dropped(DropReason::OutOfWindow));
            }
            if self.state != State::SynReceived {
                // The peer is still in SYN-RECEIVED: our ACK was lost. ACK again.
                self.ack_now = true;
                return Err(Outcome::Dropped(DropReason::OutOfWindow));
            }
        }

        // PAWS (RFC 7323 5.3, R1-R3), before the window check.
        let ts = r.options.timestamp.filter(|_| self.ts_enabled);
        if let Some(t) = ts {
            if !flags.contains(TcpFlags::RST)
                && (t.tsval.wrapping_sub(self.ts_recent) as i32) < 0
                && now.saturating_duration_since(self.ts_recent_at) < PAWS_IDLE
            {
                let seg_len = payload.len() + usize::from(syn) + usize::from(flags.contains(TcpFlags::FIN));
                self.ack_unacceptable(now, seg_len, syn);
                return Err(Outcome::Dropped(DropReason::Paws));
            }
        }

        // First: sequence acceptability (RFC 9293 3.10.7.4 table).
        let seg_len = payload.len() + usize::from(syn) + usize::from(flags.contains(TcpFlags::FIN));
        let rcv_wnd = self.rx.window() as u32;
        let win_end = self.rcv_nxt + rcv_wnd;
        let mut acceptable = if seg_len == 0 {
            // RCV.NXT =< SEG.SEQ =< RCV.NXT+RCV.WND: the right edge included, as Linux
            // (`tcp_sequence`) and the BSDs do. A peer's pure ACK carries its SND.MAX, which is
            // the right edge when its last window's worth of data was lost; refusing that ACK
            // would leave a SYN-RECEIVED end unable to learn that its SYN-ACK arrived.
            seq >= self.rcv_nxt && seq <= win_end
        } else if rcv_wnd == 0 {
            false
        } else {
            seq.in_range(self.rcv_nxt, win_end) || (seq + (seg_len - 1)).in_range(self.rcv_nxt, win_end)
        };
        // With a zero window, a segment at RCV.NXT still carries a valid ACK, RST or window
        // (RFC 9293 "special allowance"); its text is dropped below.
        let zero_window_allowance = !acceptable && rcv_wnd == 0 && seq == self.rcv_nxt;
        if zero_window_allowance {
            acceptable = true;
            payload = &[];
        }
        // A zero-length segment at RCV.NXT - 1 is a window probe (Linux's `tcp_xmit_probe_skb`,
        // sent while our window is closed) or a keepalive. Its ACK field is as valid as any:
        // Linux's own `tcp_sequence` admits it. Dropping it unread, as the table above would,
        // left SND.UNA behind what the peer held, and the next RTO (400 ms after a backoff) resent
        // acknowledged data. It is answered with our window, at most once per
        // PROBE_ANSWER_INTERVAL: probes come an RTO (200 ms or more) apart, so each real one is
        // answered, while a peer whose SND.MAX is behind our RCV.NXT (a forged segment we took)
        // answers our ACK with a challenge ACK at RCV.NXT - 1, and answering each of those kept
        // two ends trading ACKs without end (found by the `interface_pair` fuzz target).
        if !acceptable && seg_len == 0 && seq + 1u32 == self.rcv_nxt && !flags.contains(TcpFlags::RST) {
            acceptable = true;
            let recent =
                self.last_unacceptable_ack.is_some_and(|at| now.saturating_duration_since(at) < PROBE_ANSWER_INTERVAL);
            if !recent {
                self.last_unacceptable_ack = Some(now);
                self.ack_now = true;
            }
        }
        if !acceptable {
            if !flags.contains(TcpFlags::RST) {
                self.ack_unacceptable(now, seg_len, syn);
            }
            return Err(Outcome::Dropped(DropReason::OutOfWindow));
        }

        Ok((seq, syn, payload))
    }

    /// The fifth step: the ACK field. In SYN-RECEIVED an ACK of our SYN establishes the
    /// connection (any other gets an RST); an ACK outside [SND.UNA - MAX.SND.WND, SND.MAX] gets
    /// a challenge ACK (RFC 5961 5.2); TS.Recent is updated (RFC 7323 4.3), then
    /// `process_ack`. `Err` is the outcome of a segment that goes no further.
    #[inline]
    fn receive_ack(&mut self, now: Instant, seg: &Segment<'_>, seq: SeqNumber, pure_ack: bool) -> Result<(), Outcome> {
        let r = &seg.repr;
        let flags = r.flags;
        if !flags.contains(TcpFlags::ACK) {
            return Err(Outcome::Dropped(DropReason::Unexpected));
        }
        let ack = SeqNumber(r.ack);
        if self.state == State::SynReceived {
            if ack > self.snd_una && ack <= self.snd_max {
                self.snd_wnd = u32::from(r.window) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                self.establish();
            } else {
                self.rst_pending = Some(ack);
                return Err(Outcome::Dropped(DropReason::UnacceptableAck));
            }
        }
        if ack > self.snd_max || ack < self.snd_una - self.max_snd_wnd.max(1) {
            // RFC 5961 5.2: outside [SND.UNA - MAX.SND.WND, SND.NXT] gets a challenge ACK.
            self.challenge_ack(now);
            return Err(Outcome::Dropped(DropReason::UnacceptableAck));
        }

        // RFC 7323 4.3: take TS.Recent from a segment that covers the last ACK we sent.
        if let Some(t) = r.options.timestamp.filter(|_| self.ts_enabled) {
            if seq <= self.last_ack_sent && (t.tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                self.ts_recent = t.tsval;
                self.ts_recent_at = now;
            }
        }

        let window = u32::from(r.window) << self.snd_wscale;
        self.process_ack(now, seq, ack, window, pure_ack, &r.options.sack_blocks);
        if self.state == State::Closed {
            return Err(Outcome::Accepted);
        }

        // The peer answered: zero-window probes count again from zero (a live peer may keep
        // its window closed as long as it likes, within the user timeout).
        self.persist_probes = 0;
        // Keepalive restarts with any acceptable segment.
        if self.keepalive_probes > 0 || self.timers.is_armed(Timer::Keepalive) {
            self.keepalive_probes = 0;
            if let Some(k) = self.config.keepalive {
                self.timers.set(Timer::Keepalive, now + k.idle);
            }
        }

        Ok(())
    }

    /// The seventh step: in-window text goes into the receive ring, at once or out of order,
    /// and is acknowledged at once or delayed (RFC 5681 4.2; RFC 1122 4.2.3.2). Returns whether
    /// a FIN the segment carries may be taken (not when its text was cut), or the outcome of
    /// a segment that ended the connection (data for an orphan).
    #[inline]
    fn receive_text(&mut self, now: Instant, seq: SeqNumber, payload: &[u8], fin: bool) -> Result<bool, Outcome> {
        let mut fin_seq_ok = fin;
        if !payload.is_empty() {
            // Trim what we already have.
            let dup = self.rcv_nxt.since(seq) as usize;
            let fresh = payload.get(dup..).unwrap_or(&[]);
            let offset = seq.since(self.rcv_nxt) as usize;
            if self.state.can_receive() && !fresh.is_empty() {
                if self.orphaned {
                    // RFC 1122 4.2.2.13 (as Linux): data for a closed socket is lost; say so.
                    self.abort();
                    return Err(Outcome::Accepted);
                }
                let inserted = self.rx.insert(offset, fresh);
                self.rcv_nxt += inserted.advanced as u32;
                if inserted.advanced > 0 {
                    self.events |= EV_READABLE;
                }
                let cut = offset == 0 && inserted.advanced < fresh.len();
                if offset > 0 {
                    self.stats.out_of_order_received += 1;
                }
                if inserted.out_of_order || offset > 0 || cut {
                    // RFC 5681 4.2: out-of-order data and hole fills are ACKed at once.
                    self.ack_now = true;
                    fin_seq_ok = fin_seq_ok && !cut;
                } else {
                    self.segments_since_ack = self.segments_since_ack.saturating_add(1);
                    match self.config.delayed_ack {
                        Some(delay) if self.segments_since_ack < 2 => {
                            self.timers.set_if_idle(Timer::DelayedAck, now + delay);
                        }
                        _ => self.ack_now = true,
                    }
                }
            } else if !fresh.is_empty() {
                self.ack_now = true;
            }
        }

        Ok(fin_seq_ok)
    }

    /// The eighth step: a FIN right after the text received (`seg_text_len` bytes from `seq`)
    /// moves the state on; a retransmitted one is acknowledged again.
    #[inline]
    fn receive_fin(&mut self, now: Instant, seq: SeqNumber, seg_text_len: usize, fin: bool, fin_seq_ok: bool) {
        if fin_seq_ok && seq + seg_text_len == self.rcv_nxt && !self.fin_received {
            self.rcv_nxt += 1;
            self.fin_received = true;
            self.ack_now = true;
            self.events |= EV_PEER_CLOSED;
            match self.state {
                State::SynReceived | State::Established => self.state = State::CloseWait,
                State::FinWait1 => self.state = State::Closing,
                State::FinWait2 => self.enter_time_wait(now),
                _ => {}
            }
        } else if fin && self.fin_received && seq + seg_text_len + 1u32 == self.rcv_nxt {
            // A retransmitted FIN: our ACK was lost.
            self.ack_now = true;
        }
    }

    /// RFC 9293 3.10.7.4: an unacceptable segment is answered with an ACK. The answers are
    /// rate-limited, as Linux does (`tcp_oow_rate_limited`), for zero-length segments and for
    /// segments with SYN: such a segment is usually itself an answer (an ACK, or the SYN-ACK a
    /// SYN-RECEIVED end repeats), so answering each one lets two ends whose views of the
    /// sequence space disagree, or a hostile peer, keep a loop going without end (two
    /// SYN-RECEIVED ends with crossed sequence numbers traded SYN-ACKs without pause; found by
    /// the `interface_pair` fuzz target). Data and FIN without SYN are always answered, since
    /// their sender waits for the ACK and they are not answers themselves.
    fn ack_unacceptable(&mut self, now: Instant, seg_len: usize, syn: bool) {
        if seg_len == 0 || syn {
            self.challenge_ack(now);
        } else {
            self.ack_now = true;
        }
    }

    /// RFC 5961 7: challenge ACKs (and ACKs to unacceptable zero-length segments) are
    /// rate-limited, one per `UNACCEPTABLE_ACK_INTERVAL` per connection, the budget Linux keeps
    /// in `last_oow_ack_time`. Per connection and never global: a global counter is the side
    /// channel of CVE-2016-5696 (an off-path attacker counts the challenge ACKs it provokes).
    fn challenge_ack(&mut self, now: Instant) {
        let recent =
            self.last_unacceptable_ack.is_some_and(|at| now.saturating_duration_since(at) < UNACCEPTABLE_ACK_INTERVAL);
        if recent {
            self.stats.acks_rate_limited += 1;
            return;
        }
        self.last_unacceptable_ack = Some(now);
        self.ack_now = true;
    }

    /// An ICMP fragmentation-needed message (RFC 1191) about the segment of this connection
    /// that started at `seq`, from a router whose next hop has `next_hop_mtu`. Checked as RFC
    /// 5927 4.1 and Linux (`tcp_v4_err`) do: only data in flight (SND.UNA <= seq < SND.MAX)
    /// is believed. Honoured by lowering the send MSS to fit (never raising it, never below
    /// [`MIN_PATH_MTU`]) and sending what was in flight again, from SND.UNA, in segments that
    /// fit: the router dropped them, but this is no congestion signal, so the window stays
    /// (Linux's `tcp_simple_retransmit`). A next-hop MTU below [`MIN_PATH_MTU`] (and at least
    /// the IPv4 minimum of 68) is also believed to be real: segments stay sized for the floor
    /// and go out without DF from then on, so that the narrow link's router fragments them
    /// rather than drops them (Linux locks the path MTU at `min_pmtu` and clears DF).
    pub fn on_frag_needed(&mut self, seq: SeqNumber, next_hop_mtu: u16) -> PmtuOutcome {
        if !self.state.is_synchronized() || self.state == State::TimeWait {
            return PmtuOutcome::NotInFlight;
        }
        if !(self.snd_una <= seq && seq < self.snd_max) {
            return PmtuOutcome::OutOfWindow;
        }
        if next_hop_mtu < MIN_IPV4_MTU {
            return PmtuOutcome::BadMtu;
        }
        let option_room = if self.ts_enabled { TIMESTAMP_OPTION_LEN } else { 0 };
        let mss = next_hop_mtu.max(MIN_PATH_MTU) - IPV4_TCP_HEADERS - option_room;
        let clear_df = next_hop_mtu < MIN_PATH_MTU && !self.df_cleared;
        let lower = mss < self.send_mss;
        if !lower && !clear_df {
            return PmtuOutcome::NotSmaller;
        }
        if lower {
            self.send_mss = mss;
            self.cc.set_mss(u32::from(mss));
            self.stats.pmtu_reductions += 1;
        }
        self.df_cleared |= clear_df;
        // Go back to SND.UNA; the scoreboard's blocks no longer match what will be sent.
        self.snd_nxt = self.snd_una;
        self.recovery.restart();
        self.rtt.on_retransmit();
        self.debug_check_invariants();
        if clear_df {
            PmtuOutcome::DfCleared
        } else {
            PmtuOutcome::Lowered
        }
    }
}
