//! What a child does to itself at entry: die with its parent, close stray
//! descriptors, take stampede's descriptors.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::getppid;

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

/// The parent this child was started by, once `die_with_parent` knows it.
static PARENT: AtomicU32 = AtomicU32::new(0);

/// Whether the parent this child was started by is gone (this process was
/// handed to another).
pub(crate) fn parent_gone() -> bool {
    let parent = PARENT.load(Ordering::Relaxed);
    parent != 0 && getppid() != parent
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
    PARENT.store(parent, Ordering::Relaxed);
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
