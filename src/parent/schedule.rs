//! Who goes next in a scheduled run: a pure policy beside `release`. The
//! call role holds every child at its steps and, whenever none of them
//! runs, asks the [`Chooser`] which held child goes on; so between two
//! steps exactly one child runs.

use std::time::Duration;

use crate::protocol::StepKeys;

/// The step name a schedule records for a child taken as blocked.
pub(crate) const BLOCKED: &str = "!";

/// How long a child let go from a step may take to reach its next one,
/// all its threads asleep, before it counts as blocked by a held child.
pub(crate) const BLOCK_WAIT: Duration = Duration::from_millis(25);

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// When a child let go at `released_ns` may first count as blocked.
pub(crate) fn block_due(released_ns: u64) -> u64 {
    released_ns.saturating_add(ns(BLOCK_WAIT))
}

/// How long a replay, or a search following its last run, waits for the
/// child it lets go next to reach that step, when the child still runs
/// (taken as blocked there, it is slower to get back than it was then: a
/// busy wait's back-off, a loaded machine), counted from the last change
/// (a child reached a step or ended). Beyond, the run went another way.
pub(crate) const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// How long a search following its last run waits for such a child: a
/// child that lost a lock to another blocked child never gets there while
/// that one is held, so the search leaves its last run's path at that
/// passage (the run's own passages are what it learns from); a replay,
/// which must go as recorded, waits [`FOLLOW_WAIT`].
pub(crate) const SEARCH_FOLLOW_WAIT: Duration = Duration::from_millis(250);

/// Until when a recording's next child, still on its way to its step, is
/// waited for, from the last change at `changed_ns`: [`SEARCH_FOLLOW_WAIT`]
/// in a `search`, else [`FOLLOW_WAIT`].
pub(crate) fn follow_due(changed_ns: u64, search: bool) -> u64 {
    let wait = if search {
        SEARCH_FOLLOW_WAIT
    } else {
        FOLLOW_WAIT
    };
    changed_ns.saturating_add(ns(wait))
}

/// How soon after letting a child go, and then how often, the parent asks
/// a database the child named whether it waits on another child's lock
/// (`lock_waits`): a wait shows there within a few milliseconds.
pub(crate) const LOCK_LOOK: Duration = Duration::from_millis(2);

/// When [`blocked`] first has something to say of a child let go at
/// `released_ns`: at [`LOCK_LOOK`] when it named database connections
/// (`named`), else when [`BLOCK_WAIT`] is over.
pub(crate) fn first_look(released_ns: u64, named: bool) -> u64 {
    if named {
        released_ns.saturating_add(ns(LOCK_LOOK))
    } else {
        block_due(released_ns)
    }
}

/// How long after a child said it began to panic it is not judged
/// blocked: its unwinding (a backtrace written, values dropped) may sleep,
/// and is no block. The grace has an end: a child whose own code caught
/// the panic and then blocks is still seen.
pub(crate) const UNWIND_GRACE: Duration = Duration::from_secs(1);

/// Whether a child that began to panic at `panicked_ns` is still not
/// judged blocked at `now_ns`: then when to look again (as for a child
/// that lacks only CPU, or at the grace's end if sooner).
pub(crate) fn unwinding(panicked_ns: Option<u64>, now_ns: u64) -> Option<u64> {
    let until = panicked_ns?.saturating_add(ns(UNWIND_GRACE));
    (now_ns < until).then(|| until.min(look_again(now_ns)))
}

/// When to look again at a child let go that is awake at `now_ns` (it
/// may lack only CPU): a quarter of [`BLOCK_WAIT`] later.
fn look_again(now_ns: u64) -> u64 {
    now_ns.saturating_add(ns(BLOCK_WAIT) / 4)
}

/// How much CPU a child let go may use without reaching its next step,
/// never all asleep, before it counts as blocked: a busy wait (a retry
/// loop with no sleep on a lock a held child keeps) runs without end. A
/// child that lacks only CPU on a loaded machine uses little of it.
pub(crate) const SPIN_CPU: Duration = Duration::from_secs(1);

/// What `/proc` shows of a child let go that has not reached its next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// Every thread waits (on a lock, a socket, a timer).
    Asleep,
    /// A thread runs or is ready to; the CPU time the process has used.
    Awake { cpu_ns: u64 },
}

/// Why a child counts as blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Block {
    /// Its database says it waits on another child's lock.
    Waits,
    /// Every thread asleep, past [`BLOCK_WAIT`].
    Asleep,
    /// Awake at every look, it used `cpu_ns` of CPU from the first look
    /// on: at least [`SPIN_CPU`].
    Spins { cpu_ns: u64 },
}

