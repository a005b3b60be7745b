//! Unix implementation: pipes, socket pairs, poll, process groups, the
//! monotonic clock, and the setup of a child between fork and exec.
//! Linux-only pieces (`prctl`, `pidfd`, `close_range`, `/proc/self/exe`) are
//! behind `cfg(target_os = "linux")` with a portable fallback.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The descriptor a child reads its request from and writes its reports to.
pub(crate) const CHANNEL_FD: RawFd = 3;
/// The descriptor a child blocks on until the parent releases the barrier.
pub(crate) const BARRIER_FD: RawFd = 4;
/// Descriptors a child may inherit are below this number.
const FIRST_CLOSED_FD: RawFd = 5;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe whose two ends are close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    #[cfg(target_os = "linux")]
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: as above; the flags are set right after, before any spawn
        // of ours (other threads' spawns may race: that is the platform's limit).
        check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    {
        set_cloexec(&ends.0)?;
        set_cloexec(&ends.1)?;
    }
    Ok(ends)
}

/// A connected pair of close-on-exec stream sockets.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    #[cfg(target_os = "linux")]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let kind = libc::SOCK_STREAM;
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    check(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours alone.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    {
        set_cloexec(&ends.0)?;
        set_cloexec(&ends.1)?;
    }
    Ok(ends)
}

#[cfg(not(target_os = "linux"))]
fn set_cloexec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_SETFD only sets flags.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// A close-on-exec duplicate of `fd` numbered [`FIRST_CLOSED_FD`] or above,
/// so that moving it to fd 3 or 4 in a child cannot overwrite the other one.
pub(crate) fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let new =
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FIRST_CLOSED_FD) })?;
    // SAFETY: `new` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Puts the parent's end of a pipe or socket in non-blocking mode. The flag
/// belongs to the open file description, which the child's end does not share.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; no memory is touched.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Reads what is there without blocking; `Ok(None)` means "nothing yet".
pub(crate) fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Writes what the descriptor takes without blocking; `Ok(0)` means "full".
pub(crate) fn write_some(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes. MSG_NOSIGNAL
        // turns a dead reader into EPIPE instead of killing us with SIGPIPE.
        #[cfg(target_os = "linux")]
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        // SAFETY: as above (SIGPIPE is ignored by Rust's runtime by default).
        #[cfg(not(target_os = "linux"))]
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(err),
        }
    }
}

pub(crate) use libc::pollfd as PollFd;
pub(crate) const POLLIN: i16 = libc::POLLIN;
pub(crate) const POLLOUT: i16 = libc::POLLOUT;

pub(crate) fn poll_fd(fd: RawFd, events: i16) -> PollFd {
    PollFd {
        fd,
        events,
        revents: 0,
    }
}

/// Waits until one of `fds` is ready or `timeout_ms` passes (-1: no limit).
pub(crate) fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<()> {
    // SAFETY: `fds` is a valid slice of pollfd structs for the kernel to update.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        other => other.map(drop),
    }
}

/// Nanoseconds on the system-wide monotonic clock, comparable between the
/// parent and its children (they share the clock; `Instant` cannot travel).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kills a whole process group (a child and everything it started).
pub(crate) fn kill_group(pgid: u32) {
    // SAFETY: killpg only sends a signal. The group's leader is our child and
    // is not reaped yet, so its id cannot have been reused by another group.
    unsafe { libc::killpg(pgid as libc::pid_t, libc::SIGKILL) };
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+).
/// `None` when the kernel lacks pidfd: the caller falls back to polling.
pub(crate) fn exit_watch(pid: u32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd >= 0 {
            // SAFETY: the syscall returned a fresh descriptor owned by nobody else.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
    }
    let _ = pid;
    None
}

/// The executable to re-run: the running image itself on Linux, so a binary
/// rebuilt on disk meanwhile cannot sneak in.
pub(crate) fn current_exe() -> io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

pub(crate) fn getpid() -> u32 {
    std::process::id()
}

pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() as u32 }
}

