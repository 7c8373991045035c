//! Loading, configuring, test-running and attaching the steering program.

use std::mem::{offset_of, size_of, MaybeUninit};
use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, RawFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, Link, MapCore, MapFlags, MapMut, Program, ProgramInput, Xdp, XdpFlags};

use crate::counters::{Counter, Counters};
use crate::error::{AttachError, LoadError, MapError, TestRunError};
use crate::skel::types::{owned_mode, steer_config};
use crate::skel::{SteerSkel, SteerSkelBuilder};
use crate::sys;

/// Receive queues the program can steer to a socket: the XSKMAP's size.
/// Frames for synack on a higher queue go to the kernel (`redirect_failed`).
pub const MAX_QUEUES: u32 = 64;

/// Owned IPv4 addresses the program can hold.
pub const MAX_OWNED_ADDRS: u32 = 256;

/// Neighbours (IPv4 address to MAC) the program remembers; past this many the
/// least recently used are forgotten.
pub const MAX_NEIGHBORS: u32 = 4096;

/// Bits per word of the `listen_ports` bitmap.
const PORT_WORD_BITS: u16 = u64::BITS as u16;

/// Size of `struct steer_config` as the program reads it.
const CONFIG_LEN: usize = 6;

/// Size of `struct neighbor`, the value of the `neighbors` map: a MAC address
/// padded to 8 bytes.
const NEIGHBOR_LEN: usize = 8;

/// `BPF_F_XDP_DEV_BOUND_ONLY` (linux/bpf.h, Linux 6.3): the program is bound
/// to one device, which lets it call the XDP metadata kfuncs.
const BPF_F_XDP_DEV_BOUND_ONLY: u32 = 1 << 6;

/// `BPF_F_XDP_HAS_FRAGS` (linux/bpf.h, Linux 5.18): what `SEC("xdp.frags")` asks for (multi-buffer
/// frames, which veth requires above a ~3.5 KB MTU); said again beside the bound flag, which
/// replaces the program's flags.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

// `config_bytes` lays the fields out by hand; this holds it to the C layout
// that the skeleton's BTF-generated type reproduces.
const _: () = {
    assert!(size_of::<steer_config>() == CONFIG_LEN);
    assert!(offset_of!(steer_config, local_port_lo) == 0);
    assert!(offset_of!(steer_config, local_port_hi) == 2);
    assert!(offset_of!(steer_config, drop_permille) == 4);
    assert!(size_of::<crate::skel::types::neighbor>() == NEIGHBOR_LEN);
};

/// The bytes of `config`, laid out as the C struct (native byte order).
fn config_bytes(config: &steer_config) -> [u8; CONFIG_LEN] {
    let mut bytes = [0; CONFIG_LEN];
    bytes[0..2].copy_from_slice(&config.local_port_lo.to_ne_bytes());
    bytes[2..4].copy_from_slice(&config.local_port_hi.to_ne_bytes());
    bytes[4..6].copy_from_slice(&config.drop_permille.to_ne_bytes());
    bytes
}

/// How synack owns an IPv4 address: what the program steers to it.
///
/// In both modes synack gets IPv4/TCP (not fragmented) to its listening ports
/// and to its local port range, and the program records in its neighbour map
/// the sender of every ARP request or reply that targets the address
/// ([`SteerObject::neighbor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressMode {
    /// The kernel has the address too (it is assigned to the interface).
    /// synack gets only TCP to its own ports; ARP, ICMP, TCP to other ports
    /// and everything else go to the kernel, which answers them. synack's
    /// local port range must then stay out of the kernel's
    /// (`net.ipv4.ip_local_port_range`), see
    /// [`SteerObject::set_local_port_range`].
    Shared,
    /// The address is synack's alone (not assigned to the kernel, so nobody
    /// else answers for it). synack also gets ARP whose target is the
    /// address, ICMP echo requests to it, and TCP to it whatever the port,
    /// so that it answers closed ports with a RST.
    Dedicated,
}

impl AddressMode {
    /// The value of the `owned_addrs` entry (C `enum owned_mode`).
    fn map_value(self) -> u8 {
        let value = match self {
            AddressMode::Shared => owned_mode::OWNED_SHARED.0,
            AddressMode::Dedicated => owned_mode::OWNED_DEDICATED.0,
        };
        // Both fit the map's one-byte value (checked below at compile time).
        value as u8
    }

