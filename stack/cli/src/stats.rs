//! What `serve` and `connect` print about their workers: the per-queue lines at stop, and
//! with `synack serve --stats-interval-s S` one line of the workers' figures every S seconds,
//! for benchmarks that follow TIME_WAIT and memory over time:
//! `stats: t=<s> connections=<n> time_wait=<n> accepted=<n> time_wait_entered=<n>
//! time_wait_evicted=<n> rss_kb=<n>` (sums over the workers; RSS of the process). With
//! `--json` the same figures go out as `synack_report` lines ([`stopped`], [`stats`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use synack::runtime::{Report, WorkerStats};
use synack_report::{KernelSocketStats, Line, Pcap, Queue, SocketCounters, Stats, Stopped};

/// One line per worker: what its interface did, its hand-offs, its table and its socket.
pub fn print_workers(report: &Report) {
    for w in &report.workers {
        let c = &w.counters;
        let h = &w.handoff;
        println!(
            "  queue {}: accepted {} connected {} handed_off {} handoff_received {} handoff_dropped_full {} handoff_replies_dropped {} \
             connections {} time_wait {} ({:.1} bytes per TIME_WAIT entry) slots {} rings_in_use {} rings_free {} \
             ring_bytes {} frames_in_use {} iterations {} loop_stalls_over_1ms {} loop_stalls_over_10ms {} \
             longest_loop_stall_us {} socket {:?} kernel {:?}",
            w.queue,
            c.accepted,
            c.connected,
            h.handed_off,
            h.handoff_received,
            h.handoff_dropped_full,
            h.handoff_replies_dropped,
            w.connections,
            w.time_wait,
            w.time_wait_bytes_per_entry,
            w.slots,
            w.rings.send.in_use + w.rings.recv.in_use,
            w.rings.send.free + w.rings.recv.free,
            w.rings.bytes_created(),
            w.frames_in_use,
            w.iterations,
            w.stalls.over_1ms,
            w.stalls.over_10ms,
            w.stalls.longest.as_micros(),
            w.socket,
            w.kernel
        );
    }
}

