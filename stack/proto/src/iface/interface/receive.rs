//! Receive and demultiplex: a frame is checked layer by layer (Ethernet, ARP, IPv4, ICMP,
//! TCP) and a segment goes to its connection, a TIME_WAIT record, a listener, or gets an RST.

use std::net::Ipv4Addr;

use super::syn_cookies::CookieAck;
use super::{Interface, ARP_FRAME_LEN, ETH_LEN, L4_OFFSET};
use crate::iface::app::{ConnId, RxAction};
use crate::iface::config::{AddressMode, TableFullPolicy};
use crate::iface::ring_pool::Ring;
use crate::iface::table::SlotState;
use crate::tcp::{reset_for_unmatched, Endpoint, FourTuple, Outcome, PmtuOutcome, Segment, SeqNumber, TimeWaitAction};
use crate::time::Instant;
use crate::wire::icmpv4::dst_unreachable;
use crate::wire::{
    checksum, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, Icmpv4Packet, Icmpv4Repr,
    Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr, WireError,
};

impl Interface {
    /// Takes in one received frame: `buf` is the whole frame buffer, of which the first `len`
    /// bytes were received. Stateless answers are written over it in place
    /// ([`RxAction::Transmit`]); everything else waits for the next [`Interface::poll`].
    /// Every frame is counted, and none can make this panic.
    pub fn receive(&mut self, now: Instant, buf: &mut [u8], len: usize) -> RxAction {
        #[cfg(debug_assertions)]
        let before = self.debug_frame_count();
        self.now = now;
        // Matched by reference: moving the parsed segment out is a copy of ~150 bytes.
        let rx = self.classify(now, buf, len);
        let action = match &rx {
            Rx::Done(action) => *action,
            Rx::Tcp(meta) => {
                let found = self.table.find(&meta.tuple);
                self.on_segment(now, buf, meta, found)
            }
        };
        #[cfg(debug_assertions)]
        self.debug_check_frames_counted(before, 1);
        action
    }

    /// The first step of `receive`: checks the frame, handles everything but a TCP segment,
    /// and parses a segment for the lookup. Inlined with `on_ipv4` and `parse_tcp`, so that
    /// the parsed segment is built where it is used rather than copied out through returns
    /// (a copy per level cost about 80 instructions per frame).
    #[inline(always)]
    pub(super) fn classify(&mut self, _now: Instant, buf: &mut [u8], len: usize) -> Rx {
        self.counters.rx_frames += 1;
        let len = len.min(buf.len());
        let (src_mac, ethertype, to_broadcast) = {
            let frame = match EthernetFrame::new_checked(&buf[..len]) {
                Ok(frame) => frame,
                Err(e) => return Rx::Done(self.wire_drop(e)),
            };
            let dst = frame.dst_addr();
            if dst != self.config.mac && !dst.is_broadcast() {
                self.counters.drop_not_ours += 1;
                return Rx::Done(RxAction::Release);
            }
            // IEEE 802: a group address is never a source. Answering one (an RST or SYN-ACK
            // in place, or a connection's frames) would flood the segment.
            if frame.src_addr().is_multicast() {
                self.counters.drop_multicast_src += 1;
                return Rx::Done(RxAction::Release);
            }
            (frame.src_addr(), frame.ethertype(), dst.is_broadcast())
        };
        match ethertype {
            // What we take over IPv4 (TCP, ICMP echo) is unicast only, as in Linux
            // (`tcp_v4_rcv` discards a frame not of PACKET_HOST): an answer to a frame
            // sent to every station would let one frame reach every synack on the segment.
            EtherType::IPV4 if to_broadcast => {
                self.counters.drop_not_unicast += 1;
                Rx::Done(RxAction::Release)
            }
            EtherType::IPV4 => self.on_ipv4(buf, len, src_mac),
            EtherType::ARP => Rx::Done(self.on_arp(buf, len)),
            _ => {
                self.counters.drop_unsupported += 1;
                Rx::Done(RxAction::Release)
            }
        }
    }

    fn wire_drop(&mut self, error: WireError) -> RxAction {
        self.counters.wire_error(error);
        RxAction::Release
    }