/// The rule for a child let go at `released_ns` that has not reached its
/// next step: `Ok` when at `now_ns` it counts as blocked, and why; else
/// `Err` with when to look again. Three ways to count:
///
/// - `waits_on_child` (only for a child that named its database
///   connections): from [`LOCK_LOOK`] after the release, every
///   [`LOCK_LOOK`], the database says it waits on another child;
/// - [`BLOCK_WAIT`] passed and `look()` finds every thread asleep: none
///   runs or is ready to. Asked only once the wait is over (it reads
///   `/proc`);
/// - awake, it used [`SPIN_CPU`] since the first look that found it so
///   (`spun_from`, the CPU time then, kept by the caller for this move).
pub(crate) fn blocked(
    released_ns: u64,
    now_ns: u64,
    waits_on_child: Option<impl FnOnce() -> bool>,
    look: impl FnOnce() -> Threads,
    spun_from: &mut Option<u64>,
) -> Result<Block, u64> {
    let due = block_due(released_ns);
    if let Some(waits_on_child) = waits_on_child {
        let first_look = first_look(released_ns, true);
        if now_ns < first_look {
            return Err(first_look);
        }
        if waits_on_child() {
            return Ok(Block::Waits);
        }
        if now_ns < due {
            return Err(now_ns.saturating_add(ns(LOCK_LOOK)).min(due));
        }
    }
    if now_ns < due {
        return Err(due);
    }
    match look() {
        Threads::Asleep => Ok(Block::Asleep),
        Threads::Awake { cpu_ns } => {
            let from = *spun_from.get_or_insert(cpu_ns);
            let used = cpu_ns.saturating_sub(from);
            if used >= ns(SPIN_CPU) {
                Ok(Block::Spins { cpu_ns: used })
            } else {
                // Lacking only CPU, or working: look again soon.
                Err(look_again(now_ns))
            }
        }
    }
}

/// Which held children a strategy may let go: while children are blocked,
/// none held at a step a blocked one went on from (`blocked_from`), if
/// another is held. A child at the same step as one that blocked runs the
/// same code next and most likely meets the same lock; each such block
/// costs a wait (25 ms, more in a busy wait's back-off) while the child
/// that keeps the lock stays held. With a hundred children under
/// `random`, the first blocked ones waited behind a hundred such blocks,
/// past SQLite's 5 s busy timeout, and failed correct code. The orders
/// this leaves out let a second child make the blocked one's move while it
/// is blocked; the same move after the block ends is still tried.
pub(crate) fn eligible<'a>(
    held: &[(usize, &'a str)],
    blocked_from: &[&str],
) -> Vec<(usize, &'a str)> {
    let others: Vec<(usize, &str)> = held
        .iter()
        .copied()
        .filter(|(_, step)| !blocked_from.contains(step))
        .collect();
    if others.is_empty() {
        held.to_vec()
    } else {
        others
    }
}

/// What a move (a child's code from one step to its next) touches
/// (`stampede::step_with`); `None`: anything.
pub(crate) type Keys = Option<Vec<String>>;

/// Whether two moves commute: both say what they touch, and nothing in
/// common.
pub(crate) fn commute(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => !a.iter().any(|k| b.contains(k)),
        _ => false,
    }
}

/// What a step says it touches: its keys; a plain step anything; the
/// start and the end nothing in a child that named keys (`named`), else
/// anything, so that a child without `step_with` is never taken to
/// commute.
fn step_keys(step: &StepKeys, named: bool) -> Keys {
    match step {
        StepKeys::Start | StepKeys::End => named.then(Vec::new),
        StepKeys::Anything => None,
        StepKeys::Only(keys) => Some(keys.clone()),
    }
}

/// What the move from step `from` to step `to` touches: what either says
/// (`to`: `None` for the exit after the end, which touches nothing more).
pub(crate) fn move_keys(from: &StepKeys, to: Option<&StepKeys>, named: bool) -> Keys {
    let mut keys = step_keys(from, named)?;
    if let Some(to) = to {
        for key in step_keys(to, named)? {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    Some(keys)
}

/// How a scheduled run picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheduling {
    /// Uniformly among the held children, from a seed.
    Random { seed: u64 },
    /// The passages of a recorded schedule, in order: `(child, step)`.
    Replay(Vec<(usize, String)>),
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010):
    /// random distinct priorities, the highest-priority held child goes
    /// on; at `depth - 1` passages drawn among the first `steps`, the child
    /// about to go drops below every other. A bug of depth `d` is found
    /// with probability at least 1 / (n · steps^(d-1)) per run.
    Pct {
        seed: u64,
        depth: usize,
        steps: usize,
        children: usize,
    },
    /// The passages of `prefix` (an earlier run's, as far as the search
    /// follows it: its choices, and the children it took as blocked), then
    /// the child that went last while it is held (no preemption), else the
    /// lowest held one: one path of a systematic search. Within the prefix
    /// the run judges no block of its own, as a replay does, so that a
    /// loaded machine cannot send it another way. `asleep` (a sleep set): the
    /// children whose move after the prefix the search has covered
    /// already (with what their move touches); they go only when every
    /// held child is asleep, and wake when a move is made that does not
    /// commute with theirs.
    Follow {
        prefix: Vec<Passage>,
        asleep: Vec<(usize, Keys)>,
    },
}

