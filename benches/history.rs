//! What checking a history costs: barrier-shaped histories of 1,000
//! children (every operation overlaps every other: the worst case for the
//! search), valid and violating, and a long `Load`-shaped history of
//! mostly sequential operations over many keys; and the transactions of
//! a real `Load` (100,000 read-then-write transactions recorded by the
//! workers), checked for serializability, whole and with lost updates
//! planted.
//!
//! Run with `cargo bench --bench history`. Times are printed against a
//! baseline from the same run — building the same history (`History::new`
//! sorts it), the least any check must do — and against absolute targets;
//! a missed target is a line that says MISS, never a failed assertion.
//!
//! Environment: `HISTORY_ROUNDS` (default 30).

#[path = "common/machine.rs"]
mod machine;
#[path = "common/stats.rs"]
mod stats;

use std::time::{Duration, Instant};

use stampede::Timestamp;
use stampede::history::{Ending, History, Operation, Value};
use stampede::model::{self, ClaimOnce, Counter, KeyValue};
use stats::Stats;

const CHILDREN: usize = 1000;
const LONG: usize = 100_000;
const KEYS: usize = 100;
const BARRIER_TARGET: Duration = Duration::from_millis(10);
const THROUGHPUT_TARGET: f64 = 100_000.0;
/// Calls of the `Load` whose transactions are checked.
const TRANSACTIONS: u64 = 100_000;

/// One transaction on this worker's own key: reads its count, writes the
/// next. With `stale`, every 1,000th call reads the count before, as a
/// lost update would.
#[stampede::function]
fn read_then_write(stale: bool) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let key = format!("worker:{}", std::process::id());
    let mut txn = stampede::history::transaction("bump");
    let read = if stale && n % 1_000 == 999 { n - 1 } else { n };
    txn.read(&key, &read);
    txn.write(&key, &(read + 1));
    txn.commit();
}

/// Times `model::check_serializable` on a `Load`'s history; the verdict
/// lines.
fn transactions(rounds: usize) -> Vec<(String, bool)> {
    let mut verdicts = Vec::new();
    for stale in [false, true] {
        let report = stampede::Load::new(TRANSACTIONS)
            .workers(4)
            .run(read_then_write, stale)
            .expect("the load runs");
        let history = report.history();
        assert_eq!(history.len() as u64, TRANSACTIONS);
        let (mut checks, mut builds) = (Vec::new(), Vec::new());
        for _ in 0..rounds.div_ceil(10) {
            let began = Instant::now();
            let rebuilt = History::new(history.operations().to_vec());
            builds.push(began.elapsed());
            let began = Instant::now();
            let result = model::check_serializable(&rebuilt);
            checks.push(began.elapsed());
            match (&result, stale) {
                (Ok(()), false) => {}
                (Err(v), true) if v.to_string().contains("lost update on worker:") => {}
                _ => panic!("stale {stale}: {result:?}"),
            }
        }
        let (c, b) = (Stats::of(&checks), Stats::of(&builds));
        let per_second = TRANSACTIONS as f64 / c.median.as_secs_f64();
        let name = if stale {
            "Load, 100,000 transactions, lost updates planted (violating)"
        } else {
            "Load, 100,000 transactions on 4 keys (valid)"
        };
        println!(
            "| {name} | {:?} ({:.0} transactions/s) | {:?} | {} | ≥ {THROUGHPUT_TARGET:.0} ops/s |",
            c.median,
            per_second,
            b.median,
            c.ratios(&b)
        );
        verdicts.push((
            format!("{name} at ≥ {THROUGHPUT_TARGET:.0} transactions/s"),
            per_second >= THROUGHPUT_TARGET,
        ));
    }
    verdicts
}

fn op(
    t0: Timestamp,
    child: usize,
    name: &str,
    input: Value,
    output: Value,
    from_us: u64,
    to_us: u64,
) -> Operation {
    let at = |us| t0.later_by(Duration::from_micros(us));
    Operation::new(
        child,
        name,
        input,
        Ending::Ok(output),
        at(from_us),
        Some(at(to_us)),
    )
}

/// `CHILDREN` claims of one job, all overlapping; `winners` return true.
fn claims(t0: Timestamp, winners: usize) -> Vec<Operation> {
    (0..CHILDREN)
        .map(|c| {
            let won = Value::of(&(c < winners));
            op(
                t0,
                c,
                "claim",
                Value::of(&1u32),
                won,
                c as u64 % 7,
                1_000 + c as u64,
            )
        })
        .collect()
}

/// `CHILDREN` overlapping adds of 1, then a read of `seen`.
fn counter(t0: Timestamp, seen: i64) -> Vec<Operation> {
    let mut ops: Vec<Operation> = (0..CHILDREN)
        .map(|c| {
            op(
                t0,
                c,
                "add",
                Value::of(&1i64),
                Value::of(&()),
                0,
                1_000 + c as u64,
            )
        })
        .collect();
    ops.push(op(
        t0,
        0,
        "get",
        Value::of(&()),
        Value::of(&seen),
        5_000,
        5_001,
    ));
    ops
}

