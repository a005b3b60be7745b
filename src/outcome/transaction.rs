//! The record of a transaction (`history::transaction`): an operation whose
//! input is a fixed mark and whose output, when it committed, lists what it
//! read and wrote, key by key, in order. Shared by the child, which writes
//! it, and the checker (`model::check_serializable`), which reads it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::history::Value;
use super::history::{Ending, Operation};
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

/// One read or write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Access {
    pub(crate) write: bool,
    pub(crate) key: String,
    /// The value's encoding: versions of a key are told apart by it.
    pub(crate) value: Vec<u8>,
    /// Its `Debug` text, for reports.
    pub(crate) text: String,
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

fn mark_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| protocol::encode(&Mark).expect("a string encodes"))
}

/// The input value of every transaction, for building histories in tests.
#[cfg(test)]
pub(crate) fn mark() -> Value {
    Value::of(&Mark)
}

/// The output value of a transaction that committed having done `accesses`.
#[cfg(test)]
pub(crate) fn committed(accesses: Vec<Access>) -> Value {
    Value::of(&Accesses(accesses))
}
