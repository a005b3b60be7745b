//! Calling registered functions: arities, types, order, panics, reports,
//! and several tests calling at once.

stampede::entry!();

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stampede::{Outcome, Status};

#[stampede::function]
fn nothing() {}

#[stampede::function]
fn echo(text: String) -> String {
    text
}

#[stampede::function]
fn add3(a: u8, b: u16, c: u32) -> u64 {
    u64::from(a) + u64::from(b) + u64::from(c)
}

#[stampede::function]
#[expect(clippy::too_many_arguments, reason = "eight is the documented maximum")]
fn eight(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> Vec<u8> {
    vec![a, b, c, d, e, f, g, h]
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Order {
    id: u64,
    items: BTreeMap<String, u32>,
    note: Option<String>,
}

#[stampede::function]
fn bump(order: Order) -> Order {
    Order {
        id: order.id + 1,
        ..order
    }
}

#[stampede::function]
fn my_pid() -> u32 {
    std::process::id()
}

#[stampede::function]
fn boom_by_index() {
    panic!("boom {}", stampede::child_index().unwrap());
}

#[stampede::function]
fn boom(message: String) -> u8 {
    panic!("{message}")
}

#[stampede::function]
fn panics_with_a_struct() {
    std::panic::panic_any(42_u32);
}

#[stampede::function]
fn chatty(lines: u32) -> u32 {
    for i in 0..lines {
        println!("out {i}");
        eprintln!("err {i}");
    }
    lines
}

#[test]
fn every_arity_and_type_round_trips() {
    let units = stampede::call_concurrently(2, nothing, ())
        .unwrap()
        .unwrap_all();
    assert_eq!(units, [(), ()]);
    let texts = stampede::call_concurrently(3, echo, "héllo ✓".to_string())
        .unwrap()
        .unwrap_all();
    assert_eq!(texts, ["héllo ✓"; 3]);
    let sums = stampede::call_concurrently(2, add3, (200, 60_000, 4_000_000_000))
        .unwrap()
        .unwrap_all();
    assert_eq!(sums, [4_000_060_200; 2]);
    let all = stampede::call_concurrently(1, eight, (1, 2, 3, 4, 5, 6, 7, 8))
        .unwrap()
        .unwrap_all();
    assert_eq!(all, [vec![1, 2, 3, 4, 5, 6, 7, 8]]);
    let order = Order {
        id: 7,
        items: [("tea".to_string(), 2)].into(),
        note: None,
    };
    let bumped = stampede::call_concurrently(2, bump, order.clone())
        .unwrap()
        .unwrap_all();
    assert_eq!(
        bumped,
        [
            Order {
                id: 8,
                ..order.clone()
            },
            Order { id: 8, ..order }
        ]
    );
}

#[test]
fn each_child_is_a_distinct_process_reported_in_call_order() {
    let outcomes = stampede::call_concurrently(6, my_pid, ()).unwrap();
    assert_eq!(outcomes.len(), 6);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.index(), i);
        assert_eq!(
            outcome.value(),
            Some(&outcome.pid()),
            "the child reports its own pid"
        );
        assert_ne!(outcome.pid(), std::process::id());
        assert_eq!(outcome.function(), "basics::my_pid");
    }
    let mut pids: Vec<u32> = outcomes.values().copied().collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 6, "six different processes");
}

#[test]
fn zero_children_is_an_empty_result() {
    let outcomes = stampede::call_concurrently(0, my_pid, ()).unwrap();
    assert!(outcomes.is_empty());
    assert_eq!(outcomes.unwrap_all(), Vec::<u32>::new());
}