/// One passage of a search's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passage {
    /// This child goes on.
    Go(usize),
    /// This child is taken as blocked.
    Blocked(usize),
}

/// A replay that found another step than recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diverged {
    pub position: usize,
    pub child: usize,
    pub expected: String,
    /// The step the child is at, or `None` when it is at none (it ended,
    /// or has not reached one).
    pub seen: Option<String>,
}

/// What a divergence expected where the recording had a child reach its
/// next step before a passage, and the replay found it blocked short of it.
pub(crate) const SHORT_OF_STEP: &str = "…";

impl Diverged {
    /// Child `child`, let go before passage `position`, reached its next
    /// step before that passage in the recording, and is blocked short of
    /// it in the replay.
    pub(crate) fn short_of_step(position: usize, child: usize) -> Diverged {
        Diverged {
            position,
            child,
            expected: SHORT_OF_STEP.to_owned(),
            seen: None,
        }
    }
}

/// The policy of one run.
pub(crate) struct Chooser {
    scheduling: Scheduling,
    /// xorshift64* state, for `Random` and `Pct`.
    state: u64,
    /// `Pct`: each child's priority (higher goes first), and the passages
    /// (1-based) at which the child about to go drops to priority `i + 1`,
    /// below every starting priority.
    priorities: Vec<usize>,
    change_points: Vec<usize>,
    /// The child that went on last.
    last: Option<usize>,
    /// Choices made so far: `Pct`'s change points count these, not
    /// passages (a child taken as blocked is a passage no policy chose).
    made: usize,
    /// `Follow`: the sleep set past the prefix.
    asleep: Vec<(usize, Keys)>,
    /// `Follow`: a choice past the prefix was made.
    past_prefix: bool,
}

impl Chooser {
    pub(crate) fn new(scheduling: Scheduling) -> Chooser {
        let seed = match &scheduling {
            Scheduling::Random { seed } | Scheduling::Pct { seed, .. } => *seed,
            Scheduling::Replay(_) | Scheduling::Follow { .. } => 0,
        };
        let asleep = match &scheduling {
            Scheduling::Follow { asleep, .. } => asleep.clone(),
            _ => Vec::new(),
        };
        let mut chooser = Chooser {
            scheduling,
            state: (seed ^ 0x9e37_79b9_7f4a_7c15).max(1),
            priorities: Vec::new(),
            change_points: Vec::new(),
            last: None,
            made: 0,
            asleep,
            past_prefix: false,
        };
        if let Scheduling::Pct {
            depth,
            steps,
            children,
            ..
        } = chooser.scheduling
        {
            // Starting priorities depth..depth+n, shuffled (Fisher-Yates);
            // distinct change points among 1..=steps.
            let mut priorities: Vec<usize> = (depth..depth + children).collect();
            for i in (1..priorities.len()).rev() {
                let j = (chooser.draw() % (i as u64 + 1)) as usize;
                priorities.swap(i, j);
            }
            chooser.priorities = priorities;
            let steps = steps.max(1);
            let mut points = Vec::new();
            while points.len() + 1 < depth && points.len() < steps {
                let point = 1 + (chooser.draw() % steps as u64) as usize;
                if !points.contains(&point) {
                    points.push(point);
                }
            }
            chooser.change_points = points;
        }
        chooser
    }

