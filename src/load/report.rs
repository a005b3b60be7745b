//! [`LoadReport`]: every call of a load run accounted for, its latencies as
//! percentiles, per-worker figures and the leaks found.

use std::fmt::{self, Debug};
use std::time::Duration;

use super::latency::Latency;
use super::leaks::Leak;
use crate::outcome::{History, Outcome};

/// What one worker slot did over the run.
///
/// ```no_run
/// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
/// let report = stampede::Load::new(1000).workers(4).run(fetch, 8080)?;
/// for worker in report.workers() {
///     println!("{worker:?}");
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerFigures {
    /// Calls it ran (returned or not).
    pub calls: u64,
    /// Of those, the ones that did not return.
    pub failed: u64,
    /// The process ids it had: more than one when a worker was replaced
    /// after a crash or a timeout.
    pub pids: Vec<u32>,
}

/// What a [`Load`](crate::Load) run did.
///
/// ```no_run
/// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
/// let report = stampede::Load::new(1000).workers(4).run(fetch, 8080)?;
/// report.assert_all_returned().assert_no_leaks();
/// println!(
///     "{} calls, {} returned, {} failed, p50 {:?}, p99 {:?}, {:.0} calls/s",
///     report.calls(),
///     report.returned(),
///     report.failed(),
///     report.latency().p50(),
///     report.latency().p99(),
///     report.throughput(),
/// );
/// for failure in report.failures() {
///     println!("{failure}"); // that call's own output and status
/// }
/// assert!(report.values().all(|status| *status == 200));
/// # Ok::<(), stampede::Error>(())
/// ```
///
/// The rest of the figures:
///
/// ```no_run
/// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
/// use std::time::Duration;
/// let report = stampede::Load::new(100_000)
///     .workers(8)
///     .deadline(Duration::from_secs(60))
///     .run(fetch, 8080)?;
/// if let Some(why) = report.stopped_early() {
///     println!("stopped early: {why}");
/// }
/// println!("in {:?}: response {}", report.elapsed(), report.latency());
/// println!("service time in the worker: {}", report.service_time());
/// for (slot, worker) in report.workers().iter().enumerate() {
///     println!("worker {slot}: {} calls, pids {:?}", worker.calls, worker.pids);
/// }
/// println!("{} leaks", report.leaks().len());
/// println!("the test process peaked at {} bytes", report.parent_peak_memory());
/// # Ok::<(), stampede::Error>(())
/// ```
pub struct LoadReport<R> {
    pub(crate) function: &'static str,
    pub(crate) planned: u64,
    /// The returned values, in call order.
    pub(crate) values: Vec<R>,
    pub(crate) failures: Vec<Outcome<R>>,
    pub(crate) outputs_cut: u64,
    pub(crate) latency: Latency,
    pub(crate) service: Latency,
    pub(crate) elapsed: Duration,
    pub(crate) workers: Vec<WorkerFigures>,
    pub(crate) leaks: Vec<Leak>,
    pub(crate) stopped_early: Option<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) parent_peak_rss: u64,
    pub(crate) history: History,
}

impl<R> LoadReport<R> {
    /// Every call's operations ([`history::invoke`](crate::history::invoke)
    /// in the function), merged in the order they were invoked; an
    /// operation's [`child`](crate::history::Operation::child) is the slot
    /// of the worker that ran it. Check it with
    /// [`model::check`](crate::model::check).
    ///
    /// ```no_run
    /// # #[stampede::function] fn put(key: u32) {}
    /// let report = stampede::Load::new(10_000).workers(8).run_with(put, |i| (i % 100) as u32)?;
    /// let model = stampede::model::KeyValue::<u32, u32>::new();
    /// stampede::model::check(&model, report.history()).expect("linearizable");
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn history(&self) -> &History {
        &self.history
    }

    /// How many calls ran (returned or not).
    pub fn calls(&self) -> u64 {
        self.returned() + self.failed()
    }

    /// How many calls returned a value.
    pub fn returned(&self) -> u64 {
        self.values.len() as u64
    }

    /// How many calls did not return: panicked, crashed, timed out, failed.
    pub fn failed(&self) -> u64 {
        self.failures.len() as u64
    }

    /// The values returned, in call order.
    pub fn values(&self) -> impl Iterator<Item = &R> {
        self.values.iter()
    }

    /// The calls that did not return, each with its own status, output and
    /// worker (its [`Outcome::index`] is the call's index).
    pub fn failures(&self) -> &[Outcome<R>] {
        &self.failures
    }

