//! The supervisor of long-lived workers: `t` children that each run many
//! calls, one at a time. The same pieces as a concurrent call (launcher,
//! [`ChildProcess`], conversation, capture), a different loop:
//!
//! 1. start workers up to `t` (a crashed or timed-out one is replaced);
//! 2. hand back each call whose result and output have both arrived;
//! 3. deal with workers that ended: the call they were running crashed;
//! 4. give each worker its next calls (two in flight, more for short
//!    calls: they wait in the worker's channel);
//! 5. poll until the earliest deadline; serve; kill what is overdue.
//!
//! The front end supplies the calls and receives one [`CallRecord`] per
//! call, as soon as it is complete, so the parent keeps nothing per call.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use super::capture::Splitter;
use super::engine::{self, Live, Next, Role, nanos};
use super::launcher::Launcher;
use super::limits;
use super::phase::{self, Kill, WorkerDue, WorkerLimits, WorkerTimes};
use super::process::Life;
use crate::error::{Error, Result};
use crate::outcome::{Captured, Exit, Status};
use crate::protocol::{self, ChildResult, OpEvent, Order, Report, Sample};

/// Workers that die before their first call, in a row, before the run gives up.
const START_FAILURES: u32 = 3;
/// Calls sent to a worker ahead of its results: the next calls wait in the
/// worker's channel, so the worker goes on at once instead of waiting for
/// the parent's turn, and one wake-up of the parent serves several results.
/// Their wait in the channel is neither part of their response time (it
/// counts from when the worker was free for them) nor of their service time.
///
/// Two are in flight at least (one running, one waiting) once every worker
/// is busy (before, one each: a call must not wait behind another while a
/// worker is idle or still starting); more while the worker's calls are short: enough to keep it busy for [`AHEAD`], counting
/// at least [`CALL_FLOOR`] per call (a call's own cost in the worker: its
/// markers and its report), at most [`MAX_DEPTH`].
const MIN_DEPTH: usize = 2;
const MAX_DEPTH: usize = 8;
const AHEAD: Duration = Duration::from_micros(100);
const CALL_FLOOR: Duration = Duration::from_micros(10);

/// What the worker supervisor needs from the front end.
pub(crate) struct PoolSettings {
    pub workers: usize,
    pub call_timeout: Duration,
    pub start_timeout: Duration,
    pub env: Vec<(OsString, OsString)>,
    pub capture_limit: usize,
    pub result_limit: usize,
    /// A soft descriptor limit for each worker, if set.
    pub worker_nofile: Option<u64>,
    /// Which of a worker's calls are followed by a sample of what it holds.
    /// `None`: no samples.
    pub sampling: Option<Sampling>,
}

/// Samples after each of a worker's `first` calls, then after one call in
/// `every`, but not within `gap` of the worker's last sample: a sample
/// costs about as much throughput as 200 trivial calls, so fast calls are
/// sampled by time, slow ones by count.
#[derive(Clone, Copy)]
pub(crate) struct Sampling {
    pub first: u64,
    pub every: u64,
    pub gap: Duration,
}

/// One call to hand to a worker: its index and its encoded arguments.
pub(crate) struct Dispatch {
    pub index: u64,
    pub args: Arc<Vec<u8>>,
}

/// What happened to one call.
pub(crate) struct CallRecord {
    pub index: u64,
    /// The worker's slot (0..t) and its pid.
    pub slot: usize,
    pub pid: u32,
    pub status: Status<Vec<u8>>,
    pub stdout: Captured,
    pub stderr: Captured,
    /// When the parent sent the call, when the worker was free for it (the
    /// previous call finished in the worker, or the call was sent, whichever
    /// came later), and when the parent had its result.
    pub sent_ns: u64,
    pub free_ns: u64,
    pub done_ns: u64,
    /// The call's own time inside the worker, when it reported.
    pub service_ns: Option<u64>,
    /// How many calls this worker process had run before this one.
    pub seq: u64,
    pub sample: Option<Sample>,
    /// The worker wrote before stampede's entry (a plain binary's code
    /// before `init()`); that output is in this call's.
    pub early_output: bool,
    /// Its history's events (`stampede::history`), as they came.
    pub operations: Vec<OpEvent>,
}

