//! The two traps of testing a SQLite database with several processes.
//!
//! 1. An in-memory database (`:memory:`) is private to the connection that
//!    created it: each child process that opens `:memory:` gets its own,
//!    empty database. Share a file in a temporary directory instead.
//! 2. Rows the parent has not committed are invisible to the children, which
//!    see the last committed state. Commit (and close) the setup before
//!    calling stampede.
//!
//! Run with `cargo run --example sqlite_traps`.

#[path = "../tests/common/sqlite.rs"]
mod sqlite;

use sqlite::{Db, WORKERS};

fn show(outcomes: &stampede::Outcomes<Result<i64, String>>) -> String {
    let seen: Vec<String> = outcomes
        .assert_all_returned()
        .values()
        .map(|seen| match seen {
            Ok(count) => format!("{count}"),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    seen.join(", ")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stampede::init();
    let children = WORKERS / 2;

    let parent = rusqlite::Connection::open_in_memory()?;
    parent.execute_batch(
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY); INSERT INTO tickets VALUES (1);",
    )?;
    let outcomes =
        stampede::call_concurrently(children, sqlite::count_tickets, ":memory:".to_owned())?;
    println!(
        "1. The parent's :memory: database has 1 ticket. {children} children open :memory: and count:"
    );
    println!("   {}", show(&outcomes));

    let db = Db::with_schema("CREATE TABLE tickets (id INTEGER PRIMARY KEY);");
    let path = db.path().to_string_lossy().into_owned();
    let mut parent = db.connect();
    let tx = parent.transaction()?;
    tx.execute("INSERT INTO tickets (id) VALUES (1)", [])?;
    let before = stampede::call_concurrently(children, sqlite::count_tickets, path.clone())?;
    tx.commit()?;
    let after = stampede::call_concurrently(children, sqlite::count_tickets, path)?;
    println!(
        "2. The parent inserts 1 ticket into a database file. {children} children count the tickets:"
    );
    println!("   before the parent commits: {}", show(&before));
    println!("   after it commits:          {}", show(&after));
    Ok(())
}
