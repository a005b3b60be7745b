//! Race hunting: repeat a concurrent scenario until it fails.
//!
//! A race that shows once in 200 runs passes most single runs. [`Hunt`]
//! runs a scenario (a closure that calls stampede and asserts) again and
//! again, up to a number of runs or a time budget, stops at the first run
//! that fails, and says which run it was, what went wrong, how many runs
//! passed before it and how long the hunt took.

use std::fmt;
use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::call::{self, Options};
use crate::error::Error;
use crate::outcome::{Recorder, RunResult, Schedule};
use crate::schedule::Strategy;
use crate::{panic, seed};

mod shrink;

/// A loop that runs a concurrent scenario until it fails, up to a number of
/// runs or a time budget.
///
/// ```no_run
/// # use std::path::PathBuf;
/// # #[stampede::function] fn claim(db: PathBuf) -> bool { true }
/// # fn fresh_database() -> PathBuf { PathBuf::new() }
/// use std::time::Duration;
/// use stampede::Hunt;
///
/// let summary = Hunt::runs(200)
///     .time_budget(Duration::from_secs(30))
///     .run(|run| {
///         let outcomes = run
///             .options()
///             .jitter(Duration::from_micros(200))
///             .call_concurrently(8, claim, fresh_database())?;
///         outcomes.assert_exactly_one(|won| *won);
///         Ok::<(), stampede::Error>(())
///     })
///     .unwrap(); // on failure, prints which run failed and every child's report
/// println!("{summary}"); // "200 runs passed in 12.3 s"
/// ```
///
/// The scenario returns `()` or `Result<(), E>` with `E: Display` (see
/// [`RunResult`]). A run fails when the scenario panics (an assertion) or
/// returns `Err`; the hunt stops there and returns a [`HuntFailure`].
///
/// **Progress.** A long hunt writes a line to stderr every
/// [`progress_every`](Hunt::progress_every) (5 s by default), never one per
/// run: `stampede hunt: 1234 runs passed in 10.0 s, still hunting`. The line
/// goes straight to the process's stderr, past the test harness's output
/// capture, so that a long hunt is visibly alive under `cargo test` too.
///
/// **Seeds.** Each run gets its own seed, derived from the hunt's seed and
/// the run's number; [`Run::options`] starts from it, so the
/// [jitter](Options::jitter) delays of every run are reproducible. A failure
/// report prints both seeds: [`Hunt::seed`] with the hunt's seed replays
/// every run's seed, and [`Options::seed`] with the run's seed replays that
/// run's delays. A seed replays the *delays*, the order in which children are
/// let go after the barrier; it cannot replay the OS scheduler, I/O timing
/// or a database's locking. A failing schedule becomes more likely again,
/// not certain: hunt again with the seed rather than expecting one run to fail.
#[derive(Debug, Clone)]
pub struct Hunt {
    runs: u64,
    budget: Option<Duration>,
    progress_every: Duration,
    seed: Option<u64>,
    strategy: Option<Strategy>,
}

/// How often a hunt reports progress unless told otherwise.
const DEFAULT_PROGRESS: Duration = Duration::from_secs(5);

impl Hunt {
    /// A hunt of at most `n` runs. `0` means no limit on the number of runs,
    /// which needs a [`time_budget`](Hunt::time_budget).
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// let summary = stampede::Hunt::runs(500).run(|run| {
    ///     let outcomes = run.options().call_concurrently(8, claim, ())?;
    ///     outcomes.assert_exactly_one(|won| *won);
    ///     Ok::<(), stampede::Error>(())
    /// });
    /// ```
    pub fn runs(n: u64) -> Hunt {
        Hunt {
            runs: n,
            budget: None,
            progress_every: DEFAULT_PROGRESS,
            seed: None,
            strategy: None,
        }
    }

    /// A hunt that starts runs until `budget` has passed (the run in
    /// progress then finishes). At least one run always happens.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// use std::time::Duration;
    /// // As many runs as fit in 20 s.
    /// let summary = stampede::Hunt::for_duration(Duration::from_secs(20)).run(|run| {
    ///     let outcomes = run.options().call_concurrently(8, claim, ())?;
    ///     outcomes.assert_exactly_one(|won| *won);
    ///     Ok::<(), stampede::Error>(())
    /// });
    /// ```
    pub fn for_duration(budget: Duration) -> Hunt {
        Hunt::runs(0).time_budget(budget)
    }

