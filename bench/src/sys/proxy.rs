//! The `proxy` case: L4 proxies side by side, `synack proxy` against haproxy (mode tcp, one
//! thread) and nginx `stream` (one worker, when its module is installed), and the direct path
//! for reference. The proxy under test is alone on the server CPU (synack sleeping in `poll()`
//! when idle, as the others sleep in epoll); the upstreams (nginx, `sockperf server`,
//! `iperf3 -s`) and the clients share the client CPU, so the client side may be the
//! bottleneck: the table says which CPU saturates.
//!
//! Measured per proxy, each phase with a proxy started for it:
//! - connection rate (`Connection: close`, wrk -t1 -c64) and the proxy's CPU time per
//!   connection in that run (user + system, `/proc/<pid>/stat`; at wrk's full rate);
//! - keep-alive requests/s with p50 and p99 (wrk -t1 -c32 --latency) and the p99 added over
//!   the direct path;
//! - the proxy's CPU time per connection at a fixed offered rate ([`FIXED_RATE`]/s,
//!   `synack load --rate --close-first server`, open loop, from a fresh client address), the
//!   same rate for every proxy;
//! - the round trip it adds: `sockperf ping-pong --tcp -m 64` through it minus direct, p50 and
//!   p99 (sockperf's half round trips doubled); for synack also with `--poll busy` (its
//!   low-latency mode, without the wake-up of a sleeping worker; the others have no such mode);
//! - bulk throughput: `iperf3 -c` through it to `iperf3 -s`, one stream, Gbit/s.
//!
//! Then the targets as ratios from this run, each `met` or `not met`, and a plot of the
//! medians (`<stamp>-proxy.csv` and `.png` in the results directory: one bar chart per metric).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use super::cleanup;
use super::net::TestLink;
use super::parse;
use super::procs::{self, RunDir, Running};
use super::report::{self, format_figure, format_ratio, median};
use crate::curve::Bars;

const UPSTREAM_PORT: u16 = 9080;
const SOCKPERF_PORT: u16 = 9081;
const IPERF_PORT: u16 = 9082;
const HAPROXY_PORT: u16 = 9001;
const SYNACK_PORT: u16 = 9002;
const NGINX_STREAM_PORT: u16 = 9003;
/// Offered connections per second for the CPU-per-connection comparison: well below what
/// each proxy reaches at full rate here (about 2,500/s), so all of them sleep between.
pub const FIXED_RATE: u64 = 1000;
/// Debian's `libnginx-mod-stream`.
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// What the case needs from the run.
#[derive(Clone, Copy)]
pub struct Config<'a> {
    pub runs: usize,
    pub duration: Duration,
    pub server_cpu: usize,
    pub client_cpu: usize,
    pub synack_bin: Option<&'a Path>,
    pub body_len: usize,
    /// `synack proxy --poll`: `busy` (a core at 100 %) or `sleep` (in `poll()` when idle, as
    /// haproxy sleeps in epoll).
    pub synack_poll: &'static str,
    /// Where the plot goes: the results directory and the run's time stamp.
    pub plot: Option<(&'a Path, &'a str)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Haproxy,
    NginxStream,
    Synack,
}

impl Route {
    fn key(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Haproxy => "haproxy",
            Route::NginxStream => "nginx_stream",
            Route::Synack => "synack",
        }
    }
}

/// haproxy's configuration: TCP mode, one thread, to the one upstream.
fn haproxy_config(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "global\n  nbthread 1\n  maxconn 8000\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend f\n  bind {listen}\n  default_backend b\n\
         backend b\n  server s1 {upstream}\n"
    )
}

/// nginx `stream` as a plain TCP proxy: one worker process and no master (so the process
/// started is the one doing the work, whose CPU time is read).
fn nginx_stream_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "load_module {NGINX_STREAM_MODULE};\n\
         worker_processes 1;\n\
         master_process off;\n\
         daemon off;\n\
         pid {dir}/nginx-stream.pid;\n\
         error_log {dir}/nginx-stream-error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         stream {{\n\
         \x20 server {{\n\
         \x20   listen {listen} backlog=4096;\n\
         \x20   proxy_pass {upstream};\n\
         \x20   proxy_connect_timeout 2s;\n\
         \x20 }}\n\
         }}\n"
    )
}

