//! One worker: a pinned thread that owns a queue's AF_XDP socket, an [`Interface`] and an
//! [`App`], and runs them to completion, batch after batch.

use core::time::Duration;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::event::{poll, PollFd, PollFlags};

use super::handoff::{Handoff, HandoffCounters};
use super::ownership::PortOwnership;
use crate::iface::{App, Counters, Interface, RxAction, RxFrames, TxSink};
use crate::time::Instant;
use crate::wire::EthernetAddress;
use crate::xsk::{self, RxBatch, RxVerdict, XskSocket};

/// Reads a neighbour the XDP program learned (shared addresses).
pub(crate) type NeighborLookup = Box<dyn Fn(Ipv4Addr) -> Option<EthernetAddress> + Send>;

/// How often a worker publishes its statistics and checks the neighbour map.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Batches of handed-off frames a worker takes in per loop iteration, at most.
const HANDOFF_BATCHES: usize = 4;
/// The longest a sleeping worker sleeps, so that it sees a stop request.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// A worker's statistics, published about every 100 ms.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// The queue served.
    pub queue: u32,
    /// The interface's counters.
    pub counters: Counters,
    /// The socket's counters.
    pub socket: xsk::Counters,
    /// Frames held by the kernel or in flight (fill, RX, TX), and free.
    pub frames_in_use: usize,
    /// Free frames in the pool.
    pub frames_free: usize,
    /// Connections in the table.
    pub connections: usize,
    /// TIME_WAIT records.
    pub time_wait: usize,
    /// Bytes per TIME_WAIT record the table can hold (slab, hash table, wheel entries).
    pub time_wait_bytes_per_entry: f64,
    /// Connection slots created (the high-water mark).
    pub slots: usize,
    /// Loop iterations.
    pub iterations: u64,
    /// Frames passed to and received from other workers.
    pub handoff: HandoffCounters,
}

pub(crate) struct Worker<A> {
    pub queue: u32,
    pub core: Option<usize>,
    pub socket: XskSocket,
    pub iface: Interface,
    pub app: A,
    pub listen_ports: Vec<u16>,
    pub batch_size: usize,
    pub busy_poll: bool,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<WorkerStats>>,
    pub neighbors: Option<NeighborLookup>,
    /// With more than one worker: who owns which client port, and the queues to the others.
    pub handoff: Option<(PortOwnership, Handoff)>,
}

/// The socket's TX ring as the interface's [`TxSink`].
struct RingSink<'a>(&'a mut XskSocket);

impl TxSink for RingSink<'_> {
    #[inline]
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool> {
        let written = {
            let mut frame = self.0.tx_alloc()?;
            fill(&mut frame)
        };
        match written {
            Some(len) => Some(self.0.tx_submit(len).is_ok()),
            None => Some(false),
        }
    }
}

/// The socket's RX batch as the interface's [`RxFrames`].
struct BatchFrames<'a, 'b>(&'a mut RxBatch<'b>);

impl RxFrames for BatchFrames<'_, '_> {
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn with_frame<R>(&mut self, i: usize, f: impl FnOnce(&mut [u8], usize) -> R) -> R {
        let mut frame = self.0.frame(i);
        let len = frame.len();
        f(frame.buffer_mut(), len)
    }

    #[inline]
    fn set_action(&mut self, i: usize, action: RxAction) {
        let verdict = match action {
            RxAction::Release => RxVerdict::Release,
            RxAction::Transmit(n) => RxVerdict::Transmit(n),
        };
        self.0.set_verdict(i, verdict);
    }
}