/// What the front end says after each record.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Per worker slot, what the run saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotSummary {
    pub pids: Vec<u32>,
    /// Workers whose stdout or stderr was still held open after they
    /// ended: by a process they started that left their process group
    /// (`setsid`, a daemon), which was not killed with them.
    pub escaped: Vec<u32>,
}

struct InFlight {
    index: u64,
    sent_ns: u64,
    /// When the worker was free for it: when it was sent, or when the call
    /// before it finished in the worker, whichever came later. Its timeout
    /// and its response time count from here.
    start_ns: u64,
    sample: bool,
    args: Arc<Vec<u8>>,
}

/// A call's report, waiting for its output's end markers.
struct Reported {
    started_ns: u64,
    finished_ns: u64,
    result: ChildResult,
    sample: Option<Sample>,
    at_ns: u64,
    operations: Vec<OpEvent>,
}

struct Worker {
    slot: usize,
    live: Live<Splitter>,
    ready: bool,
    /// Calls sent, oldest first; `reported` holds the reports of the first ones.
    in_flight: VecDeque<InFlight>,
    reported: VecDeque<Reported>,
    /// Why and when it was killed.
    killed: Option<(Kill, u64)>,
    seq: u64,
    /// The worker's recent service time, smoothed; `None` before its first result.
    service_ns: Option<u64>,
    /// Calls sent since the last one sampled, and when that one was sent.
    since_sample: u64,
    sampled_ns: u64,
    /// History events of the call running now, until its report.
    operations: Vec<OpEvent>,
}

/// Runs calls from `next` through `settings.workers` workers (each started
/// with `request`, a framed worker request), handing each finished call to
/// `record`. Returns when `next` has no more calls and every call is back,
/// or when `record` says stop; every worker has ended then.
pub(crate) fn run_pool(
    settings: &PoolSettings,
    request: Arc<Vec<u8>>,
    next: &mut dyn FnMut() -> Option<Dispatch>,
    record: &mut dyn FnMut(CallRecord) -> Flow,
) -> Result<Vec<SlotSummary>> {
    let count = settings.workers.max(1);
    let nofile = limits::preflight(count)?;
    let worker_nofile = match (settings.worker_nofile, nofile.original()) {
        (Some(soft), Some((_, hard))) => Some((soft.min(hard), hard)),
        (_, original) => original,
    };
    let mut pool = Pool {
        settings,
        request,
        next,
        record,
        launcher: Launcher::new(&settings.env, worker_nofile)?,
        limits: WorkerLimits {
            start: settings.start_timeout,
            call: settings.call_timeout,
        },
        slots: (0..count).map(|_| None).collect(),
        summary: vec![SlotSummary::default(); count],
        exhausted: false,
        stopping: false,
        ending: false,
        again: VecDeque::new(),
        start_failures: 0,
    };
    engine::run(&mut pool, "waiting for workers")?;
    Ok(pool.summary)
}

/// The pool as a role of the engine.
struct Pool<'a> {
    settings: &'a PoolSettings,
    request: Arc<Vec<u8>>,
    next: &'a mut dyn FnMut() -> Option<Dispatch>,
    record: &'a mut dyn FnMut(CallRecord) -> Flow,
    launcher: Launcher,
    limits: WorkerLimits,
    slots: Vec<Option<Worker>>,
    summary: Vec<SlotSummary>,
    /// `next` has no more calls.
    exhausted: bool,
    /// `record` said stop: calls still running are abandoned.
    stopping: bool,
    /// Every worker was killed; their output is drained before the end.
    ending: bool,
    /// Calls sent to a worker that died before it could start them.
    again: VecDeque<Dispatch>,
    /// Workers in a row that died before their first call.
    start_failures: u32,
}

