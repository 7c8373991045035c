//! Segment output: SYN and SYN-ACK, pure ACKs, data and FIN, with their options, and what
//! sending changes (SND.NXT, SND.MAX, the advertised window).

use super::{Connection, TIMESTAMP_OPTION_LEN};
use crate::tcp::{SeqNumber, State, Timer};
use crate::time::Instant;
use crate::wire::{emit_header, TcpFlags, TcpRepr, Timestamp, MAX_HEADER_LEN};

impl Connection {
    pub(super) fn advertised_window_raw(&self) -> u16 {
        let max = 0xffffusize << self.rcv_wscale;
        (self.rx.window().min(max) >> self.rcv_wscale) as u16
    }

    fn timestamp_option(&self, now: Instant) -> Option<Timestamp> {
        self.ts_enabled
            .then(|| Timestamp { tsval: self.ts_offset.wrapping_add(now.as_millis() as u32), tsecr: self.ts_recent })
    }

    /// A segment header with our ports and the given flags and sequence number; ACK fields
    /// are filled when ACK is set.
    pub(super) fn control_repr(&self, flags: TcpFlags, seq: SeqNumber) -> TcpRepr {
        TcpRepr {
            src_port: self.tuple.local.port,
            dst_port: self.tuple.remote.port,
            seq: seq.0,
            ack: if flags.contains(TcpFlags::ACK) { self.rcv_nxt.0 } else { 0 },
            flags,
            window: if flags.contains(TcpFlags::RST) { 0 } else { self.advertised_window_raw() },
            ..TcpRepr::default()
        }
    }

