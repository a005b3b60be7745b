//! Isolation anomalies in the transactions children recorded
//! (`history::transaction`): what no serial order of the committed
//! transactions could have read, found from their reads and writes alone.
//!
//! Versions of a key are told apart by their values (each write of a key
//! writes a value the key never held: the caller's promise, checked where
//! it can be). Then, in any serial order:
//! - a transaction that read a value another one wrote comes after it
//!   (write → read);
//! - a transaction that read a value comes before one that read the same
//!   value and overwrote it (read → overwrite: that one's write is the
//!   next version);
//! - two that read one version and both overwrote it cannot both be there
//!   (a lost update);
//! - a transaction reads back what it read or wrote itself.
//!
//! A cycle of these orders is an anomaly, named as Adya's and Elle's
//! classes name it: circular information flow (G1c) with write → read
//! orders only, read skew (G-single) with one overwrite, write skew
//! (G2-item) with more. Transactions that rolled back or never ended are
//! left out: what they did is unknown, and nothing is concluded from it.

use std::collections::{HashMap, VecDeque};

use super::violation::{Anomaly, Violation};
use crate::outcome::{Access, Ending, History, Operation, Recorded, recorded};

/// A committed transaction: its operation and what it did.
struct Txn<'h> {
    op: &'h Operation,
    accesses: Vec<Access>,
}

/// Why one transaction comes before another.
#[derive(Clone, Copy)]
enum Why {
    /// `to` read the value `from` wrote: the access of `to` (a read).
    WriteRead { read: usize },
    /// `from` read a value `to` overwrote: the read of `from`, the write
    /// of `to`.
    ReadOverwrite { read: usize, write: usize },
    /// `from` read the key's value from before the run (no committed
    /// transaction wrote it), which `to`'s write came after.
    FirstValue { read: usize, write: usize },
}

/// One key's version as a transaction saw it: (transaction, access).
type Seen = (usize, usize);

/// Everything known of one version (a key's value).
#[derive(Default)]
struct Version {
    /// Transactions whose last write of the key wrote it.
    written: Vec<Seen>,
    /// Transactions that wrote it and then wrote the key again.
    overwritten_within: Vec<Seen>,
    /// Transactions whose first access to the key read it.
    read: Vec<Seen>,
    /// Of those, the ones that then wrote the key: (read, last write).
    read_then_wrote: Vec<(usize, usize, usize)>,
}

/// Orders from reads of a key's first value (to every writer of the key)
/// added at most: beyond, they are left out (fewer anomalies found, none
/// false).
const FIRST_VALUE_ORDERS: usize = 1_000_000;

pub(crate) fn check(history: &History) -> Result<(), Violation> {
    let mut txns = Vec::new();
    // Whether some transaction never ended: what it wrote is unknown.
    let mut unknown = false;
    for op in history.operations() {
        match recorded(op) {
            Ok(Recorded::Committed(mut accesses)) => {
                // Values are compared as they print: `1i32` and `1i64`, or
                // a column read as one type and written as another, are
                // one value of the database.
                for access in &mut accesses {
                    access.value = access.text.as_bytes().to_vec();
                }
                txns.push(Txn { op, accesses });
            }
            Ok(Recorded::Other) => unknown |= matches!(op.ending(), Ending::Unknown),
            Ok(Recorded::NotOne) => {}
            Err(why) => return Err(Violation::unreadable(op, why)),
        }
    }
    if txns.is_empty() {
        let ended = history
            .operations()
            .iter()
            .filter(|op| !matches!(recorded(op), Ok(Recorded::NotOne)))
            .count();
        return Err(Violation::ambiguous(
            format!(
                "no committed transaction was recorded ({ended} that rolled back or never \
                 ended, of {} operations): there is nothing to check. Record each with \
                 history::transaction in the children, and end it with commit()",
                history.len()
            ),
            Vec::new(),
        ));
    }
    let origin = history.operations().first().map(Operation::invoked);
    let checker = Checker::new(&txns, origin.unwrap_or_default());
    if let Some(found) = checker.internal() {
        return Err(found);
    }
    let mut ambiguous = Vec::new();
    let mut edges: Vec<Vec<(usize, Why)>> = vec![Vec::new(); txns.len()];
    for (key, value) in checker.in_order() {
        let version = &checker.versions[&(key, value)];
        if !version.read.is_empty() {
            if let Some(found) = checker.ambiguity(key, value, version) {
                ambiguous.push(found);
                continue;
            }
        }
        if let Some(found) = checker.intermediate_read(version) {
            return Err(found);
        }
        if let Some(found) = checker.lost_update(version) {
            return Err(found);
        }
        for &(reader, read) in &version.read {
            if let [(writer, _)] = version.written[..] {
                if writer != reader {
                    edges[writer].push((reader, Why::WriteRead { read }));
                }
            }
            for &(next, _, write) in &version.read_then_wrote {
                if next != reader {
                    edges[reader].push((next, Why::ReadOverwrite { read, write }));
                }
            }
        }
    }
    if !unknown {
        match checker.first_values(&mut edges) {
            Ok(()) => {}
            Err(found) => ambiguous.push(found),
        }
    }
    for out in &mut edges {
        // One order per pair, write → read first: the weakest class.
        out.sort_by_key(|&(to, why)| (to, !matches!(why, Why::WriteRead { .. })));
        out.dedup_by_key(|&mut (to, _)| to);
    }
    // Circular information flow first (write → read orders alone): the
    // most severe class, even when a shorter cycle of another class exists.
    let information: Vec<Vec<(usize, Why)>> = edges
        .iter()
        .map(|out| {
            out.iter()
                .copied()
                .filter(|(_, why)| matches!(why, Why::WriteRead { .. }))
                .collect()
        })
        .collect();
    if let Some(cycle) = shortest_cycle(&information).or_else(|| shortest_cycle(&edges)) {
        return Err(checker.cycle(&cycle));
    }
    match ambiguous.into_iter().next() {
        Some(found) => Err(found),
        None => Ok(()),
    }
}

