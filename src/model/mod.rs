//! Models: what a shared thing is allowed to do, for checking a
//! history (`stampede::history`) instead of writing an invariant by hand.
//!
//! A history is **linearizable** under a model when its operations can be
//! put in one order that respects their times (an operation that returned
//! before another was invoked comes first) and in which every operation's
//! result is what the model gives. [`Outcomes::check`](crate::Outcomes::check)
//! searches for that order; when there is none it names the smallest set of
//! operations that has none, and says why in a few lines.
//!
//! Shipped models: [`ClaimOnce`], [`Counter`], [`Register`], [`KeyValue`],
//! [`Set`], [`Queue`]; [`NeverFails`] around any of them (or around
//! [`Anything`]) makes a refused operation a violation too. A model of your
//! own implements [`Model`].
//!
//! ```no_run
//! # fn try_claim(job: u32) -> bool { true }
//! #[stampede::function]
//! fn worker(job: u32) -> bool {
//!     let op = stampede::history::invoke("claim", &job);
//!     let won = try_claim(job);
//!     op.ok(&won);
//!     won
//! }
//!
//! let outcomes = stampede::call_concurrently(8, worker, 7)?;
//! if let Err(violation) = outcomes.check(&stampede::model::ClaimOnce) {
//!     panic!("{violation}"); // "child 5's claim(7) → true …: 7 was claimed already"
//! }
//! # Ok::<(), stampede::Error>(())
//! ```

mod check;
mod models;
mod page;
mod serializable;
mod violation;

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

pub use models::{Anything, ClaimOnce, Counter, Held, KeyValue, NeverFails, Queue, Register, Set};
pub use violation::Violation;

use crate::outcome::{History, Operation, Outcomes};

/// What a shared thing is allowed to do: a state machine over operations.
///
/// ```
/// use stampede::history::Operation;
/// use stampede::model::Model;
///
/// /// A flag that can be raised once; `raise` returns whether it was down.
/// struct Flag;
///
/// impl Model for Flag {
///     type State = bool;
///     fn name(&self) -> String { "Flag".into() }
///     fn init(&self) -> bool { false }
///     fn step(&self, raised: &bool, op: &Operation) -> Result<bool, String> {
///         match op.output().map(|v| v.decode::<bool>()).transpose()? {
///             Some(true) if *raised => Err("the flag was up already".into()),
///             Some(false) if !*raised => Err("the flag was down, so raising it succeeds".into()),
///             _ => Ok(true), // raised now, or an indeterminate raise that took effect
///         }
///     }
/// }
/// ```
pub trait Model {
    /// The thing's state; equal states are explored once.
    type State: Clone + Eq + Hash + fmt::Debug;

    /// The model's name, for reports.
    fn name(&self) -> String;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `op` in `state`, or why `op`'s result is not
    /// possible there. An operation with no output (indeterminate:
    /// [`Operation::output`] is `None`) is applied as if it took effect; the
    /// checker also tries it as never having happened.
    ///
    /// # Errors
    ///
    /// Why the operation's result is impossible in `state`, in words a
    /// report can quote ("7 was claimed already").
    fn step(&self, state: &Self::State, op: &Operation) -> Result<Self::State, String>;

    /// The part of the thing `op` touches, when operations on different
    /// parts are independent (a key of a map, a job to claim): the history
    /// is checked one part at a time, which keeps large histories fast.
    /// `None` (the default): one part.
    fn key(&self, op: &Operation) -> Option<Vec<u8>> {
        let _ = op;
        None
    }

    /// Whether `op`, in every state where its result is possible, leaves
    /// the state as it is: a read, a claim that lost, a dequeue that found
    /// the queue empty. Such an operation is placed as soon as it fits,
    /// without trying it elsewhere, which keeps histories with many reads
    /// fast. Say `true` only when it holds in *every* state: a write of the
    /// value already there changes nothing now but does later. Default
    /// `false`: always correct, sometimes slower.
    fn read_only(&self, op: &Operation) -> bool {
        let _ = op;
        false
    }

