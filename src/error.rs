//! What went wrong before or around the children (as opposed to what a
//! child did, which is an [`Outcome`](crate::Outcome)).

use std::fmt;
use std::io;

/// Why a call could not run its children.
///
/// `Debug` prints the same sentence as `Display`, so that `.unwrap()` in a
/// test says what happened and what to do.
///
/// ```no_run
/// let not_registered = stampede::call_concurrently(2, |x: u32| x, 1).unwrap_err();
/// assert!(matches!(not_registered, stampede::Error::NotRegistered { .. }));
/// println!("{not_registered}"); // says to add #[stampede::function]
/// ```
#[non_exhaustive]
pub enum Error {
    /// The function is not registered: a closure, a function pointer, or a
    /// function without `#[stampede::function]`. Nothing was spawned.
    NotRegistered {
        /// The name the function goes by (`type_name` of the value passed).
        name: &'static str,
    },
    /// This binary has no way for a child to enter stampede: neither
    /// `stampede::entry!();` (test crates) nor `stampede::init()` (binaries).
    /// Nothing was spawned.
    MissingEntry,
    /// The arguments could not be encoded. Nothing was spawned.
    Encode {
        /// The function whose arguments failed.
        function: &'static str,
        /// The codec's message.
        message: String,
    },
    /// An option is out of range (e.g. a concurrency limit of 0). Nothing was spawned.
    InvalidOptions(String),
    /// A child could not be started. Children already started were killed
    /// and reaped.
    Spawn {
        /// Index of the child that could not start.
        child: usize,
        /// Which limit was hit, when it was a limit, in words.
        limit: Option<String>,
        /// The OS error.
        source: io::Error,
    },
    /// An OS call failed while running the children (creating a pipe,
    /// polling). Children already started were killed and reaped.
    Io {
        /// What stampede was doing.
        context: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A file operation failed on this path (creating a service's
    /// directory, copying a data directory, opening a lock).
    Path {
        /// What stampede was doing.
        context: &'static str,
        /// The path it was doing it to.
        path: std::path::PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A directory stampede would keep its services in (or their cache) is
    /// not provably its own: a symbolic link, another user's, or writable
    /// by others. Another local user could have planted it to take over
    /// what stampede keeps there, so nothing was used or started.
    UnsafeDirectory {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong with it, with its owner and mode.
        problem: String,
    },
    /// A replayed schedule ([`Options::replay`](crate::Options::replay))
    /// met another step than it recorded: the program differs from the
    /// recording, or has nondeterminism outside its steps. The children
    /// were killed.
    ScheduleDiverged {
        /// The passage (from 0) where it went another way.
        position: usize,
        /// The child the recording let go there.
        child: usize,
        /// The step the recording had that child at: `!` where it took the
        /// child as blocked, short of its next step; empty where the
        /// recording had ended and the child was still held; `…` where the
        /// recording had the child reach its next step before this passage
        /// and the replay found it blocked short of it.
        expected: String,
        /// The step the child was at instead; `None` when it was at none
        /// (it had ended, or was still running).
        seen: Option<String>,
    },
    /// [`Options::on_checkpoint`](crate::Options::on_checkpoint) was set,
    /// but no child reached [`checkpoint()`](crate::checkpoint), so the
    /// trigger never ran: a fan-out test would pass without its event ever
    /// being sent. The children ran to their end.
    TriggerNeverRan {
        /// What each child did (the outcomes' report).
        report: String,
    },
    /// The children planned at once do not fit a limit of this system (open
    /// descriptors, processes, the cgroup's pids); nothing was started. The
    /// message names the limit and how to lift it.
    Limit(String),
    /// Workers of a [`Load`](crate::Load) kept dying (or hanging) before
    /// their first call, so the run was given up; the last one's output
    /// says why.
    WorkerStart {
        /// The worker's slot.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// What happened.
        reason: String,
        /// Its stdout and stderr, as a report shows them.
        output: String,
    },
    /// A service's programs were not found (for PostgreSQL: `initdb`,
    /// `postgres`, `psql`). Nothing was started. The message names the
    /// package to install and the variable that points at them.
    ServiceNotFound {
        /// The service, e.g. `postgres`.
        service: String,
        /// Where stampede looked and what to do.
        message: String,
    },
    /// A service's server could not be started: it exited during start or
    /// was not ready in time. Its files were removed and nothing is left
    /// running.
    ServiceStart {
        /// The service, e.g. `postgres`.
        service: String,
        /// What happened.
        reason: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// A service's server ended between uses (it crashed, or something
    /// killed it or its keeper). Its files were removed.
    ServiceDied {
        /// The service, e.g. `postgres`.
        service: String,
        /// What is known of its end.
        reason: String,
        /// The last lines of the server's log, when the keeper could send them.
        log_tail: String,
    },
    /// A server named by an environment variable (`STAMPEDE_POSTGRES_URL`)
    /// does not answer. Nothing was started in its place.
    ServiceUnreachable {
        /// The variable that named it.
        variable: &'static str,
        /// Its value.
        url: String,
        /// The client's message.
        message: String,
    },
    /// A variable meant to name a server to reuse (`STAMPEDE_REDIS_URL`)
    /// holds something that is not a URL of that service. Nothing was
    /// started in its place.
    ServiceUrl {
        /// The variable.
        variable: &'static str,
        /// Its value.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A command on a running service failed (creating, resetting or
    /// dropping a test's database).
    ServiceCommand {
        /// The service, e.g. `postgres`.
        service: String,
        /// What stampede was doing.
        action: String,
        /// The client's message.
        message: String,
    },
}

/// Whether a type's name is a function pointer's (`fn(u32) -> bool`,
/// `unsafe extern "C" fn()`), as `std::any::type_name` writes it.
fn is_fn_pointer(name: &str) -> bool {
    let rest = name.trim_start_matches("unsafe ");
    let rest = match rest.strip_prefix("extern ") {
        Some(abi) => abi.split_once(' ').map_or("", |(_, r)| r),
        None => rest,
    };
    rest.starts_with("fn(")
}

/// The service a reuse variable names: `STAMPEDE_REDIS_URL` is `redis`.
fn service_of(variable: &str) -> String {
    variable
        .trim_start_matches("STAMPEDE_")
        .trim_end_matches("_URL")
        .to_ascii_lowercase()
}

/// `text`, indented, after a heading line; empty text says so.
fn with_log(f: &mut fmt::Formatter<'_>, log_tail: &str) -> fmt::Result {
    if log_tail.trim().is_empty() {
        return write!(f, " (its log was empty)");
    }
    write!(f, "; the end of its log:")?;
    for line in log_tail.lines() {
        write!(f, "\n    {line}")?;
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRegistered { name } if name.contains("{{closure}}") => write!(
                f,
                "`{name}` is a closure, and a child process cannot find a closure by name; \
                 move its body into a plain `fn` marked `#[stampede::function]` and pass that"
            ),
            Error::NotRegistered { name } if is_fn_pointer(name) => write!(
                f,
                "`{name}` is a function pointer: a child finds a function by the name of its \
                 item, and a pointer has none, even one made from a `#[stampede::function]`; \
                 pass the function itself (`claim`, not `claim as {name}` or a variable of \
                 that type), or pick among registered functions with a `match` that calls each \
                 by name"
            ),
            Error::NotRegistered { name } => write!(
                f,
                "`{name}` is not registered with stampede; add `#[stampede::function]` to the \
                 function (function pointers and closures cannot be called in a child)"
            ),
            Error::MissingEntry => write!(
                f,
                "children of this binary cannot enter stampede; add `stampede::entry!();` at \
                 the root of this test crate (or in its `#[cfg(test)]` module), or call \
                 `stampede::init()` as the first line of `main` in a binary or example"
            ),
            Error::Encode { function, message } => {
                write!(
                    f,
                    "could not encode the arguments of `{function}`: {message}"
                )
            }
            Error::InvalidOptions(message) => write!(f, "invalid options: {message}"),
            Error::Spawn {
                child,
                limit: Some(limit),
                source,
            } => write!(
                f,
                "could not start child {child}: {limit} ({source}); the children already \
                 started were killed"
            ),
            Error::Spawn {
                child,
                limit: None,
                source,
            } => write!(
                f,
                "could not start child {child}: {source}; the children already started were killed"
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Path {
                context,
                path,
                source,
            } if source.kind() == io::ErrorKind::StorageFull => write!(
                f,
                "{context}: no space left on device in {}; free some room there, or set \
                 TMPDIR to a file system with room",
                path.display()
            ),
            Error::Path {
                context,
                path,
                source,
            } => write!(f, "{context} ({}): {source}", path.display()),
            Error::UnsafeDirectory { path, problem } => write!(
                f,
                "stampede will not use {}: {problem}; another local user could have made it \
                 to take over what stampede keeps there. Remove it if it is yours (`rm -rf \
                 {}`), or set TMPDIR to a directory of your own",
                path.display(),
                path.display()
            ),
            Error::Limit(message) => write!(f, "{message}"),
            Error::TriggerNeverRan { report } => write!(
                f,
                "on_checkpoint was set, but no child reached stampede::checkpoint(), so the \
                 trigger never ran; call stampede::checkpoint() in the function where the \
                 children should wait for it (a child that ends before it is not waited for). \
                 What the children did:\n{report}"
            ),
            Error::ScheduleDiverged {
                position,
                child,
                expected,
                seen,
            } => {
                let seen = match seen {
                    Some(step) => format!("it was at step `{step}`"),
                    None => "it was at no step (it had ended, or never got there)".to_owned(),
                };
                let recorded = match expected.as_str() {
                    "" => format!(
                        "the recording had ended, but child {child} was still held ({seen})"
                    ),
                    "…" => format!(
                        "the recording had child {child} reach its next step before this \
                         passage, but it was blocked short of it (on a lock a held child keeps?)"
                    ),
                    "!" => format!(
                        "the recording took child {child} as blocked there, short of its next \
                         step, but {seen}"
                    ),
                    step => format!(
                        "the recording let child {child} go on from step `{step}`, but {seen}"
                    ),
                };
                write!(
                    f,
                    "the replay went another way at passage {position}: {recorded}; the program \
                     differs from the recording, or has nondeterminism outside the steps"
                )
            }
            Error::WorkerStart {
                worker,
                pid,
                reason,
                output,
            } => {
                write!(
                    f,
                    "worker {worker} (pid {pid}) {reason}; the run was given up (check that the \
                     function's binary starts: its output follows)"
                )?;
                if !output.is_empty() {
                    write!(f, "\n{}", output.trim_end())?;
                }
                Ok(())
            }
            Error::ServiceNotFound { service, message } => {
                write!(f, "{service}: {message}")
            }
            Error::ServiceStart {
                service,
                reason,
                log_tail,
            } => {
                write!(
                    f,
                    "the {service} service could not be started: {reason}; its files were \
                     removed"
                )?;
                with_log(f, log_tail)
            }
            Error::ServiceDied {
                service,
                reason,
                log_tail,
            } => {
                write!(
                    f,
                    "the service died: {service}'s server is gone ({reason}); start a new \
                     fixture"
                )?;
                with_log(f, log_tail)
            }
            Error::ServiceUnreachable {
                variable,
                url,
                message,
            } => write!(
                f,
                "{variable} is set to `{url}`, but nothing answers there ({message}); start \
                 that server (`eval \"$(stampede-services up {})\"`) or unset {variable} \
                 to start a private one",
                service_of(variable)
            ),
            Error::ServiceUrl {
                variable,
                url,
                message,
            } => write!(
                f,
                "{variable} is set to `{url}`, which is not a {} URL stampede can use \
                 ({message}); set it to a running server's URL (`eval \"$(stampede-services \
                 up {})\"` prints one) or unset {variable} to start a private one",
                service_of(variable),
                service_of(variable)
            ),
            Error::ServiceCommand {
                service,
                action,
                message,
            } => write!(f, "{service}: {action} failed: {message}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } | Error::Io { source, .. } | Error::Path { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

/// Shorthand for results of stampede's calls.
///
/// ```no_run
/// #[stampede::function]
/// fn ping() -> bool { true }
///
/// /// Whether every one of `n` concurrent pings answered.
/// fn all_answer(n: usize) -> stampede::Result<bool> {
///     Ok(stampede::call_concurrently(n, ping, ())?.values().all(|up| *up))
/// }
/// # let _ = all_answer(4);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_pointer_types_are_told_apart_from_items_and_closures() {
        assert!(is_fn_pointer("fn(u8) -> u8"));
        assert!(is_fn_pointer("fn()"));
        assert!(is_fn_pointer("unsafe fn(i32)"));
        assert!(is_fn_pointer("unsafe extern \"C\" fn(i32) -> i32"));
        assert!(!is_fn_pointer("errors::not_marked"));
        assert!(!is_fn_pointer("errors::fn_like::{{closure}}"));
        assert!(!is_fn_pointer("my::fn(x)"));
    }

    #[test]
    fn a_reuse_variable_names_its_service() {
        assert_eq!(service_of("STAMPEDE_REDIS_URL"), "redis");
        assert_eq!(service_of("STAMPEDE_POSTGRES_URL"), "postgres");
    }
}
