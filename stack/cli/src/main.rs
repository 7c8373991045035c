//! `synack`: serve an application on an interface through AF_XDP, or open a connection.
//!
//! ```text
//! synack serve --iface IF --ip IPV4 --port PORT --app echo|http|discard|sockperf|iperf3
//!              [--queues N] [--cores LIST] [--poll busy|sleep]
//!              [--time-wait-ms MS] [--trust-checksums] [--syn-backlog N] [--no-syn-cookies]
//! synack connect --iface IF --ip IPV4 --target IP:PORT --bytes N [--close-first local|remote]
//!                [--connections K] [--queues N] [--cores LIST]
//! synack iperf3 --iface IF --ip IPV4 --target IP:PORT [-t S | -n BYTES] [-P N] [-R | --bidir]
//! synack load --iface IF --ip IPV4 --target IP:PORT (--rate CPS | --concurrency N) --duration S
//!             [--request 'GET / HTTP/1.1 ...'] [--keepalive] [--queues N] [--cores LIST] ...
//! synack proxy --iface IF --ip IPV4 --listen PORT[,PORT...] --upstream IP:PORT[,IP:PORT...]
//!              [--balance round-robin|hash] [--queues N] [--cores LIST] [--poll busy|sleep]
//!              [--connect-timeout-ms MS] [--idle-timeout-s S] [--drain-s S] [--gateway IP]
//! ```

mod apps;
mod connect;
mod idle;
mod iperf3;
mod load;
mod metrics;
mod proxy;
mod stat;
mod stats;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use load::CloseFirst;
use synack::runtime::{Runtime, RuntimeConfig};
use synack::wire::ChecksumMode;

