//! SQLite recipes: the races people write against a database file that
//! several processes share, and the ways to get them right.
//!
//! Every worker is a `#[stampede::function]` that opens its own connection
//! to a file-backed database in a fresh temporary directory, the way separate
//! processes of an application would. Two traps are avoided on purpose:
//!
//! - the database is a file, never `:memory:` (an in-memory database is
//!   private to the connection that created it, so each child would get its
//!   own empty one);
//! - the parent commits the schema and the seed rows and closes its
//!   connection before any child starts (uncommitted data is invisible to
//!   the children, and an open write transaction would lock them out).
//!
//! No recipe sleeps inside its race window: the window between the check and
//! the act is only what SQLite itself takes (a statement, a commit), which
//! is what makes the detection numbers in `benches/detection.rs` honest.
//! Included by the tests (`#[path = "common/sqlite.rs"]`), the examples and
//! the detection bench; each uses a part of it.

#![allow(
    dead_code,
    reason = "each test, example and bench uses a different part of these recipes"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use serde::{Deserialize, Serialize};
use stampede::history;
use tempfile::TempDir;

/// How many workers the recipes race by default.
pub const WORKERS: usize = 8;

/// How long a worker waits for a lock before SQLite gives up with
/// `SQLITE_BUSY` ("database is locked"). Without it, a second writer fails
/// at once; with it, writers queue. (rusqlite's `open` sets 5 s, SQLite's
/// own default is 0; the recipes set it explicitly either way.) Generous, because on a loaded 2-core
/// machine eight processes committing one after another take a while.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh database file in its own temporary directory, removed on drop.
pub struct Db {
    dir: TempDir,
    path: PathBuf,
}

impl Db {
    /// An empty database file (schema `sql`, committed) in a new temporary directory.
    pub fn with_schema(sql: &str) -> Db {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let path = dir.path().join("shared.db");
        let conn = Connection::open(&path).expect("creating the database file");
        conn.execute_batch(sql).expect("creating the schema");
        // Dropping the connection here matters: it must not hold a lock or an
        // uncommitted transaction while the children run.
        drop(conn);
        Db { dir, path }
    }

    /// One ticket (id 1), free (`holder` is NULL).
    pub fn one_free_ticket() -> Db {
        Db::with_schema(
            "CREATE TABLE tickets (id INTEGER PRIMARY KEY, holder INTEGER);
             INSERT INTO tickets (id, holder) VALUES (1, NULL);",
        )
    }

    /// One counter (id 1) at 0.
    pub fn counter_at_zero() -> Db {
        Db::with_schema(
            "CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO counter (id, value) VALUES (1, 0);",
        )
    }

    /// An empty `claims` table; with `unique`, at most one claim per ticket.
    pub fn empty_claims(unique: bool) -> Db {
        Db::with_schema(if unique {
            "CREATE TABLE claims (ticket INTEGER NOT NULL UNIQUE, worker INTEGER NOT NULL);"
        } else {
            "CREATE TABLE claims (ticket INTEGER NOT NULL, worker INTEGER NOT NULL);"
        })
    }

    /// Switches the file to `journal` mode. WAL is a property of the file,
    /// so the parent sets it once, before the children open it.
    pub fn journal(self, journal: Journal) -> Db {
        let pragma = match journal {
            Journal::Delete => "PRAGMA journal_mode = DELETE",
            Journal::Wal => "PRAGMA journal_mode = WAL",
        };
        let mode: String = self
            .connect()
            .query_row(pragma, [], |r| r.get(0))
            .expect("setting the journal mode");
        assert_eq!(
            mode.eq_ignore_ascii_case("wal"),
            journal == Journal::Wal,
            "journal mode is {mode}"
        );
        self
    }

    /// The database file, the argument every worker gets.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The temporary directory the file lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The parent's own connection, to read what the workers left.
    pub fn connect(&self) -> Connection {
        Connection::open(&self.path).expect("opening the database")
    }

    /// Who holds ticket 1.
    pub fn ticket_holder(&self) -> Option<u32> {
        self.connect()
            .query_row("SELECT holder FROM tickets WHERE id = 1", [], |r| r.get(0))
            .expect("reading ticket 1")
    }

    /// The counter's value.
    pub fn counter(&self) -> i64 {
        self.connect()
            .query_row("SELECT value FROM counter WHERE id = 1", [], |r| r.get(0))
            .expect("reading the counter")
    }

    /// How many rows claim ticket 1.
    pub fn claim_rows(&self) -> i64 {
        self.connect()
            .query_row("SELECT COUNT(*) FROM claims WHERE ticket = 1", [], |r| {
                r.get(0)
            })
            .expect("counting claims")
    }
}

/// A worker's connection: its own, to the shared file, with [`BUSY_TIMEOUT`].
pub fn open(db: &Path) -> Connection {
    let conn = Connection::open(db).expect("opening the shared database");
    conn.busy_timeout(BUSY_TIMEOUT)
        .expect("setting busy_timeout");
    conn
}

