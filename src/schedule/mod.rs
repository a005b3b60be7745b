//! Controlled scheduling: how a scheduled run picks which child goes on
//! from its step. The parent side's policy is `parent::schedule` (pure,
//! one run); this is the public face, and what carries over from run to
//! run (PCT's estimate of a run's length, the exhaustive search's place).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::parent::Scheduling;

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
                Scheduling::Follow(search.next.clone().unwrap_or_default())
            }
        })
    }

    /// Learns from a run: its passages' children, and the children held at
    /// each.
    pub(crate) fn observe(&self, chosen: &[usize], held: &[Vec<usize>]) {
        match &self.kind {
            Kind::Random => {}
            Kind::Pct { longest, .. } => {
                longest.fetch_max(chosen.len(), Ordering::Relaxed);
            }
            Kind::Exhaustive { bound, search } => {
                let mut search = search.lock().unwrap_or_else(|e| e.into_inner());
                search.runs += 1;
                search.next = next_path(chosen, held, *bound);
            }
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

/// Where an exhaustive search is.
#[derive(Debug)]
struct Search {
    /// The choices the next run follows; `None` when the search is done.
    next: Option<Vec<usize>>,
    runs: u64,
}

impl Default for Search {
    fn default() -> Search {
        Search {
            next: Some(Vec::new()),
            runs: 0,
        }
    }
}

/// The next path of a depth-first search after a run that chose `chosen`
/// with `held` children to choose from at each passage: the same choices up
/// to the deepest passage with an untried alternative (in the order: the
/// choice that preempts nobody, then the others by index) that keeps the
/// preemptions within `bound`, and that alternative. `None` when there is
/// none left.
fn next_path(chosen: &[usize], held: &[Vec<usize>], bound: usize) -> Option<Vec<usize>> {
    let preempts = |i: usize, child: usize| {
        i > 0 && child != chosen[i - 1] && held[i].contains(&chosen[i - 1])
    };
    let candidates = |i: usize| {
        let last = (i > 0).then(|| chosen[i - 1]);
        let first = match last {
            Some(last) if held[i].contains(&last) => last,
            _ => held[i][0],
        };
        std::iter::once(first)
            .chain(held[i].iter().copied().filter(move |&c| c != first))
            .collect::<Vec<usize>>()
    };
    let mut before = vec![0; chosen.len() + 1];
    for i in 0..chosen.len() {
        before[i + 1] = before[i] + usize::from(preempts(i, chosen[i]));
    }
    for i in (0..chosen.len().min(held.len())).rev() {
        let options = candidates(i);
        let at = options.iter().position(|&c| c == chosen[i])?;
        for &child in &options[at + 1..] {
            if before[i] + usize::from(preempts(i, child)) <= bound {
                let mut path = chosen[..i].to_vec();
                path.push(child);
                return Some(path);
            }
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
        let mut seen = Vec::new();
        let mut next = Some(Vec::new());
        while let Some(prefix) = next {
            // Simulate: each child has `steps` passages; a child is held
            // until its passages are used up.
            let mut left = [steps, steps];
            let (mut chosen, mut held) = (Vec::new(), Vec::new());
            let mut last: Option<usize> = None;
            while left.iter().any(|&l| l > 0) {
                let now: Vec<usize> = (0..2).filter(|&c| left[c] > 0).collect();
                let child = match prefix.get(chosen.len()) {
                    Some(&c) => c,
                    None => match last {
                        Some(l) if now.contains(&l) => l,
                        _ => now[0],
                    },
                };
                left[child] -= 1;
                chosen.push(child);
                held.push(now);
                last = Some(child);
            }
            next = next_path(&chosen, &held, bound);
            seen.push(chosen);
            assert!(seen.len() < 10_000, "the search does not end");
        }
        seen
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
        let one = paths(3, 1);
        assert!(one.len() > 2 && one.len() < 20, "{}", one.len());
    }

    #[test]
    fn pct_learns_the_length_of_a_run_and_refuses_depth_zero() {
        let strategy = Strategy::pct(3);
        let steps = |s: &Strategy| match s.scheduling(1, 2).unwrap() {
            Scheduling::Pct { steps, .. } => steps,
            other => panic!("{other:?}"),
        };
        assert_eq!(steps(&strategy), 8, "before any run: 4 per child");
        strategy.clone().observe(&[0; 30], &vec![vec![0]; 30]);
        assert_eq!(steps(&strategy), 30, "clones share what they learn");
        assert!(Strategy::pct(0).scheduling(1, 2).is_err());
    }
}