    /// Also stop starting runs once `budget` has passed since the hunt began;
    /// the hunt ends at whichever limit comes first.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// use std::time::Duration;
    /// // At most 10 000 runs, and at most a minute.
    /// let hunt = stampede::Hunt::runs(10_000).time_budget(Duration::from_secs(60));
    /// ```
    pub fn time_budget(mut self, budget: Duration) -> Hunt {
        self.budget = Some(budget);
        self
    }

    /// How often to write a progress line to stderr during a long hunt
    /// (default 5 s). `Duration::ZERO` turns progress lines off.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let hunt = stampede::Hunt::runs(10_000).progress_every(Duration::from_secs(30));
    /// ```
    pub fn progress_every(mut self, every: Duration) -> Hunt {
        self.progress_every = every;
        self
    }

    /// The hunt's seed, from which every run's seed is derived. Without it,
    /// each hunt draws a fresh one; a failure report prints it.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { true }
    /// // Replays every run's seed of the hunt whose report said "hunt seed: 77".
    /// let summary = stampede::Hunt::runs(500).seed(77).run(|run| {
    ///     let outcomes = run.options().call_concurrently(8, claim, ())?;
    ///     outcomes.assert_exactly_one(|won| *won);
    ///     Ok::<(), stampede::Error>(())
    /// });
    /// ```
    pub fn seed(mut self, seed: u64) -> Hunt {
        self.seed = Some(seed);
        self
    }

    /// Schedules every run: [`Run::options`] carries `strategy`
    /// ([`Options::strategy`]), so each run's children go on from their
    /// steps one at a time. With [`Strategy::exhaustive`] the hunt also
    /// ends, passed, once every schedule within the preemption bound has run.
    ///
    /// **A failure is replayed, then shrunk.** The failing run's schedule
    /// is replayed once (the scenario is called again with
    /// [`Run::options`] replaying it) to check that it fails again the same
    /// way: a panic at the same place, or an error. If it does, it is
    /// shrunk — children removed, then preemptions undone, each change kept
    /// while the replay still fails — within 200 replays, and the report
    /// prints the original, the shrunk schedule and the line that replays
    /// it ([`HuntFailure::schedule`], [`reproduced`](HuntFailure::reproduced),
    /// [`shrunk`](HuntFailure::shrunk)). A shrunk replay may have fewer
    /// children than the scenario asks for: check against
    /// `outcomes.len()`, not a number written in the test, or every smaller
    /// run fails for the wrong reason.
    ///
    /// With `STAMPEDE_REPLAY` set, every scheduled call replays that
    /// schedule, so the hunt runs once, and its summary says so.
    ///
    /// ```no_run
    /// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
    /// let summary = stampede::Hunt::runs(1000)
    ///     .strategy(stampede::Strategy::pct(3))
    ///     .run(|run| {
    ///         let outcomes = run.options().call_concurrently(4, claim, ())?;
    ///         outcomes.assert_exactly_one(|won| *won);
    ///         Ok::<(), stampede::Error>(())
    ///     });
    /// ```
    pub fn strategy(mut self, strategy: Strategy) -> Hunt {
        self.strategy = Some(strategy);
        self
    }

