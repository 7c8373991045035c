//! Hand-off of received frames between workers: a segment that arrives on one worker's queue
//! but belongs to a connection another worker opened is copied into a preallocated buffer and
//! passed to the owner through a bounded queue.
//!
//! Every worker has a pool of `capacity` buffers, made at start, and an inbox: a bounded
//! crossbeam channel of the same capacity. Handing off takes one of the sender's buffers,
//! copies the frame into it and pushes it on the owner's inbox; the owner feeds it to its
//! interface and sends the buffer back to the sender's pool (a bounded channel too, which
//! cannot be full: it has room for every buffer of the pool). Buffers move, as boxes; nothing
//! is allocated per frame. When the sender has no free buffer or the owner's inbox is full the
//! frame is dropped and counted (`handoff_dropped_full`): a hand-off never blocks.
//!
//! Waking: a worker in sleeping poll mode sleeps in `poll()` on its AF_XDP socket. A hand-off
//! must wake it, or the frame would wait up to the sleep bound (100 ms). Each worker has an
//! eventfd that it polls together with its socket, and a flag it raises before sleeping; a
//! sender that pushes to a sleeping worker clears the flag and writes the eventfd (one
//! `write()` per sleep, not per frame). A worker that busy-polls never raises the flag, so the
//! hand-off costs it no system call. A short bounded sleep would have been simpler but adds
//! up to its length to every handed-off segment of an idle worker, and wakes idle workers for
//! nothing; an eventfd wake-up costs scheduler latency only (14-83 µs measured here by
//! `a_sleeping_worker_is_woken_by_a_hand_off_and_only_then`, on a loaded 2-core machine).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rustix::event::{eventfd, EventfdFlags};

use crate::iface::dispatch::{HandoffQueue, Offer};

/// What one worker's hand-offs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoffCounters {
    /// Frames this worker received for another worker's port and passed on.
    pub handed_off: u64,
    /// Frames other workers passed to this one, fed to its interface.
    pub handoff_received: u64,
    /// Frames for another worker dropped because its inbox (or this worker's buffer pool) was
    /// full.
    pub handoff_dropped_full: u64,
    /// Replies to handed-off frames (an RST, an ACK from TIME_WAIT) not sent: no TX frame.
    pub handoff_replies_dropped: u64,
}

impl core::ops::AddAssign for HandoffCounters {
    fn add_assign(&mut self, other: HandoffCounters) {
        self.handed_off += other.handed_off;
        self.handoff_received += other.handoff_received;
        self.handoff_dropped_full += other.handoff_dropped_full;
        self.handoff_replies_dropped += other.handoff_replies_dropped;
    }
}

/// A frame in transit: one of its origin's buffers, `len` bytes of it received.
struct HandoffFrame {
    buf: Box<[u8]>,
    len: usize,
    origin: usize,
}

/// Wakes a worker that sleeps in `poll()`.
struct Waker {
    eventfd: OwnedFd,
    /// Raised by the worker just before it sleeps.
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        let eventfd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Waker { eventfd, sleeping: AtomicBool::new(false) })
    }

    /// Called after a push: wakes the worker if it sleeps (or is about to).
    fn wake(&self) {
        // Pairs with the fence in `prepare_sleep`: either the sleeper sees the frame in its
        // inbox, or this load sees its flag (the store-load order of both sides is total).
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            // A full counter (2^64 - 2 unread wake-ups) cannot happen; an error only costs
            // the sleeper its bound (it wakes by itself).
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }
}

/// One worker's end of the hand-off mesh.
pub(crate) struct Handoff {
    me: usize,
    inbox: Receiver<HandoffFrame>,
    /// Every worker's inbox, by worker (ours included, unused).
    inboxes: Box<[Sender<HandoffFrame>]>,
    /// Our free buffers.
    free: Receiver<HandoffFrame>,
    /// Every worker's free pool, by worker: where a drained buffer goes home.
    pools: Box<[Sender<HandoffFrame>]>,
    wakers: Box<[Arc<Waker>]>,
    /// Bytes per buffer.
    frame_len: usize,
    counters: HandoffCounters,
}