impl Role for Pool<'_> {
    type Output = Splitter;

    fn prepare(&mut self, now: u64) -> Result<Next> {
        if !self.ending {
            if let Some(next) = self.serve(now)? {
                return Ok(next);
            }
            // The run is over: every worker is killed (with its group), and
            // its output read until it closes or the drain grace runs out.
            for worker in self.slots.iter_mut().flatten() {
                worker.live.process.kill();
            }
            self.ending = true;
        }
        Ok(self.end(now))
    }

    fn positions(&self) -> usize {
        self.slots.len()
    }

    fn live(&mut self, at: usize) -> Option<&mut Live<Splitter>> {
        self.slots[at].as_mut().map(|w| &mut w.live)
    }

    fn take(&mut self, at: usize, report: Report, now: u64) {
        if let Some(worker) = &mut self.slots[at] {
            worker.take(report, now, &self.limits);
        }
    }

    fn after(&mut self, now: u64) {
        for worker in self.slots.iter_mut().flatten() {
            worker.update(now, &self.limits);
        }
    }
}

impl Pool<'_> {
    fn record(&mut self, record: CallRecord) {
        if (self.record)(record) == Flow::Stop {
            self.stopping = true;
        }
    }

    /// A turn of the run: `None` once it is over.
    fn serve(&mut self, now: u64) -> Result<Option<Next>> {
        // 1. Start workers up to the count, while there is work: calls not
        // sent yet, or calls to send again after a crash.
        let work_left = !self.exhausted || !self.again.is_empty();
        if work_left && !self.stopping {
            for slot in 0..self.slots.len() {
                if self.slots[slot].is_none() {
                    let worker = Worker::start(&self.launcher, slot, &self.request, self.settings)?;
                    self.summary[slot].pids.push(worker.live.process.pid());
                    self.slots[slot] = Some(worker);
                }
            }
        }
        // 2. Hand back the calls that are complete.
        for slot in 0..self.slots.len() {
            while !self.stopping {
                let Some(worker) = &mut self.slots[slot] else {
                    break;
                };
                let overdue =
                    self.limits.due(&worker.times(), now) == Some(WorkerDue::OutputOverdue);
                let Some(done) = worker.take_complete(overdue) else {
                    break;
                };
                self.record(done);
            }
        }
        if self.stopping {
            return Ok(None);
        }
        // 3. Workers that ended: their call crashed; replace them.
        for slot in 0..self.slots.len() {
            let Some(mut worker) = self.take_ended(slot, now) else {
                continue;
            };
            while !self.stopping {
                let Some(done) = worker.take_complete(true) else {
                    break;
                };
                self.record(done);
            }
            if self.stopping {
                continue;
            }
            if let Some(record_of_crash) = worker.crash_record(&self.limits) {
                // The calls queued behind the one that crashed never started.
                for waiting in worker.in_flight.drain(..).rev() {
                    self.again.push_front(Dispatch {
                        index: waiting.index,
                        args: waiting.args,
                    });
                }
                self.start_failures = 0;
                self.record(record_of_crash);
            } else if !worker.ready && work_left {
                self.start_failures += 1;
                if self.start_failures >= START_FAILURES {
                    return Err(worker.start_error(&self.limits));
                }
            }
        }
        if self.stopping {
            return Ok(None);
        }
        // 4. Give each worker its next calls; start a replacement first.
        if work_left && self.slots.iter().any(Option::is_none) {
            return Ok(Some(Next::Wait(now)));
        }
        // One call each first: no call waits behind another while a worker
        // is idle or still starting. Then, once every worker is busy, more
        // calls ahead for short calls (see `MIN_DEPTH`).
        let mut queue = Queue {
            again: &mut self.again,
            next: &mut *self.next,
            exhausted: &mut self.exhausted,
            sampling: self.settings.sampling,
        };
        for worker in self.slots.iter_mut().flatten() {
            if worker.takes_calls() {
                queue.fill(worker, 1, now)?;
            }
        }
        let spare = self.slots.iter().any(|slot| {
            slot.as_ref()
                .is_none_or(|w| !w.takes_calls() || w.in_flight.is_empty())
        });
        if !spare {
            for worker in self.slots.iter_mut().flatten() {
                let depth = worker.depth();
                queue.fill(worker, depth, now)?;
            }
        }
        let idle = self.slots.iter().flatten().all(|w| w.in_flight.is_empty());
        if *queue.exhausted && queue.again.is_empty() && idle {
            return Ok(None);
        }
        Ok(Some(Next::Wait(self.wake())))
    }

    /// The end of a run: every worker goes once it ended (see
    /// [`take_ended`](Pool::take_ended)).
    fn end(&mut self, now: u64) -> Next {
        for slot in 0..self.slots.len() {
            self.take_ended(slot, now);
        }
        if self.slots.iter().all(Option::is_none) {
            return Next::Done;
        }
        Next::Wait(self.wake())
    }

    /// The worker in `slot`, taken out once it ended and its output
    /// closed, or the drain grace after its end ran out. A stream still
    /// open then is held by a process that left the worker's group, which
    /// stampede cannot kill: its summary says so.
    fn take_ended(&mut self, slot: usize, now: u64) -> Option<Worker> {
        let worker = self.slots[slot].as_ref()?;
        if worker.live.process.is_running() {
            return None;
        }
        let drained = worker.live.outputs_closed();
        if !drained && self.limits.due(&worker.times(), now) != Some(WorkerDue::StopDraining) {
            return None;
        }
        let worker = self.slots[slot].take()?;
        if !drained {
            self.summary[slot].escaped.push(worker.live.process.pid());
        }
        Some(worker)
    }

    /// When time next matters to any worker.
    fn wake(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .filter_map(|w| self.limits.next(&w.times()).map(|(at, _)| at))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// Where a worker's next calls come from: calls to send again first, then
/// new ones.
struct Queue<'q, 'n> {
    again: &'q mut VecDeque<Dispatch>,
    next: &'q mut (dyn FnMut() -> Option<Dispatch> + 'n),
    exhausted: &'q mut bool,
    sampling: Option<Sampling>,
}

