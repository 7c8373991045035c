//! A latency histogram with log-linear buckets (HdrHistogram's layout): every power of two is
//! split into 64 equal buckets, so a value is kept within 1/64 (1.6 %) from 1 ns to 18 min, in
//! a fixed 2,240-bucket array. Recording is an index computation and an increment: no
//! allocation per connection.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values from 2^MAX_BITS ns (about 18 minutes) on share the last bucket.
const MAX_BITS: u32 = 40;
/// Buckets: the values below 2·SUB one each, then SUB per power of two up to MAX_BITS.
pub const BUCKETS: usize = (MAX_BITS - SUB_BITS + 1) as usize * SUB as usize;

/// Counts of latencies in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram {{ total: {} }}", self.total)
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    let value = value.min((1 << MAX_BITS) - 1);
    if value < 2 * SUB {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros(); // at least SUB_BITS + 1
    let shift = exp - SUB_BITS;
    let group = (shift + 1) as usize;
    group * SUB as usize + ((value >> shift) - SUB) as usize
}

/// The largest value bucket `i` holds.
fn upper_bound(i: usize) -> u64 {
    if i < 2 * SUB as usize {
        return i as u64;
    }
    let group = (i / SUB as usize) as u32;
    let sub = (i % SUB as usize) as u64;
    let shift = group - 1;
    ((SUB + sub + 1) << shift) - 1
}

impl Histogram {
    /// An empty histogram (allocates its buckets now).
    pub fn new() -> Histogram {
        Histogram { counts: Box::new([0; BUCKETS]), total: 0 }
    }

    /// Counts one latency.
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.counts[index(nanos)] += 1;
        self.total += 1;
    }

    /// Values counted.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Adds another histogram's counts.
    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Empties it (for reuse).
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }

    /// The value at quantile `q` (0..=1): the upper bound of the bucket holding the
    /// ceil(q·n)-th smallest value, so never below the true value; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut previous = None;
        for i in 0..BUCKETS {
            let hi = upper_bound(i);
            if let Some(p) = previous {
                assert_eq!(index(p + 1), i, "bucket {i} starts right after bucket {}", i - 1);
            }
            assert_eq!(index(hi), i);
            previous = Some(hi);
        }
        for v in [0u64, 1, 127, 128, 129, 1000, 123_456, 10_000_000, 1 << 39] {
            let hi = upper_bound(index(v));
            assert!(hi >= v && (hi - v) as f64 <= v as f64 / 64.0, "{v} -> {hi}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1, "huge values share the last bucket");
    }

    #[test]
    fn quantiles_follow_the_data() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0);
        // 1..=10,000 µs, once each.
        for us in 1..=10_000u64 {
            h.record(us * 1000);
        }
        let within = |got: u64, want: u64| got >= want && got as f64 <= want as f64 * 1.016;
        assert!(within(h.quantile(0.5), 5_000_000), "{}", h.quantile(0.5));
        assert!(within(h.quantile(0.99), 9_900_000), "{}", h.quantile(0.99));
        assert!(within(h.quantile(0.999), 9_990_000), "{}", h.quantile(0.999));
        assert!(within(h.quantile(1.0), 10_000_000));
        let mut sum = Histogram::new();
        sum.add(&h);
        sum.add(&h);
        assert_eq!(sum.count(), 20_000);
        assert_eq!(sum.quantile(0.5), h.quantile(0.5));
        sum.clear();
        assert_eq!((sum.count(), sum.quantile(0.99)), (0, 0));
        // One stall among fast requests shows at p99.9 only when it is that frequent.
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(50_000);
        }
        h.record(2_000_000_000);
        assert!(h.quantile(0.99) < 60_000);
        assert!(h.quantile(1.0) >= 2_000_000_000);
    }
}
