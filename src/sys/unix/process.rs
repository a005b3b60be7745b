//! Watching, signalling and reaping a child.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitStatus;

/// What a look at an unreaped child found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Running,
    /// Ended, and still waitable: its status is ours to read.
    Ended,
    /// No longer our child to wait for: something else reaped it (an
    /// ignored SIGCHLD, or a `wait()` for any child in another thread).
    ReapedElsewhere,
}

/// `__WALL` where it exists: waits for clone children too (see `spawn`).
#[cfg(target_os = "linux")]
const ALL_CHILDREN: libc::c_int = libc::__WALL;
#[cfg(not(target_os = "linux"))]
const ALL_CHILDREN: libc::c_int = 0;

/// Looks whether child `pid` has ended, without reaping it, so that its
/// process group can still be signalled safely.
pub(crate) fn probe(pid: u32) -> Probe {
    // SAFETY: waitid fills a valid siginfo_t; WNOWAIT leaves the child waitable.
    let (ret, info) = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let ret = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | ALL_CHILDREN,
        );
        (ret, info)
    };
    if ret != 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ECHILD) => Probe::ReapedElsewhere,
            // EINTR and the like: look again later.
            _ => Probe::Running,
        };
    }
    // SAFETY: waitid succeeded, so si_pid is initialised (0: still running).
    if unsafe { info.si_pid() } == 0 {
        Probe::Running
    } else {
        Probe::Ended
    }
}

/// How a reaped child ended, and the most memory it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub status: ExitStatus,
    /// Its peak resident set size in bytes (`ru_maxrss`), when the system
    /// reports one.
    pub max_rss: Option<u64>,
}

/// Reaps child `pid`, blocking until it has ended. `None` when it was
/// reaped elsewhere meanwhile.
pub(crate) fn reap_blocking(pid: u32) -> Option<Reaped> {
    use std::os::unix::process::ExitStatusExt;
    loop {
        let mut status = 0;
        // SAFETY: wait4 fills a valid int and a zeroed rusage it is given.
        let (ret, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let ret = libc::wait4(pid as libc::pid_t, &mut status, ALL_CHILDREN, &mut usage);
            (ret, usage)
        };
        if ret == pid as libc::pid_t {
            // Kilobytes on Linux and the BSDs, bytes on macOS.
            let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
            let max_rss = u64::try_from(usage.ru_maxrss)
                .ok()
                .filter(|&rss| rss > 0)
                .map(|rss| rss.saturating_mul(unit));
            return Some(Reaped {
                status: ExitStatus::from_raw(status),
                max_rss,
            });
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// Blocks until child `pid` has ended, without reaping it (so that its
/// process group can still be signalled safely); returns at once if it has
/// already ended, or is not ours to wait for.
pub(crate) fn wait_ended(pid: u32) {
    loop {
        // SAFETY: waitid fills a valid siginfo_t; WNOWAIT leaves the child
        // waitable.
        let ret = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | ALL_CHILDREN,
            )
        };
        if ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Sends `signal` to the child itself: through its pidfd when there is one
/// (no pid-reuse race at all), else by pid, which the caller only does while
/// the child is unreaped (so the pid is still its own).
pub(crate) fn signal_process(pid: u32, pidfd: Option<&OwnedFd>, signal: i32) {
    #[cfg(target_os = "linux")]
    if let Some(pidfd) = pidfd {
        // SAFETY: pidfd_send_signal takes a descriptor we own, a signal
        // number and no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        return;
    }
    let _ = pidfd.map(AsRawFd::as_raw_fd);
    // SAFETY: kill only sends a signal; the caller guarantees `pid` is an
    // unreaped child of ours.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Sends `signal` to a whole process group (a child and what it started).
/// The caller only does this while the group's leader is an unreaped child
/// of ours, so its id cannot have been reused by another group.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: killpg only sends a signal.
    unsafe { libc::killpg(pgid as libc::pid_t, signal) };
}

pub(crate) const SIGKILL: i32 = libc::SIGKILL;
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
