//! TIME_WAIT churn in memory: clients open connections at a fixed rate of simulated time, the
//! server closes first and keeps each 4-tuple in TIME_WAIT for a 60 s 2MSL, for longer than
//! 2MSL, so the table fills to rate x 2MSL records and stays there while old records expire as
//! fast as new ones come. Each window of simulated time records the TIME_WAIT count, the
//! table's bytes per record, RSS, and the wall-clock rate at which the worker processed that
//! window's lifecycles. A reference worker under the same load but with a 100 ms 2MSL (its
//! table near empty) runs right after each window, so that the rate at 1 M records is compared
//! with the rate at an empty table on the same machine at the same moment (the machine is
//! shared: rates measured a minute apart are not comparable).

use core::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::clock::Stopwatch;
use super::harness::{BackToBack, HarnessConfig, CLIENT_PORTS};
use super::rss;
use crate::curve::Curve;
use crate::sys::report::median;

/// The TIME_WAIT count the churn targets hold.
pub const TARGET_RECORDS: usize = 1_000_000;
/// The largest drop of the rate between an empty table and [`TARGET_RECORDS`].
pub const TARGET_RATE_DROP: f64 = 0.10;
/// 2MSL of the reference worker, whose table stays near empty (rate x 100 ms records).
pub const REFERENCE_TIME_WAIT: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct ChurnConfig {
    /// Lifecycles per second of simulated time.
    pub rate_per_s: u64,
    /// 2MSL.
    pub time_wait: Duration,
    /// Simulated time in all (longer than 2MSL).
    pub duration: Duration,
    /// Simulated time per sample.
    pub window: Duration,
    /// Simulated time per tick.
    pub tick: Duration,
    /// Client interfaces (each has 64,512 ports; together they must not reuse a 4-tuple
    /// within 2MSL).
    pub clients: usize,
    /// How much RSS may move once the table is full.
    pub rss_flat_tolerance_bytes: u64,
}

impl ChurnConfig {
    /// 18,000 lifecycles per simulated second with a 60 s 2MSL (1.08 M records held), for
    /// 2MSL + 30 s, sampled every simulated second, from 20 client addresses.
    pub fn standard() -> ChurnConfig {
        ChurnConfig {
            rate_per_s: 18_000,
            time_wait: Duration::from_secs(60),
            duration: Duration::from_secs(90),
            window: Duration::from_secs(1),
            tick: Duration::from_millis(1),
            clients: 20,
            rss_flat_tolerance_bytes: 8 << 20,
        }
    }

    /// Records held at steady state.
    pub fn steady_records(&self) -> usize {
        (self.rate_per_s as f64 * self.time_wait.as_secs_f64()) as usize
    }
}

/// One window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChurnSample {
    /// Simulated seconds at the end of the window.
    pub sim_s: f64,
    /// TIME_WAIT records at the start of the window.
    pub time_wait_start: usize,
    /// TIME_WAIT records at the end.
    pub time_wait: usize,
    /// Bytes allocated by the TIME_WAIT table.
    pub table_bytes: usize,
    /// RSS of this process.
    pub rss_bytes: u64,
    /// Lifecycles completed in the window.
    pub lifecycles: u64,
    /// Those lifecycles per second of wall-clock time.
    pub per_s: f64,
    /// Those lifecycles per second of this thread's CPU time.
    pub per_cpu_s: f64,
    /// The reference (same load, a near-empty table) per CPU second, run right after.
    pub reference_per_cpu_s: f64,
}

impl ChurnSample {
    /// This window's rate over the reference's.
    pub fn ratio_to_reference(&self) -> f64 {
        self.per_cpu_s / self.reference_per_cpu_s
    }
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    /// Lifecycles per simulated second.
    pub rate_per_s: u64,
    /// 2MSL in seconds.
    pub time_wait_s: f64,
    /// 2MSL of the reference, in seconds.
    pub reference_time_wait_s: f64,
    /// Every window.
    pub samples: Vec<ChurnSample>,
    /// The most records held.
    pub peak_records: usize,
    /// Bytes the table allocated, over the records held at the peak.
    pub table_bytes_per_record: f64,
    /// RSS growth from the start to the peak, over the records held at the peak.
    pub rss_bytes_per_record: f64,
    /// Median rate (per CPU second) of the reference in the windows that began with at
    /// least 1 M records in the churn's table.
    pub rate_empty_per_s: Option<f64>,
    /// Median rate (per CPU second) of the churn in those windows.
    pub rate_full_per_s: Option<f64>,
    /// 1 - the median over those windows of (churn rate / reference rate).
    pub rate_drop: Option<f64>,
    /// Highest minus lowest RSS over the windows after 2MSL.
    pub rss_steady_range_bytes: u64,
    /// Whether RSS stayed within the tolerance after 2MSL.
    pub rss_flat: bool,
    /// TIME_WAIT records reopened by a SYN (a 4-tuple reused within 2MSL).
    pub reopened: u64,
    /// Records ended early because the table was full.
    pub evicted: u64,
    /// Lifecycles in all (the reference's not counted).
    pub lifecycles: u64,
    /// Whole-run wall-clock rate of the churn.
    pub per_s: f64,
    /// Whole-run rate of the churn per CPU second.
    pub per_cpu_s: f64,
}

