//! One run of the system benchmark: set up the link, run every case against synack and the
//! kernel (interleaved, run by run, so that both see the same machine), measure the packet
//! ceiling, print the table and write the JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cleanup::{self, Interrupted};
use super::matrix;
use super::net::{self, TestLink};
use super::parse;
use super::procs::{self, RunDir, Running};
use super::report::{self, format_figure, format_ratio, median};
use super::xsk;

/// Body length served when synack is not there to ask (its http app's `ok`).
pub const DEFAULT_HTTP_BODY_LEN: usize = 2;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Runs per case and target; medians are reported.
    pub runs: usize,
    /// Length of each wrk run.
    pub wrk_duration: Duration,
    /// Length of each sockperf run.
    pub sockperf_duration: Duration,
    /// Ceiling: time after the first frame before counting starts.
    pub ceiling_warmup: Duration,
    /// Ceiling: counting window.
    pub ceiling_window: Duration,
    /// CPU of the servers (and the AF_XDP receiver).
    pub server_cpu: usize,
    /// CPU of the load generators (and the AF_XDP blaster).
    pub client_cpu: usize,
    /// The run uses 198.18.`subnet`.0/24.
    pub subnet: u8,
    /// synack's binary, when it exists.
    pub synack_bin: Option<PathBuf>,
    /// Where synack was looked for (for the message when it is missing).
    pub synack_bin_looked_for: PathBuf,
    /// Directory of the JSON results.
    pub results_dir: PathBuf,
    /// Whether `--quick` was given (recorded in the JSON).
    pub quick: bool,
    /// Cases to run (`connection_rate`, `keepalive`, `ping_pong`, `bulk`, `time_wait_churn`, `proxy`,
    /// `concurrency`, `ceiling`).
    pub cases: Vec<String>,
    /// `synack load --concurrency` in the connection-rate matrix and the TIME_WAIT churn.
    pub load_concurrency: u64,
    /// `synack-hold` (the `concurrency` case's Linux client and server), when it exists.
    pub hold_bin: Option<PathBuf>,
    /// The `concurrency` case: connections held, connects in flight, synack's buffer bytes.
    pub conns: u64,
    /// See `conns`.
    pub conns_in_flight: u64,
    /// See `conns`.
    pub conns_buffer_bytes: usize,
}

/// The two stacks compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// synack serving from the AF_XDP socket.
    Synack,
    /// The Linux kernel's TCP stack (nginx, `sockperf server`).
    Kernel,
}

impl Target {
    fn key(self) -> &'static str {
        match self {
            Target::Synack => "synack",
            Target::Kernel => "kernel",
        }
    }
}

/// One row of the table.
struct MetricSpec {
    key: &'static str,
    label: &'static str,
}

struct CaseSpec {
    key: &'static str,
    title: &'static str,
    metrics: &'static [MetricSpec],
}

const CASES: &[CaseSpec] = &[CaseSpec {
    key: "ping_pong",
    title: "sockperf ping-pong 64 B",
    metrics: &[
        MetricSpec { key: "half_rtt_p50_us", label: "half RTT p50 (us)" },
        MetricSpec { key: "half_rtt_p99_us", label: "half RTT p99 (us)" },
        MetricSpec { key: "half_rtt_p999_us", label: "half RTT p99.9 (us)" },
    ],
}];

/// What one target gave in one case.
#[derive(Debug, Default)]
struct TargetResults {
    /// Not run at all, and why.
    unavailable: Option<String>,
    /// Each run: its metrics (or its error) and its raw record.
    runs: Vec<Value>,
    /// Metric values of the successful runs, by metric key.
    values: Vec<(String, f64)>,
}

impl TargetResults {
    fn median_of(&self, key: &str) -> Option<f64> {
        let values: Vec<f64> = self.values.iter().filter(|(k, _)| k == key).map(|&(_, v)| v).collect();
        median(&values)
    }

    fn failed_runs(&self) -> usize {
        self.runs.iter().filter(|r| r.get("error").is_some()).count()
    }
}

struct Ports {
    kernel_http: u16,
    synack_http: u16,
    kernel_echo: u16,
    synack_echo: u16,
}

const PORTS: Ports = Ports { kernel_http: 8080, synack_http: 8081, kernel_echo: 11111, synack_echo: 11112 };

