//! SYN cookies at the interface (RFC 4987): the stateless SYN-ACK that answers a SYN when the
//! SYN backlog is full, and the check of a bare ACK to a listening port that may return one.
//! The cookie itself is `tcp::SynCookies`.

use core::time::Duration;

use super::{Interface, L4_OFFSET};
use crate::iface::app::RxAction;
use crate::tcp::{decode_timestamp, encode_timestamp, CookieOptions, FourTuple, Outcome, Segment, SeqNumber};
use crate::time::Instant;
use crate::wire::{EthernetAddress, TcpFlags, TcpOptions, TcpRepr, Timestamp};

/// How long after the last cookie sent an ACK that matches nothing is checked for one: as long
/// as a cookie stays valid (two 64 s periods). Outside it such an ACK gets its RST at once, as
/// in Linux (`tcp_synq_no_recent_overflow`), so stray ACKs cost no hashing and give a forger
/// nothing to aim at while no flood is on.
const COOKIE_CHECK_WINDOW: Duration = Duration::from_secs(128);

/// What became of an ACK checked for a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CookieAck {
    /// Valid: the connection exists now, ESTABLISHED, with the ACK's data taken in.
    Accepted,
    /// Valid, but the connection table is full: dropped (counted), as Linux drops it when the
    /// accept queue is full. The client's next segment brings the cookie again.
    TableFull,
    /// Not a cookie of ours: the caller answers as for any unmatched ACK (RST).
    Invalid,
}

impl Interface {
    /// Whether `flags` make a segment that may return a cookie: the handshake's last ACK,
    /// possibly with data, without SYN, RST or FIN (RFC 4987 3.6).
    #[inline]
    pub(super) fn may_return_cookie(&self, now: Instant, flags: TcpFlags) -> bool {
        flags.contains(TcpFlags::ACK)
            && !flags.intersects(TcpFlags::SYN | TcpFlags::RST | TcpFlags::FIN)
            && self.cookie_sent_at.is_some_and(|at| now.saturating_duration_since(at) < COOKIE_CHECK_WINDOW)
    }

    /// Answers `syn` (to a listening port, from `src`) in place with a SYN-ACK whose ISN is a
    /// cookie, keeping no state. With timestamps, our TSval carries window scale and
    /// SACK-permitted; without, the SYN-ACK offers neither (the ACK could not bring them back).
    pub(super) fn reply_syn_cookie(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        syn: &TcpRepr,
        tuple: FourTuple,
        src_mac: EthernetAddress,
    ) -> RxAction {
        let c = &self.config.tcp;
        let peer_mss = syn.options.mss.unwrap_or(crate::tcp::MSS_TABLE[0]);
        let iss = self.cookies.generate(now, &tuple, SeqNumber(syn.seq), peer_mss);
        let mut options = TcpOptions { mss: Some(c.mss), ..TcpOptions::default() };
        if let Some(peer_ts) = syn.options.timestamp.filter(|_| c.timestamps) {
            let carried = CookieOptions {
                window_scale: syn.options.window_scale.filter(|_| c.window_scaling),
                sack_permitted: syn.options.sack_permitted && c.sack,
            };
            options.window_scale = carried.window_scale.map(|_| c.recv_window_shift());
            options.sack_permitted = carried.sack_permitted;
            // The clock the connection will use (`Connection::timestamp_option`), so its
            // later TSvals continue from this one.
            let ts_now = self.isn.ts_offset(&tuple).wrapping_add(now.as_millis() as u32);
            options.timestamp = Some(Timestamp { tsval: encode_timestamp(ts_now, carried), tsecr: peer_ts.tsval });
        }
        let repr = TcpRepr {
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq: iss.0,
            ack: syn.seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            // RFC 7323 2.2: the window of a SYN is not scaled.
            window: c.recv_buffer_len.max(1).next_power_of_two().min(0xffff) as u16,
            options,
            ..TcpRepr::default()
        };
        if buf.len() < L4_OFFSET + repr.header_len() {
            self.counters.drop_truncated += 1;
            return RxAction::Release;
        }
        self.counters.syn_cookies_sent += 1;
        self.cookie_sent_at = Some(now);
        self.reply_tcp(buf, src_mac, tuple.remote.addr, &repr)
    }

