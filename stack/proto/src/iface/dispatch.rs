//! The per-frame step of a worker that shares a host with other workers: where a frame of its
//! own receive queue goes ([`dispatch`]: handed to the worker that owns its connection, copied
//! to every other worker, or taken by this worker's [`Interface`]), and how a frame another
//! worker handed over is taken ([`receive_handed_off`]). The runtime's workers and the
//! simulator's (`sim::Workers`) both run it, so the decisions and their order live here only.
//!
//! I/O-free and allocation-free: the queues to the other workers are a [`HandoffQueue`] (the
//! runtime's bounded crossbeam channels, the simulator's in-memory inboxes), the TX ring a
//! [`TxSink`]. An iteration of either worker takes the handed-over frames first (they are
//! older), then the frames of its own queue, then runs `Interface::poll`.

use super::steering::PortOwnership;
use super::{Interface, RxAction, TxSink};
use crate::time::Instant;

/// Why a frame is offered to another worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// That worker opened the frame's connection; this worker does not process the frame.
    Owner,
    /// Every other worker gets a copy (an ARP reply, ICMP fragmentation-needed about a
    /// listener's connection: [`Route::copy_to_others`](super::steering::Route)); this worker
    /// processes the frame too.
    Copy,
}

/// The queues from one worker to the others.
pub trait HandoffQueue {
    /// Queues a copy of `frame` for worker `to`. Returns false when it could not (the queue,
    /// or the sender's buffers, full): the frame is lost for `to`, and the queue counts it. A
    /// hand-off never blocks.
    fn offer(&mut self, to: usize, frame: &[u8], why: Offer) -> bool;
}

/// What [`dispatch`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Dispatched {
    /// Offered to the worker that owns its connection (`queued` false: lost on the way,
    /// counted by the queue). Either way the frame is the receiver's to release.
    HandedOff {
        /// Whether the owner's queue took it.
        queued: bool,
    },
    /// Taken by this worker's interface: what [`Interface::receive`] said.
    Received(RxAction),
}

/// Routes a frame of this worker's receive queue, `len` bytes at the start of `frame` (the
/// whole buffer, for a reply written in place): first copies to the other workers, if
/// [`PortOwnership::route`] asks for them, then either the owner's hand-off or `iface`.
#[inline]
pub fn dispatch<H: HandoffQueue>(
    ownership: &PortOwnership,
    iface: &mut Interface,
    now: Instant,
    frame: &mut [u8],
    len: usize,
    handoff: &mut H,
) -> Dispatched {
    let received = &frame[..len.min(frame.len())];
    let route = ownership.route(received, |port| iface.is_listening(port));
    if route.copy_to_others {
        for other in (0..ownership.workers).filter(|&w| w != ownership.me) {
            // A lost copy is counted by the queue; this worker takes the frame regardless.
            handoff.offer(other, received, Offer::Copy);
        }
    }
    if let Some(owner) = route.owner {
        return Dispatched::HandedOff { queued: handoff.offer(owner, received, Offer::Owner) };
    }
    Dispatched::Received(iface.receive(now, frame, len))
}

/// Feeds `iface` a frame another worker handed over, `len` bytes at the start of `buf`. A reply
/// written in place (an RST, an ACK from a TIME_WAIT record) is copied into a frame of `sink`:
/// `buf` belongs to the hand-off, not to this worker's TX ring. Returns false when the reply
/// found no frame in `sink` and was lost (the caller counts it).
#[inline]
pub fn receive_handed_off<S: TxSink>(
    iface: &mut Interface,
    now: Instant,
    buf: &mut [u8],
    len: usize,
    sink: &mut S,
) -> bool {
    match iface.receive(now, buf, len) {
        RxAction::Release => true,
        RxAction::Transmit(n) => {
            let reply = &buf[..n.min(buf.len())];
            let sent = sink.send_with(|out| {
                let n = reply.len().min(out.len());
                out[..n].copy_from_slice(&reply[..n]);
                Some(n)
            });
            sent == Some(true)
        }
    }
}
