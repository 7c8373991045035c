//! The one registry of what a run must remove however it ends: normally, on an error, on a
//! panic, or on a signal.
//!
//! Every namespace ([`netns::Netns`](crate::netns::Netns)) and every child process
//! ([`process::Proc`](crate::process::Proc), [`process::ChildGuard`](crate::process::ChildGuard))
//! is registered here by its guard. Three paths remove them:
//! - the guard's `Drop`, on a normal end, an error or an unwinding panic (the usual path);
//! - the panic hook of [`install`], for binaries built with `panic = "abort"` (the benchmark),
//!   where `Drop` would not run;
//! - the signal thread of [`install`]: the first SIGINT/SIGTERM/SIGHUP only sets
//!   [`interrupted`], which the benchmark's waits poll, so the run unwinds through its guards;
//!   a second signal cleans up at once and exits (status 130).

use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// Something to remove at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A network namespace (with its interfaces and any process left inside).
    Netns(String),
    /// A child process group, led by the child's pid.
    ProcessGroup(i32),
    /// A child process in our own process group.
    Process(i32),
}

static REGISTRY: Mutex<Vec<(u64, Resource)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn interrupted_flag() -> &'static Arc<AtomicBool> {
    INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

fn registry() -> MutexGuard<'static, Vec<(u64, Resource)>> {
    // A panic while the lock was held must not stop the cleanup.
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True once SIGINT, SIGTERM or SIGHUP arrived (after [`install`]): stop and return.
pub fn interrupted() -> bool {
    interrupted_flag().load(Ordering::Relaxed)
}

/// The error a step returns when the run was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a signal")
    }
}

impl std::error::Error for Interrupted {}

/// `Err(Interrupted)` once a signal arrived.
pub fn check_interrupted() -> Result<(), Interrupted> {
    if interrupted() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps for `duration`, waking early (with an error) when the run is interrupted.
pub fn sleep(duration: Duration) -> Result<(), Interrupted> {
    let deadline = Instant::now() + duration;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Installs the signal thread and the panic hook; `who` prefixes their messages. Call once,
/// first thing in `main`.
pub fn install(who: &'static str) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    let flag = Arc::clone(interrupted_flag());
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        // The first signal asks the run to unwind; the second one forces the cleanup.
        for (n, signal) in signals.forever().take(2).enumerate() {
            if n == 0 {
                eprintln!("\n{who}: signal {signal}: stopping and cleaning up (again to force)");
                flag.store(true, Ordering::Relaxed);
            } else {
                eprintln!("{who}: second signal: cleaning up now");
                cleanup_all();
                std::process::exit(130);
            }
        }
    })?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        eprintln!("{who}: panic: removing namespaces and child processes");
        cleanup_all();
    }));
    Ok(())
}

/// Removes everything still registered, newest first. Used by the panic hook and the second
/// signal; the guards do the same for their own resource.
pub fn cleanup_all() {
    let resources: Vec<Resource> = registry().drain(..).rev().map(|(_, r)| r).collect();
    let is_process = |r: &Resource| matches!(r, Resource::ProcessGroup(_) | Resource::Process(_));
    // Processes first (they may sit in the namespaces), then namespaces.
    for resource in &resources {
        match resource {
            Resource::ProcessGroup(pgid) => signal_group(*pgid, Signal::TERM),
            Resource::Process(pid) => signal_process(*pid, Signal::TERM),
            Resource::Netns(_) => {}
        }
    }
    if resources.iter().any(is_process) {
        std::thread::sleep(Duration::from_millis(300));
    }
    for resource in &resources {
        match resource {
            Resource::ProcessGroup(pgid) => signal_group(*pgid, Signal::KILL),
            Resource::Process(pid) => signal_process(*pid, Signal::KILL),
            Resource::Netns(name) => delete_netns(name),
        }
    }
}

/// A registration; [`Registration::release`] removes it once the guard cleaned up itself.
#[derive(Debug)]
pub struct Registration(u64);

/// Registers `resource` for cleanup by the panic hook and the signal thread.
pub fn register(resource: Resource) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry().push((id, resource));
    Registration(id)
}

/// Whether `resource` is registered now.
pub fn registry_contains(resource: &Resource) -> bool {
    registry().iter().any(|(_, r)| r == resource)
}

impl Registration {
    /// Forgets the registration (the resource is gone).
    pub fn release(self) {
        registry().retain(|(id, _)| *id != self.0);
    }
}

/// Sends `signal` to the process group `pgid`; a group already gone is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, signal);
    }
}

/// Sends `signal` to the process `pid`; a process already gone is fine.
pub fn signal_process(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, signal);
    }
}

/// Kills what runs in the namespace `name` (SIGKILL, waiting up to 3 s for the processes to
/// go), then deletes it; its interfaces go with it.
pub fn delete_netns(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = namespace_pids(name);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            signal_process(pid, Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("ip").args(["netns", "delete", name]).stderr(std::process::Stdio::null()).status();
}

/// The processes in namespace `name` (`ip netns pids`).
pub fn namespace_pids(name: &str) -> Vec<i32> {
    match Command::new("ip").args(["netns", "pids", name]).stderr(std::process::Stdio::null()).output() {
        Ok(output) => {
            String::from_utf8_lossy(&output.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_come_and_go() {
        let registration = register(Resource::Netns("sxtk-test-not-created".into()));
        assert!(registry().iter().any(|(_, r)| *r == Resource::Netns("sxtk-test-not-created".into())));
        registration.release();
        assert!(!registry().iter().any(|(_, r)| *r == Resource::Netns("sxtk-test-not-created".into())));
    }
}
