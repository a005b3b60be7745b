//! [`Load`]: many calls through a few long-lived worker processes, every
//! call accounted for, latencies as nearest-rank percentiles, and a leak detector
//! that names what a worker leaks within a few calls.

mod latency;
mod leaks;
mod report;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

pub use latency::Latency;
pub use leaks::{Leak, LeakKind};
pub use report::{LoadReport, WorkerFigures};

use crate::error::{Error, Result};
use crate::outcome::{self, History, Operation, Outcome, Status, Timings};
use crate::parent::{self, CallRecord, Dispatch, Flow, PoolSettings, Sampling};
use crate::protocol::{self, Request};
use crate::registry::Function;
use crate::{Timestamp, call, sys};
use leaks::{Details, Rules, Watch};

/// How many of each worker's first calls are followed by a sample (enough
/// for the warm-up and three steps of three); after them, one call in
/// [`SAMPLE_EVERY`], at most one per [`SAMPLE_GAP`].
const SAMPLE_FIRST: u64 = 16;
const SAMPLE_EVERY: u64 = 256;
const SAMPLE_GAP: Duration = Duration::from_millis(50);

/// A load run: `calls` calls of one registered function through `workers`
/// long-lived worker processes (the same re-executed binary, entry and
/// cleanup as [`call_concurrently`](crate::call_concurrently)), each
/// worker running one call at a time.
///
/// ```no_run
/// use std::time::Duration;
/// # #[stampede::function] fn fetch(url: String) -> u16 { 200 }
/// # let url = String::new();
/// let report = stampede::Load::new(2_500)     // calls
///     .workers(100)                            // parallel; .workers(1) is serial
///     .call_timeout(Duration::from_secs(5))
///     .run(fetch, url)?;
/// report.assert_all_returned().assert_no_leaks();
/// println!("{report}");
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// A call that panics, crashes its worker or runs past the call timeout is
/// a failed call with its own output; a crashed or timed-out worker is
/// replaced and the run goes on.
///
/// **Leak detection** (on by default): after each of a worker's first 16
/// calls, then after one call in 256 (at most one per 50 ms), the worker
/// reports what it holds —
/// descriptors by kind, threads by name, child processes, resident memory.
/// After a warm-up of 3 calls, a count that grew at each of the last 3 steps
/// is a leak, named with what leaked (`socket TCP 127.0.0.1:40412 →
/// 127.0.0.1:5432 ESTABLISHED`) and the call after which it first grew;
/// memory is a leak when it grows by more than 1 MiB per call on average.
#[derive(Debug, Clone)]
pub struct Load {
    calls: u64,
    workers: usize,
    call_timeout: Duration,
    start_timeout: Duration,
    deadline: Option<Duration>,
    stop_at_first_failure: bool,
    leak_detection: bool,
    rules: Rules,
    env: Vec<(OsString, OsString)>,
    capture_limit: usize,
    failure_output: usize,
    worker_descriptor_limit: Option<u64>,
    /// Processes watched for leaks beside the workers (`watch`).
    watched: Vec<u32>,
    progress_every: Duration,
}

/// What watched process `pid` holds now, as a worker's sample; `None` once
/// it is gone.
fn sample_of(pid: u32) -> Option<protocol::Sample> {
    let (fds, threads, children, rss_bytes) = sys::holdings_of(pid)?;
    Some(protocol::Sample {
        fds,
        threads,
        children,
        rss_bytes,
    })
}

/// When a long load says how far it got: a pure rule on the calls' own
/// end times (monotonic nanoseconds), so that it reads no clock.
#[derive(Debug)]
struct Progress {
    origin: u64,
    every: u64,
    next: u64,
    planned: u64,
}

impl Progress {
    fn new(origin: u64, every: Duration, planned: u64) -> Progress {
        let every = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        Progress {
            origin,
            every,
            next: origin.saturating_add(every),
            planned,
        }
    }

