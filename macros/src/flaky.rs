//! `#[stampede::flaky(max_runs = N, min_passes = M)]`.
