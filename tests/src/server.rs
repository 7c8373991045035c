//! The server under test: `synack serve`, or a kernel stand-in with the same behaviour.
//!
//! Every end-to-end test runs against a `Backend`. `Backend::Synack` is the real thing; the
//! `Backend::Kernel` stand-ins (python3 servers on the Linux stack, `tests/py/peer.py`) prove
//! that the harness and the test's own checks are right, independently of synack. Select the
//! stand-ins for a whole run with `SYNACK_E2E_BACKEND=kernel`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::netns::{Host, TestNet};
use crate::peer;
use crate::process::{Output, Proc};

/// How long `synack serve` (or a stand-in) may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Which stack serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The `synack` binary at this path.
    Synack(PathBuf),
    /// Kernel TCP stand-ins (python3).
    Kernel,
}

/// The command that builds the binary, for messages.
pub const BUILD_COMMAND: &str = "cargo build --release -p synack-cli --bin synack";

/// Where the `synack` binary is: `$SYNACK_BIN`, else `<workspace>/target/release/synack`.
pub fn synack_bin_path() -> PathBuf {
    match std::env::var_os("SYNACK_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/synack"),
    }
}

impl Backend {
    /// `SYNACK_E2E_BACKEND=kernel` selects the stand-ins; otherwise the synack binary, which
    /// must exist: a missing binary fails the test (it is not a reason to skip).
    #[track_caller]
    pub fn from_env() -> Backend {
        match std::env::var("SYNACK_E2E_BACKEND").as_deref() {
            Ok("kernel") => {
                println!("backend: kernel stand-ins (SYNACK_E2E_BACKEND=kernel)");
                Backend::Kernel
            }
            Ok("synack") | Ok("") | Err(_) => Backend::synack(),
            Ok(other) => panic!("SYNACK_E2E_BACKEND={other}: expected `synack` or `kernel`"),
        }
    }

    /// The synack binary; panics with how to build it if it is missing.
    #[track_caller]
    pub fn synack() -> Backend {
        Self::synack_at(synack_bin_path())
    }

    /// The synack binary at `path`; panics with how to build it if it is missing.
    #[track_caller]
    pub fn synack_at(path: PathBuf) -> Backend {
        assert!(
            path.is_file(),
            "the synack binary is missing at {}: build it first with `{BUILD_COMMAND}` \
             (scripts/test.sh does), or point SYNACK_BIN at it",
            path.display()
        );
        Backend::Synack(path.canonicalize().unwrap_or(path))
    }

    pub fn is_kernel(&self) -> bool {
        matches!(self, Backend::Kernel)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Synack(_) => "synack",
            Backend::Kernel => "kernel",
        }
    }
}

/// synack's applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    Echo,
    Http,
    Discard,
    /// iperf3's server (the kernel stand-in is Debian's `iperf3 -s`).
    Iperf3,
}

impl App {
    pub fn as_str(self) -> &'static str {
        match self {
            App::Echo => "echo",
            App::Http => "http",
            App::Discard => "discard",
            App::Iperf3 => "iperf3",
        }
    }
}

/// Whether synack's address is also the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `.1`, assigned to the kernel interface too: the kernel answers ARP, the XDP program
    /// steers only synack's ports.
    Shared,
    /// `.3`, on no kernel interface: synack answers ARP and receives all TCP to it.
    Dedicated,
}

/// What to serve, how.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub app: App,
    pub addressing: Addressing,
    pub port: u16,
    /// More `synack serve` arguments (`--queues`, `--poll`, ...); ignored by stand-ins.
    pub extra_args: Vec<String>,
}

