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
//!
//! Before a release the parent may arm the round: the children asleep on
//! it wake, say so (a shared count), and look at the count between
//! `sched_yield`s until the release. The wakes' cost is paid before the
//! release, and the release itself is one store every child sees within a
//! turn of the CPUs: 64 exec'd processes on 2 cores began within 191–195 µs
//! of each other, against 672–689 µs woken from sleep by one `FUTEX_WAKE`
//! (8: 17 µs against 56–57 µs). A child that looked for [`SPIN_LIMIT`]
//! sleeps again, to be woken by the release.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::check;

/// How often a child asleep at the gate looks whether its parent is still
/// there, in case the death signal was not delivered. Each look is a wake
/// and a switch for nothing while the parent is alive: longer than the
/// parent takes to start 256 children on 2 cores (about 180 ms), so that
/// the first of them do not wake while the last are started. At 50 ms,
/// 256 children slept 2.4 times each, and a call took 1.5–3 % longer.
pub(crate) const PARENT_CHECK: Duration = Duration::from_millis(200);

/// How long a child of an armed round looks at the gate between yields
/// before it sleeps until the release instead: longer than the parent
/// ever waits for every child to look (`release::arm_wait`, at most
/// 45 ms), so that a child sleeps again only when the parent is slow.
pub(crate) const SPIN_LIMIT: Duration = Duration::from_millis(50);

/// The gate's shared words.
#[repr(C)]
struct Words {
    /// How many rounds were released.
    released: AtomicU32,
    /// How many rounds were armed (one past the round armed last).
    armed: AtomicU32,
    /// How many times a child began to look at an armed round.
    looking: AtomicU32,
    /// Moves at every arm and release: what sleeping children sleep on.
    epoch: AtomicU32,
}

/// The words, mapped shared.
struct Word(NonNull<Words>);

// SAFETY: the pointer is to a shared mapping that lives as long as the
// `Word` (unmapped only in the parent's `Drop`, never in a child), and is
// only accessed through the atomic.
unsafe impl Send for Word {}
// SAFETY: as above; every access is atomic.
unsafe impl Sync for Word {}

impl Word {
    /// Maps the start of `fd`, shared and writable.
    fn map(fd: RawFd) -> io::Result<Word> {
        // SAFETY: a new mapping of an open descriptor; the kernel picks the
        // address and checks the descriptor and its size.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<Words>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(at.cast::<Words>())
            .map(Word)
            .ok_or_else(|| io::Error::other("mmap returned a null address"))
    }

    fn get(&self) -> &Words {
        // SAFETY: a live, aligned (page-aligned) mapping of a `Words`,
        // accessed only atomically (see the type's Send/Sync).
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
        check(unsafe { libc::ftruncate(fd, size_of::<Words>() as libc::off_t) })?;
        let word = Word::map(fd)?;
        Ok(GateCount { word, file })
    }

    /// The descriptor a child maps (duplicate it for the child).
    pub(crate) fn file(&self) -> &OwnedFd {
        &self.file
    }

    /// Arms the next round: every child asleep at it wakes and looks at
    /// the gate until its release. Returns how many looks began before
    /// (see [`looking`](Self::looking)).
    pub(crate) fn arm(&self) -> io::Result<u32> {
        let words = self.word.get();
        let before = words.looking.load(Ordering::Acquire);
        let next = words.released.load(Ordering::Acquire) + 1;
        words.armed.store(next, Ordering::Release);
        words.epoch.fetch_add(1, Ordering::Release);
        futex_wake(&words.epoch)?;
        Ok(before)
    }

    /// How many times a child began to look at an armed round, ever.
    pub(crate) fn looking(&self) -> u32 {
        self.word.get().looking.load(Ordering::Acquire)
    }

    /// Releases the next round and wakes every child still asleep at it.
    pub(crate) fn release(&self) -> io::Result<()> {
        let words = self.word.get();
        words.released.fetch_add(1, Ordering::Release);
        words.epoch.fetch_add(1, Ordering::Release);
        futex_wake(&words.epoch)
    }
}