// ---------------------------------------------------------------------------
// Claiming one ticket: exactly one of N workers may win.
// ---------------------------------------------------------------------------

/// THE RACE: check, then act, in two separate statements (two autocommit
/// transactions). Every worker that reads "free" before the first winner's
/// UPDATE commits also writes itself in and believes it won.
#[stampede::function]
pub fn claim_naive(db: PathBuf) -> bool {
    let conn = open(&db);
    let mut check = conn
        .prepare("SELECT holder FROM tickets WHERE id = 1")
        .expect("preparing the check");
    let mut claim = conn
        .prepare("UPDATE tickets SET holder = ?1 WHERE id = 1")
        .expect("preparing the claim");
    stampede::checkpoint(); // every worker connected and prepared: go together
    let op = history::invoke("claim", &1u32);
    let holder: Option<u32> = check
        .query_row([], |r| r.get(0))
        .expect("checking ticket 1");
    let won = holder.is_none()
        && claim
            .execute([std::process::id()])
            .expect("claiming ticket 1")
            == 1;
    op.ok(&won);
    won
}

/// CORRECT: the same check and act inside `BEGIN IMMEDIATE`, which takes the
/// write lock before the check. Other workers wait (busy_timeout) and then
/// see the ticket taken.
#[stampede::function]
pub fn claim_immediate(db: PathBuf) -> bool {
    let mut conn = open(&db);
    stampede::checkpoint();
    let op = history::invoke("claim", &1u32);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("BEGIN IMMEDIATE");
    let holder: Option<u32> = tx
        .query_row("SELECT holder FROM tickets WHERE id = 1", [], |r| r.get(0))
        .expect("checking ticket 1");
    if holder.is_some() {
        op.ok(&false);
        return false; // dropping `tx` rolls back
    }
    tx.execute(
        "UPDATE tickets SET holder = ?1 WHERE id = 1",
        [std::process::id()],
    )
    .expect("claiming ticket 1");
    tx.commit().expect("COMMIT");
    op.ok(&true);
    true
}

/// CORRECT, and the shortest: one conditional UPDATE is its own atomic
/// check-and-act; the worker won if it changed a row.
#[stampede::function]
pub fn claim_conditional_update(db: PathBuf) -> bool {
    let conn = open(&db);
    stampede::checkpoint();
    let op = history::invoke("claim", &1u32);
    let changed = conn
        .execute(
            "UPDATE tickets SET holder = ?1 WHERE id = 1 AND holder IS NULL",
            [std::process::id()],
        )
        .expect("claiming ticket 1");
    op.ok(&(changed == 1));
    changed == 1
}

// ---------------------------------------------------------------------------
// A counter: N workers add one each; the counter must end at N.
// ---------------------------------------------------------------------------

/// THE RACE (lost update): read the value, then write value + 1 in a second
/// statement. Two workers that read the same value write the same result,
/// and one increment is lost. Returns the value this worker wrote.
#[stampede::function]
pub fn increment_naive(db: PathBuf) -> i64 {
    let conn = open(&db);
    let mut read = conn
        .prepare("SELECT value FROM counter WHERE id = 1")
        .expect("preparing the read");
    let mut write = conn
        .prepare("UPDATE counter SET value = ?1 WHERE id = 1")
        .expect("preparing the write");
    stampede::checkpoint(); // every worker connected and prepared: go together
    let mut txn = history::transaction("increment");
    let value: i64 = read
        .query_row([], |r| r.get(0))
        .expect("reading the counter");
    txn.read("counter", &value);
    write.execute([value + 1]).expect("writing the counter");
    txn.write("counter", &(value + 1));
    txn.commit();
    value + 1
}

/// CORRECT: let the database do the arithmetic in one statement. Returns
/// the value this worker produced (each worker gets a different one).
#[stampede::function]
pub fn increment_atomic(db: PathBuf) -> i64 {
    let conn = open(&db);
    stampede::checkpoint();
    let mut txn = history::transaction("increment");
    let value: i64 = conn
        .query_row(
            "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value",
            [],
            |r| r.get(0),
        )
        .expect("incrementing the counter");
    // One statement read the value before and wrote this one.
    txn.read("counter", &(value - 1));
    txn.write("counter", &value);
    txn.commit();
    value
}

// ---------------------------------------------------------------------------
// A UNIQUE constraint as the arbiter.
// ---------------------------------------------------------------------------

