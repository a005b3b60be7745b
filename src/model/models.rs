//! The shipped models. Values are compared by their encoding, so a model
//! needs the types only where it takes a value apart (a key and a value).

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Model;
use crate::outcome::{Operation, Value, digest};

fn unknown(model: &str, op: &Operation, knows: &str) -> String {
    format!(
        "{model} knows {knows}, not `{}` (the name given to history::invoke)",
        op.name()
    )
}

fn output<T: DeserializeOwned>(op: &Operation) -> Result<Option<T>, String> {
    op.output().map(Value::decode::<T>).transpose()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    crate::protocol::encode(value).expect("a value that was decoded encodes again")
}

/// A value a model holds in its state: a 128-bit digest of its encoding
/// (equal values of one type encode equally) and the start of its `Debug`
/// text, for reports. A state made of these stays small however large the
/// values are, so the search's memo does too; two different values
/// mistaken for one would take a digest collision (about 2^-64 for four
/// billion values in one check).
#[derive(Clone)]
pub struct Held {
    digest: u128,
    text: Arc<str>,
}

/// The longest text a [`Held`] keeps.
const HELD_TEXT: usize = 60;

impl Held {
    fn of<T: Serialize + fmt::Debug>(value: &T) -> Held {
        Held::new(digest(&[&encode(value)]), &format!("{value:?}"))
    }

    /// `value` as recorded (its digest computed once per value).
    fn recorded(value: &Value) -> Held {
        Held::new(value.digests().0, value.text())
    }

    /// `Some(value)`, for comparing with an `Option` recorded as an output.
    fn recorded_some(value: &Value) -> Held {
        Held::new(value.digests().1, value.text())
    }

    fn new(digest: u128, text: &str) -> Held {
        let text = match text.char_indices().nth(HELD_TEXT) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
        Held {
            digest,
            text: text.into(),
        }
    }
}

// Equality is the digest's: the text is for reports only.
impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Held {}

impl std::hash::Hash for Held {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Things claimed at most once: `claim(thing) → bool`, `true` for the one
/// claim that won. A claim that lost while the thing was still free is a
/// violation too (the claim had to win). Checked one thing at a time.
///
/// ```no_run
/// # fn try_claim(job: u32) -> bool { true }
/// # #[stampede::function] fn worker(job: u32) -> bool {
/// let op = stampede::history::invoke("claim", &job);
/// let won = try_claim(job);
/// op.ok(&won);
/// # won }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimOnce;

impl Model for ClaimOnce {
    /// Whether the thing was claimed.
    type State = bool;

    fn name(&self) -> String {
        "ClaimOnce".into()
    }

    fn init(&self) -> bool {
        false
    }

    fn step(&self, claimed: &bool, op: &Operation) -> Result<bool, String> {
        if op.name() != "claim" {
            return Err(unknown("ClaimOnce", op, "`claim`"));
        }
        let thing = op.input();
        match (output::<bool>(op)?, *claimed) {
            (Some(true), true) => Err(format!(
                "{thing} was claimed already; a thing can be claimed once"
            )),
            (Some(false), false) => Err(format!(
                "{thing} was not claimed yet, so this claim had to win"
            )),
            _ => Ok(true),
        }
    }

    fn key(&self, op: &Operation) -> Option<Vec<u8>> {
        Some(op.input().bytes().to_vec())
    }

    /// A claim that lost: possible only once claimed, and it stays so.
    fn read_only(&self, op: &Operation) -> bool {
        output::<bool>(op).ok().flatten() == Some(false)
    }
}

/// A counter: `add(n: i64)` (its output is not checked) and
/// `get() → i64`, from 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Model for Counter {
    type State = i64;

    fn name(&self) -> String {
        "Counter".into()
    }

    fn init(&self) -> i64 {
        0
    }

    fn step(&self, value: &i64, op: &Operation) -> Result<i64, String> {
        match op.name() {
            "add" => Ok(value.wrapping_add(op.input().decode::<i64>()?)),
            "get" => match output::<i64>(op)? {
                Some(seen) if seen != *value => {
                    Err(format!("the counter was {value} there, not {seen}"))
                }
                _ => Ok(*value),
            },
            _ => Err(unknown("Counter", op, "`add` and `get`")),
        }
    }

    fn read_only(&self, op: &Operation) -> bool {
        op.name() == "get"
    }
}

/// One value: `write(v)`, `read() → v`, `cas((old, new)) → bool`, from the
/// value given to [`Register::new`].
pub struct Register<V> {
    initial: Held,
    types: PhantomData<fn() -> V>,
}

