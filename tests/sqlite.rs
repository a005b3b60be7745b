//! The SQLite recipes of `tests/common/sqlite.rs`, on a real database file
//! in a temporary directory that every child opens: each planted race is
//! found by a short hunt, each correct recipe holds over many runs, and the
//! traps and the effects of WAL and busy_timeout show as documented. The
//! claims and counters are judged by shipped models over the history the
//! recipes record (`ClaimOnce`, serializability), not by invariants
//! written here; the database's own state is checked beside them.

stampede::entry!();

use std::path::PathBuf;

#[path = "common/sqlite.rs"]
mod sqlite;

use sqlite::{Begin, Db, Journal, Setup, WORKERS};
use stampede::model::ClaimOnce;
use stampede::{Error, Hunt, HuntFailure};

const JOURNALS: [Journal; 2] = [Journal::Delete, Journal::Wal];
/// Runs to hunt a planted race for. Most hunts end in the first few runs
/// (the rollback-journal races show in 10 to 60 % of runs when other tests
/// load the machine); this many makes missing a race that shows in one run
/// of ten unlikely (0.9^100 < 0.003 %), and costs nothing when it shows early.
const HUNT_RUNS: u64 = 100;
/// Runs that a correct recipe must pass, per journal mode. The detection
/// bench runs the same recipes as controls many more times.
const CORRECT_RUNS: u64 = 8;

fn expect_race(failure: Result<stampede::HuntSummary, HuntFailure>, what: &str) -> HuntFailure {
    match failure {
        Ok(summary) => panic!("{what} did not show in {summary}"),
        Err(failure) => {
            assert!(failure.error().is_none(), "{failure}");
            eprintln!(
                "{what}: shown in run {:?} of at most {HUNT_RUNS}",
                failure.run()
            );
            failure
        }
    }
}

// ---------------------------------------------------------------------------
// Claiming one ticket.
// ---------------------------------------------------------------------------

#[test]
fn naive_claim_is_exposed_as_a_double_claim_in_both_journal_modes() {
    for journal in JOURNALS {
        let hunt = Hunt::runs(HUNT_RUNS).run(|run| {
            let db = Db::one_free_ticket().journal(journal);
            let outcomes =
                run.options()
                    .call_concurrently(WORKERS, sqlite::claim_naive, db.path())?;
            outcomes.assert_linearizable(&ClaimOnce);
            Ok::<(), Error>(())
        });
        let failure = expect_race(hunt, &format!("the double claim ({journal:?})"));
        assert!(
            failure.message().contains(
                "not linearizable under ClaimOnce: no order of these 2 operations of 2 children"
            ),
            "{failure}"
        );
        assert!(
            failure
                .message()
                .contains("claim(1) → true is impossible: 1 was claimed already"),
            "not a double claim: {failure}"
        );
    }
}

/// Hunts a correct claim in both journal modes: every run's claims must be
/// linearizable under `ClaimOnce` (one winner, and no loser while the
/// ticket was free), and the ticket row must name the winner.
fn exactly_one_winner_over_many_runs<F, M>(claim: F)
where
    F: stampede::Function<M, Args = PathBuf, Output = bool> + Copy,
{
    for journal in JOURNALS {
        Hunt::runs(CORRECT_RUNS)
            .run(|run| {
                let db = Db::one_free_ticket().journal(journal);
                let outcomes = run.options().call_concurrently(WORKERS, claim, db.path())?;
                outcomes.assert_all_returned();
                outcomes.assert_linearizable(&ClaimOnce);
                let winner = outcomes
                    .iter()
                    .find(|o| o.value() == Some(&true))
                    .map(|o| o.pid());
                assert_eq!(
                    db.ticket_holder(),
                    winner,
                    "the holder is not the winner ({journal:?})"
                );
                Ok::<(), Error>(())
            })
            .unwrap();
    }
}

#[test]
fn begin_immediate_claim_has_exactly_one_winner_over_many_runs() {
    exactly_one_winner_over_many_runs(sqlite::claim_immediate);
}

#[test]
fn conditional_update_claim_has_exactly_one_winner_over_many_runs() {
    exactly_one_winner_over_many_runs(sqlite::claim_conditional_update);
}

// ---------------------------------------------------------------------------
// A counter.
// ---------------------------------------------------------------------------

