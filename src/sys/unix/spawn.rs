//! Starting a child: a new process running `exe`, with a given descriptor
//! map, in its own process group (or its own session, for a child that must
//! outlive its parent's signals), with default signal handling and the
//! descriptor limit the parent had before stampede raised it.
//!
//! Two ways, chosen at run time:
//!
//! - **Linux, `clone` with `CLONE_VM | CLONE_VFORK | CLONE_PIDFD` and no exit
//!   signal.** The way glibc's `posix_spawn` works (no copy of the parent's
//!   page tables), plus two things `posix_spawn` cannot give: a pidfd
//!   obtained atomically with the process, and an exit signal of 0. A child
//!   without an exit signal is a "clone child": `wait()` and `waitpid(-1, …)`
//!   in another thread of the parent do not see it, and an ignored SIGCHLD
//!   does not reap it away, so its exit status is always ours to read (with
//!   `__WALL`).
//! - **`posix_spawn`**, elsewhere, on kernels without `CLONE_PIDFD`, and when
//!   [`force_fallback`] is on (stampede's own CI runs the suite through it).
//!   Its children can be reaped by someone else; the parent side treats that
//!   as a state of its own.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// What to start. Every source descriptor in `fds` must be numbered at or
/// above `close_from` (see [`dup_at_least`](super::dup_at_least)), so that no
/// move can overwrite a source before it is used.
pub(crate) struct Command<'a> {
    pub exe: &'a CStr,
    pub argv: &'a [CString],
    /// The environment: `env_first` (this child's own variable), then `env`.
    pub env_first: &'a CStr,
    pub env: &'a [CString],
    /// `(source in the parent, number in the child)`.
    pub fds: &'a [(RawFd, RawFd)],
    /// Every descriptor from this number up is closed in the child.
    pub close_from: RawFd,
    /// The soft and hard `RLIMIT_NOFILE` the child gets (the parent may have
    /// raised its own for the duration of a call).
    pub nofile: Option<(u64, u64)>,
    /// A new session (`setsid`) instead of a new process group: the child
    /// leads both, and no terminal's or group's signal reaches it.
    pub new_session: bool,
}

/// A started child.
pub(crate) struct Spawned {
    pub pid: u32,
    /// A descriptor that turns readable when the process ends, and through
    /// which it can be signalled without any pid-reuse race.
    pub pidfd: Option<OwnedFd>,
}

/// The switch that forces the portable way even where the Linux one works:
/// `STAMPEDE_SPAWN_FALLBACK=1` in the parent's environment. For stampede's
/// own CI, which runs the suite through both; not a user setting.
const FALLBACK_VAR: &str = "STAMPEDE_SPAWN_FALLBACK";

/// Whether children are started the portable way (`posix_spawn`, exit
/// watched by polling), as on a system without pidfds.
pub(crate) fn fallback_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os(FALLBACK_VAR).is_some_and(|v| v == "1"))
}

/// Starts `command`.
pub(crate) fn spawn(command: &Command<'_>) -> io::Result<Spawned> {
    let argv = pointers(None, command.argv);
    let envp = pointers(Some(command.env_first), command.env);
    #[cfg(target_os = "linux")]
    if !fallback_forced() {
        match linux::clone_spawn(command, &argv, &envp) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => return other,
        }
    }
    posix_spawn(command, &argv, &envp)
}

