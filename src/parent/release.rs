//! When a checkpoint round is released: [`Release`], the policy a user
//! picks, and [`step`], the rule that applies it. Pure: the rule takes
//! `now`, so it is unit-tested with a fake clock and only the supervisor's
//! loop reads the real one.

use std::time::Duration;

use super::gate::AtGate;

/// When the parent releases a [`checkpoint()`](crate::checkpoint) round,
/// for [`Options::checkpoint_release`](crate::Options::checkpoint_release).
///
/// A policy says how many children must have reached the round
/// ([`all`](Release::all), the default; [`at_least`](Release::at_least);
/// [`share`](Release::share)), and optionally how long to wait for them
/// ([`within`](Release::within)), counted from the first child's arrival at
/// the round. When the deadline passes before the policy is met, the round
/// fails: it is never released, the children waiting at it and the children
/// still missing are killed, and each outcome says why. With
/// [`or_release`](Release::or_release) the round is released at the deadline
/// instead, and the report names the children it went without.
///
/// ```no_run
/// # #[stampede::function] fn subscriber() {}
/// use std::time::Duration;
/// use stampede::Release;
/// let outcomes = stampede::Options::new()
///     // every subscriber within 5 s of the first, or the call fails
///     .checkpoint_release(Release::all().within(Duration::from_secs(5)))
///     .call_concurrently(1000, subscriber, ())?;
/// // 90 % are enough; wait at most 2 s for them, then go anyway
/// let lenient = Release::share(0.9).within(Duration::from_secs(2)).or_release();
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Release {
    need: Need,
    within: Option<Duration>,
    or_release: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    All,
    AtLeast(usize),
    Share(f64),
}

impl Default for Release {
    fn default() -> Self {
        Release::all()
    }
}

impl Release {
    /// Every child of the call has reached the round or ended (the default).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stampede::Release;
    /// // The default, with a deadline: every child within 5 s of the first, or the round fails.
    /// let policy = Release::all().within(Duration::from_secs(5));
    /// ```
    pub fn all() -> Release {
        Release {
            need: Need::All,
            within: None,
            or_release: false,
        }
    }

    /// At least `k` children have reached the round (at least 1; more than
    /// the call has means all of them). Children that reach it later pass
    /// straight through.
    ///
    /// ```
    /// // Go as soon as 10 children are at the checkpoint; later ones pass straight through.
    /// let policy = stampede::Release::at_least(10);
    /// ```
    pub fn at_least(k: usize) -> Release {
        Release {
            need: Need::AtLeast(k),
            ..Release::all()
        }
    }

    /// At least this fraction of the call's children (`0.0 < fraction ≤
    /// 1.0`, rounded up to a whole child) have reached the round.
    ///
    /// ```
    /// // 95 % of the children (rounded up) are enough.
    /// let policy = stampede::Release::share(0.95);
    /// ```
    pub fn share(fraction: f64) -> Release {
        Release {
            need: Need::Share(fraction),
            ..Release::all()
        }
    }

    /// Waits at most `deadline`, from the first child's arrival at the
    /// round, for the policy to be met; then the round fails (or, with
    /// [`or_release`](Release::or_release), is released anyway).
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = stampede::Release::all().within(Duration::from_secs(2));
    /// ```
    pub fn within(mut self, deadline: Duration) -> Release {
        self.within = Some(deadline);
        self
    }

    /// At the deadline, or when the policy can no longer be met, releases
    /// the round anyway instead of failing it; the report says so and
    /// names the children it went without.
    ///
    /// ```
    /// use std::time::Duration;
    /// // At the deadline go with whoever is there; the report names the others.
    /// let policy = stampede::Release::all().within(Duration::from_secs(2)).or_release();
    /// ```
    pub fn or_release(mut self) -> Release {
        self.or_release = true;
        self
    }

    /// The deadline, from the first arrival at a round.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.within
    }

    /// Why this policy could never release anything, if so.
    pub(crate) fn problem(&self) -> Option<String> {
        match self.need {
            Need::AtLeast(0) => Some("Release::at_least(0) needs at least 1 child".into()),
            Need::Share(f) if !(f > 0.0 && f <= 1.0) => Some(format!(
                "Release::share({f}) needs a fraction above 0 and at most 1"
            )),
            _ => None,
        }
    }

    /// How many children must have reached a round, of `total`, as words
    /// for a report; `None` for all.
    fn needed(&self, total: usize) -> Option<usize> {
        match self.need {
            Need::All => None,
            Need::AtLeast(k) => Some(k.clamp(1, total.max(1))),
            Need::Share(f) => Some(((f * total as f64).ceil() as usize).clamp(1, total.max(1))),
        }
    }
}

