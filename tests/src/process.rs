//! Child processes with captured output, bounded waits, and guards that stop them.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often bounded waits poll a child's state.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long a guard waits after SIGTERM before it sends SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

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

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the child if it is still running.
    pub fn signal(&mut self, signal: i32) {
        if self.try_status().is_none() {
            // Safety: kill(2) on the pid of our own child, which has not been reaped yet.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
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
            self.signal(libc::SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(2));
        }
        self.finish(!exited)
    }

    /// Stops the child: SIGTERM, then SIGKILL after `grace`. Returns its complete output;
    /// `timed_out` is set if SIGKILL was needed.
    pub fn stop(mut self, grace: Duration) -> Output {
        self.signal(libc::SIGTERM);
        let exited = self.wait_exit(grace).is_some();
        if !exited {
            self.signal(libc::SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(2));
        }
        self.finish(!exited)
    }

    /// SIGKILL now, and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(2));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(STOP_GRACE).is_none() {
                self.signal(libc::SIGKILL);
                let _ = self.wait_exit(Duration::from_secs(2));
            }
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