    /// Runs `scenario` once per run until a run fails or a limit is reached.
    ///
    /// # Errors
    ///
    /// A [`HuntFailure`] for the first run whose scenario panicked or
    /// returned `Err`, with the run's number, the runs that passed, the time
    /// taken and the message (the panic message of the assertion helpers
    /// includes every child's report). Also, before any run, when the hunt
    /// has neither a number of runs nor a time budget, or a zero time
    /// budget: then [`HuntFailure::error`] holds [`Error::InvalidOptions`]
    /// and no run happened.
    pub fn run<T: RunResult>(
        &self,
        mut scenario: impl FnMut(&Run) -> T,
    ) -> Result<HuntSummary, HuntFailure> {
        let hunt_seed = self.seed.unwrap_or_else(seed::fresh);
        if let Err(error) = self.validate() {
            return Err(HuntFailure(Box::new(Failed {
                run: None,
                passed: 0,
                elapsed: Duration::ZERO,
                hunt_seed,
                run_seed: None,
                message: error.to_string(),
                location: None,
                panicked: false,
                error: Some(error),
                scheduled: None,
            })));
        }
        // Every scheduled run replays the same schedule: one is enough.
        let replaying = self.strategy.is_some() && call::replay_from_env().is_some();
        let began = Instant::now();
        let mut last_progress = began;
        let mut passed = 0u64;
        loop {
            let number = passed + 1;
            let budget_spent = self.budget.is_some_and(|budget| began.elapsed() >= budget);
            if (self.runs != 0 && number > self.runs) || (number > 1 && (budget_spent || replaying))
            {
                return Ok(HuntSummary {
                    runs: passed,
                    elapsed: began.elapsed(),
                    seed: hunt_seed,
                    budget_spent: budget_spent && !replaying,
                    exhausted: None,
                    cut_short: self
                        .strategy
                        .as_ref()
                        .and_then(Strategy::search_bound)
                        .filter(|_| !replaying),
                    replayed: replaying,
                });
            }
            let record = Recorder::default();
            let run = Run {
                number,
                seed: run_seed(hunt_seed, number),
                strategy: self.strategy.clone(),
                replay: None,
                record: self.strategy.is_some().then(|| record.clone()),
            };
            if let Err((message, location, panicked)) = run_once(&mut scenario, &run) {
                let failure = (location.clone(), panicked);
                let recorded = record.take();
                let scheduled = recorded.schedule.map(|schedule| {
                    if recorded.calls > 1 {
                        // A replay is of one call: which would it be?
                        return Scheduled {
                            schedule,
                            replayed: Replayed::NotTried {
                                calls: recorded.calls,
                            },
                            shrunk: None,
                        };
                    }
                    let replayed = replay(&mut scenario, &run, &schedule, &failure);
                    let shrunk = (replayed == Replayed::Failed).then(|| {
                        let mut fails = |s: &Schedule| {
                            replay(&mut scenario, &run, s, &failure) == Replayed::Failed
                        };
                        shrink::shrink(schedule.clone(), shrink::BUDGET, &mut fails)
                    });
                    Scheduled {
                        schedule,
                        replayed,
                        shrunk,
                    }
                });
                return Err(HuntFailure(Box::new(Failed {
                    run: Some(number),
                    passed,
                    elapsed: began.elapsed(),
                    hunt_seed,
                    run_seed: Some(run.seed),
                    message,
                    location,
                    panicked,
                    error: None,
                    scheduled,
                })));
            }
            passed = number;
            if let Some((_, bound)) = self.strategy.as_ref().and_then(Strategy::exhausted) {
                return Ok(HuntSummary {
                    runs: passed,
                    elapsed: began.elapsed(),
                    seed: hunt_seed,
                    budget_spent: false,
                    exhausted: Some(bound),
                    cut_short: None,
                    replayed: false,
                });
            }
            if !self.progress_every.is_zero() && last_progress.elapsed() >= self.progress_every {
                last_progress = Instant::now();
                let line = format!(
                    "stampede hunt: {passed} runs passed in {:.1} s, still hunting\n",
                    began.elapsed().as_secs_f64()
                );
                // Not `eprintln!`: the test harness would capture it until the test ends.
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn validate(&self) -> Result<(), Error> {
        match self.budget {
            Some(budget) if budget.is_zero() => Err(Error::InvalidOptions(
                "a hunt with a zero time budget would end before its first run; give it a \
                 positive budget, or use `Hunt::runs(n)` without one"
                    .into(),
            )),
            None if self.runs == 0 => Err(Error::InvalidOptions(
                "a hunt of 0 runs without a time budget would pass without running anything; \
                 use `Hunt::runs(n)` with n >= 1, or `Hunt::for_duration(d)`"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

/// One run of a hunt, handed to the scenario.
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { true }
/// let summary = stampede::Hunt::runs(100).run(|run| {
///     println!("run {} with seed {}", run.number(), run.seed());
///     let outcomes = run.options().call_concurrently(8, claim, ())?;
///     outcomes.assert_exactly_one(|won| *won);
///     Ok::<(), stampede::Error>(())
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Run {
    number: u64,
    seed: u64,
    strategy: Option<Strategy>,
    /// A replay of a failing run's schedule (or of a shrunk one), instead
    /// of the strategy.
    replay: Option<Schedule>,
    record: Option<Recorder>,
}

impl Run {
    /// The run's number, counted from 1.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The run's seed, derived from the hunt's seed and the run's number.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// [`Options::new`] with this run's [seed](Options::seed): add
    /// [`jitter`](Options::jitter) and the delays of every run are
    /// reproducible from the seeds in a failure report.
    pub fn options(&self) -> Options {
        let mut options = Options::new().seed(self.seed);
        if let Some(schedule) = &self.replay {
            options = options.replay(&schedule.to_string());
            options.children = Some(schedule.children());
        } else if let Some(strategy) = &self.strategy {
            options = options.strategy(strategy.clone());
        }
        options.record = self.record.clone();
        options
    }
}

/// A hunt in which every run passed.
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { true }
/// match stampede::Hunt::runs(100).run(|run| {
///     let outcomes = run.options().call_concurrently(8, claim, ())?;
///     outcomes.assert_exactly_one(|won| *won);
///     Ok::<(), stampede::Error>(())
/// }) {
///     Ok(summary) => println!("{} runs in {:?}, seed {}", summary.runs(), summary.elapsed(), summary.seed()),
///     Err(failure) => panic!("{failure}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct HuntSummary {
    runs: u64,
    elapsed: Duration,
    seed: u64,
    budget_spent: bool,
    /// An exhaustive search ended it: every schedule within this many
    /// preemptions ran.
    exhausted: Option<usize>,
    /// An exhaustive search (with this bound) that the runs or the time
    /// budget ended before it had run every schedule.
    cut_short: Option<usize>,
    /// A scheduled hunt under [`REPLAY_VAR`](call::REPLAY_VAR): one run,
    /// which replayed that schedule.
    replayed: bool,
}

impl HuntSummary {
    /// How many runs ran (all of them passed).
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// How long the hunt took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The hunt's seed ([`Hunt::seed`] with it replays every run's seed).
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// "200 runs passed in 12.3 s", with "(time budget spent)" when the budget ended it.
impl fmt::Display for HuntSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.runs == 1 { "run" } else { "runs" };
        write!(
            f,
            "{} {plural} passed in {:.1} s",
            self.runs,
            self.elapsed.as_secs_f64()
        )?;
        if self.budget_spent {
            write!(f, " (time budget spent)")?;
        }
        if self.replayed {
            write!(
                f,
                " (it replayed {}, so one run was enough; unset it to hunt)",
                call::REPLAY_VAR
            )?;
        }
        if let Some(bound) = self.exhausted {
            write!(f, " (every schedule within {bound} preemptions)")?;
        }
        if let Some(bound) = self.cut_short {
            write!(
                f,
                " (the exhaustive search was cut short: schedules within {bound} preemptions \
                 remain untried; give the hunt more runs to cover them all)"
            )?;
        }
        Ok(())
    }
}

/// Why a hunt did not pass: the first run that failed, or (before any run)
/// a hunt set up with nothing to run.
///
/// `Display` and `Debug` print the same report (which run failed, after how
/// many passed and how long, the seeds, and the message), so that
/// `.unwrap()` in a test shows it readably.
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { true }
/// if let Err(failure) = stampede::Hunt::runs(100).run(|run| {
///     let outcomes = run.options().call_concurrently(8, claim, ())?;
///     outcomes.assert_exactly_one(|won| *won);
///     Ok::<(), stampede::Error>(())
/// }) {
///     // "run 37 of 100 failed after 36 passed (4.1 s): ..."
///     println!("run {:?} failed after {} passed: {}", failure.run(), failure.runs_passed(), failure.message());
///     println!("replay: Hunt::seed({})", failure.hunt_seed());
/// }
/// ```
///
/// Every accessor:
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { true }
/// use std::time::Duration;
/// let hunt = stampede::Hunt::for_duration(Duration::from_secs(30)).run(|run| {
///     let outcomes = run
///         .options()
///         .jitter(Duration::from_micros(200))
///         .call_concurrently(8, claim, ())?;
///     outcomes.assert_exactly_one(|won| *won);
///     Ok::<(), stampede::Error>(())
/// });
/// if let Err(failure) = hunt {
///     if let Some(error) = failure.error() {
///         panic!("the hunt never started: {error}");
///     }
///     let how = if failure.panicked() { "panicked" } else { "returned an error" };
///     println!(
///         "run {:?} {how} at {:?} after {} passed in {:?}",
///         failure.run(),
///         failure.location(),
///         failure.runs_passed(),
///         failure.elapsed(),
///     );
///     println!(
///         "replay the run: Options::seed({:?}); the whole hunt: Hunt::seed({})",
///         failure.run_seed(),
///         failure.hunt_seed(),
///     );
///     println!("{}", failure.message());
/// }
/// ```
pub struct HuntFailure(Box<Failed>);

/// What [`HuntFailure`] holds, boxed to keep `Result<HuntSummary, HuntFailure>` small.
struct Failed {
    run: Option<u64>,
    passed: u64,
    elapsed: Duration,
    hunt_seed: u64,
    run_seed: Option<u64>,
    message: String,
    location: Option<String>,
    panicked: bool,
    error: Option<Error>,
    scheduled: Option<Scheduled>,
}

/// A scheduled run's failure: its schedule, whether a replay of it failed
/// the same way again, and the smallest schedule that still did.
struct Scheduled {
    schedule: Schedule,
    replayed: Replayed,
    shrunk: Option<shrink::Shrunk>,
}

/// What the replay of a failing schedule did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replayed {
    /// It failed again the same way.
    Failed,
    /// It passed, or failed another way.
    Passed,
    /// It went another way than recorded, at this error.
    Diverged(String),
    /// Not tried: the run made this many scheduled calls.
    NotTried { calls: usize },
}

impl HuntFailure {
    /// The number (from 1) of the run that failed; `None` when the hunt was
    /// invalid and no run happened (see [`error`](HuntFailure::error)).
    pub fn run(&self) -> Option<u64> {
        self.0.run
    }

    /// How many runs passed before the failing one.
    pub fn runs_passed(&self) -> u64 {
        self.0.passed
    }

    /// How long the hunt took, up to and including the failing run.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed
    }

    /// The panic message or the returned error's text. When the scenario
    /// failed in one of the assertion helpers of [`Outcomes`](crate::Outcomes),
    /// this includes the report of every child, with its output.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Where the scenario panicked (`file:line:column`), if it panicked.
    pub fn location(&self) -> Option<&str> {
        self.0.location.as_deref()
    }

    /// Whether the run failed by panicking (as opposed to returning `Err`).
    pub fn panicked(&self) -> bool {
        self.0.panicked
    }

    /// The failing run's seed ([`Options::seed`] with it replays the run's
    /// jitter delays, when the scenario used [`Run::options`]).
    pub fn run_seed(&self) -> Option<u64> {
        self.0.run_seed
    }

    /// The hunt's seed ([`Hunt::seed`] with it replays every run's seed).
    pub fn hunt_seed(&self) -> u64 {
        self.0.hunt_seed
    }

    /// The error, when the hunt was invalid and never started a run.
    pub fn error(&self) -> Option<&Error> {
        self.0.error.as_ref()
    }

    /// The failing run's schedule, when the hunt had a
    /// [`strategy`](Hunt::strategy) and the scenario called through
    /// [`Run::options`]: [`Options::replay`] with its text replays the run.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.0.scheduled.as_ref().map(|s| &s.schedule)
    }

    /// Whether replaying [`schedule`](HuntFailure::schedule) failed again
    /// the same way (a panic at the same place, or an error); `None` for a
    /// run that was not scheduled. `false` means the failure depends on more
    /// than the order of the steps (a race inside one step, time, or state
    /// left by an earlier run).
    pub fn reproduced(&self) -> Option<bool> {
        self.0
            .scheduled
            .as_ref()
            .map(|s| s.replayed == Replayed::Failed)
    }

    /// The smallest schedule found that still fails the same way: fewer
    /// children, then fewer preemptions, within 200 replays. Its
    /// [`children`](Schedule::children) may be fewer than the scenario's;
    /// replay it in a call of that many.
    pub fn shrunk(&self) -> Option<&Schedule> {
        let scheduled = self.0.scheduled.as_ref()?;
        scheduled.shrunk.as_ref().map(|s| &s.schedule)
    }
}

impl fmt::Display for HuntFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(run) = self.0.run else {
            return write!(f, "stampede hunt did not start: {}", self.0.message);
        };
        let runs = if self.0.passed == 1 { "run" } else { "runs" };
        writeln!(
            f,
            "stampede hunt: run {run} failed, after {} {runs} passed, in {:.1} s",
            self.0.passed,
            self.0.elapsed.as_secs_f64()
        )?;
        // A scheduled run replays from its schedule, below.
        if let (Some(run_seed), None) = (self.0.run_seed, &self.0.scheduled) {
            writeln!(
                f,
                "replay: `Options::seed({run_seed})` repeats this run's jitter delays, \
                 `Hunt::seed({})` every run's seed",
                self.0.hunt_seed
            )?;
        }
        if let Some(scheduled) = &self.0.scheduled {
            write_schedule(f, scheduled)?;
        }
        match (&self.0.location, self.0.panicked) {
            (Some(location), true) => writeln!(f, "the scenario panicked at {location}:")?,
            (None, true) => writeln!(f, "the scenario panicked:")?,
            (_, false) => writeln!(f, "the scenario returned an error:")?,
        }
        write!(f, "{}", self.0.message)
    }
}

impl fmt::Debug for HuntFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HuntFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.error.as_ref().map(|e| e as _)
    }
}