/// Ring bytes per connection of `synack proxy`: small for request/response, larger for bulk
/// (haproxy and nginx have the kernel's autotuned socket buffers behind their own).
fn start_proxy(
    config: &Config,
    link: &TestLink,
    dir: &RunDir,
    path: Route,
    upstream: SocketAddr,
    synack_buffer_bytes: usize,
) -> Result<Option<Running>> {
    let server = &link.server;
    match path {
        Route::Direct => Ok(None),
        Route::Haproxy => {
            let listen = SocketAddr::from((server.ip, HAPROXY_PORT));
            let conf = dir.path().join("haproxy.cfg");
            std::fs::write(&conf, haproxy_config(listen, upstream))?;
            let mut command = server.netns.command_on_cpu(config.server_cpu, "haproxy");
            command.args(["-db", "-f", &conf.to_string_lossy()]);
            let mut proxy = Running::spawn("haproxy", &mut command)?;
            procs::wait_for_listener(&server.netns, listen, Duration::from_secs(10))
                .map_err(|e| anyhow!("{e}; haproxy said:\n{}", proxy.output()))?;
            proxy.ensure_running()?;
            Ok(Some(proxy))
        }
        Route::NginxStream => {
            let listen = SocketAddr::from((server.ip, NGINX_STREAM_PORT));
            let conf = dir.path().join("nginx-stream.conf");
            std::fs::write(&conf, nginx_stream_config(dir.path(), listen, upstream))?;
            let error_log = dir.path().join("nginx-stream-error.log").to_string_lossy().into_owned();
            let mut command = server.netns.command_on_cpu(config.server_cpu, "nginx");
            command.args(["-e", &error_log, "-c", &conf.to_string_lossy()]);
            let mut proxy = Running::spawn("nginx stream", &mut command)?;
            procs::wait_for_listener(&server.netns, listen, Duration::from_secs(10))
                .map_err(|e| anyhow!("{e}; nginx said:\n{}", proxy.output()))?;
            proxy.ensure_running()?;
            Ok(Some(proxy))
        }
        Route::Synack => {
            let bin = config.synack_bin.context("synack binary missing")?;
            let mut command = server.netns.command_on_cpu(config.server_cpu, &bin.to_string_lossy());
            command.args([
                "proxy",
                "--iface",
                &server.ifname,
                "--ip",
                &server.ip.to_string(),
                "--listen",
                &SYNACK_PORT.to_string(),
                "--upstream",
                &upstream.to_string(),
                "--cores",
                &config.server_cpu.to_string(),
                "--poll",
                config.synack_poll,
                "--buffer-bytes",
                &synack_buffer_bytes.to_string(),
                "--time-wait-ms",
                "2000",
                // One worker on a veth with a queue per CPU, as `synack serve` is measured:
                // the frames of the other queue are not served (refused unless asked).
                "--allow-partial-queues",
            ]);
            let mut proxy = Running::spawn("synack proxy", &mut command)?;
            proxy.wait_for_output("ready", Duration::from_secs(15))?;
            Ok(Some(proxy))
        }
    }
}

fn target(link: &TestLink, path: Route, upstream: SocketAddr) -> SocketAddr {
    match path {
        Route::Direct => upstream,
        Route::Haproxy => SocketAddr::from((link.server.ip, HAPROXY_PORT)),
        Route::NginxStream => SocketAddr::from((link.server.ip, NGINX_STREAM_PORT)),
        Route::Synack => SocketAddr::from((link.server.ip, SYNACK_PORT)),
    }
}

/// One wrk run; `close` adds `Connection: close`.
fn wrk(config: &Config, link: &TestLink, addr: SocketAddr, close: bool) -> Result<parse::WrkReport> {
    let url = format!("http://{addr}/");
    let duration = format!("{}s", config.duration.as_secs().max(1));
    let mut command = link.client.netns.command_on_cpu(config.client_cpu, "wrk");
    if close {
        command.args(["-t1", "-c64", "-d", &duration, "-H", "Connection: close", &url]);
    } else {
        command.args(["-t1", "-c32", "-d", &duration, "--latency", &url]);
    }
    let output = Running::spawn("wrk", &mut command)?.wait(config.duration + Duration::from_secs(30))?;
    Ok(parse::parse_wrk(&output)?)
}

