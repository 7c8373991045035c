//! TIME_WAIT churn over veth: `synack serve --app http` closes first after each
//! `Connection: close` answer, so every connection leaves a TIME_WAIT record on the server;
//! the load runs at full speed for longer than 2MSL (60 s; 10 s with `--quick`). The server
//! prints a `stats:` line every second (records, RSS, connections accepted), from which come
//! the curve (CSV and PNG under `bench/results/`), the memory per record and the rate with an
//! empty table against the rate at 1 M records.
//!
//! The load is `synack load` when the binary has it (it reuses its own ports from TIME_WAIT),
//! else wrk with 64 connections (the kernel client closes second and keeps no TIME_WAIT).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::load::{parse_load, parse_serve_stats, ServeStats};
use super::net::TestLink;
use super::procs::{self, Running};
use super::report::{format_figure, median};
use crate::curve::Curve;
use crate::mem::churn::{TARGET_RATE_DROP, TARGET_RECORDS};

/// synack's http port for this case.
const PORT: u16 = 8082;
/// Records the server may hold (allocated at start; 58 bytes each with the packed table).
const MAX_TIME_WAIT: usize = 1 << 22;

/// What one churn run gave.
#[derive(Debug, Clone)]
pub struct ChurnOutcome {
    /// The server's per-second lines.
    pub stats: Vec<ServeStats>,
    /// Which load generator ran.
    pub load: String,
}

