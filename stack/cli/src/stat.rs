//! `synack stat`: like `ss` for a running synack process. Every `serve`, `connect` and `load`
//! listens on a Unix socket in synack's runtime directory (`/run/synack/synack-<pid>.sock`,
//! mode 0600); `synack stat` connects, sends one request line and prints the answer:
//! a summary per queue, and a table of the connections (state, 4-tuple, queues, RTT, RTO,
//! cwnd, retransmits), filtered by state or port, as text or as JSON (`--json`).
//!
//! Request: `stat [json] [summary] [state=<STATE>] [port=<PORT>]`; the process renders the
//! answer, so the client needs no parser.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use synack::runtime::{ConnInfo, StatsSource, WorkerStats};

/// How long a worker may take to hand over its table (it answers within about 100 ms).
const TABLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The runtime directory: where the per-boot key lives.
pub fn runtime_dir() -> PathBuf {
    Path::new(synack::runtime::ISN_KEY_PATH).parent().map(Path::to_path_buf).unwrap_or_else(|| "/run/synack".into())
}

fn socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("synack-{pid}.sock"))
}

/// What the process is, for the summary.
pub struct Identity {
    pub command: &'static str,
    pub iface: String,
    pub ip: std::net::Ipv4Addr,
}

/// The listening socket; removed when dropped.
pub struct StatSocket {
    path: PathBuf,
}

impl Drop for StatSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens in the runtime directory and answers from a thread of its own. `None` (logged) when
/// the directory is not writable: the command runs on without `synack stat`.
pub fn listen(source: StatsSource, identity: Identity) -> Option<StatSocket> {
    let dir = runtime_dir();
    let path = socket_path(&dir, std::process::id());
    let bound = make_private_dir(&dir).and_then(|()| {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    });
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("synack stat will not reach this process: cannot listen on {}: {e}", path.display());
            return None;
        }
    };
    let started = Instant::now();
    let spawned = std::thread::Builder::new().name("synack-stat".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &source, &identity, started);
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the synack stat thread: {e}");
        return None;
    }
    Some(StatSocket { path })
}

/// Makes the runtime directory if it is missing, mode 0700 whatever the umask: it also holds
/// the ISN key, whose check refuses a directory others can read (a stat socket made first must
/// not leave it 0755). An existing directory is left as it is.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// A parsed request.
#[derive(Debug, Default, PartialEq)]
struct Request {
    json: bool,
    summary_only: bool,
    state: Option<String>,
    port: Option<u16>,
}

fn parse_request(line: &str) -> Request {
    let mut request = Request::default();
    for word in line.split_whitespace() {
        match word.split_once('=') {
            Some(("state", s)) => request.state = Some(normalize_state(s)),
            Some(("port", p)) => request.port = p.parse().ok(),
            _ if word == "json" => request.json = true,
            _ if word == "summary" => request.summary_only = true,
            _ => {}
        }
    }
    request
}

/// `established`, `syn_received`, `SYN-RECEIVED` all name `SYN-RECEIVED`'s form.
fn normalize_state(s: &str) -> String {
    s.to_ascii_uppercase().replace('_', "-")
}

fn answer(stream: UnixStream, source: &StatsSource, identity: &Identity, started: Instant) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let request = parse_request(&line);
    let workers = source.workers();
    let connections: Vec<ConnInfo> = if request.summary_only {
        Vec::new()
    } else {
        source
            .connections(TABLE_TIMEOUT)
            .into_iter()
            .filter(|c| request.state.as_ref().is_none_or(|s| c.state.to_string() == *s))
            .filter(|c| request.port.is_none_or(|p| c.local.port() == p || c.remote.port() == p))
            .collect()
    };
    let uptime = started.elapsed().as_secs_f64();
    let text = if request.json {
        render_json(identity, uptime, &workers, &connections, request.summary_only)
    } else {
        render_text(identity, uptime, &workers, &connections, request.summary_only)
    };
    (&stream).write_all(text.as_bytes())
}

fn sum(workers: &[WorkerStats], f: impl Fn(&WorkerStats) -> u64) -> u64 {
    workers.iter().map(f).sum()
}

fn drops(w: &WorkerStats) -> u64 {
    w.counters.iter().filter(|(n, _)| n.starts_with("drop_")).map(|(_, v)| v).sum()
}