/// Makes the hand-off ends of `workers` workers, each with `capacity` buffers of `frame_len`
/// bytes and an inbox of `capacity` frames. Everything is allocated here.
pub(crate) fn mesh(workers: usize, capacity: usize, frame_len: usize) -> io::Result<Vec<Handoff>> {
    let capacity = capacity.max(1);
    let inboxes: Vec<_> = (0..workers).map(|_| bounded::<HandoffFrame>(capacity)).collect();
    let pools: Vec<_> = (0..workers).map(|_| bounded::<HandoffFrame>(capacity)).collect();
    let wakers = (0..workers).map(|_| Waker::new().map(Arc::new)).collect::<io::Result<Vec<_>>>()?;
    for (origin, (tx, _)) in pools.iter().enumerate() {
        for _ in 0..capacity {
            let frame = HandoffFrame { buf: vec![0u8; frame_len].into_boxed_slice(), len: 0, origin };
            tx.try_send(frame).map_err(|_| io::Error::other("hand-off pool sized below its capacity"))?;
        }
    }
    let inbox_senders: Box<[_]> = inboxes.iter().map(|(tx, _)| tx.clone()).collect();
    let pool_senders: Box<[_]> = pools.iter().map(|(tx, _)| tx.clone()).collect();
    let wakers: Box<[_]> = wakers.into_boxed_slice();
    Ok(inboxes
        .into_iter()
        .zip(pools)
        .enumerate()
        .map(|(me, ((_, inbox), (_, free)))| Handoff {
            me,
            inbox,
            inboxes: inbox_senders.clone(),
            free,
            pools: pool_senders.clone(),
            wakers: wakers.clone(),
            frame_len,
            counters: HandoffCounters::default(),
        })
        .collect())
}

impl Handoff {
    /// What this end did so far.
    pub(super) fn counters(&self) -> HandoffCounters {
        self.counters
    }

    /// Copies `frame` into a free buffer and passes it to worker `owner`, waking it if it
    /// sleeps. Returns false (and counts a drop) when no buffer is free, the owner's inbox is
    /// full, or `owner` is no worker: the caller releases its frame either way.
    pub(super) fn offer(&mut self, owner: usize, frame: &[u8]) -> bool {
        // Checked before a buffer is taken: not a hand-off (a bug of the caller), or a frame
        // larger than a buffer (a UMEM frame: no socket delivers one).
        if owner == self.me || owner >= self.inboxes.len() || frame.len() > self.frame_len {
            self.counters.handoff_dropped_full += 1;
            return false;
        }
        let Ok(mut slot) = self.free.try_recv() else {
            self.counters.handoff_dropped_full += 1;
            return false;
        };
        slot.buf[..frame.len()].copy_from_slice(frame);
        slot.len = frame.len();
        match self.inboxes[owner].try_send(slot) {
            Ok(()) => {
                self.counters.handed_off += 1;
                self.wakers[owner].wake();
                true
            }
            Err(TrySendError::Full(slot) | TrySendError::Disconnected(slot)) => {
                // Back to our own pool, which has room for all our buffers.
                let _ = self.pools[self.me].try_send(slot);
                self.counters.handoff_dropped_full += 1;
                false
            }
        }
    }

    /// Feeds at most `max` frames from the inbox to `receive(buffer, len)`, which may write a
    /// reply into the buffer in place, and sends each buffer home. Returns how many.
    pub(super) fn drain(&mut self, max: usize, mut receive: impl FnMut(&mut [u8], usize)) -> usize {
        let mut n = 0;
        while n < max {
            let Ok(mut frame) = self.inbox.try_recv() else { break };
            n += 1;
            self.counters.handoff_received += 1;
            let len = frame.len;
            receive(&mut frame.buf, len);
            let origin = frame.origin;
            // The origin's pool has room for every buffer it owns, so this cannot fail; were it
            // to, the buffer would be freed, and the origin would hand off with one fewer.
            let _ = self.pools[origin].try_send(frame);
        }
        n
    }

    /// Counts replies to handed-off frames that found no TX frame.
    pub(super) fn replies_dropped(&mut self, n: u64) {
        self.counters.handoff_replies_dropped += n;
    }

    /// Whether frames are waiting.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Announces that this worker is about to sleep. Returns false when a frame is already
    /// waiting (do not sleep); after sleeping, or not, call [`Handoff::woke`].
    pub(super) fn prepare_sleep(&self) -> bool {
        let waker = &self.wakers[self.me];
        waker.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.inbox.is_empty()
    }

    /// Lowers the sleeping flag and consumes a pending wake-up.
    pub(super) fn woke(&self) {
        let waker = &self.wakers[self.me];
        waker.sleeping.store(false, Ordering::Relaxed);
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&waker.eventfd, &mut count);
    }

    /// The eventfd to poll (readable when another worker woke this one).
    pub(super) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wakers[self.me].eventfd.as_fd()
    }
}

