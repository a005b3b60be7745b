//! What WAL and busy_timeout change when several processes write one
//! SQLite database file.
//!
//! Eight workers each run one read-then-write transaction on a counter,
//! under each combination of journal mode, busy timeout and `BEGIN` kind:
//!
//! - without a busy timeout, a worker that finds the database locked fails
//!   at once with `SQLITE_BUSY` ("database is locked");
//! - with one, writers that `BEGIN IMMEDIATE` queue and every increment lands;
//! - a plain (deferred) `BEGIN` that reads and then writes still fails with
//!   `SQLITE_BUSY`, whatever the timeout: waiting could not help (rollback
//!   journal: two readers that both want to write would deadlock; WAL: the
//!   snapshot it read is stale once another writer commits), so SQLite does
//!   not wait.
//!
//! Then one writer holds its write lock while readers without a busy timeout
//! read: in WAL mode they read the last committed value, in rollback mode
//! they are turned away.
//!
//! Run with `cargo run --example wal_busy_timeout`.

#[path = "../tests/common/sqlite.rs"]
mod sqlite;

use sqlite::{Begin, Db, Journal, Setup, WORKERS};

const ROUNDS: usize = 3;
const READERS: usize = 3;

/// The journal mode as `PRAGMA journal_mode` names it.
fn name(journal: Journal) -> &'static str {
    match journal {
        Journal::Delete => "DELETE",
        Journal::Wal => "WAL",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stampede::init();
    println!(
        "{WORKERS} workers each run BEGIN; SELECT value; UPDATE value + 1; COMMIT ({ROUNDS} rounds each):\n"
    );
    println!(
        "| journal  | busy_timeout | BEGIN     | increments landed | workers refused (database is locked) |"
    );
    println!(
        "|----------|--------------|-----------|-------------------|--------------------------------------|"
    );
    for journal in [Journal::Delete, Journal::Wal] {
        for (busy_timeout_ms, begin) in [
            (0, Begin::Immediate),
            (10_000, Begin::Immediate),
            (10_000, Begin::Deferred),
        ] {
            let setup = Setup {
                journal,
                busy_timeout_ms,
                begin,
            };
            let (mut landed, mut refused, mut other) = (0, 0, Vec::new());
            for _ in 0..ROUNDS {
                let db = Db::counter_at_zero().journal(journal);
                let outcomes = stampede::call_concurrently(
                    WORKERS,
                    sqlite::increment_in_transaction,
                    (db.path(), setup),
                )?;
                for result in outcomes.assert_all_returned().values() {
                    match result {
                        Ok(_) => {}
                        Err(e) if sqlite::is_busy(e) => refused += 1,
                        Err(e) => other.push(e.clone()),
                    }
                }
                landed += db.counter();
            }
            let total = WORKERS * ROUNDS;
            println!(
                "| {:<8} | {:>9} ms | {:<9} | {landed:>6} of {total:<7} | {refused:>15} of {total:<17} |",
                name(journal),
                busy_timeout_ms,
                format!("{begin:?}")
            );
            if !other.is_empty() {
                return Err(format!("unexpected errors with {setup:?}: {other:?}").into());
            }
            if busy_timeout_ms > 0 && begin == Begin::Immediate && landed != total as i64 {
                return Err(format!("with {setup:?} every increment should land").into());
            }
        }
    }

    println!(
        "\nOne writer holds its write lock; {READERS} readers without a busy timeout read the counter (0):"
    );
    for journal in [Journal::Delete, Journal::Wal] {
        let db = Db::counter_at_zero().journal(journal);
        // A batch: one writer and READERS readers, released together.
        let mut batch = stampede::Batch::new();
        let writer = batch.add(
            sqlite::hold_write_lock,
            (db.path(), db.dir().to_owned(), READERS),
        );
        let readers: Vec<_> = (0..READERS)
            .map(|_| batch.add(sqlite::read_during_write, (db.path(), db.dir().to_owned())))
            .collect();
        let mut done = batch.run()?;
        done.take(writer).assert_count(1, Result::is_ok);
        let reads: Vec<String> = readers
            .into_iter()
            .flat_map(|r| {
                done.take(r)
                    .assert_all_returned()
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .map(|read| match read {
                Ok(value) => format!("read {value}"),
                Err(e) => e,
            })
            .collect();
        println!("  {}: {}", name(journal), reads.join("; "));
    }
    Ok(())
}
