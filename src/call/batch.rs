//! [`Batch`]: different functions, arguments and return types in one
//! concurrent batch, type-checked, results in call order.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;

use super::Options;
use super::plan::{self, Plan};
use crate::error::{Error, Result};
use crate::outcome::{self, Outcome, Outcomes, Status};
use crate::parent;
use crate::registry::Function;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A set of calls run concurrently, one child each, released together.
///
/// Each [`add`](Batch::add) returns a typed [`Handle`]; after the batch has
/// run, [`BatchOutcomes::take`] turns a handle into that call's
/// [`Outcomes`], with the right return type. [`repeat`](Batch::repeat) runs
/// the whole list several times in one batch, like `calls * 3` in Python.
///
/// ```no_run
/// # use std::path::PathBuf;
/// #[stampede::function]
/// fn append(path: PathBuf, line: String) { /* ... */ }
/// #[stampede::function]
/// fn read_lines(path: PathBuf) -> Vec<String> { Vec::new() }
///
/// # let path = PathBuf::new();
/// let mut batch = stampede::Batch::new();
/// let writes = batch.add(append, (path.clone(), "hello".to_string()));
/// let reads = batch.add(read_lines, path.clone());
/// batch.repeat(3); // append, read, append, read, append, read
/// let mut done = batch.run()?;
/// let _: stampede::Outcomes<()> = done.take(writes);
/// let lines: stampede::Outcomes<Vec<String>> = done.take(reads);
/// assert_eq!(lines.len(), 3);
/// # Ok::<(), stampede::Error>(())
/// ```
pub struct Batch {
    id: u64,
    calls: Vec<Call>,
    error: Option<Error>,
    repeats: usize,
}

pub(crate) struct Call {
    pub function: &'static str,
    pub args: Arc<Vec<u8>>,
    decode: fn(Vec<u8>) -> Status<Box<dyn Any + Send>>,
}

/// Names one call of a [`Batch`] and the type it returns.
///
/// ```no_run
/// # #[stampede::function] fn deposit(amount: u64) {}
/// # #[stampede::function] fn balance() -> u64 { 0 }
/// let mut batch = stampede::Batch::new();
/// let deposits: stampede::Handle<()> = batch.add(deposit, 10);
/// let reads: stampede::Handle<u64> = batch.add(balance, ());
/// let mut done = batch.run()?;
/// let balances: stampede::Outcomes<u64> = done.take(reads);
/// # Ok::<(), stampede::Error>(())
/// ```
pub struct Handle<R> {
    batch: u64,
    slot: usize,
    _returns: PhantomData<fn() -> R>,
}

impl<R> Clone for Handle<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Handle<R> {}

impl<R> fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle(batch {}, call {})", self.batch, self.slot)
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    ///
    /// ```no_run
    /// # #[stampede::function] fn deposit(amount: u64) {}
    /// # #[stampede::function] fn balance() -> u64 { 0 }
    /// let mut batch = stampede::Batch::new();
    /// assert!(batch.is_empty());
    /// batch.add(deposit, 10);
    /// batch.add(balance, ());
    /// assert_eq!(batch.len(), 2);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn new() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            calls: Vec::new(),
            error: None,
            repeats: 1,
        }
    }

    /// Adds a call of `f(args)`, run in a child of its own. An unregistered
    /// function or arguments that do not encode are reported by `run`.
    pub fn add<F, M>(&mut self, f: F, args: F::Args) -> Handle<F::Output>
    where
        F: Function<M>,
        F::Output: Send + 'static,
    {
        let slot = self.calls.len();
        let checked = plan::checked_name(&f)
            .and_then(|function| Ok((function, plan::encode_args(function, &args)?)));
        match checked {
            Ok((function, args)) => self.calls.push(Call {
                function,
                args,
                decode: decode_any::<F::Output>,
            }),
            Err(e) => {
                self.error.get_or_insert(e);
                self.calls.push(Call {
                    function: "",
                    args: Arc::default(),
                    decode: decode_any::<F::Output>,
                });
            }
        }
        Handle {
            batch: self.id,
            slot,
            _returns: PhantomData,
        }
    }

    /// Runs the whole list of calls `times` times in the same batch (calls
    /// `a, b` repeated 3 times start 6 children: `a, b, a, b, a, b`).
    ///
    /// ```no_run
    /// # #[stampede::function] fn deposit(amount: u64) {}
    /// # #[stampede::function] fn balance() -> u64 { 0 }
    /// let mut batch = stampede::Batch::new();
    /// batch.add(deposit, 10);
    /// batch.add(balance, ());
    /// batch.repeat(50); // 100 children: deposit, balance, deposit, balance, …
    /// assert_eq!(batch.len(), 100);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn repeat(&mut self, times: usize) -> &mut Self {
        self.repeats = times;
        self
    }

    /// How many children the batch starts.
    pub fn len(&self) -> usize {
        self.calls.len() * self.repeats
    }

    /// Whether the batch starts no child.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs the batch with default [`Options`].
    ///
    /// # Errors
    ///
    /// As [`call_concurrently`](crate::call_concurrently), for any call of the batch.
    pub fn run(&self) -> Result<BatchOutcomes> {
        Options::new().run(self)
    }

    pub(crate) fn calls(&self) -> Result<&[Call]> {
        match &self.error {
            Some(Error::NotRegistered { name }) => Err(Error::NotRegistered { name }),
            Some(Error::Encode { function, message }) => Err(Error::Encode {
                function,
                message: message.clone(),
            }),
            Some(other) => Err(Error::InvalidOptions(other.to_string())),
            None => Ok(&self.calls),
        }
    }

    pub(crate) fn collect(&self, run: parent::Run, seed: Option<u64>) -> BatchOutcomes {
        let items = run
            .outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| Some(o.map(self.calls[i % self.calls.len()].decode)))
            .collect();
        BatchOutcomes {
            id: self.id,
            calls: self.calls.len(),
            items,
            seed,
            rounds: run.rounds,
        }
    }
}

