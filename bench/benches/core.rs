//! Criterion benchmarks of the sans-IO TCP core between two in-memory endpoints.
//!
//! - `lifecycle/http_close`: one complete connection lifetime (handshake, request, response,
//!   server closes first, client closes, the server's TIME_WAIT expires), counting both ends'
//!   work and the wire codec with checksum verification. Throughput is lifecycles per second.
//! - `data_path/segment`: time per segment on an established connection moving MSS-sized
//!   writes (data segments and the ACKs they cause, emitted, parsed, verified, processed).

use std::time::{Duration, Instant as WallClock};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synack::sim::Pair;
use synack::tcp::TcpConfig;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

fn lifecycle_config() -> TcpConfig {
    // Small rings, as a connection-churn server would configure them.
    TcpConfig { send_buffer_len: 4096, recv_buffer_len: 4096, ..TcpConfig::default() }
}

fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("lifecycle");
    group.throughput(Throughput::Elements(1));
    let mut pair = Pair::new(lifecycle_config());
    let mut scratch = vec![0u8; 4096];
    group.bench_function("http_close", |b| b.iter(|| pair.lifecycle(REQUEST, RESPONSE, &mut scratch)));
    group.finish();
    assert_eq!(pair.rejected, 0, "every segment was accepted");
}

fn data_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_path");
    group.throughput(Throughput::Elements(1));
    let config = TcpConfig { send_buffer_len: 256 * 1024, recv_buffer_len: 256 * 1024, ..TcpConfig::default() };
    let mut pair = Pair::new(config);
    pair.open();
    let chunk = vec![0x5au8; 1448];
    let mut sink = vec![0u8; 64 * 1024];
    // One criterion iteration is one segment: run until that many segments have crossed.
    group.bench_function("segment", |b| {
        b.iter_custom(|iters| {
            let start_segments = pair.segments;
            let start = WallClock::now();
            while pair.segments - start_segments < iters {
                let _ = pair.client.send(&chunk);
                pair.exchange();
                while pair.server.recv(&mut sink).is_ok() {}
            }
            let elapsed = start.elapsed();
            let done = pair.segments - start_segments;
            elapsed.mul_f64(iters as f64 / done as f64)
        })
    });
    group.finish();
    assert_eq!(pair.rejected, 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = lifecycle, data_path
}
criterion_main!(benches);
