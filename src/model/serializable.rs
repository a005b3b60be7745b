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

use std::collections::{HashMap, HashSet, VecDeque};

use super::violation::{Anomaly, Violation};
use crate::outcome::{Access, History, Operation, Recorded, recorded};

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

pub(crate) fn check(history: &History) -> Result<(), Violation> {
    let mut txns = Vec::new();
    for op in history.operations() {
        match recorded(op) {
            Ok(Recorded::Committed(accesses)) => txns.push(Txn { op, accesses }),
            Ok(Recorded::NotOne | Recorded::Other) => {}
            Err(why) => return Err(Violation::unreadable(op, why)),
        }
    }
    let checker = Checker::new(&txns);
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
    if let Some(cycle) = shortest_cycle(&edges) {
        return Err(checker.cycle(&cycle));
    }
    match ambiguous.into_iter().next() {
        Some(found) => Err(found),
        None => Ok(()),
    }
}

struct Checker<'t, 'h> {
    txns: &'t [Txn<'h>],
    /// Per (key, value's encoding).
    versions: HashMap<(&'t str, &'t [u8]), Version>,
    /// Versions a key came back to: on a cycle of read-then-overwrite
    /// steps (100 → 90 → 100).
    returns_to: HashSet<(&'t str, &'t [u8])>,
}

impl<'t, 'h> Checker<'t, 'h> {
    fn new(txns: &'t [Txn<'h>]) -> Checker<'t, 'h> {
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
        Checker {
            txns,
            versions,
            returns_to,
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

    /// `child 2's spend`.
    fn who(&self, t: usize) -> String {
        format!("child {}'s {}", self.op(t).child(), self.op(t).name())
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
            let makers: Vec<String> = producers.iter().map(|&t| self.who(t)).collect();
            format!("{} each wrote it", makers.join(" and "))
        } else if let Some(&(t, _)) = rewritten.filter(|&&(t, _)| other_reader(t)) {
            format!(
                "{} read it and wrote it back, so it was there twice",
                self.who(t)
            )
        } else if self.returns_to.contains(&(key, value)) {
            format!(
                "the key came back to it, read then overwritten step by step ({}), so it \
                 was there twice",
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

    /// `100 → 90 → 100`: the steps from `value` back to it, through
    /// versions that come back (at most a few shown).
    fn round(&self, key: &str, value: &[u8]) -> String {
        const SHOWN: usize = 6;
        let text = |t: usize, a: usize| self.txns[t].accesses[a].text.clone();
        let mut at = value;
        let mut path = Vec::new();
        for _ in 0..SHOWN {
            let Some(&(t, read, write)) =
                self.versions[&(key, at)]
                    .read_then_wrote
                    .iter()
                    .find(|&&(t, _, w)| {
                        self.returns_to
                            .contains(&(key, self.txns[t].accesses[w].value.as_slice()))
                    })
            else {
                break;
            };
            if path.is_empty() {
                path.push(text(t, read));
            }
            path.push(text(t, write));
            at = &self.txns[t].accesses[write].value;
            if at == value {
                return path.join(" → ");
            }
        }
        path.push("…".into());
        path.join(" → ")
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
                    "in a serial order one of them runs second and reads what the other wrote; \
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
            .filter(|(_, _, why)| matches!(why, Why::ReadOverwrite { .. }))
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
) -> HashSet<(&'t str, &'t [u8])> {
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
        .map(|(v, _)| v)
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
             - in a serial order one of them runs second and reads what the other wrote; \
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
        // 100 → 90 (child 0), 90 → 100 (child 1): child 2's 100 may be
        // either; read as child 1's, it would make a cycle with child 0.
        let v = checked(vec![
            txn(0, 0, 10, &["r b 100", "w b 90"]),
            txn(1, 20, 30, &["r b 90", "w b 100"]),
        ])
        .unwrap_err();
        assert!(v.is_inconclusive(), "{v}");
        assert!(
            v.to_string().contains(
                "b = 100 was read, but it cannot be told which write it was: the key came back \
                 to it, read then overwritten step by step (100 → 90 → 100)"
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
                txn(i as usize, i, i + 1, &[&read, &write])
            })
            .collect();
        let v = checked(ops).unwrap_err();
        assert_eq!(v.witness().len(), n as usize);
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