    /// Checks an ACK that matched no connection on a listening port for a cookie; on a valid
    /// one opens the connection it stands for, straight into ESTABLISHED, and feeds it the ACK.
    pub(super) fn accept_cookie_ack(
        &mut self,
        now: Instant,
        seg: &Segment<'_>,
        tuple: FourTuple,
        src_mac: EthernetAddress,
    ) -> CookieAck {
        let r = &seg.repr;
        let client_isn = SeqNumber(r.seq) - 1u32;
        let iss = SeqNumber(r.ack) - 1u32;
        let Ok(mss) = self.cookies.check(now, &tuple, client_isn, iss) else {
            self.counters.syn_cookies_rejected += 1;
            return CookieAck::Invalid;
        };
        // An echoed TSecr of zero means no timestamps were agreed (as Linux reads it).
        let ts = r.options.timestamp.filter(|t| self.config.tcp.timestamps && t.tsecr != 0);
        let carried = match ts.map(|t| decode_timestamp(t.tsecr)) {
            None => CookieOptions::default(),
            Some(Ok(carried)) => carried,
            Some(Err(_)) => {
                self.counters.syn_cookies_rejected += 1;
                return CookieAck::Invalid;
            }
        };
        if self.table.len() >= self.config.max_connections {
            self.counters.drop_table_full += 1;
            return CookieAck::TableFull;
        }
        let Some(id) = self.table.insert(tuple) else {
            self.counters.drop_table_full += 1;
            return CookieAck::TableFull;
        };
        // The SYN the cookie stood for; TS.Recent starts from the ACK's TSval.
        let syn = Segment {
            src_addr: seg.src_addr,
            dst_addr: seg.dst_addr,
            repr: TcpRepr {
                src_port: r.src_port,
                dst_port: r.dst_port,
                seq: client_isn.0,
                flags: TcpFlags::SYN,
                window: r.window,
                options: TcpOptions {
                    mss: Some(mss),
                    window_scale: carried.window_scale,
                    sack_permitted: carried.sack_permitted,
                    timestamp: ts.map(|t| Timestamp { tsval: t.tsval, tsecr: 0 }),
                    ..TcpOptions::default()
                },
                ..TcpRepr::default()
            },
            payload: &[],
        };
        let slot = self.table.slot_mut(id.index);
        let opened = slot.conn.open_from_cookie(now, tuple.local, self.isn, &syn, iss).is_ok();
        if opened {
            // The ACK may carry the client's first data.
            self.ring_for_segment(id.index, seg.payload.len());
        }
        let slot = self.table.slot_mut(id.index);
        let outcome = if opened { slot.conn.handle_segment(now, seg) } else { Outcome::NoConnection };
        if outcome != Outcome::Accepted || !slot.conn.state().is_synchronized() {
            // The cookie was good but the ACK itself is not acceptable (e.g. PAWS): nothing
            // is kept, and the ACK is answered as an unmatched one.
            if let Outcome::Dropped(reason) = outcome {
                self.counters.tcp_drop(reason);
            }
            self.table.remove(id.index, &tuple);
            self.counters.syn_cookies_rejected += 1;
            return CookieAck::Invalid;
        }
        slot.remote_mac = Some(src_mac);
        self.counters.rx_segments += 1;
        self.counters.syn_cookies_accepted += 1;
        self.mark_dirty(id.index);
        CookieAck::Accepted
    }
}

#[cfg(test)]
impl Interface {
    /// The connection behind a handle, for tests that look at what was negotiated.
    pub(crate) fn connection(&self, id: crate::iface::ConnId) -> Option<&crate::tcp::Connection> {
        self.table.get(id).map(|slot| &slot.conn)
    }
}
