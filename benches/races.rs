//! Twelve planted races, each in separate processes on real SQLite, real
//! PostgreSQL or real files, and how soon each strategy finds them: runs to
//! the first failure (median and p95 over several hunts, each with its own
//! seed) for a free run as today (the start barrier), jitter, random, PCT
//! of depth 2, the exhaustive search and the default portfolio; the same
//! with two busy loops
//! beside the bench; the replay rate of each failing schedule PCT printed
//! (replayed under the busy loops: the same step trace and a failure
//! again); the cost of a step; and the schedules explored per second.
//!
//! Every race runs 2 children through a start, one named step and an end
//! (6 passages): a bug of depth 1 or 2.
//!
//! Run with `cargo bench --bench races`. Printed, never asserted: a missed
//! target is a line that says MISS. Environment: `RACES_HUNTS` (default
//! 10) hunts per cell, `RACES_REPLAYS` (default 100) replays per schedule,
//! `RACES_ONLY` (a substring of a race's name) to run some,
//! `RACES_FIXED_RUNS` (default 1,000) runs of each fixed version.
//!
//! Every race is judged by a shipped model over the history its children
//! record (`ClaimOnce`, `Register`, or serializability for transactions),
//! not by a hand-written invariant; two races are refusals, not wrong
//! results (a deadlock, SQLite's failed upgrade): `NeverFails` around a
//! model says an operation may not be refused. Each race also has a fixed
//! version, run under the portfolio: any alarm it raises is a false one.

#[path = "common/machine.rs"]
mod machine;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use rusqlite::Connection;
use stampede::history;
use stampede::model::{Anything, ClaimOnce, Counter, NeverFails, Register, Violation};
use stampede::services::Postgres;
use stampede::{Hunt, Options, Outcomes, Strategy};

const CHILDREN: usize = 2;
/// Runs a hunt may take before it counts as not found.
const CAP: u64 = 100;
/// PCT's bound for a depth-2 bug at 2 children and 6 steps.
const PCT_BOUND: u64 = 35;
const JITTER: Duration = Duration::from_micros(200);

// ---- the children ----------------------------------------------------
//
// Each records what it did (`stampede::history`), so a shipped model
// checks it with no invariant written; `fixed` runs the corrected version.

