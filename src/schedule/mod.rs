//! Controlled scheduling: how a scheduled run picks which child goes on
//! from its step. The parent side's policy is `parent::schedule` (pure,
//! one run); this is the public face, and what carries over from run to
//! run (PCT's estimate of a run's length, the exhaustive search's place).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::parent::{Keys, Passage, Scheduling};

/// How a scheduled run decides which child goes on next (see
/// [`step`](crate::step)). Set it with [`Options::strategy`](crate::Options::strategy)
/// or [`Hunt::strategy`](crate::Hunt::strategy).
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
/// let outcomes = stampede::Options::new()
///     .strategy(stampede::Strategy::pct(3))
///     .seed(42) // the same seed, the same schedule
///     .call_concurrently(2, claim, ())?;
/// println!("{}", outcomes.schedule().unwrap()); // v1 n=2 1:start 0:start …
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// A strategy value keeps what it learned across the runs it is used for
/// (clones share it): PCT sizes its change points from the runs' lengths,
/// the exhaustive search walks on from the schedule it ran last.
#[derive(Debug, Clone)]
pub struct Strategy {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Random,
    Pct {
        depth: usize,
        /// The most passages a run of this strategy had.
        longest: Arc<AtomicUsize>,
    },
    Exhaustive {
        bound: usize,
        search: Arc<Mutex<Search>>,
    },
    Portfolio {
        members: Vec<Strategy>,
        /// The member whose turn is next, and the one that scheduled the
        /// last run.
        turn: Arc<Mutex<(usize, usize)>>,
    },
}

impl Default for Strategy {
    /// [`Strategy::portfolio`].
    fn default() -> Strategy {
        Strategy::portfolio()
    }
}

/// The preemptions an exhaustive search allows by default: most
/// concurrency bugs need at most 2 (loom's and CHESS's experience).
const DEFAULT_BOUND: usize = 2;

