//! The per-queue lines `serve` and `connect` print when they stop.

use synack::runtime::Report;

/// One line per worker: what its interface did, its hand-offs, its table and its socket.
pub fn print_workers(report: &Report) {
    for w in &report.workers {
        let c = &w.counters;
        let h = &w.handoff;
        println!(
            "  queue {}: accepted {} connected {} handed_off {} handoff_received {} handoff_dropped_full {} \
             connections {} time_wait {} slots {} frames_in_use {} iterations {} socket {:?}",
            w.queue,
            c.accepted,
            c.connected,
            h.handed_off,
            h.handoff_received,
            h.handoff_dropped_full,
            w.connections,
            w.time_wait,
            w.slots,
            w.frames_in_use,
            w.iterations,
            w.socket
        );
    }
}
