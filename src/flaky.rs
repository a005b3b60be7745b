//! Runtime of `#[stampede::flaky]`: rerun a test until it passes often enough.
//! `#[stampede::flaky(max_runs = N, min_passes = M)]`.
//!
//! The attribute turns the test into a call to [`run_test`], which runs the
//! original body as attempts in [`run`]: attempt after attempt until
//! `min_passes` of them passed, or until more than `max_runs - min_passes`
//! failed, after which `min_passes` passes are out of reach.
//!
//! ```
//! #[stampede::flaky(max_runs = 3, min_passes = 2)]
//! #[test]
//! fn answers_in_time() -> Result<(), String> {
//!     Ok(())
//! }
//! # fn main() {}
//! ```

#![expect(
    clippy::test_attr_in_doctest,
    reason = "the example shows `#[stampede::flaky]` above `#[test]`; it checks that the expansion compiles"
)]

use std::fmt;

/// What one attempt of a flaky test returned; implemented for the return
/// types libtest accepts that have a clear pass or fail.
#[diagnostic::on_unimplemented(
    message = "a #[stampede::flaky] test returns `()` or `Result<(), E>` with `E: Debug`, not `{Self}`",
    label = "write `()` or `Result<(), E>` here, with an error type `E` that implements `Debug`"
)]
pub trait Attempt {
    /// `None` for a pass, the failure's message for a fail.
    fn failure(self) -> Option<String>;
}

impl Attempt for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Debug> Attempt for Result<(), E> {
    fn failure(self) -> Option<String> {
        // `{:?}`, as libtest prints a test's `Err`.
        self.err().map(|e| format!("{e:?}"))
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The attempt's number, from 1.
    pub attempt: usize,
    /// The panic message, or the `Err`'s `Debug`.
    pub message: String,
}

/// The attempts of a flaky test; what [`run`] returns, for a pass as well as
/// for a fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempts {
    /// The most attempts allowed.
    pub max_runs: usize,
    /// The passes needed.
    pub min_passes: usize,
    /// The attempts made.
    pub runs: usize,
    /// The attempts that passed.
    pub passes: usize,
    /// The attempts that failed, in order.
    pub failures: Vec<Failure>,
}

impl Attempts {
    /// Whether `min_passes` passes were reached.
    pub fn passed(&self) -> bool {
        self.passes >= self.min_passes
    }
}