impl Drop for GateCount {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`, which nothing uses any
        // more (the word is only reachable through `self`).
        unsafe { libc::munmap(self.word.0.as_ptr().cast(), size_of::<Words>()) };
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
    let words = word.get();
    let mut looked = false;
    loop {
        // The epoch first: a release or an arm after this look moves it,
        // and the sleep below does not begin.
        let epoch = words.epoch.load(Ordering::Acquire);
        if words.released.load(Ordering::Acquire) >= count {
            return Ok(Gate::Released);
        }
        if !looked && words.armed.load(Ordering::Acquire) >= count {
            looked = true;
            words.looking.fetch_add(1, Ordering::AcqRel);
            if words.released.load(Ordering::Acquire) >= count {
                // Released meanwhile: this look was for a round gone by,
                // and must not count toward the next one's arming.
                words.looking.fetch_sub(1, Ordering::AcqRel);
                return Ok(Gate::Released);
            }
            match look_until_released(&words.released, count) {
                Some(gate) => return Ok(gate),
                // Looked for `SPIN_LIMIT`: sleep until the release.
                None => continue,
            }
        }
        if !futex_wait(&words.epoch, epoch, PARENT_CHECK)? && super::parent_gone() {
            return Ok(Gate::ParentGone);
        }
    }
}

/// Looks at `released` between yields until it reaches `count`, at most
/// [`SPIN_LIMIT`] (then `None`), the parent's death looked for as often.
fn look_until_released(released: &AtomicU32, count: u32) -> Option<Gate> {
    let began = std::time::Instant::now();
    for looks in 1u32.. {
        if released.load(Ordering::Acquire) >= count {
            return Some(Gate::Released);
        }
        std::thread::yield_now();
        // A yield among many spinning children can take a while: the
        // clock and the parent are looked at every 16.
        if looks % 16 == 0 {
            if super::parent_gone() {
                return Some(Gate::ParentGone);
            }
            if began.elapsed() >= SPIN_LIMIT {
                return None;
            }
        }
    }
    None
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

    #[test]
    fn the_look_for_a_dead_parent_outlasts_the_start_of_256_children_and_no_more() {
        // Measured: 256 children take about 180 ms to start on 2 cores;
        // the first of them must not wake for nothing meanwhile.
        assert!(
            PARENT_CHECK > Duration::from_millis(180),
            "a child asleep at the gate would wake while its siblings start"
        );
        // An orphan whose death signal did not come leaves within this.
        assert!(
            PARENT_CHECK <= Duration::from_millis(200),
            "an orphan would outlive its parent by more than 200 ms"
        );
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

    // A process maps one gate: this test's gate is its only one, so it
    // runs in a process of its own (see `arming_in_a_child`).
    #[test]
    fn an_armed_round_is_looked_at_by_its_waiters_only_and_opens_on_its_release() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "sys::unix::gate::tests::arming_in_a_child",
                "--ignored",
            ])
            .arg("--nocapture")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    #[test]
    #[ignore = "run by an_armed_round_is_looked_at_by_its_waiters_only_and_opens_on_its_release"]
    fn arming_in_a_child() {
        let gate = GateCount::new().unwrap();
        let fd = gate.file().as_raw_fd();
        let first = waiter(fd, 1);
        let second = waiter(fd, 2);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        assert_eq!(gate.arm().unwrap(), 0, "no look before the first arming");
        // The waiter for round 0 wakes and looks; the one for round 1 does
        // not (its round is not armed), and neither passes.
        while gate.looking() < 1 {
            assert!(
                std::time::Instant::now() < until,
                "the armed round's waiter never looked"
            );
            std::thread::yield_now();
        }
        assert!(
            first.recv_timeout(PARENT_CHECK * 2).is_err(),
            "armed is not released"
        );
        assert_eq!(
            gate.looking(),
            1,
            "round 1's waiter looked at round 0's arming"
        );
        gate.release().unwrap();
        let opened = first
            .recv_timeout(Duration::from_secs(10))
            .expect("released");
        assert_eq!(opened.unwrap(), Gate::Released);
        assert!(
            second.recv_timeout(PARENT_CHECK * 2).is_err(),
            "round 1 opened"
        );
        // Armed and looked at longer than SPIN_LIMIT, a waiter sleeps, and
        // the release still wakes it.
        assert_eq!(gate.arm().unwrap(), 1);
        std::thread::sleep(SPIN_LIMIT * 2);
        assert_eq!(gate.looking(), 2);
        gate.release().unwrap();
        let opened = second
            .recv_timeout(Duration::from_secs(10))
            .expect("released");
        assert_eq!(opened.unwrap(), Gate::Released);
    }
}
