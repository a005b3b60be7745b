//! What each child did: [`Outcome`], and the results of a batch, [`Outcomes`].

use std::fmt;
use std::time::Duration;

mod assertions;
mod history;
mod report;
mod schedule;
mod stages;
mod timeline;
mod transaction;

pub use history::{Ending, History, Operation, Value};
pub(crate) use history::{digest, from_events, span};
pub(crate) use report::{
    children_list, summary, write_report, write_seed, write_stream, write_timeline,
};
pub(crate) use schedule::Recorder;
pub use schedule::Schedule;
pub(crate) use stages::{Round, human};
pub use stages::{RoundStages, Spread, Stages};
pub use timeline::Timeline;
pub use transaction::Access;
pub(crate) use transaction::{Accesses, Mark, Recorded, left_open, recorded};

/// How a child ended.
///
/// ```no_run
/// # #[stampede::function] fn work() -> u32 { 1 }
/// use stampede::Status;
/// for outcome in &stampede::call_concurrently(4, work, ())? {
///     match outcome.status() {
///         Status::Returned(value) => println!("returned {value}"),
///         Status::Panicked { message, location } => println!("panicked at {location:?}: {message}"),
///         Status::Crashed(exit) => println!("crashed: {exit}"),
///         Status::TimedOut { after, .. } => println!("timed out after {after:?}"),
///         other => println!("{other:?}"),
///     }
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Status<R> {
    /// The function returned this value.
    Returned(R),
    /// The function panicked.
    Panicked {
        /// The panic message (`"Box<dyn Any>"` for a payload that is not a string).
        message: String,
        /// Where it panicked, as `file:line:column`.
        location: Option<String>,
    },
    /// The child process ended without reporting a result: it exited (for
    /// example through `std::process::exit` or an abort) or was killed by a signal.
    Crashed(Exit),
    /// The child ran past its time limit; its process group was killed.
    TimedOut {
        /// How long it had run when it was killed, as measured: from its
        /// start (a `Load` call: from when its worker was free for it).
        after: Duration,
        /// The limit it ran past ([`Options::timeout`](crate::Options::timeout),
        /// [`Load::call_timeout`](crate::Load::call_timeout)).
        limit: Duration,
    },
    /// stampede could not run the function in the child or could not read its
    /// report: undecodable arguments or result, garbage on the result channel.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl<R> Status<R> {
    /// A returned value through `f`; every other status as it is. The one
    /// mapping of statuses: encoded values to typed ones.
    pub(crate) fn and_then<S>(self, f: impl FnOnce(R) -> Status<S>) -> Status<S> {
        match self {
            Status::Returned(value) => f(value),
            Status::Panicked { message, location } => Status::Panicked { message, location },
            Status::Crashed(exit) => Status::Crashed(exit),
            Status::TimedOut { after, limit } => Status::TimedOut { after, limit },
            Status::Failed { reason } => Status::Failed { reason },
        }
    }
}

/// How a process ended.
///
/// ```no_run
/// # #[stampede::function] fn abort() { std::process::abort() }
/// use stampede::{Exit, Status};
/// let outcomes = stampede::call_concurrently(1, abort, ())?;
/// assert!(matches!(
///     outcomes[0].status(),
///     Status::Crashed(Exit::Signal { name: "SIGABRT", .. })
/// ));
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal {
        /// The signal number.
        number: i32,
        /// The signal's name, e.g. `"SIGSEGV"`.
        name: &'static str,
    },
    /// It ended, but its exit status was lost: something else in the parent
    /// process reaped it first (an ignored SIGCHLD, or a `wait()` for any
    /// child in another thread). See the outcome's notes.
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal { number, name } => write!(f, "signal {number} ({name})"),
            Exit::Unknown => write!(f, "exit status unknown"),
        }
    }
}

