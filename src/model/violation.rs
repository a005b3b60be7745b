//! What a failed check says: the smallest set of operations that no order
//! allows, each order tried and why it fails; or that the search gave up,
//! or that the model panicked.

use std::fmt;

use super::Model;
use crate::clock::Timestamp;
use crate::outcome::{History, Operation, span};

/// Why a history is not accepted by a model (see
/// [`Outcomes::check`](crate::Outcomes::check)). `Display` explains it in a
/// few lines.
#[derive(Debug, Clone)]
pub struct Violation {
    model: String,
    /// Times are shown from here: the history's first invocation, as its
    /// own listing shows them (`None`: from the witness's first).
    origin: Option<Timestamp>,
    /// Boxed: a `Result<(), Violation>` stays small.
    kind: Box<Kind>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// No order of these operations is allowed.
    NotLinearizable(Found),
    /// The search ran out of budget on a part with this many operations.
    Inconclusive {
        operations: Vec<Operation>,
        budget: u64,
    },
    /// The model panicked on this operation.
    ModelPanicked {
        operation: Operation,
        message: String,
    },
    /// These children could not report every operation: nothing can be
    /// concluded.
    Incomplete { children: Vec<usize> },
    /// An isolation anomaly among committed transactions.
    Anomaly(Anomaly),
    /// A version read could be more than one write's: nothing can be
    /// concluded about it.
    Ambiguous {
        explanation: String,
        witness: Vec<Operation>,
    },
    /// An operation the model says may not fail, failed.
    Refused { operation: Operation, error: String },
    /// A transaction's record could not be read.
    Unreadable {
        operation: Operation,
        message: String,
    },
}

/// An isolation anomaly: its name, the transactions involved, and the
/// steps of the argument, one line each.
#[derive(Debug, Clone)]
pub(super) struct Anomaly {
    pub(super) name: String,
    pub(super) witness: Vec<Operation>,
    pub(super) steps: Vec<String>,
}

/// What `Outcomes::check_serializable` reports as its model's name.
pub(super) const SERIALIZABILITY: &str = "serializability";

/// A witness and what each order of it runs into.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// Times are shown from here: the part's first invocation.
    origin: Timestamp,
    witness: Vec<Operation>,
    descriptions: Vec<String>,
    /// Per order tried (up to a few): the order (as witness positions) and
    /// the position whose result was impossible, and why.
    orders: Vec<(Vec<usize>, usize, String)>,
}

/// Operations of a witness listed, at most.
const WITNESS_SHOWN: usize = 12;
/// Orders of a witness spelled out, at most.
const ORDERS_SHOWN: usize = 4;
/// A witness above this size is not enumerated order by order.
const ENUMERATE_MAX: usize = 6;

impl Found {
    pub(super) fn explain<M: Model>(model: &M, witness: &[&Operation], origin: Timestamp) -> Found {
        let mut orders = Vec::new();
        if witness.len() <= ENUMERATE_MAX {
            let mut order = Vec::new();
            let mut used = vec![false; witness.len()];
            enumerate(
                model,
                witness,
                &mut order,
                &mut used,
                &model.init(),
                &mut orders,
            );
        }
        Found {
            origin,
            witness: witness.iter().map(|op| (*op).clone()).collect(),
            descriptions: witness.iter().map(|op| model.describe(op)).collect(),
            orders,
        }
    }
}

/// Every order of `witness` that respects real time, each up to its first
/// impossible result, into `out` (at most `ORDERS_SHOWN`).
fn enumerate<M: Model>(
    model: &M,
    witness: &[&Operation],
    order: &mut Vec<usize>,
    used: &mut [bool],
    state: &M::State,
    out: &mut Vec<(Vec<usize>, usize, String)>,
) {
    if out.len() >= ORDERS_SHOWN {
        return;
    }
    let bound = (0..witness.len())
        .filter(|&i| !used[i])
        .filter_map(|i| witness[i].returned())
        .min();
    for i in 0..witness.len() {
        if used[i] || bound.is_some_and(|b| witness[i].invoked() > b) {
            continue;
        }
        order.push(i);
        match model.step(state, witness[i]) {
            Ok(next) => {
                used[i] = true;
                enumerate(model, witness, order, used, &next, out);
                used[i] = false;
            }
            Err(why) => {
                if out.len() < ORDERS_SHOWN {
                    out.push((order.clone(), i, why));
                }
            }
        }
        order.pop();
    }
}

impl Violation {
    /// A violation of `model`, its times shown from its witness's first
    /// invocation until [`since`](Violation::since) says otherwise.
    fn of(model: String, kind: Kind) -> Violation {
        Violation {
            model,
            origin: None,
            kind: Box::new(kind),
        }
    }

    pub(super) fn found<M: Model>(model: &M, found: Found) -> Violation {
        Violation::of(model.name(), Kind::NotLinearizable(found))
    }

