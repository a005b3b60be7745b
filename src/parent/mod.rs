//! The parent's side: one supervisor that starts children, talks to them,
//! captures their output, releases their gate, enforces their deadlines and
//! reaps them. Front ends (a concurrent call, a batch) describe the jobs;
//! the supervisor knows nothing of options or types.
//!
//! One thread does it all with `poll`. The loop, per turn:
//!
//! 1. start children up to the concurrency limit;
//! 2. release every gate round that the release policy allows, running the
//!    trigger before each checkpoint round; or fail a round whose deadline
//!    passed;
//! 3. hand back the children that ended and whose output is drained;
//! 4. poll every channel, output pipe and exit watch, until the earliest
//!    deadline;
//! 5. serve what is ready, look at exits, and act on what time requires
//!    (kill a child past its deadline, stop draining one that ended).
//!
//! Each child is in one [`Phase`]; every deadline rule is in `phase` and
//! takes `now`. Every live child is a [`ChildProcess`], whose `Drop` kills
//! and reaps it, so an error or a panic here leaves nothing running.

mod capture;
mod conversation;
mod engine;
mod gate;
mod launcher;
mod limits;
mod phase;
mod pool;
mod process;
mod release;

pub(crate) use pool::{CallRecord, Dispatch, Flow, PoolSettings, Sampling, SlotSummary, run_pool};
pub use release::Release;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::outcome::{CheckpointTiming, Exit, Outcome, Round, Status, Timings, children_list};
use crate::protocol::{ChildResult, Report};
use crate::{panic, sys};
use capture::Stream;
use conversation::Conversation;
use gate::{AtGate, Gate};
use phase::{Clocked, Due, Kill, Phase};
use process::Life;
use release::Step;

pub(crate) use launcher::Launcher;
pub(crate) use process::ChildProcess;

/// How often to look for ended children where the kernel has no pidfd.
const EXIT_POLL: Duration = Duration::from_millis(5);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

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
}

/// A callback the parent runs before it releases a checkpoint round: `Err`
/// is a failure's message (a panic is caught too).
pub(crate) type Trigger = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// What a run gives back: each child's outcome (values still encoded) and
/// what happened at each round of the gate.
pub(crate) struct Run {
    pub outcomes: Vec<Outcome<Vec<u8>>>,
    pub rounds: Vec<Round>,
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
    if count == 0 || jobs.is_empty() {
        // Still refuse a binary without a door, as for any other count.
        crate::entry::entry_args().ok_or(Error::MissingEntry)?;
        return Ok(Run {
            outcomes: Vec::new(),
            rounds: Vec::new(),
        });
    }
    let limit = settings.max_concurrent.unwrap_or(count).clamp(1, count);
    let nofile = limits::preflight(limit)?;
    let launcher = Launcher::new(&settings.env, nofile.original())?;
    let mut done: Vec<Option<Outcome<Vec<u8>>>> = Vec::new();
    done.try_reserve_exact(count).map_err(|_| {
        Error::InvalidOptions(format!(
            "{count} children are more than this process can keep the outcomes of"
        ))
    })?;
    done.resize_with(count, || None);
    let io = |context| move |source| Error::Io { context, source };
    let mut gate = Gate::new(settings.barrier).map_err(io("creating the start barrier"))?;
    let origin = sys::monotonic_ns();
    let mut live: Vec<Child> = Vec::new();
    // Children timed out before a round, gone from `live`: they keep it shut.
    let mut held: Vec<(usize, AtGate)> = Vec::new();
    let mut rounds: Vec<Round> = Vec::new();
    let mut arrivals: Vec<(u32, u64)> = Vec::new();
    let mut next = 0;
    let mut buf = vec![0u8; 64 * 1024];

