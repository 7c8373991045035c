//! The `concurrency` case of `synack-sysbench` end to end, small: 5,000 idle connections from
//! a Linux client to `synack serve --app echo` and to the Linux accept-and-hold server. Every
//! connection must be established and held by both servers, and the figures must be sane. Needs
//! root (namespaces, veth, XDP) and synack's binary (`SYNACK_BIN`, default
//! `<workspace>/target/release/synack`); without root it prints `SKIP (needs root: ...)`.
//! 5,000 rather than fewer: the Linux figure is the difference of two machine-wide kernel
//! memory deltas, and a few MB of other activity must not swamp it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synack_bench::sys::concurrency::{run, Config};
use synack_bench::sys::net::TestLink;

const CONNS: u64 = 5_000;

fn synack_bin() -> PathBuf {
    std::env::var_os("SYNACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/synack"))
}

#[test]
fn both_servers_hold_every_connection_and_the_figures_are_sane() {
    if !rustix::process::geteuid().is_root() {
        // Past the harness's output capture (`eprintln!` is captured), as synack-tests does:
        // a skip must be visible.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIP (needs root: network namespaces, veth and XDP): both_servers_hold_every_connection_and_the_figures_are_sane"
        );
        return;
    }
    let synack = synack_bin();
    assert!(synack.is_file(), "synack's binary is missing: {} (set SYNACK_BIN)", synack.display());
    let started = Instant::now();
    let link = TestLink::create((std::process::id() % 250) as u8 + 1).expect("test network");
    let two_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let config = Config {
        conns: CONNS,
        in_flight: 512,
        server_cpu: usize::from(two_cpus),
        client_cpu: 0,
        synack_bin: Some(&synack),
        hold_bin: Path::new(env!("CARGO_BIN_EXE_synack-hold")),
        buffer_bytes: 16_384,
        settle: Duration::from_secs(1),
        samples: 3,
        plot: None,
    };
    let outcome = run(&config, &link).expect("the case runs");
    for side in [outcome.synack.as_ref().expect("synack ran"), outcome.kernel.as_ref().expect("Linux ran")] {
        assert_eq!((side.established, side.failed), (CONNS, 0), "{}", side.server);
        assert!(side.server_held >= CONNS, "{}: the server holds {}", side.server, side.server_held);
        assert!(side.conn_per_s.is_finite() && side.conn_per_s > 0.0, "{}", side.conn_per_s);
        assert!(!side.curve.is_empty());
    }
    let sane = |what: &str, v: Option<f64>, max: f64| {
        let v = v.unwrap_or_else(|| panic!("{what}: no figure"));
        assert!(v.is_finite() && v > 0.0 && v < max, "{what}: {v} bytes per connection");
    };
    // A connection costs something everywhere, and less than its buffers would if all were
    // touched (synack: 2 x 16 KiB) or than anything a kernel socket is known to take.
    sane("synack's RSS", outcome.synack_bytes_per_conn(), 64.0 * 1024.0);
    sane("the Linux server's kernel memory and RSS", outcome.kernel_bytes_per_conn(), 64.0 * 1024.0);
    sane("the Linux client's kernel memory", outcome.client_kernel_bytes_per_conn(), 64.0 * 1024.0);
    assert_eq!(outcome.rows.len(), 3);
    assert!(outcome.json["synack"]["established"] == CONNS && outcome.json["kernel"]["established"] == CONNS);
    let namespaces = [link.server.netns.name().to_owned(), link.client.netns.name().to_owned()];
    drop(link);
    let left = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    for name in namespaces {
        assert!(!left.lines().any(|l| l.split_whitespace().next() == Some(name.as_str())), "{name} left behind");
    }
    eprintln!("concurrency case with {CONNS} connections: {:.1} s", started.elapsed().as_secs_f64());
}
