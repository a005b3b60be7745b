//! `stampede::checkpoint()` and `stampede::arrive()`: rounds inside the
//! function. Round `r` (from 1) is the gate's `r + 1`-th release; the first
//! is the start barrier.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use super::Channel;
use super::call::{sleep_ns, wait};
use crate::protocol::{Order, Report, StepKeys};
use crate::sys;

/// The running call's channel and gate, so that checkpoints can report on
/// the one channel while the function runs.
pub(super) struct CallState {
    pub channel: Channel,
    pub gate: File,
    pub call: u64,
    pub barrier: bool,
    pub jitter_ns: u64,
    /// Checkpoint rounds reached so far.
    pub round: u32,
    /// When the function went on from each round reached, in order.
    pub passed_ns: Vec<u64>,
    /// A scheduled run: each step waits for the parent's word.
    pub steps: bool,
}

static STATE: Mutex<Option<CallState>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<CallState>> {
    // A panic while holding the lock leaves the data intact: plain fields.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn begin(state: CallState) {
    *lock() = Some(state);
}

/// Ends the call: its channel back, and when it went on from each round.
pub(super) fn end() -> (Channel, Vec<u64>) {
    let state = lock().take().expect("a call is running");
    (state.channel, state.passed_ns)
}

/// Reports the next round; `Some(gate, round, jitter)` when the caller
/// must wait at it. A checkpoint whose report cannot go out panics: the
/// parent would never count it as arrived, and passing unreleased would
/// break the one promise of a checkpoint.
fn report(waits: bool) -> Option<(RawFd, u32, u64)> {
    let mut guard = lock();
    let state = guard.as_mut()?;
    state.round += 1;
    let report = Report::Checkpoint {
        call: state.call,
        round: state.round,
        at_ns: sys::monotonic_ns(),
        waits,
    };
    let sent = state.channel.send(&report);
    if !waits || !state.barrier {
        state.passed_ns.push(sys::monotonic_ns());
        return None;
    }
    if let Err(e) = sent {
        drop(guard);
        // If the parent is gone, its death signal ends this process first.
        panic!(
            "stampede::checkpoint(): could not tell the parent (descriptor {}): {e}; did the \
             code under test close it?",
            crate::protocol::CHANNEL_FD
        );
    }
    // The gate stays open in the call's state for the call's length: its
    // number is enough to wait on, and needs no new descriptor.
    Some((state.gate.as_raw_fd(), state.round, state.jitter_ns))
}

/// The child's side of `stampede::step(name)`: in a scheduled run, reports
/// the step and waits for the parent's `Go`; anywhere else, nothing.
#[track_caller]
pub(crate) fn step(name: &str) {
    step_keyed(name, || StepKeys::Anything);
}

/// The child's side of `stampede::step_with`: `keys` is asked only in a
/// scheduled run.
#[track_caller]
pub(crate) fn step_keyed(name: &str, keys: impl FnOnce() -> StepKeys) {
    let mut guard = lock();
    let Some(state) = guard.as_mut().filter(|s| s.steps) else {
        return;
    };
    if let Err(problem) = check_step_name(name) {
        drop(guard);
        panic!("stampede::step({name:?}): {problem}");
    }
    wait_for_go(state, name, keys());
}

/// The child's side of `stampede::step_with`.
#[track_caller]
pub(crate) fn step_with<K: std::fmt::Display>(name: &str, keys: impl IntoIterator<Item = K>) {
    step_keyed(name, || {
        StepKeys::Only(keys.into_iter().map(|k| k.to_string()).collect())
    });
}

/// The child's side of `stampede::postgres_backend`: in a scheduled run,
/// tells the parent; anywhere else, nothing. A report that cannot go out
/// only leaves the parent to its generic wait.
pub(crate) fn postgres_backend(url: &str, pid: i32) {
    let mut guard = lock();
    let Some(state) = guard.as_mut().filter(|s| s.steps) else {
        return;
    };
    let report = Report::Backend {
        call: state.call,
        url: url.to_owned(),
        pid,
    };
    let _ = state.channel.send(&report);
}

/// In a scheduled run, tells the parent that a thread of this child began
/// to panic: the unwinding after the hook (a backtrace written, values
/// dropped) is no block. Never waits: a thread that panics while it holds
/// the call's state (it cannot, in this module) tells nothing.
pub(crate) fn panicking() {
    let mut guard = match STATE.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    let Some(state) = guard.as_mut().filter(|s| s.steps) else {
        return;
    };
    let call = state.call;
    let _ = state.channel.send(&Report::Panicking { call });
}

/// Whether `name` can stand in a schedule's text (`<child>:<name>`).
pub(super) fn check_step_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().any(char::is_whitespace) || name.starts_with('!') {
        Err(
            "a step's name is not empty, has no spaces and does not start with `!` (it is \
             written in the schedule's text, where `!` marks a blocked child)",
        )
    } else {
        Ok(())
    }
}

/// Reports step `name` and waits for the parent's word to go on. If the
/// parent is gone, the death signal ends this process; an error here only
/// means there is nobody left to wait for.
pub(super) fn wait_for_go(state: &mut CallState, name: &str, keys: StepKeys) {
    let report = Report::Step {
        call: state.call,
        name: name.to_owned(),
        keys,
        at_ns: sys::monotonic_ns(),
    };
    if state.channel.send(&report).is_err() {
        return;
    }
    match state.channel.receive::<Order>() {
        Ok(Order::Go) => {}
        // The parent is gone, or sent something else: nothing can be
        // scheduled any more; the process ends with its group.
        _ => sys::die_with_group(),
    }
}

/// Runs `f` with the running call's state, if there is one.
pub(super) fn with_state<T>(f: impl FnOnce(&mut CallState) -> T) -> Option<T> {
    lock().as_mut().map(f)
}

/// The child's side of `stampede::checkpoint()`.
pub(crate) fn checkpoint() {
    let Some((gate, round, jitter_ns)) = report(true) else {
        return;
    };
    if let Err(e) = wait(gate, round + 1) {
        // Never pass a checkpoint that was not released: the outcome says
        // why instead.
        panic!("stampede::checkpoint(): could not wait at the gate: {e}");
    }
    sleep_ns(jitter_ns);
    let passed = sys::monotonic_ns();
    if let Some(state) = lock().as_mut() {
        state.passed_ns.push(passed);
    }
}

/// The child's side of `stampede::arrive()`.
pub(crate) fn arrive() {
    report(false);
}
