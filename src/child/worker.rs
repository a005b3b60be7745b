//! A child in the `Worker` role: run the function once per order, each call
//! followed by a marker on stdout and stderr so that the parent can give
//! each call its own output, until told to stop.

use std::io::{self, Write};

use super::Channel;
use crate::protocol::{self, ChildResult, Order, Report, Request, Sample};
use crate::{panic, registry, sys};

pub(super) fn serve(mut channel: Channel, request: Request) -> io::Result<()> {
    let Some(registration) = registry::find(&request.function) else {
        let reason = format!(
            "no function `{}` is registered in this binary",
            request.function
        );
        return super::call::refuse(&mut channel, 0, reason);
    };
    panic::install();
    channel.send(&Report::Ready {
        call: 0,
        at_ns: sys::monotonic_ns(),
    })?;
    loop {
        let order: Order = match channel.receive() {
            Ok(order) => order,
            // The parent closed the channel: it is gone, or done with us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => sys::die_with_group(),
            Err(e) => return Err(e),
        };
        let Order::Call { call, args, sample } = order else {
            return Ok(());
        };
        let started_ns = sys::monotonic_ns();
        super::history::lend(channel, call);
        let result = match registration.prepare(&args) {
            Err(reason) => ChildResult::Failed(reason),
            Ok(prepared) => match panic::catch(false, prepared) {
                Ok(Ok(bytes)) => ChildResult::Returned(bytes),
                Ok(Err(reason)) => ChildResult::Failed(reason),
                Err(caught) => ChildResult::Panicked {
                    message: caught.message,
                    location: caught.location,
                },
            },
        };
        let finished_ns = sys::monotonic_ns();
        channel = super::history::take_back();
        drop(args);
        mark_end(call)?;
        let sample = sample.then(take_sample);
        channel.send(&Report::Done {
            call,
            started_ns,
            passed_ns: Vec::new(),
            finished_ns,
            result,
            sample,
        })?;
    }
}

/// Writes the end marker of `call` on stdout and stderr, after whatever the
/// call printed: what came since the previous end marker is the call's.
fn mark_end(call: u64) -> io::Result<()> {
    let marker = protocol::end_marker(call);
    let mut out = io::stdout().lock();
    out.flush()?;
    out.write_all(&marker)?;
    out.flush()?;
    io::stderr().write_all(&marker)
}

/// How much this process holds now.
fn take_sample() -> Sample {
    Sample {
        fds: sys::own_descriptor_count(),
        threads: sys::own_thread_count(),
        children: sys::own_child_count(),
        rss_bytes: sys::own_rss_bytes(),
    }
}