type Values = Vec<(&'static str, f64)>;

/// The upstreams, on the client's address.
struct Upstreams {
    http: SocketAddr,
    sockperf: SocketAddr,
    iperf: SocketAddr,
}

/// CPU microseconds a process used between two `cpu_ticks` readings.
fn cpu_us(before: Option<u64>, after: Option<u64>) -> Option<f64> {
    let ticks_per_s = rustix::param::clock_ticks_per_second() as f64;
    Some(after?.checked_sub(before?)? as f64 / ticks_per_s * 1e6)
}

/// Runs `phase` against `path` with a proxy of its own towards `upstream`; the proxy's pid
/// (none for the direct path) is given to it. Its raw record gets the proxy's last lines.
fn with_proxy(
    config: &Config,
    link: &TestLink,
    dir: &RunDir,
    (path, upstream, buffer): (Route, SocketAddr, usize),
    phase: impl FnOnce(SocketAddr, Option<u32>) -> Result<(Values, Value)>,
) -> Result<(Values, Value)> {
    let mut proxy = start_proxy(config, link, dir, path, upstream, buffer)?;
    let pid = proxy.as_mut().map(Running::pid);
    let result = phase(target(link, path, upstream), pid);
    let output = proxy.map(Running::stop);
    let (values, mut raw) = result?;
    if let Some(output) = output {
        raw["proxy_output_tail"] = json!(output.lines().rev().take(6).collect::<Vec<_>>());
    }
    // Let the proxy's TIME_WAIT and the XDP program go before the next one.
    cleanup::sleep(Duration::from_millis(300))?;
    Ok((values, raw))
}

/// wrk `Connection: close` (with the proxy's CPU time over it) and keep-alive.
fn http_phase(config: &Config, link: &TestLink, addr: SocketAddr, pid: Option<u32>) -> Result<(Values, Value)> {
    let cpu_before = pid.and_then(cpu_ticks);
    let close = wrk(config, link, addr, true)?;
    let cpu_after = pid.and_then(cpu_ticks);
    let keepalive = wrk(config, link, addr, false)?;
    let p50 = keepalive.latency_percentile_us(50.0).context("wrk printed no p50")?;
    let p99 = keepalive.latency_percentile_us(99.0).context("wrk printed no p99")?;
    let mut values = vec![
        ("connections_per_s", close.requests_per_s),
        ("requests_per_s", keepalive.requests_per_s),
        ("latency_p50_us", p50),
        ("latency_p99_us", p99),
    ];
    if let Some(us) = cpu_us(cpu_before, cpu_after) {
        values.push(("cpu_us_per_connection", us / close.requests.max(1) as f64));
    }
    let errors = close.socket_errors.total() + keepalive.socket_errors.total();
    Ok((values, json!({ "connection_close": close, "keepalive": keepalive, "socket_errors": errors })))
}

/// `synack load --rate FIXED_RATE --close-first server` from a fresh client address, with the
/// proxy's CPU time over the run.
fn fixed_rate_phase(config: &Config, link: &TestLink, addr: SocketAddr, pid: Option<u32>) -> Result<(Values, Value)> {
    let bin = config.synack_bin.context("no synack binary (synack load is the fixed-rate client)")?;
    let ip = link.fresh_load_address()?;
    let seconds = config.duration.as_secs().max(1);
    let mut command = link.client.netns.command_on_cpu(config.client_cpu, &bin.to_string_lossy());
    command.args([
        "load",
        "--allow-partial-queues",
        "--iface",
        &link.client.ifname,
        "--ip",
        &ip.to_string(),
        "--target",
        &addr.to_string(),
        "--rate",
        &FIXED_RATE.to_string(),
        "--duration",
        &seconds.to_string(),
        "--close-first",
        "server",
        "--cores",
        &config.client_cpu.to_string(),
        "--poll",
        "sleep",
        "--json",
    ]);
    let cpu_before = pid.and_then(cpu_ticks);
    let output = Running::spawn("synack load --rate", &mut command)?.wait(Duration::from_secs(seconds + 40))?;
    let cpu_after = pid.and_then(cpu_ticks);
    let summary = super::load::parse_load(&output)?.summary;
    let mut values = vec![("fixed_rate_conn_per_s", summary.conn_per_s), ("fixed_rate_errors", summary.errors as f64)];
    if let Some(us) = cpu_us(cpu_before, cpu_after) {
        values.push(("cpu_us_per_connection_fixed", us / summary.connections.max(1) as f64));
    }
    Ok((
        values,
        json!({ "client": format!("synack load --rate {FIXED_RATE} --close-first server --poll sleep from {ip}"), "summary": summary }),
    ))
}

/// sockperf ping-pong, 64 bytes; round trips (sockperf's half round trips doubled).
fn sockperf_phase(
    config: &Config,
    link: &TestLink,
    addr: SocketAddr,
    (p50_key, p99_key): (&'static str, &'static str),
) -> Result<(Values, Value)> {
    let seconds = config.duration.as_secs().max(1);
    let mut command = link.client.netns.command_on_cpu(config.client_cpu, "sockperf");
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
        &seconds.to_string(),
    ]);
    let output = Running::spawn("sockperf ping-pong", &mut command)?.wait(Duration::from_secs(seconds + 30))?;
    let report = parse::parse_sockperf(&output, false)?;
    let p =
        |q: f64| report.percentile_us(q).map(|half| 2.0 * half).with_context(|| format!("sockperf printed no p{q}"));
    Ok((vec![(p50_key, p(50.0)?), (p99_key, p(99.0)?)], json!({ "sockperf": report })))
}

