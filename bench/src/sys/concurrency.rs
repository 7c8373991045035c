//! The `concurrency` case: how much a server spends per idle connection. A Linux client
//! (`synack-hold connect`, in the client namespace) opens N connections from many client
//! addresses and holds them, idle, against (a) `synack serve --app echo` and (b) a Linux
//! server that accepts and holds them (`synack-hold accept`, epoll); then, with all N
//! established and a few seconds of quiet, the memory is read a few times (medians).
//!
//! - synack: its RSS (`VmRSS`) after minus before the first connection, per connection. Its
//!   connections cost the kernel nothing (AF_XDP).
//! - Linux: socket memory is the kernel's, not the process's, so the figure is the kernel
//!   memory's growth with the Linux server minus its growth with synack (same client, same
//!   N: the client's own sockets cancel out), plus the Linux server's RSS growth, per
//!   connection; kernel memory = slab + TCP's buffer pages ([`KernelMemory`]), machine-wide, so
//!   the machine's other activity is noise in it.
//!
//! Connection `i` leaves from client address `i % S` (S = N / 50,000 rounded up, each a /32 of
//! the run's /24 on the client's veth) and port 10,000 + `i / S`. Every socket has
//! `SO_LINGER` 0, so stopping the client resets every connection: no TIME_WAIT is left for the
//! next measurement. A process may hold at most its `RLIMIT_NOFILE` of sockets (20,000 on a
//! host without CAP_SYS_RESOURCE), so the client and the Linux server run as several
//! processes when N needs it (the servers share the port with `SO_REUSEPORT`); their RSS is
//! summed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::cleanup;
use super::kernel_memory::KernelMemory;
use super::load::parse_serve_stats;
use super::net::TestLink;
use super::procs::{self, Running};
use super::report::{format_figure, median};
use crate::curve::Curve;
use crate::hold::{self, Line, SPARE_FILES};
use crate::mem::rss::pid_rss_bytes;

/// synack's port and the Linux server's.
const SYNACK_PORT: u16 = 7001;
/// See [`SYNACK_PORT`].
const KERNEL_PORT: u16 = 7002;
/// Connections per client address (ports 10,000 up: 55,536 of them).
pub const CONNS_PER_ADDRESS: u64 = 50_000;
/// The first client port of every address.
const PORT_BASE: u16 = 10_000;
/// Time for the servers to catch up with the client.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Time for the kernel memory to settle before a run, plus a second per 100,000 connections.
const QUIET_WAIT: Duration = Duration::from_secs(10);

/// The ring bytes `synack serve` writes at start (`--buffer-bytes` in its `--help`): pool
/// rings, and as many connection slots, which are in the RSS baseline (rings are lent only to
/// connections holding data, so an idle one's cost is its slot and table entries).
const SYNACK_PREFAULT_BYTES: u64 = 128 << 20;

/// The connection slots synack made before the baseline reading.
pub fn synack_prefaulted_slots(conns: u64, buffer_bytes: usize) -> u64 {
    (SYNACK_PREFAULT_BYTES / (2 * buffer_bytes as u64).max(1)).min(synack_max_connections(conns))
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// Connections to hold.
    pub conns: u64,
    /// Connects in flight, over all client processes.
    pub in_flight: u64,
    /// CPU of the servers.
    pub server_cpu: usize,
    /// CPU of the client.
    pub client_cpu: usize,
    /// synack's binary; without it only the Linux side runs (and its figure is the raw delta).
    pub synack_bin: Option<&'a Path>,
    /// `synack-hold`.
    pub hold_bin: &'a Path,
    /// synack's `--buffer-bytes`.
    pub buffer_bytes: usize,
    /// Quiet time after the last connection, before the memory is read.
    pub settle: Duration,
    /// Readings of the memory, one a second; medians.
    pub samples: usize,
    /// Where to write the curves: (results directory, time stamp).
    pub plot: Option<(&'a Path, &'a str)>,
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Synack,
    Kernel,
}