/// The schedule lines of a failure report: the failing schedule, whether
/// its replay failed again, and the shrunk one with the line that replays it.
fn write_schedule(f: &mut fmt::Formatter<'_>, scheduled: &Scheduled) -> fmt::Result {
    let schedule = &scheduled.schedule;
    let again = match &scheduled.replayed {
        Replayed::Failed => "replayed once: it fails again the same way".to_owned(),
        Replayed::Passed => "replayed once: it passed (or failed elsewhere), so the failure \
             depends on more than the order of the steps (a race inside one step, time, or \
             state an earlier run left)"
            .to_owned(),
        Replayed::Diverged(how) => format!(
            "replayed once: it went another way than recorded, so the program has \
             nondeterminism outside its steps: {how}"
        ),
        Replayed::NotTried { calls } => format!(
            "the last of the run's {calls} scheduled calls; not replayed or shrunk: a replay \
             is of one call, so make one scheduled call per run"
        ),
    };
    writeln!(f, "schedule ({again}):\n  {schedule}")?;
    if let Some(shrunk) = &scheduled.shrunk {
        let small = &shrunk.schedule;
        let children = small.children();
        writeln!(
            f,
            "shrunk ({children} {}, {} {}, {} steps; {} {}{}):\n  {small}",
            if children == 1 { "child" } else { "children" },
            shrink::preemptions(small),
            if shrink::preemptions(small) == 1 {
                "preemption"
            } else {
                "preemptions"
            },
            small.passages().len(),
            shrunk.tries,
            if shrunk.tries == 1 {
                "replay"
            } else {
                "replays"
            },
            if shrunk.tries >= shrink::BUDGET {
                ", all it may take: a smaller one may fail too"
            } else {
                ""
            },
        )?;
        writeln!(
            f,
            "replay it: `Options::replay(\"{small}\")` in a call of {children}, or rerun the test \
             unchanged with STAMPEDE_REPLAY='{small}' (its call then runs {children} {})",
            if children == 1 { "child" } else { "children" }
        )?;
    }
    Ok(())
}

