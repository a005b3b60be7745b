//! The preflight: how many children at once the limits allow, checked
//! before the first one starts, and the descriptor limit raised for the
//! duration of a call (and put back after it).

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::sys;

/// Descriptors the parent holds per live child: channel, stdout, stderr,
/// pidfd, plus the transient ones while spawning.
pub(crate) const FDS_PER_CHILD: u64 = 6;
/// Descriptors kept free for everything else in the process.
const FDS_SPARE: u64 = 64;

/// While alive, the soft descriptor limit is raised for live calls; the
/// last guard of the process puts back the limit that was there before.
pub(crate) struct NofileGuard {
    /// The limits before any call raised them: what children get.
    original: Option<(u64, u64)>,
}

/// `(calls using a raised limit, the soft limit before the first)`.
static RAISED: Mutex<(usize, Option<u64>)> = Mutex::new((0, None));

impl NofileGuard {
    /// The limits children should get (the ones before stampede raised it).
    pub(crate) fn original(&self) -> Option<(u64, u64)> {
        self.original
    }
}

impl Drop for NofileGuard {
    fn drop(&mut self) {
        let mut raised = RAISED.lock().unwrap_or_else(|e| e.into_inner());
        raised.0 -= 1;
        if raised.0 == 0 {
            if let Some(soft) = raised.1.take() {
                sys::set_nofile_soft(soft);
            }
        }
    }
}

/// Checks that `concurrent` children can run at once, and raises the soft
/// descriptor limit towards what they need.
///
/// # Errors
///
/// [`Error::Limit`] naming the limit that is too low and how to lift it.
pub(crate) fn preflight(concurrent: usize) -> Result<NofileGuard> {
    let concurrent = concurrent as u64;
    let needed = concurrent
        .saturating_mul(FDS_PER_CHILD)
        .saturating_add(FDS_SPARE);
    let mut raised = RAISED.lock().unwrap_or_else(|e| e.into_inner());
    let limits = sys::nofile_limits();
    let original = if raised.0 == 0 {
        limits
    } else {
        limits.map(|(_, hard)| (raised.1.unwrap_or(hard), hard))
    };
    if let Some((_, hard)) = limits {
        if needed > hard {
            return Err(Error::Limit(format!(
                "{concurrent} children at once need about {needed} descriptors in this process \
                 ({FDS_PER_CHILD} each), over the hard limit RLIMIT_NOFILE = {hard}; cap them \
                 with `Options::max_concurrent`, or raise the hard limit (`ulimit -Hn`, or \
                 `LimitNOFILE=` for a service)"
            )));
        }
    }
    if let Some(nproc) = sys::nproc_limit().filter(|_| !sys::is_root()) {
        if concurrent > nproc {
            return Err(Error::Limit(format!(
                "{concurrent} children at once exceed the process limit RLIMIT_NPROC = {nproc}; \
                 cap them with `Options::max_concurrent`, or raise the limit (`ulimit -u`)"
            )));
        }
    }
    if let Some((current, max)) = sys::cgroup_pids() {
        if current.saturating_add(concurrent) > max {
            return Err(Error::Limit(format!(
                "{concurrent} children at once do not fit this cgroup's process limit \
                 (pids.max = {max}, {current} in use); cap them with `Options::max_concurrent`, \
                 or raise the cgroup's pids.max (`TasksMax=` for a systemd unit, `--pids-limit` \
                 for a container)"
            )));
        }
    }
    if let Some((soft, _)) = limits {
        if needed > soft && sys::set_nofile_soft(needed) && raised.1.is_none() {
            raised.1 = Some(soft);
        }
    }
    raised.0 += 1;
    Ok(NofileGuard { original })
}

/// Names the limit behind a failure to start a child, when it is one.
pub(crate) fn limit_hit(err: &std::io::Error) -> Option<String> {
    if sys::is_process_limit(err) {
        // Read after the failure: children of this run may have ended since,
        // so a cgroup near its limit (or any, for root, whom RLIMIT_NPROC
        // does not bind) is the likelier cause.
        let near = |&(current, max): &(u64, u64)| sys::is_root() || current + 16 >= max;
        if let Some((current, max)) = sys::cgroup_pids().filter(near) {
            return Some(format!(
                "this cgroup's process limit was reached (pids.max = {max}, {current} in use \
                 now); cap the children with `Options::max_concurrent`, or raise pids.max \
                 (`TasksMax=` for a systemd unit, `--pids-limit` for a container)"
            ));
        }
        let limit = sys::nproc_limit().map_or("unlimited".into(), |n| n.to_string());
        Some(format!(
            "the process limit was reached (RLIMIT_NPROC = {limit}); lower the number of \
             children, cap them with `Options::max_concurrent`, or raise the limit (`ulimit -u`)"
        ))
    } else if sys::is_descriptor_limit(err) {
        let limit = sys::nofile_limits().map_or("unknown".into(), |(soft, _)| soft.to_string());
        Some(format!(
            "the open-file limit was reached (RLIMIT_NOFILE = {limit}); each live child holds \
             about {FDS_PER_CHILD} descriptors in the parent: cap them with \
             `Options::max_concurrent` or raise the limit (`ulimit -n`)"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_failures_name_the_limit_that_was_hit() {
        let nproc = limit_hit(&std::io::Error::from_raw_os_error(libc::EAGAIN)).unwrap();
        assert!(nproc.contains("Options::max_concurrent"), "{nproc}");
        let nofile = limit_hit(&std::io::Error::from_raw_os_error(libc::EMFILE)).unwrap();
        assert!(
            nofile.contains("RLIMIT_NOFILE") && nofile.contains("ulimit -n"),
            "{nofile}"
        );
        assert_eq!(
            limit_hit(&std::io::Error::from_raw_os_error(libc::ENOENT)),
            None
        );
    }

    #[test]
    fn an_absurd_number_of_children_is_refused_before_any_starts() {
        let err = preflight(usize::MAX).err().expect("refused");
        assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
    }
}
