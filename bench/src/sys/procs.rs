//! The programs a run starts: servers (synack, nginx, `sockperf server`) in the server
//! namespace and load generators (wrk, sockperf) in the client namespace, each pinned with
//! `taskset`, each in a [`ChildGuard`] so that it is stopped whatever happens.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::cleanup::{self, ChildGuard, WaitError};
use super::net::Netns;

/// Everything a child printed, stdout and stderr interleaved by line.
#[derive(Debug, Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    /// The text so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn push_line(&self, line: &str) {
        let mut text = self.0.lock().unwrap_or_else(|p| p.into_inner());
        text.push_str(line);
        text.push('\n');
    }
}

/// A running child with its output collected by reader threads (which end when the child's
/// pipes close).
#[derive(Debug)]
pub struct Running {
    guard: ChildGuard,
    output: Output,
    readers: Vec<JoinHandle<()>>,
    /// What it is, for messages.
    pub label: String,
}

impl Running {
    /// Spawns `command` with its stdout and stderr collected.
    pub fn spawn(label: impl Into<String>, command: &mut Command) -> Result<Running> {
        let label = label.into();
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(command).with_context(|| format!("cannot start {label}"))?;
        let output = Output::default();
        let mut readers = Vec::new();
        let child = guard.child_mut();
        let pipes: Vec<Box<dyn Read + Send>> = [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for pipe in pipes {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    match line {
                        Ok(line) => output.push_line(&line),
                        Err(_) => break,
                    }
                }
            }));
        }
        Ok(Running { guard, output, readers, label })
    }

    /// The process id (`ip netns exec` and `taskset` exec the program: it is the program's).
    pub fn pid(&mut self) -> u32 {
        self.guard.child_mut().id()
    }

    /// The output so far.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Waits until the output contains `marker`; fails if the child exits first, the
    /// timeout passes, or the run is interrupted.
    pub fn wait_for_output(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output.text().contains(marker) {
                return Ok(());
            }
            if let Some(status) = self.guard.try_wait()? {
                bail!("{} exited ({status}) before printing {marker:?}:\n{}", self.label, self.output());
            }
            cleanup::check_interrupted()?;
            if Instant::now() >= deadline {
                bail!("{} did not print {marker:?} within {timeout:?}:\n{}", self.label, self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails when the child has already exited (a server that died).
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.guard.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.label, self.output());
        }
        Ok(())
    }

    /// Waits for the child to exit by itself (a load generator), at most `timeout`, then
    /// returns its output. A child still running then is stopped and that is an error.
    pub fn wait(mut self, timeout: Duration) -> Result<String> {
        let status = match self.guard.wait_timeout(timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                self.guard.stop();
                let output = self.finish();
                bail!("{} did not finish within {timeout:?}:\n{output}", self.label);
            }
            Err(WaitError::Interrupted) => return Err(cleanup::Interrupted.into()),
            Err(WaitError::Io(e)) => return Err(e.into()),
        };
        let label = self.label.clone();
        let output = self.finish();
        if !status.success() {
            bail!("{label} failed ({status}):\n{output}");
        }
        Ok(output)
    }

    /// Stops the child (SIGTERM, then SIGKILL) and returns everything it printed.
    pub fn stop(mut self) -> String {
        self.guard.stop();
        self.finish()
    }

    fn finish(&mut self) -> String {
        // The pipes closed with the child; the readers end at their EOF. A grandchild that
        // kept a pipe open was killed with the process group.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output.text()
    }
}

/// Tries to connect to `addr` from inside `netns` until it succeeds or `timeout` passes.
pub fn wait_for_listener(netns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<()> {
    netns.run_pinned(None, || -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    bail!("nothing accepts connections on {addr} after {timeout:?}: {e}")
                }
                Err(_) => {}
            }
            cleanup::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    })?
}

/// One `GET /` with `Connection: close` from inside `netns`; returns the whole response.
pub fn http_get(netns: &Netns, addr: SocketAddr) -> Result<Vec<u8>> {
    netns.run_pinned(None, || -> Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(stream, "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut response = Vec::new();
        stream.take(1 << 20).read_to_end(&mut response).with_context(|| format!("reading the response of {addr}"))?;
        Ok(response)
    })?
}

