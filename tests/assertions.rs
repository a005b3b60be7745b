//! The assertion helpers on `Outcomes`: each one passing, and each one
//! failing with a message that says what was expected and reports every child.

stampede::entry!();

use std::fs::OpenOptions;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

/// A correct claim through the filesystem: creating a file with
/// `create_new` is atomic, so exactly one child wins. The winner returns its
/// pid, which it also writes into the file.
#[stampede::function]
fn claim_file(dir: PathBuf) -> Option<u32> {
    let pid = std::process::id();
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join("winner"))
    {
        Ok(mut file) => {
            println!("child {pid}: I won");
            write!(file, "{pid}").expect("writing the winner's pid");
            Some(pid)
        }
        Err(_) => None,
    }
}

/// Every child believes it won: the double claim the helpers must catch.
#[stampede::function]
fn claim_always() -> bool {
    println!("claiming without looking");
    true
}

/// Nobody wins.
#[stampede::function]
fn claim_never() -> bool {
    false
}

/// The winner returns, every loser panics.
#[stampede::function]
fn claim_or_panic(dir: PathBuf) -> bool {
    if claim_file(dir).is_none() {
        panic!("lost the claim, giving up");
    }
    true
}

/// Ends the process without reporting: a crash, not a panic.
#[stampede::function]
fn exit_early() -> bool {
    eprintln!("exiting with code 3");
    std::process::exit(3)
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let payload =
        panic::catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion should have failed");
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .unwrap_or_default(),
    }
}

#[test]
fn assert_all_returned_passes_when_every_child_returns() {
    let outcomes = stampede::call_concurrently(3, claim_never, ()).unwrap();
    assert_eq!(outcomes.assert_all_returned().len(), 3);
}

#[test]
fn assert_all_returned_fails_naming_the_children_that_panicked_with_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = stampede::call_concurrently(4, claim_or_panic, dir.path().to_owned()).unwrap();
    let message = panic_message(|| {
        outcomes.assert_all_returned();
    });
    let first_line = message.lines().next().unwrap();
    assert_eq!(
        first_line,
        "expected every child to return, but 3 of 4 children did not return (children \
         "
        .to_owned()
            + &outcomes
                .failures()
                .map(|o| o.index().to_string())
                .collect::<Vec<_>>()
                .join(", ")
            + ")",
        "{message}"
    );
    assert!(
        message.contains("4 children: 1 returned, 3 panicked"),
        "{message}"
    );
    let headlines = message
        .lines()
        .filter(|l| l.starts_with("child ") && l.contains("` panicked at "));
    assert_eq!(headlines.count(), 3, "{message}");
    assert!(message.contains("lost the claim, giving up"), "{message}");
    assert!(
        message.contains("returned true"),
        "the winner's value is missing:\n{message}"
    );
    assert!(
        message.contains("I won"),
        "the winner's stdout is missing:\n{message}"
    );
}

#[test]
fn assert_none_panicked_passes_when_children_crash_without_panicking() {
    let outcomes = stampede::call_concurrently(2, exit_early, ()).unwrap();
    outcomes.assert_none_panicked();
    let message = panic_message(|| {
        outcomes.assert_all_returned();
    });
    assert!(message.contains("crashed: exit code 3"), "{message}");
    assert!(
        message.contains("exiting with code 3"),
        "the child's stderr is missing:\n{message}"
    );
}

#[test]
fn assert_none_panicked_fails_naming_the_children_that_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = stampede::call_concurrently(3, claim_or_panic, dir.path().to_owned()).unwrap();
    let message = panic_message(|| {
        outcomes.assert_none_panicked();
    });
    assert!(
        message.starts_with("expected no child to panic, but 2 children did (children "),
        "{message}"
    );
    assert!(message.contains("lost the claim, giving up"), "{message}");
}

#[test]
fn assert_exactly_one_returns_the_single_winner() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = stampede::call_concurrently(8, claim_file, dir.path().to_owned()).unwrap();
    let winner = outcomes.assert_exactly_one(Option::is_some);
    let recorded = std::fs::read_to_string(dir.path().join("winner")).unwrap();
    assert_eq!(*winner, Some(recorded.parse().unwrap()));
}

