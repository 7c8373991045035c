//! Progress: due timers, neighbour resolution, the application's events, and the segments
//! every touched connection has to send; then a finished connection leaves its slot.

use std::net::Ipv4Addr;

use super::reply::{write_arp, L3};
use super::{Interface, ARP_FRAME_LEN, L4_OFFSET};
use crate::iface::app::{App, ConnId, TxSink};
use crate::iface::neighbor::{NeighborAction, Resolution};
use crate::iface::ring_pool::Ring;
use crate::iface::table::SlotState;
#[cfg(doc)]
use crate::iface::time_wait_table::TimeWaitTable;
use crate::iface::time_wait_table::{Inserted, EXPIRY_BATCH};
use crate::iface::timer_wheel::{tick_ceil, Lane};
use crate::tcp::{CloseReason, Event, State};
use crate::time::Instant;
use crate::wire::{ArpOperation, ArpRepr, EthernetAddress, Fragmentation};

impl Interface {
    /// Makes progress at `now`: runs due timers and TIME_WAIT expiries, retries ARP, lets the
    /// application start work ([`App::on_poll`]), delivers every pending event to `app`, then
    /// writes every segment due into `tx`. What does not fit in `tx` waits for the next poll.
    pub fn poll<A: App + ?Sized, S: TxSink + ?Sized>(&mut self, now: Instant, app: &mut A, tx: &mut S) {
        self.now = now;
        self.run_timers(now);
        self.poll_neighbors(now);
        app.on_poll(self, now);
        self.fire_app_timers(app);
        self.deliver_events(app);
        self.transmit(now, tx);
        self.wake_ring_waiters();
        self.debug_check_invariants();
    }

    /// Hands the rings that freed to the connections waiting for one, oldest first, each
    /// marked to act in the next poll (which `has_pending_output` asks for). A send ring is
    /// lent now, so that the write it answers finds it, and the application is told it may
    /// write ([`App::on_writable`]). A receive ring is not lent (it comes with the data): the
    /// connection announces its window open again, as many connections as rings are free.
    fn wake_ring_waiters(&mut self) {
        for ring in [Ring::Send, Ring::Recv] {
            let mut free = self.table.rings_available(ring);
            while free > 0 {
                let queue = match ring {
                    Ring::Send => &mut self.send_waiters,
                    Ring::Recv => &mut self.recv_waiters,
                };
                let Some(id) = queue.pop_front() else { break };
                // An entry of a slot freed since is stale.
                let Some(slot) = self.table.get_mut(id) else { continue };
                let waits = slot.waits_for(ring);
                if !*waits {
                    continue;
                }
                *waits = false;
                match ring {
                    Ring::Send => {
                        if !slot.conn.accepts_data() || !self.table.lend_ring(id.index, Ring::Send) {
                            continue;
                        }
                        self.table.slot_mut(id.index).conn.wake_writable();
                        free = self.table.rings_available(ring);
                    }
                    Ring::Recv => {
                        // A probe may have found a ring since.
                        if !slot.conn.recv_starved() {
                            continue;
                        }
                        slot.conn.reopen_window();
                        free -= 1;
                    }
                }
                self.mark_dirty(id.index);
            }
        }
    }

    /// Runs the wheel's due entries: TIME_WAIT records end, connections run their timers.
    /// A connection's entry may be early (it is not moved when its deadline moves later, see
    /// `retire_or_arm`); then it is armed again for the real deadline.
    /// Expired TIME_WAIT records are ended in batches (see [`TimeWaitTable::expired_batch`]).
    fn run_timers(&mut self, now: Instant) {
        let mut expired = [0u32; EXPIRY_BATCH];
        let mut n = 0;
        while let Some((entry, lane)) = self.timers.pop_due(now) {
            if lane == Lane::TimeWait {
                expired[n] = entry;
                n += 1;
                if n == EXPIRY_BATCH {
                    self.time_wait.expired_batch(&expired);
                    n = 0;
                }
                self.counters.time_wait_expired += 1;
                continue;
            }
            if entry >= self.app_timer_base {
                let index = entry - self.app_timer_base;
                if let Some(slot) = self.table.slot_in_use_mut(index) {
                    let id = ConnId { index, generation: slot.generation };
                    // One entry per slot, so this holds every slot at most once.
                    if self.timers_fired.len() < self.timers_fired.capacity() {
                        self.timers_fired.push(id);
                    }
                }
                continue;
            }
            let Some(slot) = self.table.slot_in_use_mut(entry) else { continue };
            match slot.conn.poll_timeout() {
                Some(due) if due <= now => {
                    slot.conn.handle_timeout(now);
                    self.mark_dirty(entry);
                }
                Some(later) => self.timers.schedule(entry, Lane::Connection, later),
                None => {}
            }
        }
        self.time_wait.expired_batch(&expired[..n]);
    }

