//! A job queue in PostgreSQL, claimed by several workers at once: the naive
//! claim (read a free job, then mark it) and the correct one (`FOR UPDATE
//! SKIP LOCKED`), and a hunt that runs either against a fixture.
//!
//! Included by `tests/pg_job_queue.rs` and `examples/pg_job_queue.rs`
//! (`#[path = "…/common/pg_job_queue.rs"]`).

use std::time::Duration;

use stampede::history;
use stampede::model::ClaimOnce;
use stampede::services::Postgres;
use stampede::{Function, Hunt, HuntFailure, HuntSummary, Outcomes};

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
    let op = history::invoke("claim", &id);
    let me = std::process::id() as i32;
    db.execute("UPDATE jobs SET claimed_by = $1 WHERE id = $2", &[&me, &id])
        .expect("claim it");
    op.ok(&true);
    Some(id)
}

/// Picks, locks and claims a job in one statement; a job another worker
/// holds locked is skipped, not waited for.
#[stampede::function]
pub fn claim_skip_locked(url: String) -> Option<i32> {
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    stampede::checkpoint();
    let me = std::process::id() as i32;
    let id: Option<i32> = db
        .query_opt(
            "UPDATE jobs SET claimed_by = $1 WHERE id = (
                 SELECT id FROM jobs WHERE claimed_by IS NULL ORDER BY id
                 LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&me],
        )
        .expect("claim a job")
        .map(|row| row.get(0));
    // The job is known only once claimed, so the claim is recorded after
    // the statement: later than it took effect, which cannot hide a
    // double claim (two recorded wins of one job are a violation at any
    // times) and cannot raise a false one (only wins are recorded).
    if let Some(id) = id {
        history::invoke("claim", &id).ok(&true);
    }
    id
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

/// Whether no job went to two workers (the `ClaimOnce` model over the
/// claims the workers recorded) and every worker got one.
pub fn check(outcomes: &Outcomes<Option<i32>>) -> Result<(), String> {
    outcomes.check(&ClaimOnce).map_err(|v| v.to_string())?;
    let without: Vec<usize> = outcomes
        .iter()
        .filter(|o| o.value() == Some(&None))
        .map(|o| o.index())
        .collect();
    if without.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{WORKERS} jobs for {WORKERS} workers, yet workers {without:?} got none"
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
            let outcomes = run
                .options()
                .call_concurrently(WORKERS, claim, pg.url().to_owned())
                .map_err(|e| e.to_string())?;
            outcomes.assert_all_returned();
            check(&outcomes)
        })
}
