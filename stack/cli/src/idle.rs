//! Deadlines of the served connections: a connection that makes no progress by its deadline
//! is cut, so that quiet or dead clients, or a slowloris trickling a request head, cannot hold
//! the connection table for ever. The per-connection deadline lives in an array indexed by
//! slab index (sized at start, nothing allocates), and a sweep over it runs a few times per
//! timeout from `App::on_poll` (`App::next_wakeup` wakes a sleeping worker for it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use synack::iface::{ConnId, Interface};
use synack::time::Instant;

/// Sweeps per timeout: a connection is cut at most a quarter of the timeout late.
const SWEEPS_PER_TIMEOUT: u32 = 4;

/// What a connection is doing when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (or an echo connection with nothing moving): closed with a FIN.
    Idle,
    /// In the middle of a request: aborted with an RST, its slot freed at once.
    Busy,
}

/// The served connections' deadlines, and the count of those cut (shared by the workers).
pub struct Deadlines {
    timeout: Option<Duration>,
    /// Per slab index: the connection and its deadline, `None` when untracked.
    conns: Vec<Option<(ConnId, Instant)>>,
    next_sweep: Option<Instant>,
    cut: Arc<AtomicU64>,
}

impl Deadlines {
    /// Deadlines for up to `max_connections` connections, `timeout` after their last
    /// progress; `None`: never cut. `cut` counts the connections cut.
    pub fn new(max_connections: usize, timeout: Option<Duration>, cut: Arc<AtomicU64>) -> Deadlines {
        Deadlines { timeout, conns: vec![None; max_connections], next_sweep: None, cut }
    }

    /// The connection made progress (accepted, a request read, data sent): its deadline moves
    /// to a timeout from now.
    pub fn progress(&mut self, iface: &Interface, conn: ConnId) {
        let Some(timeout) = self.timeout else { return };
        let now = iface.now();
        if let Some(slot) = self.conns.get_mut(conn.index() as usize) {
            *slot = Some((conn, now + timeout));
        }
        self.next_sweep.get_or_insert(now + timeout / SWEEPS_PER_TIMEOUT);
    }

    /// The connection is over.
    pub fn forget(&mut self, conn: ConnId) {
        if let Some(slot) = self.conns.get_mut(conn.index() as usize) {
            *slot = None;
        }
    }

    /// Cuts the connections past their deadline (at most every quarter timeout): `phase` says
    /// what each is doing, which decides between a close and an abort.
    pub fn sweep(&mut self, iface: &mut Interface, now: Instant, mut phase: impl FnMut(ConnId) -> Phase) {
        let (Some(timeout), Some(at)) = (self.timeout, self.next_sweep) else { return };
        if now < at {
            return;
        }
        let mut tracked = false;
        for slot in &mut self.conns {
            let Some((conn, deadline)) = *slot else { continue };
            if deadline > now {
                tracked = true;
                continue;
            }
            *slot = None;
            match phase(conn) {
                Phase::Idle => iface.close(conn),
                Phase::Busy => iface.abort(conn),
            }
            self.cut.fetch_add(1, Ordering::Relaxed);
        }
        self.next_sweep = tracked.then(|| now + timeout / SWEEPS_PER_TIMEOUT);
    }

    /// When the next sweep is due, for `App::next_wakeup`.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.next_sweep
    }
}
