//! Criterion benchmarks of one worker's tables at 1,000,000 live entries:
//!
//! - `conn_table/*`: the connection table (hashbrown map from 4-tuple to slab index):
//!   lookup of a live 4-tuple (hit), of an absent one (miss), and insert + remove of one
//!   entry while 1 M stay live (a pair, since the table must stay at 1 M).
//! - `time_wait/*`: the TIME_WAIT table (packed slab, `HashTable<u32>`, wheel entries): the
//!   same, plus its memory per record.
//! - `timer_wheel/*`: arming an entry on a wheel that holds 1 M, re-arming one, and expiring
//!   (one entry armed and popped per iteration as the clock moves one tick).
//!
//! Lookups cycle through keys in a scrambled order so that they miss the CPU caches as a real
//! 4-tuple stream would.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use synack::bench_api::{ConnTable, TimeWaitTable, TimerWheel};
use synack::tcp::{Endpoint, FourTuple, SeqNumber, TcpConfig, TimeWaitRecord};
use synack::time::Instant;

const LIVE: u32 = 1_000_000;

/// The `n`th 4-tuple: many clients (198.18.0.0/15) towards one server port.
fn tuple(n: u32) -> FourTuple {
    FourTuple {
        local: Endpoint::new(Ipv4Addr::new(198, 18, 0, 1), 80),
        remote: Endpoint::new(Ipv4Addr::from(0xc612_0000 | ((n >> 14) & 0x1_ffff)), 1024 + (n & 0x3fff) as u16),
    }
}

/// A key order that jumps around the table.
fn scrambled(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761) % LIVE
}

fn record(n: u32, expiry: Instant) -> TimeWaitRecord {
    TimeWaitRecord {
        tuple: tuple(n),
        snd_nxt: SeqNumber(n),
        rcv_nxt: SeqNumber(!n),
        ts_recent: n,
        ts_offset: 0,
        expiry,
        last_segment: Instant::ZERO,
        window: 512,
        timestamps: true,
        oow_acked: false,
    }
}

fn conn_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("conn_table");
    // One-byte rings: the benchmark is about the map and the slab, not the buffers.
    let config = TcpConfig { send_buffer_len: 1, recv_buffer_len: 1, ..TcpConfig::default() };
    let mut table = ConnTable::new(LIVE as usize + 1, config);
    for n in 0..LIVE {
        table.insert(tuple(n)).expect("room");
    }
    let mut i = 0u32;
    group.bench_function("lookup_hit_1M", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(table.find(&tuple(scrambled(i))))
        })
    });
    group.bench_function("lookup_miss_1M", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(table.find(&tuple(LIVE + scrambled(i))))
        })
    });
    group.bench_function("insert_remove_1M", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let t = tuple(LIVE + scrambled(i));
            let index = table.insert(t).expect("one spare slot");
            table.remove(index, &t);
        })
    });
    assert_eq!(table.len(), LIVE as usize);
    group.finish();
}

fn time_wait(c: &mut Criterion) {
    let mut group = c.benchmark_group("time_wait");
    let mut table = TimeWaitTable::new(LIVE as usize + 1);
    let expiry = Instant::from_millis(60_000);
    for n in 0..LIVE {
        table.insert(&record(n, expiry));
    }
    println!(
        "time_wait: {} records, {} bytes allocated, {:.1} bytes per record (max {})",
        table.len(),
        table.memory_bytes(),
        table.bytes_per_entry(),
        table.max()
    );
    assert!(table.bytes_per_entry() <= 64.0);
    let mut i = 0u32;
    group.bench_function("lookup_hit_1M", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(table.find(&tuple(scrambled(i))))
        })
    });
    group.bench_function("lookup_miss_1M", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(table.find(&tuple(LIVE + scrambled(i))))
        })
    });
    group.bench_function("insert_remove_1M", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let r = record(LIVE + scrambled(i), expiry);
            assert!(!table.insert(&r), "one spare record");
            let index = table.find(&r.tuple).expect("just stored");
            table.remove(index);
        })
    });
    assert_eq!(table.len(), LIVE as usize);
    group.finish();
}

fn timer_wheel(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer_wheel");
    let mut wheel = TimerWheel::new(LIVE as usize + 1);
    // 1 M entries spread over the next 60 s (every level below the top one is occupied).
    for n in 0..LIVE {
        wheel.schedule(n, Instant::from_nanos(1_000_000_000 + u64::from(scrambled(n)) * 60_000));
    }
    let spare = LIVE;
    let mut i = 0u64;
    group.bench_function("schedule_cancel_1M", |b| {
        b.iter(|| {
            i += 1;
            wheel.schedule(spare, Instant::from_millis(1_000 + (i * 7919) % 60_000));
            wheel.cancel(spare);
        })
    });
    group.bench_function("rearm_1M", |b| {
        b.iter(|| {
            i += 1;
            let n = scrambled(i as u32);
            wheel.schedule(n, Instant::from_nanos(1_000_000_000 + u64::from(scrambled(n)) * 60_000 + (i & 1)));
        })
    });
    assert_eq!(wheel.len(), LIVE as usize);
    // Expiry: a wheel holding 1 M entries 60 s out; each iteration arms one entry one tick
    // ahead, moves the clock a tick and pops it (the cascades of the far entries included).
    let mut now = Instant::from_millis(1_000);
    let mut far = TimerWheel::new(LIVE as usize + 1);
    for n in 0..LIVE {
        far.schedule(n, Instant::from_millis(61_000) + Duration::from_nanos(u64::from(n) * 50));
    }
    group.bench_function("schedule_expire_1M", |b| {
        b.iter(|| {
            now += Duration::from_nanos(1 << 20);
            far.schedule(spare, now);
            let mut popped = 0;
            while let Some(e) = far.pop_due(now) {
                black_box(e);
                popped += 1;
            }
            popped
        })
    });
    group.bench_function("expire_1M_from_full", |b| {
        b.iter_batched(
            || {
                let mut w = TimerWheel::new(LIVE as usize);
                for n in 0..LIVE {
                    w.schedule(n, Instant::from_nanos(1_000_000_000 + u64::from(scrambled(n)) * 60_000));
                }
                w
            },
            |mut w| {
                let mut n = 0u32;
                while w.pop_due(Instant::from_millis(70_000)).is_some() {
                    n += 1;
                }
                assert_eq!(n, LIVE);
                w
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = tables;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = conn_table, time_wait, timer_wheel
}
criterion_main!(tables);