/// The tail of what a child wrote to one stream, bounded by
/// [`Options::capture_limit`](crate::Options::capture_limit).
///
/// ```no_run
/// # #[stampede::function] fn chatty() { println!("hello") }
/// let outcomes = stampede::call_concurrently(2, chatty, ())?;
/// for outcome in &outcomes {
///     assert_eq!(outcome.stdout().to_string_lossy(), "hello\n");
///     assert_eq!(outcome.stdout().as_bytes(), b"hello\n");
///     assert_eq!(outcome.stdout().total_len(), 6);
///     assert!(!outcome.stderr().is_truncated());
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub(crate) tail: Vec<u8>,
    pub(crate) total: u64,
}

impl Captured {
    /// The kept bytes: all of them, or the last ones when the child wrote more
    /// than the capture limit.
    pub fn as_bytes(&self) -> &[u8] {
        &self.tail
    }

    /// The kept bytes as text, with invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.tail)
    }

    /// How many bytes the child wrote in all.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Whether older bytes were dropped to respect the capture limit.
    pub fn is_truncated(&self) -> bool {
        self.total > self.tail.len() as u64
    }

    /// Keeps at most the last `bytes` bytes, from the start of a line when
    /// one begins among them; the total stays what was written.
    pub(crate) fn keep_last(&mut self, bytes: usize) {
        if self.tail.len() <= bytes {
            return;
        }
        let mut from = self.tail.len() - bytes;
        if let Some(newline) = self.tail[from..].iter().position(|&b| b == b'\n') {
            if from + newline + 1 < self.tail.len() {
                from += newline + 1;
            }
        }
        // A new allocation of the tail's size: shrunk in place, the tail
        // would stay where its whole buffer was, and the freed rest be
        // too small for the next call's buffer (a heap of such holes).
        self.tail = self.tail[from..].to_vec();
    }
}

/// One checkpoint round a child reached, measured like [`Timings`].
///
/// ```no_run
/// # #[stampede::function] fn work() { stampede::checkpoint() }
/// for outcome in &stampede::call_concurrently(4, work, ())? {
///     for (round, timing) in outcome.timings().checkpoints.iter().enumerate() {
///         println!("round {}: reached {:?}, let go {:?}", round + 1, timing.reached, timing.passed);
///     }
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointTiming {
    /// The child reached the round ([`checkpoint()`](crate::checkpoint) or
    /// [`arrive()`](crate::arrive) was called).
    pub reached: Duration,
    /// The parent released the round (wrote its byte to the gate, after the
    /// [trigger](crate::Options::on_checkpoint) ran). For a child that
    /// reached the round after its release (a policy that did not wait for
    /// it), the moment it reached it. `None`: the round was never released.
    pub released: Option<Duration>,
    /// The child went on (it saw the release, after its jitter delay; at
    /// once for `arrive()`). `None` if it never did, or did not report it
    /// (it was killed, or crashed before its report).
    pub passed: Option<Duration>,
}

/// When things happened to one child, measured from the start of the batch
/// on the system's monotonic clock (shared by parent and children).
///
/// ```no_run
/// # #[stampede::function] fn work() -> u32 { 1 }
/// for outcome in &stampede::call_concurrently(4, work, ())? {
///     let t = outcome.timings();
///     println!(
///         "child {}: spawned {:?}, ready {:?}, started {:?}, finished {:?}, ended {:?}",
///         outcome.index(), t.spawned, t.ready, t.started, t.finished, t.ended
///     );
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timings {
    /// The start of the call, from which the durations below are measured.
    pub origin: crate::Timestamp,
    /// The parent started the process.
    pub spawned: Duration,
    /// The child had decoded its arguments and reached the barrier.
    pub ready: Option<Duration>,
    /// The child entered the function (for a child that never reported,
    /// because it crashed or timed out: when the start barrier let it go).
    pub started: Option<Duration>,
    /// The child was let go from its first [`checkpoint()`](crate::checkpoint),
    /// if the function called it (the first entry of `checkpoints`' `passed`).
    pub checkpoint: Option<Duration>,
    /// Each checkpoint round the child reached, in order (round 1 first).
    pub checkpoints: Vec<CheckpointTiming>,
    /// The function returned or panicked.
    pub finished: Option<Duration>,
    /// The parent saw the process end.
    pub ended: Duration,
}

