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
use super::lock_waits::{Backend, LockWaits, Wait};
use super::phase::{self, Clocked, Due, Kill, Phase};
use super::process::Life;
use super::release::{self, Release, Step};
use super::schedule::{self, BLOCKED, Block, Chooser, Diverged, Keys, Threads};
use super::{Job, Run, Settings, exit_of, limits, status_of};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::outcome::{
    self, CheckpointTiming, Exit, Outcome, Round, Status, Timings, children_list,
};
use crate::panic;
use crate::protocol::{self, ChildResult, OpEvent, Order, Report, StepKeys};
use crate::sys;

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
    /// In a scheduled run, when no child runs, lets the one the policy
    /// picks go on from its step: between two steps exactly one child
    /// runs. A child let go that has not reached its next step within
    /// [`schedule::BLOCK_WAIT`], with all its threads asleep, or that used
    /// [`schedule::SPIN_CPU`] awake, is taken as blocked (by a lock a held
    /// child keeps, say): the schedule records `<child>:!`
    /// and another goes on, so a lock held across a step never hangs the
    /// run, and a replay makes the same decision at the same place. A
    /// replay that meets another step than recorded ends the run. Returns
    /// when time next matters to this rule.
    fn let_one_go(&mut self, now: u64) -> Result<Option<u64>> {
        let Some(chooser) = &mut self.chooser else {
            return Ok(None);
        };
        if self.next < self.count {
            return Ok(None);
        }
        loop {
            let position = self.passages.len();
            let running = self.live.iter().position(Child::runs);
            let any_held = self.live.iter().any(|c| c.at_step.is_some());
            if let Some(expected) = chooser.expects_blocked(position) {
                // The recording took this child as blocked here.
                let search = chooser.follows_search();
                let ended = |c: &Child| c.done.is_some() || !c.alive();
                let live = self.live.iter().find(|c| c.index == expected);
                if live.map_or(self.done.get(expected).is_some_and(Option::is_some), ended) {
                    // It ended sooner than when recorded (a panic's
                    // backtrace, slow to write, was taken for a block
                    // then): the same order of steps; a later passage of
                    // it, if the recording has one, is a divergence there.
                    self.passages.push((expected, BLOCKED.to_owned()));
                    continue;
                }
                let Some(child) = self.live.iter_mut().find(|c| c.index == expected) else {
                    if search {
                        // Gone another way than its last run: the search
                        // leaves that path here.
                        chooser.leave_prefix(position);
                        continue;
                    }
                    return Err(diverged(chooser.blocked_diverged(position, None)));
                };
                if child.at_step.is_some() {
                    // It reached its next step sooner than when recorded
                    // (the recording took slow work for a block): held
                    // there, it goes on when the recording next lets it,
                    // the same order of steps.
                    self.passages.push((expected, BLOCKED.to_owned()));
                    continue;
                }
                let released = match child.released_ns {
                    Some(at) if child.runs() => at,
                    _ if search => {
                        chooser.leave_prefix(position);
                        continue;
                    }
                    _ => {
                        let seen = child.at_step.clone();
                        return Err(diverged(chooser.blocked_diverged(position, seen)));
                    }
                };
                // As recorded: the database, or the wait alone, decides.
                let index = child.index;
                let verdict = match block_verdict(
                    &mut self.live,
                    &mut self.lock_waits,
                    index,
                    released,
                    now,
                    || Threads::Asleep,
                ) {
                    Ok(verdict) => verdict,
                    Err(again) => return Ok(Some(again)),
                };
                take_as_blocked(
                    &mut self.live,
                    &mut self.passages,
                    index,
                    verdict,
                    released,
                    now,
                );
                continue;
            }
            if let Some(at) = running {
                let child = &mut self.live[at];
                // A child before its first step is starting, not blocked.
                let Some(released) = child.released_ns else {
                    return Ok(None);
                };
                if !any_held {
                    return Ok(None);
                }
                let (index, pid) = (child.index, child.live.process.pid());
                let since = released.max(self.changed_ns);
                let recorded = chooser.recorded_at(position);
                if recorded {
                    // The recording had it reach its next step before the
                    // passage here: it is waited for, a while. Blocked by
                    // a held child this time, a search leaves its last
                    // run's path, and judges it.
                    match chooser.follow_wait(position, since, now) {
                        Err(due) => return Ok(Some(due)),
                        Ok(true) => continue,
                        Ok(false) => {}
                    }
                }
                // The wait counts from when another child could go instead:
                // a child that ran alone for a while (the others ended, or
                // blocked) is not blocked for that.
                let verdict = match block_verdict(
                    &mut self.live,
                    &mut self.lock_waits,
                    index,
                    since,
                    now,
                    || threads(pid),
                ) {
                    Ok(verdict) => verdict,
                    Err(again) => return Ok(Some(again)),
                };
                if recorded {
                    // A replay's child blocked where its recording had it
                    // reach its step: the program went another way.
                    return Err(diverged(Diverged::short_of_step(position, index)));
                }
                take_as_blocked(
                    &mut self.live,
                    &mut self.passages,
                    index,
                    verdict,
                    released,
                    now,
                );
                continue;
            }
            // A child taken as blocked before the last change (another
            // reached a step, or ended and let its locks go) may have been
            // freed by it: it is judged again, by the same rule, before
            // the next choice, so that it never runs beside the child let
            // go next. Still blocked, it stays so silently: the schedule
            // records choices, and a replay judges it again the same way.
            // One taken as spinning keeps the CPU time it was judged from,
            // so awake it is still blocked at once: a busy wait and the
            // work after it look alike, and a second for every passage
            // would be a second of its CPU each time.
            let stale = |c: &Child| c.still_blocked() && c.blocked_ns < self.changed_ns;
            if let Some(at) = self.live.iter().position(stale) {
                let (index, pid) = (self.live[at].index, self.live[at].live.process.pid());
                let verdict = block_verdict(
                    &mut self.live,
                    &mut self.lock_waits,
                    index,
                    self.changed_ns,
                    now,
                    || threads(pid),
                );
                if let Err(again) = verdict {
                    return Ok(Some(again));
                }
                self.live[at].blocked_ns = now;
                continue;
            }
            // The recording lets a child go next that is still on its way
            // to that step (taken as blocked, it is slower now): it is
            // waited for, a while, rather than another child let go first.
            let on_its_way = chooser.expects_go(position).is_some_and(|expected| {
                self.live.iter().any(|c| {
                    c.index == expected && c.at_step.is_none() && c.done.is_none() && c.alive()
                })
            });
            if on_its_way {
                // Still not there, it lost its lock to another child and
                // cannot come while that one is held: a search goes
                // another way.
                if let Err(due) = chooser.follow_wait(position, self.changed_ns, now) {
                    return Ok(Some(due));
                }
            }
            let mut held: Vec<(usize, &str)> = self
                .live
                .iter()
                .filter_map(|c| Some((c.index, c.at_step.as_deref()?)))
                .collect();
            if held.is_empty() {
                return Ok(None);
            }
            held.sort_unstable();
            // A replay goes as recorded; a strategy leaves held the
            // children at a step a blocked child went on from.
            let blocked_from: Vec<&str> = if chooser.replays() {
                Vec::new()
            } else {
                self.live
                    .iter()
                    .filter(|c| c.still_blocked())
                    .map(|c| last_step(&self.passages, c.index))
                    .collect()
            };
            let held = schedule::eligible(&held, &blocked_from);
            let last_move = self.moves.last().and_then(|keys| keys.as_deref());
            let index = chooser
                .choose_with(position, &held, last_move)
                .map_err(diverged)?;
            let choices: Vec<usize> = held.iter().map(|&(c, _)| c).collect();
            let child = self
                .live
                .iter_mut()
                .find(|c| c.index == index)
                .expect("a held child was chosen");
            let step = child.at_step.take().expect("a held child was chosen");
            let from = std::mem::replace(&mut child.at_keys, StepKeys::Anything);
            // What the move touches is known when it reaches its next step;
            // going on from its end, it only exits.
            let choice = self.choices.len();
            self.moves.push(match from {
                StepKeys::End => schedule::move_keys(&from, None, child.named_keys),
                _ => None,
            });
            let ends = matches!(from, StepKeys::End);
            child.moving = Some((from, choice));
            // Kept on the parent's CPU from its first move (started before,
            // the children start on every CPU at once) to its end (it exits
            // on any, beside the next).
            let one = self.one_cpu.get_or_insert_with(sys::OneCpu::here);
            match one {
                Some(one) if ends => one.release(child.live.process.pid()),
                Some(one) if child.entered_ns.is_none() => {
                    one.add(child.live.process.pid());
                }
                _ => {}
            }
            child.released_ns = Some(now);
            child.entered_ns.get_or_insert(now);
            child.spun_from = None;
            child.live.conversation.send(self.go.clone());
            let first_look = schedule::first_look(now, !child.backends.is_empty());
            self.passages.push((index, step));
            // While others are held, time matters again: the child let go
            // may block on one of them.
            let others_held = choices.len() > 1;
            self.choices.push(choices);
            return Ok(others_held.then_some(first_look));
        }
    }

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

