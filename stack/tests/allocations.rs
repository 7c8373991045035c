//! Zero heap allocations per segment in steady state, shown with a counting allocator.
//!
//! This test binary installs a global allocator that counts every allocation, then drives
//! established connections and whole connection lifetimes through the core and the wire codec.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use synack::sim::Pair;
use synack::tcp::TcpConfig;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// Safety: defers to the system allocator and only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Safety: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Safety: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// Both checks live in one test so that no other test thread allocates while counting.
#[test]
fn zero_allocations_per_segment_in_steady_state() {
    // The counter works: one allocation is seen, so a zero below is a measurement, not a
    // counting allocator that was never installed.
    let before = allocations();
    let probe = std::hint::black_box(vec![0u8; 64]);
    assert_eq!(allocations() - before, 1, "the counting allocator sees allocations");
    drop(probe);

    // Established data path: 10 MB through a pair, with out-of-order-free steady flow.
    let config = TcpConfig { send_buffer_len: 256 * 1024, recv_buffer_len: 256 * 1024, ..TcpConfig::default() };
    let mut pair = Pair::new(config);
    pair.open();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mut step = |pair: &mut Pair| {
        let _ = pair.client.send(&chunk);
        let _ = pair.server.send(&chunk[..512]);
        pair.exchange();
        while pair.server.recv(&mut sink).is_ok() {}
        while pair.client.recv(&mut sink).is_ok() {}
    };
    for _ in 0..100 {
        step(&mut pair); // warm-up
    }
    let before = allocations();
    let segments_before = pair.segments;
    for _ in 0..640 {
        step(&mut pair);
    }
    let data_allocs = allocations() - before;
    let data_segments = pair.segments - segments_before;

    // Whole lifecycles through reused connections: handshake, request, response, close,
    // TIME_WAIT expiry.
    let mut pair = Pair::new(TcpConfig { send_buffer_len: 4096, recv_buffer_len: 4096, ..TcpConfig::default() });
    let mut scratch = vec![0u8; 4096];
    pair.lifecycle(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", &mut scratch);
    let before = allocations();
    let segments_before = pair.segments;
    for _ in 0..10_000 {
        pair.lifecycle(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", &mut scratch);
    }
    let lifecycle_allocs = allocations() - before;
    let lifecycle_segments = pair.segments - segments_before;

    eprintln!("data path: {data_segments} segments, {data_allocs} allocations");
    eprintln!("lifecycles: 10000 lifecycles, {lifecycle_segments} segments, {lifecycle_allocs} allocations");
    assert!(data_segments > 5_000, "the data path carried segments ({data_segments})");
    assert_eq!(pair.rejected, 0);
    assert_eq!(data_allocs, 0, "allocations on the established data path");
    assert!(lifecycle_segments >= 60_000, "about six segments per lifecycle ({lifecycle_segments})");
    assert_eq!(lifecycle_allocs, 0, "allocations across connection lifetimes");
}