/// iperf3, one stream, through to `iperf3 -s`: the receiver's Gbit/s.
fn bulk_phase(config: &Config, link: &TestLink, addr: SocketAddr) -> Result<(Values, Value)> {
    let seconds = config.duration.as_secs().max(1);
    let mut command = link.client.netns.command_on_cpu(config.client_cpu, "iperf3");
    command.args(["-c", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-t", &seconds.to_string(), "-J"]);
    let output = Running::spawn("iperf3 -c", &mut command)?.wait(Duration::from_secs(seconds + 30))?;
    let v: Value = serde_json::from_str(&output).with_context(|| format!("iperf3 printed no JSON: {output}"))?;
    if let Some(e) = v.get("error") {
        return Err(anyhow!("iperf3: {e}"));
    }
    let gbit = v["end"]["sum_received"]["bits_per_second"].as_f64().context("no end.sum_received")? / 1e9;
    Ok((vec![("bulk_gbit_s", gbit)], json!({ "gbit_s": gbit })))
}

/// Every phase for one path; a phase that fails is reported and the others still run.
fn measure(
    config: &Config,
    link: &TestLink,
    dir: &RunDir,
    path: Route,
    up: &Upstreams,
) -> (Values, Value, Vec<String>) {
    const SMALL: usize = 16 * 1024;
    const BULK: usize = 256 * 1024;
    let mut values = Vec::new();
    let mut raw = serde_json::Map::new();
    let mut failures = Vec::new();
    let phases: [(&str, SocketAddr, usize); 5] = [
        ("http", up.http, SMALL),
        ("fixed_rate", up.http, SMALL),
        ("sockperf", up.sockperf, SMALL),
        // synack busy polling its core, as a latency-bound proxy runs: the round trip without
        // the wake-up of a sleeping worker (the other proxies have no such mode).
        ("sockperf_busy", up.sockperf, SMALL),
        ("bulk", up.iperf, BULK),
    ];
    let busy = Config { synack_poll: "busy", ..*config };
    for (name, upstream, buffer) in phases {
        if name == "sockperf_busy" && (path != Route::Synack || config.synack_poll == "busy") {
            continue;
        }
        let config = if name == "sockperf_busy" { &busy } else { config };
        // The fixed rate is for a proxy's CPU time; `synack load` on the client's interface
        // cannot reach the upstream in its own namespace anyway.
        if name == "fixed_rate"
            && (path == Route::Direct || !config.synack_bin.is_some_and(super::churn::has_load_command))
        {
            continue;
        }
        if let Err(e) = cleanup::check_interrupted() {
            failures.push(format!("{e:#}"));
            break;
        }
        let result = with_proxy(config, link, dir, (path, upstream, buffer), |addr, pid| match name {
            "http" => http_phase(config, link, addr, pid),
            "fixed_rate" => fixed_rate_phase(config, link, addr, pid),
            "sockperf" => sockperf_phase(config, link, addr, ("rtt_p50_us", "rtt_p99_us")),
            "sockperf_busy" => sockperf_phase(config, link, addr, ("rtt_busy_p50_us", "rtt_busy_p99_us")),
            _ => bulk_phase(config, link, addr),
        });
        match result {
            Ok((v, r)) => {
                values.extend(v);
                raw.insert(name.to_owned(), r);
            }
            Err(e) => {
                failures.push(format!("{name}: {e:#}"));
                raw.insert(name.to_owned(), json!({ "error": format!("{e:#}") }));
            }
        }
    }
    (values, Value::Object(raw), failures)
}

/// User plus system time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

const METRICS: [(&str, &str); 10] = [
    ("connections_per_s", "connections/s (Connection: close, wrk -c64)"),
    ("cpu_us_per_connection", "proxy CPU us per connection (that run)"),
    ("fixed_rate_conn_per_s", "connections/s at the fixed offered rate"),
    ("fixed_rate_errors", "errors at the fixed rate"),
    ("cpu_us_per_connection_fixed", "proxy CPU us per connection (fixed rate)"),
    ("requests_per_s", "keep-alive requests/s (wrk -c32)"),
    ("latency_p50_us", "keep-alive p50 (us)"),
    ("latency_p99_us", "keep-alive p99 (us)"),
    ("rtt_p50_us", "sockperf round trip p50 (us)"),
    ("rtt_p99_us", "sockperf round trip p99 (us)"),
];

/// `met` or `not met` for a ratio against a bound.
fn verdict(ratio: Option<f64>, met: impl Fn(f64) -> bool) -> &'static str {
    match ratio {
        Some(r) if r.is_finite() => {
            if met(r) {
                "met"
            } else {
                "not met"
            }
        }
        _ => "n/a",
    }
}

/// Runs the case: prints its table and returns its JSON.
pub fn run(config: &Config, link: &TestLink) -> Result<Value> {
    println!(
        "== proxy: synack proxy, haproxy (mode tcp, 1 thread) and nginx stream (1 worker) to nginx, sockperf and \
         iperf3 upstreams, and direct"
    );
    let dir = RunDir::create()?;
    let client_ip = link.client.ip;
    let up = Upstreams {
        http: SocketAddr::from((client_ip, UPSTREAM_PORT)),
        sockperf: SocketAddr::from((client_ip, SOCKPERF_PORT)),
        iperf: SocketAddr::from((client_ip, IPERF_PORT)),
    };
    let nginx = procs::start_nginx(&link.client.netns, config.client_cpu, dir.path(), up.http, config.body_len)?;
    let sockperf = procs::start_sockperf_server(&link.client.netns, config.client_cpu, up.sockperf)?;
    let iperf = {
        let mut command = link.client.netns.command_on_cpu(config.client_cpu, "iperf3");
        command.args(["-s", "-B", &client_ip.to_string(), "-p", &IPERF_PORT.to_string()]);
        let mut s = Running::spawn("iperf3 -s", &mut command)?;
        procs::wait_for_listener(&link.client.netns, up.iperf, Duration::from_secs(10))?;
        s.ensure_running()?;
        s
    };
    let have_stream = Path::new(NGINX_STREAM_MODULE).exists();
    if !have_stream {
        println!("  nginx stream: skipped, {NGINX_STREAM_MODULE} missing (Debian: libnginx-mod-stream)");
    }
    let paths = [Route::Direct, Route::Haproxy, Route::NginxStream, Route::Synack];
    let mut values: Vec<Vec<(&str, f64)>> = vec![Vec::new(); paths.len()];
    let mut runs: Vec<Vec<Value>> = vec![Vec::new(); paths.len()];
    for run_index in 0..config.runs {
        for (slot, &path) in paths.iter().enumerate() {
            if (path == Route::Synack && config.synack_bin.is_none()) || (path == Route::NginxStream && !have_stream) {
                continue;
            }
            cleanup::check_interrupted()?;
            let (v, raw, failures) = measure(config, link, &dir, path, &up);
            cleanup::check_interrupted()?;
            let summary: Vec<String> = v.iter().map(|(k, x)| format!("{k} {}", format_figure(*x))).collect();
            println!("  {:<12} run {}/{}: {}", path.key(), run_index + 1, config.runs, summary.join(", "));
            for failure in &failures {
                println!("  {:<12} run {}/{}: FAILED: {failure}", path.key(), run_index + 1, config.runs);
            }
            values[slot].extend(v);
            runs[slot].push(json!({ "phases": raw, "failures": failures }));
        }
    }
    drop((nginx, sockperf, iperf));
    let med = |slot: usize, key: &str| {
        let v: Vec<f64> = values[slot].iter().filter(|(k, _)| *k == key).map(|&(_, x)| x).collect();
        median(&v)
    };
    let text = |v: Option<f64>| v.map_or("n/a".to_owned(), format_figure);
    let ratio = |s: Option<f64>, h: Option<f64>| match (s, h) {
        (Some(s), Some(h)) if h != 0.0 => Some(s / h),
        _ => None,
    };
    let mut rows = Vec::new();
    let mut medians = serde_json::Map::new();
    let mut metric_row = |key: &str, label: &str, v: [Option<f64>; 4]| {
        let r = ratio(v[3], v[1]);
        rows.push(vec![label.to_owned(), text(v[0]), text(v[1]), text(v[2]), text(v[3]), format_ratio(r)]);
        medians.insert(
            key.to_owned(),
            json!({ "direct": v[0], "haproxy": v[1], "nginx_stream": v[2], "synack": v[3], "synack_to_haproxy": r }),
        );
    };
    for (key, label) in METRICS {
        metric_row(key, label, [med(0, key), med(1, key), med(2, key), med(3, key)]);
    }
    // What each proxy adds over the direct path.
    let added = |slot: usize, key: &str| Some(med(slot, key)? - med(0, key)?);
    for (key, label) in [
        ("latency_p99_us", "added keep-alive p99 (wrk, us)"),
        ("rtt_p50_us", "added round trip p50 (sockperf, us)"),
        ("rtt_p99_us", "added round trip p99 (sockperf, us)"),
    ] {
        metric_row(&format!("added_{key}"), label, [None, added(1, key), added(2, key), added(3, key)]);
    }
    // synack busy polling against the others as measured (they have no busy mode).
    let added_busy = |key: &str| Some(med(3, &format!("rtt_busy_{key}"))? - med(0, &format!("rtt_{key}"))?);
    for (key, label) in [
        ("p50_us", "added round trip p50, synack --poll busy (sockperf, us)"),
        ("p99_us", "added round trip p99, synack --poll busy (sockperf, us)"),
    ] {
        metric_row(
            &format!("added_rtt_busy_{key}"),
            label,
            [None, added(1, &format!("rtt_{key}")), added(2, &format!("rtt_{key}")), added_busy(key)],
        );
    }
    let bulk = "bulk_gbit_s";
    metric_row(bulk, "bulk, iperf3 1 stream (Gbit/s)", [med(0, bulk), med(1, bulk), med(2, bulk), med(3, bulk)]);
    print!(
        "{}",
        report::render_table(&["metric", "direct", "haproxy", "nginx stream", "synack", "synack/haproxy"], &rows)
    );
    println!(
        "  (proxy on CPU {}; upstreams and clients on CPU {}: for the rates and bulk, the client CPU is the likely \
         limit when direct is not far above the proxies)",
        config.server_cpu, config.client_cpu
    );

    // The targets, as ratios from this run.
    let cpu = "cpu_us_per_connection_fixed";
    let cpu_ratio = ratio(med(1, cpu), med(3, cpu));
    let added_ratio = ratio(added(3, "rtt_p99_us"), added(1, "rtt_p99_us"));
    let added_busy_ratio = ratio(added_busy("p99_us"), added(1, "rtt_p99_us"));
    let rate_ratio = ratio(med(3, "connections_per_s"), med(1, "connections_per_s"));
    let bulk_ratio = ratio(med(3, bulk), med(1, bulk));
    let targets = [
        (
            "cpu_per_connection_haproxy_to_synack",
            "proxy CPU per connection at a fixed rate, haproxy/synack >= 3",
            cpu_ratio,
            verdict(cpu_ratio, |r| r >= 3.0),
        ),
        (
            "added_rtt_p99_synack_to_haproxy",
            "added round trip p99, synack/haproxy <= 0.3",
            added_ratio,
            verdict(added_ratio, |r| r <= 0.3),
        ),
        (
            "added_rtt_p99_synack_busy_to_haproxy",
            "added round trip p99, synack --poll busy/haproxy <= 0.3",
            added_busy_ratio,
            verdict(added_busy_ratio, |r| r <= 0.3),
        ),
        (
            "connection_rate_synack_to_haproxy",
            "connection rate, synack/haproxy >= 1",
            rate_ratio,
            verdict(rate_ratio, |r| r >= 1.0),
        ),
        (
            "bulk_synack_to_haproxy",
            "bulk throughput, synack/haproxy >= 1",
            bulk_ratio,
            verdict(bulk_ratio, |r| r >= 1.0),
        ),
    ];
    let mut target_json = serde_json::Map::new();
    for (key, what, r, verdict) in targets {
        println!("  target: {what}: {} -> {verdict}", format_ratio(r));
        target_json.insert(key.to_owned(), json!({ "ratio": r, "verdict": verdict }));
    }
    if let Some((results_dir, stamp)) = config.plot {
        let mut bars = Bars::new("proxy: medians of this run", "", &PLOTTED.map(|(_, label)| label));
        bars.panels = true;
        bars.groups = (0..paths.len())
            .map(|slot| {
                let figures = PLOTTED
                    .iter()
                    .map(|&(key, _)| match key.strip_prefix("added_") {
                        Some(inner) if slot > 0 => added(slot, inner),
                        Some(_) => None,
                        None => med(slot, key),
                    })
                    .collect();
                (paths[slot].key().to_owned(), figures)
            })
            .collect();
        let base = results_dir.join(format!("{stamp}-proxy"));
        match bars.write(&base) {
            Ok(png) => println!("  plot: {}", png.display()),
            Err(e) => println!("  plot: {} (no PNG: {e:#})", base.with_extension("csv").display()),
        }
    }
    Ok(json!({
        "what": "clients (client CPU) -> proxy (server CPU) -> upstreams (client CPU): wrk to nginx (Connection: close -c64, keep-alive -c32 --latency), synack load --rate to nginx (fixed rate), sockperf ping-pong -m 64 to sockperf server, iperf3 -c to iperf3 -s (1 stream)",
        "fixed_rate_per_s": FIXED_RATE,
        "proxies": {
            "synack": format!("synack proxy --cores <server> --poll {} --buffer-bytes 16384 (262144 for bulk)", config.synack_poll),
            "haproxy": "haproxy -db, mode tcp, nbthread 1, pinned with taskset",
            "nginx_stream": "nginx stream module, worker_processes 1, master_process off, pinned with taskset",
        },
        "medians": medians,
        "targets": target_json,
        "runs": { "direct": runs[0], "haproxy": runs[1], "nginx_stream": runs[2], "synack": runs[3] },
    }))
}

/// The metrics the plot draws, one panel each: the medians' keys (`added_` ones over the
/// direct path) and their titles.
const PLOTTED: [(&str, &str); 5] = [
    ("connections_per_s", "connections/s (wrk -c64, Connection: close)"),
    ("cpu_us_per_connection_fixed", "proxy CPU us per connection at a fixed rate"),
    ("requests_per_s", "keep-alive requests/s (wrk -c32)"),
    ("added_rtt_p99_us", "added round trip p99 (sockperf, us)"),
    ("bulk_gbit_s", "bulk, iperf3 1 stream (Gbit/s)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_bound_and_say_when_there_is_no_figure() {
        assert_eq!(verdict(Some(3.2), |r| r >= 3.0), "met");
        assert_eq!(verdict(Some(1.3), |r| r >= 3.0), "not met");
        assert_eq!(verdict(Some(f64::NAN), |r| r >= 3.0), "n/a");
        assert_eq!(verdict(None, |r| r <= 0.3), "n/a");
    }

    #[test]
    fn nginx_stream_config_proxies_the_listen_address_to_the_upstream() {
        let conf = nginx_stream_config(
            Path::new("/tmp/x"),
            "198.18.1.1:9003".parse().unwrap(),
            "198.18.1.2:9080".parse().unwrap(),
        );
        assert!(conf.starts_with(&format!("load_module {NGINX_STREAM_MODULE};")), "{conf}");
        assert!(conf.contains("listen 198.18.1.1:9003 backlog=4096;"), "{conf}");
        assert!(conf.contains("proxy_pass 198.18.1.2:9080;"), "{conf}");
        assert!(conf.contains("master_process off;"), "{conf}");
    }
}
