//! What a service's keeper and its sweep need from the OS: process identity
//! that survives pid reuse (start times from `/proc`), signals by pid after
//! that check, a file lock, the user to run a server as, and the stop
//! signals a keeper takes as its word.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use super::check;

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`); `None` when it is gone or a zombie. A pid and its
/// start time name one process: a reused pid has another start time.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = super::after_command(&stat)?.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    // `rest` starts at field 3 (state); the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// Whether process `pid`, started at `start`, still runs.
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    process_start_time(pid) == Some(start)
}

/// What names one process beyond its pid: when it started, the user it
/// runs as (real uid) and the program it runs (`/proc/<pid>/exe`). A pid
/// and start time survive pid reuse; the uid and program make a record
/// written by someone else useless for signalling a process of another
/// user or another program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub pid: u32,
    pub start: u64,
    pub uid: u32,
    pub exe: PathBuf,
}

/// Process `pid`'s identity now; `None` when it is gone, a zombie, or its
/// program cannot be read (another user's process, without root).
pub(crate) fn identity_of(pid: u32) -> Option<Identity> {
    let start = process_start_time(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(Identity {
        pid,
        start,
        uid,
        exe,
    })
}

/// Whether `now` (what `/proc` shows) is the process `recorded` names: the
/// same start time, user and program. A program replaced on disk since
/// (a rebuilt test binary) shows as `<path> (deleted)` and still counts.
pub(crate) fn same_process(recorded: &Identity, now: &Identity) -> bool {
    let deleted = {
        let mut name = recorded.exe.clone().into_os_string();
        name.push(" (deleted)");
        PathBuf::from(name)
    };
    recorded.pid == now.pid
        && recorded.start == now.start
        && recorded.uid == now.uid
        && (recorded.exe == now.exe || deleted == now.exe)
}

/// Sends `signal` to the process `recorded` names, and to its process group
/// when it leads one, if `/proc` proves it is still that process (see
/// [`same_process`]). `Ok(true)` when signalled, `Ok(false)` when it is
/// gone, `Err` with what differs when another process holds the pid. On
/// Linux the process is held by a pidfd opened before the check and
/// signalled through it, so a process that took its pid after the check
/// is never signalled; its group is signalled by id, a system call after
/// the check.
pub(crate) fn signal_if_same(recorded: &Identity, signal: i32) -> Result<bool, String> {
    let held = Held::open(recorded.pid);
    if matches!(held, Held::Gone) {
        return Ok(false);
    }
    let Some(now) = identity_of(recorded.pid) else {
        return if process_start_time(recorded.pid) == Some(recorded.start) {
            Err(format!(
                "pid {} runs, but its user and program cannot be read",
                recorded.pid
            ))
        } else {
            Ok(false)
        };
    };
    if now.start != recorded.start {
        return Ok(false);
    }
    if !same_process(recorded, &now) {
        return Err(format!(
            "pid {} runs {} as uid {}, not {} as uid {}",
            now.pid,
            now.exe.display(),
            now.uid,
            recorded.exe.display(),
            recorded.uid
        ));
    }
    // SAFETY: getpgid and killpg only read ids and send a signal.
    unsafe {
        if libc::getpgid(recorded.pid as libc::pid_t) == recorded.pid as libc::pid_t {
            libc::killpg(recorded.pid as libc::pid_t, signal);
        }
    }
    held.signal(recorded.pid, signal);
    Ok(true)
}

/// A process held for a signal: by a pidfd where the kernel has them, so
/// that the signal reaches that process or none.
enum Held {
    #[cfg(target_os = "linux")]
    Pidfd(std::os::fd::OwnedFd),
    /// No pidfd (an older kernel, another system): by pid.
    ByPid,
    /// It had ended before it was held.
    Gone,
}

impl Held {
    fn open(pid: u32) -> Held {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: pidfd_open takes a pid and flags and returns a new
            // descriptor or -1; nothing else is touched.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            if fd >= 0 {
                // SAFETY: the kernel just made it; nothing else owns it.
                return Held::Pidfd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
            }
            if io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return Held::Gone;
            }
        }
        let _ = pid;
        Held::ByPid
    }

    fn signal(&self, pid: u32, signal: i32) {
        match self {
            #[cfg(target_os = "linux")]
            // SAFETY: pidfd_send_signal takes a descriptor we own, a signal
            // number and no siginfo.
            Held::Pidfd(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            },
            // SAFETY: kill only sends a signal, to the pid just checked.
            Held::ByPid => unsafe {
                libc::kill(pid as libc::pid_t, signal);
            },
            Held::Gone => {}
        }
    }
}

/// The directory process `pid` works in; `None` when it cannot be read.
pub(crate) fn working_dir_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Every process id in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Makes the program `command` starts die (SIGKILL) when the thread that
/// started it ends: the test process killed while it waits. Linux only;
/// elsewhere nothing. Set after the program's user is set, which would
/// clear it.
pub(crate) fn kill_with_parent(command: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = getpid_raw();
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only async-signal-safe calls (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

fn getpid_raw() -> libc::pid_t {
    // SAFETY: getpid cannot fail and touches no memory.
    unsafe { libc::getpid() }
}

/// Gives a program that runs as another user (a server that refuses root)
/// only the variables it needs to run (`PATH`, the locale, the time zone),
/// not this process's environment: another user can read its own
/// processes' `/proc/<pid>/environ`, and CI jobs keep tokens there. Call
/// before adding the program's own variables.
pub(crate) fn environment_for_another_user(command: &mut std::process::Command) {
    command.env_clear();
    for (key, value) in std::env::vars_os() {
        let keep = key.to_str().is_some_and(|k| {
            matches!(k, "PATH" | "LANG" | "LANGUAGE" | "TZ") || k.starts_with("LC_")
        });
        if keep {
            command.env(key, value);
        }
    }
}

/// The bytes free to this user on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: the path is NUL-terminated; statvfs fills a buffer of its own type.
    check(unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) }).ok()?;
    // SAFETY: statvfs succeeded, so it filled the buffer (zeroed before anyway).
    let stat = unsafe { stat.assume_init() };
    #[expect(
        clippy::unnecessary_cast,
        reason = "the field types differ between C libraries and architectures"
    )]
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// The boot's random id (`/proc/sys/kernel/random/boot_id`), so that pids
/// and start times written before a reboot, or on another machine, are not
/// taken for this one's.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().replace('-', ""))
        .unwrap_or_default()
}

/// The bytes free to this user on the file system at `path` when it is a
/// tmpfs (memory); `None` when it is another kind or cannot be read.
pub(crate) fn tmpfs_free_bytes(path: &Path) -> Option<u64> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the path is NUL-terminated; statfs fills a buffer of its own type.
    check(unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) }).ok()?;
    // SAFETY: statfs succeeded, so it filled the buffer (zeroed before anyway).
    let stat = unsafe { stat.assume_init() };
    #[expect(
        clippy::unnecessary_cast,
        reason = "the field types differ between C libraries and architectures"
    )]
    let (kind, tmpfs, free, block) = (
        stat.f_type as i64,
        libc::TMPFS_MAGIC as i64,
        stat.f_bavail as u64,
        stat.f_bsize as u64,
    );
    (kind == tmpfs).then(|| free.saturating_mul(block))
}

/// Removes the System V shared memory segments the process `creator`
/// names made: what a server killed with SIGKILL leaves, PostgreSQL's
/// interlock segment among them. A segment counts as its only if its
/// creator pid, creator uid and creation time (not before the process
/// started) all fit: a segment an earlier process of that pid left (pids
/// wrap, and another user can make them wrap) is not the server's. Only
/// those nobody has attached, unless `attached_too` (a segment still
/// attached goes when its last process detaches). The ids removed.
pub(crate) fn remove_shared_memory_of(creator: &Identity, attached_too: bool) -> Vec<i32> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    let Some(started) = started_epoch_secs(creator.start) else {
        return Vec::new();
    };
    segments_created_by(&table, creator.pid, creator.uid, started)
        .into_iter()
        .filter(|&(_, attached)| attached_too || attached == 0)
        .map(|(id, _)| id)
        // SAFETY: IPC_RMID takes no buffer; a stale id fails with EINVAL.
        .filter(|&id| unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0)
        .collect()
}

/// When a process that started `ticks` clock ticks after boot started, in
/// whole seconds since the epoch (rounded down).
fn started_epoch_secs(ticks: u64) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / super::clock_ticks_per_second()?)
}

/// The ids and attach counts in `/proc/sysvipc/shm`'s `table` of segments
/// process `pid` of user `uid` created at `started` (seconds since the
/// epoch) or later.
fn segments_created_by(table: &str, pid: u32, uid: u32, started: u64) -> Vec<(i32, u64)> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = |name: &str| header.iter().position(|&h| h == name);
    let (Some(id_at), Some(cpid_at), Some(nattch_at), Some(cuid_at), Some(ctime_at)) = (
        column("shmid"),
        column("cpid"),
        column("nattch"),
        column("cuid"),
        column("ctime"),
    ) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |at: usize| fields.get(at)?.parse::<u64>().ok();
            let id = fields.get(id_at)?.parse().ok()?;
            let ours = number(cpid_at)? == u64::from(pid)
                && number(cuid_at)? == u64::from(uid)
                && number(ctime_at)? >= started;
            ours.then_some((id, number(nattch_at)?))
        })
        .collect()
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Takes an exclusive lock on `file`, waiting up to `limit` for it;
/// released when the file is closed. An error of kind `TimedOut` when the
/// holder kept it longer.
pub(crate) fn lock_exclusive(file: &File, limit: std::time::Duration) -> io::Result<()> {
    let until = std::time::Instant::now() + limit;
    loop {
        // SAFETY: flock on a descriptor the caller owns.
        let taken = check(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) });
        match taken {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= until {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("still held by another process after {limit:?}"),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The last stop signal caught and not yet taken; 0 if none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

/// Catches SIGTERM, SIGINT and SIGHUP for the whole process, so that they
/// wait to be taken by [`take_stop_signal`] instead of killing a keeper
/// before it has cleaned up. A handler rather than a blocked mask: the mask
/// is per thread, and libtest runs the keeper's entry on a thread of its
/// own. Programs the keeper starts get default handlers back at `exec`.
pub(crate) fn catch_stop_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // sigaction reads a valid, zeroed-then-filled struct.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Takes the stop signal caught since the last look, if any.
pub(crate) fn take_stop_signal() -> Option<i32> {
    let signal = STOP_SIGNAL.swap(0, Ordering::SeqCst);
    (signal != 0).then_some(signal)
}

pub(crate) const SIGINT: i32 = libc::SIGINT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let holder = File::create(&path).unwrap();
        lock_exclusive(&holder, std::time::Duration::ZERO).unwrap();
        let waiter = File::open(&path).unwrap();
        let limit = std::time::Duration::from_millis(100);
        let began = std::time::Instant::now();
        let err = lock_exclusive(&waiter, limit).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(began.elapsed() >= limit, "gave up before its limit");
        drop(holder);
        lock_exclusive(&waiter, limit).unwrap();
    }

    #[test]
    fn segments_are_found_by_their_creator_its_user_and_its_time() {
        let table = "       key      shmid perms   size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime\n\
                     \x20   111029     163843   600     56 15159 15171      0   101   104   101   104          0          0 1700000100\n\
                     \x20 10050286      32776   600     56 25409 25413      1   101   104   101   104          0          0 1700000200\n\
                     \x20 10050287      32777   600     56 25409 25413      0  1000  1000  1000  1000          0          0 1700000200\n\
                     \x20 10050288      32778   600     56 25409 25413      0   101   104   101   104          0          0 1699999999\n";
        assert_eq!(
            segments_created_by(table, 25409, 101, 1_700_000_000),
            vec![(32776, 1)]
        );
        assert_eq!(
            segments_created_by(table, 15159, 101, 1_700_000_000),
            vec![(163843, 0)]
        );
        // Another user's segment of the same pid, and one older than the
        // process: a reused pid's.
        assert!(segments_created_by(table, 25409, 1000, 1_700_000_300).is_empty());
        assert!(segments_created_by(table, 15171, 101, 0).is_empty());
        assert!(segments_created_by("", 1, 0, 0).is_empty());
    }

    #[test]
    fn a_segment_of_this_process_is_removed() {
        // SAFETY: a private segment of one page, nothing attached.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "shmget: {}", io::Error::last_os_error());
        let me = identity_of(std::process::id()).unwrap();
        let before_me = Identity {
            start: me.start.saturating_sub(1_000_000),
            ..me.clone()
        };
        assert!(
            remove_shared_memory_of(
                &Identity {
                    uid: me.uid + 1,
                    ..me.clone()
                },
                false
            )
            .is_empty(),
            "another user's"
        );
        assert!(remove_shared_memory_of(&before_me, false).contains(&id));
        let mut stat = MaybeUninit::<libc::shmid_ds>::zeroed();
        // SAFETY: IPC_STAT fills a buffer of its own type.
        let found = unsafe { libc::shmctl(id, libc::IPC_STAT, stat.as_mut_ptr()) };
        assert_eq!(found, -1, "segment {id} is still there");
    }
}
