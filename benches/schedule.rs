//! What a scheduled run costs: an exhaustive search over every schedule of
//! 3 children with 3 steps each (start, one named step, end: 9 passages,
//! 9! / (3! 3! 3!) = 1,680 orders), each a run of 3 fresh processes, and
//! the time per run against an unscheduled call of the same 3 children in
//! the same run (the baseline). Then a row lock held across a step on a
//! real PostgreSQL: how soon a child waiting on it is taken as blocked
//! when it named its connection (the server asked, `pg_blocking_pids`),
//! read from the note on its outcome, and the wall time of that run
//! against the same run with the connection not named (the generic 25 ms
//! wait: the baseline). Then what a step costs: children of 20 steps
//! each at n = 2 to 64, scheduled (random) against the same call
//! unscheduled (its steps return at once), the difference per passage; and
//! the share of a scheduled run's wall time that is not its children's own
//! work, for children that work 500 µs between steps. A step is two
//! wakeups (the parent's, the child's); the baseline is a bare round trip
//! between two threads over a Unix socket, free to run on any CPU,
//! measured in the same run: back to back for the steps with no work
//! between them, and with the same 500 µs of work on the far side before
//! each reply for the share (a CPU that went idle meanwhile is slower to
//! wake; a scheduled run keeps to one CPU, so its steps cost less).
//!
//! Run with `cargo bench --bench schedule`. Printed, never asserted: a
//! missed target is a line that says MISS.

