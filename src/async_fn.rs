//! `#[stampede::function] async fn` (cargo feature `tokio`): the generated
//! plain `fn` runs the body's future here.
//!
//! One runtime per process, built at the first call and kept: a `Load`
//! worker runs many calls, and what a call leaves for the next — a client
//! kept in a `static`, a pool, the task that drives a connection — must
//! find the runtime it was made on still there. (With a runtime per call,
//! a `tokio-postgres` client kept across calls answered call 1 and then
//! "connection closed": its connection task had died with call 1's
//! runtime.) Tasks a call spawns run again whenever a later call awaits;
//! what they hold counts as the worker's, which is what the leak detector
//! should see.

use std::future::Future;
use std::sync::OnceLock;

/// Runs `future` to completion on this process's tokio current-thread
/// runtime, built at the first call with every driver the build enables
/// (io with tokio's `net`, timers with its `time`). Used by generated
/// code, not public API.
///
/// # Panics
///
/// If the runtime cannot be built (the process is out of descriptors), or
/// when called from inside another tokio runtime (a `#[tokio::test]`): a
/// registered `async fn` is a plain `fn` to its callers, run by stampede
/// in its children, and the message says so.
#[doc(hidden)]
pub fn block_on<F: Future>(name: &str, future: F) -> F::Output {
    if tokio::runtime::Handle::try_current().is_ok() {
        panic!(
            "stampede: `{name}` is a registered `async fn`, which stampede runs on a runtime of \
             its own in each child; it was called here from inside a tokio runtime (a \
             `#[tokio::test]`?), where it cannot block. Run it through \
             `stampede::call_concurrently`, `Load` or `Batch` from a plain `#[test]`, or \
             call an async function that is not registered"
        );
    }
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("stampede: could not build the tokio runtime: {e}"))
        })
        .block_on(future)
}