type Column = (&'static str, fn(&WorkerStats) -> u64);

const SUMMARY: [Column; 9] = [
    ("connections", |w| w.connections as u64),
    ("time_wait", |w| w.time_wait as u64),
    ("accepted", |w| w.counters.accepted),
    ("connected", |w| w.counters.connected),
    ("rx_frames", |w| w.counters.rx_frames),
    ("tx_frames", |w| w.socket.tx_frames),
    ("drops", drops),
    ("retransmits", |w| w.counters.tcp_retransmits),
    ("syn_cookies", |w| w.counters.syn_cookies_sent),
];

fn render_text(id: &Identity, uptime: f64, workers: &[WorkerStats], conns: &[ConnInfo], summary_only: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "synack pid {}: {} on {} {} ({} queue(s)), up {uptime:.1} s",
        std::process::id(),
        id.command,
        id.iface,
        id.ip,
        workers.len()
    );
    let _ = write!(out, "{:<6}", "queue");
    for (name, _) in SUMMARY {
        let _ = write!(out, " {name:>12}");
    }
    out.push('\n');
    for w in workers {
        let _ = write!(out, "{:<6}", w.queue);
        for (_, f) in SUMMARY {
            let _ = write!(out, " {:>12}", f(w));
        }
        out.push('\n');
    }
    if workers.len() > 1 {
        let _ = write!(out, "{:<6}", "all");
        for (_, f) in SUMMARY {
            let _ = write!(out, " {:>12}", sum(workers, f));
        }
        out.push('\n');
    }
    if summary_only {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<5} {:<12} {:>8} {:>8} {:<21} {:<21} {:>9} {:>8} {:>8} {:>7}",
        "Queue", "State", "Recv-Q", "Send-Q", "Local", "Peer", "RTT(ms)", "RTO(ms)", "Cwnd", "Retrans"
    );
    for c in conns {
        let rtt = c.srtt.map_or("-".to_string(), |d| format!("{:.3}", d.as_secs_f64() * 1e3));
        let _ = writeln!(
            out,
            "{:<5} {:<12} {:>8} {:>8} {:<21} {:<21} {:>9} {:>8} {:>8} {:>7}",
            c.queue,
            c.state.to_string(),
            c.recv_queue,
            c.send_queue,
            c.local.to_string(),
            c.remote.to_string(),
            rtt,
            c.rto.as_millis(),
            c.cwnd,
            c.retransmits
        );
    }
    let _ = writeln!(out, "{} connection(s)", conns.len());
    out
}

fn render_json(id: &Identity, uptime: f64, workers: &[WorkerStats], conns: &[ConnInfo], summary_only: bool) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"pid\":{},\"command\":\"{}\",\"iface\":{},\"ip\":\"{}\",\"uptime_s\":{uptime:.3},\"queues\":[",
        std::process::id(),
        id.command,
        json_string(&id.iface),
        id.ip
    );
    for (i, w) in workers.iter().enumerate() {
        let _ = write!(out, "{}{{\"queue\":{}", if i > 0 { "," } else { "" }, w.queue);
        for (name, f) in SUMMARY {
            let _ = write!(out, ",\"{name}\":{}", f(w));
        }
        out.push('}');
    }
    out.push(']');
    if !summary_only {
        out.push_str(",\"connections\":[");
        for (i, c) in conns.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"queue\":{},\"state\":\"{}\",\"local\":\"{}\",\"remote\":\"{}\",\"recv_q\":{},\"send_q\":{},\
                 \"srtt_us\":{},\"rto_ms\":{},\"cwnd\":{},\"peer_window\":{},\"retransmits\":{}}}",
                if i > 0 { "," } else { "" },
                c.queue,
                c.state,
                c.local,
                c.remote,
                c.recv_queue,
                c.send_queue,
                c.srtt.map_or("null".to_string(), |d| d.as_micros().to_string()),
                c.rto.as_millis(),
                c.cwnd,
                c.peer_window,
                c.retransmits
            );
        }
        out.push(']');
    }
    out.push_str("}\n");
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `synack stat`'s options.
#[derive(clap::Args, Debug)]
pub struct StatArgs {
    /// The synack process to ask (its pid); needed when several run.
    #[arg(long)]
    pid: Option<u32>,
    /// JSON instead of text (one object per process).
    #[arg(long)]
    json: bool,
    /// Only the summary per queue, not the connections.
    #[arg(long)]
    summary: bool,
    /// Only connections in this state (e.g. established, syn-received, fin-wait-1).
    #[arg(long)]
    state: Option<String>,
    /// Only connections with this local or remote port.
    #[arg(long)]
    port: Option<u16>,
}