    /// The line to write after a call that ended at `now`, `done` calls
    /// and `failed` failures in, when one is due.
    fn after(&mut self, now: u64, done: u64, failed: u64) -> Option<String> {
        if self.every == 0 || now < self.next {
            return None;
        }
        // The next one a whole period after this, however late this was.
        self.next = now.saturating_add(self.every);
        let secs = now.saturating_sub(self.origin) as f64 / 1e9;
        Some(format!(
            "stampede load: {done} of {} calls in {secs:.1} s ({:.0} calls/s), {failed} failed\n",
            self.planned,
            done as f64 / secs.max(1e-9)
        ))
    }
}

/// How much of a failed call's stdout and stderr is kept, each, once the
/// [`Load::failure_output_budget`] is spent: its last lines.
const CUT_TO: usize = 256;

impl Load {
    /// A run of `calls` calls, through one worker by default.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(1000).run(fetch, 8080)?;
    /// assert_eq!(report.calls(), 1000);
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn new(calls: u64) -> Load {
        Load {
            calls,
            workers: 1,
            call_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(60),
            deadline: None,
            stop_at_first_failure: false,
            leak_detection: true,
            rules: Rules {
                warmup: 3,
                window: 3,
                memory_per_call: 1 << 20,
            },
            env: Vec::new(),
            capture_limit: 64 * 1024,
            failure_output: 16 << 20,
            worker_descriptor_limit: None,
            watched: Vec::new(),
            progress_every: Duration::from_secs(5),
        }
    }