/// For a child of a scheduled run timed out: where it was, by its steps.
fn step_note(passages: &[(usize, String)], child: &Child) -> String {
    if let Some(step) = &child.at_step {
        return format!("it was held at step `{step}`, not yet let go on from it");
    }
    match went_from(passages, child.index) {
        None => "it never reached its first step (`start`)".to_owned(),
        Some(step) if child.blocked => format!(
            "it went on from step `{step}` and never reached its next step; taken as blocked \
             there, it let the others go on"
        ),
        Some(step) => format!("it went on from step `{step}` and never reached its next step"),
    }
}

/// For a child of a scheduled run that ended without its report (a
/// crash, an exit): where it was, by its steps.
fn ended_note(passages: &[(usize, String)], child: &Child) -> String {
    match (&child.at_step, went_from(passages, child.index)) {
        (Some(step), _) => format!("it ended while held at step `{step}`"),
        (None, Some(step)) => {
            format!("it ended after it went on from step `{step}`, before its next step")
        }
        (None, None) => "it ended before its first step (`start`)".to_owned(),
    }
}

/// The error of a replay that went another way than its recording.
fn diverged(d: Diverged) -> Error {
    Error::ScheduleDiverged {
        position: d.position,
        child: d.child,
        expected: d.expected,
        seen: d.seen,
    }
}

