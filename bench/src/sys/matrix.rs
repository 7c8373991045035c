//! The client-by-server matrix: two clients (wrk, `synack load`) against two servers (nginx on
//! the kernel stack, `synack serve --app http`), with the same pinning (server on one CPU,
//! client on the other) and the same length, run by run interleaved, medians reported:
//!
//! - (a) wrk -> nginx: the kernel against the kernel, the reference every ratio is taken to;
//! - (b) wrk -> synack;
//! - (c) synack load -> synack: the goal is (c) >= 5 x (a);
//! - (d) synack load -> nginx: with (c), the same client against both servers.
//!
//! Two modes. [`Mode::Close`] (the connection rate): every connection is one `GET /` with
//! `Connection: close`; the server closes first and TIME_WAIT lands on it, with both clients
//! (wrk `-H 'Connection: close'`, `synack load --close-first server`). The server's packets
//! per connection are counted (`packets`), and the server's packets per second (connections/s
//! x packets per connection) are set against the AF_XDP packet ceiling measured in the same
//! run: the goal is 60 % of it. [`Mode::KeepAlive`]: both clients hold
//! [`KEEPALIVE_CONNECTIONS`] connections and send one request after another on each (wrk
//! without the header, `synack load --keepalive`); requests/s and latency, with the goal that
//! (c)'s p99 is at most a quarter of (d)'s (the same client against nginx).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cleanup::{self, Interrupted};
use super::load::parse_load;
use super::net::TestLink;
use super::packets::{self, ServerPackets};
use super::parse;
use super::procs::{self, LoadRun, RunDir, Running};
use super::report::{self, format_figure, format_ratio, median};

/// Goal: synack against synack at least this many times wrk against nginx.
pub const GOAL_SYNACK_OVER_KERNEL: f64 = 5.0;
/// Goal: the server's packets per second at least this share of the packet ceiling.
pub const GOAL_SHARE_OF_CEILING: f64 = 0.60;
/// wrk's connections in flight (one thread): what the kernel reference figures were
/// measured with (docs/machine-notes.md).
pub const WRK_CONNECTIONS: u64 = 64;
/// Keep-alive mode: connections each client holds (wrk `-c`, `synack load --concurrency`).
pub const KEEPALIVE_CONNECTIONS: u64 = 64;
/// Keep-alive goal: (c)'s p99 at most this share of (d)'s.
pub const GOAL_KEEPALIVE_P99_SHARE: f64 = 0.25;

/// What each client does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One request per connection, `Connection: close`, the server closes first.
    Close,
    /// [`KEEPALIVE_CONNECTIONS`] connections, requests back to back on each.
    KeepAlive,
}

impl Mode {
    /// What the rate counts.
    fn unit(self) -> &'static str {
        match self {
            Mode::Close => "connections/s",
            Mode::KeepAlive => "requests/s",
        }
    }
}

/// A load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// wrk on the kernel stack.
    Wrk,
    /// `synack load`.
    SynackLoad,
}

/// A server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// nginx (one worker) on the kernel stack.
    Nginx,
    /// `synack serve --app http`.
    Synack,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Pairing {
    /// `a`, `b`, `c` or `d`.
    pub key: &'static str,
    /// The load generator.
    pub client: Client,
    /// The server.
    pub server: Server,
}

impl Pairing {
    /// `(c) synack load -> synack`.
    pub fn name(&self) -> String {
        let client = match self.client {
            Client::Wrk => "wrk",
            Client::SynackLoad => "synack load",
        };
        let server = match self.server {
            Server::Nginx => "nginx",
            Server::Synack => "synack",
        };
        format!("({}) {client} -> {server}", self.key)
    }
}

/// The four cells, in the order they run and print.
pub const PAIRINGS: [Pairing; 4] = [
    Pairing { key: "a", client: Client::Wrk, server: Server::Nginx },
    Pairing { key: "b", client: Client::Wrk, server: Server::Synack },
    Pairing { key: "c", client: Client::SynackLoad, server: Server::Synack },
    Pairing { key: "d", client: Client::SynackLoad, server: Server::Nginx },
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// Connection per request, or keep-alive.
    pub mode: Mode,
    /// Runs per pairing; medians are reported.
    pub runs: usize,
    /// Length of each run.
    pub duration: Duration,
    /// CPU of the server.
    pub server_cpu: usize,
    /// CPU of the client.
    pub client_cpu: usize,
    /// `synack load --concurrency` (in [`Mode::Close`]).
    pub load_concurrency: u64,
    /// synack's binary, when it exists.
    pub synack_bin: Option<&'a Path>,
    /// Whether that binary has `load`.
    pub synack_has_load: bool,
    /// nginx's body length (as long as synack's http app's).
    pub body_len: usize,
    /// Where nginx listens.
    pub nginx_addr: SocketAddr,
    /// Where synack listens.
    pub synack_addr: SocketAddr,
}

