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

/// How long a call's output may lag behind its result in a worker (a
/// stream the code under test closed never brings its end marker).
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Why a child had to be killed: one reason type for every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// It ran past its time limit: a call's child its whole timeout, a
    /// worker its call's.
    TimedOut,
    /// A worker was not ready for calls within its start timeout.
    StartTimedOut,
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
    spawned_ns: u64,
    deadline_ns: u64,
    killed: Option<(Kill, u64)>,
}

impl Clocked {
    pub(crate) fn new(spawned_ns: u64, timeout: Duration) -> Self {
        Self {
            phase: Phase::Starting,
            spawned_ns,
            deadline_ns: spawned_ns.saturating_add(ns(timeout)),
            killed: None,
        }
    }

    pub(crate) fn killed(&self) -> Option<Kill> {
        self.killed.map(|(why, _)| why)
    }

    /// How long the child had run when it was killed, as measured.
    pub(crate) fn ran_before_kill(&self) -> Option<Duration> {
        self.killed
            .map(|(_, at_ns)| Duration::from_nanos(at_ns.saturating_sub(self.spawned_ns)))
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

    /// Records that the child was killed at `now_ns`, and why.
    pub(crate) fn kill(&mut self, why: Kill, now_ns: u64) {
        self.killed.get_or_insert((why, now_ns));
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

/// The time limits of a pool's workers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerLimits {
    /// From its start until it is ready for calls.
    pub start: Duration,
    /// For each call, from when its worker was free for it.
    pub call: Duration,
}

/// What a worker's deadlines depend on, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WorkerTimes {
    pub spawned_ns: u64,
    pub ready: bool,
    /// When the worker was free for its oldest call in flight, if any.
    pub call_free_ns: Option<u64>,
    /// When the result of its oldest call in flight arrived, if it has.
    pub reported_ns: Option<u64>,
    /// When it ended, if it has.
    pub ended_ns: Option<u64>,
    /// Whether it was killed already (then only its end is waited for).
    pub killed: bool,
}

/// What time requires of the loop for one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerDue {
    /// Kill it, for this reason.
    Kill(Kill),
    /// Its oldest call's result is in, and its output's end markers are
    /// overdue: hand the call back with the output there is.
    OutputOverdue,
    /// It ended: stop waiting for output that a process outside its group
    /// holds open.
    StopDraining,
}

impl WorkerLimits {
    /// The next moment time matters for a worker, and what is due then;
    /// `None` when nothing will be.
    pub(crate) fn next(&self, w: &WorkerTimes) -> Option<(u64, WorkerDue)> {
        if let Some(ended) = w.ended_ns {
            return Some((
                ended.saturating_add(ns(DRAIN_GRACE)),
                WorkerDue::StopDraining,
            ));
        }
        if w.killed {
            return None;
        }
        if let Some(reported) = w.reported_ns {
            return Some((
                reported.saturating_add(ns(OUTPUT_GRACE)),
                WorkerDue::OutputOverdue,
            ));
        }
        match w.call_free_ns {
            Some(free) => Some((
                free.saturating_add(ns(self.call)),
                WorkerDue::Kill(Kill::TimedOut),
            )),
            None if !w.ready => Some((
                w.spawned_ns.saturating_add(ns(self.start)),
                WorkerDue::Kill(Kill::StartTimedOut),
            )),
            None => None,
        }
    }

    /// Whether a worker spawned at `spawned_ns` that said it was ready at
    /// `ready_ns` (its clock is the parent's) was ready within its start's
    /// limit: when the parent reads the report does not matter.
    pub(crate) fn ready_in_time(&self, spawned_ns: u64, ready_ns: u64) -> bool {
        ready_ns < spawned_ns.saturating_add(ns(self.start))
    }

    /// What is due for a worker at `now_ns`, if anything.
    pub(crate) fn due(&self, w: &WorkerTimes, now_ns: u64) -> Option<WorkerDue> {
        self.next(w)
            .filter(|&(at, _)| now_ns >= at)
            .map(|(_, due)| due)
    }
}