/// Child `index`, let go at `released`, is taken as blocked at `now`
/// (`why`): marked, its passage `<child>:!` recorded, and noted when the
/// database showed the wait (`seen`) or it spun.
fn take_as_blocked(
    live: &mut [Child],
    passages: &mut Vec<(usize, String)>,
    index: usize,
    (why, seen): (Block, Option<Wait>),
    released: u64,
    now: u64,
) {
    let after = Duration::from_nanos(now - released);
    let note = match (why, seen) {
        (Block::Spins { cpu_ns }, _) => Some(format!(
            "taken as blocked {after:?} after it went on from step `{}`: never all asleep, it \
             used {:?} of CPU without reaching its next step (a busy wait on something a held \
             child keeps?), and the others went on beside it",
            last_step(passages, index),
            Duration::from_nanos(cpu_ns)
        )),
        (_, Some(wait)) => Some(lock_note(live, passages, index, &wait, after)),
        _ => None,
    };
    let child = live
        .iter_mut()
        .find(|c| c.index == index)
        .expect("a live child is taken as blocked");
    child.notes.extend(note);
    child.blocked = true;
    child.blocked_ns = now;
    passages.push((index, BLOCKED.to_owned()));
}

/// The step child `index` last went on from, if it was let go yet.
fn went_from(passages: &[(usize, String)], index: usize) -> Option<&str> {
    passages
        .iter()
        .rev()
        .find(|(c, step)| *c == index && step != BLOCKED)
        .map(|(_, step)| step.as_str())
}

/// The step child `index` last went on from (`start` before any).
fn last_step(passages: &[(usize, String)], index: usize) -> &str {
    went_from(passages, index).unwrap_or("start")
}

/// What `/proc` shows of process `pid`, for `schedule::blocked`.
fn threads(pid: u32) -> Threads {
    if sys::threads_asleep(pid) {
        Threads::Asleep
    } else {
        // Unreadable only once the process is gone: it spun no more.
        Threads::Awake {
            cpu_ns: sys::cpu_time_ns(pid).unwrap_or(0),
        }
    }
}

/// The note on a child the database showed waiting on another's lock.
fn lock_note(
    live: &[Child],
    passages: &[(usize, String)],
    index: usize,
    wait: &Wait,
    after: Duration,
) -> String {
    let from = last_step(passages, index);
    let holder = live.iter().find(|c| c.index == wait.child);
    let at = match holder.and_then(|c| c.at_step.as_deref()) {
        Some(step) => format!("held at step `{step}`"),
        None => "itself blocked".to_owned(),
    };
    format!(
        "taken as blocked {:?} after it went on from step `{from}`: its PostgreSQL backend {} \
         waits on a lock of backend {}, child {}'s, {at} (pg_blocking_pids)",
        after, wait.backend, wait.blocker, wait.child,
    )
}