/// The running synack processes that listen for `synack stat`: (pid, socket).
fn processes(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid = name.strip_prefix("synack-")?.strip_suffix(".sock")?.parse().ok()?;
            // A socket left by a killed process: its pid is gone.
            Path::new(&format!("/proc/{pid}")).exists().then(|| (pid, e.path()))
        })
        .collect();
    found.sort();
    found
}

pub fn run(args: StatArgs) -> anyhow::Result<()> {
    let dir = runtime_dir();
    let targets = match args.pid {
        Some(pid) => {
            let path = socket_path(&dir, pid);
            if !path.exists() {
                bail!(
                    "no synack process {pid} listens at {}: check the pid (`pgrep -a synack`), and run synack stat as \
                     the user synack runs as, or as root",
                    path.display()
                );
            }
            vec![(pid, path)]
        }
        None => processes(&dir),
    };
    if targets.is_empty() {
        bail!(
            "no running synack process found in {}: start `synack serve` (or connect, load) first, or run synack stat \
             as the user it runs as, or as root",
            dir.display()
        );
    }
    let mut request = String::from("stat");
    if args.json {
        request.push_str(" json");
    }
    if args.summary {
        request.push_str(" summary");
    }
    if let Some(state) = &args.state {
        let _ = write!(request, " state={}", normalize_state(state));
    }
    if let Some(port) = args.port {
        let _ = write!(request, " port={port}");
    }
    request.push('\n');
    for (i, (pid, path)) in targets.iter().enumerate() {
        let mut stream = UnixStream::connect(path).with_context(|| {
            format!("cannot reach synack process {pid} at {}: run as its user or as root", path.display())
        })?;
        stream.set_read_timeout(Some(TABLE_TIMEOUT * 3))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).with_context(|| format!("no answer from synack process {pid}"))?;
        if i > 0 && !args.json {
            println!();
        }
        print!("{answer}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_directory_is_made_private() {
        let base = std::env::temp_dir().join(format!("synack-stat-dir-{}", std::process::id()));
        let dir = base.join("run").join("synack");
        make_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        let _ = std::fs::remove_dir_all(&base);
        // The ISN key's check refuses anything but 0700 (the default umask would give 0755).
        assert_eq!(mode, 0o700, "mode {mode:o}");
    }

    #[test]
    fn requests_parse() {
        let r = parse_request("stat json state=established port=80\n");
        assert_eq!(r, Request { json: true, summary_only: false, state: Some("ESTABLISHED".into()), port: Some(80) });
        assert!(parse_request("stat summary").summary_only);
        assert_eq!(normalize_state("syn_received"), "SYN-RECEIVED");
    }

    #[test]
    fn text_and_json_show_every_connection() {
        let id = Identity { command: "serve", iface: "eth0".into(), ip: "198.18.0.1".parse().unwrap() };
        let mut w = WorkerStats { queue: 0, connections: 1, ..WorkerStats::default() };
        w.counters.accepted = 5;
        let c = ConnInfo {
            queue: 0,
            state: synack::tcp::State::Established,
            local: "198.18.0.1:80".parse().unwrap(),
            remote: "198.18.0.2:40000".parse().unwrap(),
            send_queue: 3,
            recv_queue: 4,
            srtt: Some(Duration::from_micros(250)),
            rto: Duration::from_millis(200),
            cwnd: 14600,
            peer_window: 65535,
            retransmits: 2,
        };
        let text = render_text(&id, 1.0, std::slice::from_ref(&w), std::slice::from_ref(&c), false);
        assert!(text.contains("ESTABLISHED"), "{text}");
        assert!(text.contains("198.18.0.2:40000") && text.contains("0.250") && text.contains("1 connection(s)"));
        let json = render_json(&id, 1.0, &[w], &[c], false);
        assert!(json.contains("\"state\":\"ESTABLISHED\"") && json.contains("\"srtt_us\":250"), "{json}");
        assert!(json.contains("\"accepted\":5") && json.ends_with("]}\n"));
    }
}