    loop {
        // 1. Start children up to the limit.
        while live.len() < limit && next < count {
            let job = &jobs[next % jobs.len()];
            live.push(Child::start(&launcher, &gate, next, job, settings, call)?);
            next += 1;
        }
        // 2. Release what the policy allows, or fail a round past its deadline.
        let gate_wake = release_rounds(
            &mut gate,
            settings,
            count,
            origin,
            &mut live,
            &held,
            &mut done,
            &mut rounds,
        )?;
        // 3. Hand back the children that are done.
        let now = sys::monotonic_ns();
        let mut i = 0;
        while i < live.len() {
            if live[i].is_finished(now) {
                let child = live.swap_remove(i);
                if child.clocked.killed() == Some(Kill::TimedOut) {
                    held.push((child.index, child.at_gate()));
                }
                let index = child.index;
                done[index] = Some(child.finish(origin, settings.timeout));
            } else {
                i += 1;
            }
        }
        if live.is_empty() {
            if next == count {
                break;
            }
            continue;
        }
        // 4. Poll.
        let mut fds = Vec::with_capacity(live.len() * 4);
        let mut owners = Vec::with_capacity(live.len() * 4);
        let mut wake_ns = gate_wake.unwrap_or(u64::MAX);
        for (slot, child) in live.iter().enumerate() {
            child.poll_fds(slot, &mut fds, &mut owners);
            wake_ns = wake_ns.min(child.clocked.next_wake());
            if child.process.is_running() && child.process.exit_watch().is_none() {
                wake_ns = wake_ns.min(now + nanos(EXIT_POLL));
            }
        }
        sys::poll(&mut fds, poll_timeout_ms(now, wake_ns)).map_err(io("waiting for children"))?;
        // 5. Serve, look at exits, act on time.
        for (pfd, (slot, which)) in fds.iter().zip(&owners) {
            if pfd.revents != 0 {
                live[*slot].service(*which, &mut buf, call, &mut arrivals);
            }
        }
        for (round, at_ns) in arrivals.drain(..) {
            gate.arrived(round, at_ns);
        }
        let now = sys::monotonic_ns();
        for child in &mut live {
            child.update(now);
        }
        let released = gate.released();
        let failed = gate.failed().map(|(round, why)| (round, why.to_owned()));
        let kills: Vec<(usize, Kill)> = live
            .iter()
            .enumerate()
            .filter_map(|(slot, child)| match child.clocked.due(now) {
                Due::Kill(why) => Some((slot, why)),
                _ if child.conversation.broken().is_some()
                    && child.clocked.killed().is_none()
                    && child.process.is_running() =>
                {
                    Some((slot, Kill::ChannelBroken))
                }
                // A child started late that reached a round that failed.
                _ if failed.as_ref().is_some_and(
                    |(round, _)| matches!(child.at_gate(), AtGate::Reached(r) if r >= *round),
                ) && child.clocked.killed().is_none() =>
                {
                    Some((slot, Kill::Checkpoint))
                }
                _ => None,
            })
            .collect();
        let notes: Vec<Option<String>> = kills
            .iter()
            .map(|(slot, why)| {
                (*why == Kill::TimedOut)
                    .then(|| waiting_note(&live, &held, *slot, released))
                    .flatten()
            })
            .collect();
        for ((slot, why), note) in kills.into_iter().zip(notes) {
            let child = &mut live[slot];
            child.notes.extend(note);
            if why == Kill::Checkpoint {
                child.failure = failed.as_ref().map(|(_, reason)| reason.clone());
            }
            child.clocked.kill(why, now);
            child.process.kill();
        }
    }
    let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(origin));
    let outcomes: Vec<Outcome<Vec<u8>>> = done
        .into_iter()
        .map(|o| {
            let mut outcome = o.expect("every child finished");
            // A child that never reported entered the function, as far as
            // the parent knows, when the start barrier let it go.
            let timings = &mut outcome.timings;
            if let (None, Some(ready)) = (timings.started, timings.ready) {
                timings.started = match gate.released_at(0) {
                    Some(at) => Some(since(at).max(ready)),
                    None if !settings.barrier => Some(ready),
                    None => None,
                };
            }
            for (r, timing) in outcome.timings.checkpoints.iter_mut().enumerate() {
                timing.released = gate
                    .released_at(r as u32 + 1)
                    .map(|at| since(at).max(timing.reached));
            }
            outcome
        })
        .collect();
    Ok(Run { outcomes, rounds })
}

