//! The gate every child of a call shares: the start barrier, then one round
//! per `stampede::checkpoint()`. The parent releases round `r` by writing the
//! socket's `r + 1`-th byte; children peek and never consume, so every child
//! sees every byte, and children started later pass the rounds already
//! released. A closed socket with too few bytes is the parent's death, never
//! a release (see `sys::wait_gate`).

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

/// Whether round `round` can be released: every child has reached it or is
/// gone, and at least one is there.
pub(crate) fn can_release(round: u32, children: impl IntoIterator<Item = AtGate>) -> bool {
    let mut someone = false;
    for child in children {
        match child {
            AtGate::Gone => {}
            AtGate::Reached(r) if r >= round => someone = true,
            _ => return false,
        }
    }
    someone
}

pub(crate) struct Gate {
    ours: OwnedFd,
    /// The end every child gets, numbered clear of the child's own layout.
    theirs: OwnedFd,
    released: u32,
    enabled: bool,
}

impl Gate {
    /// A gate; a disabled one is never released and children do not wait.
    pub(crate) fn new(enabled: bool) -> io::Result<Gate> {
        let (ours, theirs) = sys::socket_pair()?;
        Ok(Gate {
            ours,
            theirs: sys::dup_at_least(&theirs, FIRST_CLOSED_FD)?,
            released: 0,
            enabled,
        })
    }

    pub(crate) fn child_end(&self) -> RawFd {
        self.theirs.as_raw_fd()
    }

    /// How many rounds were released (1 once the start barrier opened).
    pub(crate) fn released(&self) -> u32 {
        self.released
    }

    /// Releases every round that `children` allow, one after the other.
    pub(crate) fn release_ready(
        &mut self,
        children: impl Iterator<Item = AtGate> + Clone,
    ) -> io::Result<()> {
        while self.enabled && can_release(self.released, children.clone()) {
            if sys::write_some(self.ours.as_raw_fd(), b"g")? != 1 {
                return Err(io::Error::other("the gate's buffer is full"));
            }
            self.released += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AtGate::*;

    #[test]
    fn the_start_opens_when_every_child_is_ready_or_gone() {
        assert!(!can_release(0, [Reached(0), Starting]));
        assert!(can_release(0, [Reached(0), Gone, Reached(0)]));
        assert!(!can_release(0, [Gone, Gone]), "nobody left to release");
    }

    #[test]
    fn a_checkpoint_round_waits_for_children_still_before_it() {
        assert!(!can_release(1, [Reached(1), Reached(0)]));
        assert!(can_release(1, [Reached(1), Reached(2), Gone]));
        assert!(!can_release(2, [Reached(1), Reached(2)]));
    }
}
