//! A worker's mailbox: other threads hand a worker's application messages (a `u64` each: a
//! token, an index into the sender's own table, ...) through a [`WorkerHandle`], and the
//! worker delivers them as [`App::on_message`](crate::iface::App::on_message) in its loop.
//!
//! Bounded (a full mailbox refuses a message: `send` never blocks and never allocates), and
//! eventfd-backed: a worker that sleeps in `poll()` polls the mailbox's eventfd too, and a
//! sender writes it only when the worker said it is about to sleep (the hand-off's protocol:
//! a flag raised before sleeping, a fence on both sides), so a busy worker costs its senders no
//! system call.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rustix::event::{eventfd, EventfdFlags};

/// Why [`WorkerHandle::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendMessageError {
    /// The mailbox holds its capacity of undelivered messages.
    #[error("the worker's mailbox is full")]
    Full,
    /// The worker has ended.
    #[error("the worker has ended")]
    Gone,
}

struct Bell {
    eventfd: OwnedFd,
    /// Raised by the worker just before it sleeps.
    sleeping: AtomicBool,
}

/// A handle to one worker, for any thread: [`WorkerHandle::send`] hands it a message and wakes
/// it if it sleeps. Cheap to clone.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: Sender<u64>,
    bell: Arc<Bell>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle").field("queued", &self.tx.len()).finish()
    }
}

impl WorkerHandle {
    /// Queues `message` for the worker's [`App::on_message`](crate::iface::App::on_message)
    /// and wakes the worker if it sleeps. Never blocks.
    pub fn send(&self, message: u64) -> Result<(), SendMessageError> {
        match self.tx.try_send(message) {
            Ok(()) => {
                // Pairs with the fence in `Mailbox::prepare_sleep`: either the sleeper sees the
                // message, or this load sees its flag.
                fence(Ordering::SeqCst);
                if self.bell.sleeping.load(Ordering::Relaxed) && self.bell.sleeping.swap(false, Ordering::AcqRel) {
                    // An error only costs the sleeper its sleep bound.
                    let _ = rustix::io::write(&self.bell.eventfd, &1u64.to_ne_bytes());
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SendMessageError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SendMessageError::Gone),
        }
    }
}

/// The worker's end.
pub(crate) struct Mailbox {
    rx: Receiver<u64>,
    bell: Arc<Bell>,
}

/// A mailbox of `capacity` messages (at least 1) and its handle.
pub(crate) fn mailbox(capacity: usize) -> io::Result<(Mailbox, WorkerHandle)> {
    let (tx, rx) = bounded(capacity.max(1));
    let bell = Arc::new(Bell {
        eventfd: eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?,
        sleeping: AtomicBool::new(false),
    });
    Ok((Mailbox { rx, bell: bell.clone() }, WorkerHandle { tx, bell }))
}

impl Mailbox {
    /// The next message, if any.
    pub(super) fn try_recv(&self) -> Option<u64> {
        self.rx.try_recv().ok()
    }

    /// Announces that the worker is about to sleep. False when a message is already waiting
    /// (do not sleep); after sleeping, or not, call [`Mailbox::woke`].
    pub(super) fn prepare_sleep(&self) -> bool {
        self.bell.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.rx.is_empty()
    }

    /// Lowers the sleeping flag and consumes a pending wake-up (a system call only when a
    /// sender lowered the flag, i.e. rang).
    pub(super) fn woke(&self) {
        if !self.bell.sleeping.swap(false, Ordering::AcqRel) {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(&self.bell.eventfd, &mut count);
        }
    }

    /// The eventfd to poll (readable when a sender woke the worker).
    pub(super) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.bell.eventfd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use rustix::event::{poll, PollFd, PollFlags};

    #[test]
    fn messages_arrive_in_order_and_a_full_mailbox_refuses() {
        let (mailbox, handle) = mailbox(2).unwrap();
        assert_eq!(handle.send(1), Ok(()));
        assert_eq!(handle.clone().send(2), Ok(()));
        assert_eq!(handle.send(3), Err(SendMessageError::Full));
        assert_eq!((mailbox.try_recv(), mailbox.try_recv(), mailbox.try_recv()), (Some(1), Some(2), None));
        drop(mailbox);
        assert_eq!(handle.send(4), Err(SendMessageError::Gone));
    }

    #[test]
    fn a_sleeping_worker_is_woken_by_a_message_and_an_awake_one_is_not_written_to() {
        let (mailbox, handle) = mailbox(8).unwrap();
        let readable = |mailbox: &Mailbox| {
            let fd = mailbox.wake_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
            poll(&mut fds, Some(&zero)).unwrap() == 1
        };
        // Awake: no eventfd write.
        handle.send(7).unwrap();
        assert!(!readable(&mailbox));
        assert!(!mailbox.prepare_sleep(), "a message waits: do not sleep");
        mailbox.woke();
        assert_eq!(mailbox.try_recv(), Some(7));
        // Asleep: the send rings the bell, from another thread.
        assert!(mailbox.prepare_sleep());
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                handle.send(8).unwrap();
            });
            let fd = mailbox.wake_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let timeout = rustix::time::Timespec { tv_sec: 5, tv_nsec: 0 };
            assert_eq!(poll(&mut fds, Some(&timeout)).unwrap(), 1, "woken before the timeout");
        });
        mailbox.woke();
        assert!(!readable(&mailbox), "the wake-up was consumed");
        assert_eq!(mailbox.try_recv(), Some(8));
    }
}