/// Step 2 of the loop: releases every round the policy allows, running the
/// trigger before each checkpoint round, or fails the next round when its
/// deadline passed. Returns when time next matters to the gate.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's own state, lent for one step"
)]
fn release_rounds(
    gate: &mut Gate,
    settings: &Settings,
    count: usize,
    origin: u64,
    live: &mut [Child],
    held: &[(usize, AtGate)],
    done: &mut [Option<Outcome<Vec<u8>>>],
    rounds: &mut Vec<Round>,
) -> Result<Option<u64>> {
    let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(origin));
    while gate.enabled() && gate.failed().is_none() {
        let round = gate.released();
        let policy = if round == 0 {
            Release::all()
        } else {
            settings.release
        };
        let now = sys::monotonic_ns();
        let at_gate = live
            .iter()
            .map(|c| (c.index, c.at_gate()))
            .chain(held.iter().copied());
        let step = release::step(
            &policy,
            round,
            at_gate.clone().map(|(_, at)| at),
            count,
            gate.first_arrival(round),
            now,
        );
        // Children that could still come to the round but had not.
        let missing = || -> Vec<usize> {
            let mut m: Vec<usize> = at_gate
                .clone()
                .filter_map(|(index, at)| match at {
                    AtGate::Starting => Some(index),
                    AtGate::Reached(r) if r < round => Some(index),
                    _ => None,
                })
                .collect();
            m.sort_unstable();
            m
        };
        match step {
            Step::Wait { until } => return Ok(until),
            Step::Release | Step::ReleaseWithout => {
                let mut record = Round {
                    round,
                    ..Round::default()
                };
                if step == Step::ReleaseWithout {
                    let without = missing();
                    let deadline = policy.deadline().unwrap_or_default();
                    for child in live.iter_mut().filter(|c| without.contains(&c.index)) {
                        child.notes.push(format!(
                            "checkpoint {round} was released at its deadline ({deadline:?}) \
                             before it reached it (`or_release`)"
                        ));
                    }
                    record.released_without = Some((deadline, without));
                }
                if let (true, Some(trigger)) = (round >= 1, &settings.on_checkpoint) {
                    let began = sys::monotonic_ns();
                    let result = panic::catch(true, || trigger());
                    record.trigger = Some(Duration::from_nanos(sys::monotonic_ns() - began));
                    record.trigger_failure = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(message)) => Some(format!("it returned an error: {message}")),
                        Err(caught) => Some(match caught.location {
                            Some(at) => format!("it panicked at {at}: {}", caught.message),
                            None => format!("it panicked: {}", caught.message),
                        }),
                    };
                }
                let at_ns = gate.release().map_err(|source| Error::Io {
                    context: "releasing the start barrier",
                    source,
                })?;
                record.released = Some(since(at_ns));
                rounds.push(record);
            }
            Step::Fail(short) => {
                let blockers = missing();
                let within = short
                    .deadline
                    .map(|d| format!(" within {d:?}"))
                    .unwrap_or_default();
                let mut reason = format!("checkpoint {round} was not released{within}: ");
                if let Some(needed) = short.needed {
                    reason += &format!(
                        "{} of {count} children reached it, {needed} were needed",
                        short.reached
                    );
                    if !blockers.is_empty() {
                        reason += "; ";
                    }
                }
                if !blockers.is_empty() {
                    reason += &format!("{} never reached it", children_list(&blockers));
                } else if short.needed.is_none() {
                    reason += "no other child could reach it any more";
                }
                let missed = match short.deadline {
                    Some(d) => format!(
                        "did not reach checkpoint {round} within {d:?} of the first child's \
                         arrival there, so the round was never released"
                    ),
                    None => format!("did not reach checkpoint {round}, which was never released"),
                };
                for child in live.iter_mut() {
                    match child.at_gate() {
                        AtGate::Gone => {
                            if child.reached.is_none_or(|r| r < round) {
                                child.notes.push(ended_before(round));
                            }
                            continue;
                        }
                        AtGate::Reached(r) if r >= round => {
                            child.failure = Some(reason.clone());
                        }
                        _ => child.failure = Some(missed.clone()),
                    }
                    if child.clocked.killed().is_none() {
                        child.clocked.kill(Kill::Checkpoint, now);
                        child.process.kill();
                    }
                }
                for outcome in done.iter_mut().flatten() {
                    if outcome.timings.checkpoints.len() < round as usize {
                        outcome.notes.push(ended_before(round));
                    }
                }
                rounds.push(Round {
                    round,
                    failed: Some(reason.clone()),
                    ..Round::default()
                });
                gate.fail(reason);
            }
        }
    }
    Ok(None)
}

fn ended_before(round: u32) -> String {
    format!("it ended before reaching checkpoint {round}, which was then never released")
}

/// `poll`'s timeout for waking at `wake_ns` (`u64::MAX`: no limit, -1),
/// rounded up to whole milliseconds so that the wake is never early.
pub(super) fn poll_timeout_ms(now_ns: u64, wake_ns: u64) -> i32 {
    if wake_ns == u64::MAX {
        return -1;
    }
    wake_ns
        .saturating_sub(now_ns)
        .div_ceil(1_000_000)
        .min(i32::MAX as u64) as i32
}

