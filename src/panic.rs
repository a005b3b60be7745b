//! The one panic hook of stampede, installed once per process: it records
//! the message and location of each panic for the thread that panicked, and
//! keeps it off stderr when that thread asked for quiet (a hunt prints its
//! scenario's panic once, in its report). Every other panic goes on to the
//! hook that was there before.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// A panic caught by [`catch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caught {
    pub message: String,
    /// `file:line:column`, when the hook saw it.
    pub location: Option<String>,
}

/// Told of every panic, before any printing: set once by the child side.
static ON_PANIC: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Calls `f` at the start of every panic of this process, from the hook
/// (the first `f` given is kept).
pub(crate) fn on_panic(f: fn()) {
    let _ = ON_PANIC.set(f);
}

thread_local! {
    static LAST: RefCell<Option<Caught>> = const { RefCell::new(None) };
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hook (once per process; later calls do nothing).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(tell) = ON_PANIC.get() {
                tell();
            }
            let caught = Caught {
                message: payload_message(info.payload()),
                location: info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
            };
            // `try_with`: a panic while this thread's locals are being torn
            // down must not panic again in the hook.
            let _ = LAST.try_with(|last| *last.borrow_mut() = Some(caught));
            if !QUIET.try_with(Cell::get).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, catching a panic as its message and location; with `quiet`, the
/// panic is not printed. The payload is never dropped: a payload whose own
/// `Drop` panics would otherwise take the process down after the catch.
pub(crate) fn catch<T>(quiet: bool, f: impl FnOnce() -> T) -> Result<T, Caught> {
    install();
    LAST.with(|last| last.borrow_mut().take());
    // Saved and restored: a quiet scenario may run another one inside.
    let outer = QUIET.with(|q| q.replace(quiet));
    // Unwind safety: callers treat a panic as the end of what `f` touched.
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(outer));
    result.map_err(|payload| {
        let caught = LAST
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| Caught {
                message: payload_message(&*payload),
                location: None,
            });
        std::mem::forget(payload);
        caught
    })
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

    struct PanicsOnDrop;

    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("the payload's own drop");
        }
    }

    #[test]
    fn a_panic_is_caught_with_its_message_and_location() {
        let caught = catch(true, || panic!("boom {}", 7)).unwrap_err();
        assert_eq!(caught.message, "boom 7");
        assert!(caught.location.unwrap().starts_with("src/panic.rs:"));
        assert_eq!(catch(true, || 5), Ok(5));
    }

    #[test]
    fn a_payload_whose_drop_panics_is_still_a_panic_not_a_crash() {
        let caught = catch(true, || std::panic::panic_any(PanicsOnDrop)).unwrap_err();
        assert_eq!(caught.message, "Box<dyn Any>");
    }
}