/// What the loop must do about the next round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not yet. Look again when a child moves, or at `until` (ns) at the latest.
    Wait { until: Option<u64> },
    /// The policy is met: release.
    Release,
    /// The policy was not met in time (or can no longer be), and the user
    /// chose to release anyway.
    ReleaseWithout,
    /// The policy was not met in time (or can no longer be): the round is
    /// never released.
    Fail(Shortfall),
}

/// Why a round failed, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shortfall {
    /// The deadline passed (else: no child still coming could meet the need).
    pub deadline: Option<Duration>,
    pub reached: usize,
    /// How many were needed; `None` for all.
    pub needed: Option<usize>,
}

/// What to do about round `round`, given where every child of the call
/// stands (`total` children in all), when the first of them reached it,
/// and `now`. Round 0, the start barrier, is always released by
/// [`Release::all`] without a deadline; the caller passes that.
pub(crate) fn step(
    policy: &Release,
    round: u32,
    children: impl IntoIterator<Item = AtGate>,
    total: usize,
    first_arrival_ns: Option<u64>,
    now_ns: u64,
) -> Step {
    let (mut reached, mut coming) = (0usize, 0usize);
    for child in children {
        match child {
            AtGate::Gone => {}
            AtGate::Reached(r) if r >= round => reached += 1,
            _ => coming += 1,
        }
    }
    let needed = policy.needed(total);
    let met = reached > 0
        && match needed {
            None => coming == 0,
            Some(k) => reached >= k,
        };
    if met {
        return Step::Release;
    }
    let give_up = |deadline| {
        if policy.or_release {
            Step::ReleaseWithout
        } else {
            Step::Fail(Shortfall {
                deadline,
                reached,
                needed,
            })
        }
    };
    if coming == 0 {
        // Nobody else can come: wait only if nobody is there either (a
        // call whose children all ended has nothing to release).
        return if reached == 0 {
            Step::Wait { until: None }
        } else {
            give_up(None)
        };
    }
    let until = policy
        .within
        .zip(first_arrival_ns)
        .map(|(d, t)| t.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
    match until {
        Some(until) if now_ns >= until => give_up(policy.within),
        until => Step::Wait { until },
    }
}

/// How long the parent waits, after arming a round, for the `expected`
/// children at it to look at the gate before it releases the round
/// anyway: 2 ms, and 40 µs a child (their wakes cost about 10 µs each on
/// 2 cores; 64 children looked within 0.7 ms), at most [`ARM_WAIT_MAX`].
pub(crate) fn arm_wait(expected: u32) -> Duration {
    (Duration::from_millis(2) + Duration::from_micros(40) * expected).min(ARM_WAIT_MAX)
}

/// The longest [`arm_wait`]: under the 50 ms a child looks before it
/// sleeps again (`sys::SPIN_LIMIT`), so that no child that looked has
/// gone back to sleep when the parent stops waiting.
pub(crate) const ARM_WAIT_MAX: Duration = Duration::from_millis(45);

/// Whether a round armed at `armed_ns` is released at `now`: once `looked`
/// of the `expected` children at it look at the gate, or at
/// [`arm_wait`] after the arming (a child held off the CPU, stopped, or
/// dying is not waited for longer).
pub(crate) fn armed_release(armed_ns: u64, now: u64, looked: u32, expected: u32) -> bool {
    let wait = u64::try_from(arm_wait(expected).as_nanos()).unwrap_or(u64::MAX);
    looked >= expected || now >= armed_ns.saturating_add(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AtGate::*;

    const MS: u64 = 1_000_000;

    fn at(policy: &Release, round: u32, children: &[AtGate], now_ms: u64) -> Step {
        let first = children
            .iter()
            .any(|c| matches!(c, Reached(r) if *r >= round))
            .then_some(100 * MS);
        step(
            policy,
            round,
            children.iter().copied(),
            children.len(),
            first,
            now_ms * MS,
        )
    }

    #[test]
    fn the_start_opens_when_every_child_is_ready_or_gone() {
        let all = Release::all();
        assert!(matches!(
            at(&all, 0, &[Reached(0), Starting], 0),
            Step::Wait { .. }
        ));
        assert_eq!(
            at(&all, 0, &[Reached(0), Gone, Reached(0)], 0),
            Step::Release
        );
        assert_eq!(
            at(&all, 0, &[Gone, Gone], 0),
            Step::Wait { until: None },
            "nobody left to release"
        );
    }

    #[test]
    fn a_checkpoint_round_waits_for_children_still_before_it() {
        let all = Release::all();
        assert!(matches!(
            at(&all, 1, &[Reached(1), Reached(0)], 0),
            Step::Wait { .. }
        ));
        assert_eq!(
            at(&all, 1, &[Reached(1), Reached(2), Gone], 0),
            Step::Release
        );
        assert!(matches!(
            at(&all, 2, &[Reached(1), Reached(2)], 0),
            Step::Wait { .. }
        ));
    }

    #[test]
    fn without_a_deadline_all_waits_forever() {
        let all = Release::all();
        assert_eq!(
            at(&all, 1, &[Reached(1), Starting], 1_000_000),
            Step::Wait { until: None }
        );
    }

    #[test]
    fn a_deadline_counts_from_the_first_arrival_and_fails_by_default() {
        let policy = Release::all().within(Duration::from_secs(5));
        let children = [Reached(1), Reached(0), Reached(1)];
        assert_eq!(
            at(&policy, 1, &children, 5_099),
            Step::Wait {
                until: Some(5_100 * MS)
            }
        );
        assert_eq!(
            at(&policy, 1, &children, 5_100),
            Step::Fail(Shortfall {
                deadline: Some(Duration::from_secs(5)),
                reached: 2,
                needed: None
            })
        );
        assert_eq!(
            at(&policy.or_release(), 1, &children, 5_100),
            Step::ReleaseWithout
        );
    }

    #[test]
    fn no_deadline_runs_before_anyone_arrived() {
        let policy = Release::all().within(Duration::from_millis(1));
        assert_eq!(
            at(&policy, 1, &[Reached(0), Starting], 1_000_000),
            Step::Wait { until: None }
        );
    }

    #[test]
    fn at_least_releases_without_the_stragglers() {
        let policy = Release::at_least(2);
        assert!(matches!(
            at(&policy, 1, &[Reached(1), Reached(0), Reached(0)], 0),
            Step::Wait { .. }
        ));
        assert_eq!(
            at(&policy, 1, &[Reached(1), Reached(0), Reached(1)], 0),
            Step::Release
        );
        assert_eq!(
            at(&Release::at_least(50), 1, &[Reached(1), Reached(1)], 0),
            Step::Release,
            "more than the call has means all of them"
        );
    }

    #[test]
    fn a_share_is_rounded_up_to_a_whole_child() {
        let policy = Release::share(0.5);
        let mut children = vec![Reached(0); 5];
        children[0] = Reached(1);
        children[1] = Reached(1);
        assert!(
            matches!(at(&policy, 1, &children, 0), Step::Wait { .. }),
            "2 of 5 < 50 %"
        );
        children[2] = Reached(1);
        assert_eq!(at(&policy, 1, &children, 0), Step::Release, "3 of 5");
    }

    #[test]
    fn a_need_nobody_can_meet_any_more_fails_at_once() {
        let policy = Release::at_least(3);
        assert_eq!(
            at(&policy, 1, &[Reached(1), Gone, Gone], 0),
            Step::Fail(Shortfall {
                deadline: None,
                reached: 1,
                needed: Some(3)
            })
        );
        assert_eq!(
            at(&policy.or_release(), 1, &[Reached(1), Gone, Gone], 0),
            Step::ReleaseWithout
        );
    }

    #[test]
    fn policies_that_could_never_release_are_named() {
        assert!(Release::at_least(0).problem().is_some());
        assert!(Release::share(0.0).problem().is_some());
        assert!(Release::share(1.5).problem().is_some());
        assert!(Release::share(f64::NAN).problem().is_some());
        assert!(Release::share(1.0).problem().is_none());
    }

    #[test]
    fn an_armed_round_goes_when_every_child_looks_or_at_its_wait() {
        assert_eq!(arm_wait(0), Duration::from_millis(2));
        assert_eq!(arm_wait(64), Duration::from_micros(2_000 + 64 * 40));
        assert_eq!(arm_wait(1000), Duration::from_millis(42));
        assert_eq!(arm_wait(1075), Duration::from_millis(45), "exactly the cap");
        assert_eq!(arm_wait(1076), ARM_WAIT_MAX, "one past: capped");
        assert_eq!(arm_wait(u32::MAX), ARM_WAIT_MAX);
        assert!(ARM_WAIT_MAX < crate::sys::SPIN_LIMIT);
        let at = 1_000_000;
        let wait = 2_000_000 + 8 * 40_000;
        assert!(armed_release(at, at, 8, 8), "all looked");
        assert!(armed_release(at, at, 9, 8), "a late one more");
        assert!(!armed_release(at, at, 7, 8), "one short");
        assert!(
            !armed_release(at, at + wait - 1, 7, 8),
            "1 ns before the wait ends"
        );
        assert!(armed_release(at, at + wait, 7, 8), "at the wait's end");
        assert!(armed_release(at, at + wait, 0, 8), "none looked");
        assert!(armed_release(at, at, 0, 0), "nobody to wait for");
    }
}
