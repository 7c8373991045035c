//! The application's side: listening, opening connections, and the calls on a connection
//! (send, receive, splice, shut down, close, abort, timers).

use std::net::Ipv4Addr;

use super::{ConnectError, Interface, ListenError};
#[cfg(doc)]
use crate::iface::app::App;
use crate::iface::app::ConnId;
use crate::iface::ring_pool::Ring;
use crate::iface::table::{ConnTable, SlotState};
use crate::iface::time_wait_table::TimeWaitTable;
use crate::iface::timer_wheel::{Lane, TimerWheel};
use crate::tcp::{CloseReason, Endpoint, FourTuple, RecvError, SendError, State};
use crate::time::Instant;

impl Interface {
    /// Accepts connections on `port` from now on.
    pub fn listen(&mut self, port: u16) -> Result<(), ListenError> {
        if port == 0 {
            return Err(ListenError::PortZero);
        }
        let (lo, hi) = self.config.local_ports;
        if (lo..=hi).contains(&port) {
            return Err(ListenError::InLocalPortRange);
        }
        self.listen_ports[usize::from(port / 64)] |= 1 << (port % 64);
        Ok(())
    }

    /// Starts a graceful drain: stops listening on every port, so that a new SYN is answered
    /// as if nothing listened (an RST), while the connections already open go on. The caller
    /// ends what remains at its deadline with [`Interface::abort_all`].
    pub fn drain(&mut self) {
        self.listen_ports.fill(0);
        self.draining = true;
    }

    /// Whether [`Interface::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Aborts every connection (an RST for each synchronized one; unread data of one closed
    /// already is dropped): [`App::on_closed`] follows in the next poll.
    pub fn abort_all(&mut self) {
        for index in 0..self.table.slots_created() as u32 {
            let Some(slot) = self.table.slot_in_use_mut(index) else { continue };
            if slot.state.closed_pending() {
                slot.conn.recv_consume(slot.conn.recv_queue_len());
            } else {
                slot.conn.abort();
            }
            self.mark_dirty(index);
        }
    }

    /// Stops accepting on `port`; connections already accepted go on.
    pub fn unlisten(&mut self, port: u16) {
        self.listen_ports[usize::from(port / 64)] &= !(1 << (port % 64));
    }