/// Ring bytes per connection for small request/response traffic (see `--buffer-bytes`).
const SMALL_RING_BYTES: usize = 16 * 1024;
/// Ring bytes per connection for bulk transfers (`synack iperf3`, `serve --app iperf3`).
const BULK_RING_BYTES: usize = 256 * 1024;

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
    /// Orphans per worker: connections the application has closed whose close has not
    /// finished (FIN-WAIT, CLOSING, LAST-ACK). A close beyond it resets the oldest orphan
    /// (`orphans_reset`), as Linux's tcp_max_orphans.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    max_orphans: u64,
    /// Passive connections per worker waiting in SYN-RECEIVED; beyond it SYNs get SYN cookies.
    #[arg(long, default_value_t = 1024)]
    syn_backlog: usize,
    /// Drop SYNs beyond the SYN backlog instead of answering them with SYN cookies.
    #[arg(long)]
    no_syn_cookies: bool,
    /// Send and receive buffer bytes per connection [default: 16384 for `load` and for the
    /// `http` and `sockperf` apps, whose requests and answers are small; 262144 for `iperf3`
    /// (the app and the client); 65536 otherwise]. Rings are lent from each worker's pool to
    /// the connections holding data and given back when drained (an idle connection holds
    /// none); the first 128 MiB of them per worker are allocated and written at start.
    #[arg(long)]
    buffer_bytes: Option<usize>,
    /// Bytes of send and receive rings each worker holds at most (pairs of `--buffer-bytes`
    /// rings). When none is free, arriving data is answered with a zero window and writes
    /// wait (`rx_no_ring`, `tx_no_ring`).
    #[arg(long, default_value_t = 512 << 20)]
    ring_pool_bytes: usize,
    /// TIME_WAIT records each worker holds at most (allocated at start).
    #[arg(long, default_value_t = 1 << 20)]
    max_time_wait: usize,
    /// RX batch size.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Frames each worker's AF_XDP socket lends the kernel for receiving (its RX and fill
    /// rings; a power of two): how far a worker may fall behind before the kernel drops frames
    /// (`rx_fill_ring_empty` in the stop line's `kernel` figures). Raise it where those drops
    /// show; a deeper ring costs cache (the UMEM holds twice as many frames, at least 8192).
    #[arg(long, default_value_t = 2048, value_parser = parse_rx_ring, value_name = "FRAMES")]
    rx_ring: u32,
    /// The per-boot ISN and SYN-cookie key file: made if missing (mode 0600, in a directory
    /// of mode 0700), refused unless both are this user's and private, the file exactly 16
    /// bytes and not a symbolic link.
    #[arg(long, default_value = synack::runtime::ISN_KEY_PATH)]
    key_file: std::path::PathBuf,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (a kernel socket: a management
    /// address, not synack's), from a thread of its own.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// Write the frames the workers receive and send to this pcap file (tcpdump on the
    /// interface cannot see them: they go to AF_XDP before the kernel's taps). Frames arriving
    /// while the writer is behind are not captured, and counted.
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Stop capturing after this many frames.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pcap_max_frames: u64,
    /// Keepalive (RFC 1122 4.2.3.6): probe a connection idle this many seconds, then every
    /// min(this, 75) s, and abort it after 9 unanswered probes [default: off].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    keepalive_s: Option<u64>,
    /// RFC 5482 user timeout (Linux TCP_USER_TIMEOUT): abort a connection whose data or
    /// zero-window probes go unacknowledged this many seconds [default: off; 15 retries bound
    /// them].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    user_timeout_s: Option<u64>,
    /// Serve fewer queues (--queues) than the interface receives on; frames on the others
    /// reach the kernel, which resets synack's connections on a shared address.
    #[arg(long)]
    allow_partial_queues: bool,
    /// The MTU to serve at [default: the interface's]: the MSS advertised and used is MTU - 40,
    /// and frames above 3.8 KB (MTU 3826) travel as chains of UMEM frames (AF_XDP
    /// multi-buffer, Linux 6.6). At most the interface's MTU.
    #[arg(long, value_parser = clap::value_parser!(u16).range(576..))]
    mtu: Option<u16>,
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
        /// Cut a connection of the echo or http app that makes no progress for this many
        /// seconds (http: a request head must arrive whole within it, so a slowloris is cut);
        /// 0: never.
        #[arg(long, default_value_t = 60)]
        idle_timeout_s: u64,
        /// On SIGTERM or SIGINT: stop accepting, give open connections this many seconds to
        /// finish, then reset what is left; 0 resets them at once. Either way every peer sees
        /// an RST or a FIN, instead of a silent address. A second signal stops at once.
        #[arg(long, default_value_t = 0)]
        drain_s: u64,
        /// Print one JSON object per line on stdout (ready, stats, draining, the counters at
        /// stop) instead of text; the types are `synack_report::Line`.
        #[arg(long)]
        json: bool,
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
        /// Which side closes first: `client` (synack; alias `local`) or `server` (alias `remote`).
        #[arg(long, value_enum, default_value_t = CloseFirst::Client)]
        close_first: CloseFirst,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Print one JSON object per line on stdout (the echo, the summary, the counters at
        /// stop) instead of text; the types are `synack_report::Line`.
        #[arg(long)]
        json: bool,
    },
    /// Run one iperf3 test (TCP) against an iperf3 server (`iperf3 -s` or `synack serve --app
    /// iperf3`) and print both sides' byte counts and rates.
    Iperf3 {
        #[command(flatten)]
        common: Common,
        /// The server, IP:PORT (iperf3 listens on 5201).
        #[arg(long, short = 'c')]
        target: SocketAddrV4,
        /// Seconds to run [default: 10 unless --bytes].
        #[arg(long, short = 't', conflicts_with = "bytes")]
        time: Option<u64>,
        /// Bytes to send (the server's, with --reverse).
        #[arg(long, short = 'n')]
        bytes: Option<u64>,
        /// Streams per direction.
        #[arg(long, short = 'P', default_value_t = 1)]
        parallel: u64,
        /// The server sends.
        #[arg(long, short = 'R', conflicts_with = "bidir")]
        reverse: bool,
        /// Both send.
        #[arg(long)]
        bidir: bool,
    },
    /// Generate load: open connections to an HTTP server at a rate or a concurrency, print
    /// connections/s, requests/s, latency percentiles, errors and TIME_WAIT once a second.
    Load {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        load: load::LoadArgs,
    },
    /// Show a running synack process's queues and connections (like `ss`), over its Unix
    /// socket in /run/synack.
    Stat(stat::StatArgs),
    /// An L4 TCP proxy: splice each client connection to an upstream, both ways. Prints a
    /// `ready` line once it accepts; SIGTERM or SIGINT drains (--drain-s), a second one stops
    /// at once; counters are printed at the end.
    Proxy {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: proxy::ProxyArgs,
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
    /// An iperf3-compatible server (`iperf3 -c` against it; TCP, one test at a time, one queue).
    Iperf3,
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

fn parse_rx_ring(text: &str) -> Result<u32, String> {
    let n: u32 = text.parse().map_err(|_| format!("{text:?} is not a number of frames"))?;
    if !(64..=1 << 16).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two from 64 to 65536"));
    }
    Ok(n)
}

impl Common {
    fn runtime_config(&self) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(self.iface.clone(), self.ip);
        config.interface.prefix_len = self.prefix_len;
        config.queues = self.queues;
        config.cores = self.cores.clone().map(|c| c.0).unwrap_or_default();
        config.busy_poll = self.poll == Poll::Busy;
        config.batch_size = self.batch;
        config.rx_ring_size = self.rx_ring;
        config.interface.checksum = if self.trust_checksums { ChecksumMode::Trust } else { ChecksumMode::Verify };
        config.interface.max_connections = self.max_connections;
        config.interface.ring_pool_bytes = self.ring_pool_bytes;
        config.interface.max_orphans = usize::try_from(self.max_orphans).unwrap_or(usize::MAX);
        config.interface.max_time_wait = self.max_time_wait;
        config.interface.syn_backlog = self.syn_backlog;
        config.interface.syn_cookies = !self.no_syn_cookies;
        config.interface.tcp.time_wait = Duration::from_millis(self.time_wait_ms);
        config.key_file = Some(self.key_file.clone());
        config.interface.tcp.keepalive = self.keepalive_s.map(|s| synack::tcp::Keepalive {
            idle: Duration::from_secs(s),
            interval: Duration::from_secs(s.min(75)),
            probes: 9,
        });
        config.interface.tcp.user_timeout = self.user_timeout_s.map(Duration::from_secs);
        config.allow_partial_queues = self.allow_partial_queues;
        config.mtu = self.mtu;
        let buffer = self.buffer_bytes.unwrap_or(64 * 1024);
        config.interface.tcp.send_buffer_len = buffer;
        config.interface.tcp.recv_buffer_len = buffer;
        // Request/response traffic: no Nagle delay.
        config.interface.tcp.nagle = false;
        config.pcap =
            self.pcap.clone().map(|path| synack::runtime::PcapConfig { path, max_frames: self.pcap_max_frames });
        config
    }
}