fn decode_any<R: DeserializeOwned + Send + 'static>(bytes: Vec<u8>) -> Status<Box<dyn Any + Send>> {
    match plan::decode_value::<R>(&bytes) {
        Status::Returned(value) => Status::Returned(Box::new(value)),
        Status::Failed { reason } => Status::Failed { reason },
        _ => unreachable!("decoding gives a value or a failure"),
    }
}

/// What every child of a [`Batch`] did, in call order.
///
/// ```no_run
/// # #[stampede::function] fn deposit(amount: u64) {}
/// # #[stampede::function] fn balance() -> u64 { 0 }
/// let mut batch = stampede::Batch::new();
/// let deposits = batch.add(deposit, 10);
/// let reads = batch.add(balance, ());
/// batch.repeat(4);
/// let mut done = batch.run()?;
/// assert_eq!(done.len(), 8);
/// println!("{done}"); // a summary, then every child that did not return
/// done.take(deposits).assert_all_returned();
/// assert_eq!(done.take(reads).len(), 4);
/// # Ok::<(), stampede::Error>(())
/// ```
pub struct BatchOutcomes {
    id: u64,
    calls: usize,
    items: Vec<Option<Outcome<Box<dyn Any + Send>>>>,
    seed: Option<u64>,
    rounds: Vec<outcome::Round>,
}

impl BatchOutcomes {
    /// How many children ran.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no child ran.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The outcomes of the call named by `handle`, one per repetition, in order.
    ///
    /// # Panics
    ///
    /// If `handle` comes from another batch, or was taken already.
    #[track_caller]
    pub fn take<R: 'static>(&mut self, handle: Handle<R>) -> Outcomes<R> {
        assert_eq!(
            handle.batch, self.id,
            "this handle belongs to another stampede::Batch"
        );
        let items = (handle.slot..self.items.len())
            .step_by(self.calls.max(1))
            .map(|i| {
                let outcome = self.items[i].take().expect("each handle can be taken once");
                outcome.map(|value| match value.downcast::<R>() {
                    Ok(value) => Status::Returned(*value),
                    Err(_) => unreachable!("the handle's type is the call's return type"),
                })
            })
            .collect();
        Outcomes {
            items,
            seed: self.seed,
            rounds: self.rounds.clone(),
            schedule: None,
        }
    }
}

/// A summary line, then each child that did not return, with its output.
impl fmt::Display for BatchOutcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        outcome::write_report(f, self.items.iter().flatten(), self.seed, &self.rounds)
    }
}

impl Options {
    /// Runs a heterogeneous [`Batch`] with these options.
    ///
    /// ```no_run
    /// # #[stampede::function] fn deposit(amount: u64) {}
    /// # #[stampede::function] fn balance() -> u64 { 0 }
    /// use std::time::Duration;
    /// let mut batch = stampede::Batch::new();
    /// let deposits = batch.add(deposit, 10);
    /// let reads = batch.add(balance, ());
    /// let mut done = stampede::Options::new()
    ///     .timeout(Duration::from_secs(10))
    ///     .jitter(Duration::from_micros(100))
    ///     .run(&batch)?;
    /// done.take(deposits).assert_all_returned();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call_concurrently`](crate::call_concurrently), for any call of the batch.
    pub fn run(&self, batch: &Batch) -> Result<BatchOutcomes> {
        if self.strategy.is_some() || self.replay.is_some() {
            return Err(Error::InvalidOptions(
                "a scheduled run (`strategy`, `replay`) is made by `call_concurrently`; a \
                 Batch's children are not scheduled"
                    .into(),
            ));
        }
        let plan = Plan::new(self)?;
        let jobs = batch
            .calls()?
            .iter()
            .map(|call| plan.job(call.function, call.args.clone()))
            .collect::<Result<Vec<_>>>()?;
        let count = jobs.len().checked_mul(batch.repeats).ok_or_else(|| {
            Error::InvalidOptions(format!(
                "{} calls repeated {} times overflow",
                jobs.len(),
                batch.repeats
            ))
        })?;
        let run = plan.run(&jobs, count)?;
        Ok(batch.collect(run, plan.reported_seed()))
    }
}

impl fmt::Debug for BatchOutcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchOutcomes({self})")
    }
}