    /// Whether `port` is listened on.
    #[inline]
    pub fn is_listening(&self, port: u16) -> bool {
        self.listen_ports[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    /// Opens a connection to `remote` from a free local port (active open). The SYN goes out
    /// on the next `poll` (after ARP, if the next hop's MAC is unknown);
    /// [`App::on_connected`] follows the handshake.
    pub fn connect(&mut self, remote: Endpoint) -> Result<ConnId, ConnectError> {
        if remote.port == 0 || remote.addr.is_unspecified() {
            return Err(ConnectError::Unspecified);
        }
        let hop = self.config.next_hop(remote.addr).ok_or(ConnectError::NoRoute)?;
        let (local_addr, now, reuse) = (self.config.addr, self.now, self.config.time_wait_reuse);
        let (table, time_wait, timers) = (&self.table, &self.time_wait, &self.timers);
        // Each port is free (`Some(None)`), reusable from TIME_WAIT with an ISS and the record
        // to end (`Some(Some)`), or in use (`None`).
        let (port, reuse_iss) = self
            .ports
            .allocate(local_addr, remote, |port| {
                judge_port(table, time_wait, timers, (local_addr, port), remote, now, reuse)
            })
            .ok_or(ConnectError::NoPortAvailable)?;
        self.open_active(port, reuse_iss, remote, hop)
    }

    /// [`Interface::connect`] from a local port of the application's choosing, which must lie
    /// in this interface's local port range (`InterfaceConfig::local_ports`) and be free
    /// towards `remote` (or in a TIME_WAIT that may be taken over): for an application that
    /// keeps its own port plan (one port per backend and client, say).
    pub fn connect_from(&mut self, local_port: u16, remote: Endpoint) -> Result<ConnId, ConnectError> {
        if remote.port == 0 || remote.addr.is_unspecified() || local_port == 0 {
            return Err(ConnectError::Unspecified);
        }
        let (lo, hi) = self.config.local_ports;
        if !(lo..=hi).contains(&local_port) {
            return Err(ConnectError::PortOutOfRange);
        }
        let hop = self.config.next_hop(remote.addr).ok_or(ConnectError::NoRoute)?;
        let (local_addr, now, reuse) = (self.config.addr, self.now, self.config.time_wait_reuse);
        let reuse_iss =
            judge_port(&self.table, &self.time_wait, &self.timers, (local_addr, local_port), remote, now, reuse)
                .ok_or(ConnectError::NoPortAvailable)?;
        self.open_active(local_port, reuse_iss, remote, hop)
    }

    /// Takes a slot for an active open from `port` (judged free, or reusable from the TIME_WAIT
    /// record with the ISS given) and starts the handshake.
    fn open_active(
        &mut self,
        port: u16,
        reuse_iss: Option<(crate::tcp::SeqNumber, u32)>,
        remote: Endpoint,
        hop: Ipv4Addr,
    ) -> Result<ConnId, ConnectError> {
        let (local_addr, now) = (self.config.addr, self.now);
        let local = Endpoint::new(local_addr, port);
        let tuple = FourTuple { local, remote };
        let id = self.table.insert(tuple).ok_or(ConnectError::TableFull)?;
        let mac = self.neighbors.lookup(hop, now);
        let slot = self.table.slot_mut(id.index);
        if slot.conn.connect(now, local, remote, self.isn).is_err() {
            self.free_slot(id.index, &tuple);
            return Err(ConnectError::Unspecified);
        }
        if let Some((iss, record)) = reuse_iss {
            // The old incarnation's TIME_WAIT ends here (RFC 6191, as the closer).
            slot.conn.force_iss(iss);
            self.time_wait.remove(record, &mut self.timers);
            self.counters.time_wait_reused += 1;
        }
        slot.active = true;
        slot.state = SlotState::Announced;
        slot.remote_mac = mac;
        self.mark_dirty(id.index);
        Ok(id)
    }

    /// Queues data to send; returns how much was taken (back-pressure: less than `data`, or
    /// [`SendError::BufferFull`]; [`App::on_writable`] follows when room frees).
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, SendError> {
        let slot = self.table.get_mut(id).ok_or(SendError::InvalidState)?;
        if !data.is_empty() && slot.conn.needs_send_ring() && slot.conn.accepts_data() {
            // Without a ring the connection takes nothing (`BufferFull`) and waits for one.
            self.send_ring_for(id);
        }
        let slot = self.table.slot_mut(id.index);
        let sent = slot.conn.send(data);
        self.mark_dirty(id.index);
        sent
    }

    /// Reads in-order data into `buf`.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, RecvError> {
        let slot = self.table.get_mut(id).ok_or(RecvError::InvalidState)?;
        let read = slot.conn.recv(buf);
        if read.is_ok() {
            // Reading may open the window enough to announce it.
            self.mark_dirty(id.index);
        }
        read
    }

    /// The readable data in place, as up to two slices (the ring may wrap); consume with
    /// [`Interface::recv_consume`]. Empty slices for a stale handle.
    pub fn recv_slices(&self, id: ConnId) -> (&[u8], &[u8]) {
        match self.table.get(id) {
            Some(slot) => slot.conn.recv_slices(),
            None => (&[], &[]),
        }
    }

    /// Consumes `n` bytes seen through [`Interface::recv_slices`].
    pub fn recv_consume(&mut self, id: ConnId, n: usize) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.recv_consume(n);
            self.mark_dirty(id.index);
        }
    }

    /// Moves up to `max` readable bytes of `from` into the send buffer of `to`, as much as it
    /// has room for, without an intermediate buffer (the proxy's copy). `from == to` echoes.
    /// Returns the bytes moved.
    pub fn splice(&mut self, from: ConnId, to: ConnId, max: usize) -> Result<usize, SendError> {
        let readable = self.table.get(from).map_or(0, |s| s.conn.recv_queue_len());
        let dst = self.table.get(to).ok_or(SendError::InvalidState)?;
        if readable > 0 && max > 0 && dst.conn.needs_send_ring() && dst.conn.accepts_data() && !self.send_ring_for(to) {
            return Err(SendError::BufferFull);
        }
        let moved = if from == to {
            let slot = self.table.get_mut(from).ok_or(SendError::InvalidState)?;
            let room = slot.conn.send_capacity().min(max).min(self.scratch.len());
            let readable = slot.conn.recv_queue_len();
            if room < readable.min(max) {
                // More to move than fits: resume on Writable.
                slot.conn.notify_when_writable();
            }
            if room == 0 {
                return Err(SendError::BufferFull);
            }
            let n = slot.conn.recv(&mut self.scratch[..room]).unwrap_or(0);
            if n > 0 {
                slot.conn.send(&self.scratch[..n])?;
            }
            n
        } else {
            let [src, dst] = self.table.get_pair_mut(from, to).ok_or(SendError::InvalidState)?;
            let room = dst.conn.send_capacity().min(max);
            if room < src.conn.recv_queue_len().min(max) {
                dst.conn.notify_when_writable();
            }
            if room == 0 {
                return Err(SendError::BufferFull);
            }
            let (first, second) = src.conn.recv_slices();
            let mut moved = 0;
            for part in [first, second] {
                let want = part.len().min(room - moved);
                if want == 0 {
                    break;
                }
                moved += dst.conn.send(&part[..want])?;
            }
            src.conn.recv_consume(moved);
            moved
        };
        self.mark_dirty(from.index);
        self.mark_dirty(to.index);
        Ok(moved)
    }

    /// Lends the connection of `id` a send ring for data to queue. When none is free it is
    /// counted and the connection waits for one: `poll` lends it the next ring that frees and
    /// tells the application it may write ([`App::on_writable`]).
    fn send_ring_for(&mut self, id: ConnId) -> bool {
        if self.table.lend_ring(id.index, Ring::Send) {
            return true;
        }
        self.counters.tx_no_ring += 1;
        self.wait_for_ring(id, Ring::Send);
        false
    }

    /// Shuts down the write side: FIN follows the queued data.
    pub fn shutdown(&mut self, id: ConnId) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.shutdown();
            self.mark_dirty(id.index);
        }
    }

    /// Closes the connection: FIN after the queued data; data still arriving is discarded.
    /// [`App::on_closed`] follows when the close completes. Unread data makes it an abort
    /// (RFC 1122 4.2.2.13), except on a connection already closed by both sides, whose unread
    /// data is simply dropped.
    pub fn close(&mut self, id: ConnId) {
        if let Some(slot) = self.table.get_mut(id) {
            if slot.state.closed_pending() {
                slot.conn.recv_consume(slot.conn.recv_queue_len());
            } else {
                let was_orphan = slot.conn.is_orphan();
                slot.conn.close();
                if slot.conn.is_orphan() && !was_orphan {
                    self.add_orphan(id);
                }
            }
            self.mark_dirty(id.index);
        }
    }

    /// Holds `id` as an orphan; beyond `max_orphans`, resets the oldest (Linux's
    /// `tcp_max_orphans`, which it enforces the same way on a close), so that peers that never
    /// finish a close cannot fill the table.
    fn add_orphan(&mut self, id: ConnId) {
        self.orphans.push_back(id);
        // At most `max` orphans live: past that many entries some finished, so the queue stays
        // within its preallocated capacity.
        if self.orphans.len() <= self.config.max_orphans.min(self.config.max_connections) {
            return;
        }
        // Forget the orphans that finished (or whose slot was reused) first.
        let table = &self.table;
        self.orphans.retain(|&o| table.get(o).is_some_and(|slot| slot.conn.is_orphan()));
        while self.orphans.len() > self.config.max_orphans {
            let Some(oldest) = self.orphans.pop_front() else { break };
            if let Some(slot) = self.table.get_mut(oldest) {
                slot.conn.abort();
                self.counters.orphans_reset += 1;
                self.mark_dirty(oldest.index);
            }
        }
    }

    /// Aborts the connection with an RST (none on a connection already closed by both sides,
    /// whose unread data is dropped).
    pub fn abort(&mut self, id: ConnId) {
        if let Some(slot) = self.table.get_mut(id) {
            if slot.state.closed_pending() {
                slot.conn.recv_consume(slot.conn.recv_queue_len());
            } else {
                slot.conn.abort();
            }
            self.mark_dirty(id.index);
        }
    }

    /// Arms the connection's application timer for `at`, replacing its previous deadline
    /// (one timer per connection: a connect or idle timeout). [`App::on_timer`] follows in
    /// the first poll at or after `at` (rounded up to the wheel's tick, about 1 ms), unless
    /// it is cancelled or the connection ends first. It lives in the worker's timer wheel:
    /// arming allocates nothing. False for a stale handle.
    pub fn set_timer(&mut self, id: ConnId, at: Instant) -> bool {
        // Not for a connection the application was told is closed (its slot goes next).
        if !self.table.get(id).is_some_and(|s| s.state.announced()) {
            return false;
        }
        self.timers.schedule(self.app_timer_base + id.index, Lane::Connection, at);
        true
    }

    /// Disarms the connection's application timer.
    pub fn cancel_timer(&mut self, id: ConnId) {
        if self.table.get(id).is_some() {
            self.timers.cancel(self.app_timer_base + id.index);
        }
    }

    /// Switches Nagle's algorithm for one connection.
    pub fn set_nagle(&mut self, id: ConnId, on: bool) {
        if let Some(slot) = self.table.get_mut(id) {
            slot.conn.set_nagle(on);
        }
    }

    /// The state of a connection (`Closed` for a stale handle).
    pub fn state(&self, id: ConnId) -> State {
        self.table.get(id).map_or(State::Closed, |s| s.conn.state())
    }

    /// The 4-tuple of a connection.
    pub fn tuple(&self, id: ConnId) -> Option<FourTuple> {
        self.table.get(id).map(|s| s.conn.tuple())
    }

    /// Bytes waiting to be read.
    pub fn recv_queue_len(&self, id: ConnId) -> usize {
        self.table.get(id).map_or(0, |s| s.conn.recv_queue_len())
    }

    /// Free space in the send buffer: none while the connection has no send ring and the
    /// ring pool none to lend.
    pub fn send_capacity(&self, id: ConnId) -> usize {
        match self.table.get(id) {
            Some(s) if self.table.can_send(id.index) => s.conn.send_capacity(),
            _ => 0,
        }
    }

    /// The close reason a connection would report; for tests and diagnostics.
    pub fn close_reason(&self, id: ConnId) -> Option<CloseReason> {
        self.table.get(id).and_then(|s| s.conn.close_reason())
    }
}

/// Whether a local port may open a connection to `remote`: free (`Some(None)`), reusable from
/// its TIME_WAIT record with an ISS and the record to end (`Some(Some)`), or in use (`None`).
pub(super) fn judge_port(
    table: &ConnTable,
    time_wait: &TimeWaitTable,
    timers: &TimerWheel,
    (local_addr, port): (Ipv4Addr, u16),
    remote: Endpoint,
    now: Instant,
    reuse: Option<core::time::Duration>,
) -> Option<Option<(crate::tcp::SeqNumber, u32)>> {
    let tuple = FourTuple { local: Endpoint::new(local_addr, port), remote };
    if table.find(&tuple).is_some() {
        return None;
    }
    match time_wait.find(&tuple) {
        None => Some(None),
        Some(i) => Some(Some((time_wait.get(i, timers).reuse_iss(now, reuse?)?, i))),
    }
}