    fn draw(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Which child goes on at passage `position`, among `held` (each held
    /// child's index and the step it waits at, in index order; not empty).
    #[cfg(test)]
    pub(crate) fn choose(
        &mut self,
        position: usize,
        held: &[(usize, &str)],
    ) -> Result<usize, Diverged> {
        self.choose_with(position, held, None)
    }

    /// [`choose`](Chooser::choose), knowing what the last move (the one
    /// the previous choice let go) touched: a search past its prefix wakes
    /// the sleeping children whose move does not commute with it.
    pub(crate) fn choose_with(
        &mut self,
        position: usize,
        held: &[(usize, &str)],
        last_move: Option<&[String]>,
    ) -> Result<usize, Diverged> {
        if let Scheduling::Follow { prefix, .. } = &self.scheduling {
            if self.past_prefix {
                let last = self.last;
                self.asleep
                    .retain(|(c, keys)| Some(*c) != last && commute(keys.as_deref(), last_move));
            }
            self.past_prefix |= position >= prefix.len();
        }
        let chosen = self.pick(position, held)?;
        self.last = Some(chosen);
        self.made += 1;
        Ok(chosen)
    }

    fn pick(&mut self, position: usize, held: &[(usize, &str)]) -> Result<usize, Diverged> {
        match &self.scheduling {
            Scheduling::Random { .. } => {
                let draw = self.draw();
                Ok(held[(draw % held.len() as u64) as usize].0)
            }
            Scheduling::Pct { .. } => {
                let highest = |priorities: &[usize]| {
                    held.iter()
                        .map(|&(c, _)| c)
                        .max_by_key(|&c| priorities.get(c).copied().unwrap_or(0))
                        .expect("a held child")
                };
                let mut chosen = highest(&self.priorities);
                if let Some(i) = self.change_points.iter().position(|&p| p == self.made + 1) {
                    if let Some(priority) = self.priorities.get_mut(chosen) {
                        *priority = i + 1;
                    }
                    chosen = highest(&self.priorities);
                }
                Ok(chosen)
            }
            Scheduling::Follow { prefix, .. } => {
                if let Some(&Passage::Go(child)) = prefix.get(position) {
                    if held.iter().any(|&(c, _)| c == child) {
                        return Ok(child);
                    }
                }
                // Past the prefix; or this run cannot follow it (the child
                // it lets go is at no step: it ended, or waits on a lock
                // another child took first), and the search leaves its
                // last run's path here: its own passages are what the
                // search learns from. A search never fails a hunt for
                // going another way than itself.
                self.leave_prefix(position);
                let awake: Vec<(usize, &str)> = held
                    .iter()
                    .copied()
                    .filter(|(c, _)| !self.asleep.iter().any(|(a, _)| a == c))
                    .collect();
                let pool = if awake.is_empty() { held } else { &awake };
                Ok(default_choice(self.last, pool))
            }
            Scheduling::Replay(passages) => {
                let Some((child, expected)) = passages.get(position) else {
                    // The recording ended while children still wait: the
                    // program took more steps than it did then.
                    let (child, seen) = held[0];
                    return Err(Diverged {
                        position,
                        child,
                        expected: String::new(),
                        seen: Some(seen.to_owned()),
                    });
                };
                let seen = held
                    .iter()
                    .find(|(c, _)| c == child)
                    .map(|(_, step)| (*step).to_owned());
                if seen.as_deref() == Some(expected.as_str()) {
                    Ok(*child)
                } else {
                    Err(Diverged {
                        position,
                        child: *child,
                        expected: expected.clone(),
                        seen,
                    })
                }
            }
        }
    }

    /// Whether passage `position` follows a recording (a replay's, or a
    /// search's prefix): then the run takes a child as blocked only where
    /// the recording did.
    pub(crate) fn recorded_at(&self, position: usize) -> bool {
        match &self.scheduling {
            Scheduling::Replay(_) => true,
            Scheduling::Follow { prefix, .. } => position < prefix.len(),
            _ => false,
        }
    }

    /// The child a replay's recording took as blocked at `position`, if
    /// it did there (its passage `<child>:!`).
    /// Whether it replays a recording.
    pub(crate) fn replays(&self) -> bool {
        matches!(self.scheduling, Scheduling::Replay(_))
    }

    /// Whether it follows a search's last run (not a replay).
    pub(crate) fn follows_search(&self) -> bool {
        matches!(self.scheduling, Scheduling::Follow { .. })
    }

    /// The rule for a recording's place at `position` that waits on a
    /// child still on its way to its step: `Err(due)` while it is waited
    /// for ([`follow_due`] from the last change at `since`); then a search
    /// leaves its last run's path there (`Ok(true)`), and a replay, which
    /// must go as recorded, goes on to judge it (`Ok(false)`).
    pub(crate) fn follow_wait(
        &mut self,
        position: usize,
        since: u64,
        now: u64,
    ) -> Result<bool, u64> {
        let search = self.follows_search();
        let due = follow_due(since, search);
        if now < due {
            return Err(due);
        }
        if search {
            self.leave_prefix(position);
        }
        Ok(search)
    }

    /// A search's run leaves its last run's path at `position`: from there
    /// it chooses as past its prefix.
    pub(crate) fn leave_prefix(&mut self, position: usize) {
        if let Scheduling::Follow { prefix, .. } = &mut self.scheduling {
            prefix.truncate(position);
        }
    }

    /// The passage a recording (a replay's, or a search's prefix) has at
    /// `position`, if any, as a search's prefix holds it.
    fn recorded(&self, position: usize) -> Option<Passage> {
        match &self.scheduling {
            Scheduling::Replay(passages) => passages.get(position).map(|(child, step)| {
                if step == BLOCKED {
                    Passage::Blocked(*child)
                } else {
                    Passage::Go(*child)
                }
            }),
            Scheduling::Follow { prefix, .. } => prefix.get(position).copied(),
            _ => None,
        }
    }

    /// The child a recording lets go from a step at `position`, if any.
    pub(crate) fn expects_go(&self, position: usize) -> Option<usize> {
        match self.recorded(position)? {
            Passage::Go(child) => Some(child),
            Passage::Blocked(_) => None,
        }
    }

    /// The child a recording took as blocked at `position`, if any.
    pub(crate) fn expects_blocked(&self, position: usize) -> Option<usize> {
        match self.recorded(position)? {
            Passage::Blocked(child) => Some(child),
            Passage::Go(_) => None,
        }
    }

    /// The divergence of a replay whose child was not blocked where its
    /// recording had it blocked: `seen` is the step it was at, if any.
    pub(crate) fn blocked_diverged(&self, position: usize, seen: Option<String>) -> Diverged {
        Diverged {
            position,
            child: self.expects_blocked(position).unwrap_or(0),
            expected: BLOCKED.to_owned(),
            seen,
        }
    }

    /// The passages a replay still expected when the run ended, if any.
    pub(crate) fn left_over(&self, position: usize) -> Option<Diverged> {
        match &self.scheduling {
            Scheduling::Replay(passages) => {
                passages.get(position).map(|(child, expected)| Diverged {
                    position,
                    child: *child,
                    expected: expected.clone(),
                    seen: None,
                })
            }
            _ => None,
        }
    }
}

/// The choice that preempts nobody: the child that went on last while it
/// is held, else the lowest held one.
pub(crate) fn default_choice(last: Option<usize>, held: &[(usize, &str)]) -> usize {
    match last {
        Some(last) if held.iter().any(|&(c, _)| c == last) => last,
        _ => held[0].0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(prefix: &[usize], asleep: &[(usize, Keys)]) -> Scheduling {
        Scheduling::Follow {
            prefix: prefix.iter().map(|&c| Passage::Go(c)).collect(),
            asleep: asleep.to_vec(),
        }
    }

    /// `blocked` for a child that named no database connection.
    const NO_LOCK_LOOK: Option<fn() -> bool> = None;

    #[test]
    fn a_replay_picks_the_recorded_child_and_checks_its_step() {
        let mut chooser = Chooser::new(Scheduling::Replay(vec![
            (1, "start".into()),
            (0, "start".into()),
            (0, "after-select".into()),
        ]));
        let both = [(0, "start"), (1, "start")];
        assert_eq!(chooser.choose(0, &both), Ok(1));
        assert_eq!(chooser.choose(1, &[(0, "start")]), Ok(0));
        assert_eq!(
            chooser.choose(2, &[(0, "before-update"), (1, "after-select")]),
            Err(Diverged {
                position: 2,
                child: 0,
                expected: "after-select".into(),
                seen: Some("before-update".into()),
            })
        );
        assert_eq!(
            chooser.choose(2, &[(1, "after-select")]),
            Err(Diverged {
                position: 2,
                child: 0,
                expected: "after-select".into(),
                seen: None,
            }),
            "child 0 is at no step"
        );
        assert_eq!(
            chooser.choose(3, &both).unwrap_err().expected,
            "",
            "the recording had ended"
        );
        assert_eq!(chooser.left_over(3), None);
        assert_eq!(chooser.left_over(2).unwrap().expected, "after-select");
    }

    #[test]
    fn pct_runs_the_highest_priority_and_drops_it_at_a_change_point() {
        // Depth 1: no change point; the same child goes first while held.
        let mut chooser = Chooser::new(Scheduling::Pct {
            seed: 5,
            depth: 1,
            steps: 10,
            children: 3,
        });
        let held = [(0, "s"), (1, "s"), (2, "s")];
        let first = chooser.choose(0, &held).unwrap();
        assert_eq!(chooser.choose(1, &held).unwrap(), first);
        let others: Vec<(usize, &str)> =
            held.iter().copied().filter(|&(c, _)| c != first).collect();
        let second = chooser.choose(2, &others).unwrap();
        assert_ne!(second, first);
        // Depth 2, one change point among 1..=1: at passage 1 the leader
        // drops below everyone, so another child goes first.
        let leader = Chooser::new(Scheduling::Pct {
            seed: 5,
            depth: 1,
            steps: 1,
            children: 3,
        })
        .choose(0, &held)
        .unwrap();
        let mut dropping = Chooser::new(Scheduling::Pct {
            seed: 5,
            depth: 2,
            steps: 1,
            children: 3,
        });
        assert_eq!(dropping.change_points, [1]);
        assert_ne!(dropping.choose(0, &held).unwrap(), leader);
        // Change points count choices: passages taken as blocked before
        // the first choice do not move it.
        let mut later = Chooser::new(Scheduling::Pct {
            seed: 5,
            depth: 2,
            steps: 1,
            children: 3,
        });
        assert_ne!(later.choose(3, &held).unwrap(), leader);
    }

    #[test]
    fn a_search_path_follows_its_prefix_then_preempts_nobody() {
        let mut chooser = Chooser::new(follow(&[2, 0], &[]));
        let held = [(0, "s"), (1, "s"), (2, "s")];
        assert_eq!(chooser.choose(0, &held), Ok(2));
        assert_eq!(chooser.choose(1, &held), Ok(0));
        // Past the prefix: the last child again while it is held…
        assert_eq!(chooser.choose(2, &held), Ok(0));
        // …else the lowest held child.
        assert_eq!(chooser.choose(3, &[(1, "s"), (2, "s")]), Ok(1));
        // A run that cannot follow its prefix (child 1 is at no step)
        // leaves it there and chooses as past it.
        let mut lost = Chooser::new(follow(&[1, 1], &[]));
        assert_eq!(lost.choose(0, &[(0, "s")]), Ok(0));
        assert_eq!(lost.expects_go(1), None);
        // A prefix is an earlier run's passages, its children taken as
        // blocked too: those are decided as recorded, as in a replay, and
        // the run judges none of its own until the prefix is over.
        let mut around = Chooser::new(Scheduling::Follow {
            prefix: vec![
                Passage::Go(1),
                Passage::Blocked(1),
                Passage::Go(0),
                Passage::Go(1),
            ],
            asleep: Vec::new(),
        });
        assert_eq!(around.choose(0, &held), Ok(1));
        assert_eq!(around.expects_blocked(1), Some(1));
        // After the block, the prefix lets child 1 go again at 3: a run
        // waits for it there if it is still on its way (`FOLLOW_WAIT`).
        assert_eq!(
            (
                around.expects_go(1),
                around.expects_go(3),
                around.expects_go(4)
            ),
            (None, Some(1), None)
        );
        assert!(around.follows_search());
        let mut left = Chooser::new(follow(&[1, 0], &[]));
        assert_eq!(left.choose(0, &held), Ok(1));
        // Child 0 is not there at 1: the run leaves the path and chooses
        // as past it (the last child again while it is held).
        left.leave_prefix(1);
        assert_eq!(left.expects_go(1), None);
        assert_eq!(left.choose(1, &[(1, "s"), (2, "s")]), Ok(1));
        assert!(around.recorded_at(1) && around.recorded_at(3));
        assert_eq!(around.choose(2, &[(0, "s"), (2, "s")]), Ok(0));
        assert_eq!(around.expects_blocked(2), None);
        assert_eq!(around.choose(3, &held), Ok(1));
        assert!(!around.recorded_at(4), "past the prefix, the run judges");
        assert_eq!(around.choose(4, &held), Ok(1));
    }

    #[test]
    fn past_its_prefix_a_search_path_lets_a_sleeping_child_go_only_when_woken() {
        // Child 0's move (on row a) was covered by an earlier run.
        let keys = |k: &[&str]| Some(k.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        let held = [(0, "s"), (1, "s"), (2, "s")];
        let mut chooser = Chooser::new(follow(&[1], &[(0, keys(&["a"]))]));
        assert_eq!(chooser.choose_with(0, &held, None), Ok(1), "the prefix");
        // Child 0 sleeps: not the lowest held one, but child 1 that went
        // last; its move touched row b: 0 sleeps on.
        let b = keys(&["b"]);
        assert_eq!(chooser.choose_with(1, &held, b.as_deref()), Ok(1));
        assert_eq!(
            chooser.choose_with(2, &[(0, "s"), (2, "s")], b.as_deref()),
            Ok(2)
        );
        // Child 2's move touched row a too: 0 wakes.
        let ab = keys(&["a", "b"]);
        assert_eq!(
            chooser.choose_with(3, &[(0, "s"), (2, "s")], ab.as_deref()),
            Ok(2)
        );
        assert_eq!(chooser.asleep, []);
        // A move that touched anything wakes everyone.
        let mut woken = Chooser::new(follow(&[1], &[(0, keys(&[]))]));
        assert_eq!(woken.choose_with(0, &held, None), Ok(1));
        assert_eq!(
            woken.choose_with(1, &held, None),
            Ok(1),
            "the prefix's move was counted"
        );
        assert_eq!(woken.choose_with(2, &held, None), Ok(1));
        assert_eq!(woken.asleep, []);
        // Every held child asleep: one goes all the same.
        let mut stuck = Chooser::new(follow(&[], &[(0, None), (1, None)]));
        assert_eq!(stuck.choose_with(0, &[(0, "s"), (1, "s")], None), Ok(0));
    }

    #[test]
    fn a_move_touches_what_its_two_steps_name_and_the_ends_nothing_once_keys_are_named() {
        let only = |k: &[&str]| StepKeys::Only(k.iter().map(|k| k.to_string()).collect());
        let keys = |k: &[&str]| Some(k.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        use StepKeys::{Anything, End, Start};
        // A child that named keys: the start and the end add nothing.
        assert_eq!(move_keys(&Start, Some(&only(&["a"])), true), keys(&["a"]));
        assert_eq!(
            move_keys(&only(&["a"]), Some(&only(&["a", "b"])), true),
            keys(&["a", "b"])
        );
        assert_eq!(move_keys(&only(&["b"]), Some(&End), true), keys(&["b"]));
        assert_eq!(
            move_keys(&End, None, true),
            keys(&[]),
            "the exit after the end"
        );
        // A plain step on either side: anything.
        assert_eq!(move_keys(&only(&["a"]), Some(&Anything), true), None);
        assert_eq!(move_keys(&Anything, Some(&End), true), None);
        // A child that never named keys: every move touches anything.
        assert_eq!(move_keys(&Start, Some(&End), false), None);
        assert_eq!(move_keys(&End, None, false), None);
        assert!(commute(Some(&["a".into()]), Some(&["b".into()])));
        assert!(!commute(
            Some(&["a".into()]),
            Some(&["a".into(), "b".into()])
        ));
        assert!(!commute(None, Some(&[])), "anything commutes with nothing");
        assert!(
            commute(Some(&[]), Some(&["a".into()])),
            "no keys: nothing shared"
        );
    }

    #[test]
    fn while_a_child_is_blocked_none_at_the_step_it_went_on_from_is_let_go() {
        let held = [
            (0, "start"),
            (2, "locked"),
            (4, "before-lock"),
            (5, "start"),
        ];
        assert_eq!(eligible(&held, &[]), held);
        assert_eq!(
            eligible(&held, &["start"]),
            [(2, "locked"), (4, "before-lock")]
        );
        assert_eq!(eligible(&held, &["start", "before-lock"]), [(2, "locked")]);
        // Every held child at such a step: all of them, rather than none.
        let same = [(0, "start"), (5, "start")];
        assert_eq!(eligible(&same, &["start"]), same);
    }

    #[test]
    fn a_child_counts_as_blocked_after_the_wait_and_only_asleep() {
        const MS: u64 = 1_000_000;
        let due = 1_000 * MS + 25 * MS;
        let never = || -> Threads { panic!("asked before the wait was over") };
        let mut spun = None;
        assert_eq!(
            blocked(1_000 * MS, due - 1, NO_LOCK_LOOK, never, &mut spun),
            Err(due)
        );
        assert_eq!(
            blocked(1_000 * MS, due, NO_LOCK_LOOK, asleep, &mut spun),
            Ok(Block::Asleep)
        );
        assert_eq!(spun, None, "nothing kept of a sleeper");
        assert_eq!(
            blocked(1_000 * MS, due, NO_LOCK_LOOK, awake(7 * MS), &mut spun),
            Err(due + 25 * MS / 4),
            "a child that lacks only CPU is looked at again a quarter wait later"
        );
        assert_eq!(block_due(1_000 * MS), due);
    }

    #[test]
    fn a_child_that_began_to_panic_is_not_judged_blocked_for_a_second() {
        const MS: u64 = 1_000_000;
        let panicked = Some(5_000 * MS);
        assert_eq!(unwinding(None, 5_000 * MS), None);
        assert_eq!(
            unwinding(panicked, 5_000 * MS),
            Some(5_000 * MS + 25 * MS / 4),
            "looked at again as a child that lacks only CPU"
        );
        assert_eq!(unwinding(panicked, 6_000 * MS - 1), Some(6_000 * MS));
        assert_eq!(unwinding(panicked, 6_000 * MS), None, "at its bound");
    }

    fn asleep() -> Threads {
        Threads::Asleep
    }

    fn awake(cpu_ns: u64) -> impl FnOnce() -> Threads {
        move || Threads::Awake { cpu_ns }
    }

    #[test]
    fn an_awake_child_counts_as_blocked_once_it_used_a_second_of_cpu_from_the_first_look() {
        const MS: u64 = 1_000_000;
        let released = 1_000 * MS;
        let due = released + 25 * MS;
        let mut spun = None;
        // The first look keeps the CPU time it finds.
        assert_eq!(
            blocked(released, due, NO_LOCK_LOOK, awake(300 * MS), &mut spun),
            Err(due + 25 * MS / 4)
        );
        assert_eq!(spun, Some(300 * MS));
        // A second of CPU later, less a nanosecond: not yet.
        let later = due + 2_000 * MS;
        assert_eq!(
            blocked(
                released,
                later,
                NO_LOCK_LOOK,
                awake(1_300 * MS - 1),
                &mut spun
            ),
            Err(later + 25 * MS / 4)
        );
        // At exactly a second, whatever the wall time: blocked, spinning.
        assert_eq!(
            blocked(released, later, NO_LOCK_LOOK, awake(1_300 * MS), &mut spun),
            Ok(Block::Spins { cpu_ns: 1_000 * MS })
        );
        // A starved child's wall time counts for nothing: a minute of it
        // with little CPU is not a busy wait.
        let mut starved = None;
        let _ = blocked(released, due, NO_LOCK_LOOK, awake(0), &mut starved);
        assert_eq!(
            blocked(
                released,
                due + 60_000 * MS,
                NO_LOCK_LOOK,
                awake(200 * MS),
                &mut starved
            ),
            Err(due + 60_000 * MS + 25 * MS / 4)
        );
        // Asleep at a later look: blocked as any sleeper.
        assert_eq!(
            blocked(
                released,
                due + 60_000 * MS,
                NO_LOCK_LOOK,
                asleep,
                &mut starved
            ),
            Ok(Block::Asleep)
        );
    }

    #[test]
    fn a_recordings_next_child_on_its_way_is_waited_for_5_s_from_the_last_change() {
        const S: u64 = 1_000_000_000;
        let changed = 7 * S;
        assert_eq!(follow_due(changed, false), 12 * S);
        assert_eq!(follow_due(changed, true), 7 * S + S / 4);
        assert_eq!(follow_due(u64::MAX - 1, false), u64::MAX);
        // The wait, then what each kind of run does after it.
        let mut search = Chooser::new(follow(&[0, 1], &[]));
        assert_eq!(
            search.follow_wait(1, changed, changed + S / 4 - 1),
            Err(changed + S / 4)
        );
        assert_eq!(search.expects_go(1), Some(1), "still on its path");
        assert_eq!(
            search.follow_wait(1, changed, changed + S / 4),
            Ok(true),
            "at its bound"
        );
        assert_eq!(search.expects_go(1), None, "the path left there");
        let mut replaying = Chooser::new(Scheduling::Replay(vec![(0, "s".into())]));
        assert_eq!(replaying.follow_wait(0, changed, 12 * S - 1), Err(12 * S));
        assert_eq!(replaying.follow_wait(0, changed, 12 * S), Ok(false));
        assert_eq!(
            replaying.expects_go(0),
            Some(0),
            "a replay keeps its recording"
        );
        // Which child a recording lets go next: a replay's passage that is
        // not a block, or a search prefix's `Go`.
        let replay = Chooser::new(Scheduling::Replay(vec![
            (1, "start".into()),
            (0, BLOCKED.into()),
        ]));
        assert_eq!(replay.expects_go(0), Some(1));
        assert_eq!(replay.expects_go(1), None);
        assert_eq!(replay.expects_go(2), None);
    }

    #[test]
    fn a_child_with_named_connections_is_seen_blocked_by_its_database_from_2_ms() {
        const MS: u64 = 1_000_000;
        let released = 1_000 * MS;
        let never = || -> Threads { panic!("asked too early") };
        let mut spun = None;
        let asks = |answer: bool| Some(move || answer);
        // The role wakes for the first look when it lets the child go.
        assert_eq!(first_look(released, true), released + 2 * MS);
        assert_eq!(first_look(released, false), block_due(released));
        // Not before the first look, not even the database.
        assert_eq!(
            blocked(
                released,
                released + 2 * MS - 1,
                Some(|| -> bool { panic!("asked too early") }),
                never,
                &mut spun
            ),
            Err(released + 2 * MS)
        );
        // At the first look the database says it waits on a child: blocked
        // at 2 ms, not at the generic 25.
        assert_eq!(
            blocked(released, released + 2 * MS, asks(true), never, &mut spun),
            Ok(Block::Waits)
        );
        // It does not: asked again 2 ms later, /proc not read before 25 ms.
        assert_eq!(
            blocked(released, released + 2 * MS, asks(false), never, &mut spun),
            Err(released + 4 * MS)
        );
        assert_eq!(
            blocked(released, released + 24 * MS, asks(false), never, &mut spun),
            Err(released + 25 * MS),
            "the next look is never later than the generic wait"
        );
        // Past the wait, with no wait on a child the server knows of (a
        // file lock, another client): the generic rule still decides.
        assert_eq!(
            blocked(released, released + 25 * MS, asks(false), asleep, &mut spun),
            Ok(Block::Asleep)
        );
        assert_eq!(
            blocked(
                released,
                released + 25 * MS,
                asks(false),
                awake(0),
                &mut spun
            ),
            Err(released + 25 * MS + 25 * MS / 4)
        );
    }

    #[test]
    fn random_picks_only_held_children_the_same_way_for_a_seed() {
        let held = [(0, "a"), (3, "b"), (5, "c")];
        let picks = |seed| {
            let mut chooser = Chooser::new(Scheduling::Random { seed });
            (0..64)
                .map(|i| chooser.choose(i, &held).unwrap())
                .collect::<Vec<_>>()
        };
        let first = picks(7);
        assert_eq!(first, picks(7), "a seed repeats its choices");
        assert_ne!(first, picks(8));
        assert!(first.iter().all(|c| [0, 3, 5].contains(c)));
        for child in [0, 3, 5] {
            assert!(
                first.contains(&child),
                "child {child} never picked in 64 draws"
            );
        }
    }
}
