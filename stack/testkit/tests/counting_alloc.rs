//! The counting allocator counts: per thread, and over armed threads only.

use synack_testkit::counting_alloc::{arm, armed_allocations, thread_allocations, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn allocations_are_counted_per_thread_and_while_armed() {
    let before = thread_allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    assert_eq!(thread_allocations() - before, 1);
    drop(v);
    assert_eq!(thread_allocations() - before, 1, "a free is not an allocation");

    let armed_before = armed_allocations();
    let _unarmed = std::hint::black_box(Box::new(1u64));
    assert_eq!(armed_allocations(), armed_before, "not armed: not counted");
    let other = std::thread::spawn(|| {
        arm(true);
        let _ = std::hint::black_box(vec![0u8; 10]);
        let _ = std::hint::black_box(vec![0u8; 20]);
        arm(false);
    });
    other.join().unwrap();
    assert!(armed_allocations() - armed_before >= 2, "the armed thread's two allocations are summed");
}