/// What one pairing gave over the runs.
#[derive(Debug, Default)]
pub struct PairingResults {
    /// Not run, and why.
    pub unavailable: Option<String>,
    /// Connections (or, keep-alive, requests) per second, per successful run.
    pub rates: Vec<f64>,
    /// Latency p50 and p99 in microseconds (connect to answer, or request to answer), per run.
    pub p50_us: Vec<f64>,
    pub p99_us: Vec<f64>,
    /// The server's packets (in and out) per connection (keep-alive: per request), per run
    /// that counted them.
    pub packets_per_connection: Vec<f64>,
    /// Every run's raw record (or its error).
    pub runs: Vec<Value>,
}

impl PairingResults {
    /// Median connections per second.
    pub fn rate(&self) -> Option<f64> {
        median(&self.rates)
    }

    /// Median latency p50 and p99 (us).
    pub fn p50(&self) -> Option<f64> {
        median(&self.p50_us)
    }

    pub fn p99(&self) -> Option<f64> {
        median(&self.p99_us)
    }

    /// Median packets per connection at the server.
    pub fn packets_per_connection(&self) -> Option<f64> {
        median(&self.packets_per_connection)
    }

    /// The server's packets per second: the median rate times the median packets per
    /// connection.
    pub fn server_pps(&self) -> Option<f64> {
        Some(self.rate()? * self.packets_per_connection()?)
    }
}

/// The whole matrix.
#[derive(Debug)]
pub struct Matrix {
    /// Connection per request, or keep-alive.
    pub mode: Mode,
    /// Results in [`PAIRINGS`] order.
    pub results: [PairingResults; 4],
    /// Runs per pairing.
    pub runs: usize,
    /// Seconds per run.
    pub duration_s: u64,
    /// `synack load --concurrency`.
    pub load_concurrency: u64,
}

/// Runs the matrix, printing each run's figures.
pub fn run(config: &Config, link: &TestLink, dir: &RunDir) -> Result<Matrix> {
    match config.mode {
        Mode::Close => println!(
            "== connection rate matrix: GET / with Connection: close (the server closes first), {} s per run, \
             server CPU {}, client CPU {}; wrk -t1 -c{WRK_CONNECTIONS}, synack load --concurrency {}",
            config.duration.as_secs(),
            config.server_cpu,
            config.client_cpu,
            config.load_concurrency
        ),
        Mode::KeepAlive => println!(
            "== keep-alive matrix: GET / back to back on {KEEPALIVE_CONNECTIONS} connections, {} s per run, \
             server CPU {}, client CPU {}; wrk -t1 -c{KEEPALIVE_CONNECTIONS}, synack load --keepalive --concurrency {KEEPALIVE_CONNECTIONS}",
            config.duration.as_secs(),
            config.server_cpu,
            config.client_cpu
        ),
    }
    let mut results: [PairingResults; 4] = Default::default();
    for (pairing, r) in PAIRINGS.iter().zip(results.iter_mut()) {
        r.unavailable = match (pairing.client, pairing.server, config.synack_bin) {
            (_, Server::Synack, None) | (Client::SynackLoad, _, None) => Some("synack binary missing".into()),
            (Client::SynackLoad, _, Some(_)) if !config.synack_has_load => {
                Some("the synack binary has no `load` command".into())
            }
            _ => None,
        };
    }
    for run_index in 0..config.runs {
        for (pairing, r) in PAIRINGS.iter().zip(results.iter_mut()) {
            if r.unavailable.is_some() {
                continue;
            }
            cleanup::check_interrupted()?;
            let prefix = format!("  {:<24} run {}/{}", pairing.name(), run_index + 1, config.runs);
            match run_once(config, link, dir, pairing) {
                Ok(once) => {
                    println!(
                        "{prefix}: {}/s, p50 {} us, p99 {} us, server {} packets per {} ({} in, {} out, {} connections); load average {}",
                        format_figure(once.rate),
                        once.p50_us.map_or("n/a".into(), format_figure),
                        once.p99_us.map_or("n/a".into(), format_figure),
                        once.packets_per_unit.map_or("n/a".into(), |p| format!("{p:.2}")),
                        if config.mode == Mode::Close { "connection" } else { "request" },
                        once.packets.rx,
                        once.packets.tx,
                        once.packets.connections,
                        report::load_average()
                    );
                    for w in &once.warnings {
                        println!("    warning: {w}");
                    }
                    r.rates.push(once.rate);
                    r.p50_us.extend(once.p50_us);
                    r.p99_us.extend(once.p99_us);
                    r.packets_per_connection.extend(once.packets_per_unit);
                    r.runs.push(once.raw);
                }
                Err(e) if e.is::<Interrupted>() => return Err(e),
                Err(e) => {
                    println!("{prefix}: FAILED: {e:#}");
                    r.runs.push(json!({ "error": format!("{e:#}") }));
                }
            }
        }
    }
    Ok(Matrix {
        mode: config.mode,
        results,
        runs: config.runs,
        duration_s: config.duration.as_secs(),
        load_concurrency: config.load_concurrency,
    })
}