fn sqlite(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// Read-modify-write of a counter row: the lost update. Fixed: in one
/// `BEGIN IMMEDIATE` transaction.
#[stampede::function]
fn sqlite_lost_update(db: PathBuf, fixed: bool) {
    let c = sqlite(&db);
    let mut txn = history::transaction("increment");
    if fixed {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
    }
    let v: i64 = c.query_row("SELECT v FROM c", [], |r| r.get(0)).unwrap();
    txn.read("c", &v);
    stampede::step("read");
    c.execute("UPDATE c SET v = ?1", [v + 1]).unwrap();
    txn.write("c", &(v + 1));
    if fixed {
        c.execute_batch("COMMIT").unwrap();
    }
    txn.commit();
}

/// A user inserted when a count says none, without a unique key. Fixed:
/// a unique key and `INSERT OR IGNORE`.
#[stampede::function]
fn sqlite_check_then_insert(db: PathBuf, fixed: bool) {
    let c = sqlite(&db);
    let op = history::invoke("claim", "a@b");
    let inserted = if fixed {
        stampede::step("checked");
        c.execute("INSERT OR IGNORE INTO users (email) VALUES ('a@b')", [])
            .unwrap()
            == 1
    } else {
        let n: i64 = c
            .query_row("SELECT count(*) FROM users WHERE email = 'a@b'", [], |r| {
                r.get(0)
            })
            .unwrap();
        stampede::step("checked");
        n == 0
            && c.execute("INSERT INTO users (email) VALUES ('a@b')", [])
                .unwrap()
                == 1
    };
    op.ok(&inserted);
}

/// A deferred transaction that reads, then writes: the second writer's
/// upgrade fails with SQLITE_BUSY at once (no busy wait can help it).
/// Fixed: `BEGIN IMMEDIATE`.
#[stampede::function]
fn sqlite_deferred_upgrade(db: PathBuf, fixed: bool) -> Result<(), String> {
    let c = sqlite(&db);
    let add = history::invoke("add", &1i64);
    // Every statement's error ends the increment as refused.
    let done = (|| {
        c.execute_batch(if fixed {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN DEFERRED"
        })?;
        let v: i64 = c.query_row("SELECT v FROM c", [], |r| r.get(0))?;
        stampede::step("read");
        c.execute("UPDATE c SET v = ?1", [v + 1])?;
        c.execute_batch("COMMIT")
    })();
    match done {
        Ok(()) => {
            add.ok(&());
            Ok(())
        }
        Err(e) => {
            add.fail(&e);
            Err(e.to_string())
        }
    }
}

/// A file created when it is not there yet: both may create it. Fixed:
/// created with `create_new`.
#[stampede::function]
fn file_check_then_create(dir: PathBuf, fixed: bool) -> bool {
    let path = dir.join("owner");
    let op = history::invoke("claim", "owner");
    let created = if fixed {
        stampede::step("checked");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .is_ok()
    } else if path.exists() {
        false
    } else {
        stampede::step("checked");
        std::fs::write(&path, std::process::id().to_string()).unwrap();
        true
    };
    op.ok(&created);
    created
}

/// A counter in a file, read then written. Fixed: under an exclusive lock
/// of the file.
#[stampede::function]
fn file_counter(path: PathBuf, fixed: bool) {
    let lock = std::fs::File::open(&path).unwrap();
    if fixed {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when
        // `lock` is dropped at the end.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    }
    let mut txn = history::transaction("increment");
    let v: u64 = std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    txn.read("counter", &v);
    stampede::step("read");
    std::fs::write(&path, (v + 1).to_string()).unwrap();
    txn.write("counter", &(v + 1));
    txn.commit();
}

fn pg(url: &str) -> Client {
    let mut c = Client::connect(url, NoTls).unwrap();
    let me: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    stampede::postgres_backend(url, me);
    c
}

/// The server's message of `e`.
fn why(e: postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// A job taken by its id after a SELECT, without `FOR UPDATE SKIP LOCKED`.
/// Fixed: with it, in one transaction.
#[stampede::function]
fn pg_double_claim(url: String, fixed: bool) -> Option<i32> {
    let mut c = pg(&url);
    let mut tx = c.transaction().unwrap();
    let select = if fixed {
        "SELECT id FROM jobs WHERE claimed_by IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT id FROM jobs WHERE claimed_by IS NULL ORDER BY id LIMIT 1"
    };
    let id: Option<i32> = tx.query_opt(select, &[]).unwrap().map(|r| r.get(0));
    if !fixed {
        tx.commit().unwrap();
        tx = c.transaction().unwrap();
    }
    stampede::step("selected");
    let me = stampede::child_index().unwrap() as i32;
    let id = id?;
    let op = history::invoke("claim", &id);
    tx.execute("UPDATE jobs SET claimed_by = $1 WHERE id = $2", &[&me, &id])
        .unwrap();
    tx.commit().unwrap();
    op.ok(&true);
    Some(id)
}

/// Two doctors on call, each going off when it sees two: at REPEATABLE
/// READ both go (write skew). Fixed: SERIALIZABLE, where one of them is
/// rolled back.
#[stampede::function]
fn pg_write_skew(url: String, fixed: bool) {
    let mut c = pg(&url);
    let mut txn = history::transaction("off_call");
    let level = if fixed {
        postgres::IsolationLevel::Serializable
    } else {
        postgres::IsolationLevel::RepeatableRead
    };
    let mut tx = c
        .build_transaction()
        .isolation_level(level)
        .start()
        .unwrap();
    let mut on = 0;
    for row in tx
        .query("SELECT id, on_call FROM doctors ORDER BY id", &[])
        .unwrap()
    {
        let (id, on_call): (i32, bool) = (row.get(0), row.get(1));
        txn.read(&format!("doctor:{id}"), &on_call);
        on += i32::from(on_call);
    }
    stampede::step("counted");
    let me = stampede::child_index().unwrap() as i32 + 1;
    let going = on >= 2;
    let done = if going {
        tx.execute("UPDATE doctors SET on_call = false WHERE id = $1", &[&me])
            .map(drop)
    } else {
        Ok(())
    }
    .and_then(|()| tx.commit());
    match done {
        Ok(()) => {
            if going {
                txn.write(&format!("doctor:{me}"), &false);
            }
            txn.commit();
        }
        Err(e) => txn.abort(&why(e)),
    }
}

/// A gift card of 100 spent 60 at a time: the balance read, then set.
/// Fixed: read `FOR UPDATE` in the transaction that sets it.
#[stampede::function]
fn pg_gift_card(url: String, fixed: bool) -> bool {
    let mut c = pg(&url);
    let mut txn = history::transaction("spend");
    let mut tx = c.transaction().unwrap();
    let select = if fixed {
        "SELECT balance FROM cards WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT balance FROM cards WHERE id = 1"
    };
    let balance: i32 = tx.query_one(select, &[]).unwrap().get(0);
    txn.read("card:1", &balance);
    if !fixed {
        tx.commit().unwrap();
        tx = c.transaction().unwrap();
    }
    stampede::step("read");
    let spent = balance >= 60;
    if spent {
        tx.execute(
            "UPDATE cards SET balance = $1 WHERE id = 1",
            &[&(balance - 60)],
        )
        .unwrap();
        txn.write("card:1", &(balance - 60));
    }
    tx.commit().unwrap();
    txn.commit();
    spent
}

/// The last item in stock, ordered twice. Fixed: the stock read `FOR
/// UPDATE`.
#[stampede::function]
fn pg_inventory(url: String, fixed: bool) {
    let mut c = pg(&url);
    let mut txn = history::transaction("order");
    let mut tx = c.transaction().unwrap();
    let select = if fixed {
        "SELECT stock FROM items WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT stock FROM items WHERE id = 1"
    };
    let stock: i32 = tx.query_one(select, &[]).unwrap().get(0);
    txn.read("item:1", &stock);
    if !fixed {
        tx.commit().unwrap();
        tx = c.transaction().unwrap();
    }
    stampede::step("read");
    if stock > 0 {
        tx.execute("INSERT INTO orders (item) VALUES (1)", &[])
            .unwrap();
        let left: i32 = tx
            .query_one(
                "UPDATE items SET stock = stock - 1 WHERE id = 1 RETURNING stock",
                &[],
            )
            .unwrap()
            .get(0);
        txn.write("item:1", &left);
    }
    tx.commit().unwrap();
    txn.commit();
}

/// A payment with an idempotency key: the key is unique, but written
/// after the charge. Fixed: the key inserted first, the charge made only
/// by the one that inserted it, in one transaction.
#[stampede::function]
fn pg_idempotency(url: String, fixed: bool) {
    let mut c = pg(&url);
    let op = history::invoke("claim", "pay-1");
    let charged = if fixed {
        let mut tx = c.transaction().unwrap();
        stampede::step("looked");
        let first = tx
            .execute(
                "INSERT INTO idempotency (key) VALUES ('pay-1') ON CONFLICT DO NOTHING",
                &[],
            )
            .unwrap()
            == 1;
        if first {
            tx.execute("INSERT INTO charges (amount) VALUES (10)", &[])
                .unwrap();
        }
        tx.commit().unwrap();
        first
    } else {
        let seen = c
            .query_opt("SELECT 1 FROM idempotency WHERE key = 'pay-1'", &[])
            .unwrap()
            .is_some();
        stampede::step("looked");
        if !seen {
            c.execute("INSERT INTO charges (amount) VALUES (10)", &[])
                .unwrap();
            let _ = c.execute("INSERT INTO idempotency (key) VALUES ('pay-1')", &[]);
        }
        !seen
    };
    op.ok(&charged);
}

/// A transfer that locks its own account first: two in opposite orders
/// deadlock. Fixed: both lock the lower id first.
#[stampede::function]
fn pg_deadlock(url: String, fixed: bool) -> Result<(), String> {
    let mut c = pg(&url);
    // The server breaks a deadlock after this wait, in this session.
    c.batch_execute("SET deadlock_timeout = '20ms'").unwrap();
    let own = stampede::child_index().unwrap() as i32 + 1;
    let (first, second, by) = match (fixed, own) {
        (true, 2) => (1, 2, 1),
        _ => (own, 3 - own, -1),
    };
    let op = history::invoke("transfer", &(first, second));
    let mut txn = history::transaction("transfer");
    let mut tx = match c.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let e = why(e);
            txn.abort(&e);
            op.fail(&e);
            return Err(e);
        }
    };
    let moved = (|| {
        let a: i32 = tx
            .query_one(
                "UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance",
                &[&first, &by],
            )?
            .get(0);
        stampede::step("first");
        let b: i32 = tx
            .query_one(
                "UPDATE accounts SET balance = balance - $2 WHERE id = $1 RETURNING balance",
                &[&second, &by],
            )?
            .get(0);
        Ok::<_, postgres::Error>((a, b))
    })();
    match moved.and_then(|ab| tx.commit().map(|()| ab)) {
        Ok((a, b)) => {
            txn.write(&format!("account:{first}"), &a);
            txn.write(&format!("account:{second}"), &b);
            txn.commit();
            op.ok(&());
            Ok(())
        }
        Err(e) => {
            let e = why(e);
            txn.abort(&e);
            op.fail(&e);
            Err(e)
        }
    }
}

/// Child 0 writes the value and then drops the cache; child 1 reads
/// through the cache, filling it on a miss, then reads through it again:
/// a fill read before the write lands after the drop. Recorded as a
/// register: `write(2)`, `read() → v`. Fixed: the write and the drop in
/// one transaction, and the fill reads the value `FOR SHARE` in the
/// transaction that fills, so the two wait for each other.
#[stampede::function]
fn pg_stale_cache(url: String, fixed: bool) {
    let mut c = pg(&url);
    if stampede::child_index() == Some(0) {
        let op = history::invoke("write", &2);
        let mut tx = c.transaction().unwrap();
        tx.execute("UPDATE data SET v = 2", &[]).unwrap();
        if !fixed {
            tx.commit().unwrap();
            tx = c.transaction().unwrap();
        }
        stampede::step("written");
        tx.execute("DELETE FROM cache", &[]).unwrap();
        tx.commit().unwrap();
        op.ok(&());
    } else {
        let op = history::invoke("read", &());
        let mut tx = c.transaction().unwrap();
        let cached: Option<i32> = tx
            .query_opt("SELECT v FROM cache", &[])
            .unwrap()
            .map(|r| r.get(0));
        let select = if fixed {
            "SELECT v FROM data FOR SHARE"
        } else {
            "SELECT v FROM data"
        };
        let v = match cached {
            Some(v) => v,
            None => tx.query_one(select, &[]).unwrap().get(0),
        };
        if !fixed {
            tx.commit().unwrap();
            tx = c.transaction().unwrap();
        }
        stampede::step("read");
        if cached.is_none() {
            tx.execute("INSERT INTO cache (v) VALUES ($1)", &[&v])
                .unwrap();
        }
        tx.commit().unwrap();
        op.ok(&v);
        // Read through the cache once more.
        let again = history::invoke("read", &());
        let v: i32 = match c.query_opt("SELECT v FROM cache", &[]).unwrap() {
            Some(row) => row.get(0),
            None => c.query_one("SELECT v FROM data", &[]).unwrap().get(0),
        };
        again.ok(&v);
    }
}

// ---- the races: set up, run, check ----------------------------------

const SCHEMA: &str = "
CREATE TABLE jobs (id int PRIMARY KEY, claimed_by int);
CREATE TABLE doctors (id int PRIMARY KEY, on_call bool);
CREATE TABLE cards (id int PRIMARY KEY, balance int);
CREATE TABLE items (id int PRIMARY KEY, stock int);
CREATE TABLE orders (item int);
CREATE TABLE idempotency (key text PRIMARY KEY);
CREATE TABLE charges (amount int);
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
CREATE TABLE data (v int);
CREATE TABLE cache (v int);
";

/// What a run needs: the shared PostgreSQL database, a client of the
/// parent's, and a scratch directory.
struct Env {
    pg: Postgres,
    client: Client,
    dir: tempfile::TempDir,
    run: u64,
    /// The last run's schedule, if it was scheduled.
    schedule: Option<String>,
    /// The last violation's witness.
    witness: Witness,
}

impl Env {
    fn sql(&mut self, sql: &str) {
        self.client.batch_execute(sql).unwrap();
    }

    /// A fresh SQLite database with `schema`.
    fn sqlite(&mut self, schema: &str) -> PathBuf {
        self.run += 1;
        let path = self.dir.path().join(format!("run-{}.db", self.run));
        Connection::open(&path)
            .unwrap()
            .execute_batch(schema)
            .unwrap();
        path
    }

    /// A fresh scratch directory.
    fn scratch(&mut self) -> PathBuf {
        self.run += 1;
        let path = self.dir.path().join(format!("run-{}", self.run));
        std::fs::create_dir(&path).unwrap();
        path
    }
}

type Check = Result<(), String>;

/// Every child returned, or why not.
fn returned<R>(outcomes: &Outcomes<R>) -> Check {
    match outcomes.iter().find(|o| !o.is_returned()) {
        None => Ok(()),
        Some(o) => Err(format!(
            "child {} did not return: {:?}",
            o.index(),
            o.panic_message()
        )),
    }
}

/// Calls `f` in [`CHILDREN`] children; keeps the run's schedule.
fn call<F: stampede::Function<M>, M>(
    env: &mut Env,
    options: Options,
    f: F,
    args: F::Args,
) -> Result<Outcomes<F::Output>, String> {
    let outcomes = options
        .timeout(Duration::from_secs(30))
        .call_concurrently(CHILDREN, f, args)
        .map_err(|e| e.to_string())?;
    env.schedule = outcomes.schedule().map(ToString::to_string);
    returned(&outcomes)?;
    Ok(outcomes)
}

struct Race {
    name: &'static str,
    on: &'static str,
    /// The shipped model that judges it.
    model: &'static str,
    /// Sets up, runs the race (its fixed version with `true`), checks.
    run: fn(&mut Env, Options, bool) -> Check,
}

/// A violation's witness: operations, children.
type Witness = Option<(usize, usize)>;

/// `verdict` of a shipped model as a check; a violation's witness size is
/// kept in `env`.
fn judged(env: &mut Env, verdict: Result<(), Violation>) -> Check {
    verdict.map_err(|v| {
        let mut children: Vec<usize> = v.witness().iter().map(|op| op.child()).collect();
        children.sort_unstable();
        children.dedup();
        env.witness = Some((v.witness().len(), children.len()));
        v.to_string()
    })
}

const RACES: &[Race] = &[
    Race {
        name: "read-modify-write lost update",
        on: "SQLite",
        model: "serializability",
        run: |env, options, fixed| {
            let db = env.sqlite("CREATE TABLE c (v INTEGER); INSERT INTO c VALUES (0);");
            let outcomes = call(env, options, sqlite_lost_update, (db, fixed))?;
            judged(env, outcomes.check_serializable())
        },
    },
    Race {
        name: "check-then-insert without a unique key",
        on: "SQLite",
        model: "ClaimOnce",
        run: |env, options, fixed| {
            let db = env.sqlite(if fixed {
                "CREATE TABLE users (email TEXT UNIQUE);"
            } else {
                "CREATE TABLE users (email TEXT);"
            });
            let outcomes = call(env, options, sqlite_check_then_insert, (db, fixed))?;
            judged(env, outcomes.check(&ClaimOnce))
        },
    },
    Race {
        name: "deferred transaction's upgrade to write",
        on: "SQLite",
        model: "NeverFails(Counter)",
        run: |env, options, fixed| {
            let db = env.sqlite("CREATE TABLE c (v INTEGER); INSERT INTO c VALUES (0);");
            let outcomes = call(env, options, sqlite_deferred_upgrade, (db, fixed))?;
            judged(env, outcomes.check(&NeverFails(Counter)))
        },
    },
    Race {
        name: "file check-then-create",
        on: "files",
        model: "ClaimOnce",
        run: |env, options, fixed| {
            let dir = env.scratch();
            let outcomes = call(env, options, file_check_then_create, (dir, fixed))?;
            judged(env, outcomes.check(&ClaimOnce))
        },
    },
    Race {
        name: "a counter",
        on: "files",
        model: "serializability",
        run: |env, options, fixed| {
            let path = env.scratch().join("counter");
            std::fs::write(&path, "0").unwrap();
            let outcomes = call(env, options, file_counter, (path, fixed))?;
            judged(env, outcomes.check_serializable())
        },
    },
    Race {
        name: "double claim without SKIP LOCKED",
        on: "PostgreSQL",
        model: "ClaimOnce",
        run: |env, options, fixed| {
            env.sql("TRUNCATE jobs; INSERT INTO jobs VALUES (1, NULL), (2, NULL);");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_double_claim, (url, fixed))?;
            judged(env, outcomes.check(&ClaimOnce))
        },
    },
    Race {
        name: "write skew at REPEATABLE READ",
        on: "PostgreSQL",
        model: "serializability",
        run: |env, options, fixed| {
            env.sql("TRUNCATE doctors; INSERT INTO doctors VALUES (1, true), (2, true);");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_write_skew, (url, fixed))?;
            judged(env, outcomes.check_serializable())
        },
    },
    Race {
        name: "gift card overspent",
        on: "PostgreSQL",
        model: "serializability",
        run: |env, options, fixed| {
            env.sql("TRUNCATE cards; INSERT INTO cards VALUES (1, 100);");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_gift_card, (url, fixed))?;
            judged(env, outcomes.check_serializable())
        },
    },
    Race {
        name: "inventory oversold",
        on: "PostgreSQL",
        model: "serializability",
        run: |env, options, fixed| {
            env.sql("TRUNCATE items, orders; INSERT INTO items VALUES (1, 1);");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_inventory, (url, fixed))?;
            judged(env, outcomes.check_serializable())
        },
    },
    Race {
        name: "idempotency key written after the charge",
        on: "PostgreSQL",
        model: "ClaimOnce",
        run: |env, options, fixed| {
            env.sql("TRUNCATE idempotency, charges;");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_idempotency, (url, fixed))?;
            judged(env, outcomes.check(&ClaimOnce))
        },
    },
    Race {
        name: "lock order that deadlocks",
        on: "PostgreSQL",
        model: "NeverFails(Anything)",
        run: |env, options, fixed| {
            env.sql("TRUNCATE accounts; INSERT INTO accounts VALUES (1, 100), (2, 100);");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_deadlock, (url, fixed))?;
            judged(env, outcomes.check(&NeverFails(Anything)))?;
            judged(env, outcomes.check_serializable())
        },
    },
    Race {
        name: "stale cache refilled after invalidation",
        on: "PostgreSQL",
        model: "Register",
        run: |env, options, fixed| {
            env.sql("TRUNCATE data, cache; INSERT INTO data VALUES (1);");
            let url = env.pg.url().to_owned();
            let outcomes = call(env, options, pg_stale_cache, (url, fixed))?;
            judged(env, outcomes.check(&Register::new(1)))
        },
    },
];

