//! The job-queue race on `services::Postgres`: a hunt exposes the naive
//! claim (two workers get the same job) and finds nothing against `FOR
//! UPDATE SKIP LOCKED`. The naive claim is the positive control: if the
//! hunt stopped exposing it, the negative result would mean nothing.

#[path = "common/pg_job_queue.rs"]
mod pg_job_queue;

use pg_job_queue::{claim_naive, claim_skip_locked, hunt, queue_fixture};

stampede::entry!();

#[test]
fn a_hunt_exposes_the_naive_claim() {
    let pg = queue_fixture();
    let failure = hunt(&pg, claim_naive, 50).expect_err("the naive claim should be exposed");
    assert!(
        failure.error().is_none()
            && failure.message().contains(
                "not linearizable under ClaimOnce: no order of these 2 operations of 2 children"
            ),
        "the hunt failed, but not on a job claimed twice: {failure}"
    );
}

#[test]
fn skip_locked_claims_hold_over_many_runs() {
    let pg = queue_fixture();
    let summary = hunt(&pg, claim_skip_locked, 20)
        .unwrap_or_else(|failure| panic!("a SKIP LOCKED claim failed: {failure}"));
    assert!(
        summary.runs() >= 5,
        "too few runs to mean anything: {summary}"
    );
}
