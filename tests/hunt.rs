//! The hunting loop (`Hunt`) and start jitter with seeds: limits, the
//! failure report, progress lines, bad input, and what a seed replays.

stampede::entry!();

use std::cell::Cell;
use std::time::Duration;

use stampede::{Error, Hunt, Options};

#[stampede::function]
fn echo(n: u64) -> u64 {
    n
}

/// Prints a line, then panics in the run numbered `fail_in`.
#[stampede::function]
fn fail_in_run(run: u64, fail_in: u64) -> u64 {
    println!("child in run {run} is here");
    assert_ne!(run, fail_in, "planted failure in run {run}");
    run
}

#[stampede::function]
fn nothing() {}

/// A hunt inside a child, so that its progress lines land in the child's
/// captured stderr. Each run takes a few milliseconds.
#[stampede::function]
fn short_hunt(runs: u64, progress_every_ms: u64) -> u64 {
    Hunt::runs(runs)
        .progress_every(Duration::from_millis(progress_every_ms))
        .run(|_| std::thread::sleep(Duration::from_millis(5)))
        .expect("a hunt that cannot fail")
        .runs()
}

#[test]
fn zero_runs_without_a_time_budget_is_an_error_and_runs_nothing() {
    let calls = Cell::new(0);
    let failure = Hunt::runs(0)
        .run(|_| calls.set(calls.get() + 1))
        .unwrap_err();
    assert_eq!(calls.get(), 0);
    assert_eq!(failure.run(), None);
    assert!(
        matches!(failure.error(), Some(Error::InvalidOptions(_))),
        "{failure}"
    );
    let shown = failure.to_string();
    assert!(shown.contains("0 runs without a time budget"), "{shown}");
    assert!(
        shown.contains("use `Hunt::runs(n)` with n >= 1, or `Hunt::for_duration(d)`"),
        "{shown}"
    );
}

#[test]
fn a_zero_time_budget_is_an_error_and_runs_nothing() {
    let calls = Cell::new(0);
    let failure = Hunt::for_duration(Duration::ZERO)
        .run(|_| calls.set(calls.get() + 1))
        .unwrap_err();
    assert_eq!(calls.get(), 0);
    assert!(
        matches!(failure.error(), Some(Error::InvalidOptions(_))),
        "{failure}"
    );
    assert!(
        failure.to_string().contains("zero time budget"),
        "{failure}"
    );
}

#[test]
fn a_hunt_without_failures_runs_every_run_and_counts_them() {
    let mut numbers = Vec::new();
    let summary = Hunt::runs(3)
        .run(|run| {
            numbers.push(run.number());
            let outcomes = stampede::call_concurrently(2, echo, run.number())?;
            assert_eq!(
                outcomes
                    .assert_all_returned()
                    .values()
                    .copied()
                    .collect::<Vec<_>>(),
                [run.number(); 2]
            );
            Ok::<(), Error>(())
        })
        .unwrap();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(summary.runs(), 3);
    assert_eq!(
        summary.to_string(),
        format!("3 runs passed in {:.1} s", summary.elapsed().as_secs_f64())
    );
}

#[test]
fn a_hunt_stops_at_the_first_failing_run_and_reports_it_with_every_childs_output() {
    let calls = Cell::new(0);
    let failure = Hunt::runs(10)
        .run(|run| {
            calls.set(calls.get() + 1);
            stampede::call_concurrently(2, fail_in_run, (run.number(), 3))?.assert_all_returned();
            Ok::<(), Error>(())
        })
        .unwrap_err();
    assert_eq!(calls.get(), 3, "the hunt went on after the failure");
    assert_eq!((failure.run(), failure.runs_passed()), (Some(3), 2));
    assert!(failure.panicked());
    assert!(
        failure.location().is_some_and(|l| l.starts_with(file!())),
        "{:?}",
        failure.location()
    );
    let report = format!("{failure:?}");
    assert_eq!(report, failure.to_string(), "Debug and Display differ");
    assert!(
        report.starts_with("stampede hunt: run 3 failed, after 2 runs passed, in "),
        "{report}"
    );
    assert!(
        report.contains("expected every child to return, but 2 of 2 children did not return"),
        "{report}"
    );
    let headlines = report
        .lines()
        .filter(|l| l.starts_with("child ") && l.contains("planted failure in run 3"));
    assert_eq!(headlines.count(), 2, "{report}");
    assert_eq!(
        report.matches("child in run 3 is here").count(),
        2,
        "{report}"
    );
}