/// What `--pcap` captured.
pub fn print_pcap(report: &Report, path: Option<&std::path::Path>) {
    if let (Some(pcap), Some(path)) = (report.pcap, path) {
        println!(
            "  pcap: {} frames written to {}, {} not captured (the writer was behind)",
            pcap.written,
            path.display(),
            pcap.dropped
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

/// The workers' figures at `t_s` seconds since `ready`, summed.
pub fn stats(t_s: f64, workers: &[WorkerStats], rss_kb: u64) -> Stats {
    let sum = |f: fn(&WorkerStats) -> u64| workers.iter().map(f).sum::<u64>();
    Stats {
        // As printed on the text line: a tenth of a second.
        t: (t_s * 10.0).round() / 10.0,
        connections: sum(|w| w.connections as u64),
        time_wait: sum(|w| w.time_wait as u64),
        accepted: sum(|w| w.counters.accepted),
        time_wait_entered: sum(|w| w.counters.time_wait_entered),
        time_wait_evicted: sum(|w| w.counters.time_wait_evicted),
        rss_kb,
    }
}

/// The stats line at `t_s` seconds since `ready`: text, or with `json` a [`Line::Stats`].
pub fn line(t_s: f64, workers: &[WorkerStats], rss_kb: u64, json: bool) -> String {
    let s = stats(t_s, workers, rss_kb);
    if json {
        return Line::Stats(s).to_json();
    }
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "stats: t={t_s:.1} connections={} time_wait={} accepted={} time_wait_entered={} time_wait_evicted={} rss_kb={rss_kb}",
        s.connections, s.time_wait, s.accepted, s.time_wait_entered, s.time_wait_evicted,
    );
    out
}

/// The counters at stop, for `--json`: the interfaces' (every one, zeros included), each
/// worker's, the capture's, and the XDP program's (`xdp`, empty when it was not read).
pub fn stopped(report: &Report, idle_timeouts: Option<u64>, xdp: &[(&'static str, u64)]) -> Stopped {
    let by_name = |pairs: &mut dyn Iterator<Item = (&'static str, u64)>| -> BTreeMap<String, u64> {
        pairs.map(|(name, value)| (name.to_string(), value)).collect()
    };
    Stopped {
        counters: by_name(&mut report.counters.iter()),
        idle_timeouts,
        queues: report.workers.iter().map(queue).collect(),
        pcap: report.pcap.map(|p| Pcap { written: p.written, dropped: p.dropped }),
        xdp: (!xdp.is_empty()).then(|| by_name(&mut xdp.iter().copied())),
    }
}

fn queue(w: &WorkerStats) -> Queue {
    let s = &w.socket;
    Queue {
        queue: w.queue,
        accepted: w.counters.accepted,
        connected: w.counters.connected,
        handed_off: w.handoff.handed_off,
        handoff_received: w.handoff.handoff_received,
        handoff_dropped_full: w.handoff.handoff_dropped_full,
        handoff_replies_dropped: w.handoff.handoff_replies_dropped,
        connections: w.connections as u64,
        time_wait: w.time_wait as u64,
        time_wait_bytes_per_entry: w.time_wait_bytes_per_entry,
        slots: w.slots as u64,
        frames_in_use: w.frames_in_use as u64,
        iterations: w.iterations,
        loop_stalls_over_1ms: w.stalls.over_1ms,
        loop_stalls_over_10ms: w.stalls.over_10ms,
        longest_loop_stall_us: w.stalls.longest.as_micros() as u64,
        rings_in_use: (w.rings.send.in_use + w.rings.recv.in_use) as u64,
        rings_free: (w.rings.send.free + w.rings.recv.free) as u64,
        ring_bytes: w.rings.bytes_created() as u64,
        socket: SocketCounters {
            rx_frames: s.rx_frames,
            rx_batches: s.rx_batches,
            fill_empty_events: s.fill_empty_events,
            refill_pool_empty: s.refill_pool_empty,
            rx_kicks: s.rx_kicks,
            tx_frames: s.tx_frames,
            tx_completed: s.tx_completed,
            tx_kicks: s.tx_kicks,
            tx_kick_errors: s.tx_kick_errors,
            tx_alloc_failures: s.tx_alloc_failures,
            tx_ring_full: s.tx_ring_full,
            tx_dropped: s.tx_dropped,
            invalid_addresses: s.invalid_addresses,
            rx_chained: s.rx_chained,
            rx_chains_dropped: s.rx_chains_dropped,
            tx_chained: s.tx_chained,
        },
        kernel: kernel_stats(&w.kernel),
    }
}

fn kernel_stats(k: &synack::xsk::XdpStats) -> KernelSocketStats {
    KernelSocketStats {
        rx_dropped: k.rx_dropped,
        rx_ring_full: k.rx_ring_full,
        rx_fill_ring_empty: k.rx_fill_ring_empty_descs,
        rx_invalid_descs: k.rx_invalid_descs,
        tx_invalid_descs: k.tx_invalid_descs,
        tx_ring_empty: k.tx_ring_empty_descs,
    }
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
            line(2.0, &[a.clone(), b.clone()], 51_200, false),
            "stats: t=2.0 connections=4 time_wait=1024 accepted=1500 time_wait_entered=1400 time_wait_evicted=0 rss_kb=51200"
        );
        let json = line(2.04, &[a, b], 51_200, true);
        let Ok(Line::Stats(s)) = serde_json::from_str::<Line>(&json) else { panic!("{json}") };
        assert_eq!((s.t, s.connections, s.time_wait, s.accepted, s.rss_kb), (2.0, 4, 1024, 1500, 51_200));
        assert!(rss_kb() > 0);
    }

    #[test]
    fn the_stop_report_has_every_counter_and_each_queue() {
        let mut w = WorkerStats { queue: 3, connections: 2, ..WorkerStats::default() };
        w.counters.accepted = 10;
        w.socket.rx_frames = 60;
        w.socket.tx_frames = 50;
        w.handoff.handed_off = 4;
        let report = Report { counters: w.counters, workers: vec![w], pcap: None };
        let s = stopped(&report, Some(1), &[("redirected", 60)]);
        assert_eq!(s.counter("accepted"), 10);
        assert_eq!(s.counters.len(), report.counters.iter().count(), "zeros included");
        let q = &s.queues[0];
        assert_eq!((q.queue, q.accepted, q.connections, q.handed_off), (3, 10, 2, 4));
        assert_eq!((q.socket.rx_frames, q.socket.tx_frames), (60, 50));
        assert_eq!(s.xdp.as_ref().and_then(|x| x.get("redirected")), Some(&60));
        assert_eq!(stopped(&report, None, &[]).xdp, None);
    }
}
