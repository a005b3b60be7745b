//! Transactions recorded by real children (`history::transaction`) and
//! checked for isolation anomalies with no invariant written: a lost update
//! in SQLite found by the search and gone under `BEGIN IMMEDIATE`; two
//! doctors going off call at PostgreSQL's REPEATABLE READ found as write
//! skew, and SERIALIZABLE passing every schedule, its rolled-back
//! transaction left out.

use std::path::PathBuf;
use std::time::Duration;

use postgres::{Client, IsolationLevel, NoTls};
use stampede::history;
use stampede::services::Postgres;
use stampede::{Hunt, Options, Strategy};

stampede::entry!();

/// A gift card of 100 in a fresh SQLite database.
fn card_db(dir: &std::path::Path, run: u64) -> PathBuf {
    let path = dir.join(format!("cards-{run}.db"));
    let _ = std::fs::remove_file(&path);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE cards (id INTEGER PRIMARY KEY, balance INTEGER); INSERT INTO cards VALUES (1, 100);")
        .unwrap();
    path
}

/// Spends 60 from the card when its balance allows, read then written, in
/// `BEGIN IMMEDIATE` when `immediate`; whether it spent.
#[stampede::function]
fn spend(db: PathBuf, immediate: bool) -> bool {
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut txn = history::transaction("spend");
    conn.execute_batch(if immediate {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN DEFERRED"
    })
    .unwrap();
    let balance: i64 = conn
        .query_row("SELECT balance FROM cards WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    txn.read("card:1", &balance);
    // A deferred transaction that read would fail to upgrade to a write
    // (SQLITE_BUSY): the naive spend commits its read and writes alone.
    if !immediate {
        conn.execute_batch("COMMIT").unwrap();
    }
    stampede::step("read");
    let spent = balance >= 60;
    if spent {
        conn.execute("UPDATE cards SET balance = ?1 WHERE id = 1", [balance - 60])
            .unwrap();
        txn.write("card:1", &(balance - 60));
    }
    if immediate {
        conn.execute_batch("COMMIT").unwrap();
    }
    txn.commit();
    spent
}

#[test]
fn a_lost_update_is_found_from_reads_and_writes_and_begin_immediate_passes_every_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let hunt = |immediate: bool| {
        Hunt::runs(30)
            .seed(5)
            .strategy(Strategy::exhaustive())
            .run(|run| {
                let db = card_db(dir.path(), run.number());
                run.options()
                    .call_concurrently(2, spend, (db, immediate))?
                    .assert_serializable();
                Ok::<(), stampede::Error>(())
            })
    };
    let failure = hunt(false).expect_err("two spends of 60 from 100 in some order");
    let message = failure.message();
    assert!(
        message.contains("not serializable: lost update on card:1: no serial order of these 2 committed transactions of 2 children"),
        "{failure}"
    );
    assert!(
        message.contains("- child 0's spend read card:1 = 100 and wrote 40\n- child 1's spend read card:1 = 100 too, and wrote 40"),
        "{failure}"
    );
    let summary = hunt(true).expect("BEGIN IMMEDIATE holds in every order");
    assert!(
        summary
            .to_string()
            .contains("every schedule within 2 preemptions")
            && !summary.to_string().contains("cut short"),
        "{summary}"
    );
}

