//! Everything that runs in the re-executed process, and everything stampede
//! knows about libtest.
//!
//! A child is the parent's own executable, started fresh. It reaches
//! stampede's code through one of two doors, both after every static
//! registration and with Rust's runtime fully set up:
//!
//! - in a test binary, the dispatcher test that `stampede::entry!()` defines,
//!   selected with the arguments in [`LIBTEST_ARGS`];
//! - in any other binary, `stampede::init()`, the first line of `main`.
//!
//! Environment variables (set by the parent on each child, read here):
//!
//! - `STAMPEDE_CHILD` = `1:<parent pid>:<child index>`: "you are a child".
//!   Ignored unless the parent pid matches this process's parent, so a
//!   program that the user's code starts from a child (and that inherits
//!   the environment) does not mistake itself for one.
//!
//! Descriptors: 3 is the channel (requests in, reports out), 4 the start
//! barrier, 5 the checkpoint gate.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::registry;
use crate::sys;
use crate::wire::{self, ChildResult, Report, Request};

/// Name of the variable that marks a child.
pub(crate) const CHILD_VAR: &str = "STAMPEDE_CHILD";

/// Written to stdout and stderr when a child enters, so that the parent can
/// drop what came before it (libtest's "running 1 test" line).
pub(crate) const MARKER: &[u8] = b"\x1estampede: child entered\x1e\n";

/// The dispatcher test's name inside its module.
pub(crate) const ENTRY_TEST: &str = "__stampede_entry";

/// The arguments a test binary's child is started with, after the test name:
const LIBTEST_ARGS: &[&str] = &[
    // run only the dispatcher, not every test whose name contains it;
    "--exact",
    // let the user's prints reach the real stdout/stderr, which stampede captures;
    "--nocapture",
    // one test, no thread pool;
    "--test-threads=1",
    // no per-test lines (the child exits before libtest's summary anyway);
    "--quiet",
    // no escape codes in captured output.
    "--color=never",
];

static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// The test binary's dispatcher. Used by generated code, not public API.
#[doc(hidden)]
pub struct EntryPoint {
    module_path: &'static str,
}

impl EntryPoint {
    pub const fn new(module_path: &'static str) -> Self {
        Self { module_path }
    }

    /// libtest's name for the dispatcher: the module path without the crate
    /// name, then the test's name.
    fn test_name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_, module)) => format!("{module}::{ENTRY_TEST}"),
            None => ENTRY_TEST.to_owned(),
        }
    }
}

inventory::collect!(EntryPoint);

/// How the parent makes a child enter: the arguments to start it with.
/// `None` when this binary has no door.
pub(crate) fn entry_args() -> Option<Vec<OsString>> {
    if let Some(entry) = inventory::iter::<EntryPoint>().next() {
        let mut args = vec![OsString::from(entry.test_name())];
        args.extend(LIBTEST_ARGS.iter().map(OsString::from));
        return Some(args);
    }
    INIT_CALLED.load(Ordering::Relaxed).then(Vec::new)
}

/// The child's side of `init()`: in a child, run the function and exit;
/// otherwise remember that this binary has a door, and return.
pub(crate) fn init() {
    if let Some(context) = detect() {
        run(context);
    }
    INIT_CALLED.store(true, Ordering::Relaxed);
}

/// The body of the dispatcher test. Used by generated code, not public API.
#[doc(hidden)]
pub fn enter_from_test() {
    if let Some(context) = detect() {
        run(context);
    }
}

/// Whether this process is a stampede child (of its actual parent).
pub(crate) fn is_child() -> bool {
    detect().is_some()
}

struct Context {
    parent: u32,
    index: u64,
}