    pub(super) fn inconclusive<M: Model>(model: &M, ops: &[&Operation], budget: u64) -> Violation {
        let operations = ops.iter().map(|op| (*op).clone()).collect();
        Violation::of(model.name(), Kind::Inconclusive { operations, budget })
    }

    pub(super) fn model_panicked<M: Model>(
        model: &M,
        op: &Operation,
        message: String,
    ) -> Violation {
        let operation = op.clone();
        Violation::of(model.name(), Kind::ModelPanicked { operation, message })
    }

    pub(super) fn incomplete(model: String, children: Vec<usize>) -> Violation {
        Violation::of(model, Kind::Incomplete { children })
    }

    pub(super) fn refused<M: Model>(model: &M, op: &Operation, error: &str) -> Violation {
        let (operation, error) = (op.clone(), error.to_owned());
        Violation::of(model.name(), Kind::Refused { operation, error })
    }

    pub(super) fn anomaly(anomaly: Anomaly) -> Violation {
        Violation::of(SERIALIZABILITY.into(), Kind::Anomaly(anomaly))
    }

    pub(super) fn ambiguous(explanation: String, witness: Vec<Operation>) -> Violation {
        let kind = Kind::Ambiguous {
            explanation,
            witness,
        };
        Violation::of(SERIALIZABILITY.into(), kind)
    }

    pub(super) fn unreadable(op: &Operation, message: String) -> Violation {
        let operation = op.clone();
        Violation::of(
            SERIALIZABILITY.into(),
            Kind::Unreadable { operation, message },
        )
    }

    /// Its times shown from `origin` (the history's first invocation).
    pub(super) fn since(mut self, origin: Option<Timestamp>) -> Violation {
        self.origin = self.origin.or(origin);
        self
    }

    /// The model's name (`serializability` for
    /// [`check_serializable`](crate::Outcomes::check_serializable)).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The smallest set of operations found that no order allows (for
    /// serializability: the transactions of the anomaly); empty when the
    /// check was inconclusive or the model panicked, except an ambiguous
    /// version's writers and readers.
    pub fn witness(&self) -> &[Operation] {
        match &*self.kind {
            Kind::NotLinearizable(found) => &found.witness,
            Kind::Anomaly(anomaly) => &anomaly.witness,
            Kind::Ambiguous { witness, .. } => witness,
            Kind::Refused { operation, .. } => std::slice::from_ref(operation),
            _ => &[],
        }
    }

    /// The violation drawn as an HTML page over `history` (the one it was
    /// found in): one lane per child, each operation a bar from its
    /// invocation to its return, the witness in red, this explanation
    /// above. [`Outcomes::assert_linearizable`](crate::Outcomes::assert_linearizable)
    /// writes it under the cargo target directory and names it.
    ///
    /// ```no_run
    /// # #[stampede::function] fn worker(job: u32) -> bool { true }
    /// let outcomes = stampede::call_concurrently(8, worker, 7)?;
    /// if let Err(violation) = outcomes.check(&stampede::model::ClaimOnce) {
    ///     std::fs::write("violation.html", violation.html(&outcomes.history())).unwrap();
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn html(&self, history: &History) -> String {
        let (verdict, marked) = if self.is_inconclusive() {
            ("inconclusive", "the operations the verdict is about")
        } else if matches!(*self.kind, Kind::Anomaly(_)) {
            ("not serializable", "the transactions of the anomaly")
        } else {
            ("not accepted", "the operations no order allows")
        };
        super::page::html(
            &format!("{}: {verdict}", self.model),
            &self.to_string(),
            history,
            self.witness(),
            marked,
        )
    }

    /// Whether nothing was decided: the search gave up (too large a
    /// history for its budget), some children could not report all their
    /// operations, or (serializability) a value read could be more than
    /// one write's. Nothing was found wrong, and nothing was proven.
    pub fn is_inconclusive(&self) -> bool {
        matches!(
            *self.kind,
            Kind::Inconclusive { .. } | Kind::Incomplete { .. } | Kind::Ambiguous { .. }
        )
    }
}

/// Each of `ops` on a line (the first [`WITNESS_SHOWN`], the rest
/// counted): its child, its times from `origin`, and what it did as
/// `describe` (given its position) says.
fn write_ops(
    f: &mut fmt::Formatter<'_>,
    ops: &[Operation],
    describe: impl Fn(usize) -> String,
    origin: Timestamp,
) -> fmt::Result {
    for (i, op) in ops.iter().enumerate().take(WITNESS_SHOWN) {
        writeln!(
            f,
            "  child {}  {}  {}",
            op.child(),
            span(op, origin),
            describe(i)
        )?;
    }
    if ops.len() > WITNESS_SHOWN {
        writeln!(
            f,
            "  … and {} more (`Violation::witness` has them all)",
            ops.len() - WITNESS_SHOWN
        )?;
    }
    Ok(())
}

