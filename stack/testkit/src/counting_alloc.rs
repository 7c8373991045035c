//! A counting global allocator, for tests that show a hot path allocates nothing.
//!
//! A test binary installs it with
//! `#[global_allocator] static A: CountingAllocator = CountingAllocator;` and then reads either
//! - [`thread_allocations`]: the allocations of the calling thread so far (the test harness's
//!   own threads allocate while a test runs, so a per-thread count is the one to compare), or
//! - [`armed_allocations`]: the allocations of every thread between its [`arm`]`(true)` and
//!   `arm(false)`, summed (a test whose hot loops run on threads of their own).
//!
//! Every call is forwarded unchanged to the system allocator. Counting touches only a
//! `const`-initialised thread-local and an atomic, neither of which allocates. Frees are not
//! counted; `realloc` counts as an allocation.
//!
//! This module is the only `unsafe` outside synack-xsk (`scripts/check-layers.sh` names it):
//! implementing `GlobalAlloc` requires it, and it is test-only code.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The allocator; see the module documentation.
pub struct CountingAllocator;

static ARMED_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    // `try_with`: a thread being torn down may still allocate.
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        ARMED_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// The calling thread's allocations so far (meaningful with [`CountingAllocator`] installed).
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

/// Starts (`true`) or stops counting the calling thread's allocations into
/// [`armed_allocations`].
pub fn arm(on: bool) {
    ARMED.with(|armed| armed.set(on));
}

/// Allocations made by armed threads, summed over threads.
pub fn armed_allocations() -> u64 {
    ARMED_ALLOCATIONS.load(Ordering::Relaxed)
}

// Safety: every call is forwarded unchanged to the system allocator, whose contract is ours;
// counting neither allocates nor touches the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // Safety: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // Safety: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // Safety: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
