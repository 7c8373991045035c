//! `synack load`: the load generator. Workers (`client`) open connections to one target, send
//! an HTTP request on each and time the response; once a second each sends the main thread a
//! tick (`report`) with its counts and latency histogram (`histogram`), which the main thread
//! adds up and prints. Responses are read by `response`.
//!
//! ```text
//! synack load --iface IF --ip IPV4 --target IP:PORT (--rate CPS | --concurrency N) --duration S
//!             [--request 'GET / HTTP/1.1 ...'] [--keepalive] [--queues N] [--cores LIST]
//!             [--local-ports LO-HI] [--time-wait-ms MS] [--poll busy|sleep] [--linger S]
//! ```

mod client;
mod histogram;
mod report;
mod response;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;
use synack::runtime::Runtime;
use synack::tcp::Endpoint;
use synack_report::Line;

use crate::Common;
use client::{LoadClient, Mode, Plan};
use report::{json_string, Second, Totals};

/// After the duration, how long in-flight connections may take to finish before they count
/// as errors (unfinished).
const DRAIN_MAX_S: u64 = 5;

/// Which side closes first, the one vocabulary of `synack load` and `synack connect` (where
/// synack is the client; `local` and `remote` are kept as aliases). For `load` (without
/// `--keepalive`):
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum CloseFirst {
    /// The request leaves the connection open and the client closes once the response is
    /// complete: TIME_WAIT lands on the client, whose ports are then reused from it.
    #[value(alias = "local")]
    Client,
    /// The request says `Connection: close`: the server closes first (TIME_WAIT on the server)
    /// and the client closes when it sees the end.
    #[value(alias = "remote")]
    Server,
}

/// A port range `LO-HI`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let bad = || format!("bad port range {text:?}: expected LO-HI, e.g. 40000-40999");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if lo == 0 || hi < lo {
        return Err(bad());
    }
    Ok(PortRange(lo, hi))
}

/// The options of `synack load` besides the common ones.
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["rate", "concurrency"])))]
pub struct LoadArgs {
    /// The server, IP:PORT.
    #[arg(long)]
    pub target: SocketAddrV4,
    /// Open loop: starts per second (connections; requests with --keepalive), on a fixed
    /// schedule; latency counts from each scheduled start.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub rate: Option<u64>,
    /// Closed loop: connections in flight (over all workers).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub concurrency: Option<u64>,
    /// Seconds of load.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub duration: u64,
    /// The request (`\r`, `\n`, `\t` and `\\` are unescaped). Default:
    /// `GET / HTTP/1.1\r\nHost: <target>\r\n\r\n`, with `Connection: close` for
    /// `--close-first server`.
    #[arg(long)]
    pub request: Option<String>,
    /// Keep connections open for further requests.
    #[arg(long)]
    pub keepalive: bool,
    /// Without --keepalive: which side closes first after the response.
    #[arg(long, value_enum, default_value_t = CloseFirst::Client)]
    pub close_first: CloseFirst,
    /// Local ports to open connections from. Default: 1024-65535 on a dedicated address,
    /// 61000-65535 on an address shared with the kernel (outside its ip_local_port_range).
    #[arg(long, value_parser = parse_port_range)]
    pub local_ports: Option<PortRange>,
    /// Never reuse a port from TIME_WAIT (each then waits out its 2MSL).
    #[arg(long)]
    pub no_port_reuse: bool,
    /// Seconds to stay after the load has drained, still reporting each second (to watch
    /// TIME_WAIT expire).
    #[arg(long, default_value_t = 0)]
    pub linger: u64,
    /// Print one JSON object per line on stdout (each second, the summary, the counters at
    /// stop) instead of text; the types are `synack_report::Line`.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// The request bytes.
    fn request(&self) -> Vec<u8> {
        match &self.request {
            Some(text) => unescape(text).into_bytes(),
            None => {
                let close = if self.close_first == CloseFirst::Server && !self.keepalive {
                    "Connection: close\r\n"
                } else {
                    ""
                };
                format!("GET / HTTP/1.1\r\nHost: {}\r\n{close}\r\n", self.target).into_bytes()
            }
        }
    }
}

/// `\r`, `\n`, `\t`, `\\` as typed on a command line.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Whether the kernel has `addr` (then synack shares it): the runtime's own test.
fn kernel_has(addr: Ipv4Addr) -> bool {
    synack::runtime::kernel_has_address(addr)
}

