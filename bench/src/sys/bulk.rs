//! The `bulk` case: one TCP connection moving data as fast as it goes, in Gbit/s, with iperf3's
//! client and server and synack's (`synack serve --app iperf3`, `synack iperf3`), TX checksum
//! offload off on both ends (so the kernel segments in software: the per-packet view).
//!
//! Pairings (client -> server), each one-way (the client sends) and reverse (`-R`):
//! kernel -> kernel (the baseline), kernel -> synack, synack -> kernel, synack -> synack, with
//! one connection, and with 8 (`-P 8`) for all but synack -> kernel. Each run measures every
//! pairing once, in turn, so that all see the same machine; medians.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cleanup;
use super::net::TestLink;
use super::procs::{self, Running};
use super::report::{format_figure, median};

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

/// What the case gives the main table and the JSON.
pub struct Bulk {
    /// (label, synack's figure, the kernel's figure), Gbit/s.
    pub rows: Vec<(String, Option<f64>, Option<f64>)>,
    pub json: Value,
}

/// Connections of the many-connection transfers.
const MANY: u64 = 8;

fn pairing_key(client: Stack, server: Stack, reverse: bool, parallel: u64) -> String {
    let streams = if parallel > 1 { format!("_p{parallel}") } else { String::new() };
    format!("{}_to_{}{}{streams}", client.key(), server.key(), if reverse { "_reverse" } else { "" })
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
        "== bulk: one connection, iperf3 -t {seconds}, TX checksum offload off on both ends (Gbit/s, receiver's count)"
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
            let transfers = [(false, 1), (true, 1), (false, MANY), (true, MANY)];
            for (reverse, parallel) in transfers.into_iter().filter(|&(_, p)| p == 1 || many) {
                let key = pairing_key(client, server, reverse, parallel);
                let outcome = match server_proc {
                    Some(_) => transfer(link, synack_bin, client_cpu, (client, server), reverse, parallel, seconds),
                    None => Err(anyhow::anyhow!("no server")),
                };
                let at = match figures.iter().position(|(k, _, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        figures.push((key.clone(), Vec::new(), Vec::new()));
                        figures.len() - 1
                    }
                };
                match outcome {
                    Ok((gbit, raw)) => {
                        println!("  run {}/{runs} {key}: {} Gbit/s", run_index + 1, format_figure(gbit));
                        figures[at].1.push(gbit);
                        figures[at].2.push(raw);
                    }
                    Err(e) if e.is::<cleanup::Interrupted>() => return Err(e),
                    Err(e) => {
                        println!("  run {}/{runs} {key}: FAILED: {e:#}", run_index + 1);
                        figures[at].2.push(json!({ "error": format!("{e:#}") }));
                    }
                }
            }
            if let Some(mut s) = server_proc.take() {
                let alive = s.ensure_running();
                let output = s.stop();
                if let Err(e) = alive {
                    println!("  {} server died: {e:#}", server.key());
                } else if server == Stack::Synack {
                    // Its counters, printed on SIGTERM, with the pairing's last record.
                    let key = pairing_key(client, server, true, 1);
                    if let Some(last) = figures.iter_mut().find(|f| f.0 == key).and_then(|f| f.2.last_mut()) {
                        last["server_output"] = json!(output);
                    }
                }
            }
            // Let libxdp take its program off the interface before the next bind.
            cleanup::sleep(Duration::from_millis(200))?;
        }
    }
    let medians: Vec<(String, Option<f64>)> = figures.iter().map(|(k, v, _)| (k.clone(), median(v))).collect();
    let get = |key: &str| medians.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v);
    let mut rows = Vec::new();
    for (parallel, reverse, direction) in [
        (1, false, "client->server"),
        (1, true, "server->client (-R)"),
        (MANY, false, "8 conns client->server"),
        (MANY, true, "8 conns server->client (-R)"),
    ] {
        let kernel = get(&pairing_key(Stack::Kernel, Stack::Kernel, reverse, parallel));
        for (client, server, who) in [
            (Stack::Kernel, Stack::Synack, "kernel iperf3 -c -> synack serve"),
            (Stack::Synack, Stack::Kernel, "synack iperf3 -> kernel iperf3 -s"),
            (Stack::Synack, Stack::Synack, "synack <-> synack"),
        ] {
            if parallel > 1 && (client, server) == (Stack::Synack, Stack::Kernel) {
                continue;
            }
            rows.push((
                format!("{direction} Gbit/s, {who}"),
                get(&pairing_key(client, server, reverse, parallel)),
                kernel,
            ));
        }
    }
    let json = json!({
        "what": "one TCP connection (and 8: -P 8, keys ending _p8), iperf3 -t; kernel = iperf3 client and server (3.12); synack = synack serve --app iperf3 --poll busy / synack iperf3 --poll busy; TX checksum offload off on both veth ends; Gbit/s of the receiver's count",
        "seconds": seconds,
        "median_gbit_s": medians.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "runs": figures.iter().map(|(k, _, raw)| (k.clone(), json!(raw))).collect::<serde_json::Map<_, _>>(),
    });
    Ok(Bulk { rows, json })
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
    reverse: bool,
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
            if reverse {
                command.arg("-R");
            }
            let output = Running::spawn("iperf3 -c", &mut command)?.wait(limit)?;
            let v: Value =
                serde_json::from_str(&output).with_context(|| format!("iperf3 printed no JSON: {output}"))?;
            if let Some(e) = v.get("error") {
                bail!("iperf3: {e}");
            }
            let gbit = v["end"]["sum_received"]["bits_per_second"].as_f64().context("no end.sum_received")? / 1e9;
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
            ]);
            if reverse {
                command.arg("-R");
            }
            let output = Running::spawn("synack iperf3", &mut command)?.wait(limit)?;
            let line =
                output.lines().find(|l| l.contains("iperf3 client:")).context("synack iperf3 printed no result")?;
            let gbit = client_line_gbit(line, reverse).with_context(|| format!("unreadable: {line}"))?;
            Ok((gbit, json!({ "gbit_s": gbit, "line": line })))
        }
    }
}

/// The receiver's rate from `synack iperf3`'s line: `... S s: sent X bytes (..) received Y
/// bytes (..); server received A sent B bytes` (the server received A; the client Y).
fn client_line_gbit(line: &str, reverse: bool) -> Option<f64> {
    let words: Vec<&str> = line.split("iperf3 client: ").nth(1)?.split_whitespace().collect();
    let seconds: f64 = words.get(words.iter().position(|w| *w == "s:")? - 1)?.parse().ok()?;
    let received = |nth: usize| -> Option<u64> {
        let at = words.iter().enumerate().filter(|(_, w)| **w == "received").nth(nth)?.0;
        words.get(at + 1)?.parse().ok()
    };
    let bytes = if reverse { received(0)? } else { received(1)? };
    (seconds > 0.0).then(|| bytes as f64 * 8.0 / seconds / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_line_gives_the_receivers_rate() {
        let line = "iperf3 client: forward 1 stream(s) 2.000 s: sent 500000000 bytes (2.000 Gbit/s) received 0 bytes \
                    (0.000 Gbit/s); server received 400000000 sent 0 bytes";
        assert_eq!(client_line_gbit(line, false), Some(1.6));
        let line = "iperf3 client: reverse 1 stream(s) 2.000 s: sent 0 bytes (0.000 Gbit/s) received 250000000 bytes \
                    (1.000 Gbit/s); server received 0 sent 260000000 bytes";
        assert_eq!(client_line_gbit(line, true), Some(1.0));
        assert_eq!(client_line_gbit("nothing", true), None);
    }
}
