//! The in-memory cases of `synack-sysbench`: run, print, and write their files under
//! `bench/results/` (`<stamp>-memory-lifecycles.json`, `<stamp>-memory-time-wait.{json,csv,png}`).

use core::time::Duration;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::churn::{self, ChurnConfig, TARGET_RATE_DROP, TARGET_RECORDS};
use super::lifecycles::{self, LifecyclesConfig};
use super::rss::mib;
use crate::sys::report::{format_figure, render_table};

/// Names of the in-memory cases.
pub const MEMORY_CASES: [&str; 2] = ["memory_lifecycles", "memory_time_wait"];

/// A count with thousands separated.
fn count(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else {
        format_figure(n as f64)
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// 10 M lifecycles (2 M with `quick`) through one worker; fails when anything does not come
/// back to its baseline.
pub fn run_lifecycles(quick: bool, results_dir: &Path, stamp: &str) -> Result<PathBuf> {
    let mut config = LifecyclesConfig::standard();
    if quick {
        config.lifecycles = 2_000_000;
        config.sample_every = 250_000;
    }
    println!(
        "== In memory: {} connection lifecycles through one worker's Interface (server closes first; 2MSL {} ms, {}/s of simulated time, {} client addresses)",
        format_figure(config.lifecycles as f64),
        config.time_wait.as_millis(),
        format_figure(config.per_tick as f64 / config.tick.as_secs_f64()),
        config.clients
    );
    let header = [
        "lifecycles",
        "simulated s",
        "conns (server)",
        "slab slots created",
        "TIME_WAIT",
        "TW table MiB",
        "frames in use",
        "frames peak",
        "RSS MiB",
        "lifecycles/CPU s",
        "lifecycles/s (wall)",
    ];
    let row = |s: &lifecycles::LifecycleSample| -> Vec<String> {
        vec![
            count(s.lifecycles),
            format!("{:.1}", s.sim_s),
            s.server_connections.to_string(),
            s.slab_slots_created.to_string(),
            count(s.time_wait as u64),
            format!("{:.1}", mib(s.time_wait_table_bytes as u64)),
            s.frames_in_use.to_string(),
            s.frames_peak.to_string(),
            format!("{:.1}", mib(s.rss_bytes)),
            if s.window_per_cpu_s > 0.0 { format_figure(s.window_per_cpu_s) } else { "-".into() },
            if s.window_per_s > 0.0 { format_figure(s.window_per_s) } else { "-".into() },
        ]
    };
    let report = lifecycles::run(config, |s| {
        println!(
            "  {} lifecycles: {} conns, {} TIME_WAIT, RSS {:.1} MiB, {}/CPU s",
            count(s.lifecycles),
            s.server_connections,
            count(s.time_wait as u64),
            mib(s.rss_bytes),
            format_figure(s.window_per_cpu_s)
        )
    })?;
    let mut rows = vec![row(&report.start)];
    rows.extend(report.samples.iter().map(row));
    let mut end = row(&report.end);
    end[0] = format!("end ({})", end[0]);
    rows.push(end);
    print!("{}", render_table(&header, &rows));
    for c in &report.checks {
        println!("  {} {}", if c.ok { "ok    " } else { "FAILED" }, c.what);
    }
    println!(
        "  {} lifecycles in {:.1} s of CPU time ({:.1} s wall): {} lifecycles per CPU second, {}/s wall, on one core ({:.1} frames through the server each)",
        count(report.lifecycles),
        report.cpu_s,
        report.wall_s,
        format_figure(report.per_cpu_s),
        format_figure(report.per_s),
        report.server_frames_per_lifecycle
    );
    let path = results_dir.join(format!("{stamp}-memory-lifecycles.json"));
    write_json(
        &path,
        &json!({
            "schema": "synack-membench-lifecycles/1",
            "config": {
                "lifecycles": config.lifecycles,
                "sample_every": config.sample_every,
                "per_tick": config.per_tick,
                "tick_ms": config.tick.as_secs_f64() * 1e3,
                "time_wait_ms": config.time_wait.as_secs_f64() * 1e3,
                "clients": config.clients,
                "rss_tolerance_bytes": config.rss_tolerance_bytes,
            },
            "report": report,
        }),
    )?;
    println!("  results: {}", path.display());
    if !report.passed() {
        bail!("in-memory lifecycles: not back to baseline (see the checks above)");
    }
    Ok(path)
}

/// TIME_WAIT churn in memory with a 60 s 2MSL; writes the curve as CSV and PNG.
pub fn run_time_wait(quick: bool, results_dir: &Path, stamp: &str) -> Result<PathBuf> {
    let mut config = ChurnConfig::standard();
    if quick {
        config.duration = config.time_wait + Duration::from_secs(10);
    }
    println!(
        "== In memory: TIME_WAIT churn, server closes first, 2MSL {} s of simulated time, {}/s for {} s ({} records expected at steady state, from {} client addresses)",
        config.time_wait.as_secs(),
        format_figure(config.rate_per_s as f64),
        config.duration.as_secs(),
        format_figure(config.steady_records() as f64),
        config.clients
    );
    let every = (10.0 / config.window.as_secs_f64()).max(1.0) as usize;
    let mut n = 0;
    let report = churn::run(config, |s| {
        n += 1;
        if n % every == 0 {
            println!(
                "  t={:>4.0} s  TIME_WAIT {:>9}  {:>5.0} B/record  RSS {:>7.1} MiB  {:>8}/CPU s (empty-table reference {:>8})  {:>8}/s wall",
                s.sim_s,
                count(s.time_wait as u64),
                s.table_bytes as f64 / s.time_wait.max(1) as f64,
                mib(s.rss_bytes),
                format_figure(s.per_cpu_s),
                format_figure(s.reference_per_cpu_s),
                format_figure(s.per_s)
            );
        }
    })?;
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    println!(
        "  TIME_WAIT records held: {} at the peak (target >= {}: {})",
        format_figure(report.peak_records as f64),
        format_figure(TARGET_RECORDS as f64),
        verdict(Some(report.holds_target()))
    );
    println!(
        "  memory per record: {:.0} bytes allocated by the table, {:.0} bytes of RSS growth (Linux: 256)",
        report.table_bytes_per_record, report.rss_bytes_per_record
    );
    let fig = |v: Option<f64>| v.map_or("n/a".into(), format_figure);
    println!(
        "  rate per CPU second (one core), windows from >= 1 M records: {}/s, against {}/s for the reference (empty table, {} ms 2MSL, run after each window): {} drop (target <= {:.0} %: {})",
        fig(report.rate_full_per_s),
        fig(report.rate_empty_per_s),
        report.reference_time_wait_s * 1e3,
        report.rate_drop.map_or("n/a".into(), |d| format!("{:.1} %", d * 100.0)),
        TARGET_RATE_DROP * 100.0,
        verdict(report.rate_target_met())
    );
    println!(
        "  RSS after 2MSL: moved by {:.1} MiB ({}); records reopened {}, evicted {}; {} lifecycles at {}/CPU s overall",
        mib(report.rss_steady_range_bytes),
        if report.rss_flat { "flat" } else { "NOT flat" },
        report.reopened,
        report.evicted,
        count(report.lifecycles),
        format_figure(report.per_cpu_s)
    );
    let base = results_dir.join(format!("{stamp}-memory-time-wait"));
    let curve = report.curve(&format!(
        "synack TIME_WAIT churn in memory: {}/s, 2MSL {} s (one worker)",
        report.rate_per_s, report.time_wait_s
    ));
    let csv = base.with_extension("csv");
    curve.write_csv(&csv).with_context(|| format!("cannot write {}", csv.display()))?;
    let png = base.with_extension("png");
    match curve.plot_png(&csv, &png) {
        Ok(()) => println!("  curve: {} and {}", csv.display(), png.display()),
        Err(e) => println!("  curve: {} (no PNG: {e})", csv.display()),
    }
    let json_path = base.with_extension("json");
    write_json(&json_path, &json!({ "schema": "synack-membench-time-wait/1", "report": report }))?;
    if report.evicted > 0 || report.reopened > 0 {
        bail!("in-memory churn: records were evicted or reopened; the figures do not describe a full table");
    }
    Ok(json_path)
}