/// One run of one pairing.
struct Once {
    rate: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    packets: ServerPackets,
    /// Per connection, or (keep-alive) per request.
    packets_per_unit: Option<f64>,
    warnings: Vec<String>,
    raw: Value,
}

fn run_once(config: &Config, link: &TestLink, dir: &RunDir, pairing: &Pairing) -> Result<Once> {
    let netns = &link.server.netns;
    let (mut server, addr) = match pairing.server {
        Server::Nginx => {
            let s = procs::start_nginx(netns, config.server_cpu, dir.path(), config.nginx_addr, config.body_len)?;
            (s, config.nginx_addr)
        }
        Server::Synack => {
            let bin = config.synack_bin.context("no synack binary")?;
            let s = procs::start_synack(
                netns,
                config.server_cpu,
                bin,
                &link.server.ifname,
                config.synack_addr,
                "http",
                &[],
            )?;
            (s, config.synack_addr)
        }
    };
    let kernel_before = match pairing.server {
        Server::Nginx => Some(packets::kernel_tcp(netns)?),
        Server::Synack => None,
    };
    let load = run_client(config, link, pairing.client, addr);
    let kernel_after = match pairing.server {
        Server::Nginx => Some(packets::kernel_tcp(netns)),
        Server::Synack => None,
    };
    let alive = server.ensure_running();
    let server_output = server.stop();
    let ClientRun { rate, p50_us, p99_us, warnings, mut raw } = load?;
    alive?;
    let packets = match (kernel_before, kernel_after) {
        (Some(before), Some(after)) => after?.since(&before),
        _ => packets::parse_synack_stop(&server_output)?,
    };
    raw["server_packets"] = json!(packets);
    let packets_per_unit = match config.mode {
        Mode::Close => packets.per_connection(),
        Mode::KeepAlive => {
            let requests = rate * config.duration.as_secs_f64();
            (requests >= 1.0).then(|| (packets.rx + packets.tx) as f64 / requests)
        }
    };
    raw["server_packets_per_connection"] = json!(packets.per_connection());
    raw["server_packets_per_unit"] = json!(packets_per_unit);
    if pairing.server == Server::Synack {
        raw["server_output"] = json!(server_output);
    }
    Ok(Once { rate, p50_us, p99_us, packets, packets_per_unit, warnings, raw })
}

/// What a client run gave.
struct ClientRun {
    /// Connections (keep-alive: requests) per second.
    rate: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    warnings: Vec<String>,
    raw: Value,
}