/// What one child did: its [`Status`], output and timings.
///
/// ```no_run
/// # #[stampede::function] fn work() -> u32 { 1 }
/// let outcomes = stampede::call_concurrently(4, work, ())?;
/// for outcome in &outcomes {
///     if !outcome.is_returned() {
///         // "child 2 (pid 4711) running `my_tests::work` panicked at …", notes, output
///         eprintln!("{outcome}");
///     }
/// }
/// let first: &stampede::Outcome<u32> = &outcomes[0];
/// println!("child {} was pid {} and returned {:?}", first.index(), first.pid(), first.value());
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// Every accessor, on a function that may panic:
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { true }
/// use stampede::Status;
/// for outcome in stampede::call_concurrently(4, claim, ())? {
///     println!("child {} ran `{}`", outcome.index(), outcome.function());
///     if outcome.is_panicked() {
///         println!("it panicked: {}", outcome.panic_message().unwrap_or_default());
///     }
///     if let Status::Crashed(exit) = outcome.status() {
///         println!("it crashed: {exit}");
///     }
///     for note in outcome.notes() {
///         println!("note: {note}");
///     }
///     println!(
///         "{} bytes on stdout, {} on stderr, entered at {:?}, peak memory {:?} bytes",
///         outcome.stdout().total_len(),
///         outcome.stderr().total_len(),
///         outcome.timings().started,
///         outcome.max_rss(),
///     );
///     match outcome.into_value() {
///         Ok(won) => println!("returned {won}"),
///         Err(outcome) => println!("did not return:\n{outcome}"),
///     }
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outcome<R> {
    pub(crate) index: usize,
    pub(crate) pid: u32,
    pub(crate) function: &'static str,
    pub(crate) status: Status<R>,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
    pub(crate) timings: Timings,
    pub(crate) notes: Vec<String>,
    pub(crate) max_rss: Option<u64>,
    /// For a call of a [`Load`](crate::Load): the worker slot that ran it.
    pub(crate) worker: Option<usize>,
    /// Its operations (`stampede::history`), in the order invoked.
    pub(crate) history: Vec<Operation>,
    /// Whether every operation it reported arrived (its channel held).
    pub(crate) history_complete: bool,
}

impl<R> Outcome<R> {
    /// The child's position in its batch, from 0, in call order.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// For a failed call of a [`Load`](crate::Load) (whose
    /// [`index`](Self::index) is the call's): the worker slot that ran it,
    /// from 0. `None` for the children of a concurrent call.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(100).workers(4).run(fetch, 8080)?;
    /// for failed in report.failures() {
    ///     println!("call {} failed in worker {:?}", failed.index(), failed.worker());
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn worker(&self) -> Option<usize> {
        self.worker
    }

    /// The path of the function the child ran.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// How the child ended.
    pub fn status(&self) -> &Status<R> {
        &self.status
    }

    /// The returned value, if the function returned.
    pub fn value(&self) -> Option<&R> {
        match &self.status {
            Status::Returned(value) => Some(value),
            _ => None,
        }
    }

    /// The returned value, or this outcome back if the function did not return.
    #[expect(
        clippy::result_large_err,
        reason = "the error is the whole outcome, output included, handed back to report it"
    )]
    pub fn into_value(self) -> Result<R, Outcome<R>> {
        match self.status {
            Status::Returned(value) => Ok(value),
            status => Err(Outcome { status, ..self }),
        }
    }

    /// Whether the function returned (as opposed to panicking, crashing,
    /// timing out or failing).
    pub fn is_returned(&self) -> bool {
        matches!(self.status, Status::Returned(_))
    }

    /// Whether the function panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self.status, Status::Panicked { .. })
    }

    /// The panic message, if the function panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.status {
            Status::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// What the child wrote to stdout (its tail).
    pub fn stdout(&self) -> &Captured {
        &self.stdout
    }

    /// What the child wrote to stderr (its tail).
    pub fn stderr(&self) -> &Captured {
        &self.stderr
    }

    /// When things happened to this child.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// What stampede noticed about this child beyond its status, one
    /// sentence each: what it was waiting for when it timed out, output it
    /// could not capture, an exit status lost to another reaper.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The child's peak resident memory in bytes (`ru_maxrss` when it was
    /// reaped), where the system reports it.
    pub fn max_rss(&self) -> Option<u64> {
        self.max_rss
    }

    pub(crate) fn map<S>(self, f: impl FnOnce(R) -> Status<S>) -> Outcome<S> {
        let status = self.status.and_then(f);
        Outcome {
            index: self.index,
            pid: self.pid,
            function: self.function,
            status,
            stdout: self.stdout,
            stderr: self.stderr,
            timings: self.timings,
            notes: self.notes,
            max_rss: self.max_rss,
            worker: self.worker,
            history: self.history,
            history_complete: self.history_complete,
        }
    }
}

