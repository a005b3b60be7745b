//! [`Options`]: everything tunable about a call, ending in the same calls as
//! the free functions.

use std::ffi::OsString;
use std::time::Duration;

use super::plan::{self, Plan};
use crate::error::Result;
use crate::outcome::Outcomes;
use crate::registry::Function;

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
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) timeout: Duration,
    pub(crate) barrier: bool,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) max_concurrent: Option<usize>,
    pub(crate) capture_limit: usize,
    pub(crate) jitter: Duration,
    pub(crate) seed: Option<u64>,
    pub(crate) result_limit: usize,
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
        }
    }
}

impl Options {
    /// The defaults: a 60 s timeout per child, the start barrier on, no extra
    /// environment, no limit on children alive at once, 64 KiB of each
    /// child's stdout and stderr kept, no jitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long each child may run, from its start, before its whole process
    /// group is killed and it is reported as [`Status::TimedOut`](crate::Status::TimedOut).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether children wait at a start barrier (the default) so that all of
    /// them enter the function at the same instant, and at
    /// [`checkpoint()`](crate::checkpoint) if the function calls it. Off,
    /// each child runs as soon as it has started and passes checkpoints
    /// without waiting.
    pub fn barrier(mut self, on: bool) -> Self {
        self.barrier = on;
        self
    }

    /// Sets an environment variable in every child (on top of the parent's
    /// environment, which children inherit).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// At most `limit` children alive at once; the others start as earlier
    /// ones end. With the barrier on, the first `limit` children are released
    /// together and later ones run as soon as they are ready.
    pub fn max_concurrent(mut self, limit: usize) -> Self {
        self.max_concurrent = Some(limit);
        self
    }

    /// How many bytes of each child's stdout and of its stderr to keep (the
    /// tail; older bytes are dropped and counted).
    pub fn capture_limit(mut self, bytes: usize) -> Self {
        self.capture_limit = bytes;
        self
    }

    /// After the barrier, each child sleeps a random delay in `0..=max`
    /// before entering the function, drawn from the [seed](Options::seed) and
    /// the child's index. Varies the interleaving from run to run.
    pub fn jitter(mut self, max: Duration) -> Self {
        self.jitter = max;
        self
    }

    /// The seed of the jitter delays. Without it, each call draws a fresh
    /// seed, reported by [`Outcomes::seed`](crate::Outcomes::seed) and in
    /// failure reports, so a run can be tried again with the same delays.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The largest result a child may send, in bytes (default 256 MiB).
    /// A frame that claims more is refused as soon as its header arrives,
    /// so garbage on the channel cannot make the parent buffer gigabytes.
    pub fn result_limit(mut self, bytes: usize) -> Self {
        self.result_limit = bytes;
        self
    }

    /// Calls `f(args)` in `n` fresh child processes at once and returns what
    /// each one did, in order. See [`call_concurrently`](crate::call_concurrently).
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
        let function = plan::checked_name(&f)?;
        let job = plan.job(function, plan::encode_args(function, &args)?)?;
        let raw = plan.run(&[job], n)?;
        Ok(Outcomes {
            items: raw.into_iter().map(plan::decode_returned).collect(),
            seed: plan.reported_seed(),
        })
    }
}