impl Queue<'_, '_> {
    /// Sends `worker` calls until it has `up_to` in flight, all of them in
    /// one write.
    fn fill(&mut self, worker: &mut Worker, up_to: usize, now: u64) -> Result<()> {
        let mut orders = Vec::new();
        while worker.in_flight.len() < up_to {
            let dispatch = match self.again.pop_front() {
                Some(dispatch) => dispatch,
                None if *self.exhausted => break,
                None => match (self.next)() {
                    Some(dispatch) => dispatch,
                    None => {
                        *self.exhausted = true;
                        break;
                    }
                },
            };
            let sample = worker.wants_sample(self.sampling, now);
            let order = Order::Call {
                call: dispatch.index,
                args: dispatch.args.to_vec(),
                sample,
            };
            let frame = protocol::frame(&order).map_err(|message| Error::Encode {
                function: "a worker's call",
                message,
            })?;
            orders.extend_from_slice(&frame);
            worker.in_flight.push_back(InFlight {
                index: dispatch.index,
                sent_ns: now,
                start_ns: now,
                sample,
                args: dispatch.args,
            });
        }
        if !orders.is_empty() {
            worker.live.conversation.send(Arc::new(orders));
        }
        Ok(())
    }
}

impl Worker {
    fn start(
        launcher: &Launcher,
        slot: usize,
        request: &Arc<Vec<u8>>,
        settings: &PoolSettings,
    ) -> Result<Worker> {
        let opened = launcher.open(slot, None, request.clone(), settings.result_limit)?;
        let through_init = launcher.through_init();
        Ok(Worker {
            slot,
            live: Live::new(opened, |fd| {
                Splitter::new(fd, settings.capture_limit, through_init)
            }),
            ready: false,
            in_flight: VecDeque::new(),
            reported: VecDeque::new(),
            killed: None,
            seq: 0,
            service_ns: None,
            since_sample: 0,
            sampled_ns: 0,
            operations: Vec::new(),
        })
    }

