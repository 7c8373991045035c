//! The stepping loops every simulator shares: until a condition holds, or through a span of
//! virtual time.

use core::time::Duration;

use crate::time::Instant;

/// Steps [`run_for`] takes before it calls the run a livelock: far more than any test's
/// transfer needs (steps count round trips, not segments), few enough to fail fast.
const RUN_STEPS_MAX: u64 = 1_000_000;

/// A simulator that moves from event to event.
pub(super) trait Steps {
    /// Virtual time.
    fn now(&self) -> Instant;
    /// Lets every host send what is due now.
    fn flush(&mut self);
    /// The next instant anything happens.
    fn next_event(&self) -> Option<Instant>;
    /// Jumps to the next event and processes it; false when nothing is left to happen.
    fn step(&mut self) -> bool;
}

/// Implements [`Steps`] for a simulator with its inherent methods of the same names (and its
/// `now` field): `impl_steps!([A: App] Lan<A>)`.
macro_rules! impl_steps {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> $crate::sim::stepping::Steps for $ty {
            fn now(&self) -> $crate::time::Instant {
                self.now
            }
            fn flush(&mut self) {
                <$ty>::flush(self)
            }
            fn next_event(&self) -> Option<$crate::time::Instant> {
                <$ty>::next_event(self)
            }
            fn step(&mut self) -> bool {
                <$ty>::step(self)
            }
        }
    };
}
pub(super) use impl_steps;

/// Lets every host send what is due, then finds the instant the next step jumps to (the next
/// event, never back in time); `None` when nothing is left to happen.
pub(super) fn next_instant<S: Steps>(sim: &mut S) -> Option<Instant> {
    sim.flush();
    sim.next_event().map(|next| sim.now().max(next))
}

/// Steps until `done` holds (checked after every step), nothing is left to happen, or virtual
/// time passes `deadline`. Returns whether `done` held.
pub(super) fn drive<S: Steps>(sim: &mut S, deadline: Instant, mut done: impl FnMut(&mut S) -> bool) -> bool {
    loop {
        if done(sim) {
            return true;
        }
        if sim.now() > deadline || !sim.step() {
            return done(sim);
        }
    }
}

/// Steps through every event before `limit` from now has passed, and stops at the last one.
/// Returns the time it stopped at.
///
/// # Panics
/// After a million steps: virtual time stands still (a livelock).
pub(super) fn run_for<S: Steps>(sim: &mut S, limit: Duration) -> Instant {
    let end = sim.now() + limit;
    for _ in 0..RUN_STEPS_MAX {
        sim.flush();
        match sim.next_event() {
            Some(next) if next < end => {
                sim.step();
            }
            _ => return sim.now(),
        }
    }
    panic!("no end after {RUN_STEPS_MAX} steps (virtual {:?}): a livelock", sim.now());
}
