//! The runtime: the XDP program attached, one AF_XDP socket and one pinned worker per queue,
//! each worker running its own [`Interface`] and [`App`] to completion over batches.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use synack::iface::{App, ConnId, Interface};
//! use synack::runtime::{Runtime, RuntimeConfig};
//!
//! /// Echoes every byte back, and closes after the peer does.
//! struct Echo;
//! impl App for Echo {
//!     fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
//!         let _ = iface.splice(conn, conn, usize::MAX);
//!     }
//!     fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
//!         iface.close(conn);
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = RuntimeConfig::new("veth0", Ipv4Addr::new(198, 18, 0, 1));
//! config.listen_ports = vec![7];
//! let runtime = Runtime::start(config, |_queue| Echo)?;
//! std::thread::sleep(std::time::Duration::from_secs(10));
//! let report = runtime.stop();
//! println!("{}", report.counters);
//! # Ok(()) }
//! ```

mod handoff;
mod ownership;
mod worker;

use core::time::Duration;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use handoff::HandoffCounters;
use ownership::PortOwnership;
pub use ownership::{owner_of_port, port_slice, tcp_dst_port};
pub use worker::WorkerStats;
use worker::{NeighborLookup, Worker};

use crate::iface::{AddressMode, App, Counters, InterfaceConfig};
use crate::tcp::{IsnGenerator, TcpConfig};
use crate::wire::{ChecksumMode, EthernetAddress};
use crate::xsk::{self, PollMode, XskConfig, XskError, XskSocket};

/// Where the per-boot ISN and timestamp key lives (`/run` is a tmpfs: it goes with the boot).
pub const ISN_KEY_PATH: &str = "/run/synack/isn-key";

/// Everything [`Runtime::start`] needs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The interface to attach to.
    pub ifname: String,
    /// Our IPv4 address.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The gateway for off-link destinations.
    pub gateway: Option<Ipv4Addr>,
    /// Queues (and workers): queue `i` is served by worker `i`.
    pub queues: u32,
    /// The core of each worker (`cores[i]` for worker `i`); unpinned where missing.
    pub cores: Vec<usize>,
    /// Frames per RX batch.
    pub batch_size: u32,
    /// Busy polling, or sleeping in `poll()` when idle.
    pub busy_poll: bool,
    /// TCP checksums verified or trusted.
    pub checksum: ChecksumMode,
    /// Every connection's configuration (buffer sizes, TIME_WAIT length, ...).
    pub tcp: TcpConfig,
    /// Connections per worker.
    pub max_connections: usize,
    /// Passive connections per worker that may wait in SYN-RECEIVED.
    pub syn_backlog: usize,
    /// SYN cookies while the SYN backlog is full (RFC 4987; see `InterfaceConfig::syn_cookies`).
    pub syn_cookies: bool,
    /// TIME_WAIT records per worker.
    pub max_time_wait: usize,
    /// Ports listened on by every worker.
    pub listen_ports: Vec<u16>,
    /// Local ports for connections the workers open: worker `w` of `n` opens its connections
    /// from slice `w` of the range ([`port_slice`]), and segments to a port of another
    /// worker's slice are handed to it.
    pub local_ports: (u16, u16),
    /// Frames a worker can have in transit to other workers, and frames its inbox holds (2048
    /// by default, as many as a socket's RX ring: an owner that is descheduled for a while
    /// loses no more of its handed-off frames than of its own). 2 KiB of buffer each.
    pub handoff_capacity: usize,
    /// Reuse local ports from TIME_WAIT after this quiet time (see
    /// [`InterfaceConfig::time_wait_reuse`]); `None`: never.
    pub time_wait_reuse: Option<Duration>,
    /// UMEM frames per socket.
    pub frame_count: u32,
    /// Answer ICMP echo (dedicated addresses only: the kernel answers for a shared one).
    pub icmp_echo: bool,
}

