//! Test code under real concurrency, in real processes.
//!
//! stampede calls a function in N fresh copies of the running binary at the
//! same instant and hands back what each one did: its returned value, its
//! panic, its crash or its timeout, with its output. Use it when a race, a
//! leak or a shared database only shows up with several processes at once:
//! two workers claiming one ticket in a SQLite file, a client library that
//! leaks a socket per call, a lock file that is not quite exclusive.
//!
//! # Example
//!
//! ```no_run
//! stampede::entry!(); // once per test crate: the children's way in
//!
//! #[stampede::function]
//! fn claim(db: std::path::PathBuf) -> bool {
//!     // BEGIN; SELECT ...; UPDATE ...; COMMIT — true if this process won
//! #   let _ = db; true
//! }
//!
//! #[test]
//! fn exactly_one_worker_claims_the_ticket() {
//! #   let db_path = std::path::PathBuf::new();
//!     let outcomes = stampede::call_concurrently(8, claim, db_path).unwrap();
//!     assert_eq!(outcomes.values().filter(|won| **won).count(), 1);
//! }
//! # fn main() {}
//! ```
//!
//! - [`#[stampede::function]`](macro@function) registers a plain function
//!   (an `async fn` too, with the cargo feature `tokio`). Its arguments and
//!   return value travel between processes, so they are
//!   `Serialize + DeserializeOwned`.
//! - [`call_concurrently(n, f, args)`](call_concurrently) runs `f(args)` in
//!   `n` children: `args` is `()` for no argument, the value for one, a tuple
//!   for several.
//! - [`Outcomes`] lists what each child did ([`Outcome`], [`Status`]):
//!   [`values`](Outcomes::values) are the returned values,
//!   [`unwrap_all`](Outcomes::unwrap_all) panics with a report of every
//!   child that did not return, and `Display` prints that report.
//! - [`Options`] tunes a call (timeout, barrier, environment, concurrency
//!   limit, output capture, jitter); [`Batch`] runs different functions in one
//!   concurrent batch.
//!
//! # Finding races
//!
//! - **Start barrier.** On by default: every child is started, loaded and has
//!   decoded its arguments before any of them enters the function; then all
//!   are let go at once.
//! - **[`checkpoint()`]**, inside the function, after per-child setup
//!   (opening a connection, preparing statements): a second release point,
//!   so the racy part starts together too.
//! - **Fan-out**: [`Options::on_checkpoint`] runs a trigger in the parent
//!   once every child has reached the checkpoint, before releasing them (a
//!   publish once every subscriber is subscribed);
//!   [`Options::checkpoint_release`] takes a [`Release`] policy with a
//!   deadline; [`Outcomes::stages`] counts every child at every stage.
//! - **Assertions** that fail with a report of every child:
//!   [`assert_exactly_one`](Outcomes::assert_exactly_one),
//!   [`assert_count`](Outcomes::assert_count),
//!   [`assert_all_returned`](Outcomes::assert_all_returned),
//!   [`assert_none_panicked`](Outcomes::assert_none_panicked).
//! - **[`Hunt`]** repeats a scenario up to a number of runs or a time budget
//!   and stops at the first failing run, saying which one and why.
//! - **[Jitter](Options::jitter)** delays each child by a seeded random amount
//!   after each release; the seed is reported so the delays can be replayed.
//! - **[`#[stampede::flaky]`](macro@flaky)** reruns a genuinely flaky test
//!   until it passes often enough.
//!
//! The [recipes guide](guide::recipes) shows these on a SQLite database
//! shared by every child (the naive claim, `BEGIN IMMEDIATE`, lost updates,
//! a UNIQUE constraint as arbiter, WAL and `busy_timeout`), the two traps
//! users hit (an in-memory database is private to each process; data the
//! parent has not committed is invisible to children), and how often each
//! planted race is caught.
//!
//! # The entry line
//!
//! A child is the test binary itself, started again. It needs a door into
//! stampede, one line per binary:
//!
//! - **test crates**: `stampede::entry!();` at the root of each integration
//!   test file, or inside the `#[cfg(test)]` module for unit tests in `src/`.
//!   It adds one test, `__stampede_entry`, that does nothing in a normal run.
//! - **binaries and examples**: `stampede::init();` as the first line of `main`.
//!   Code before it runs again in every child; an outcome notes a child that
//!   printed before `init()` ran.
//!
//! Without either, [`call_concurrently`] fails at once with
//! [`Error::MissingEntry`], which names the missing line.
//!
//! # How it works
//!
//! Each child is a fresh execution of the running binary (never a fork),
//! entered after `main` starts, finding the function by name, holding only
//! its stdio, its channel and the call's gate, and dying with its whole
//! process group when the parent dies. The [how it works](guide::how_it_works)
//! page tells the whole story.
//!
//! # Limits
//!
//! - Unix only, Linux first (parent-death signal, pidfd, `close_range`). On
//!   other Unix systems children do not die with a killed parent.
//! - A process that leaves a child's process group on purpose (`setsid`, a
//!   daemon's double fork) is not killed with it.
//! - A function registered inside an `impl` block is not supported; use a free `fn`.
//! - Arguments and results are encoded with bincode 1.3.3, whose authors
//!   ended development in 2025 (RUSTSEC-2025-0141, "unmaintained") and
//!   consider it complete. Only stampede's `protocol::codec` module names it.
//! - Test binaries built with `harness = false` have no libtest to dispatch
//!   to: call `stampede::init()` first in their `main` instead of `entry!()`.
//!
//! # Environment variables
//!
//! - `STAMPEDE_CHILD` is set by the parent on each child (`1:<parent
//!   pid>:<index>`). A process whose actual parent is not that pid ignores it.

