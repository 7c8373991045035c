//! The `bulk` case: one TCP connection moving data as fast as it goes, in Gbit/s, with iperf3's
//! client and server and synack's (`synack serve --app iperf3`, `synack iperf3`), TX checksum
//! offload off on both ends (so the kernel segments in software: the per-packet view).
//!
//! Pairings (client -> server), each one-way (the client sends), reverse (`-R`) and, with one
//! connection, both ways at once (`--bidir`): kernel -> kernel (the baseline), kernel -> synack,
//! synack -> kernel, synack -> synack, with one connection, and with 8 (`-P 8`) for all but
//! synack -> kernel. Kernel -> kernel runs a second time with the kernel's default offloads (TX
//! checksum offload and so TSO/GSO on: the figure users know). Each run measures every pairing
//! once, in turn, so that all see the same machine; medians. Besides Gbit/s, each transfer
//! records the packets/s the server's veth end moved (both directions) and the machine's CPU
//! time (both cores, from `/proc/stat`) per GB delivered.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cleanup;
use super::net::TestLink;
use super::procs::{self, Running};
use super::report::{format_figure, median};
use crate::curve::Bars;

/// Ports of the two servers.
const KERNEL_PORT: u16 = 5201;
const SYNACK_PORT: u16 = 5202;

/// Who runs a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Kernel,
    Synack,
}

impl Stack {
    fn key(self) -> &'static str {
        match self {
            Stack::Kernel => "kernel",
            Stack::Synack => "synack",
        }
    }
}

/// The pairings, client then server.
const PAIRINGS: [(Stack, Stack); 4] = [
    (Stack::Kernel, Stack::Kernel),
    (Stack::Kernel, Stack::Synack),
    (Stack::Synack, Stack::Kernel),
    (Stack::Synack, Stack::Synack),
];

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The client sends.
    Forward,
    /// The server sends (`-R`).
    Reverse,
    /// Both at once (`--bidir`); the figure is the sum of both receivers.
    Bidir,
}

impl Direction {
    fn suffix(self) -> &'static str {
        match self {
            Direction::Forward => "",
            Direction::Reverse => "_reverse",
            Direction::Bidir => "_bidir",
        }
    }

    fn flag(self) -> Option<&'static str> {
        match self {
            Direction::Forward => None,
            Direction::Reverse => Some("-R"),
            Direction::Bidir => Some("--bidir"),
        }
    }
}

/// What the case gives the main table and the JSON.
pub struct Bulk {
    /// (label, synack's figure, the kernel's figure), Gbit/s.
    pub rows: Vec<(String, Option<f64>, Option<f64>)>,
    /// Every pairing's median for each transfer, to draw.
    pub bars: Bars,
    pub json: Value,
}

/// Connections of the many-connection transfers.
const MANY: u64 = 8;

fn pairing_key(client: Stack, server: Stack, direction: Direction, parallel: u64) -> String {
    let streams = if parallel > 1 { format!("_p{parallel}") } else { String::new() };
    format!("{}_to_{}{}{streams}", client.key(), server.key(), direction.suffix())
}

/// The kernel -> kernel key with the kernel's default offloads.
fn offload_key(direction: Direction) -> String {
    format!("kernel_to_kernel_offload{}", direction.suffix())
}

/// What the machine did around one transfer: CPU time of both cores and the server end's
/// packets, read before and after.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Busy jiffies of all CPUs (`/proc/stat`: everything but idle and iowait).
    busy_jiffies: u64,
    /// Packets the server's veth end received plus sent.
    packets: u64,
    at: std::time::Instant,
}

impl Sample {
    fn take(link: &TestLink) -> Result<Sample> {
        let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        let busy_jiffies = busy_jiffies(&stat).context("no cpu line in /proc/stat")?;
        let text = link.server.netns.ip(&["-j", "-s", "link", "show", "dev", &link.server.ifname])?;
        let packets = link_packets(&text).with_context(|| format!("no packet counters in `ip -j -s link`: {text}"))?;
        Ok(Sample { busy_jiffies, packets, at: std::time::Instant::now() })
    }