    /// Whether it is ready for calls: started, alive, not being killed.
    fn takes_calls(&self) -> bool {
        self.ready && self.killed.is_none() && self.live.process.is_running()
    }

    /// How many calls to keep in flight (see [`MIN_DEPTH`]).
    fn depth(&self) -> usize {
        let Some(service_ns) = self.service_ns else {
            return MIN_DEPTH;
        };
        let per_call = service_ns.max(nanos(CALL_FLOOR));
        let ahead = usize::try_from(nanos(AHEAD) / per_call).unwrap_or(0);
        (1 + ahead).clamp(MIN_DEPTH, MAX_DEPTH)
    }

    /// Whether the call about to be sent is followed by a sample.
    fn wants_sample(&mut self, sampling: Option<Sampling>, now: u64) -> bool {
        let Some(rule) = sampling else {
            return false;
        };
        let seq = self.seq + self.in_flight.len() as u64;
        let due = seq < rule.first
            || (self.since_sample + 1 >= rule.every
                && now >= self.sampled_ns.saturating_add(nanos(rule.gap)));
        if due {
            self.since_sample = 0;
            self.sampled_ns = now;
        } else {
            self.since_sample += 1;
        }
        due
    }

    /// What its deadlines depend on now (see [`WorkerLimits`]).
    fn times(&self) -> WorkerTimes {
        WorkerTimes {
            spawned_ns: self.live.spawned_ns,
            ready: self.ready,
            call_free_ns: self.in_flight.front().map(|f| f.start_ns),
            reported_ns: self.reported.front().map(|r| r.at_ns),
            ended_ns: self.live.ended_ns(),
            killed: self.killed.is_some(),
        }
    }

    fn take(&mut self, report: Report, at_ns: u64, limits: &WorkerLimits) {
        match report {
            // Ready after its start's deadline is too late, however soon
            // the parent reads it: the deadline rule kills it.
            Report::Ready {
                at_ns: ready_ns, ..
            } if !self.ready => {
                self.ready = limits.ready_in_time(self.live.spawned_ns, ready_ns);
            }
            Report::Operation { call, event }
                if self
                    .in_flight
                    .get(self.reported.len())
                    .is_some_and(|f| f.index == call) =>
            {
                self.operations.push(event);
            }
            Report::Done {
                call,
                started_ns,
                finished_ns,
                result,
                sample,
                ..
            } if self
                .in_flight
                .get(self.reported.len())
                .is_some_and(|f| f.index == call) =>
            {
                // The worker was free for the next call when it finished this
                // one (its clock is the parent's: CLOCK_MONOTONIC is the
                // machine's), or when that call was sent, if later.
                if let Some(next) = self.in_flight.get_mut(self.reported.len() + 1) {
                    next.start_ns = phase::free_for_call(next.sent_ns, finished_ns, at_ns);
                }
                self.reported.push_back(Reported {
                    started_ns,
                    finished_ns,
                    result,
                    sample,
                    at_ns,
                    operations: std::mem::take(&mut self.operations),
                });
            }
            other => self
                .live
                .conversation
                .break_off(format!("the worker sent an unexpected report: {other:?}")),
        }
    }

    /// Kills it when its channel broke or a deadline passed.
    fn update(&mut self, now: u64, limits: &WorkerLimits) {
        if !self.live.process.is_running() || self.killed.is_some() {
            return;
        }
        let why = if self.live.conversation.broken().is_some() {
            Some(Kill::ChannelBroken)
        } else {
            match limits.due(&self.times(), now) {
                Some(WorkerDue::Kill(why)) => Some(why),
                _ => None,
            }
        };
        if let Some(why) = why {
            self.killed = Some((why, now));
            self.live.process.kill();
        }
    }