#![deny(unsafe_code)]
#![warn(missing_docs)]

// Lets `#[stampede::function]` be used in this crate's own unit tests.
extern crate self as stampede;

// Leaves: import nothing of the crate (sys, protocol, error, panic,
// addresses) or only the clock (outcome).
mod addresses;
mod clock;
mod error;
mod libpq;
mod outcome;
mod panic;
mod percent;
mod protocol;
#[allow(unsafe_code)]
mod sys;
// Shared by both sides.
#[cfg(feature = "tokio")]
mod async_fn;
mod entry;
mod registry;
mod seed;
mod serde_check;
// The two sides, which never import each other.
mod child;
mod parent;
// Front ends, then tools.
mod call;
mod flaky;
pub mod history;
mod hunt;
mod load;
pub mod model;
mod schedule;
pub mod services;

pub use call::{Batch, BatchOutcomes, Handle, Options};
pub use clock::Timestamp;
pub use error::{Error, Result};
pub use hunt::{Hunt, HuntFailure, HuntSummary, Run};
pub use load::{Latency, Leak, LeakKind, Load, LoadReport, WorkerFigures};
pub use outcome::{
    Captured, CheckpointTiming, Exit, Outcome, Outcomes, RoundStages, RunResult, Schedule, Spread,
    Stages, Status, Timeline, Timings,
};
pub use parent::Release;
pub use registry::Function;
pub use schedule::Strategy;
pub use stampede_macros::flaky;
/// ```no_run
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Order {
///     id: u64,
///     items: Vec<String>,
/// }
///
/// /// Places an order; returns the id the store gave it.
/// #[stampede::function]
/// fn place(store: std::path::PathBuf, order: Order) -> Result<u64, String> {
///     // open `store`, insert `order`...
/// #   let _ = store;
///     Ok(order.id)
/// }
///
/// # fn main() -> Result<(), stampede::Error> {
/// let order = Order { id: 7, items: vec!["tea".into()] };
/// let placed = stampede::call_concurrently(4, place, ("store.db".into(), order))?;
/// // Still an ordinary function in this process:
/// assert_eq!(place("store.db".into(), Order { id: 1, items: vec![] }), Ok(1));
/// # let _ = placed;
/// # Ok(())
/// # }
/// ```
///
/// With the `tokio` feature:
///
/// ```ignore
/// #[stampede::function]
/// async fn fetch(port: u16) -> String {
///     let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
///     // ...
/// #   String::new()
/// }
///
/// let pages = stampede::call_concurrently(8, fetch, 8080)?.unwrap_all();
/// ```
pub use stampede_macros::function;

/// Calls `f(args)` in `n` fresh child processes at the same instant and
/// returns what each one did, in order.
///
/// `args` is `()` for a function without arguments, the argument itself for
/// one, and a tuple for several; every child gets the same arguments. `f`
/// must carry `#[stampede::function]`. Uses the default [`Options`].
///
/// ```no_run
/// #[stampede::function]
/// fn add(a: u32, b: u32) -> u32 { a + b }
///
/// let sums = stampede::call_concurrently(4, add, (2, 3))?.unwrap_all();
/// assert_eq!(sums, [5, 5, 5, 5]);
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// # Errors
///
/// Before any child starts: [`Error::NotRegistered`] for a closure or an
/// unmarked function, [`Error::MissingEntry`] when this binary has no
/// `stampede::entry!()` or `stampede::init()`, [`Error::Encode`] for
/// arguments that do not encode. While starting them: [`Error::Spawn`] (for
/// example a process or descriptor limit) or [`Error::Io`]; the children
/// already started are then killed and reaped. What a child did — panic,
/// crash, timeout — is not an error but its [`Outcome`]. `n == 0` returns
/// empty outcomes.
pub fn call_concurrently<F, M>(n: usize, f: F, args: F::Args) -> Result<Outcomes<F::Output>>
where
    F: Function<M>,
{
    Options::new().call_concurrently(n, f, args)
}

/// The door into stampede for a binary or an example: call it as the first
/// line of `main`. In a child it runs the requested function and exits; in
/// the parent it returns at once.
///
/// A child runs `main` from the top, so code placed before `init()` runs
/// again in every child: a logger set up twice, a server started N more
/// times, a file truncated by each child. What such code prints is kept in
/// the child's output, and its outcome carries the note "this child printed
/// before `stampede::init()` ran". Test binaries (`stampede::entry!()`) do
/// not have this trap: their children run only the dispatcher test.
///
/// ```no_run
/// fn main() {
///     stampede::init(); // first: in a child, nothing below runs
///     run_the_scenario();
/// }
/// # fn run_the_scenario() {}
/// ```
pub fn init() {
    child::init();
}

/// Waits, inside a registered function, until every child of the call has
/// reached this point (or ended), then lets them all go at once.
///
/// The start barrier releases children when they enter the function; work
/// done before the racy part (opening a connection, reading a file) spreads
/// them out again. Call `checkpoint()` after that setup so the racy part
/// starts together. Each call is a round of its own (the second call waits
/// for every child's second call); outside a stampede child it returns at
/// once. Children of the same call that never reach a round are waited for
/// until they end, or as long as the [release policy](Options::checkpoint_release)
/// says. [`Options::on_checkpoint`] runs a trigger in the parent before each
/// release. With
/// [`Options::barrier`]`(false)` it does not wait either. With
/// [`Options::jitter`] on, each child's delay is applied again after the
/// checkpoint, so the order they are let go in still varies.
///
/// ```no_run
/// # use std::path::PathBuf;
/// #[stampede::function]
/// fn claim(db: PathBuf) -> bool {
///     let conn = std::fs::File::open(&db); // setup, at each child's own pace
///     stampede::checkpoint();              // all children continue together
///     // ... the racy check-then-act ...
/// #   conn.is_ok()
/// }
/// ```
pub fn checkpoint() {
    child::checkpoint();
}

/// Reports, inside a registered function, that this child reached the next
/// checkpoint round, and carries on without waiting (a subscriber that must
/// go straight back to reading its socket). The other children's
/// [`checkpoint()`] of that round counts this child as arrived. Outside a
/// stampede child it does nothing.
///
/// ```no_run
/// #[stampede::function]
/// fn subscriber(port: u16) -> usize {
///     let socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
///     stampede::arrive(); // counted as subscribed; keep reading right away
///     // ... read every message the parent's trigger publishes ...
/// #   0
/// }
/// ```
pub fn arrive() {
    child::arrive();
}

/// A named step, inside a registered function: in a scheduled run
/// ([`Options::strategy`], [`Options::replay`]) the child tells the parent
/// it is here and waits for its word, so that between two steps exactly one
/// child runs, in an order the parent chooses and can repeat. In any other
/// run (and outside a child) it returns at once, so one function serves
/// both. A function's start and its return are steps too (`start`, `end`).
///
/// Put a step between the operations whose interleaving matters: after a
/// read and before the write that depends on it. A name may come again,
/// even twice in a row (a step in a loop): each time is a passage of its
/// own, and a replay checks them in order. A step called from another
/// thread of the function holds the child as well.
///
/// ```no_run
/// #[stampede::function]
/// fn claim(db: std::path::PathBuf) -> bool {
///     # let free = true;
///     // SELECT: is the ticket free?
///     stampede::step("after-select");
///     // UPDATE: take it
///     # free
/// }
/// ```
///
/// # Panics
///
/// In a scheduled run, when `name` is empty, has whitespace or starts with
/// `!` (it is written in the schedule's text, where `!` marks a blocked
/// child).
#[track_caller]
pub fn step(name: &str) {
    child::step(name);
}

/// A named [`step`] that says what the child touches around it: from its
/// previous step to this one, and from this one to its next — rows,
/// accounts, files, any names. Two moves whose keys have nothing in common
/// commute (either order gives the same result), so an
/// [exhaustive](Strategy::exhaustive) search tries one order of them, not
/// both: two children on their own rows, one keyed step each, take 4 runs
/// instead of 14; three, 16 instead of 192. Once a child names keys, its
/// start and its return add none; a plain `step` touches anything, and a
/// child that never names keys is never taken to commute.
///
/// Keys that leave out something the code touches make the search skip
/// schedules it should have tried: name every row or file the moves on
/// either side read or write, or use `step`.
///
/// ```no_run
/// #[stampede::function]
/// fn transfer(args: (u32, u32)) {
///     let (from, to) = args;
///     // BEGIN; SELECT both balances
///     stampede::step_with("read", [format!("account:{from}"), format!("account:{to}")]);
///     // UPDATE both accounts; COMMIT
/// }
/// ```
///
/// # Panics
///
/// As [`step`].
#[track_caller]
pub fn step_with<K: std::fmt::Display>(name: &str, keys: impl IntoIterator<Item = K>) {
    child::step_with(name, keys);
}

/// Names this child's PostgreSQL connection to a scheduled run: backend
/// `backend_pid` (`SELECT pg_backend_pid()`) on the server at `url` (a
/// libpq URL, such as [`services::Postgres::url`]). When a child let go
/// from a step has not reached its next one, the parent asks that server
/// whether its backend waits on a lock another child's backend holds
/// (`pg_blocking_pids`), and takes it as blocked from 2 ms, with a note
/// that names the wait. Without this, a blocked child is recognised only by
/// every thread of it sleeping for 25 ms.
///
/// PostgreSQL's own deadlock detector never fires for such a wait: its
/// other half is a client parked at a step, not waiting on a lock.
///
/// The parent connects with the URL's user and password (trust, plain or
/// SCRAM-SHA-256 authentication). A server it cannot ask is named in a note
/// and the generic wait decides. In any other run, and outside a child, it
/// does nothing.
///
/// ```no_run
/// #[stampede::function]
/// fn transfer(url: String) {
///     let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
///     let me: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
///     stampede::postgres_backend(&url, me);
///     let mut tx = db.transaction().unwrap();
///     tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).unwrap();
///     stampede::step("debited"); // holding the row lock
///     tx.commit().unwrap();
/// }
/// ```
pub fn postgres_backend(url: &str, backend_pid: i32) {
    child::postgres_backend(url, backend_pid);
}

/// This child's index in its call (from 0, as in
/// [`Outcome::index`]); for a [`Load`] worker, its worker slot; `None`
/// outside a child (in the test itself).
///
/// ```no_run
/// #[stampede::function]
/// fn writer(dir: std::path::PathBuf) {
///     let me = stampede::child_index().expect("in a child");
///     std::fs::write(dir.join(format!("child-{me}")), b"hello").unwrap();
/// }
/// ```
pub fn child_index() -> Option<usize> {
    child::index()
}

/// Whether this process is a child started by stampede.
///
/// ```no_run
/// // In a helper shared by the test and the functions it registers:
/// let role = if stampede::is_child() { "child" } else { "parent" };
/// println!("running as the {role}");
/// ```
pub fn is_child() -> bool {
    child::is_child()
}

/// The door into stampede for a test crate: write `stampede::entry!();` once
/// at the root of each integration test file, or inside the `#[cfg(test)]`
/// module for unit tests.
///
/// It defines one test, `__stampede_entry`, which a child runs alone to reach
/// stampede; in a normal test run it returns at once.
#[macro_export]
macro_rules! entry {
    () => {
        #[test]
        fn __stampede_entry() {
            $crate::__private::enter_from_test();
        }

        #[cfg(test)]
        $crate::__private::inventory::submit! {
            $crate::__private::EntryPoint::new(::core::module_path!())
        }
    };
}

/// Used by generated code, not public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "tokio")]
    pub use crate::async_fn::block_on;
    pub use crate::child::enter_from_test;
    pub use crate::entry::EntryPoint;
    pub use crate::registry::{Prepared, Registration, name_of, prepare};
    pub use crate::serde_check::{
        Fallback, FallbackPrepare, PrepareProbe, Probe, ViaFunction, ViaSerde, assert_serde,
    };
    pub use inventory;
    pub use std::string::String;

    /// Runtime of `#[stampede::flaky]`; used by generated code, not public API.
    pub mod flaky {
        pub use crate::flaky::{Attempt, Attempts, Failure, run, run_test};
    }
}

/// Unit tests inside `src/` reach stampede through `entry!()` in their
/// `#[cfg(test)]` module, as users' crates do.
#[cfg(test)]
mod unit_tests {
    crate::entry!();

    #[stampede::function]
    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn unit_tests_inside_src_can_call_concurrently() {
        let outcomes = crate::call_concurrently(3, double, 21).unwrap();
        assert_eq!(outcomes[0].function(), "stampede::unit_tests::double");
        assert_eq!(outcomes.unwrap_all(), [42, 42, 42]);
    }
}

/// Longer documentation, beyond the reference.
pub mod guide {
    #[doc = include_str!("../docs/how-it-works.md")]
    pub mod how_it_works {}

    #[doc = include_str!("../docs/recipes.md")]
    pub mod recipes {}

    #[doc = include_str!("../docs/scheduling.md")]
    pub mod scheduling {}
}

/// Compiles the README's Rust snippets as doctests, so they keep working.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
