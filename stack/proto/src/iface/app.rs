//! What the interface asks of the application and of the frame ring.

use super::Interface;
use crate::tcp::CloseReason;
use crate::time::Instant;

/// A connection of one worker: a slab index and the generation of the slot, so that a handle
/// kept after its connection ended is refused instead of reaching a newer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The slab index (stable for the connection's life; reused after it ends).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// The application's side of a worker: callbacks run to completion inside
/// [`Interface::poll`], with the interface at hand to send, receive, open and close.
///
/// A handle passed to a callback stays valid until [`App::on_closed`] is called for it; after
/// that the interface refuses it.
pub trait App {
    /// A connection accepted on a listening port completed its handshake.
    fn on_accept(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = (iface, conn);
    }
    /// A connection opened with [`Interface::connect`] completed its handshake.
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = (iface, conn);
    }
    /// In-order data can be read.
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = (iface, conn);
    }
    /// Send-buffer space freed after a send was refused or cut short.
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = (iface, conn);
    }
    /// The peer sent FIN; once the readable data is read, `recv` reports the end.
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = (iface, conn);
    }
    /// The connection is over; the handle is invalid from now on. After a normal close (both
    /// FINs exchanged) the data received and not yet read stays readable, and this waits
    /// until it is read, or dropped by [`Interface::close`] or [`Interface::abort`]: nothing
    /// acknowledged to the peer is lost, even though the connection reached TIME-WAIT or
    /// CLOSED (its TIME-WAIT duties pass to a record at once).
    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        let _ = (iface, conn, reason);
    }
    /// The connection's application timer ([`Interface::set_timer`]) is due.
    fn on_timer(&mut self, iface: &mut Interface, conn: ConnId) {
        let _ = (iface, conn);
    }
    /// A message from another thread (`synack::runtime::WorkerHandle::send`), delivered in
    /// the worker's loop: what it means is the application's (a token, an index into a table
    /// the sender shares, ...).
    fn on_message(&mut self, iface: &mut Interface, message: u64) {
        let _ = (iface, message);
    }
    /// A graceful drain started ([`Interface::drain`], called by the runtime on its drain
    /// request): nothing new is accepted; the connections still open at `deadline` are reset
    /// (each then gets [`App::on_closed`] with [`CloseReason::Aborted`]).
    fn on_drain(&mut self, iface: &mut Interface, deadline: Instant) {
        let _ = (iface, deadline);
    }
    /// Called once per [`Interface::poll`], before events are delivered: the place for work
    /// the application starts by itself (a load generator opens connections here).
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        let _ = (iface, now);
    }
    /// When the application next needs [`App::on_poll`] although no frame arrives and no timer
    /// is due (a load generator's next scheduled start): a sleeping worker wakes by then.
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }
}

/// An application that does nothing (a listener-less interface, or tests).
impl App for () {}

/// An application borrowed: a simulator can run apps of different types as `&mut dyn App`
/// while their owner keeps them for a look afterwards.
impl<T: App + ?Sized> App for &mut T {
    fn on_accept(&mut self, iface: &mut Interface, conn: ConnId) {
        (**self).on_accept(iface, conn);
    }
    fn on_connected(&mut self, iface: &mut Interface, conn: ConnId) {
        (**self).on_connected(iface, conn);
    }
    fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
        (**self).on_readable(iface, conn);
    }
    fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
        (**self).on_writable(iface, conn);
    }
    fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
        (**self).on_peer_closed(iface, conn);
    }
    fn on_closed(&mut self, iface: &mut Interface, conn: ConnId, reason: CloseReason) {
        (**self).on_closed(iface, conn, reason);
    }
    fn on_timer(&mut self, iface: &mut Interface, conn: ConnId) {
        (**self).on_timer(iface, conn);
    }
    fn on_message(&mut self, iface: &mut Interface, message: u64) {
        (**self).on_message(iface, message);
    }
    fn on_drain(&mut self, iface: &mut Interface, deadline: Instant) {
        (**self).on_drain(iface, deadline);
    }
    fn on_poll(&mut self, iface: &mut Interface, now: Instant) {
        (**self).on_poll(iface, now);
    }
    fn next_wakeup(&self) -> Option<Instant> {
        (**self).next_wakeup()
    }
}

/// What to do with a received frame after [`Interface::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum RxAction {
    /// Done with it: give the frame back.
    Release,
    /// The frame now holds a reply of this many bytes, written in place: send it.
    Transmit(usize),
}

/// Where the interface writes frames to send: a TX ring, or a vector in tests.
pub trait TxSink {
    /// Lends a free frame buffer to `fill`, which writes a frame into it and returns its
    /// length, or `None` to send nothing (the buffer then stays free for the next call).
    /// Returns `None` when no frame is free, `Some(true)` when a frame was queued for sending,
    /// `Some(false)` when `fill` sent nothing.
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool>;
}

/// A [`TxSink`] that collects frames in memory, with an optional limit on how many it takes.
#[derive(Debug, Default)]
pub struct VecSink {
    /// Frames committed so far.
    pub frames: Vec<Vec<u8>>,
    /// The most frames it accepts before `alloc` returns `None` (`None`: no limit).
    pub limit: Option<usize>,
    buf: Vec<u8>,
}

impl VecSink {
    /// An unlimited sink.
    pub fn new() -> VecSink {
        VecSink::with_limit(None)
    }

    /// A sink that takes at most `limit` frames, of at most 2048 bytes (MTU 1500 and up to 1994).
    pub fn with_limit(limit: Option<usize>) -> VecSink {
        VecSink::with_frame_len(limit, 2048)
    }

    /// A sink that takes at most `limit` frames of at most `frame_len` bytes (at least
    /// [`InterfaceConfig::max_frame_len`](super::InterfaceConfig::max_frame_len) of the
    /// interface that sends into it).
    pub fn with_frame_len(limit: Option<usize>, frame_len: usize) -> VecSink {
        VecSink { frames: Vec::new(), limit, buf: vec![0; frame_len] }
    }
}

impl TxSink for VecSink {
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(&mut self, fill: F) -> Option<bool> {
        if self.limit.is_some_and(|l| self.frames.len() >= l) {
            return None;
        }
        let Some(len) = fill(&mut self.buf) else { return Some(false) };
        self.frames.push(self.buf[..len].to_vec());
        Some(true)
    }
}