fn detect() -> Option<Context> {
    let value = std::env::var(CHILD_VAR).ok()?;
    let mut parts = value.splitn(3, ':');
    let (Some("1"), Some(parent), Some(index)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let parent: u32 = parent.parse().ok()?;
    (parent == sys::getppid()).then_some(Context {
        parent,
        index: index.parse().ok()?,
    })
}

/// The value of [`CHILD_VAR`] for child `index` of this process.
pub(crate) fn child_var(index: usize) -> String {
    format!("1:{}:{index}", sys::getpid())
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

fn run(context: Context) -> ! {
    sys::child_die_with(context.parent);
    sys::child_close_strays();
    let code = match serve(&context) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("stampede child: {err}");
            101
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

fn serve(context: &Context) -> std::io::Result<()> {
    let [mut channel, barrier, gate] = sys::child_descriptors()?;
    std::io::stdout().write_all(MARKER)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(MARKER)?;

    let request: Request = wire::read_frame(&mut channel)?;
    let prepared = if request.protocol != wire::PROTOCOL {
        Err(format!(
            "protocol {} requested, this child speaks {} (parent and child are different builds?)",
            request.protocol,
            wire::PROTOCOL
        ))
    } else {
        match registry::find(&request.function) {
            Some(registration) => registration.prepare(&request.args),
            None => Err(format!(
                "no function `{}` is registered in this binary",
                request.function
            )),
        }
    };
    drop(request.args);
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => {
            let now = sys::monotonic_ns();
            let done = Report::Done {
                started_ns: now,
                checkpoint_ns: None,
                finished_ns: now,
                result: ChildResult::Failed(reason),
            };
            return wire::write_frame(&mut channel, &done);
        }
    };
    install_panic_hook();
    wire::write_frame(
        &mut channel,
        &Report::Ready {
            at_ns: sys::monotonic_ns(),
        },
    )?;
    if request.barrier {
        wait_for_release(barrier)?;
    }
    let delay = jitter_ns(request.seed, context.index, request.jitter_max_ns);
    sleep_ns(delay);

    *lock_io() = Some(ChildIo {
        channel,
        gate: Some(gate),
        jitter_ns: delay,
    });
    let started_ns = sys::monotonic_ns();
    let outcome = panic::catch_unwind(AssertUnwindSafe(prepared));
    let finished_ns = sys::monotonic_ns();
    let mut channel = lock_io().take().expect("the channel is put back").channel;
    let checkpoint_ns = match CHECKPOINT_PASSED_NS.load(Ordering::Relaxed) {
        0 => None,
        ns => Some(ns),
    };
    let result = match outcome {
        Ok(Ok(bytes)) => ChildResult::Returned(bytes),
        Ok(Err(reason)) => ChildResult::Failed(reason),
        Err(payload) => {
            let (message, location) = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| (payload_message(&*payload), None));
            ChildResult::Panicked { message, location }
        }
    };
    let _ = std::io::stdout().flush();
    // Children released together outnumber the cores: let those still
    // waiting for a CPU enter the function before this one's report wakes
    // the parent and its exit tears the process down (measured at n = 64 on
    // 2 cores: start spread 4-7 ms without, about 1 ms with).
    std::thread::yield_now();
    wire::write_frame(
        &mut channel,
        &Report::Done {
            started_ns,
            checkpoint_ns,
            finished_ns,
            result,
        },
    )
}

/// Blocks until the parent closes the gate's write end, which gives end of
/// file to every child at once; then closes this end.
fn wait_for_release(mut gate: File) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    while gate.read(&mut byte)? != 0 {}
    Ok(())
}

fn sleep_ns(ns: u64) {
    if ns > 0 {
        std::thread::sleep(std::time::Duration::from_nanos(ns));
    }
}

/// The child's channel and checkpoint gate while the function runs, so
/// that `checkpoint()` can report on the one channel; the gate is taken by
/// the first call.
struct ChildIo {
    channel: File,
    gate: Option<File>,
    jitter_ns: u64,
}

static CHILD_IO: Mutex<Option<ChildIo>> = Mutex::new(None);
static CHECKPOINT_PASSED_NS: AtomicU64 = AtomicU64::new(0);

fn lock_io() -> std::sync::MutexGuard<'static, Option<ChildIo>> {
    // A panic while holding the lock leaves the data intact: plain fields.
    CHILD_IO.lock().unwrap_or_else(|e| e.into_inner())
}

/// The child's side of `stampede::checkpoint()`.
pub(crate) fn checkpoint() {
    let (gate, jitter_ns) = {
        let mut io = lock_io();
        let Some(ChildIo {
            channel,
            gate,
            jitter_ns,
        }) = io.as_mut()
        else {
            return;
        };
        let Some(gate) = gate.take() else { return };
        let report = Report::Checkpoint {
            at_ns: sys::monotonic_ns(),
        };
        // If the parent is gone, the parent-death signal ends this process;
        // an error here only means there is nobody left to wait for.
        if wire::write_frame(channel, &report).is_err() {
            return;
        }
        (gate, *jitter_ns)
    };
    let _ = wait_for_release(gate);
    sleep_ns(jitter_ns);
    CHECKPOINT_PASSED_NS.store(sys::monotonic_ns(), Ordering::Relaxed);
}

/// The delay of child `index` after the barrier: uniform in
/// `0..=max_ns`, a pure function of the seed and the index.
pub(crate) fn jitter_ns(seed: u64, index: u64, max_ns: u64) -> u64 {
    if max_ns == 0 {
        return 0;
    }
    let z = crate::seed::mix64(seed ^ index.wrapping_add(1).wrapping_mul(crate::seed::GOLDEN));
    z % (max_ns + 1)
}

/// Records each panic's message and location for the thread that panicked,
/// then lets the previous hook print it as usual.
fn install_panic_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let message = payload_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        LAST_PANIC.with(|last| *last.borrow_mut() = Some((message, location)));
        previous(info);
    }));
}

/// The text of a panic payload: a `&str` or `String` message, else a placeholder.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatcher_names_match_libtest() {
        assert_eq!(EntryPoint::new("my_test").test_name(), "__stampede_entry");
        assert_eq!(
            EntryPoint::new("mylib::tests").test_name(),
            "tests::__stampede_entry"
        );
        assert_eq!(
            EntryPoint::new("mylib::a::b").test_name(),
            "a::b::__stampede_entry"
        );
    }

    #[test]
    fn jitter_is_bounded_and_depends_on_seed_and_index() {
        let max = 1_000;
        let delays: Vec<u64> = (0..64).map(|i| jitter_ns(7, i, max)).collect();
        assert!(delays.iter().all(|d| *d <= max));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "not constant: {delays:?}"
        );
        assert_eq!(
            delays,
            (0..64).map(|i| jitter_ns(7, i, max)).collect::<Vec<_>>()
        );
        assert_ne!(
            delays,
            (0..64).map(|i| jitter_ns(8, i, max)).collect::<Vec<_>>()
        );
        assert_eq!(jitter_ns(7, 3, 0), 0);
    }
}