#[test]
fn assert_exactly_one_fails_on_a_double_claim_marking_every_winner() {
    let outcomes = stampede::call_concurrently(4, claim_always, ()).unwrap();
    let message = panic_message(|| {
        outcomes.assert_exactly_one(|won| *won);
    });
    assert_eq!(
        message.lines().next().unwrap(),
        "expected exactly one child of 4 to return a matching value, but 4 did (children 0, 1, 2, 3)"
    );
    assert_eq!(
        message.matches("returned true  <- matches").count(),
        4,
        "{message}"
    );
    assert_eq!(
        message.matches("claiming without looking").count(),
        4,
        "every child's stdout:\n{message}"
    );
}

#[test]
fn assert_exactly_one_fails_when_nobody_wins() {
    let outcomes = stampede::call_concurrently(3, claim_never, ()).unwrap();
    let message = panic_message(|| {
        outcomes.assert_exactly_one(|won| *won);
    });
    assert!(
        message.starts_with(
            "expected exactly one child of 3 to return a matching value, but none did"
        ),
        "{message}"
    );
    assert_eq!(message.matches("returned false").count(), 3, "{message}");
}

#[test]
fn assert_exactly_one_fails_when_a_child_did_not_return_even_if_one_matched() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = stampede::call_concurrently(3, claim_or_panic, dir.path().to_owned()).unwrap();
    let message = panic_message(|| {
        outcomes.assert_exactly_one(|won| *won);
    });
    assert!(
        message.contains("2 of 3 children did not return"),
        "{message}"
    );
    assert!(
        message.contains("their values cannot be checked"),
        "{message}"
    );
}

#[test]
fn assert_count_passes_with_the_right_count_and_fails_with_another() {
    let outcomes = stampede::call_concurrently(3, claim_always, ()).unwrap();
    outcomes
        .assert_count(3, |won| *won)
        .assert_count(0, |won| !*won);
    let message = panic_message(|| {
        outcomes.assert_count(2, |won| *won);
    });
    assert!(
        message
            .starts_with("expected exactly 2 children of 3 to return a matching value, but 3 did"),
        "{message}"
    );
}

#[test]
fn failing_assertions_point_at_the_callers_line() {
    let outcomes = stampede::call_concurrently(2, claim_always, ()).unwrap();
    // A hunt records where its scenario panicked, without touching the
    // process-wide panic hook that the other tests of this binary share.
    let failure = stampede::Hunt::runs(1).run(|_| {
        outcomes.assert_count(1, |won| *won);
    });
    let expected = format!("{}:{}:", file!(), line!() - 2);
    let failure = failure.unwrap_err();
    assert!(
        failure.location().is_some_and(|l| l.starts_with(&expected)),
        "{:?} is not at {expected}",
        failure.location()
    );
}

/// The line of `report` that draws child `index`.
fn timeline_row(report: &str, index: usize) -> &str {
    let prefix = format!("child {index} ");
    report
        .lines()
        .skip_while(|l| !l.starts_with("timeline: 1 column = "))
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no timeline row for child {index} in:\n{report}"))
}

#[test]
fn failure_reports_end_with_a_timeline_of_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = stampede::call_concurrently(3, claim_or_panic, dir.path().to_owned()).unwrap();
    let report = panic_message(|| {
        outcomes.clone().unwrap_all();
    });
    let winner = outcomes.iter().position(|o| o.is_returned()).unwrap();
    let rows: Vec<&str> = (0..3).map(|i| timeline_row(&report, i)).collect();
    for (index, row) in rows.iter().enumerate() {
        let (bar, end) = if index == winner {
            (row.trim_end_matches("returned").trim_end(), 'o')
        } else {
            (row.trim_end_matches("panicked").trim_end(), 'P')
        };
        assert!(bar.ends_with(end), "{row}");
    }
    let width = |row: &str| row.chars().count() - row.split_whitespace().last().unwrap().len();
    assert!(rows.iter().all(|r| width(r) == width(rows[0])), "{report}");
    // The assertion helpers draw it too, even when every child returned.
    let report = panic_message(|| {
        stampede::call_concurrently(2, claim_always, ())
            .unwrap()
            .assert_exactly_one(|won| *won);
    });
    let row = timeline_row(&report, 1);
    assert!(
        row.trim_end_matches("returned").trim_end().ends_with('o'),
        "{report}"
    );
    // A report of children that all returned has none.
    let passing = stampede::call_concurrently(2, claim_never, ()).unwrap();
    assert!(!passing.to_string().contains("timeline"));
    assert_eq!(passing.timeline().len(), 2);
}