/// The first invocation among `ops`.
fn earliest(ops: &[Operation]) -> Timestamp {
    ops.iter().map(Operation::invoked).min().unwrap_or_default()
}

fn who(op: &Operation, description: &str) -> String {
    format!("child {}'s {description}", op.child())
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = &self.model;
        match &*self.kind {
            Kind::NotLinearizable(found) => {
                let n = found.witness.len();
                let children = {
                    let mut c: Vec<usize> = found.witness.iter().map(Operation::child).collect();
                    c.sort_unstable();
                    c.dedup();
                    c.len()
                };
                writeln!(
                    f,
                    "not linearizable under {model}: no order of these {n} operations of {children} \
                     {} that respects their times is allowed:",
                    if children == 1 { "child" } else { "children" }
                )?;
                write_ops(
                    f,
                    &found.witness,
                    |i| found.descriptions[i].clone(),
                    self.origin.unwrap_or(found.origin),
                )?;
                for (order, at, why) in &found.orders {
                    let before: Vec<String> = order[..order.len() - 1]
                        .iter()
                        .map(|&i| who(&found.witness[i], &found.descriptions[i]))
                        .collect();
                    let failing = who(&found.witness[*at], &found.descriptions[*at]);
                    if before.is_empty() {
                        writeln!(f, "- first, {failing} is impossible: {why}")?;
                    } else {
                        writeln!(
                            f,
                            "- after {}, {failing} is impossible: {why}",
                            before.join(", then ")
                        )?;
                    }
                }
                Ok(())
            }
            Kind::Inconclusive { operations, budget } => write!(
                f,
                "inconclusive under {model}: the search gave up after {budget} steps on a part \
                 of {} operations (first: {}); nothing was found wrong, and nothing was proven. \
                 Give the model a `key` that splits the history, or record fewer operations",
                operations.len(),
                operations
                    .first()
                    .map_or_else(String::new, |op| op.to_string())
            ),
            Kind::Incomplete { children } => write!(
                f,
                "inconclusive under {model}: the history is incomplete: {} could not report \
                 every operation (the channel to the parent broke, or was closed by the code \
                 under test; see each child's outcome); a check of what arrived could pass \
                 for the wrong reason",
                match children.as_slice() {
                    [one] => format!("child {one}"),
                    many => format!(
                        "children {}",
                        many.iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            ),
            Kind::Anomaly(anomaly) => {
                let children = {
                    let mut c: Vec<usize> = anomaly.witness.iter().map(Operation::child).collect();
                    c.sort_unstable();
                    c.dedup();
                    c.len()
                };
                let n = anomaly.witness.len();
                let (which, read) = if n == 1 {
                    ("this committed transaction".to_owned(), "it")
                } else {
                    (format!("these {n} committed transactions"), "they")
                };
                writeln!(
                    f,
                    "not serializable: {}: no serial order of {which} of {children} {} gives \
                     what {read} read:",
                    anomaly.name,
                    if children == 1 { "child" } else { "children" },
                )?;
                write_ops(
                    f,
                    &anomaly.witness,
                    |i| anomaly.witness[i].to_string(),
                    self.origin.unwrap_or_else(|| earliest(&anomaly.witness)),
                )?;
                // The argument's steps, the last (its conclusion) always.
                let (last, steps) = anomaly.steps.split_last().expect("an anomaly is argued");
                for step in steps.iter().take(WITNESS_SHOWN) {
                    writeln!(f, "- {step}")?;
                }
                if steps.len() > WITNESS_SHOWN {
                    writeln!(f, "- … and {} more", steps.len() - WITNESS_SHOWN)?;
                }
                writeln!(f, "- {last}")
            }
            Kind::Ambiguous {
                explanation,
                witness,
            } => {
                if witness.is_empty() {
                    return writeln!(f, "inconclusive under {model}: {explanation}");
                }
                writeln!(f, "inconclusive under {model}: {explanation}:")?;
                write_ops(
                    f,
                    witness,
                    |i| witness[i].to_string(),
                    self.origin.unwrap_or_else(|| earliest(witness)),
                )
            }
            Kind::Refused { operation, error } => writeln!(
                f,
                "not accepted under {model}: child {}'s {} failed ({error}), and {model} says it \
                 may not: an operation that must succeed was refused\n  child {}  {}",
                operation.child(),
                operation.name(),
                operation.child(),
                operation
            ),
            Kind::Unreadable { operation, message } => write!(
                f,
                "child {}'s transaction {} has a record that cannot be read: {message}",
                operation.child(),
                operation.name()
            ),
            Kind::ModelPanicked { operation, message } => write!(
                f,
                "the model {model} panicked on child {}'s {operation}: {message}",
                operation.child()
            ),
        }
    }
}

impl std::error::Error for Violation {}
