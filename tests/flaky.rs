stampede::entry!();

use std::cell::Cell;
use std::panic;

use stampede::__private::flaky::{Failure, run, run_test};

// The flaky tests below count their attempts per thread, not in a static:
// libtest runs each test on a fresh thread (nextest in a fresh process), and
// the `expanded_*` tests call the same test functions directly on their own
// thread, at the same time, to check how many attempts were made.
thread_local! {
    static ATTEMPTS: Cell<usize> = const { Cell::new(0) };
}

/// Counts an attempt on this thread and returns its number, from 1.
fn next_attempt() -> usize {
    ATTEMPTS.with(|n| {
        n.set(n.get() + 1);
        n.get()
    })
}

/// The attempts counted on this thread since the last call; starts afresh.
fn take_attempts() -> usize {
    ATTEMPTS.with(|n| n.replace(0))
}

#[stampede::flaky]
#[test]
fn fails_its_first_attempt_then_passes() {
    let attempt = next_attempt();
    assert!(attempt > 1, "attempt {attempt} fails on purpose");
}

#[stampede::flaky(max_runs = 4, min_passes = 2)]
#[test]
fn errs_on_odd_attempts() -> Result<(), String> {
    let attempt = next_attempt();
    if attempt % 2 == 1 {
        Err(format!("odd attempt {attempt}"))
    } else {
        Ok(())
    }
}

#[stampede::flaky(min_passes = 2, max_runs = 3)]
#[test]
fn passes_its_first_three_attempts_on_a_thread() {
    let attempt = next_attempt();
    assert!(attempt <= 3, "attempt {attempt} on this thread");
}

#[test]
fn expanded_tests_make_as_many_attempts_as_needed() {
    take_attempts();
    fails_its_first_attempt_then_passes();
    assert_eq!(take_attempts(), 2, "one failure, one pass");
    errs_on_odd_attempts();
    assert_eq!(
        take_attempts(),
        4,
        "Err, Ok, Err, Ok: 2 passes need all 4 runs"
    );
    passes_its_first_three_attempts_on_a_thread();
    assert_eq!(take_attempts(), 2, "stops once 2 passes are reached");
}

#[test]
fn expanded_test_that_gives_up_panics_with_every_failed_attempt() {
    // As if three attempts had been made on this thread: the next ones fail.
    ATTEMPTS.with(|n| n.set(3));
    let panic = panic::catch_unwind(passes_its_first_three_attempts_on_a_thread).unwrap_err();
    let attempts = take_attempts() - 3;
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert_eq!(
        attempts, 2,
        "2 failures of 3 runs leave 2 passes out of reach"
    );
    assert_eq!(
        message,
        "flaky: gave up after 2 attempts: 2 failed, 0 passed, 2 needed (max_runs = 3, min_passes = 2)\n  \
         attempt 1 failed: attempt 4 on this thread\n  \
         attempt 2 failed: attempt 5 on this thread"
    );
}

#[test]
fn the_runtime_gives_up_once_min_passes_are_out_of_reach() {
    let mut calls = 0;
    // 6 runs, 3 passes needed: at most 3 failures; attempts 1..=4 fail.
    let attempts = run(6, 3, || {
        calls += 1;
        assert!(calls > 4, "call {calls} failed");
    })
    .unwrap_err();
    assert_eq!(
        calls, 4,
        "ran on after the 4th failure made 3 passes impossible"
    );
    assert_eq!((attempts.runs, attempts.passes), (4, 0));
    let attempt_numbers: Vec<usize> = attempts.failures.iter().map(|f| f.attempt).collect();
    assert_eq!(attempt_numbers, [1, 2, 3, 4]);
    assert_eq!(attempts.failures[2].message, "call 3 failed");

    let report = attempts.to_string();
    assert!(
        report.starts_with("flaky: gave up after 4 attempts: 4 failed, 0 passed, 3 needed"),
        "{report}"
    );
    for n in 1..=4 {
        assert!(
            report.contains(&format!("\n  attempt {n} failed: call {n} failed")),
            "{report}"
        );
    }
}

#[test]
fn the_runtime_counts_errs_as_failures_and_oks_as_passes() {
    let mut calls = 0;
    let attempts = run(3, 2, || -> Result<(), std::io::Error> {
        calls += 1;
        if calls == 2 {
            Err(std::io::Error::other("second"))
        } else {
            Ok(())
        }
    })
    .unwrap();
    assert_eq!((attempts.runs, attempts.passes), (3, 2));
    assert_eq!(attempts.failures.len(), 1);
    let Failure { attempt, message } = &attempts.failures[0];
    assert_eq!(*attempt, 2);
    assert!(message.contains("second"), "{message}");
    assert_eq!(
        attempts.to_string(),
        "flaky: passed 2 of 3 attempts (min_passes = 2)"
    );
}

#[test]
fn run_test_panics_with_the_report_when_it_gives_up() {
    let panic = panic::catch_unwind(|| {
        run_test(2, 1, || -> Result<(), &str> { Err("nope") });
    })
    .unwrap_err();
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.starts_with("flaky: gave up after 2 attempts: 2 failed, 0 passed"),
        "{message}"
    );
    assert!(
        message.ends_with("attempt 1 failed: \"nope\"\n  attempt 2 failed: \"nope\""),
        "{message}"
    );
}
