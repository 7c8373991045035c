//! Cache misses per connection lifecycle with a TIME_WAIT table of about 1 M records, for
//! valgrind (this machine's virtual CPUs expose no hardware cache counters to `perf`). Runs the
//! in-memory churn's load (`synack-sysbench --cases memory_time_wait`: 18,000 lifecycles per
//! simulated second from 20 client addresses, the server closing first; its server takes each
//! round's frames as one `receive_batch`) for 2MSL + 1 s, then
//! `measure` more simulated seconds inside [`measure`], the only function to collect:
//!
//! ```sh
//! valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 --LL=1048576,8,64 \
//!     --collect-atstart=no --toggle-collect='*measure*' \
//!     target/testing/examples/time_wait_misses 60000 2
//! ```
//!
//! The first argument is 2MSL in ms: 60000 holds 1.08 M records, 100 keeps the table near
//! empty (the reference of the churn). Divide the totals by the lifecycles it prints. The
//! "LL" above is this machine's 1 MiB L2 per core: its 32 MiB L3 is shared with the other
//! core and the other virtual machines, and valgrind does not model the TLB.

use core::time::Duration;

use anyhow::{ensure, Context, Result};
use synack_bench::mem::harness::{BackToBack, HarnessConfig};

const RATE_PER_S: u64 = 18_000;
const TICK: Duration = Duration::from_millis(1);

fn ticks(net: &mut BackToBack, first: u64, count: u64) -> Result<()> {
    let due = |t: u64| (RATE_PER_S * t / 1000) as usize;
    for tick in first..first + count {
        net.tick(due(tick + 1) - due(tick))?;
    }
    Ok(())
}

/// The collected part (`--toggle-collect='*measure*'`).
#[inline(never)]
fn measure(net: &mut BackToBack, first: u64, count: u64) -> Result<()> {
    ticks(net, first, count)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let time_wait_ms: u64 = args.next().context("usage: time_wait_misses 2MSL_MS [MEASURE_S]")?.parse()?;
    let measure_s: u64 = args.next().map_or(Ok(2), |s| s.parse())?;
    let records = (RATE_PER_S * time_wait_ms / 1000) as usize;
    // The churn's harness (`mem::churn`), sized the same way.
    let mut net = BackToBack::new(HarnessConfig {
        clients: 20,
        time_wait: Duration::from_millis(time_wait_ms),
        max_time_wait: records + records / 8 + 1024,
        max_connections: 18 * 4 + 64,
        frames: 18 * 32 + 256,
        tick: TICK,
    })?;
    // 2MSL + 1 s: the table holds rate x 2MSL records from then on.
    let fill = time_wait_ms + 1000;
    ticks(&mut net, 0, fill)?;
    let (before, held) = (net.totals().completed, net.server.time_wait_count());
    measure(&mut net, fill, measure_s * 1000)?;
    let t = net.totals();
    ensure!(t.failed + t.short_answers + t.connect_errors + t.misrouted == 0, "lifecycles went wrong: {t:?}");
    println!(
        "2MSL {time_wait_ms} ms: {} TIME_WAIT records at the start of the measured part, {} lifecycles in it",
        held,
        t.completed - before
    );
    Ok(())
}
