//! What a scheduled run costs: an exhaustive search over every schedule of
//! 3 children with 3 steps each (start, one named step, end: 9 passages,
//! 9! / (3! 3! 3!) = 1,680 orders), each a run of 3 fresh processes, and
//! the time per run against an unscheduled call of the same 3 children in
//! the same run (the baseline). Then a row lock held across a step on a
//! real PostgreSQL: how soon a child waiting on it is taken as blocked
//! when it named its connection (the server asked, `pg_blocking_pids`),
//! read from the note on its outcome, and the wall time of that run
//! against the same run with the connection not named (the generic 25 ms
//! wait: the baseline).
//!
//! Run with `cargo bench --bench schedule`. Printed, never asserted: a
//! missed target is a line that says MISS.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/stats.rs"]
mod stats;

use std::time::{Duration, Instant};

use stampede::services::Postgres;
use stampede::{Hunt, Options, Strategy};
use stats::Stats;

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

/// Debits account 1, holding the row lock across `debited`; names its
/// connection when `named`.
#[stampede::function]
fn debit(args: (String, bool)) {
    let (url, named) = args;
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    if named {
        let me: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        stampede::postgres_backend(&url, me);
    }
    let mut tx = db.transaction().unwrap();
    stampede::step("begun");
    tx.execute(
        "UPDATE accounts SET balance = balance - 10 WHERE id = 1",
        &[],
    )
    .unwrap();
    stampede::step("debited");
    tx.commit().unwrap();
}

/// Child 0 holds the row lock at `debited`; child 1, let go from `begun`,
/// waits on it.
const HELD_LOCK: &str =
    "v1 n=2 0:start 0:begun 1:start 1:begun 1:! 0:debited 0:end 1:debited 1:end";
const LOCK_RUNS: usize = 30;
const LOCK_TARGET: Duration = Duration::from_millis(10);

/// A `Duration`'s `Debug` text (`2.097471ms`, `850.2µs`, `1.5s`) read back.
fn debug_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_alphabetic() || c == 'µ')?);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(number * scale))
}

/// Lock-wait classification: `(seen by the server, wall named, wall unnamed)`.
fn lock_waits() -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let pg = Postgres::builder()
        .template_sql(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int); \
             INSERT INTO accounts VALUES (1, 100), (2, 100);",
        )
        .start()
        .expect("a PostgreSQL database");
    let (mut seen, mut named, mut unnamed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LOCK_RUNS {
        for name in [true, false] {
            let began = Instant::now();
            let outcomes = Options::new()
                .replay(HELD_LOCK)
                .call_concurrently(2, debit, (pg.url().to_owned(), name))
                .expect("the replay runs");
            let took = began.elapsed();
            outcomes.assert_all_returned();
            if !name {
                unnamed.push(took);
                continue;
            }
            named.push(took);
            let note = outcomes
                .iter()
                .flat_map(|o| o.notes())
                .find_map(|n| n.strip_prefix("taken as blocked "))
                .expect("the server's answer noted");
            let after = note.split(' ').next().unwrap();
            seen.push(debug_duration(after).expect("a duration"));
        }
    }
    (seen, named, unnamed)
}

fn main() {
    stampede::init();
    let (seen, named, unnamed) = lock_waits();
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
    let (seen, named, unnamed) = (Stats::of(&seen), Stats::of(&named), Stats::of(&unnamed));
    println!(
        "| a row lock held across a step: the waiting child taken as blocked, server asked (p50 / p90 / max) | {:?} / {:?} / {:?} | 25 ms (generic wait) | {:.2}× | ≤ {LOCK_TARGET:?} |",
        seen.median,
        seen.p90,
        seen.max,
        seen.median.as_secs_f64() / 0.025,
    );
    println!(
        "| that replay's wall time, connections named vs not | {:?} | {:?} | {:.2}× | — |",
        named.median,
        unnamed.median,
        named.median_ratio(&unnamed)
    );
    println!("\n### targets\n");
    let all = summary.runs() == ORDERS;
    println!(
        "{} every one of the {ORDERS} schedules ran, once ({} runs)",
        if all { "PASS" } else { "MISS" },
        summary.runs()
    );
    println!(
        "{} a held row lock's waiter taken as blocked within {LOCK_TARGET:?} in each of {LOCK_RUNS} runs (max {:?})",
        if seen.max <= LOCK_TARGET {
            "PASS"
        } else {
            "MISS"
        },
        seen.max
    );
    println!(
        "{} the search took ≤ {TARGET:?} ({:.1} s)",
        if took <= TARGET { "PASS" } else { "MISS" },
        took.as_secs_f64()
    );
}
