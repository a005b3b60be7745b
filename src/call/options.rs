//! [`Options`]: everything tunable about a call, ending in the same calls as
//! the free functions.

use crate::parent::Passage;
use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{self, Plan};
use crate::error::{Error, Result};
use crate::outcome::{Outcome, Outcomes, Recorder, RunResult, Schedule};
use crate::parent::{Release, Trigger};
use crate::registry::Function;
use crate::schedule::Strategy;

/// Settings for a call. Start from [`Options::new`] (the defaults), change
/// what you need, end with [`call_concurrently`](Options::call_concurrently)
/// or [`run`](Options::run).
///
/// ```no_run
/// # #[stampede::function] fn ping() -> u8 { 1 }
/// use std::time::Duration;
/// let outcomes = stampede::Options::new()
///     .timeout(Duration::from_secs(5))
///     .env("RUST_LOG", "debug")
///     .call_concurrently(16, ping, ())?;
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) timeout: Duration,
    pub(crate) barrier: bool,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) max_concurrent: Option<usize>,
    pub(crate) capture_limit: usize,
    pub(crate) jitter: Duration,
    pub(crate) seed: Option<u64>,
    pub(crate) result_limit: usize,
    pub(crate) release: Release,
    pub(crate) on_checkpoint: Option<Trigger>,
    pub(crate) strategy: Option<Strategy>,
    pub(crate) replay: Option<String>,
    /// A hunt's replay of a shrunk schedule: the number of children, which
    /// overrides the scenario's.
    pub(crate) children: Option<usize>,
    /// A hunt's run: where scheduled calls leave their schedules.
    pub(crate) record: Option<Recorder>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Callback(bool);
        impl fmt::Debug for Callback {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(if self.0 { "<fn>" } else { "None" })
            }
        }
        f.debug_struct("Options")
            .field("timeout", &self.timeout)
            .field("barrier", &self.barrier)
            .field("env", &self.env)
            .field("max_concurrent", &self.max_concurrent)
            .field("capture_limit", &self.capture_limit)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .field("result_limit", &self.result_limit)
            .field("checkpoint_release", &self.release)
            .field("on_checkpoint", &Callback(self.on_checkpoint.is_some()))
            .field("strategy", &self.strategy)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            barrier: true,
            env: Vec::new(),
            max_concurrent: None,
            capture_limit: 64 * 1024,
            jitter: Duration::ZERO,
            seed: None,
            result_limit: 256 << 20,
            release: Release::all(),
            on_checkpoint: None,
            strategy: None,
            replay: None,
            children: None,
            record: None,
        }
    }
}