pub fn run(common: Common, args: LoadArgs, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    if args.keepalive && args.close_first == CloseFirst::Server {
        bail!("--close-first server asks the server to close after each response: it contradicts --keepalive");
    }
    let request = args.request();
    if request.is_empty() {
        bail!("--request is empty");
    }
    let mut config = common.runtime_config();
    if common.buffer_bytes.is_none() {
        config.interface.tcp.send_buffer_len = crate::SMALL_RING_BYTES;
        config.interface.tcp.recv_buffer_len = crate::SMALL_RING_BYTES;
    }
    let shared = kernel_has(common.ip);
    config.interface.local_ports = match args.local_ports {
        Some(PortRange(lo, hi)) => (lo, hi),
        None if shared => (61000, 65535),
        None => (1024, 65535),
    };
    if args.no_port_reuse {
        config.interface.time_wait_reuse = None;
    }
    let workers = config.queues;
    let mode = match (args.rate, args.concurrency) {
        (Some(rate), _) => Mode::Rate(rate),
        (None, Some(n)) => Mode::Concurrency(n as usize),
        (None, None) => bail!("one of --rate and --concurrency is needed"),
    };
    if let Mode::Concurrency(n) = mode {
        if n > config.interface.max_connections * workers as usize {
            bail!(
                "--concurrency {n} is more than --max-connections {} x {workers} queue(s)",
                config.interface.max_connections
            );
        }
    }
    let plan = Plan {
        target: Endpoint::new(*args.target.ip(), args.target.port()),
        mode,
        keepalive: args.keepalive,
        request: request.into(),
        duration: Duration::from_secs(args.duration),
        workers,
        max_connections: config.interface.max_connections,
    };
    let description = format!(
        "target={} {} duration={}s keepalive={} close_first={:?} local_ports={}-{} time_wait_ms={} port_reuse={} \
         queues={workers} poll={} address={}",
        args.target,
        match mode {
            Mode::Rate(r) => format!("rate={r}"),
            Mode::Concurrency(n) => format!("concurrency={n}"),
        },
        args.duration,
        args.keepalive,
        args.close_first,
        config.interface.local_ports.0,
        config.interface.local_ports.1,
        common.time_wait_ms,
        !args.no_port_reuse,
        if config.busy_poll { "busy" } else { "sleep" },
        if shared { "shared" } else { "dedicated" },
    );

    let (tick_tx, ticks) = mpsc::channel();
    let start_at = Arc::new(AtomicU64::new(0));
    let mut recycle = Vec::new();
    let metrics = common.metrics_endpoint()?;
    let runtime = Runtime::start(config, |queue| {
        let mut plan = plan.clone();
        if let Mode::Concurrency(n) = plan.mode {
            // Worker w of N takes n / N, and one more while the remainder lasts.
            let (w, count) = (queue as usize, workers as usize);
            plan.mode = Mode::Concurrency(n / count + usize::from(w < n % count));
        }
        let (tx, rx) = mpsc::channel();
        recycle.push(tx);
        LoadClient::new(plan, queue, start_at.clone(), tick_tx.clone(), rx)
    })
    .with_context(|| format!("cannot start on {} {}", common.iface, common.ip))?;
    let _stat = crate::serve_metrics(metrics, &runtime, "load", &common.iface, common.ip)?;
    drop(tick_tx);
    eprintln!("synack load: {description}");
    // A common start a little ahead, so that every worker begins its schedule at once.
    let start = synack::clock::now() + Duration::from_millis(20);
    start_at.store(start.as_nanos(), Ordering::Release);

    let mut totals = Totals { seconds: args.duration, ..Totals::default() };
    let mut pending: BTreeMap<u64, Second> = BTreeMap::new();
    let mut last: Option<Second> = None;
    let mut end_at: Option<u64> = None;
    let mut failure = None;
    'run: loop {
        if stop.load(Ordering::Relaxed) {
            eprintln!("synack load: interrupted");
            break;
        }
        if !runtime.is_running() {
            failure = Some("a worker stopped unexpectedly");
            break;
        }
        let tick = match ticks.recv_timeout(Duration::from_millis(100)) {
            Ok(tick) => tick,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let second = pending.entry(tick.second).or_default();
        second.add(&tick);
        let mut histogram = tick.latency;
        histogram.clear();
        let _ = recycle[tick.worker as usize].send(histogram);
        while let Some(entry) = pending.first_entry() {
            if entry.get().workers < workers {
                break;
            }
            let t = *entry.key() + 1;
            let s = entry.remove();
            let reused = s.reused_total - last.as_ref().map_or(0, |l| l.reused_total);
            if args.json {
                println!("{}", Line::LoadSecond(s.second(t, reused)).to_json());
            } else {
                println!("{}", s.line(t, reused));
            }
            totals.add(&s);
            if t >= args.duration && end_at.is_none() && (s.in_flight == 0 || t >= args.duration + DRAIN_MAX_S) {
                end_at = Some(t + args.linger);
            }
            let done = end_at.is_some_and(|end| t >= end);
            last = Some(s);
            if done {
                break 'run;
            }
        }
    }
    let xdp = runtime.xdp_counters();
    let xdp_by_name = if args.json { runtime.stats_source().xdp_counters() } else { Vec::new() };
    let report = runtime.stop();
    if let Some(last) = &last {
        totals.unfinished = last.in_flight as u64;
        totals.errors.aborted += last.in_flight as u64;
        totals.not_started = last.behind;
    }
    if args.json {
        println!("{}", Line::LoadSummary(totals.summary(&description)).to_json());
        println!("{}", Line::Stopped(crate::stats::stopped(&report, None, &xdp_by_name)).to_json());
    } else {
        println!("load summary: {}", totals.json(&json_string(&description)));
    }
    eprintln!("synack load counters: {}", report.counters);
    for w in &report.workers {
        eprintln!(
            "  queue {}: frames_in_use {} loop_stalls_over_1ms {} loop_stalls_over_10ms {} longest_loop_stall_us {} socket {:?} kernel {:?}",
            w.queue,
            w.frames_in_use,
            w.stalls.over_1ms,
            w.stalls.over_10ms,
            w.stalls.longest.as_micros(),
            w.socket,
            w.kernel
        );
    }
    if let Some(pcap) = report.pcap {
        eprintln!("  pcap: {} frames written, {} not captured (the writer was behind)", pcap.written, pcap.dropped);
    }
    if let Some(xdp) = xdp {
        eprintln!("  xdp: {xdp}");
    }
    if let Some(failure) = failure {
        bail!(failure);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_ranges_are_read() {
        assert_eq!(unescape(r"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(unescape(r"a\\b\q\"), "a\\b\\q\\");
        assert_eq!(parse_port_range("40000-40999"), Ok(PortRange(40000, 40999)));
        assert!(parse_port_range("5-4").is_err());
        assert!(parse_port_range("0-4").is_err());
        assert!(parse_port_range("70000-70001").is_err());
    }
}