    fn from_map_value(value: u8) -> Option<AddressMode> {
        [AddressMode::Shared, AddressMode::Dedicated].into_iter().find(|mode| mode.map_value() == value)
    }
}

// The C enum's values are what the map stores: they must fit its u8 value.
const _: () = {
    assert!(owned_mode::OWNED_SHARED.0 == 0);
    assert!(owned_mode::OWNED_DEDICATED.0 <= u8::MAX as _);
    assert!(owned_mode::OWNED_DEDICATED.0 != owned_mode::OWNED_SHARED.0);
};

/// What an XDP program told the kernel to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAction {
    /// `XDP_ABORTED`: a program error; the frame is dropped.
    Aborted,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_PASS`: on to the kernel's stack.
    Pass,
    /// `XDP_TX`: back out of the interface.
    Tx,
    /// `XDP_REDIRECT`: to the target chosen by `bpf_redirect_map`.
    Redirect,
    /// A value outside the UAPI enum.
    Unknown(u32),
}

impl From<u32> for XdpAction {
    /// The values of the UAPI `enum xdp_action`.
    fn from(value: u32) -> XdpAction {
        match value {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Unknown(other),
        }
    }
}

/// The result of running the program once on a crafted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRun {
    /// The program's verdict.
    pub action: XdpAction,
    /// How the counters moved during the run.
    pub counted: Counters,
}

impl TestRun {
    /// The counter that explains the verdict: the program increments exactly
    /// one counter per frame, so this is `None` only if that rule broke.
    ///
    /// Without an AF_XDP socket registered for the queue, a frame the program
    /// decides to steer comes back as [`XdpAction::Pass`] with the reason
    /// [`Counter::RedirectFailed`]; a frame it leaves to the kernel comes back
    /// as `Pass` with a `Passed*` reason. The reason is the decision.
    pub fn reason(&self) -> Option<Counter> {
        let mut moved = self.counted.nonzero();
        match (moved.next(), moved.next()) {
            (Some((counter, 1)), None) => Some(counter),
            _ => None,
        }
    }
}

/// The steering program and its maps, loaded into the kernel, not attached.
///
/// Configure it before attaching so that no frame for synack reaches the
/// kernel in between, or use it unattached to test the program on crafted
/// frames ([`SteerObject::test_run`]).
pub struct SteerObject {
    skel: SteerSkel<'static>,
    /// The value of the `steer_config` map's single entry: this is its only
    /// writer, so it keeps the copy it last wrote.
    config: steer_config,
    prog_id: u32,
    /// Whether `xdp_steer_dev` (bound to the interface, asking the driver for
    /// stripped VLAN tags) is loaded, and is the program to attach.
    vlan_metadata: bool,
}

// A worker thread may own the program; the skeleton is Send.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<SteerObject>();
    assert_send::<SteerProgram>();
};

/// Maps a libbpf error on `map` to a [`MapError`].
fn map_error(map: &'static str, op: &'static str) -> impl FnOnce(libbpf_rs::Error) -> MapError {
    move |source| MapError::Map { map, op, source }
}

impl SteerObject {
    /// Loads the program and its maps into the kernel (the verifier checks
    /// the program here). The maps start empty: nothing is steered.
    pub fn load() -> Result<SteerObject, LoadError> {
        Self::load_with(None)
    }

    /// Loads the program bound to the interface `ifindex` (see
    /// [`SteerObject::vlan_metadata`]): the kernel refuses it before Linux 6.3
    /// and attaches it in native mode only.
    fn load_bound(ifindex: u32) -> Result<SteerObject, LoadError> {
        Self::load_with(Some(ifindex))
    }

    fn load_with(bound_to: Option<u32>) -> Result<SteerObject, LoadError> {
        crate::logs::route_to_tracing();
        // The skeleton borrows storage for the libbpf object for its whole
        // life. Leaking this box (one pointer) gives it a 'static home
        // without self-reference; the object in it is still closed when the
        // skeleton is dropped, which closes the program and map fds.
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = SteerSkelBuilder::default().open(storage).map_err(LoadError::new)?;
        match bound_to {
            Some(ifindex) => {
                open.progs.xdp_steer_dev.set_ifindex(ifindex);
                open.progs.xdp_steer_dev.set_flags(BPF_F_XDP_HAS_FRAGS | BPF_F_XDP_DEV_BOUND_ONLY);
            }
            None => open.progs.xdp_steer_dev.set_autoload(false),
        }
        let skel = open.load().map_err(LoadError::new)?;
        let attached = if bound_to.is_some() { &skel.progs.xdp_steer_dev } else { &skel.progs.xdp_steer };
        let prog_id = Program::id_from_fd(attached.as_fd()).map_err(LoadError::new)?;
        // The constants document the C sizes; keep them honest.
        debug_assert_eq!(skel.maps.xsks.max_entries(), MAX_QUEUES);
        debug_assert_eq!(skel.maps.owned_addrs.max_entries(), MAX_OWNED_ADDRS);
        debug_assert_eq!(skel.maps.neighbors.max_entries(), MAX_NEIGHBORS);
        Ok(SteerObject { skel, config: steer_config::default(), prog_id, vlan_metadata: bound_to.is_some() })
    }

    /// Attaches the program to the interface `ifname` through a BPF link, in
    /// the native (driver) mode where the driver has one (veth does) and
    /// generic mode otherwise. The link belongs to this process: when it
    /// exits, even by `kill -9`, the kernel detaches the program.
    pub fn attach(self, ifname: &str) -> Result<SteerProgram, AttachError> {
        let ifindex = resolve(ifname)?;
        self.attach_index(ifname, ifindex)
    }

    fn attach_index(self, ifname: &str, ifindex: u32) -> Result<SteerProgram, AttachError> {
        let ifindex_c =
            i32::try_from(ifindex).map_err(|_| AttachError::NoSuchInterface { ifname: ifname.to_owned() })?;
        let prog = if self.vlan_metadata { &self.skel.progs.xdp_steer_dev } else { &self.skel.progs.xdp_steer };
        match prog.attach_xdp(ifindex_c) {
            Ok(link) => Ok(SteerProgram { link, object: self, ifindex, ifname: ifname.to_owned() }),
            Err(source) if source.kind() == ErrorKind::PermissionDenied => {
                Err(AttachError::PermissionDenied { source })
            }
            Err(source) => {
                // The kernel says EBUSY when a program is already attached,
                // but libbpf-rs keeps the errno out of reach: ask the
                // interface instead, which also names the other program.
                match Xdp::new(prog.as_fd()).query_id(ifindex_c, XdpFlags::NONE) {
                    Ok(prog_id) if prog_id != 0 => Err(AttachError::Busy { ifname: ifname.to_owned(), prog_id }),
                    _ => Err(AttachError::Attach { ifname: ifname.to_owned(), source }),
                }
            }
        }
    }

    /// The kernel's id of the loaded program (as `bpftool prog show` and
    /// `ip link` print it).
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Whether the program bound to its interface is the one attached (native
    /// XDP, Linux 6.3), which also passes frames whose VLAN tag the driver
    /// stripped into metadata (`passed_vlan`), where the kernel has the kfunc
    /// that reads it (Linux 6.8) and the driver implements it (veth does; one
    /// that does not reports no tag). Otherwise only tags left in the frame
    /// are seen.
    pub fn vlan_metadata(&self) -> bool {
        self.vlan_metadata
    }

    /// Steers traffic to `addr` as `mode` says (see [`AddressMode`]). Adding
    /// an owned address again changes its mode. Fails with E2BIG past
    /// [`MAX_OWNED_ADDRS`] addresses.
    pub fn add_owned_addr(&mut self, addr: Ipv4Addr, mode: AddressMode) -> Result<(), MapError> {
        // The key is the address as it sits in the IPv4 header (__be32).
        let map = &self.skel.maps.owned_addrs;
        map.update(&addr.octets(), &[mode.map_value()], MapFlags::ANY).map_err(map_error("owned_addrs", "update"))
    }

    /// The mode of `addr`, or `None` when synack does not own it.
    pub fn owned_addr_mode(&self, addr: Ipv4Addr) -> Result<Option<AddressMode>, MapError> {
        let value = self
            .skel
            .maps
            .owned_addrs
            .lookup(&addr.octets(), MapFlags::ANY)
            .map_err(map_error("owned_addrs", "lookup"))?;
        // Only this loader writes the map, and only values of AddressMode.
        Ok(value.and_then(|bytes| bytes.first().copied()).and_then(AddressMode::from_map_value))
    }

    /// Stops steering traffic to `addr`. Removing an address that is not
    /// owned is not an error.
    pub fn remove_owned_addr(&mut self, addr: Ipv4Addr) -> Result<(), MapError> {
        delete_if_present(&self.skel.maps.owned_addrs, &addr.octets()).map_err(map_error("owned_addrs", "delete"))
    }

    /// Steers TCP to `port` on owned addresses.
    pub fn add_listen_port(&mut self, port: u16) -> Result<(), MapError> {
        self.set_listen_port(port, true)
    }

    /// Stops steering TCP to `port` (unless it is in the local port range).
    pub fn remove_listen_port(&mut self, port: u16) -> Result<(), MapError> {
        self.set_listen_port(port, false)
    }

    fn set_listen_port(&mut self, port: u16, listening: bool) -> Result<(), MapError> {
        if port == 0 {
            return Err(MapError::PortZero);
        }
        let map = &self.skel.maps.listen_ports;
        let key = u32::from(port / PORT_WORD_BITS).to_ne_bytes();
        let bit = 1u64 << (port % PORT_WORD_BITS);
        let value = map.lookup(&key, MapFlags::ANY).map_err(map_error("listen_ports", "lookup"))?;
        // Array maps hold every key, zeroed at creation.
        let word = value.and_then(|bytes| <[u8; 8]>::try_from(bytes).ok()).map_or(0, u64::from_ne_bytes);
        let word = if listening { word | bit } else { word & !bit };
        map.update(&key, &word.to_ne_bytes(), MapFlags::ANY).map_err(map_error("listen_ports", "update"))
    }

    /// Steers TCP to ports `lo..=hi` on owned addresses: the ports synack
    /// opens connections from. When synack shares its address with the
    /// kernel, this range must stay out of `net.ipv4.ip_local_port_range`
    /// (or be listed in `net.ipv4.ip_local_reserved_ports`), or synack would
    /// take the replies to the kernel's own connections.
    pub fn set_local_port_range(&mut self, lo: u16, hi: u16) -> Result<(), MapError> {
        if lo == 0 || lo > hi {
            return Err(MapError::InvalidPortRange { lo, hi });
        }
        self.update_config(|config| {
            config.local_port_lo = lo;
            config.local_port_hi = hi;
        })
    }

    /// Steers no local port range (the initial state).
    pub fn clear_local_port_range(&mut self) -> Result<(), MapError> {
        self.update_config(|config| {
            config.local_port_lo = 0;
            config.local_port_hi = 0;
        })
    }

    /// For loss tests only: drops `permille` of every thousand frames the
    /// program would steer (0, the initial value, turns it off), counted in
    /// `dropped_test_knob`.
    pub fn set_drop_permille(&mut self, permille: u16) -> Result<(), MapError> {
        if permille > 1000 {
            return Err(MapError::InvalidPermille(permille));
        }
        self.update_config(|config| config.drop_permille = permille)
    }

    fn update_config(&mut self, change: impl FnOnce(&mut steer_config)) -> Result<(), MapError> {
        let mut config = self.config;
        change(&mut config);
        let map = &self.skel.maps.steer_config;
        map.update(&0u32.to_ne_bytes(), &config_bytes(&config), MapFlags::ANY)
            .map_err(map_error("steer_config", "update"))?;
        self.config = config;
        Ok(())
    }

    /// Makes `xsk_fd`, a bound AF_XDP socket, the destination of synack's
    /// frames that arrive on receive queue `queue`. The map holds its own
    /// reference to the socket until [`unregister_socket`] or the program's
    /// end.
    ///
    /// [`unregister_socket`]: SteerObject::unregister_socket
    pub fn register_socket(&mut self, queue: u32, xsk_fd: RawFd) -> Result<(), MapError> {
        let map = self.xsks_checked(queue)?;
        let fd = u32::try_from(xsk_fd).map_err(|_| MapError::RegisterSocket {
            queue,
            fd: xsk_fd,
            source: libbpf_rs::Error::from_raw_os_error(libc::EBADF),
        })?;
        map.update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY).map_err(|source| MapError::RegisterSocket {
            queue,
            fd: xsk_fd,
            source,
        })
    }

    /// Removes the socket of `queue`: synack's frames on that queue go to
    /// the kernel again (counted as `redirect_failed`). Removing an empty
    /// slot is not an error.
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), MapError> {
        let map = self.xsks_checked(queue)?;
        delete_if_present(map, &queue.to_ne_bytes()).map_err(map_error("xsks", "delete"))
    }

    fn xsks_checked(&self, queue: u32) -> Result<&MapMut<'static>, MapError> {
        let map = &self.skel.maps.xsks;
        let max = map.max_entries();
        if queue >= max {
            return Err(MapError::QueueOutOfRange { queue, max });
        }
        Ok(map)
    }

    /// The MAC address of the neighbour `addr`, as the program last saw it in
    /// an ARP request or reply (sender `addr`) whose target address synack
    /// owns, in either mode; `None` if it has seen none (or forgot it: the
    /// map keeps the [`MAX_NEIGHBORS`] most recently used). For a shared
    /// address the kernel receives those replies, so this is how synack
    /// learns the answers to the ARP requests it sends itself.
    ///
    /// The entry is what the wire said, unauthenticated, like any ARP cache.
    pub fn neighbor(&self, addr: Ipv4Addr) -> Result<Option<[u8; 6]>, MapError> {
        let value =
            self.skel.maps.neighbors.lookup(&addr.octets(), MapFlags::ANY).map_err(map_error("neighbors", "lookup"))?;
        Ok(value.and_then(|bytes| bytes.get(..6).and_then(|mac| <[u8; 6]>::try_from(mac).ok())))
    }

    /// A handle on the neighbour map that a worker thread can own: it reads what
    /// [`neighbor`](Self::neighbor) reads, without borrowing the program.
    pub fn neighbor_reader(&self) -> Result<NeighborReader, MapError> {
        let handle =
            libbpf_rs::MapHandle::try_from(&self.skel.maps.neighbors).map_err(map_error("neighbors", "dup"))?;
        Ok(NeighborReader { handle })
    }

    /// Forgets the neighbour `addr` (e.g. when synack finds its MAC stale).
    /// Forgetting an unknown neighbour is not an error.
    pub fn forget_neighbor(&mut self, addr: Ipv4Addr) -> Result<(), MapError> {
        delete_if_present(&self.skel.maps.neighbors, &addr.octets()).map_err(map_error("neighbors", "delete"))
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, MapError> {
        read_counters(&self.skel.maps.counters)
    }

    /// A reader of the counters that another thread can own (a metrics endpoint).
    pub fn counter_reader(&self) -> Result<CounterReader, MapError> {
        let handle = libbpf_rs::MapHandle::try_from(&self.skel.maps.counters).map_err(map_error("counters", "dup"))?;
        Ok(CounterReader { handle })
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` (as if it
    /// arrived on queue 0) and reports its verdict and the counters it moved.
    /// The program need not be attached. The kernel refuses frames shorter
    /// than 14 bytes (an Ethernet header) with EINVAL.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        let before = self.counters()?;
        let input = ProgramInput { data_in: Some(frame), ..ProgramInput::default() };
        let output = self
            .skel
            .progs
            .xdp_steer
            .test_run(input)
            .map_err(|source| TestRunError::Run { len: frame.len(), source })?;
        let after = self.counters()?;
        Ok(TestRun { action: XdpAction::from(output.return_value), counted: after.since(&before) })
    }
}

