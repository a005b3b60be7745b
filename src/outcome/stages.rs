//! [`Stages`]: how many children of a call got through each stage, and how
//! spread out in time they were; and [`Round`], what the parent did at each
//! gate round, which the stages and the report read.

use std::fmt;
use std::time::Duration;

use super::{Outcome, Status};

/// What the parent did at one round of a call's gate (0: the start barrier,
/// `r`: checkpoint round `r`). Times are from the call's origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Round {
    pub round: u32,
    /// When the parent wrote the round's release byte.
    pub released: Option<Duration>,
    /// How long the trigger ran before the release.
    pub trigger: Option<Duration>,
    /// The trigger's panic or error.
    pub trigger_failure: Option<String>,
    /// Released at its deadline without these children (`or_release`),
    /// and the deadline.
    pub released_without: Option<(Duration, Vec<usize>)>,
    /// Never released: why.
    pub failed: Option<String>,
}

/// The first and the last of some moments, from the call's origin
/// ([`Timings::origin`](crate::Timings::origin)).
///
/// ```no_run
/// # #[stampede::function] fn subscriber() {}
/// let stages = stampede::call_concurrently(100, subscriber, ())?.stages();
/// if let Some(starts) = stages.starts {
///     println!(
///         "entered the function from {:?} to {:?}: {:?} apart",
///         starts.first,
///         starts.last,
///         starts.width(),
///     );
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// The earliest.
    pub first: Duration,
    /// The latest.
    pub last: Duration,
}

impl Spread {
    fn of(times: impl Iterator<Item = Duration> + Clone) -> Option<Spread> {
        Some(Spread {
            first: times.clone().min()?,
            last: times.max()?,
        })
    }

    /// The latest minus the earliest.
    pub fn width(&self) -> Duration {
        self.last - self.first
    }
}

/// One checkpoint round in [`Stages`].
///
/// ```no_run
/// # #[stampede::function] fn subscriber() { stampede::checkpoint() }
/// # fn publish() {}
/// let outcomes = stampede::Options::new()
///     .on_checkpoint(publish)
///     .call_concurrently(100, subscriber, ())?;
/// for round in &outcomes.stages().checkpoints {
///     println!(
///         "round {}: {} reached, {} went on, released at {:?}, trigger ran {:?}",
///         round.round, round.reached, round.passed, round.released_at, round.trigger,
///     );
///     if let (Some(arrivals), Some(releases)) = (round.arrivals, round.releases) {
///         let (arrived, went_on) = (arrivals.width(), releases.width());
///         println!("arrived within {arrived:?}, went on within {went_on:?}");
///     }
///     if let Some(failure) = &round.trigger_failure {
///         println!("the trigger failed: {failure}");
///     }
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundStages {
    /// The round, from 1.
    pub round: u32,
    /// Children that reached it.
    pub reached: usize,
    /// Children that went on from it (reported passing it).
    pub passed: usize,
    /// When the children reached it.
    pub arrivals: Option<Spread>,
    /// When the parent released it (wrote its byte); `None`: never.
    pub released_at: Option<Duration>,
    /// When the children went on from it.
    pub releases: Option<Spread>,
    /// How long the [trigger](crate::Options::on_checkpoint) ran, if there was one.
    pub trigger: Option<Duration>,
    /// The trigger's panic or error, if it failed.
    pub trigger_failure: Option<String>,
}

/// How many children of a call got through each stage, and when: see
/// [`Outcomes::stages`](crate::Outcomes::stages).
///
/// ```no_run
/// # #[stampede::function] fn subscriber() { stampede::checkpoint() }
/// let stages = stampede::call_concurrently(100, subscriber, ())?.stages();
/// assert_eq!(stages.children, 100);
/// println!("{stages}"); // spawned, ready, released, each round, how they ended
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stages {
    /// Children in the call.
    pub children: usize,
    /// Children started (every child that has an outcome was).
    pub spawned: usize,
    /// Children that decoded their arguments and reached the start barrier.
    pub ready: usize,
    /// Children that entered the function, and when.
    pub started: usize,
    /// When they entered it.
    pub starts: Option<Spread>,
    /// Each checkpoint round any child reached.
    pub checkpoints: Vec<RoundStages>,
    /// Children whose function returned.
    pub returned: usize,
    /// Children that did not return (panicked, crashed, timed out, failed).
    pub did_not_return: usize,
}

impl Stages {
    pub(crate) fn of<R>(items: &[Outcome<R>], rounds: &[Round]) -> Stages {
        let timings = || items.iter().map(|o| &o.timings);
        let depth = timings().map(|t| t.checkpoints.len()).max().unwrap_or(0);
        let checkpoints = (1..=depth)
            .map(|round| {
                let at = || timings().filter_map(move |t| t.checkpoints.get(round - 1));
                let record = rounds.iter().find(|r| r.round as usize == round);
                RoundStages {
                    round: round as u32,
                    reached: at().count(),
                    passed: at().filter(|c| c.passed.is_some()).count(),
                    arrivals: Spread::of(at().map(|c| c.reached)),
                    released_at: record.and_then(|r| r.released),
                    releases: Spread::of(at().filter_map(|c| c.passed)),
                    trigger: record.and_then(|r| r.trigger),
                    trigger_failure: record.and_then(|r| r.trigger_failure.clone()),
                }
            })
            .collect();
        let returned = items
            .iter()
            .filter(|o| matches!(o.status, Status::Returned(_)))
            .count();
        Stages {
            children: items.len(),
            spawned: items.len(),
            ready: timings().filter(|t| t.ready.is_some()).count(),
            started: timings().filter(|t| t.started.is_some()).count(),
            starts: Spread::of(timings().filter_map(|t| t.started)),
            checkpoints,
            returned,
            did_not_return: items.len() - returned,
        }
    }
}

/// A duration as a person reads it: µs, ms or s, three significant digits.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn over(spread: Option<Spread>) -> String {
    spread.map_or_else(String::new, |s| format!(" over {}", human(s.width())))
}

/// ```text
/// 1000 children: 1000 spawned, 1000 ready, 1000 entered the function over 35.2 ms
///   checkpoint 1: 1000 reached over 812.3 ms; trigger 3.1 ms; released at 2.31 s; 1000 went on over 41.0 ms
///   ended: 1000 returned, 0 did not
/// ```
impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} children: {} spawned, {} ready, {} entered the function{}",
            self.children,
            self.spawned,
            self.ready,
            self.started,
            over(self.starts)
        )?;
        for round in &self.checkpoints {
            write!(
                f,
                "  checkpoint {}: {} reached{}",
                round.round,
                round.reached,
                over(round.arrivals)
            )?;
            if let Some(took) = round.trigger {
                write!(f, "; trigger {}", human(took))?;
                if round.trigger_failure.is_some() {
                    write!(f, " (failed)")?;
                }
            }
            match round.released_at {
                Some(at) => write!(f, "; released at {}", human(at))?,
                None => write!(f, "; never released")?,
            }
            writeln!(f, "; {} went on{}", round.passed, over(round.releases))?;
        }
        writeln!(
            f,
            "  ended: {} returned, {} did not",
            self.returned, self.did_not_return
        )
    }
}
