//! The application's side of a connection: sending, receiving, shutting down, closing,
//! aborting, and the events it is told of.

use super::{Connection, EV_CONNECTED, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE};
use crate::tcp::{CloseReason, Event, RecvError, SendError, State};

impl Connection {
    /// Queues data to send; returns how much was taken. Partial writes happen when the
    /// ring fills; `BufferFull` when nothing fit.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if !self.accepts_data() {
            return Err(SendError::InvalidState);
        }
        let n = self.tx.write(data);
        if n < data.len() {
            self.send_blocked = true;
            if n == 0 {
                return Err(SendError::BufferFull);
            }
        }
        Ok(n)
    }

    /// Whether `send` may queue data: the write side is open.
    pub(crate) fn accepts_data(&self) -> bool {
        self.state.can_send() && !self.fin_queued
    }

    /// Asks for [`Event::Writable`] when acknowledged data frees send-buffer space, as a
    /// refused `send` does: for a caller that sized its write to the free space (a splice)
    /// and still has more to write.
    pub fn notify_when_writable(&mut self) {
        self.send_blocked = true;
    }

    /// Reads in-order data into `buf`.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if !self.rx.is_empty() {
            let n = self.rx.read(buf);
            self.after_read();
            return Ok(n);
        }
        self.recv_empty_error()
    }

    /// The readable bytes as up to two slices, without consuming them (zero-copy reading;
    /// follow with [`Connection::recv_consume`]).
    pub fn recv_slices(&self) -> (&[u8], &[u8]) {
        self.rx.slices()
    }

    /// Consumes `n` bytes after [`Connection::recv_slices`].
    pub fn recv_consume(&mut self, n: usize) {
        self.rx.consume(n);
        self.after_read();
    }

    fn recv_empty_error(&self) -> Result<usize, RecvError> {
        if self.fin_received {
            Err(RecvError::Finished)
        } else if matches!(self.state, State::Closed | State::Listen) {
            Err(RecvError::InvalidState)
        } else {
            Err(RecvError::WouldBlock)
        }
    }

    /// After the application read: announce a window that grew enough (RFC 1122 4.2.3.3,
    /// receiver-side silly window avoidance).
    fn after_read(&mut self) {
        let advertised = self.rcv_adv.since(self.rcv_nxt) as usize;
        let threshold = (self.rx.capacity() / 2).min(usize::from(self.config.mss));
        if self.state.can_receive() && self.rx.window() >= advertised + threshold {
            self.ack_now = true;
        }
    }

    /// Shuts down the write side: FIN follows the queued data. Reading goes on.
    pub fn shutdown(&mut self) {
        match self.state {
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            // RFC 9293 3.10.4 ("queue for processing after entering ESTABLISHED"): the FIN
            // goes out behind the data queued so far once the handshake completes.
            State::SynReceived | State::SynSent => self.fin_queued = true,
            State::Listen => self.finish(CloseReason::Normal),
            _ => {}
        }
    }

    /// Closes: shuts down the write side and gives up reading. Unread data makes this an abort
    /// (RFC 1122 4.2.2.13), so the peer learns that data was lost.
    pub fn close(&mut self) {
        if !self.rx.is_empty() {
            self.abort();
            return;
        }
        if self.state == State::SynSent {
            // RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB (unlike a shutdown, which
            // queues its FIN behind the data).
            self.finish(CloseReason::Normal);
            return;
        }
        self.orphaned = true;
        self.shutdown();
        // Half-closed earlier and our FIN acknowledged: nothing of ours is in flight to time
        // out, so only the orphan timeout can end a peer that never sends its FIN. `close`
        // has no clock; the next timer update arms it.
        self.orphan_timer_due = self.state == State::FinWait2;
    }

    /// Whether the application closed the connection and it has not finished closing.
    pub fn is_orphan(&self) -> bool {
        self.orphaned && !self.is_closed()
    }

    /// Aborts: sends RST (in synchronized states) and closes at once.
    pub fn abort(&mut self) {
        self.abort_with(CloseReason::Aborted);
    }

    /// [`Connection::abort`], reporting `reason` (the interface reports a failed neighbour
    /// resolution as [`CloseReason::NoRoute`]).
    pub fn abort_with(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Closed) {
            return;
        }
        if self.state.is_synchronized() || self.state == State::SynReceived {
            // SND.MAX, not a rewound SND.NXT: RFC 5961 3.2 lets only an RST at exactly the
            // peer's RCV.NXT reset it, and the peer may hold everything up to SND.MAX.
            self.rst_pending = Some(self.snd_max);
        }
        self.finish(reason);
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events == 0 {
            return None;
        }
        // The lowest pending bit first: the bits are numbered in the order events are drained.
        let bit = self.events & self.events.wrapping_neg();
        self.events &= !bit;
        Some(match bit {
            EV_CONNECTED => Event::Connected,
            EV_READABLE => Event::Readable,
            EV_WRITABLE => Event::Writable,
            EV_PEER_CLOSED => Event::PeerClosed,
            _ => Event::Closed(self.close_reason.unwrap_or(CloseReason::Normal)),
        })
    }
}
