//! [`ChildProcess`]: one started child as a handle with a state. Dropping it
//! kills the child and its process group and reaps it, so an error or a
//! panic in the parent leaves nothing running.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitStatus;
use std::time::Duration;

use crate::sys::{self, Probe};

/// Where a child's life stands, as far as the parent can know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Running,
    /// Ended and reaped by us, at `at_ns`.
    Ended {
        status: ExitStatus,
        at_ns: u64,
        /// Its peak resident set size in bytes, from the kernel's rusage.
        max_rss: Option<u64>,
    },
    /// Ended, but something else in this process reaped it first: the
    /// status is lost, and its pid and group id may belong to others now.
    ReapedElsewhere {
        at_ns: u64,
    },
}

pub(crate) struct ChildProcess {
    pid: u32,
    pidfd: Option<OwnedFd>,
    life: Life,
}

impl ChildProcess {
    pub(crate) fn new(spawned: sys::Spawned) -> Self {
        Self {
            pid: spawned.pid,
            pidfd: spawned.pidfd,
            life: Life::Running,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn life(&self) -> Life {
        self.life
    }

    pub(crate) fn is_running(&self) -> bool {
        self.life == Life::Running
    }

    /// A descriptor that turns readable when the child ends; `None` where
    /// there is no pidfd, and the caller must call [`Self::update`] every
    /// few milliseconds.
    pub(crate) fn exit_watch(&self) -> Option<RawFd> {
        self.pidfd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Looks whether the child has ended. If it has, kills what is left of
    /// its process group (before reaping, so the group id cannot have been
    /// reused) and reaps it. Returns whether it is still running.
    pub(crate) fn update(&mut self, now_ns: u64) -> bool {
        if self.life != Life::Running {
            return false;
        }
        match sys::probe(self.pid) {
            Probe::Running => true,
            Probe::Ended => {
                sys::signal_group(self.pid, sys::SIGKILL);
                self.life = match sys::reap_blocking(self.pid) {
                    Some(reaped) => Life::Ended {
                        status: reaped.status,
                        at_ns: now_ns,
                        max_rss: reaped.max_rss,
                    },
                    None => Life::ReapedElsewhere { at_ns: now_ns },
                };
                false
            }
            Probe::ReapedElsewhere => {
                self.life = Life::ReapedElsewhere { at_ns: now_ns };
                false
            }
        }
    }

    /// Sends `signal` to the child itself and to its process group: a
    /// child that left its group is reached too. Nothing once it has ended.
    pub(crate) fn signal(&self, signal: i32) {
        if self.life == Life::Running {
            sys::signal_process(self.pid, self.pidfd.as_ref(), signal);
            sys::signal_group(self.pid, signal);
        }
    }

    /// Kills the child and its group, now.
    pub(crate) fn kill(&self) {
        self.signal(sys::SIGKILL);
    }

    /// Asks the child to stop (SIGTERM), waits up to `grace` for it to end,
    /// then kills it. For children that must clean up (a service's keeper).
    pub(crate) fn terminate(&mut self, grace: Duration) {
        self.signal(sys::SIGTERM);
        let until = sys::monotonic_ns() + grace.as_nanos() as u64;
        while self.update(sys::monotonic_ns()) && sys::monotonic_ns() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
        self.reap();
    }

    /// Lets the child run on after this handle is gone: for a keeper started
    /// to outlive this process (`stampede-services up`), which init reaps.
    pub(crate) fn release(self) {
        std::mem::forget(self);
    }

    /// Blocks until the child is reaped (kill it first).
    fn reap(&mut self) {
        if self.life == Life::Running {
            sys::signal_group(self.pid, sys::SIGKILL);
            let now = sys::monotonic_ns();
            self.life = match sys::reap_blocking(self.pid) {
                Some(reaped) => Life::Ended {
                    status: reaped.status,
                    at_ns: now,
                    max_rss: reaped.max_rss,
                },
                None => Life::ReapedElsewhere { at_ns: now },
            };
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        self.reap();
    }
}