struct Checker<'t, 'h> {
    txns: &'t [Txn<'h>],
    /// Per (key, value as it prints).
    versions: HashMap<(&'t str, &'t [u8]), Version>,
    /// Versions a key came back to: on a cycle of read-then-overwrite
    /// steps (100 → 90 → 100), each with its cycle's component.
    returns_to: HashMap<(&'t str, &'t [u8]), usize>,
    /// (child, name) of more than one transaction (a `Load` worker's):
    /// each is named with its time too.
    repeated: std::collections::HashSet<(usize, &'h str)>,
    /// The history's first invocation, for those times (as the history's
    /// own listing shows them).
    origin: crate::clock::Timestamp,
}

impl<'t, 'h> Checker<'t, 'h> {
    fn new(txns: &'t [Txn<'h>], origin: crate::clock::Timestamp) -> Checker<'t, 'h> {
        let mut versions: HashMap<(&str, &[u8]), Version> = HashMap::new();
        for (t, txn) in txns.iter().enumerate() {
            // Per key: the first access (if a read) and the writes, in order.
            let mut first: HashMap<&str, usize> = HashMap::new();
            let mut writes: HashMap<&str, Vec<usize>> = HashMap::new();
            for (a, access) in txn.accesses.iter().enumerate() {
                first.entry(access.key.as_str()).or_insert(a);
                if access.write {
                    writes.entry(access.key.as_str()).or_default().push(a);
                }
            }
            for (key, a) in first {
                let access = &txn.accesses[a];
                if access.write {
                    continue;
                }
                let version = versions.entry((key, &access.value)).or_default();
                version.read.push((t, a));
                if let Some(&last) = writes.get(key).and_then(|w| w.last()) {
                    version.read_then_wrote.push((t, a, last));
                }
            }
            for (key, ws) in writes {
                let (&last, earlier) = ws.split_last().expect("a key with writes has one");
                let value = &txn.accesses[last].value;
                versions
                    .entry((key, value))
                    .or_default()
                    .written
                    .push((t, last));
                for &w in earlier {
                    let v = &txn.accesses[w].value;
                    if v != value {
                        versions
                            .entry((key, v))
                            .or_default()
                            .overwritten_within
                            .push((t, w));
                    }
                }
            }
        }
        let returns_to = returns_to(txns, &versions);
        let mut named: HashMap<(usize, &str), usize> = HashMap::new();
        for txn in txns {
            *named.entry((txn.op.child(), txn.op.name())).or_default() += 1;
        }
        Checker {
            txns,
            versions,
            returns_to,
            repeated: named
                .into_iter()
                .filter(|&(_, n)| n > 1)
                .map(|(k, _)| k)
                .collect(),
            origin,
        }
    }

    /// The versions, by key and then by the first transaction that saw
    /// them: a report names the same one from run to run.
    fn in_order(&self) -> Vec<(&'t str, &'t [u8])> {
        let mut order: Vec<_> = self
            .versions
            .iter()
            .map(|(&v, version)| {
                let first = version
                    .read
                    .iter()
                    .chain(&version.written)
                    .chain(&version.overwritten_within)
                    .min();
                (v.0, first, v)
            })
            .collect();
        order.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        order.into_iter().map(|(_, _, v)| v).collect()
    }

    fn op(&self, t: usize) -> &'h Operation {
        self.txns[t].op
    }

    fn access(&self, (t, a): Seen) -> &'t Access {
        &self.txns[t].accesses[a]
    }

    /// `child 2's spend`; `child 2's spend at 1.250 ms` when child 2 ran
    /// more than one `spend` (a `Load` worker).
    fn who(&self, t: usize) -> String {
        let op = self.op(t);
        if self.repeated.contains(&(op.child(), op.name())) {
            let ms = op.invoked().duration_since(self.origin).as_secs_f64() * 1e3;
            format!("child {}'s {} at {ms:.3} ms", op.child(), op.name())
        } else {
            format!("child {}'s {}", op.child(), op.name())
        }
    }

    /// A transaction that read back, within itself, another value than
    /// the one it last read or wrote of that key.
    fn internal(&self) -> Option<Violation> {
        for (t, txn) in self.txns.iter().enumerate() {
            let mut last: HashMap<&str, usize> = HashMap::new();
            for (a, access) in txn.accesses.iter().enumerate() {
                if let Some(&before) = last.get(access.key.as_str()) {
                    let earlier = &txn.accesses[before];
                    if !access.write && access.value != earlier.value {
                        let what = if earlier.write { "wrote" } else { "read" };
                        let name = if earlier.write {
                            "a read of its own write that saw another value"
                        } else {
                            "a non-repeatable read"
                        };
                        return Some(Violation::anomaly(Anomaly {
                            name: name.into(),
                            witness: vec![self.op(t).clone()],
                            steps: vec![format!(
                                "{} {what} {key} = {}, then read {key} = {} within the same \
                                 transaction: in a serial order nothing else runs between the two",
                                self.who(t),
                                earlier.text,
                                access.text,
                                key = access.key,
                            )],
                        }));
                    }
                }
                last.insert(&access.key, a);
            }
        }
        None
    }

    /// A version read that more than one transaction wrote, or that a
    /// transaction read and wrote again: whose it is cannot be told.
    fn ambiguity(&self, key: &str, value: &[u8], version: &Version) -> Option<Violation> {
        let mut producers: Vec<usize> = version
            .written
            .iter()
            .chain(&version.overwritten_within)
            .map(|&(t, _)| t)
            .collect();
        producers.sort_unstable();
        producers.dedup();
        // A transaction that read the value and wrote it back made it a
        // second time (the first one before it read it).
        let rewritten = version.read.iter().find(|&&(t, _)| producers.contains(&t));
        let other_reader = |t: usize| version.read.iter().any(|&(r, _)| r != t);
        let text = &self.access(version.read[0]).text;
        let why = if producers.len() >= 2 {
            const NAMED: usize = 4;
            let mut makers: Vec<String> =
                producers.iter().take(NAMED).map(|&t| self.who(t)).collect();
            if producers.len() > NAMED {
                makers.push(format!("{} more", producers.len() - NAMED));
            }
            format!("{} each wrote it", makers.join(" and "))
        } else if let Some(&(t, _)) = rewritten.filter(|&&(t, _)| other_reader(t)) {
            format!(
                "{} read it and wrote it back, so it was there twice",
                self.who(t)
            )
        } else if let Some(&(reader, _)) = version.read.iter().find(|&&(r, _)| {
            producers.len() == 1
                && r != producers[0]
                && self
                    .op(r)
                    .returned()
                    .is_some_and(|end| end < self.op(producers[0]).invoked())
        }) {
            format!(
                "{} read it before {}, its only writer, began: it was there before",
                self.who(reader),
                self.who(producers[0])
            )
        } else if self.returns_to.contains_key(&(key, value)) {
            format!(
                "the key came back to it, read then overwritten step by step ({}): either it \
                 held that value twice, or these transactions each read another's write \
                 (circular information flow)",
                self.round(key, value)
            )
        } else {
            return None;
        };
        let mut witness: Vec<Operation> = producers.iter().map(|&t| self.op(t).clone()).collect();
        witness.extend(version.read.iter().map(|&(t, _)| self.op(t).clone()));
        witness.sort_by_key(|op| (op.invoked(), op.child()));
        witness.dedup();
        Some(Violation::ambiguous(
            format!(
                "{key} = {text} was read, but it cannot be told which write it was: {why}. \
                 Versions are told apart by their values: make each write of a key write a \
                 value it never held (a version column, a counter, an id)"
            ),
            witness,
        ))
    }

    /// `100 → 90 → 100`: the shortest way from `value` back to it through
    /// read-then-overwrite steps (at most a few shown).
    fn round(&self, key: &str, value: &[u8]) -> String {
        const SHOWN: usize = 6;
        let component = self.returns_to[&(key, value)];
        // Breadth first from `value`, within its component: the version
        // each was reached from.
        let mut came: HashMap<&[u8], &[u8]> = HashMap::new();
        let mut queue = VecDeque::from([value]);
        'search: while let Some(at) = queue.pop_front() {
            for &(t, _, w) in &self.versions[&(key, at)].read_then_wrote {
                let next = self.txns[t].accesses[w].value.as_slice();
                if self.returns_to.get(&(key, next)) != Some(&component) {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = came.entry(next) {
                    e.insert(at);
                    if next == value {
                        break 'search;
                    }
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![value];
        let mut at = came[value];
        while at != value {
            path.push(at);
            at = came[at];
        }
        path.push(value);
        path.reverse();
        let shown: Vec<String> = path
            .iter()
            .take(SHOWN)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let more = if path.len() > SHOWN { " → …" } else { "" };
        format!("{}{more}", shown.join(" → "))
    }

    /// The orders a read of a key's value from before the run gives: the
    /// value no committed transaction wrote is the key's first, so its
    /// readers come before every writer of the key. Two such values of one
    /// key cannot both be first: inconclusive.
    fn first_values(&self, edges: &mut [Vec<(usize, Why)>]) -> Result<(), Violation> {
        let mut keys: HashMap<&str, (Vec<&[u8]>, Vec<Seen>)> = HashMap::new();
        for ((key, value), version) in &self.versions {
            let entry = keys.entry(key).or_default();
            if version.written.is_empty() && version.overwritten_within.is_empty() {
                if !version.read.is_empty() {
                    entry.0.push(value);
                }
            } else {
                entry.1.extend(&version.written);
                entry.1.extend(&version.overwritten_within);
            }
        }
        let mut added = 0;
        let mut keys: Vec<_> = keys.into_iter().collect();
        keys.sort_unstable_by_key(|(key, _)| *key);
        for (key, (mut firsts, writes)) in keys {
            firsts.sort_unstable_by_key(|v| self.versions[&(key, *v)].read.iter().min().copied());
            match firsts[..] {
                [] => {}
                [first] => {
                    for &(reader, read) in &self.versions[&(key, first)].read {
                        for &(writer, write) in &writes {
                            if writer != reader && added < FIRST_VALUE_ORDERS {
                                edges[reader].push((writer, Why::FirstValue { read, write }));
                                added += 1;
                            }
                        }
                    }
                }
                [a, b, ..] => {
                    let (ra, rb) = (
                        self.versions[&(key, a)].read[0],
                        self.versions[&(key, b)].read[0],
                    );
                    return Err(Violation::ambiguous(
                        format!(
                            "{key} = {} and {key} = {} were both read, yet no committed \
                             transaction wrote either: only one can be its value before the \
                             run (the other was written by a transaction that rolled back, or \
                             recorded as another value than the database holds)",
                            self.access(ra).text,
                            self.access(rb).text
                        ),
                        self.ops(&[ra.0, rb.0]),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A read of a value its writer overwrote before committing (G1b).
    fn intermediate_read(&self, version: &Version) -> Option<Violation> {
        let &(writer, write) = version.overwritten_within.first()?;
        let &(reader, read) = version.read.iter().find(|&&(r, _)| r != writer)?;
        let w = self.access((writer, write));
        Some(Violation::anomaly(Anomaly {
            name: "intermediate read (G1b)".into(),
            witness: self.ops(&[writer, reader]),
            steps: vec![format!(
                "{} read {} = {}, which {} wrote and then overwrote before it committed: \
                 no transaction may see another's uncommitted state",
                self.who(reader),
                w.key,
                self.access((reader, read)).text,
                self.who(writer),
            )],
        }))
    }

    /// Two transactions that read one version and both overwrote it.
    fn lost_update(&self, version: &Version) -> Option<Violation> {
        let [(a, read, a_write), (b, _, b_write), ..] = version.read_then_wrote[..] else {
            return None;
        };
        let r = self.access((a, read));
        let (wa, wb) = (self.access((a, a_write)), self.access((b, b_write)));
        Some(Violation::anomaly(Anomaly {
            name: format!("lost update on {}", r.key),
            witness: self.ops(&[a, b]),
            steps: vec![
                format!(
                    "{} read {} = {} and wrote {}",
                    self.who(a),
                    r.key,
                    r.text,
                    wa.text
                ),
                format!(
                    "{} read {} = {} too, and wrote {}",
                    self.who(b),
                    r.key,
                    r.text,
                    wb.text
                ),
                format!(
                    "in a serial order one of them runs second and reads the other's write or a later one; \
                     both read {}, so one update is lost",
                    r.text
                ),
            ],
        }))
    }

    /// A cycle of orders, classified and explained order by order.
    fn cycle(&self, cycle: &[(usize, usize, Why)]) -> Violation {
        let overwrites = cycle
            .iter()
            .filter(|(_, _, why)| !matches!(why, Why::WriteRead { .. }))
            .count();
        let name = match overwrites {
            0 => "circular information flow (G1c)",
            1 => "read skew (G-single)",
            _ => "write skew (G2-item)",
        };
        let mut steps: Vec<String> = cycle
            .iter()
            .map(|&(from, to, why)| match why {
                Why::WriteRead { read } => {
                    let r = self.access((to, read));
                    format!(
                        "{} read {} = {}, which {} wrote: {} comes after it",
                        self.who(to),
                        r.key,
                        r.text,
                        self.who(from),
                        self.who(to)
                    )
                }
                Why::FirstValue { read, write } => {
                    let (r, w) = (self.access((from, read)), self.access((to, write)));
                    format!(
                        "{} read {} = {}, which no transaction wrote (its value before the \
                         run), and {} wrote {} = {}: {} comes before it",
                        self.who(from),
                        r.key,
                        r.text,
                        self.who(to),
                        w.key,
                        w.text,
                        self.who(from)
                    )
                }
                Why::ReadOverwrite { read, write } => {
                    let r = self.access((from, read));
                    format!(
                        "{} read {} = {}, which {} overwrote with {}: {} comes before it",
                        self.who(from),
                        r.key,
                        r.text,
                        self.who(to),
                        self.access((to, write)).text,
                        self.who(from)
                    )
                }
            })
            .collect();
        steps.push(format!(
            "these {} orders form a cycle: no serial order of the transactions has them all",
            cycle.len()
        ));
        let txns: Vec<usize> = cycle.iter().map(|&(from, _, _)| from).collect();
        Violation::anomaly(Anomaly {
            name: name.into(),
            witness: self.ops(&txns),
            steps,
        })
    }

    fn ops(&self, txns: &[usize]) -> Vec<Operation> {
        txns.iter().map(|&t| self.op(t).clone()).collect()
    }
}

/// The versions on a cycle of read-then-overwrite steps: a key that came
/// back to a value it held.
fn returns_to<'t>(
    txns: &'t [Txn<'_>],
    versions: &HashMap<(&'t str, &'t [u8]), Version>,
) -> HashMap<(&'t str, &'t [u8]), usize> {
    let nodes: Vec<(&str, &[u8])> = versions.keys().copied().collect();
    let index: HashMap<(&str, &[u8]), usize> =
        nodes.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    let edges: Vec<Vec<(usize, ())>> = nodes
        .iter()
        .map(|v| {
            versions[v]
                .read_then_wrote
                .iter()
                .map(|&(t, _, w)| {
                    let next = (v.0, txns[t].accesses[w].value.as_slice());
                    (index[&next], ())
                })
                .collect()
        })
        .collect();
    let component = components(&edges);
    let mut size = vec![0usize; nodes.len()];
    for &c in &component {
        size[c] += 1;
    }
    nodes
        .into_iter()
        .zip(&component)
        .filter(|&(_, &c)| size[c] > 1)
        .map(|(v, &c)| (v, c))
        .collect()
}

/// Edges a search for a shorter cycle may visit, over all its
/// breadth-first searches, once one cycle is known: a large strongly
/// connected component is not searched from every node (quadratic).
const CYCLE_SEARCH: usize = 2_000_000;

/// A shortest cycle of `edges` (adjacency lists, by node) as (from, to,
/// why) steps: a cycle of two if there is one, else the shortest found by
/// breadth-first searches within strongly connected components, from each
/// node in turn while [`CYCLE_SEARCH`] lasts (the first search of a
/// component always finds a cycle through its start).
fn shortest_cycle(edges: &[Vec<(usize, Why)>]) -> Option<Vec<(usize, usize, Why)>> {
    let component = components(edges);
    let mut size = vec![0usize; edges.len()];
    for &c in &component {
        size[c] += 1;
    }
    let back: HashMap<(usize, usize), Why> = edges
        .iter()
        .enumerate()
        .flat_map(|(from, out)| out.iter().map(move |&(to, why)| ((from, to), why)))
        .collect();
    for (from, out) in edges.iter().enumerate() {
        for &(to, why) in out {
            if let Some(&again) = back.get(&(to, from)).filter(|_| to != from) {
                return Some(vec![(from, to, why), (to, from, again)]);
            }
        }
    }
    let mut best: Option<Vec<(usize, usize, Why)>> = None;
    let mut left = CYCLE_SEARCH;
    for start in (0..edges.len()).filter(|&n| size[component[n]] > 1) {
        if best.is_some() && left == 0 {
            break;
        }
        let mut came: HashMap<usize, (usize, Why)> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'bfs: while let Some(at) = queue.pop_front() {
            for &(to, why) in &edges[at] {
                left = left.saturating_sub(1);
                if component[to] != component[start] {
                    continue;
                }
                if to == start {
                    closing = Some((at, why));
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = came.entry(to) {
                    e.insert((at, why));
                    queue.push_back(to);
                }
            }
        }
        let Some((last, why)) = closing else {
            continue;
        };
        let mut steps = vec![(last, start, why)];
        let mut at = last;
        while at != start {
            let (from, why) = came[&at];
            steps.push((from, at, why));
            at = from;
        }
        steps.reverse();
        if best.as_ref().is_none_or(|b| steps.len() < b.len()) {
            best = Some(steps);
        }
    }
    best
}

/// Each node's strongly connected component (Tarjan's, without recursion).
fn components<T>(edges: &[Vec<(usize, T)>]) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let n = edges.len();
    let (mut index, mut low, mut component) = (vec![NONE; n], vec![0; n], vec![NONE; n]);
    let (mut stack, mut on_stack) = (Vec::new(), vec![false; n]);
    let (mut next, mut count) = (0, 0);
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0)];
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if *e == 0 && index[v] == NONE {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&(w, _)) = edges[v].get(*e) {
                *e += 1;
                if index[w] == NONE {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = count;
                    if w == v {
                        break;
                    }
                }
                count += 1;
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Timestamp;
    use crate::outcome::{Ending, Value};

    /// `"r x 1"`, `"w x 2"`: an access of an `i64`.
    fn access(text: &str) -> Access {
        let parts: Vec<&str> = text.split(' ').collect();
        let [kind, key, value] = parts[..] else {
            panic!("{text}")
        };
        Access::of(kind == "w", key, &value.parse::<i64>().unwrap())
    }

    /// A transaction of `child` from `start` to `end` µs that committed
    /// having done `accesses`.
    fn txn(child: usize, start: u64, end: u64, accesses: &[&str]) -> Operation {
        ended(
            child,
            start,
            end,
            Ending::committed(accesses.iter().map(|a| access(a)).collect()),
        )
    }

    fn ended(child: usize, start: u64, end: u64, ending: Ending) -> Operation {
        let t0 = Timestamp::from_nanos(1_000_000);
        Operation::new(
            child,
            "t",
            Value::transaction(),
            ending,
            t0.later_by(Duration::from_micros(start)),
            Some(t0.later_by(Duration::from_micros(end))),
        )
    }

    fn checked(ops: Vec<Operation>) -> Result<(), Violation> {
        check(&History::new(ops))
    }

    fn children(v: &Violation) -> Vec<usize> {
        v.witness().iter().map(Operation::child).collect()
    }

    #[test]
    fn a_lost_update_is_named_with_both_transactions_and_what_they_read() {
        let v = checked(vec![
            txn(0, 0, 10, &["r c 0", "w c 1"]),
            txn(1, 1, 11, &["r c 0", "w c 1"]),
        ])
        .unwrap_err();
        assert_eq!(
            v.to_string(),
            "not serializable: lost update on c: no serial order of these 2 committed \
             transactions of 2 children gives what they read:\n  \
             child 0  0.000–0.010 ms  t(transaction) → r c=0, w c=1\n  \
             child 1  0.001–0.011 ms  t(transaction) → r c=0, w c=1\n\
             - child 0's t read c = 0 and wrote 1\n\
             - child 1's t read c = 0 too, and wrote 1\n\
             - in a serial order one of them runs second and reads the other's write or a later one; \
             both read 0, so one update is lost\n"
        );
        assert_eq!(v.model(), "serializability");
        assert!(!v.is_inconclusive());
    }

    #[test]
    fn increments_in_turn_pass_and_one_reading_the_older_value_does_not() {
        let serial = vec![
            txn(0, 0, 10, &["r c 0", "w c 1"]),
            txn(1, 5, 20, &["r c 1", "w c 2"]),
            txn(2, 6, 30, &["r c 2", "w c 3"]),
        ];
        assert!(checked(serial.clone()).is_ok());
        let mut lost = serial;
        lost.push(txn(3, 7, 40, &["r c 1", "w c 7"]));
        let v = checked(lost).unwrap_err();
        assert_eq!(children(&v), [1, 3], "{v}");
    }

    #[test]
    fn two_doctors_going_off_call_are_write_skew_and_one_after_the_other_is_not() {
        let skew = checked(vec![
            txn(0, 0, 10, &["r d1 1", "r d2 1", "w d1 0"]),
            txn(1, 1, 11, &["r d1 1", "r d2 1", "w d2 0"]),
        ])
        .unwrap_err();
        let text = skew.to_string();
        assert!(
            text.starts_with("not serializable: write skew (G2-item)"),
            "{text}"
        );
        assert!(
            text.contains("- child 0's t read d2 = 1, which child 1's t overwrote with 0: child 0's t comes before it"),
            "{text}"
        );
        assert!(text.contains("these 2 orders form a cycle"), "{text}");
        assert_eq!(skew.witness().len(), 2);
        // The second one saw the first go off call, and stayed.
        assert!(
            checked(vec![
                txn(0, 0, 10, &["r d1 1", "r d2 1", "w d1 0"]),
                txn(1, 11, 20, &["r d1 0", "r d2 1"]),
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_read_of_half_a_transfer_is_read_skew() {
        // The writer moves x and y from 0 to 1; the reader sees old x, new y.
        let v = checked(vec![
            txn(0, 0, 10, &["r x 0", "w x 1", "r y 0", "w y 1"]),
            txn(1, 1, 11, &["r x 0", "r y 1"]),
        ])
        .unwrap_err();
        let text = v.to_string();
        assert!(text.contains("read skew (G-single)"), "{text}");
        assert!(
            text.contains(
                "child 1's t read y = 1, which child 0's t wrote: child 1's t comes after it"
            ),
            "{text}"
        );
        // Both old, or both new: fine.
        assert!(
            checked(vec![
                txn(0, 0, 10, &["r x 0", "w x 1", "r y 0", "w y 1"]),
                txn(1, 1, 11, &["r x 1", "r y 1"]),
                txn(2, 1, 11, &["r x 0", "r y 0"]),
            ])
            .is_ok()
        );
    }

    #[test]
    fn each_reading_the_others_write_is_circular_information_flow() {
        let v = checked(vec![
            txn(0, 0, 10, &["w x 1", "r y 2"]),
            txn(1, 1, 11, &["r x 1", "w y 2"]),
        ])
        .unwrap_err();
        assert!(
            v.to_string().contains("circular information flow (G1c)"),
            "{v}"
        );
    }

    #[test]
    fn a_three_transaction_cycle_is_found_and_the_shortest_cycle_is_shown() {
        // 0 → 1 → 2 → 0 by reads of writes.
        let three = vec![
            txn(0, 0, 10, &["w a 1", "r c 3"]),
            txn(1, 0, 10, &["r a 1", "w b 2"]),
            txn(2, 0, 10, &["r b 2", "w c 3"]),
        ];
        let v = checked(three.clone()).unwrap_err();
        assert_eq!(v.witness().len(), 3, "{v}");
        assert!(v.to_string().contains("these 3 orders form a cycle"), "{v}");
        // Child 3 and child 0 also read each other's writes: 2 are enough.
        let mut more = three;
        more.push(txn(3, 0, 10, &["w d 4", "r a 1"]));
        more[0] = txn(0, 0, 10, &["w a 1", "r c 3", "r d 4"]);
        let v = checked(more).unwrap_err();
        assert_eq!(children(&v).len(), 2, "{v}");
    }

    #[test]
    fn a_read_of_a_value_overwritten_before_commit_is_an_intermediate_read() {
        let v = checked(vec![
            txn(0, 0, 10, &["w x 1", "w x 2"]),
            txn(1, 1, 11, &["r x 1"]),
        ])
        .unwrap_err();
        assert!(v.to_string().contains("intermediate read (G1b)"), "{v}");
        assert!(
            checked(vec![
                txn(0, 0, 10, &["w x 1", "w x 2"]),
                txn(1, 1, 11, &["r x 2"]),
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_transaction_that_reads_back_another_value_is_caught_alone() {
        let v = checked(vec![txn(0, 0, 10, &["r x 1", "r x 2"])]).unwrap_err();
        assert!(v.to_string().contains("a non-repeatable read"), "{v}");
        assert!(
            v.to_string()
                .contains("child 0's t read x = 1, then read x = 2"),
            "{v}"
        );
        let v = checked(vec![txn(0, 0, 10, &["w x 5", "r x 6"])]).unwrap_err();
        assert!(
            v.to_string()
                .contains("child 0's t wrote x = 5, then read x = 6"),
            "{v}"
        );
        assert!(checked(vec![txn(0, 0, 10, &["r x 1", "w x 5", "r x 5"])]).is_ok());
    }

    #[test]
    fn a_value_written_twice_and_read_is_inconclusive_naming_it_never_a_pass() {
        let v = checked(vec![
            txn(0, 0, 10, &["w x 1"]),
            txn(1, 0, 10, &["w x 1"]),
            txn(2, 20, 30, &["r x 1"]),
        ])
        .unwrap_err();
        assert!(v.is_inconclusive());
        let text = v.to_string();
        assert!(
            text.starts_with("inconclusive under serializability: x = 1 was read, but it cannot be told which write it was: child 0's t and child 1's t each wrote it"),
            "{text}"
        );
        assert_eq!(children(&v), [0, 1, 2]);
        // Written twice but never read: nothing depends on it.
        assert!(checked(vec![txn(0, 0, 10, &["w x 1"]), txn(1, 0, 10, &["w x 1"])]).is_ok());
    }

    #[test]
    fn a_balance_back_where_it_was_is_inconclusive_not_a_false_cycle() {
        // 100 → 90 (child 0), 90 → 100 (child 1), overlapping: the 100
        // child 0 read may be either; read as child 1's, it would make a
        // cycle with child 0.
        let v = checked(vec![
            txn(0, 0, 10, &["r b 100", "w b 90"]),
            txn(1, 5, 30, &["r b 90", "w b 100"]),
        ])
        .unwrap_err();
        assert!(v.is_inconclusive(), "{v}");
        assert!(
            v.to_string().contains(
                "b = 100 was read, but it cannot be told which write it was: the key came back \
                 to it, read then overwritten step by step (100 → 90 → 100): either it held \
                 that value twice, or these transactions each read another's write"
            ),
            "{v}"
        );
        // Read and written back unchanged, with another reader of it.
        let v = checked(vec![
            txn(0, 0, 10, &["r b 100", "w b 100"]),
            txn(1, 20, 30, &["r b 100"]),
        ])
        .unwrap_err();
        assert!(
            v.to_string()
                .contains("child 0's t read it and wrote it back"),
            "{v}"
        );
    }

    #[test]
    fn a_value_read_before_its_only_writer_began_was_there_before_it_inconclusive() {
        // A job requeued by a blind write of its first status: the first
        // claim read "pending" before the requeue began.
        let v = checked(vec![
            txn(0, 0, 10, &["r job 0", "w job 1"]),
            txn(1, 20, 30, &["w job 0"]),
            txn(2, 40, 50, &["r job 0", "w job 2"]),
        ])
        .unwrap_err();
        assert!(v.is_inconclusive(), "{v}");
        assert!(
            v.to_string().contains("job = 0 was read, but it cannot be told which write it was: child 0's t read it before child 1's t, its only writer, began: it was there before"),
            "{v}"
        );
    }

    #[test]
    fn values_are_compared_as_they_print() {
        let typed = |kind: &str, key: &str, v: i64, small: bool| {
            if small {
                Access::of(kind == "w", key, &(v as i32))
            } else {
                Access::of(kind == "w", key, &v)
            }
        };
        let t = |child, accesses: Vec<Access>| ended(child, 0, 10, Ending::committed(accesses));
        // Written as an i64, read back as an i32: the same value.
        assert!(
            checked(vec![t(
                0,
                vec![typed("w", "x", 1, false), typed("r", "x", 1, true)]
            )])
            .is_ok()
        );
        // Two readers of 0, one recorded as an i32: still a lost update.
        let v = checked(vec![
            t(
                0,
                vec![typed("r", "c", 0, false), typed("w", "c", 1, false)],
            ),
            t(1, vec![typed("r", "c", 0, true), typed("w", "c", 2, false)]),
        ])
        .unwrap_err();
        assert!(v.to_string().contains("lost update on c"), "{v}");
    }

    #[test]
    fn a_cycle_is_named_by_its_weakest_class_whatever_the_keys_are_called() {
        // Child 1 read a = 0 and overwrote it (read → overwrite from 0) and
        // wrote c, which 0 read (write → read); 0 wrote b, which 1 read:
        // a cycle of write → read orders alone exists: G1c.
        for a in ["a", "z"] {
            let (r0, w1) = (format!("r {a} 0"), format!("w {a} 9"));
            let r1 = format!("r {a} 0");
            let v = checked(vec![
                txn(0, 0, 10, &[&r0, "w b 1", "r c 2"]),
                txn(1, 0, 10, &[&r1, &w1, "r b 1", "w c 2"]),
            ])
            .unwrap_err();
            assert!(
                v.to_string().contains("circular information flow (G1c)"),
                "{a}: {v}"
            );
        }
        // A G1c of three is named before a shorter read skew of two.
        let v = checked(vec![
            txn(0, 0, 10, &["w a 1", "r c 3", "r z 0", "w z 5"]),
            txn(1, 0, 10, &["r a 1", "w b 2"]),
            txn(2, 0, 10, &["r b 2", "w c 3"]),
            txn(3, 0, 10, &["r z 0", "r a 1"]),
        ])
        .unwrap_err();
        assert!(
            v.to_string().contains("circular information flow (G1c)"),
            "{v}"
        );
        assert_eq!(v.witness().len(), 3, "{v}");
    }

    #[test]
    fn the_way_a_key_came_back_is_shown_as_the_shortest_round() {
        // Two loops on x: 1 → 2 → 1 and 5 → 6 → 5 (reached from 1).
        let v = checked(vec![
            txn(0, 0, 10, &["r x 1", "w x 5"]),
            txn(1, 0, 10, &["r x 5", "w x 6"]),
            txn(2, 0, 10, &["r x 6", "w x 5"]),
            txn(3, 0, 10, &["r x 1", "w x 2"]),
            txn(4, 0, 10, &["r x 2", "w x 1"]),
        ])
        .unwrap_err();
        let text = v.to_string();
        assert!(
            text.contains("(1 → 2 → 1)")
                || text.contains("(5 → 6 → 5)")
                || text.contains("(6 → 5 → 6)")
                || text.contains("(2 → 1 → 2)"),
            "{text}"
        );
    }

    #[test]
    fn blind_writes_read_half_before_and_half_after_are_read_skew() {
        // Child 0 writes b and a without reading them; child 1 reads the
        // new a and the b from before the run.
        let v = checked(vec![
            txn(0, 0, 10, &["w b 1", "w a 2"]),
            txn(1, 0, 10, &["r a 2", "r b 0"]),
        ])
        .unwrap_err();
        let text = v.to_string();
        assert!(text.contains("read skew (G-single)"), "{text}");
        assert!(
            text.contains("child 1's t read b = 0, which no transaction wrote (its value before the run), and child 0's t wrote b = 1: child 1's t comes before it"),
            "{text}"
        );
        // With a transaction that never ended, b = 0 may be its write:
        // nothing is concluded from it.
        let unknown = Operation::new(
            2,
            "t",
            Value::transaction(),
            Ending::Unknown,
            Timestamp::from_nanos(1),
            None,
        );
        assert!(
            checked(vec![
                txn(0, 0, 10, &["w b 1", "w a 2"]),
                txn(1, 0, 10, &["r a 2", "r b 0"]),
                unknown,
            ])
            .is_ok()
        );
        // Two values of one key that nobody wrote: one is not its first.
        let v = checked(vec![txn(0, 0, 10, &["r x 0"]), txn(1, 0, 10, &["r x 1"])]).unwrap_err();
        assert!(v.is_inconclusive(), "{v}");
        assert!(
            v.to_string().contains(
                "x = 0 and x = 1 were both read, yet no committed transaction wrote either"
            ),
            "{v}"
        );
    }

    #[test]
    fn a_workers_transactions_of_one_name_are_told_apart_by_their_times() {
        let v = checked(vec![
            txn(3, 0, 10, &["r c 0", "w c 1"]),
            txn(3, 1_250, 1_300, &["r c 0", "w c 2"]),
        ])
        .unwrap_err();
        assert!(
            v.to_string().contains("- child 3's t at 0.000 ms read c = 0 and wrote 1\n- child 3's t at 1.250 ms read c = 0 too, and wrote 2"),
            "{v}"
        );
    }

    #[test]
    fn rolled_back_and_unfinished_transactions_are_left_out() {
        let aborted = ended(
            1,
            1,
            11,
            Ending::Failed("could not serialize access".into()),
        );
        assert!(checked(vec![txn(0, 0, 10, &["r c 0", "w c 1"]), aborted]).is_ok());
        let unknown = Operation::new(
            1,
            "t",
            Value::transaction(),
            Ending::Unknown,
            Timestamp::from_nanos(1_000_000),
            None,
        );
        assert!(checked(vec![txn(0, 0, 10, &["r c 0", "w c 1"]), unknown]).is_ok());
        // Operations of history::invoke are not transactions.
        let claim = Operation::new(
            2,
            "claim",
            Value::of(&7),
            Ending::Ok(Value::of(&true)),
            Timestamp::from_nanos(1),
            Some(Timestamp::from_nanos(2)),
        );
        assert!(checked(vec![txn(0, 0, 10, &["r c 0", "w c 1"]), claim]).is_ok());
    }

    #[test]
    fn a_history_without_a_committed_transaction_is_inconclusive() {
        let aborted = ended(1, 1, 11, Ending::Failed("rolled back".into()));
        let v = checked(vec![aborted]).unwrap_err();
        assert!(v.is_inconclusive());
        assert_eq!(
            v.to_string(),
            "inconclusive under serializability: no committed transaction was recorded (1 that \
             rolled back or never ended, of 1 operations): there is nothing to check. Record \
             each with history::transaction in the children, and end it with commit()\n"
        );
        assert!(checked(Vec::new()).unwrap_err().is_inconclusive());
    }

    #[test]
    fn a_record_that_is_not_a_list_of_accesses_is_named() {
        let bad = ended(3, 0, 1, Ending::Ok(Value::of(&"not accesses")));
        let v = checked(vec![bad]).unwrap_err();
        assert!(
            v.to_string()
                .starts_with("child 3's transaction t has a record that cannot be read"),
            "{v}"
        );
    }

    #[test]
    fn a_cycle_through_every_transaction_of_a_long_history_is_found_at_once() {
        // 0 → 1 → … → n-1 by reads of writes, and back to 0: one cycle of n,
        // searched from a few nodes only.
        let n = 20_000u64;
        let ops: Vec<Operation> = (0..n)
            .map(|i| {
                let read = format!("r k{} 1", (i + n - 1) % n);
                let write = format!("w k{i} 1");
                // Overlapping: no read is before its writer began.
                txn(i as usize, i, n + 1, &[&read, &write])
            })
            .collect();
        let v = checked(ops).unwrap_err();
        assert_eq!(v.witness().len(), n as usize, "{v}");
        let text = v.to_string();
        assert!(text.contains("circular information flow (G1c)"), "{text}");
        // 12 transactions and 12 orders shown, then the rest counted.
        assert!(
            text.contains("  … and 19988 more (`Violation::witness` has them all)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("- … and 19988 more\n- these 20000 orders form a cycle: no serial order of the transactions has them all\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + 13 + 14, "{text}");
    }

    #[test]
    fn a_long_serial_chain_passes_and_one_stale_read_in_it_is_found() {
        let mut ops: Vec<Operation> = (0..5_000u64)
            .map(|i| {
                let (r, w) = (format!("r c {i}"), format!("w c {}", i + 1));
                txn(i as usize, i * 10, i * 10 + 5, &[&r, &w])
            })
            .collect();
        assert!(checked(ops.clone()).is_ok());
        ops.push(txn(9_998, 0, 60_000, &["r c 4001", "w d 1"]));
        ops.push(txn(9_999, 0, 60_000, &["r d 1", "r c 4000"]));
        // 9_999 read d after 9_998, which read c after 4_000 wrote it, yet
        // read c before 4_000 overwrote it: a read skew of three.
        let v = checked(ops).unwrap_err();
        assert!(v.to_string().contains("G-single"), "{v}");
    }
}
