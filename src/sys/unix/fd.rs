//! Descriptors: pipes, socket pairs, duplicates, non-blocking reads and
//! writes, `poll`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::check;

/// Wraps a descriptor the kernel just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor that a system call has just
    // created for this process, which nothing else owns yet.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A pipe whose two ends are close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    #[cfg(target_os = "linux")]
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above; the flags are set right after, before any spawn of
    // ours (another thread's spawn may race: that is the platform's limit).
    check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    let ends = (owned(fds[0]), owned(fds[1]));
    #[cfg(not(target_os = "linux"))]
    {
        set_cloexec(ends.0.as_raw_fd())?;
        set_cloexec(ends.1.as_raw_fd())?;
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
    let ends = (owned(fds[0]), owned(fds[1]));
    #[cfg(not(target_os = "linux"))]
    {
        set_cloexec(ends.0.as_raw_fd())?;
        set_cloexec(ends.1.as_raw_fd())?;
    }
    Ok(ends)
}

/// `/dev/null`, opened for reading, close-on-exec.
pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    // SAFETY: open with a NUL-terminated path; the result is checked.
    let fd = check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    Ok(owned(fd))
}

/// Marks a descriptor of this process close-on-exec. Used on the child's own
/// descriptors only: the parent's flags are never changed.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor number only sets its flags; a closed
    // descriptor gives EBADF, which is returned.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// A close-on-exec duplicate of `fd` numbered `lowest` or above, so that
/// moving it to a low number in a child cannot overwrite another source.
pub(crate) fn dup_at_least(fd: &OwnedFd, lowest: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let new = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest) })?;
    Ok(owned(new))
}

/// Which open file a descriptor refers to, as `(device, inode)`; `None` when
/// it is not open.
pub(crate) fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat fills a valid stat struct; a closed descriptor gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev as u64, st.st_ino as u64))
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

/// The pid of the process that listens at the other end of a connected
/// Unix socket (the one that called `listen`, for a server's socket), as
/// the kernel recorded it.
#[cfg(target_os = "linux")]
pub(crate) fn peer_pid(fd: RawFd) -> io::Result<u32> {
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a plain
    // struct of integers, and updates `len`.
    let (ret, cred) = unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = size_of::<libc::ucred>() as libc::socklen_t;
        let ret = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        );
        (ret, cred)
    };
    check(ret)?;
    u32::try_from(cred.pid)
        .ok()
        .filter(|&pid| pid != 0)
        .ok_or_else(|| io::Error::other("the kernel recorded no pid for the socket's peer"))
}

/// Where the kernel records no peer's pid: never proven.
#[cfg(not(target_os = "linux"))]
pub(crate) fn peer_pid(_fd: RawFd) -> io::Result<u32> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a socket's peer is only known on Linux",
    ))
}

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
