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

/// The tightest process limit of the cgroups this process is in:
/// `(current, max)` of the one with the least room, its own or an
/// ancestor's, under cgroup v2 or v1's `pids` controller; `None` when none
/// has a finite limit.
pub(crate) fn cgroup_pids() -> Option<(u64, u64)> {
    // Which cgroups this process is in is read once: every call checks its
    // limit, and a process does not move between cgroups while it tests.
    static DIRS: std::sync::OnceLock<Vec<std::path::PathBuf>> = std::sync::OnceLock::new();
    let dirs = DIRS.get_or_init(|| {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let v2_root = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/unified"
        };
        pids_dirs(&cgroup, v2_root)
    });
    tightest(dirs, &|path| std::fs::read_to_string(path).ok())
}

/// [`cgroup_pids`] over `/proc/self/cgroup`'s text, reading files with `read`.
#[cfg(test)]
fn tightest_pids(
    cgroup: &str,
    v2_root: &str,
    read: &dyn Fn(&std::path::Path) -> Option<String>,
) -> Option<(u64, u64)> {
    tightest(&pids_dirs(cgroup, v2_root), read)
}

/// The directories, from `/proc/self/cgroup`'s text, whose `pids.max` may
/// bind this process: its cgroups under v2 or v1's `pids` controller, and
/// their ancestors.
fn pids_dirs(cgroup: &str, v2_root: &str) -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let root = if controllers.is_empty() {
            v2_root.to_owned()
        } else if controllers.split(',').any(|c| c == "pids") {
            "/sys/fs/cgroup/pids".to_owned()
        } else {
            continue;
        };
        let root = std::path::PathBuf::from(root);
        let mut dir = root.clone();
        dir.extend(path.split('/').filter(|part| !part.is_empty()));
        loop {
            dirs.push(dir.clone());
            // Up to the hierarchy's root, never above it.
            if dir == root || !dir.pop() {
                break;
            }
        }
    }
    dirs
}

/// The `(current, max)` of the one of `dirs` with the least room, read
/// with `read`.
fn tightest(
    dirs: &[std::path::PathBuf],
    read: &dyn Fn(&std::path::Path) -> Option<String>,
) -> Option<(u64, u64)> {
    dirs.iter()
        .filter_map(|dir| {
            let max = read(&dir.join("pids.max"))?.trim().parse().ok()?;
            let current = read(&dir.join("pids.current"))?.trim().parse().ok()?;
            Some((current, max))
        })
        .min_by_key(|&(current, max): &(u64, u64)| max.saturating_sub(current))
}

/// Is this error the process limit (fork's EAGAIN)?
pub(crate) fn is_process_limit(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EAGAIN)
}

/// Is this error a descriptor limit (per process or system-wide)?
pub(crate) fn is_descriptor_limit(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_tightest_pids_limit_is_found_in_either_version_and_in_ancestors() {
        let files = |path: &Path| -> Option<String> {
            Some(
                match path.to_str()? {
                    // v1: a limit on the parent, none on the process's own.
                    "/sys/fs/cgroup/pids/ci/job/pids.max" => "max",
                    "/sys/fs/cgroup/pids/ci/job/pids.current" => "3",
                    "/sys/fs/cgroup/pids/ci/pids.max" => "100",
                    "/sys/fs/cgroup/pids/ci/pids.current" => "90",
                    // v2: a roomier one.
                    "/sys/fs/cgroup/app/pids.max" => "1000",
                    "/sys/fs/cgroup/app/pids.current" => "10",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let v1 = "9:cpu,cpuacct:/ci/job\n8:pids:/ci/job\n";
        assert_eq!(tightest_pids(v1, "/sys/fs/cgroup", &files), Some((90, 100)));
        let v2 = "0::/app\n";
        assert_eq!(
            tightest_pids(v2, "/sys/fs/cgroup", &files),
            Some((10, 1000))
        );
        let both = format!("{v1}0::/app\n");
        assert_eq!(
            tightest_pids(&both, "/sys/fs/cgroup", &files),
            Some((90, 100))
        );
        assert_eq!(tightest_pids("0::/\n", "/sys/fs/cgroup", &files), None);
    }

    #[test]
    fn the_pids_directories_stop_at_each_hierarchys_root() {
        let dirs = |cgroup: &str, v2_root: &str| -> Vec<String> {
            pids_dirs(cgroup, v2_root)
                .iter()
                .map(|d| d.display().to_string())
                .collect()
        };
        // A process in the root cgroups: each root once, nothing above.
        assert_eq!(
            dirs(
                "9:name=systemd:/\n8:pids:/\n4:memory:/x\n0::/\n",
                "/sys/fs/cgroup/unified"
            ),
            ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
        );
        assert_eq!(
            dirs("0::/ci/job/\n", "/sys/fs/cgroup"),
            [
                "/sys/fs/cgroup/ci/job",
                "/sys/fs/cgroup/ci",
                "/sys/fs/cgroup"
            ]
        );
    }
}