/// The mesh as `dispatch` offers to it: a copy (an ARP reply) and a hand-off to the owner
/// take a buffer alike, and count alike (`handed_off`, `handoff_dropped_full`).
impl HandoffQueue for Handoff {
    #[inline]
    fn offer(&mut self, to: usize, frame: &[u8], _why: Offer) -> bool {
        Handoff::offer(self, to, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use rustix::event::{poll, PollFd, PollFlags};

    #[test]
    fn frames_reach_the_owner_intact_and_buffers_come_home() {
        let mut ends = mesh(2, 4, 64).unwrap();
        let (a, b) = ends.split_at_mut(1);
        let (w0, w1) = (&mut a[0], &mut b[0]);
        for round in 0..10u8 {
            // Four at a time, ten times over: only possible if every buffer went home.
            for i in 0..4u8 {
                assert!(w0.offer(1, &[round, i, 0xaa]), "round {round} frame {i}");
            }
            let mut seen = Vec::new();
            assert_eq!(w1.drain(16, |buf, len| seen.push(buf[..len].to_vec())), 4);
            assert_eq!(seen, (0..4u8).map(|i| vec![round, i, 0xaa]).collect::<Vec<_>>());
        }
        assert_eq!(w0.counters(), HandoffCounters { handed_off: 40, ..HandoffCounters::default() });
        assert_eq!(w1.counters(), HandoffCounters { handoff_received: 40, ..HandoffCounters::default() });
    }

    #[test]
    fn a_full_inbox_or_pool_is_a_counted_drop_never_a_block() {
        let mut ends = mesh(3, 2, 64).unwrap();
        assert!(ends[0].offer(2, b"one"));
        assert!(ends[0].offer(2, b"two"));
        // Worker 0 has no buffer left: dropped.
        assert!(!ends[0].offer(2, b"three"));
        // Worker 1 has buffers, but worker 2's inbox is full: dropped, and the buffer kept.
        assert!(!ends[1].offer(2, b"four"));
        assert_eq!(ends[0].counters().handoff_dropped_full, 1);
        assert_eq!(ends[1].counters().handoff_dropped_full, 1);
        // Not a worker, ourselves, or too large: dropped too, not a panic.
        assert!(!ends[1].offer(7, b"x"));
        assert!(!ends[1].offer(1, b"x"));
        assert!(!ends[1].offer(0, &[0u8; 65]));
        assert_eq!(ends[1].counters().handoff_dropped_full, 4);
        let mut got = Vec::new();
        assert_eq!(ends[2].drain(1, |buf, len| got.push(buf[..len].to_vec())), 1, "drain is bounded");
        assert_eq!(ends[2].drain(8, |buf, len| got.push(buf[..len].to_vec())), 1);
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        // Worker 1 kept both its buffers; worker 0 got both back.
        assert!(ends[1].offer(2, b"a") && ends[1].offer(0, b"b"));
        assert!(ends[0].offer(1, b"c") && ends[0].offer(1, b"d"));
    }

    /// Whether `fd` becomes readable within `timeout`.
    fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = rustix::time::Timespec::try_from(timeout).unwrap();
        poll(&mut fds, Some(&timeout)).unwrap() == 1
    }

    #[test]
    fn a_sleeping_worker_is_woken_by_a_hand_off_and_only_then() {
        let mut ends = mesh(2, 4, 64).unwrap();
        let sleeper = ends.pop().unwrap();
        let mut sender = ends.pop().unwrap();
        // Nothing pending: the worker may sleep, and its eventfd stays quiet.
        assert!(sleeper.prepare_sleep());
        assert!(!readable(sleeper.wake_fd(), Duration::ZERO));
        let started = std::time::Instant::now();
        let offered_at = std::thread::scope(|s| {
            let sending = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                let at = std::time::Instant::now();
                assert!(sender.offer(1, b"wake up"));
                at
            });
            assert!(readable(sleeper.wake_fd(), Duration::from_secs(5)), "woken, not timed out");
            let woken_at = std::time::Instant::now();
            let offered_at = sending.join().unwrap();
            println!("wake-up latency: {:?}", woken_at.saturating_duration_since(offered_at));
            offered_at
        });
        assert!(offered_at.duration_since(started) < Duration::from_secs(2));
        sleeper.woke();
        assert!(sleeper.has_pending());
        assert!(!readable(sleeper.wake_fd(), Duration::ZERO), "the wake-up was consumed");
        // A worker that announces sleep with a frame waiting is told not to sleep.
        assert!(!sleeper.prepare_sleep());
        sleeper.woke();
        // An awake worker (flag down) is not written to: its eventfd stays quiet.
        let mut other = mesh(2, 4, 64).unwrap();
        let awake = other.pop().unwrap();
        assert!(other[0].offer(1, b"x"));
        assert!(!readable(awake.wake_fd(), Duration::ZERO));
    }
}