    /// How often to write a progress line to stderr during a long load
    /// (default 5 s): calls done of those planned, the rate, the failures
    /// so far. `Duration::ZERO` turns progress lines off.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// use std::time::Duration;
    /// // "stampede load: 12000 of 25000 calls in 10.0 s (1200 calls/s), 0 failed"
    /// let report = stampede::Load::new(25_000)
    ///     .progress_every(Duration::from_secs(10))
    ///     .run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn progress_every(mut self, every: Duration) -> Load {
        self.progress_every = every;
        self
    }

    /// How many worker processes run calls at once (default 1: serial).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// // 1000 calls through 4 long-lived processes, 4 calls running at a time.
    /// let report = stampede::Load::new(1000).workers(4).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn workers(mut self, workers: usize) -> Load {
        self.workers = workers;
        self
    }

    /// How long one call may run before its worker is killed (and replaced)
    /// and the call reported as timed out (default 60 s).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// use std::time::Duration;
    /// let report = stampede::Load::new(100)
    ///     .call_timeout(Duration::from_secs(2)) // a call past 2 s fails; its worker is replaced
    ///     .run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Load {
        self.call_timeout = timeout;
        self
    }

    /// How long a worker may take to start and be ready (default 60 s).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// use std::time::Duration;
    /// let report = stampede::Load::new(100).start_timeout(Duration::from_secs(10)).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Load {
        self.start_timeout = timeout;
        self
    }

    /// Stops sending new calls after `deadline`, even if fewer than the
    /// planned calls ran; the report says so.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// use std::time::Duration;
    /// let report = stampede::Load::new(1_000_000)
    ///     .deadline(Duration::from_secs(30))
    ///     .run(fetch, 8080)?;
    /// if let Some(why) = report.stopped_early() {
    ///     println!("{why}");
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Load {
        self.deadline = Some(deadline);
        self
    }

    /// Stops at the first call that does not return.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(1000).stop_at_first_failure(true).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn stop_at_first_failure(mut self, stop: bool) -> Load {
        self.stop_at_first_failure = stop;
        self
    }

    /// Watches process `pid` for leaks too, beside the workers: a server
    /// the calls talk to (e.g. [`Running::server_pid`](crate::services::Running::server_pid),
    /// or the pid of a binary the test started). Each time a worker is
    /// sampled, the parent reads what `pid` holds (descriptors, threads,
    /// child processes, resident memory, from `/proc`); the same rules name
    /// its leaks in [`LoadReport::leaks`], as a watched process
    /// ([`Leak::watched`](crate::Leak::watched)) with the calls of the whole
    /// run as its count: `watched process 4711: +1 descriptor per call —
    /// socket TCP 127.0.0.1:38722 → 127.0.0.1:5432 ESTABLISHED`. If it ends
    /// during the run, a note of the report says after which call.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// # let server = std::process::Command::new("true").spawn().unwrap();
    /// let report = stampede::Load::new(2_500).workers(100).watch(server.id()).run(fetch, 8080)?;
    /// for leak in report.leaks().iter().filter(|l| l.watched()) {
    ///     println!("the server leaks: {leak}");
    /// }
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn watch(mut self, pid: u32) -> Load {
        if !self.watched.contains(&pid) {
            self.watched.push(pid);
        }
        self
    }

    /// Turns leak detection on or off (default on).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(1000).leak_detection(false).run(fetch, 8080)?;
    /// assert!(report.leaks().is_empty());
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn leak_detection(mut self, on: bool) -> Load {
        self.leak_detection = on;
        self
    }

    /// Calls per worker before the baseline of leak detection (default 3):
    /// pools and caches may fill meanwhile.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// // A client that opens its pool over the first 10 calls is not a leak.
    /// let report = stampede::Load::new(200).leak_warmup(10).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn leak_warmup(mut self, calls: u64) -> Load {
        self.rules.warmup = calls.max(1);
        self
    }

    /// Steps of growth in a row that make a leak (default 3).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(200).leak_window(5).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn leak_window(mut self, steps: usize) -> Load {
        self.rules.window = steps.max(1);
        self
    }

    /// Average memory growth per call above which memory leaks (default 1 MiB).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(200)
    ///     .memory_growth_limit(64 * 1024) // more than 64 KiB more per call is a leak
    ///     .run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn memory_growth_limit(mut self, bytes_per_call: u64) -> Load {
        self.rules.memory_per_call = bytes_per_call;
        self
    }

    /// Sets an environment variable in every worker.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(100).env("RUST_LOG", "warn").run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Load {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How much of each call's stdout and stderr is kept (its tail; default 64 KiB).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(100).capture_limit(4096).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn capture_limit(mut self, bytes: usize) -> Load {
        self.capture_limit = bytes;
        self
    }

    /// How many bytes of failed calls' output the report keeps whole
    /// (default 16 MiB): the first failures keep their stdout and stderr
    /// (each up to the [capture limit](Load::capture_limit)); once the
    /// budget is spent, later ones keep their last 256 bytes of each, and
    /// [`LoadReport::outputs_cut`] counts them. Thousands of failing calls
    /// that print a lot would otherwise hold all of it in the test process.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(100_000)
    ///     .failure_output_budget(1 << 20)
    ///     .run(fetch, 8080)?;
    /// println!("{} failed calls' output cut", report.outputs_cut());
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn failure_output_budget(mut self, bytes: usize) -> Load {
        self.failure_output = bytes;
        self
    }

    /// Lowers each worker's soft descriptor limit, so that a descriptor leak
    /// also fails fast the old way (calls start failing with EMFILE).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// // Let each worker open at most 256 descriptors: a leak fails fast.
    /// let report = stampede::Load::new(1000).worker_descriptor_limit(256).run(fetch, 8080)?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn worker_descriptor_limit(mut self, limit: u64) -> Load {
        self.worker_descriptor_limit = Some(limit);
        self
    }

    /// Runs the calls, every one with the same arguments.
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(100).workers(2).run(fetch, 8080)?;
    /// report.assert_all_returned().assert_no_leaks();
    /// println!("{report}");
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Before any worker starts: [`Error::InvalidOptions`] for zero calls,
    /// zero workers or a zero call timeout, [`Error::NotRegistered`], [`Error::MissingEntry`],
    /// [`Error::Encode`], [`Error::Limit`]. [`Error::WorkerStart`] when
    /// workers keep dying before their first call. What a call did is its
    /// record in the report, not an error.
    pub fn run<F, M>(&self, f: F, args: F::Args) -> Result<LoadReport<F::Output>>
    where
        F: Function<M>,
    {
        let function = call::checked_name(&f)?;
        let shared = call::encode_args(function, &args)?;
        self.run_encoded(function, &mut |_| Ok(shared.clone()))
    }

    /// Runs the calls, call `i` (from 0) with the arguments `args(i)`.
    ///
    /// ```no_run
    /// # #[stampede::function] fn get(path: String) -> u16 { 200 }
    /// // Call i fetches page i.
    /// let report = stampede::Load::new(100).run_with(get, |i| format!("/page/{i}"))?;
    /// # Ok::<(), stampede::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Load::run`].
    pub fn run_with<F, M>(
        &self,
        f: F,
        mut args: impl FnMut(u64) -> F::Args,
    ) -> Result<LoadReport<F::Output>>
    where
        F: Function<M>,
    {
        let function = call::checked_name(&f)?;
        self.run_encoded(function, &mut |i| call::encode_args(function, &args(i)))
    }

    fn run_encoded<R: serde::de::DeserializeOwned>(
        &self,
        function: &'static str,
        args: &mut dyn FnMut(u64) -> Result<Arc<Vec<u8>>>,
    ) -> Result<LoadReport<R>> {
        if self.calls == 0 {
            return Err(Error::InvalidOptions(
                "a load of 0 calls would pass without running anything; use Load::new(n) with n >= 1"
                    .into(),
            ));
        }
        for &pid in &self.watched {
            if sys::holdings_of(pid).is_some() {
                continue;
            }
            let message = match sys::process_start_time(pid) {
                None => format!(
                    "Load::watch({pid}): no process {pid} runs; watch the server under test \
                     while it runs (a services::Server's is `Running::server_pid()`)"
                ),
                Some(_) => format!(
                    "Load::watch({pid}): what process {pid} holds cannot be read (/proc/{pid} \
                     is closed to this user: another user's process?); watch a process of \
                     this user's, or run as its user"
                ),
            };
            return Err(Error::InvalidOptions(message));
        }
        if self.call_timeout.is_zero() {
            return Err(Error::InvalidOptions(
                "call_timeout(0) would time out every call; give a call the time it needs, \
                 e.g. Duration::from_secs(5)"
                    .into(),
            ));
        }
        if self.workers == 0 {
            return Err(Error::InvalidOptions(
                "workers(0) would never run a call; use at least 1 (1 runs the calls one at a time)"
                    .into(),
            ));
        }
        let request = Request::worker(function);
        let request = protocol::frame(&request)
            .map(Arc::new)
            .map_err(|message| Error::Encode { function, message })?;
        let settings = PoolSettings {
            workers: self
                .workers
                .min(usize::try_from(self.calls).unwrap_or(usize::MAX)),
            call_timeout: self.call_timeout,
            start_timeout: self.start_timeout,
            env: self.env.clone(),
            capture_limit: self.capture_limit,
            result_limit: 256 << 20,
            worker_nofile: self.worker_descriptor_limit,
            sampling: self.leak_detection.then_some(Sampling {
                first: SAMPLE_FIRST,
                every: SAMPLE_EVERY,
                gap: SAMPLE_GAP,
            }),
        };
        let origin = sys::monotonic_ns();
        let deadline_ns = self
            .deadline
            .map(|d| origin.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
        let mut next_index = 0u64;
        let mut encode_error = None;
        let mut stopped_early = None;
        let mut next = || {
            if next_index == self.calls || encode_error.is_some() {
                return None;
            }
            if deadline_ns.is_some_and(|d| sys::monotonic_ns() >= d) {
                stopped_early.get_or_insert_with(|| {
                    format!(
                        "the {:?} deadline passed",
                        self.deadline.unwrap_or_default()
                    )
                });
                return None;
            }
            let index = next_index;
            next_index += 1;
            match args(index) {
                Ok(args) => Some(Dispatch { index, args }),
                Err(e) => {
                    encode_error = Some(e);
                    None
                }
            }
        };
        let mut collect = Collector::<R>::new(function, origin, self);
        let slots = parent::run_pool(&settings, request, &mut next, &mut |record| {
            collect.take(record)
        })?;
        if let Some(e) = encode_error {
            return Err(e);
        }
        let elapsed = Duration::from_nanos(sys::monotonic_ns() - origin);
        let stopped_early = stopped_early.or(collect.stop_reason.take());
        Ok(collect.finish(slots, elapsed, self.calls, stopped_early))
    }
}