impl RuntimeConfig {
    /// Defaults: one queue, unpinned, batches of 64, sleeping poll, checksums verified, 4096
    /// connections per worker, a SYN backlog of 1024 with SYN cookies beyond it, client ports
    /// 61000-65535.
    pub fn new(ifname: impl Into<String>, addr: Ipv4Addr) -> RuntimeConfig {
        RuntimeConfig {
            ifname: ifname.into(),
            addr,
            prefix_len: 24,
            gateway: None,
            queues: 1,
            cores: Vec::new(),
            batch_size: 64,
            busy_poll: false,
            checksum: ChecksumMode::Verify,
            tcp: TcpConfig::default(),
            max_connections: 4096,
            syn_backlog: 1024,
            syn_cookies: true,
            max_time_wait: 1 << 20,
            listen_ports: Vec::new(),
            local_ports: (61000, 65535),
            handoff_capacity: 2048,
            time_wait_reuse: Some(Duration::from_millis(1)),
            frame_count: 8192,
            icmp_echo: true,
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The interface does not exist.
    #[error("no network interface named {0:?} in this network namespace")]
    NoSuchInterface(String),
    /// The queue asked for does not exist.
    #[error("queue {queue} out of range: {ifname} has {available} receive queue(s) (0..{available})")]
    QueueOutOfRange {
        /// The interface.
        ifname: String,
        /// The first queue that does not exist.
        queue: u32,
        /// How many there are.
        available: u32,
    },
    /// The kernel would swallow synack's client ports, or synack the kernel's.
    #[error(
        "local port range {lo}-{hi} overlaps the kernel's net.ipv4.ip_local_port_range {kernel_lo}-{kernel_hi} on a \
         shared address: synack would steer the kernel's own connections. Choose another range or reserve it with \
         net.ipv4.ip_local_reserved_ports"
    )]
    PortRangeOverlap {
        /// synack's range.
        lo: u16,
        /// synack's range.
        hi: u16,
        /// The kernel's range.
        kernel_lo: u16,
        /// The kernel's range.
        kernel_hi: u16,
    },
    /// The XDP program could not be loaded or attached.
    #[error(transparent)]
    Attach(#[from] synack_xdp::AttachError),
    /// The XDP program's maps could not be configured.
    #[error(transparent)]
    Map(#[from] synack_xdp::MapError),
    /// An AF_XDP socket could not be set up.
    #[error(transparent)]
    Socket(#[from] XskError),
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
}

/// What the workers did, added up, when the runtime stopped.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The interfaces' counters, summed over workers.
    pub counters: Counters,
    /// Each worker's last statistics.
    pub workers: Vec<WorkerStats>,
}

/// Running workers; [`Runtime::stop`] (or dropping it) stops them and detaches the program.
pub struct Runtime {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<WorkerStats>>,
    stats: Vec<Arc<Mutex<WorkerStats>>>,
    address_mode: AddressMode,
    // Dropped last: detaching the program after the sockets are gone.
    steer: Option<synack_xdp::SteerProgram>,
}

impl Runtime {
    /// Attaches the XDP program to `config.ifname`, binds one AF_XDP socket per queue and
    /// starts one worker per queue, each with the application `make_app(queue)` returns.
    /// Whether the address is shared with the kernel is read from the interface: an address
    /// the kernel has is shared. On error nothing is left attached.
    pub fn start<A, F>(config: RuntimeConfig, mut make_app: F) -> Result<Runtime, RuntimeError>
    where
        A: App + Send + 'static,
        F: FnMut(u32) -> A,
    {
        if config.addr.is_unspecified() || config.addr.is_broadcast() || config.addr.is_multicast() {
            return Err(RuntimeError::Config(format!("{} is not a usable unicast address", config.addr)));
        }
        if config.queues == 0 {
            return Err(RuntimeError::Config("at least one queue is needed".into()));
        }
        let info = xsk::netlink::interface_info(&config.ifname).map_err(|e| {
            if xsk::netlink::is_no_such_device(&e) {
                RuntimeError::NoSuchInterface(config.ifname.clone())
            } else {
                RuntimeError::Config(format!("cannot look up interface {:?}: {e}", config.ifname))
            }
        })?;
        let available = info.rx_queues.unwrap_or(1);
        if config.queues > available {
            return Err(RuntimeError::QueueOutOfRange { ifname: config.ifname.clone(), queue: available, available });
        }
        let mac = info
            .mac
            .map(EthernetAddress)
            .ok_or_else(|| RuntimeError::Config(format!("{} has no Ethernet address", config.ifname)))?;
        let address_mode = address_mode_of(config.addr);
        let (lo, hi) = config.local_ports;
        if lo == 0 || hi < lo {
            return Err(RuntimeError::Config(format!("bad local port range {lo}-{hi}")));
        }
        if let Some(&port) = config.listen_ports.iter().find(|&&p| p == 0 || (lo..=hi).contains(&p)) {
            return Err(RuntimeError::Config(format!(
                "listening port {port} is 0 or inside the local port range {lo}-{hi}"
            )));
        }
        if address_mode == AddressMode::Shared {
            check_port_range(lo, hi)?;
        }
        let workers = config.queues as usize;
        if port_slice(0, (lo, hi), workers).is_none() {
            return Err(RuntimeError::Config(format!(
                "the local port range {lo}-{hi} has fewer ports than the {workers} workers that share it"
            )));
        }

        let mut steer = synack_xdp::SteerProgram::attach(&config.ifname)?;
        let owned_mode = match address_mode {
            AddressMode::Shared => synack_xdp::AddressMode::Shared,
            AddressMode::Dedicated => synack_xdp::AddressMode::Dedicated,
        };
        steer.add_owned_addr(config.addr, owned_mode)?;
        for &port in &config.listen_ports {
            steer.add_listen_port(port)?;
        }
        steer.set_local_port_range(lo, hi)?;

        // One key per boot, shared by every synack process (see `IsnGenerator::per_boot`);
        // a process-private one where /run cannot hold it.
        let isn =
            IsnGenerator::per_boot(std::path::Path::new(ISN_KEY_PATH)).unwrap_or_else(|_| IsnGenerator::from_entropy());
        let stop = Arc::new(AtomicBool::new(false));
        let mut sockets = Vec::new();
        for queue in 0..config.queues {
            let mut xsk_config = XskConfig::new(config.ifname.clone(), queue);
            xsk_config.batch_size = config.batch_size;
            xsk_config.frame_count = config.frame_count;
            xsk_config.poll_mode =
                if config.busy_poll { PollMode::Busy } else { PollMode::Sleep { timeout: Duration::from_millis(100) } };
            let socket = XskSocket::new(xsk_config)?;
            steer.register_socket(queue, socket.fd())?;
            sockets.push(socket);
        }

        // One worker needs no hand-off: every port is its own.
        let mut handoffs = if workers > 1 {
            let frame_len = sockets.first().map_or(2048, |s| s.config().frame_size as usize);
            handoff::mesh(workers, config.handoff_capacity, frame_len)
                .map_err(|e| RuntimeError::Config(format!("cannot make the hand-off queues: {e}")))?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut runtime =
            Runtime { stop: stop.clone(), workers: Vec::new(), stats: Vec::new(), address_mode, steer: None };
        for (queue, socket) in sockets.into_iter().enumerate() {
            let mut iface_config = InterfaceConfig::new(mac, config.addr);
            iface_config.prefix_len = config.prefix_len;
            iface_config.gateway = config.gateway;
            iface_config.address_mode = address_mode;
            iface_config.icmp_echo = config.icmp_echo && address_mode == AddressMode::Dedicated;
            iface_config.checksum = config.checksum;
            iface_config.tcp = config.tcp;
            iface_config.max_connections = config.max_connections;
            iface_config.syn_backlog = config.syn_backlog;
            iface_config.syn_cookies = config.syn_cookies;
            iface_config.max_time_wait = config.max_time_wait;
            // Checked above: every worker has a slice.
            iface_config.local_ports = port_slice(queue, (lo, hi), workers).unwrap_or((lo, hi));
            let ownership = PortOwnership { me: queue, workers, range: (lo, hi) };
            iface_config.time_wait_reuse = config.time_wait_reuse;
            let neighbors: Option<NeighborLookup> = match address_mode {
                // The kernel receives the ARP replies for a shared address; the XDP program
                // notes them, and the worker reads them from its map.
                AddressMode::Shared => steer
                    .neighbor_reader()
                    .ok()
                    .map(|reader| Box::new(move |addr| reader.lookup(addr).map(EthernetAddress)) as NeighborLookup),
                AddressMode::Dedicated => None,
            };
            let stats = Arc::new(Mutex::new(WorkerStats::default()));
            let handoff = handoffs.get_mut(queue).and_then(Option::take).map(|h| (ownership, h));
            let queue = queue as u32;
            let worker = Worker {
                queue,
                core: config.cores.get(queue as usize).copied(),
                socket,
                iface: crate::iface::Interface::new(iface_config, isn),
                app: make_app(queue),
                listen_ports: config.listen_ports.clone(),
                batch_size: config.batch_size as usize,
                busy_poll: config.busy_poll,
                stop: stop.clone(),
                stats: stats.clone(),
                neighbors,
                handoff,
            };
            let handle = std::thread::Builder::new()
                .name(format!("synack-q{queue}"))
                .spawn(move || worker.run())
                .map_err(RuntimeError::Thread)?;
            runtime.workers.push(handle);
            runtime.stats.push(stats);
        }
        runtime.steer = Some(steer);
        Ok(runtime)
    }

    /// Whether the address is shared with the kernel or dedicated to synack.
    pub fn address_mode(&self) -> AddressMode {
        self.address_mode
    }

    /// The workers' latest statistics (refreshed about every 100 ms).
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.stats.iter().map(|s| s.lock().map(|g| g.clone()).unwrap_or_default()).collect()
    }

    /// Whether every worker is still running.
    pub fn is_running(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// The XDP program's counters, as text.
    pub fn xdp_counters(&self) -> Option<String> {
        self.steer.as_ref().and_then(|s| s.counters().ok()).map(|c| c.to_string())
    }

    /// Stops the workers, detaches the program, and reports what they did.
    pub fn stop(mut self) -> Report {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        for handle in self.workers.drain(..) {
            if let Ok(stats) = handle.join() {
                report.counters += stats.counters;
                report.workers.push(stats);
            }
        }
        if let Some(steer) = self.steer.take() {
            steer.detach();
        }
        report
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.workers.is_empty() || self.steer.is_some() {
            self.shutdown();
        }
    }
}

/// An address the kernel has in this namespace (it can bind a socket to it) is shared.
fn address_mode_of(addr: Ipv4Addr) -> AddressMode {
    match UdpSocket::bind((addr, 0)) {
        Ok(_) => AddressMode::Shared,
        Err(_) => AddressMode::Dedicated,
    }
}

/// On a shared address, synack's client ports must not overlap the kernel's ephemeral range
/// (unless reserved), or synack would steer the kernel's own connections (DESIGN.md).
fn check_port_range(lo: u16, hi: u16) -> Result<(), RuntimeError> {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else { return Ok(()) };
    let mut parts = text.split_whitespace().filter_map(|p| p.parse::<u16>().ok());
    let (Some(kernel_lo), Some(kernel_hi)) = (parts.next(), parts.next()) else { return Ok(()) };
    if hi < kernel_lo || lo > kernel_hi {
        return Ok(());
    }
    let reserved = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default();
    let overlap = (lo.max(kernel_lo), hi.min(kernel_hi));
    if covers(&reserved, overlap) {
        return Ok(());
    }
    Err(RuntimeError::PortRangeOverlap { lo, hi, kernel_lo, kernel_hi })
}

/// Whether the `ip_local_reserved_ports` list ("1,2,10-20") covers the range.
fn covers(list: &str, (lo, hi): (u16, u16)) -> bool {
    let ranges: Vec<(u16, u16)> = list
        .trim()
        .split(',')
        .filter_map(|item| {
            let mut ends = item.trim().splitn(2, '-').map(|p| p.parse::<u16>().ok());
            let a = ends.next()??;
            let b = ends.next().flatten().unwrap_or(a);
            Some((a, b))
        })
        .collect();
    (lo..=hi).all(|p| ranges.iter().any(|&(a, b)| (a..=b).contains(&p)))
}

#[cfg(test)]
mod handoff_tests;

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn reserved_port_lists_are_read() {
        assert!(covers("61000-65535", (61000, 62000)));
        assert!(covers("100,61000-61999,62000-65535", (61000, 65535)));
        assert!(!covers("61000-61999", (61000, 62000)));
        assert!(!covers("", (1, 1)));
    }
}
