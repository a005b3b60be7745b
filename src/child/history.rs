//! The child's side of `stampede::history`: each end of an operation goes
//! to the parent on the call's channel as it happens.

use std::sync::atomic::{AtomicU64, Ordering};

use super::checkpoint;
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

/// Sends `event` on the running call's channel; `false` outside a call. If
/// the parent is gone, the death signal ends this process: a failed send
/// only means there is nobody left to tell.
fn send(event: OpEvent) -> bool {
    checkpoint::with_state(|state| {
        let _ = state.channel.send(&Report::Operation {
            call: state.call,
            event,
        });
    })
    .is_some()
}
