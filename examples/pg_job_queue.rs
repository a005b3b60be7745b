//! A job queue in PostgreSQL, claimed by several workers at once.
//!
//! Each child claims one job from the `jobs` table. The naive claim reads a
//! free job, then marks it (two workers can read the same job between the
//! read and the update); the correct one lets the database pick and lock a
//! job in one statement (`FOR UPDATE SKIP LOCKED`). A `Hunt` exposes the
//! naive claim; the correct one holds for every run.
//!
//! Run with `cargo run --example pg_job_queue` (needs PostgreSQL's server
//! programs: `apt-get install postgresql`, or `STAMPEDE_POSTGRES_BIN`).

use std::collections::HashSet;
use std::time::Duration;

use stampede::Hunt;
use stampede::services::Postgres;

const WORKERS: usize = 8;

/// Reads a free job, then claims it: the check and the act are apart.
#[stampede::function]
fn claim_naive(url: String) -> Option<i32> {
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    stampede::checkpoint();
    let row = db
        .query_opt(
            "SELECT id FROM jobs WHERE claimed_by IS NULL ORDER BY id LIMIT 1",
            &[],
        )
        .expect("read a free job")?;
    let id: i32 = row.get(0);
    let me = std::process::id() as i32;
    db.execute("UPDATE jobs SET claimed_by = $1 WHERE id = $2", &[&me, &id])
        .expect("claim it");
    Some(id)
}

/// Picks, locks and claims a job in one statement; a job another worker
/// holds locked is skipped, not waited for.
#[stampede::function]
fn claim_skip_locked(url: String) -> Option<i32> {
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    stampede::checkpoint();
    let me = std::process::id() as i32;
    db.query_opt(
        "UPDATE jobs SET claimed_by = $1 WHERE id = (
             SELECT id FROM jobs WHERE claimed_by IS NULL ORDER BY id
             LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
        &[&me],
    )
    .expect("claim a job")
    .map(|row| row.get(0))
}

/// A queue of `WORKERS` free jobs in the fixture's database.
fn fill_queue(pg: &Postgres) {
    pg.reset().expect("reset the database");
    let mut db = postgres::Client::connect(pg.url(), postgres::NoTls).expect("connect");
    db.batch_execute(
        "CREATE TABLE jobs (id int PRIMARY KEY, claimed_by int);
         INSERT INTO jobs SELECT g, NULL FROM generate_series(1, 8) g;",
    )
    .expect("create the queue");
}

/// Whether every worker got a job and no job went to two workers.
fn check(claimed: &[Option<i32>]) -> Result<(), String> {
    let jobs: Vec<i32> = claimed.iter().flatten().copied().collect();
    let distinct: HashSet<i32> = jobs.iter().copied().collect();
    if jobs.len() == WORKERS && distinct.len() == WORKERS {
        Ok(())
    } else {
        Err(format!(
            "{} workers claimed {} jobs, {} distinct: {claimed:?}",
            WORKERS,
            jobs.len(),
            distinct.len()
        ))
    }
}

fn main() {
    stampede::init();
    let pg = Postgres::start().expect("a PostgreSQL database");

    let naive = Hunt::runs(50)
        .time_budget(Duration::from_secs(60))
        .run(|run| {
            fill_queue(&pg);
            let claimed = run
                .options()
                .call_concurrently(WORKERS, claim_naive, pg.url().to_owned())
                .map_err(|e| e.to_string())?
                .unwrap_all();
            check(&claimed)
        });
    match &naive {
        Err(failure) => println!("naive claim: exposed\n{failure}"),
        Ok(summary) => println!("naive claim: not exposed ({summary})"),
    }

    let correct = Hunt::runs(20)
        .time_budget(Duration::from_secs(60))
        .run(|run| {
            fill_queue(&pg);
            let claimed = run
                .options()
                .call_concurrently(WORKERS, claim_skip_locked, pg.url().to_owned())
                .map_err(|e| e.to_string())?
                .unwrap_all();
            check(&claimed)
        });
    match &correct {
        Ok(summary) => println!("FOR UPDATE SKIP LOCKED: held ({summary})"),
        Err(failure) => println!("FOR UPDATE SKIP LOCKED: failed\n{failure}"),
    }
    assert!(naive.is_err(), "the naive claim should have been exposed");
    assert!(correct.is_ok(), "the SKIP LOCKED claim should hold");
}
