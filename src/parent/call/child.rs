//! One child of a concurrent call: its process and conversation, its
//! clock, and everything its reports said (rounds reached, steps, named
//! connections, history), until it is handed back as an outcome.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::outcome::{self, CheckpointTiming, Exit, Outcome, Status, Timings};
use crate::parent::capture::Stream;
use crate::parent::engine::Live;
use crate::parent::gate::{AtGate, Gate};
use crate::parent::launcher::Launcher;
use crate::parent::lock_waits::Backend;
use crate::parent::phase::{self, Clocked, Due, Kill, Phase};
use crate::parent::process::Life;
use crate::parent::{Job, Settings, exit_of, status_of};
use crate::protocol::{ChildResult, OpEvent, Report, StepKeys};

/// One live child and everything known about it.
pub(super) struct Child {
    pub(super) index: usize,
    pub(super) function: &'static str,
    pub(super) live: Live<Stream>,
    pub(super) clocked: Clocked,
    pub(super) ready_ns: Option<u64>,
    /// Highest checkpoint round reported (0 once ready).
    pub(super) reached: Option<u32>,
    /// When it reached each checkpoint round, in order.
    pub(super) arrivals: Vec<u64>,
    /// Whether it waits at the round it reached (`checkpoint()`, and the
    /// start barrier), not only says it passed there (`arrive()`).
    pub(super) waits: bool,
    /// `(started, passed each round, finished, result)`, from its report.
    pub(super) done: Option<(u64, Vec<u64>, u64, ChildResult)>,
    pub(super) notes: Vec<String>,
    /// Why it was killed at a checkpoint round that failed its policy.
    pub(super) failure: Option<String>,
    /// In a scheduled run: the step it waits at for the parent's word,
    /// when it was last let go from one, and whether it was taken as
    /// blocked since.
    pub(super) at_step: Option<String>,
    /// What the step it is held at says about the moves around it.
    pub(super) at_keys: StepKeys,
    /// The step it went on from and the choice that let it, until it
    /// reaches its next step.
    pub(super) moving: Option<(StepKeys, usize)>,
    /// Whether it named keys at a step (`stampede::step_with`).
    pub(super) named_keys: bool,
    pub(super) released_ns: Option<u64>,
    /// When it was first let go (from `start`): when it entered the
    /// function, for a child that never reported its own time.
    pub(super) entered_ns: Option<u64>,
    /// When it said a thread of it began to panic, since its last step.
    pub(super) panicked_ns: Option<u64>,
    /// The CPU time it had at the first look that found it awake since it
    /// was last let go (`schedule::blocked`).
    pub(super) spun_from: Option<u64>,
    pub(super) blocked: bool,
    /// When it was taken as blocked, or last judged still so.
    pub(super) blocked_ns: u64,
    /// The database connections it named (`stampede::postgres_backend`).
    pub(super) backends: Vec<Backend>,
    /// Its history's events, as they came (`stampede::history`).
    pub(super) operations: Vec<OpEvent>,
}

impl Child {
    pub(super) fn start(
        launcher: &Launcher,
        gate: &Gate,
        index: usize,
        job: &Job,
        settings: &Settings,
    ) -> Result<Child> {
        let opened = launcher.open(
            index,
            Some(gate.child_end()),
            job.request.clone(),
            settings.result_limit,
        )?;
        let through_init = launcher.through_init();
        let live = Live::new(opened, |fd| {
            Stream::new(fd, settings.capture_limit, through_init)
        });
        Ok(Child {
            index,
            function: job.function,
            clocked: Clocked::new(live.spawned_ns, settings.timeout),
            live,
            ready_ns: None,
            reached: None,
            arrivals: Vec::new(),
            waits: true,
            done: None,
            notes: Vec::new(),
            failure: None,
            at_step: None,
            at_keys: StepKeys::Anything,
            moving: None,
            named_keys: false,
            released_ns: None,
            entered_ns: None,
            panicked_ns: None,
            spun_from: None,
            blocked: false,
            blocked_ns: 0,
            backends: Vec::new(),
            operations: Vec::new(),
        })
    }