/// Runs the client against `addr`.
fn run_client(config: &Config, link: &TestLink, client: Client, addr: SocketAddr) -> Result<ClientRun> {
    let netns = &link.client.netns;
    let mut warnings = Vec::new();
    match client {
        Client::Wrk => {
            let mut command = netns.command_on_cpu(config.client_cpu, "wrk");
            let duration = format!("{}s", config.duration.as_secs().max(1));
            match config.mode {
                Mode::Close => {
                    command.args(["-t1", &format!("-c{WRK_CONNECTIONS}"), "-d", &duration, "-H", "Connection: close"])
                }
                Mode::KeepAlive => command.args(["-t1", &format!("-c{KEEPALIVE_CONNECTIONS}"), "-d", &duration]),
            };
            command.args(["--latency", &format!("http://{addr}/")]);
            let output = Running::spawn("wrk", &mut command)?.wait(config.duration + Duration::from_secs(30))?;
            let report = parse::parse_wrk(&output)?;
            if report.non_2xx_3xx > 0 {
                warnings.push(format!("{} responses were not 2xx/3xx", report.non_2xx_3xx));
            }
            if report.socket_errors.total() * 100 > report.requests.max(1) {
                warnings.push(format!("socket errors: {:?}", report.socket_errors));
            }
            let (p50_us, p99_us) = (report.latency_percentile_us(50.0), report.latency_percentile_us(99.0));
            let raw = json!({ "client": "wrk", "wrk": report, "output": output, "warnings": warnings });
            Ok(ClientRun { rate: report.requests_per_s, p50_us, p99_us, warnings, raw })
        }
        Client::SynackLoad => {
            let bin = config.synack_bin.context("no synack binary")?;
            let ip = link.fresh_load_address()?;
            let load = LoadRun {
                binary: bin,
                ifname: &link.client.ifname,
                ip,
                target: addr,
                concurrency: match config.mode {
                    Mode::Close => config.load_concurrency,
                    Mode::KeepAlive => KEEPALIVE_CONNECTIONS,
                },
                duration_s: config.duration.as_secs().max(1),
                keepalive: config.mode == Mode::KeepAlive,
            };
            let mut command = load.command(netns, config.client_cpu);
            // The run, up to 5 s of drain, and the start (XDP program, UMEM).
            let output = Running::spawn(load.label(), &mut command)?.wait(config.duration + Duration::from_secs(40))?;
            let report = parse_load(&output)?;
            let s = &report.summary;
            if s.connections == 0 && s.requests == 0 {
                bail!("synack load completed no connection:\n{output}");
            }
            if s.errors * 100 > s.connections.max(s.requests) {
                warnings.push(format!("{} errors in {} connections", s.errors, s.connections));
            }
            let rate = match config.mode {
                Mode::Close => s.conn_per_s,
                Mode::KeepAlive => s.req_per_s,
            };
            let (p50_us, p99_us) = (Some(s.p50_us as f64), Some(s.p99_us as f64));
            let raw = json!({ "client": load.label(), "client_ip": ip.to_string(), "load": report, "output": output, "warnings": warnings });
            Ok(ClientRun { rate, p50_us, p99_us, warnings, raw })
        }
    }
}

/// A ratio of two optional figures.
fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

impl Matrix {
    fn get(&self, key: &str) -> &PairingResults {
        let i = PAIRINGS.iter().position(|p| p.key == key).unwrap_or(0);
        &self.results[i]
    }

    /// Median connections per second of a pairing (`a` to `d`).
    pub fn rate(&self, key: &str) -> Option<f64> {
        self.get(key).rate()
    }

    /// The ratios between cells: each to (a), then server against server for each client and
    /// client against client for each server.
    pub fn ratios(&self) -> Vec<(&'static str, Option<f64>)> {
        let r = |k| self.rate(k);
        vec![
            ("(b)/(a) wrk client: synack server / nginx", ratio(r("b"), r("a"))),
            ("(c)/(a) synack load -> synack / wrk -> nginx", ratio(r("c"), r("a"))),
            ("(d)/(a) nginx server: synack load / wrk", ratio(r("d"), r("a"))),
            ("(c)/(d) synack load client: synack server / nginx", ratio(r("c"), r("d"))),
            ("(c)/(b) synack server: synack load / wrk", ratio(r("c"), r("b"))),
        ]
    }

    /// The server's share of the packet ceiling, per pairing.
    fn share(&self, i: usize, ceiling_pps: Option<f64>) -> Option<f64> {
        ratio(self.results[i].server_pps(), ceiling_pps)
    }

    /// The keep-alive goal: (c)'s p99 over (d)'s.
    pub fn p99_share(&self) -> Option<f64> {
        ratio(self.get("c").p99(), self.get("d").p99())
    }

