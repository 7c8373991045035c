//! The runtime: the XDP program attached, one AF_XDP socket and one pinned worker per queue,
//! each worker running its own [`Interface`](crate::iface::Interface) and [`App`] to completion over batches.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use synack::iface::{App, ConnId, Interface};
//! use synack::runtime::{Runtime, RuntimeConfig};
//!
//! /// Echoes every byte back, and closes after the peer does, once everything is echoed.
//! struct Echo;
//! impl Echo {
//!     fn pump(&mut self, iface: &mut Interface, conn: ConnId) {
//!         // As much as the send ring takes; `on_writable` follows when it has room again.
//!         let _ = iface.splice(conn, conn, usize::MAX);
//!         // Closing with unread data would reset the connection (RFC 1122 4.2.2.13).
//!         if iface.recv_queue_len(conn) == 0 && iface.state(conn) == synack::tcp::State::CloseWait {
//!             iface.close(conn);
//!         }
//!     }
//! }
//! impl App for Echo {
//!     fn on_readable(&mut self, iface: &mut Interface, conn: ConnId) {
//!         self.pump(iface, conn);
//!     }
//!     fn on_writable(&mut self, iface: &mut Interface, conn: ConnId) {
//!         self.pump(iface, conn);
//!     }
//!     fn on_peer_closed(&mut self, iface: &mut Interface, conn: ConnId) {
//!         self.pump(iface, conn);
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

mod conn_table;
mod handoff;
mod kernel_listeners;
mod loop_stalls;
mod mailbox;
mod pcap;
mod worker;

use core::time::Duration;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::iface::steering::PortOwnership;
pub use crate::iface::steering::{owner_of_port, port_slice, tcp_dst_port};
pub use conn_table::{ConnInfo, StateCounts, STATES};
pub use handoff::HandoffCounters;
pub use loop_stalls::LoopStalls;
pub use mailbox::{SendMessageError, WorkerHandle};
pub use pcap::{PcapConfig, PcapStats};
use worker::{NeighborLookup, Worker};
pub use worker::{WorkerFault, WorkerStats};

use crate::iface::{AddressMode, App, Counters, InterfaceConfig};
use crate::wire::EthernetAddress;
use crate::xsk::{self, PollMode, XskConfig, XskError, XskSocket};

/// Where the per-boot ISN and timestamp key lives (`/run` is a tmpfs: it goes with the boot).
pub const ISN_KEY_PATH: &str = "/run/synack/isn-key";

