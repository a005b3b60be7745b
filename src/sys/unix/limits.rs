//! Resource limits: descriptors, processes, the cgroup's pids.

use std::io;

/// The current soft and hard limits on open descriptors.
#[allow(
    clippy::unnecessary_cast,
    reason = "rlim_t is u64 on Linux, not on every Unix"
)]
pub(crate) fn nofile_limits() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a valid struct.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0)
        .then_some((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Sets the soft limit on open descriptors (never above the hard one).
pub(crate) fn set_nofile_soft(soft: u64) -> bool {
    let Some((_, hard)) = nofile_limits() else {
        return false;
    };
    let lim = libc::rlimit {
        rlim_cur: soft.min(hard) as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a valid struct; a soft limit up to the hard
    // one is always permitted.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

/// The limit on processes of this user.
#[allow(
    clippy::unnecessary_cast,
    reason = "rlim_t is u64 on Linux, not on every Unix"
)]
pub(crate) fn nproc_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a valid struct.
    (unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) } == 0)
        .then_some(lim.rlim_cur as u64)
        .filter(|n| *n != libc::RLIM_INFINITY as u64)
}

/// Whether this process may ignore RLIMIT_NPROC (root, or CAP_SYS_ADMIN).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// This process's cgroup (v2) pids controller: `(current, max)`, when it
/// has a finite limit.
pub(crate) fn cgroup_pids() -> Option<(u64, u64)> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name| std::fs::read_to_string(dir.join(name)).ok();
    let max = read("pids.max")?.trim().parse().ok()?;
    let current = read("pids.current")?.trim().parse().ok()?;
    Some((current, max))
}

/// Is this error the process limit (fork's EAGAIN)?
pub(crate) fn is_process_limit(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EAGAIN)
}

/// Is this error a descriptor limit (per process or system-wide)?
pub(crate) fn is_descriptor_limit(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
