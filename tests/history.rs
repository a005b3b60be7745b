//! Histories recorded by real children and checked against models: a naive
//! claim caught with no hand-written invariant, a correct one passed, a
//! child that dies mid-operation left indeterminate.

use std::path::PathBuf;

use stampede::history::{self, Ending};
use stampede::model::{ClaimOnce, Counter};
use stampede::{Options, Strategy};

stampede::entry!();

/// Check, then create: two children can both find the ticket free.
#[stampede::function]
fn naive_claim(ticket: PathBuf) -> bool {
    let op = history::invoke("claim", &"ticket-1");
    let free = !ticket.exists();
    stampede::step("after-check");
    if free {
        std::fs::write(&ticket, stampede::child_index().unwrap().to_string()).unwrap();
    }
    op.ok(&free);
    free
}

/// One atomic create: exactly one child wins.
#[stampede::function]
fn exclusive_claim(ticket: PathBuf) -> bool {
    let op = history::invoke("claim", &"ticket-1");
    let won = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&ticket)
        .is_ok();
    op.ok(&won);
    won
}

#[test]
fn a_double_claim_is_found_by_the_model_and_explained_in_two_operations() {
    let dir = tempfile::tempdir().unwrap();
    let ticket = dir.path().join("ticket");
    // Both check before either creates.
    let outcomes = Options::new()
        .replay("v1 n=2 0:start 1:start 0:after-check 1:after-check 0:end 1:end")
        .call_concurrently(2, naive_claim, ticket)
        .unwrap();
    assert_eq!(outcomes.clone().unwrap_all(), [true, true]);
    let history = outcomes.history();
    assert_eq!(history.len(), 2);
    let violation = outcomes.check(&ClaimOnce).unwrap_err();
    assert_eq!(violation.witness().len(), 2, "{violation}");
    let text = violation.to_string();
    assert!(
        text.contains("claim(\"ticket-1\") → true is impossible: \"ticket-1\" was claimed already"),
        "{text}"
    );
    let panic = std::panic::catch_unwind(|| outcomes.assert_linearizable(&ClaimOnce))
        .expect_err("assert_linearizable panics on the double claim");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("every operation, by child:\nchild 0:"),
        "{message}"
    );
    let page = message
        .lines()
        .find_map(|l| l.strip_prefix("drawn as a page: "))
        .unwrap_or_else(|| panic!("no page named: {message}"));
    // Under cargo's target directory, whatever its name.
    let dir = std::path::Path::new(page).parent().unwrap();
    assert!(
        page.ends_with(".html") && dir.ends_with("stampede"),
        "{page}"
    );
    assert!(
        dir.parent().unwrap().join("CACHEDIR.TAG").is_file(),
        "{page}"
    );
    let html = std::fs::read_to_string(page).unwrap();
    assert_eq!(html.matches(r#"<g class="op witness">"#).count(), 2);
    std::fs::remove_file(page).unwrap();
}

#[test]
fn a_hunt_with_a_model_finds_the_naive_claim_with_no_invariant_written() {
    let dir = tempfile::tempdir().unwrap();
    let failure = stampede::Hunt::runs(50)
        .strategy(Strategy::pct(2))
        .seed(1)
        .run(|run| {
            let ticket = dir.path().join(format!("ticket-{}", run.number()));
            let _ = std::fs::remove_file(&ticket);
            run.options()
                .call_concurrently(4, naive_claim, ticket)?
                .assert_linearizable(&ClaimOnce);
            Ok::<(), stampede::Error>(())
        })
        .expect_err("PCT finds the double claim");
    assert!(
        failure
            .message()
            .contains("not linearizable under ClaimOnce"),
        "{failure}"
    );
    // The replay runs with the same run number, so the same fresh ticket.
    assert_eq!(failure.reproduced(), Some(true), "{failure}");
    assert_eq!(failure.shrunk().map(|s| s.children()), Some(2), "{failure}");
}

#[test]
fn the_atomic_claim_passes_the_model_with_every_child_recorded() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let outcomes =
            stampede::call_concurrently(8, exclusive_claim, dir.path().join("t")).unwrap();
        outcomes.assert_linearizable(&ClaimOnce);
        let history = outcomes.history();
        assert_eq!(history.len(), 8);
        let mut children: Vec<usize> = history.operations().iter().map(|op| op.child()).collect();
        children.sort_unstable();
        assert_eq!(children, (0..8).collect::<Vec<_>>());
        for op in history.operations() {
            let returned = op.returned().expect("every claim returned");
            assert!(op.invoked() <= returned, "{op}");
        }
        let wins = history
            .operations()
            .iter()
            .filter(|op| op.output().unwrap().decode::<bool>() == Ok(true))
            .count();
        assert_eq!(wins, 1);
    }
}

/// Adds `1` to the counter, then dies before saying so.
#[stampede::function]
fn add_then_die(counter: PathBuf) {
    let _op = history::invoke("add", &1i64);
    let seen: i64 = std::fs::read_to_string(&counter).map_or(0, |s| s.parse().unwrap());
    std::fs::write(&counter, (seen + 1).to_string()).unwrap();
    std::process::abort();
}

#[stampede::function]
fn read_counter(counter: PathBuf) -> i64 {
    let op = history::invoke("get", &());
    let seen: i64 = std::fs::read_to_string(&counter).map_or(0, |s| s.parse().unwrap());
    op.ok(&seen);
    seen
}