    /// Packets/s and CPU seconds per GB (of `gbit` Gbit/s delivered) since `before`.
    fn since(&self, before: &Sample, gbit: f64) -> Value {
        let seconds = self.at.duration_since(before.at).as_secs_f64();
        // USER_HZ is 100 on every Linux this runs on.
        let cpu_s = self.busy_jiffies.saturating_sub(before.busy_jiffies) as f64 / 100.0;
        let gigabytes = gbit * seconds / 8.0;
        let pps = self.packets.saturating_sub(before.packets) as f64 / seconds.max(f64::MIN_POSITIVE);
        json!({
            "packets_per_s": pps,
            "cpu_s": cpu_s,
            "cpu_s_per_gb": if gigabytes > 0.0 { json!(cpu_s / gigabytes) } else { Value::Null },
        })
    }
}

/// Busy jiffies from `/proc/stat`'s first line: user nice system idle iowait irq softirq steal.
fn busy_jiffies(stat: &str) -> Option<u64> {
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    Some(total - fields.get(3)? - fields.get(4).copied().unwrap_or(0))
}

/// rx + tx packets from `ip -j -s link show dev X`.
fn link_packets(json_text: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(json_text).ok()?;
    let stats = &v.get(0)?["stats64"];
    Some(stats["rx"]["packets"].as_u64()? + stats["tx"]["packets"].as_u64()?)
}

