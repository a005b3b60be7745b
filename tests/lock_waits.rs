//! Waits the database sees: children that name their PostgreSQL backends
//! (`stampede::postgres_backend`) are taken as blocked when the server
//! says they wait on a held child's row lock, with a note naming the wait;
//! a lock order that deadlocks through the database ends in the server's
//! deadlock error, never a hang; a server that cannot be asked is named
//! and the generic wait decides.

#[path = "common/held_locks.rs"]
mod held_locks;

use std::time::Duration;

use held_locks::ROW_LOCK_HELD;
use postgres::{Client, NoTls};
use stampede::services::Postgres;
use stampede::{Hunt, Options, Strategy};

stampede::entry!();

fn accounts() -> Postgres {
    accounts_on(false)
}

/// The accounts, on a cluster that listens on TCP too (`tcp`).
fn accounts_on(tcp: bool) -> Postgres {
    Postgres::builder()
        .tcp(tcp)
        .template_sql(held_locks::ACCOUNTS)
        .start()
        .expect("a PostgreSQL database")
}

/// Connects and names the connection to the scheduled run.
fn connect(url: &str) -> Client {
    held_locks::connect(url, Some(url))
}

/// Debits account 1 and holds the row lock across a step.
#[stampede::function]
fn debit(url: String) {
    held_locks::debit_holding_the_row(&url, Some(&url));
}

/// `debit`, its connection named as one on another URL.
#[stampede::function]
fn debit_naming(urls: (String, String)) {
    held_locks::debit_holding_the_row(&urls.0, Some(&urls.1));
}

#[test]
fn a_child_waiting_on_a_held_childs_row_lock_is_seen_by_the_database_and_named() {
    let pg = accounts();
    // Child 0 takes the row lock and is held at `debited`; child 1, let go
    // from `begun`, waits on it inside PostgreSQL.
    let outcomes = Options::new()
        .replay(ROW_LOCK_HELD)
        .timeout(Duration::from_secs(30))
        .call_concurrently(2, debit, pg.url().to_owned())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), ROW_LOCK_HELD);
    let mut db = Client::connect(pg.url(), NoTls).unwrap();
    let balance: i32 = db
        .query_one("SELECT balance FROM accounts WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(balance, 80, "both debits landed, one after the other");
    // The replay knew the wait from the server, and says so on child 1.
    let note = only_note_on_child_1(&outcomes);
    assert!(
        note.starts_with("taken as blocked ")
            && note.contains("after it went on from step `begun`: its PostgreSQL backend ")
            && note.ends_with(", child 0's, held at step `debited` (pg_blocking_pids)"),
        "{note}"
    );

    // A search meets the same wait, and says how it knew.
    let found = Hunt::runs(20)
        .strategy(Strategy::exhaustive())
        .run(|run| {
            let outcomes = run
                .options()
                .timeout(Duration::from_secs(30))
                .call_concurrently(2, debit, pg.url().to_owned())
                .map_err(|e| e.to_string())?;
            outcomes.assert_all_returned();
            let schedule = outcomes.schedule().unwrap().to_string();
            match outcomes.iter().find(|o| !o.notes().is_empty()) {
                Some(o) if schedule.contains(":!") => Err(format!(
                    "{schedule}\n{}\n{}",
                    o.index(),
                    o.notes().join("\n")
                )),
                _ => Ok(()),
            }
        })
        .expect_err("the search reaches a child waiting on the other's lock");
    let message = found.message();
    let mut lines = message.lines();
    let schedule = lines.next().unwrap();
    let blocked: usize = lines.next().unwrap().parse().unwrap();
    let note = lines.next().unwrap();
    let holder = 1 - blocked;
    assert!(
        schedule.contains(&format!("{blocked}:!")),
        "the note is on the child the schedule took as blocked: {message}"
    );
    assert!(
        note.starts_with("taken as blocked ")
            && note.contains("after it went on from step `begun`: its PostgreSQL backend ")
            && note.ends_with(&format!(
                "child {holder}'s, held at step `debited` (pg_blocking_pids)"
            )),
        "{note}"
    );
}

/// Locks one account, then (after a step) the other: child 0 takes 1
/// then 2, child 1 takes 2 then 1, so two children deadlock through the
/// database when both hold their first row.
#[stampede::function]
fn transfer(url: String) -> Result<(), String> {
    let first = 1 + stampede::child_index().expect("in a child") as i32;
    let mut db = connect(&url);
    let mut tx = db.transaction().unwrap();
    let mut lock = |id: i32| {
        tx.execute(
            "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
            &[&id],
        )
        .map(drop)
        .map_err(|e| why(&e))
    };
    lock(first)?;
    stampede::step("first-locked");
    lock(3 - first)?;
    tx.commit().map_err(|e| why(&e))
}

/// The server's message, not only "db error".
fn why(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
}

