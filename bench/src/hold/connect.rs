//! The client: opens `count` connections from the kernel's stack, non-blocking, at most
//! `in_flight` connects at a time, each bound to an explicit source address and port, then
//! holds them until it is killed. `SO_LINGER` 0 on every socket: when the process ends, each
//! connection ends with an RST, leaving no TIME_WAIT on either side for the next run.
//!
//! Connection `i` (of the case's whole range) leaves from `sources[i % S]`, port
//! `port_base + i / S`: explicit ports need no ephemeral-port search (which slows down as the
//! range fills) and no `ip_local_port_range`, and the processes of one case, each given its own
//! range of `i`, never collide.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::event::epoll;
use rustix::io::Errno;

use super::{raise_nofile, seconds_since, tcp_socket, Line, SPARE_FILES};

/// What to open.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server.
    pub target: SocketAddrV4,
    /// Source addresses, used round-robin; each must be on the client's interface.
    pub sources: Vec<Ipv4Addr>,
    /// Source port of the first connection of each address.
    pub port_base: u16,
    /// This process's connections: indices `first..first + count` of the case's range.
    pub first: u64,
    /// See `first`.
    pub count: u64,
    /// Connects in flight at most.
    pub in_flight: usize,
    /// A connect not established by then fails (`timeout`).
    pub connect_timeout: Duration,
    /// Give up (exit non-zero) after this many failures.
    pub max_failed: u64,
    /// Give up when nothing completes (established or failed) for this long.
    pub stall_timeout: Duration,
    /// Seconds between progress lines.
    pub progress_every: Duration,
}

impl Config {
    /// The source address and port of connection `index`, or `None` past port 65535.
    pub fn source_of(&self, index: u64) -> Option<SocketAddrV4> {
        let per = self.sources.len() as u64;
        let ip = *self.sources.get(usize::try_from(index % per.max(1)).ok()?)?;
        let port = u16::try_from(u64::from(self.port_base) + index / per).ok()?;
        Some(SocketAddrV4::new(ip, port))
    }
}

/// A connect under way.
struct Pending {
    fd: OwnedFd,
    started: Instant,
}

/// Counts and the sockets held.
struct Opener {
    epoll: OwnedFd,
    /// Connects under way by file descriptor number.
    pending: HashMap<i32, Pending>,
    /// (fd, start) in start order, for the timeouts; stale entries (fd done) are skipped.
    order: VecDeque<(i32, Instant)>,
    established: Vec<OwnedFd>,
    failed: u64,
    errors: HashMap<String, u64>,
    last_completion: Instant,
}

impl Opener {
    fn fail(&mut self, cause: String) {
        self.failed += 1;
        *self.errors.entry(cause).or_default() += 1;
        self.last_completion = Instant::now();
    }

    /// Starts connection `index`; an error here is fatal (no socket, a bad address).
    fn start(&mut self, config: &Config, index: u64) -> Result<()> {
        let source = config.source_of(index).context("source ports run past 65535")?;
        let fd = tcp_socket()?;
        rustix::net::sockopt::set_socket_linger(&fd, Some(Duration::ZERO)).context("SO_LINGER")?;
        rustix::net::bind(&fd, &source).with_context(|| format!("bind({source})"))?;
        match rustix::net::connect(&fd, &config.target) {
            Ok(()) => {
                self.established.push(fd);
                self.last_completion = Instant::now();
            }
            Err(Errno::INPROGRESS) => {
                let raw = fd.as_raw_fd();
                epoll::add(&self.epoll, &fd, epoll::EventData::new_u64(raw as u64), epoll::EventFlags::OUT)
                    .context("epoll_ctl(ADD)")?;
                let started = Instant::now();
                self.order.push_back((raw, started));
                self.pending.insert(raw, Pending { fd, started });
            }
            Err(e) => self.fail(errno_name(e)),
        }
        Ok(())
    }

    /// The connect on `raw` finished, one way or the other.
    fn complete(&mut self, raw: i32) -> Result<()> {
        let Some(p) = self.pending.remove(&raw) else { return Ok(()) };
        epoll::delete(&self.epoll, &p.fd).context("epoll_ctl(DEL)")?;
        match rustix::net::sockopt::socket_error(&p.fd) {
            Ok(Ok(())) => {
                self.established.push(p.fd);
                self.last_completion = Instant::now();
            }
            Ok(Err(e)) | Err(e) => self.fail(errno_name(e)),
        }
        Ok(())
    }

