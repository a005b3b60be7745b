//! Runtime of `#[stampede::flaky]`: rerun a test until it passes often enough.
