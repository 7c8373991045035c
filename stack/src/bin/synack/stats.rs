//! What `serve` and `connect` print about their workers: the per-queue lines at stop, and
//! with `synack serve --stats-interval-s S` one line of the workers' figures every S seconds,
//! for benchmarks that follow TIME_WAIT and memory over time:
//! `stats: t=<s> connections=<n> time_wait=<n> accepted=<n> time_wait_entered=<n>
//! time_wait_evicted=<n> rss_kb=<n>` (sums over the workers; RSS of the process).

use std::fmt::Write as _;

use synack::runtime::{Report, WorkerStats};

/// One line per worker: what its interface did, its hand-offs, its table and its socket.
pub fn print_workers(report: &Report) {
    for w in &report.workers {
        let c = &w.counters;
        let h = &w.handoff;
        println!(
            "  queue {}: accepted {} connected {} handed_off {} handoff_received {} handoff_dropped_full {} \
             connections {} time_wait {} ({:.1} bytes per TIME_WAIT entry) slots {} frames_in_use {} iterations {} \
             socket {:?}",
            w.queue,
            c.accepted,
            c.connected,
            h.handed_off,
            h.handoff_received,
            h.handoff_dropped_full,
            w.connections,
            w.time_wait,
            w.time_wait_bytes_per_entry,
            w.slots,
            w.frames_in_use,
            w.iterations,
            w.socket
        );
    }
}

/// Resident memory of this process in KiB (`VmRSS` of `/proc/self/status`), 0 if unreadable.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line["VmRSS:".len()..].split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The stats line at `t_s` seconds since `ready`.
pub fn line(t_s: f64, workers: &[WorkerStats], rss_kb: u64) -> String {
    let sum = |f: fn(&WorkerStats) -> u64| workers.iter().map(f).sum::<u64>();
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "stats: t={t_s:.1} connections={} time_wait={} accepted={} time_wait_entered={} time_wait_evicted={} rss_kb={rss_kb}",
        sum(|w| w.connections as u64),
        sum(|w| w.time_wait as u64),
        sum(|w| w.counters.accepted),
        sum(|w| w.counters.time_wait_entered),
        sum(|w| w.counters.time_wait_evicted),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_sums_the_workers() {
        let mut a = WorkerStats { connections: 3, time_wait: 1000, ..WorkerStats::default() };
        a.counters.accepted = 1500;
        a.counters.time_wait_entered = 1400;
        let b = WorkerStats { connections: 1, time_wait: 24, ..WorkerStats::default() };
        assert_eq!(
            line(2.0, &[a, b], 51_200),
            "stats: t=2.0 connections=4 time_wait=1024 accepted=1500 time_wait_entered=1400 time_wait_evicted=0 rss_kb=51200"
        );
        assert!(rss_kb() > 0);
    }
}
