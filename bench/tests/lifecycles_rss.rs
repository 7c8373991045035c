//! A short lifecycle run returns to its memory baseline, and the RSS check can fail. Alone in
//! its own test binary: the check reads the whole process's RSS, which other tests running on
//! parallel threads of the same process would move.

use std::time::Duration;

use synack_bench::mem::lifecycles::{run, LifecyclesConfig};

#[test]
fn a_short_run_returns_to_baseline_and_its_checks_can_fail() {
    let config = LifecyclesConfig {
        lifecycles: 20_000,
        sample_every: 5_000,
        per_tick: 100,
        tick: Duration::from_millis(1),
        time_wait: Duration::from_millis(20),
        clients: 2,
        rss_tolerance_bytes: 16 << 20,
    };
    let mut seen = 0;
    let report = run(config, |_| seen += 1).unwrap();
    assert_eq!(seen, 4);
    assert_eq!(report.lifecycles, 20_000);
    assert!(report.passed(), "{:#?}", report.checks);
    let s = &report.samples[1];
    assert_eq!(s.lifecycles, 10_000);
    // 100 per ms and a 20 ms 2MSL: about 2,000 records held.
    assert!((1_500..=2_500).contains(&s.time_wait), "{}", s.time_wait);
    assert!(s.frames_peak > 0 && s.frames_in_use == 0);
    // Seven to ten frames per lifecycle cross the server: SYN, SYN-ACK, ACK+request,
    // answer+FIN, ACK(s), FIN, last ACK.
    assert!((6.0..=10.0).contains(&report.server_frames_per_lifecycle), "{}", report.server_frames_per_lifecycle);
    // A tolerance of zero bytes below the warm-up figure fails the RSS check.
    let strict = LifecyclesConfig { rss_tolerance_bytes: 0, ..config };
    let mut grow = Vec::new();
    let report = run(strict, |_| grow.extend(std::iter::repeat_n(1u8, 8 << 20))).unwrap();
    assert!(!report.passed(), "RSS grew by the 8 MiB per sample the callback kept");
    drop(grow);
}
