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

/// How often the descriptors of a quiet child (one held, that cannot act
/// until told: [`Role::quiet`]) are polled: not every turn, so that a turn
/// of a scheduled run, where one child runs and the others wait at their
/// steps, costs what one child's descriptors cost, not what all of them do.
/// What a quiet child still does (a thread's output, an exit) is seen
/// within this.
pub(super) const QUIET_LOOK: Duration = Duration::from_millis(5);

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
    /// Reads what a child that ended left, to the end of file.
    fn read_left(&mut self, buf: &mut [u8]);
}

impl Output for Stream {
    fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    fn read(&mut self, buf: &mut [u8]) {
        Stream::read(self, buf);
    }

    fn read_left(&mut self, buf: &mut [u8]) {
        Stream::read_left(self, buf);
    }
}

impl Output for Splitter {
    fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    fn read(&mut self, buf: &mut [u8]) {
        Splitter::read(self, buf);
    }

    fn read_left(&mut self, buf: &mut [u8]) {
        Splitter::read_left(self, buf);
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
    /// or it has none. When this look finds it ended, everything it wrote
    /// is in its channel and pipes by now, whatever the last poll saw: that
    /// is read at once, and its reports are returned. Its drain grace
    /// counts from this look, so a thread held off the CPU for longer than
    /// the grace (a loaded machine, a thousand children) never judges a
    /// child finished with its report still unread.
    fn look(&mut self, now: u64, buf: &mut [u8]) -> Vec<Report> {
        let look = std::mem::take(&mut self.exit_seen) || self.process.exit_watch().is_none();
        if !(look && self.process.is_running()) || self.process.update(now) {
            return Vec::new();
        }
        self.stdout.read_left(buf);
        self.stderr.read_left(buf);
        self.conversation.read_left(buf)
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

    /// Whether the child at `at` cannot act until told (held at a step):
    /// its descriptors are polled every [`QUIET_LOOK`], not every turn.
    fn quiet(&self, _at: usize) -> bool {
        false
    }
}

/// Whether a turn at `now` polls every child, the last that did being at
/// `last_ns` (none yet: it does); else when the next that does is due.
pub(super) fn full_turn(now: u64, last_ns: Option<u64>) -> Result<(), u64> {
    match last_ns.map(|last| last.saturating_add(nanos(QUIET_LOOK))) {
        Some(due) if now < due => Err(due),
        _ => Ok(()),
    }
}

/// Runs `role` until it is done. `waiting` says what the loop waits for,
/// for an error of `poll`.
pub(super) fn run<R: Role>(role: &mut R, waiting: &'static str) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut full_ns = None;
    loop {
        let now = sys::monotonic_ns();
        let Next::Wait(mut wake_ns) = role.prepare(now)? else {
            return Ok(());
        };
        let next_full = full_turn(now, full_ns);
        if next_full.is_ok() {
            full_ns = Some(now);
        }
        let skip = |role: &R, at: usize| next_full.is_err() && role.quiet(at);
        let mut fds = Vec::new();
        let mut owners = Vec::new();
        for at in 0..role.positions() {
            if skip(role, at) {
                if let Err(due) = next_full {
                    wake_ns = wake_ns.min(due);
                }
                continue;
            }
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
            if skip(role, at) {
                continue;
            }
            let Some(live) = role.live(at) else { continue };
            for report in live.look(now, &mut buf) {
                role.take(at, report, now);
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
    use crate::parent::capture::Stream;
    use crate::parent::process::ChildProcess;
    use crate::protocol::{Request, frame};
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;

    /// A child of the test: a `sleep` in a group of its own, watched
    /// without a pidfd (the portable engine's way, where its end is only
    /// seen by looking), and the test's ends of its channel and stdout.
    fn child() -> (Live<Stream>, UnixStream, std::fs::File) {
        let sleeper = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        // The `ChildProcess` kills and reaps it.
        std::mem::forget(sleeper);
        let (ours, theirs) = UnixStream::pair().unwrap();
        let request = Arc::new(frame(&Request::worker("f")).unwrap());
        let (out_read, out_write) = sys::pipe().unwrap();
        let (err_read, err_write) = sys::pipe().unwrap();
        drop(err_write);
        let opened = Opened {
            process: ChildProcess::new(sys::Spawned { pid, pidfd: None }),
            conversation: Conversation::new(ours.into(), request, 1 << 20).unwrap(),
            stdout: out_read,
            stderr: err_read,
            spawned_ns: 0,
        };
        let live = Live::new(opened, |fd| Stream::new(fd, 1 << 20, true));
        (live, theirs, out_write.into())
    }

    /// Two children. Taking `a`'s report, the test makes `b` write its
    /// report and its last output and end, after this turn's poll: only
    /// the look at exits can find that out.
    struct EndsMidTurn {
        live: Vec<Live<Stream>>,
        b_ends: Option<(UnixStream, std::fs::File)>,
        taken: Vec<(usize, Report)>,
        /// At the first turn that begins with `b` ended: its reports taken
        /// by then, and whether its stdout had closed.
        when_b_ended: Option<(usize, bool)>,
    }

    impl Role for EndsMidTurn {
        type Output = Stream;

        fn prepare(&mut self, now: u64) -> Result<Next> {
            if self.live[1].ended_ns().is_some() {
                let taken = self.taken.iter().filter(|(at, _)| *at == 1).count();
                self.when_b_ended = Some((taken, self.live[1].stdout.fd().is_none()));
                return Ok(Next::Done);
            }
            Ok(Next::Wait(now + 2_000_000_000))
        }

        fn positions(&self) -> usize {
            self.live.len()
        }

        fn live(&mut self, at: usize) -> Option<&mut Live<Stream>> {
            self.live.get_mut(at)
        }

        fn take(&mut self, at: usize, report: Report, _now: u64) {
            self.taken.push((at, report));
            if let Some((mut channel, mut stdout)) = self.b_ends.take() {
                let done = Report::Ready { call: 7, at_ns: 1 };
                channel.write_all(&frame(&done).unwrap()).unwrap();
                stdout.write_all(b"last words\n").unwrap();
                drop((channel, stdout));
                let b = &self.live[1].process;
                b.kill();
                while sys::probe(b.pid()) == sys::Probe::Running {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }

        fn after(&mut self, _now: u64) {}
    }

    #[test]
    fn a_child_seen_ended_has_its_report_and_output_read_before_the_next_turn() {
        let (a, mut a_channel, _a_stdout) = child();
        let (b, b_channel, b_stdout) = child();
        a_channel
            .write_all(&frame(&Report::Ready { call: 7, at_ns: 0 }).unwrap())
            .unwrap();
        let mut role = EndsMidTurn {
            live: vec![a, b],
            b_ends: Some((b_channel, b_stdout)),
            taken: Vec::new(),
            when_b_ended: None,
        };
        run(&mut role, "the test's children").unwrap();
        // Without the read at the look, the next turn (which may come after
        // the drain grace on a loaded machine) finds the report unread.
        assert_eq!(
            role.when_b_ended,
            Some((1, true)),
            "b's report taken and its stdout read to its end before the turn after its end"
        );
        assert!(matches!(
            role.taken[1],
            (1, Report::Ready { call: 7, at_ns: 1 })
        ));
        let captured = role.live[1].stdout.finish();
        assert_eq!(captured.as_bytes(), b"last words\n");
    }

    /// One child, always quiet, that the test kills: the loop ends when
    /// it sees the end, its own wake being 10 s away.
    struct QuietEnds {
        live: Vec<Live<Stream>>,
        turns: usize,
    }

    impl Role for QuietEnds {
        type Output = Stream;

        fn prepare(&mut self, now: u64) -> Result<Next> {
            self.turns += 1;
            if self.live[0].ended_ns().is_some() {
                return Ok(Next::Done);
            }
            Ok(Next::Wait(now + 10_000_000_000))
        }

        fn positions(&self) -> usize {
            1
        }

        fn live(&mut self, at: usize) -> Option<&mut Live<Stream>> {
            self.live.get_mut(at)
        }

        fn take(&mut self, _at: usize, _report: Report, _now: u64) {}

        fn after(&mut self, _now: u64) {}

        fn quiet(&self, _at: usize) -> bool {
            true
        }
    }

    #[test]
    fn a_quiet_childs_end_is_seen_at_the_next_full_turn() {
        let (live, channel, stdout) = child();
        // Its ends closed, as a child's are when it dies.
        drop((channel, stdout));
        live.process.kill();
        let mut role = QuietEnds {
            live: vec![live],
            turns: 0,
        };
        let began = std::time::Instant::now();
        run(&mut role, "the test's child").unwrap();
        // Polled every QUIET_LOOK (5 ms), not only at the role's 10 s wake.
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        assert!(role.turns >= 2, "{}", role.turns);
    }

    #[test]
    fn a_full_turn_comes_every_quiet_look() {
        const MS: u64 = 1_000_000;
        assert_eq!(full_turn(0, None), Ok(()), "the first turn");
        let last = Some(100 * MS);
        assert_eq!(full_turn(100 * MS + 1, last), Err(105 * MS));
        assert_eq!(full_turn(105 * MS - 1, last), Err(105 * MS), "one short");
        assert_eq!(full_turn(105 * MS, last), Ok(()), "at its bound");
    }

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
