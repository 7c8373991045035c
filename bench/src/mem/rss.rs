//! Resident memory of a process, read from `/proc`.

use std::io;

/// Resident set size of this process in bytes, from the `VmRSS` line of `/proc/self/status`
/// (not `statm` times the page size: reading the page size from the auxiliary vector crashes
/// under valgrind, which the cache-miss measurement of the in-memory cases runs them in).
pub fn self_rss_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_status_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in status"))
}

/// Resident set size of process `pid` in bytes, from the `VmRSS` line of `/proc/PID/status`.
pub fn pid_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in status"))
}

/// The resident pages: the second field of `statm`.
pub fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS:   123456 kB` in bytes.
pub fn parse_status_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_and_status_parse() {
        assert_eq!(parse_statm_resident("2567 812 533 27 0 400 0\n"), Some(812));
        assert_eq!(parse_statm_resident("2567"), None);
        let status = "Name:\tsynack\nVmPeak:\t  10 kB\nVmRSS:\t   35120 kB\nThreads:\t2\n";
        assert_eq!(parse_status_vm_rss(status), Some(35120 * 1024));
        assert_eq!(parse_status_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn our_own_rss_is_read_and_grows_when_we_touch_memory() {
        let before = self_rss_bytes().unwrap();
        assert!(before > 0);
        let mut block = vec![0u8; 64 << 20];
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        let after = self_rss_bytes().unwrap();
        assert!(after >= before + (32 << 20), "{before} -> {after}");
        assert_eq!(pid_rss_bytes(std::process::id()).map(|b| b > 0).ok(), Some(true));
        drop(std::hint::black_box(block));
    }
}