#[test]
fn naive_increment_is_exposed_as_a_lost_update_in_both_journal_modes() {
    for journal in JOURNALS {
        let hunt = Hunt::runs(HUNT_RUNS).run(|run| {
            let db = Db::counter_at_zero().journal(journal);
            let outcomes =
                run.options()
                    .call_concurrently(WORKERS, sqlite::increment_naive, db.path())?;
            outcomes.assert_all_returned();
            outcomes.assert_serializable();
            Ok::<(), Error>(())
        });
        let failure = expect_race(hunt, &format!("the lost update ({journal:?})"));
        assert!(
            failure
                .message()
                .contains("not serializable: lost update on counter: no serial order of these 2 committed transactions of 2 children"),
            "{failure}"
        );
    }
}

#[test]
fn atomic_increment_loses_nothing_over_many_runs() {
    for journal in JOURNALS {
        Hunt::runs(CORRECT_RUNS)
            .run(|run| {
                let db = Db::counter_at_zero().journal(journal);
                let outcomes = run.options().call_concurrently(
                    WORKERS,
                    sqlite::increment_atomic,
                    db.path(),
                )?;
                outcomes.assert_all_returned();
                outcomes.assert_serializable();
                assert_eq!(outcomes.history().len(), WORKERS);
                assert_eq!(db.counter(), WORKERS as i64, "{journal:?}");
                Ok::<(), Error>(())
            })
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// A UNIQUE constraint as the arbiter.
// ---------------------------------------------------------------------------

#[test]
fn check_then_insert_without_unique_is_exposed_as_duplicate_rows() {
    for journal in JOURNALS {
        let hunt = Hunt::runs(HUNT_RUNS).run(|run| {
            let db = Db::empty_claims(false).journal(journal);
            let outcomes =
                run.options()
                    .call_concurrently(WORKERS, sqlite::claim_by_insert, db.path())?;
            outcomes.assert_all_returned();
            outcomes.assert_linearizable(&ClaimOnce);
            Ok::<(), Error>(())
        });
        let failure = expect_race(hunt, &format!("the duplicate rows ({journal:?})"));
        assert!(
            failure
                .message()
                .contains("claim(1) → true is impossible: 1 was claimed already"),
            "{failure}"
        );
    }
}

#[test]
fn the_same_check_then_insert_with_unique_has_exactly_one_winner_and_one_row() {
    for journal in JOURNALS {
        Hunt::runs(CORRECT_RUNS)
            .run(|run| {
                let db = Db::empty_claims(true).journal(journal);
                let outcomes =
                    run.options()
                        .call_concurrently(WORKERS, sqlite::claim_by_insert, db.path())?;
                outcomes.assert_all_returned();
                outcomes.assert_linearizable(&ClaimOnce);
                assert_eq!(db.claim_rows(), 1, "{journal:?}");
                Ok::<(), Error>(())
            })
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// What WAL and busy_timeout change.
// ---------------------------------------------------------------------------

fn increments(
    journal: Journal,
    busy_timeout_ms: u64,
    begin: Begin,
) -> Result<stampede::HuntSummary, HuntFailure> {
    let setup = Setup {
        journal,
        busy_timeout_ms,
        begin,
    };
    Hunt::runs(HUNT_RUNS).run(move |run| {
        let db = Db::counter_at_zero().journal(journal);
        let outcomes = run.options().call_concurrently(
            WORKERS,
            sqlite::increment_in_transaction,
            (db.path(), setup),
        )?;
        outcomes
            .assert_all_returned()
            .assert_count(0, Result::is_err);
        assert_eq!(db.counter(), WORKERS as i64, "{setup:?}");
        Ok::<(), Error>(())
    })
}

#[test]
fn with_busy_timeout_and_begin_immediate_writers_queue_and_every_increment_lands() {
    for journal in JOURNALS {
        let summary = Hunt::runs(CORRECT_RUNS / 2);
        let setup = Setup {
            journal,
            busy_timeout_ms: 10_000,
            begin: Begin::Immediate,
        };
        summary
            .run(|run| {
                let db = Db::counter_at_zero().journal(journal);
                let outcomes = run.options().call_concurrently(
                    WORKERS,
                    sqlite::increment_in_transaction,
                    (db.path(), setup),
                )?;
                let mut produced: Vec<i64> = outcomes
                    .assert_count(WORKERS, Result::is_ok)
                    .values()
                    .filter_map(|r| r.clone().ok())
                    .collect();
                produced.sort_unstable();
                assert_eq!(
                    produced,
                    (1..=WORKERS as i64).collect::<Vec<_>>(),
                    "{setup:?}"
                );
                Ok::<(), Error>(())
            })
            .unwrap();
    }
}

#[test]
fn without_busy_timeout_concurrent_writers_get_database_is_locked() {
    for journal in JOURNALS {
        let failure = expect_race(
            increments(journal, 0, Begin::Immediate),
            "SQLITE_BUSY without busy_timeout",
        );
        assert!(sqlite::is_busy(failure.message()), "{failure}");
    }
}

#[test]
fn busy_timeout_does_not_save_a_deferred_read_then_write_transaction() {
    for journal in JOURNALS {
        let failure = expect_race(
            increments(journal, 10_000, Begin::Deferred),
            "SQLITE_BUSY of a deferred transaction",
        );
        assert!(sqlite::is_busy(failure.message()), "{failure}");
    }
}

/// Runs one writer that holds its write lock and three readers without a
/// busy timeout; returns what the readers got.
fn read_during_write(journal: Journal) -> Vec<Result<i64, String>> {
    let db = Db::counter_at_zero().journal(journal);
    let readers = 3;
    let mut batch = stampede::Batch::new();
    let writer = batch.add(
        sqlite::hold_write_lock,
        (db.path(), db.dir().to_owned(), readers),
    );
    let handles: Vec<_> = (0..readers)
        .map(|_| batch.add(sqlite::read_during_write, (db.path(), db.dir().to_owned())))
        .collect();
    let mut done = batch.run().unwrap();
    done.take(writer).assert_count(1, Result::is_ok);
    let reads = handles.into_iter().flat_map(|h| {
        done.take(h)
            .assert_all_returned()
            .values()
            .cloned()
            .collect::<Vec<_>>()
    });
    let reads = reads.collect();
    assert_eq!(db.counter(), 100, "the writer's change was committed");
    reads
}

#[test]
fn in_wal_mode_readers_read_the_last_commit_while_a_writer_holds_its_lock() {
    assert_eq!(read_during_write(Journal::Wal), [Ok(0), Ok(0), Ok(0)]);
}

#[test]
fn in_rollback_mode_an_exclusive_writer_turns_readers_without_busy_timeout_away() {
    let reads = read_during_write(Journal::Delete);
    assert_eq!(reads.len(), 3);
    assert!(
        reads
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| sqlite::is_busy(e))),
        "{reads:?}"
    );
}

// ---------------------------------------------------------------------------
// The two traps.
// ---------------------------------------------------------------------------

#[test]
fn an_in_memory_database_is_private_to_each_process() {
    let parent = rusqlite::Connection::open_in_memory().unwrap();
    parent
        .execute_batch(
            "CREATE TABLE tickets (id INTEGER PRIMARY KEY); INSERT INTO tickets VALUES (1);",
        )
        .unwrap();
    let outcomes =
        stampede::call_concurrently(2, sqlite::count_tickets, ":memory:".to_owned()).unwrap();
    for seen in outcomes.assert_all_returned().values() {
        assert!(
            seen.as_ref()
                .is_err_and(|e| e.contains("no such table: tickets")),
            "{seen:?}"
        );
    }
}

#[test]
fn rows_the_parent_has_not_committed_are_invisible_to_children() {
    for journal in JOURNALS {
        let db = Db::with_schema("CREATE TABLE tickets (id INTEGER PRIMARY KEY);").journal(journal);
        let path = db.path().to_string_lossy().into_owned();
        let mut parent = db.connect();
        let tx = parent.transaction().unwrap();
        tx.execute("INSERT INTO tickets (id) VALUES (1)", [])
            .unwrap();
        let before = stampede::call_concurrently(2, sqlite::count_tickets, path.clone()).unwrap();
        assert_eq!(
            before
                .assert_all_returned()
                .values()
                .cloned()
                .collect::<Vec<_>>(),
            [Ok(0), Ok(0)],
            "{journal:?}"
        );
        tx.commit().unwrap();
        let after = stampede::call_concurrently(2, sqlite::count_tickets, path).unwrap();
        assert_eq!(
            after
                .assert_all_returned()
                .values()
                .cloned()
                .collect::<Vec<_>>(),
            [Ok(1), Ok(1)],
            "{journal:?}"
        );
    }
}