#[path = "../tests/common/held_locks.rs"]
mod held_locks;
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
    held_locks::debit_holding_the_row(&url, named.then_some(url.as_str()));
}

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
        .template_sql(held_locks::ACCOUNTS)
        .start()
        .expect("a PostgreSQL database");
    let (mut seen, mut named, mut unnamed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LOCK_RUNS {
        for name in [true, false] {
            let began = Instant::now();
            let outcomes = Options::new()
                .replay(held_locks::ROW_LOCK_HELD)
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

/// `steps` steps, `work_us` of spinning before each and before the end.
#[stampede::function]
fn stepping(args: (u32, u64)) {
    let (steps, work_us) = args;
    let work = Duration::from_micros(work_us);
    for _ in 0..steps {
        spin(work);
        stampede::step("s");
    }
    spin(work);
}

const STEPS: u32 = 20;
const STEP_TARGET: Duration = Duration::from_micros(20);
/// Calls per median: at least 7, and about 450 children's worth, so that a
/// small `n` (a few milliseconds a call) is not left to a few samples.
fn cost_runs(n: usize) -> usize {
    (450 / n.max(1)).max(7)
}

/// A bare round trip between two threads over a Unix socket, the far side
/// spinning `work` before each reply: a step's two wakeups between
/// threads free to run on any CPU, beyond the work. The median of 3
/// rounds.
fn round_trip_floor(work: Duration) -> Duration {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let trips: u32 = if work.is_zero() { 5_000 } else { 500 };
    let mut rounds: Vec<Duration> = (0..3)
        .map(|_| {
            let (mut a, mut b) = UnixStream::pair().expect("a socket pair");
            let echo = std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                for _ in 0..trips {
                    b.read_exact(&mut byte).unwrap();
                    spin(work);
                    b.write_all(&byte).unwrap();
                }
            });
            let mut byte = [0u8; 1];
            let began = Instant::now();
            for _ in 0..trips {
                a.write_all(&byte).unwrap();
                a.read_exact(&mut byte).unwrap();
            }
            let took = (began.elapsed() / trips).saturating_sub(work);
            echo.join().unwrap();
            took
        })
        .collect();
    rounds.sort();
    rounds[1]
}

/// Spins for `work`, as a child's work between steps.
fn spin(work: Duration) {
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The median wall times of [`cost_runs`] calls of `n` children for each
/// of `variants` (arguments, and whether the call is scheduled), the
/// variants taking turns so that drift touches them alike.
fn walls(n: usize, variants: [((u32, u64), bool); 2]) -> [Duration; 2] {
    let mut times = [Vec::new(), Vec::new()];
    for seed in 0..cost_runs(n) {
        for (times, (args, scheduled)) in times.iter_mut().zip(variants) {
            let mut options = Options::new();
            if scheduled {
                options = options.strategy(Strategy::random()).seed(seed as u64);
            }
            let began = Instant::now();
            options
                .call_concurrently(n, stepping, args)
                .expect("a call")
                .assert_all_returned();
            times.push(began.elapsed());
        }
    }
    times.map(|mut times| {
        times.sort();
        times[times.len() / 2]
    })
}

fn main() {
    stampede::init();
    let floor = round_trip_floor(Duration::ZERO);
    let floor_at_work = round_trip_floor(Duration::from_micros(500));
    // What a step costs, per n.
    let mut costs = Vec::new();
    for n in [2, 8, 16, 32, 64] {
        let passages = n as u32 * (STEPS + 2);
        let [plain, scheduled] = walls(n, [((STEPS, 0), false), ((STEPS, 0), true)]);
        costs.push((
            n,
            scheduled.saturating_sub(plain) / passages,
            scheduled,
            plain,
        ));
    }
    // The share that is not the children's work, with 500 µs of work per move.
    let mut shares = Vec::new();
    for n in [2, 8] {
        let work = Duration::from_micros(500) * n as u32 * (STEPS + 1);
        let [start, scheduled] = walls(n, [((0, 0), false), ((STEPS, 500), true)]);
        let beyond = scheduled.saturating_sub(work).saturating_sub(start);
        let passages = n as u32 * (STEPS + 2);
        shares.push((
            n,
            beyond.as_secs_f64() / scheduled.as_secs_f64(),
            scheduled,
            work,
            start,
            passages,
        ));
    }
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
    println!(
        "| a bare round trip between two threads over a Unix socket (a step's two wakeups, on any CPU) | {floor:?} | — | — | — |"
    );
    for (n, per_step, scheduled, plain) in &costs {
        println!(
            "| a step's cost at n = {n} ({STEPS} steps a child; scheduled − plain, per passage) | {per_step:?} | {floor:?} (bare round trip) | {:.2}× | ≤ {STEP_TARGET:?} |",
            per_step.as_secs_f64() / floor.as_secs_f64()
        );
        let _ = (scheduled, plain);
    }
    println!(
        "| the same, the far side working 500 µs before each reply (beyond the work) | {floor_at_work:?} | — | — | — |"
    );
    for (n, share, scheduled, work, start, passages) in &shares {
        let at_floor = (floor_at_work * *passages).as_secs_f64() / scheduled.as_secs_f64();
        println!(
            "| share of a scheduled run of {n} beyond its work ({work:?}) and its start ({start:?}) | {:.1} % of {scheduled:?} | {:.1} % ({passages} passages at one bare round trip after 500 µs of work) | {:.2}× | ≤ 5 % |",
            share * 100.0,
            at_floor * 100.0,
            share / at_floor
        );
    }
    println!("\n### targets\n");
    let worst = costs.iter().map(|c| c.1).max().unwrap_or_default();
    println!(
        "{} a step costs ≤ {STEP_TARGET:?} up to n = 64 (worst {worst:?}; a bare round trip between threads on any CPU here is {floor:?})",
        if worst <= STEP_TARGET { "PASS" } else { "MISS" }
    );
    let most = shares.iter().map(|s| s.1).fold(0.0, f64::max);
    let floor_share = shares
        .iter()
        .map(|s| (floor_at_work * s.5).as_secs_f64() / s.2.as_secs_f64())
        .fold(0.0, f64::max);
    println!(
        "{} a scheduled run at n ≤ 8 spends ≤ 5 % beyond its work and start ({:.1} %; its passages at this machine's bare round trip after work would spend {:.1} %)",
        if most <= 0.05 { "PASS" } else { "MISS" },
        most * 100.0,
        floor_share * 100.0
    );
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
