//! A child in the `Call` role: run one function once, between the start
//! barrier and its report.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::Channel;
use super::checkpoint::{self, CallState};
use crate::protocol::{ChildResult, Report, Request, StepKeys};
use crate::{panic, registry, seed, sys};

/// The names of the steps a scheduled child reports around its function.
pub(crate) const START_STEP: &str = "start";
pub(crate) const END_STEP: &str = "end";

/// Reports that the call could not even start, with the reason.
pub(super) fn refuse(channel: &mut Channel, call: u64, reason: String) -> io::Result<()> {
    let now = sys::monotonic_ns();
    channel.send(&Report::Done {
        call,
        started_ns: now,
        passed_ns: Vec::new(),
        finished_ns: now,
        result: ChildResult::Failed(reason),
        sample: None,
    })
}

pub(super) fn serve(
    index: u64,
    mut channel: Channel,
    gate: File,
    request: Request,
) -> io::Result<()> {
    let call = request.call;
    let prepared = match registry::find(&request.function) {
        Some(registration) => registration.prepare(&request.args),
        None => Err(format!(
            "no function `{}` is registered in this binary",
            request.function
        )),
    };
    drop(request.args);
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => return refuse(&mut channel, call, reason),
    };
    panic::install();
    panic::on_panic(checkpoint::panicking);
    channel.send(&Report::Ready {
        call,
        at_ns: sys::monotonic_ns(),
    })?;
    if request.barrier && !request.steps {
        wait(gate.as_raw_fd(), 1)?;
    }
    let jitter_ns = seed::jitter_ns(request.seed, index, request.jitter_max_ns);
    sleep_ns(jitter_ns);

    checkpoint::begin(CallState {
        channel,
        gate,
        call,
        barrier: request.barrier,
        jitter_ns,
        round: 0,
        passed_ns: Vec::new(),
        steps: request.steps,
    });
    // In a scheduled run, the start and the return are steps too: the
    // parent decides when the function begins and when its end goes out.
    let step = |name: &str, keys: StepKeys| {
        checkpoint::with_state(|state| {
            if state.steps {
                checkpoint::wait_for_go(state, name, keys);
            }
        });
    };
    step(START_STEP, StepKeys::Start);
    let started_ns = sys::monotonic_ns();
    let outcome = panic::catch(false, prepared);
    let finished_ns = sys::monotonic_ns();
    step(END_STEP, StepKeys::End);
    let (mut channel, passed_ns) = checkpoint::end();
    let result = match outcome {
        Ok(Ok(bytes)) => ChildResult::Returned(bytes),
        Ok(Err(reason)) => ChildResult::Failed(reason),
        Err(caught) => ChildResult::Panicked {
            message: caught.message,
            location: caught.location,
        },
    };
    let _ = io::stdout().flush();
    // Children released together outnumber the cores: let those still
    // waiting for a CPU enter the function before this one's report wakes
    // the parent and its exit tears the process down (measured at n = 64 on
    // 2 cores: start spread 4-7 ms without, about 1 ms with).
    std::thread::yield_now();
    let sent = channel.send(&Report::Done {
        call,
        started_ns,
        passed_ns,
        finished_ns,
        result,
        sample: None,
    });
    // And once more before the exit, whose teardown is the costliest thing
    // a child does: siblings still waiting for a CPU go first (n = 8 on 2
    // cores: start spread 120-210 µs median without, 73-81 µs with).
    std::thread::yield_now();
    sent
}

/// Waits at the gate until the parent's `count`-th release. A gate whose
/// parent is gone never opens: the child dies with its group instead.
pub(super) fn wait(gate: RawFd, count: u32) -> io::Result<()> {
    match sys::wait_gate(gate, count)? {
        sys::Gate::Released => Ok(()),
        sys::Gate::ParentGone => sys::die_with_group(),
    }
}

pub(super) fn sleep_ns(ns: u64) {
    if ns > 0 {
        std::thread::sleep(std::time::Duration::from_nanos(ns));
    }
}