/// Checks that the benchmark can run: root, the tools, the CPUs.
pub fn preflight(config: &Config) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "synack-sysbench must run as root: it creates network namespaces and veth pairs, \
             and binds AF_XDP sockets (try: sudo bash scripts/bench.sh)"
        );
    }
    let missing: Vec<&str> = ["ip", "ethtool", "taskset", "wrk", "sockperf", "nginx", "iperf3"]
        .into_iter()
        .filter(|tool| !program_exists(tool))
        .collect();
    if !missing.is_empty() {
        bail!("missing tools: {} (install them with: bash scripts/deps.sh bench)", missing.join(", "));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for cpu in [config.server_cpu, config.client_cpu] {
        if cpu >= cpus {
            bail!("CPU {cpu} does not exist here ({cpus} CPUs)");
        }
    }
    if config.server_cpu == config.client_cpu {
        bail!("the server and the client must run on different CPUs");
    }
    Ok(())
}

fn program_exists(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from)).any(|dir| dir.join(name).is_file())
}

fn tool_version(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            parse::strip_ansi(text.lines().next().unwrap_or("").trim())
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Runs the benchmark, prints the table and writes the JSON; returns the JSON's path.
pub fn run(config: &Config) -> Result<PathBuf> {
    preflight(config)?;
    let started = Instant::now();
    let (started_at, stamp) = report::utc_stamps(report::unix_now());
    net::remove_stale_namespaces();
    let link = TestLink::create(config.subnet).context("cannot create the test network")?;
    let dir = RunDir::create()?;
    println!(
        "test network: {} {} ({}) <-veth-> {} {} ({}); server on CPU {}, client on CPU {}",
        link.server.netns.name(),
        link.server.ifname,
        link.server.ip,
        link.client.netns.name(),
        link.client.ifname,
        link.client.ip,
        config.server_cpu,
        config.client_cpu
    );

    let synack_missing = match &config.synack_bin {
        Some(_) => None,
        None => {
            println!(
                "synack binary not found ({}; set SYNACK_BIN): synack rows are n/a",
                config.synack_bin_looked_for.display()
            );
            Some("synack binary missing".to_owned())
        }
    };
    let wants = |case: &str| config.cases.iter().any(|c| c == case);

    // nginx serves a body as long as synack's: ask synack when it is there.
    let mut body_note = format!("default ({DEFAULT_HTTP_BODY_LEN} bytes, synack's `ok`)");
    let mut body_len = DEFAULT_HTTP_BODY_LEN;
    if let (Some(bin), true) = (&config.synack_bin, wants("connection_rate") || wants("keepalive")) {
        match probe_synack_body(config, &link, bin) {
            Ok(len) => {
                body_len = len;
                body_note = format!("{len} bytes, as synack's http app serves");
            }
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => println!("cannot ask synack's http app for its body length ({e:#}); using {body_len} bytes"),
        }
    }

    let mut case_json = Vec::new();
    let mut table_rows = Vec::new();
    let synack_has_load = config.synack_bin.as_deref().is_some_and(super::churn::has_load_command);
    let mut matrices = Vec::new();
    for (case, mode) in [("connection_rate", matrix::Mode::Close), ("keepalive", matrix::Mode::KeepAlive)] {
        if !wants(case) {
            continue;
        }
        let matrix_config = matrix::Config {
            mode,
            runs: config.runs,
            duration: config.wrk_duration,
            server_cpu: config.server_cpu,
            client_cpu: config.client_cpu,
            load_concurrency: config.load_concurrency,
            synack_bin: config.synack_bin.as_deref(),
            synack_has_load,
            body_len,
            nginx_addr: server_addr(&link, PORTS.kernel_http),
            synack_addr: server_addr(&link, PORTS.synack_http),
        };
        let m = matrix::run(&matrix_config, &link, &dir)?;
        // In the main table: synack's server against nginx, once per client ((b) against (a),
        // (c) against (d)), for each metric of the mode.
        let (titles, metrics): ([&str; 2], &[MatrixMetric]) = match mode {
            matrix::Mode::Close => (
                [
                    "connection rate, wrk client (Connection: close)",
                    "connection rate, synack load client (Connection: close)",
                ],
                &[("connections/s", "connections_per_s", matrix::PairingResults::rate)],
            ),
            matrix::Mode::KeepAlive => (
                ["keep-alive, wrk client (64 conns)", "keep-alive, synack load client (64 conns)"],
                &[
                    ("requests/s", "requests_per_s", matrix::PairingResults::rate),
                    ("latency p99 (us)", "latency_p99_us", matrix::PairingResults::p99),
                ],
            ),
        };
        for (title, (synack_key, kernel_key)) in titles.into_iter().zip([("b", "a"), ("c", "d")]) {
            for &(label, key, figure) in metrics {
                let cell = |key: &str| {
                    let r = &m.results[matrix::PAIRINGS.iter().position(|p| p.key == key).unwrap_or(0)];
                    match (&r.unavailable, figure(r)) {
                        (Some(why), _) => (format!("n/a ({why})"), None),
                        (None, Some(v)) => (format_figure(v), Some(v)),
                        (None, None) => ("failed (see JSON)".to_owned(), None),
                    }
                };
                let ((synack_text, synack_value), (kernel_text, kernel_value)) = (cell(synack_key), cell(kernel_key));
                let ratio = match (synack_value, kernel_value) {
                    (Some(s), Some(k)) if k != 0.0 => Some(s / k),
                    _ => None,
                };
                table_rows.push((
                    (case, title),
                    label.to_owned(),
                    key,
                    synack_text,
                    kernel_text,
                    synack_value,
                    kernel_value,
                    ratio,
                ));
            }
        }
        matrices.push(m);
    }
    for spec in CASES.iter().filter(|c| wants(c.key)) {
        println!("== {}", spec.title);
        let mut results = [TargetResults::default(), TargetResults::default()];
        results[0].unavailable = synack_missing.clone();
        for run_index in 0..config.runs {
            for (slot, target) in [(0, Target::Synack), (1, Target::Kernel)] {
                if results[slot].unavailable.is_some() {
                    continue;
                }
                cleanup::check_interrupted()?;
                let outcome = run_case_once(config, &link, &dir, spec.key, target, body_len);
                let record = match outcome {
                    Ok((values, raw)) => {
                        let summary: Vec<String> =
                            values.iter().map(|(k, v)| format!("{k} {}", format_figure(*v))).collect();
                        println!("  {:<6} run {}/{}: {}", target.key(), run_index + 1, config.runs, summary.join(", "));
                        results[slot].values.extend(values.iter().map(|(k, v)| (k.to_string(), *v)));
                        raw
                    }
                    Err(e) if e.is::<Interrupted>() => return Err(e),
                    Err(e) => {
                        println!("  {:<6} run {}/{}: FAILED: {e:#}", target.key(), run_index + 1, config.runs);
                        json!({ "error": format!("{e:#}") })
                    }
                };
                results[slot].runs.push(record);
            }
        }
        let mut targets_json = serde_json::Map::new();
        for (slot, target) in [(0, Target::Synack), (1, Target::Kernel)] {
            let r = &results[slot];
            let medians: serde_json::Map<String, Value> =
                spec.metrics.iter().map(|m| (m.key.to_owned(), json!(r.median_of(m.key)))).collect();
            targets_json.insert(
                target.key().into(),
                json!({
                    "unavailable": r.unavailable,
                    "server": server_description(target, spec.key),
                    "runs": r.runs,
                    "failed_runs": r.failed_runs(),
                    "median": medians,
                }),
            );
        }
        for metric in spec.metrics {
            let cell = |r: &TargetResults| -> (String, Option<f64>) {
                if let Some(why) = &r.unavailable {
                    return (format!("n/a ({why})"), None);
                }
                match r.median_of(metric.key) {
                    Some(v) => (format_figure(v), Some(v)),
                    None => ("failed (see JSON)".into(), None),
                }
            };
            let (synack_text, synack_value) = cell(&results[0]);
            let (kernel_text, kernel_value) = cell(&results[1]);
            let ratio = match (synack_value, kernel_value) {
                (Some(s), Some(k)) if k != 0.0 => Some(s / k),
                _ => None,
            };
            table_rows.push((
                (spec.key, spec.title),
                metric.label.to_owned(),
                metric.key,
                synack_text,
                kernel_text,
                synack_value,
                kernel_value,
                ratio,
            ));
        }
        case_json.push(json!({
            "case": spec.key,
            "title": spec.title,
            "load": load_description(config, spec.key),
            "targets": targets_json,
        }));
    }

    let mut bulk_json = Value::Null;
    if wants("bulk") {
        // Each run makes 14 transfers; 5 s each is enough for a steady rate.
        let seconds = config.wrk_duration.as_secs().clamp(1, 5);
        let outcome = super::bulk::run(
            &link,
            config.synack_bin.as_deref(),
            config.server_cpu,
            config.client_cpu,
            config.runs,
            seconds,
        );
        match outcome {
            Ok(bulk) => {
                for (label, synack, kernel) in bulk.rows {
                    let text = |v: Option<f64>, missing: bool| match v {
                        Some(v) => format_figure(v),
                        None if missing => "n/a (synack binary missing)".to_owned(),
                        None => "failed (see JSON)".to_owned(),
                    };
                    let ratio = match (synack, kernel) {
                        (Some(s), Some(k)) if k != 0.0 => Some(s / k),
                        _ => None,
                    };
                    table_rows.push((
                        ("bulk", "bulk (iperf3, TX offload off)"),
                        label,
                        "gbit_per_s",
                        text(synack, synack_missing.is_some()),
                        text(kernel, false),
                        synack,
                        kernel,
                        ratio,
                    ));
                }
                bulk_json = bulk.json;
                draw(&bulk.bars, &config.results_dir.join(format!("{stamp}-bulk")));
            }
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => {
                println!("  bulk FAILED: {e:#}");
                bulk_json = json!({ "error": format!("{e:#}") });
            }
        }
    }

    let mut churn_json = Value::Null;
    if wants("time_wait_churn") {
        match &config.synack_bin {
            Some(bin) => {
                create_results_dir(config)?;
                let outcome = super::churn::run(
                    &link,
                    bin,
                    config.server_cpu,
                    config.client_cpu,
                    config.load_concurrency,
                    config.quick,
                    &config.results_dir,
                    &stamp,
                );
                churn_json = match outcome {
                    Ok(v) => v,
                    Err(e) if e.is::<Interrupted>() => return Err(e),
                    Err(e) => {
                        println!("  TIME_WAIT churn FAILED: {e:#}");
                        json!({ "error": format!("{e:#}") })
                    }
                };
            }
            None => println!("== TIME_WAIT churn over veth: n/a (synack binary missing)"),
        }
    }

    let mut proxy_json = Value::Null;
    if wants("proxy") {
        let proxy_config = super::proxy::Config {
            runs: config.runs,
            duration: config.wrk_duration,
            server_cpu: config.server_cpu,
            client_cpu: config.client_cpu,
            synack_bin: config.synack_bin.as_deref(),
            body_len,
            synack_poll: "sleep",
            plot: Some((config.results_dir.as_path(), stamp.as_str())),
        };
        proxy_json = match super::proxy::run(&proxy_config, &link) {
            Ok(v) => v,
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => {
                println!("  proxy case FAILED: {e:#}");
                json!({ "error": format!("{e:#}") })
            }
        };
    }

    let mut concurrency_json = Value::Null;
    if wants("concurrency") {
        match &config.hold_bin {
            Some(hold_bin) => {
                create_results_dir(config)?;
                let case = super::concurrency::Config {
                    conns: config.conns,
                    in_flight: config.conns_in_flight,
                    server_cpu: config.server_cpu,
                    client_cpu: config.client_cpu,
                    synack_bin: config.synack_bin.as_deref(),
                    hold_bin,
                    buffer_bytes: config.conns_buffer_bytes,
                    settle: Duration::from_secs(2),
                    samples: 5,
                    plot: Some((config.results_dir.as_path(), stamp.as_str())),
                };
                concurrency_json = match super::concurrency::run(&case, &link) {
                    Ok(outcome) => {
                        for (label, synack, kernel) in outcome.rows {
                            let ratio = match (synack, kernel) {
                                (Some(s), Some(k)) if k != 0.0 => Some(s / k),
                                _ => None,
                            };
                            let text = |v: Option<f64>| v.map_or("n/a".to_owned(), format_figure);
                            table_rows.push((
                                ("concurrency", "idle connections held (synack-hold client)"),
                                label,
                                "concurrency",
                                text(synack),
                                text(kernel),
                                synack,
                                kernel,
                                ratio,
                            ));
                        }
                        outcome.json
                    }
                    Err(e) if e.is::<Interrupted>() => return Err(e),
                    Err(e) => {
                        println!("  concurrency FAILED: {e:#}");
                        json!({ "error": format!("{e:#}") })
                    }
                };
            }
            None => println!("== concurrency: n/a (synack-hold not found next to synack-sysbench)"),
        }
    }

    let mut ceiling_json = Value::Null;
    let mut ceiling_pps = None;
    let mut full_ceiling_pps = None;
    if wants("ceiling") {
        println!("== AF_XDP packet ceiling (64-byte frames, one sending core)");
        let runs;
        (ceiling_pps, runs) = measure_ceilings(config, &link, super::frame::FRAME_LEN)?;
        println!("== AF_XDP packet ceiling (full-size 1514-byte frames, one sending core)");
        let full_runs;
        (full_ceiling_pps, full_runs) = measure_ceilings(config, &link, super::frame::FULL_FRAME_LEN)?;
        let xdp_left = link.server_has_xdp().unwrap_or(false);
        if xdp_left {
            println!("  note: an XDP program is still attached to {} after the ceiling runs", link.server.ifname);
        }
        ceiling_json = json!({
            "frame_bytes": super::frame::FRAME_LEN,
            "what": "AF_XDP (copy mode) receive rate of ceiling frames at the server's veth end, blasted by an AF_XDP transmit loop in the client namespace; on veth the receive work runs on the sending CPU",
            "median_rx_pps": ceiling_pps,
            "runs": runs,
            "full_size": {
                "frame_bytes": super::frame::FULL_FRAME_LEN,
                "median_rx_pps": full_ceiling_pps,
                "tcp_payload_gbit_s": full_ceiling_pps.map(full_size_payload_gbit),
                "runs": full_runs,
            },
            "xdp_program_left_attached": xdp_left,
        });
    }

    // The table.
    let header = ["case", "metric", "synack", "kernel", "synack/kernel"];
    let rows: Vec<Vec<String>> = table_rows
        .iter()
        .map(|(case, label, _, s, k, _, _, ratio)| {
            vec![case.1.to_string(), label.to_string(), s.clone(), k.clone(), format_ratio(*ratio)]
        })
        .collect();
    println!();
    println!(
        "== System benchmark over veth: medians of {} run{} (server CPU {}, client CPU {}); kernel = nginx 1 worker / sockperf server; sockperf figures are half round trips",
        config.runs, if config.runs == 1 { "" } else { "s" }, config.server_cpu, config.client_cpu
    );
    print!("{}", report::render_table(&header, &rows));
    match ceiling_pps {
        Some(c) => {
            println!("packet ceiling: {} pps AF_XDP receive, 64-byte frames, one sending core", format_figure(c))
        }
        None if wants("ceiling") => println!("packet ceiling: failed (see JSON)"),
        None => {}
    }
    if let Some(full) = full_ceiling_pps {
        println!(
            "packet ceiling, full-size frames: {} pps AF_XDP receive, 1514-byte frames = {:.2} Gbit/s of TCP payload at 1448 bytes a segment",
            format_figure(full),
            full_size_payload_gbit(full)
        );
    }
    for m in &matrices {
        println!();
        m.print_summary(ceiling_pps);
        let name = match m.mode {
            matrix::Mode::Close => "connection-rate",
            matrix::Mode::KeepAlive => "keepalive",
        };
        draw(&m.bars(), &config.results_dir.join(format!("{stamp}-{name}")));
    }
    println!("load average at the end: {}", report::load_average());

    let rows_json: Vec<Value> = table_rows
        .iter()
        .map(|(case, label, key, _, _, s, k, ratio)| {
            json!({ "case": case.0, "title": case.1, "metric": key, "label": label, "synack": s, "kernel": k, "ratio_synack_to_kernel": ratio })
        })
        .collect();
    let uname = rustix::system::uname();
    let document = json!({
        "schema": "synack-sysbench/1",
        "started_at": started_at,
        "duration_s": started.elapsed().as_secs_f64(),
        "machine": {
            "kernel": uname.release().to_string_lossy(),
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        "config": {
            "quick": config.quick,
            "runs": config.runs,
            "wrk_duration_s": config.wrk_duration.as_secs_f64(),
            "sockperf_duration_s": config.sockperf_duration.as_secs_f64(),
            "ceiling_warmup_s": config.ceiling_warmup.as_secs_f64(),
            "ceiling_window_s": config.ceiling_window.as_secs_f64(),
            "server_cpu": config.server_cpu,
            "client_cpu": config.client_cpu,
            "server_ip": link.server.ip.to_string(),
            "client_ip": link.client.ip.to_string(),
            "client_tx_checksum_offload": "off",
            "server_tx_checksum_offload": "off",
            "synack_bin": config.synack_bin.as_ref().map(|p| p.display().to_string()),
            "http_body_bytes": body_len,
            "http_body_source": body_note,
            "tools": {
                "wrk": tool_version("wrk", &["--version"]),
                "sockperf": tool_version("sockperf", &["--version"]),
                "nginx": tool_version("nginx", &["-v"]),
                "iperf3": tool_version("iperf3", &["--version"]),
            },
        },
        "rows": rows_json,
        "cases": case_json,
        "ceiling": ceiling_json,
        "bulk": bulk_json,
        "time_wait_churn": churn_json,
        "proxy": proxy_json,
        "concurrency": concurrency_json,
        "connection_rate_matrix": matrices.iter().find(|m| m.mode == matrix::Mode::Close).map(|m| m.to_json(ceiling_pps)),
        "keepalive_matrix": matrices.iter().find(|m| m.mode == matrix::Mode::KeepAlive).map(|m| m.to_json(ceiling_pps)),
        "load_average_end": report::load_average(),
    });
    create_results_dir(config)?;
    let path = config.results_dir.join(format!("{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("results: {} ({:.0} s)", path.display(), started.elapsed().as_secs_f64());
    drop(dir);
    drop(link);
    Ok(path)
}

/// Creates the results directory (the cases that write curves need it before the JSON).
fn create_results_dir(config: &Config) -> Result<()> {
    std::fs::create_dir_all(&config.results_dir)
        .with_context(|| format!("cannot create {}", config.results_dir.display()))
}

/// TCP payload a full-size frame carries at MTU 1500 with timestamps (MSS 1460 - 12).
const FULL_SIZE_PAYLOAD: f64 = 1448.0;

/// Gbit/s of TCP payload at `pps` full-size frames a second.
fn full_size_payload_gbit(pps: f64) -> f64 {
    pps * FULL_SIZE_PAYLOAD * 8.0 / 1e9
}

/// The packet ceiling with `frame_bytes` frames, `config.runs` times: the median and the runs.
fn measure_ceilings(config: &Config, link: &TestLink, frame_bytes: usize) -> Result<(Option<f64>, Vec<Value>)> {
    let mut runs = Vec::new();
    let mut rates = Vec::new();
    for run_index in 0..config.runs {
        cleanup::check_interrupted()?;
        match xsk::measure_ceiling(
            link,
            config.ceiling_warmup,
            config.ceiling_window,
            config.server_cpu,
            config.client_cpu,
            frame_bytes,
        ) {
            Ok(m) => {
                println!(
                    "  run {}/{}: received {} pps (sent {} pps; XDP rx_dropped {}, rx_ring_full {})",
                    run_index + 1,
                    config.runs,
                    format_figure(m.rx_pps),
                    format_figure(m.tx_pps),
                    m.rx_dropped,
                    m.rx_ring_full
                );
                rates.push(m.rx_pps);
                runs.push(serde_json::to_value(&m)?);
            }
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => {
                println!("  run {}/{}: FAILED: {e:#}", run_index + 1, config.runs);
                runs.push(json!({ "error": format!("{e:#}") }));
            }
        }
        // Let libxdp take its program off the interface before the next bind.
        cleanup::sleep(Duration::from_millis(200))?;
    }
    Ok((median(&rates), runs))
}

fn server_description(target: Target, case: &str) -> &'static str {
    match (target, case) {
        (Target::Synack, "ping_pong") => "synack serve --app sockperf --cores 1 --poll busy",
        (Target::Synack, _) => "synack serve --app http --cores 1 --poll busy",
        (Target::Kernel, "ping_pong") => "sockperf server --tcp",
        (Target::Kernel, _) => "nginx, 1 worker, return 200 from memory, access_log off",
    }
}

fn load_description(config: &Config, case: &str) -> String {
    match case {
        "ping_pong" => format!("sockperf ping-pong --tcp -m 64 -t {}", config.sockperf_duration.as_secs().max(1)),
        _ => String::new(),
    }
}

/// Writes bars as `<base>.csv` and `<base>.png`, saying where (or why there is no picture).
fn draw(bars: &crate::curve::Bars, base: &std::path::Path) {
    match bars.write(base) {
        Ok(png) => println!("plot: {}", png.display()),
        Err(e) => println!("plot {}: {e} (the CSV is {})", base.display(), base.with_extension("csv").display()),
    }
}

/// A metric of the main table from a matrix: label, key, the figure of a pairing.
type MatrixMetric = (&'static str, &'static str, fn(&matrix::PairingResults) -> Option<f64>);

fn server_addr(link: &TestLink, port: u16) -> SocketAddr {
    SocketAddr::from((link.server.ip, port))
}

/// Starts synack's http app once and reads the body length of its answer.
fn probe_synack_body(config: &Config, link: &TestLink, bin: &Path) -> Result<usize> {
    let addr = server_addr(link, PORTS.synack_http);
    let server =
        procs::start_synack(&link.server.netns, config.server_cpu, bin, &link.server.ifname, addr, "http", &[])?;
    let response = procs::http_get(&link.client.netns, addr);
    server.stop();
    parse::http_body_len(&response?).context("synack's answer is not an HTTP response")
}

/// Starts the server of `case` for `target`.
fn start_server(
    config: &Config,
    link: &TestLink,
    dir: &RunDir,
    case: &str,
    target: Target,
    body_len: usize,
) -> Result<(Running, SocketAddr)> {
    let netns = &link.server.netns;
    let cpu = config.server_cpu;
    let http = case != "ping_pong";
    let (port, app) = match (target, http) {
        (Target::Synack, true) => (PORTS.synack_http, "http"),
        // sockperf answers only pong requests, with the client flag cleared: synack's sockperf app.
        (Target::Synack, false) => (PORTS.synack_echo, "sockperf"),
        (Target::Kernel, true) => (PORTS.kernel_http, "http"),
        (Target::Kernel, false) => (PORTS.kernel_echo, "echo"),
    };
    let addr = server_addr(link, port);
    let server = match target {
        Target::Synack => {
            let bin = config.synack_bin.as_deref().context("no synack binary")?;
            procs::start_synack(netns, cpu, bin, &link.server.ifname, addr, app, &[])?
        }
        Target::Kernel if http => procs::start_nginx(netns, cpu, dir.path(), addr, body_len)?,
        Target::Kernel => procs::start_sockperf_server(netns, cpu, addr)?,
    };
    Ok((server, addr))
}

type Metrics = Vec<(&'static str, f64)>;

/// One run of one case against one target: start the server, run the load, stop the server.
fn run_case_once(
    config: &Config,
    link: &TestLink,
    dir: &RunDir,
    case: &str,
    target: Target,
    body_len: usize,
) -> Result<(Metrics, Value)> {
    let (mut server, addr) = start_server(config, link, dir, case, target, body_len)?;
    let result = run_load(config, link, case, addr);
    let alive = server.ensure_running();
    let server_output = server.stop();
    let (metrics, mut raw) = result?;
    alive?;
    if target == Target::Synack {
        // Its final counters, printed on SIGTERM.
        raw["server_output"] = json!(server_output);
    }
    Ok((metrics, raw))
}

fn run_load(config: &Config, link: &TestLink, case: &str, addr: SocketAddr) -> Result<(Metrics, Value)> {
    let client = &link.client.netns;
    let cpu = config.client_cpu;
    match case {
        "ping_pong" => {
            let duration = config.sockperf_duration.as_secs().max(1).to_string();
            let mut command = client.command_on_cpu(cpu, "sockperf");
            command.args([
                "ping-pong",
                "--tcp",
                "-i",
                &addr.ip().to_string(),
                "-p",
                &addr.port().to_string(),
                "-m",
                "64",
                "-t",
                &duration,
            ]);
            let output = Running::spawn("sockperf ping-pong", &mut command)?
                .wait(config.sockperf_duration + Duration::from_secs(30))?;
            let report = parse::parse_sockperf(&output, false)?;
            let p = |q: f64| report.percentile_us(q).with_context(|| format!("sockperf printed no p{q}"));
            let metrics =
                vec![("half_rtt_p50_us", p(50.0)?), ("half_rtt_p99_us", p(99.0)?), ("half_rtt_p999_us", p(99.9)?)];
            Ok((metrics, json!({ "sockperf": report, "output": parse::strip_ansi(&output) })))
        }
        other => bail!("unknown case {other}"),
    }
}