/// Whether `bin` has the `load` subcommand.
pub fn has_load_command(bin: &Path) -> bool {
    std::process::Command::new(bin).args(["load", "--help"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// One row per stats line: time, records, RSS, accepted/s over the previous line.
pub fn curve(stats: &[ServeStats], title: &str) -> Curve {
    let mut c =
        Curve::new(title, &["t_s", "time_wait_records", "rss_mib", "connections_per_s", "rss_bytes_per_record"]);
    let base_kb = stats.first().map_or(0, |s| s.rss_kb);
    for pair in stats.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let dt = b.t - a.t;
        if dt <= 0.0 {
            continue;
        }
        let rate = b.accepted.saturating_sub(a.accepted) as f64 / dt;
        let per_record =
            if b.time_wait > 0 { b.rss_kb.saturating_sub(base_kb) as f64 * 1024.0 / b.time_wait as f64 } else { 0.0 };
        c.rows.push(vec![b.t, b.time_wait as f64, b.rss_kb as f64 / 1024.0, rate.round(), per_record.round()]);
    }
    c
}

/// Rates with a near-empty table (under 10 % of the peak, the first second left out) and at
/// 1 M records or more, as medians of the per-second rates; and the drop between them.
pub fn rate_comparison(curve: &Curve) -> (Option<f64>, Option<f64>, Option<f64>) {
    let peak = curve.rows.iter().map(|r| r[1]).fold(0.0, f64::max);
    let empty: Vec<f64> = curve.rows.iter().skip(1).filter(|r| r[1] < peak / 10.0).map(|r| r[3]).collect();
    let full: Vec<f64> = curve.rows.iter().filter(|r| r[1] >= TARGET_RECORDS as f64).map(|r| r[3]).collect();
    let (e, f) = (median(&empty), median(&full));
    let drop = match (e, f) {
        (Some(e), Some(f)) if e > 0.0 => Some(1.0 - f / e),
        _ => None,
    };
    (e, f, drop)
}

/// Runs the churn once and prints its figures; returns the JSON record.
#[allow(clippy::too_many_arguments)]
pub fn run(
    link: &TestLink,
    bin: &Path,
    server_cpu: usize,
    client_cpu: usize,
    quick: bool,
    results_dir: &Path,
    stamp: &str,
) -> Result<Value> {
    let time_wait = Duration::from_secs(if quick { 10 } else { 60 });
    let duration = time_wait + Duration::from_secs(if quick { 5 } else { 15 });
    let addr = std::net::SocketAddr::from((link.server.ip, PORT));
    let time_wait_ms = time_wait.as_millis().to_string();
    let max_time_wait = MAX_TIME_WAIT.to_string();
    let server = procs::start_synack(
        &link.server.netns,
        server_cpu,
        bin,
        &link.server.ifname,
        addr,
        "http",
        &["--stats-interval-s", "1", "--time-wait-ms", &time_wait_ms, "--max-time-wait", &max_time_wait],
    )?;
    let seconds = duration.as_secs().to_string();
    let use_load = has_load_command(bin);
    let (label, mut command) = if use_load {
        let mut c = link.client.netns.command_on_cpu(client_cpu, &bin.to_string_lossy());
        c.args([
            "load",
            "--iface",
            &link.client.ifname,
            "--ip",
            &link.client.ip.to_string(),
            "--target",
            &addr.to_string(),
            "--concurrency",
            "256",
            "--duration",
            &seconds,
            "--cores",
            &client_cpu.to_string(),
        ]);
        ("synack load --concurrency 256".to_owned(), c)
    } else {
        let mut c = link.client.netns.command_on_cpu(client_cpu, "wrk");
        c.args(["-t1", "-c64", "-d", &format!("{seconds}s"), "-H", "Connection: close", &format!("http://{addr}/")]);
        ("wrk -t1 -c64 -H 'Connection: close'".to_owned(), c)
    };
    println!(
        "== TIME_WAIT churn over veth: synack serve --app http (closes first), 2MSL {} s, load {label} for {} s",
        time_wait.as_secs(),
        duration.as_secs()
    );
    let client = Running::spawn(label.clone(), &mut command);
    let client_output = match client {
        Ok(c) => c.wait(duration + Duration::from_secs(30)),
        Err(e) => Err(e),
    };
    let server_output = server.stop();
    let client_output = client_output?;
    let stats = parse_serve_stats(&server_output);
    if stats.len() < 3 {
        bail!("synack serve printed {} stats lines (a binary without --stats-interval-s?)", stats.len());
    }
    let load_summary = if use_load { parse_load(&client_output).ok().map(|r| r.summary) } else { None };
    let title = format!("synack TIME_WAIT churn over veth: 2MSL {} s, {label}", time_wait.as_secs());
    let curve = curve(&stats, &title);
    for row in curve.rows.iter().step_by(5) {
        println!(
            "  t={:>5.1} s  TIME_WAIT {:>9}  RSS {:>7.1} MiB  {:>7}/s  {:>5.0} B/record (RSS)",
            row[0],
            format_figure(row[1]),
            row[2],
            format_figure(row[3]),
            row[4]
        );
    }
    let peak = stats.iter().map(|s| s.time_wait).max().unwrap_or(0);
    let evicted = stats.last().map_or(0, |s| s.time_wait_evicted);
    let (empty, full, drop) = rate_comparison(&curve);
    let fig = |v: Option<f64>| v.map_or("n/a".to_owned(), format_figure);
    let at_peak = curve.rows.iter().find(|r| r[1] as u64 == peak).map(|r| r[4]);
    println!(
        "  TIME_WAIT held: {} at the peak (target >= {}: {}); evicted {}; RSS growth per record at the peak {} bytes",
        format_figure(peak as f64),
        format_figure(TARGET_RECORDS as f64),
        if peak as usize >= TARGET_RECORDS { "met" } else { "NOT met" },
        evicted,
        fig(at_peak)
    );
    println!(
        "  connection rate: {}/s with an empty table, {}/s at >= 1 M records: drop {} (target <= {:.0} %)",
        fig(empty),
        fig(full),
        drop.map_or("n/a".to_owned(), |d| format!("{:.1} %", d * 100.0)),
        TARGET_RATE_DROP * 100.0
    );
    let base = results_dir.join(format!("{stamp}-veth-time-wait"));
    let csv = base.with_extension("csv");
    curve.write_csv(&csv).with_context(|| format!("cannot write {}", csv.display()))?;
    let png = base.with_extension("png");
    match curve.plot_png(&csv, &png) {
        Ok(()) => println!("  curve: {} and {}", csv.display(), png.display()),
        Err(e) => println!("  curve: {} (no PNG: {e})", csv.display()),
    }
    Ok(json!({
        "load": label,
        "time_wait_s": time_wait.as_secs(),
        "duration_s": duration.as_secs(),
        "peak_records": peak,
        "evicted": evicted,
        "rss_bytes_per_record_at_peak": at_peak,
        "rate_empty_per_s": empty,
        "rate_full_per_s": full,
        "rate_drop": drop,
        "load_summary": load_summary,
        "csv": csv.display().to_string(),
        "stats": serde_json::to_value(&stats)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: f64, time_wait: u64, accepted: u64, rss_kb: u64) -> ServeStats {
        ServeStats { t, time_wait, accepted, time_wait_entered: time_wait, rss_kb, ..ServeStats::default() }
    }

    #[test]
    fn the_curve_and_the_rates_come_from_the_stats_lines() {
        // 20,000/s into an empty table, then 18,000/s once past 1 M records.
        let mut lines = vec![stats(0.0, 0, 0, 50_000)];
        let mut accepted = 0;
        for t in 1..=70u64 {
            let rate = if t <= 50 { 20_000 } else { 18_000 };
            accepted += rate;
            let tw = accepted.min(1_100_000);
            lines.push(stats(t as f64, tw, accepted, 50_000 + tw * 60 / 1024));
        }
        let c = curve(&lines, "t");
        assert_eq!(c.rows.len(), 70);
        assert_eq!(c.rows[0][3], 20_000.0);
        assert!((c.rows[69][4] - 60.0).abs() < 1.0, "{}", c.rows[69][4]);
        let (empty, full, drop) = rate_comparison(&c);
        assert_eq!(empty, Some(20_000.0));
        assert_eq!(full, Some(18_000.0));
        assert!((drop.unwrap() - 0.10).abs() < 1e-9);
    }
}
