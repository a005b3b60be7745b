//! The concurrent call as a role of the engine: `count` children, at most
//! `limit` at once, each running one job; a gate that holds them at the
//! start barrier and at each checkpoint round until the release policy
//! lets the round go (running the trigger first); a deadline per child
//! (see `phase`); an outcome per child, in order.

use std::sync::Arc;
use std::time::Duration;

use super::capture::Stream;
use super::engine::{self, Live, Next, Role};
use super::gate::{AtGate, Gate};
use super::launcher::Launcher;
use super::lock_waits::LockWaits;
use super::phase::{Due, Kill};
use super::release::{self, Release, Step};
use super::schedule::{self, Chooser, Keys};
use super::{Job, Run, Settings, limits};
use crate::error::{Error, Result};
use crate::outcome::{Outcome, Round, children_list};
use crate::panic;
use crate::protocol::{self, Order, Report};
use crate::sys;

mod child;
mod steps;

use child::Child;
use steps::{diverged, ended_note, step_note};

/// Runs `count` children, child `i` running `jobs[i % jobs.len()]`, and
/// returns their outcomes in order; returned values are still encoded.
pub(super) fn run(settings: &Settings, jobs: &[Job], count: usize, call: u64) -> Result<Run> {
    if count == 0 || jobs.is_empty() {
        // Still refuse a binary without a door, as for any other count.
        crate::entry::entry_args().ok_or(Error::MissingEntry)?;
        return Ok(Run {
            outcomes: Vec::new(),
            rounds: Vec::new(),
            passages: None,
            held: Vec::new(),
            moves: Vec::new(),
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
    // A scheduled run's children wait at their steps, not at the gate.
    let barrier = settings.barrier && settings.scheduling.is_none();
    let gate = Gate::new(barrier).map_err(|source| Error::Io {
        context: "creating the start barrier",
        source,
    })?;
    let mut run = CallRun {
        settings,
        jobs,
        count,
        call,
        limit,
        launcher,
        gate,
        origin: sys::monotonic_ns(),
        live: Vec::new(),
        held: Vec::new(),
        rounds: Vec::new(),
        done,
        next: 0,
        chooser: settings.scheduling.clone().map(Chooser::new),
        passages: Vec::new(),
        choices: Vec::new(),
        moves: Vec::new(),
        lock_waits: LockWaits::default(),
        changed_ns: 0,
        go: Arc::new(
            protocol::frame(&Order::Go).map_err(|message| Error::Encode {
                function: "a scheduled child's word to go on",
                message,
            })?,
        ),
        one_cpu: None,
    };
    engine::run(&mut run, "waiting for children")?;
    if let Some(left) = run
        .chooser
        .as_ref()
        .and_then(|c| c.left_over(run.passages.len()))
    {
        return Err(diverged(left));
    }
    let CallRun {
        gate,
        origin,
        done,
        rounds,
        chooser,
        passages,
        choices,
        moves,
        ..
    } = run;
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
    Ok(Run {
        outcomes,
        rounds,
        passages: chooser.map(|_| passages),
        held: choices,
        moves,
    })
}

/// A concurrent call in progress.
struct CallRun<'a> {
    settings: &'a Settings,
    jobs: &'a [Job],
    count: usize,
    call: u64,
    /// How many children at once.
    limit: usize,
    launcher: Launcher,
    gate: Gate,
    /// When the call began: outcomes' times count from here.
    origin: u64,
    live: Vec<Child>,
    /// Children timed out before a round, gone from `live`: they keep it shut.
    held: Vec<(usize, AtGate)>,
    rounds: Vec<Round>,
    done: Vec<Option<Outcome<Vec<u8>>>>,
    /// The next child to start.
    next: usize,
    /// A scheduled run's policy, the passages so far, and the frame that
    /// lets a held child go on.
    chooser: Option<Chooser>,
    passages: Vec<(usize, String)>,
    choices: Vec<Vec<usize>>,
    /// For each choice, what the move it let go touched (known once the
    /// child reached its next step; `None`: anything).
    moves: Vec<Keys>,
    /// The database connections children named, asked who waits on whom.
    lock_waits: LockWaits,
    /// When a child last reached a step or ended: what may free a child
    /// taken as blocked, and when another child could first go instead of
    /// one that runs.
    changed_ns: u64,
    go: Arc<Vec<u8>>,
    /// A scheduled run's CPU, taken at the first `Go` (`None` until then;
    /// `Some(None)` where it could not be): see `sys::OneCpu`.
    one_cpu: Option<Option<sys::OneCpu>>,
}

impl Role for CallRun<'_> {
    type Output = Stream;

    fn prepare(&mut self, now: u64) -> Result<Next> {
        // Start children up to the limit.
        while self.live.len() < self.limit && self.next < self.count {
            let job = &self.jobs[self.next % self.jobs.len()];
            let child = Child::start(&self.launcher, &self.gate, self.next, job, self.settings)?;
            self.live.push(child);
            self.next += 1;
        }
        // Release what the policy allows, or fail a round past its deadline.
        let gate_wake = self.release_rounds(now)?;
        // Hand back the children that are done.
        let mut i = 0;
        while i < self.live.len() {
            if self.live[i].is_finished(now) {
                let mut child = self.live.swap_remove(i);
                if self.chooser.is_some()
                    && child.done.is_none()
                    && child.clocked.killed().is_none()
                    && child.live.conversation.broken().is_none()
                {
                    let note = ended_note(&self.passages, &child);
                    child.notes.push(note);
                }
                if child.clocked.killed() == Some(Kill::TimedOut) {
                    self.held.push((child.index, child.at_gate()));
                }
                let index = child.index;
                self.done[index] = Some(child.finish(self.origin, self.settings.timeout));
                self.changed_ns = now;
            } else {
                i += 1;
            }
        }
        let schedule_wake = self.let_one_go(now)?;
        if self.live.is_empty() {
            return Ok(if self.next == self.count {
                Next::Done
            } else {
                Next::Wait(now)
            });
        }
        let children = self.live.iter().map(|c| c.clocked.next_wake());
        let first = gate_wake
            .unwrap_or(u64::MAX)
            .min(schedule_wake.unwrap_or(u64::MAX));
        Ok(Next::Wait(children.fold(first, u64::min)))
    }

    fn positions(&self) -> usize {
        self.live.len()
    }

    fn live(&mut self, at: usize) -> Option<&mut Live<Stream>> {
        self.live.get_mut(at).map(|c| &mut c.live)
    }

    fn take(&mut self, at: usize, report: Report, now: u64) {
        let scheduled = self.chooser.is_some();
        let was_held = self.live[at].at_step.is_some();
        if let Some((round, at_ns)) = self.live[at].take(report, self.call, now, scheduled) {
            self.gate.arrived(round, at_ns);
        }
        if !was_held && self.live[at].at_step.is_some() {
            self.changed_ns = now;
            let child = &mut self.live[at];
            if let Some((from, choice)) = child.moving.take() {
                self.moves[choice] =
                    schedule::move_keys(&from, Some(&child.at_keys), child.named_keys);
            }
        }
    }

    /// A child held at a step waits for the parent's word.
    fn quiet(&self, at: usize) -> bool {
        self.live.get(at).is_some_and(|c| c.at_step.is_some())
    }

    /// Kills what is due: a child past its deadline, one whose channel
    /// broke, one started late that reached a round that failed.
    fn after(&mut self, now: u64) {
        for child in &mut self.live {
            child.update();
        }
        let released = self.gate.released();
        let failed = self
            .gate
            .failed()
            .map(|(round, why)| (round, why.to_owned()));
        let kills: Vec<(usize, Kill)> = self
            .live
            .iter()
            .enumerate()
            .filter_map(|(slot, child)| match child.clocked.due(now) {
                Due::Kill(why) => Some((slot, why)),
                _ if child.live.conversation.broken().is_some()
                    && child.clocked.killed().is_none()
                    && child.live.process.is_running() =>
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
        let scheduled = self.chooser.is_some();
        let notes: Vec<Option<String>> = kills
            .iter()
            .map(|(slot, why)| match why {
                Kill::TimedOut if scheduled => Some(step_note(&self.passages, &self.live[*slot])),
                Kill::TimedOut => waiting_note(&self.live, &self.held, *slot, released),
                _ => None,
            })
            .collect();
        for ((slot, why), note) in kills.into_iter().zip(notes) {
            let child = &mut self.live[slot];
            child.notes.extend(note);
            if why == Kill::Checkpoint {
                child.failure = failed.as_ref().map(|(_, reason)| reason.clone());
            }
            child.clocked.kill(why, now);
            child.live.process.kill();
        }
    }
}

impl CallRun<'_> {
    /// Releases every round the policy allows, running the trigger before
    /// each checkpoint round, or fails the next round when its deadline
    /// passed. Returns when time next matters to the gate.
    fn release_rounds(&mut self, mut now: u64) -> Result<Option<u64>> {
        let CallRun {
            gate,
            settings,
            count,
            origin,
            live,
            held,
            done,
            rounds,
            ..
        } = self;
        let (settings, count, origin) = (*settings, *count, *origin);
        let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(origin));
        while gate.enabled() && gate.failed().is_none() {
            let round = gate.released();
            let policy = if round == 0 {
                Release::all()
            } else {
                settings.release
            };
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
                    // The trigger first, then the arming: children look at
                    // the gate only for the release itself, which follows
                    // in this same turn (the step that decided it stands).
                    let mut record = Round {
                        round,
                        ..Round::default()
                    };
                    if let (true, Some(trigger)) = (round >= 1, &settings.on_checkpoint) {
                        let began = sys::monotonic_ns();
                        let result = panic::catch(true, || trigger());
                        let ended = sys::monotonic_ns();
                        record.trigger = Some(Duration::from_nanos(ended - began));
                        record.trigger_failure = match result {
                            Ok(Ok(())) => None,
                            Ok(Err(message)) => Some(format!("it returned an error: {message}")),
                            Err(caught) => Some(match caught.location {
                                Some(at) => format!("it panicked at {at}: {}", caught.message),
                                None => format!("it panicked: {}", caught.message),
                            }),
                        };
                        // The trigger ran meanwhile: time moved on.
                        now = now.max(ended);
                    }
                    // The children asleep at the round: not those that only
                    // pass it (`arrive()`), nor those killed there.
                    let expected = live.iter().filter(|c| c.waits_at(round)).count();
                    let expected = u32::try_from(expected).unwrap_or(u32::MAX);
                    gate.arm(now, expected).map_err(|source| Error::Io {
                        context: "arming the start barrier",
                        source,
                    })?;
                    // The children still waking look at the gate, each
                    // between yields: so does the parent, here, without a
                    // turn of the engine (whose poll of every child's
                    // descriptors slowed the arming: 256 children took
                    // 6.8 ms to look that way, 4.9 ms this way), for at
                    // most `arm_wait`, the rule deciding at each look.
                    while let Some((armed_ns, looked, expected)) = gate.arming()
                        && !release::armed_release(armed_ns, now, looked, expected)
                    {
                        std::thread::yield_now();
                        now = sys::monotonic_ns();
                    }
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
                    let at_ns = gate.release().map_err(|source| Error::Io {
                        context: "releasing the start barrier",
                        source,
                    })?;
                    record.released = Some(since(at_ns));
                    rounds.push(record);
                    // The trigger ran meanwhile: time moved on to the release.
                    now = now.max(at_ns);
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
                        None => {
                            format!("did not reach checkpoint {round}, which was never released")
                        }
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
                            child.live.process.kill();
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
}

fn ended_before(round: u32) -> String {
    format!("it ended before reaching checkpoint {round}, which was then never released")
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