    /// Fails the connects older than `timeout`.
    fn expire(&mut self, timeout: Duration) {
        let now = Instant::now();
        while let Some(&(raw, started)) = self.order.front() {
            match self.pending.get(&raw) {
                Some(p) if p.started == started => {
                    if now.duration_since(started) < timeout {
                        break;
                    }
                    // Closing takes it out of the epoll set too.
                    self.pending.remove(&raw);
                    self.fail("timeout".to_owned());
                }
                // Done already (its fd number may serve a newer connect, with its own entry).
                _ => {}
            }
            self.order.pop_front();
        }
    }

    fn progress(&self, start: Instant) -> Line {
        Line::Progress {
            t: seconds_since(start),
            established: self.established.len() as u64,
            failed: self.failed,
            in_flight: self.pending.len() as u64,
        }
    }
}

/// `ECONNREFUSED` and the like.
fn errno_name(e: Errno) -> String {
    let io = std::io::Error::from(e);
    format!("errno {} ({io})", e.raw_os_error())
}

/// Opens the connections, prints progress and the `opened` line, then holds them until the
/// process is killed. Returns only on failure.
pub fn run(config: &Config) -> Result<()> {
    if config.sources.is_empty() || config.count == 0 {
        bail!("nothing to open: {} source addresses, {} connections", config.sources.len(), config.count);
    }
    let last = config.first + config.count - 1;
    config.source_of(last).with_context(|| {
        format!("connection {last} needs a source port past 65535 with {} addresses", config.sources.len())
    })?;
    raise_nofile(config.count + SPARE_FILES)?;
    let start = Instant::now();
    let mut opener = Opener {
        epoll: epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?,
        pending: HashMap::with_capacity(config.in_flight),
        order: VecDeque::with_capacity(config.in_flight),
        established: Vec::with_capacity(usize::try_from(config.count)?),
        failed: 0,
        errors: HashMap::new(),
        last_completion: start,
    };
    let mut next = config.first;
    let end = config.first + config.count;
    let mut events = Vec::with_capacity(1024);
    let mut next_progress = start + config.progress_every;
    let wait = rustix::time::Timespec { tv_sec: 0, tv_nsec: 20_000_000 };
    loop {
        while opener.pending.len() < config.in_flight && next < end {
            opener.start(config, next)?;
            next += 1;
        }
        events.clear();
        epoll::wait(&opener.epoll, rustix::buffer::spare_capacity(&mut events), Some(&wait)).or_else(|e| {
            if e == Errno::INTR {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        for event in &events {
            opener.complete(event.data.u64() as i32)?;
        }
        opener.expire(config.connect_timeout);
        let done = opener.established.len() as u64 + opener.failed;
        if Instant::now() >= next_progress || done == config.count {
            opener.progress(start).print();
            next_progress += config.progress_every;
        }
        if opener.failed > config.max_failed {
            let message = format!(
                "{} of {} connections failed (more than {}): {:?}",
                opener.failed, config.count, config.max_failed, opener.errors
            );
            Line::Failed { message: message.clone() }.print();
            bail!(message);
        }
        if done == config.count {
            break;
        }
        if opener.last_completion.elapsed() > config.stall_timeout {
            let message = format!(
                "no connection completed for {:?}: {} established, {} failed, {} in flight",
                config.stall_timeout,
                opener.established.len(),
                opener.failed,
                opener.pending.len()
            );
            Line::Failed { message: message.clone() }.print();
            bail!(message);
        }
    }
    let mut errors: Vec<(String, u64)> = opener.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
    errors.sort();
    Line::Opened {
        t: seconds_since(start),
        established: opener.established.len() as u64,
        failed: opener.failed,
        errors,
    }
    .print();
    // Hold: `opener` owns the sockets to the end of this scope, which never comes; they close
    // (with an RST each) when the process is killed.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_go_round_robin_and_ports_climb_per_round() {
        let config = Config {
            target: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 9000),
            sources: vec![Ipv4Addr::new(198, 18, 1, 10), Ipv4Addr::new(198, 18, 1, 11)],
            port_base: 10_000,
            first: 0,
            count: 4,
            in_flight: 2,
            connect_timeout: Duration::from_secs(1),
            max_failed: 0,
            stall_timeout: Duration::from_secs(1),
            progress_every: Duration::from_secs(1),
        };
        let s = |i| config.source_of(i).unwrap().to_string();
        assert_eq!(
            [s(0), s(1), s(2), s(3)],
            ["198.18.1.10:10000", "198.18.1.11:10000", "198.18.1.10:10001", "198.18.1.11:10001"]
        );
        // 2 addresses x (65535 - 10000 + 1) ports, then nothing.
        assert!(config.source_of(2 * 55_536 - 1).is_some());
        assert_eq!(config.source_of(2 * 55_536), None);
    }
}
