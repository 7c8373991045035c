//! TIME_WAIT churn over veth: `synack serve --app http` closes first after each
//! `Connection: close` answer, so every connection leaves a TIME_WAIT record on the server;
//! the load runs at full speed for longer than 2MSL (60 s; 10 s with `--quick`). The server
//! prints a `stats:` line every second (records, RSS, connections accepted), from which come
//! the curve (CSV and PNG under `bench/results/`), the memory per record and the rate with an
//! empty table against the rate at the peak (1 M records is the target).
//!
//! The load is `synack load --close-first server` (closed loop, busy polling) when the binary
//! has it, else wrk with 64 connections. A record lives per 4-tuple: a new SYN on a 4-tuple
//! the server holds in TIME_WAIT reopens it (RFC 6191) and ends the record, so one client
//! address (64,512 ports) can never make the server hold more than 64,512 records. The load
//! therefore runs in segments, each a `synack load` process on a fresh client address, each
//! about as long as it takes to use every port of its address once (measured on the previous
//! segment); a segment's restart costs about a second without load, which the per-second rate
//! shows and the per-segment rates (measured by the client over its own duration) do not.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cleanup::{self, Interrupted};
use super::load::{parse_load, parse_serve_stats, ServeStats};
use super::net::{TestLink, PORTS_PER_LOAD_ADDRESS};
use super::procs::{self, LoadRun, Running};
use super::report::{self, format_figure, median};
use crate::curve::Curve;
use crate::mem::churn::{TARGET_RATE_DROP, TARGET_RECORDS};

/// synack's http port for this case.
const PORT: u16 = 8082;
/// Records the server may hold (allocated at start; 58 bytes each with the packed table).
const MAX_TIME_WAIT: usize = 1 << 22;
/// Segment length bounds, seconds.
const SEGMENT_S_MIN: u64 = 1;
/// See [`SEGMENT_S_MIN`].
const SEGMENT_S_MAX: u64 = 10;
/// The first segment's length, before a rate is known.
const SEGMENT_S_FIRST: u64 = 2;
/// Ports the kernel's wrk uses (`ip_local_port_range` 32768-60999).
const WRK_PORTS: u64 = 28_232;

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

/// Rates with a near-empty table and at the peak, and the drop between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RateComparison {
    /// Median rate of the samples that started with the table under 10 % of its peak.
    pub empty: Option<f64>,
    /// Median rate while the table held 90 % of its peak or more, or [`TARGET_RECORDS`] or
    /// more when it got there.
    pub full: Option<f64>,
    /// Whether `full` is at [`TARGET_RECORDS`] or more (else at the peak, below it).
    pub full_at_target: bool,
    /// `1 - full / empty`.
    pub drop: Option<f64>,
}

/// `(records at the start of the second, connections/s in it)` from the stats lines.
pub fn per_second_samples(stats: &[ServeStats]) -> Vec<(f64, f64)> {
    stats
        .windows(2)
        .filter(|w| w[1].t > w[0].t)
        .map(|w| (w[0].time_wait as f64, w[1].accepted.saturating_sub(w[0].accepted) as f64 / (w[1].t - w[0].t)))
        .collect()
}

/// Compares the rate at an empty table with the rate at the peak, from `(records at the
/// sample's start, rate)` samples (per second from the server, or per segment from the
/// client).
pub fn rate_comparison(samples: &[(f64, f64)]) -> RateComparison {
    let peak = samples.iter().map(|s| s.0).fold(0.0, f64::max);
    let empty: Vec<f64> = samples.iter().filter(|s| s.0 < peak / 10.0).map(|s| s.1).collect();
    let full_at_target = peak >= TARGET_RECORDS as f64;
    let threshold = if full_at_target { TARGET_RECORDS as f64 } else { peak * 0.9 };
    let full: Vec<f64> = samples.iter().filter(|s| s.0 >= threshold && s.0 > 0.0).map(|s| s.1).collect();
    let (empty, full) = (median(&empty), median(&full));
    let drop = match (empty, full) {
        (Some(e), Some(f)) if e > 0.0 => Some(1.0 - f / e),
        _ => None,
    };
    RateComparison { empty, full, full_at_target, drop }
}