/// Runs the scenario with `schedule` replayed: whether it failed the same
/// way as the original `(location, panicked)` (a panic at the same place,
/// or an error), passed, or went another way than recorded.
fn replay<T: RunResult>(
    scenario: &mut impl FnMut(&Run) -> T,
    run: &Run,
    schedule: &Schedule,
    (location, panicked): &(Option<String>, bool),
) -> Replayed {
    let record = Recorder::default();
    let replay = Run {
        number: run.number,
        seed: run.seed,
        strategy: None,
        replay: Some(schedule.clone()),
        record: Some(record.clone()),
    };
    let result = run_once(scenario, &replay);
    if let Some(how) = record.take().diverged {
        return Replayed::Diverged(how);
    }
    match result {
        Err((_, at, p)) if p == *panicked && at == *location => Replayed::Failed,
        _ => Replayed::Passed,
    }
}

/// Runs the scenario once; `Err((message, location, panicked))` if it
/// failed. Its panic is kept off stderr: the failure report prints it once,
/// with the run it belongs to.
fn run_once<T: RunResult>(
    scenario: &mut impl FnMut(&Run) -> T,
    run: &Run,
) -> Result<(), (String, Option<String>, bool)> {
    // After a panic the hunt calls the scenario again only to replay a
    // scheduled run's failure; each call builds its run afresh.
    match panic::catch(true, || scenario(run).into_result()) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err((message, None, false)),
        Err(caught) => Err((caught.message, caught.location, true)),
    }
}

/// The seed of run `number`: well mixed, so that neighbouring runs get
/// unrelated jitter delays.
fn run_seed(hunt_seed: u64, number: u64) -> u64 {
    seed::mix64((hunt_seed ^ number.wrapping_mul(seed::GOLDEN)).wrapping_add(seed::GOLDEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_seeds_are_reproducible_and_differ_between_runs() {
        let seeds: Vec<u64> = (1..=100).map(|n| run_seed(42, n)).collect();
        assert_eq!(
            seeds,
            (1..=100).map(|n| run_seed(42, n)).collect::<Vec<_>>()
        );
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seeds.len(),
            "two runs share a seed: {seeds:?}"
        );
        assert_ne!(run_seed(42, 1), run_seed(43, 1));
    }
}
