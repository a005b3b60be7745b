//! Controlled scheduling: how a scheduled run picks which child goes on
//! from its step. The parent side's policy is `parent::schedule`; this is
//! the public face.

/// How a scheduled run decides which child goes on next (see
/// [`step`](crate::step)). Set it with [`Options::strategy`](crate::Options::strategy).
///
/// ```no_run
/// # #[stampede::function] fn claim() -> bool { stampede::step("after-select"); true }
/// let outcomes = stampede::Options::new()
///     .strategy(stampede::Strategy::random())
///     .seed(42) // the same seed, the same schedule
///     .call_concurrently(2, claim, ())?;
/// println!("{}", outcomes.schedule().unwrap()); // v1 n=2 1:start 0:start …
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Random,
}

impl Strategy {
    /// At each passage, one of the children waiting at a step, uniformly at
    /// random, from the run's seed ([`Options::seed`](crate::Options::seed),
    /// or a fresh one that the failure report prints).
    pub fn random() -> Strategy {
        Strategy { kind: Kind::Random }
    }
}