/// Arranges, between fork and exec of a child, that: its channel and barrier
/// sit at [`CHANNEL_FD`] and [`BARRIER_FD`]; every other descriptor above
/// stderr is closed by exec (only in the child's own table: the parent's
/// flags are never touched); and it dies when the parent does.
pub(crate) fn prepare_child(cmd: &mut Command, channel: &OwnedFd, barrier: &OwnedFd) {
    let channel = channel.as_raw_fd();
    let barrier = barrier.as_raw_fd();
    debug_assert!(channel >= FIRST_CLOSED_FD && barrier >= FIRST_CLOSED_FD);
    let parent = getpid() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (dup2, close_range/fcntl, prctl,
    // getppid, _exit); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 clears close-on-exec on the new descriptor; the sources are
            // >= FIRST_CLOSED_FD (see `dup_high`), so neither overwrites the other.
            check(libc::dup2(channel, CHANNEL_FD))?;
            check(libc::dup2(barrier, BARRIER_FD))?;
            mark_rest_cloexec();
            #[cfg(target_os = "linux")]
            {
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            let _ = parent;
            Ok(())
        });
    }
}

/// In the forked child: every descriptor from [`FIRST_CLOSED_FD`] up gets
/// close-on-exec, so exec drops what a C library opened without it.
///
/// SAFETY (for the caller): only call between fork and exec.
unsafe fn mark_rest_cloexec() {
    #[cfg(target_os = "linux")]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range only changes descriptor flags of this process.
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                FIRST_CLOSED_FD as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        };
        if done == 0 {
            return;
        }
    }
    // Fallback for old kernels: walk the descriptor table's possible range.
    // SAFETY: getrlimit fills a valid struct; fcntl on a closed fd is EBADF.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as RawFd
        } else {
            4096
        };
        for fd in FIRST_CLOSED_FD..top {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// In a child, at entry: takes the channel and barrier descriptors, and
/// marks them close-on-exec so processes the user's code starts do not
/// inherit them (this is the child's own table, not the parent's).
pub(crate) fn child_descriptors() -> io::Result<(File, File)> {
    for fd in [CHANNEL_FD, BARRIER_FD] {
        // SAFETY: F_SETFD on a descriptor number only sets its flags; a
        // closed descriptor gives EBADF, which is reported.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("stampede's descriptor {fd} is not open in this child: {e}"),
            )
        })?;
    }
    // SAFETY: both descriptors were checked open above; they were placed by
    // `prepare_child` for this process alone, and each is wrapped once.
    Ok(unsafe { (File::from_raw_fd(CHANNEL_FD), File::from_raw_fd(BARRIER_FD)) })
}

/// In a child, at entry (Linux): die with the parent even if it is gone
/// already; exec kept the death signal, this re-arms it for safety.
pub(crate) fn child_die_with(parent: u32) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a process attribute.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if getppid() != parent {
        std::process::exit(1);
    }
}

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

/// Raises the soft limit on open descriptors towards `wanted` (never above
/// the hard limit, never lowering it). Returns the limit now in force.
pub(crate) fn raise_nofile(wanted: u64) -> Option<u64> {
    let (soft, hard) = nofile_limits()?;
    if soft >= wanted {
        return Some(soft);
    }
    let new = wanted.min(hard);
    let lim = libc::rlimit {
        rlim_cur: new as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a valid struct; raising the soft limit up to the
    // hard one is always permitted.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        Some(new)
    } else {
        Some(soft)
    }
}

/// The limit on processes of this user, for error messages.
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
    (unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) } == 0).then_some(lim.rlim_cur as u64)
}

/// Is this error the process limit (fork's EAGAIN)?
pub(crate) fn is_process_limit(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EAGAIN)
}

/// Is this error a descriptor limit (per process or system-wide)?
pub(crate) fn is_descriptor_limit(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The conventional name of a signal, e.g. `SIGKILL`.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "an unnamed signal",
    }
}

/// Sets argv[0] of a child to the parent's, so `ps` shows a familiar name.
pub(crate) fn set_arg0(cmd: &mut Command, arg0: &OsStr) {
    cmd.arg0(arg0);
}

/// Whether process `pid` (our child) has ended, without reaping it, so its
/// process group can still be killed safely.
pub(crate) fn has_exited(pid: u32) -> bool {
    // SAFETY: waitid fills a valid siginfo_t; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let ret = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        ret == 0 && info.si_pid() != 0
    }
}
