//! The one supervisor loop, for every role; the only code of the parent
//! side that reads the real clock.
//!
//! One thread does it all with `poll`. Per turn:
//!
//! 1. the role prepares ([`Role::prepare`], with `now`): starts children,
//!    releases what its policy allows, hands back what is complete, sends
//!    orders; it says when time next matters to it, or that it is done;
//! 2. the engine polls every live child's channel, output pipes and exit
//!    watch until then;
//! 3. it serves what is ready: output into the child's capture, reports to
//!    the role ([`Role::take`]), an exit watch noted;
//! 4. it looks at the exits the watches announced (or every child's, where
//!    the kernel has no pidfd), and the role acts on what time requires
//!    ([`Role::after`], with `now`): kills what is due, notes what ended.
//!
//! A role is what its children are for: a concurrent call (`call`), a pool
//! of long-lived workers (`pool`). Its deadlines are pure rules in `phase`
//! that take `now`; adding a role is a role file and a child file, never a
//! loop (see "Adding a role" in `docs/internals.md`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::capture::{Splitter, Stream};
use super::conversation::Conversation;
use super::launcher::Opened;
use super::process::{ChildProcess, Life};
use crate::error::{Error, Result};
use crate::protocol::Report;
use crate::sys;

/// How often to look for ended children where the kernel has no pidfd.
pub(super) const EXIT_POLL: Duration = Duration::from_millis(5);

/// `d` in nanoseconds, saturating.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A child's captured output stream: read as it comes.
pub(super) trait Output {
    /// The pipe, while it is open.
    fn fd(&self) -> Option<&OwnedFd>;
    /// Reads what is there now.
    fn read(&mut self, buf: &mut [u8]);
}

impl Output for Stream {
    fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    fn read(&mut self, buf: &mut [u8]) {
        Stream::read(self, buf);
    }
}

impl Output for Splitter {
    fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    fn read(&mut self, buf: &mut [u8]) {
        Splitter::read(self, buf);
    }
}

/// What every live child has, whatever its role: its process (whose `Drop`
/// kills and reaps it), its conversation, its two output streams.
pub(super) struct Live<O> {
    pub process: ChildProcess,
    pub conversation: Conversation,
    pub stdout: O,
    pub stderr: O,
    pub spawned_ns: u64,
    /// Its exit watch turned readable since the last look.
    exit_seen: bool,
}

impl<O: Output> Live<O> {
    /// A child just opened, its output read through `capture`.
    pub(super) fn new(opened: Opened, capture: impl Fn(OwnedFd) -> O) -> Self {
        Live {
            process: opened.process,
            conversation: opened.conversation,
            stdout: capture(opened.stdout),
            stderr: capture(opened.stderr),
            spawned_ns: opened.spawned_ns,
            exit_seen: false,
        }
    }

    /// Whether its channel and both streams have closed.
    pub(super) fn drained(&self) -> bool {
        !self.conversation.is_open() && self.stdout.fd().is_none() && self.stderr.fd().is_none()
    }

    /// Whether both output streams have closed.
    pub(super) fn outputs_closed(&self) -> bool {
        self.stdout.fd().is_none() && self.stderr.fd().is_none()
    }

    /// When it ended, once it has.
    pub(super) fn ended_ns(&self) -> Option<u64> {
        match self.process.life() {
            Life::Ended { at_ns, .. } | Life::ReapedElsewhere { at_ns } => Some(at_ns),
            Life::Running => None,
        }
    }

    /// The descriptors to poll (its channel, its open output streams, its
    /// exit watch while it runs), each recorded in `owners` as `(at, which)`.
    fn interests(&self, at: usize, fds: &mut Vec<sys::PollFd>, owners: &mut Vec<(usize, Which)>) {
        if let Some((fd, events)) = self.conversation.poll_interest() {
            fds.push(sys::poll_fd(fd, events));
            owners.push((at, Which::Channel));
        }
        for (output, which) in [(&self.stdout, Which::Stdout), (&self.stderr, Which::Stderr)] {
            if let Some(fd) = output.fd() {
                fds.push(sys::poll_fd(fd.as_raw_fd(), sys::POLLIN));
                owners.push((at, which));
            }
        }
        if let (Some(watch), true) = (self.process.exit_watch(), self.process.is_running()) {
            fds.push(sys::poll_fd(watch, sys::POLLIN));
            owners.push((at, Which::Exit));
        }
    }

