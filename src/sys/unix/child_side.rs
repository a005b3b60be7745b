//! What a child does to itself at entry: die with its parent, close stray
//! descriptors, take stampede's descriptors, wait at a gate.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

use super::{check, getppid};

/// The signal a child gets when its parent dies. Its handler kills the
/// child's whole process group — the child and everything it started — so
/// grandchildren die with the parent too; SIGKILL itself could not be
/// caught to do that. A real-time signal, which no library sends by chance.
fn death_signal() -> libc::c_int {
    libc::SIGRTMAX()
}

extern "C" fn on_parent_death(_: libc::c_int) {
    // SAFETY: kill is async-signal-safe; 0 means this process's group.
    unsafe { libc::kill(0, libc::SIGKILL) };
}

/// Kills this process's group, this process included. For a child that
/// finds its parent gone.
pub(crate) fn die_with_group() -> ! {
    on_parent_death(0);
    // Only reached if the group could not be signalled.
    std::process::exit(1)
}

/// Makes this child die, with its whole process group, when `parent` dies
/// (Linux: the parent-death signal, caught). If the parent is gone already,
/// dies now.
pub(crate) fn die_with_parent(parent: u32) {
    #[cfg(target_os = "linux")]
    // SAFETY: the handler only calls kill (async-signal-safe); sigaction
    // reads a valid struct; prctl only sets a process attribute.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_parent_death as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(death_signal(), &action, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, death_signal());
    }
    if getppid() != parent {
        die_with_group();
    }
}

/// Closes every descriptor from `from` up, where the spawn could not (a C
/// library without `addclosefrom`: the same in this child as in its parent,
/// same binary, same system). At entry, before any user code runs.
pub(crate) fn close_strays(from: RawFd) {
    if super::spawn::add_close_from().is_some() {
        return;
    }
    let top = super::nofile_limits().map_or(4096, |(soft, _)| soft.min(1 << 16)) as RawFd;
    for fd in from..top {
        // SAFETY: closing a descriptor number; the child owns none at or
        // above `from` at this point.
        unsafe { libc::close(fd) };
    }
}

/// Takes one of the descriptors the parent placed, marking it close-on-exec
/// so that programs the user's code starts do not inherit it (this is the
/// child's own table, not the parent's).
pub(crate) fn take_fd(fd: RawFd) -> io::Result<File> {
    super::set_cloexec(fd).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("stampede's descriptor {fd} is not open in this child: {e}"),
        )
    })?;
    // SAFETY: the descriptor is open (checked above), was placed by the
    // parent for this process alone, and is wrapped once.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// How a wait at a gate ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// The parent released it.
    Released,
    /// Every copy of the parent's end closed without releasing it: the
    /// parent is gone. Never a release.
    ParentGone,
}

/// Blocks until at least `count` bytes can be read from the gate socket
/// `fd` — the parent writes one byte per release and never reads them back,
/// and every child of a call shares the same socket — by peeking, so that
/// every child sees every byte. Waits on an edge-triggered epoll, so bytes
/// already there from earlier releases do not make it spin.
pub(crate) fn wait_gate(fd: RawFd, count: usize) -> io::Result<Gate> {
    let mut buf = vec![0u8; count.max(1)];
    // SAFETY: epoll_create1 returns a new descriptor, closed below.
    let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `epoll` is ours (just created); wrapping it closes it on return.
    let _epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(epoll) };
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: a valid epoll descriptor, a descriptor of ours, a valid event.
    check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    let mut hung_up = false;
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= count as isize {
            return Ok(Gate::Released);
        }
        if n == 0 || (n > 0 && hung_up) {
            return Ok(Gate::ParentGone);
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock && err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            if hung_up {
                return Ok(Gate::ParentGone);
            }
        }
        let mut ready = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ready` is valid for one event.
        let got = unsafe { libc::epoll_wait(epoll, &mut ready, 1, -1) };
        if got == 1 && ready.events & (libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0 {
            hung_up = true;
        }
    }
}