impl ChurnReport {
    /// At least [`TARGET_RECORDS`] held.
    pub fn holds_target(&self) -> bool {
        self.peak_records >= TARGET_RECORDS
    }

    /// The rate dropped by no more than [`TARGET_RATE_DROP`].
    pub fn rate_target_met(&self) -> Option<bool> {
        self.rate_drop.map(|d| d <= TARGET_RATE_DROP)
    }

    /// The curve: records, bytes per record, RSS and the rates over simulated time.
    pub fn curve(&self, title: &str) -> Curve {
        let mut c = Curve::new(
            title,
            &[
                "simulated_s",
                "time_wait_records",
                "table_bytes_per_record",
                "rss_mib",
                "lifecycles_per_cpu_s",
                "reference_empty_table_per_cpu_s",
                "lifecycles_per_wall_s",
            ],
        );
        for s in &self.samples {
            let per_record = if s.time_wait > 0 { s.table_bytes as f64 / s.time_wait as f64 } else { 0.0 };
            c.rows.push(vec![
                s.sim_s,
                s.time_wait as f64,
                per_record.round(),
                rss::mib(s.rss_bytes),
                s.per_cpu_s.round(),
                s.reference_per_cpu_s.round(),
                s.per_s.round(),
            ]);
        }
        c
    }
}

/// A worker with `time_wait` and room for `records`, under the churn's load.
fn harness(config: &ChurnConfig, time_wait: Duration, records: usize) -> Result<BackToBack> {
    let per_tick_max = (config.rate_per_s as u128 * config.tick.as_nanos()).div_ceil(1_000_000_000) as usize;
    BackToBack::new(HarnessConfig {
        clients: config.clients,
        time_wait,
        // Room for the steady state and a margin, allocated now.
        max_time_wait: records + records / 8 + 1024,
        max_connections: per_tick_max * 4 + 64,
        frames: per_tick_max * 32 + 256,
        tick: config.tick,
    })
}

/// Runs `ticks` ticks of the load from tick `first` on; returns CPU and wall seconds.
fn run_ticks(net: &mut BackToBack, config: &ChurnConfig, first: u64, ticks: u64) -> Result<(f64, f64)> {
    let tick_ns = config.tick.as_nanos();
    let watch = Stopwatch::start();
    for tick in first..first + ticks {
        // Opens follow rate x time exactly, whatever the tick.
        let due = |t: u64| (config.rate_per_s as u128 * t as u128 * tick_ns / 1_000_000_000) as usize;
        net.tick(due(tick + 1) - due(tick))?;
    }
    let (wall, cpu) = watch.elapsed_s();
    let t = net.totals();
    ensure!(
        t.failed + t.short_answers + t.connect_errors + t.misrouted == 0,
        "lifecycles went wrong: {t:?} (server counters: {})",
        net.server.counters()
    );
    Ok((cpu, wall))
}

