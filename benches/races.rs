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
//! `RACES_ONLY` (a substring of a race's name) to run some.

#[path = "common/machine.rs"]
mod machine;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use rusqlite::Connection;
use stampede::services::Postgres;
use stampede::{Hunt, Options, Outcomes, Strategy};

const CHILDREN: usize = 2;
/// Runs a hunt may take before it counts as not found.
const CAP: u64 = 100;
/// PCT's bound for a depth-2 bug at 2 children and 6 steps.
const PCT_BOUND: u64 = 35;
const JITTER: Duration = Duration::from_micros(200);

// ---- the children ----------------------------------------------------

fn sqlite(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// Read-modify-write of a counter row: the lost update.
#[stampede::function]
fn sqlite_lost_update(db: PathBuf) {
    let c = sqlite(&db);
    let v: i64 = c.query_row("SELECT v FROM c", [], |r| r.get(0)).unwrap();
    stampede::step("read");
    c.execute("UPDATE c SET v = ?1", [v + 1]).unwrap();
}

/// A user inserted when a count says none, without a unique key.
#[stampede::function]
fn sqlite_check_then_insert(db: PathBuf) {
    let c = sqlite(&db);
    let n: i64 = c
        .query_row("SELECT count(*) FROM users WHERE email = 'a@b'", [], |r| {
            r.get(0)
        })
        .unwrap();
    stampede::step("checked");
    if n == 0 {
        c.execute("INSERT INTO users (email) VALUES ('a@b')", [])
            .unwrap();
    }
}

/// A deferred transaction that reads, then writes: the second writer's
/// upgrade fails with SQLITE_BUSY at once (no busy wait can help it).
#[stampede::function]
fn sqlite_deferred_upgrade(db: PathBuf) -> Result<(), String> {
    let c = sqlite(&db);
    c.execute_batch("BEGIN DEFERRED")
        .map_err(|e| e.to_string())?;
    let v: i64 = c
        .query_row("SELECT v FROM c", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    stampede::step("read");
    c.execute("UPDATE c SET v = ?1", [v + 1])
        .map_err(|e| e.to_string())?;
    c.execute_batch("COMMIT").map_err(|e| e.to_string())
}

/// A file created when it is not there yet: both may create it.
#[stampede::function]
fn file_check_then_create(dir: PathBuf) -> bool {
    let path = dir.join("owner");
    if path.exists() {
        return false;
    }
    stampede::step("checked");
    std::fs::write(&path, std::process::id().to_string()).unwrap();
    true
}

/// A counter in a file, read then written.
#[stampede::function]
fn file_counter(path: PathBuf) {
    let v: u64 = std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    stampede::step("read");
    std::fs::write(&path, (v + 1).to_string()).unwrap();
}

fn pg(url: &str) -> Client {
    let mut c = Client::connect(url, NoTls).unwrap();
    let me: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    stampede::postgres_backend(url, me);
    c
}

/// A job taken by its id after a SELECT, without `FOR UPDATE SKIP LOCKED`.
#[stampede::function]
fn pg_double_claim(url: String) -> Option<i32> {
    let mut c = pg(&url);
    let id: Option<i32> = c
        .query_opt(
            "SELECT id FROM jobs WHERE claimed_by IS NULL ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0));
    stampede::step("selected");
    let me = stampede::child_index().unwrap() as i32;
    let id = id?;
    c.execute("UPDATE jobs SET claimed_by = $1 WHERE id = $2", &[&me, &id])
        .unwrap();
    Some(id)
}

/// Two doctors on call, each going off when the count says two: at
/// REPEATABLE READ both go (write skew).
#[stampede::function]
fn pg_write_skew(url: String) {
    let mut c = pg(&url);
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    let on: i64 = tx
        .query_one("SELECT count(*) FROM doctors WHERE on_call", &[])
        .unwrap()
        .get(0);
    stampede::step("counted");
    if on >= 2 {
        let me = stampede::child_index().unwrap() as i32 + 1;
        tx.execute("UPDATE doctors SET on_call = false WHERE id = $1", &[&me])
            .unwrap();
    }
    tx.commit().unwrap();
}

/// A gift card of 100 spent 60 at a time: the balance read, then set.
#[stampede::function]
fn pg_gift_card(url: String) -> bool {
    let mut c = pg(&url);
    let balance: i32 = c
        .query_one("SELECT balance FROM cards WHERE id = 1", &[])
        .unwrap()
        .get(0);
    stampede::step("read");
    if balance < 60 {
        return false;
    }
    c.execute(
        "UPDATE cards SET balance = $1 WHERE id = 1",
        &[&(balance - 60)],
    )
    .unwrap();
    true
}

/// The last item in stock, ordered twice.
#[stampede::function]
fn pg_inventory(url: String) {
    let mut c = pg(&url);
    let stock: i32 = c
        .query_one("SELECT stock FROM items WHERE id = 1", &[])
        .unwrap()
        .get(0);
    stampede::step("read");
    if stock > 0 {
        c.execute("INSERT INTO orders (item) VALUES (1)", &[])
            .unwrap();
        c.execute("UPDATE items SET stock = stock - 1 WHERE id = 1", &[])
            .unwrap();
    }
}

/// A payment with an idempotency key: the key is unique, but written
/// after the charge.
#[stampede::function]
fn pg_idempotency(url: String) {
    let mut c = pg(&url);
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
}

/// A transfer that locks its own account first: two in opposite orders
/// deadlock.
#[stampede::function]
fn pg_deadlock(url: String) -> Result<(), String> {
    let mut c = pg(&url);
    // The server breaks a deadlock after this wait, in this session.
    c.batch_execute("SET deadlock_timeout = '20ms'").unwrap();
    let first = stampede::child_index().unwrap() as i32 + 1;
    let mut tx = c.transaction().unwrap();
    let why = |e: postgres::Error| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    };
    tx.execute(
        "UPDATE accounts SET balance = balance - 1 WHERE id = $1",
        &[&first],
    )
    .map_err(why)?;
    stampede::step("first");
    tx.execute(
        "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
        &[&(3 - first)],
    )
    .map_err(why)?;
    tx.commit().map_err(why)
}

/// Child 0 writes the value and then drops the cache; child 1 fills the
/// cache on a miss: a fill read before the write lands after the drop.
#[stampede::function]
fn pg_stale_cache(url: String) {
    let mut c = pg(&url);
    if stampede::child_index() == Some(0) {
        c.execute("UPDATE data SET v = 2", &[]).unwrap();
        stampede::step("written");
        c.execute("DELETE FROM cache", &[]).unwrap();
    } else {
        let cached = c.query_opt("SELECT v FROM cache", &[]).unwrap();
        let v: Option<i32> = match cached {
            Some(_) => None,
            None => Some(c.query_one("SELECT v FROM data", &[]).unwrap().get(0)),
        };
        stampede::step("read");
        if let Some(v) = v {
            c.execute("INSERT INTO cache (v) VALUES ($1)", &[&v])
                .unwrap();
        }
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
}

impl Env {
    fn sql(&mut self, sql: &str) {
        self.client.batch_execute(sql).unwrap();
    }

    fn count(&mut self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).unwrap().get(0)
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

/// The first child's error, if one returned one.
fn first_error(outcomes: &Outcomes<Result<(), String>>) -> Check {
    match outcomes.values().find_map(|v| v.clone().err()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Race {
    name: &'static str,
    on: &'static str,
    run: fn(&mut Env, Options) -> Check,
}

const RACES: &[Race] = &[
    Race {
        name: "read-modify-write lost update",
        on: "SQLite",
        run: |env, options| {
            let db = env.sqlite("CREATE TABLE c (v INTEGER); INSERT INTO c VALUES (0);");
            let outcomes = call(env, options, sqlite_lost_update, db.clone())?;
            let v: i64 = sqlite(&db)
                .query_row("SELECT v FROM c", [], |r| r.get(0))
                .unwrap();
            (v == outcomes.len() as i64)
                .then_some(())
                .ok_or(format!("counter {v}"))
        },
    },
    Race {
        name: "check-then-insert without a unique key",
        on: "SQLite",
        run: |env, options| {
            let db = env.sqlite("CREATE TABLE users (email TEXT);");
            call(env, options, sqlite_check_then_insert, db.clone())?;
            let n: i64 = sqlite(&db)
                .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                .unwrap();
            (n == 1).then_some(()).ok_or(format!("{n} users"))
        },
    },
    Race {
        name: "deferred transaction's upgrade to write",
        on: "SQLite",
        run: |env, options| {
            let db = env.sqlite("CREATE TABLE c (v INTEGER); INSERT INTO c VALUES (0);");
            let outcomes = call(env, options, sqlite_deferred_upgrade, db)?;
            first_error(&outcomes)
        },
    },
    Race {
        name: "file check-then-create",
        on: "files",
        run: |env, options| {
            let dir = env.scratch();
            let outcomes = call(env, options, file_check_then_create, dir)?;
            let creators = outcomes.values().filter(|c| **c).count();
            (creators == 1)
                .then_some(())
                .ok_or(format!("{creators} creators"))
        },
    },
    Race {
        name: "a counter",
        on: "files",
        run: |env, options| {
            let path = env.scratch().join("counter");
            std::fs::write(&path, "0").unwrap();
            let outcomes = call(env, options, file_counter, path.clone())?;
            let v: usize = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            (v == outcomes.len())
                .then_some(())
                .ok_or(format!("counter {v}"))
        },
    },
    Race {
        name: "double claim without SKIP LOCKED",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE jobs; INSERT INTO jobs VALUES (1, NULL), (2, NULL);");
            let outcomes = call(env, options, pg_double_claim, env.pg.url().to_owned())?;
            let mut ids: Vec<i32> = outcomes.values().filter_map(|id| *id).collect();
            let all = ids.len();
            ids.sort_unstable();
            ids.dedup();
            (ids.len() == all)
                .then_some(())
                .ok_or(format!("claims {all}, jobs {}", ids.len()))
        },
    },
    Race {
        name: "write skew at REPEATABLE READ",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE doctors; INSERT INTO doctors VALUES (1, true), (2, true);");
            call(env, options, pg_write_skew, env.pg.url().to_owned())?;
            let on = env.count("SELECT count(*) FROM doctors WHERE on_call");
            (on >= 1).then_some(()).ok_or("no doctor on call".into())
        },
    },
    Race {
        name: "gift card overspent",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE cards; INSERT INTO cards VALUES (1, 100);");
            let outcomes = call(env, options, pg_gift_card, env.pg.url().to_owned())?;
            let spent = outcomes.values().filter(|s| **s).count();
            (spent <= 1)
                .then_some(())
                .ok_or(format!("{spent} spends of 60 from 100"))
        },
    },
    Race {
        name: "inventory oversold",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE items, orders; INSERT INTO items VALUES (1, 1);");
            call(env, options, pg_inventory, env.pg.url().to_owned())?;
            let orders = env.count("SELECT count(*) FROM orders");
            (orders <= 1)
                .then_some(())
                .ok_or(format!("{orders} orders of 1 item"))
        },
    },
    Race {
        name: "idempotency key written after the charge",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE idempotency, charges;");
            call(env, options, pg_idempotency, env.pg.url().to_owned())?;
            let charges = env.count("SELECT count(*) FROM charges");
            (charges == 1)
                .then_some(())
                .ok_or(format!("{charges} charges"))
        },
    },
    Race {
        name: "lock order that deadlocks",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE accounts; INSERT INTO accounts VALUES (1, 100), (2, 100);");
            let outcomes = call(env, options, pg_deadlock, env.pg.url().to_owned())?;
            first_error(&outcomes)
        },
    },
    Race {
        name: "stale cache refilled after invalidation",
        on: "PostgreSQL",
        run: |env, options| {
            env.sql("TRUNCATE data, cache; INSERT INTO data VALUES (1);");
            call(env, options, pg_stale_cache, env.pg.url().to_owned())?;
            let stale = env.count("SELECT count(*) FROM cache, data WHERE cache.v <> data.v");
            (stale == 0)
                .then_some(())
                .ok_or("a stale value in the cache".into())
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
        (race.run)(env, options)
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
    };
    let races: Vec<&Race> = RACES.iter().filter(|r| r.name.contains(&only)).collect();

    let mut tables = [String::new(), String::new()];
    let mut targets = String::new();
    let (mut scheduled_runs, mut scheduled_time) = (0u64, Duration::ZERO);
    let mut replay_rows = String::new();
    for race in &races {
        let mut pct = [Vec::new(), Vec::new()];
        let mut schedule = None;
        for (busy, table) in tables.iter_mut().enumerate() {
            let _loops = (busy == 1).then(Busy::start);
            let mut row = format!("| {} | {} |", race.name, race.on);
            for (how, _) in HOWS {
                let hunts = if how == How::Exhaustive { 1 } else { hunts };
                let mut found = Vec::new();
                for h in 0..hunts {
                    let hunted = hunt(&mut env, race, how, 1_000 + h);
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
        // PCT's failing schedule, replayed beside the busy loops.
        let replayed = schedule.as_ref().map(|text| {
            let _loops = Busy::start();
            let mut same = 0;
            for _ in 0..replays {
                env.schedule = None;
                let failed = (race.run)(&mut env, Options::new().replay(text)).is_err();
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
    println!("\n### targets\n");
    print!("{targets}");
}
