//! Child processes with captured output, bounded waits, and guards that stop them, all
//! registered with [`cleanup`](crate::cleanup):
//!
//! - [`Proc`]: a child with its stdout and stderr collected and its stdout lines delivered to
//!   [`Proc::wait_for_line`], stopped on drop (SIGTERM, then SIGKILL); [`run`] and [`run_ok`]
//!   run a command to completion with a time limit. What the end-to-end tests use.
//! - [`ChildGuard`]: a child in a process group of its own, the group stopped on drop, its waits
//!   cut short by [`cleanup::interrupted`]. What the benchmark builds its servers and load
//!   generators on.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::cleanup::{self, Registration, Resource};

/// How often bounded waits poll a child's state.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long a guard waits after SIGTERM before it sends SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// SIGTERM, for [`Proc::signal`].
pub const SIGTERM: i32 = Signal::TERM.as_raw();
/// SIGKILL, for [`Proc::signal`].
pub const SIGKILL: i32 = Signal::KILL.as_raw();

/// What a finished (or abandoned) process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// Label given at spawn, for messages.
    pub label: String,
    /// Exit status; `None` when the process had to be killed after a timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Output {
    /// Exited by itself with status 0.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// Stdout and stderr together, for messages and keyword checks.
    pub fn all_text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// A readable account for assertion messages.
    pub fn describe(&self) -> String {
        let status = match (&self.status, self.timed_out) {
            (_, true) => "TIMED OUT (killed)".to_string(),
            (Some(s), _) => s.to_string(),
            (None, _) => "killed".to_string(),
        };
        format!(
            "`{}`: {} after {:.3} s\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.label,
            status,
            self.elapsed.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics with the full output unless the process succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {}", self.describe());
        self
    }
}

/// A spawned child whose stdout and stderr are collected by threads. Its stdout lines are also
/// delivered one by one for `wait_for_line`. Dropping it stops the child (SIGTERM, then SIGKILL
/// after `STOP_GRACE`).
pub struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    status: Option<ExitStatus>,
    registration: Option<Registration>,
}

fn collect<R: Read + Send + 'static>(
    stream: R,
    sink: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    sink.lock().unwrap().push_str(&line);
                    if let Some(tx) = &lines {
                        let _ = tx.send(line.trim_end().to_string());
                    }
                }
            }
        }
    })
}

/// Renders a command line for messages.
pub fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

