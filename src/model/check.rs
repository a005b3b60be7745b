//! The linearizability search: one part of the history at a time (the
//! model's [`key`](super::Model::key)), depth first over the operations that
//! may go next, with a memo of the (operations done, state) pairs already
//! explored, within a budget of model steps. Failed operations never took
//! effect and are left out; indeterminate ones may go at any time after
//! their invocation, or never.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Model;
use super::violation::{Found, Violation};
use crate::clock::Timestamp;
use crate::outcome::{Ending, History, Operation};
use crate::panic;

/// What a search of one part found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Search {
    Linearizable,
    NotLinearizable,
    /// The budget ran out first.
    GaveUp,
    /// The model panicked on this operation, with this message.
    ModelPanicked(usize, String),
}

pub(super) fn check<M: Model>(model: &M, history: &History, budget: u64) -> Result<(), Violation> {
    let mut parts: HashMap<Option<Vec<u8>>, Vec<&Operation>> = HashMap::new();
    let mut order = Vec::new();
    for op in history.operations() {
        if let crate::outcome::Ending::Failed(error) = op.ending() {
            let may = panic::catch(true, || model.may_fail(op))
                .map_err(|caught| Violation::model_panicked(model, op, caught.message))?;
            if !may {
                return Err(Violation::refused(model, op, error));
            }
            continue;
        }
        let key = panic::catch(true, || model.key(op))
            .map_err(|caught| Violation::model_panicked(model, op, caught.message))?;
        if !parts.contains_key(&key) {
            order.push(key.clone());
        }
        parts.entry(key).or_default().push(op);
    }
    let mut left = budget;
    for key in order {
        let ops = &parts[&key];
        let mut steps = left;
        let found = search(model, ops, &mut steps);
        left = steps;
        match found {
            Search::Linearizable => {}
            Search::GaveUp => return Err(Violation::inconclusive(model, ops, budget)),
            Search::ModelPanicked(at, message) => {
                return Err(Violation::model_panicked(model, ops[at], message));
            }
            Search::NotLinearizable => {
                let witness = smallest(model, ops);
                let origin = ops[0].invoked();
                return Err(Violation::found(
                    model,
                    Found::explain(model, &witness, origin),
                ));
            }
        }
    }
    Ok(())
}

/// Searches one part's operations (in invocation order) for a legal order;
/// each model step spends one of `steps`.
///
/// An operation the model calls read-only (wherever possible, it leaves
/// the state as it is: a read, a claim that lost) goes at once when it may
/// go now and fits, without branching: if any order from here works, one
/// with it first does (nothing had to go before it, and it changes nothing
/// for the others in any state). That keeps barrier-shaped histories,
/// where every operation overlaps every other, from exploring every subset
/// of the losers. An operation that only happens to change nothing now (a
/// write of the value already there) is not one: later it may.
pub(super) fn search<M: Model>(model: &M, ops: &[&Operation], steps: &mut u64) -> Search {
    let mut s = Searcher {
        model,
        ops,
        steps,
        done: vec![0u64; ops.len().div_ceil(64)],
        class: classes(ops),
        read_only: ops.iter().map(|op| model.read_only(op)).collect(),
        class_seen: vec![0; ops.len()],
        generation: 0,
        pending_returns: BTreeMap::new(),
    };
    for op in ops {
        if let Some(r) = op.returned() {
            *s.pending_returns.entry(r).or_insert(0) += 1;
        }
    }
    let needed = ops.iter().filter(|op| op.returned().is_some()).count();
    let init = match panic::catch(true, || model.init()) {
        Ok(state) => state,
        Err(caught) => return Search::ModelPanicked(0, caught.message),
    };
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    match s.frame(init, 0) {
        Ok(frame) => stack.push(frame),
        Err(end) => return end,
    }
    while let Some(frame) = stack.last_mut() {
        if let Some(previous) = frame.chosen.take() {
            s.set(previous, false);
        }
        if frame.determinate_done == needed {
            return Search::Linearizable;
        }
        let Some(next) = frame.candidates.pop() else {
            let frame = stack.pop().expect("the frame just looked at");
            for i in frame.greedy {
                s.set(i, false);
            }
            continue;
        };
        let after = match s.step(&frame.state, next) {
            Ok(Some(state)) => state,
            Ok(None) => continue,
            Err(end) => return end,
        };
        s.set(next, true);
        if seen.len() >= MEMO_MAX {
            return Search::GaveUp;
        }
        if !seen.insert((s.done.clone(), after.clone())) {
            s.set(next, false);
            continue;
        }
        frame.chosen = Some(next);
        let determinate_done = frame.determinate_done + usize::from(ops[next].returned().is_some());
        match s.frame(after, determinate_done) {
            Ok(frame) => stack.push(frame),
            Err(end) => return end,
        }
    }
    Search::NotLinearizable
}