impl<V: Serialize + fmt::Debug> Register<V> {
    /// A register that starts at `initial`.
    ///
    /// ```
    /// let model = stampede::model::Register::new(0i64);
    /// ```
    pub fn new(initial: V) -> Register<V> {
        Register {
            initial: Held::of(&initial),
            types: PhantomData,
        }
    }
}

impl<V: Serialize + DeserializeOwned + fmt::Debug> Model for Register<V> {
    /// The value.
    type State = Held;

    fn name(&self) -> String {
        format!("Register (from {})", self.initial)
    }

    fn init(&self) -> Held {
        self.initial.clone()
    }

    fn step(&self, value: &Held, op: &Operation) -> Result<Held, String> {
        match op.name() {
            "write" => Ok(Held::recorded(op.input())),
            "read" => match op.output() {
                Some(seen) if Held::recorded(seen) != *value => {
                    Err(format!("the value was {value} there, not {seen}"))
                }
                _ => Ok(value.clone()),
            },
            "cas" => {
                let (old, new) = op.input().decode::<(V, V)>()?;
                let matches = Held::of(&old) == *value;
                match output::<bool>(op)? {
                    Some(true) if !matches => Err(format!(
                        "the value was {value}, not {old:?}, so the swap had to fail"
                    )),
                    Some(false) if matches => {
                        Err(format!("the value was {old:?}, so the swap had to succeed"))
                    }
                    _ if matches => Ok(Held::of(&new)),
                    _ => Ok(value.clone()),
                }
            }
            _ => Err(unknown("Register", op, "`write`, `read` and `cas`")),
        }
    }

    /// A read; a swap that failed (it changes nothing wherever it can fail).
    fn read_only(&self, op: &Operation) -> bool {
        op.name() == "read"
            || (op.name() == "cas" && output::<bool>(op).ok().flatten() == Some(false))
    }
}

/// A map: `put((k, v))`, `get(k) → Option<v>`, `delete(k)`. Checked one key
/// at a time.
pub struct KeyValue<K, V> {
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> KeyValue<K, V> {
    /// An empty map.
    ///
    /// ```
    /// let model = stampede::model::KeyValue::<String, i64>::new();
    /// ```
    pub fn new() -> KeyValue<K, V> {
        KeyValue { types: PhantomData }
    }
}

impl<K, V> Default for KeyValue<K, V> {
    fn default() -> Self {
        KeyValue::new()
    }
}

impl<K, V> Model for KeyValue<K, V>
where
    K: Serialize + DeserializeOwned + fmt::Debug,
    V: Serialize + DeserializeOwned + fmt::Debug,
{
    /// The key's value, if it has one.
    type State = Option<Held>;

    fn name(&self) -> String {
        "KeyValue".into()
    }

    fn init(&self) -> Option<Held> {
        None
    }

    fn step(&self, value: &Option<Held>, op: &Operation) -> Result<Option<Held>, String> {
        let text = |v: &Option<Held>| match v {
            Some(held) => format!("Some({held})"),
            None => "None".into(),
        };
        match op.name() {
            "put" => {
                let (_, new) = op.input().decode::<(K, V)>()?;
                Ok(Some(Held::of(&new)))
            }
            "delete" => Ok(None),
            "get" => match output::<Option<V>>(op)? {
                Some(seen) => {
                    let seen = seen.map(|v| Held::of(&v));
                    if seen == *value {
                        Ok(value.clone())
                    } else {
                        Err(format!(
                            "the key held {} there, not {}",
                            text(value),
                            text(&seen)
                        ))
                    }
                }
                None => Ok(value.clone()),
            },
            _ => Err(unknown("KeyValue", op, "`put`, `get` and `delete`")),
        }
    }

    fn read_only(&self, op: &Operation) -> bool {
        op.name() == "get"
    }

    fn key(&self, op: &Operation) -> Option<Vec<u8>> {
        match op.name() {
            "put" => op.input().decode::<(K, V)>().ok().map(|(k, _)| encode(&k)),
            _ => op.input().decode::<K>().ok().map(|k| encode(&k)),
        }
    }
}

/// A set: `add(v)`, `remove(v)`, `contains(v) → bool`. Checked one element
/// at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Set;

impl Model for Set {
    /// Whether the element is in.
    type State = bool;

    fn name(&self) -> String {
        "Set".into()
    }

    fn init(&self) -> bool {
        false
    }

    fn step(&self, present: &bool, op: &Operation) -> Result<bool, String> {
        let element = op.input();
        match op.name() {
            "add" => Ok(true),
            "remove" => Ok(false),
            "contains" => match output::<bool>(op)? {
                Some(seen) if seen != *present => Err(format!(
                    "{element} was {} the set there",
                    if *present { "in" } else { "not in" }
                )),
                _ => Ok(*present),
            },
            _ => Err(unknown("Set", op, "`add`, `remove` and `contains`")),
        }
    }