    fn on_arp(&mut self, buf: &mut [u8], len: usize) -> RxAction {
        let arp = match ArpPacket::new_checked(&buf[ETH_LEN..len]).and_then(|p| ArpRepr::parse(&p)) {
            Ok(arp) => arp,
            Err(e) => return self.wire_drop(e),
        };
        let (sender, sender_mac) = (arp.source_protocol_addr, arp.source_hardware_addr);
        if arp.target_protocol_addr != self.config.addr {
            // Not aimed at us: learning from it (RFC 826's refresh, gratuitous ARP) would let
            // any station claim any address.
            self.counters.drop_not_ours += 1;
            return RxAction::Release;
        }
        self.counters.rx_arp += 1;
        // Learned: the reply to a request of ours, or a request for our address from a
        // neighbour we already know (its MAC may have changed). An unsolicited reply, or a
        // request from a stranger, creates nothing: a passive connection takes its peer's MAC
        // from the SYN, so nothing needs it.
        let learn = match arp.operation {
            ArpOperation::Reply => self.neighbors.is_pending(sender),
            ArpOperation::Request => self.neighbors.knows(sender),
        };
        if learn && self.config.is_on_link(sender) {
            self.learn_neighbor(sender, sender_mac);
        } else {
            self.counters.arp_not_learned += 1;
        }
        if arp.operation != ArpOperation::Request || self.config.address_mode != AddressMode::Dedicated {
            // With a shared address the kernel answers (it sees the same request).
            return RxAction::Release;
        }
        if buf.len() < ARP_FRAME_LEN {
            self.counters.drop_truncated += 1;
            return RxAction::Release;
        }
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.config.addr,
            target_hardware_addr: sender_mac,
            target_protocol_addr: sender,
        };
        self.write_arp(buf, sender_mac, &reply);
        self.counters.arp_replies += 1;
        RxAction::Transmit(ARP_FRAME_LEN)
    }

    #[inline(always)]
    fn on_ipv4(&mut self, buf: &mut [u8], len: usize, src_mac: EthernetAddress) -> Rx {
        let (ip, ip_header_len) = {
            let packet = match Ipv4Packet::new_checked(&buf[ETH_LEN..len]) {
                Ok(p) => p,
                Err(e) => return Rx::Done(self.wire_drop(e)),
            };
            // The IPv4 header checksum is always verified: no veth or NIC leaves it partial.
            match Ipv4Repr::parse(&packet, crate::wire::ChecksumMode::Verify) {
                Ok(ip) => (ip, packet.header_len()),
                Err(e) => return Rx::Done(self.wire_drop(e)),
            }
        };
        if ip.dst_addr != self.config.addr {
            self.counters.drop_not_ours += 1;
            return Rx::Done(RxAction::Release);
        }
        let start = ETH_LEN + ip_header_len;
        let end = start + ip.payload_len;
        match ip.protocol {
            crate::wire::ip_protocol::TCP => self.parse_tcp(buf, start, end, &ip, src_mac),
            crate::wire::ip_protocol::ICMP => Rx::Done(self.on_icmp(buf, start, end, &ip, src_mac)),
            _ => {
                self.counters.drop_unsupported += 1;
                Rx::Done(RxAction::Release)
            }
        }
    }

    fn on_icmp(
        &mut self,
        buf: &mut [u8],
        start: usize,
        end: usize,
        ip: &Ipv4Repr,
        src_mac: EthernetAddress,
    ) -> RxAction {
        let parsed = Icmpv4Packet::new_checked(&buf[start..end])
            .and_then(|p| Icmpv4Repr::parse(&p, crate::wire::ChecksumMode::Verify));
        match parsed {
            Ok(Icmpv4Repr::EchoRequest { .. }) if self.config.icmp_echo => {}
            Ok(Icmpv4Repr::DstUnreachable { code: dst_unreachable::FRAG_NEEDED, next_hop_mtu, data }) => {
                self.on_frag_needed(next_hop_mtu, data);
                return RxAction::Release;
            }
            Ok(_) => {
                self.counters.drop_unsupported += 1;
                return RxAction::Release;
            }
            Err(e) => return self.wire_drop(e),
        }
        // Echo reply in place (RFC 792): swap the addresses, type 8 -> 0, and mend the ICMP
        // checksum incrementally (RFC 1624); the echoed data stays where it is.
        let old_checksum = u16::from_be_bytes([buf[start + 2], buf[start + 3]]);
        let old_word = u16::from_be_bytes([buf[start], buf[start + 1]]);
        buf[start] = 0;
        let new_word = u16::from_be_bytes([buf[start], buf[start + 1]]);
        let c = checksum::update(old_checksum, old_word, new_word);
        buf[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
        self.write_l2_l3(buf, src_mac, ip.src_addr, crate::wire::ip_protocol::ICMP, end - start);
        // A header with options was replaced by a 20-byte one: move the message up to it.
        if start != L4_OFFSET {
            buf.copy_within(start..end, L4_OFFSET);
        }
        self.counters.icmp_echo_replies += 1;
        RxAction::Transmit(L4_OFFSET + (end - start))
    }

    /// ICMP fragmentation-needed quoting `quoted` (the IPv4 header and eight bytes of TCP
    /// that the parser checked are there): handed to the connection that sent the segment,
    /// which checks the quoted sequence number (RFC 5927) before lowering its MSS (RFC 1191).
    fn on_frag_needed(&mut self, next_hop_mtu: u16, quoted: &[u8]) {
        let ihl = usize::from(quoted.first().map_or(0, |b| b & 0x0f)) * 4;
        let field = |at: usize, len: usize| quoted.get(at..at + len);
        let tuple_and_seq = (|| {
            let protocol = *quoted.get(9)?;
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(field(12, 4)?).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(field(16, 4)?).ok()?);
            let tcp = field(ihl, 8)?;
            if protocol != crate::wire::ip_protocol::TCP || src != self.config.addr {
                return None;
            }
            let local = Endpoint { addr: src, port: u16::from_be_bytes([tcp[0], tcp[1]]) };
            let remote = Endpoint { addr: dst, port: u16::from_be_bytes([tcp[2], tcp[3]]) };
            let seq = SeqNumber(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]));
            Some((FourTuple { local, remote }, seq))
        })();
        let found = tuple_and_seq.and_then(|(tuple, seq)| Some((self.table.find(&tuple)?, seq)));
        let Some((index, seq)) = found else {
            self.counters.drop_icmp_frag_needed += 1;
            return;
        };
        match self.table.slot_mut(index).conn.on_frag_needed(seq, next_hop_mtu) {
            PmtuOutcome::Lowered => {
                self.counters.icmp_frag_needed += 1;
                self.mark_dirty(index);
            }
            PmtuOutcome::DfCleared => {
                self.counters.icmp_frag_needed += 1;
                self.counters.pmtu_df_cleared += 1;
                self.mark_dirty(index);
            }
            _ => self.counters.drop_icmp_frag_needed += 1,
        }
    }

    /// Parses a TCP segment (checksum included) for `on_segment`.
    #[inline(always)]
    fn parse_tcp(&mut self, buf: &[u8], start: usize, end: usize, ip: &Ipv4Repr, src_mac: EthernetAddress) -> Rx {
        let (repr, header_len) = {
            let packet = match TcpPacket::new_checked(&buf[start..end]) {
                Ok(p) => p,
                Err(e) => return Rx::Done(self.wire_drop(e)),
            };
            match TcpRepr::parse(&packet, ip.src_addr, ip.dst_addr, self.config.checksum) {
                Ok(repr) => (repr, packet.header_len()),
                Err(e) => return Rx::Done(self.wire_drop(e)),
            }
        };
        if repr.flags.contains(TcpFlags::SYN | TcpFlags::FIN) {
            // No valid segment has both; Linux discards them (`tcp_rcv_state_process`), and
            // answering lets a scanner probe through filters that look for a bare SYN.
            self.counters.drop_syn_fin += 1;
            return Rx::Done(RxAction::Release);
        }
        let tuple = FourTuple {
            local: Endpoint::new(ip.dst_addr, repr.dst_port),
            remote: Endpoint::new(ip.src_addr, repr.src_port),
        };
        Rx::Tcp(TcpMeta { payload_start: start + header_len, end, src_mac, repr, tuple })
    }

    /// Processes a parsed segment; `found` is its connection's slot, looked up by the caller
    /// (`receive` one frame at a time, `receive_batch` for a whole batch).
    #[inline]
    pub(super) fn on_segment(&mut self, now: Instant, buf: &mut [u8], meta: &TcpMeta, found: Option<u32>) -> RxAction {
        let (tuple, src_mac) = (meta.tuple, meta.src_mac);
        let peer = tuple.remote.addr;
        let seg = Segment {
            src_addr: peer,
            dst_addr: tuple.local.addr,
            repr: meta.repr,
            payload: &buf[meta.payload_start..meta.end],
        };
        let repr = &seg.repr;

        if let Some(index) = found {
            self.ring_for_segment(index, seg.payload.len());
            let slot = self.table.slot_mut(index);
            // The return MAC stays what the handshake (or the neighbour table) gave: a later
            // frame, checked or not, never moves it, or one spoofed frame from the segment
            // (even an out-of-window RST) would redirect the connection's traffic.
            let outcome = slot.conn.handle_segment(now, &seg);
            self.counters.rx_segments += 1;
            self.mark_dirty(index);
            return match outcome {
                Outcome::Accepted => RxAction::Release,
                Outcome::Dropped(reason) => {
                    self.counters.tcp_drop(reason);
                    RxAction::Release
                }
                // The connection ended in this batch and leaves the table at the next poll. A
                // new SYN for its 4-tuple is dropped, not refused: the listener (or a reused
                // client port's owner) will meet its retransmission.
                Outcome::NoConnection
                    if repr.flags & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) == TcpFlags::SYN =>
                {
                    self.counters.drop_unexpected += 1;
                    RxAction::Release
                }
                Outcome::NoConnection => {
                    let rst = reset_for_unmatched(&seg);
                    self.reply_reset(buf, src_mac, peer, rst)
                }
                // A full connection still in TIME_WAIT (it becomes a record at the end of this
                // poll): the client's SYN retransmission will meet the record.
                Outcome::Reopen { .. } => {
                    self.counters.drop_unexpected += 1;
                    RxAction::Release
                }
            };
        }

        let mut forced_iss = None;
        if let Some(i) = self.time_wait.find(&tuple) {
            self.counters.rx_segments += 1;
            let mut record = self.time_wait.get(i, &self.timers);
            match record.on_segment(now, repr, seg.payload.len(), self.config.tcp.time_wait) {
                TimeWaitAction::Drop => {
                    // The record noted the segment (port reuse waits for a quiet 4-tuple).
                    self.time_wait.update(i, &record, &mut self.timers);
                    if repr.flags.contains(TcpFlags::RST) {
                        self.counters.drop_rst_ignored += 1;
                    } else {
                        self.counters.drop_time_wait += 1;
                    }
                    return RxAction::Release;
                }
                TimeWaitAction::Ack | TimeWaitAction::AckAndRestart => {
                    let ack = record.ack_repr(now);
                    // RFC 9293 3.10.7.4: a restarted 2MSL (and TS.Recent) go back, and the
                    // time of this segment, which port reuse waits out.
                    self.time_wait.update(i, &record, &mut self.timers);
                    self.counters.time_wait_acks += 1;
                    return self.reply_tcp(buf, src_mac, peer, &ack);
                }
                TimeWaitAction::RateLimited => {
                    // The flag the limit keeps goes back with the record.
                    self.time_wait.update(i, &record, &mut self.timers);
                    self.counters.time_wait_acks_limited += 1;
                    return RxAction::Release;
                }
                TimeWaitAction::Reopen { iss } => {
                    self.time_wait.remove(i, &mut self.timers);
                    self.counters.time_wait_reopened += 1;
                    forced_iss = Some(iss);
                }
            }
        }

        let is_syn = repr.flags.contains(TcpFlags::SYN) && !repr.flags.intersects(TcpFlags::ACK | TcpFlags::RST);
        if is_syn && self.is_listening(repr.dst_port) {
            if self.half_open >= self.config.syn_backlog && self.config.syn_cookies {
                // RFC 4987: the backlog is full, so a cookie stands in for the SYN's state. A
                // SYN that reopened a TIME_WAIT record gets one too: the record is gone, and a
                // drop would only send the client's retry into the same cookie a second later
                // (Linux, for its part, queues such a SYN past the limit).
                self.counters.rx_segments += 1;
                return self.reply_syn_cookie(now, buf, repr, tuple, src_mac);
            }
            if self.accept_syn(now, &seg, tuple, src_mac, forced_iss) {
                let rst = reset_for_unmatched(&seg);
                return self.reply_reset(buf, src_mac, peer, rst);
            }
            return RxAction::Release;
        }
        if self.may_return_cookie(now, repr.flags) && self.is_listening(repr.dst_port) {
            match self.accept_cookie_ack(now, &seg, tuple, src_mac) {
                CookieAck::Accepted | CookieAck::TableFull => return RxAction::Release,
                CookieAck::Invalid => {}
            }
        }
        // RFC 9293 3.10.7.1: a segment for no connection gets an RST (none for an RST).
        self.counters.rx_segments += 1;
        let rst = reset_for_unmatched(&seg);
        self.reply_reset(buf, src_mac, peer, rst)
    }

    /// Before a segment reaches the connection of slot `index`: data needs a receive ring,
    /// lent now if the connection has none; and one that advertised a zero window for want of
    /// a ring tries again on any segment, so that the peer's window probe (Linux's carries no
    /// data) finds the ring and is answered with the open window. Data that finds no ring is
    /// refused: dropped, counted, answered with the closed window; the connection waits for
    /// a ring, and `poll` announces its window open again when one frees.
    #[inline]
    pub(super) fn ring_for_segment(&mut self, index: u32, payload_len: usize) {
        let slot = self.table.slot_mut(index);
        if !slot.conn.needs_recv_ring() || (payload_len == 0 && !slot.conn.recv_starved()) {
            return;
        }
        let id = ConnId { index, generation: slot.generation };
        if !self.table.lend_ring(index, Ring::Recv) && payload_len > 0 {
            self.counters.rx_no_ring += 1;
            self.table.slot_mut(index).conn.refuse_data_for_want_of_ring();
            self.wait_for_ring(id, Ring::Recv);
        }
    }

    /// Opens a passive connection for a SYN on a listening port; true when the SYN is refused
    /// and the policy says to answer with an RST.
    fn accept_syn(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        tuple: FourTuple,
        src_mac: EthernetAddress,
        forced_iss: Option<crate::tcp::SeqNumber>,
    ) -> bool {
        self.counters.rx_segments += 1;
        let refused = if self.half_open >= self.config.syn_backlog {
            self.counters.drop_backlog_full += 1;
            true
        } else if self.table.len() >= self.config.max_connections {
            self.counters.drop_table_full += 1;
            true
        } else {
            false
        };
        let inserted = if refused { None } else { self.table.insert(tuple) };
        let Some(id) = inserted else {
            if !refused {
                self.counters.drop_table_full += 1;
            }
            return self.config.table_full == TableFullPolicy::Reset;
        };
        let slot = self.table.slot_mut(id.index);
        let _ = slot.conn.listen(tuple.local, self.isn);
        if let Some(iss) = forced_iss {
            slot.conn.force_iss(iss);
        }
        match slot.conn.handle_segment(now, seg) {
            Outcome::Accepted => {
                slot.remote_mac = Some(src_mac);
                slot.state = SlotState::HalfOpen;
                self.half_open += 1;
                self.mark_dirty(id.index);
            }
            other => {
                if let Outcome::Dropped(reason) = other {
                    self.counters.tcp_drop(reason);
                }
                self.free_slot(id.index, &tuple);
            }
        }
        false
    }
}

/// What the first step of receiving made of a frame.
pub(super) enum Rx {
    /// Handled (or dropped) already.
    Done(RxAction),
    /// A TCP segment, parsed, to look up and process.
    Tcp(TcpMeta),
}

/// A parsed TCP segment within its frame: what `on_segment` needs besides the frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct TcpMeta {
    /// Where the segment's payload starts and ends in the frame.
    pub(super) payload_start: usize,
    pub(super) end: usize,
    pub(super) src_mac: EthernetAddress,
    pub(super) repr: TcpRepr,
    pub(super) tuple: FourTuple,
}