impl Strategy {
    /// At each passage, one of the children waiting at a step, uniformly at
    /// random, from the run's seed ([`Options::seed`](crate::Options::seed),
    /// or a fresh one).
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// let outcomes = stampede::Options::new()
    ///     .strategy(stampede::Strategy::random())
    ///     .call_concurrently(4, claim, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn random() -> Strategy {
        Strategy { kind: Kind::Random }
    }

    /// Probabilistic concurrency testing with bug depth `depth` (at least
    /// 1): each child gets a random priority and the highest-priority child
    /// waiting at a step goes on; at `depth - 1` random passages the child
    /// about to go drops below every other. A bug that needs `depth`
    /// ordering constraints is found in a run with probability at least
    /// 1 / (n · k^(depth-1)), for n children and k passages per run (k is
    /// learned from the runs so far). Depth 3 finds most bugs in practice.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// let outcomes = stampede::Options::new()
    ///     .strategy(stampede::Strategy::pct(3))
    ///     .call_concurrently(4, claim, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn pct(depth: usize) -> Strategy {
        Strategy {
            kind: Kind::Pct {
                depth,
                longest: Arc::new(AtomicUsize::new(0)),
            },
        }
    }

    /// Every schedule with at most 2 preemptions (a child stopped at a
    /// step while it could have gone on, for another), one per run, in
    /// depth-first order: give it to [`Hunt::strategy`](crate::Hunt::strategy),
    /// which stops when the search is complete. Each run follows the last
    /// one's choices up to its deepest untried alternative.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
    /// let summary = stampede::Hunt::runs(10_000)
    ///     .strategy(stampede::Strategy::exhaustive())
    ///     .run(|run| {
    ///         let outcomes = run.options().call_concurrently(2, claim, ())?;
    ///         outcomes.assert_exactly_one(|won| *won);
    ///         Ok::<(), stampede::Error>(())
    ///     })
    ///     .unwrap();
    /// println!("{summary}"); // "6 runs passed in 0.2 s (every schedule within 2 preemptions)"
    /// ```
    pub fn exhaustive() -> Strategy {
        Strategy {
            kind: Kind::Exhaustive {
                bound: DEFAULT_BOUND,
                search: Arc::new(Mutex::new(Search::default())),
            },
        }
    }

    /// A portfolio, the default: the runs take turns among an exhaustive
    /// search within 2 preemptions, PCT of depth 3, random, and PCT of
    /// depth 2, each learning from its own runs. No single strategy is
    /// best for every bug (a search finds shallow ones in a handful of runs
    /// and then has nothing new to try early; PCT's chance per run does not
    /// fall as runs go by); taking turns keeps each one's strength at a
    /// quarter of the pace. The exhaustive member, once complete, gives its
    /// turns to the others.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
    /// let found = stampede::Hunt::runs(200)
    ///     .strategy(stampede::Strategy::portfolio())
    ///     .run(|run| {
    ///         let outcomes = run.options().call_concurrently(2, claim, ())?;
    ///         outcomes.assert_exactly_one(|won| *won);
    ///         Ok::<(), stampede::Error>(())
    ///     });
    /// ```
    pub fn portfolio() -> Strategy {
        Strategy {
            kind: Kind::Portfolio {
                members: vec![
                    Strategy::exhaustive(),
                    Strategy::pct(3),
                    Strategy::random(),
                    Strategy::pct(2),
                ],
                turn: Arc::new(Mutex::new((0, 0))),
            },
        }
    }

    /// For [`exhaustive`](Strategy::exhaustive): at most `bound`
    /// preemptions per schedule (default 2). Each one more multiplies the
    /// schedules by about the number of passages.
    pub fn preemption_bound(self, bound: usize) -> Strategy {
        match self.kind {
            Kind::Exhaustive { search, .. } => Strategy {
                kind: Kind::Exhaustive { bound, search },
            },
            kind => Strategy { kind },
        }
    }

    /// The parent's policy for the next run of `children` children.
    pub(crate) fn scheduling(&self, seed: u64, children: usize) -> Result<Scheduling> {
        Ok(match &self.kind {
            Kind::Random => Scheduling::Random { seed },
            Kind::Pct { depth: 0, .. } => {
                return Err(Error::InvalidOptions(
                    "Strategy::pct(0): a depth is at least 1 (1: priorities alone; 3 finds \
                     most bugs)"
                        .into(),
                ));
            }
            Kind::Pct { depth, longest } => Scheduling::Pct {
                seed,
                depth: *depth,
                // Before any run: a start and an end per child, and as many
                // steps again.
                steps: longest.load(Ordering::Relaxed).max(4 * children),
                children,
            },
            Kind::Exhaustive { search, .. } => {
                let search = search.lock().unwrap_or_else(|e| e.into_inner());
                let (prefix, asleep) = search.next.clone().unwrap_or_default();
                Scheduling::Follow { prefix, asleep }
            }
            Kind::Portfolio { members, turn } => {
                let mut turn = turn.lock().unwrap_or_else(|e| e.into_inner());
                let (next, last) = &mut *turn;
                // The next member in turn that has something left to try.
                let at = (0..members.len())
                    .map(|k| (*next + k) % members.len())
                    .find(|&m| members[m].exhausted().is_none())
                    .unwrap_or(*next % members.len());
                *next = at + 1;
                *last = at;
                return members[at].scheduling(seed, children);
            }
        })
    }

    /// Learns from a run: its passages' children, and the children held at
    /// each.
    pub(crate) fn observe(&self, passages: &[Passage], held: &[Vec<usize>], moves: &[Keys]) {
        // The choices made; a child taken as blocked was none.
        let chosen: Vec<usize> = passages
            .iter()
            .filter_map(|p| match p {
                Passage::Go(child) => Some(*child),
                Passage::Blocked(_) => None,
            })
            .collect();
        let chosen = &chosen[..];
        match &self.kind {
            Kind::Random => {}
            Kind::Pct { longest, .. } => {
                longest.fetch_max(chosen.len(), Ordering::Relaxed);
            }
            Kind::Exhaustive { bound, search } => {
                let mut search = search.lock().unwrap_or_else(|e| e.into_inner());
                search.runs += 1;
                search.next = next_path(chosen, held, moves, *bound)
                    .map(|(choices, asleep)| (recorded_prefix(passages, &choices), asleep));
            }
            Kind::Portfolio { members, turn } => {
                let last = turn.lock().unwrap_or_else(|e| e.into_inner()).1;
                members[last].observe(passages, held, moves);
            }
        }
    }

    /// For an exhaustive search: its preemption bound (whether or not it
    /// has run every schedule within it).
    pub(crate) fn search_bound(&self) -> Option<usize> {
        match &self.kind {
            Kind::Exhaustive { bound, .. } => Some(*bound),
            _ => None,
        }
    }

    /// For an exhaustive search: `Some(runs)` once every schedule within
    /// the bound has run.
    pub(crate) fn exhausted(&self) -> Option<(u64, usize)> {
        match &self.kind {
            Kind::Exhaustive { bound, search } => {
                let search = search.lock().unwrap_or_else(|e| e.into_inner());
                search.next.is_none().then_some((search.runs, *bound))
            }
            _ => None,
        }
    }
}