    /// How many failed calls kept only the last lines of their output,
    /// once [`Load::failure_output_budget`](crate::Load::failure_output_budget)
    /// was spent (a note says so too).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(1000).run(fetch, 8080)?;
    /// assert_eq!(report.outputs_cut(), 0, "{report}");
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn outputs_cut(&self) -> u64 {
        self.outputs_cut
    }

    /// Response time as the parent saw it: from the moment the worker was
    /// free for the call (the previous call finished in the worker, or the
    /// call was sent, whichever came later) to having its result: what a client
    /// that sends each request once the previous one is answered would
    /// measure. It includes the trip through stampede's channel and the
    /// time the worker waited for a CPU or for the parent, which the
    /// [service time](Self::service_time) does not. Calls sent ahead to
    /// keep a worker busy do not count their wait in its channel.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// Service time inside the worker: the function's own run.
    pub fn service_time(&self) -> &Latency {
        &self.service
    }

    /// Calls per second over the whole run.
    pub fn throughput(&self) -> f64 {
        self.calls() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The run's wall time, workers' start included.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Per worker slot: calls, failures, process ids.
    pub fn workers(&self) -> &[WorkerFigures] {
        &self.workers
    }

    /// The leaks found, at most one per kind and worker process.
    pub fn leaks(&self) -> &[Leak] {
        &self.leaks
    }

    /// The test process's peak resident memory (`VmHWM`) at the end of the
    /// run, in bytes: what the parent needed to account for every call.
    pub fn parent_peak_memory(&self) -> u64 {
        self.parent_peak_rss
    }

    /// What the run noticed besides the calls' results, such as a worker
    /// that printed before `stampede::init()` ran (a plain binary's code
    /// before `init()` runs again in every worker).
    ///
    /// ```no_run
    /// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
    /// let report = stampede::Load::new(100).run(fetch, 8080)?;
    /// assert!(report.notes().is_empty(), "{report}");
    /// # Ok::<(), stampede::Error>(())
    /// ```
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Why the run stopped before its planned calls, if it did.
    pub fn stopped_early(&self) -> Option<&str> {
        self.stopped_early.as_deref()
    }
}

impl<R: Debug> LoadReport<R> {
    /// Asserts that every planned call ran and returned.
    ///
    /// # Panics
    ///
    /// Otherwise, with the report (each failed call with its output).
    #[track_caller]
    pub fn assert_all_returned(&self) -> &Self {
        if self.failed() > 0 || self.calls() < self.planned {
            panic!("not every call returned\n{self}");
        }
        self
    }

    /// Asserts that no worker leaked.
    ///
    /// # Panics
    ///
    /// Otherwise, with the report, which names each leak.
    #[track_caller]
    pub fn assert_no_leaks(&self) -> &Self {
        if !self.leaks.is_empty() {
            panic!("workers leaked\n{self}");
        }
        self
    }
}

/// A compact table: counts, throughput, latencies, workers, leaks, then each
/// failed call (up to 10) with its output.
impl<R> fmt::Display for LoadReport<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load of `{}`: {} of {} calls over {} {}, {} returned, {} failed, {:.2} s, {:.0} calls/s",
            self.function,
            self.calls(),
            self.planned,
            self.workers.len(),
            if self.workers.len() == 1 {
                "worker"
            } else {
                "workers"
            },
            self.returned(),
            self.failed(),
            self.elapsed.as_secs_f64(),
            self.throughput()
        )?;
        if let Some(why) = &self.stopped_early {
            writeln!(f, "  stopped early: {why}")?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        writeln!(f, "  response (parent)  {}", self.latency)?;
        writeln!(f, "  service (worker)   {}", self.service)?;
        let calls: Vec<u64> = self.workers.iter().map(|w| w.calls).collect();
        let replaced: usize = self
            .workers
            .iter()
            .map(|w| w.pids.len().saturating_sub(1))
            .sum();
        writeln!(
            f,
            "  workers: calls each {}..={}, {replaced} replaced; parent's peak memory {:.1} MiB",
            calls.iter().min().unwrap_or(&0),
            calls.iter().max().unwrap_or(&0),
            self.parent_peak_rss as f64 / (1024.0 * 1024.0)
        )?;
        if self.leaks.is_empty() {
            writeln!(f, "  leaks: none")?;
        } else {
            writeln!(f, "  leaks:")?;
            for leak in &self.leaks {
                writeln!(f, "    {leak}")?;
            }
        }
        for failure in self.failures.iter().take(10) {
            write!(f, "{failure}")?;
        }
        if self.failures.len() > 10 {
            writeln!(f, "({} more failed calls)", self.failures.len() - 10)?;
        }
        Ok(())
    }
}

impl<R> Debug for LoadReport<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