impl Common {
    /// The `--metrics` listener, bound now so that a busy address fails before the runtime starts.
    fn metrics_endpoint(&self) -> anyhow::Result<Option<metrics::Endpoint>> {
        self.metrics.map(metrics::Endpoint::bind).transpose()
    }
}

/// Starts serving `--metrics` scrapes of the runtime's workers, and `synack stat` over a Unix
/// socket in the runtime directory (removed when the returned guard drops).
fn serve_metrics(
    endpoint: Option<metrics::Endpoint>,
    runtime: &Runtime,
    command: &'static str,
    iface: &str,
    ip: Ipv4Addr,
) -> anyhow::Result<Option<stat::StatSocket>> {
    if let Some(endpoint) = endpoint {
        endpoint.serve(runtime.stats_source(), command)?;
    }
    Ok(stat::listen(runtime.stats_source(), stat::Identity { command, iface: iface.to_string(), ip }))
}

/// How long past a drain's deadline `serve` waits for the workers to end (they reset what is
/// left at the deadline and end at their next iteration, 100 ms at most when sleeping).
const DRAIN_SLACK: Duration = Duration::from_secs(2);

/// Set by SIGINT or SIGTERM.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install a signal handler")?;
    }
    Ok(stop)
}

/// `serve`'s options beyond the address and the app.
struct ServeOptions {
    stats_interval_s: u64,
    idle_timeout_s: u64,
    drain_s: u64,
    json: bool,
}

