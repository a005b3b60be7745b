//! The child's side of `stampede::history`: each end of an operation goes
//! to the parent on the call's channel as it happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{Channel, checkpoint};
use crate::protocol::{OpEvent, Report};
use crate::sys;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Reports an operation's invocation; its id, or `None` outside a call
/// (nothing is recorded there).
pub(crate) fn invoke(name: &str, input: Vec<u8>, input_text: String) -> Option<u64> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let event = OpEvent::Invoke {
        id,
        name: name.to_owned(),
        input,
        input_text,
        at_ns: sys::monotonic_ns(),
    };
    send(event).then_some(id)
}

/// Reports how operation `id` ended: `ok` (`Some((output, text))`), `fail`
/// (`Err(error)`), or dropped (`Ok(None)`).
pub(crate) fn end(id: u64, how: Result<Option<(Vec<u8>, String)>, String>) {
    let at_ns = sys::monotonic_ns();
    send(match how {
        Ok(Some((output, output_text))) => OpEvent::Ok {
            id,
            output,
            output_text,
            at_ns,
        },
        Ok(None) => OpEvent::Unknown { id, at_ns },
        Err(error) => OpEvent::Fail { id, error, at_ns },
    });
}

/// A `Load` worker's channel while it runs call `.1`: the worker lends it
/// for the call's length (see `lend`).
static WORKER: Mutex<Option<(Channel, u64)>> = Mutex::new(None);

/// Lends `channel` to the history for call `call` of a worker; the worker
/// takes it back with [`take_back`].
pub(super) fn lend(channel: Channel, call: u64) {
    *lock() = Some((channel, call));
}

/// The channel lent by [`lend`].
pub(super) fn take_back() -> Channel {
    lock().take().expect("the channel was lent").0
}

fn lock() -> MutexGuard<'static, Option<(Channel, u64)>> {
    // Plain fields: a panic while holding the lock leaves them whole.
    WORKER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `event` on the running call's channel (a concurrent call's, or a
/// worker's); `false` outside a call. If the parent is gone, the death
/// signal ends this process: a failed send only means there is nobody left
/// to tell.
fn send(event: OpEvent) -> bool {
    // Moved, not copied: an input may be large.
    let mut event = Some(event);
    checkpoint::with_state(|state| {
        if let Some(event) = event.take() {
            let _ = state.channel.send(&Report::Operation {
                call: state.call,
                event,
            });
        }
    });
    // Taken: it went on a concurrent call's channel.
    let Some(event) = event else {
        return true;
    };
    match &mut *lock() {
        Some((channel, call)) => {
            let _ = channel.send(&Report::Operation { call: *call, event });
            true
        }
        None => false,
    }
}