    /// A child timed out before reaching a round keeps the round shut: its
    /// siblings are not let go late, with no time left, but time out in turn
    /// with a note naming it. Any other end frees the gate of it.
    /// Whether it is asleep at the gate's round `round`, and so looks at
    /// the gate when the round is armed: it waits there (not an
    /// `arrive()`), and is neither killed nor ended.
    pub(super) fn waits_at(&self, round: u32) -> bool {
        self.waits && self.clocked.killed().is_none() && self.at_gate() == AtGate::Reached(round)
    }

    pub(super) fn at_gate(&self) -> AtGate {
        let waiting = self.reached.map_or(AtGate::Starting, AtGate::Reached);
        match self.clocked.killed() {
            Some(Kill::TimedOut) => waiting,
            Some(_) => AtGate::Gone,
            None if !self.live.process.is_running() || self.done.is_some() => AtGate::Gone,
            None => waiting,
        }
    }

    /// Takes one report; one out of order breaks the conversation. Returns
    /// a checkpoint arrival as `(round, at_ns)`.
    pub(super) fn take(
        &mut self,
        report: Report,
        call: u64,
        now: u64,
        scheduled: bool,
    ) -> Option<(u32, u64)> {
        if report.call() != call {
            let reason = format!("the child sent a report for another call: {report:?}");
            self.live.conversation.break_off(reason);
            return None;
        }
        match report {
            Report::Ready { at_ns, .. } if self.ready_ns.is_none() && self.done.is_none() => {
                self.ready_ns = Some(at_ns);
                self.reached = Some(0);
                self.clocked.enter(Phase::Ready);
                return Some((0, at_ns));
            }
            Report::Step { name, keys, .. }
                if scheduled && self.done.is_none() && self.at_step.is_none() =>
            {
                self.at_step = Some(name);
                self.named_keys |= matches!(keys, StepKeys::Only(_));
                self.at_keys = keys;
                self.blocked = false;
                self.panicked_ns = None;
                self.clocked.enter(Phase::Running);
            }
            Report::Panicking { .. } if scheduled && self.done.is_none() => {
                self.panicked_ns = Some(now);
            }
            Report::Backend { url, pid, .. } if scheduled && self.done.is_none() => {
                let backend = Backend { url, pid };
                if !self.backends.contains(&backend) {
                    self.backends.push(backend);
                }
            }
            Report::Checkpoint {
                round,
                at_ns,
                waits,
                ..
            } if self.done.is_none() && self.reached.is_some_and(|r| round == r + 1) => {
                self.reached = Some(round);
                self.waits = waits;
                self.arrivals.push(at_ns);
                self.clocked.enter(Phase::Running);
                return Some((round, at_ns));
            }
            Report::Operation { event, .. } if self.done.is_none() => {
                self.operations.push(event);
            }
            Report::Done {
                started_ns,
                passed_ns,
                finished_ns,
                result,
                ..
            } if self.done.is_none() => {
                self.done = Some((started_ns, passed_ns, finished_ns, result));
                self.clocked.enter(Phase::Reported { at_ns: now });
            }
            other => self
                .live
                .conversation
                .break_off(format!("the child sent an unexpected report: {other:?}")),
        }
        None
    }

    /// In a scheduled run: whether it runs (let go from a step, not at
    /// another, not ended, not taken as blocked).
    pub(super) fn runs(&self) -> bool {
        self.at_step.is_none() && !self.blocked && self.done.is_none() && self.alive()
    }

    /// Taken as blocked, and neither done nor gone since.
    pub(super) fn still_blocked(&self) -> bool {
        self.blocked && self.done.is_none() && self.alive()
    }

    /// Its process runs and was not killed.
    pub(super) fn alive(&self) -> bool {
        self.clocked.killed().is_none() && self.live.process.is_running()
    }

    /// Once it ended, its phase says so.
    pub(super) fn update(&mut self) {
        if let Some(at_ns) = self.live.ended_ns() {
            self.clocked.enter(Phase::Exited { at_ns });
        }
    }

    pub(super) fn is_finished(&self, now: u64) -> bool {
        matches!(self.clocked.phase, Phase::Exited { .. })
            && (self.live.drained() || self.clocked.due(now) == Due::StopDraining)
    }

