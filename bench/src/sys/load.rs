//! Output of synack's own tools: `synack load` (its per-second lines and its JSON summary)
//! and the `stats:` lines of `synack serve --stats-interval-s`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One `load: t=.. conn/s=.. ..` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadSecond {
    /// Seconds since the start.
    pub t: f64,
    /// Connections completed in that second.
    pub conn_per_s: f64,
    /// Requests answered in that second.
    pub req_per_s: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// Errors in that second.
    pub errors: u64,
    /// The client's TIME_WAIT records.
    pub time_wait: u64,
    /// Client ports reused from TIME_WAIT so far.
    pub reused: u64,
}

/// The `load summary: {json}` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Length of the run.
    pub seconds: f64,
    /// Connections completed.
    pub connections: u64,
    /// Requests answered.
    pub requests: u64,
    /// Errors (refused, reset, timed out).
    pub errors: u64,
    /// Connections per second.
    pub conn_per_s: f64,
    /// Requests per second.
    pub req_per_s: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// Client ports reused from TIME_WAIT.
    pub port_reuses: u64,
    /// The most TIME_WAIT records the client held.
    pub time_wait_peak: u64,
    /// TIME_WAIT records at the end.
    pub time_wait_end: u64,
}

/// Everything `synack load` printed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// The per-second lines.
    pub seconds: Vec<LoadSecond>,
    /// The summary.
    pub summary: LoadSummary,
}

/// `key=value` pairs after a prefix; values as numbers.
fn fields<'a>(rest: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    rest.split_whitespace().filter_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        Some((k, v.parse().ok()?))
    })
}

/// Reads `synack load` output: every `load: ` line and the `load summary: ` JSON.
pub fn parse_load(output: &str) -> Result<LoadReport> {
    let mut seconds = Vec::new();
    let mut summary = None;
    for line in output.lines() {
        if let Some(json) = line.strip_prefix("load summary: ") {
            summary = Some(serde_json::from_str(json.trim()).context("load summary is not the expected JSON")?);
        } else if let Some(rest) = line.strip_prefix("load: ") {
            let mut s = LoadSecond::default();
            for (k, v) in fields(rest) {
                match k {
                    "t" => s.t = v,
                    "conn/s" => s.conn_per_s = v,
                    "req/s" => s.req_per_s = v,
                    "p50_us" => s.p50_us = v,
                    "p99_us" => s.p99_us = v,
                    "p999_us" => s.p999_us = v,
                    "errors" => s.errors = v as u64,
                    "time_wait" => s.time_wait = v as u64,
                    "reused" => s.reused = v as u64,
                    _ => {}
                }
            }
            seconds.push(s);
        }
    }
    let summary = summary.context("synack load printed no `load summary:` line")?;
    Ok(LoadReport { seconds, summary })
}

/// One `stats:` line of `synack serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServeStats {
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
    /// Resident memory in KiB.
    pub rss_kb: u64,
}

/// Reads every `stats:` line of `synack serve` output.
pub fn parse_serve_stats(output: &str) -> Vec<ServeStats> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("stats: "))
        .map(|rest| {
            let mut s = ServeStats::default();
            for (k, v) in fields(rest) {
                match k {
                    "t" => s.t = v,
                    "connections" => s.connections = v as u64,
                    "time_wait" => s.time_wait = v as u64,
                    "accepted" => s.accepted = v as u64,
                    "time_wait_entered" => s.time_wait_entered = v as u64,
                    "time_wait_evicted" => s.time_wait_evicted = v as u64,
                    "rss_kb" => s.rss_kb = v as u64,
                    _ => {}
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synack_load_output_parses() {
        let report = parse_load(include_str!("testdata/synack_load.txt")).unwrap();
        assert_eq!(report.seconds.len(), 3);
        assert_eq!(
            report.seconds[2],
            LoadSecond {
                t: 3.0,
                conn_per_s: 50012.0,
                req_per_s: 50012.0,
                p50_us: 59.0,
                p99_us: 228.0,
                p999_us: 700.0,
                errors: 2,
                time_wait: 0,
                reused: 40980
            }
        );
        assert_eq!(report.summary.connections, 148_203);
        assert_eq!(report.summary.conn_per_s, 49_401.0);
        assert_eq!(report.summary.port_reuses, 53_014);
        assert!(parse_load("load: t=1 conn/s=5\n").is_err(), "no summary");
        assert!(parse_load("load summary: {not json}\n").is_err());
    }

    #[test]
    fn serve_stats_lines_parse() {
        let stats = parse_serve_stats(include_str!("testdata/synack_serve_stats.txt"));
        assert_eq!(stats.len(), 3);
        assert_eq!(
            stats[2],
            ServeStats {
                t: 3.1,
                connections: 15,
                time_wait: 54_020,
                accepted: 54_035,
                time_wait_entered: 54_020,
                time_wait_evicted: 0,
                rss_kb: 64_900
            }
        );
    }
}