    fn read_only(&self, op: &Operation) -> bool {
        op.name() == "contains"
    }

    fn key(&self, op: &Operation) -> Option<Vec<u8>> {
        Some(op.input().bytes().to_vec())
    }
}

/// A FIFO queue: `enqueue(v)`, `dequeue() → Option<v>` (`None`: it was
/// empty). Every element is handed out once, in order.
pub struct Queue<V> {
    types: PhantomData<fn() -> V>,
}

impl<V> Queue<V> {
    /// An empty queue.
    ///
    /// ```
    /// let model = stampede::model::Queue::<u32>::new();
    /// ```
    pub fn new() -> Queue<V> {
        Queue { types: PhantomData }
    }
}

impl<V> Default for Queue<V> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<V: Serialize + DeserializeOwned + fmt::Debug> Model for Queue<V> {
    /// The elements, front first.
    type State = VecDeque<Held>;

    fn name(&self) -> String {
        "Queue".into()
    }

    fn init(&self) -> VecDeque<Held> {
        VecDeque::new()
    }

    fn step(&self, queue: &VecDeque<Held>, op: &Operation) -> Result<VecDeque<Held>, String> {
        match op.name() {
            "enqueue" => {
                let mut queue = queue.clone();
                queue.push_back(Held::recorded_some(op.input()));
                Ok(queue)
            }
            "dequeue" => {
                let mut after = queue.clone();
                let front = after.pop_front();
                let Some(out) = op.output() else {
                    return Ok(after);
                };
                // `None` encodes to one 0 byte; `Some(v)` is compared by digest.
                let seen = (out.bytes() != [0]).then(|| Held::recorded(out));
                if seen == front {
                    Ok(after)
                } else {
                    let expected =
                        front.map_or("None (empty)".into(), |held| format!("Some({held})"));
                    let got = seen.map_or("None".into(), |held| held.to_string());
                    Err(format!(
                        "the front of the queue was {expected} there, not {got}"
                    ))
                }
            }
            _ => Err(unknown("Queue", op, "`enqueue` and `dequeue`")),
        }
    }

    /// A dequeue that found the queue empty (an indeterminate one may have
    /// taken an element: not read-only).
    fn read_only(&self, op: &Operation) -> bool {
        op.name() == "dequeue"
            && output::<Option<V>>(op)
                .ok()
                .flatten()
                .is_some_and(|v| v.is_none())
    }
}

/// Any operation, any result: nothing is checked. With [`NeverFails`],
/// only that no operation was refused: `NeverFails(Anything)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anything;

impl Model for Anything {
    type State = ();

    fn name(&self) -> String {
        "Anything".into()
    }

    fn init(&self) {}

    fn step(&self, _: &(), _: &Operation) -> Result<(), String> {
        Ok(())
    }

    fn read_only(&self, _: &Operation) -> bool {
        true
    }
}

/// `M`, and no operation may fail: an operation that ended with
/// `fail(&error)` (a refused request, a transaction the database rolled
/// back: `database is locked`, `deadlock detected`) is a violation by
/// itself, where `M` alone would leave it out as never having happened.
/// For operations a correct program always completes: an increment that
/// waits for its lock, a transfer that takes its locks in one order.
///
/// ```
/// use std::time::Duration;
/// use stampede::Timestamp;
/// use stampede::history::{Ending, History, Operation, Value};
/// use stampede::model::{self, Counter, NeverFails};
/// let t0 = Timestamp::now();
/// let add = Operation::new(1, "add", Value::of(&1i64), Ending::Failed("database is locked".into()),
///     t0, Some(t0.later_by(Duration::from_millis(1))));
/// let history = History::new(vec![add]);
/// assert!(model::check(&Counter, &history).is_ok()); // left out
/// let refused = model::check(&NeverFails(Counter), &history).unwrap_err();
/// assert!(refused.to_string().contains("child 1's add failed (database is locked)"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverFails<M>(pub M);

impl<M: Model> Model for NeverFails<M> {
    type State = M::State;

    fn name(&self) -> String {
        format!("NeverFails({})", self.0.name())
    }

    fn init(&self) -> M::State {
        self.0.init()
    }

    fn step(&self, state: &M::State, op: &Operation) -> Result<M::State, String> {
        self.0.step(state, op)
    }

    fn key(&self, op: &Operation) -> Option<Vec<u8>> {
        self.0.key(op)
    }

    fn read_only(&self, op: &Operation) -> bool {
        self.0.read_only(op)
    }

    fn describe(&self, op: &Operation) -> String {
        self.0.describe(op)
    }

    fn may_fail(&self, _: &Operation) -> bool {
        false
    }
}
