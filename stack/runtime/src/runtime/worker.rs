//! One worker: a pinned thread that owns a queue's AF_XDP socket, an [`Interface`] and an
//! [`App`], and runs them to completion, batch after batch.

use core::time::Duration;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::event::{poll, PollFd, PollFlags};

use super::conn_table::TableResponder;
use super::handoff::{Handoff, HandoffCounters};
use super::loop_stalls::{LoopStalls, StallClock};
use super::mailbox::Mailbox;
use super::pcap::PcapTap;
use crate::iface::dispatch::{dispatch, receive_handed_off, Dispatched};
use crate::iface::steering::PortOwnership;
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
/// Messages from other threads delivered per loop iteration, at most.
const MESSAGES_PER_ITERATION: usize = 64;

/// A worker's statistics, published about every 100 ms.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// The queue served.
    pub queue: u32,
    /// The interface's counters.
    pub counters: Counters,
    /// The socket's counters.
    pub socket: xsk::Counters,
    /// The kernel's statistics of the socket: frames it dropped before synack saw them (RX
    /// ring full, fill ring empty) and invalid descriptors.
    pub kernel: xsk::XdpStats,
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
    /// The ring pools: rings lent to connections, free, allocated.
    pub rings: crate::iface::RingStats,
    /// Loop iterations.
    pub iterations: u64,
    /// Gaps of 1 ms or more between busy iterations (see [`LoopStalls`]).
    pub stalls: LoopStalls,
    /// Frames passed to and received from other workers.
    pub handoff: HandoffCounters,
    /// Why the worker stopped by itself, if it did.
    pub fault: Option<WorkerFault>,
}

/// Why a worker stopped before it was asked to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerFault {
    /// The interface is gone: deleted, or moved to another network namespace (or deleted and
    /// made again, with another index: the sockets are bound to the old one).
    #[error("interface {ifname} went away (deleted or moved out of this network namespace); its sockets are dead")]
    InterfaceGone {
        /// The interface.
        ifname: String,
    },
    /// Sending failed for good (`ENXIO`: the socket's device is gone, or another hard error).
    #[error("interface {ifname}, queue {queue}: {error}")]
    Kick {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The failed kick.
        error: xsk::KickError,
    },
}

pub(crate) struct Worker<A> {
    pub queue: u32,
    /// The interface and its index when the socket was bound: a lookup that finds neither
    /// means the sockets are dead.
    pub ifname: String,
    pub ifindex: u32,
    pub core: Option<usize>,
    pub socket: XskSocket,
    pub iface: Interface,
    pub app: A,
    pub listen_ports: Vec<u16>,
    pub batch_size: usize,
    pub busy_poll: bool,
    pub stop: Arc<AtomicBool>,
    /// A drain request: 0 for none, else 1 + the milliseconds live connections get.
    pub drain: Arc<AtomicU64>,
    pub stats: Arc<Mutex<WorkerStats>>,
    pub neighbors: Option<NeighborLookup>,
    /// With more than one worker: who owns which client port, and the queues to the others.
    pub handoff: Option<(PortOwnership, Handoff)>,
    /// Answers `synack stat`'s requests for the connection table.
    pub table: TableResponder,
    /// With `--pcap`: where the frames received and sent are copied.
    pub pcap: Option<PcapTap>,
    /// Messages from other threads, for the application.
    pub mailbox: Mailbox,
    /// Gaps between the loop's busy iterations.
    pub stall_clock: StallClock,
}

/// The socket's TX ring as the interface's [`TxSink`] (and the capture, if on).
struct RingSink<'a>(&'a mut XskSocket, Option<&'a mut PcapTap>, Instant);

impl TxSink for RingSink<'_> {
    #[inline]
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool> {
        let written = {
            let mut frame = self.0.tx_alloc()?;
            let written = fill(&mut frame);
            if let (Some(len), Some(tap)) = (written, self.1.as_deref_mut()) {
                tap.capture(self.2, &frame[..len.min(frame.len())]);
            }
            written
        };
        match written {
            // `tx_alloc` lent a frame only with room to queue it, and `fill` writes within it:
            // a built segment is never thrown away here.
            Some(len) => {
                let submitted = self.0.tx_submit(len);
                debug_assert!(submitted.is_ok(), "{submitted:?}");
                Some(submitted.is_ok())
            }
            None => Some(false),
        }
    }
}

/// Copies a frame to the capture; drops the tap once the capture has ended (its bound).
#[inline]
fn capture(pcap: &mut Option<PcapTap>, now: Instant, frame: &[u8]) {
    if let Some(tap) = pcap {
        if !tap.capture(now, frame) {
            *pcap = None;
        }
    }
}

