//! `--metrics ADDR:PORT`: Prometheus text exposition (format 0.0.4) at `/metrics`, served by a
//! plain kernel TCP listener on a thread of its own, off the workers. A scrape reads the figures
//! the workers publish about every 100 ms ([`StatsSource`]); the workers never wait for it.
//!
//! Every counter is by queue: the interface's (frames, drops by reason, SYN cookies, TIME_WAIT,
//! loss recovery), the AF_XDP socket's, the hand-offs'; gauges for connections, TIME_WAIT
//! records and frames; the XDP program's counters (all queues: they are per CPU); build info.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Context;
use synack::runtime::{StateCounts, StatsSource, WorkerStats, STATES};

/// How long a scrape waits for the workers' counts by state (they answer within about 100 ms).
const STATES_TIMEOUT: Duration = Duration::from_millis(500);

/// A bound metrics listener, not serving yet (bound before the runtime starts, so that a busy
/// address fails the command at once).
pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Endpoint> {
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("cannot listen for --metrics on {addr}: use a free port on an address of this host")
        })?;
        Ok(Endpoint { listener })
    }

    /// Serves scrapes from a thread of its own until the process exits.
    pub fn serve(self, source: StatsSource, command: &'static str) -> anyhow::Result<()> {
        std::thread::Builder::new()
            .name("synack-metrics".into())
            .spawn(move || {
                for stream in self.listener.incoming().flatten() {
                    // One scrape at a time: a scraper is one client, and a stuck one times out.
                    let _ = answer(stream, &source, command);
                }
            })
            .context("cannot start the metrics thread")?;
        Ok(())
    }
}

fn answer(stream: TcpStream, source: &StatsSource, command: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers, up to the empty line (ignored).
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = if request.starts_with("GET ") && (path == "/metrics" || path == "/") {
        let workers = source.workers();
        let states = source.connection_states(STATES_TIMEOUT);
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&workers, &states, &source.xdp_counters(), command),
        )
    } else {
        ("404 Not Found", "text/plain", "synack serves only GET /metrics\n".to_string())
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// One metric family: its help, its type and a sample per queue.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A family with one sample per worker.
    fn per_queue(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        workers: &[WorkerStats],
        value: impl Fn(&WorkerStats) -> f64,
    ) {
        self.header(name, kind, help);
        for w in workers {
            let _ = writeln!(self.out, "{name}{{queue=\"{}\"}} {}", w.queue, value(w));
        }
    }
}

/// The interface counters that are drops, by reason, and the rest by name.
fn is_drop(name: &str) -> Option<&str> {
    name.strip_prefix("drop_")
}