/// Runs the case: `runs` rounds of every pairing, `seconds` per transfer.
pub fn run(
    link: &TestLink,
    synack_bin: Option<&Path>,
    server_cpu: usize,
    client_cpu: usize,
    runs: usize,
    seconds: u64,
) -> Result<Bulk> {
    println!(
        "== bulk: iperf3 -t {seconds}, TX checksum offload off on both ends unless `offload` (Gbit/s of the receivers, \
         packets/s of the server's veth end, CPU s per GB of both cores)"
    );
    let mut figures: Vec<(String, Vec<f64>, Vec<Value>)> = Vec::new();
    for run_index in 0..runs {
        for (client, server) in PAIRINGS {
            if synack_bin.is_none() && (client == Stack::Synack || server == Stack::Synack) {
                continue;
            }
            cleanup::check_interrupted()?;
            let started = start_server(link, synack_bin, server_cpu, server);
            let mut server_proc = match started {
                Ok(s) => Some(s),
                Err(e) if e.is::<cleanup::Interrupted>() => return Err(e),
                Err(e) => {
                    println!("  {} server: FAILED: {e:#}", server.key());
                    None
                }
            };
            let many = (client, server) != (Stack::Synack, Stack::Kernel);
            let baseline = (client, server) == (Stack::Kernel, Stack::Kernel);
            let (fwd, rev, bidir) = (Direction::Forward, Direction::Reverse, Direction::Bidir);
            let transfers = [
                (fwd, 1, false),
                (rev, 1, false),
                (bidir, 1, false),
                (fwd, MANY, false),
                (rev, MANY, false),
                (fwd, 1, true),
                (rev, 1, true),
                (bidir, 1, true),
            ];
            for (direction, parallel, offload) in
                transfers.into_iter().filter(|&(_, p, o)| (p == 1 || many) && (!o || baseline))
            {
                let key =
                    if offload { offload_key(direction) } else { pairing_key(client, server, direction, parallel) };
                let outcome = match server_proc {
                    Some(_) => with_offloads(link, offload, || {
                        let before = Sample::take(link)?;
                        let (gbit, mut raw) =
                            transfer(link, synack_bin, client_cpu, (client, server), direction, parallel, seconds)?;
                        raw["machine"] = Sample::take(link)?.since(&before, gbit);
                        Ok((gbit, raw))
                    }),
                    None => Err(anyhow::anyhow!("no server")),
                };
                record_run(&mut figures, &key, (run_index, runs), outcome)?;
            }
            if let Some(mut s) = server_proc.take() {
                let alive = s.ensure_running();
                let output = s.stop();
                if let Err(e) = alive {
                    println!("  {} server died: {e:#}", server.key());
                } else if server == Stack::Synack {
                    // Its counters, printed on SIGTERM, with the pairing's last record.
                    let key = pairing_key(client, server, Direction::Reverse, 1);
                    if let Some(last) = figures.iter_mut().find(|f| f.0 == key).and_then(|f| f.2.last_mut()) {
                        last["server_output"] = json!(output);
                    }
                }
            }
            // Let libxdp take its program off the interface before the next bind.
            cleanup::sleep(Duration::from_millis(200))?;
        }
    }
    if synack_bin.is_some() {
        match jumbo(link, synack_bin, (server_cpu, client_cpu), runs, seconds, &mut figures) {
            Err(e) if e.is::<cleanup::Interrupted>() => return Err(e),
            Err(e) => println!("  MTU {JUMBO_MTU}: FAILED: {e:#}"),
            Ok(()) => {}
        }
    }
    let medians: Vec<(String, Option<f64>)> = figures.iter().map(|(k, v, _)| (k.clone(), median(v))).collect();
    let get = |key: &str| medians.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v);
    let mut rows = Vec::new();
    let mut bars = Bars::new(
        &format!("bulk over veth, iperf3 -t {seconds}, medians of {runs}"),
        "Gbit/s (receivers)",
        &[
            "kernel iperf3 -c -> synack",
            "synack iperf3 -> kernel -s",
            "synack <-> synack",
            "kernel <-> kernel, TX offload off",
            "kernel <-> kernel, default offloads",
        ],
    );
    for (parallel, direction, label) in [
        (1, Direction::Forward, "client->server"),
        (1, Direction::Reverse, "server->client (-R)"),
        (1, Direction::Bidir, "both ways (--bidir)"),
        (MANY, Direction::Forward, "8 conns client->server"),
        (MANY, Direction::Reverse, "8 conns server->client (-R)"),
    ] {
        let kernel = get(&pairing_key(Stack::Kernel, Stack::Kernel, direction, parallel));
        bars.groups.push((
            label.to_owned(),
            vec![
                get(&pairing_key(Stack::Kernel, Stack::Synack, direction, parallel)),
                get(&pairing_key(Stack::Synack, Stack::Kernel, direction, parallel)),
                get(&pairing_key(Stack::Synack, Stack::Synack, direction, parallel)),
                kernel,
                if parallel == 1 { get(&offload_key(direction)) } else { None },
            ],
        ));
        for (client, server, who) in [
            (Stack::Kernel, Stack::Synack, "kernel iperf3 -c -> synack serve"),
            (Stack::Synack, Stack::Kernel, "synack iperf3 -> kernel iperf3 -s"),
            (Stack::Synack, Stack::Synack, "synack <-> synack"),
        ] {
            if parallel > 1 && (client, server) == (Stack::Synack, Stack::Kernel) {
                continue;
            }
            rows.push((
                format!("{label} Gbit/s, {who}"),
                get(&pairing_key(client, server, direction, parallel)),
                kernel,
            ));
        }
        if parallel == 1 {
            // synack against the figure users know: the kernel with its default offloads.
            rows.push((
                format!("{label} Gbit/s, synack <-> synack vs kernel with default offloads"),
                get(&pairing_key(Stack::Synack, Stack::Synack, direction, parallel)),
                get(&offload_key(direction)),
            ));
        }
    }
    // The jumbo-frame goal: synack <-> synack at MTU 9000 against what iperf3 users see from the
    // kernel at MTU 1500 (its default offloads).
    let jumbo_goal = get(&jumbo_key(Stack::Synack));
    rows.push((
        format!("MTU {JUMBO_MTU}: client->server Gbit/s, synack <-> synack vs kernel (MTU 1500, default offloads)"),
        jumbo_goal,
        get(&offload_key(Direction::Forward)),
    ));
    rows.push((
        format!("MTU {JUMBO_MTU}: client->server Gbit/s, kernel iperf3 -c -> synack serve"),
        get(&jumbo_key(Stack::Kernel)),
        get(&offload_key(Direction::Forward)),
    ));
    bars.groups.push((
        format!("MTU {JUMBO_MTU} client->server"),
        vec![get(&jumbo_key(Stack::Kernel)), None, jumbo_goal, None, None],
    ));
    let json = json!({
        "what": "one TCP connection (and 8: -P 8, keys ending _p8), one-way, reverse (_reverse) and both ways (_bidir, the sum of both receivers), iperf3 -t; *_mtu9000: one way into synack with both veth ends at MTU 9000; kernel = iperf3 client and server (3.12); synack = synack serve --app iperf3 --poll busy / synack iperf3 --poll busy; TX checksum offload off on both veth ends, except kernel_to_kernel_offload* (the kernel's defaults); Gbit/s of the receivers' count; runs[].machine: packets/s of the server's veth end (rx + tx), CPU seconds of both cores and per GB delivered",
        "seconds": seconds,
        "median_gbit_s": medians.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "runs": figures.iter().map(|(k, _, raw)| (k.clone(), json!(raw))).collect::<serde_json::Map<_, _>>(),
    });
    Ok(Bulk { rows, bars, json })
}