    /// Prints the matrix, every ratio and the goals.
    pub fn print_summary(&self, ceiling_pps: Option<f64>) {
        let (title, what, per) = match self.mode {
            Mode::Close => ("Connection rate", "Connection: close, the server closes first", "conn"),
            Mode::KeepAlive => ("Keep-alive", "requests back to back on 64 connections", "req"),
        };
        println!(
            "== {title} matrix: medians of {} run{} of {} s ({what}); \
             server packets counted at the server (synack: its AF_XDP frames; nginx: the namespace's TCP segments)",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.duration_s
        );
        let per_column = format!("server pkts/{per}");
        let header =
            ["pairing", self.mode.unit(), "vs (a)", "p50 us", "p99 us", &per_column, "server pkts/s", "of ceiling"];
        let reference = self.rate("a");
        let rows: Vec<Vec<String>> = PAIRINGS
            .iter()
            .zip(&self.results)
            .enumerate()
            .map(|(i, (p, r))| {
                if let Some(why) = &r.unavailable {
                    let mut row = vec![p.name(), format!("n/a ({why})")];
                    row.resize(8, "-".into());
                    return row;
                }
                let rate = r.rate();
                vec![
                    p.name(),
                    rate.map_or("failed (see JSON)".into(), format_figure),
                    format_ratio(ratio(rate, reference)),
                    r.p50().map_or("-".into(), format_figure),
                    r.p99().map_or("-".into(), format_figure),
                    r.packets_per_connection().map_or("-".into(), |v| format!("{v:.2}")),
                    r.server_pps().map_or("-".into(), format_figure),
                    self.share(i, ceiling_pps).map_or("-".into(), |s| format!("{:.0} %", s * 100.0)),
                ]
            })
            .collect();
        print!("{}", report::render_table(&header, &rows));
        match ceiling_pps {
            Some(c) => println!("packet ceiling (same run): {} pps AF_XDP receive, 64-byte frames", format_figure(c)),
            None => println!("packet ceiling: not measured in this run (case `ceiling`)"),
        }
        for (label, value) in self.ratios() {
            println!("  {label}: {}", format_ratio(value));
        }
        let goal = ratio(self.rate("c"), reference);
        println!(
            "goal: synack load -> synack >= {GOAL_SYNACK_OVER_KERNEL} x wrk -> nginx: {} ({})",
            format_ratio(goal),
            goal.map_or("n/a", |g| met(g >= GOAL_SYNACK_OVER_KERNEL))
        );
        if self.mode == Mode::KeepAlive {
            let share = self.p99_share();
            println!(
                "goal: p99 of synack load -> synack <= {GOAL_KEEPALIVE_P99_SHARE} x synack load -> nginx: {} ({})",
                format_ratio(share),
                share.map_or("n/a", |s| met(s <= GOAL_KEEPALIVE_P99_SHARE))
            );
            return;
        }
        for (i, p) in PAIRINGS.iter().enumerate().filter(|(_, p)| p.server == Server::Synack) {
            let share = self.share(i, ceiling_pps);
            println!(
                "goal: synack server within {:.0} % of the packet ceiling, {}: {} ({})",
                GOAL_SHARE_OF_CEILING * 100.0,
                p.name(),
                share.map_or("n/a".into(), |s| format!("{:.0} %", s * 100.0)),
                share.map_or("n/a", |s| met(s >= GOAL_SHARE_OF_CEILING))
            );
        }
    }

    /// Each pairing's median rate, to draw.
    pub fn bars(&self) -> crate::curve::Bars {
        let title = match self.mode {
            Mode::Close => "connection rate (Connection: close)",
            Mode::KeepAlive => "keep-alive, 64 connections",
        };
        let mut bars =
            crate::curve::Bars::new(&format!("{title}, medians of {}", self.runs), self.mode.unit(), &["median"]);
        for (p, r) in PAIRINGS.iter().zip(&self.results) {
            bars.groups.push((p.name(), vec![r.rate()]));
        }
        bars
    }

