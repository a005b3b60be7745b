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
//!
//! A database transaction is recorded with [`transaction`]: what it read
//! and wrote, key by key, for
//! [`Outcomes::check_serializable`](crate::Outcomes::check_serializable) to
//! find lost updates, write skew and the other isolation anomalies in.

use std::fmt;

use serde::Serialize;

use crate::child;
use crate::protocol;

pub use crate::outcome::{Access, Ending, History, Operation, Value};
use crate::outcome::{Accesses, Mark};

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

/// Begins a database transaction named `name`, in a child's call: record
/// each value it reads and writes, by key, then end it with
/// [`commit`](Transaction::commit) or [`abort`](Transaction::abort).
/// Dropped without either (a panic, an early return, a lost connection), it
/// is indeterminate. [`Outcomes::check_serializable`](crate::Outcomes::check_serializable)
/// checks the committed ones.
///
/// ```no_run
/// # fn query(sql: &str) -> i64 { 100 }
/// # fn execute(sql: &str, v: i64) {}
/// #[stampede::function]
/// fn spend(amount: i64) -> bool {
///     let mut txn = stampede::history::transaction("spend");
///     let balance = query("SELECT balance FROM cards WHERE id = 1");
///     txn.read("card:1", &balance);
///     if balance < amount {
///         txn.commit();
///         return false;
///     }
///     execute("UPDATE cards SET balance = $1 WHERE id = 1", balance - amount);
///     txn.write("card:1", &(balance - amount));
///     txn.commit(); // after the database's COMMIT returned
///     true
/// }
///
/// let outcomes = stampede::call_concurrently(2, spend, 60)?;
/// outcomes.assert_serializable(); // "lost update on card:1: …"
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// A key names one row's column, or anything read and written as a whole
/// (`"card:1"`, `"doctor:2.on_call"`). Versions of a key are told apart by
/// their values, compared as they print (`Debug`), so each write of a key
/// should write a value that key never held, its first value included (a
/// balance that only goes down, a version column, a counter). Where the
/// history shows that broken (a value read that two writes made, or that
/// was read before its only writer began), the check is inconclusive and
/// names it; a write that restores a key's earlier value without reading
/// it first, among overlapping transactions, cannot be seen, and can make
/// a false alarm.
pub fn transaction(name: &str) -> Transaction {
    Transaction {
        op: invoke(name, &Mark),
        accesses: Vec::new(),
    }
}

/// A transaction begun by [`transaction`], not ended yet.
#[must_use = "end it with .commit() or .abort(&error); dropped, it is indeterminate"]
#[derive(Debug)]
pub struct Transaction {
    op: Invocation,
    accesses: Vec<Access>,
}

impl Transaction {
    /// It read `value` from `key` (a row, a column of one).
    ///
    /// # Panics
    ///
    /// When `value` cannot be encoded.
    pub fn read<V: Serialize + fmt::Debug + ?Sized>(&mut self, key: &str, value: &V) {
        if self.op.id.is_some() {
            self.accesses.push(Access::of(false, key, value));
        }
    }

    /// It wrote `value` to `key`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be encoded.
    pub fn write<V: Serialize + fmt::Debug + ?Sized>(&mut self, key: &str, value: &V) {
        if self.op.id.is_some() {
            self.accesses.push(Access::of(true, key, value));
        }
    }

    /// It committed: the database's `COMMIT` returned (or the statement,
    /// outside an explicit transaction).
    pub fn commit(self) {
        self.op.ok(&Accesses(self.accesses));
    }

    /// It rolled back: none of its writes took effect (a serialization
    /// failure, a deadlock, `ROLLBACK`). If it may have committed (the
    /// connection broke during `COMMIT`), drop it instead: indeterminate.
    pub fn abort<E: fmt::Display + ?Sized>(self, error: &E) {
        self.op.fail(error);
    }
}