/// A search's next path: the choices to follow, and the children asleep
/// after them with what their moves touch.
type Path = (Vec<usize>, Vec<(usize, Keys)>);

/// What the next run of a search follows: an earlier run's passages, and
/// the children asleep after them with what their moves touch.
type Next = (Vec<Passage>, Vec<(usize, Keys)>);

/// The passages of the last run up to its choice `choices.len() - 1`,
/// which becomes `choices`' last: the prefix the next run follows, with
/// the children that run took as blocked on the way.
fn recorded_prefix(passages: &[Passage], choices: &[usize]) -> Vec<Passage> {
    let Some((&last, before)) = choices.split_last() else {
        return Vec::new();
    };
    let mut prefix = Vec::new();
    let mut made = 0;
    for &passage in passages {
        if made == before.len() {
            break;
        }
        prefix.push(passage);
        made += usize::from(matches!(passage, Passage::Go(_)));
    }
    // Blocks recorded just before the branching choice stay: they were
    // decided before it.
    for &passage in &passages[prefix.len()..] {
        match passage {
            Passage::Blocked(_) => prefix.push(passage),
            Passage::Go(_) => break,
        }
    }
    prefix.push(Passage::Go(last));
    prefix
}

/// Where an exhaustive search is.
#[derive(Debug)]
struct Search {
    /// The choices the next run follows, and the children asleep after
    /// them; `None` when the search is done.
    next: Option<Next>,
    runs: u64,
}

impl Default for Search {
    fn default() -> Search {
        Search {
            next: Some((Vec::new(), Vec::new())),
            runs: 0,
        }
    }
}

