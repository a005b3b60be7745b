//! A UNIQUE constraint as the arbiter: the same check-then-insert code,
//! once on a table without a constraint and once on a table with
//! `UNIQUE(ticket)`.
//!
//! Without the constraint, every worker that checks before the first insert
//! commits inserts a claim too: several rows for one ticket. With it, the
//! database decides: one INSERT wins, the others fail with a constraint
//! violation, which the worker reads as "lost".
//!
//! Run with `cargo run --example unique_arbiter`. Exits with an error if the
//! constrained table ever ends with other than one row and one winner.

#[path = "../tests/common/sqlite.rs"]
mod sqlite;

use sqlite::{Db, Journal, WORKERS};

const ROUNDS: usize = 3;

/// Races the claim on a fresh table; (workers that believe they won, claim rows).
fn race(unique: bool, journal: Journal) -> Result<(usize, i64), stampede::Error> {
    let db = Db::empty_claims(unique).journal(journal);
    let outcomes = stampede::call_concurrently(WORKERS, sqlite::claim_by_insert, db.path())?;
    let winners = outcomes
        .assert_all_returned()
        .values()
        .filter(|won| **won)
        .count();
    Ok((winners, db.claim_rows()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stampede::init();
    println!("{WORKERS} worker processes check for a claim on ticket 1, then insert one.");
    let (mut duplicates, mut wrong) = (0, 0);
    for (journal, name) in [
        (Journal::Delete, "rollback journal (the default)"),
        (Journal::Wal, "WAL"),
    ] {
        println!("\n{name}:");
        for round in 1..=ROUNDS {
            let (free_winners, free_rows) = race(false, journal)?;
            let (unique_winners, unique_rows) = race(true, journal)?;
            if free_rows > 1 {
                duplicates += 1;
            }
            if (unique_winners, unique_rows) != (1, 1) {
                wrong += 1;
            }
            println!(
                "  round {round}  no constraint: {free_rows} claim rows ({free_winners} winners)   \
                 UNIQUE: {unique_rows} claim row ({unique_winners} winner, {} lost)",
                WORKERS - unique_winners
            );
        }
    }
    println!(
        "\nwithout UNIQUE: duplicate claims in {duplicates} of {} rounds.",
        2 * ROUNDS
    );
    if wrong > 0 {
        return Err(format!("the UNIQUE table went wrong in {wrong} rounds").into());
    }
    println!("with UNIQUE: one row and one winner in every round.");
    Ok(())
}
