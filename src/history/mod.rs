//! Histories: what each child did, as operations with a start and an end,
//! for a model (`stampede::model`) to check instead of a hand-written
//! invariant.
//!
//! In a registered function, wrap each operation on the shared thing:
//!
//! ```no_run
//! # fn try_claim(job: u32) -> bool { true }
//! #[stampede::function]
//! fn worker(job: u32) -> bool {
//!     let op = stampede::history::invoke("claim", &job);
//!     let won = try_claim(job); // the real work: a query, a request
//!     op.ok(&won);
//!     won
//! }
//!
//! let outcomes = stampede::call_concurrently(8, worker, 7)?;
//! outcomes.assert_linearizable(&stampede::model::ClaimOnce);
//! # Ok::<(), stampede::Error>(())
//! ```
//!
//! Each end of an operation goes to the parent as it happens, on the clock
//! parent and children share: a child that crashes or times out in the
//! middle leaves its operation **indeterminate** (it may or may not have
//! taken effect), never forgotten. `fail(&error)` says the operation did
//! not take effect; the checker leaves it out. In a `Load` worker each
//! call's operations go to the report ([`LoadReport::history`](crate::LoadReport::history)).
//! Outside a child's call (in the test itself) `invoke` records nothing and
//! its guard does nothing.

use std::fmt;

use serde::Serialize;

use crate::child;
use crate::protocol;

pub use crate::outcome::{Ending, History, Operation, Value};

/// Begins an operation named `name` on `input`, in a child's call; end it
/// with [`ok`](Invocation::ok) or [`fail`](Invocation::fail). Dropped
/// without either (a panic, an early return), it is indeterminate.
///
/// ```no_run
/// # fn put(k: &str, v: i64) -> Result<(), String> { Ok(()) }
/// # #[stampede::function] fn writer() {
/// let op = stampede::history::invoke("put", &("a".to_owned(), 1i64));
/// match put("a", 1) {
///     Ok(()) => op.ok(&()),
///     Err(e) => op.fail(&e), // it did not take effect
/// }
/// # }
/// ```
///
/// # Panics
///
/// When `input` cannot be encoded (a `Serialize` implementation that fails).
pub fn invoke<I: Serialize + fmt::Debug + ?Sized>(name: &str, input: &I) -> Invocation {
    let bytes = protocol::encode(input).unwrap_or_else(|e| {
        panic!("stampede::history::invoke({name:?}): the input {input:?} cannot be encoded: {e}")
    });
    Invocation {
        id: child::history::invoke(name, bytes, format!("{input:?}")),
    }
}

/// An operation begun by [`invoke`], not ended yet.
#[must_use = "end it with .ok(&output) or .fail(&error); dropped, it is indeterminate"]
#[derive(Debug)]
pub struct Invocation {
    /// `None` outside a call: nothing is recorded.
    id: Option<u64>,
}

impl Invocation {
    /// The operation returned `output`.
    ///
    /// # Panics
    ///
    /// When `output` cannot be encoded.
    pub fn ok<O: Serialize + fmt::Debug + ?Sized>(mut self, output: &O) {
        if let Some(id) = self.id.take() {
            let bytes = protocol::encode(output).unwrap_or_else(|e| {
                panic!("stampede::history: the output {output:?} cannot be encoded: {e}")
            });
            child::history::end(id, Ok(Some((bytes, format!("{output:?}")))));
        }
    }

    /// The operation failed without taking effect (a refused request, a
    /// rolled-back transaction). If it may have taken effect (a timeout, a
    /// lost connection), drop the guard instead: indeterminate.
    pub fn fail<E: fmt::Display + ?Sized>(mut self, error: &E) {
        if let Some(id) = self.id.take() {
            child::history::end(id, Err(error.to_string()));
        }
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            child::history::end(id, Ok(None));
        }
    }
}
