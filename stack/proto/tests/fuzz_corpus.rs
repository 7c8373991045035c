//! Replays the stateful fuzz targets' committed seeds (`stack/proto/fuzz/seeds/<target>/`),
//! then a few hundred seeded random inputs, through the same drivers the cargo-fuzz targets
//! call (`synack_proto::sim::fuzz`). This is how CI runs the fuzzers' findings on stable.

use std::path::Path;

use synack_proto::sim::fuzz;
use synack_proto::sim::Rng;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).expect("a seed file"))).collect()
}

fn random_inputs(seed: u64, count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count).map(move |_| {
        let len = (rng.next_u64() as usize) % max_len;
        (0..len).map(|_| rng.next_u64() as u8).collect()
    })
}

#[test]
fn interface_pair_seeds_replay() {
    let seeds = seeds("interface_pair");
    assert!(seeds.len() >= 10, "the committed corpus is there ({} seeds)", seeds.len());
    let mut deep = 0;
    for (name, data) in seeds {
        let report = fuzz::interface_pair(&data);
        eprintln!("{name}: {report:?}");
        if name.ends_with("/handshake") {
            assert_eq!((report.accepted, report.connected), (1, 1), "the handshake seed opens one connection");
        }
        deep += usize::from(report.time_wait_entered > 0);
    }
    assert!(deep >= 3, "seeds reach TIME_WAIT ({deep})");
}

#[test]
fn interface_pair_random_inputs() {
    let mut segments = 0;
    for data in random_inputs(0x5eed, 300, 2048) {
        segments += fuzz::interface_pair(&data).segments;
    }
    assert!(segments > 1_000, "random inputs carry segments ({segments})");
}

#[test]
fn connection_seeds_replay() {
    let seeds = seeds("connection");
    assert!(seeds.len() >= 8, "the committed corpus is there ({} seeds)", seeds.len());
    let mut established = 0;
    for (name, data) in seeds {
        let report = fuzz::connection(&data);
        eprintln!("{name}: {report:?}");
        established += usize::from(report.established);
    }
    assert!(established >= 5, "seeds reach ESTABLISHED ({established})");
}

#[test]
fn connection_random_inputs() {
    let mut sent = 0;
    for data in random_inputs(0xc0ffee, 2_000, 512) {
        sent += fuzz::connection(&data).sent;
    }
    assert!(sent > 100, "random inputs make the connection send ({sent})");
}