/// Folds call records into a report as they come, keeping per call only
/// what the report holds: the returned values and the failures. Latencies
/// go into [`Latency`], whose memory stops growing after 65,536 calls.
struct Collector<R> {
    function: &'static str,
    origin: u64,
    stop_at_first_failure: bool,
    rules: Option<Rules>,
    values: InOrder<R>,
    failures: Vec<Outcome<R>>,
    latency: Latency,
    service: Latency,
    figures: HashMap<usize, (u64, u64)>,
    watches: HashMap<u32, Watch>,
    leaks: Vec<Leak>,
    stop_reason: Option<String>,
    notes: Vec<String>,
    /// Bytes of failures' output kept whole so far, the budget, and how
    /// many failures' output was cut.
    output_kept: usize,
    output_budget: usize,
    outputs_cut: u64,
    /// Every call's operations (`stampede::history`), as calls end.
    history: Vec<Operation>,
    /// Watched processes (`Load::watch`): their watch, or `None` once gone.
    watched: Vec<(u32, Option<Watch>)>,
    /// Calls ended so far: a watched process's count.
    ended: u64,
    progress: Progress,
}

impl<R: serde::de::DeserializeOwned> Collector<R> {
    fn new(function: &'static str, origin: u64, load: &Load) -> Self {
        Self {
            function,
            origin,
            stop_at_first_failure: load.stop_at_first_failure,
            rules: load.leak_detection.then_some(load.rules),
            values: InOrder::default(),
            failures: Vec::new(),
            latency: Latency::new(),
            service: Latency::new(),
            figures: HashMap::new(),
            watches: HashMap::new(),
            leaks: Vec::new(),
            stop_reason: None,
            notes: Vec::new(),
            output_kept: 0,
            output_budget: load.failure_output,
            outputs_cut: 0,
            history: Vec::new(),
            watched: load
                .watched
                .iter()
                .map(|&pid| {
                    (
                        pid,
                        load.leak_detection
                            .then(|| Watch::new(None, pid, load.rules)),
                    )
                })
                .collect(),
            ended: 0,
            progress: Progress::new(origin, load.progress_every, load.calls),
        }
    }

