//! The start barrier: every child is started, loaded and has decoded its
//! arguments before any of them enters the function.

stampede::entry!();

use std::time::Duration;

#[stampede::function]
fn payload(data: Vec<String>) -> usize {
    data.len()
}

#[stampede::function]
fn slow_start(index_delay_ms: u64) -> u64 {
    index_delay_ms
}

fn last_ready<R>(outcomes: &[stampede::Outcome<R>]) -> Duration {
    outcomes
        .iter()
        .map(|o| o.timings().ready.unwrap())
        .max()
        .unwrap()
}

fn first_start<R>(outcomes: &[stampede::Outcome<R>]) -> Duration {
    outcomes
        .iter()
        .map(|o| o.timings().started.unwrap())
        .min()
        .unwrap()
}

fn assert_released_together<R>(outcomes: &[stampede::Outcome<R>]) {
    let (last_ready, first_start) = (last_ready(outcomes), first_start(outcomes));
    assert!(
        last_ready <= first_start,
        "a child entered the function at {first_start:?}, before the last one was ready at {last_ready:?}"
    );
}

#[test]
fn no_child_enters_before_every_child_is_ready() {
    for _ in 0..3 {
        let outcomes =
            stampede::call_concurrently(8, payload, vec!["x".repeat(1000); 100]).unwrap();
        assert_released_together(outcomes.iter().as_slice());
        assert_eq!(outcomes.unwrap_all(), [100; 8]);
    }
}

#[test]
fn the_barrier_holds_children_back_until_the_slowest_is_ready() {
    // The parent starts children one after another, so the first ones wait
    // at the barrier for the last: their wait is visible in the timings.
    let outcomes = stampede::call_concurrently(16, slow_start, 0).unwrap();
    let all = outcomes.iter().as_slice();
    assert_released_together(all);
    let first = &outcomes[0];
    let waited = first.timings().started.unwrap() - first.timings().ready.unwrap();
    assert!(
        waited >= last_ready(all) - first.timings().ready.unwrap(),
        "the first child waited for the last"
    );
}

#[test]
fn without_the_barrier_children_run_as_soon_as_they_are_ready() {
    let outcomes = stampede::Options::new()
        .barrier(false)
        .call_concurrently(16, slow_start, 0)
        .unwrap();
    // Started one by one, early children are done before the last is ready.
    let last_ready = last_ready(outcomes.iter().as_slice());
    let first_done = outcomes
        .iter()
        .map(|o| o.timings().finished.unwrap())
        .min()
        .unwrap();
    assert!(
        first_done < last_ready,
        "the first child finished at {first_done:?}, after the last was ready at {last_ready:?}"
    );
}

#[test]
fn with_a_concurrency_limit_the_first_wave_is_released_together() {
    let outcomes = stampede::Options::new()
        .max_concurrent(4)
        .timeout(Duration::from_secs(30))
        .call_concurrently(10, slow_start, 0)
        .unwrap();
    assert_released_together(&outcomes.iter().as_slice()[..4]);
    assert_eq!(outcomes.unwrap_all(), [0; 10]);
}
