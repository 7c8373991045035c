//! Millions of connection lifecycles through one server worker's table: handshake, request,
//! answer, the server closes first, the client closes, the server's TIME_WAIT record expires.
//! A sample every so many lifecycles records live connections, slab slots, TIME_WAIT
//! records, frames and RSS; at the end, with every record expired, slab, frames and TIME_WAIT
//! must be back to zero and RSS within a tolerance of its value after the warm-up.

use core::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::clock::Stopwatch;
use super::harness::{BackToBack, HarnessConfig};
use super::rss;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct LifecyclesConfig {
    /// Lifecycles in all.
    pub lifecycles: u64,
    /// A sample every this many; the first sample ends the warm-up.
    pub sample_every: u64,
    /// Connections opened per tick of simulated time.
    pub per_tick: usize,
    /// Simulated time per tick.
    pub tick: Duration,
    /// 2MSL (short, so that records expire while the run goes on).
    pub time_wait: Duration,
    /// Client interfaces.
    pub clients: usize,
    /// How far RSS may end above its value after the warm-up.
    pub rss_tolerance_bytes: u64,
}

impl LifecyclesConfig {
    /// 10 M lifecycles, a sample every 1 M, 200 per millisecond (200,000/s of simulated
    /// time) with a 100 ms 2MSL: about 20,000 TIME_WAIT records at any time.
    pub fn standard() -> LifecyclesConfig {
        LifecyclesConfig {
            lifecycles: 10_000_000,
            sample_every: 1_000_000,
            per_tick: 200,
            tick: Duration::from_millis(1),
            time_wait: Duration::from_millis(100),
            clients: 4,
            rss_tolerance_bytes: 4 << 20,
        }
    }
}

/// One sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LifecycleSample {
    /// Lifecycles completed so far.
    pub lifecycles: u64,
    /// Simulated seconds since the start.
    pub sim_s: f64,
    /// Connections in the server's table (slab slots in use).
    pub server_connections: usize,
    /// Connections in the clients' tables.
    pub client_connections: usize,
    /// Slab slots the server has created (its high-water mark).
    pub slab_slots_created: usize,
    /// TIME_WAIT records on the server.
    pub time_wait: usize,
    /// Bytes allocated by the server's TIME_WAIT table.
    pub time_wait_table_bytes: usize,
    /// Frames out of the pool at this quiet moment (none should be).
    pub frames_in_use: usize,
    /// The most frames out at once so far.
    pub frames_peak: usize,
    /// Resident memory of this process.
    pub rss_bytes: u64,
    /// Lifecycles per second of wall-clock time since the previous sample.
    pub window_per_s: f64,
    /// Lifecycles per second of this thread's CPU time since the previous sample.
    pub window_per_cpu_s: f64,
}

/// One end-of-run check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LifecyclesReport {
    /// Lifecycles run.
    pub lifecycles: u64,
    /// Before the first connection.
    pub start: LifecycleSample,
    /// Every `sample_every` lifecycles.
    pub samples: Vec<LifecycleSample>,
    /// After the last record expired.
    pub end: LifecycleSample,
    /// Wall-clock seconds of the whole run (samples included).
    pub wall_s: f64,
    /// Lifecycles per wall-clock second over the whole run.
    pub per_s: f64,
    /// CPU seconds of the whole run.
    pub cpu_s: f64,
    /// Lifecycles per CPU second over the whole run.
    pub per_cpu_s: f64,
    /// Segments the server received and sent per lifecycle.
    pub server_frames_per_lifecycle: f64,
    /// The end-of-run checks.
    pub checks: Vec<Check>,
}

impl LifecyclesReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

fn sample(net: &BackToBack, start: synack::time::Instant, rates: (f64, f64)) -> Result<LifecycleSample> {
    Ok(LifecycleSample {
        lifecycles: net.totals().completed,
        sim_s: net.now.saturating_duration_since(start).as_secs_f64(),
        server_connections: net.server.connection_count(),
        client_connections: net.client_connections(),
        slab_slots_created: net.server.slots_created(),
        time_wait: net.server.time_wait_count(),
        time_wait_table_bytes: super::harness::time_wait_table_bytes(&net.server),
        frames_in_use: net.pool.in_use(),
        frames_peak: net.pool.peak_in_use,
        rss_bytes: rss::self_rss_bytes().context("cannot read this process's RSS")?,
        window_per_s: rates.0,
        window_per_cpu_s: rates.1,
    })
}

