//! What a worker reports each second, how the main thread adds the workers up, and the two
//! output lines: `load: t=...` each second and `load summary: {json}` at the end.

use std::fmt::Write as _;

use synack_report::{LoadErrors, LoadSecond, LoadSummary};

use super::histogram::Histogram;

/// Why connections or requests failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors {
    /// The server answered the SYN with an RST.
    pub refused: u64,
    /// The connection was reset after it opened.
    pub reset: u64,
    /// Retransmissions (SYN, data or FIN) ran out.
    pub timed_out: u64,
    /// A response that was not `HTTP/1.x 2xx/3xx` with a usable length, or that ended early.
    pub bad_response: u64,
    /// `connect` refused for another reason than a missing port or slot (no route, ...).
    pub connect_failed: u64,
    /// Aborted by us (an unanswered ARP, or still in flight when the run ended).
    pub aborted: u64,
}

impl Errors {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.refused + self.reset + self.timed_out + self.bad_response + self.connect_failed + self.aborted
    }

    fn add(&mut self, o: &Errors) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.timed_out += o.timed_out;
        self.bad_response += o.bad_response;
        self.connect_failed += o.connect_failed;
        self.aborted += o.aborted;
    }
}

/// One worker's second `second` (from `start + second` s to `start + second + 1` s).
#[derive(Debug)]
pub struct Tick {
    pub worker: u32,
    pub second: u64,
    /// Connections that ended normally after at least one complete response.
    pub connections: u64,
    /// Complete responses.
    pub requests: u64,
    pub errors: Errors,
    /// Latency of each complete response, from its scheduled start.
    pub latency: Histogram,
    /// TIME_WAIT records held at the end of the second.
    pub time_wait: usize,
    /// Ports reused from TIME_WAIT since the start (the interface's counter).
    pub reused_total: u64,
    /// Connections open at the end of the second.
    pub in_flight: usize,
    /// The most connections open at once during the second.
    pub max_in_flight: usize,
    /// Times a start had to wait for a free port or connection slot.
    pub start_waits: u64,
    /// Scheduled starts still waiting at the end of the second (open loop only).
    pub behind: u64,
}

impl Tick {
    pub fn new(worker: u32, second: u64, latency: Histogram) -> Tick {
        Tick {
            worker,
            second,
            connections: 0,
            requests: 0,
            errors: Errors::default(),
            latency,
            time_wait: 0,
            reused_total: 0,
            in_flight: 0,
            max_in_flight: 0,
            start_waits: 0,
            behind: 0,
        }
    }
}

/// The workers' ticks of one second, added up.
#[derive(Debug, Default)]
pub struct Second {
    pub workers: u32,
    pub connections: u64,
    pub requests: u64,
    pub errors: Errors,
    pub latency: Histogram,
    pub time_wait: usize,
    pub reused_total: u64,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub start_waits: u64,
    pub behind: u64,
}

impl Second {
    /// Adds a worker's tick.
    pub fn add(&mut self, tick: &Tick) {
        self.workers += 1;
        self.connections += tick.connections;
        self.requests += tick.requests;
        self.errors.add(&tick.errors);
        self.latency.add(&tick.latency);
        self.time_wait += tick.time_wait;
        self.reused_total += tick.reused_total;
        self.in_flight += tick.in_flight;
        self.max_in_flight += tick.max_in_flight;
        self.start_waits += tick.start_waits;
        self.behind += tick.behind;
    }

    /// The second ending at `t`, with `reused` ports reused in it (`--json`).
    pub fn second(&self, t: u64, reused: u64) -> LoadSecond {
        LoadSecond {
            t,
            conn_per_s: self.connections,
            req_per_s: self.requests,
            p50_us: micros(self.latency.quantile(0.5)),
            p99_us: micros(self.latency.quantile(0.99)),
            p999_us: micros(self.latency.quantile(0.999)),
            errors: self.errors.total(),
            time_wait: self.time_wait as u64,
            reused,
        }
    }

    /// The per-second line (the output contract: keep the fields and their order).
    pub fn line(&self, t: u64, reused: u64) -> String {
        let s = self.second(t, reused);
        format!(
            "load: t={t} conn/s={} req/s={} p50_us={} p99_us={} p999_us={} errors={} time_wait={} reused={reused}",
            s.conn_per_s, s.req_per_s, s.p50_us, s.p99_us, s.p999_us, s.errors, s.time_wait,
        )
    }
}

/// Nanoseconds to whole microseconds, rounded up (a bucket bound is never under the value).
fn micros(nanos: u64) -> u64 {
    nanos.div_ceil(1000)
}

/// The whole run, for the summary.
#[derive(Debug, Default)]
pub struct Totals {
    pub seconds: u64,
    pub connections: u64,
    pub requests: u64,
    pub errors: Errors,
    pub latency: Histogram,
    pub port_reuses: u64,
    pub time_wait_peak: usize,
    pub time_wait_end: usize,
    pub start_waits: u64,
    /// Scheduled starts never made (open loop: the generator or the ports could not keep up).
    pub not_started: u64,
    /// Connections still open when the run ended (counted in `errors.aborted` too).
    pub unfinished: u64,
    pub max_in_flight: usize,
}

