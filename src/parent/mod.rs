//! The parent's side: starts children, talks to them, captures their
//! output, releases their gate, enforces their deadlines and reaps them.
//! Front ends (a concurrent call, a batch, a load) describe the jobs; the
//! parent knows nothing of options or types.
//!
//! - `engine`: the one supervisor loop, generic over a role, and a live
//!   child's common parts; the only code that reads the clock for a rule;
//! - roles: `call` (a concurrent call: its gate, rounds and outcomes) and
//!   `pool` (long-lived workers: their queue, re-sends and end);
//! - pure policies: `phase` (every deadline, one `Kill` reason type),
//!   `release` (when a gate round goes);
//! - parts: `launcher`, `process` (a child whose `Drop` kills and reaps
//!   it, so an error or a panic leaves nothing running), `conversation`,
//!   `capture`, `gate`, `limits`.

mod call;
mod capture;
mod conversation;
mod engine;
mod gate;
mod launcher;
mod limits;
mod lock_waits;
mod phase;
mod pool;
mod process;
mod release;
mod schedule;

pub(crate) use pool::{CallRecord, Dispatch, Flow, PoolSettings, Sampling, SlotSummary, run_pool};
pub use release::Release;
#[cfg(test)]
pub(crate) use schedule::Chooser;
pub(crate) use schedule::{BLOCKED, Keys, Passage, Scheduling, commute};

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::outcome::{Exit, Outcome, Round, Status};
use crate::protocol::ChildResult;
use crate::sys;

pub(crate) use launcher::Launcher;
pub(crate) use process::ChildProcess;

/// What the supervisor needs to know about a run, from the front end.
pub(crate) struct Settings {
    pub timeout: Duration,
    pub barrier: bool,
    pub env: Vec<(OsString, OsString)>,
    pub max_concurrent: Option<usize>,
    pub capture_limit: usize,
    pub result_limit: usize,
    /// When checkpoint rounds (not the start barrier) are released.
    pub release: Release,
    /// Runs before each checkpoint round is released.
    pub on_checkpoint: Option<Trigger>,
    /// A scheduled run: every child is held at its steps, one goes at a
    /// time, as this says.
    pub scheduling: Option<Scheduling>,
}

/// A callback the parent runs before it releases a checkpoint round: `Err`
/// is a failure's message (a panic is caught too).
pub(crate) type Trigger = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// What a run gives back: each child's outcome (values still encoded) and
/// what happened at each round of the gate.
pub(crate) struct Run {
    pub outcomes: Vec<Outcome<Vec<u8>>>,
    pub rounds: Vec<Round>,
    /// A scheduled run's passages, in order: `(child, step)`.
    pub passages: Option<Vec<(usize, String)>>,
    /// For each choice, the children that were held then (in index
    /// order): the choices there were.
    pub held: Vec<Vec<usize>>,
    /// For each choice, what the move it let go touched (`None`:
    /// anything, or not known).
    pub moves: Vec<schedule::Keys>,
}

/// One child to run: the function's name and its framed request (shared by
/// every child that runs the same call).
#[derive(Clone)]
pub(crate) struct Job {
    pub function: &'static str,
    pub request: Arc<Vec<u8>>,
}

/// Runs `count` children, child `i` running `jobs[i % jobs.len()]`, and
/// returns their outcomes in order; returned values are still encoded.
pub(crate) fn run(settings: &Settings, jobs: &[Job], count: usize, call: u64) -> Result<Run> {
    call::run(settings, jobs, count, call)
}

/// What a child's reported result says, as a status (values still encoded).
pub(super) fn status_of(result: ChildResult) -> Status<Vec<u8>> {
    match result {
        ChildResult::Returned(bytes) => Status::Returned(bytes),
        ChildResult::Panicked { message, location } => Status::Panicked { message, location },
        ChildResult::Failed(reason) => Status::Failed { reason },
    }
}

pub(super) fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(number)) => Exit::Signal {
            number,
            name: sys::signal_name(number),
        },
        (None, None) => Exit::Unknown,
    }
}