/// One line for a pass (`flaky: passed 2 of 3 attempts (min_passes = 2)`);
/// for a fail, a summary line then each failed attempt's message.
impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Attempts {
            max_runs,
            min_passes,
            runs,
            passes,
            ..
        } = *self;
        if self.passed() {
            return write!(
                f,
                "flaky: passed {passes} of {runs} attempts (min_passes = {min_passes})"
            );
        }
        let failed = self.failures.len();
        write!(
            f,
            "flaky: gave up after {runs} attempts: {failed} failed, {passes} passed, \
             {min_passes} needed (max_runs = {max_runs}, min_passes = {min_passes})"
        )?;
        for failure in &self.failures {
            write!(f, "\n  attempt {} failed: ", failure.attempt)?;
            // Continuation lines of a multi-line message stay under their attempt.
            let mut lines = failure.message.lines();
            f.write_str(lines.next().unwrap_or_default())?;
            for line in lines {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

/// Calls `attempt` until it has passed `min_passes` times (`Ok`) or failed
/// more than `max_runs - min_passes` times (`Err`), whichever comes first;
/// it never calls it more than `max_runs` times. A panic or an `Err` is a
/// failed attempt; each one is printed to stderr as it happens
/// (`flaky: attempt 2 of 5 failed: <message>`).
///
/// A panic is caught with `catch_unwind`: like libtest, this assumes that
/// whatever the attempt shares with the next one is fine to use after a
/// panic (a test fn shares only statics).
///
/// # Panics
///
/// If `min_passes` is 0 or more than `max_runs` (the attribute rejects both
/// at compile time).
pub fn run<T, F>(max_runs: usize, min_passes: usize, mut attempt: F) -> Result<Attempts, Attempts>
where
    T: Attempt,
    F: FnMut() -> T,
{
    assert!(
        0 < min_passes && min_passes <= max_runs,
        "flaky: need 0 < min_passes <= max_runs, got min_passes = {min_passes}, max_runs = {max_runs}"
    );
    let allowed_failures = max_runs - min_passes;
    let mut attempts = Attempts {
        max_runs,
        min_passes,
        runs: 0,
        passes: 0,
        failures: Vec::new(),
    };
    while attempts.passes < min_passes && attempts.failures.len() <= allowed_failures {
        attempts.runs += 1;
        let failure = match crate::panic::catch(false, &mut attempt) {
            Ok(result) => result.failure(),
            Err(caught) => Some(caught.message),
        };
        match failure {
            None => attempts.passes += 1,
            Some(message) => {
                eprintln!(
                    "flaky: attempt {} of {max_runs} failed: {message}",
                    attempts.runs
                );
                attempts.failures.push(Failure {
                    attempt: attempts.runs,
                    message,
                });
            }
        }
    }
    if attempts.passed() {
        Ok(attempts)
    } else {
        Err(attempts)
    }
}

/// The body of a `#[stampede::flaky]` test: [`run`], then a closing line on
/// stderr for a pass.
///
/// # Panics
///
/// When the test fails, with the report of every failed attempt.
pub fn run_test<T, F>(max_runs: usize, min_passes: usize, test: F)
where
    T: Attempt,
    F: FnMut() -> T,
{
    match run(max_runs, min_passes, test) {
        Ok(attempts) => eprintln!("{attempts}"),
        Err(attempts) => panic!("{attempts}"),
    }
}

/// The message of a panic payload: `panic!` makes a `&str` or a `String`.
#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt function that plays `script` (`true` = pass) and records
    /// how often it was called.
    fn scripted(script: &[bool]) -> impl FnMut() -> Result<(), String> + '_ {
        let mut next = 0;
        move || {
            let pass = script[next];
            next += 1;
            if pass {
                Ok(())
            } else {
                Err(format!("fail #{next}"))
            }
        }
    }

    #[test]
    fn stops_at_the_first_pass_by_default_settings() {
        let attempts = run(2, 1, scripted(&[false, true])).unwrap();
        assert_eq!((attempts.runs, attempts.passes), (2, 1));
        assert_eq!(
            attempts.failures,
            [Failure {
                attempt: 1,
                message: "\"fail #1\"".into()
            }]
        );
        assert_eq!(
            attempts.to_string(),
            "flaky: passed 1 of 2 attempts (min_passes = 1)"
        );
    }

    #[test]
    fn stops_once_min_passes_are_out_of_reach() {
        // 5 runs, 3 passes needed: the third failure ends it after 4 runs.
        let attempts = run(5, 3, scripted(&[true, false, false, false, true])).unwrap_err();
        assert_eq!(
            (attempts.runs, attempts.passes, attempts.failures.len()),
            (4, 1, 3)
        );
        assert_eq!(
            attempts
                .failures
                .iter()
                .map(|f| f.attempt)
                .collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }

    #[test]
    fn never_runs_more_than_needed() {
        let attempts = run(10, 3, scripted(&[true, true, true])).unwrap();
        assert_eq!((attempts.runs, attempts.passes), (3, 3));
        assert!(attempts.failures.is_empty());
    }

    #[test]
    fn a_panic_is_a_failed_attempt_with_its_message() {
        let mut calls = 0;
        let attempts = run(3, 1, || {
            calls += 1;
            assert!(calls > 2, "not yet: call {calls}");
        })
        .unwrap();
        assert_eq!(attempts.runs, 3);
        assert_eq!(
            attempts.failures,
            [
                Failure {
                    attempt: 1,
                    message: "not yet: call 1".into()
                },
                Failure {
                    attempt: 2,
                    message: "not yet: call 2".into()
                },
            ]
        );
    }

    #[test]
    fn a_non_string_panic_payload_is_named() {
        let attempts = run::<(), _>(1, 1, || std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(attempts.failures[0].message, "Box<dyn Any>");
    }

    #[test]
    fn the_failure_report_lists_each_attempt_and_indents_continuation_lines() {
        let attempts = run(2, 1, || -> Result<(), &str> { Err("x") }).unwrap_err();
        assert_eq!(
            attempts.to_string(),
            "flaky: gave up after 2 attempts: 2 failed, 0 passed, 1 needed \
             (max_runs = 2, min_passes = 1)\n  attempt 1 failed: \"x\"\n  attempt 2 failed: \"x\""
        );
        let multi = Attempts {
            max_runs: 1,
            min_passes: 1,
            runs: 1,
            passes: 0,
            failures: vec![Failure {
                attempt: 1,
                message: "left\nright".into(),
            }],
        };
        assert!(
            multi
                .to_string()
                .ends_with("attempt 1 failed: left\n    right"),
            "{multi}"
        );
    }

    #[test]
    #[should_panic(expected = "min_passes <= max_runs")]
    fn min_passes_above_max_runs_is_refused() {
        let _ = run(1, 2, || ());
    }
}
