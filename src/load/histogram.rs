//! A lock-free latency histogram in microseconds: log-linear buckets (64 per power of two, so a
//! percentile is within ~1.6 % of the true value), the exact maximum kept on the side.
//!
//! Shared by every client task of a `load` run: recording is one `fetch_add`, so thousands of
//! receivers need no lock and no per-client buffer. Pure std; used only by `load`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two (2^6): the relative error of a bucket is at most 1/64.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values at or above 2^32 µs (over an hour) land in the last bucket.
const MAX_VALUE: u64 = (1 << 32) - 1;
/// Buckets: `2 * SUB` exact ones, then `SUB` per power of two up to 2^32.
const BUCKETS: usize = (2 * SUB + (32 - SUB_BITS as u64 - 1) * SUB) as usize;

/// Latencies in microseconds.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn index(value: u64) -> usize {
    let v = value.min(MAX_VALUE);
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let top = v >> shift; // in [SUB, 2 * SUB)
    (2 * SUB + u64::from(shift - 1) * SUB + (top - SUB)) as usize
}

/// The largest value that falls into bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = (i - 2 * SUB) / SUB + 1;
    let top = (i - 2 * SUB) % SUB + SUB;
    ((top + 1) << shift) - 1
}

impl Histogram {
    /// Records one latency.
    pub fn record(&self, micros: u64) {
        self.buckets[index(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The exact largest latency recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The latency at quantile `q` (0.5 = median, 0.999 = p99.9): the upper edge of the bucket
    /// holding that rank, never above the recorded maximum. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(upper_bound(i).min(self.max()));
            }
        }
        Some(self.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_stay_within_their_precision() {
        let mut last = 0;
        for v in (0..200_000u64).chain([1 << 20, (1 << 31) + 12345, MAX_VALUE, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(i >= last || v > 200_000, "index goes backwards at {v}");
            last = i;
            let upper = upper_bound(i);
            assert!(
                upper >= v.min(MAX_VALUE),
                "{v} above its bucket's upper bound {upper}"
            );
            assert!(
                (upper - v.min(MAX_VALUE)) as f64 <= v as f64 / SUB as f64 + 1.0,
                "{v}: bucket upper bound {upper} too far"
            );
        }
        assert_eq!(index(MAX_VALUE), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1000);
        let p50 = h.quantile(0.5).unwrap();
        assert!((500..=508).contains(&p50), "p50 {p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((990..=1000).contains(&p99), "p99 {p99}");
        assert_eq!(h.quantile(1.0), Some(1000));
        assert_eq!(h.quantile(0.0), Some(1));
    }

    #[test]
    fn one_outlier_sets_the_max_and_the_top_quantile_only() {
        let h = Histogram::default();
        for _ in 0..999 {
            h.record(100);
        }
        h.record(5_000_000);
        assert_eq!(h.quantile(0.99), Some(100));
        assert_eq!(h.quantile(0.999), Some(100));
        assert_eq!(h.quantile(1.0), Some(5_000_000));
        assert_eq!(h.max(), 5_000_000);
    }
}