#[test]
fn an_error_returned_by_the_scenario_fails_its_run_with_the_errors_text() {
    let failure = Hunt::runs(5)
        .run(|run| {
            if run.number() == 2 {
                Err(format!("checked run {}: wrong", run.number()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert_eq!(
        (failure.run(), failure.runs_passed(), failure.panicked()),
        (Some(2), 1, false)
    );
    assert_eq!(failure.message(), "checked run 2: wrong");
    assert!(
        failure
            .to_string()
            .contains("the scenario returned an error:\nchecked run 2: wrong"),
        "{failure}"
    );
}

#[test]
fn a_stampede_error_inside_the_scenario_is_that_runs_failure() {
    let closure = |x: u64| x;
    let failure = Hunt::runs(3)
        .run(|_| stampede::call_concurrently(1, closure, 1).map(drop))
        .unwrap_err();
    assert_eq!(failure.run(), Some(1));
    assert!(failure.message().contains("is a closure"), "{failure}");
}

#[test]
fn a_time_budget_ends_the_hunt_after_the_run_in_progress() {
    let summary = Hunt::for_duration(Duration::from_millis(200))
        .run(|_| std::thread::sleep(Duration::from_millis(30)))
        .unwrap();
    assert!(summary.elapsed() >= Duration::from_millis(200), "{summary}");
    assert!(summary.runs() >= 1, "{summary}");
    assert!(
        summary.to_string().ends_with("(time budget spent)"),
        "{summary}"
    );
}

#[test]
fn the_run_limit_ends_a_hunt_before_a_long_time_budget() {
    let summary = Hunt::runs(3)
        .time_budget(Duration::from_secs(600))
        .run(|_| ())
        .unwrap();
    assert_eq!(summary.runs(), 3);
    assert!(!summary.to_string().contains("budget"), "{summary}");
}

#[test]
fn progress_lines_come_every_few_runs_not_every_run() {
    let outcomes = stampede::call_concurrently(1, short_hunt, (20, 30)).unwrap();
    assert_eq!(outcomes.assert_all_returned().values().next(), Some(&20));
    let stderr = outcomes[0].stderr().to_string_lossy().into_owned();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("stampede hunt: "))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() < 20,
        "expected a few progress lines, got:\n{stderr}"
    );
    assert!(
        lines.iter().all(|l| l.ends_with(" s, still hunting")),
        "{stderr}"
    );
}

#[test]
fn a_short_hunt_prints_no_progress_lines() {
    let outcomes = stampede::call_concurrently(1, short_hunt, (3, 5_000)).unwrap();
    assert_eq!(outcomes.assert_all_returned().values().next(), Some(&3));
    let stderr = outcomes[0].stderr().to_string_lossy().into_owned();
    assert!(!stderr.contains("stampede hunt:"), "{stderr}");
}

#[test]
fn a_hunt_seed_replays_every_runs_seed_and_a_failure_reports_them() {
    let seeds = |hunt_seed| {
        let mut seeds = Vec::new();
        Hunt::runs(5)
            .seed(hunt_seed)
            .run(|run| seeds.push(run.seed()))
            .unwrap();
        seeds
    };
    let first = seeds(7);
    assert_eq!(first, seeds(7));
    assert_ne!(first, seeds(8));

    let failure = Hunt::runs(5)
        .seed(7)
        .run(|run| assert_ne!(run.number(), 4))
        .unwrap_err();
    assert_eq!(
        (failure.hunt_seed(), failure.run_seed()),
        (7, Some(first[3]))
    );
    let report = failure.to_string();
    assert!(
        report.contains(&format!("`Options::seed({})`", first[3])),
        "{report}"
    );
    assert!(report.contains("`Hunt::seed(7)`"), "{report}");
}

#[test]
fn run_options_carry_the_runs_seed_into_the_jitter() {
    Hunt::runs(2)
        .run(|run| {
            let outcomes = run
                .options()
                .jitter(Duration::from_micros(50))
                .call_concurrently(2, nothing, ())?;
            assert_eq!(outcomes.assert_all_returned().seed(), Some(run.seed()));
            Ok::<(), Error>(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------
// Jitter and seeds.
// ---------------------------------------------------------------------------

#[test]
fn without_jitter_no_seed_is_reported() {
    let outcomes = Options::new()
        .seed(5)
        .call_concurrently(2, nothing, ())
        .unwrap();
    assert_eq!(outcomes.seed(), None);
    assert!(!outcomes.to_string().contains("jitter seed"), "{outcomes}");
}

#[test]
fn a_drawn_jitter_seed_is_reported_and_a_given_one_round_trips() {
    let drawn = Options::new()
        .jitter(Duration::from_micros(10))
        .call_concurrently(2, nothing, ())
        .unwrap();
    let seed = drawn.seed().expect("jitter on: a seed is reported");
    assert!(
        drawn.to_string().contains(&format!("jitter seed: {seed}")),
        "{drawn}"
    );
    let given = Options::new()
        .jitter(Duration::from_micros(10))
        .seed(seed)
        .call_concurrently(2, nothing, ())
        .unwrap();
    assert_eq!(given.seed(), Some(seed));
}

/// The order in which children entered the function, and the smallest gap
/// between two consecutive entries.
fn entry_order(outcomes: &stampede::Outcomes<()>) -> (Vec<usize>, Duration) {
    let mut starts: Vec<(Duration, usize)> = outcomes
        .iter()
        .map(|o| (o.timings().started.expect("every child entered"), o.index()))
        .collect();
    starts.sort();
    let gap = starts
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .min()
        .unwrap_or(Duration::MAX);
    (starts.into_iter().map(|(_, i)| i).collect(), gap)
}

#[test]
fn the_same_seed_lets_children_go_in_the_same_order_within_the_bound() {
    // Delays up to 300 ms, far above scheduling noise: a seed whose delays
    // are at least 30 ms apart must let the children go in the same order
    // every time. Which seeds those are is found by trying, not assumed.
    let max = Duration::from_millis(300);
    let options = |seed| Options::new().jitter(max).seed(seed);
    for seed in 0..20 {
        let first = options(seed).call_concurrently(4, nothing, ()).unwrap();
        let (order, gap) = entry_order(&first);
        if gap < Duration::from_millis(30) {
            continue;
        }
        let again = options(seed).call_concurrently(4, nothing, ()).unwrap();
        assert_eq!(
            entry_order(&again).0,
            order,
            "seed {seed} let the children go in another order"
        );
        for outcomes in [&first, &again] {
            let spread = outcomes.start_spread().unwrap();
            // The bound is loose on purpose: only a delay far outside
            // 0..=max (a unit mix-up) may fail here, not a slow machine.
            assert!(
                spread <= max + Duration::from_millis(500),
                "spread {spread:?} with jitter up to {max:?}"
            );
            assert!(spread >= gap, "the delays did not show: spread {spread:?}");
        }
        return;
    }
    panic!("none of 20 seeds gave delays 30 ms apart; jitter does not spread the starts");
}