/// For a child timed out while waiting at the gate: which children it was
/// waiting for.
fn waiting_note(
    live: &[Child],
    held: &[(usize, AtGate)],
    slot: usize,
    released: u32,
) -> Option<String> {
    let AtGate::Reached(round) = live[slot].at_gate() else {
        return None;
    };
    if round < released {
        return None;
    }
    let mut others: Vec<(usize, AtGate)> = live.iter().map(|c| (c.index, c.at_gate())).collect();
    others.extend_from_slice(held);
    others.sort_by_key(|(index, _)| *index);
    let blockers: Vec<String> = others
        .into_iter()
        .filter_map(|(index, at)| match at {
            AtGate::Starting => Some(format!("child {index} (still starting)")),
            AtGate::Reached(r) if r < round => Some(format!(
                "child {index} ({})",
                if r == 0 && released == 0 {
                    "ready".to_owned()
                } else {
                    format!("running, at round {r}")
                }
            )),
            _ => None,
        })
        .collect();
    let place = if round == 0 {
        "the start barrier".to_owned()
    } else {
        format!("checkpoint {round}")
    };
    Some(format!(
        "it was never released from {place}, which was still waiting for {}",
        if blockers.is_empty() {
            "its turn".to_owned()
        } else {
            blockers.join(", ")
        }
    ))
}

/// What a polled descriptor of a child is.
#[derive(Clone, Copy)]
enum Which {
    Channel,
    Stdout,
    Stderr,
    Exit,
}

/// The descriptors of child `slot` to poll (its channel, its open output
/// streams, its exit watch while it runs), each recorded in `owners`.
fn poll_interests(
    slot: usize,
    conversation: &Conversation,
    outputs: [Option<&std::os::fd::OwnedFd>; 2],
    process: &process::ChildProcess,
    fds: &mut Vec<sys::PollFd>,
    owners: &mut Vec<(usize, Which)>,
) {
    if let Some((fd, events)) = conversation.poll_interest() {
        fds.push(sys::poll_fd(fd, events));
        owners.push((slot, Which::Channel));
    }
    for (fd, which) in outputs.into_iter().zip([Which::Stdout, Which::Stderr]) {
        if let Some(fd) = fd {
            fds.push(sys::poll_fd(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                sys::POLLIN,
            ));
            owners.push((slot, which));
        }
    }
    if let (Some(watch), true) = (process.exit_watch(), process.is_running()) {
        fds.push(sys::poll_fd(watch, sys::POLLIN));
        owners.push((slot, Which::Exit));
    }
}

/// One live child and everything known about it.
struct Child {
    index: usize,
    function: &'static str,
    process: ChildProcess,
    conversation: Conversation,
    stdout: Stream,
    stderr: Stream,
    clocked: Clocked,
    spawned_ns: u64,
    ready_ns: Option<u64>,
    /// Highest checkpoint round reported (0 once ready).
    reached: Option<u32>,
    /// When it reached each checkpoint round, in order.
    arrivals: Vec<u64>,
    /// `(started, passed each round, finished, result)`, from its report.
    done: Option<(u64, Vec<u64>, u64, ChildResult)>,
    notes: Vec<String>,
    /// Why it was killed at a checkpoint round that failed its policy.
    failure: Option<String>,
    /// Its exit watch turned readable since the last look.
    exit_seen: bool,
}

impl Child {
    fn start(
        launcher: &Launcher,
        gate: &Gate,
        index: usize,
        job: &Job,
        settings: &Settings,
        _call: u64,
    ) -> Result<Child> {
        let opened = launcher.open(
            index,
            Some(gate.child_end()),
            job.request.clone(),
            settings.result_limit,
        )?;
        let spawned_ns = opened.spawned_ns;
        Ok(Child {
            index,
            function: job.function,
            process: opened.process,
            conversation: opened.conversation,
            stdout: Stream::new(
                opened.stdout,
                settings.capture_limit,
                launcher.through_init(),
            ),
            stderr: Stream::new(
                opened.stderr,
                settings.capture_limit,
                launcher.through_init(),
            ),
            clocked: Clocked::new(spawned_ns, settings.timeout),
            spawned_ns,
            ready_ns: None,
            reached: None,
            arrivals: Vec::new(),
            done: None,
            notes: Vec::new(),
            failure: None,
            exit_seen: false,
        })
    }

    /// A child timed out before reaching a round keeps the round shut: its
    /// siblings are not let go late, with no time left, but time out in turn
    /// with a note naming it. Any other end frees the gate of it.
    fn at_gate(&self) -> AtGate {
        let waiting = self.reached.map_or(AtGate::Starting, AtGate::Reached);
        match self.clocked.killed() {
            Some(Kill::TimedOut) => waiting,
            Some(_) => AtGate::Gone,
            None if !self.process.is_running() || self.done.is_some() => AtGate::Gone,
            None => waiting,
        }
    }