/// The index of the interface `ifname` in this thread's network namespace.
fn resolve(ifname: &str) -> Result<u32, AttachError> {
    sys::if_nametoindex(ifname).ok_or_else(|| AttachError::NoSuchInterface { ifname: ifname.to_owned() })
}

/// Deletes `key`, taking "not there" as done.
fn delete_if_present(map: &MapMut<'_>, key: &[u8]) -> Result<(), libbpf_rs::Error> {
    match map.delete(key) {
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// An owned handle on the program's neighbour map (see [`SteerObject::neighbor_reader`]).
#[derive(Debug)]
pub struct NeighborReader {
    handle: libbpf_rs::MapHandle,
}

impl NeighborReader {
    /// The MAC the program last saw `addr` announce in an ARP packet to an owned address.
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<[u8; 6]> {
        let value = self.handle.lookup(&addr.octets(), MapFlags::ANY).ok()??;
        value.get(..6).and_then(|mac| <[u8; 6]>::try_from(mac).ok())
    }
}

/// Reads the program's counters from its own handle of the map.
#[derive(Debug)]
pub struct CounterReader {
    handle: libbpf_rs::MapHandle,
}

impl CounterReader {
    /// The counters, summed over CPUs.
    pub fn read(&self) -> Result<Counters, MapError> {
        read_counters(&self.handle)
    }
}

/// Sums a per-CPU counter array over CPUs.
fn read_counters(map: &impl MapCore) -> Result<Counters, MapError> {
    let mut counters = Counters::default();
    for &counter in Counter::ALL {
        let per_cpu = map
            .lookup_percpu(&(counter as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(map_error("counters", "lookup"))?;
        for bytes in per_cpu.into_iter().flatten() {
            if let Ok(bytes) = <[u8; 8]>::try_from(bytes) {
                counters.add(counter, u64::from_ne_bytes(bytes));
            }
        }
    }
    Ok(counters)
}

/// The steering program attached to an interface through a BPF link.
///
/// Dropping it detaches the program; so does the end of the process, however
/// it ends. Configuration and counters are [`SteerObject`]'s methods, reached
/// through `Deref`.
pub struct SteerProgram {
    // Declared first, so dropped first: detach before closing the program.
    link: Link,
    object: SteerObject,
    ifindex: u32,
    ifname: String,
}

impl SteerProgram {
    /// Loads the program and attaches it to `ifname` (see
    /// [`SteerObject::load`] and [`SteerObject::attach`]). Nothing is
    /// steered until addresses, ports and sockets are configured.
    pub fn attach(ifname: &str) -> Result<SteerProgram, AttachError> {
        // Resolve the name first: a typo fails fast, without privileges.
        let ifindex = resolve(ifname)?;
        // The program bound to the interface sees stripped VLAN tags too; where
        // the kernel refuses to load or attach it (before Linux 6.8, generic
        // XDP), the unbound one, which sees tags in the frame only.
        let bound = SteerObject::load_bound(ifindex).map_err(AttachError::from);
        match bound.and_then(|object| object.attach_index(ifname, ifindex)) {
            Ok(program) => Ok(program),
            Err(error) => {
                tracing::debug!(
                    "the XDP program bound to {ifname} (stripped VLAN tags) is refused ({error}); \
                     attaching the unbound one, which sees VLAN tags in frames only"
                );
                SteerObject::load()?.attach_index(ifname, ifindex)
            }
        }
    }

    /// The index of the interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The name of the interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Detaches the program from the interface and unloads it (the same as
    /// dropping the value).
    pub fn detach(self) {
        drop(self);
    }
}

impl Drop for SteerProgram {
    fn drop(&mut self) {
        // Closing the link's fd (when the field drops) detaches only if no
        // other process holds a copy of it; BPF_LINK_DETACH detaches in any
        // case. Its failure (e.g. the interface is already gone) leaves
        // nothing to do.
        let _ = self.link.detach();
    }
}

impl Deref for SteerProgram {
    type Target = SteerObject;

    fn deref(&self) -> &SteerObject {
        &self.object
    }
}

impl DerefMut for SteerProgram {
    fn deref_mut(&mut self) -> &mut SteerObject {
        &mut self.object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_follow_the_c_layout() {
        let config = steer_config { local_port_lo: 0x0102, local_port_hi: 0x0304, drop_permille: 0x0506 };
        let bytes = config_bytes(&config);
        assert_eq!(u16::from_ne_bytes([bytes[0], bytes[1]]), 0x0102);
        assert_eq!(u16::from_ne_bytes([bytes[2], bytes[3]]), 0x0304);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 0x0506);
    }

    #[test]
    fn address_modes_round_trip_through_the_map_value() {
        for mode in [AddressMode::Shared, AddressMode::Dedicated] {
            assert_eq!(AddressMode::from_map_value(mode.map_value()), Some(mode));
        }
        assert_eq!(AddressMode::Dedicated.map_value(), 0b111);
        assert_eq!(AddressMode::from_map_value(0b001), None);
    }

    #[test]
    fn xdp_actions_follow_the_uapi() {
        assert_eq!(XdpAction::from(2), XdpAction::Pass);
        assert_eq!(XdpAction::from(4), XdpAction::Redirect);
        assert_eq!(XdpAction::from(9), XdpAction::Unknown(9));
    }
}