    /// How `op` reads in a report; by default `name(input) → output`.
    fn describe(&self, op: &Operation) -> String {
        op.to_string()
    }

    /// Whether `op` may fail (end with `fail(&error)`): by default yes, and
    /// a failed operation is left out, as never having happened. `false`
    /// makes a failure a violation by itself: an operation that must not
    /// be refused (see [`NeverFails`]).
    fn may_fail(&self, op: &Operation) -> bool {
        let _ = op;
        true
    }
}

/// How much searching a check may do before it gives up, inconclusive:
/// steps of the model, over all parts.
pub(crate) const STEP_BUDGET: u64 = 5_000_000;

/// Checks `history` against `model`: `Ok` when it is linearizable.
///
/// # Errors
///
/// A [`Violation`]: the smallest set of operations found that no order
/// allows, explained; or an inconclusive search (too large for the budget),
/// which is never a pass; or a model that panicked.
pub fn check<M: Model>(model: &M, history: &History) -> Result<(), Violation> {
    check::check(model, history, STEP_BUDGET).map_err(|v| v.since(first_invoked(history)))
}

/// When `history` begins: its times are shown from there.
fn first_invoked(history: &History) -> Option<crate::clock::Timestamp> {
    history.operations().first().map(Operation::invoked)
}

/// Checks the transactions of `history` (`stampede::history::transaction`)
/// for isolation anomalies: `Ok` when what the committed ones read is what
/// some serial order of them would have read, as far as their reads and
/// writes tell. Operations of `history::invoke` are left out.
///
/// Found: lost updates (two transactions read one version and both
/// overwrote it), write skew (G2-item), read skew (G-single), circular
/// information flow (G1c), intermediate reads (G1b), and a transaction
/// that reads back another value than it read or wrote. Transactions that
/// rolled back or never ended are left out. Versions are told apart by
/// their values (see `history::transaction`).
///
/// # Errors
///
/// A [`Violation`]: the anomaly, its transactions and why no serial order
/// has them; or an inconclusive check when a value read was written more
/// than once.
pub fn check_serializable(history: &History) -> Result<(), Violation> {
    serializable::check(history).map_err(|v| v.since(first_invoked(history)))
}

