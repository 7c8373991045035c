//! Runs the core benchmark's workloads a fixed number of times, for profilers that count
//! instructions (`valgrind --tool=callgrind`), where criterion's own work would blur the
//! figures. Usage: `profile_core lifecycle|segment COUNT`. Run it with two counts and
//! divide the difference of the totals by the difference of the counts to get the cost of
//! one lifecycle or one segment without start-up.

use synack::sim::Pair;
use synack::tcp::TcpConfig;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "lifecycle".into());
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    match what.as_str() {
        "lifecycle" => {
            let config = TcpConfig { send_buffer_len: 4096, recv_buffer_len: 4096, ..TcpConfig::default() };
            let mut pair = Pair::new(config);
            let mut scratch = vec![0u8; 4096];
            for _ in 0..count {
                pair.lifecycle(REQUEST, RESPONSE, &mut scratch);
            }
            assert_eq!(pair.rejected, 0);
            println!("{count} lifecycles, {} segments", pair.segments);
        }
        "segment" => {
            let config = TcpConfig { send_buffer_len: 256 * 1024, recv_buffer_len: 256 * 1024, ..TcpConfig::default() };
            let mut pair = Pair::new(config);
            pair.open();
            let chunk = vec![0x5au8; 1448];
            let mut sink = vec![0u8; 64 * 1024];
            let start = pair.segments;
            while pair.segments - start < count {
                let _ = pair.client.send(&chunk);
                pair.exchange();
                while pair.server.recv(&mut sink).is_ok() {}
            }
            assert_eq!(pair.rejected, 0);
            println!("{} segments", pair.segments - start);
        }
        other => panic!("unknown workload {other}"),
    }
}
