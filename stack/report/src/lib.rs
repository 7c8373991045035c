//! The machine-readable output of the `synack` binary: with `--json`, `serve`, `connect` and
//! `load` print one JSON object per line on stdout, each a [`Line`] tagged by `"type"`. The
//! binary builds these values and prints them; the tests (`tests/`) and the benchmark
//! (`bench/`) read them back with [`parse_lines`], so both sides use the same types and a
//! renamed field is a compile error rather than a silently wrong figure.
//!
//! The human-readable output (the default) is unchanged and not meant for programs; the one
//! exception, `load summary: {json}`, carries a [`LoadSummary`].
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// `serve` accepts connections.
    Ready(Ready),
    /// `serve --stats-interval-s S`: the workers' figures every S seconds.
    Stats(Stats),
    /// `serve` got SIGTERM/SIGINT and drains for `drain_s` seconds.
    Draining(Draining),
    /// `connect` with one connection: its echo arrived.
    Received(Received),
    /// `connect` with one connection: it closed normally.
    Closed(Closed),
    /// `connect`: what the exchanges did.
    ConnectSummary(ConnectSummary),
    /// `load`: one second of the run.
    LoadSecond(LoadSecond),
    /// `load`: the whole run.
    LoadSummary(LoadSummary),
    /// `serve`, `connect` and `load` at stop: the counters.
    Stopped(Stopped),
}

impl Line {
    /// The line as one JSON object, without a newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }
}

/// Every line of `text` that starts with `{`, read as a [`Line`]; other lines (a tool's
/// human-readable output mixed in) are skipped. `Err` names the first JSON line that is not a
/// `Line`.
pub fn parse_lines(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a synack report line ({e}): {l}")))
        .collect()
}

/// `serve` is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The app served (`echo`, `http`, ...).
    pub app: String,
    pub ip: String,
    pub port: u16,
    pub iface: String,
    pub queues: u32,
    /// `shared` or `dedicated`.
    pub address_mode: String,
    /// Checksums of received frames are verified (not `--trust-checksums`).
    pub checksums_verified: bool,
}

/// The `stats:` figures, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Seconds since `ready`.
    pub t: f64,
    /// Connections in the tables.
    pub connections: u64,
    /// TIME_WAIT records.
    pub time_wait: u64,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections that entered TIME_WAIT so far.
    pub time_wait_entered: u64,
    /// Records ended early for lack of room so far.
    pub time_wait_evicted: u64,
    /// Resident memory of the process in KiB.
    pub rss_kb: u64,
}

/// `serve` drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    pub drain_s: u64,
}

/// `connect` (one connection): the echo arrived whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub bytes: u64,
    /// SHA-256 of the bytes received, in hex.
    pub sha256: String,
}

/// `connect` (one connection): it closed normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {}

/// What `connect` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectSummary {
    /// Connections asked for.
    pub connections: u64,
    /// Connections whose echo arrived whole.
    pub echoed: u64,
    /// Connections that then closed normally.
    pub closed: u64,
    /// Bytes sent (and echoed) per connection.
    pub bytes: u64,
    pub workers: u64,
    /// From the start to the last close (or the error).
    pub elapsed_s: f64,
    /// Bytes moved both ways over `elapsed_s`, in Mbit/s.
    pub mbit_per_s: f64,
    /// Until the last echo arrived.
    pub transfer_s: f64,
    /// Why it failed, if it did (the binary then exits non-zero).
    pub error: Option<String>,
}

/// One second of `synack load`, summed over the workers (the `load: t=...` line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSecond {
    /// The second's end, in seconds since the start.
    pub t: u64,
    /// Connections that ended normally in that second.
    pub conn_per_s: u64,
    /// Complete responses in that second.
    pub req_per_s: u64,
    /// Latency quantiles in microseconds (from each request's scheduled start).
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Failed connections and requests in that second.
    pub errors: u64,
    /// TIME_WAIT records held at the end of the second.
    pub time_wait: u64,
    /// Ports reused from TIME_WAIT in that second.
    pub reused: u64,
}

/// Failures of `synack load` by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadErrors {
    pub refused: u64,
    pub reset: u64,
    pub timed_out: u64,
    pub bad_response: u64,
    pub connect_failed: u64,
    pub aborted: u64,
}

/// The whole `synack load` run (also the JSON of the `load summary:` line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub seconds: u64,
    pub connections: u64,
    pub requests: u64,
    pub errors: u64,
    pub conn_per_s: f64,
    pub req_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Ports reused from TIME_WAIT over the run.
    pub port_reuses: u64,
    pub time_wait_peak: u64,
    pub time_wait_end: u64,
    pub errors_by_kind: LoadErrors,
    /// Connections still open when the run ended (counted in `errors_by_kind.aborted` too).
    pub unfinished: u64,
    /// Scheduled starts never made (open loop).
    pub not_started: u64,
    /// Times a start waited for a free port or connection slot.
    pub start_waits: u64,
    pub max_in_flight: u64,
    /// The run's configuration, as a sentence.
    pub config: String,
}

