//! The doors into a child, and everything stampede knows about libtest.
//!
//! A child is the parent's own executable, started fresh. It reaches
//! stampede's code through one of two doors, both after every static
//! registration and with Rust's runtime fully set up:
//!
//! - in a test binary, the dispatcher test that `stampede::entry!()` defines,
//!   selected with the arguments in [`LIBTEST_ARGS`];
//! - in any other binary, `stampede::init()`, the first line of `main`.
//!
//! The parent asks this module how to start a child ([`entry_args`]); the
//! child side marks `init()` as called ([`mark_init`]).

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Records that `stampede::init()` ran in this (parent) process.
pub(crate) fn mark_init() {
    INIT_CALLED.store(true, Ordering::Relaxed);
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
}
