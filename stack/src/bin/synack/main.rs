//! `synack`: serve an application on an interface through AF_XDP, or open a connection.
//!
//! ```text
//! synack serve --iface IF --ip IPV4 --port PORT --app echo|http|discard|sockperf
//!              [--queues N] [--cores LIST] [--poll busy|sleep]
//!              [--time-wait-ms MS] [--trust-checksums] [--syn-backlog N] [--no-syn-cookies]
//! synack connect --iface IF --ip IPV4 --target IP:PORT --bytes N [--close-first local|remote]
//!                [--connections K] [--queues N] [--cores LIST]
//! synack load --iface IF --ip IPV4 --target IP:PORT (--rate CPS | --concurrency N) --duration S
//!             [--request 'GET / HTTP/1.1 ...'] [--keepalive] [--queues N] [--cores LIST] ...
//! ```

mod apps;
mod connect;
mod load;
mod stats;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use synack::runtime::{Runtime, RuntimeConfig};
use synack::wire::ChecksumMode;

/// Ring bytes per connection for small request/response traffic (see `--buffer-bytes`).
const SMALL_RING_BYTES: usize = 16 * 1024;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "synack", version, about = "A kernel-bypass TCP/IPv4 stack on AF_XDP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command shares.
#[derive(clap::Args, Clone)]
struct Common {
    /// The interface to attach to (in this network namespace).
    #[arg(long)]
    iface: String,
    /// synack's IPv4 address on it. If the kernel also has it, synack shares it (the kernel
    /// answers ARP, synack takes only its own ports); otherwise it is synack's alone.
    #[arg(long)]
    ip: Ipv4Addr,
    /// Prefix length of the subnet.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(0..=32))]
    prefix_len: u8,
    /// Queues to serve, one worker each (queues 0..N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    queues: u32,
    /// Cores to pin the workers to, e.g. `1` or `0,1` or `2-3`.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<Cores>,
    /// Busy polling (lowest latency, a core at 100 %) or sleeping in poll() when idle.
    #[arg(long, value_enum, default_value_t = Poll::Sleep)]
    poll: Poll,
    /// TIME_WAIT length (2MSL) in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    time_wait_ms: u64,
    /// Trust TCP checksums instead of verifying them (for a veth peer with TX checksum offload
    /// on, whose frames carry partial checksums).
    #[arg(long)]
    trust_checksums: bool,
    /// Connections per worker.
    #[arg(long, default_value_t = 16_384)]
    max_connections: usize,
    /// Passive connections per worker waiting in SYN-RECEIVED; beyond it SYNs get SYN cookies.
    #[arg(long, default_value_t = 1024)]
    syn_backlog: usize,
    /// Drop SYNs beyond the SYN backlog instead of answering them with SYN cookies.
    #[arg(long)]
    no_syn_cookies: bool,
    /// Send and receive buffer bytes per connection [default: 16384 for `load` and for the
    /// `http` and `sockperf` apps, whose requests and answers are small; 65536 otherwise]. The
    /// first slots' rings, up to 128 MiB per worker, are allocated and written at start; smaller
    /// rings make that cover more connections.
    #[arg(long)]
    buffer_bytes: Option<usize>,
    /// TIME_WAIT records each worker holds at most (allocated at start).
    #[arg(long, default_value_t = 1 << 20)]
    max_time_wait: usize,
    /// RX batch size.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an application on a port.
    Serve {
        #[command(flatten)]
        common: Common,
        /// The port to listen on.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// The application.
        #[arg(long, value_enum)]
        app: AppKind,
        /// Print a `stats:` line (connections, TIME_WAIT, RSS) every this many seconds; 0: never.
        #[arg(long, default_value_t = 0)]
        stats_interval_s: u64,
    },
    /// Open connections to an echo server, send N bytes on each, read them back, close.
    Connect {
        #[command(flatten)]
        common: Common,
        /// The server, IP:PORT.
        #[arg(long)]
        target: SocketAddrV4,
        /// Bytes to send (byte i is i % 251).
        #[arg(long, default_value_t = 1_000_000)]
        bytes: u64,
        /// Concurrent connections, spread over the workers (connection i on worker i mod
        /// --queues, from that worker's share of the client ports).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        connections: u32,
        /// Which side closes first.
        #[arg(long, value_enum, default_value_t = CloseFirst::Local)]
        close_first: CloseFirst,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Generate load: open connections to an HTTP server at a rate or a concurrency, print
    /// connections/s, requests/s, latency percentiles, errors and TIME_WAIT once a second.
    Load {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        load: load::LoadArgs,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Poll {
    Busy,
    Sleep,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum AppKind {
    Echo,
    Http,
    Discard,
    /// A sockperf-compatible server (`sockperf ping-pong --tcp` against it).
    Sockperf,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum CloseFirst {
    Local,
    Remote,
}

/// A list of cores (a newtype: clap would read a bare `Vec` as repeated values).
#[derive(Clone, Debug)]
struct Cores(Vec<usize>);

fn parse_cores(text: &str) -> Result<Cores, String> {
    let cores = parse_core_list(text)?;
    // The machine's online CPUs, not this process's affinity mask (a `taskset` around synack
    // narrows the mask, and --cores picks within what it allows).
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|list| parse_core_list(list.trim()).ok())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect());
    if let Some(&c) = cores.iter().find(|c| !online.contains(c)) {
        return Err(format!("core {c} is not online (online: {online:?})"));
    }
    Ok(Cores(cores))
}

fn parse_core_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad core list {text:?}: expected e.g. 1 or 0,1 or 2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                cores.extend(a..=b);
            }
            None => cores.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cores.is_empty() {
        return Err("empty core list".into());
    }
    Ok(cores)
}

impl Common {
    fn runtime_config(&self) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(self.iface.clone(), self.ip);
        config.prefix_len = self.prefix_len;
        config.queues = self.queues;
        config.cores = self.cores.clone().map(|c| c.0).unwrap_or_default();
        config.busy_poll = self.poll == Poll::Busy;
        config.batch_size = self.batch;
        config.checksum = if self.trust_checksums { ChecksumMode::Trust } else { ChecksumMode::Verify };
        config.max_connections = self.max_connections;
        config.max_time_wait = self.max_time_wait;
        config.syn_backlog = self.syn_backlog;
        config.syn_cookies = !self.no_syn_cookies;
        config.tcp.time_wait = Duration::from_millis(self.time_wait_ms);
        let buffer = self.buffer_bytes.unwrap_or(64 * 1024);
        config.tcp.send_buffer_len = buffer;
        config.tcp.recv_buffer_len = buffer;
        // Request/response traffic: no Nagle delay.
        config.tcp.nagle = false;
        config
    }
}