/// One `synack load` process of the segmented load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Segment {
    /// Its client address.
    pub client_ip: String,
    /// Start and end, seconds since the server was ready.
    pub start_s: f64,
    /// See `start_s`.
    pub end_s: f64,
    /// `--duration`.
    pub duration_s: u64,
    /// Connections it completed, and per second of its duration.
    pub connections: u64,
    /// See `connections`.
    pub conn_per_s: f64,
    /// Its errors.
    pub errors: u64,
    /// The server's records when the segment started (nearest stats line).
    pub server_time_wait: u64,
}

/// The next segment's length: as long as it takes to use each port of a fresh address about
/// once at `rate`.
pub fn next_segment_s(rate: f64) -> u64 {
    if rate <= 0.0 {
        return SEGMENT_S_FIRST;
    }
    ((PORTS_PER_LOAD_ADDRESS as f64 / rate).floor() as u64).clamp(SEGMENT_S_MIN, SEGMENT_S_MAX)
}

/// The records at `t` (seconds since ready): the nearest stats line.
fn time_wait_at(stats: &[ServeStats], t: f64) -> u64 {
    stats.iter().min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs())).map_or(0, |s| s.time_wait)
}

/// The table's own bytes per record, from the server's `stopped` line (its first queue's
/// `time_wait_bytes_per_entry`, to a tenth as the text output prints it).
fn table_bytes_per_record(server_output: &str) -> Option<f64> {
    let lines = synack_report::parse_lines(server_output).ok()?;
    let bytes = lines.iter().find_map(|line| match line {
        synack_report::Line::Stopped(s) => s.queues.first().map(|q| q.time_wait_bytes_per_entry),
        _ => None,
    })?;
    Some((bytes * 10.0).round() / 10.0)
}

/// Runs the segmented `synack load` until `duration` has passed.
#[allow(clippy::too_many_arguments)]
fn run_segments(
    link: &TestLink,
    bin: &Path,
    client_cpu: usize,
    concurrency: u64,
    target: std::net::SocketAddr,
    ready: Instant,
    duration: Duration,
    server: &mut Running,
) -> Result<Vec<Segment>> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut length = SEGMENT_S_FIRST;
    loop {
        let left = duration.saturating_sub(ready.elapsed());
        if left < Duration::from_millis(500) {
            return Ok(segments);
        }
        cleanup::check_interrupted()?;
        server.ensure_running()?;
        let ip = link.fresh_load_address()?;
        let load = LoadRun {
            binary: bin,
            ifname: &link.client.ifname,
            ip,
            target,
            concurrency,
            duration_s: length.min(left.as_secs_f64().ceil() as u64).max(1),
            keepalive: false,
        };
        let start_s = ready.elapsed().as_secs_f64();
        let output = Running::spawn(load.label(), &mut load.command(&link.client.netns, client_cpu))?
            .wait(Duration::from_secs(load.duration_s + 40))?;
        let summary = parse_load(&output)?.summary;
        segments.push(Segment {
            client_ip: ip.to_string(),
            start_s,
            end_s: ready.elapsed().as_secs_f64(),
            duration_s: load.duration_s,
            connections: summary.connections,
            conn_per_s: summary.conn_per_s,
            errors: summary.errors,
            server_time_wait: 0,
        });
        length = next_segment_s(summary.conn_per_s);
    }
}