impl Proc {
    /// Spawns `cmd` with piped stdin, stdout and stderr. Panics if it cannot be started.
    #[track_caller]
    pub fn spawn(mut cmd: Command) -> Proc {
        let label = command_line(&cmd);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start `{label}`: {e}"));
        let registration = Some(cleanup::register(Resource::Process(child.id() as i32)));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), Some(tx)),
            collect(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        Proc {
            label,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            lines,
            readers,
            started: Instant::now(),
            status: None,
            registration,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Stdout and stderr so far, as an `Output` (status if it has exited).
    pub fn snapshot(&mut self) -> Output {
        let _ = self.try_status();
        Output {
            label: self.label.clone(),
            status: self.status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
            elapsed: self.started.elapsed(),
            timed_out: false,
        }
    }

    /// The exit status if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
            if self.status.is_some() {
                // Reaped: the pid may be reused, so the registry must forget it.
                if let Some(registration) = self.registration.take() {
                    registration.release();
                }
            }
        }
        self.status
    }

    /// Waits up to `timeout` for a stdout line containing `needle`, and returns it. Fails with
    /// the output so far if the child exits first or the time runs out.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no line containing `{needle}` within {timeout:?}: {}",
                    self.snapshot().describe()
                ));
            }
            match self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the child is exiting; give it a moment to be reaped.
                    let _ = self.wait_exit(Duration::from_millis(500));
                    return Err(format!("exited before printing `{needle}`: {}", self.snapshot().describe()));
                }
            }
        }
    }

    /// Writes to the child's stdin (and flushes).
    pub fn write_stdin(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Sends `signal` (e.g. `SIGTERM`) to the child if it is still running.
    pub fn signal(&mut self, signal: i32) {
        if self.try_status().is_none() {
            // The pid of our own child, which has not been reaped yet.
            match Signal::from_named_raw(signal) {
                Some(signal) => cleanup::signal_process(self.child.id() as i32, signal),
                None => panic!("not a signal: {signal}"),
            }
        }
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn finish(&mut self, timed_out: bool) -> Output {
        // The readers end when the pipes close, which follows the exit (unless a grandchild
        // holds them: bound the wait).
        let deadline = Instant::now() + Duration::from_secs(2);
        for r in self.readers.drain(..) {
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(POLL_INTERVAL);
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        let mut out = self.snapshot();
        out.timed_out = timed_out;
        out
    }

    /// Waits up to `timeout` for the child to exit by itself; kills it if it does not.
    pub fn wait_output(mut self, timeout: Duration) -> Output {
        let exited = self.wait_exit(timeout).is_some();
        if !exited {
            self.signal(SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(2));
        }
        self.finish(!exited)
    }

    /// Stops the child: SIGTERM, then SIGKILL after `grace`. Returns its complete output;
    /// `timed_out` is set if SIGKILL was needed.
    pub fn stop(mut self, grace: Duration) -> Output {
        self.signal(SIGTERM);
        let exited = self.wait_exit(grace).is_some();
        if !exited {
            self.signal(SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(2));
        }
        self.finish(!exited)
    }

    /// SIGKILL now, and reap.
    pub fn kill9(&mut self) {
        self.signal(SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(2));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.signal(SIGTERM);
            if self.wait_exit(STOP_GRACE).is_none() {
                self.signal(SIGKILL);
                let _ = self.wait_exit(Duration::from_secs(2));
            }
        }
        if let Some(registration) = self.registration.take() {
            registration.release();
        }
    }
}

/// Runs `cmd` to completion, killing it after `timeout`. Never panics on a failed command:
/// callers check `Output`.
#[track_caller]
pub fn run(cmd: Command, timeout: Duration) -> Output {
    let mut proc = Proc::spawn(cmd);
    proc.stdin = None; // EOF on stdin: nothing here reads input.
    proc.wait_output(timeout)
}

/// Runs `cmd` and panics with its output unless it succeeds within `timeout`.
#[track_caller]
pub fn run_ok(cmd: Command, timeout: Duration) -> Output {
    let out = run(cmd, timeout);
    out.assert_success();
    out
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
        let registration = cleanup::register(Resource::ProcessGroup(child.id() as i32));
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
            if cleanup::interrupted() {
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
            cleanup::signal_group(pgid, Signal::TERM);
            let deadline = Instant::now() + self.grace;
            while status.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                status = child.try_wait().ok().flatten();
            }
        }
        // The leader may be gone while the rest of its group (nginx's worker) is not.
        cleanup::signal_group(pgid, Signal::KILL);
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
            WaitError::Interrupted => write!(f, "{}", cleanup::Interrupted),
            WaitError::Io(e) => write!(f, "cannot wait for a child: {e}"),
        }
    }
}

impl std::error::Error for WaitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_guard_stops_its_child_on_drop() {
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

    #[test]
    fn a_proc_is_registered_until_reaped() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut proc = Proc::spawn(cmd);
        let pid = proc.pid() as i32;
        let registered = || cleanup::registry_contains(&Resource::Process(pid));
        assert!(registered());
        proc.signal(SIGKILL);
        assert!(proc.wait_exit(Duration::from_secs(5)).is_some());
        assert!(!registered());
    }

    #[test]
    fn run_reports_success_failure_and_timeouts() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo hi; echo err >&2"]);
        let out = run(ok, Duration::from_secs(5));
        assert!(out.success(), "{}", out.describe());
        assert_eq!((out.stdout.trim(), out.stderr.trim()), ("hi", "err"));
        let out = run(Command::new("false"), Duration::from_secs(5));
        assert!(!out.success() && !out.timed_out);
        let mut slow = Command::new("sleep");
        slow.arg("30");
        let out = run(slow, Duration::from_millis(200));
        assert!(out.timed_out && !out.success());
    }
}