fn serve(common: Common, port: u16, app: AppKind, options: ServeOptions) -> anyhow::Result<()> {
    let ServeOptions { stats_interval_s, idle_timeout_s, drain_s, json } = options;
    let stop = stop_flag()?;
    let mut config = common.runtime_config();
    config.listen_ports = vec![port];
    if common.buffer_bytes.is_none() && matches!(app, AppKind::Http | AppKind::Sockperf) {
        // Small requests and answers: 16 KiB rings let the start-up prefill cover four times
        // as many connections (see `--buffer-bytes`), so a burst of them meets no page fault.
        config.interface.tcp.send_buffer_len = SMALL_RING_BYTES;
        config.interface.tcp.recv_buffer_len = SMALL_RING_BYTES;
    }
    let metrics = common.metrics_endpoint()?;
    if common.buffer_bytes.is_none() && app == AppKind::Iperf3 {
        // Bulk: 64 KiB rings cost the kernel's iperf3 client ~30 retransmissions a second
        // (measured over veth); 256 KiB leave a few per test.
        config.interface.tcp.send_buffer_len = BULK_RING_BYTES;
        config.interface.tcp.recv_buffer_len = BULK_RING_BYTES;
    }
    if app == AppKind::Iperf3 && common.queues > 1 {
        // A test's streams must reach the worker that holds its control connection.
        bail!("--app iperf3 serves on one queue: drop --queues {}", common.queues);
    }
    let idle_cut = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let idle_timeout = (idle_timeout_s > 0).then(|| Duration::from_secs(idle_timeout_s));
    let deadlines = || idle::Deadlines::new(common.max_connections, idle_timeout, idle_cut.clone());
    let runtime = match app {
        AppKind::Echo => Runtime::start(config, |_| apps::Echo::new(common.max_connections, deadlines())),
        AppKind::Http => Runtime::start(config, |_| apps::Http::new(common.max_connections, deadlines())),
        AppKind::Discard => Runtime::start(config, |_| apps::Discard),
        AppKind::Sockperf => Runtime::start(config, |_| apps::Sockperf::new()),
        AppKind::Iperf3 => Runtime::start(config, |_| iperf3::Iperf3Server::new(common.max_connections)),
    }
    .with_context(|| format!("cannot serve on {} {}:{port}", common.iface, common.ip))?;
    let _stat = serve_metrics(metrics, &runtime, "serve", &common.iface, common.ip)?;
    let address_mode = runtime.address_mode();
    if json {
        let ready = synack_report::Ready {
            app: format!("{app:?}").to_lowercase(),
            ip: common.ip.to_string(),
            port,
            iface: common.iface.clone(),
            queues: common.queues,
            address_mode: format!("{address_mode:?}").to_lowercase(),
            checksums_verified: !common.trust_checksums,
        };
        println!("{}", synack_report::Line::Ready(ready).to_json());
    } else {
        println!(
            "synack ready: {app:?} on {}:{port} via {} ({} queue(s), {address_mode:?} address, checksums {})",
            common.ip,
            common.iface,
            common.queues,
            if common.trust_checksums { "trusted" } else { "verified" }
        );
    }
    let ready = std::time::Instant::now();
    let mut next_stats = Duration::from_secs(stats_interval_s);
    while !stop.load(Ordering::Relaxed) && runtime.is_running() {
        std::thread::sleep(Duration::from_millis(50));
        if stats_interval_s > 0 && ready.elapsed() >= next_stats {
            next_stats += Duration::from_secs(stats_interval_s);
            println!("{}", stats::line(ready.elapsed().as_secs_f64(), &runtime.stats(), stats::rss_kb(), json));
        }
    }
    let failed = !runtime.is_running();
    if !failed {
        // Stopped by a signal: the peers are told (RST now, or after the drain's grace; FIN for
        // those that finish), rather than left to their own timeouts on a silent address.
        stop.store(false, Ordering::Relaxed);
        if drain_s > 0 {
            if json {
                println!("{}", synack_report::Line::Draining(synack_report::Draining { drain_s }).to_json());
            } else {
                println!("synack draining: no new connections; open ones have {drain_s} s");
            }
        }
        runtime.start_drain(Duration::from_secs(drain_s));
        let limit = std::time::Instant::now() + Duration::from_secs(drain_s) + DRAIN_SLACK;
        while !runtime.is_finished() && !stop.load(Ordering::Relaxed) && std::time::Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(10));
        }
        if stop.load(Ordering::Relaxed) {
            if json {
                eprintln!("synack: second signal, stopping now");
            } else {
                println!("synack: second signal, stopping now");
            }
        }
    }
    let xdp = runtime.xdp_counters();
    let xdp_by_name = if json { runtime.stats_source().xdp_counters() } else { Vec::new() };
    let report = runtime.stop();
    let idle_timeouts = idle_cut.load(Ordering::Relaxed);
    if json {
        let stopped = stats::stopped(&report, Some(idle_timeouts), &xdp_by_name);
        println!("{}", synack_report::Line::Stopped(stopped).to_json());
    } else {
        println!("synack stopped; counters: {}", report.counters);
        println!("  app: idle_timeouts {idle_timeouts}");
        stats::print_workers(&report);
        stats::print_pcap(&report, common.pcap.as_deref());
        if let Some(xdp) = xdp {
            println!("  xdp: {xdp}");
        }
    }
    if failed {
        match report.workers.iter().find_map(|w| w.fault.clone()) {
            Some(fault) => bail!("stopped: {fault}"),
            None => bail!("a worker stopped unexpectedly"),
        }
    }
    Ok(())
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (`warn` if unset; e.g.
/// `RUST_LOG=debug` or `RUST_LOG=libbpf=debug,libxdp=debug` for the libraries' messages).
fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let filter: tracing_subscriber::filter::Targets = match spec.trim() {
        "" => tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN),
        spec => spec.parse().unwrap_or_else(|e| {
            eprintln!("synack: ignoring RUST_LOG={spec:?} ({e}); expected e.g. `debug` or `libbpf=debug,warn`");
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(filter)
        .try_init();
}

fn main() -> ExitCode {
    init_logs();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { common, port, app, stats_interval_s, idle_timeout_s, drain_s, json } => {
            serve(common, port, app, ServeOptions { stats_interval_s, idle_timeout_s, drain_s, json })
        }
        Command::Connect { common, target, bytes, connections, close_first, timeout_s, json } => {
            let plan = connect::Plan {
                target,
                bytes,
                connections: connections as usize,
                close_first_local: close_first == CloseFirst::Client,
                timeout_s,
                json,
            };
            common.metrics_endpoint().and_then(|metrics| connect::run(common.runtime_config(), plan, metrics))
        }
        Command::Iperf3 { common, target, time, bytes, parallel, reverse, bidir } => {
            let mode = match (reverse, bidir) {
                (_, true) => iperf3::Mode::Bidirectional,
                (true, false) => iperf3::Mode::Reverse,
                (false, false) => iperf3::Mode::Forward,
            };
            let bytes = bytes.unwrap_or(0);
            let seconds = time.unwrap_or(if bytes > 0 { 0 } else { 10 });
            let plan = iperf3::client::Plan { target, mode, parallel, seconds, bytes };
            let mut config = common.runtime_config();
            if common.buffer_bytes.is_none() {
                config.interface.tcp.send_buffer_len = BULK_RING_BYTES;
                config.interface.tcp.recv_buffer_len = BULK_RING_BYTES;
            }
            iperf3::client::run(config, plan)
        }
        Command::Load { common, load } => stop_flag().and_then(|stop| load::run(common, load, stop)),
        Command::Stat(args) => stat::run(args),
        Command::Proxy { common, args } => proxy::run(common, args),
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
    fn rx_ring_sizes_are_powers_of_two_in_range() {
        assert_eq!(parse_rx_ring("8192"), Ok(8192));
        assert_eq!(parse_rx_ring("64"), Ok(64));
        assert_eq!(parse_rx_ring("65536"), Ok(65536));
        for bad in ["0", "32", "1000", "131072", "-1", "many"] {
            assert!(parse_rx_ring(bad).is_err(), "{bad}");
        }
    }

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
        assert_eq!(config.interface.tcp.time_wait, Duration::from_millis(2000));
        assert_eq!(config.interface.checksum, ChecksumMode::Trust);
        assert_eq!((config.interface.syn_backlog, config.interface.syn_cookies), (8, false));
        assert_eq!(config.interface.max_orphans, 4096, "Linux's tcp_max_orphans default per worker");
        assert_eq!(config.key_file.as_deref(), Some(std::path::Path::new(synack::runtime::ISN_KEY_PATH)));
        let with_key = ["synack", "serve", "--iface", "eth0", "--ip", "198.18.0.1", "--port", "80", "--app", "echo"];
        let cli = Cli::try_parse_from([&with_key[..], &["--key-file", "/tmp/k/isn"]].concat()).expect("parses");
        let Command::Serve { common, .. } = cli.command else { panic!("serve") };
        assert_eq!(common.runtime_config().key_file.as_deref(), Some(std::path::Path::new("/tmp/k/isn")));
        assert_eq!(
            (common.runtime_config().interface.tcp.keepalive, common.runtime_config().interface.tcp.user_timeout),
            (None, None)
        );
        let timers = ["--keepalive-s", "300", "--user-timeout-s", "20", "--idle-timeout-s", "5"];
        let cli = Cli::try_parse_from([&with_key[..], &timers].concat()).expect("parses");
        let Command::Serve { common, idle_timeout_s, .. } = cli.command else { panic!("serve") };
        let tcp = common.runtime_config().interface.tcp;
        let keepalive =
            synack::tcp::Keepalive { idle: Duration::from_secs(300), interval: Duration::from_secs(75), probes: 9 };
        assert_eq!(
            (tcp.keepalive, tcp.user_timeout, idle_timeout_s),
            (Some(keepalive), Some(Duration::from_secs(20)), 5)
        );
        assert!(Cli::try_parse_from([&with_key[..], &["--keepalive-s", "0"]].concat()).is_err());
        let cli = Cli::try_parse_from([&with_key[..], &["--max-orphans", "50"]].concat()).expect("parses");
        let Command::Serve { common, .. } = cli.command else { panic!("serve") };
        assert_eq!(common.runtime_config().interface.max_orphans, 50);
        assert!(Cli::try_parse_from([&with_key[..], &["--max-orphans", "0"]].concat()).is_err());
        for bad in [["--port", "0"], ["--port", "70000"], ["--ip", "300.1.1.1"], ["--cores", "9999"]] {
            let mut args =
                vec!["synack", "serve", "--iface", "eth0", "--ip", "198.18.0.1", "--port", "80", "--app", "echo"];
            args.extend(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn serve_connect_and_load_take_json() {
        let serve = ["synack", "serve", "--iface", "eth0", "--ip", "198.18.0.1", "--port", "80", "--app", "echo"];
        let connect = ["synack", "connect", "--iface", "eth0", "--ip", "198.18.0.1", "--target", "198.18.0.2:7"];
        let load = ["synack", "load", "--iface", "eth0", "--ip", "198.18.0.3", "--target", "198.18.0.2:80"];
        let load = [&load[..], &["--rate", "10", "--duration", "1"]].concat();
        for base in [&serve[..], &connect[..], &load[..]] {
            let cli = Cli::try_parse_from([base, &["--json"]].concat()).expect("parses");
            let json = match cli.command {
                Command::Serve { json, .. } | Command::Connect { json, .. } => json,
                Command::Load { load, .. } => load.json,
                _ => unreachable!(),
            };
            assert!(json, "{base:?}");
            assert!(Cli::try_parse_from(base).is_ok());
        }
        let iperf3 = ["synack", "iperf3", "--iface", "eth0", "--ip", "198.18.0.2", "-c", "198.18.0.1:5201"];
        assert!(Cli::try_parse_from([&iperf3[..], &["--json"]].concat()).is_err(), "only where a report is printed");
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
        assert_eq!(common.runtime_config().interface.tcp.time_wait, Duration::from_millis(2000));
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
    fn the_iperf3_command_line_parses() {
        let base = ["synack", "iperf3", "--iface", "eth0", "--ip", "198.18.0.2", "-c", "198.18.0.1:5201"];
        let parse = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.command);
        let Ok(Command::Iperf3 { time, bytes, parallel, reverse, bidir, .. }) = parse(&["-t", "3", "-P", "4", "-R"])
        else {
            panic!("iperf3 parses")
        };
        assert_eq!((time, bytes, parallel, reverse, bidir), (Some(3), None, 4, true, false));
        assert!(parse(&["-n", "1000", "--bidir"]).is_ok());
        for bad in [&["-t", "1", "-n", "5"][..], &["-R", "--bidir"], &["-P", "x"]] {
            assert!(parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn the_proxy_command_line_parses() {
        let base = ["synack", "proxy", "--iface", "eth0", "--ip", "198.18.0.1", "--listen", "80,8080"];
        let parse = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.command);
        let Ok(Command::Proxy { args, .. }) =
            parse(&["--upstream", "198.18.1.2:80,198.18.1.3:8080", "--connect-timeout-ms", "500", "--drain-s", "3"])
        else {
            panic!("proxy parses")
        };
        assert_eq!(args.listen, [80, 8080]);
        assert_eq!(args.upstream.len(), 2);
        assert_eq!((args.connect_timeout_ms, args.drain_s, args.idle_timeout_s), (500, 3, 300));
        assert_eq!(args.balance, proxy::Balance::RoundRobin);
        assert!(parse(&[]).is_err(), "an upstream is required");
        assert!(parse(&["--upstream", "198.18.1.2"]).is_err(), "with its port");
        assert!(parse(&["--upstream", "198.18.1.2:80", "--balance", "hash", "--gateway", "198.18.0.254"]).is_ok());
    }

    #[test]
    fn core_lists_are_read() {
        assert_eq!(parse_core_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_core_list("3-1").is_err());
        assert!(parse_core_list("x").is_err());
    }
}
