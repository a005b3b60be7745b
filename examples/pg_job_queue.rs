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

#[path = "../tests/common/pg_job_queue.rs"]
mod pg_job_queue;

use pg_job_queue::{claim_naive, claim_skip_locked, hunt, queue_fixture};

fn main() {
    stampede::init();
    let pg = queue_fixture();

    let naive = hunt(&pg, claim_naive, 50);
    match &naive {
        Err(failure) => println!("naive claim: exposed\n{failure}"),
        Ok(summary) => println!("naive claim: not exposed ({summary})"),
    }

    let correct = hunt(&pg, claim_skip_locked, 20);
    match &correct {
        Ok(summary) => println!("FOR UPDATE SKIP LOCKED: held ({summary})"),
        Err(failure) => println!("FOR UPDATE SKIP LOCKED: failed\n{failure}"),
    }
    assert!(naive.is_err(), "the naive claim should have been exposed");
    assert!(correct.is_ok(), "the SKIP LOCKED claim should hold");
}
