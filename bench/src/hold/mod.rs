//! `synack-hold`: the Linux side of the `concurrency` case. [`connect`] opens many idle
//! connections from the kernel's stack and holds them; [`accept`] is a Linux server that
//! accepts connections and holds them (epoll, no data). Both print [`Line`]s, one JSON object
//! a line, which the case reads ([`last_line`]); both raise `RLIMIT_NOFILE` first
//! ([`raise_nofile`]).

pub mod accept;
pub mod connect;

use std::io::Write;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A line `synack-hold` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// The server listens.
    Ready,
    /// The client's counts so far (`t`: seconds since it started).
    Progress { t: f64, established: u64, failed: u64, in_flight: u64 },
    /// The client finished opening: every connection is established or failed. `errors`:
    /// failures by cause (errno name or `timeout`).
    Opened { t: f64, established: u64, failed: u64, errors: Vec<(String, u64)> },
    /// The server's counts so far: connections accepted, and those the peer has closed since.
    Accepted { t: f64, accepted: u64, closed: u64 },
    /// A fatal error; the program exits non-zero after it.
    Failed { message: String },
}

impl Line {
    /// Prints the line on stdout and flushes (the reader is a pipe).
    pub fn print(&self) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (the case stopped reading) is no reason to drop the connections.
        let _ = serde_json::to_writer(&mut out, self);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// The last line of `output` that `pick` accepts; lines that are not [`Line`]s are skipped.
pub fn last_line<T>(output: &str, pick: impl Fn(Line) -> Option<T>) -> Option<T> {
    output.lines().rev().filter_map(|l| serde_json::from_str::<Line>(l).ok()).find_map(pick)
}

/// Raises `RLIMIT_NOFILE` (soft and hard) to `files`, or leaves it when it is already that
/// high. Needs root (or CAP_SYS_RESOURCE) beyond the hard limit, and `fs.nr_open` >= `files`.
pub fn raise_nofile(files: u64) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current.is_none_or(|c| c >= files) {
        return Ok(());
    }
    let maximum = now.maximum.map(|m| m.max(files));
    setrlimit(Resource::Nofile, Rlimit { current: Some(files), maximum }).map_err(|e| {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap_or_default();
        anyhow::anyhow!("cannot raise RLIMIT_NOFILE to {files} ({e}; fs.nr_open is {}; root needed)", nr_open.trim())
    })
}

/// The file descriptors a process started from here may open: the hard `RLIMIT_NOFILE`, first
/// raised to `fs.nr_open` when this process may (CAP_SYS_RESOURCE; children inherit it).
/// Without that capability, a case needs several processes per side for many connections.
pub fn files_per_process() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let nr_open: u64 =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20);
    let now = getrlimit(Resource::Nofile);
    if now.maximum.is_some_and(|m| m < nr_open) {
        // Refused without CAP_SYS_RESOURCE: then the hard limit stays what it is.
        let _ = setrlimit(Resource::Nofile, Rlimit { current: now.current, maximum: Some(nr_open) });
    }
    getrlimit(Resource::Nofile).maximum.unwrap_or(nr_open).min(nr_open)
}

/// File descriptors a process needs beyond its sockets: stdio, the epoll, a listener, a
/// margin.
pub const SPARE_FILES: u64 = 64;

/// A non-blocking, close-on-exec TCP/IPv4 socket.
fn tcp_socket() -> anyhow::Result<std::os::fd::OwnedFd> {
    use anyhow::Context;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    rustix::net::socket_with(AddressFamily::INET, SocketType::STREAM, flags, None).context("socket()")
}

/// Seconds since `start`.
fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_the_last_one_wins() {
        let mut text = String::from("not json\n");
        for line in [
            Line::Ready,
            Line::Progress { t: 0.5, established: 10, failed: 0, in_flight: 4 },
            Line::Progress { t: 1.0, established: 20, failed: 1, in_flight: 2 },
            Line::Opened { t: 1.2, established: 22, failed: 1, errors: vec![("ECONNREFUSED".into(), 1)] },
        ] {
            text.push_str(&serde_json::to_string(&line).unwrap());
            text.push('\n');
        }
        let established = last_line(&text, |l| match l {
            Line::Progress { established, .. } => Some(established),
            _ => None,
        });
        assert_eq!(established, Some(20));
        let opened = last_line(&text, |l| matches!(l, Line::Opened { .. }).then_some(l));
        assert_eq!(
            opened,
            Some(Line::Opened { t: 1.2, established: 22, failed: 1, errors: vec![("ECONNREFUSED".into(), 1)] })
        );
        assert_eq!(last_line(&text, |l| matches!(l, Line::Failed { .. }).then_some(())), None);
        assert!(text.contains(r#"{"type":"ready"}"#));
    }
}