impl<R> Outcomes<R> {
    /// Checks the call's [`history`](Outcomes::history) against `model`
    /// (see [`model`](crate::model)).
    ///
    /// ```no_run
    /// # #[stampede::function] fn worker(job: u32) -> bool { true }
    /// let outcomes = stampede::call_concurrently(8, worker, 7)?;
    /// match outcomes.check(&stampede::model::ClaimOnce) {
    ///     Ok(()) => {}
    ///     Err(violation) => panic!("{violation}\n{}", outcomes.history()),
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`check`].
    pub fn check<M: Model>(&self, model: &M) -> Result<(), Violation> {
        let incomplete = self.incomplete();
        if !incomplete.is_empty() {
            return Err(Violation::incomplete(model.name(), incomplete));
        }
        check(model, &self.history())
    }

    /// Panics unless the call's history is linearizable under `model`,
    /// with the violation explained, the path of the page that draws it
    /// (under the cargo target directory: `target/stampede/violation-*.html`,
    /// see [`Violation::html`]), every child's operations, and every
    /// child's report.
    ///
    /// ```no_run
    /// # #[stampede::function] fn worker(job: u32) -> bool { true }
    /// stampede::call_concurrently(8, worker, 7)?.assert_linearizable(&stampede::model::ClaimOnce);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When [`check`](Outcomes::check) finds a violation, gives up
    /// inconclusive, or the model panics.
    #[track_caller]
    pub fn assert_linearizable<M: Model>(&self, model: &M) {
        if let Err(violation) = self.check(model) {
            self.fail_with(&violation);
        }
    }

    /// Checks the call's transactions (`stampede::history::transaction`)
    /// for isolation anomalies: see [`check_serializable`].
    ///
    /// ```no_run
    /// # #[stampede::function] fn spend(amount: i64) -> bool { true }
    /// let outcomes = stampede::call_concurrently(2, spend, 60)?;
    /// if let Err(violation) = outcomes.check_serializable() {
    ///     panic!("{violation}"); // "not serializable: lost update on card:1: …"
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`check_serializable`]; and inconclusive when some children
    /// could not report every transaction.
    pub fn check_serializable(&self) -> Result<(), Violation> {
        let incomplete = self.incomplete();
        if !incomplete.is_empty() {
            return Err(Violation::incomplete(
                violation::SERIALIZABILITY.into(),
                incomplete,
            ));
        }
        let history = self.history();
        // A child that returned with a transaction never ended: a guard
        // dropped without commit() or abort(), what it did unknown.
        let open: Vec<Operation> = self
            .items
            .iter()
            .filter(|o| matches!(o.status, crate::Status::Returned(_)))
            .flat_map(|o| o.history.iter().filter(|op| crate::outcome::left_open(op)))
            .cloned()
            .collect();
        if let Some(first) = open.first() {
            return Err(Violation::ambiguous(
                format!(
                    "child {} returned, yet its transaction `{}` never ended (neither commit() \
                     nor abort() was called), so what it did is unknown{}. End every \
                     transaction: commit() once the database's COMMIT returned, abort(&error) \
                     when it rolled back",
                    first.child(),
                    first.name(),
                    match open.len() {
                        1 => String::new(),
                        n => format!(" ({n} such transactions)"),
                    }
                ),
                open,
            )
            .since(first_invoked(&history)));
        }
        check_serializable(&history)
    }

    /// Panics unless the call's transactions are serializable
    /// ([`check_serializable`](Outcomes::check_serializable)), with the
    /// anomaly explained, the page that draws it, every child's operations
    /// and every child's report, as
    /// [`assert_linearizable`](Outcomes::assert_linearizable) does.
    ///
    /// # Panics
    ///
    /// On an anomaly, or when the check is inconclusive.
    #[track_caller]
    pub fn assert_serializable(&self) {
        if let Err(violation) = self.check_serializable() {
            self.fail_with(&violation);
        }
    }

    /// The indices of children that could not report every operation.
    fn incomplete(&self) -> Vec<usize> {
        self.items
            .iter()
            .filter(|o| !o.history_complete)
            .map(|o| o.index)
            .collect()
    }

    /// Panics with `violation`, the page drawing it, the history and the
    /// report.
    #[track_caller]
    fn fail_with(&self, violation: &Violation) -> ! {
        let history = self.history();
        let drawn = match page::directory() {
            Some(dir) => {
                static PAGES: AtomicU64 = AtomicU64::new(0);
                let name = format!(
                    "violation-{}-{}",
                    std::process::id(),
                    PAGES.fetch_add(1, Ordering::Relaxed)
                );
                match page::write(&dir, &name, &violation.html(&history)) {
                    Ok(path) => format!("drawn as a page: {}", path.display()),
                    Err(why) => format!("(the page could not be written: {why})"),
                }
            }
            None => "(no page: this program is not in a cargo target directory)".to_owned(),
        };
        panic!(
            "{violation}\n{drawn}\n\nevery operation, by child:\n{history}\n{}",
            self.report()
        );
    }

    /// Every child's operations (`stampede::history::invoke`),
    /// merged in the order they were invoked.
    ///
    /// ```no_run
    /// # #[stampede::function] fn worker(job: u32) -> bool { true }
    /// let outcomes = stampede::call_concurrently(8, worker, 7)?;
    /// println!("{}", outcomes.history()); // per child: times, name(input) → output
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn history(&self) -> History {
        History::new(
            self.items
                .iter()
                .flat_map(|o| o.history.iter().cloned())
                .collect::<Vec<Operation>>(),
        )
    }
}

#[cfg(test)]
mod tests;
