//! A scheduled call's passages: when no child runs, which held child the
//! chooser lets go on from its step; when one let go does not reach its
//! next step, whether it is blocked (the database's word, its threads
//! asleep, its CPU spent); and the notes that say where a child was, by
//! its steps.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::parent::lock_waits::{Backend, LockWaits, Wait};
use crate::parent::schedule::{self, BLOCKED, Block, Diverged, Threads};
use crate::protocol::StepKeys;
use crate::sys;

use super::{CallRun, Child};

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
    pub(super) fn let_one_go(&mut self, now: u64) -> Result<Option<u64>> {
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
}

/// For a child of a scheduled run timed out: where it was, by its steps.
pub(super) fn step_note(passages: &[(usize, String)], child: &Child) -> String {
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
pub(super) fn ended_note(passages: &[(usize, String)], child: &Child) -> String {
    match (&child.at_step, went_from(passages, child.index)) {
        (Some(step), _) => format!("it ended while held at step `{step}`"),
        (None, Some(step)) => {
            format!("it ended after it went on from step `{step}`, before its next step")
        }
        (None, None) => "it ended before its first step (`start`)".to_owned(),
    }
}

/// The error of a replay that went another way than its recording.
pub(super) fn diverged(d: Diverged) -> Error {
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
pub(super) fn take_as_blocked(
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
pub(super) fn went_from(passages: &[(usize, String)], index: usize) -> Option<&str> {
    passages
        .iter()
        .rev()
        .find(|(c, step)| *c == index && step != BLOCKED)
        .map(|(_, step)| step.as_str())
}

/// The step child `index` last went on from (`start` before any).
pub(super) fn last_step(passages: &[(usize, String)], index: usize) -> &str {
    went_from(passages, index).unwrap_or("start")
}

/// What `/proc` shows of process `pid`, for `schedule::blocked`.
pub(super) fn threads(pid: u32) -> Threads {
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
pub(super) fn lock_note(
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
pub(super) fn block_verdict(
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