impl<A: App> Worker<A> {
    pub fn run(mut self) -> WorkerStats {
        if let Some(core) = self.core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                eprintln!("synack: worker {} could not be pinned to core {core}; running unpinned", self.queue);
            }
        }
        for &port in &self.listen_ports {
            let _ = self.iface.listen(port);
        }
        let mut iterations = 0u64;
        let mut housekeeping_at = Instant::now_monotonic();
        while !self.stop.load(Ordering::Relaxed) {
            iterations += 1;
            // One clock read per batch: everything in it happens "now".
            let now = Instant::now_monotonic();
            let iface = &mut self.iface;
            // Frames other workers received for our connections go first: they are older. Up to
            // several batches: after this worker was descheduled, the backlog must shrink even
            // while the other workers keep handing off a batch per iteration.
            let mut received = match &mut self.handoff {
                Some((_, handoff)) => {
                    let socket = &mut self.socket;
                    handoff.drain(HANDOFF_BATCHES * self.batch_size, |buf, len| {
                        if let RxAction::Transmit(n) = iface.receive(now, buf, len) {
                            // A reply written in place (an RST, an ACK from TIME_WAIT) goes out
                            // through a TX frame of ours: the buffer is not a UMEM frame.
                            let _ = RingSink(socket).send_with(|out| {
                                let n = n.min(out.len());
                                out[..n].copy_from_slice(&buf[..n]);
                                Some(n)
                            });
                        }
                    })
                }
                None => 0,
            };
            received += if self.handoff.is_some() {
                // Several workers: each frame is first checked for another worker's port, so
                // they go one by one.
                let handoff = &mut self.handoff;
                self.socket.rx_batch(self.batch_size, |frame| {
                    let len = frame.len();
                    if let Some((ownership, handoff)) = handoff {
                        if let Some(owner) = ownership.foreign_owner(&frame[..len], |port| iface.is_listening(port)) {
                            // Another worker opened this connection. Handed off or dropped
                            // (counted either way), the frame is ours to release.
                            handoff.offer(owner, &frame[..len]);
                            return RxVerdict::Release;
                        }
                    }
                    match iface.receive(now, frame.buffer_mut(), len) {
                        RxAction::Release => RxVerdict::Release,
                        RxAction::Transmit(n) => RxVerdict::Transmit(n),
                    }
                })
            } else {
                // One worker: the whole batch at once, parsed, looked up, then processed
                // (`receive_batch`).
                self.socket.rx_batch_all(self.batch_size, |batch| iface.receive_batch(now, &mut BatchFrames(batch)))
            };
            self.iface.poll(now, &mut self.app, &mut RingSink(&mut self.socket));
            let _ = self.socket.flush();
            self.socket.reap_completions();
            self.socket.refill();

            if self.neighbors.is_some() && self.iface.has_pending_resolutions() {
                self.read_neighbor_map();
            }
            if now >= housekeeping_at {
                housekeeping_at = now + HOUSEKEEPING;
                self.housekeeping(iterations);
            }
            if received == 0 && !self.iface.has_pending_output() {
                if self.busy_poll {
                    std::hint::spin_loop();
                } else {
                    let until = [self.iface.next_deadline(), self.app.next_wakeup()]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(now + MAX_SLEEP)
                        .min(housekeeping_at);
                    let sleep = until.saturating_duration_since(now).min(MAX_SLEEP);
                    if !sleep.is_zero() {
                        self.sleep(sleep);
                    }
                }
            }
        }
        let _ = self.socket.drain_tx(Duration::from_millis(100));
        self.housekeeping(iterations);
        self.snapshot(iterations)
    }

    /// Sleeps in `poll()` until a frame arrives, another worker hands one off, or `timeout`.
    fn sleep(&mut self, timeout: Duration) {
        let Some((_, handoff)) = &self.handoff else {
            let _ = self.socket.wait_idle(timeout);
            return;
        };
        if handoff.prepare_sleep() {
            let timeout = rustix::time::Timespec::try_from(timeout)
                .unwrap_or(rustix::time::Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
            let wake_fd = handoff.wake_fd();
            let mut fds = [PollFd::new(&self.socket, PollFlags::IN), PollFd::new(&wake_fd, PollFlags::IN)];
            // EINTR or another error: the loop comes round again, as after a timeout.
            let _ = poll(&mut fds, Some(&timeout));
        }
        handoff.woke();
    }

    /// Resolutions waiting on a shared address: the kernel got the ARP reply, and the XDP
    /// program noted it in its map (one map lookup per pending address).
    fn read_neighbor_map(&mut self) {
        let Some(lookup) = &self.neighbors else { return };
        let mut found = [(Ipv4Addr::UNSPECIFIED, EthernetAddress([0; 6])); 16];
        let mut n = 0;
        for addr in self.iface.pending_resolutions() {
            if let Some(mac) = lookup(addr) {
                found[n] = (addr, mac);
                n += 1;
            }
        }
        for &(addr, mac) in &found[..n] {
            self.iface.learn_neighbor(addr, mac);
        }
    }

    fn housekeeping(&mut self, iterations: u64) {
        let snapshot = self.snapshot(iterations);
        if let Ok(mut stats) = self.stats.lock() {
            *stats = snapshot;
        }
    }

    fn snapshot(&self, iterations: u64) -> WorkerStats {
        let accounting = self.socket.accounting();
        WorkerStats {
            queue: self.queue,
            counters: *self.iface.counters(),
            socket: *self.socket.counters(),
            frames_in_use: accounting.in_use(),
            frames_free: accounting.free,
            connections: self.iface.connection_count(),
            time_wait: self.iface.time_wait_count(),
            time_wait_bytes_per_entry: self.iface.time_wait_bytes_per_entry(),
            slots: self.iface.slots_created(),
            iterations,
            handoff: self.handoff.as_ref().map(|(_, h)| h.counters()).unwrap_or_default(),
        }
    }
}