impl Options {
    /// The defaults: a 60 s timeout per child, the start barrier on, no extra
    /// environment, no limit on children alive at once, 64 KiB of each
    /// child's stdout and stderr kept, no jitter.
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// let options = stampede::Options::new(); // reusable for many calls
    /// let first = options.call_concurrently(4, work, ())?;
    /// let second = options.call_concurrently(4, work, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long each child may run, from its start, before its whole process
    /// group is killed and it is reported as [`Status::TimedOut`](crate::Status::TimedOut).
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// use std::time::Duration;
    /// let outcomes = stampede::Options::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .call_concurrently(4, work, ())?;
    /// let timed_out = outcomes
    ///     .iter()
    ///     .filter(|o| matches!(o.status(), stampede::Status::TimedOut { .. }))
    ///     .count();
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether children wait at a start barrier (the default) so that all of
    /// them enter the function at the same instant, and at
    /// [`checkpoint()`](crate::checkpoint) if the function calls it. Off,
    /// each child runs as soon as it has started and passes checkpoints
    /// without waiting.
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// // Each child runs as soon as it has started: the control of a race test.
    /// let outcomes = stampede::Options::new().barrier(false).call_concurrently(8, work, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn barrier(mut self, on: bool) -> Self {
        self.barrier = on;
        self
    }

    /// Sets an environment variable in every child (on top of the parent's
    /// environment, which children inherit).
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// let outcomes = stampede::Options::new()
    ///     .env("RUST_LOG", "debug")
    ///     .env("DATABASE_URL", "postgres:///test")
    ///     .call_concurrently(4, work, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// At most `limit` children alive at once; the others start as earlier
    /// ones end. With the barrier on, the first `limit` children are released
    /// together and later ones run as soon as they are ready.
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// // 256 calls, never more than 16 processes at once.
    /// let outcomes = stampede::Options::new()
    ///     .max_concurrent(16)
    ///     .call_concurrently(256, work, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn max_concurrent(mut self, limit: usize) -> Self {
        self.max_concurrent = Some(limit);
        self
    }

    /// How many bytes of each child's stdout and of its stderr to keep (the
    /// tail; older bytes are dropped and counted).
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// let outcomes = stampede::Options::new()
    ///     .capture_limit(1 << 20) // the last MiB of each stream
    ///     .call_concurrently(4, work, ())?;
    /// let truncated = outcomes.iter().any(|o| o.stdout().is_truncated());
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn capture_limit(mut self, bytes: usize) -> Self {
        self.capture_limit = bytes;
        self
    }

    /// After the barrier, each child sleeps a random delay in `0..=max`
    /// before entering the function, drawn from the [seed](Options::seed) and
    /// the child's index. Varies the interleaving from run to run.
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// use std::time::Duration;
    /// let outcomes = stampede::Options::new()
    ///     .jitter(Duration::from_micros(200))
    ///     .call_concurrently(8, work, ())?;
    /// println!("jitter seed: {:?}", outcomes.seed()); // also in failure reports
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn jitter(mut self, max: Duration) -> Self {
        self.jitter = max;
        self
    }

    /// The seed of the jitter delays. Without it, each call draws a fresh
    /// seed, reported by [`Outcomes::seed`](crate::Outcomes::seed) and in
    /// failure reports, so a run can be tried again with the same delays.
    ///
    /// ```no_run
    /// # #[stampede::function] fn work() {}
    /// use std::time::Duration;
    /// // Replays the delays of the run whose report said "jitter seed: 1234".
    /// let outcomes = stampede::Options::new()
    ///     .jitter(Duration::from_micros(200))
    ///     .seed(1234)
    ///     .call_concurrently(8, work, ())?;
    /// assert_eq!(outcomes.seed(), Some(1234));
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The largest result a child may send, in bytes (default 256 MiB).
    /// A frame that claims more is refused as soon as its header arrives,
    /// so garbage on the channel cannot make the parent buffer gigabytes.
    ///
    /// ```no_run
    /// # #[stampede::function] fn report() -> Vec<String> { Vec::new() }
    /// let outcomes = stampede::Options::new()
    ///     .result_limit(1 << 20) // a result over 1 MiB is a failure, not a 1 GiB buffer
    ///     .call_concurrently(4, report, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn result_limit(mut self, bytes: usize) -> Self {
        self.result_limit = bytes;
        self
    }

    /// Runs `trigger` once in this (the parent) process each time a
    /// [`checkpoint()`](crate::checkpoint) round is about to be released:
    /// when every child of the call has reached it or ended (or as the
    /// [release policy](Options::checkpoint_release) says), before any of
    /// them goes on. The start barrier is not a checkpoint round.
    ///
    /// This is how a test fires an event at a fan-out of clients once all of
    /// them are ready: each client connects and subscribes, then calls
    /// `checkpoint()`; the trigger publishes; the clients go on to read.
    ///
    /// If no child reaches `checkpoint()`, the trigger never runs, and the
    /// call fails with [`Error::TriggerNeverRan`](crate::Error::TriggerNeverRan)
    /// and what the children did: a fan-out test must not pass without its
    /// event.
    ///
    /// `trigger` returns `()` or `Result<(), E: Display>`. Its panic or
    /// error does not stop the call: every child is released anyway, and the
    /// failure is a line of the outcomes' report (and in
    /// [`Outcomes::stages`](crate::Outcomes::stages)), with how long the
    /// trigger ran. It runs on the thread that made the call, while the
    /// supervisor waits for it, so it should not take long. It needs the
    /// [barrier](Options::barrier).
    ///
    /// ```no_run
    /// # struct Broker; impl Broker { fn publish(&self, _: &str) -> std::io::Result<()> { Ok(()) } }
    /// # #[stampede::function] fn subscriber(addr: String) {}
    /// # let broker_addr = String::new();
    /// let broker = std::sync::Arc::new(Broker);
    /// let publisher = broker.clone();
    /// let outcomes = stampede::Options::new()
    ///     .on_checkpoint(move || publisher.publish("news"))
    ///     .call_concurrently(1000, subscriber, broker_addr)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn on_checkpoint<T: RunResult>(
        mut self,
        trigger: impl Fn() -> T + Send + Sync + 'static,
    ) -> Self {
        self.on_checkpoint = Some(Arc::new(move || trigger().into_result()));
        self
    }

    /// When checkpoint rounds are released: [`Release::all`] (the default:
    /// every child has reached the round or ended, however long it takes),
    /// [`Release::at_least`] or [`Release::share`], optionally with a
    /// [deadline](Release::within). Past the deadline the round fails, and
    /// each affected child's outcome says why, unless the policy says
    /// [`or_release`](Release::or_release). It needs the
    /// [barrier](Options::barrier).
    ///
    /// ```no_run
    /// # #[stampede::function] fn subscriber() {}
    /// use std::time::Duration;
    /// let outcomes = stampede::Options::new()
    ///     .checkpoint_release(stampede::Release::all().within(Duration::from_secs(5)))
    ///     .call_concurrently(100, subscriber, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn checkpoint_release(mut self, policy: Release) -> Self {
        self.release = policy;
        self
    }

    /// Calls `f(args)` in `n` fresh child processes at once and returns what
    /// each one did, in order. See [`call_concurrently`](crate::call_concurrently).
    ///
    /// ```no_run
    /// # #[stampede::function] fn add(a: u32, b: u32) -> u32 { a + b }
    /// use std::time::Duration;
    /// let sums = stampede::Options::new()
    ///     .timeout(Duration::from_secs(10))
    ///     .call_concurrently(4, add, (2, 3))?
    ///     .unwrap_all();
    /// assert_eq!(sums, [5, 5, 5, 5]);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call_concurrently`](crate::call_concurrently).
    pub fn call_concurrently<F, M>(
        &self,
        n: usize,
        f: F,
        args: F::Args,
    ) -> Result<Outcomes<F::Output>>
    where
        F: Function<M>,
    {
        let plan = Plan::new(self)?;
        let n = plan.children(self.children.unwrap_or(n));
        let function = plan::checked_name(&f)?;
        let job = plan.job(function, plan::encode_args(function, &args)?)?;
        let run = plan.run(&[job], n);
        if let (Some(record), Err(diverged @ Error::ScheduleDiverged { .. })) = (&self.record, &run)
        {
            record.diverged(diverged.to_string());
        }
        let run = run?;
        if let (Some(strategy), Some(passages), None) =
            (&self.strategy, &run.passages, &self.replay)
        {
            let passages: Vec<Passage> = passages
                .iter()
                .map(|(child, step)| match step.as_str() {
                    crate::parent::BLOCKED => Passage::Blocked(*child),
                    _ => Passage::Go(*child),
                })
                .collect();
            strategy.observe(&passages, &run.held, &run.moves);
        }
        let outcomes = Outcomes {
            items: run
                .outcomes
                .into_iter()
                .map(plan::decode_returned)
                .collect(),
            seed: plan.reported_seed(),
            rounds: run.rounds,
            schedule: run.passages.map(|passages| {
                let schedule = Schedule::new(n, passages);
                if let Some(record) = &self.record {
                    record.schedule(schedule.clone());
                }
                schedule
            }),
        };
        let reached = |o: &Outcome<F::Output>| !o.timings.checkpoints.is_empty();
        if self.on_checkpoint.is_some() && !outcomes.items.iter().any(reached) {
            return Err(Error::TriggerNeverRan {
                report: outcomes.report(),
            });
        }
        Ok(outcomes)
    }

    /// Schedules the run: each child reports its steps (its start, each
    /// [`step`](crate::step), its return) and waits there; whenever no
    /// child runs, the parent lets one go on, picked by `strategy`, so
    /// between two steps exactly one child runs and the interleaving does
    /// not depend on the machine's load. The run's
    /// [`schedule`](Outcomes::schedule) says what happened and replays it.
    ///
    /// With `STAMPEDE_REPLAY` set to a schedule's text, a scheduled run
    /// replays that schedule instead: a failing test reruns unchanged,
    /// `STAMPEDE_REPLAY='v1 n=2 …' cargo test the_test`. A call asking
    /// for more children than the schedule has runs as many as it has (a
    /// hunt's shrunk schedule); one asking for fewer is refused.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
    /// let outcomes = stampede::Options::new()
    ///     .strategy(stampede::Strategy::random())
    ///     .call_concurrently(2, claim, ())?;
    /// if outcomes.values().filter(|won| **won).count() != 1 {
    ///     panic!("{outcomes}"); // the report ends with the schedule that replays it
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Replays a schedule: the text a scheduled run's
    /// [`schedule`](Outcomes::schedule) printed (`v1 n=2 0:start …`). The
    /// children go on from their steps in exactly that order; a child found
    /// at another step than recorded ends the run with
    /// [`Error::ScheduleDiverged`](crate::Error::ScheduleDiverged), which
    /// names the passage, the child and both steps. A replay takes the
    /// place of a [`strategy`](Options::strategy) set on the same options.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
    /// let outcomes = stampede::Options::new()
    ///     .replay("v1 n=2 0:start 1:start 1:after-select 0:after-select 0:end 1:end")
    ///     .call_concurrently(2, claim, ())?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The call fails with [`Error::InvalidOptions`](crate::Error::InvalidOptions)
    /// when the text is not a schedule, or is one for another number of
    /// children.
    pub fn replay(mut self, schedule: &str) -> Self {
        self.replay = Some(schedule.to_owned());
        self
    }
}