/// One depth of the search: the state there, and what may go next.
struct Frame<S> {
    state: S,
    determinate_done: usize,
    /// Operations still to try here, the earliest invoked last (popped first).
    candidates: Vec<usize>,
    /// The operation tried last, done while deeper frames run.
    chosen: Option<usize>,
    /// Operations taken without branching on the way into this frame.
    greedy: Vec<usize>,
}

struct Searcher<'a, 'o, M> {
    model: &'a M,
    ops: &'a [&'o Operation],
    steps: &'a mut u64,
    done: Vec<u64>,
    /// Each operation's class (see `classes`).
    class: Vec<usize>,
    /// Whether the model calls each operation read-only.
    read_only: Vec<bool>,
    /// Per class, the `generation` of `candidates` that last took one.
    class_seen: Vec<u64>,
    generation: u64,
    /// The return times of the operations not done, counted.
    pending_returns: BTreeMap<Timestamp, usize>,
}

/// Classes of interchangeable operations: the same name, input and ending,
/// and the same place among the others in time — the same operations
/// returned before it was invoked, and the same were invoked by the time
/// it returned. Swapping two of a class in any order gives an order just
/// as legal, with the same states, so the search tries one of each class
/// (the first not done) where it would try them all: 1,000 overlapping
/// `add(1)`s are one choice per depth, not 1,000.
fn classes(ops: &[&Operation]) -> Vec<usize> {
    let mut invoked: Vec<Timestamp> = ops.iter().map(|op| op.invoked()).collect();
    invoked.sort_unstable();
    let mut returned: Vec<Timestamp> = ops.iter().filter_map(|op| op.returned()).collect();
    returned.sort_unstable();
    // Name, input, how it ended (kind and bytes), its place in time.
    type Class<'a> = (&'a str, &'a [u8], u8, &'a [u8], usize, usize);
    let mut ids: HashMap<Class<'_>, usize> = HashMap::new();
    ops.iter()
        .map(|op| {
            // How many returned before it was invoked; how many were
            // invoked by the time it returned (all, if it never did).
            let before = returned.partition_point(|&r| r < op.invoked());
            let after = op
                .returned()
                .map_or(ops.len(), |r| invoked.partition_point(|&i| i <= r));
            let next = ids.len();
            let (kind, ended): (u8, &[u8]) = match op.ending() {
                Ending::Ok(value) => (0, value.bytes()),
                Ending::Failed(error) => (1, error.as_bytes()),
                Ending::Unknown => (2, &[]),
            };
            *ids.entry((op.name(), op.input().bytes(), kind, ended, before, after))
                .or_insert(next)
        })
        .collect()
}

impl<M: Model> Searcher<'_, '_, M> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, done: bool) {
        let returned = self.ops[i].returned();
        if done {
            self.done[i / 64] |= 1 << (i % 64);
            if let Some(r) = returned {
                match self.pending_returns.get_mut(&r) {
                    Some(1) | None => {
                        self.pending_returns.remove(&r);
                    }
                    Some(count) => *count -= 1,
                }
            }
        } else {
            self.done[i / 64] &= !(1 << (i % 64));
            if let Some(r) = returned {
                *self.pending_returns.entry(r).or_insert(0) += 1;
            }
        }
    }

    /// What may go next: not done, and invoked before every operation not
    /// done has returned (one that returned before it was invoked goes
    /// first); with `one_per_class`, only the first of each class.
    /// Earliest invoked last.
    fn candidates(&mut self, one_per_class: bool) -> Vec<usize> {
        let bound = self
            .pending_returns
            .keys()
            .next()
            .copied()
            .unwrap_or(Timestamp::from_nanos(u64::MAX));
        self.generation += 1;
        let mut next = Vec::new();
        // Sorted by invocation: the candidates are a prefix of the rest.
        for i in 0..self.ops.len() {
            if self.ops[i].invoked() > bound {
                break;
            }
            if self.is_done(i) {
                continue;
            }
            if one_per_class {
                let seen = &mut self.class_seen[self.class[i]];
                if *seen == self.generation {
                    continue;
                }
                *seen = self.generation;
            }
            next.push(i);
        }
        next.reverse();
        next
    }

    /// One model step, spending one of the budget: the state after, `None`
    /// if impossible, or the end of the search.
    fn step(&mut self, state: &M::State, i: usize) -> Result<Option<M::State>, Search> {
        if *self.steps == 0 {
            return Err(Search::GaveUp);
        }
        *self.steps -= 1;
        match panic::catch(true, || self.model.step(state, self.ops[i])) {
            Ok(Ok(after)) => Ok(Some(after)),
            Ok(Err(_)) => Ok(None),
            Err(caught) => Err(Search::ModelPanicked(i, caught.message)),
        }
    }

    /// The frame at `state`: first every operation that may go and changes
    /// nothing goes (see `search`), then the rest are its candidates.
    fn frame(
        &mut self,
        state: M::State,
        mut determinate_done: usize,
    ) -> Result<Frame<M::State>, Search> {
        let mut greedy = Vec::new();
        // Whether each class changes nothing here: one step tells for all
        // its members (the state does not move while they go).
        let mut no_op: Vec<(usize, bool)> = Vec::new();
        loop {
            let mut took = false;
            for i in self.candidates(false) {
                if !self.read_only[i] {
                    continue;
                }
                let class = self.class[i];
                let verdict = match no_op.iter().find(|(c, _)| *c == class) {
                    Some(&(_, verdict)) => verdict,
                    None => {
                        let verdict = self.step(&state, i)?.as_ref() == Some(&state);
                        no_op.push((class, verdict));
                        verdict
                    }
                };
                if verdict {
                    self.set(i, true);
                    greedy.push(i);
                    determinate_done += usize::from(self.ops[i].returned().is_some());
                    took = true;
                }
            }
            if !took {
                break;
            }
        }
        Ok(Frame {
            candidates: self.candidates(true),
            state,
            determinate_done,
            chosen: None,
            greedy,
        })
    }
}