impl Server {
    fn key(self) -> &'static str {
        match self {
            Server::Synack => "synack",
            Server::Kernel => "kernel",
        }
    }
}

/// One server's run.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The server's command.
    pub server: String,
    /// Server and client processes.
    pub server_processes: usize,
    pub client_processes: usize,
    /// What the client counted.
    pub established: u64,
    pub failed: u64,
    /// Failures by cause.
    pub errors: Vec<(String, u64)>,
    /// Connections the server held at the measurement (synack: `connections` of its stats;
    /// Linux: accepted minus closed).
    pub server_held: u64,
    /// Seconds from the first connect to the last connection established, and the rate.
    pub open_s: f64,
    pub conn_per_s: f64,
    /// The server processes' summed RSS before the first connection and with all held.
    pub server_rss_before: u64,
    pub server_rss_after: u64,
    /// Kernel memory before and with all held.
    pub kernel_before: KernelMemory,
    pub kernel_after: KernelMemory,
    /// Seconds since the client started; established; server RSS (MiB); kernel memory (MiB).
    pub curve: Vec<[f64; 4]>,
}

impl Side {
    /// The server's RSS growth per connection.
    pub fn rss_bytes_per_conn(&self) -> f64 {
        (self.server_rss_after as f64 - self.server_rss_before as f64) / self.established.max(1) as f64
    }

    /// The kernel memory's growth, bytes.
    pub fn kernel_delta(&self) -> f64 {
        self.kernel_after.total() as f64 - self.kernel_before.total() as f64
    }
}

/// The case's figures.
#[derive(Debug)]
pub struct Outcome {
    pub synack: Option<Side>,
    pub kernel: Option<Side>,
    /// Table rows: (label, synack, Linux).
    pub rows: Vec<(String, Option<f64>, Option<f64>)>,
    pub json: Value,
}

impl Outcome {
    /// synack's bytes per connection: its RSS growth.
    pub fn synack_bytes_per_conn(&self) -> Option<f64> {
        self.synack.as_ref().map(Side::rss_bytes_per_conn)
    }

    /// The Linux server's bytes per connection: kernel growth with it minus kernel growth with
    /// synack, plus its RSS growth. Needs both runs.
    pub fn kernel_bytes_per_conn(&self) -> Option<f64> {
        let (s, k) = (self.synack.as_ref()?, self.kernel.as_ref()?);
        Some((k.kernel_delta() - s.kernel_delta()) / k.established.max(1) as f64 + k.rss_bytes_per_conn())
    }

    /// The Linux client's kernel memory per connection: the growth with synack (whose own
    /// connections cost the kernel nothing).
    pub fn client_kernel_bytes_per_conn(&self) -> Option<f64> {
        self.synack.as_ref().map(|s| s.kernel_delta() / s.established.max(1) as f64)
    }
}

/// Processes needed to hold `conns` sockets at `files` descriptors each, leaving `headroom`
/// (a fraction) for an uneven spread.
pub fn processes_for(conns: u64, files: u64, headroom: f64) -> usize {
    let per = ((files.saturating_sub(SPARE_FILES)) as f64 * (1.0 - headroom)).floor().max(1.0) as u64;
    conns.div_ceil(per).max(1) as usize
}

