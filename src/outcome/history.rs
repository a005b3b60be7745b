//! The data of a history: values, operations, how they ended, and the
//! history of a call, built from the events its children reported.

use std::fmt;
use std::sync::OnceLock;

use crate::clock::Timestamp;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{self, OpEvent};

/// An input or output as recorded: its encoding (for a model to
/// [`decode`](Value::decode)) and its `Debug` text (for reports).
#[derive(Debug, Clone)]
pub struct Value {
    bytes: Vec<u8>,
    text: String,
    /// `digest` of the bytes, and of the bytes as `Some` of them, once
    /// asked: a model compares values by these, once per value, not once
    /// per step of its search.
    digests: OnceLock<(u128, u128)>,
}

// A value is its bytes and text; the digests are a cache.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.bytes == other.bytes && self.text == other.text
    }
}

impl Eq for Value {}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
        self.text.hash(state);
    }
}

/// A 128-bit digest of `parts`, in order (two SipHash halves): equal for
/// equal bytes, and two different values mistaken for one would take a
/// collision of about 2^-64 among four billion values.
pub(crate) fn digest(parts: &[&[u8]]) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        for part in parts {
            h.write(part);
        }
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// What `Some(x)` adds in front of `x`'s encoding.
const SOME_TAG: [u8; 1] = [1];

impl Value {
    /// Decodes it as a `T`; the error says what was recorded.
    ///
    /// # Errors
    ///
    /// When the value was recorded as another type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        protocol::decode(&self.bytes).map_err(|e| {
            format!(
                "`{}` was recorded as another type than {}: {e}",
                self.text,
                std::any::type_name::<T>()
            )
        })
    }

    /// Its encoding: equal values of one type have equal bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its `Debug` text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `digest` of its bytes, and of `Some` of it (what an `Option`'s
    /// `Some` encodes to), computed once.
    pub(crate) fn digests(&self) -> (u128, u128) {
        *self
            .digests
            .get_or_init(|| (digest(&[&self.bytes]), digest(&[&SOME_TAG, &self.bytes])))
    }

    /// A value as `history::invoke` would record `value`.
    ///
    /// # Panics
    ///
    /// When `value` cannot be encoded.
    pub fn of<T: Serialize + fmt::Debug + ?Sized>(value: &T) -> Value {
        Value::new(
            protocol::encode(value).expect("an encodable value"),
            format!("{value:?}"),
        )
    }
}

impl Value {
    pub(crate) fn new(bytes: Vec<u8>, text: String) -> Value {
        Value {
            bytes,
            text,
            digests: OnceLock::new(),
        }
    }
}

/// The longest text a report shows of a value.
const SHOWN: usize = 200;

/// Prints its text, or for a long one its start and its length.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text.char_indices().nth(SHOWN) {
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.text[..cut], self.text.len()),
            None => f.write_str(&self.text),
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ending {
    /// It returned this value (`ok` of the guard `history::invoke` returns).
    Ok(Value),
    /// It failed without taking effect (`fail` of the guard).
    Failed(String),
    /// Nobody knows: the guard was dropped, or the child died first. It
    /// may or may not have taken effect.
    Unknown,
}

/// One operation of one child: what, on what, how it ended, and when (on
/// the clock parent and children share, so histories of several calls can
/// be merged).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    child: usize,
    name: String,
    input: Value,
    ending: Ending,
    invoked: Timestamp,
    returned: Option<Timestamp>,
}

impl Operation {
    /// An operation, for a model's own tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stampede::Timestamp;
    /// use stampede::history::{Ending, Operation, Value};
    /// let start = Timestamp::now();
    /// let op = Operation::new(0, "claim", Value::of(&7), Ending::Ok(Value::of(&true)),
    ///     start, Some(start.later_by(Duration::from_micros(20))));
    /// assert_eq!(op.to_string(), "claim(7) → true");
    /// ```
    pub fn new(
        child: usize,
        name: &str,
        input: Value,
        ending: Ending,
        invoked: Timestamp,
        returned: Option<Timestamp>,
    ) -> Operation {
        Operation {
            child,
            name: name.to_owned(),
            input,
            ending,
            invoked,
            returned,
        }
    }

    /// The child that ran it (its index in the call).
    pub fn child(&self) -> usize {
        self.child
    }

    /// Its name, as given to `history::invoke`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its input.
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// How it ended.
    pub fn ending(&self) -> &Ending {
        &self.ending
    }

    /// Its output, if it returned one.
    pub fn output(&self) -> Option<&Value> {
        match &self.ending {
            Ending::Ok(value) => Some(value),
            _ => None,
        }
    }

    /// When it was invoked.
    pub fn invoked(&self) -> Timestamp {
        self.invoked
    }

    /// When it ended; `None` if it never did (indeterminate).
    pub fn returned(&self) -> Option<Timestamp> {
        self.returned
    }
}