    /// Samples every watched process after call `call`; a process gone
    /// is noted once and not watched any more.
    fn sample_watched(&mut self, call: u64) {
        for (pid, watch) in &mut self.watched {
            let Some(w) = watch else { continue };
            let Some(sample) = sample_of(*pid) else {
                self.notes.push(format!(
                    "watched process {pid} ended during the load (seen gone after call {call})"
                ));
                *watch = None;
                continue;
            };
            let pid = *pid;
            let inspect = move || Details::from(pid, 0);
            let seq = self.ended.saturating_sub(1);
            self.leaks.extend(w.observe(seq, call, sample, &inspect));
        }
    }

    fn take(&mut self, mut record: CallRecord) -> Flow {
        let operations = std::mem::take(&mut record.operations);
        self.history
            .extend(outcome::from_events(record.slot, operations));
        let early = record.early_output.then(|| {
            format!(
                "worker {} (pid {}) printed before `stampede::init()` ran: code before `init()` \
                 in `main` runs again in every worker; make `init()` the first line (that \
                 output is counted in call {}'s)",
                record.slot, record.pid, record.index
            )
        });
        if let Some(note) = &early {
            // Once per run: every worker runs the same code.
            if self.notes.is_empty() {
                self.notes.push(note.clone());
            }
        }
        self.ended += 1;
        let returned = matches!(record.status, Status::Returned(_));
        let failed_so_far = self.failures.len() as u64 + u64::from(!returned);
        if let Some(line) = self
            .progress
            .after(record.done_ns, self.ended, failed_so_far)
        {
            // Not `eprintln!`: the test harness would capture it until the test ends.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
        if record.sample.is_some() {
            self.sample_watched(record.index);
        }
        let figures = self.figures.entry(record.slot).or_default();
        figures.0 += 1;
        self.latency
            .record(record.done_ns.saturating_sub(record.free_ns));
        if let Some(ns) = record.service_ns {
            self.service.record(ns);
        }
        if let (Some(rules), Some(sample)) = (self.rules, record.sample) {
            let watch = self
                .watches
                .entry(record.pid)
                .or_insert_with(|| Watch::new(Some(record.slot), record.pid, rules));
            // What the worker holds is read now, while it may already run
            // its next call: the watch names the oldest new descriptor.
            let pid = record.pid;
            let inspect = move || Details::of(pid);
            self.leaks
                .extend(watch.observe(record.seq, record.index, sample, &inspect));
        }
        let status = record
            .status
            .and_then(|bytes| call::decode_value::<R>(&bytes));
        match status {
            Status::Returned(value) => {
                self.values.put(record.index, Some(value));
                Flow::Continue
            }
            status => {
                self.values.put(record.index, None);
                figures.1 += 1;
                let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(self.origin));
                let (mut stdout, mut stderr) = (record.stdout, record.stderr);
                let size = stdout.as_bytes().len() + stderr.as_bytes().len();
                if self.output_kept + size <= self.output_budget {
                    self.output_kept += size;
                } else {
                    stdout.keep_last(CUT_TO);
                    stderr.keep_last(CUT_TO);
                    self.outputs_cut += 1;
                }
                self.failures.push(Outcome {
                    index: record.index as usize,
                    pid: record.pid,
                    function: self.function,
                    status,
                    stdout,
                    stderr,
                    timings: Timings {
                        origin: Timestamp::from_nanos(self.origin),
                        spawned: since(record.sent_ns),
                        ready: None,
                        started: Some(since(record.free_ns)),
                        checkpoint: None,
                        checkpoints: Vec::new(),
                        finished: Some(since(record.done_ns)),
                        ended: since(record.done_ns),
                    },
                    notes: early.into_iter().collect(),
                    max_rss: None,
                    worker: Some(record.slot),
                    history: Vec::new(),
                    history_complete: true,
                });
                if self.stop_at_first_failure {
                    self.stop_reason = Some(format!("call {} did not return", record.index));
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
        }
    }

    fn finish(
        mut self,
        slots: Vec<parent::SlotSummary>,
        elapsed: Duration,
        planned: u64,
        stopped_early: Option<String>,
    ) -> LoadReport<R> {
        self.failures.sort_by_key(|o| o.index);
        // A watched server's last sample, with no call in flight; one gone
        // since its last sample is noted now.
        for (pid, watch) in &mut self.watched {
            let Some(w) = watch.as_mut() else { continue };
            match sample_of(*pid) {
                Some(sample) => w.settle(&sample),
                None => {
                    self.notes.push(format!(
                        "watched process {pid} ended during the load (seen gone when the load \
                         ended, after {} calls)",
                        self.ended
                    ));
                    *watch = None;
                }
            }
        }
        // Each leak as it stands at the end, not when it was found; one
        // whose count came back down (calls in flight at its samples) is
        // no leak, and a note says so.
        let watches: Vec<&Watch> = self
            .watches
            .values()
            .chain(self.watched.iter().filter_map(|(_, w)| w.as_ref()))
            .collect();
        for watch in &watches {
            watch.update(&mut self.leaks);
        }
        let notes = &mut self.notes;
        self.leaks.retain(|leak| {
            let watch = watches.iter().find(|w| w.watches(leak.pid));
            if watch.is_none_or(|w| w.confirms(leak)) {
                return true;
            }
            notes.push(format!(
                "not a leak: {leak} (it grew at each of its samples, but not by the end: calls \
                 in flight)"
            ));
            false
        });
        if self.outputs_cut > 0 {
            self.notes.push(format!(
                "the output of {} failed calls was cut to its last {CUT_TO} bytes of stdout and \
                 of stderr: the first failures' output filled the {} KiB budget \
                 (`Load::failure_output_budget`)",
                self.outputs_cut,
                self.output_budget / 1024
            ));
        }
        for (slot, summary) in slots.iter().enumerate() {
            for pid in &summary.escaped {
                self.notes.push(format!(
                    "worker {slot} (pid {pid}) started a process that left its process group \
                     (one that called setsid, or a daemon): it still held the worker's output \
                     after the worker ended, and was not killed with it"
                ));
            }
        }
        let workers = slots
            .into_iter()
            .enumerate()
            .map(|(slot, summary)| {
                let (calls, failed) = self.figures.get(&slot).copied().unwrap_or_default();
                WorkerFigures {
                    calls,
                    failed,
                    pids: summary.pids,
                }
            })
            .collect();
        LoadReport {
            function: self.function,
            planned,
            values: self.values.finish(),
            failures: self.failures,
            outputs_cut: self.outputs_cut,
            latency: self.latency.finish(),
            service: self.service.finish(),
            elapsed,
            workers,
            leaks: self.leaks,
            stopped_early,
            notes: self.notes,
            parent_peak_rss: sys::own_peak_rss_bytes(),
            history: History::new(self.history),
        }
    }
}

/// Values put in by call index as calls end (in any order), kept in call
/// order without their indices: only the calls that end before an earlier
/// one wait in a map, as many as are in flight around the slowest.
struct InOrder<R> {
    ready: Vec<R>,
    /// The index of the first call not in `ready` yet.
    next: u64,
    /// Calls that ended before `next`: their value, or `None` (failed).
    waiting: BTreeMap<u64, Option<R>>,
}

impl<R> Default for InOrder<R> {
    fn default() -> Self {
        Self {
            ready: Vec::new(),
            next: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl<R> InOrder<R> {
    fn put(&mut self, index: u64, value: Option<R>) {
        if index != self.next {
            self.waiting.insert(index, value);
            return;
        }
        self.ready.extend(value);
        self.next += 1;
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            self.ready.extend(entry.remove());
            self.next += 1;
        }
    }

    /// The values in call order; calls that never ended (a run stopped
    /// early abandons the calls in flight) leave no gap.
    fn finish(mut self) -> Vec<R> {
        self.ready.extend(self.waiting.into_values().flatten());
        self.ready
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_progress_line_comes_at_each_period_and_not_before() {
        let mut p = Progress::new(100 * S, Duration::from_secs(5), 1000);
        assert_eq!(
            p.after(100 * S + 5 * S - 1, 10, 0),
            None,
            "one nanosecond early"
        );
        assert_eq!(
            p.after(105 * S, 500, 2).as_deref(),
            Some("stampede load: 500 of 1000 calls in 5.0 s (100 calls/s), 2 failed\n")
        );
        assert_eq!(
            p.after(109 * S, 900, 2),
            None,
            "the next is 5 s after this one"
        );
        // Late (a long call): the next one is a whole period after it.
        assert!(p.after(117 * S, 950, 2).is_some());
        assert_eq!(p.after(121 * S, 960, 2), None);
        assert!(p.after(122 * S, 970, 2).is_some());
    }

    #[test]
    fn a_zero_period_turns_progress_off() {
        let mut p = Progress::new(0, Duration::ZERO, 10);
        assert_eq!(p.after(u64::MAX, 10, 0), None);
    }
}

#[cfg(test)]
mod tests {
    use super::InOrder;

    #[test]
    fn values_come_out_in_call_order_whatever_order_they_end_in() {
        let mut values = InOrder::default();
        for (index, value) in [(1, Some('b')), (3, None), (0, Some('a')), (5, Some('f'))] {
            values.put(index, value);
        }
        // 0 and 1 are in order, 3 (failed) and 5 wait for 2 and 4.
        assert_eq!(values.ready, ['a', 'b']);
        assert_eq!(values.waiting.len(), 2);
        values.put(2, Some('c'));
        values.put(4, Some('e'));
        assert!(values.waiting.is_empty());
        assert_eq!(values.finish(), ['a', 'b', 'c', 'e', 'f']);
        // Call 1 abandoned: the rest still comes out, in order.
        let mut stopped = InOrder::default();
        stopped.put(2, Some(2));
        stopped.put(0, Some(0));
        assert_eq!(stopped.finish(), [0, 2]);
    }
}
