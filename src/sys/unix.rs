//! Unix implementation: pipes, socket pairs, poll, process groups, the
//! monotonic clock, and starting a child with posix_spawn.
//! Linux-only pieces (`prctl`, `pidfd`, `close_range`, `/proc/self/exe`) are
//! behind `cfg(target_os = "linux")` with a portable fallback.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The descriptor a child reads its request from and writes its reports to.
pub(crate) const CHANNEL_FD: RawFd = 3;
/// The descriptor a child blocks on until the parent releases the barrier.
pub(crate) const BARRIER_FD: RawFd = 4;
/// The descriptor a child blocks on in `stampede::checkpoint()`.
pub(crate) const CHECKPOINT_FD: RawFd = 5;
/// Descriptors a child may inherit are below this number.
const FIRST_CLOSED_FD: RawFd = 6;

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
/// so that moving it to fd 3, 4 or 5 in a child cannot overwrite another.
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

/// In a child, at entry: takes the channel, barrier and checkpoint
/// descriptors, and marks them close-on-exec so processes the user's code
/// starts do not inherit them (this is the child's own table, not the parent's).
pub(crate) fn child_descriptors() -> io::Result<[File; 3]> {
    for fd in [CHANNEL_FD, BARRIER_FD, CHECKPOINT_FD] {
        // SAFETY: F_SETFD on a descriptor number only sets its flags; a
        // closed descriptor gives EBADF, which is reported.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("stampede's descriptor {fd} is not open in this child: {e}"),
            )
        })?;
    }
    // SAFETY: the descriptors were checked open above; they were placed by
    // `spawn_child` for this process alone, and each is wrapped once.
    Ok(unsafe {
        [
            File::from_raw_fd(CHANNEL_FD),
            File::from_raw_fd(BARRIER_FD),
            File::from_raw_fd(CHECKPOINT_FD),
        ]
    })
}

/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34+), looked up at
/// run time: linking it directly would stop binaries from even starting on
/// an older C library.
type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

fn add_close_from() -> Option<AddCloseFrom> {
    static FOUND: std::sync::OnceLock<Option<AddCloseFrom>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
        // looks a symbol up.
        let symbol = unsafe {
            libc::dlsym(
                libc::RTLD_DEFAULT,
                c"posix_spawn_file_actions_addclosefrom_np".as_ptr(),
            )
        };
        // SAFETY: the symbol, when present, is glibc's function of exactly
        // this signature (documented in spawn.h since glibc 2.34).
        (!symbol.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, AddCloseFrom>(symbol) })
    })
}

/// In a child, at entry, where the spawn could not close them (a C library
/// without `addclosefrom`, the same here as in the parent: same binary, same
/// system): closes every descriptor from [`FIRST_CLOSED_FD`] up. Before any
/// user code runs, so nothing of the child's own is closed.
pub(crate) fn child_close_strays() {
    if add_close_from().is_some() {
        return;
    }
    let top = nofile_limits().map_or(4096, |(soft, _)| soft.min(1 << 16)) as RawFd;
    for fd in FIRST_CLOSED_FD..top {
        // SAFETY: closing a descriptor number; stampede's child owns none at
        // or above FIRST_CLOSED_FD at this point.
        unsafe { libc::close(fd) };
    }
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

/// A child started by [`spawn_child`]: its pid (to reap with [`wait_pid`])
/// and the parent's ends of its stdout and stderr pipes.
pub(crate) struct Spawned {
    pub pid: u32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The environment of every child of a batch, encoded once: the parent's
/// environment with `extra` on top.
pub(crate) fn child_env(
    extra: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Vec<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    let mut vars: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os().collect();
    for (k, v) in extra {
        vars.insert(k.clone(), v.clone());
    }
    vars.into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect()
}

/// Starts `exe` with posix_spawn (a vfork-style clone on glibc: no copy of the
/// parent's page tables, unlike fork + `pre_exec`), with stdin on /dev/null,
/// stdout and stderr on fresh pipes, the channel at [`CHANNEL_FD`], the
/// barrier at [`BARRIER_FD`], the checkpoint gate at [`CHECKPOINT_FD`],
/// every other descriptor closed, in its own
/// process group. The parent-death signal is armed at child entry
/// (`child_die_with`), which also catches a parent that died meanwhile.
pub(crate) fn spawn_child(
    exe: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    env: &[std::ffi::CString],
    extra_env: &std::ffi::CString,
    channel: &OwnedFd,
    barrier: &OwnedFd,
    checkpoint: &OwnedFd,
) -> io::Result<Spawned> {
    // The write ends are moved above 4 so that no file action below can
    // overwrite one before it is used (a parent with closed stdio gets
    // pipes numbered from 0).
    let (out_r, out_w) = pipe()?;
    let out_w = dup_high(&out_w)?;
    let (err_r, err_w) = pipe()?;
    let err_w = dup_high(&err_w)?;
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = Vec::with_capacity(env.len() + 2);
    env_ptrs.push(extra_env.as_ptr().cast_mut());
    env_ptrs.extend(env.iter().map(|e| e.as_ptr().cast_mut()));
    env_ptrs.push(std::ptr::null_mut());
    let spawn_err = |ret: libc::c_int| {
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(ret))
        }
    };
    // SAFETY: the attribute and file-action objects are initialised before
    // use and destroyed on every path; every pointer handed to posix_spawn
    // points into a NUL-terminated array of live C strings.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        spawn_err(libc::posix_spawn_file_actions_init(&mut fa))?;
        if let Err(e) = spawn_err(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let result = (|| -> io::Result<u32> {
            spawn_err(libc::posix_spawn_file_actions_addopen(
                &mut fa,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            spawn_err(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                out_w.as_raw_fd(),
                1,
            ))?;
            spawn_err(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                err_w.as_raw_fd(),
                2,
            ))?;
            spawn_err(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                channel.as_raw_fd(),
                CHANNEL_FD,
            ))?;
            spawn_err(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                barrier.as_raw_fd(),
                BARRIER_FD,
            ))?;
            spawn_err(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                checkpoint.as_raw_fd(),
                CHECKPOINT_FD,
            ))?;
            // Closes, in the child's own table, what a C library opened in
            // the parent without close-on-exec. Without it the child closes
            // them at entry (`child_close_strays`).
            if let Some(add_close_from) = add_close_from() {
                spawn_err(add_close_from(&mut fa, FIRST_CLOSED_FD))?;
            }
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            spawn_err(libc::posix_spawnattr_setsigmask(&mut attr, &mask))?;
            let mut default: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut default);
            libc::sigaddset(&mut default, libc::SIGPIPE);
            spawn_err(libc::posix_spawnattr_setsigdefault(&mut attr, &default))?;
            spawn_err(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            spawn_err(libc::posix_spawnattr_setflags(
                &mut attr,
                flags as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            spawn_err(libc::posix_spawn(
                &mut pid,
                exe.as_ptr(),
                &fa,
                &attr,
                argv_ptrs.as_ptr(),
                env_ptrs.as_ptr(),
            ))?;
            Ok(pid as u32)
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        Ok(Spawned {
            pid: result?,
            stdout: out_r,
            stderr: err_r,
        })
    }
}

/// Reaps child `pid`, blocking until it has ended.
pub(crate) fn wait_pid(pid: u32) -> io::Result<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    loop {
        let mut status = 0;
        // SAFETY: waitpid fills a valid int.
        let ret = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if ret == pid as libc::pid_t {
            return Ok(std::process::ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