/// Check that nobody claimed ticket 1, then insert a claim row; `true` if
/// this worker's row went in. Without a UNIQUE constraint this is the same
/// race as [`claim_naive`] and leaves several rows. With `UNIQUE(ticket)`
/// the database arbitrates: one INSERT wins, the others fail with a
/// constraint violation, which this worker reads as "lost".
#[stampede::function]
pub fn claim_by_insert(db: PathBuf) -> bool {
    let conn = open(&db);
    let mut check = conn
        .prepare("SELECT COUNT(*) FROM claims WHERE ticket = 1")
        .expect("preparing the check");
    let mut insert = conn
        .prepare("INSERT INTO claims (ticket, worker) VALUES (1, ?1)")
        .expect("preparing the insert");
    stampede::checkpoint(); // every worker connected and prepared: go together
    let op = history::invoke("claim", &1u32);
    let taken: i64 = check
        .query_row([], |r| r.get(0))
        .expect("checking the claims");
    let won = taken == 0
        && match insert.execute([std::process::id()]) {
            Ok(_) => true,
            Err(err) if err.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => false,
            Err(err) => panic!("inserting a claim: {err}"),
        };
    op.ok(&won);
    won
}

// ---------------------------------------------------------------------------
// What WAL and busy_timeout change.
// ---------------------------------------------------------------------------

/// SQLite's journal mode for a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Journal {
    /// The default rollback journal: a writer's commit locks readers out.
    Delete,
    /// Write-ahead log: readers see the last commit while a writer writes.
    Wal,
}

/// How a read-then-write transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Begin {
    /// `BEGIN` (DEFERRED): read lock first, write lock at the first write.
    Deferred,
    /// `BEGIN IMMEDIATE`: write lock first.
    Immediate,
}

/// One way to run the counter increment: journal mode, busy timeout, and
/// how the transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    /// Journal mode of the database file.
    pub journal: Journal,
    /// The connection's busy timeout, in milliseconds (0: fail at once).
    pub busy_timeout_ms: u64,
    /// How the transaction begins.
    pub begin: Begin,
}

/// A counter increment as a read-then-write transaction, set up as `setup`
/// says. Returns the value written, or SQLite's error when the database
/// refused (`SQLITE_BUSY`, "database is locked"), so that the parent can
/// count refusals instead of seeing panics.
#[stampede::function]
pub fn increment_in_transaction(db: PathBuf, setup: Setup) -> Result<i64, String> {
    let mut conn = Connection::open(&db).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_millis(setup.busy_timeout_ms))
        .map_err(|e| e.to_string())?;
    let behavior = match setup.begin {
        Begin::Deferred => TransactionBehavior::Deferred,
        Begin::Immediate => TransactionBehavior::Immediate,
    };
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(|e| e.to_string())?;
    let value: i64 = tx
        .query_row("SELECT value FROM counter WHERE id = 1", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    tx.execute("UPDATE counter SET value = ?1 WHERE id = 1", [value + 1])
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(value + 1)
}

/// Whether an error returned by [`increment_in_transaction`] or
/// [`read_during_write`] is SQLite's "database is locked" (`SQLITE_BUSY`).
pub fn is_busy(message: &str) -> bool {
    message.contains("database is locked")
}

/// A writer that holds the write lock while readers try to read: it starts
/// an exclusive transaction, changes the counter, creates `holding` in
/// `dir`, waits until `readers` files named `read-*` exist (each reader's
/// "done"), then commits. `BEGIN EXCLUSIVE` keeps readers out in rollback
/// mode; in WAL mode it is the same as IMMEDIATE and readers go on.
///
/// The two sides meet through files in the temporary directory rather than
/// sleeps, so the outcome does not depend on how fast the machine is.
#[stampede::function]
pub fn hold_write_lock(db: PathBuf, dir: PathBuf, readers: usize) -> Result<(), String> {
    let mut conn = open(&db);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(|e| e.to_string())?;
    tx.execute("UPDATE counter SET value = value + 100 WHERE id = 1", [])
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("holding"), b"").map_err(|e| e.to_string())?;
    wait_for(
        || count_files(&dir, "read-") >= readers,
        "every reader to finish",
    )?;
    tx.commit().map_err(|e| e.to_string())
}

/// A reader with no busy timeout that reads the counter while
/// [`hold_write_lock`] holds its transaction: the value it saw, or the error.
#[stampede::function]
pub fn read_during_write(db: PathBuf, dir: PathBuf) -> Result<i64, String> {
    let conn = Connection::open(&db).map_err(|e| e.to_string())?;
    // rusqlite's `open` sets a 5 s busy timeout; this reader must not wait.
    conn.busy_timeout(Duration::ZERO)
        .map_err(|e| e.to_string())?;
    wait_for(
        || dir.join("holding").exists(),
        "the writer to hold its lock",
    )?;
    let read = conn
        .query_row("SELECT value FROM counter WHERE id = 1", [], |r| r.get(0))
        .map_err(|e| e.to_string());
    std::fs::write(dir.join(format!("read-{}", std::process::id())), b"")
        .map_err(|e| e.to_string())?;
    read
}

fn count_files(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

fn wait_for(mut done: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("gave up waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The two traps.
// ---------------------------------------------------------------------------

/// How many tickets a worker sees in the database at `db` (a path, or
/// `":memory:"`), or SQLite's error.
#[stampede::function]
pub fn count_tickets(db: String) -> Result<i64, String> {
    let conn = Connection::open(&db).map_err(|e| e.to_string())?;
    conn.query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}
