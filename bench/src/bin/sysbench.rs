//! `synack-sysbench`: the veth system benchmark. Run as root; see `scripts/bench.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use synack_bench::mem::cases::{self as memory, MEMORY_CASES};
use synack_bench::sys::{cleanup, report, run};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CASES: &str =
    "memory_lifecycles,memory_time_wait,connection_rate,keepalive,ping_pong,bulk,time_wait_churn,proxy,concurrency,ceiling";

/// synack against the Linux kernel stack over veth, and the AF_XDP packet ceiling; first, the
/// in-memory cases (`memory_*`: no network, no root).
#[derive(Debug, Parser)]
#[command(name = "synack-sysbench", version)]
struct Args {
    /// One run per case and shorter durations (about 1 minute without synack).
    #[arg(long)]
    quick: bool,
    /// Runs per case and target (medians are reported); default 3, or 1 with --quick.
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds per wrk and sockperf run; default 8, or 3 with --quick.
    #[arg(long)]
    seconds: Option<u64>,
    /// Cases to run, comma-separated.
    #[arg(long, default_value = CASES, value_delimiter = ',')]
    cases: Vec<String>,
    /// CPU of the servers.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// CPU of the load generators.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// Connections `synack load` keeps in flight (closed loop) in `connection_rate` and
    /// `time_wait_churn`.
    #[arg(long, default_value_t = 256)]
    load_concurrency: u64,
    /// `concurrency`: idle connections to hold [default: 100,000, or 20,000 with --quick];
    /// at most 1,000,000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    conns: Option<u64>,
    /// `concurrency`: connects in flight, over all client processes.
    #[arg(long, default_value_t = 512)]
    conns_in_flight: u64,
    /// `concurrency`: synack's `--buffer-bytes` (send and receive ring bytes per connection).
    #[arg(long, default_value_t = 16_384)]
    conns_buffer_bytes: usize,
    /// synack's binary (default: $SYNACK_BIN, else `synack` next to this binary, else
    /// <workspace>/target/release/synack).
    #[arg(long)]
    synack_bin: Option<PathBuf>,
    /// Directory of the JSON results.
    #[arg(long)]
    results_dir: Option<PathBuf>,
}

fn workspace_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    dir.canonicalize().unwrap_or(dir)
}

/// Where synack's binary should be, and whether it is there.
fn locate_synack(explicit: Option<PathBuf>) -> (PathBuf, bool) {
    if let Some(path) = explicit.or_else(|| std::env::var_os("SYNACK_BIN").map(PathBuf::from)) {
        let exists = path.is_file();
        return (path, exists);
    }
    if let Some(next_to_us) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("synack"))) {
        if next_to_us.is_file() {
            return (next_to_us, true);
        }
    }
    let path = workspace_dir().join("target/release/synack");
    let exists = path.is_file();
    (path, exists)
}

/// `synack-hold`, built with this binary (`cargo build --bin synack-hold`): next to it.
fn locate_hold() -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join("synack-hold");
    path.is_file().then_some(path)
}

fn main() -> ExitCode {
    let args = Args::parse();
    for case in &args.cases {
        if !CASES.split(',').any(|c| c == case) {
            eprintln!("synack-sysbench: unknown case {case:?} (cases: {CASES})");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = cleanup::install() {
        eprintln!("synack-sysbench: cannot install signal handling: {e}");
        return ExitCode::FAILURE;
    }
    let results_dir = args.results_dir.clone().unwrap_or_else(|| workspace_dir().join("bench/results"));
    let (_, stamp) = report::utc_stamps(report::unix_now());
    let mut failed = false;
    for case in args.cases.iter().filter(|c| MEMORY_CASES.contains(&c.as_str())) {
        if let Err(e) = std::fs::create_dir_all(&results_dir) {
            eprintln!("synack-sysbench: cannot create {}: {e}", results_dir.display());
            return ExitCode::FAILURE;
        }
        let outcome = match case.as_str() {
            "memory_lifecycles" => memory::run_lifecycles(args.quick, &results_dir, &stamp),
            _ => memory::run_time_wait(args.quick, &results_dir, &stamp),
        };
        if let Err(e) = outcome {
            eprintln!("synack-sysbench: {case}: {e:#}");
            failed = true;
        }
        println!();
    }
    let system_cases: Vec<String> =
        args.cases.iter().filter(|c| !MEMORY_CASES.contains(&c.as_str())).cloned().collect();
    if system_cases.is_empty() {
        return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let seconds = args.seconds.unwrap_or(if args.quick { 3 } else { 8 });
    let (synack_path, synack_exists) = locate_synack(args.synack_bin);
    let config = run::Config {
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        wrk_duration: Duration::from_secs(seconds),
        sockperf_duration: Duration::from_secs(seconds),
        ceiling_warmup: Duration::from_millis(500),
        ceiling_window: Duration::from_secs(if args.quick { 2 } else { 4 }),
        server_cpu: args.server_cpu,
        client_cpu: args.client_cpu,
        // A /24 of 198.18.0.0/15 that differs between concurrent runs.
        subnet: (std::process::id() % 250) as u8 + 1,
        synack_bin: synack_exists.then(|| synack_path.clone()),
        synack_bin_looked_for: synack_path,
        results_dir,
        quick: args.quick,
        cases: system_cases,
        load_concurrency: args.load_concurrency.max(1),
        hold_bin: locate_hold(),
        conns: args.conns.unwrap_or(if args.quick { 20_000 } else { 100_000 }),
        conns_in_flight: args.conns_in_flight.max(1),
        conns_buffer_bytes: args.conns_buffer_bytes,
    };
    match run::run(&config) {
        Ok(_) if failed => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if e.is::<cleanup::Interrupted>() => {
            eprintln!("synack-sysbench: interrupted; namespaces and processes removed");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("synack-sysbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