/// Prints run `index` of `runs` of transfer `key` and files it in `figures` (key, Gbit/s of
/// each good run, every run's raw record; the key's entry made on its first run): the Gbit/s,
/// with packets/s and CPU per GB when the record has its machine sample, or why it failed. An
/// interruption is passed on.
fn record_run(
    figures: &mut Vec<(String, Vec<f64>, Vec<Value>)>,
    key: &str,
    (index, runs): (usize, usize),
    outcome: Result<(f64, Value)>,
) -> Result<()> {
    let at = match figures.iter().position(|(k, _, _)| k == key) {
        Some(at) => at,
        None => {
            figures.push((key.to_owned(), Vec::new(), Vec::new()));
            figures.len() - 1
        }
    };
    let prefix = format!("  run {}/{runs} {key}", index + 1);
    match outcome {
        Ok((gbit, raw)) => {
            let m = &raw["machine"];
            let machine = if m.is_null() {
                String::new()
            } else {
                format!(
                    ", {} kpps, {} CPU s/GB",
                    m["packets_per_s"].as_f64().map_or("-".into(), |p| format_figure(p / 1e3)),
                    m["cpu_s_per_gb"].as_f64().map_or("-".into(), format_figure),
                )
            };
            println!("{prefix}: {} Gbit/s{machine}", format_figure(gbit));
            figures[at].1.push(gbit);
            figures[at].2.push(raw);
        }
        Err(e) if e.is::<cleanup::Interrupted>() => return Err(e),
        Err(e) => {
            println!("{prefix}: FAILED: {e:#}");
            figures[at].2.push(json!({ "error": format!("{e:#}") }));
        }
    }
    Ok(())
}

/// The jumbo-frame MTU.
const JUMBO_MTU: u32 = 9000;

/// The key of a one-way transfer to synack at [`JUMBO_MTU`] from a `client`.
fn jumbo_key(client: Stack) -> String {
    format!("{}_to_synack_mtu{JUMBO_MTU}", client.key())
}

/// One connection one way into `synack serve --app iperf3` with both veth ends at
/// [`JUMBO_MTU`] (synack's MSS follows, frames are multi-buffer chains), from `synack
/// iperf3` and from the kernel's iperf3 client, `runs` times each; MTU 1500 again after.
fn jumbo(
    link: &TestLink,
    synack_bin: Option<&Path>,
    (server_cpu, client_cpu): (usize, usize),
    runs: usize,
    seconds: u64,
    figures: &mut Vec<(String, Vec<f64>, Vec<Value>)>,
) -> Result<()> {
    with_mtu(link, JUMBO_MTU, || {
        let mut server = start_server(link, synack_bin, server_cpu, Stack::Synack)?;
        for run_index in 0..runs {
            for client in [Stack::Synack, Stack::Kernel] {
                cleanup::check_interrupted()?;
                let key = jumbo_key(client);
                let outcome =
                    transfer(link, synack_bin, client_cpu, (client, Stack::Synack), Direction::Forward, 1, seconds);
                record_run(figures, &key, (run_index, runs), outcome)?;
            }
        }
        server.ensure_running()?;
        server.stop();
        // Let libxdp take its program off the interface before the MTU goes back.
        cleanup::sleep(Duration::from_millis(200))?;
        Ok(())
    })
}