#[test]
fn a_lock_order_that_deadlocks_through_the_database_ends_in_its_deadlock_error() {
    let pg = accounts();
    // Every schedule of the two children: where both hold their first row,
    // the one let go first waits on the held one (taken as blocked, seen
    // by the server), then the other waits on it: a real deadlock, which
    // the server's detector breaks (deadlock_timeout, 1 s): one child gets
    // the error, the other commits. No schedule hangs.
    let mut runs: Vec<(String, Vec<Result<(), String>>)> = Vec::new();
    let summary = Hunt::runs(40)
        .strategy(Strategy::exhaustive())
        .run(|run| {
            let outcomes = run
                .options()
                .timeout(Duration::from_secs(30))
                .call_concurrently(2, transfer, pg.url().to_owned())
                .map_err(|e| e.to_string())?;
            outcomes.assert_all_returned();
            let schedule = outcomes.schedule().unwrap().to_string();
            let values = outcomes
                .iter()
                .map(|o| o.value().unwrap().clone())
                .collect();
            runs.push((schedule, values));
            Ok::<(), String>(())
        })
        .expect("every schedule ends");
    assert!(summary.runs() >= 2, "{runs:?}");
    let deadlocked: Vec<_> = runs
        .iter()
        .filter(|(_, values)| values.iter().any(Result::is_err))
        .collect();
    assert!(!deadlocked.is_empty(), "no schedule deadlocked: {runs:?}");
    for (schedule, values) in &deadlocked {
        let errors: Vec<&String> = values.iter().filter_map(|v| v.as_ref().err()).collect();
        assert_eq!(errors.len(), 1, "{schedule}: {values:?}");
        assert!(
            errors[0].contains("deadlock detected"),
            "{schedule}: {values:?}"
        );
        assert!(
            schedule.contains(":first-locked") && schedule.contains(":!"),
            "a deadlock needs both first rows held and one child taken as blocked: {schedule}"
        );
    }
    // Each replays as recorded, to the same end.
    for (schedule, _) in &deadlocked {
        let outcomes = Options::new()
            .replay(schedule)
            .timeout(Duration::from_secs(30))
            .call_concurrently(2, transfer, pg.url().to_owned())
            .unwrap();
        assert_eq!(&outcomes.schedule().unwrap().to_string(), schedule);
        let errors: Vec<&String> = outcomes
            .iter()
            .filter_map(|o| o.value().unwrap().as_ref().err())
            .collect();
        assert_eq!(errors, ["deadlock detected"], "{schedule}");
    }
    // Schedules where one child finished before the other locked anything
    // commit both transfers.
    assert!(
        runs.iter()
            .any(|(_, values)| values.iter().all(Result::is_ok)),
        "{runs:?}"
    );
}

/// Names a connection to a server that is not there, then holds a file
/// lock across a step.
#[stampede::function]
fn nowhere(path: std::path::PathBuf) {
    stampede::postgres_backend("postgresql://nobody@/db?host=/nonexistent/stampede", 4242);
    held_locks::file_lock_across_a_step(&path);
}

#[test]
fn a_server_that_cannot_be_asked_is_named_and_the_generic_wait_decides() {
    let (_dir, path) = held_locks::lock_file();
    let text = held_locks::FILE_LOCK_HELD;
    let outcomes = Options::new()
        .replay(text)
        .timeout(Duration::from_secs(20))
        .call_concurrently(2, nowhere, path.clone())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    // Named once, on the child it was asked for (the one taken as
    // blocked), with where and why.
    let noted: Vec<(usize, &String)> = outcomes
        .iter()
        .flat_map(|o| o.notes().iter().map(move |n| (o.index(), n)))
        .collect();
    assert_eq!(noted.len(), 1, "{noted:?}");
    let (child, note) = noted[0];
    assert_eq!(child, 1, "{note}");
    assert!(
        note.starts_with(
            "lock waits on PostgreSQL at /nonexistent/stampede/.s.PGSQL.5432 as nobody could not \
             be asked (connecting to /nonexistent/stampede/.s.PGSQL.5432: "
        ) && note.ends_with("); the generic wait decided instead"),
        "{note}"
    );
}

/// The note on child 1 of a replay of `ROW_LOCK_HELD`, and no other.
fn only_note_on_child_1(outcomes: &stampede::Outcomes<()>) -> String {
    let notes: Vec<(usize, &[String])> = outcomes.iter().map(|o| (o.index(), o.notes())).collect();
    assert!(notes[0].1.is_empty(), "{notes:?}");
    assert_eq!(notes[1].1.len(), 1, "{notes:?}");
    notes[1].1[0].clone()
}

#[test]
fn over_tcp_the_parent_signs_in_with_the_urls_password_and_a_wrong_one_is_named() {
    let pg = accounts_on(true);
    let url = pg.url().to_owned();
    assert!(
        url.starts_with("postgresql://postgres:") && url.contains("@127.0.0.1:"),
        "{url}"
    );
    // SCRAM-SHA-256 with the URL's password: the server answers.
    let outcomes = Options::new()
        .replay(ROW_LOCK_HELD)
        .timeout(Duration::from_secs(30))
        .call_concurrently(2, debit, url.clone())
        .unwrap();
    outcomes.assert_all_returned();
    let note = only_note_on_child_1(&outcomes);
    assert!(note.ends_with("(pg_blocking_pids)"), "{note}");

    // The connections named with a wrong password: the parent cannot sign
    // in, says so once without the password, and the generic wait
    // decides the same schedule.
    let (head, tail) = url.split_once('@').unwrap();
    let password = head.rsplit(':').next().unwrap();
    let wrong = format!("postgresql://postgres:not-{password}@{tail}");
    let outcomes = Options::new()
        .replay(ROW_LOCK_HELD)
        .timeout(Duration::from_secs(30))
        .call_concurrently(2, debit_naming, (url.clone(), wrong))
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), ROW_LOCK_HELD);
    let note = only_note_on_child_1(&outcomes);
    let port = tail.split(['/', ':']).nth(1).unwrap();
    assert!(
        note.starts_with(&format!(
            "lock waits on PostgreSQL at 127.0.0.1:{port} as postgres could not be asked ("
        )) && note.contains("password authentication failed for user \"postgres\"")
            && note.ends_with("); the generic wait decided instead")
            && !note.contains(password),
        "{note}"
    );
}
