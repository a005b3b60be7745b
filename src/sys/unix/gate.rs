//! The gate's mechanism: a count of released rounds in memory shared by
//! the parent and every child of a call (a `memfd` each child maps), and a
//! futex the children sleep on until the count reaches their round.
//!
//! One `FUTEX_WAKE` wakes every sleeper without the wake hints a socket or
//! pipe write gives the scheduler ("the writer sleeps soon: run them here"),
//! and without an epoll hop per child: measured on a 2-core VM, 64 children
//! asleep on one word started within 0.63–0.77 ms of each other, against
//! 0.9–1.1 ms on a socket each child watched with epoll (see
//! `docs/decisions.md`). The count only grows, and only the parent's
//! `release` raises it: a parent that dies releases nothing, and its
//! children learn of the death from the death signal, or from `getppid`
//! within [`PARENT_CHECK`].

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::check;

/// How often a child asleep at the gate looks whether its parent is still
/// there, in case the death signal was not delivered.
pub(crate) const PARENT_CHECK: Duration = Duration::from_millis(50);

/// The word the gate is: a count of released rounds, mapped shared.
struct Word(NonNull<AtomicU32>);

// SAFETY: the pointer is to a shared mapping that lives as long as the
// `Word` (unmapped only in the parent's `Drop`, never in a child), and is
// only accessed through the atomic.
unsafe impl Send for Word {}
// SAFETY: as above; every access is atomic.
unsafe impl Sync for Word {}

impl Word {
    /// Maps the first 4 bytes of `fd`, shared and writable.
    fn map(fd: RawFd) -> io::Result<Word> {
        // SAFETY: a new mapping of an open descriptor; the kernel picks the
        // address and checks the descriptor and its size.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<AtomicU32>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(at.cast::<AtomicU32>())
            .map(Word)
            .ok_or_else(|| io::Error::other("mmap returned a null address"))
    }

    fn get(&self) -> &AtomicU32 {
        // SAFETY: a live, aligned (page-aligned) mapping of at least 4
        // bytes, accessed only atomically (see the type's Send/Sync).
        unsafe { self.0.as_ref() }
    }
}

/// The parent's end of a gate: it releases rounds.
pub(crate) struct GateCount {
    word: Word,
    /// The memory file: the children's end is a duplicate of it.
    file: OwnedFd,
}

impl GateCount {
    /// A gate with no round released.
    pub(crate) fn new() -> io::Result<GateCount> {
        // SAFETY: a NUL-terminated name; memfd_create creates a new
        // descriptor and touches no other memory.
        let fd =
            check(unsafe { libc::memfd_create(c"stampede-gate".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: the kernel just created it; nothing else owns it.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: resizes a memory file of ours.
        check(unsafe { libc::ftruncate(fd, size_of::<AtomicU32>() as libc::off_t) })?;
        let word = Word::map(fd)?;
        Ok(GateCount { word, file })
    }

    /// The descriptor a child maps (duplicate it for the child).
    pub(crate) fn file(&self) -> &OwnedFd {
        &self.file
    }

    /// Releases the next round and wakes every child asleep at the gate.
    pub(crate) fn release(&self) -> io::Result<()> {
        self.word.get().fetch_add(1, Ordering::Release);
        futex_wake(self.word.get())
    }
}

impl Drop for GateCount {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`, which nothing uses any
        // more (the word is only reachable through `self`).
        unsafe { libc::munmap(self.word.0.as_ptr().cast(), size_of::<AtomicU32>()) };
    }
}

/// How a wait at a gate ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// The parent released it.
    Released,
    /// The parent is gone without releasing it. Never a release.
    ParentGone,
}

/// The gate's word as this child mapped it, and which open file it is:
/// once per process, since a child has one gate for its life (its
/// descriptor may be duplicated, never replaced).
static MAPPED: OnceLock<((u64, u64), Word)> = OnceLock::new();

/// Blocks until the parent has released at least `count` rounds of the
/// gate `fd`, or until the parent this child was started by (see
/// [`die_with_parent`](super::die_with_parent)) is gone.
pub(crate) fn wait_gate(fd: RawFd, count: u32) -> io::Result<Gate> {
    let file =
        super::identity(fd).ok_or_else(|| io::Error::other("the gate's descriptor is not open"))?;
    let word = match MAPPED.get() {
        Some((mapped, word)) if *mapped == file => word,
        Some(_) => {
            return Err(io::Error::other(
                "a child has one gate, and this is another",
            ));
        }
        None => {
            // Two threads racing here would map it twice and keep one:
            // the other mapping stays unused, which is harmless.
            let word = Word::map(fd)?;
            &MAPPED.get_or_init(|| (file, word)).1
        }
    };
    let word = word.get();
    loop {
        let seen = word.load(Ordering::Acquire);
        if seen >= count {
            return Ok(Gate::Released);
        }
        if !futex_wait(word, seen, PARENT_CHECK)? && super::parent_gone() {
            return Ok(Gate::ParentGone);
        }
    }
}

/// Sleeps while `word` holds `seen`, at most `limit`; `false` when the limit
/// passed.
fn futex_wait(word: &AtomicU32, seen: u32, limit: Duration) -> io::Result<bool> {
    let limit = libc::timespec {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_nsec: limit.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid, aligned word in a shared mapping and a valid
    // relative timeout; FUTEX_WAIT (not private: the word is shared between
    // processes) reads the word and sleeps only if it still holds `seen`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &limit as *const libc::timespec,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ETIMEDOUT) => Ok(false),
        // The word changed before the sleep, or a signal came: look again.
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(true),
        _ => Err(err),
    }
}

/// Wakes every process asleep on `word`.
fn futex_wake(word: &AtomicU32) -> io::Result<()> {
    // SAFETY: a valid word in a shared mapping; FUTEX_WAKE reads no memory
    // of ours beyond its address.
    check(
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) } as i32,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;

    /// Waits for `count` releases on another thread; the receiver gets its
    /// result.
    fn waiter(fd: RawFd, count: u32) -> mpsc::Receiver<io::Result<Gate>> {
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || send.send(wait_gate(fd, count)));
        receive
    }

    // One test: the mapping is the process's, as in a child.
    #[test]
    fn a_round_opens_on_its_own_release_only_for_every_copy_of_one_gate_only() {
        let gate = GateCount::new().unwrap();
        let copy = super::super::dup_at_least(gate.file(), 10).unwrap();
        let first = waiter(gate.file().as_raw_fd(), 1);
        let second = waiter(copy.as_raw_fd(), 2);
        // Longer than PARENT_CHECK: a timed-out sleep is not a release.
        let quiet = PARENT_CHECK * 3;
        assert!(
            first.recv_timeout(quiet).is_err(),
            "round 0 opened unreleased"
        );

        gate.release().unwrap();
        let opened = first.recv_timeout(Duration::from_secs(10)).expect("woken");
        assert_eq!(opened.unwrap(), Gate::Released);
        assert!(
            second.recv_timeout(quiet).is_err(),
            "round 1 opened with round 0"
        );
        // A round already released passes at once.
        assert_eq!(wait_gate(copy.as_raw_fd(), 1).unwrap(), Gate::Released);

        gate.release().unwrap();
        let opened = second.recv_timeout(Duration::from_secs(10)).expect("woken");
        assert_eq!(opened.unwrap(), Gate::Released);

        // A process maps one gate for its life: another is an error, never
        // a release.
        let other = GateCount::new().unwrap();
        other.release().unwrap();
        let refused = wait_gate(other.file().as_raw_fd(), 1).unwrap_err();
        assert!(refused.to_string().contains("one gate"), "{refused}");
    }
}
