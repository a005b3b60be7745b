//! `#[stampede::function] async fn` (cargo feature `tokio`): the generated
//! plain `fn` runs the body's future here.
//!
//! A runtime per call, not one cached per process: a worker runs many calls
//! in one process, and a runtime that outlived its call would keep the
//! tasks the call spawned, and their sockets, running into the next call
//! (where the leak detector would blame them on it). Dropping the runtime at
//! the end of each call cancels them, as `#[tokio::test]` does per test.
//! Building a current-thread runtime costs tens of microseconds, next to the
//! milliseconds a child takes to start.

use std::future::Future;

/// Runs `future` to completion on a fresh tokio current-thread runtime with
/// every driver the build enables (io with tokio's `net`, timers with its
/// `time`). Used by generated code, not public API.
///
/// # Panics
///
/// If the runtime cannot be built (the process is out of descriptors), or
/// when called from inside another tokio runtime: a registered `async fn` is
/// a plain `fn` to its callers, to call from synchronous code.
#[doc(hidden)]
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("stampede: could not build the tokio runtime: {e}"))
        .block_on(future)
}