impl Totals {
    /// Adds a second; `in_load` when it lies within the configured duration.
    pub fn add(&mut self, s: &Second) {
        self.connections += s.connections;
        self.requests += s.requests;
        self.errors.add(&s.errors);
        self.latency.add(&s.latency);
        self.port_reuses = s.reused_total;
        self.time_wait_peak = self.time_wait_peak.max(s.time_wait);
        self.time_wait_end = s.time_wait;
        self.start_waits += s.start_waits;
        self.max_in_flight = self.max_in_flight.max(s.max_in_flight);
    }

    /// The summary for `--json`; `config` describes the run. The same figures as [`json`]
    /// (rates to a tenth, as printed there).
    ///
    /// [`json`]: Self::json
    pub fn summary(&self, config: &str) -> LoadSummary {
        let per_s = |n: u64| if self.seconds == 0 { 0.0 } else { n as f64 / self.seconds as f64 };
        let tenth = |x: f64| (x * 10.0).round() / 10.0;
        let e = &self.errors;
        LoadSummary {
            seconds: self.seconds,
            connections: self.connections,
            requests: self.requests,
            errors: e.total(),
            conn_per_s: tenth(per_s(self.connections)),
            req_per_s: tenth(per_s(self.requests)),
            p50_us: micros(self.latency.quantile(0.5)),
            p99_us: micros(self.latency.quantile(0.99)),
            p999_us: micros(self.latency.quantile(0.999)),
            port_reuses: self.port_reuses,
            time_wait_peak: self.time_wait_peak as u64,
            time_wait_end: self.time_wait_end as u64,
            errors_by_kind: LoadErrors {
                refused: e.refused,
                reset: e.reset,
                timed_out: e.timed_out,
                bad_response: e.bad_response,
                connect_failed: e.connect_failed,
                aborted: e.aborted,
            },
            unfinished: self.unfinished,
            not_started: self.not_started,
            start_waits: self.start_waits,
            max_in_flight: self.max_in_flight as u64,
            config: config.to_string(),
        }
    }

    /// The summary's single-line JSON object (the output contract's keys first).
    pub fn json(&self, config: &str) -> String {
        let per_s = |n: u64| if self.seconds == 0 { 0.0 } else { n as f64 / self.seconds as f64 };
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{{\"seconds\":{},\"connections\":{},\"requests\":{},\"errors\":{},\"conn_per_s\":{:.1},\
             \"req_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"port_reuses\":{},\
             \"time_wait_peak\":{},\"time_wait_end\":{},\"errors_by_kind\":{{\"refused\":{},\"reset\":{},\
             \"timed_out\":{},\"bad_response\":{},\"connect_failed\":{},\"aborted\":{}}},\"unfinished\":{},\
             \"not_started\":{},\"start_waits\":{},\"max_in_flight\":{},\"config\":{}}}",
            self.seconds,
            self.connections,
            self.requests,
            self.errors.total(),
            per_s(self.connections),
            per_s(self.requests),
            micros(self.latency.quantile(0.5)),
            micros(self.latency.quantile(0.99)),
            micros(self.latency.quantile(0.999)),
            self.port_reuses,
            self.time_wait_peak,
            self.time_wait_end,
            self.errors.refused,
            self.errors.reset,
            self.errors.timed_out,
            self.errors.bad_response,
            self.errors.connect_failed,
            self.errors.aborted,
            self.unfinished,
            self.not_started,
            self.start_waits,
            self.max_in_flight,
            config,
        );
        out
    }
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(worker: u32, connections: u64, latency_us: u64, time_wait: usize, reused_total: u64) -> Tick {
        let mut latency = Histogram::new();
        for _ in 0..connections {
            latency.record(latency_us * 1000);
        }
        let mut t = Tick::new(worker, 0, latency);
        t.connections = connections;
        t.requests = connections;
        t.time_wait = time_wait;
        t.reused_total = reused_total;
        t.errors.reset = worker as u64;
        t
    }

    #[test]
    fn workers_add_up_into_the_contract_lines() {
        let mut s = Second::default();
        s.add(&tick(0, 100, 50, 10, 7));
        s.add(&tick(1, 300, 100, 30, 3));
        assert_eq!(s.workers, 2);
        let line = s.line(3, 4);
        assert_eq!(
            line,
            "load: t=3 conn/s=400 req/s=400 p50_us=101 p99_us=101 p999_us=101 errors=1 time_wait=40 reused=4"
        );
        let mut totals = Totals { seconds: 2, ..Totals::default() };
        totals.add(&s);
        let mut quiet = Second::default();
        quiet.add(&tick(0, 0, 0, 0, 10));
        totals.add(&quiet);
        let json = totals.json(&json_string("a \"b\"\r\n"));
        assert!(json.starts_with(
            "{\"seconds\":2,\"connections\":400,\"requests\":400,\"errors\":1,\"conn_per_s\":200.0,\"req_per_s\":200.0,"
        ));
        assert!(json.contains("\"port_reuses\":10,\"time_wait_peak\":40,\"time_wait_end\":0,"), "{json}");
        assert!(json.ends_with("\"config\":\"a \\\"b\\\"\\r\\n\"}"), "{json}");
        assert!(!json.contains('\n'));
        // The text summary and the `--json` one carry the same figures in the same type.
        let text: LoadSummary = serde_json::from_str(&json).expect("the text summary is a LoadSummary");
        assert_eq!(text, totals.summary("a \"b\"\r\n"));
        let second = s.second(3, 4);
        assert_eq!((second.t, second.conn_per_s, second.p50_us, second.errors, second.reused), (3, 400, 101, 1, 4));
    }
}
