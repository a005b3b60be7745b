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