/// The socket's RX batch as the interface's [`RxFrames`] (replies in place go to the capture).
struct BatchFrames<'a, 'b>(&'a mut RxBatch<'b>, Option<&'a mut PcapTap>, Instant);

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
            RxAction::Transmit(n) => {
                if let Some(tap) = self.1.as_deref_mut() {
                    let mut frame = self.0.frame(i);
                    let buf = frame.buffer_mut();
                    tap.capture(self.2, &buf[..n.min(buf.len())]);
                }
                RxVerdict::Transmit(n)
            }
        };
        self.0.set_verdict(i, verdict);
    }
}

impl<A: App> Worker<A> {
    pub(super) fn run(mut self) -> WorkerStats {
        if let Some(core) = self.core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                eprintln!("synack: worker {} could not be pinned to core {core}; running unpinned", self.queue);
            }
        }
        for &port in &self.listen_ports {
            let _ = self.iface.listen(port);
        }
        let mut iterations = 0u64;
        let mut housekeeping_at = crate::clock::now();
        let mut drain_deadline = None;
        let mut fault = None;
        while !self.stop.load(Ordering::Relaxed) {
            iterations += 1;
            // One clock read per batch: everything in it happens "now".
            let now = crate::clock::now();
            self.stall_clock.tick(now);
            if drain_deadline.is_none() {
                let grace = self.drain.load(Ordering::Relaxed);
                if grace != 0 {
                    let deadline = now + Duration::from_millis(grace - 1);
                    drain_deadline = Some(deadline);
                    self.iface.drain();
                    self.app.on_drain(&mut self.iface, deadline);
                }
            }
            let iface = &mut self.iface;
            // Frames other workers received for our connections go first: they are older. Up to
            // several batches: after this worker was descheduled, the backlog must shrink even
            // while the other workers keep handing off a batch per iteration.
            let mut received = match &mut self.handoff {
                Some((_, handoff)) => {
                    let socket = &mut self.socket;
                    let pcap = &mut self.pcap;
                    let mut lost = 0;
                    // Not captured here: the worker whose socket received them did.
                    let n = handoff.drain(HANDOFF_BATCHES * self.batch_size, |buf, len| {
                        if !receive_handed_off(iface, now, buf, len, &mut RingSink(socket, pcap.as_mut(), now)) {
                            lost += 1;
                        }
                    });
                    handoff.replies_dropped(lost);
                    n
                }
                None => 0,
            };
            received += match &mut self.handoff {
                // Several workers: each frame is first checked for another worker's port, so
                // they go one by one.
                Some((ownership, handoff)) => {
                    let pcap = &mut self.pcap;
                    self.socket.rx_batch(self.batch_size, |frame| {
                        let len = frame.len();
                        capture(pcap, now, &frame[..len]);
                        match dispatch(ownership, iface, now, frame.buffer_mut(), len, handoff) {
                            // Another worker opened this connection. Handed off or dropped
                            // (counted either way), the frame is ours to release.
                            Dispatched::HandedOff { .. } | Dispatched::Received(RxAction::Release) => {
                                RxVerdict::Release
                            }
                            Dispatched::Received(RxAction::Transmit(n)) => {
                                if pcap.is_some() {
                                    let buf = frame.buffer_mut();
                                    capture(pcap, now, &buf[..n.min(buf.len())]);
                                }
                                RxVerdict::Transmit(n)
                            }
                        }
                    })
                }
                // One worker: the whole batch at once, parsed, looked up, then processed
                // (`receive_batch`).
                None => {
                    let pcap = &mut self.pcap;
                    self.socket.rx_batch_all(self.batch_size, |batch| {
                        if pcap.is_some() {
                            for i in 0..batch.len() {
                                let frame = batch.frame(i);
                                capture(pcap, now, &frame[..frame.len()]);
                            }
                        }
                        iface.receive_batch(now, &mut BatchFrames(batch, pcap.as_mut(), now))
                    })
                }
            };
            for _ in 0..MESSAGES_PER_ITERATION {
                let Some(message) = self.mailbox.try_recv() else { break };
                received += 1;
                self.app.on_message(&mut self.iface, message);
            }
            self.iface.poll(now, &mut self.app, &mut RingSink(&mut self.socket, self.pcap.as_mut(), now));
            if let Err(error) = self.socket.flush() {
                // Transient kick failures are retried inside; this one is for good.
                fault = Some(WorkerFault::Kick { ifname: self.ifname.clone(), queue: self.queue, error });
                break;
            }
            self.socket.reap_completions();
            self.socket.refill();

            if let Some(deadline) = drain_deadline {
                if self.iface.connection_count() == 0 && !self.iface.has_pending_output() {
                    break;
                }
                if now >= deadline {
                    // What is still open is reset, and the application told (on_closed).
                    self.iface.abort_all();
                    self.iface.poll(now, &mut self.app, &mut RingSink(&mut self.socket, self.pcap.as_mut(), now));
                    let _ = self.socket.flush();
                    break;
                }
            }
            if self.neighbors.is_some() && self.iface.has_pending_resolutions() {
                self.read_neighbor_map();
            }
            if now >= housekeeping_at {
                housekeeping_at = now + HOUSEKEEPING;
                self.housekeeping(iterations);
                // A deleted interface leaves the socket bound to nothing: `poll()` answers at
                // once and nothing ever arrives, and an idle worker never kicks to learn it.
                if !self.interface_present() {
                    fault = Some(WorkerFault::InterfaceGone { ifname: self.ifname.clone() });
                    break;
                }
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
                        .min(housekeeping_at)
                        .min(drain_deadline.unwrap_or(housekeeping_at));
                    let sleep = until.saturating_duration_since(now).min(MAX_SLEEP);
                    if !sleep.is_zero() {
                        self.stall_clock.sleeping();
                        self.sleep(sleep);
                    }
                }
            }
        }
        if let Some(fault) = &fault {
            eprintln!("synack: worker {} stops: {fault}", self.queue);
        } else {
            let _ = self.socket.drain_tx(Duration::from_millis(100));
        }
        let mut snapshot = self.snapshot(iterations);
        snapshot.fault = fault;
        if let Ok(mut stats) = self.stats.lock() {
            *stats = snapshot.clone();
        }
        snapshot
    }

    /// Whether the interface the socket is bound to still exists here, with the same index.
    /// A lookup that fails for another reason (no memory for a netlink socket) says yes: only
    /// a definite answer stops the worker.
    fn interface_present(&self) -> bool {
        match xsk::netlink::interface_info(&self.ifname) {
            Ok(info) => info.index == self.ifindex,
            Err(e) => !xsk::netlink::is_no_such_device(&e),
        }
    }

    /// Sleeps in `poll()` until a frame arrives, another worker hands one off, a message
    /// comes, or `timeout`.
    fn sleep(&mut self, timeout: Duration) {
        let timeout = rustix::time::Timespec::try_from(timeout)
            .unwrap_or(rustix::time::Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        let mail_fd = self.mailbox.wake_fd();
        // Both announced (no short circuit): each sender must see the flag or be seen.
        let quiet = self.mailbox.prepare_sleep();
        match &self.handoff {
            None => {
                if quiet {
                    let mut fds = [PollFd::new(&self.socket, PollFlags::IN), PollFd::new(&mail_fd, PollFlags::IN)];
                    // EINTR or another error: the loop comes round again, as after a timeout.
                    let _ = poll(&mut fds, Some(&timeout));
                }
            }
            Some((_, handoff)) => {
                if handoff.prepare_sleep() && quiet {
                    let wake_fd = handoff.wake_fd();
                    let mut fds = [
                        PollFd::new(&self.socket, PollFlags::IN),
                        PollFd::new(&wake_fd, PollFlags::IN),
                        PollFd::new(&mail_fd, PollFlags::IN),
                    ];
                    let _ = poll(&mut fds, Some(&timeout));
                }
                handoff.woke();
            }
        }
        self.mailbox.woke();
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
        self.table.answer_if_asked(self.queue, &self.iface);
        let snapshot = self.snapshot(iterations);
        // Never waits: while a reader (a metrics scrape) holds the lock, this round's figures
        // are skipped and the next round publishes.
        if let Ok(mut stats) = self.stats.try_lock() {
            *stats = snapshot;
        }
    }

    fn snapshot(&mut self, iterations: u64) -> WorkerStats {
        let kernel = self.socket.kernel_stats();
        let accounting = self.socket.accounting();
        WorkerStats {
            queue: self.queue,
            counters: *self.iface.counters(),
            socket: *self.socket.counters(),
            kernel,
            frames_in_use: accounting.in_use(),
            frames_free: accounting.free,
            connections: self.iface.connection_count(),
            time_wait: self.iface.time_wait_count(),
            time_wait_bytes_per_entry: self.iface.time_wait_bytes_per_entry(),
            slots: self.iface.slots_created(),
            rings: self.iface.ring_stats(),
            iterations,
            stalls: self.stall_clock.stalls(),
            handoff: self.handoff.as_ref().map(|(_, h)| h.counters()).unwrap_or_default(),
            fault: None,
        }
    }
}
