//! The per-connection table `synack stat` shows, and the count of connections by state the
//! metrics show, asked of the workers from another thread.
//!
//! A reader raises a worker's flag; the worker, at its next housekeeping (within about 100 ms),
//! copies its connections into a `Vec` (an allocation off the per-segment path, only when
//! asked), or counts them by state, and passes the answer back through a one-slot channel. No
//! lock is taken.

use core::time::Duration;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::iface::Interface;
use crate::tcp::State;

/// One connection of a worker's table.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnInfo {
    /// The queue (worker) it lives on.
    pub queue: u32,
    /// Its TCP state.
    pub state: State,
    /// Our side.
    pub local: SocketAddrV4,
    /// The peer's side.
    pub remote: SocketAddrV4,
    /// Bytes queued for sending (unacknowledged or unsent).
    pub send_queue: usize,
    /// In-order bytes received and not read yet.
    pub recv_queue: usize,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// Retransmission timeout, backoff included.
    pub rto: Duration,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// The peer's advertised window, bytes.
    pub peer_window: u32,
    /// Segments sent again.
    pub retransmits: u64,
}

/// Every state, in the order of [`StateCounts`].
pub const STATES: [State; 11] = [
    State::Closed,
    State::Listen,
    State::SynSent,
    State::SynReceived,
    State::Established,
    State::FinWait1,
    State::FinWait2,
    State::CloseWait,
    State::Closing,
    State::LastAck,
    State::TimeWait,
];

/// Connections of one worker by state, in the order of [`STATES`].
pub type StateCounts = [u64; 11];

/// One kind of question: a flag the reader raises and a one-slot channel for the answer. The
/// table (`synack stat`) and the counts (metrics) have one each, so their readers never take
/// each other's answers.
struct Question<T> {
    asked: AtomicBool,
    reply: Sender<T>,
}

struct Shared {
    table: Question<Vec<ConnInfo>>,
    counts: Question<StateCounts>,
}

/// The worker's end.
pub(crate) struct TableResponder(Arc<Shared>);

/// The reader's end.
#[derive(Clone)]
pub(crate) struct TableAsker {
    shared: Arc<Shared>,
    tables: Receiver<Vec<ConnInfo>>,
    counts: Receiver<StateCounts>,
}

pub(crate) fn pair() -> (TableResponder, TableAsker) {
    let (table_tx, tables) = crossbeam_channel::bounded(1);
    let (counts_tx, counts) = crossbeam_channel::bounded(1);
    let shared = Arc::new(Shared {
        table: Question { asked: AtomicBool::new(false), reply: table_tx },
        counts: Question { asked: AtomicBool::new(false), reply: counts_tx },
    });
    (TableResponder(shared.clone()), TableAsker { shared, tables, counts })
}

impl TableResponder {
    /// Answers a pending request with the interface's connections.
    pub(super) fn answer_if_asked(&self, queue: u32, iface: &Interface) {
        // A reader that gave up leaves its slot full: the answer is dropped, it asks again.
        if self.0.table.asked.swap(false, Ordering::Acquire) {
            let _ = self.0.table.reply.try_send(table(queue, iface));
        }
        if self.0.counts.asked.swap(false, Ordering::Acquire) {
            let mut counts = StateCounts::default();
            for c in iface.connections() {
                if let Some(i) = STATES.iter().position(|&s| s == c.state()) {
                    counts[i] += 1;
                }
            }
            let _ = self.0.counts.reply.try_send(counts);
        }
    }
}

fn table(queue: u32, iface: &Interface) -> Vec<ConnInfo> {
    iface
        .connections()
        .map(|c| {
            let tuple = c.tuple();
            let (peer_window, cwnd) = c.windows();
            ConnInfo {
                queue,
                state: c.state(),
                local: SocketAddrV4::new(tuple.local.addr, tuple.local.port),
                remote: SocketAddrV4::new(tuple.remote.addr, tuple.remote.port),
                send_queue: c.send_queue_len(),
                recv_queue: c.recv_queue_len(),
                srtt: c.srtt(),
                rto: c.rto(),
                cwnd,
                peer_window,
                retransmits: c.stats().retransmitted_segments,
            }
        })
        .collect()
}

impl TableAsker {
    /// Asks for the table (after dropping a stale answer).
    pub(super) fn ask_table(&self) {
        while self.tables.try_recv().is_ok() {}
        self.shared.table.asked.store(true, Ordering::Release);
    }

    /// Asks for the counts by state (after dropping a stale answer).
    pub(super) fn ask_counts(&self) {
        while self.counts.try_recv().is_ok() {}
        self.shared.counts.asked.store(true, Ordering::Release);
    }

    /// The table, if it comes in time.
    pub(super) fn table(&self, timeout: Duration) -> Option<Vec<ConnInfo>> {
        self.tables.recv_timeout(timeout).ok()
    }

    /// The counts by state, if they come in time.
    pub(super) fn counts(&self, timeout: Duration) -> Option<StateCounts> {
        self.counts.recv_timeout(timeout).ok()
    }
}