/// The most (operations done, state) pairs a search remembers: past it,
/// it gives up (inconclusive) rather than grow without bound.
pub(super) const MEMO_MAX: usize = 500_000;

/// The longest failing prefix whose operations are removed one at a time
/// for a witness; above it, the prefix is the witness.
const WITNESS_MAX: usize = 64;
/// The steps each trial of the witness search may take.
const TRIAL_BUDGET: u64 = 200_000;

/// A small set of `ops` (which have no legal order) that still has none,
/// blaming the right operations. A short failing prefix (in invocation
/// order, found by bisection) ends at an operation that cannot fit, the
/// anchor; others are removed one at a time while the set still fails and
/// would pass without the anchor. When the prefix would pass with its
/// times ignored (the violation is one of order: a read after a remove had
/// returned), a removal must keep that so: removing the `add` that made a
/// later `contains → true` possible would blame the `contains` alone.
pub(super) fn smallest<'a, M: Model>(model: &M, ops: &[&'a Operation]) -> Vec<&'a Operation> {
    let fails = |ops: &[&Operation]| {
        let mut steps = TRIAL_BUDGET;
        search(model, ops, &mut steps) == Search::NotLinearizable
    };
    // Passes, for sure, with its times ignored (a search that gives up
    // proves nothing either way).
    let passes_untimed = |ops: &[&Operation]| {
        let untimed = untimed(ops);
        let refs: Vec<&Operation> = untimed.iter().collect();
        let mut steps = TRIAL_BUDGET;
        search(model, &refs, &mut steps) == Search::Linearizable
    };
    // Bisect for the first failing prefix length, taking the whole as
    // failing; a later operation can make an earlier prefix fit, so this
    // finds a short failing prefix, not always the shortest. When all but
    // the last operation pass (a final read that sees too little), that
    // one search settles it.
    let (mut passes, mut fails_at) = (0, ops.len());
    if ops.len() > 2 && !fails(&ops[..ops.len() - 1]) {
        passes = ops.len() - 1;
    }
    while fails_at - passes > 1 {
        let mid = passes + (fails_at - passes) / 2;
        if fails(&ops[..mid]) {
            fails_at = mid;
        } else {
            passes = mid;
        }
    }
    let mut witness: Vec<&Operation> = ops[..fails_at].to_vec();
    if witness.len() > WITNESS_MAX || !fails(&witness) {
        return witness;
    }
    let of_order = passes_untimed(&witness);
    let mut i = 0;
    while i + 1 < witness.len() {
        let mut without = witness.clone();
        without.remove(i);
        if fails(&without)
            && !fails(&without[..without.len() - 1])
            && (!of_order || passes_untimed(&without))
        {
            witness = without;
        } else {
            i += 1;
        }
    }
    witness
}

/// `ops` with their times made to overlap: each invoked at the earliest
/// invocation, each that returned returning at the latest return.
fn untimed(ops: &[&Operation]) -> Vec<Operation> {
    let first = ops.iter().map(|op| op.invoked()).min().unwrap_or_default();
    let last = ops.iter().filter_map(|op| op.returned()).max();
    ops.iter()
        .map(|op| {
            Operation::new(
                op.child(),
                op.name(),
                op.input().clone(),
                op.ending().clone(),
                first,
                op.returned().and(last),
            )
        })
        .collect()
}
