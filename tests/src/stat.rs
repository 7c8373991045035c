//! `synack stat` from the tests: the connections a running synack holds, and a wait for a
//! given count (what the tests poll instead of sleeping).

use std::time::{Duration, Instant};

/// synack's connections, all queues, from `synack stat --json --summary`.
pub fn connections(bin: &str, pid: u32) -> u64 {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["stat", "--pid", &pid.to_string(), "--json", "--summary"]);
    let out = crate::process::run(cmd, Duration::from_secs(15));
    assert!(out.success(), "synack stat: {}", out.describe());
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("stat JSON");
    v["queues"].as_array().expect("queues").iter().map(|q| q["connections"].as_u64().expect("connections")).sum()
}

/// Polls `synack stat` until it shows `want` connections; returns when it saw them, and
/// panics after `limit`.
pub fn await_connections(bin: &str, pid: u32, want: u64, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let now = connections(bin, pid);
        if now == want {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{now} connection(s), not {want}, after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