/// A NULL-terminated array of pointers to `first` and `strings`.
fn pointers(first: Option<&CStr>, strings: &[CString]) -> Vec<*const libc::c_char> {
    let mut out = Vec::with_capacity(strings.len() + 2);
    out.extend(first.map(CStr::as_ptr));
    out.extend(strings.iter().map(|s| s.as_ptr()));
    out.push(std::ptr::null());
    out
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    /// The child's stack until it calls `execve`. It runs only the raw
    /// system calls of [`child_main`].
    const STACK_BYTES: usize = 64 * 1024;

    /// Everything the child needs, prepared before `clone`: between `clone`
    /// and `execve` the child shares the parent's memory and must neither
    /// allocate nor take a lock (another thread may hold malloc's).
    struct Plan<'a> {
        exe: *const libc::c_char,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
        fds: &'a [(RawFd, RawFd)],
        close_from: RawFd,
        nofile: Option<libc::rlimit>,
        new_session: bool,
        /// The errno of the step that failed in the child, 0 if none did.
        error: AtomicI32,
    }

    pub(super) fn clone_spawn(
        command: &Command<'_>,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Result<Spawned> {
        let plan = Plan {
            exe: command.exe.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            fds: command.fds,
            close_from: command.close_from,
            nofile: command.nofile.map(|(soft, hard)| libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            }),
            new_session: command.new_session,
            error: AtomicI32::new(0),
        };
        // u128 keeps the stack's top 16-byte aligned, as the ABI requires.
        let mut stack = vec![0u128; STACK_BYTES / 16];
        let mut pidfd: libc::c_int = -1;
        // The low byte of the flags is the exit signal: 0, see the module docs.
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD;
        // SAFETY: signals are blocked in this thread around `clone` so that
        // no handler of the parent runs in the child while it shares our
        // memory; the child resets every handler before unblocking them.
        // `stack` outlives the child's use of it: with CLONE_VFORK this
        // thread is suspended until the child has called execve or _exit.
        // `plan` and everything it points to live until then as well, and
        // `child_main` only reads them and performs raw system calls.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let top = stack.as_mut_ptr().add(stack.len()).cast::<libc::c_void>();
            let pid = libc::clone(
                child_main,
                top,
                flags,
                std::ptr::from_ref(&plan).cast_mut().cast(),
                &mut pidfd as *mut libc::c_int,
            );
            let err = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(err);
            }
            pid
        };
        drop(stack);
        // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor for this
        // process alone (a kernel before 5.2 ignores the flag and leaves -1).
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        let failed = plan.error.load(Ordering::Acquire);
        if failed != 0 {
            // The child ran `_exit(127)`; reap it before reporting.
            super::super::process::reap_blocking(pid as u32);
            return Err(io::Error::from_raw_os_error(failed));
        }
        Ok(Spawned {
            pid: pid as u32,
            pidfd,
        })
    }

    /// The child between `clone` and `execve`. Raw system calls only.
    extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the parent's `Plan`, alive and unchanged while the
        // parent is suspended (CLONE_VFORK). Each call below is a system call
        // wrapper that is async-signal-safe and allocates nothing.
        unsafe {
            let plan = &*arg.cast::<Plan<'_>>();
            let fail = |plan: &Plan<'_>| -> libc::c_int {
                plan.error
                    .store(*libc::__errno_location(), Ordering::Release);
                libc::_exit(127)
            };
            // Handlers of the parent must not run here or after exec, and
            // SIGPIPE and SIGCHLD are default in every child, even where the
            // parent ignores them (an ignored SIGCHLD would make the child's
            // own children vanish from its waits). Other ignored signals
            // stay ignored, as exec keeps them (`nohup`).
            for signal in 1..=64 {
                if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                    continue;
                }
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                let keep_ignored = old.sa_sigaction == libc::SIG_IGN
                    && signal != libc::SIGPIPE
                    && signal != libc::SIGCHLD;
                if old.sa_sigaction == libc::SIG_DFL || keep_ignored {
                    continue;
                }
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
            let grouped = if plan.new_session {
                libc::setsid()
            } else {
                libc::setpgid(0, 0)
            };
            if grouped < 0 {
                return fail(plan);
            }
            for &(source, target) in plan.fds {
                if libc::dup2(source, target) < 0 {
                    return fail(plan);
                }
            }
            if libc::syscall(
                libc::SYS_close_range,
                plan.close_from as libc::c_uint,
                libc::c_uint::MAX,
                0,
            ) != 0
            {
                let mut limit: libc::rlimit = std::mem::zeroed();
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                let top = (limit.rlim_cur as u64).min(1 << 20) as RawFd;
                for fd in plan.close_from..top {
                    libc::close(fd);
                }
            }
            if let Some(limit) = &plan.nofile {
                libc::setrlimit(libc::RLIMIT_NOFILE, limit);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::execve(plan.exe, plan.argv, plan.envp);
            fail(plan)
        }
    }
}

/// The portable way: `posix_spawn`, with the same descriptor map, group and
/// signal settings. `close_from` relies on glibc's
/// `posix_spawn_file_actions_addclosefrom_np` where it exists; elsewhere the
/// child closes strays at entry ([`close_strays`](super::close_strays)).
fn posix_spawn(
    command: &Command<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Result<Spawned> {
    let spawn_err = |ret: libc::c_int| {
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(ret))
        }
    };
    // SAFETY: the attribute and file-action objects are initialised before
    // use and destroyed on every path; every pointer handed to posix_spawn
    // points into a NULL-terminated array of live C strings.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        spawn_err(libc::posix_spawn_file_actions_init(&mut fa))?;
        if let Err(e) = spawn_err(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let result = (|| -> io::Result<u32> {
            for &(source, target) in command.fds {
                spawn_err(libc::posix_spawn_file_actions_adddup2(
                    &mut fa, source, target,
                ))?;
            }
            if let Some(add_close_from) = add_close_from() {
                spawn_err(add_close_from(&mut fa, command.close_from))?;
            }
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            spawn_err(libc::posix_spawnattr_setsigmask(&mut attr, &mask))?;
            let mut default: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut default);
            libc::sigaddset(&mut default, libc::SIGPIPE);
            libc::sigaddset(&mut default, libc::SIGCHLD);
            spawn_err(libc::posix_spawnattr_setsigdefault(&mut attr, &default))?;
            spawn_err(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
            // A new session makes the child the leader of a new group too.
            let grouping = if command.new_session {
                setsid_flag()
            } else {
                libc::POSIX_SPAWN_SETPGROUP as libc::c_int
            };
            let flags = grouping
                | libc::POSIX_SPAWN_SETSIGMASK as libc::c_int
                | libc::POSIX_SPAWN_SETSIGDEF as libc::c_int;
            spawn_err(libc::posix_spawnattr_setflags(
                &mut attr,
                flags as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            spawn_err(libc::posix_spawn(
                &mut pid,
                command.exe.as_ptr(),
                &fa,
                &attr,
                argv.as_ptr().cast(),
                envp.as_ptr().cast(),
            ))?;
            Ok(pid as u32)
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        // The child's descriptor limit cannot be set through posix_spawn:
        // it inherits the parent's for the duration of the call.
        let _ = command.nofile;
        Ok(Spawned {
            pid: result?,
            pidfd: None,
        })
    }
}

/// `POSIX_SPAWN_SETSID` (glibc 2.26+, the BSDs and macOS).
fn setsid_flag() -> libc::c_int {
    libc::POSIX_SPAWN_SETSID as libc::c_int
}

/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34+), looked up at
/// run time: linking it directly would stop binaries from even starting on
/// an older C library.
type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

pub(super) fn add_close_from() -> Option<AddCloseFrom> {
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