#[test]
fn three_begin_immediate_spends_pass_100_runs_of_the_exhaustive_search() {
    // After a commit, two writers blocked on SQLite's lock take it in
    // either order: a run that follows the last one's path must not call
    // that another way (it did, in about half of such searches).
    let dir = tempfile::tempdir().unwrap();
    let summary = Hunt::runs(100)
        .seed(11)
        .strategy(Strategy::exhaustive())
        .run(|run| {
            let db = card_db(dir.path(), run.number());
            let outcomes = run
                .options()
                .timeout(Duration::from_secs(30))
                .call_concurrently(3, spend, (db, true))?;
            assert_eq!(outcomes.values().filter(|spent| **spent).count(), 1);
            outcomes.assert_serializable();
            Ok::<(), stampede::Error>(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(summary.runs(), 100, "{summary}");
    // 100 runs do not cover the search: the summary says so.
    assert!(
        summary.to_string().ends_with(
            " (the exhaustive search was cut short: schedules within 2 preemptions remain \
             untried; give the hunt more runs to cover them all)"
        ),
        "{summary}"
    );
}

#[test]
fn the_page_of_an_anomaly_marks_its_two_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = Options::new()
        .replay("v1 n=2 0:start 1:start 0:read 1:read 0:end 1:end")
        .call_concurrently(2, spend, (card_db(dir.path(), 0), false))
        .unwrap();
    assert_eq!(outcomes.clone().unwrap_all(), [true, true]);
    let violation = outcomes.check_serializable().unwrap_err();
    assert_eq!(violation.witness().len(), 2, "{violation}");
    let panic = std::panic::catch_unwind(|| outcomes.assert_serializable())
        .expect_err("assert_serializable panics on the lost update");
    let message = panic.downcast_ref::<String>().unwrap();
    let page = message
        .lines()
        .find_map(|l| l.strip_prefix("drawn as a page: "))
        .unwrap_or_else(|| panic!("no page named: {message}"));
    let html = std::fs::read_to_string(page).unwrap();
    assert_eq!(html.matches(r#"<g class="op witness">"#).count(), 2);
    assert!(html.contains("lost update on card:1"), "{html}");
}

const DOCTORS: &str = "CREATE TABLE doctors (id int PRIMARY KEY, on_call bool);";

/// Goes off call when at least two doctors are on call, at `level`:
/// reads every doctor, then writes its own row (doctor `child + 1`).
#[stampede::function]
fn go_off_call(url: String, serializable: bool) -> Result<bool, String> {
    let mut client = Client::connect(&url, NoTls).map_err(|e| e.to_string())?;
    let me = stampede::child_index().unwrap() as i32 + 1;
    let mut txn = history::transaction("off_call");
    let level = if serializable {
        IsolationLevel::Serializable
    } else {
        IsolationLevel::RepeatableRead
    };
    let mut tx = client
        .build_transaction()
        .isolation_level(level)
        .start()
        .map_err(|e| e.to_string())?;
    let rows = tx
        .query("SELECT id, on_call FROM doctors ORDER BY id", &[])
        .map_err(|e| e.to_string())?;
    let mut on_call = 0;
    for row in rows {
        let (id, on): (i32, bool) = (row.get(0), row.get(1));
        txn.read(&format!("doctor:{id}"), &on);
        on_call += i32::from(on);
    }
    stampede::step("counted");
    let going = on_call >= 2;
    let result = (|| {
        if going {
            tx.execute("UPDATE doctors SET on_call = false WHERE id = $1", &[&me])?;
        }
        tx.commit()
    })();
    match result {
        Ok(()) => {
            if going {
                txn.write(&format!("doctor:{me}"), &false);
            }
            txn.commit();
            Ok(going)
        }
        Err(e) => {
            let why = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            txn.abort(&why);
            Err(why)
        }
    }
}

#[test]
fn doctors_at_repeatable_read_are_write_skew_and_serializable_passes_every_schedule() {
    let pg = Postgres::builder()
        .template_sql(DOCTORS)
        .start()
        .expect("a PostgreSQL database");
    let mut parent = Client::connect(pg.url(), NoTls).unwrap();
    let mut hunt = |serializable: bool| {
        Hunt::runs(30)
            .seed(7)
            .strategy(Strategy::exhaustive())
            .run(|run| {
                parent
                    .batch_execute(
                        "TRUNCATE doctors; INSERT INTO doctors VALUES (1, true), (2, true);",
                    )
                    .unwrap();
                let outcomes = run
                    .options()
                    .timeout(Duration::from_secs(30))
                    .call_concurrently(2, go_off_call, (pg.url().to_owned(), serializable))?;
                outcomes.assert_all_returned();
                outcomes.assert_serializable();
                Ok::<(), stampede::Error>(())
            })
    };
    let failure = hunt(false).expect_err("both go off call in some order");
    let message = failure.message();
    assert!(
        message.contains("not serializable: write skew (G2-item)"),
        "{failure}"
    );
    assert!(
        message.contains("- child 0's off_call read doctor:2 = true, which child 1's off_call overwrote with false: child 0's off_call comes before it")
            && message.contains("- child 1's off_call read doctor:1 = true, which child 0's off_call overwrote with false: child 1's off_call comes before it"),
        "{failure}"
    );
    let summary = hunt(true).expect("SERIALIZABLE holds in every order");
    assert!(
        summary
            .to_string()
            .contains("every schedule within 2 preemptions"),
        "{summary}"
    );
    // Where both read first, SERIALIZABLE rolls one back: recorded as
    // rolled back, and left out.
    parent
        .batch_execute("TRUNCATE doctors; INSERT INTO doctors VALUES (1, true), (2, true);")
        .unwrap();
    let outcomes = Options::new()
        .replay("v1 n=2 0:start 1:start 0:counted 1:counted 0:end 1:end")
        .call_concurrently(2, go_off_call, (pg.url().to_owned(), true))
        .unwrap();
    let values = outcomes.clone().unwrap_all();
    assert_eq!(values[0], Ok(true), "{outcomes}");
    assert!(
        values[1]
            .as_ref()
            .is_err_and(|e| e.contains("could not serialize access")),
        "{values:?}"
    );
    let ops = outcomes.history();
    assert!(
        ops.operations()[1]
            .to_string()
            .starts_with("off_call(transaction) failed: could not serialize access"),
        "{ops}"
    );
    assert_eq!(ops.operations()[1].accesses(), None, "rolled back: unknown");
    outcomes.assert_serializable();
}

/// Starts a transaction, reads, then panics before it ends.
#[stampede::function]
fn read_then_panic() {
    let mut txn = history::transaction("audit");
    txn.read("card:1", &100i64);
    panic!("the connection broke");
}

#[test]
fn a_transaction_a_child_died_in_is_indeterminate_and_left_out_and_none_is_recorded_in_the_test() {
    let outcomes = stampede::call_concurrently(1, read_then_panic, ()).unwrap();
    let history = outcomes.history();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history.operations()[0].to_string(),
        "audit(transaction) → ? (indeterminate)"
    );
    // Left out, it leaves nothing to check: inconclusive, not a pass.
    let nothing = outcomes.check_serializable().unwrap_err();
    assert!(
        nothing.is_inconclusive()
            && nothing.to_string().contains(
                "no committed transaction was recorded (1 that rolled back or never ended"
            ),
        "{nothing}"
    );
    // In the test itself: nothing recorded, nothing panics.
    let mut txn = history::transaction("in-the-test");
    txn.read("x", &1);
    txn.write("x", &2);
    txn.commit();
}

/// A naive spend whose transaction is never ended: the guard is dropped
/// when the function returns.
#[stampede::function]
fn spend_without_commit(db: PathBuf) -> bool {
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut txn = history::transaction("spend");
    let balance: i64 = conn
        .query_row("SELECT balance FROM cards WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    txn.read("card:1", &balance);
    conn.execute("UPDATE cards SET balance = ?1 WHERE id = 1", [balance - 60])
        .unwrap();
    txn.write("card:1", &(balance - 60));
    true // no txn.commit()
}

#[test]
fn a_child_that_returned_with_its_transaction_never_ended_makes_the_check_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes =
        stampede::call_concurrently(2, spend_without_commit, card_db(dir.path(), 0)).unwrap();
    outcomes.assert_all_returned();
    let v = outcomes.check_serializable().unwrap_err();
    assert!(v.is_inconclusive(), "{v}");
    let text = v.to_string();
    assert!(
        text.starts_with("inconclusive under serializability: child 0 returned, yet its transaction `spend` never ended (neither commit() nor abort() was called), so what it did is unknown (2 such transactions). End every transaction")
            || text.starts_with("inconclusive under serializability: child 1 returned, yet its transaction `spend` never ended"),
        "{text}"
    );
    assert_eq!(v.witness().len(), 2);
}

/// One increment of a counter row in `BEGIN IMMEDIATE`, recorded.
#[stampede::function]
fn increment(db: PathBuf) -> i64 {
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut txn = history::transaction("increment");
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let v: i64 = conn.query_row("SELECT v FROM c", [], |r| r.get(0)).unwrap();
    txn.read("c", &v);
    conn.execute("UPDATE c SET v = ?1", [v + 1]).unwrap();
    txn.write("c", &(v + 1));
    conn.execute_batch("COMMIT").unwrap();
    txn.commit();
    v + 1
}

#[test]
fn a_loads_transactions_are_all_recorded_and_check_serializable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("counter.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE c (v INTEGER); INSERT INTO c VALUES (0);")
        .unwrap();
    let report = stampede::Load::new(300)
        .workers(4)
        .run(increment, db)
        .unwrap();
    let history = report.history();
    assert_eq!(history.len(), 300);
    stampede::model::check_serializable(history).unwrap();
    // The last increment read 299 and wrote 300: the chain is whole.
    let last = history
        .operations()
        .iter()
        .find(|op| op.to_string() == "increment(transaction) → r c=299, w c=300")
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(
        last.accesses(),
        Some(vec![
            history::Access::read("c", &299i64),
            history::Access::write("c", &300i64)
        ])
    );
}