    /// The JSON record.
    pub fn to_json(&self, ceiling_pps: Option<f64>) -> Value {
        let reference = self.rate("a");
        let pairings: Vec<Value> = PAIRINGS
            .iter()
            .zip(&self.results)
            .enumerate()
            .map(|(i, (p, r))| {
                json!({
                    "key": p.key,
                    "name": p.name(),
                    "client": format!("{:?}", p.client),
                    "server": format!("{:?}", p.server),
                    "unavailable": r.unavailable,
                    "median_connections_per_s": (self.mode == Mode::Close).then(|| r.rate()).flatten(),
                    "median_requests_per_s": (self.mode == Mode::KeepAlive).then(|| r.rate()).flatten(),
                    "median_latency_p50_us": r.p50(),
                    "median_latency_p99_us": r.p99(),
                    "ratio_to_a": ratio(r.rate(), reference),
                    "median_server_packets_per_connection": r.packets_per_connection(),
                    "server_packets_per_s": r.server_pps(),
                    "share_of_ceiling": self.share(i, ceiling_pps),
                    "runs": r.runs,
                })
            })
            .collect();
        let ratios: serde_json::Map<String, Value> =
            self.ratios().into_iter().map(|(label, value)| (label.to_owned(), json!(value))).collect();
        let goal = ratio(self.rate("c"), reference);
        let (request, wrk, load) = match self.mode {
            Mode::Close => (
                "GET / HTTP/1.1 with Connection: close; the server closes first",
                format!("wrk -t1 -c{WRK_CONNECTIONS} -d{}s -H 'Connection: close' --latency", self.duration_s),
                format!(
                    "synack load --concurrency {} --close-first server --poll busy --duration {}, a fresh dedicated client address per run",
                    self.load_concurrency, self.duration_s
                ),
            ),
            Mode::KeepAlive => (
                "GET / HTTP/1.1, back to back on each connection (keep-alive)",
                format!("wrk -t1 -c{KEEPALIVE_CONNECTIONS} -d{}s --latency", self.duration_s),
                format!(
                    "synack load --keepalive --concurrency {KEEPALIVE_CONNECTIONS} --poll busy --duration {}, a fresh dedicated client address per run",
                    self.duration_s
                ),
            ),
        };
        let p99_share = self.p99_share();
        json!({
            "mode": format!("{:?}", self.mode),
            "request": request,
            "clients": { "wrk": wrk, "synack_load": load },
            "servers": {
                "nginx": "nginx, 1 worker, return 200 from memory, access_log off",
                "synack": "synack serve --app http --poll busy",
            },
            "runs": self.runs,
            "duration_s": self.duration_s,
            "ceiling_pps": ceiling_pps,
            "pairings": pairings,
            "ratios": ratios,
            "goals": {
                "synack_over_kernel": { "target": GOAL_SYNACK_OVER_KERNEL, "value": goal, "met": goal.map(|g| g >= GOAL_SYNACK_OVER_KERNEL) },
                "keepalive_p99_share": (self.mode == Mode::KeepAlive).then(|| json!({
                    "target": GOAL_KEEPALIVE_P99_SHARE,
                    "value": p99_share,
                    "met": p99_share.map(|s| s <= GOAL_KEEPALIVE_P99_SHARE),
                })),
                "share_of_ceiling": {
                    "target": GOAL_SHARE_OF_CEILING,
                    "b": self.share(1, ceiling_pps),
                    "c": self.share(2, ceiling_pps),
                    "met_c": self.share(2, ceiling_pps).map(|s| s >= GOAL_SHARE_OF_CEILING),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(rates: &[f64], packets: &[f64]) -> PairingResults {
        PairingResults { rates: rates.to_vec(), packets_per_connection: packets.to_vec(), ..PairingResults::default() }
    }

    #[test]
    fn ratios_and_shares_come_from_the_medians() {
        let matrix = Matrix {
            mode: Mode::Close,
            results: [
                results(&[20_000.0, 18_000.0, 19_000.0], &[7.0, 7.2, 6.8]),
                results(&[30_000.0], &[6.0]),
                results(&[100_000.0, 90_000.0, 95_000.0], &[6.0, 6.0, 6.2]),
                results(&[], &[]),
            ],
            runs: 3,
            duration_s: 8,
            load_concurrency: 256,
        };
        assert_eq!(matrix.rate("a"), Some(19_000.0));
        assert_eq!(matrix.results[0].server_pps(), Some(19_000.0 * 7.0));
        let ratios = matrix.ratios();
        assert_eq!(ratios[0].1, Some(30_000.0 / 19_000.0));
        assert_eq!(ratios[1].1, Some(95_000.0 / 19_000.0));
        assert_eq!(ratios[2].1, None, "(d) failed every run");
        assert_eq!(matrix.share(2, Some(950_000.0)), Some(0.6));
        assert_eq!(matrix.share(2, None), None);
        let json = matrix.to_json(Some(950_000.0));
        assert_eq!(json["goals"]["synack_over_kernel"]["met"], json!(true));
        assert_eq!(json["goals"]["share_of_ceiling"]["met_c"], json!(true));
        assert_eq!(json["pairings"][3]["median_connections_per_s"], Value::Null);
    }
}