    /// Writes the next segment to send into `buf` (TCP header, options and payload, with a
    /// complete checksum) and returns its length, or `None` if nothing is due. `buf` should
    /// hold at least 60 bytes plus the MSS. Call until it returns `None`.
    #[must_use]
    #[inline]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.rst_pending.is_none() && self.nothing_to_send() {
            // The common answer, as a caller drains until `None`: no segment and no timer to
            // revise. Everything `update_timers` looks at (the state, SND.UNA and SND.MAX, the
            // window, the ring) changes only in `handle_segment`, `handle_timeout`, a
            // transmission, or `send` (which leaves unsent data, so this path is not taken),
            // and each of those brings the timers up to date. This test is inlined into the
            // caller's drain loop; the rest is not.
            return None;
        }
        let sent = self.transmit(now, buf);
        self.debug_check_invariants();
        sent
    }

    /// `poll_transmit` once something may be due.
    pub(super) fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < MAX_HEADER_LEN {
            return None;
        }
        if let Some(seq) = self.rst_pending.take() {
            let rst = self.control_repr(TcpFlags::RST, seq);
            return Some(emit_header(buf, &rst, self.tuple.local.addr, self.tuple.remote.addr, 0));
        }
        let len = match self.state {
            State::Closed | State::Listen => None,
            State::SynSent => self.transmit_syn(now, buf, false),
            State::SynReceived => self.transmit_syn(now, buf, true),
            State::TimeWait => self.ack_now.then(|| self.transmit_ack(now, buf, self.snd_nxt)),
            _ => self.transmit_data(now, buf).or_else(|| {
                if self.keepalive_probe {
                    self.keepalive_probe = false;
                    // RFC 1122 4.2.3.6: a probe carries SEG.SEQ = SND.NXT - 1 and no data.
                    return Some(self.transmit_ack(now, buf, self.snd_una - 1u32));
                }
                // A pure ACK carries SND.MAX, not SND.NXT, as BSD's tcp_output does: after a
                // retransmission timeout or a persist probe SND.NXT has gone back to SND.UNA,
                // below what the peer may already hold. RFC 9293 3.10.7.4 makes the peer drop
                // a zero-length segment left of RCV.NXT unprocessed (its ACK field unread) and
                // answer it with an ACK; two ends that both rewound then drop each other's ACKs
                // for ever, each ACK provoking the next.
                self.ack_now.then(|| self.transmit_ack(now, buf, self.snd_max))
            }),
        };
        self.update_timers(now);
        len
    }

    /// Whether our FIN was sent and acknowledged.
    #[inline]
    pub(super) fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|f| self.snd_una > f)
    }

    /// Whether `poll_transmit` would certainly find nothing to send: a cheap test of the
    /// obligations that make a segment, before the full computation of `transmit_data`.
    #[inline]
    fn nothing_to_send(&self) -> bool {
        if self.ack_now
            || self.recovery.is_owed()
            || self.persist_probe
            || self.keepalive_probe
            || self.orphan_timer_due
        {
            return false;
        }
        match self.state {
            State::Closed | State::Listen | State::TimeWait => true,
            State::SynSent | State::SynReceived => self.snd_nxt != self.iss,
            _ => {
                let offset = self.snd_nxt.since(self.snd_una) as usize;
                let fin_unsent = self.fin_queued && offset <= self.tx.len() && !self.fin_acked();
                offset >= self.tx.len() && !fin_unsent
            }
        }
    }

    fn transmit_syn(&mut self, now: Instant, buf: &mut [u8], syn_ack: bool) -> Option<usize> {
        if self.snd_nxt != self.iss && !(syn_ack && self.ack_now) {
            return None;
        }
        let flags = if syn_ack { TcpFlags::SYN | TcpFlags::ACK } else { TcpFlags::SYN };
        let mut repr = self.control_repr(flags, self.iss);
        // RFC 7323 2.2: the window of a SYN is not scaled.
        repr.window = self.rx.window().min(0xffff) as u16;
        let c = &self.config;
        repr.options.mss = Some(c.mss);
        if syn_ack {
            repr.options.window_scale = (self.snd_wscale > 0 || self.rcv_wscale > 0).then_some(self.rcv_wscale);
            repr.options.sack_permitted = self.sack_enabled;
            repr.options.timestamp = self.timestamp_option(now);
        } else {
            repr.options.window_scale = c.window_scaling.then(|| c.recv_window_shift());
            repr.options.sack_permitted = c.sack;
            repr.options.timestamp = c
                .timestamps
                .then(|| Timestamp { tsval: self.ts_offset.wrapping_add(now.as_millis() as u32), tsecr: 0 });
        }
        let len = emit_header(buf, &repr, self.tuple.local.addr, self.tuple.remote.addr, 0);
        if self.snd_nxt == self.iss {
            self.snd_nxt = self.iss + 1u32;
            if self.snd_max < self.snd_nxt {
                self.snd_max = self.snd_nxt;
                self.rtt.on_send(now, self.snd_nxt);
            }
        }
        self.after_ack_sent(repr.window);
        Some(len)
    }

    fn transmit_ack(&mut self, now: Instant, buf: &mut [u8], seq: SeqNumber) -> usize {
        let mut repr = self.control_repr(TcpFlags::ACK, seq);
        self.add_data_options(now, &mut repr);
        let len = emit_header(buf, &repr, self.tuple.local.addr, self.tuple.remote.addr, 0);
        self.after_ack_sent(repr.window);
        len
    }

    fn add_data_options(&self, now: Instant, repr: &mut TcpRepr) {
        repr.options.timestamp = self.timestamp_option(now);
        if self.sack_enabled && self.rx.has_out_of_order() {
            let max = if self.ts_enabled { 3 } else { 4 };
            repr.options.sack_blocks = self.rx.sack_blocks(self.rcv_nxt, max);
        }
    }

    pub(super) fn after_ack_sent(&mut self, window_raw: u16) {
        self.ack_now = false;
        self.segments_since_ack = 0;
        self.timers.clear(Timer::DelayedAck);
        self.last_ack_sent = self.rcv_nxt;
        let shift = if self.state == State::SynSent || self.state == State::SynReceived { 0 } else { self.rcv_wscale };
        let edge = self.rcv_nxt + (u32::from(window_raw) << shift);
        if edge > self.rcv_adv || self.rcv_adv.since(self.rcv_nxt) > self.rx.window() as u32 {
            self.rcv_adv = edge;
        }
    }

    /// Payload bytes that fit in the next segment. SACK blocks take room from the MSS as the
    /// timestamp option does (RFC 9293 3.7.1: the MSS excludes TCP options; Linux's
    /// `tcp_current_mss`): a full-sized segment with SACK blocks would exceed the path MTU.
    fn current_mss(&self) -> usize {
        let mss = usize::from(self.send_mss);
        if !(self.sack_enabled && self.rx.has_out_of_order()) {
            return mss;
        }
        let blocks = self.rx.out_of_order_ranges().min(if self.ts_enabled { 3 } else { 4 });
        // Two NOPs, kind, length and 8 bytes per block, padded to 4 bytes.
        mss.saturating_sub((2 + 8 * blocks + 3) & !3).max(1)
    }

    /// Sends data and/or FIN if the windows, Nagle and the state allow.
    fn transmit_data(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let mss = self.current_mss();
        let probe = if self.recovery.take_probe() { self.probe_target(mss) } else { None };
        let target = if probe.is_some() {
            probe
        } else if self.recovery.take_retransmit() {
            self.retransmit_target(mss)
        } else {
            None
        };
        let (seq, len, fin) = if let Some((seq, len)) = target {
            // Fast retransmit, a NewReno partial ACK, a SACK hole or a tail loss probe: one
            // segment, outside cwnd.
            let offset = seq.since(self.snd_una) as usize;
            let len = self.tx.len().saturating_sub(offset).min(len);
            let fin = self.fin_queued && offset + len == self.tx.len();
            (seq, len, fin)
        } else {
            self.recovery.forget_retransmits();
            let offset = self.snd_nxt.since(self.snd_una) as usize;
            // Once acknowledged the FIN is out of the ring's reckoning (SND.UNA is past it and
            // the ring empty), so the offset alone would call it unsent.
            let fin_sent = offset > self.tx.len() || self.fin_acked();
            let unsent = self.tx.len().saturating_sub(offset);
            let in_flight = self.snd_nxt.since(self.snd_una);
            let usable = self.snd_wnd.saturating_sub(in_flight).min(self.congestion_room(in_flight)) as usize;
            let mut len = unsent.min(usable).min(mss);
            if self.persist_probe && unsent > 0 && len == 0 {
                len = 1;
            }
            let fin = self.fin_queued && !fin_sent && len == unsent;
            if len < mss && len < unsent && in_flight > 0 && !self.persist_probe {
                // Sender-side silly window avoidance: wait for a fuller window.
                if len == 0 || (len as u32) < self.max_snd_wnd / 2 {
                    return None;
                }
            }
            let new_data = self.snd_nxt >= self.snd_max;
            if self.nagle
                && new_data
                && len < mss
                && len > 0
                && self.snd_sml > self.snd_una
                && !fin
                && !self.persist_probe
            {
                // Nagle (RFC 896) in Minshall's variant, as Linux: hold a small segment of new
                // data only while an earlier small one is unacknowledged. FIN flushes; data
                // sent again (after an RTO or a smaller path MTU) is never held.
                return None;
            }
            if len == 0 && !fin {
                return None;
            }
            (self.snd_nxt, len, fin)
        };
        self.persist_probe = false;

        let mut repr = self.control_repr(TcpFlags::ACK, seq);
        self.add_data_options(now, &mut repr);
        let header_len = repr.header_len();
        // Never exceed the peer's MSS plus the options it was reduced by (timestamps).
        let base_len = 20 + if self.ts_enabled { usize::from(TIMESTAMP_OPTION_LEN) } else { 0 };
        let room = (usize::from(self.send_mss) + base_len).saturating_sub(header_len).max(1);
        let len = len.min(room).min(buf.len() - header_len);
        let offset = seq.since(self.snd_una) as usize;
        let copied = self.tx.read_at(offset, &mut buf[header_len..header_len + len]);
        let fin = fin && offset + copied == self.tx.len();
        if copied > 0 && offset + copied == self.tx.len() {
            repr.flags |= TcpFlags::PSH;
        }
        if fin {
            repr.flags |= TcpFlags::FIN;
        }
        let total = emit_header(buf, &repr, self.tuple.local.addr, self.tuple.remote.addr, copied);

        let end = seq + copied + usize::from(fin);
        let is_retransmission = seq < self.snd_max;
        if probe.is_some() {
            self.recovery.loss_probe.sent(self.snd_max, self.cc.in_recovery());
            self.stats.loss_probes += 1;
        } else if target.is_some() && self.sack_enabled {
            self.recovery.sack.mark_retransmitted(end, self.snd_max.max(end));
        }
        if is_retransmission {
            self.stats.retransmitted_segments += 1;
            self.rtt.on_retransmit();
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
            if !is_retransmission {
                self.rtt.on_send(now, end);
            }
            // RFC 8985 7.2: the probe timeout restarts when new data goes out.
            self.timers.clear(Timer::LossProbe);
            self.recovery.loss_probe.on_progress();
        }
        if fin {
            self.fin_seq = Some(end - 1u32);
        }
        if copied < mss {
            self.snd_sml = self.snd_sml.max(end);
        }
        self.after_ack_sent(repr.window);
        Some(total)
    }
}