/// When a worker was free for a call sent at `sent_ns`, once the call
/// before it finished in the worker at `finished_ns` (the worker's
/// `CLOCK_MONOTONIC`, the parent's) and its result arrived at `arrived_ns`:
/// the later of the send and the finish (never after the arrival). Its
/// timeout and its response time count from here, not from the send: a
/// call queued ahead waits in the channel while the one before it runs.
pub(crate) fn free_for_call(sent_ns: u64, finished_ns: u64, arrived_ns: u64) -> u64 {
    sent_ns.max(finished_ns.min(arrived_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    const LIMITS: WorkerLimits = WorkerLimits {
        start: Duration::from_secs(10),
        call: Duration::from_secs(3),
    };

    #[test]
    fn a_workers_start_is_timed_from_its_spawn() {
        let w = WorkerTimes {
            spawned_ns: 1_000 * MS,
            ..WorkerTimes::default()
        };
        let at = 1_000 * MS + 10_000 * MS;
        assert_eq!(LIMITS.due(&w, at - 1), None);
        assert_eq!(
            LIMITS.due(&w, at),
            Some(WorkerDue::Kill(Kill::StartTimedOut))
        );
        // A ready report stamped before the deadline counts, one stamped at
        // or after it does not, whenever it is read.
        assert!(LIMITS.ready_in_time(1_000 * MS, at - 1));
        assert!(!LIMITS.ready_in_time(1_000 * MS, at));
        let zero = WorkerLimits {
            start: Duration::ZERO,
            ..LIMITS
        };
        assert!(!zero.ready_in_time(1_000 * MS, 1_000 * MS + 1));
        let ready = WorkerTimes { ready: true, ..w };
        assert_eq!(
            LIMITS.next(&ready),
            None,
            "an idle ready worker has no deadline"
        );
    }

    #[test]
    fn a_call_is_timed_from_when_its_worker_was_free_for_it() {
        // Sent at 0 behind a call that ran 2.5 s: free for it at 2.5 s, so
        // its 3 s run out at 5.5 s, not at 3 s.
        let free = free_for_call(0, 2_500 * MS, 2_501 * MS);
        assert_eq!(free, 2_500 * MS);
        let w = WorkerTimes {
            ready: true,
            call_free_ns: Some(free),
            ..WorkerTimes::default()
        };
        assert_eq!(LIMITS.due(&w, 5_500 * MS - 1), None);
        assert_eq!(
            LIMITS.due(&w, 5_500 * MS),
            Some(WorkerDue::Kill(Kill::TimedOut))
        );
        // Sent after the one before had finished: free when sent.
        assert_eq!(
            free_for_call(4_000 * MS, 2_500 * MS, 2_600 * MS),
            4_000 * MS
        );
        // A finish stamped after the result's arrival is clamped to it.
        assert_eq!(free_for_call(0, 9_000 * MS, 3_000 * MS), 3_000 * MS);
    }

    #[test]
    fn a_reported_calls_output_is_waited_for_a_second_then_a_killed_worker_for_nothing() {
        let w = WorkerTimes {
            ready: true,
            call_free_ns: Some(0),
            reported_ns: Some(100 * MS),
            ..WorkerTimes::default()
        };
        let overdue = 100 * MS + ns(OUTPUT_GRACE);
        assert_eq!(LIMITS.due(&w, overdue - 1), None);
        assert_eq!(LIMITS.due(&w, overdue), Some(WorkerDue::OutputOverdue));
        let killed = WorkerTimes {
            killed: true,
            reported_ns: None,
            ..w
        };
        assert_eq!(LIMITS.next(&killed), None);
        let ended = WorkerTimes {
            ended_ns: Some(7_000 * MS),
            ..killed
        };
        let drained = 7_000 * MS + ns(DRAIN_GRACE);
        assert_eq!(LIMITS.due(&ended, drained - 1), None);
        assert_eq!(LIMITS.due(&ended, drained), Some(WorkerDue::StopDraining));
    }

    #[test]
    fn a_child_is_timed_out_at_its_deadline_and_not_before() {
        let mut c = Clocked::new(1_000 * MS, Duration::from_millis(500));
        assert_eq!(c.due(1_499 * MS), Due::Nothing);
        c.enter(Phase::Ready);
        assert_eq!(c.due(1_500 * MS), Due::Kill(Kill::TimedOut));
        c.kill(Kill::TimedOut, 1_503 * MS);
        assert_eq!(c.ran_before_kill(), Some(Duration::from_millis(503)));
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
