//! Seeds: drawing a fresh one, and mixing numbers into well-spread ones
//! (for jitter delays and per-run seeds).

/// The splitmix64 finaliser: tiny, well mixed, and the same on every platform.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The golden-ratio increment of splitmix64, also used to spread indices.
pub(crate) const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seed drawn from the clock and the process id, when none was given.
pub(crate) fn fresh() -> u64 {
    let nanos = crate::sys::monotonic_ns();
    mix64((nanos ^ (u64::from(std::process::id()) << 32)).wrapping_add(GOLDEN))
}

/// The delay of child `index` after each release: uniform in `0..=max_ns`,
/// a pure function of the seed and the index.
pub(crate) fn jitter_ns(seed: u64, index: u64, max_ns: u64) -> u64 {
    if max_ns == 0 {
        return 0;
    }
    let z = mix64(seed ^ index.wrapping_add(1).wrapping_mul(GOLDEN));
    z % (max_ns + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded_and_depends_on_seed_and_index() {
        let max = 1_000;
        let delays: Vec<u64> = (0..64).map(|i| jitter_ns(7, i, max)).collect();
        assert!(delays.iter().all(|d| *d <= max));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "not constant: {delays:?}"
        );
        assert_eq!(
            delays,
            (0..64).map(|i| jitter_ns(7, i, max)).collect::<Vec<_>>()
        );
        assert_ne!(
            delays,
            (0..64).map(|i| jitter_ns(8, i, max)).collect::<Vec<_>>()
        );
        assert_eq!(jitter_ns(7, 3, 0), 0);
    }
}