    /// The in-flight call, once its result and its output have arrived (or
    /// the output is `overdue`, or the worker ended).
    fn take_complete(&mut self, overdue: bool) -> Option<CallRecord> {
        let index = self.in_flight.front()?.index;
        self.reported.front()?;
        let output_in = [&self.live.stdout, &self.live.stderr]
            .iter()
            .all(|s| s.has_ended(index) || s.fd.is_none());
        if !output_in && !overdue && self.live.process.is_running() {
            return None;
        }
        let flight = self.in_flight.pop_front().expect("checked above");
        let Reported {
            started_ns,
            finished_ns,
            result,
            sample,
            at_ns: done_ns,
            operations,
        } = self.reported.pop_front().expect("checked above");
        let status = super::status_of(result);
        let seq = self.seq;
        self.seq += 1;
        let service_ns = finished_ns.saturating_sub(started_ns);
        // Smoothed over about 8 calls: one odd call barely moves the depth.
        self.service_ns = Some(match self.service_ns {
            Some(old) => old - old / 8 + service_ns / 8,
            None => service_ns,
        });
        Some(CallRecord {
            index,
            slot: self.slot,
            pid: self.live.process.pid(),
            status,
            stdout: self.live.stdout.take(index),
            stderr: self.live.stderr.take(index),
            sent_ns: flight.sent_ns,
            free_ns: flight.start_ns,
            done_ns,
            service_ns: Some(service_ns),
            seq,
            sample: sample.filter(|_| flight.sample),
            early_output: self.early_output(),
            operations,
        })
    }

    fn early_output(&mut self) -> bool {
        // Both: each is told once.
        let stdout = self.live.stdout.take_early();
        self.live.stderr.take_early() || stdout
    }

    /// For a worker that ended while running a call: that call's record.
    fn crash_record(&mut self, limits: &WorkerLimits) -> Option<CallRecord> {
        let flight = self.in_flight.pop_front()?;
        let exit = match self.live.process.life() {
            Life::Ended { status, .. } => super::exit_of(status),
            _ => Exit::Unknown,
        };
        let status = match (self.killed, self.live.conversation.broken()) {
            (_, Some(reason)) => Status::Failed {
                reason: reason.to_owned(),
            },
            (Some((Kill::TimedOut, at_ns)), _) => Status::TimedOut {
                after: Duration::from_nanos(at_ns.saturating_sub(flight.start_ns)),
                limit: limits.call,
            },
            _ => Status::Crashed(exit),
        };
        let seq = self.seq;
        Some(CallRecord {
            index: flight.index,
            slot: self.slot,
            pid: self.live.process.pid(),
            status,
            stdout: self.live.stdout.take(flight.index),
            stderr: self.live.stderr.take(flight.index),
            sent_ns: flight.sent_ns,
            free_ns: flight.start_ns,
            done_ns: self.live.ended_ns().unwrap_or(u64::MAX),
            service_ns: None,
            seq,
            sample: None,
            early_output: self.early_output(),
            // The ended call's operations: those without an end stay
            // indeterminate.
            operations: std::mem::take(&mut self.operations),
        })
    }

    /// For a worker that never became ready: the error, with its output.
    fn start_error(&mut self, limits: &WorkerLimits) -> Error {
        let why = match (self.killed, self.live.process.life()) {
            (Some(_), _) => format!("was not ready within {:?}", limits.start),
            (None, Life::Ended { status, .. }) => format!("ended ({})", super::exit_of(status)),
            _ => "ended".to_owned(),
        };
        let mut output = String::new();
        for (name, captured) in [
            ("stdout", self.live.stdout.take_rest()),
            ("stderr", self.live.stderr.take_rest()),
        ] {
            let _ = crate::outcome::write_stream(&mut output, name, &captured);
        }
        Error::WorkerStart {
            worker: self.slot,
            pid: self.live.process.pid(),
            reason: format!("{why} before its first call, {START_FAILURES} times in a row"),
            output,
        }
    }
}