// ---- strategies and hunts ----------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum How {
    Free,
    Jitter,
    Random,
    Pct,
    Exhaustive,
    Portfolio,
}

const HOWS: [(How, &str); 6] = [
    (How::Free, "free run"),
    (How::Jitter, "jitter"),
    (How::Random, "random"),
    (How::Pct, "PCT d=2"),
    (How::Exhaustive, "exhaustive"),
    (How::Portfolio, "portfolio"),
];

/// One hunt: the run that first failed (`None`: not within `CAP`), the
/// failing schedule if the hunt had one, and the runs it took and the time.
struct Hunted {
    first: Option<u64>,
    schedule: Option<String>,
    runs: u64,
    took: Duration,
}

fn hunt(env: &mut Env, race: &Race, how: How, seed: u64) -> Hunted {
    let strategy = match how {
        How::Free | How::Jitter => None,
        How::Random => Some(Strategy::random()),
        How::Pct => Some(Strategy::pct(2)),
        How::Exhaustive => Some(Strategy::exhaustive()),
        How::Portfolio => Some(Strategy::portfolio()),
    };
    let mut hunt = Hunt::runs(CAP).seed(seed).progress_every(Duration::ZERO);
    if let Some(strategy) = strategy {
        hunt = hunt.strategy(strategy);
    }
    let began = Instant::now();
    let mut runs = 0;
    let result = hunt.run(|run| {
        runs += 1;
        let options = match how {
            How::Jitter => run.options().jitter(JITTER),
            _ => run.options(),
        };
        (race.run)(env, options, false)
    });
    let took = began.elapsed();
    match result {
        Ok(_) => Hunted {
            first: None,
            schedule: None,
            runs,
            took,
        },
        Err(failure) => Hunted {
            first: failure.run(),
            schedule: failure.schedule().map(ToString::to_string),
            runs,
            took,
        },
    }
}