/// Runs the churn once and prints its figures; returns the JSON record.
#[allow(clippy::too_many_arguments)]
pub fn run(
    link: &TestLink,
    bin: &Path,
    server_cpu: usize,
    client_cpu: usize,
    load_concurrency: u64,
    quick: bool,
    results_dir: &Path,
    stamp: &str,
) -> Result<Value> {
    let time_wait = Duration::from_secs(if quick { 10 } else { 60 });
    let duration = time_wait + Duration::from_secs(if quick { 5 } else { 15 });
    let addr = std::net::SocketAddr::from((link.server.ip, PORT));
    let time_wait_ms = time_wait.as_millis().to_string();
    let max_time_wait = MAX_TIME_WAIT.to_string();
    let use_load = has_load_command(bin);
    let label = if use_load {
        format!(
            "synack load --concurrency {load_concurrency} --close-first server --poll busy, in segments on fresh client addresses"
        )
    } else {
        "wrk -t1 -c64 -H 'Connection: close'".to_owned()
    };
    println!(
        "== TIME_WAIT churn over veth: synack serve --app http (closes first), 2MSL {} s, load {label} for {} s",
        time_wait.as_secs(),
        duration.as_secs()
    );
    let mut server = procs::start_synack(
        &link.server.netns,
        server_cpu,
        bin,
        &link.server.ifname,
        addr,
        "http",
        &["--stats-interval-s", "1", "--time-wait-ms", &time_wait_ms, "--max-time-wait", &max_time_wait],
    )?;
    let ready = Instant::now();
    let load_outcome = if use_load {
        run_segments(link, bin, client_cpu, load_concurrency, addr, ready, duration, &mut server).map(Some)
    } else {
        let mut c = link.client.netns.command_on_cpu(client_cpu, "wrk");
        let seconds = format!("{}s", duration.as_secs());
        c.args(["-t1", "-c64", "-d", &seconds, "-H", "Connection: close", &format!("http://{addr}/")]);
        Running::spawn(label.clone(), &mut c).and_then(|c| c.wait(duration + Duration::from_secs(30))).map(|_| None)
    };
    let server_output = server.stop();
    let mut segments = match load_outcome {
        Ok(s) => s.unwrap_or_default(),
        Err(e) if e.is::<Interrupted>() => return Err(e),
        Err(e) => return Err(e.context(format!("the load failed; the server said:\n{}", tail(&server_output, 20)))),
    };
    let stats = parse_serve_stats(&server_output)?;
    if stats.len() < 3 {
        bail!("synack serve printed {} stats lines (a binary without --stats-interval-s?)", stats.len());
    }
    for s in &mut segments {
        s.server_time_wait = time_wait_at(&stats, s.start_s);
    }
    let title = format!("synack TIME_WAIT churn over veth: 2MSL {} s, {label}", time_wait.as_secs());
    let curve = curve(&stats, &title);
    let table_bytes = table_bytes_per_record(&server_output);
    println!("  {:>6}  {:>9}  {:>10}  {:>9}  {:>18}", "t (s)", "conn/s", "TIME_WAIT", "RSS (MiB)", "RSS bytes/record");
    let every = if curve.rows.len() <= 30 { 1 } else { 5 };
    for row in curve.rows.iter().step_by(every) {
        println!(
            "  {:>6.1}  {:>9}  {:>10}  {:>9.1}  {:>18.0}",
            row[0],
            format_figure(row[3]),
            format_figure(row[1]),
            row[2],
            row[4]
        );
    }
    let peak = stats.iter().map(|s| s.time_wait).max().unwrap_or(0);
    let evicted = stats.last().map_or(0, |s| s.time_wait_evicted);
    let fig = |v: Option<f64>| v.map_or("n/a".to_owned(), format_figure);
    let per_s = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{}/s", format_figure(v)));
    let at_peak = curve.rows.iter().find(|r| r[1] as u64 == peak).map(|r| r[4]);
    let rss_growth_mib = match (stats.first(), stats.iter().max_by_key(|s| s.rss_kb)) {
        (Some(a), Some(b)) => b.rss_kb.saturating_sub(a.rss_kb) as f64 / 1024.0,
        _ => 0.0,
    };
    // Held: the stats lines after the load had run for 2MSL, when the table is as full as
    // this rate makes it.
    let steady: Vec<&ServeStats> = stats.iter().filter(|s| s.t >= time_wait.as_secs_f64() + 1.0).collect();
    let held = steady.iter().map(|s| s.time_wait).min();
    println!(
        "  TIME_WAIT records: peak {}, held after 2MSL (lowest) {} (target >= {}: {}); evicted {}",
        format_figure(peak as f64),
        held.map_or("n/a".into(), |h| format_figure(h as f64)),
        format_figure(TARGET_RECORDS as f64),
        if peak as usize >= TARGET_RECORDS { "met" } else { "NOT met" },
        evicted,
    );
    println!(
        "  memory per record: {} bytes in the table (preallocated for {}), RSS growth per record at the peak {} bytes; RSS grew {:.1} MiB in all",
        table_bytes.map_or("n/a".into(), |b| format!("{b:.1}")),
        format_figure(MAX_TIME_WAIT as f64),
        fig(at_peak),
        rss_growth_mib
    );
    let by_second = rate_comparison(&per_second_samples(&stats));
    let per_segment: Vec<(f64, f64)> = segments.iter().map(|s| (s.server_time_wait as f64, s.conn_per_s)).collect();
    let by_segment = rate_comparison(&per_segment);
    let describe = |name: &str, c: &RateComparison, verdict: bool| {
        let at = if c.full_at_target {
            ">= 1 M records".to_owned()
        } else {
            format!("the peak ({} records, under 1 M)", format_figure(peak as f64))
        };
        let drop = c.drop.map_or("n/a".to_owned(), |d| format!("{:.1} %", d * 100.0));
        let judged = match c.drop {
            _ if !verdict => "not judged: restart gaps fall in some seconds and not others".to_owned(),
            Some(d) if d <= TARGET_RATE_DROP && c.full_at_target => "met".to_owned(),
            Some(d) if d <= TARGET_RATE_DROP => "met at the peak, not at 1 M".to_owned(),
            Some(_) => "NOT met".to_owned(),
            None => "n/a".to_owned(),
        };
        println!(
            "  connection rate {name}: {} with an empty table, {} at {at}: drop {drop} (target <= {:.0} %: {judged})",
            per_s(c.empty),
            per_s(c.full),
            TARGET_RATE_DROP * 100.0,
        );
    };
    // With segments, the client's own rate over each segment is the measure: a restart's idle
    // second lands in some per-second samples and not in others.
    describe("per second (server, restarts included)", &by_second, segments.is_empty());
    if !segments.is_empty() {
        describe("per segment (client, restarts left out)", &by_segment, true);
    }
    // What bounds the records held: the rate over 2MSL, and the 4-tuples.
    let sustained = match (stats.first(), stats.last()) {
        (Some(a), Some(b)) if b.t > a.t => b.accepted.saturating_sub(a.accepted) as f64 / (b.t - a.t),
        _ => 0.0,
    };
    let rate_bound = sustained * time_wait.as_secs_f64();
    let addresses = if use_load { segments.len() as u64 } else { 1 };
    let ports = if use_load { PORTS_PER_LOAD_ADDRESS } else { WRK_PORTS };
    let tuple_bound = addresses * ports;
    println!(
        "  bounds: {}/s sustained (restarts included) x 2MSL {} s = {} records; {} client address{} x {} ports = {} 4-tuples in the whole run",
        format_figure(sustained),
        time_wait.as_secs(),
        format_figure(rate_bound),
        addresses,
        if addresses == 1 { "" } else { "es" },
        format_figure(ports as f64),
        format_figure(tuple_bound as f64),
    );
    if (peak as usize) < TARGET_RECORDS {
        let mut reasons = Vec::new();
        if rate_bound < TARGET_RECORDS as f64 {
            reasons.push(format!(
                "rate x 2MSL = {} < 1 M on this machine (1 M in {} s needs {}/s)",
                format_figure(rate_bound),
                time_wait.as_secs(),
                format_figure(TARGET_RECORDS as f64 / time_wait.as_secs_f64())
            ));
        }
        if (tuple_bound as usize) < TARGET_RECORDS {
            reasons.push(format!("{} 4-tuples < 1 M", format_figure(tuple_bound as f64)));
        }
        if quick {
            reasons.push("--quick: 2MSL is 10 s".to_owned());
        }
        if reasons.is_empty() {
            reasons.push("the segments' restarts and the client's share of the CPU".to_owned());
        }
        println!("  1 M records not reached: {}", reasons.join("; "));
    }
    if !segments.is_empty() {
        let rates: Vec<f64> = segments.iter().map(|s| s.conn_per_s).collect();
        let errors: u64 = segments.iter().map(|s| s.errors).sum();
        println!(
            "  load: {} segments of 1-{} s, median {}/s per segment, {} errors; load average {}",
            segments.len(),
            segments.iter().map(|s| s.duration_s).max().unwrap_or(0),
            fig(median(&rates)),
            errors,
            report::load_average()
        );
    }
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
        "held_after_2msl_records": held,
        "target_records": TARGET_RECORDS,
        "target_records_met": peak as usize >= TARGET_RECORDS,
        "evicted": evicted,
        "table_bytes_per_record": table_bytes,
        "rss_bytes_per_record_at_peak": at_peak,
        "rate_per_second": by_second,
        "rate_per_segment": by_segment,
        "target_rate_drop": TARGET_RATE_DROP,
        "sustained_rate_per_s": sustained,
        "rate_times_2msl": rate_bound,
        "client_addresses": addresses,
        "four_tuples": tuple_bound,
        "segments": segments,
        "load_average_end": report::load_average(),
        "csv": csv.display().to_string(),
        "stats": serde_json::to_value(&stats)?,
    }))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
        let samples = per_second_samples(&lines);
        assert_eq!(samples[0], (0.0, 20_000.0));
        assert_eq!(samples[1], (20_000.0, 20_000.0));
        let r = rate_comparison(&samples);
        assert_eq!(r.empty, Some(20_000.0));
        assert_eq!(r.full, Some(18_000.0));
        assert!(r.full_at_target);
        assert!((r.drop.unwrap() - 0.10).abs() < 1e-9);
    }

    #[test]
    fn below_the_target_the_rate_is_compared_at_the_peak() {
        // Per segment: 30,000/s while near empty, 24,000/s on a plateau of 500,000 records.
        let samples = [(10_000.0, 30_000.0), (40_000.0, 30_000.0), (460_000.0, 24_000.0), (500_000.0, 24_000.0)];
        let r = rate_comparison(&samples);
        assert_eq!((r.empty, r.full, r.full_at_target), (Some(30_000.0), Some(24_000.0), false));
        assert!((r.drop.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(rate_comparison(&[]), RateComparison::default());
    }

    #[test]
    fn segments_last_about_one_use_of_each_port() {
        assert_eq!(next_segment_s(0.0), SEGMENT_S_FIRST);
        assert_eq!(next_segment_s(21_000.0), 3);
        assert_eq!(next_segment_s(100_000.0), 1);
        assert_eq!(next_segment_s(1_000.0), SEGMENT_S_MAX);
    }

    #[test]
    fn the_table_figure_comes_from_the_stop_lines() {
        let stop = include_str!("testdata/synack_serve.jsonl");
        assert_eq!(table_bytes_per_record(stop), Some(58.0));
        assert_eq!(table_bytes_per_record("synack stopped"), None);
        let lines = [stats(1.0, 10, 10, 1), stats(2.0, 500, 510, 1), stats(3.0, 900, 910, 1)];
        assert_eq!(time_wait_at(&lines, 2.4), 500);
        assert_eq!(time_wait_at(&lines, 9.0), 900);
    }
}
