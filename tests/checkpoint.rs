//! `stampede::checkpoint()`: a second release point inside the function,
//! after each child's own setup.

stampede::entry!();

#[path = "common/procs.rs"]
mod procs;

use std::time::Duration;

/// The system's monotonic clock, which every process shares.
fn now_ns() -> u64 {
    stampede::Timestamp::now().as_nanos()
}

/// Setup that takes longer the later the child comes (0, 15, 30 ms ...),
/// then the checkpoint; returns when it arrived and when it was let go.
#[stampede::function]
fn staggered_setup() -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(15 * procs::child_index()));
    let arrived = now_ns();
    stampede::checkpoint();
    (arrived, now_ns())
}

#[stampede::function]
fn checkpoint_twice() -> u8 {
    stampede::checkpoint();
    stampede::checkpoint();
    2
}

#[stampede::function]
fn no_checkpoint(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    now_ns()
}

#[stampede::function]
fn checkpoint_then_time() -> u64 {
    stampede::checkpoint();
    now_ns()
}

#[test]
fn nobody_passes_the_checkpoint_before_everybody_reached_it() {
    let outcomes = stampede::call_concurrently(6, staggered_setup, ()).unwrap();
    let times = outcomes.clone().unwrap_all();
    let last_arrival = times.iter().map(|(arrived, _)| *arrived).max().unwrap();
    for (arrived, released) in &times {
        assert!(
            released >= &last_arrival,
            "released at {released}, before the last arrival at {last_arrival}"
        );
        assert!(released >= arrived);
    }
    for outcome in &outcomes {
        assert!(
            outcome.timings().checkpoint.is_some(),
            "the release time is in the timings"
        );
    }
    assert!(outcomes.checkpoint_spread().is_some());
}

#[test]
fn without_the_barrier_the_checkpoint_does_not_wait() {
    let outcomes = stampede::Options::new()
        .barrier(false)
        .call_concurrently(4, staggered_setup, ())
        .unwrap();
    let times = outcomes.unwrap_all();
    let last_arrival = times.iter().map(|(arrived, _)| *arrived).max().unwrap();
    let (_, first_released) = times[0];
    assert!(
        first_released < last_arrival,
        "child 0 went on before the last one arrived"
    );
}

#[test]
fn only_the_first_checkpoint_waits() {
    let outcomes = stampede::Options::new()
        .timeout(Duration::from_secs(20))
        .call_concurrently(3, checkpoint_twice, ())
        .unwrap();
    assert_eq!(outcomes.unwrap_all(), [2, 2, 2]);
}

#[test]
fn outside_a_child_the_checkpoint_returns_at_once() {
    stampede::checkpoint();
    assert!(!stampede::is_child());
}

#[test]
fn children_that_never_reach_the_checkpoint_are_waited_for_until_they_end() {
    let mut batch = stampede::Batch::new();
    let waiting = batch.add(checkpoint_then_time, ());
    let busy = batch.add(no_checkpoint, 200);
    let mut done = batch.run().unwrap();
    let released = done.take(waiting).unwrap_all()[0];
    let busy_finished = done.take(busy).unwrap_all()[0];
    assert!(
        released >= busy_finished,
        "the checkpoint opened when the other child ended"
    );
}

/// Child 0 uses up every descriptor it may open, then meets child 1 at the
/// checkpoint; child 1 arrives 300 ms later. Returns `(arrived, passed)`.
#[stampede::function]
fn out_of_descriptors_at_the_checkpoint() -> (u64, u64) {
    let mut held = Vec::new();
    if stampede::child_index() == Some(0) {
        while let Ok(file) = std::fs::File::open("/dev/null") {
            held.push(file);
        }
    } else {
        std::thread::sleep(Duration::from_millis(300));
    }
    let arrived = now_ns();
    stampede::checkpoint();
    let passed = now_ns();
    drop(held);
    (arrived, passed)
}

#[test]
fn a_child_out_of_descriptors_still_waits_for_the_release() {
    let times = stampede::call_concurrently(2, out_of_descriptors_at_the_checkpoint, ())
        .unwrap()
        .unwrap_all();
    let (_, passed_0) = times[0];
    let (arrived_1, _) = times[1];
    assert!(
        passed_0 >= arrived_1,
        "child 0 passed at {passed_0}, before child 1 arrived at {arrived_1}"
    );
}

/// Closes its channel (descriptor 3), then reaches the checkpoint.
#[stampede::function]
fn closes_its_channel_then_checkpoints() {
    // SAFETY: closing a descriptor number this process owns.
    unsafe { libc::close(3) };
    stampede::checkpoint();
}

#[test]
fn a_checkpoint_whose_report_cannot_go_out_is_a_panic_not_a_pass() {
    let outcomes = stampede::call_concurrently(1, closes_its_channel_then_checkpoints, ()).unwrap();
    let outcome = outcomes.iter().next().unwrap();
    assert!(!outcome.is_returned(), "{outcomes}");
    let report = outcomes.to_string();
    assert!(
        report.contains("stampede::checkpoint(): could not tell the parent (descriptor 3)"),
        "{report}"
    );
}