    /// Looks at the process when there is reason to: its exit watch fired,
    /// or it has none.
    fn look(&mut self, now: u64) {
        let look = std::mem::take(&mut self.exit_seen) || self.process.exit_watch().is_none();
        if look {
            self.process.update(now);
        }
    }
}

/// What a polled descriptor of a child is.
#[derive(Clone, Copy)]
enum Which {
    Channel,
    Stdout,
    Stderr,
    Exit,
}

/// What a role wants after preparing a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Poll, waking at this moment at the latest (`u64::MAX`: no limit).
    Wait(u64),
    /// Everything is done: the loop ends.
    Done,
}

/// What a kind of child is for. The engine owns the turn; the role owns
/// its children (at positions `0..positions()`, stable within a turn) and
/// every decision.
pub(super) trait Role {
    type Output: Output;

    /// Step 1 of a turn: starts, releases, hands back, sends.
    fn prepare(&mut self, now: u64) -> Result<Next>;

    /// How many positions there are this turn.
    fn positions(&self) -> usize;

    /// The live child at `at`, if there is one.
    fn live(&mut self, at: usize) -> Option<&mut Live<Self::Output>>;

    /// A report from the child at `at`, read at `now`.
    fn take(&mut self, at: usize, report: Report, now: u64);

    /// Step 4: exits have been looked at; act on what `now` requires.
    fn after(&mut self, now: u64);
}

/// Runs `role` until it is done. `waiting` says what the loop waits for,
/// for an error of `poll`.
pub(super) fn run<R: Role>(role: &mut R, waiting: &'static str) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = sys::monotonic_ns();
        let Next::Wait(mut wake_ns) = role.prepare(now)? else {
            return Ok(());
        };
        let mut fds = Vec::new();
        let mut owners = Vec::new();
        for at in 0..role.positions() {
            let Some(live) = role.live(at) else { continue };
            live.interests(at, &mut fds, &mut owners);
            if live.process.is_running() && live.process.exit_watch().is_none() {
                wake_ns = wake_ns.min(now.saturating_add(nanos(EXIT_POLL)));
            }
        }
        let timeout_ms = poll_timeout_ms(now, wake_ns);
        if !fds.is_empty() || timeout_ms >= 0 {
            sys::poll(&mut fds, timeout_ms).map_err(|source| Error::Io {
                context: waiting,
                source,
            })?;
        }
        let now = sys::monotonic_ns();
        for (pfd, &(at, which)) in fds.iter().zip(&owners) {
            if pfd.revents == 0 {
                continue;
            }
            let Some(live) = role.live(at) else { continue };
            match which {
                Which::Channel => {
                    for report in live.conversation.service(&mut buf) {
                        role.take(at, report, now);
                    }
                }
                Which::Stdout => live.stdout.read(&mut buf),
                Which::Stderr => live.stderr.read(&mut buf),
                Which::Exit => live.exit_seen = true,
            }
        }
        let now = sys::monotonic_ns();
        for at in 0..role.positions() {
            if let Some(live) = role.live(at) {
                live.look(now);
            }
        }
        role.after(now);
    }
}

/// `poll`'s timeout for waking at `wake_ns` (`u64::MAX`: no limit, -1),
/// rounded up to whole milliseconds so that the wake is never early.
pub(super) fn poll_timeout_ms(now_ns: u64, wake_ns: u64) -> i32 {
    if wake_ns == u64::MAX {
        return -1;
    }
    wake_ns
        .saturating_sub(now_ns)
        .div_ceil(1_000_000)
        .min(i32::MAX as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_rounded_up_never_early() {
        assert_eq!(poll_timeout_ms(0, u64::MAX), -1);
        assert_eq!(poll_timeout_ms(0, 0), 0);
        assert_eq!(poll_timeout_ms(0, 1), 1);
        assert_eq!(poll_timeout_ms(0, 1_000_000), 1);
        assert_eq!(poll_timeout_ms(0, 1_000_001), 2);
        assert_eq!(poll_timeout_ms(5_000_000, 1_000_000), 0, "overdue: at once");
        assert_eq!(poll_timeout_ms(0, u64::MAX - 1), i32::MAX);
    }
}
