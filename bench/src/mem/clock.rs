//! Wall-clock and CPU time of the calling thread. The machine is shared: other work preempts
//! the benchmark, so its rates are given per second of the thread's own CPU time as well as
//! per wall-clock second; the first is what compares across runs.

use core::time::Duration;
use std::time::Instant as WallClock;

use rustix::time::{clock_gettime, ClockId};

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall-clock and thread CPU time since it was started.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: WallClock,
    cpu: Duration,
}

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Stopwatch {
        Stopwatch { wall: WallClock::now(), cpu: thread_cpu_time() }
    }

    /// Seconds of wall-clock time and of this thread's CPU time since the start.
    pub fn elapsed_s(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), thread_cpu_time().saturating_sub(self.cpu).as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_advances_with_work_and_not_with_sleep() {
        let watch = Stopwatch::start();
        std::thread::sleep(Duration::from_millis(50));
        let (wall, cpu) = watch.elapsed_s();
        assert!(wall >= 0.05 && cpu < 0.04, "wall {wall} cpu {cpu}");
        let watch = Stopwatch::start();
        let mut x = 1u64;
        while watch.elapsed_s().1 < 0.02 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        assert!(watch.elapsed_s().0 >= 0.02);
    }
}