    fn poll_fds(&self, slot: usize, fds: &mut Vec<sys::PollFd>, owners: &mut Vec<(usize, Which)>) {
        let outputs = [self.stdout.fd.as_ref(), self.stderr.fd.as_ref()];
        poll_interests(
            slot,
            &self.conversation,
            outputs,
            &self.process,
            fds,
            owners,
        );
    }

    /// Serves one ready descriptor; checkpoint arrivals go to `arrivals`
    /// as `(round, at_ns)`.
    fn service(&mut self, which: Which, buf: &mut [u8], call: u64, arrivals: &mut Vec<(u32, u64)>) {
        match which {
            Which::Channel => {
                for report in self.conversation.service(buf) {
                    if let Some(arrival) = self.take(report, call) {
                        arrivals.push(arrival);
                    }
                }
            }
            Which::Stdout => self.stdout.read(buf),
            Which::Stderr => self.stderr.read(buf),
            Which::Exit => self.exit_seen = true,
        }
    }

    /// Takes one report; one out of order breaks the conversation. Returns
    /// a checkpoint arrival as `(round, at_ns)`.
    fn take(&mut self, report: Report, call: u64) -> Option<(u32, u64)> {
        if report.call() != call {
            let reason = format!("the child sent a report for another call: {report:?}");
            self.conversation.break_off(reason);
            return None;
        }
        match report {
            Report::Ready { at_ns, .. } if self.ready_ns.is_none() && self.done.is_none() => {
                self.ready_ns = Some(at_ns);
                self.reached = Some(0);
                self.clocked.enter(Phase::Ready);
                return Some((0, at_ns));
            }
            Report::Checkpoint { round, at_ns, .. }
                if self.done.is_none() && self.reached.is_some_and(|r| round == r + 1) =>
            {
                self.reached = Some(round);
                self.arrivals.push(at_ns);
                self.clocked.enter(Phase::Running);
                return Some((round, at_ns));
            }
            Report::Done {
                started_ns,
                passed_ns,
                finished_ns,
                result,
                ..
            } if self.done.is_none() => {
                self.done = Some((started_ns, passed_ns, finished_ns, result));
                self.clocked.enter(Phase::Reported {
                    at_ns: sys::monotonic_ns(),
                });
            }
            other => self
                .conversation
                .break_off(format!("the child sent an unexpected report: {other:?}")),
        }
        None
    }

    /// Looks at the process when there is reason to (its exit watch fired,
    /// or it has none); once it ended, its phase says so.
    fn update(&mut self, now: u64) {
        let look = std::mem::take(&mut self.exit_seen) || self.process.exit_watch().is_none();
        if look && !self.process.update(now) {
            let at_ns = match self.process.life() {
                Life::Ended { at_ns, .. } | Life::ReapedElsewhere { at_ns } => at_ns,
                Life::Running => now,
            };
            self.clocked.enter(Phase::Exited { at_ns });
        }
    }

    fn drained(&self) -> bool {
        !self.conversation.is_open() && self.stdout.fd.is_none() && self.stderr.fd.is_none()
    }

    fn is_finished(&self, now: u64) -> bool {
        matches!(self.clocked.phase, Phase::Exited { .. })
            && (self.drained() || self.clocked.due(now) == Due::StopDraining)
    }

    fn finish(mut self, origin: u64, timeout: Duration) -> Outcome<Vec<u8>> {
        let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(origin));
        let (exit, ended_ns, max_rss) = match self.process.life() {
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
            ("stdout", self.stdout.fd.is_some()),
            ("stderr", self.stderr.fd.is_some()),
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
        let entered = self.ready_ns.is_some() || self.stdout.entered() || self.stderr.entered();
        if self.stdout.wrote_before_entry() || self.stderr.wrote_before_entry() {
            self.notes.push(
                "this child printed before `stampede::init()` ran: code before `init()` in `main` \
                 runs again in every child; make `init()` the first line"
                    .into(),
            );
        }
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
                let pending = self.conversation.pending();
                let status = if let Some(reason) = self.conversation.broken() {
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
                (None, Vec::new(), None, status)
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
            pid: self.process.pid(),
            function: self.function,
            status,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
            timings: Timings {
                origin: Timestamp::from_nanos(origin),
                spawned: since(self.spawned_ns),
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
        }
    }
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
