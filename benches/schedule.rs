//! What a scheduled run costs: an exhaustive search over every schedule of
//! 3 children with 3 steps each (start, one named step, end: 9 passages,
//! 9! / (3! 3! 3!) = 1,680 orders), each a run of 3 fresh processes, and
//! the time per run against an unscheduled call of the same 3 children in
//! the same run (the baseline).
//!
//! Run with `cargo bench --bench schedule`. Printed, never asserted: a
//! missed target is a line that says MISS.

#[path = "common/machine.rs"]
mod machine;

use std::time::{Duration, Instant};

use stampede::{Hunt, Options, Strategy};

/// Every schedule within this many preemptions: more than 9 passages can
/// have, so every order is one.
const UNBOUNDED: usize = 16;
const ORDERS: u64 = 1_680;
const TARGET: Duration = Duration::from_secs(30);
const BASELINE_RUNS: u32 = 100;

#[stampede::function]
fn three_steps() {
    stampede::step("middle");
}

fn main() {
    stampede::init();
    let began = Instant::now();
    for _ in 0..BASELINE_RUNS {
        Options::new()
            .call_concurrently(3, three_steps, ())
            .expect("a plain call")
            .assert_all_returned();
    }
    let plain = began.elapsed() / BASELINE_RUNS;

    let began = Instant::now();
    let summary = Hunt::runs(ORDERS + 10)
        .progress_every(Duration::ZERO)
        .strategy(Strategy::exhaustive().preemption_bound(UNBOUNDED))
        .run(|run| {
            run.options()
                .call_concurrently(3, three_steps, ())?
                .assert_all_returned();
            Ok::<(), stampede::Error>(())
        })
        .expect("every schedule passes");
    let took = began.elapsed();
    let per_run = took / summary.runs().max(1) as u32;
    println!("\n## scheduled runs\n");
    println!("machine: {}\n", machine::machine());
    println!("| measurement | value | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| exhaustive search, 3 children × 3 steps | {} schedules in {:.1} s | {ORDERS} orders | — | all, ≤ {:?} |",
        summary.runs(),
        took.as_secs_f64(),
        TARGET
    );
    println!(
        "| one scheduled run (8 passages handed over) vs a plain call of 3 | {per_run:?} | {plain:?} | {:.2}× | — |",
        per_run.as_secs_f64() / plain.as_secs_f64()
    );
    println!("\n### targets\n");
    let all = summary.runs() == ORDERS;
    println!(
        "{} every one of the {ORDERS} schedules ran, once ({} runs)",
        if all { "PASS" } else { "MISS" },
        summary.runs()
    );
    println!(
        "{} the search took ≤ {TARGET:?} ({:.1} s)",
        if took <= TARGET { "PASS" } else { "MISS" },
        took.as_secs_f64()
    );
}
