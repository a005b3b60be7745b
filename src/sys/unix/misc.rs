//! The clock, process ids, signal names, the executable to re-run.

use std::io;
use std::path::PathBuf;

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

/// The kernel's clock ticks per second (`_SC_CLK_TCK`), the unit of
/// `/proc`'s process times.
pub(crate) fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(per_second).ok().filter(|&t| t > 0)
}

pub(crate) fn getpid() -> u32 {
    std::process::id()
}

pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() as u32 }
}

/// The executable to re-run: the running image itself on Linux, so a binary
/// rebuilt on disk meanwhile cannot sneak in.
pub(crate) fn current_exe() -> io::Result<PathBuf> {
    if cfg!(target_os = "linux") {
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

/// The dynamic loader's path when this process was started through it
/// (`/lib64/ld-linux-x86-64.so.2 ./binary`): the running image is then the
/// loader, and re-running it would not start this program.
pub(crate) fn started_through_loader() -> Option<PathBuf> {
    let image = std::fs::read_link("/proc/self/exe").ok()?;
    let name = image.file_name()?.to_str()?;
    (name.starts_with("ld-linux") || name.starts_with("ld.so") || name.starts_with("ld-musl"))
        .then_some(image)
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