/// Runs the case: the client addresses, then synack, then the Linux server.
pub fn run(config: &Config<'_>, link: &TestLink) -> Result<Outcome> {
    let files = hold::files_per_process();
    let client_processes = processes_for(config.conns, files, 0.0);
    // SO_REUSEPORT spreads by hash: a fifth spare per process.
    let server_processes = processes_for(config.conns, files, 0.2);
    let addresses = config.conns.div_ceil(CONNS_PER_ADDRESS).max(1);
    println!(
        "== concurrency: {} idle connections from {addresses} client address{} ({} client process{}; RLIMIT_NOFILE {files}), synack serve --app echo --buffer-bytes {} vs a Linux accept-and-hold server ({server_processes} process{})",
        format_figure(config.conns as f64),
        if addresses == 1 { "" } else { "es" },
        client_processes,
        if client_processes == 1 { "" } else { "es" },
        config.buffer_bytes,
        if server_processes == 1 { "" } else { "es" },
    );
    let mut sources = Vec::new();
    for _ in 0..addresses {
        let ip = link.fresh_load_address()?;
        link.client.netns.add_address(&link.client.ifname, ip, 32)?;
        sources.push(ip);
    }
    // The Linux server's accept queue and SYN queue (both per namespace).
    for setting in ["net.core.somaxconn=65535", "net.ipv4.tcp_max_syn_backlog=65535"] {
        link.server.netns.exec("sysctl", &["-q", "-w", setting])?;
    }
    let mut synack = None;
    if let Some(bin) = config.synack_bin {
        let side =
            measure(config, link, &sources, Server::Synack, bin, (client_processes, 1)).context("synack's run")?;
        synack = Some(side);
    } else {
        println!("  synack: n/a (synack binary missing)");
    }
    let kernel = measure(config, link, &sources, Server::Kernel, config.hold_bin, (client_processes, server_processes))
        .context("the Linux server's run")?;
    let mut outcome = Outcome { synack, kernel: Some(kernel), rows: Vec::new(), json: Value::Null };
    report(config, &mut outcome, &sources);
    Ok(outcome)
}

/// The running servers of one side.
struct Servers {
    procs: Vec<Running>,
    pids: Vec<u32>,
}

impl Servers {
    fn rss(&self) -> Result<u64> {
        self.pids.iter().map(|&pid| pid_rss_bytes(pid).with_context(|| format!("VmRSS of {pid}"))).sum()
    }

    fn ensure_running(&mut self) -> Result<()> {
        self.procs.iter_mut().try_for_each(Running::ensure_running)
    }

    /// Connections held now: synack's last `stats` line, or the Linux servers' `accepted`
    /// lines summed.
    fn held(&self, server: Server) -> u64 {
        match server {
            Server::Synack => self
                .procs
                .first()
                .and_then(|p| parse_serve_stats(&p.output()).ok())
                .and_then(|s| s.last().map(|s| s.connections))
                .unwrap_or(0),
            Server::Kernel => self
                .procs
                .iter()
                .map(|p| {
                    hold::last_line(&p.output(), |l| match l {
                        Line::Accepted { accepted, closed, .. } => Some(accepted.saturating_sub(closed)),
                        _ => None,
                    })
                    .unwrap_or(0)
                })
                .sum(),
        }
    }

    fn stop(self) -> Vec<String> {
        self.procs.into_iter().map(Running::stop).collect()
    }
}