/// The counters at stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// The interfaces' counters summed over the workers, every one (zeros included), by name.
    pub counters: BTreeMap<String, u64>,
    /// Connections the app cut for idleness (`serve` only).
    pub idle_timeouts: Option<u64>,
    /// One entry per worker.
    pub queues: Vec<Queue>,
    /// What `--pcap` captured, if it was on.
    pub pcap: Option<Pcap>,
    /// The XDP program's counters, by name, if the program was attached.
    pub xdp: Option<BTreeMap<String, u64>>,
}

impl Stopped {
    /// A counter of the interfaces (0 if it has no such name).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// One worker at stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub queue: u32,
    /// Connections accepted and opened by this worker.
    pub accepted: u64,
    pub connected: u64,
    /// Frames passed to other workers, received from them, and dropped for want of room.
    pub handed_off: u64,
    pub handoff_received: u64,
    pub handoff_dropped_full: u64,
    pub handoff_replies_dropped: u64,
    /// Connections and TIME_WAIT records in the tables.
    pub connections: u64,
    pub time_wait: u64,
    /// Bytes per TIME_WAIT record the table can hold.
    pub time_wait_bytes_per_entry: f64,
    /// Connection slots created.
    pub slots: u64,
    pub frames_in_use: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// Gaps of 1 ms and of 10 ms or more between two busy iterations of the worker's loop, and
    /// the longest (sleeps left out): time the worker was busy elsewhere or off its core.
    #[serde(default)]
    pub loop_stalls_over_1ms: u64,
    #[serde(default)]
    pub loop_stalls_over_10ms: u64,
    #[serde(default)]
    pub longest_loop_stall_us: u64,
    /// Connection rings lent, allocated and not lent, and their bytes (the pools' high-water
    /// mark).
    #[serde(default)]
    pub rings_in_use: u64,
    #[serde(default)]
    pub rings_free: u64,
    #[serde(default)]
    pub ring_bytes: u64,
    /// The AF_XDP socket's counters.
    pub socket: SocketCounters,
    /// The kernel's statistics of the socket (`XDP_STATISTICS`).
    #[serde(default)]
    pub kernel: KernelSocketStats,
}

/// The kernel's statistics of one AF_XDP socket (`synack::xsk::XdpStats`): what it dropped
/// before synack saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSocketStats {
    /// Frames not delivered (no fill frame, or too long).
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full: the worker fell behind.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub tx_ring_empty: u64,
}

/// The counters of one AF_XDP socket (`synack::xsk::Counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketCounters {
    pub rx_frames: u64,
    pub rx_batches: u64,
    pub fill_empty_events: u64,
    pub refill_pool_empty: u64,
    pub rx_kicks: u64,
    pub tx_frames: u64,
    pub tx_completed: u64,
    pub tx_kicks: u64,
    pub tx_kick_errors: u64,
    pub tx_alloc_failures: u64,
    pub tx_ring_full: u64,
    pub tx_dropped: u64,
    pub invalid_addresses: u64,
    /// Packets received and sent as chains of UMEM frames (multi-buffer: frames beyond one
    /// UMEM frame, an MTU above 3826), and received chains dropped.
    #[serde(default)]
    pub rx_chained: u64,
    #[serde(default)]
    pub rx_chains_dropped: u64,
    #[serde(default)]
    pub tx_chained: u64,
}

/// What `--pcap` captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pcap {
    pub written: u64,
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_tagged_by_type() {
        let second = Line::LoadSecond(LoadSecond { t: 1, conn_per_s: 5, reused: 3, ..LoadSecond::default() });
        let json = second.to_json();
        assert!(json.starts_with(r#"{"type":"load_second","t":1,"conn_per_s":5"#), "{json}");
        let mut stopped = Stopped::default();
        stopped.counters.insert("accepted".into(), 7);
        stopped.queues.push(Queue {
            queue: 1,
            socket: SocketCounters { rx_frames: 9, ..Default::default() },
            ..Default::default()
        });
        let text = format!("human text\n{json}\n{}\n", Line::Stopped(stopped.clone()).to_json());
        let lines = parse_lines(&text).unwrap();
        assert_eq!(lines, vec![second, Line::Stopped(stopped)]);
        let Line::Stopped(s) = &lines[1] else { unreachable!() };
        assert_eq!((s.counter("accepted"), s.counter("nothing"), s.queues[0].socket.rx_frames), (7, 0, 9));
        assert!(parse_lines("{\"type\":\"nope\"}\n").is_err());
        assert!(parse_lines("{\"type\":\"load_second\",\"t\":1}\n").is_err(), "a missing field is an error");
        assert!(Line::Closed(Closed {}).to_json() == r#"{"type":"closed"}"#);
    }
}