/// The exposition text of the workers' figures.
pub fn render(
    workers: &[WorkerStats],
    states: &[Option<StateCounts>],
    xdp: &[(&'static str, u64)],
    command: &str,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let mut f = Family { out: &mut out };
    f.header("synack_build_info", "gauge", "The synack binary: version and the command it runs.");
    let _ = writeln!(f.out, "synack_build_info{{version=\"{}\",command=\"{command}\"}} 1", env!("CARGO_PKG_VERSION"));
    f.per_queue("synack_connections", "gauge", "Connections in the table.", workers, |w| w.connections as f64);
    f.header("synack_connections_by_state", "gauge", "Connections in the table by TCP state (asked of the workers).");
    for (w, counts) in workers.iter().zip(states) {
        for (state, n) in STATES.iter().zip(counts.iter().flatten()) {
            let _ = writeln!(f.out, "synack_connections_by_state{{queue=\"{}\",state=\"{state}\"}} {n}", w.queue);
        }
    }
    f.per_queue("synack_time_wait_records", "gauge", "TIME_WAIT records held (2MSL).", workers, |w| w.time_wait as f64);
    f.per_queue("synack_connection_slots", "gauge", "Connection slots created (high-water mark).", workers, |w| {
        w.slots as f64
    });
    f.per_queue("synack_rings_in_use", "gauge", "Send and receive rings lent to connections.", workers, |w| {
        (w.rings.send.in_use + w.rings.recv.in_use) as f64
    });
    f.per_queue("synack_rings_free", "gauge", "Send and receive rings allocated and not lent.", workers, |w| {
        (w.rings.send.free + w.rings.recv.free) as f64
    });
    f.per_queue("synack_ring_bytes", "gauge", "Bytes of rings allocated (high-water mark).", workers, |w| {
        w.rings.bytes_created() as f64
    });
    f.per_queue("synack_umem_frames_in_use", "gauge", "UMEM frames held by the kernel or in flight.", workers, |w| {
        w.frames_in_use as f64
    });
    f.per_queue("synack_umem_frames_free", "gauge", "UMEM frames free in the pool.", workers, |w| w.frames_free as f64);
    f.per_queue("synack_loop_iterations_total", "counter", "Worker loop iterations.", workers, |w| w.iterations as f64);
    f.per_queue(
        "synack_loop_stalls_total",
        "counter",
        "Gaps of 1 ms or more between busy iterations of a worker's loop (busy elsewhere or off its core).",
        workers,
        |w| w.stalls.over_1ms as f64,
    );
    f.per_queue(
        "synack_loop_stalls_10ms_total",
        "counter",
        "Gaps of 10 ms or more between busy iterations of a worker's loop.",
        workers,
        |w| w.stalls.over_10ms as f64,
    );
    f.per_queue(
        "synack_loop_longest_stall_seconds",
        "gauge",
        "The longest gap between busy iterations.",
        workers,
        |w| w.stalls.longest.as_secs_f64(),
    );

    // The interface's counters: drops as one family by reason, the others one family each.
    let names: Vec<&'static str> =
        workers.first().map(|w| w.counters.iter().map(|(n, _)| n).collect()).unwrap_or_default();
    f.header("synack_drops_total", "counter", "Frames or segments dropped, by reason.");
    for w in workers {
        for (name, value) in w.counters.iter() {
            if let Some(reason) = is_drop(name) {
                let _ = writeln!(f.out, "synack_drops_total{{queue=\"{}\",reason=\"{reason}\"}} {value}", w.queue);
            }
        }
    }
    for (i, name) in names.iter().enumerate().filter(|(_, n)| is_drop(n).is_none()) {
        let help = format!("Interface counter {name} (synack::iface::Counters).");
        f.per_queue(&format!("synack_{name}_total"), "counter", &help, workers, |w| {
            w.counters.iter().nth(i).map_or(0.0, |(_, v)| v as f64)
        });
    }

    // The kernel's drops of each socket: frames synack never saw.
    f.per_queue(
        "synack_xsk_kernel_rx_ring_full_total",
        "counter",
        "Frames the kernel dropped because the socket's RX ring was full (the worker fell behind).",
        workers,
        |w| w.kernel.rx_ring_full as f64,
    );
    f.per_queue(
        "synack_xsk_kernel_rx_fill_ring_empty_total",
        "counter",
        "Times a frame arrived while the socket's fill ring was empty.",
        workers,
        |w| w.kernel.rx_fill_ring_empty_descs as f64,
    );
    f.per_queue(
        "synack_xsk_kernel_rx_dropped_total",
        "counter",
        "Frames the kernel could not deliver to the socket (no fill frame, or too long).",
        workers,
        |w| w.kernel.rx_dropped as f64,
    );
    f.per_queue(
        "synack_xsk_kernel_invalid_descs_total",
        "counter",
        "Invalid descriptors the kernel found in the fill and TX rings (never expected).",
        workers,
        |w| (w.kernel.rx_invalid_descs + w.kernel.tx_invalid_descs) as f64,
    );

    // The AF_XDP socket's counters. Destructured whole: a new field fails to compile here.
    type Get = fn(&WorkerStats) -> u64;
    let socket: [(&str, Get); 16] = [
        ("rx_frames", |w| w.socket.rx_frames),
        ("rx_batches", |w| w.socket.rx_batches),
        ("fill_empty_events", |w| w.socket.fill_empty_events),
        ("refill_pool_empty", |w| w.socket.refill_pool_empty),
        ("rx_kicks", |w| w.socket.rx_kicks),
        ("tx_frames", |w| w.socket.tx_frames),
        ("tx_completed", |w| w.socket.tx_completed),
        ("tx_kicks", |w| w.socket.tx_kicks),
        ("tx_kick_errors", |w| w.socket.tx_kick_errors),
        ("tx_alloc_failures", |w| w.socket.tx_alloc_failures),
        ("tx_dropped", |w| w.socket.tx_dropped),
        ("invalid_addresses", |w| w.socket.invalid_addresses),
        ("tx_ring_full", |w| w.socket.tx_ring_full),
        ("rx_chained", |w| w.socket.rx_chained),
        ("rx_chains_dropped", |w| w.socket.rx_chains_dropped),
        ("tx_chained", |w| w.socket.tx_chained),
    ];
    let synack::xsk::Counters {
        rx_frames: _,
        rx_batches: _,
        fill_empty_events: _,
        refill_pool_empty: _,
        rx_kicks: _,
        tx_frames: _,
        tx_completed: _,
        tx_kicks: _,
        tx_kick_errors: _,
        tx_alloc_failures: _,
        tx_dropped: _,
        invalid_addresses: _,
        tx_ring_full: _,
        rx_chained: _,
        rx_chains_dropped: _,
        tx_chained: _,
    } = synack::xsk::Counters::default();
    for (name, get) in socket {
        let help = format!("AF_XDP socket counter {name}.");
        f.per_queue(&format!("synack_xsk_{name}_total"), "counter", &help, workers, |w| get(w) as f64);
    }

    let synack::runtime::HandoffCounters {
        handed_off: _,
        handoff_received: _,
        handoff_dropped_full: _,
        handoff_replies_dropped: _,
    } = Default::default();
    let handoff: [(&str, &str, Get); 4] = [
        ("handed_off", "Frames for another worker's port passed on.", |w| w.handoff.handed_off),
        ("handoff_received", "Frames other workers passed to this one.", |w| w.handoff.handoff_received),
        ("handoff_dropped_full", "Frames for another worker dropped: its inbox was full.", |w| {
            w.handoff.handoff_dropped_full
        }),
        ("handoff_replies_dropped", "Replies to handed-off frames lost for want of a TX frame.", |w| {
            w.handoff.handoff_replies_dropped
        }),
    ];
    for (name, help, get) in handoff {
        f.per_queue(&format!("synack_{name}_total"), "counter", help, workers, |w| get(w) as f64);
    }

    if !xdp.is_empty() {
        f.header(
            "synack_xdp_packets_total",
            "counter",
            "Packets the XDP program saw, by verdict and reason (all queues).",
        );
        for (name, value) in xdp {
            let _ = writeln!(f.out, "synack_xdp_packets_total{{result=\"{name}\"}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_a_sample_per_queue_and_drops_have_reasons() {
        let mut a = WorkerStats { queue: 0, connections: 3, time_wait: 7, ..WorkerStats::default() };
        a.counters.accepted = 11;
        a.counters.drop_bad_checksum = 2;
        a.socket.rx_frames = 40;
        a.handoff.handed_off = 5;
        let b = WorkerStats { queue: 1, ..WorkerStats::default() };
        let mut established = StateCounts::default();
        established[4] = 3;
        let text = render(&[a, b], &[Some(established), None], &[("redirected", 9)], "serve");
        assert!(text.contains("synack_build_info{version=\"0.1.0\",command=\"serve\"} 1"));
        assert!(text.contains("synack_connections{queue=\"0\"} 3\nsynack_connections{queue=\"1\"} 0\n"));
        assert!(text.contains("synack_time_wait_records{queue=\"0\"} 7"));
        assert!(text.contains("synack_connections_by_state{queue=\"0\",state=\"ESTABLISHED\"} 3"), "{text}");
        assert!(text.contains("synack_connections_by_state{queue=\"0\",state=\"SYN-RECEIVED\"} 0"));
        assert!(!text.contains("synack_connections_by_state{queue=\"1\""), "queue 1 did not answer");
        assert!(text.contains("synack_accepted_total{queue=\"0\"} 11"));
        assert!(text.contains("synack_drops_total{queue=\"0\",reason=\"bad_checksum\"} 2"));
        assert!(text.contains("synack_xsk_rx_frames_total{queue=\"0\"} 40"));
        assert!(text.contains("synack_handed_off_total{queue=\"0\"} 5"));
        assert!(text.contains("synack_xdp_packets_total{result=\"redirected\"} 9"));
        assert!(!text.contains("synack_drop_"), "drops are one family");
        // Every sample line belongs to the family declared above it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&format!("{family}{{")), "{line} outside {family}");
            }
        }
    }
}
