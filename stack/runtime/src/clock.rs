//! The worker's clock: the one place synack reads the time for the sans-IO core.

use synack_proto::time::Instant;

/// Reads the monotonic clock. Only workers (and the apps' start-up) call this.
///
/// Its origin is the system's boot, as `CLOCK_MONOTONIC`'s: times then agree across processes,
/// so the TCP timestamps and ISNs drawn from them keep increasing when a process follows
/// another on 4-tuples whose TIME_WAIT a peer still holds (RFC 6191 accepts only a newer
/// timestamp). The boot clock is read once; later reads add `std::time::Instant`'s elapsed
/// time, which is the same clock through the vDSO.
pub fn now() -> Instant {
    use std::sync::OnceLock;
    static ORIGIN: OnceLock<(std::time::Instant, u64)> = OnceLock::new();
    let (origin, base) = *ORIGIN.get_or_init(|| (std::time::Instant::now(), boot_clock_nanos()));
    Instant::from_nanos(base.saturating_add(origin.elapsed().as_nanos() as u64))
}

/// Nanoseconds since boot (`CLOCK_MONOTONIC`), at least one second (so that "zero" never
/// looks like a real event time).
fn boot_clock_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec.max(0) as u64).max(1_000_000_000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_is_boot_relative_and_monotonic() {
        let a = super::now();
        let b = super::now();
        assert!(b >= a);
        assert!(a.as_nanos() >= 1_000_000_000);
    }
}