impl fmt::Display for Operation {
    /// `claim(7) → true`, `put(("a", 1)) failed: …`, `claim(7) → ?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.input.text() == "()" {
            write!(f, "{}()", self.name)?;
        } else {
            write!(f, "{}({})", self.name, self.input)?;
        }
        match &self.ending {
            Ending::Ok(value) if value.text() == "()" => write!(f, " → ok"),
            Ending::Ok(value) => write!(f, " → {value}"),
            Ending::Failed(error) => write!(f, " failed: {error}"),
            Ending::Unknown => write!(f, " → ? (indeterminate)"),
        }
    }
}

/// Every operation of a call's children, in the order they were invoked:
/// [`Outcomes::history`](crate::Outcomes::history). `Display` prints one
/// line per operation, grouped by child, with its times from the first
/// invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    operations: Vec<Operation>,
}

impl History {
    /// A history of `operations`, for a model's own tests; sorted by when
    /// they were invoked.
    pub fn new(mut operations: Vec<Operation>) -> History {
        operations.sort_by_key(|op| (op.invoked, op.child));
        History { operations }
    }

    /// Every operation, in the order they were invoked.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// How many operations it has.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut children: Vec<usize> = self.operations.iter().map(|op| op.child).collect();
        children.sort_unstable();
        children.dedup();
        let origin = self
            .operations
            .first()
            .map(|op| op.invoked)
            .unwrap_or_default();
        for child in children {
            writeln!(f, "child {child}:")?;
            for op in self.operations.iter().filter(|op| op.child == child) {
                writeln!(f, "  {}  {op}", span(op, origin))?;
            }
        }
        Ok(())
    }
}

/// `0.120–0.310 ms` from `origin`, or `0.120 ms – never` for an operation
/// that did not end.
pub(crate) fn span(op: &Operation, origin: Timestamp) -> String {
    let ms = |t: Timestamp| t.duration_since(origin).as_secs_f64() * 1e3;
    match op.returned {
        Some(returned) => format!("{:.3}–{:.3} ms", ms(op.invoked), ms(returned)),
        None => format!("{:.3} ms – never", ms(op.invoked)),
    }
}

/// A child's operations from the events it reported, in order. An
/// invocation without an end is indeterminate.
pub(crate) fn from_events(child: usize, events: Vec<OpEvent>) -> Vec<Operation> {
    let since = Timestamp::from_nanos;
    let mut operations: Vec<(u64, Operation)> = Vec::new();
    for event in events {
        let (id, ending, at_ns) = match event {
            OpEvent::Invoke {
                id,
                name,
                input,
                input_text,
                at_ns,
            } => {
                let input = Value::new(input, input_text);
                let op = Operation::new(child, &name, input, Ending::Unknown, since(at_ns), None);
                operations.push((id, op));
                continue;
            }
            OpEvent::Ok {
                id,
                output,
                output_text,
                at_ns,
            } => {
                let value = Value::new(output, output_text);
                (id, Ending::Ok(value), at_ns)
            }
            OpEvent::Fail { id, error, at_ns } => (id, Ending::Failed(error), at_ns),
            OpEvent::Unknown { id, at_ns } => (id, Ending::Unknown, at_ns),
        };
        if let Some((_, op)) = operations.iter_mut().rev().find(|(i, _)| *i == id) {
            // An operation dropped without an end has no known return: it
            // may take effect at any time after its invocation.
            op.returned = (ending != Ending::Unknown).then(|| since(at_ns));
            op.ending = ending;
        }
    }
    operations.into_iter().map(|(_, op)| op).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pair_by_id_and_an_invocation_without_an_end_is_indeterminate() {
        let invoke = |id, at_ns| OpEvent::Invoke {
            id,
            name: "claim".into(),
            input: protocol::encode(&7u32).unwrap(),
            input_text: "7".into(),
            at_ns,
        };
        let events = vec![
            invoke(1, 1_000),
            invoke(2, 2_000),
            OpEvent::Ok {
                id: 2,
                output: protocol::encode(&true).unwrap(),
                output_text: "true".into(),
                at_ns: 5_000,
            },
            OpEvent::Fail {
                id: 1,
                error: "refused".into(),
                at_ns: 6_000,
            },
            invoke(3, 7_000),
            invoke(4, 8_000),
            OpEvent::Unknown {
                id: 4,
                at_ns: 9_000,
            },
        ];
        let ops = from_events(3, events);
        let origin = Timestamp::from_nanos(0);
        let shown: Vec<String> = ops
            .iter()
            .map(|op| format!("{} {op}", span(op, origin)))
            .collect();
        assert_eq!(
            shown,
            [
                "0.001–0.006 ms claim(7) failed: refused",
                "0.002–0.005 ms claim(7) → true",
                "0.007 ms – never claim(7) → ? (indeterminate)",
                "0.008 ms – never claim(7) → ? (indeterminate)",
            ]
        );
        assert!(ops.iter().all(|op| op.child() == 3));
        assert_eq!(ops[1].output().unwrap().decode::<bool>(), Ok(true));
        assert!(ops[1].output().unwrap().decode::<String>().is_err());
    }
}
