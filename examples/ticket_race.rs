//! Eight worker processes race to claim one ticket in a SQLite database file.
//!
//! The naive claim checks, then acts, in two statements: every worker that
//! reads "free" before the first winner's UPDATE commits claims too, and
//! each believes it holds the ticket. The correct claim does the same work
//! inside `BEGIN IMMEDIATE`, which takes the write lock before the check;
//! the shortest correct claim is one conditional UPDATE
//! (`... WHERE holder IS NULL`) whose row count says who won. All run in SQLite's default rollback-journal mode and in WAL mode.
//!
//! Run with `cargo run --example ticket_race`. Exits with an error if a
//! correct claim ever has other than exactly one winner.

#[path = "../tests/common/sqlite.rs"]
mod sqlite;

use std::path::PathBuf;

use sqlite::{Db, Journal, WORKERS};

const ROUNDS: usize = 4;

/// Races `claim` once on a fresh database: the pids of the workers that
/// believe they won, and the pid the ticket row ended with.
fn race<M>(
    claim: impl stampede::Function<M, Args = PathBuf, Output = bool>,
    journal: Journal,
) -> Result<(Vec<u32>, Option<u32>), Box<dyn std::error::Error>> {
    let db = Db::one_free_ticket().journal(journal);
    let outcomes = stampede::call_concurrently(WORKERS, claim, db.path())?;
    outcomes.assert_all_returned();
    let winners = outcomes
        .iter()
        .filter(|o| o.value() == Some(&true))
        .map(|o| o.pid())
        .collect();
    Ok((winners, db.ticket_holder()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stampede::init();
    println!("{WORKERS} worker processes race to claim ticket 1 in one SQLite file.");
    let (mut double_claims, mut single_winners, mut rounds, mut checks) = (0, 0, 0, 0);
    for (journal, name) in [
        (Journal::Delete, "rollback journal (the default)"),
        (Journal::Wal, "WAL"),
    ] {
        println!("\n{name}:");
        for round in 1..=ROUNDS {
            rounds += 1;
            let (naive, holder) = race(sqlite::claim_naive, journal)?;
            let naive_line = if naive.len() > 1 {
                double_claims += 1;
                format!(
                    "{} of {WORKERS} workers claimed the ticket (double claim! the row says pid {})",
                    naive.len(),
                    holder.map_or("none".into(), |p| p.to_string())
                )
            } else {
                format!(
                    "{} of {WORKERS} claimed it (the race did not show this round)",
                    naive.len()
                )
            };
            println!("  round {round}  naive: {naive_line}");
            for (name, (correct, holder)) in [
                ("BEGIN IMMEDIATE", race(sqlite::claim_immediate, journal)?),
                (
                    "conditional UPDATE",
                    race(sqlite::claim_conditional_update, journal)?,
                ),
            ] {
                checks += 1;
                let line = if correct.len() == 1 && holder == Some(correct[0]) {
                    single_winners += 1;
                    format!("exactly 1 of {WORKERS} claimed it")
                } else {
                    format!(
                        "{} of {WORKERS} claimed it, the row says {holder:?}: WRONG",
                        correct.len()
                    )
                };
                println!("           {name}: {line}");
            }
        }
    }
    println!(
        "\nnaive: double claim in {double_claims} of {rounds} rounds; \
         correct claims: exactly one winner in {single_winners} of {checks}."
    );
    if single_winners != checks {
        return Err("a correct claim did not have exactly one winner".into());
    }
    Ok(())
}