/// A directory for the run's files (nginx's configuration), removed when dropped.
#[derive(Debug)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// Creates `/tmp/sxsb<pid>`.
    pub fn create() -> Result<RunDir> {
        let path = std::env::temp_dir().join(format!("{}{}", super::net::NAME_PREFIX, std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(RunDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// nginx's configuration: one worker, no access log, one location answering `body` from
/// memory (`return 200`), so that nginx does as little as synack's http app does.
pub fn nginx_config(dir: &Path, addr: SocketAddr, body_len: usize) -> String {
    let body = "x".repeat(body_len);
    let dir = dir.display();
    format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/nginx-error.log warn;\n\
         events {{ worker_connections 4096; multi_accept on; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 keepalive_requests 100000000;\n\
         \x20 keepalive_timeout 300s;\n\
         \x20 client_body_temp_path {dir}/body;\n\
         \x20 server {{\n\
         \x20   listen {addr} backlog=4096;\n\
         \x20   location / {{ default_type text/plain; return 200 \"{body}\"; }}\n\
         \x20 }}\n\
         }}\n"
    )
}

/// Starts nginx in `netns` on `cpu` (master and its one worker) answering on `addr`.
pub fn start_nginx(netns: &Netns, cpu: usize, dir: &Path, addr: SocketAddr, body_len: usize) -> Result<Running> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir, addr, body_len))?;
    let conf = conf.to_string_lossy().into_owned();
    let error_log = dir.join("nginx-error.log").to_string_lossy().into_owned();
    let mut command = netns.command_on_cpu(cpu, "nginx");
    command.args(["-e", &error_log, "-c", &conf]);
    let mut server = Running::spawn(format!("nginx on {addr}"), &mut command)?;
    wait_for_listener(netns, addr, Duration::from_secs(10))
        .map_err(|e| anyhow!("{e}; nginx said:\n{}", server.output()))?;
    server.ensure_running()?;
    Ok(server)
}

/// Starts `sockperf server --tcp` in `netns` on `cpu`, listening on `addr`.
pub fn start_sockperf_server(netns: &Netns, cpu: usize, addr: SocketAddr) -> Result<Running> {
    let mut command = netns.command_on_cpu(cpu, "sockperf");
    command.args(["server", "--tcp", "-i", &addr.ip().to_string(), "-p", &addr.port().to_string()]);
    let mut server = Running::spawn(format!("sockperf server on {addr}"), &mut command)?;
    wait_for_listener(netns, addr, Duration::from_secs(10))
        .map_err(|e| anyhow!("{e}; sockperf said:\n{}", server.output()))?;
    server.ensure_running()?;
    Ok(server)
}

/// Starts `synack serve` in `netns` on `cpu` and waits for its `ready` line.
pub fn start_synack(
    netns: &Netns,
    cpu: usize,
    binary: &Path,
    ifname: &str,
    addr: SocketAddr,
    app: &str,
    extra: &[&str],
) -> Result<Running> {
    let mut command = netns.command_on_cpu(cpu, &binary.to_string_lossy());
    command.args([
        "serve",
        "--iface",
        ifname,
        "--ip",
        &addr.ip().to_string(),
        "--port",
        &addr.port().to_string(),
        "--app",
        app,
        "--cores",
        &cpu.to_string(),
        "--poll",
        "busy",
        // One worker on a veth with a queue per CPU, as the figures were measured: the frames
        // of the other queues are not served (the runtime refuses this unless asked).
        "--allow-partial-queues",
        // Its stats and counters as `synack_report` lines (`load.rs`, `packets.rs`).
        "--json",
    ]);
    command.args(extra);
    let mut server = Running::spawn(format!("synack serve --app {app} on {addr}"), &mut command)?;
    server.wait_for_output("ready", Duration::from_secs(15))?;
    Ok(server)
}

/// What a `synack load` run is asked to do: a closed loop of `concurrency` connections to
/// `target` for `duration`, each `GET /` with `Connection: close` (`--close-first server`:
/// the server closes first, as with wrk's `-H 'Connection: close'`), busy polling on `cpu`.
#[derive(Debug, Clone)]
pub struct LoadRun<'a> {
    /// synack's binary.
    pub binary: &'a Path,
    /// The client's interface.
    pub ifname: &'a str,
    /// The client's (dedicated) address.
    pub ip: std::net::Ipv4Addr,
    /// The server.
    pub target: SocketAddr,
    /// Connections in flight.
    pub concurrency: u64,
    /// Seconds of load.
    pub duration_s: u64,
    /// Requests back to back on each connection (`--keepalive`) instead of one per connection.
    pub keepalive: bool,
}

impl LoadRun<'_> {
    /// The command, in `netns`, pinned to `cpu` (taskset and `--cores`).
    pub fn command(&self, netns: &Netns, cpu: usize) -> Command {
        let mut command = netns.command_on_cpu(cpu, &self.binary.to_string_lossy());
        command.args([
            "load",
            "--allow-partial-queues",
            "--iface",
            self.ifname,
            "--ip",
            &self.ip.to_string(),
            "--target",
            &self.target.to_string(),
            "--concurrency",
            &self.concurrency.to_string(),
            "--duration",
            &self.duration_s.to_string(),
            "--cores",
            &cpu.to_string(),
            "--poll",
            "busy",
            "--json",
        ]);
        if self.keepalive {
            command.arg("--keepalive");
        } else {
            command.args(["--close-first", "server"]);
        }
        command
    }

    /// How the run is described in the output and the JSON.
    pub fn label(&self) -> String {
        let mode = if self.keepalive { "--keepalive" } else { "--close-first server" };
        format!("synack load --concurrency {} {mode} --poll busy", self.concurrency)
    }
}
