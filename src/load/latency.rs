//! [`Latency`]: a run's latencies as nearest-rank percentiles, in memory
//! that does not grow with the run: every latency is kept while there are
//! at most [`EXACT_LIMIT`]; beyond, they are counted in a histogram whose
//! buckets are 1/1024 of their value wide (ranks stay exact, values are
//! kept to 0.1 %).

use std::fmt;
use std::time::Duration;

use crate::outcome::human;

/// How many latencies are kept one by one (512 KiB of them).
const EXACT_LIMIT: usize = 1 << 16;
/// Each power of two is cut into 2^SUB_BITS buckets.
const SUB_BITS: u32 = 10;
/// Values below this have a bucket each.
const LINEAR: u64 = 2 << SUB_BITS;

/// Latencies of a run's calls as nearest-rank percentiles over every call.
///
/// Exact for runs of up to 65,536 calls. Beyond, each latency counts in a
/// bucket 1/1024 of its value wide, so a percentile is the upper edge of
/// the bucket that holds it (at most 0.1 % above the true value), and a
/// run of a billion calls takes the same memory as a run of a million.
/// The maximum is always exact.
///
/// ```no_run
/// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
/// let report = stampede::Load::new(1000).run(fetch, 8080)?;
/// let latency = report.latency();
/// assert_eq!(latency.count(), 1000);
/// assert!(latency.is_exact());
/// assert!(latency.p50() <= latency.p90() && latency.p99() <= latency.max());
/// let p999 = latency.percentile(99.9);
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Every latency (ns) while they are few; sorted once the run is over.
    exact: Option<Vec<u64>>,
    /// Counts per bucket: `octaves[0]` has a bucket per value below
    /// [`LINEAR`]; `octaves[k]` (k ≥ 1) the values `sub << k` for `sub` in
    /// `2^SUB_BITS..2^(SUB_BITS+1)`.
    octaves: Vec<Vec<u64>>,
    count: u64,
    max: u64,
}

fn bucket(ns: u64) -> (usize, usize) {
    if ns < LINEAR {
        return (0, ns as usize);
    }
    let shift = 63 - ns.leading_zeros() - SUB_BITS;
    (shift as usize, ((ns >> shift) - (1 << SUB_BITS)) as usize)
}

/// The largest value in bucket `(octave, sub)`.
fn upper_edge(octave: usize, sub: usize) -> u64 {
    if octave == 0 {
        return sub as u64;
    }
    let start = ((1u64 << SUB_BITS) + sub as u64) << octave;
    start.saturating_add((1u64 << octave) - 1)
}

impl Latency {
    pub(crate) fn new() -> Self {
        Self {
            exact: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Counts one latency, in nanoseconds.
    pub(crate) fn record(&mut self, ns: u64) {
        self.count += 1;
        self.max = self.max.max(ns);
        let (octave, sub) = bucket(ns);
        if self.octaves.len() <= octave {
            self.octaves.resize_with(octave + 1, Vec::new);
        }
        let counts = &mut self.octaves[octave];
        if counts.is_empty() {
            counts.resize(
                if octave == 0 {
                    LINEAR as usize
                } else {
                    1 << SUB_BITS
                },
                0,
            );
        }
        counts[sub] += 1;
        if let Some(exact) = &mut self.exact {
            if exact.len() < EXACT_LIMIT {
                exact.push(ns);
            } else {
                self.exact = None;
            }
        }
    }

    /// Ends the recording: sorts what is kept one by one.
    pub(crate) fn finish(mut self) -> Self {
        if let Some(exact) = &mut self.exact {
            exact.sort_unstable();
        }
        self
    }

    /// How many calls were measured.
    pub fn count(&self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    /// Whether every latency was kept as it was (runs of up to 65,536
    /// calls); otherwise percentiles are within 0.1 % above the true value.
    pub fn is_exact(&self) -> bool {
        self.exact.is_some()
    }

    /// The `p`-th percentile (0 < p ≤ 100), nearest rank: the smallest
    /// latency that at least `p` % of the calls did not exceed. Zero for no calls.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        if let Some(sorted) = &self.exact {
            return Duration::from_nanos(sorted[rank as usize - 1]);
        }
        let mut seen = 0;
        for (octave, counts) in self.octaves.iter().enumerate() {
            for (sub, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Duration::from_nanos(upper_edge(octave, sub).min(self.max));
                }
            }
        }
        self.max()
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Duration {
        self.percentile(90.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    /// The slowest call, exact.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {}  p90 {}  p99 {}  max {}",
            human(self.p50()),
            human(self.p90()),
            human(self.p99()),
            human(self.max())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(samples: impl IntoIterator<Item = u64>) -> Latency {
        let mut latency = Latency::new();
        for ns in samples {
            latency.record(ns);
        }
        latency.finish()
    }

    #[test]
    fn percentiles_are_nearest_rank_over_every_call() {
        let latency = of((1..=100).rev().map(|ms| ms * 1_000_000));
        assert!(latency.is_exact());
        assert_eq!(latency.p50(), Duration::from_millis(50));
        assert_eq!(latency.p90(), Duration::from_millis(90));
        assert_eq!(latency.p99(), Duration::from_millis(99));
        assert_eq!(latency.max(), Duration::from_millis(100));
        assert_eq!(of([7]).p50(), Duration::from_nanos(7));
        assert_eq!(of([]).p99(), Duration::ZERO);
    }

    #[test]
    fn buckets_cover_every_value_in_order_within_a_thousandth() {
        let mut last = (0, 0);
        for ns in (0..5000)
            .chain((1..60).map(|k| (1u64 << k) + 12_345))
            .chain([u64::MAX])
        {
            let (octave, sub) = bucket(ns);
            assert!((octave, sub) >= last, "{ns}: buckets out of order");
            last = (octave, sub);
            let edge = upper_edge(octave, sub);
            assert!(edge >= ns, "{ns} above its bucket's edge {edge}");
            assert!(
                (edge - ns) as f64 <= ns as f64 / 1024.0,
                "{ns}: edge {edge} too far"
            );
        }
    }

    #[test]
    fn past_the_exact_limit_ranks_stay_exact_and_values_within_a_thousandth() {
        // 100,000 latencies, 1 µs to 100 ms: a permutation of known values.
        let n: u64 = 100_000;
        let value = |i: u64| 1_000 + i * 1_000;
        let latency = of((0..n).map(|i| value((i * 7_919) % n)));
        assert!(!latency.is_exact());
        assert_eq!(latency.count(), n as usize);
        for p in [50.0, 90.0, 99.0, 99.9, 99.99] {
            let truth = value(((p / 100.0) * n as f64).ceil() as u64 - 1) as f64;
            let got = latency.percentile(p).as_nanos() as f64;
            assert!(
                got >= truth && got <= truth * (1.0 + 1.0 / 1024.0),
                "p{p}: {got} vs {truth}"
            );
        }
        assert_eq!(latency.max(), Duration::from_nanos(value(n - 1)));
    }
}
