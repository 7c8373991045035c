//! The Linux server: accepts connections and holds them, as an event-driven server holds idle
//! clients: every accepted socket non-blocking in one epoll set (edge-triggered), read and
//! closed when its peer closes or resets it. It sends nothing; its peers send nothing. The port
//! is `SO_REUSEPORT`: a case that needs more sockets than one process may open runs several.

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::event::epoll;
use rustix::io::Errno;
use rustix::net::SocketFlags;

use super::{raise_nofile, seconds_since, tcp_socket, Line, SPARE_FILES};

/// What to serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddrV4,
    /// Connections it can hold (sizes `RLIMIT_NOFILE`).
    pub max: u64,
    /// `listen()` backlog (the kernel caps it at `net.core.somaxconn`).
    pub backlog: i32,
    /// Seconds between `accepted` lines while the count moves.
    pub progress_every: Duration,
}

/// The listener's epoll key (no socket has this fd number).
const LISTENER: u64 = u64::MAX;

/// Listens, prints `ready`, then accepts and holds until killed. Returns only on failure.
pub fn run(config: &Config) -> Result<()> {
    raise_nofile(config.max + SPARE_FILES)?;
    let listener = tcp_socket()?;
    rustix::net::sockopt::set_socket_reuseaddr(&listener, true).context("SO_REUSEADDR")?;
    // Several processes share the port when one may not hold every connection (its file
    // limit); the kernel spreads the connections over them by the hash of the 4-tuple.
    rustix::net::sockopt::set_socket_reuseport(&listener, true).context("SO_REUSEPORT")?;
    rustix::net::bind(&listener, &config.listen).with_context(|| format!("bind({})", config.listen))?;
    rustix::net::listen(&listener, config.backlog).context("listen()")?;
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?;
    epoll::add(&epoll, &listener, epoll::EventData::new_u64(LISTENER), epoll::EventFlags::IN)
        .context("epoll_ctl(ADD)")?;
    Line::Ready.print();
    let start = Instant::now();
    // The sockets by fd number (an Option<OwnedFd> is 4 bytes).
    let mut conns: Vec<Option<OwnedFd>> = Vec::new();
    let (mut accepted, mut closed) = (0u64, 0u64);
    let mut printed = (0u64, 0u64);
    let mut next_progress = start;
    let mut events = Vec::with_capacity(1024);
    let mut scratch = [0u8; 512];
    let wait = rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
    loop {
        events.clear();
        match epoll::wait(&epoll, rustix::buffer::spare_capacity(&mut events), Some(&wait)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("epoll_wait"),
        }
        for event in &events {
            let key = event.data.u64();
            if key == LISTENER {
                loop {
                    let fd = match rustix::net::accept_with(&listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                        Ok(fd) => fd,
                        Err(Errno::AGAIN) | Err(Errno::INTR) | Err(Errno::CONNABORTED) => break,
                        Err(e) => {
                            let message = format!("accept() failed after {accepted} connections: {e}");
                            Line::Failed { message: message.clone() }.print();
                            bail!(message);
                        }
                    };
                    let raw = fd.as_raw_fd();
                    epoll::add(
                        &epoll,
                        &fd,
                        epoll::EventData::new_u64(raw as u64),
                        epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET,
                    )
                    .context("epoll_ctl(ADD)")?;
                    let slot = usize::try_from(raw)?;
                    if conns.len() <= slot {
                        conns.resize_with(slot + 1, || None);
                    }
                    conns[slot] = Some(fd);
                    accepted += 1;
                }
            } else if let Some(slot) = usize::try_from(key).ok().and_then(|k| conns.get_mut(k)) {
                // Edge-triggered: read until the socket would block, or its end.
                let Some(fd) = slot.as_ref() else { continue };
                let ended = loop {
                    match rustix::io::read(fd, &mut scratch) {
                        Ok(0) => break true,
                        Ok(_) => {}
                        Err(Errno::AGAIN) => break false,
                        Err(Errno::INTR) => {}
                        Err(_) => break true,
                    }
                };
                if ended {
                    *slot = None;
                    closed += 1;
                }
            }
        }
        let now = Instant::now();
        if (accepted, closed) != printed && now >= next_progress {
            Line::Accepted { t: seconds_since(start), accepted, closed }.print();
            printed = (accepted, closed);
            next_progress = now + config.progress_every;
        }
    }
}
