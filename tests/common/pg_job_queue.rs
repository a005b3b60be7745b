//! A job queue in PostgreSQL, claimed by several workers at once: the naive
//! claim (read a free job, then mark it) and the correct one (`FOR UPDATE
//! SKIP LOCKED`), and a hunt that runs either against a fixture.
//!
//! Included by `tests/pg_job_queue.rs` and `examples/pg_job_queue.rs`
//! (`#[path = "…/common/pg_job_queue.rs"]`).

use std::collections::HashSet;
use std::time::Duration;

use stampede::services::Postgres;
use stampede::{Function, Hunt, HuntFailure, HuntSummary};

/// Workers per run, and jobs in the queue: each worker should get one.
pub const WORKERS: usize = 8;

/// Reads a free job, then claims it: the check and the act are apart.
#[stampede::function]
pub fn claim_naive(url: String) -> Option<i32> {
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
pub fn claim_skip_locked(url: String) -> Option<i32> {
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

/// A database whose every reset brings back a queue of `WORKERS` free jobs.
pub fn queue_fixture() -> Postgres {
    Postgres::builder()
        .template_sql(format!(
            "CREATE TABLE jobs (id int PRIMARY KEY, claimed_by int);
             INSERT INTO jobs SELECT g, NULL FROM generate_series(1, {WORKERS}) g;"
        ))
        .start()
        .expect("a PostgreSQL database")
}

/// Whether every worker got a job and no job went to two workers.
pub fn check(claimed: &[Option<i32>]) -> Result<(), String> {
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

/// Up to `runs` runs (a minute at most) of `WORKERS` children claiming at
/// once from a fresh queue (`pg` from [`queue_fixture`]); the first run where a job went to two workers,
/// or a worker got none, fails the hunt.
pub fn hunt<M>(
    pg: &Postgres,
    claim: impl Function<M, Args = String, Output = Option<i32>> + Copy,
    runs: u64,
) -> Result<HuntSummary, HuntFailure> {
    Hunt::runs(runs)
        .time_budget(Duration::from_secs(60))
        .run(|run| {
            pg.reset().map_err(|e| e.to_string())?;
            let claimed = run
                .options()
                .call_concurrently(WORKERS, claim, pg.url().to_owned())
                .map_err(|e| e.to_string())?
                .unwrap_all();
            check(&claimed)
        })
}