/// Everything [`Runtime::start`] needs: start from [`RuntimeConfig::new`] and set fields (new
/// fields may come).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// The interface to attach to.
    pub ifname: String,
    /// Every worker's [`Interface`](crate::iface::Interface): address, prefix and gateway,
    /// checksums, TCP settings, table bounds, client ports... The runtime fills in what it
    /// finds at start: `mac` (the interface's), `address_mode` (shared when the kernel has
    /// the address), `icmp_echo` (kept only on a dedicated address), `tcp.mss` (the MTU's,
    /// see [`RuntimeConfig::mtu`]), and each worker's slice of `local_ports` ([`port_slice`]:
    /// segments to a port of another worker's slice are handed to it).
    pub interface: InterfaceConfig,
    /// The MTU to serve at: `None` (the default) reads the interface's. The MSS advertised and
    /// used is `mtu - 40`, and the UMEM frames are sized for `mtu + 14` bytes: 2048-byte frames
    /// up to an MTU of 1778, 4096-byte ones above, chained (AF_XDP multi-buffer) beyond 3826.
    /// Above the interface's MTU it is refused (such frames could not be sent).
    pub mtu: Option<u16>,
    /// Queues (and workers): queue `i` is served by worker `i`.
    pub queues: u32,
    /// The core of each worker (`cores[i]` for worker `i`); unpinned where missing.
    pub cores: Vec<usize>,
    /// Frames per RX batch.
    pub batch_size: u32,
    /// Busy polling, or sleeping in `poll()` when idle.
    pub busy_poll: bool,
    /// Ports listened on by every worker.
    pub listen_ports: Vec<u16>,
    /// Frames a worker can have in transit to other workers, and frames its inbox holds (2048
    /// by default, as many as a socket's RX ring: an owner that is descheduled for a while
    /// loses no more of its handed-off frames than of its own). A frame's buffer each: 2 KiB at
    /// MTU 1500, the longest frame (`mtu + 14`) with multi-buffer.
    pub handoff_capacity: usize,
    /// Frames each socket lends the kernel for receiving: the size of its RX and fill rings,
    /// a power of two (2048 by default). This is how far a worker may fall behind the wire
    /// before the kernel drops frames (`rx_fill_ring_empty` in its statistics): 2048 frames
    /// are 5 ms at 400,000 frames/s. A deeper ring absorbs longer stalls, but the kernel fills
    /// its frames in order, so more memory passes through the caches (keep-alive over veth
    /// measured slower with 8192 on the test VM).
    pub rx_ring_size: u32,
    /// UMEM frames per socket: at least `rx_ring_size` plus what sending needs (0 by default:
    /// twice `rx_ring_size`, at least 8192: 16 MiB of 2 KiB frames at the default).
    pub frame_count: u32,
    /// The per-boot ISN and SYN-cookie key file ([`crate::key_file::per_boot`]; default
    /// [`ISN_KEY_PATH`]); a file or directory that is not safe stops the start with
    /// [`RuntimeError::KeyFile`]. `None`: a key private to this process.
    pub key_file: Option<std::path::PathBuf>,
    /// Capture the frames the workers receive and send to a pcap file (`None`: off).
    pub pcap: Option<PcapConfig>,
    /// Messages each worker's mailbox holds for its application ([`Runtime::handle`]).
    pub mailbox_capacity: usize,
    /// Serve fewer queues than the interface has. Off by default: frames that RSS (or a veth
    /// peer's transmit queue) puts on an unserved queue would reach the kernel, which resets
    /// synack's connections on a shared address and drops them on a dedicated one.
    pub allow_partial_queues: bool,
}

