//! Cleanup that happens however a run ends: normally, on an error, on a panic, or on Ctrl-C.
//!
//! Every namespace and every child process group the benchmark creates is registered here
//! by its guard. Three paths remove them:
//! - the guard's `Drop`, on a normal end or an error (the usual path);
//! - the panic hook, because release builds abort on panic (`panic = "abort"`), so `Drop`
//!   would not run;
//! - the signal thread: the first SIGINT/SIGTERM/SIGHUP only sets [`interrupted`], which
//!   every wait in the benchmark polls, so the run unwinds through its guards; a second
//!   signal cleans up at once and exits (status 130).
//!
//! Children run in process groups of their own, so a terminal's Ctrl-C reaches only the
//! benchmark, which then stops them in order.

use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

/// Something to remove at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A network namespace (with its interfaces and any process left inside).
    Netns(String),
    /// A child process group, led by the child's pid.
    ProcessGroup(i32),
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

/// True once SIGINT, SIGTERM or SIGHUP arrived: stop what you are doing and return.
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

/// Installs the signal thread and the panic hook. Call once, first thing in `main`.
pub fn install() -> io::Result<()> {
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
                eprintln!("\nsysbench: signal {signal}: stopping and cleaning up (again to force)");
                flag.store(true, Ordering::Relaxed);
            } else {
                eprintln!("sysbench: second signal: cleaning up now");
                cleanup_all();
                std::process::exit(130);
            }
        }
    })?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        eprintln!("sysbench: panic: removing namespaces and child processes");
        cleanup_all();
    }));
    Ok(())
}

/// Removes everything still registered, newest first. Used by the panic hook and the second
/// signal; the guards do the same for their own resource.
pub fn cleanup_all() {
    let resources: Vec<Resource> = registry().drain(..).rev().map(|(_, r)| r).collect();
    // Processes first (they may sit in the namespaces), then namespaces.
    for resource in &resources {
        if let Resource::ProcessGroup(pgid) = resource {
            signal_group(*pgid, Signal::TERM);
        }
    }
    if resources.iter().any(|r| matches!(r, Resource::ProcessGroup(_))) {
        std::thread::sleep(Duration::from_millis(300));
    }
    for resource in &resources {
        match resource {
            Resource::ProcessGroup(pgid) => signal_group(*pgid, Signal::KILL),
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

/// Kills what runs in the namespace `name`, then deletes it (its interfaces go with it).
pub fn delete_netns(name: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Some(pid) = pid.parse().ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(std::process::Stdio::null()).status();
}

/// A child process in its own process group, stopped (SIGTERM, then SIGKILL after
/// `grace`) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    registration: Option<Registration>,
    /// How long the child gets to exit after SIGTERM.
    pub grace: Duration,
}

impl ChildGuard {
    /// Spawns `command` in a new process group and registers it.
    pub fn spawn(command: &mut Command) -> io::Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn()?;
        let registration = register(Resource::ProcessGroup(child.id() as i32));
        Ok(ChildGuard { child: Some(child), registration: Some(registration), grace: Duration::from_secs(3) })
    }

    /// The child's pid (also its process group).
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until drop")
    }

    /// Whether the child has exited (and its status), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child_mut().try_wait()
    }

    /// Waits until the child exits or `timeout` passes (then `Ok(None)`); an interrupt
    /// stops the wait with an error.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>, WaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait().map_err(WaitError::Io)? {
                return Ok(Some(status));
            }
            if interrupted() {
                return Err(WaitError::Interrupted);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the child: SIGTERM to its group, up to `grace` to exit, then SIGKILL. Any
    /// process left in the group is killed too. Returns the child's exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let pgid = child.id() as i32;
        let mut status = child.try_wait().ok().flatten();
        if status.is_none() {
            signal_group(pgid, Signal::TERM);
            let deadline = Instant::now() + self.grace;
            while status.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                status = child.try_wait().ok().flatten();
            }
        }
        // The leader may be gone while the rest of its group (nginx's worker) is not.
        signal_group(pgid, Signal::KILL);
        if status.is_none() {
            status = child.wait().ok();
        }
        if let Some(registration) = self.registration.take() {
            registration.release();
        }
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why waiting for a child ended.
#[derive(Debug)]
pub enum WaitError {
    /// The run was interrupted.
    Interrupted,
    /// `waitpid` failed.
    Io(io::Error),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Interrupted => Interrupted.fmt(f),
            WaitError::Io(e) => write!(f, "cannot wait for a child: {e}"),
        }
    }
}

impl std::error::Error for WaitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_come_and_go() {
        let before = registry().len();
        let registration = register(Resource::Netns("sxsb-test-not-created".into()));
        assert_eq!(registry().len(), before + 1);
        registration.release();
        assert_eq!(registry().len(), before);
    }

    #[test]
    fn a_child_is_stopped_on_drop() {
        let mut guard = ChildGuard::spawn(Command::new("sleep").arg("30")).unwrap();
        let pid = guard.id();
        assert!(guard.try_wait().unwrap().is_none());
        drop(guard);
        // The child was reaped, so its pid no longer names a process of ours.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| !s.contains("(sleep)"))
        );
    }
}