/// Runs `f` with both veth ends at `mtu`, back to 1500 after, whatever `f` returned.
fn with_mtu<T>(link: &TestLink, mtu: u32, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let set = |mtu: u32| -> Result<()> {
        for host in [&link.server, &link.client] {
            host.netns
                .exec("ip", &["link", "set", "dev", &host.ifname, "mtu", &mtu.to_string()])
                .with_context(|| format!("ip link set dev {} mtu {mtu}", host.ifname))?;
        }
        Ok(())
    };
    let outcome = set(mtu).and_then(|()| f());
    let restored = set(1500);
    let value = outcome?;
    restored?;
    Ok(value)
}

/// Runs `f` with the kernel's default TX offloads (checksum, and so TSO/GSO) on both veth ends
/// when `on`, turning them off again after, whatever `f` returned.
fn with_offloads<T>(link: &TestLink, on: bool, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !on {
        return f();
    }
    let set = |state: &str| -> Result<()> {
        for host in [&link.server, &link.client] {
            host.netns
                .exec("ethtool", &["-K", &host.ifname, "tx", state])
                .with_context(|| format!("ethtool -K {} tx {state}", host.ifname))?;
        }
        Ok(())
    };
    let outcome = set("on").and_then(|()| f());
    // Off again in any case: the synack pairings need it (partial checksums otherwise).
    let restored = set("off");
    let value = outcome?;
    restored?;
    Ok(value)
}

fn server_addr(link: &TestLink, server: Stack) -> std::net::SocketAddr {
    let port = if server == Stack::Synack { SYNACK_PORT } else { KERNEL_PORT };
    std::net::SocketAddr::from((link.server.ip, port))
}

fn start_server(link: &TestLink, synack_bin: Option<&Path>, cpu: usize, server: Stack) -> Result<Running> {
    let addr = server_addr(link, server);
    match server {
        Stack::Synack => {
            let bin = synack_bin.context("no synack binary")?;
            procs::start_synack(&link.server.netns, cpu, bin, &link.server.ifname, addr, "iperf3", &[])
        }
        Stack::Kernel => {
            let mut command = link.server.netns.command_on_cpu(cpu, "iperf3");
            command.args(["-s", "-B", &addr.ip().to_string(), "-p", &addr.port().to_string()]);
            let mut s = Running::spawn(format!("iperf3 -s on {addr}"), &mut command)?;
            procs::wait_for_listener(&link.server.netns, addr, Duration::from_secs(10))?;
            s.ensure_running()?;
            Ok(s)
        }
    }
}

