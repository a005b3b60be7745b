//! A lost update: eight worker processes each add one to a counter in a
//! SQLite database file.
//!
//! The naive increment reads the value, then writes value + 1 in a second
//! statement; two workers that read the same value write the same result,
//! and an increment is lost. The atomic increment lets the database do the
//! arithmetic (`UPDATE ... SET value = value + 1 RETURNING value`).
//!
//! Run with `cargo run --example lost_update`. Exits with an error if the
//! atomic increment ever loses an update.

#[path = "../tests/common/sqlite.rs"]
mod sqlite;

use std::path::PathBuf;

use sqlite::{Db, Journal, WORKERS};

const ROUNDS: usize = 3;

/// Runs `increment` in every worker on a fresh counter; the final value.
fn race<M>(
    increment: impl stampede::Function<M, Args = PathBuf, Output = i64>,
    journal: Journal,
) -> Result<i64, stampede::Error> {
    let db = Db::counter_at_zero().journal(journal);
    stampede::call_concurrently(WORKERS, increment, db.path())?.assert_all_returned();
    Ok(db.counter())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stampede::init();
    println!("{WORKERS} worker processes each add 1 to a counter that starts at 0.");
    let (mut lost_rounds, mut atomic_wrong) = (0, 0);
    for (journal, name) in [
        (Journal::Delete, "rollback journal (the default)"),
        (Journal::Wal, "WAL"),
    ] {
        println!("\n{name}:");
        for round in 1..=ROUNDS {
            let naive = race(sqlite::increment_naive, journal)?;
            let atomic = race(sqlite::increment_atomic, journal)?;
            let lost = WORKERS as i64 - naive;
            if lost > 0 {
                lost_rounds += 1;
            }
            if atomic != WORKERS as i64 {
                atomic_wrong += 1;
            }
            println!(
                "  round {round}  naive read-then-write: {naive} ({lost} lost)   atomic UPDATE: {atomic}{}",
                if atomic == WORKERS as i64 {
                    ""
                } else {
                    " WRONG"
                }
            );
        }
    }
    println!(
        "\nnaive: updates lost in {lost_rounds} of {} rounds.",
        2 * ROUNDS
    );
    if atomic_wrong > 0 {
        return Err(format!("the atomic increment lost updates in {atomic_wrong} rounds").into());
    }
    println!("atomic: no update lost in any round.");
    Ok(())
}