/// The next path of a depth-first search after a run that chose `chosen`
/// with `held` children to choose from at each choice, its moves touching
/// `moves`: the same choices up to the deepest one with an untried
/// alternative (in the order: the choice that preempts nobody, then the
/// others by index) that keeps the preemptions within `bound` and is not
/// asleep, and that alternative; with the children asleep after it (and
/// what their moves touch). `None` when there is none left.
///
/// Sleep sets (Godefroid, 1996): once a child's move was explored at a
/// choice, a sibling explored after it carries it asleep for as long as
/// the moves made commute with it (`stampede::step_with` keys, disjoint):
/// every order that starts with it there was covered. A held child's move
/// is the one it made next in the run.
fn next_path(chosen: &[usize], held: &[Vec<usize>], moves: &[Keys], bound: usize) -> Option<Path> {
    let len = chosen.len().min(held.len());
    // A child's move at choice `i`: the one it made at or after `i`.
    let pending = |i: usize, child: usize| -> Keys {
        (i..len)
            .find(|&j| chosen[j] == child)
            .and_then(|j| moves.get(j).cloned().flatten())
    };
    let commute = |i: usize, a: usize, b: usize| {
        crate::parent::commute(pending(i, a).as_deref(), pending(i, b).as_deref())
    };
    let preempts = |i: usize, child: usize| {
        i > 0 && child != chosen[i - 1] && held[i].contains(&chosen[i - 1])
    };
    let candidates = |i: usize| {
        let first = match (i > 0).then(|| chosen[i - 1]) {
            Some(last) if held[i].contains(&last) => last,
            _ => held[i][0],
        };
        std::iter::once(first)
            .chain(held[i].iter().copied().filter(move |&c| c != first))
            .collect::<Vec<usize>>()
    };
    let mut before = vec![0; len + 1];
    for i in 0..len {
        before[i + 1] = before[i] + usize::from(preempts(i, chosen[i]));
    }
    // At each choice: the children asleep there, and those explored there
    // before the one chosen.
    let after = |i: usize, asleep: &[usize], done: &[usize], child: usize| {
        let mut next: Vec<usize> = asleep
            .iter()
            .chain(done)
            .copied()
            .filter(|&c| c != child && commute(i, c, child))
            .collect();
        next.sort_unstable();
        next.dedup();
        next
    };
    let mut asleep: Vec<Vec<usize>> = vec![Vec::new()];
    let mut explored: Vec<Vec<usize>> = Vec::new();
    for i in 0..len {
        let options = candidates(i);
        let at = options.iter().position(|&c| c == chosen[i])?;
        let done: Vec<usize> = options[..at]
            .iter()
            .copied()
            .filter(|&c| {
                !asleep[i].contains(&c) && before[i] + usize::from(preempts(i, c)) <= bound
            })
            .collect();
        asleep.push(after(i, &asleep[i], &done, chosen[i]));
        explored.push(done);
    }
    for i in (0..len).rev() {
        let options = candidates(i);
        let at = options.iter().position(|&c| c == chosen[i])?;
        for &child in &options[at + 1..] {
            if asleep[i].contains(&child) || before[i] + usize::from(preempts(i, child)) > bound {
                continue;
            }
            let mut done = explored[i].clone();
            done.push(chosen[i]);
            let mut path = chosen[..i].to_vec();
            path.push(child);
            let sleeping = after(i, &asleep[i], &done, child)
                .into_iter()
                .map(|c| (c, pending(i, c)))
                .collect();
            return Some((path, sleeping));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path a search takes through two children of `steps` passages
    /// each (a child goes on from start, its steps, and end), simulated.
    fn paths(steps: usize, bound: usize) -> Vec<Vec<usize>> {
        keyed_paths(&[vec![None; steps], vec![None; steps]], bound)
    }

    /// Every path a search takes through children whose moves touch
    /// `keys[child][move]`, simulated with the parent's chooser.
    fn keyed_paths(keys: &[Vec<Keys>], bound: usize) -> Vec<Vec<usize>> {
        use crate::parent::Chooser;
        let mut seen = Vec::new();
        let mut next = Some((Vec::new(), Vec::new()));
        while let Some((prefix, asleep)) = next {
            let prefix = prefix.into_iter().map(Passage::Go).collect();
            let mut chooser = Chooser::new(Scheduling::Follow { prefix, asleep });
            let mut done = vec![0; keys.len()];
            let (mut chosen, mut held, mut moves) = (Vec::new(), Vec::new(), Vec::<Keys>::new());
            loop {
                let now: Vec<usize> = (0..keys.len())
                    .filter(|&c| done[c] < keys[c].len())
                    .collect();
                if now.is_empty() {
                    break;
                }
                let steps: Vec<(usize, &str)> = now.iter().map(|&c| (c, "s")).collect();
                let last_move = moves.last().and_then(|k| k.as_deref());
                let child = chooser
                    .choose_with(chosen.len(), &steps, last_move)
                    .unwrap();
                moves.push(keys[child][done[child]].clone());
                done[child] += 1;
                chosen.push(child);
                held.push(now);
            }
            next = next_path(&chosen, &held, &moves, bound);
            seen.push(chosen);
            assert!(seen.len() < 10_000, "the search does not end");
        }
        seen
    }

    /// The interleavings equivalent to `path` by swapping neighbouring
    /// passages of two children that commute.
    fn class(path: &[usize], keys: &[Vec<Keys>]) -> Vec<Vec<usize>> {
        let passage_keys = |p: &[usize], at: usize| {
            let child = p[at];
            let nth = p[..at].iter().filter(|&&c| c == child).count();
            keys[child][nth].as_deref()
        };
        let mut class = vec![path.to_vec()];
        let mut i = 0;
        while i < class.len() {
            let p = class[i].clone();
            for at in 0..p.len() - 1 {
                if p[at] != p[at + 1]
                    && crate::parent::commute(passage_keys(&p, at), passage_keys(&p, at + 1))
                {
                    let mut q = p.clone();
                    q.swap(at, at + 1);
                    if !class.contains(&q) {
                        class.push(q);
                    }
                }
            }
            i += 1;
        }
        class
    }

    #[test]
    fn a_searchs_prefix_keeps_the_blocks_recorded_before_its_branch() {
        use Passage::{Blocked, Go};
        let run = [Go(0), Blocked(0), Go(1), Go(1), Blocked(1), Go(0), Go(0)];
        // Branch at the third choice (child 0 instead of 1): the block
        // recorded before it stays, the one after it goes.
        assert_eq!(
            recorded_prefix(&run, &[0, 1, 0]),
            [Go(0), Blocked(0), Go(1), Go(0)]
        );
        assert_eq!(recorded_prefix(&run, &[1]), [Go(1)]);
        assert_eq!(recorded_prefix(&run, &[0, 0]), [Go(0), Blocked(0), Go(0)]);
        assert_eq!(recorded_prefix(&run, &[]), []);
    }

    #[test]
    fn the_search_visits_every_interleaving_once_within_the_bound() {
        // Two children of 3 passages: C(6, 3) = 20 interleavings in all.
        let all = paths(3, usize::MAX);
        assert_eq!(all.len(), 20);
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 20, "a path ran twice");
        // The first path preempts nobody: child 0 to its end, then 1.
        assert_eq!(all[0], [0, 0, 0, 1, 1, 1]);
        // Bound 0: the two serial orders only; bound 1: those with one
        // switch away from a child that could go on.
        assert_eq!(paths(3, 0).len(), 2);
        assert_eq!(
            paths(3, 2).len(),
            14,
            "two children of 3 passages, within 2"
        );
        let one = paths(3, 1);
        assert!(one.len() > 2 && one.len() < 20, "{}", one.len());
    }

    #[test]
    fn keys_that_commute_prune_orders_and_every_order_keeps_a_representative() {
        let key = |k: &str| Some(vec![k.to_owned()]);
        let nothing = || Some(Vec::new());
        // `start; step_with("s", [row]); end`: the moves into and out of
        // the step touch the row; the exit after the end, nothing.
        let rows = |rows: &[&str]| -> Vec<Vec<Keys>> {
            rows.iter()
                .map(|r| vec![key(r), key(r), nothing()])
                .collect()
        };
        let unkeyed = |children: usize| vec![vec![None; 3]; children];
        let every = paths(3, usize::MAX);
        assert_eq!(
            keyed_paths(&unkeyed(2), usize::MAX),
            every,
            "no keys: no pruning"
        );
        for (case, keys) in [
            ("own rows", rows(&["r0", "r1"])),
            ("one row", rows(&["r", "r"])),
        ] {
            let ran = keyed_paths(&keys, usize::MAX);
            // Every one of the 20 orders is equivalent to one the search
            // ran, and the search ran none twice.
            for order in &every {
                let equivalent = class(order, &keys);
                assert!(
                    ran.iter().any(|p| equivalent.contains(p)),
                    "{case}: {order:?} has no representative among {ran:?}"
                );
            }
            let mut unique = ran.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), ran.len(), "{case}: a path ran twice");
        }
        // How much: two children on their own rows, 4 of 20 orders (all
        // are one; sleep sets alone still try one switch per choice of the
        // first path); on one row, where only the exits commute, 12; three
        // children on their own rows, 16 of 192 within 2 preemptions and
        // 16 of 1,680 in all.
        assert_eq!(keyed_paths(&rows(&["r0", "r1"]), usize::MAX).len(), 4);
        assert_eq!(keyed_paths(&rows(&["r", "r"]), usize::MAX).len(), 12);
        assert_eq!(keyed_paths(&unkeyed(3), 2).len(), 192);
        assert_eq!(keyed_paths(&rows(&["r0", "r1", "r2"]), 2).len(), 16);
        assert_eq!(keyed_paths(&unkeyed(3), usize::MAX).len(), 1_680);
        assert_eq!(
            keyed_paths(&rows(&["r0", "r1", "r2"]), usize::MAX).len(),
            16
        );
    }

    #[test]
    fn a_portfolio_takes_turns_and_skips_a_search_that_is_complete() {
        let portfolio = Strategy::default();
        let kind = |s: Scheduling| match s {
            Scheduling::Follow { .. } => "search",
            Scheduling::Pct { depth: 3, .. } => "pct3",
            Scheduling::Pct { depth: 2, .. } => "pct2",
            Scheduling::Random { .. } => "random",
            other => panic!("{other:?}"),
        };
        // One child, started and ended: the search has one schedule, done
        // after its first turn; the others go on taking theirs.
        let turns: Vec<&str> = (0..8)
            .map(|seed| {
                let turn = kind(portfolio.scheduling(seed, 1).unwrap());
                portfolio.observe(&[Passage::Go(0); 2], &[vec![0], vec![0]], &[None, None]);
                turn
            })
            .collect();
        assert_eq!(
            turns,
            [
                "search", "pct3", "random", "pct2", "pct3", "random", "pct2", "pct3"
            ]
        );
        assert_eq!(portfolio.exhausted(), None, "a portfolio never ends a hunt");
        // What a turn learned went to its member: PCT's run length.
        let Kind::Portfolio { members, .. } = &portfolio.kind else {
            unreachable!()
        };
        let Kind::Pct { longest, .. } = &members[1].kind else {
            unreachable!()
        };
        assert_eq!(longest.load(Ordering::Relaxed), 2);
        assert_eq!(members[0].exhausted(), Some((1, 2)));
    }

    #[test]
    fn pct_learns_the_length_of_a_run_and_refuses_depth_zero() {
        let strategy = Strategy::pct(3);
        let steps = |s: &Strategy| match s.scheduling(1, 2).unwrap() {
            Scheduling::Pct { steps, .. } => steps,
            other => panic!("{other:?}"),
        };
        assert_eq!(steps(&strategy), 8, "before any run: 4 per child");
        strategy
            .clone()
            .observe(&[Passage::Go(0); 30], &vec![vec![0]; 30], &vec![None; 30]);
        assert_eq!(steps(&strategy), 30, "clones share what they learn");
        assert!(Strategy::pct(0).scheduling(1, 2).is_err());
    }
}