/// `schedule::blocked` for child `index`, asking the database whether it
/// waits on another child when both named connections, and `look` what
/// its threads do; the wait seen, if the database decided. A server that
/// could not be asked is noted on the child.
fn block_verdict(
    live: &mut [Child],
    lock_waits: &mut LockWaits,
    index: usize,
    released: u64,
    now: u64,
    look: impl FnOnce() -> Threads,
) -> std::result::Result<(Block, Option<Wait>), u64> {
    let panicked = live
        .iter()
        .find(|c| c.index == index)
        .and_then(|c| c.panicked_ns);
    if let Some(again) = schedule::unwinding(panicked, now) {
        return Err(again);
    }
    let mine: Vec<Backend> = live
        .iter()
        .find(|c| c.index == index)
        .map(|c| c.backends.clone())
        .unwrap_or_default();
    let others: Vec<(usize, Backend)> = live
        .iter()
        .filter(|c| c.index != index)
        .flat_map(|c| c.backends.iter().map(|b| (c.index, b.clone())))
        .collect();
    let mut seen = None;
    let ask = (!mine.is_empty() && !others.is_empty()).then_some(|| {
        seen = lock_waits.waiting_on(&mine, &others);
        seen.is_some()
    });
    let child = live
        .iter_mut()
        .find(|c| c.index == index)
        .expect("a live child is judged");
    let verdict = schedule::blocked(released, now, ask, look, &mut child.spun_from);
    child.notes.extend(lock_waits.take_problems());
    verdict.map(|why| (why, seen))
}

/// One live child and everything known about it.
struct Child {
    index: usize,
    function: &'static str,
    live: Live<Stream>,
    clocked: Clocked,
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
    /// In a scheduled run: the step it waits at for the parent's word,
    /// when it was last let go from one, and whether it was taken as
    /// blocked since.
    at_step: Option<String>,
    /// What the step it is held at says about the moves around it.
    at_keys: StepKeys,
    /// The step it went on from and the choice that let it, until it
    /// reaches its next step.
    moving: Option<(StepKeys, usize)>,
    /// Whether it named keys at a step (`stampede::step_with`).
    named_keys: bool,
    released_ns: Option<u64>,
    /// When it was first let go (from `start`): when it entered the
    /// function, for a child that never reported its own time.
    entered_ns: Option<u64>,
    /// When it said a thread of it began to panic, since its last step.
    panicked_ns: Option<u64>,
    /// The CPU time it had at the first look that found it awake since it
    /// was last let go (`schedule::blocked`).
    spun_from: Option<u64>,
    blocked: bool,
    /// When it was taken as blocked, or last judged still so.
    blocked_ns: u64,
    /// The database connections it named (`stampede::postgres_backend`).
    backends: Vec<Backend>,
    /// Its history's events, as they came (`stampede::history`).
    operations: Vec<OpEvent>,
}

impl Child {
    fn start(
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
    fn at_gate(&self) -> AtGate {
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
    fn take(&mut self, report: Report, call: u64, now: u64, scheduled: bool) -> Option<(u32, u64)> {
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
            Report::Checkpoint { round, at_ns, .. }
                if self.done.is_none() && self.reached.is_some_and(|r| round == r + 1) =>
            {
                self.reached = Some(round);
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
    fn runs(&self) -> bool {
        self.at_step.is_none() && !self.blocked && self.done.is_none() && self.alive()
    }

    /// Taken as blocked, and neither done nor gone since.
    fn still_blocked(&self) -> bool {
        self.blocked && self.done.is_none() && self.alive()
    }

    /// Its process runs and was not killed.
    fn alive(&self) -> bool {
        self.clocked.killed().is_none() && self.live.process.is_running()
    }

    /// Once it ended, its phase says so.
    fn update(&mut self) {
        if let Some(at_ns) = self.live.ended_ns() {
            self.clocked.enter(Phase::Exited { at_ns });
        }
    }

    fn is_finished(&self, now: u64) -> bool {
        matches!(self.clocked.phase, Phase::Exited { .. })
            && (self.live.drained() || self.clocked.due(now) == Due::StopDraining)
    }

    fn finish(mut self, origin: u64, timeout: Duration) -> Outcome<Vec<u8>> {
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
