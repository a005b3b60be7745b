//! Each child's phase and the deadlines that come with it. Pure: every
//! decision takes `now`, so the rules are unit-tested with a fake clock and
//! only the supervisor's loop reads the real one.

use std::time::Duration;

/// How long to keep reading a child's output after it ended, for output
/// that a process outside its group (which stampede cannot kill) holds open.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How long a child may take to exit after it sent its result.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(5);

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Where a child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Started, arguments not decoded yet.
    Starting,
    /// Waiting at the start barrier.
    Ready,
    /// In the function (or waiting at a checkpoint).
    Running,
    /// Sent its result at `at_ns`; should exit now.
    Reported { at_ns: u64 },
    /// Ended at `at_ns`; its output is drained for [`DRAIN_GRACE`] more.
    Exited { at_ns: u64 },
}

/// Why a child had to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    TimedOut,
    /// It sent its result but did not exit within [`EXIT_GRACE`].
    HungAfterReport,
    /// Its channel carried something that is not stampede's: no result can
    /// come any more.
    ChannelBroken,
    /// A checkpoint round it was waiting at, or had not reached, failed its
    /// release policy (see `release`).
    Checkpoint,
}

/// What time alone requires of the loop for one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Kill(Kill),
    StopDraining,
}

#[derive(Debug, Clone)]
pub(crate) struct Clocked {
    pub(crate) phase: Phase,
    deadline_ns: u64,
    killed: Option<Kill>,
}

impl Clocked {
    pub(crate) fn new(spawned_ns: u64, timeout: Duration) -> Self {
        Self {
            phase: Phase::Starting,
            deadline_ns: spawned_ns.saturating_add(ns(timeout)),
            killed: None,
        }
    }

    pub(crate) fn killed(&self) -> Option<Kill> {
        self.killed
    }

    /// Moves on to `phase`; never back, and nothing after the end.
    pub(crate) fn enter(&mut self, phase: Phase) {
        let rank = |p: &Phase| match p {
            Phase::Starting => 0,
            Phase::Ready => 1,
            Phase::Running => 2,
            Phase::Reported { .. } => 3,
            Phase::Exited { .. } => 4,
        };
        if rank(&phase) > rank(&self.phase) {
            self.phase = phase;
        }
    }

    /// Records that the child was killed, and why.
    pub(crate) fn kill(&mut self, why: Kill) {
        self.killed.get_or_insert(why);
    }

    /// When time next matters for this child (`u64::MAX`: never).
    pub(crate) fn next_wake(&self) -> u64 {
        match self.phase {
            Phase::Exited { at_ns } => at_ns.saturating_add(ns(DRAIN_GRACE)),
            _ if self.killed.is_some() => u64::MAX,
            Phase::Reported { at_ns } => at_ns.saturating_add(ns(EXIT_GRACE)).min(self.deadline_ns),
            _ => self.deadline_ns,
        }
    }

    /// What must happen at `now`.
    pub(crate) fn due(&self, now_ns: u64) -> Due {
        if now_ns < self.next_wake() {
            return Due::Nothing;
        }
        match self.phase {
            Phase::Exited { .. } => Due::StopDraining,
            _ if self.killed.is_some() => Due::Nothing,
            Phase::Reported { at_ns } if now_ns >= at_ns.saturating_add(ns(EXIT_GRACE)) => {
                Due::Kill(Kill::HungAfterReport)
            }
            _ => Due::Kill(Kill::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_child_is_timed_out_at_its_deadline_and_not_before() {
        let mut c = Clocked::new(1_000 * MS, Duration::from_millis(500));
        assert_eq!(c.due(1_499 * MS), Due::Nothing);
        c.enter(Phase::Ready);
        assert_eq!(c.due(1_500 * MS), Due::Kill(Kill::TimedOut));
        c.kill(Kill::TimedOut);
        assert_eq!(
            c.due(9_000 * MS),
            Due::Nothing,
            "killed once, then waited for"
        );
        assert_eq!(c.next_wake(), u64::MAX);
    }

    #[test]
    fn a_child_that_reported_gets_a_short_grace_to_exit_not_the_whole_timeout() {
        let mut c = Clocked::new(0, Duration::from_secs(60));
        c.enter(Phase::Running);
        c.enter(Phase::Reported { at_ns: 1_000 * MS });
        let grace_end = 1_000 * MS + ns(EXIT_GRACE);
        assert_eq!(c.due(grace_end - 1), Due::Nothing);
        assert_eq!(c.due(grace_end), Due::Kill(Kill::HungAfterReport));
    }

    #[test]
    fn the_timeout_still_bounds_a_child_that_reported_late() {
        let mut c = Clocked::new(0, Duration::from_secs(1));
        c.enter(Phase::Reported { at_ns: 900 * MS });
        assert_eq!(c.next_wake(), 1_000 * MS);
        assert_eq!(c.due(1_000 * MS), Due::Kill(Kill::TimedOut));
    }

    #[test]
    fn an_exited_child_is_drained_for_the_grace_then_let_go() {
        let mut c = Clocked::new(0, Duration::from_secs(1));
        c.enter(Phase::Exited { at_ns: 10 * MS });
        c.enter(Phase::Running);
        assert!(
            matches!(c.phase, Phase::Exited { .. }),
            "phases never go back"
        );
        assert_eq!(c.due(10 * MS + ns(DRAIN_GRACE) - 1), Due::Nothing);
        assert_eq!(c.due(10 * MS + ns(DRAIN_GRACE)), Due::StopDraining);
        assert_eq!(
            c.due(5_000 * MS),
            Due::StopDraining,
            "exited is never timed out"
        );
    }
}