/// Per child, a write of its own key, overlapping everything, then a read
/// (of `off` more than written for child 0: the violation).
fn registers(t0: Timestamp, off: i64) -> Vec<Operation> {
    let mut ops = Vec::new();
    for c in 0..CHILDREN {
        let key = format!("k{c}");
        ops.push(op(
            t0,
            c,
            "put",
            Value::of(&(key.clone(), c as i64)),
            Value::of(&()),
            0,
            1_000,
        ));
        let seen = c as i64 + if c == 0 { off } else { 0 };
        ops.push(op(
            t0,
            c,
            "get",
            Value::of(&key),
            Value::of(&Some(seen)),
            2_000,
            3_000,
        ));
    }
    ops
}

/// A `Load`'s history: `LONG` operations, 8 workers, each call 10 µs,
/// over `KEYS` keys, a put then reads of each key.
fn long(t0: Timestamp) -> Vec<Operation> {
    (0..LONG)
        .map(|i| {
            let (round, worker) = (i / 8, i % 8);
            let from = round as u64 * 10;
            let key = format!("k{}", round % KEYS);
            let value = (round % KEYS) as i64;
            let first_round = round < KEYS;
            if first_round && worker == 0 {
                let input = Value::of(&(key, value));
                op(t0, worker, "put", input, Value::of(&()), from, from + 9)
            } else {
                // In its key's first round, a read starts after the put returned.
                let from = if first_round { from + 10 } else { from };
                let seen = Value::of(&Some(value));
                op(t0, worker, "get", Value::of(&key), seen, from, from + 9)
            }
        })
        .collect()
}

struct Case {
    name: &'static str,
    ops: Vec<Operation>,
    valid: bool,
    check: fn(&History) -> Result<(), model::Violation>,
}

fn main() {
    stampede::init();
    let rounds: usize = std::env::var("HISTORY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let t0 = Timestamp::now();
    let cases = [
        Case {
            name: "claim-once, 1 winner (valid)",
            ops: claims(t0, 1),
            valid: true,
            check: |h| model::check(&ClaimOnce, h),
        },
        Case {
            name: "claim-once, 2 winners (violating)",
            ops: claims(t0, 2),
            valid: false,
            check: |h| model::check(&ClaimOnce, h),
        },
        Case {
            name: "counter, 1000 adds then 1000 (valid)",
            ops: counter(t0, CHILDREN as i64),
            valid: true,
            check: |h| model::check(&Counter, h),
        },
        Case {
            name: "counter, 1000 adds then 999 (violating)",
            ops: counter(t0, CHILDREN as i64 - 1),
            valid: false,
            check: |h| model::check(&Counter, h),
        },
        Case {
            name: "register per key (valid)",
            ops: registers(t0, 0),
            valid: true,
            check: |h| model::check(&KeyValue::<String, i64>::new(), h),
        },
        Case {
            name: "register per key (violating)",
            ops: registers(t0, 1),
            valid: false,
            check: |h| model::check(&KeyValue::<String, i64>::new(), h),
        },
    ];
    println!("\n## history checking\n");
    println!("machine: {}", machine::machine());
    println!(
        "rounds: {rounds}; barrier histories: {CHILDREN} children, every operation overlapping\n"
    );
    println!("| history | check | baseline (build it) | ratio | target |");
    println!("|---|---|---|---|---|");
    let mut verdicts = Vec::new();
    for case in &cases {
        let (mut checks, mut builds) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let began = Instant::now();
            let history = History::new(case.ops.clone());
            builds.push(began.elapsed());
            let began = Instant::now();
            let result = (case.check)(&history);
            checks.push(began.elapsed());
            assert_eq!(result.is_ok(), case.valid, "{}: {result:?}", case.name);
            if let Err(v) = &result {
                assert!(!v.is_inconclusive(), "{}: {v}", case.name);
            }
        }
        let (c, b) = (Stats::of(&checks), Stats::of(&builds));
        println!(
            "| {} | {:?} ({:?}) | {:?} | {} | ≤ {:?} |",
            case.name,
            c.median,
            c.min,
            b.median,
            c.ratios(&b),
            BARRIER_TARGET
        );
        verdicts.push((
            format!("{} within {BARRIER_TARGET:?}", case.name),
            c.median <= BARRIER_TARGET,
        ));
    }
    let long = long(t0);
    let (mut checks, mut builds) = (Vec::new(), Vec::new());
    for _ in 0..rounds.div_ceil(10) {
        let began = Instant::now();
        let history = History::new(long.clone());
        builds.push(began.elapsed());
        let began = Instant::now();
        let result = model::check(&KeyValue::<String, i64>::new(), &history);
        checks.push(began.elapsed());
        assert!(result.is_ok(), "{result:?}");
    }
    let (c, b) = (Stats::of(&checks), Stats::of(&builds));
    let per_second = LONG as f64 / c.median.as_secs_f64();
    println!(
        "| Load-shaped, {LONG} operations over {KEYS} keys | {:?} ({:.0} ops/s) | {:?} | {} | ≥ {THROUGHPUT_TARGET:.0} ops/s |",
        c.median,
        per_second,
        b.median,
        c.ratios(&b)
    );
    verdicts.push((
        format!("{LONG} operations at ≥ {THROUGHPUT_TARGET:.0} ops/s"),
        per_second >= THROUGHPUT_TARGET,
    ));
    verdicts.extend(transactions(rounds));
    println!("\n### targets\n");
    for (what, ok) in verdicts {
        println!("{} {what}", if ok { "PASS" } else { "MISS" });
    }
}