fn start_servers(config: &Config<'_>, link: &TestLink, server: Server, bin: &Path, count: usize) -> Result<Servers> {
    let netns = &link.server.netns;
    let mut procs = Vec::new();
    match server {
        Server::Synack => {
            let addr = SocketAddr::from((link.server.ip, SYNACK_PORT));
            let max = synack_max_connections(config.conns).to_string();
            let buffer = config.buffer_bytes.to_string();
            procs.push(procs::start_synack(
                netns,
                config.server_cpu,
                bin,
                &link.server.ifname,
                addr,
                "echo",
                // Idle connections are the point: no idle timeout. Stats every second: the
                // connections it holds.
                &[
                    "--max-connections",
                    &max,
                    "--buffer-bytes",
                    &buffer,
                    "--syn-backlog",
                    &max,
                    "--idle-timeout-s",
                    "0",
                    "--stats-interval-s",
                    "1",
                ],
            )?);
        }
        Server::Kernel => {
            let addr = SocketAddrV4::new(link.server.ip, KERNEL_PORT);
            let per = config.conns.div_ceil(count as u64) * 5 / 4 + SPARE_FILES;
            for _ in 0..count {
                let mut command = netns.command_on_cpu(config.server_cpu, &bin.to_string_lossy());
                command.args(["accept", "--listen", &addr.to_string(), "--max", &per.to_string()]);
                let mut p = Running::spawn(format!("synack-hold accept on {addr}"), &mut command)?;
                p.wait_for_output(r#""type":"ready""#, Duration::from_secs(10))?;
                procs.push(p);
            }
        }
    }
    let pids = procs.iter_mut().map(Running::pid).collect();
    Ok(Servers { procs, pids })
}

/// synack's `--max-connections` and `--syn-backlog`: room for all, and no SYN cookies. In
/// trial runs the AF_XDP receive ring overflowed in the bursts of connects (the worker was
/// busy faulting in the new connections' rings), and a cookie handshake whose last ACK is lost
/// is established on the client and unknown to the server (2,272 of 100,000 with the default
/// backlog, 1,024); a server that keeps SYN-RECEIVED state resends its SYN-ACK instead. The
/// Linux server gets the same room (`tcp_max_syn_backlog`, `somaxconn`).
fn synack_max_connections(conns: u64) -> u64 {
    conns + conns / 8 + 1024
}

/// The client processes' summed counts: (established, failed, all finished opening).
fn client_counts(clients: &[Running]) -> Result<(u64, u64, bool)> {
    let (mut established, mut failed, mut finished) = (0, 0, true);
    for c in clients {
        let output = c.output();
        if let Some(message) = hold::last_line(&output, |l| match l {
            Line::Failed { message } => Some(message),
            _ => None,
        }) {
            bail!("{}: {message}", c.label);
        }
        let counts = hold::last_line(&output, |l| match l {
            Line::Opened { established, failed, .. } => Some((established, failed, true)),
            Line::Progress { established, failed, .. } => Some((established, failed, false)),
            _ => None,
        });
        let (e, f, done) = counts.unwrap_or((0, 0, false));
        established += e;
        failed += f;
        finished &= done;
    }
    Ok((established, failed, finished))
}

/// The memory readings: (server RSS, kernel memory), medians of `samples` a second apart.
fn read_memory(servers: &Servers, samples: usize) -> Result<(u64, KernelMemory)> {
    let mut rss = Vec::new();
    let mut kernel = Vec::new();
    for i in 0..samples.max(1) {
        if i > 0 {
            cleanup::sleep(Duration::from_secs(1))?;
        }
        rss.push(servers.rss()?);
        kernel.push(KernelMemory::read()?);
    }
    let middle = |mut v: Vec<u64>| -> u64 {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let slab = middle(kernel.iter().map(|k| k.slab_bytes).collect());
    let tcp = middle(kernel.iter().map(|k| k.tcp_buffer_bytes).collect());
    Ok((middle(rss), KernelMemory { slab_bytes: slab, tcp_buffer_bytes: tcp }))
}

/// Waits until the kernel memory moves less than 1 MiB in a second (the sockets of a stopped
/// run are freed after an RCU grace period), at most `limit`.
fn wait_for_quiet_kernel(limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = KernelMemory::read()?.total();
    while Instant::now() < deadline {
        cleanup::sleep(Duration::from_secs(1))?;
        let now = KernelMemory::read()?.total();
        if now.abs_diff(last) < 1 << 20 {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// One server's run: start it, read the memory, open and hold N, read it again, stop all.
fn measure(
    config: &Config<'_>,
    link: &TestLink,
    sources: &[Ipv4Addr],
    server: Server,
    bin: &Path,
    (client_processes, server_processes): (usize, usize),
) -> Result<Side> {
    cleanup::check_interrupted()?;
    wait_for_quiet_kernel(QUIET_WAIT + Duration::from_secs(config.conns / 100_000))?;
    let mut servers = start_servers(config, link, server, bin, server_processes)?;
    cleanup::sleep(Duration::from_secs(1))?;
    let (server_rss_before, kernel_before) = read_memory(&servers, 3)?;
    let target = match server {
        Server::Synack => SocketAddrV4::new(link.server.ip, SYNACK_PORT),
        Server::Kernel => SocketAddrV4::new(link.server.ip, KERNEL_PORT),
    };
    let per_client = config.conns.div_ceil(client_processes as u64);
    let in_flight = (config.in_flight / client_processes as u64).max(8);
    let sources_arg = sources.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",");
    let started = Instant::now();
    let mut clients = Vec::new();
    for k in 0..client_processes as u64 {
        let first = k * per_client;
        let count = per_client.min(config.conns - first);
        if count == 0 {
            break;
        }
        let mut command = link.client.netns.command_on_cpu(config.client_cpu, &config.hold_bin.to_string_lossy());
        command.args([
            "connect",
            "--target",
            &target.to_string(),
            "--sources",
            &sources_arg,
            "--port-base",
            &PORT_BASE.to_string(),
            "--first",
            &first.to_string(),
            "--count",
            &count.to_string(),
            "--in-flight",
            &in_flight.to_string(),
        ]);
        clients.push(Running::spawn(format!("synack-hold connect #{k} to {target}"), &mut command)?);
    }
    // Opening: the curve, until every client has reported `opened`.
    let mut curve = Vec::new();
    let limit = Duration::from_secs(120 + config.conns / 1_000);
    let (established, failed) = loop {
        cleanup::sleep(Duration::from_millis(250))?;
        servers.ensure_running()?;
        let (established, failed, finished) = client_counts(&clients)?;
        let t = started.elapsed();
        curve.push([
            t.as_secs_f64(),
            established as f64,
            servers.rss()? as f64 / MIB,
            KernelMemory::read()?.total() as f64 / MIB,
        ]);
        if finished {
            break (established, failed);
        }
        for c in &mut clients {
            c.ensure_running()?;
        }
        if t > limit {
            bail!("{established} of {} connections established after {limit:?}", config.conns);
        }
    };
    let open_s = client_open_seconds(&clients).unwrap_or_else(|| started.elapsed().as_secs_f64());
    println!(
        "  {}: {} established in {open_s:.1} s ({}/s), {failed} failed",
        server.key(),
        format_figure(established as f64),
        format_figure(established as f64 / open_s.max(1e-9)),
    );
    // The server's count may trail the client's (accept queue, stats a second apart).
    let deadline = Instant::now() + CATCH_UP;
    while servers.held(server) < established && Instant::now() < deadline {
        cleanup::sleep(Duration::from_millis(250))?;
        servers.ensure_running()?;
    }
    cleanup::sleep(config.settle)?;
    let (server_rss_after, kernel_after) = read_memory(&servers, config.samples)?;
    servers.ensure_running()?;
    let server_held = servers.held(server);
    let errors = client_errors(&clients);
    // Stopping the clients resets every connection (SO_LINGER 0); then the servers.
    for c in clients {
        c.stop();
    }
    let outputs = servers.stop();
    if server_held < established {
        bail!(
            "the server holds {server_held} of the {established} connections the client established; it said:\n{}",
            outputs.join("\n")
        );
    }
    let server_command = match server {
        Server::Synack => format!(
            "synack serve --app echo --cores {} --poll busy --max-connections {} --buffer-bytes {} --syn-backlog {} --idle-timeout-s 0",
            config.server_cpu,
            synack_max_connections(config.conns),
            config.buffer_bytes,
            synack_max_connections(config.conns),
        ),
        Server::Kernel => format!("synack-hold accept (epoll, SO_REUSEPORT) x {server_processes}"),
    };
    Ok(Side {
        server: server_command,
        server_processes,
        client_processes,
        established,
        failed,
        errors,
        server_held,
        open_s,
        conn_per_s: established as f64 / open_s.max(1e-9),
        server_rss_before,
        server_rss_after,
        kernel_before,
        kernel_after,
        curve,
    })
}

/// The longest `opened` time of the clients (they start together).
fn client_open_seconds(clients: &[Running]) -> Option<f64> {
    clients
        .iter()
        .filter_map(|c| {
            hold::last_line(&c.output(), |l| match l {
                Line::Opened { t, .. } => Some(t),
                _ => None,
            })
        })
        .reduce(f64::max)
}

/// The clients' failures by cause, summed.
fn client_errors(clients: &[Running]) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = Vec::new();
    for c in clients {
        let errors = hold::last_line(&c.output(), |l| match l {
            Line::Opened { errors, .. } => Some(errors),
            _ => None,
        });
        for (cause, n) in errors.unwrap_or_default() {
            match all.iter_mut().find(|(c, _)| *c == cause) {
                Some(entry) => entry.1 += n,
                None => all.push((cause, n)),
            }
        }
    }
    all
}

/// Prints the figures, fills the rows and the JSON, writes the curves.
fn report(config: &Config<'_>, outcome: &mut Outcome, sources: &[Ipv4Addr]) {
    let n = config.conns;
    let fig = |v: Option<f64>| v.map_or("n/a".to_owned(), format_figure);
    let synack_bytes = outcome.synack_bytes_per_conn();
    let kernel_bytes = outcome.kernel_bytes_per_conn();
    let client_bytes = outcome.client_kernel_bytes_per_conn();
    let kernel_side = outcome.kernel.as_ref();
    println!(
        "  bytes per idle connection: synack {} (RSS), Linux server {} (kernel memory + RSS; the Linux client's own sockets: {} each)",
        fig(synack_bytes),
        fig(kernel_bytes),
        fig(client_bytes)
    );
    let prefaulted = synack_prefaulted_slots(n, config.buffer_bytes);
    if outcome.synack.is_some() && prefaulted * 10 > n {
        println!(
            "  note: synack made its first {} connection slots at start, before the baseline: with {} connections its figure understates",
            format_figure(prefaulted as f64),
            format_figure(n as f64)
        );
    }
    if let Some(k) = kernel_side {
        println!(
            "  Linux run: kernel memory +{:.1} MiB, server RSS +{:.1} MiB; synack run: kernel memory +{:.1} MiB, server RSS +{:.1} MiB",
            k.kernel_delta() / MIB,
            (k.server_rss_after as f64 - k.server_rss_before as f64) / MIB,
            outcome.synack.as_ref().map_or(f64::NAN, Side::kernel_delta) / MIB,
            outcome.synack.as_ref().map_or(f64::NAN, |s| s.server_rss_after as f64 - s.server_rss_before as f64) / MIB,
        );
    }
    let rate = |s: Option<&Side>| s.map(|s| s.conn_per_s);
    let failed = |s: Option<&Side>| s.map(|s| s.failed as f64);
    outcome.rows = vec![
        (format!("server bytes per idle connection, {} held", format_figure(n as f64)), synack_bytes, kernel_bytes),
        ("connections opened per second (Linux client)".to_owned(), rate(outcome.synack.as_ref()), rate(kernel_side)),
        ("connections failed".to_owned(), failed(outcome.synack.as_ref()), failed(kernel_side)),
    ];
    let mut curves = serde_json::Map::new();
    for side in [outcome.synack.as_ref().map(|s| (Server::Synack, s)), kernel_side.map(|k| (Server::Kernel, k))]
        .into_iter()
        .flatten()
    {
        let (server, s) = side;
        let Some((dir, stamp)) = config.plot else { break };
        let mut curve = Curve::new(
            &format!("{} idle connections to {}: server RSS and kernel memory while opening", n, server.key()),
            &["t_s", "established", "server_rss_mib", "kernel_memory_mib"],
        );
        curve.rows = s.curve.iter().map(|r| r.to_vec()).collect();
        let base = dir.join(format!("{stamp}-veth-concurrency-{}", server.key()));
        let csv = base.with_extension("csv");
        match curve.write_csv(&csv) {
            Ok(()) => {
                let png = base.with_extension("png");
                match curve.plot_png(&csv, &png) {
                    Ok(()) => println!("  curve: {} and {}", csv.display(), png.display()),
                    Err(e) => println!("  curve: {} (no PNG: {e})", csv.display()),
                }
                curves.insert(server.key().to_owned(), json!(csv.display().to_string()));
            }
            Err(e) => println!("  curve: cannot write {}: {e}", csv.display()),
        }
    }
    let rates: Vec<f64> =
        [&outcome.synack, &outcome.kernel].iter().filter_map(|s| s.as_ref().map(|s| s.conn_per_s)).collect();
    outcome.json = json!({
        "what": "N idle connections opened by a Linux client (synack-hold connect: non-blocking connects, SO_LINGER 0, explicit source address and port) and held; server memory per connection once all are established and settled (medians of readings a second apart)",
        "method": "synack: the server's VmRSS after minus before, per connection. Linux: kernel memory = slab (SReclaimable + SUnreclaim) + TCP mem pages of /proc/net/sockstat x page size; (its growth with the Linux server - its growth with synack, same client and N: the client's sockets cancel out) + the Linux server processes' RSS growth, per connection. Kernel memory is machine-wide: other activity on the machine is noise in it",
        "conns": n,
        "client_addresses": sources.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>(),
        "in_flight": config.in_flight,
        "buffer_bytes": config.buffer_bytes,
        "settle_s": config.settle.as_secs_f64(),
        "samples": config.samples,
        "synack_bytes_per_conn": synack_bytes,
        "synack_prefaulted_slots": prefaulted,
        "kernel_bytes_per_conn": kernel_bytes,
        "client_kernel_bytes_per_conn": client_bytes,
        "median_conn_per_s": median(&rates),
        "synack": outcome.synack,
        "kernel": outcome.kernel,
        "curves": curves,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefaulted_slots_follow_the_ring_size() {
        // 128 MiB of 2 x 16 KiB rings, 2 x 2 KiB, and no more than the table holds.
        assert_eq!(synack_prefaulted_slots(100_000, 16_384), 4_096);
        assert_eq!(synack_prefaulted_slots(1_000_000, 2_048), 32_768);
        assert_eq!(synack_prefaulted_slots(1_000, 2_048), 2_149);
    }

    #[test]
    fn processes_cover_the_connections_within_the_file_limit() {
        // 20,000 files: 19,936 sockets a process.
        assert_eq!(processes_for(100_000, 20_000, 0.0), 6);
        assert_eq!(processes_for(19_936, 20_000, 0.0), 1);
        assert_eq!(processes_for(19_937, 20_000, 0.0), 2);
        // A fifth spare: 15,948 a process.
        assert_eq!(processes_for(100_000, 20_000, 0.2), 7);
        assert_eq!(processes_for(1_000_000, 1_048_576, 0.0), 1);
        assert_eq!(processes_for(10, 10, 0.0), 10);
    }

    fn side(established: u64, rss: (u64, u64), slab: (u64, u64)) -> Side {
        Side {
            server: String::new(),
            server_processes: 1,
            client_processes: 1,
            established,
            failed: 0,
            errors: Vec::new(),
            server_held: established,
            open_s: 2.0,
            conn_per_s: established as f64 / 2.0,
            server_rss_before: rss.0,
            server_rss_after: rss.1,
            kernel_before: KernelMemory { slab_bytes: slab.0, tcp_buffer_bytes: 4096 },
            kernel_after: KernelMemory { slab_bytes: slab.1, tcp_buffer_bytes: 8192 },
            curve: Vec::new(),
        }
    }

    #[test]
    fn the_linux_figure_takes_the_clients_sockets_out() {
        // 1,000 connections. With synack: RSS +1 MB, kernel +2 MB + 4 KiB (the client's
        // sockets). With Linux: kernel +5 MB + 4 KiB, server RSS +0.5 MB.
        let synack = side(1_000, (10_000_000, 11_000_000), (100_000_000, 102_000_000));
        let kernel = side(1_000, (2_000_000, 2_500_000), (100_000_000, 105_000_000));
        let outcome = Outcome { synack: Some(synack), kernel: Some(kernel), rows: Vec::new(), json: Value::Null };
        assert_eq!(outcome.synack_bytes_per_conn(), Some(1_000.0));
        assert_eq!(outcome.kernel_bytes_per_conn(), Some(3_000.0 + 500.0));
        assert_eq!(outcome.client_kernel_bytes_per_conn(), Some(2_004.096));
        let alone = Outcome { synack: None, ..outcome };
        assert_eq!(alone.kernel_bytes_per_conn(), None);
    }
}