    pub(super) fn finish(mut self, origin: u64, timeout: Duration) -> Outcome<Vec<u8>> {
        let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(origin));
        let (exit, ended_ns, max_rss) = match self.live.process.life() {
            Life::Ended {
                status,
                at_ns,
                max_rss,
            } => (exit_of(status), at_ns, max_rss),
            Life::ReapedElsewhere { at_ns } => {
                self.notes.push(
                    "its exit status was lost: another part of this process reaped it first \
                     (SIGCHLD set to SIG_IGN, or a wait() for any child in another thread)"
                        .into(),
                );
                (Exit::Unknown, at_ns, None)
            }
            Life::Running => unreachable!("finished children have ended"),
        };
        let held: Vec<&str> = [
            ("stdout", self.live.stdout.fd.is_some()),
            ("stderr", self.live.stderr.fd.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, open)| open.then_some(name))
        .collect();
        if !held.is_empty() {
            self.notes.push(format!(
                "its {} was still held open {:?} after it ended, by a process outside its \
                 process group (one that called setsid?); later output was not captured",
                held.join(" and "),
                phase::DRAIN_GRACE
            ));
        }
        let entered =
            self.ready_ns.is_some() || self.live.stdout.entered() || self.live.stderr.entered();
        if self.live.stdout.wrote_before_entry() || self.live.stderr.wrote_before_entry() {
            self.notes.push(
                "this child printed before `stampede::init()` ran: code before `init()` in `main` \
                 runs again in every child; make `init()` the first line"
                    .into(),
            );
        }
        // Its operations all arrived unless its channel broke, or it ended
        // of itself without its report (it closed its channel, or exited
        // early): then any that came after are lost.
        let history_complete = self.live.conversation.broken().is_none()
            && (self.done.is_some() || !matches!(exit, Exit::Code(_)));
        let (started, passed, finished, status) = match self.done.take() {
            Some((started, passed, finished, result)) => {
                let status = match result {
                    ChildResult::Returned(_) if self.clocked.killed().is_some() => {
                        let when = match self.clocked.killed() {
                            Some(Kill::HungAfterReport) => {
                                format!("within {:?} of sending the result", phase::EXIT_GRACE)
                            }
                            _ => format!("before the {timeout:?} timeout"),
                        };
                        Status::Failed {
                            reason: format!(
                                "it returned, but its process did not exit {when} (an exit \
                                 handler, a static's destructor, or a thread that blocks exit?) \
                                 and was killed"
                            ),
                        }
                    }
                    result => status_of(result),
                };
                (Some(since(started)), passed, Some(since(finished)), status)
            }
            None => {
                let pending = self.live.conversation.pending();
                let status = if let Some(reason) = self.live.conversation.broken() {
                    Status::Failed {
                        reason: reason.to_owned(),
                    }
                } else if let (Some(Kill::Checkpoint), Some(reason)) =
                    (self.clocked.killed(), self.failure.take())
                {
                    Status::Failed { reason }
                } else if self.clocked.killed() == Some(Kill::TimedOut) {
                    Status::TimedOut {
                        after: self.clocked.ran_before_kill().unwrap_or(timeout),
                        limit: timeout,
                    }
                } else if pending > 0 && exit == Exit::Code(0) {
                    Status::Failed {
                        reason: format!(
                            "its report was cut short ({pending} bytes of an incomplete frame)"
                        ),
                    }
                } else {
                    Status::Crashed(exit)
                };
                if !entered && matches!(status, Status::Crashed(_)) {
                    self.notes.push(
                        "it never reached stampede's entry: check that `stampede::entry!();` is \
                         in this test crate, or that `stampede::init()` is the first line of main"
                            .into(),
                    );
                }
                (self.entered_ns.map(since), Vec::new(), None, status)
            }
        };
        let checkpoints = self
            .arrivals
            .iter()
            .enumerate()
            .map(|(i, &reached)| CheckpointTiming {
                reached: since(reached),
                released: None,
                passed: passed.get(i).map(|&ns| since(ns)),
            })
            .collect();
        Outcome {
            index: self.index,
            pid: self.live.process.pid(),
            function: self.function,
            status,
            stdout: self.live.stdout.finish(),
            stderr: self.live.stderr.finish(),
            timings: Timings {
                origin: Timestamp::from_nanos(origin),
                spawned: since(self.live.spawned_ns),
                ready: self.ready_ns.map(since),
                started,
                checkpoint: passed.first().map(|&ns| since(ns)),
                checkpoints,
                finished,
                ended: since(ended_ns),
            },
            notes: self.notes,
            max_rss,
            worker: None,
            history: outcome::from_events(self.index, self.operations),
            history_complete,
        }
    }
}