    /// Tells the application of its due timers (of connections still current and known to it).
    fn fire_app_timers<A: App + ?Sized>(&mut self, app: &mut A) {
        let mut fired = core::mem::take(&mut self.timers_fired);
        for &id in &fired {
            if self.table.get(id).is_some_and(|s| s.state.announced()) {
                app.on_timer(self, id);
            }
        }
        fired.clear();
        self.timers_fired = fired;
    }

    fn poll_neighbors(&mut self, now: Instant) {
        let (arp_out, failed) = (&mut self.arp_out, &mut self.arp_failed);
        self.neighbors.poll(now, |action| {
            let list = match action {
                NeighborAction::Request(_) => &mut *arp_out,
                NeighborAction::Failed(_) => &mut *failed,
            };
            let (NeighborAction::Request(addr) | NeighborAction::Failed(addr)) = action;
            if list.len() < list.capacity() {
                list.push(addr);
            }
        });
        while let Some(addr) = self.arp_failed.pop() {
            self.fail_arp_waiters(addr);
        }
    }

    pub(super) fn wake_arp_waiters(&mut self, hop: Ipv4Addr, mac: EthernetAddress) {
        let mut i = 0;
        while i < self.arp_waiting.len() {
            let index = self.arp_waiting[i];
            let slot = self.table.slot_mut(index);
            if !slot.state.in_use() {
                self.arp_waiting.swap_remove(i);
                continue;
            }
            if self.config.next_hop(slot.conn.tuple().remote.addr) == Some(hop) {
                slot.remote_mac = Some(mac);
                self.arp_waiting.swap_remove(i);
                self.mark_dirty(index);
                continue;
            }
            i += 1;
        }
    }

    fn fail_arp_waiters(&mut self, hop: Ipv4Addr) {
        let mut i = 0;
        while i < self.arp_waiting.len() {
            let index = self.arp_waiting[i];
            let slot = self.table.slot_mut(index);
            if slot.state.in_use()
                && slot.remote_mac.is_none()
                && self.config.next_hop(slot.conn.tuple().remote.addr) == Some(hop)
            {
                slot.conn.abort_with(CloseReason::NoRoute);
                self.counters.arp_failures += 1;
                self.arp_waiting.swap_remove(i);
                self.mark_dirty(index);
                continue;
            }
            if !slot.state.in_use() {
                self.arp_waiting.swap_remove(i);
                continue;
            }
            i += 1;
        }
    }

    /// Delivers the events of every dirty slot; callbacks may dirty more slots, which are
    /// delivered in the same pass.
    fn deliver_events<A: App + ?Sized>(&mut self, app: &mut A) {
        let mut i = 0;
        while i < self.dirty.len() {
            let index = self.dirty[i];
            i += 1;
            loop {
                let slot = self.table.slot_mut(index);
                if !slot.state.in_use() {
                    break;
                }
                let Some(event) = slot.conn.poll_event() else {
                    if slot.state.closed_pending() && slot.conn.recv_queue_len() == 0 {
                        // The data held past the close is read: now the close is told.
                        slot.state = slot.state.told_closed();
                        let id = ConnId { index, generation: slot.generation };
                        app.on_closed(self, id, CloseReason::Normal);
                    }
                    break;
                };
                let id = ConnId { index, generation: slot.generation };
                let announced = slot.state.announced();
                match event {
                    Event::Connected => {
                        match slot.state {
                            SlotState::HalfOpen => {
                                self.half_open -= 1;
                                slot.state = SlotState::Announced;
                            }
                            SlotState::Unannounced => slot.state = SlotState::Announced,
                            _ => {}
                        }
                        if slot.active {
                            self.counters.connected += 1;
                            app.on_connected(self, id);
                        } else {
                            self.counters.accepted += 1;
                            app.on_accept(self, id);
                        }
                    }
                    Event::Readable if announced => app.on_readable(self, id),
                    Event::Writable if announced => app.on_writable(self, id),
                    Event::PeerClosed if announced => app.on_peer_closed(self, id),
                    Event::Closed(reason) => {
                        if slot.state == SlotState::HalfOpen {
                            slot.state = SlotState::Unannounced;
                            self.half_open -= 1;
                        }
                        if announced && reason == CloseReason::Normal && slot.conn.recv_queue_len() > 0 {
                            // Data we acknowledged is not read yet: it stays readable, and the
                            // close is told once it is read (a proxy's tail must not be lost).
                            if slot.state == SlotState::Announced {
                                slot.state = SlotState::ClosedPending;
                            }
                        } else if announced {
                            slot.state = slot.state.told_closed();
                            app.on_closed(self, id, reason);
                        }
                    }
                    // Events of a connection the application has not been given yet.
                    Event::Readable | Event::Writable | Event::PeerClosed => {}
                }
            }
        }
    }