/// What every child of a call did, in call order.
///
/// ```no_run
/// # #[stampede::function] fn work() -> u32 { 1 }
/// let outcomes: stampede::Outcomes<u32> = stampede::call_concurrently(8, work, ())?;
/// assert_eq!(outcomes.len(), 8);
/// println!("start spread: {:?}", outcomes.start_spread());
/// if !outcomes.all_returned() {
///     println!("{outcomes}"); // a summary, every failed child with its output, a timeline
/// }
/// let values: Vec<u32> = outcomes.unwrap_all();
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// Every accessor, on a call that may not go well:
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { stampede::checkpoint(); true }
/// use std::time::Duration;
/// let outcomes = stampede::Options::new()
///     .jitter(Duration::from_micros(200))
///     .call_concurrently(8, claim, ())?;
/// assert!(!outcomes.is_empty());
/// let winners = outcomes.values().filter(|won| **won).count();
/// let pids: Vec<u32> = outcomes.iter().map(|outcome| outcome.pid()).collect();
/// println!("{winners} winners among pids {pids:?}");
/// println!("let go from the checkpoint within {:?}", outcomes.checkpoint_spread());
/// if let Some(seed) = outcomes.seed() {
///     println!("Options::seed({seed}) replays the jitter delays");
/// }
/// for failed in outcomes.failures() {
///     println!("child {} did not return", failed.index());
/// }
/// if !outcomes.all_returned() {
///     let report: String = outcomes.report(); // what `Display` prints
///     eprintln!("{report}");
/// }
/// let each: Vec<stampede::Outcome<bool>> = outcomes.into_vec();
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outcomes<R> {
    pub(crate) items: Vec<Outcome<R>>,
    pub(crate) seed: Option<u64>,
    /// What the parent did at each gate round (0: the start barrier).
    pub(crate) rounds: Vec<Round>,
    /// A scheduled run's schedule.
    pub(crate) schedule: Option<Schedule>,
}

