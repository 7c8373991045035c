//! What the seeded scenario tests share.

/// Runs `scenario(seed, false)`; on a failure or a panic, runs it again with capture on and
/// writes the frames it returns as `<name>-<seed>.pcap` under the test's temporary directory,
/// naming the file in the error.
pub fn run_seed<T>(
    name: &str,
    seed: u64,
    scenario: impl Fn(u64, bool) -> Result<T, (String, Vec<u8>)> + std::panic::RefUnwindSafe,
) -> Result<T, String> {
    let what = match std::panic::catch_unwind(|| scenario(seed, false)) {
        Ok(Ok(outcome)) => return Ok(outcome),
        Ok(Err((what, _))) => what,
        Err(panic) => format!(
            "seed {seed}: panicked: {}",
            panic.downcast_ref::<String>().map(String::as_str).or(panic.downcast_ref::<&str>().copied()).unwrap_or("?")
        ),
    };
    let pcap = match std::panic::catch_unwind(|| scenario(seed, true)) {
        Ok(Err((_, pcap))) => pcap,
        _ => Vec::new(),
    };
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{seed}.pcap"));
    let saved = !pcap.is_empty() && std::fs::write(&path, &pcap).is_ok();
    Err(if saved { format!("{what} (frames: {})", path.display()) } else { what })
}