/// Runs to the first failure at rank `q` (nearest rank; `u64::MAX`: not
/// found within [`CAP`]).
fn rank(found: &[Option<u64>], q: f64) -> u64 {
    let mut runs: Vec<u64> = found.iter().map(|f| f.unwrap_or(u64::MAX)).collect();
    runs.sort_unstable();
    runs[((runs.len() as f64 * q).ceil() as usize).saturating_sub(1)]
}

/// `median / p95 (found of hunts)`.
fn cell(found: &[Option<u64>]) -> String {
    let shown = |r: u64| {
        if r == u64::MAX {
            format!(">{CAP}")
        } else {
            r.to_string()
        }
    };
    let hits = found.iter().filter(|f| f.is_some()).count();
    format!(
        "{} / {} ({hits}/{})",
        shown(rank(found, 0.5)),
        shown(rank(found, 0.95)),
        found.len()
    )
}

/// Two processes that spin, killed when dropped.
struct Busy(Vec<Child>);

impl Busy {
    fn start() -> Busy {
        Busy(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `race`'s fixed version `runs` times under the portfolio: the
/// alarms (any failure), the runs, and the first alarm's message.
fn fixed_runs(env: &mut Env, race: &Race, runs: u64) -> (u64, u64, Option<String>) {
    let (mut alarms, mut ran, mut first) = (0, 0, None);
    let _ = Hunt::runs(runs)
        .seed(7_000)
        .strategy(Strategy::portfolio())
        .progress_every(Duration::ZERO)
        .run(|run| {
            ran += 1;
            if let Err(why) = (race.run)(env, run.options(), true) {
                alarms += 1;
                first.get_or_insert(why);
            }
            Ok::<(), String>(())
        });
    (alarms, ran, first)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    stampede::init();
    let hunts = env_number("RACES_HUNTS", 10);
    let replays = env_number("RACES_REPLAYS", 100);
    let only = std::env::var("RACES_ONLY").unwrap_or_default();
    let pg = Postgres::builder()
        .template_sql(SCHEMA)
        .start()
        .expect("a PostgreSQL database (PostgreSQL's server programs installed)");
    let client = Client::connect(pg.url(), NoTls).unwrap();
    let mut env = Env {
        pg,
        client,
        dir: tempfile::tempdir().unwrap(),
        run: 0,
        schedule: None,
        witness: None,
    };
    let races: Vec<&Race> = RACES.iter().filter(|r| r.name.contains(&only)).collect();

    let mut tables = [String::new(), String::new()];
    let mut targets = String::new();
    let (mut scheduled_runs, mut scheduled_time) = (0u64, Duration::ZERO);
    let mut replay_rows = String::new();
    // Per race: each PCT hunt's witness (if the model flagged it).
    let mut race_witnesses: Vec<Vec<Witness>> = Vec::new();
    let fixed = env_number("RACES_FIXED_RUNS", 1_000);
    for race in &races {
        let mut pct = [Vec::new(), Vec::new()];
        let mut witnesses = [Vec::new(), Vec::new()];
        let mut schedule = None;
        for (busy, table) in tables.iter_mut().enumerate() {
            let _loops = (busy == 1).then(Busy::start);
            let mut row = format!("| {} | {} |", race.name, race.on);
            for (how, _) in HOWS {
                let hunts = if how == How::Exhaustive { 1 } else { hunts };
                let mut found = Vec::new();
                for h in 0..hunts {
                    env.witness = None;
                    let hunted = hunt(&mut env, race, how, 1_000 + h);
                    if how == How::Pct {
                        witnesses[busy].push(hunted.first.and(env.witness));
                    }
                    if !matches!(how, How::Free | How::Jitter) {
                        scheduled_runs += hunted.runs;
                        scheduled_time += hunted.took;
                    }
                    if how == How::Pct {
                        pct[busy].push(hunted.first);
                        if schedule.is_none() {
                            schedule = hunted.schedule;
                        }
                    }
                    found.push(hunted.first);
                }
                let _ = write!(row, " {} |", cell(&found));
            }
            table.push_str(&row);
            table.push('\n');
        }
        race_witnesses.push(witnesses.concat());
        // PCT's failing schedule, replayed beside the busy loops.
        let replayed = schedule.as_ref().map(|text| {
            let _loops = Busy::start();
            let mut same = 0;
            for _ in 0..replays {
                env.schedule = None;
                let failed = (race.run)(&mut env, Options::new().replay(text), false).is_err();
                same += u64::from(failed && env.schedule.as_deref() == Some(text.as_str()));
            }
            same
        });
        let _ = writeln!(
            replay_rows,
            "| {} | {} | {} |",
            race.name,
            schedule.as_deref().unwrap_or("—"),
            replayed.map_or("—".into(), |same| format!("{same}/{replays}")),
        );
        if let Some(same) = replayed {
            let _ = writeln!(
                targets,
                "{} {}: {same} of {replays} replays beside the busy loops reproduced the schedule and the failure",
                if same == replays { "PASS" } else { "MISS" },
                race.name
            );
        }
        let found_quiet = rank(&pct[0], 0.95);
        let found_busy = rank(&pct[1], 0.95);
        let _ = writeln!(
            targets,
            "{} {}: PCT's p95 ≤ {PCT_BOUND} runs (quiet {}, busy {})",
            if found_quiet <= PCT_BOUND && found_busy <= PCT_BOUND {
                "PASS"
            } else {
                "MISS"
            },
            race.name,
            found_quiet,
            found_busy,
        );
    }
    // The fixed versions, under the portfolio: every alarm is a false one.
    let mut model_rows = String::new();
    let (mut flagged, mut small) = (0, 0);
    let all = races.len();
    for (race, witnesses) in races.iter().zip(&race_witnesses) {
        let (alarms, runs, first) = fixed_runs(&mut env, race, fixed);
        let found = witnesses.iter().flatten().count();
        let hunts = witnesses.len();
        let widest = witnesses
            .iter()
            .flatten()
            .max_by_key(|&&(ops, children)| (ops, children));
        flagged += usize::from(found > 0);
        small += usize::from(widest.is_some_and(|&(ops, children)| ops <= 4 && children <= 2));
        let _ = writeln!(
            model_rows,
            "| {} | {} | {found} of {hunts} hunts | {} | {alarms} / {runs}{} |",
            race.name,
            race.model,
            widest.map_or("—".into(), |(ops, children)| format!(
                "{ops} / {children}"
            )),
            first.map_or(String::new(), |f| format!(
                ": {}",
                f.lines().next().unwrap_or("")
            )),
        );
        let _ = writeln!(
            targets,
            "{} {}: the fixed version raised {alarms} alarms in {runs} runs (target 0 in 1,000)",
            if alarms == 0 && runs >= 1_000 {
                "PASS"
            } else if alarms == 0 {
                "PASS (fewer runs than the target's 1,000)"
            } else {
                "MISS"
            },
            race.name,
        );
    }
    let _ = writeln!(
        targets,
        "{} planted races flagged by a shipped model with no invariant written: {flagged} of {all}",
        if flagged == all { "PASS" } else { "MISS" },
    );
    let _ = writeln!(
        targets,
        "{} witness at most 4 operations and 2 children: {small} of {all} (target ≥ 9 of 10)",
        if small * 10 >= all * 9 {
            "PASS"
        } else {
            "MISS"
        },
    );
    println!("\n## planted races: runs to the first failure\n");
    println!("machine: {}\n", machine::machine());
    println!(
        "Each cell: median / p95 runs to the first failure (hunts that found it of hunts); `>{CAP}`: not within {CAP} runs. Exhaustive is one deterministic search.\n"
    );
    let header = HOWS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(" | ");
    for (title, table) in ["quiet", "two busy loops beside"].iter().zip(&tables) {
        println!("### {title}\n");
        println!("| race | on | {header} |");
        println!("|---|---|{}", "---|".repeat(HOWS.len()));
        print!("{table}");
        println!();
    }
    println!(
        "scheduled runs: {scheduled_runs} in {:.1} s, {:.1} schedules explored per second",
        scheduled_time.as_secs_f64(),
        scheduled_runs as f64 / scheduled_time.as_secs_f64()
    );
    println!("\n### PCT's failing schedules, replayed beside two busy loops\n");
    println!("| race | schedule | same steps and a failure |");
    println!("|---|---|---|");
    print!("{replay_rows}");
    println!("\n### checked by shipped models, no invariant written\n");
    println!(
        "Flagged: PCT hunts (quiet and busy, within {CAP} runs) whose first failure was the model's violation. Witness: the widest violation's operations / children. Fixed version: runs of the corrected code under the portfolio; any alarm is false.\n"
    );
    println!("| race | checked by | flagged | witness | fixed version: alarms / runs |");
    println!("|---|---|---|---|---|");
    print!("{model_rows}");
    println!("\n### targets\n");
    print!("{targets}");
}