/// Runs the lifecycles; `progress` sees each sample as it is taken.
pub fn run(config: LifecyclesConfig, mut progress: impl FnMut(&LifecycleSample)) -> Result<LifecyclesReport> {
    ensure!(config.sample_every > 0 && config.per_tick > 0, "sample_every and per_tick must be non-zero");
    // Room for every connection a tick opens, twice over (they live for a tick or two).
    let in_flight = config.per_tick * 4;
    let mut net = BackToBack::new(HarnessConfig {
        clients: config.clients,
        time_wait: config.time_wait,
        max_time_wait: (config.per_tick as u128 * config.time_wait.as_nanos() / config.tick.as_nanos().max(1)) as usize
            * 2
            + 1024,
        max_connections: in_flight,
        frames: in_flight * 8,
        tick: config.tick,
    })?;
    let origin = net.now;
    let start = sample(&net, origin, (0.0, 0.0))?;
    let started = Stopwatch::start();
    let mut opened = 0u64;
    let mut samples = Vec::new();
    let mut next_sample = config.sample_every;
    let mut window = Stopwatch::start();
    let mut window_first = 0u64;
    // Every lifecycle ends within a few ticks of its open: a bound on the loop.
    let mut ticks_left = config.lifecycles / config.per_tick as u64 + 10_000;
    while net.totals().completed < config.lifecycles {
        let opens = (config.lifecycles - opened).min(config.per_tick as u64) as usize;
        opened += opens as u64;
        net.tick(opens)?;
        let t = net.totals();
        ensure!(
            t.failed + t.short_answers + t.connect_errors + t.misrouted == 0,
            "lifecycles went wrong: {t:?} (server counters: {})",
            net.server.counters()
        );
        ticks_left = ticks_left.checked_sub(1).context("lifecycles stopped completing")?;
        if t.completed >= next_sample {
            let (wall, cpu) = window.elapsed_s();
            let done = (t.completed - window_first) as f64;
            let s = sample(&net, origin, (done / wall, done / cpu))?;
            progress(&s);
            samples.push(s);
            next_sample += config.sample_every;
            window = Stopwatch::start();
            window_first = t.completed;
        }
    }
    // Let every TIME_WAIT record run out.
    let drain_ticks = (config.time_wait.as_nanos() / config.tick.as_nanos().max(1)) as usize + 3;
    for _ in 0..drain_ticks {
        net.tick(0)?;
    }
    let (wall_s, cpu_s) = started.elapsed_s();
    let totals = net.totals();
    let end = sample(&net, origin, (0.0, 0.0))?;
    let warm = samples.first().copied().unwrap_or(start);
    let counters = net.server.counters();
    let server_frames = counters.rx_frames + counters.tx_frames;
    let mut checks = Vec::new();
    let mut check = |ok: bool, what: String| checks.push(Check { what, ok });
    check(
        totals.completed == config.lifecycles && totals.served == config.lifecycles,
        format!(
            "{} lifecycles completed, {} requests served, of {}",
            totals.completed, totals.served, config.lifecycles
        ),
    );
    check(
        end.server_connections == 0 && end.client_connections == 0,
        format!("slab slots in use back to 0 (server {}, clients {})", end.server_connections, end.client_connections),
    );
    check(
        end.slab_slots_created == warm.slab_slots_created,
        format!(
            "slab stopped growing after the warm-up ({} slots then, {} at the end)",
            warm.slab_slots_created, end.slab_slots_created
        ),
    );
    check(end.time_wait == 0, format!("TIME_WAIT records back to 0 ({})", end.time_wait));
    check(
        counters.time_wait_entered == config.lifecycles && counters.time_wait_expired == config.lifecycles,
        format!(
            "every lifecycle left a TIME_WAIT record that expired ({} entered, {} expired, {} evicted)",
            counters.time_wait_entered, counters.time_wait_expired, counters.time_wait_evicted
        ),
    );
    check(
        end.frames_in_use == 0 && net.pool.lent == net.pool.returned,
        format!(
            "frames back in the pool ({} in use; {} lent, {} returned)",
            end.frames_in_use, net.pool.lent, net.pool.returned
        ),
    );
    check(
        end.rss_bytes <= warm.rss_bytes + config.rss_tolerance_bytes,
        format!(
            "RSS {:.1} MiB at the end, {:.1} MiB after the warm-up (tolerance {:.1} MiB)",
            rss::mib(end.rss_bytes),
            rss::mib(warm.rss_bytes),
            rss::mib(config.rss_tolerance_bytes)
        ),
    );
    check(counters.dropped() == 0, format!("the server dropped nothing ({} dropped)", counters.dropped()));
    Ok(LifecyclesReport {
        lifecycles: totals.completed,
        start,
        samples,
        end,
        wall_s,
        per_s: totals.completed as f64 / wall_s,
        cpu_s,
        per_cpu_s: totals.completed as f64 / cpu_s,
        server_frames_per_lifecycle: server_frames as f64 / totals.completed.max(1) as f64,
        checks,
    })
}

// The test of a short run (its RSS checks measure the whole process) is in
// bench/tests/lifecycles_rss.rs: a test binary of its own, so no other test thread allocates
// while it measures.