impl RuntimeConfig {
    /// Defaults: one queue, unpinned, batches of 64, sleeping poll, and the interface defaults
    /// of [`InterfaceConfig::new`] (checksums verified, 4096 connections per worker, a SYN
    /// backlog of 1024 with SYN cookies beyond it, client ports 61000-65535).
    pub fn new(ifname: impl Into<String>, addr: Ipv4Addr) -> RuntimeConfig {
        RuntimeConfig {
            ifname: ifname.into(),
            // The MAC is the interface's, read at start.
            interface: InterfaceConfig::new(EthernetAddress([0; 6]), addr),
            mtu: None,
            queues: 1,
            cores: Vec::new(),
            batch_size: 64,
            busy_poll: false,
            listen_ports: Vec::new(),
            handoff_capacity: 2048,
            mailbox_capacity: 1024,
            rx_ring_size: 2048,
            frame_count: 0,
            key_file: Some(ISN_KEY_PATH.into()),
            pcap: None,
            allow_partial_queues: false,
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
    /// Fewer queues than the interface receives on.
    #[error(
        "{ifname} has {available} receive queues but only {queues} would be served: frames on the others would reach \
         the kernel (which resets synack's connections on a shared address). Serve them all with --queues \
         {available}, make the NIC use fewer (ethtool -L {ifname} combined {queues}), or accept it with \
         --allow-partial-queues"
    )]
    PartialQueues {
        /// The interface.
        ifname: String,
        /// Queues asked for.
        queues: u32,
        /// Receive queues it has.
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
    /// On a shared address, the kernel already listens on a port synack was asked to serve.
    #[error(
        "the kernel already listens on port {port} of {addr} (a socket bound to {bound}:{port}): on an address \
         shared with the kernel synack would take that port's connections over. Stop that listener, serve \
         another port, or give synack an address of its own"
    )]
    PortTaken {
        /// synack's address.
        addr: Ipv4Addr,
        /// The port.
        port: u16,
        /// The local address the kernel's socket is bound to.
        bound: String,
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
    /// The ISN and SYN-cookie key file is unsafe or unusable.
    #[error(transparent)]
    KeyFile(#[from] crate::key_file::KeyFileError),
    /// The capture file could not be created.
    #[error("cannot write the capture file {path}: {source}")]
    Pcap {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
    /// What the capture did, if it was on.
    pub pcap: Option<PcapStats>,
}

/// The workers' published statistics and the XDP program's counters, readable from any thread
/// ([`Runtime::stats_source`]). Workers publish about every 100 ms and never wait for a reader.
#[derive(Clone)]
pub struct StatsSource {
    workers: Arc<[Arc<Mutex<WorkerStats>>]>,
    tables: Arc<[conn_table::TableAsker]>,
    xdp: Option<Arc<synack_xdp::CounterReader>>,
}

impl StatsSource {
    /// Each worker's latest statistics.
    pub fn workers(&self) -> Vec<WorkerStats> {
        self.workers.iter().map(|s| s.lock().map(|g| g.clone()).unwrap_or_default()).collect()
    }

    /// Every worker's connections (not TIME_WAIT records), asked of the workers: each answers
    /// at its next housekeeping, within about 100 ms; a worker that does not answer within
    /// `timeout` is left out.
    pub fn connections(&self, timeout: Duration) -> Vec<ConnInfo> {
        for asker in self.tables.iter() {
            asker.ask_table();
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut all = Vec::new();
        for asker in self.tables.iter() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            all.extend(asker.table(left).unwrap_or_default());
        }
        all
    }

    /// Each worker's connections by state (in the order of [`STATES`]), asked of the workers
    /// like [`StatsSource::connections`]; `None` for a worker that does not answer in time.
    pub fn connection_states(&self, timeout: Duration) -> Vec<Option<StateCounts>> {
        for asker in self.tables.iter() {
            asker.ask_counts();
        }
        let deadline = std::time::Instant::now() + timeout;
        self.tables
            .iter()
            .map(|asker| asker.counts(deadline.saturating_duration_since(std::time::Instant::now())))
            .collect()
    }

    /// The XDP program's counters by name (summed over CPUs); empty if they cannot be read.
    pub fn xdp_counters(&self) -> Vec<(&'static str, u64)> {
        let Some(counters) = self.xdp.as_ref().and_then(|r| r.read().ok()) else { return Vec::new() };
        synack_xdp::Counter::ALL.iter().map(|&c| (c.name(), counters.get(c))).collect()
    }
}

/// Running workers; [`Runtime::stop`] (or dropping it) stops them and detaches the program.
pub struct Runtime {
    stop: Arc<AtomicBool>,
    /// 0, or 1 + the drain's grace in milliseconds (see [`Runtime::start_drain`]).
    drain: Arc<AtomicU64>,
    handles: Vec<WorkerHandle>,
    workers: Vec<JoinHandle<WorkerStats>>,
    stats: Vec<Arc<Mutex<WorkerStats>>>,
    tables: Vec<conn_table::TableAsker>,
    address_mode: AddressMode,
    pcap: Option<pcap::Pcap>,
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
        if config.interface.addr.is_unspecified()
            || config.interface.addr.is_broadcast()
            || config.interface.addr.is_multicast()
        {
            return Err(RuntimeError::Config(format!("{} is not a usable unicast address", config.interface.addr)));
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
        if config.queues < available && !config.allow_partial_queues {
            return Err(RuntimeError::PartialQueues {
                ifname: config.ifname.clone(),
                queues: config.queues,
                available,
            });
        }
        let mac = info
            .mac
            .map(EthernetAddress)
            .ok_or_else(|| RuntimeError::Config(format!("{} has no Ethernet address", config.ifname)))?;
        let mtu = serving_mtu(config.mtu, info.mtu)?;
        let address_mode = address_mode_of(config.interface.addr);
        let (lo, hi) = config.interface.local_ports;
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
            // The XDP program would steer the kernel's clients to synack, which resets them.
            if let Some((port, bound)) = kernel_listeners::first_taken(config.interface.addr, &config.listen_ports) {
                return Err(RuntimeError::PortTaken { addr: config.interface.addr, port, bound });
            }
        }
        let workers = config.queues as usize;
        if port_slice(0, (lo, hi), workers).is_none() {
            return Err(RuntimeError::Config(format!(
                "the local port range {lo}-{hi} has fewer ports than the {workers} workers that share it"
            )));
        }

        // One key per boot, shared by every synack process (see `key_file::per_boot`), or
        // one private to this process when asked; an unsafe key file stops the start
        // before anything is attached.
        let isn = match &config.key_file {
            Some(path) => crate::key_file::per_boot(path)?,
            None => crate::key_file::from_entropy(),
        };

        let mut steer = synack_xdp::SteerProgram::attach(&config.ifname)?;
        let owned_mode = match address_mode {
            AddressMode::Shared => synack_xdp::AddressMode::Shared,
            AddressMode::Dedicated => synack_xdp::AddressMode::Dedicated,
        };
        steer.add_owned_addr(config.interface.addr, owned_mode)?;
        for &port in &config.listen_ports {
            steer.add_listen_port(port)?;
        }
        steer.set_local_port_range(lo, hi)?;

        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicU64::new(0));
        let mut sockets = Vec::new();
        for queue in 0..config.queues {
            let mut xsk_config = XskConfig::new(config.ifname.clone(), queue);
            xsk_config.set_mtu(u32::from(mtu));
            xsk_config.batch_size = config.batch_size;
            xsk_config.rx_ring_size = config.rx_ring_size;
            xsk_config.fill_ring_size = config.rx_ring_size;
            xsk_config.frame_count = if config.frame_count == 0 {
                config.rx_ring_size.saturating_mul(2).max(8192)
            } else {
                config.frame_count
            };
            xsk_config.poll_mode =
                if config.busy_poll { PollMode::Busy } else { PollMode::Sleep { timeout: Duration::from_millis(100) } };
            let socket = XskSocket::new(xsk_config)?;
            steer.register_socket(queue, socket.fd())?;
            sockets.push(socket);
        }

        // The longest packet a socket lends or takes: a UMEM frame, or a joined chain.
        let frame_len = sockets.first().map_or(2048, |s| frame_buffer_len(s.config()));
        // One worker needs no hand-off: every port is its own.
        let mut handoffs = if workers > 1 {
            handoff::mesh(workers, config.handoff_capacity, frame_len)
                .map_err(|e| RuntimeError::Config(format!("cannot make the hand-off queues: {e}")))?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let pcap = match &config.pcap {
            Some(c) => Some(
                pcap::Pcap::start(c, frame_len)
                    .map_err(|source| RuntimeError::Pcap { path: c.path.clone(), source })?,
            ),
            None => None,
        };
        let mut runtime = Runtime {
            stop: stop.clone(),
            drain: drain.clone(),
            handles: Vec::new(),
            workers: Vec::new(),
            stats: Vec::new(),
            tables: Vec::new(),
            address_mode,
            pcap,
            steer: None,
        };
        for (queue, socket) in sockets.into_iter().enumerate() {
            let mut iface_config = config.interface;
            iface_config.set_mtu(mtu);
            iface_config.mac = mac;
            iface_config.address_mode = address_mode;
            iface_config.icmp_echo = config.interface.icmp_echo && address_mode == AddressMode::Dedicated;
            // Checked above: every worker has a slice.
            iface_config.local_ports = port_slice(queue, (lo, hi), workers).unwrap_or((lo, hi));
            let ownership = PortOwnership { me: queue, workers, range: (lo, hi) };
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
            let (table, asker) = conn_table::pair();
            runtime.tables.push(asker);
            let (mailbox, handle) = mailbox::mailbox(config.mailbox_capacity)
                .map_err(|e| RuntimeError::Config(format!("cannot make a worker's mailbox: {e}")))?;
            runtime.handles.push(handle);
            let worker = Worker {
                table,
                queue,
                ifname: config.ifname.clone(),
                ifindex: info.index,
                core: config.cores.get(queue as usize).copied(),
                socket,
                iface: crate::iface::Interface::new(iface_config, isn),
                app: make_app(queue),
                listen_ports: config.listen_ports.clone(),
                batch_size: config.batch_size as usize,
                busy_poll: config.busy_poll,
                stop: stop.clone(),
                drain: drain.clone(),
                stats: stats.clone(),
                neighbors,
                handoff,
                pcap: runtime.pcap.as_ref().map(pcap::Pcap::tap),
                mailbox,
                stall_clock: Default::default(),
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

    /// A handle another thread can read the workers' statistics and the XDP program's
    /// counters through (a metrics endpoint), for as long as it likes.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource {
            workers: self.stats.clone().into(),
            tables: self.tables.clone().into(),
            xdp: self.steer.as_ref().and_then(|s| s.counter_reader().ok()).map(Arc::new),
        }
    }

    /// Whether every worker is still running.
    pub fn is_running(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// The XDP program's counters, as text.
    pub fn xdp_counters(&self) -> Option<String> {
        self.steer.as_ref().and_then(|s| s.counters().ok()).map(|c| c.to_string())
    }

    /// Starts a graceful drain: every worker stops accepting (a new SYN is answered as if
    /// nothing listened), tells its application ([`App::on_drain`]), lets its connections
    /// finish for up to `grace`, resets what is left then, and ends. Returns at once: follow
    /// with [`Runtime::is_finished`] and [`Runtime::stop`] (which stops at once whatever is
    /// left). A second call changes nothing.
    pub fn start_drain(&self, grace: Duration) {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX - 1).min(u64::MAX - 1);
        let _ = self.drain.compare_exchange(0, ms + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A handle to worker `queue` for other threads: [`WorkerHandle::send`] hands its
    /// application a message ([`App::on_message`]) and wakes it if it sleeps.
    pub fn handle(&self, queue: u32) -> Option<WorkerHandle> {
        self.handles.get(queue as usize).cloned()
    }

    /// Whether every worker has ended (after a drain, or on an error).
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(|w| w.is_finished())
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
        report.pcap = self.pcap.take().map(pcap::Pcap::finish);
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

/// The MTU to serve at: the one asked for, which may not exceed the interface's, else the
/// interface's (1500 where netlink reports none).
fn serving_mtu(asked: Option<u16>, interface: Option<u32>) -> Result<u16, RuntimeError> {
    let interface = interface.map_or(1500, |mtu| u16::try_from(mtu).unwrap_or(u16::MAX));
    match asked {
        Some(mtu) if mtu > interface => Err(RuntimeError::Config(format!(
            "MTU {mtu} exceeds the interface's ({interface}): raise it first (ip link set dev IF mtu {mtu})"
        ))),
        Some(mtu) if mtu < 576 => Err(RuntimeError::Config(format!("MTU {mtu} is below 576 (RFC 791)"))),
        Some(mtu) => Ok(mtu),
        None => Ok(interface),
    }
}

/// Bytes a buffer needs to hold any packet of a socket with `config` (hand-offs, capture): a
/// UMEM frame (2048 at MTU 1500, as always), or the whole joined chain with multi-buffer.
fn frame_buffer_len(config: &XskConfig) -> usize {
    config.packet_capacity().max(config.frame_size) as usize
}

/// Whether the kernel has `addr` in this network namespace (then synack shares it).
pub fn kernel_has_address(addr: Ipv4Addr) -> bool {
    address_mode_of(addr) == AddressMode::Shared
}

/// An address the kernel has in this namespace is shared. Read from the routing tables
/// (`/proc/self/net/fib_trie`: a local address is a `/32 host LOCAL` entry); binding a socket
/// to it is not proof: with no address at all in the namespace (no local table yet), or with
/// `ip_nonlocal_bind`, the kernel lets any address be bound. The bind is the fallback where
/// procfs cannot be read.
fn address_mode_of(addr: Ipv4Addr) -> AddressMode {
    let local = match std::fs::read_to_string("/proc/self/net/fib_trie") {
        Ok(trie) => is_local_in_fib_trie(&trie, addr),
        Err(_) => UdpSocket::bind((addr, 0)).is_ok(),
    };
    if local {
        AddressMode::Shared
    } else {
        AddressMode::Dedicated
    }
}

/// Whether `fib_trie` text lists `addr` as a local host route (`|-- ADDR` then `/32 host LOCAL`).
fn is_local_in_fib_trie(trie: &str, addr: Ipv4Addr) -> bool {
    let needle = addr.to_string();
    let mut lines = trie.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if line.strip_prefix("|-- ") == Some(needle.as_str()) {
            // The entry's routes follow, one a line, until the next node.
            while let Some(route) = lines.next_if(|l| l.starts_with('/')) {
                if route.starts_with("/32 host LOCAL") {
                    return true;
                }
            }
        }
    }
    false
}

/// On a shared address, synack's client ports must not overlap the kernel's ephemeral range
/// (unless reserved), or synack would steer the kernel's own connections (ARCHITECTURE.md).
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
    use super::{covers, frame_buffer_len, serving_mtu};
    use crate::xsk::XskConfig;

    #[test]
    fn the_mtu_is_the_interfaces_unless_a_smaller_one_is_asked() {
        assert_eq!(serving_mtu(None, Some(9000)).unwrap(), 9000);
        assert_eq!(serving_mtu(None, None).unwrap(), 1500);
        assert_eq!(serving_mtu(Some(1500), Some(9000)).unwrap(), 1500);
        assert!(serving_mtu(Some(9000), Some(1500)).is_err(), "frames the interface cannot carry");
        assert!(serving_mtu(Some(100), Some(1500)).is_err());
    }

    #[test]
    fn buffers_hold_a_frame_or_a_joined_chain() {
        let mut config = XskConfig::new("eth0", 0);
        config.set_mtu(1500);
        assert_eq!(frame_buffer_len(&config), 2048, "MTU 1500 keeps its 2048-byte buffers");
        config.set_mtu(9000);
        assert_eq!(frame_buffer_len(&config), 9014);
    }

    #[test]
    fn local_addresses_are_read_from_the_fib_trie() {
        let trie = "Main:\n  +-- 198.18.7.0/24 2 0 2\n     +-- 198.18.7.0/31 1 0 0\n        |-- 198.18.7.0\n           \
                    /24 link UNICAST\n        |-- 198.18.7.1\n           /32 host LOCAL\n     |-- 198.18.7.255\n        \
                    /32 link BROADCAST\nLocal:\n";
        let local = |a: &str| super::is_local_in_fib_trie(trie, a.parse().unwrap());
        assert!(local("198.18.7.1"));
        assert!(!local("198.18.7.0"), "a network route is not a local address");
        assert!(!local("198.18.7.255"), "a broadcast route is not a local address");
        assert!(!local("198.18.7.3"));
        assert!(!super::is_local_in_fib_trie("", "198.18.7.1".parse().unwrap()), "an empty namespace has none");
    }

    #[test]
    fn reserved_port_lists_are_read() {
        assert!(covers("61000-65535", (61000, 62000)));
        assert!(covers("100,61000-61999,62000-65535", (61000, 65535)));
        assert!(!covers("61000-61999", (61000, 62000)));
        assert!(!covers("", (1, 1)));
    }
}