/// Set by SIGINT or SIGTERM.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install a signal handler")?;
    }
    Ok(stop)
}

fn serve(common: Common, port: u16, app: AppKind, stats_interval_s: u64) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let mut config = common.runtime_config();
    config.listen_ports = vec![port];
    if common.buffer_bytes.is_none() && matches!(app, AppKind::Http | AppKind::Sockperf) {
        // Small requests and answers: 16 KiB rings let the start-up prefill cover four times
        // as many slots (see `--buffer-bytes`), so a burst of connections meets no page fault.
        config.tcp.send_buffer_len = SMALL_RING_BYTES;
        config.tcp.recv_buffer_len = SMALL_RING_BYTES;
    }
    let runtime = match app {
        AppKind::Echo => Runtime::start(config, |_| apps::Echo::new(common.max_connections)),
        AppKind::Http => Runtime::start(config, |_| apps::Http::new(common.max_connections)),
        AppKind::Discard => Runtime::start(config, |_| apps::Discard),
        AppKind::Sockperf => Runtime::start(config, |_| apps::Sockperf::new()),
    }
    .with_context(|| format!("cannot serve on {} {}:{port}", common.iface, common.ip))?;
    println!(
        "synack ready: {app:?} on {}:{port} via {} ({} queue(s), {:?} address, checksums {})",
        common.ip,
        common.iface,
        common.queues,
        runtime.address_mode(),
        if common.trust_checksums { "trusted" } else { "verified" }
    );
    let ready = std::time::Instant::now();
    let mut next_stats = Duration::from_secs(stats_interval_s);
    while !stop.load(Ordering::Relaxed) && runtime.is_running() {
        std::thread::sleep(Duration::from_millis(50));
        if stats_interval_s > 0 && ready.elapsed() >= next_stats {
            next_stats += Duration::from_secs(stats_interval_s);
            println!("{}", stats::line(ready.elapsed().as_secs_f64(), &runtime.stats(), stats::rss_kb()));
        }
    }
    let failed = !runtime.is_running();
    let xdp = runtime.xdp_counters();
    let report = runtime.stop();
    println!("synack stopped; counters: {}", report.counters);
    stats::print_workers(&report);
    if let Some(xdp) = xdp {
        println!("  xdp: {xdp}");
    }
    if failed {
        bail!("a worker stopped unexpectedly");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { common, port, app, stats_interval_s } => serve(common, port, app, stats_interval_s),
        Command::Connect { common, target, bytes, connections, close_first, timeout_s } => {
            let plan = connect::Plan {
                target,
                bytes,
                connections: connections as usize,
                close_first_local: close_first == CloseFirst::Local,
                timeout_s,
            };
            connect::run(common.runtime_config(), plan)
        }
        Command::Load { common, load } => stop_flag().and_then(|stop| load::run(common, load, stop)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("synack: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "synack",
            "serve",
            "--iface",
            "eth0",
            "--ip",
            "198.18.0.1",
            "--port",
            "80",
            "--app",
            "http",
            "--cores",
            "0",
            "--poll",
            "busy",
            "--time-wait-ms",
            "2000",
            "--trust-checksums",
            "--syn-backlog",
            "8",
            "--no-syn-cookies",
        ])
        .expect("parses");
        let Command::Serve { common, port, app, .. } = cli.command else { panic!("serve") };
        assert_eq!((port, app), (80, AppKind::Http));
        let config = common.runtime_config();
        assert_eq!(config.cores, vec![0]);
        assert!(config.busy_poll);
        assert_eq!(config.tcp.time_wait, Duration::from_millis(2000));
        assert_eq!(config.checksum, ChecksumMode::Trust);
        assert_eq!((config.syn_backlog, config.syn_cookies), (8, false));
        for bad in [["--port", "0"], ["--port", "70000"], ["--ip", "300.1.1.1"], ["--cores", "9999"]] {
            let mut args =
                vec!["synack", "serve", "--iface", "eth0", "--ip", "198.18.0.1", "--port", "80", "--app", "echo"];
            args.extend(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn connect_takes_connections_and_queues() {
        let args = ["synack", "connect", "--iface", "eth0", "--ip", "198.18.0.1", "--target", "198.18.0.2:7"];
        let cli = Cli::try_parse_from(args).expect("parses");
        let Command::Connect { common, connections, .. } = cli.command else { panic!("connect") };
        assert_eq!((connections, common.queues), (1, 1), "one connection on one worker by default");
        let more = [&args[..], &["--connections", "200", "--queues", "2", "--cores", "0"]].concat();
        let cli = Cli::try_parse_from(more).expect("parses");
        let Command::Connect { common, connections, .. } = cli.command else { panic!("connect") };
        assert_eq!((connections, common.runtime_config().queues), (200, 2));
        assert!(Cli::try_parse_from([&args[..], &["--connections", "0"]].concat()).is_err());
    }

    #[test]
    fn the_load_command_line_parses() {
        let base = ["synack", "load", "--iface", "eth0", "--ip", "198.18.0.3", "--target", "198.18.0.2:80"];
        let parse = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.command);
        let Ok(Command::Load { common, load }) = parse(&[
            "--rate",
            "5000",
            "--duration",
            "5",
            "--local-ports",
            "40000-40999",
            "--time-wait-ms",
            "2000",
            "--linger",
            "3",
        ]) else {
            panic!("load parses")
        };
        assert_eq!((load.rate, load.concurrency, load.duration, load.linger), (Some(5000), None, 5, 3));
        assert_eq!(load.local_ports, Some(load::PortRange(40000, 40999)));
        assert_eq!(common.runtime_config().tcp.time_wait, Duration::from_millis(2000));
        assert!(!load.keepalive);
        assert!(parse(&["--concurrency", "10", "--duration", "1", "--keepalive"]).is_ok());
        // Exactly one of --rate and --concurrency; a duration; sane values.
        for bad in [
            &["--duration", "5"][..],
            &["--rate", "10", "--concurrency", "10", "--duration", "5"],
            &["--rate", "10"],
            &["--rate", "0", "--duration", "5"],
            &["--rate", "10", "--duration", "5", "--local-ports", "9-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn core_lists_are_read() {
        assert_eq!(parse_core_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_core_list("3-1").is_err());
        assert!(parse_core_list("x").is_err());
    }
}