#[test]
fn an_operation_a_child_died_in_is_indeterminate_and_may_have_taken_effect() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let died = stampede::call_concurrently(1, add_then_die, counter.clone()).unwrap();
    assert!(died.iter().all(|o| !o.is_returned()));
    let ops = died.history();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops.operations()[0].ending(), &Ending::Unknown);
    assert_eq!(ops.operations()[0].returned(), None);
    assert!(
        ops.to_string().contains("add(1) → ? (indeterminate)"),
        "{ops}"
    );
    // It took effect: a read of 1 afterwards fits, since it may have.
    let read = stampede::call_concurrently(1, read_counter, counter).unwrap();
    let mut all: Vec<_> = ops.operations().to_vec();
    all.extend(read.history().operations().iter().cloned());
    assert!(stampede::model::check(&Counter, &history::History::new(all.clone())).is_ok());
    // A read of 2 would not.
    let two = history::Operation::new(
        0,
        "get",
        history::Value::of(&()),
        Ending::Ok(history::Value::of(&2i64)),
        all[1].invoked(),
        all[1].returned(),
    );
    all[1] = two;
    let v = stampede::model::check(&Counter, &history::History::new(all)).unwrap_err();
    assert!(v.to_string().contains("get() → 2 is impossible"), "{v}");
}

#[stampede::function]
fn whoami() -> Option<usize> {
    stampede::child_index()
}

#[test]
fn child_index_is_the_outcomes_index_and_none_in_the_test_and_invoke_there_records_nothing() {
    assert_eq!(stampede::child_index(), None);
    history::invoke("in the parent", &()).ok(&());
    let outcomes = stampede::call_concurrently(4, whoami, ()).unwrap();
    for outcome in outcomes.iter() {
        assert_eq!(outcome.value().copied(), Some(Some(outcome.index())));
    }
    assert!(outcomes.history().is_empty());
}

/// Claims `job`, always winning: right when every job is claimed once.
#[stampede::function]
fn claim_always_wins(job: u32) -> bool {
    let op = history::invoke("claim", &job);
    op.ok(&true);
    true
}

#[test]
fn a_loads_history_has_every_call_and_a_job_claimed_twice_is_found() {
    let report = stampede::Load::new(200)
        .workers(4)
        .run_with(claim_always_wins, |i| i as u32)
        .unwrap();
    let history = report.history();
    assert_eq!(history.len(), 200);
    assert!(history.operations().iter().all(|op| op.child() < 4));
    stampede::model::check(&ClaimOnce, history).unwrap();
    // Jobs 0..50 come round twice: a double claim, two operations apart.
    let report = stampede::Load::new(200)
        .workers(4)
        .run_with(claim_always_wins, |i| (i % 150) as u32)
        .unwrap();
    let violation = stampede::model::check(&ClaimOnce, report.history()).unwrap_err();
    let witness = violation.witness();
    assert_eq!(witness.len(), 2, "{violation}");
    assert_eq!(witness[0].input(), witness[1].input());
}

/// Claims with an input larger than the test's `result_limit` allows a
/// frame: the report of its invocation cannot arrive.
#[stampede::function]
fn claim_with_a_large_input() -> bool {
    let op = history::invoke("claim", &"x".repeat(4096));
    op.ok(&true);
    true
}

#[test]
fn a_history_that_could_not_all_arrive_is_inconclusive_never_a_pass() {
    let outcomes = Options::new()
        .result_limit(1024)
        .call_concurrently(2, claim_with_a_large_input, ())
        .unwrap();
    let violation = outcomes.check(&ClaimOnce).unwrap_err();
    assert!(violation.is_inconclusive(), "{violation}");
    assert!(
        violation
            .to_string()
            .starts_with("inconclusive under ClaimOnce: the history is incomplete: children 0, 1"),
        "{violation}"
    );
}

/// A fresh SQLite database with one free ticket.
fn ticket_db(dir: &std::path::Path, run: u64) -> PathBuf {
    let path = dir.join(format!("tickets-{run}.db"));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, holder INTEGER);
         INSERT INTO tickets VALUES (1, NULL);",
    )
    .unwrap();
    path
}

/// The claim of the guide, inside `BEGIN IMMEDIATE` when `immediate`:
/// read, step, write.
#[stampede::function]
fn sqlite_claim(db: PathBuf, immediate: bool) -> bool {
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let op = history::invoke("claim", &1u32);
    if immediate {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    }
    let holder: Option<u32> = conn
        .query_row("SELECT holder FROM tickets WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    stampede::step("after-select");
    let won = holder.is_none()
        && conn
            .execute(
                "UPDATE tickets SET holder = ?1 WHERE id = 1",
                [std::process::id()],
            )
            .unwrap()
            == 1;
    if immediate {
        conn.execute_batch("COMMIT").unwrap();
    }
    op.ok(&won);
    won
}

#[test]
fn the_guides_sqlite_claim_fails_the_model_and_begin_immediate_passes_every_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let hunt = |immediate: bool| {
        stampede::Hunt::runs(30)
            .seed(3)
            .strategy(Strategy::exhaustive())
            .run(|run| {
                let db = ticket_db(dir.path(), run.number());
                run.options()
                    .call_concurrently(2, sqlite_claim, (db, immediate))?
                    .assert_linearizable(&ClaimOnce);
                Ok::<(), stampede::Error>(())
            })
    };
    let failure = hunt(false).expect_err("the naive claim wins twice in some order");
    assert!(
        failure
            .message()
            .contains("not linearizable under ClaimOnce"),
        "{failure}"
    );
    let summary = hunt(true).expect("BEGIN IMMEDIATE holds in every order");
    assert!(
        summary
            .to_string()
            .contains("every schedule within 2 preemptions"),
        "{summary}"
    );
}