impl<R> Outcomes<R> {
    /// How many children ran.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// A scheduled run's schedule ([`Options::strategy`](crate::Options::strategy)):
    /// which child went on from which step, in order. Its `Display` is the
    /// line [`Options::replay`](crate::Options::replay) takes. `None` for a
    /// run that was not scheduled.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// let outcomes = stampede::Options::new()
    ///     .strategy(stampede::Strategy::random())
    ///     .call_concurrently(2, claim, ())?;
    /// let schedule = outcomes.schedule().unwrap().to_string();
    /// let again = stampede::Options::new()
    ///     .replay(&schedule)
    ///     .call_concurrently(2, claim, ())?;
    /// assert_eq!(again.schedule(), outcomes.schedule());
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Whether no child ran (`n == 0`).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each child's outcome, in call order.
    pub fn iter(&self) -> std::slice::Iter<'_, Outcome<R>> {
        self.items.iter()
    }

    /// The values returned by the children that returned, in call order.
    pub fn values(&self) -> impl Iterator<Item = &R> {
        self.items.iter().filter_map(Outcome::value)
    }

    /// The outcomes of the children that did not return.
    pub fn failures(&self) -> impl Iterator<Item = &Outcome<R>> {
        self.items.iter().filter(|o| !o.is_returned())
    }

    /// Whether every child returned.
    pub fn all_returned(&self) -> bool {
        self.items.iter().all(Outcome::is_returned)
    }

    /// The spread of function-entry times: latest minus earliest `started`.
    /// `None` if fewer than one child entered the function.
    pub fn start_spread(&self) -> Option<Duration> {
        spread(self.items.iter().filter_map(|o| o.timings.started))
    }

    /// The spread of the times children were let go from
    /// [`checkpoint()`](crate::checkpoint): latest minus earliest. `None` if
    /// no child passed one.
    pub fn checkpoint_spread(&self) -> Option<Duration> {
        spread(self.items.iter().filter_map(|o| o.timings.checkpoint))
    }

    /// How many children got through each stage of the call, and how
    /// spread out in time they were: spawned, ready, released from the start
    /// barrier, then per checkpoint round reached and released, and how
    /// they ended. `Display` prints it as a short table.
    ///
    /// ```no_run
    /// # #[stampede::function] fn subscriber() {}
    /// let outcomes = stampede::call_concurrently(100, subscriber, ())?;
    /// let stages = outcomes.stages();
    /// assert_eq!(stages.children, 100);
    /// println!("{stages}");
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn stages(&self) -> Stages {
        Stages::of(&self.items, &self.rounds)
    }

    /// Each child's life drawn as a line of characters, all to the same
    /// time scale: when it started, waited at the barrier, ran, waited at
    /// checkpoints, and how and when it ended. `Display` draws it; failure
    /// reports of up to 32 children end with it.
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// let outcomes = stampede::call_concurrently(4, work, ())?;
    /// println!("{}", outcomes.timeline());
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn timeline(&self) -> Timeline {
        Timeline::of(self.items.iter())
    }

    /// Every returned value, in call order.
    ///
    /// # Panics
    ///
    /// If any child did not return, with a report of every such child,
    /// including its output.
    #[track_caller]
    pub fn unwrap_all(self) -> Vec<R> {
        if !self.all_returned() {
            panic!("{}", self.report());
        }
        self.items
            .into_iter()
            .filter_map(|o| o.into_value().ok())
            .collect()
    }

    /// The seed of the jitter delays, when [`Options::jitter`](crate::Options::jitter)
    /// was on; pass it to [`Options::seed`](crate::Options::seed) to replay the delays.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The outcomes, in call order.
    pub fn into_vec(self) -> Vec<Outcome<R>> {
        self.items
    }

    /// A report: a summary line, then every child that did not return with
    /// its output. This is also what `Display` prints.
    pub fn report(&self) -> String {
        self.to_string()
    }
}

fn spread(times: impl Iterator<Item = Duration> + Clone) -> Option<Duration> {
    Some(times.clone().max()? - times.min()?)
}

impl<R> IntoIterator for Outcomes<R> {
    type Item = Outcome<R>;
    type IntoIter = std::vec::IntoIter<Outcome<R>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, R> IntoIterator for &'a Outcomes<R> {
    type Item = &'a Outcome<R>;
    type IntoIter = std::slice::Iter<'a, Outcome<R>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<R> std::ops::Index<usize> for Outcomes<R> {
    type Output = Outcome<R>;
    fn index(&self, index: usize) -> &Outcome<R> {
        &self.items[index]
    }
}

/// What a [trigger](crate::Options::on_checkpoint) or a
/// [`Hunt`](crate::Hunt)'s scenario returns: `()`, or `Result<(), E>` whose
/// `Err` is a failure with `E`'s `Display` as the message.
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { true }
/// // A scenario may panic (an assertion) or return an error with a message.
/// let summary = stampede::Hunt::runs(100).run(|run| -> Result<(), String> {
///     let outcomes = run.options().call_concurrently(8, claim, ()).map_err(|e| e.to_string())?;
///     match outcomes.values().filter(|won| **won).count() {
///         1 => Ok(()),
///         n => Err(format!("{n} winners")),
///     }
/// });
/// ```
pub trait RunResult {
    /// `Ok` for a pass, or the message of the failure.
    ///
    /// # Errors
    ///
    /// The failure's message, when there was one.
    fn into_result(self) -> Result<(), String>;
}

impl RunResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> RunResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}