    fn transmit<S: TxSink + ?Sized>(&mut self, now: Instant, tx: &mut S) {
        while let Some(&addr) = self.arp_out.last() {
            let request = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: self.config.mac,
                source_protocol_addr: self.config.addr,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: addr,
            };
            let our_mac = self.config.mac;
            let sent = tx.send_with(|buf| {
                if buf.len() < ARP_FRAME_LEN {
                    return None;
                }
                write_arp(buf, our_mac, EthernetAddress::BROADCAST, &request);
                Some(ARP_FRAME_LEN)
            });
            if sent != Some(true) {
                break;
            }
            self.arp_out.pop();
            self.counters.arp_requests += 1;
        }

        let mut dirty = core::mem::take(&mut self.dirty);
        self.carry.clear();
        let mut blocked = false;
        for &index in &dirty {
            let slot = self.table.slot_mut(index);
            if !slot.state.in_use() || !slot.dirty {
                continue;
            }
            slot.dirty = false;
            // A detached slot is off the wire: its TIME_WAIT record answers for it.
            let detached = slot.state.detached();
            // Once one connection found no TX frame, the rest wait too (in order).
            if blocked || (!detached && self.transmit_slot(now, index, tx)) {
                blocked = true;
                self.table.slot_mut(index).dirty = true;
                self.carry.push(index);
                continue;
            }
            if !self.retire_or_arm(index) {
                // Closed, but the application has yet to hear it: next poll.
                self.table.slot_mut(index).dirty = true;
                self.carry.push(index);
            }
        }
        dirty.clear();
        // The blocked ones start the next poll's dirty list.
        dirty.extend_from_slice(&self.carry);
        self.carry.clear();
        self.dirty = dirty;
    }

    /// Sends what the connection has due; true when it ran out of TX frames.
    fn transmit_slot<S: TxSink + ?Sized>(&mut self, now: Instant, index: u32, tx: &mut S) -> bool {
        let slot = self.table.slot_mut(index);
        let tuple = slot.conn.tuple();
        let mac = match slot.remote_mac {
            Some(mac) => mac,
            None => {
                if slot.conn.is_closed() {
                    // Never reached the wire (aborted while resolving): nothing to send.
                    while slot.conn.poll_transmit(now, &mut self.scratch).is_some() {}
                    return false;
                }
                let Some(hop) = self.config.next_hop(tuple.remote.addr) else {
                    slot.conn.abort_with(CloseReason::NoRoute);
                    return false;
                };
                if let Some(mac) = self.neighbors.lookup(hop, now) {
                    slot.remote_mac = Some(mac);
                    mac
                } else {
                    match self.neighbors.resolve(hop, now) {
                        Resolution::Request if self.arp_out.len() < self.arp_out.capacity() => self.arp_out.push(hop),
                        // No room to send it now: the retry interval sends the next one.
                        Resolution::Request | Resolution::Waiting => {}
                        Resolution::Failed => {
                            // It could never be resolved: end it now rather than never.
                            slot.conn.abort();
                            self.counters.arp_failures += 1;
                            return false;
                        }
                    }
                    if !self.arp_waiting.contains(&index) && self.arp_waiting.len() < self.arp_waiting.capacity() {
                        self.arp_waiting.push(index);
                    }
                    return false;
                }
            }
        };
        let (our_mac, ttl) = (self.config.mac, self.config.ttl);
        let ip_ident = &mut self.ip_ident;
        loop {
            let conn = &mut slot.conn;
            let sent = tx.send_with(|buf| {
                if buf.len() <= L4_OFFSET {
                    return None;
                }
                let n = conn.poll_transmit(now, &mut buf[L4_OFFSET..])?;
                let fragmentation = if conn.dont_fragment() {
                    Fragmentation::DontFragment
                } else {
                    // Fragmentable: each datagram needs its own identification (RFC 6864 4.1).
                    *ip_ident = ip_ident.wrapping_add(1);
                    Fragmentation::Allowed { ident: *ip_ident }
                };
                let l3 = L3 {
                    src_mac: our_mac,
                    dst_mac: mac,
                    src: tuple.local.addr,
                    dst: tuple.remote.addr,
                    ttl,
                    fragmentation,
                };
                l3.write(buf, crate::wire::ip_protocol::TCP, n);
                Some(L4_OFFSET + n)
            });
            match sent {
                None => {
                    self.counters.tx_no_frame += 1;
                    return true;
                }
                Some(true) => self.counters.tx_frames += 1,
                Some(false) => return false,
            }
        }
    }

    /// After a slot's output is out: a connection in TIME_WAIT becomes a compact record and a
    /// CLOSED one frees its slot; any other gets its timer armed. False when a CLOSED slot
    /// must wait because the application has not been told yet.
    ///
    /// A slot closed with unread data ([`SlotState::ClosedPending`]) is
    /// detached instead of freed: its TIME_WAIT record is made now, and the slot stays until
    /// the application has read the data or closed it.
    fn retire_or_arm(&mut self, index: u32) -> bool {
        let slot = self.table.slot_mut(index);
        let state = slot.conn.state();
        match state {
            State::Closed if slot.state == SlotState::Announced => false,
            State::TimeWait | State::Closed => {
                let tuple = slot.conn.tuple();
                // A detached slot was ended and counted when it was detached.
                if !slot.state.detached() {
                    self.retire(index, state);
                }
                let slot = self.table.slot_mut(index);
                if slot.state.closed_pending() {
                    let unread = slot.conn.recv_queue_len() > 0;
                    self.timers.cancel(index);
                    self.table.detach(index, &tuple);
                    // Read already: the next poll tells the application, then frees it.
                    return unread;
                }
                self.free_slot(index, &tuple);
                true
            }
            _ => {
                // An idle connection holds no ring: what it has drained goes back to the pool.
                self.table.take_drained_rings(index);
                let slot = self.table.slot_mut(index);
                // Armed only when the deadline moves earlier than the entry's tick: a later
                // one (the retransmission timer restarting on each ACK) leaves the entry, which
                // fires early and re-arms (`run_timers`). So the common re-arm is a compare.
                if let Some(deadline) = slot.conn.poll_timeout() {
                    let tick = tick_ceil(deadline);
                    if self.timers.armed_tick(index).is_none_or(|armed| tick < armed) {
                        self.timers.schedule_tick(index, Lane::Connection, tick);
                    }
                }
                true
            }
        }
    }

    /// The end of a connection in TIME_WAIT or CLOSED: counted, its TIME_WAIT record made.
    fn retire(&mut self, index: u32, state: State) {
        let slot = self.table.slot_mut(index);
        self.counters.connection_ended(slot.conn.stats());
        if state == State::TimeWait {
            if let Some(mut record) = slot.conn.time_wait_record() {
                // Our last segment (the ACK of the peer's FIN) went out in this poll.
                record.last_segment = record.last_segment.max(self.now);
                self.counters.time_wait_entered += 1;
                if self.time_wait.insert(&record, &mut self.timers) == Inserted::EvictedOldest {
                    self.counters.time_wait_evicted += 1;
                }
            }
        }
        if slot.state == SlotState::HalfOpen {
            slot.state = SlotState::Unannounced;
            self.half_open -= 1;
        }
    }
}