/// Runs the churn; `progress` sees each window as it ends. After each window, a reference
/// worker with a near-empty table (a 2MSL of `REFERENCE_TIME_WAIT`) runs the same number of
/// ticks, so the two rates of a window saw the same machine.
pub fn run(config: ChurnConfig, mut progress: impl FnMut(&ChurnSample)) -> Result<ChurnReport> {
    let tick_ns = config.tick.as_nanos().max(1);
    ensure!(config.duration > config.time_wait, "the churn must last longer than 2MSL");
    let ports = config.clients as u64 * u64::from(CLIENT_PORTS.1 - CLIENT_PORTS.0 + 1);
    ensure!(
        ports as f64 > config.rate_per_s as f64 * config.time_wait.as_secs_f64() * 1.05,
        "{} clients have too few 4-tuples for {}/s over a 2MSL of {:?}",
        config.clients,
        config.rate_per_s,
        config.time_wait
    );
    let reference_records = (config.rate_per_s as f64 * REFERENCE_TIME_WAIT.as_secs_f64()) as usize;
    let mut reference = harness(&config, REFERENCE_TIME_WAIT, reference_records)?;
    let rss_start = rss::self_rss_bytes().context("cannot read this process's RSS")?;
    let mut net = harness(&config, config.time_wait, config.steady_records())?;
    let ticks = (config.duration.as_nanos() / tick_ns) as u64;
    let ticks_per_window = (config.window.as_nanos() / tick_ns).max(1) as u64;
    let mut samples = Vec::new();
    let (mut cpu_s, mut wall_s) = (0.0, 0.0);
    let mut tick = 0;
    while tick + ticks_per_window <= ticks {
        let time_wait_start = net.server.time_wait_count();
        let done_before = net.totals().completed;
        let (cpu, wall) = run_ticks(&mut net, &config, tick, ticks_per_window)?;
        let reference_before = reference.totals().completed;
        let (reference_cpu, _) = run_ticks(&mut reference, &config, tick, ticks_per_window)?;
        tick += ticks_per_window;
        cpu_s += cpu;
        wall_s += wall;
        let done = net.totals().completed - done_before;
        let sample = ChurnSample {
            sim_s: (tick as u128 * tick_ns) as f64 / 1e9,
            time_wait_start,
            time_wait: net.server.time_wait_count(),
            table_bytes: super::harness::time_wait_table_bytes(&net.server),
            rss_bytes: rss::self_rss_bytes().context("cannot read this process's RSS")?,
            lifecycles: done,
            per_s: done as f64 / wall,
            per_cpu_s: done as f64 / cpu,
            reference_per_cpu_s: (reference.totals().completed - reference_before) as f64 / reference_cpu,
        };
        progress(&sample);
        samples.push(sample);
    }
    let totals = net.totals();
    let counters = net.server.counters();
    let peak = samples.iter().max_by_key(|s| s.time_wait).copied().context("no window ended")?;
    let full: Vec<&ChurnSample> = samples.iter().filter(|s| s.time_wait_start >= TARGET_RECORDS).collect();
    let median_of = |rate: fn(&ChurnSample) -> f64| median(&full.iter().map(|s| rate(s)).collect::<Vec<f64>>());
    let steady: Vec<u64> = samples
        .iter()
        .filter(|s| s.sim_s >= config.time_wait.as_secs_f64() + 2.0 * config.window.as_secs_f64())
        .map(|s| s.rss_bytes)
        .collect();
    let rss_range = match (steady.iter().max(), steady.iter().min()) {
        (Some(hi), Some(lo)) => hi - lo,
        _ => 0,
    };
    Ok(ChurnReport {
        rate_per_s: config.rate_per_s,
        time_wait_s: config.time_wait.as_secs_f64(),
        reference_time_wait_s: REFERENCE_TIME_WAIT.as_secs_f64(),
        peak_records: peak.time_wait,
        table_bytes_per_record: peak.table_bytes as f64 / peak.time_wait.max(1) as f64,
        rss_bytes_per_record: peak.rss_bytes.saturating_sub(rss_start) as f64 / peak.time_wait.max(1) as f64,
        rate_empty_per_s: median_of(|s| s.reference_per_cpu_s),
        rate_full_per_s: median_of(|s| s.per_cpu_s),
        rate_drop: median_of(ChurnSample::ratio_to_reference).map(|r| 1.0 - r),
        rss_steady_range_bytes: rss_range,
        rss_flat: !steady.is_empty() && rss_range <= config.rss_flat_tolerance_bytes,
        reopened: counters.time_wait_reopened,
        evicted: counters.time_wait_evicted,
        lifecycles: totals.completed,
        per_s: totals.completed as f64 / wall_s,
        per_cpu_s: totals.completed as f64 / cpu_s,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_churn_fills_the_table_to_rate_times_2msl_and_holds_it() {
        let config = ChurnConfig {
            rate_per_s: 5_000,
            time_wait: Duration::from_secs(4),
            duration: Duration::from_secs(7),
            window: Duration::from_millis(200),
            tick: Duration::from_millis(1),
            clients: 1,
            rss_flat_tolerance_bytes: 64 << 20,
        };
        let report = run(config, |_| {}).unwrap();
        assert_eq!(report.samples.len(), 35);
        // A lifecycle completes within the tick that opens it (the wire is instantaneous).
        assert_eq!(report.lifecycles, 35_000);
        // Records grow for 2MSL, then expire as fast as they come: 20,000 held.
        assert!((19_900..=20_100).contains(&report.peak_records), "{}", report.peak_records);
        let last = report.samples.last().unwrap();
        assert!((19_900..=20_100).contains(&last.time_wait), "{}", last.time_wait);
        assert_eq!((report.reopened, report.evicted), (0, 0));
        assert!(report.table_bytes_per_record > 50.0, "{}", report.table_bytes_per_record);
        assert_eq!(report.rate_full_per_s, None, "never reached 1 M records");
        assert_eq!(report.rate_drop, None);
        assert!(report.samples.iter().all(|s| s.reference_per_cpu_s > 0.0));
        assert!(!report.holds_target());
        let curve = report.curve("t");
        assert_eq!(curve.rows.len(), 35);
        assert_eq!(curve.rows[34][1], last.time_wait as f64);
    }

    #[test]
    fn too_few_ports_for_the_rate_is_refused() {
        let config = ChurnConfig { clients: 1, ..ChurnConfig::standard() };
        assert!(run(config, |_| {}).is_err());
    }
}