impl ServeConfig {
    pub fn new(app: App, addressing: Addressing, port: u16) -> Self {
        ServeConfig { app, addressing, port, extra_args: Vec::new() }
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
}

/// A running server (guarded: dropping it stops it).
pub struct Server {
    pub backend: Backend,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub proc: Proc,
    /// The `ready` line it printed.
    pub ready_line: String,
}

/// The `synack serve` argument list for `config` on `net`.
pub fn serve_args(net: &TestNet, config: &ServeConfig) -> Vec<String> {
    let ip = match config.addressing {
        Addressing::Shared => net.shared_ip(),
        Addressing::Dedicated => net.dedicated_ip(),
    };
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--iface".into(),
        net.synack.iface.clone(),
        "--ip".into(),
        ip.to_string(),
        "--port".into(),
        config.port.to_string(),
        "--app".into(),
        config.app.as_str().into(),
    ];
    args.extend(config.extra_args.iter().cloned());
    args
}

impl Server {
    /// Starts the server in the synack namespace and waits for its `ready` line. For a
    /// dedicated address the kernel stand-in first gets that address assigned (synack must
    /// not: the test asserts that the kernel does not have it).
    #[track_caller]
    pub fn start(backend: &Backend, net: &TestNet, config: &ServeConfig) -> Server {
        let ip = match config.addressing {
            Addressing::Shared => net.shared_ip(),
            Addressing::Dedicated => net.dedicated_ip(),
        };
        let proc = match backend {
            Backend::Synack(bin) => {
                if config.addressing == Addressing::Dedicated {
                    assert!(!net.kernel_has_address(ip), "dedicated address {ip} is assigned to the kernel");
                }
                net.synack.spawn(bin.to_str().unwrap(), &serve_args(net, config))
            }
            Backend::Kernel if config.app == App::Iperf3 => {
                if config.addressing == Addressing::Dedicated && !net.kernel_has_address(ip) {
                    net.add_kernel_address(ip);
                }
                let (ip_arg, port) = (ip.to_string(), config.port.to_string());
                let proc = net.synack.spawn("iperf3", &["-s", "-B", &ip_arg, "-p", &port, "--forceflush"]);
                return Self::await_line(backend.clone(), ip, config.port, proc, "Server listening");
            }
            Backend::Kernel => {
                if config.addressing == Addressing::Dedicated && !net.kernel_has_address(ip) {
                    net.add_kernel_address(ip);
                }
                peer::spawn_server(&net.synack, config.app.as_str(), ip, config.port, None)
            }
        };
        Self::await_ready(backend.clone(), ip, config.port, proc)
    }

    /// Waits for `ready` on an already spawned server process.
    #[track_caller]
    pub fn await_ready(backend: Backend, ip: Ipv4Addr, port: u16, proc: Proc) -> Server {
        Self::await_line(backend, ip, port, proc, "ready")
    }

    #[track_caller]
    fn await_line(backend: Backend, ip: Ipv4Addr, port: u16, mut proc: Proc, needle: &str) -> Server {
        match proc.wait_for_line(needle, READY_TIMEOUT) {
            Ok(ready_line) => {
                println!("server ready ({}): {ready_line}", backend.name());
                Server { backend, ip, port, proc, ready_line }
            }
            Err(e) => panic!("server did not become ready: {e}"),
        }
    }

    /// Fails the test with the server's output if it has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if self.proc.try_status().is_some() {
            panic!("the server exited: {}", self.proc.snapshot().describe());
        }
    }

    /// Output so far (for messages).
    pub fn output_so_far(&mut self) -> Output {
        self.proc.snapshot()
    }

    /// SIGTERM (then SIGKILL after the grace time) and the final output, counters included.
    pub fn stop(self) -> Output {
        self.proc.stop(crate::process::STOP_GRACE)
    }

    /// Stops the server and asserts a clean stop: exit 0 by itself after SIGTERM.
    #[track_caller]
    pub fn stop_cleanly(self, host: &Host) -> Output {
        let backend = self.backend.clone();
        let out = self.stop();
        if let Backend::Synack(_) = backend {
            assert!(out.success(), "synack serve did not stop cleanly on SIGTERM: {}", out.describe());
            let xdp = host.xdp_attachment();
            assert!(xdp.is_none(), "XDP program still attached after a clean stop: {xdp:?}");
        }
        out
    }
}
