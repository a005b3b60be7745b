//! Assertion helpers on [`Outcomes`] that fail with a report of every child.
//!
//! Each helper panics with one line saying what was expected and what was
//! seen, then a report of every child: what it returned (or how it failed)
//! and its captured output. They are `#[track_caller]`, so the panic points
//! at the test's line, and they return something to chain on.

use std::fmt::{self, Debug, Write as _};

use super::{Outcome, Outcomes, Status};
use crate::outcome;

impl<R: Debug> Outcomes<R> {
    /// Asserts that every child returned (none panicked, crashed, timed out
    /// or failed).
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() -> u32 { 1 }
    /// stampede::call_concurrently(8, work, ())?.assert_all_returned();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If any child did not return, with a report of every child.
    #[track_caller]
    pub fn assert_all_returned(&self) -> &Self {
        let failed = indices(self.items.iter().filter(|o| !o.is_returned()));
        if !failed.is_empty() {
            self.fail(
                &format!(
                    "expected every child to return, but {}",
                    did_not_return(&failed, self.len())
                ),
                &|_| false,
            );
        }
        self
    }

    /// Asserts that no child panicked. Unlike
    /// [`assert_all_returned`](Outcomes::assert_all_returned), a crash or a
    /// timeout passes: use it when some children are expected to be killed
    /// but none may fail an assertion.
    ///
    /// ```no_run
    /// # #[stampede::function] fn wait_for_lock() {}
    /// use std::time::Duration;
    /// // A child left waiting for the lock is killed at the timeout; that passes.
    /// stampede::Options::new()
    ///     .timeout(Duration::from_secs(2))
    ///     .call_concurrently(4, wait_for_lock, ())?
    ///     .assert_none_panicked();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If any child panicked, with a report of every child.
    #[track_caller]
    pub fn assert_none_panicked(&self) -> &Self {
        let panicked = indices(self.items.iter().filter(|o| o.is_panicked()));
        if !panicked.is_empty() {
            let seen = match panicked.as_slice() {
                [one] => format!("child {one} did"),
                many => format!("{} children did (children {})", many.len(), list(many)),
            };
            self.fail(&format!("expected no child to panic, but {seen}"), &|_| {
                false
            });
        }
        self
    }

    /// Asserts that every child returned and that exactly one of the
    /// returned values matches `pred`; returns that value. The shape of
    /// "exactly one of N concurrent claims succeeds".
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim(db: std::path::PathBuf) -> bool { true }
    /// # let db = std::path::PathBuf::new();
    /// let outcomes = stampede::call_concurrently(8, claim, db)?;
    /// outcomes.assert_exactly_one(|won| *won);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If a child did not return (its value cannot be checked), or if no
    /// value or more than one matches, with a report of every child that
    /// marks the matching values.
    #[track_caller]
    pub fn assert_exactly_one(&self, pred: impl Fn(&R) -> bool) -> &R {
        self.check_count(1, &pred, "exactly one child");
        self.values()
            .find(|value| pred(value))
            .expect("check_count found exactly one")
    }

    /// Asserts that every child returned and that exactly `expected` of the
    /// returned values match `pred`. `assert_count(0, ..)` says "none did",
    /// `assert_count(outcomes.len(), ..)` says "all did".
    ///
    /// ```no_run
    /// # #[stampede::function] fn reserve_seat(seats: u32) -> bool { true }
    /// // Ten buyers, three seats: exactly three reservations succeed.
    /// stampede::call_concurrently(10, reserve_seat, 3)?.assert_count(3, |reserved| *reserved);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If a child did not return, or if the number of matching values is
    /// not `expected`, with a report of every child that marks the matching
    /// values.
    #[track_caller]
    pub fn assert_count(&self, expected: usize, pred: impl Fn(&R) -> bool) -> &Self {
        let who = match expected {
            1 => "exactly one child".to_owned(),
            n => format!("exactly {n} children"),
        };
        self.check_count(expected, &pred, &who);
        self
    }

    #[track_caller]
    fn check_count(&self, expected: usize, pred: &dyn Fn(&R) -> bool, who: &str) {
        let failed = indices(self.items.iter().filter(|o| !o.is_returned()));
        if !failed.is_empty() {
            self.fail(
                &format!(
                    "expected {who} to return a matching value, but {}, so their values cannot be checked",
                    did_not_return(&failed, self.len())
                ),
                pred,
            );
        }
        let matched = indices(self.items.iter().filter(|o| o.value().is_some_and(pred)));
        if matched.len() != expected {
            let seen = match matched.len() {
                0 => "none did".to_owned(),
                1 => format!("1 did (child {})", matched[0]),
                n => format!("{n} did (children {})", list(&matched)),
            };
            self.fail(
                &format!(
                    "expected {who} of {} to return a matching value, but {seen}",
                    self.len()
                ),
                pred,
            );
        }
    }

    /// Panics with `expected` and a report of every child, marking the
    /// returned values that match `pred`.
    #[track_caller]
    fn fail(&self, expected: &str, pred: &dyn Fn(&R) -> bool) -> ! {
        let mut message = String::new();
        let _ = write_report(&mut message, expected, self, pred);
        panic!("{message}");
    }
}

fn indices<'a, R: 'a>(outcomes: impl Iterator<Item = &'a Outcome<R>>) -> Vec<usize> {
    outcomes.map(Outcome::index).collect()
}

fn list(indices: &[usize]) -> String {
    indices
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn did_not_return(failed: &[usize], total: usize) -> String {
    match failed {
        [one] => format!("child {one} of {total} did not return"),
        many => format!(
            "{} of {total} children did not return (children {})",
            many.len(),
            list(many)
        ),
    }
}

/// The expectation, the summary line, the jitter seed, then every child:
/// what it returned or how it failed, and its output; then the timeline of
/// up to 32 children.
fn write_report<R: Debug>(
    out: &mut String,
    expected: &str,
    outcomes: &Outcomes<R>,
    pred: &dyn Fn(&R) -> bool,
) -> fmt::Result {
    writeln!(out, "{expected}")?;
    write!(out, "{}", Summary(outcomes))?;
    outcome::write_seed(out, outcomes.seed)?;
    for outcome in &outcomes.items {
        match &outcome.status {
            Status::Returned(value) => {
                let mark = if pred(value) { "  <- matches" } else { "" };
                writeln!(
                    out,
                    "child {} (pid {}) running `{}` returned {value:?}{mark}",
                    outcome.index, outcome.pid, outcome.function
                )?;
                outcome::write_stream(out, "stdout", &outcome.stdout)?;
                outcome::write_stream(out, "stderr", &outcome.stderr)?;
            }
            _ => write!(out, "{outcome}")?,
        }
    }
    outcome::write_timeline(out, outcomes.items.iter())
}

/// The summary line of [`Outcomes`]' own report ("8 children: 7 returned, 1 panicked").
struct Summary<'a, R>(&'a Outcomes<R>);

impl<R> fmt::Display for Summary<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        outcome::summary(f, self.0.items.iter().map(|o| &o.status))
    }
}
