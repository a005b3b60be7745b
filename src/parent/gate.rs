//! The gate every child of a call shares: the start barrier, then one round
//! per `stampede::checkpoint()`. The gate is a count of released rounds in
//! memory the children map; the parent releases round `r` by raising it to
//! `r + 1` and waking every child asleep on it, so children started later
//! pass the rounds already released. The count never moves but by a
//! release: a parent's death is never one (see `sys::wait_gate`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::protocol::FIRST_CLOSED_FD;
use crate::sys;

/// Where one child stands, as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtGate {
    /// Not ready yet: still starting.
    Starting,
    /// Has reached round `r` (0: the start barrier; `r`: its `r`-th checkpoint).
    Reached(u32),
    /// Ended, or will not take part any more: no longer waited for.
    Gone,
}

pub(crate) struct Gate {
    ours: sys::GateCount,
    /// The end every child gets, numbered clear of the child's own layout.
    theirs: OwnedFd,
    enabled: bool,
    /// When each round was released (its byte written), in order.
    released_at: Vec<u64>,
    /// When the first child reached each round.
    first_arrival: Vec<Option<u64>>,
    /// A round that will never be released, and why.
    failed: Option<(u32, String)>,
    /// The round armed, not yet released: see [`Gate::arm`].
    armed: Option<Armed>,
}

/// A round armed for its release.
#[derive(Debug, Clone, Copy)]
struct Armed {
    round: u32,
    at_ns: u64,
    /// The children's looks counted before the arming.
    looks_before: u32,
    /// The children at the round when it was armed.
    expected: u32,
}

impl Gate {
    /// A gate; a disabled one is never released and children do not wait.
    pub(crate) fn new(enabled: bool) -> io::Result<Gate> {
        let ours = sys::GateCount::new()?;
        Ok(Gate {
            theirs: sys::dup_at_least(ours.file(), FIRST_CLOSED_FD)?,
            ours,
            enabled,
            released_at: Vec::new(),
            first_arrival: Vec::new(),
            failed: None,
            armed: None,
        })
    }

    pub(crate) fn child_end(&self) -> RawFd {
        self.theirs.as_raw_fd()
    }

    /// Whether children wait at this gate at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// How many rounds were released (1 once the start barrier opened):
    /// also the next round to release.
    pub(crate) fn released(&self) -> u32 {
        self.released_at.len() as u32
    }

    /// When round `round` was released.
    pub(crate) fn released_at(&self, round: u32) -> Option<u64> {
        self.released_at.get(round as usize).copied()
    }

    /// Records that a child reached `round` at `at_ns`.
    pub(crate) fn arrived(&mut self, round: u32, at_ns: u64) {
        let slot = round as usize;
        if self.first_arrival.len() <= slot {
            self.first_arrival.resize(slot + 1, None);
        }
        let first = &mut self.first_arrival[slot];
        *first = Some(first.map_or(at_ns, |t| t.min(at_ns)));
    }

    /// When the first child reached `round`.
    pub(crate) fn first_arrival(&self, round: u32) -> Option<u64> {
        self.first_arrival.get(round as usize).copied().flatten()
    }

    /// Arms the next round at `now`, with `expected` children waiting at
    /// it: they wake and look at the gate until its release, so that the
    /// release is one store they all see within a turn of the CPUs, not a
    /// wake of each (`sys::GateCount::arm`).
    pub(crate) fn arm(&mut self, now: u64, expected: u32) -> io::Result<()> {
        let looks_before = self.ours.arm()?;
        self.armed = Some(Armed {
            round: self.released(),
            at_ns: now,
            looks_before,
            expected,
        });
        Ok(())
    }

    /// The next round's arming, if it is armed: when, how many of the
    /// children then at it have looked at the gate since, and how many
    /// there were (for `release::armed_release`).
    pub(crate) fn arming(&self) -> Option<(u64, u32, u32)> {
        let a = self.armed.filter(|a| a.round == self.released())?;
        let looked = self.ours.looking().wrapping_sub(a.looks_before);
        Some((a.at_ns, looked, a.expected))
    }

    /// Releases the next round; returns when: the clock read just before
    /// the release, so that no child can be seen passing before it.
    pub(crate) fn release(&mut self) -> io::Result<u64> {
        let at_ns = sys::monotonic_ns();
        self.ours.release()?;
        self.released_at.push(at_ns);
        self.armed = None;
        Ok(at_ns)
    }

    /// Marks the next round as never to be released, for `reason`.
    pub(crate) fn fail(&mut self, reason: String) {
        self.failed.get_or_insert((self.released(), reason));
    }

    /// The round that will never be released, and why.
    pub(crate) fn failed(&self) -> Option<(u32, &str)> {
        self.failed.as_ref().map(|(r, why)| (*r, why.as_str()))
    }
}