#[test]
fn a_panic_is_reported_with_message_and_location() {
    let outcomes = stampede::call_concurrently(2, boom, "the ticket is gone".to_string()).unwrap();
    for outcome in &outcomes {
        match outcome.status() {
            Status::Panicked { message, location } => {
                assert_eq!(message, "the ticket is gone");
                let location = location.as_deref().expect("a location");
                assert!(location.starts_with("tests/basics.rs:"), "{location}");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        assert!(
            outcome
                .stderr()
                .to_string_lossy()
                .contains("the ticket is gone")
        );
        let shown = outcome.to_string();
        let headline = shown.lines().next().unwrap();
        assert!(
            headline.contains("panicked at tests/basics.rs:"),
            "{headline}"
        );
        assert!(headline.ends_with(": the ticket is gone"), "{headline}");
        assert!(
            shown.contains("--- stderr ---"),
            "the report shows the child's output: {shown}"
        );
    }
    let odd = stampede::call_concurrently(1, panics_with_a_struct, ()).unwrap();
    assert_eq!(odd[0].panic_message(), Some("Box<dyn Any>"));
}

#[test]
fn unwrap_all_panics_with_a_report_of_every_failed_child() {
    let outcomes = stampede::call_concurrently(3, boom, "no seats left".to_string()).unwrap();
    let report = std::panic::catch_unwind(|| outcomes.unwrap_all()).unwrap_err();
    let report = report.downcast_ref::<String>().expect("a formatted report");
    assert!(
        report.starts_with(
            "3 children: 3 panicked\nstart spread: the 3 children entered the function within "
        ),
        "{report}"
    );
    // The first in full, the two that panicked the same way on one line.
    assert!(report.contains("child 0 (pid "), "{report}");
    assert!(report.contains("\nchildren 1, 2 (pids "), "{report}");
    assert!(
        report.contains(": no seats left too; their output is left out"),
        "{report}"
    );
    assert_eq!(
        report.matches("no seats left").count(),
        3,
        "child 0's headline and stderr, and the folded line: {report}"
    );
}

#[test]
fn children_that_panic_differently_each_get_their_own_report() {
    let outcomes = stampede::call_concurrently(3, boom_by_index, ()).unwrap();
    let report = outcomes.to_string();
    for i in 0..3 {
        assert!(report.contains(&format!("child {i} (pid ")), "{report}");
        assert!(report.contains(&format!("boom {i}")), "{report}");
    }
    assert!(!report.contains("their output is left out"), "{report}");
}

#[test]
fn output_is_captured_per_child_without_the_harness_lines() {
    let outcomes = stampede::call_concurrently(2, chatty, 3).unwrap();
    for outcome in &outcomes {
        assert_eq!(outcome.stdout().to_string_lossy(), "out 0\nout 1\nout 2\n");
        assert_eq!(outcome.stderr().to_string_lossy(), "err 0\nerr 1\nerr 2\n");
        assert!(!outcome.stdout().is_truncated());
    }
}

#[test]
fn timings_are_ordered_for_each_child() {
    let outcomes = stampede::call_concurrently(4, nothing, ()).unwrap();
    for outcome in &outcomes {
        let t = outcome.timings();
        let (ready, started, finished) =
            (t.ready.unwrap(), t.started.unwrap(), t.finished.unwrap());
        assert!(
            t.spawned <= ready && ready <= started && started <= finished && finished <= t.ended,
            "{t:?}"
        );
    }
    assert!(outcomes.start_spread().is_some());
}

#[test]
fn tests_on_parallel_threads_get_their_own_results() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let text = format!("thread {t}");
                let outcomes = stampede::call_concurrently(3, echo, text.clone()).unwrap();
                (text, outcomes.unwrap_all())
            })
        })
        .collect();
    for thread in threads {
        let (sent, got) = thread.join().unwrap();
        assert_eq!(got, [sent.clone(), sent.clone(), sent]);
    }
}

#[test]
fn outcome_into_value_gives_the_failure_back() {
    let outcomes = stampede::call_concurrently(1, boom, "x".to_string()).unwrap();
    let failed: Outcome<u8> = outcomes.into_vec().remove(0).into_value().unwrap_err();
    assert!(failed.is_panicked());
    let returned = stampede::call_concurrently(1, echo, "y".to_string())
        .unwrap()
        .into_vec()
        .remove(0);
    assert_eq!(returned.into_value().unwrap(), "y");
}