/// One transfer; its Gbit/s (the receiver's bytes over the test's seconds) and raw record.
fn transfer(
    link: &TestLink,
    synack_bin: Option<&Path>,
    cpu: usize,
    (client, server): (Stack, Stack),
    direction: Direction,
    parallel: u64,
    seconds: u64,
) -> Result<(f64, Value)> {
    let addr = server_addr(link, server);
    let limit = Duration::from_secs(seconds + 30);
    let (t, p) = (seconds.to_string(), parallel.to_string());
    match client {
        Stack::Kernel => {
            let mut command = link.client.netns.command_on_cpu(cpu, "iperf3");
            command.args(["-c", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-t", &t, "-P", &p, "-J"]);
            command.args(direction.flag());
            let output = Running::spawn("iperf3 -c", &mut command)?.wait(limit)?;
            let v: Value =
                serde_json::from_str(&output).with_context(|| format!("iperf3 printed no JSON: {output}"))?;
            if let Some(e) = v.get("error") {
                bail!("iperf3: {e}");
            }
            let mut gbit = v["end"]["sum_received"]["bits_per_second"].as_f64().context("no end.sum_received")? / 1e9;
            if direction == Direction::Bidir {
                gbit += v["end"]["sum_received_bidir_reverse"]["bits_per_second"]
                    .as_f64()
                    .context("no end.sum_received_bidir_reverse")?
                    / 1e9;
            }
            Ok((gbit, json!({ "gbit_s": gbit, "end": v["end"] })))
        }
        Stack::Synack => {
            let bin = synack_bin.context("no synack binary")?;
            let mut command = link.client.netns.command_on_cpu(cpu, &bin.to_string_lossy());
            command.args([
                "iperf3",
                "--iface",
                &link.client.ifname,
                "--ip",
                &link.client.ip.to_string(),
                "-c",
                &addr.to_string(),
                "-t",
                &t,
                "-P",
                &p,
                "--cores",
                &cpu.to_string(),
                "--poll",
                "busy",
                // One worker on a veth with a queue per CPU, as `synack serve` and `synack load`
                // run in this benchmark (procs.rs): the runtime refuses this unless asked.
                "--allow-partial-queues",
            ]);
            command.args(direction.flag());
            let output = Running::spawn("synack iperf3", &mut command)?.wait(limit)?;
            let line =
                output.lines().find(|l| l.contains("iperf3 client:")).context("synack iperf3 printed no result")?;
            let gbit = client_line_gbit(line, direction).with_context(|| format!("unreadable: {line}"))?;
            Ok((gbit, json!({ "gbit_s": gbit, "line": line })))
        }
    }
}

/// The receiver's rate from `synack iperf3`'s line: `... S s: sent X bytes (..) received Y
/// bytes (..); server received A sent B bytes` (the server received A; the client Y; both ways,
/// A + Y).
fn client_line_gbit(line: &str, direction: Direction) -> Option<f64> {
    let words: Vec<&str> = line.split("iperf3 client: ").nth(1)?.split_whitespace().collect();
    let seconds: f64 = words.get(words.iter().position(|w| *w == "s:")? - 1)?.parse().ok()?;
    let received = |nth: usize| -> Option<u64> {
        let at = words.iter().enumerate().filter(|(_, w)| **w == "received").nth(nth)?.0;
        words.get(at + 1)?.parse().ok()
    };
    let bytes = match direction {
        Direction::Forward => received(1)?,
        Direction::Reverse => received(0)?,
        Direction::Bidir => received(0)? + received(1)?,
    };
    (seconds > 0.0).then(|| bytes as f64 * 8.0 / seconds / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_line_gives_the_receivers_rate() {
        let line = "iperf3 client: forward 1 stream(s) 2.000 s: sent 500000000 bytes (2.000 Gbit/s) received 0 bytes \
                    (0.000 Gbit/s); server received 400000000 sent 0 bytes";
        assert_eq!(client_line_gbit(line, Direction::Forward), Some(1.6));
        let line = "iperf3 client: reverse 1 stream(s) 2.000 s: sent 0 bytes (0.000 Gbit/s) received 250000000 bytes \
                    (1.000 Gbit/s); server received 0 sent 260000000 bytes";
        assert_eq!(client_line_gbit(line, Direction::Reverse), Some(1.0));
        let line = "iperf3 client: bidir 1 stream(s) 2.000 s: sent 250000000 bytes (1.000 Gbit/s) received 250000000 \
                    bytes (1.000 Gbit/s); server received 250000000 sent 250000000 bytes";
        assert_eq!(client_line_gbit(line, Direction::Bidir), Some(2.0));
        assert_eq!(client_line_gbit("nothing", Direction::Reverse), None);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n";
        assert_eq!(busy_jiffies(stat), Some(100 + 5 + 50 + 3 + 7));
        assert_eq!(busy_jiffies("intr 1 2 3\n"), None);
    }

    #[test]
    fn packets_are_read_from_ip_json() {
        let text =
            r#"[{"ifindex":2,"ifname":"x","stats64":{"rx":{"bytes":9,"packets":30},"tx":{"bytes":9,"packets":12}}}]"#;
        assert_eq!(link_packets(text), Some(42));
        assert_eq!(link_packets("[]"), None);
    }

    #[test]
    fn a_sample_gives_rates_per_second_and_per_gigabyte() {
        let t0 = std::time::Instant::now();
        let before = Sample { busy_jiffies: 1_000, packets: 0, at: t0 };
        let after = Sample { busy_jiffies: 1_200, packets: 500_000, at: t0 + Duration::from_secs(2) };
        // 8 Gbit/s for 2 s is 2 GB; 200 jiffies are 2 CPU seconds.
        let m = after.since(&before, 8.0);
        assert_eq!(m["packets_per_s"].as_f64(), Some(250_000.0));
        assert_eq!(m["cpu_s"].as_f64(), Some(2.0));
        assert_eq!(m["cpu_s_per_gb"].as_f64(), Some(1.0));
    }
}
