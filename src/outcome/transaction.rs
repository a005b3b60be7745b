//! The record of a transaction (`history::transaction`): an operation whose
//! input is a fixed mark and whose output, when it committed, lists what it
//! read and wrote, key by key, in order. Shared by the child, which writes
//! it, and the checker (`model::check_serializable`), which reads it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::{Ending, Operation, Value};
use crate::protocol;

/// The input every transaction records: how the checker tells a
/// transaction from an operation of `history::invoke`.
pub(crate) struct Mark;

const MARK: &str = "stampede::history::transaction";

impl Serialize for Mark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MARK)
    }
}

impl fmt::Debug for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("transaction")
    }
}

/// One read or write of a transaction (`history::transaction`):
/// [`Operation::accesses`] lists them; [`Ending::committed`] builds a
/// transaction's record for a check's own tests.
///
/// ```
/// use stampede::history::Access;
/// let read = Access::read("card:1", &100);
/// assert_eq!((read.is_write(), read.key(), read.value().text()), (false, "card:1", "100"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub(crate) write: bool,
    pub(crate) key: String,
    /// The value's encoding: versions of a key are told apart by it.
    pub(crate) value: Vec<u8>,
    /// Its `Debug` text, for reports.
    pub(crate) text: String,
}

impl Access {
    /// A read of `value` from `key`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be encoded.
    pub fn read<V: Serialize + fmt::Debug + ?Sized>(key: &str, value: &V) -> Access {
        Access::of(false, key, value)
    }

    /// A write of `value` to `key`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be encoded.
    pub fn write<V: Serialize + fmt::Debug + ?Sized>(key: &str, value: &V) -> Access {
        Access::of(true, key, value)
    }

    /// Whether it is a write.
    pub fn is_write(&self) -> bool {
        self.write
    }

    /// The key read or written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value read or written.
    pub fn value(&self) -> Value {
        Value::new(self.value.clone(), self.text.clone())
    }
}

/// What a committed transaction did, in order: its output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Accesses(pub(crate) Vec<Access>);

/// `r balance:1=100, w balance:1=40`.
impl fmt::Debug for Accesses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let kind = if a.write { 'w' } else { 'r' };
            write!(f, "{sep}{kind} {}={}", a.key, a.text)?;
        }
        Ok(())
    }
}

impl Access {
    /// A read (`write` false) or write of `key`'s `value`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be encoded.
    pub(crate) fn of<V: Serialize + fmt::Debug + ?Sized>(
        write: bool,
        key: &str,
        value: &V,
    ) -> Access {
        Access {
            write,
            key: key.to_owned(),
            value: protocol::encode(value).unwrap_or_else(|e| {
                panic!("stampede::history: the value {value:?} of `{key}` cannot be encoded: {e}")
            }),
            text: format!("{value:?}"),
        }
    }
}

impl Value {
    /// The input every transaction (`history::transaction`) records, for
    /// building a transaction's record with [`Operation::new`] in a check's
    /// own tests; shown as `transaction`.
    pub fn transaction() -> Value {
        Value::of(&Mark)
    }
}

impl Ending {
    /// How a transaction that committed having done `accesses` (in order)
    /// ended: with [`Value::transaction`] as the input, an operation
    /// `model::check_serializable` reads.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stampede::Timestamp;
    /// use stampede::history::{Access, Ending, History, Operation, Value};
    /// let t0 = Timestamp::now();
    /// let spend = |child| Operation::new(child, "spend", Value::transaction(),
    ///     Ending::committed(vec![Access::read("card:1", &100), Access::write("card:1", &40)]),
    ///     t0, Some(t0.later_by(Duration::from_millis(1))));
    /// assert_eq!(spend(0).to_string(), "spend(transaction) → r card:1=100, w card:1=40");
    /// let lost = stampede::model::check_serializable(&History::new(vec![spend(0), spend(1)]));
    /// assert!(lost.unwrap_err().to_string().contains("lost update on card:1"));
    /// ```
    pub fn committed(accesses: Vec<Access>) -> Ending {
        Ending::Ok(Value::of(&Accesses(accesses)))
    }
}

impl Operation {
    /// What a transaction that committed read and wrote, in order; `None`
    /// for any other operation (one of `history::invoke`, or a transaction
    /// that rolled back or never ended).
    pub fn accesses(&self) -> Option<Vec<Access>> {
        match recorded(self) {
            Ok(Recorded::Committed(accesses)) => Some(accesses),
            _ => None,
        }
    }
}

/// How a transaction ended, as the checker sees it.
pub(crate) enum Recorded {
    /// Not a transaction: an operation of `history::invoke`.
    NotOne,
    /// It committed, having done these.
    Committed(Vec<Access>),
    /// It rolled back, or may or may not have committed: what it did is
    /// not known.
    Other,
}

/// What `op` records, if it is a transaction.
///
/// # Errors
///
/// When it is marked as a transaction but its output is not a list of
/// reads and writes.
pub(crate) fn recorded(op: &Operation) -> Result<Recorded, String> {
    if op.input().bytes() != mark_bytes() {
        return Ok(Recorded::NotOne);
    }
    match op.ending() {
        Ending::Ok(value) => value.decode::<Accesses>().map(|a| Recorded::Committed(a.0)),
        Ending::Failed(_) | Ending::Unknown => Ok(Recorded::Other),
    }
}

/// Whether `op` is a transaction that never ended (indeterminate).
pub(crate) fn left_open(op: &Operation) -> bool {
    op.input().bytes() == mark_bytes() && matches!(op.ending(), Ending::Unknown)
}

fn mark_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| protocol::encode(&Mark).expect("a string encodes"))
}
