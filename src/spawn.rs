//! The parent's side: start the children, feed them their request, release
//! the barrier, collect reports and output, enforce timeouts, reap.
//!
//! One thread does it all with `poll`: per child a channel socket, its
//! stdout and stderr pipes, and (Linux) a pidfd that turns readable when the
//! process exits. Each live child is a guard ([`Live`]) that kills its
//! process group and reaps it when dropped, so an error or a panic in the
//! parent leaves nothing running.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use crate::child;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::outcome::{Captured, Exit, Outcome, Status, Timings};
use crate::sys;
use crate::wire::{self, ChildResult, FrameReader, Report};

/// One child to run: the function's name and its framed request (shared by
/// every child that runs the same call).
#[derive(Clone)]
pub(crate) struct Job {
    pub function: &'static str,
    pub request: Arc<Vec<u8>>,
}

/// How long to keep reading a child's pipes after it exited, for output that
/// a process outside its group (which we cannot kill) may still hold open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How often to look for exited children where the kernel has no pidfd.
const EXIT_POLL: Duration = Duration::from_millis(5);
/// How much output before the child's entry marker is searched for it.
const PREFIX_LIMIT: usize = 64 * 1024;
/// Descriptors the parent holds per live child: channel, stdout, stderr,
/// pidfd, plus the transient ones while spawning.
const FDS_PER_CHILD: u64 = 6;

/// Runs every job in its own child and returns their outcomes in order;
/// returned values are still encoded.
pub(crate) fn run(options: &Options, jobs: &[Job]) -> Result<Vec<Outcome<Vec<u8>>>> {
    let entry_args = child::entry_args().ok_or(Error::MissingEntry)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let limit = options
        .max_concurrent
        .unwrap_or(jobs.len())
        .clamp(1, jobs.len());
    // Best effort: a limit still too low shows as a spawn error naming it.
    sys::raise_nofile(limit as u64 * FDS_PER_CHILD + 64);
    let io = |context| move |source| Error::Io { context, source };
    let (start_read, mut start) =
        Gate::new(options.barrier).map_err(io("creating the start barrier"))?;
    let (checkpoint_read, mut checkpoint) =
        Gate::new(options.barrier).map_err(io("creating the checkpoint gate"))?;

    let exe = sys::current_exe().map_err(io("finding the running executable"))?;
    let c = |s: &std::ffi::OsStr| {
        CString::new(s.as_bytes()).map_err(|e| Error::Io {
            context: "encoding the child's command line",
            source: e.into(),
        })
    };
    let arg0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| "stampede-child".into());
    let mut argv = vec![c(&arg0)?];
    for a in &entry_args {
        argv.push(c(a)?);
    }
    let mut env = sys::child_env(&options.env);
    env.retain(|kv| {
        !kv.as_bytes()
            .starts_with(format!("{}=", child::CHILD_VAR).as_bytes())
    });
    let launcher = Launcher {
        exe: c(exe.as_os_str())?,
        argv,
        env,
        start: &start_read,
        checkpoint: &checkpoint_read,
    };
    let start_ns = sys::monotonic_ns();
    let timeout_ns = u64::try_from(options.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut children = Children { live: Vec::new() };
    let mut done: Vec<Option<Outcome<Vec<u8>>>> = (0..jobs.len()).map(|_| None).collect();
    // The gates open once every child of the first wave has reached them or
    // ended; later waves find them open.
    let wave = limit;
    let mut next = 0;
    let mut buf = vec![0u8; 64 * 1024];

    loop {
        while children.live.len() < limit && next < jobs.len() {
            let live = launcher.spawn(next, &jobs[next], options.capture_limit, timeout_ns)?;
            children.live.push(live);
            next += 1;
        }
        for live in children.live.iter_mut().filter(|live| live.index < wave) {
            let ended = live.exited.is_some();
            start.arrive(&mut live.at_start, ended || live.ready_ns.is_some());
            checkpoint.arrive(
                &mut live.at_checkpoint,
                ended || live.checkpoint_ns.is_some(),
            );
        }
        start.release_if_all(wave);
        checkpoint.release_if_all(wave);
        let mut i = 0;
        while i < children.live.len() {
            // Finished children have exited, so they were counted above.
            if children.live[i].is_finished() {
                let live = children.live.swap_remove(i);
                let index = live.index;
                done[index] = Some(live.finish(start_ns, options.timeout));
            } else {
                i += 1;
            }
        }
        if children.live.is_empty() && next == jobs.len() {
            break;
        }
        if children.live.is_empty() {
            continue;
        }

        let mut fds = Vec::with_capacity(children.live.len() * 4);
        let mut owners = Vec::with_capacity(children.live.len() * 4);
        let now = sys::monotonic_ns();
        let mut wake_ns = u64::MAX;
        for (slot, live) in children.live.iter().enumerate() {
            live.poll_fds(slot, &mut fds, &mut owners);
            wake_ns = wake_ns.min(live.next_wake_ns());
        }
        let timeout_ms = if wake_ns == u64::MAX {
            -1
        } else {
            wake_ns
                .saturating_sub(now)
                .div_ceil(1_000_000)
                .min(i32::MAX as u64) as i32
        };
        sys::poll(&mut fds, timeout_ms).map_err(io("waiting for children"))?;
        for (pfd, (slot, stream)) in fds.iter().zip(&owners) {
            if pfd.revents != 0 {
                children.live[*slot].service(*stream, &mut buf);
            }
        }
        let now = sys::monotonic_ns();
        for live in &mut children.live {
            live.check_time(now);
        }
    }
    Ok(done
        .into_iter()
        .map(|o| o.expect("every child finished"))
        .collect())
}

/// Decodes a returned value as `R`; a value that does not decode is a failure.
pub(crate) fn decode_returned<R: serde::de::DeserializeOwned>(raw: Outcome<Vec<u8>>) -> Outcome<R> {
    raw.map(|bytes| match wire::decode::<R>(&bytes) {
        Ok(value) => Status::Returned(value),
        Err(e) => Status::Failed {
            reason: format!(
                "could not decode the returned value as `{}`: {e}",
                std::any::type_name::<R>()
            ),
        },
    })
}

/// The parent's side of a pipe that children of the first wave block on;
/// closing its write end gives all of them end of file at once.
struct Gate {
    write: Option<OwnedFd>,
    arrived: usize,
}

impl Gate {
    /// The read end every child gets, and a closed gate (or an open one:
    /// `closed == false`, children pass at once).
    fn new(closed: bool) -> std::io::Result<(OwnedFd, Gate)> {
        let (read, write) = sys::pipe()?;
        // Above the numbers the child's ends are moved to (see `dup_high`).
        let read = sys::dup_high(&read)?;
        let gate = Gate {
            write: closed.then_some(write),
            arrived: 0,
        };
        Ok((read, gate))
    }

    /// Counts a child once, when it has reached the gate (or ended).
    fn arrive(&mut self, counted: &mut bool, reached: bool) {
        if reached && !*counted {
            *counted = true;
            self.arrived += 1;
        }
    }

    fn release_if_all(&mut self, wave: usize) {
        if self.arrived == wave {
            self.write = None;
        }
    }
}

struct Launcher<'a> {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    start: &'a OwnedFd,
    checkpoint: &'a OwnedFd,
}

impl Launcher<'_> {
    fn spawn(
        &self,
        index: usize,
        job: &Job,
        capture_limit: usize,
        timeout_ns: u64,
    ) -> Result<Live> {
        let fail = |source: std::io::Error| Error::Spawn {
            child: index,
            limit: limit_hit(&source),
            source,
        };
        let (parent_end, child_end) = sys::socket_pair().map_err(fail)?;
        let child_end = sys::dup_high(&child_end).map_err(fail)?;
        let child_var = CString::new(format!("{}={}", child::CHILD_VAR, child::child_var(index)))
            .expect("no NUL in the child variable");
        let spawned_ns = sys::monotonic_ns();
        let spawned = sys::spawn_child(
            &self.exe,
            &self.argv,
            &self.env,
            &child_var,
            &child_end,
            self.start,
            self.checkpoint,
        )
        .map_err(fail)?;
        drop(child_end);
        let pid = spawned.pid;
        // From here on the guard in `Live` kills and reaps the child on error.
        let (stdout, stderr) = (spawned.stdout, spawned.stderr);
        let mut live = Live {
            index,
            function: job.function,
            pid,
            unreaped: true,
            exit_watch: sys::exit_watch(pid),
            channel: Some(parent_end),
            request: job.request.clone(),
            sent: 0,
            reader: FrameReader::default(),
            stdout: Stream::new(stdout, capture_limit),
            stderr: Stream::new(stderr, capture_limit),
            spawned_ns,
            deadline_ns: spawned_ns.saturating_add(timeout_ns),
            ready_ns: None,
            done: None,
            broken: None,
            timed_out: false,
            exited: None,
            drain_until_ns: u64::MAX,
            at_start: false,
            at_checkpoint: false,
            checkpoint_ns: None,
            checkpoint_passed_ns: None,
        };
        for fd in [
            live.channel.as_ref(),
            live.stdout.fd.as_ref(),
            live.stderr.fd.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            sys::set_nonblocking(fd.as_raw_fd()).map_err(fail)?;
        }
        live.send_request();
        Ok(live)
    }
}

/// Names the limit behind a spawn failure, when it is one.
fn limit_hit(err: &std::io::Error) -> Option<String> {
    if sys::is_process_limit(err) {
        let limit = sys::nproc_limit().map_or("unknown".into(), |n| n.to_string());
        Some(format!(
            "the process limit was reached (RLIMIT_NPROC = {limit}); lower the number of children, \
             cap them with `Options::max_concurrent`, or raise the limit (`ulimit -u`)"
        ))
    } else if sys::is_descriptor_limit(err) {
        let limit = sys::nofile_limits().map_or("unknown".into(), |(soft, _)| soft.to_string());
        Some(format!(
            "the open-file limit was reached (RLIMIT_NOFILE = {limit}); each live child holds about \
             {FDS_PER_CHILD} descriptors in the parent: cap them with `Options::max_concurrent` or \
             raise the limit (`ulimit -n`)"
        ))
    } else {
        None
    }
}

#[derive(Clone, Copy)]
enum Which {
    Channel,
    Stdout,
    Stderr,
    Exit,
}

/// One stream of a child's output, cut at the entry marker and kept to its tail.
struct Stream {
    fd: Option<OwnedFd>,
    /// Output before the marker; `None` once the marker was found (or given up on).
    prefix: Option<Vec<u8>>,
    tail: Vec<u8>,
    total: u64,
    limit: usize,
}

impl Stream {
    fn new(fd: OwnedFd, limit: usize) -> Self {
        Self {
            fd: Some(fd),
            prefix: Some(Vec::new()),
            tail: Vec::new(),
            total: 0,
            limit,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let Some(prefix) = &mut self.prefix else {
            return self.append(bytes);
        };
        prefix.extend_from_slice(bytes);
        if let Some(at) = find(prefix, child::MARKER) {
            let rest = prefix.split_off(at + child::MARKER.len());
            self.prefix = None;
            self.append(&rest);
        } else if prefix.len() > PREFIX_LIMIT {
            let all = self.prefix.take().unwrap_or_default();
            self.append(&all);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > self.limit.saturating_mul(2).max(4096) {
            let cut = self.tail.len() - self.limit;
            self.tail.drain(..cut);
        }
    }

    fn finish(mut self) -> Captured {
        // No marker: the child never entered stampede; all of it is output.
        if let Some(prefix) = self.prefix.take() {
            let tail = std::mem::take(&mut self.tail);
            self.total = 0;
            self.append(&prefix);
            self.append(&tail);
        }
        let cut = self.tail.len().saturating_sub(self.limit);
        self.tail.drain(..cut);
        Captured {
            tail: self.tail,
            total: self.total,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A child that has not been reaped yet, and everything known about it.
struct Live {
    index: usize,
    function: &'static str,
    pid: u32,
    /// Until reaped, the guard in `Drop` kills and reaps the child.
    unreaped: bool,
    exit_watch: Option<OwnedFd>,
    channel: Option<OwnedFd>,
    request: Arc<Vec<u8>>,
    sent: usize,
    reader: FrameReader,
    stdout: Stream,
    stderr: Stream,
    spawned_ns: u64,
    deadline_ns: u64,
    ready_ns: Option<u64>,
    done: Option<(u64, u64, ChildResult)>,
    broken: Option<String>,
    timed_out: bool,
    exited: Option<(std::process::ExitStatus, u64)>,
    drain_until_ns: u64,
    /// Counted by the start gate / the checkpoint gate.
    at_start: bool,
    at_checkpoint: bool,
    /// When the child reached `checkpoint()`, and when it was let go.
    checkpoint_ns: Option<u64>,
    checkpoint_passed_ns: Option<u64>,
}

impl Live {
    fn poll_fds(&self, slot: usize, fds: &mut Vec<sys::PollFd>, owners: &mut Vec<(usize, Which)>) {
        if let Some(channel) = &self.channel {
            let mut events = sys::POLLIN;
            if self.sent < self.request.len() {
                events |= sys::POLLOUT;
            }
            fds.push(sys::poll_fd(channel.as_raw_fd(), events));
            owners.push((slot, Which::Channel));
        }
        for (stream, which) in [(&self.stdout, Which::Stdout), (&self.stderr, Which::Stderr)] {
            if let Some(fd) = &stream.fd {
                fds.push(sys::poll_fd(fd.as_raw_fd(), sys::POLLIN));
                owners.push((slot, which));
            }
        }
        if let (Some(watch), None) = (&self.exit_watch, &self.exited) {
            fds.push(sys::poll_fd(watch.as_raw_fd(), sys::POLLIN));
            owners.push((slot, Which::Exit));
        }
    }

    /// The next instant at which time alone requires attention.
    fn next_wake_ns(&self) -> u64 {
        match self.exited {
            Some(_) => self.drain_until_ns,
            None if self.timed_out => u64::MAX,
            None if self.exit_watch.is_none() => {
                (sys::monotonic_ns() + EXIT_POLL.as_nanos() as u64).min(self.deadline_ns)
            }
            None => self.deadline_ns,
        }
    }

    fn service(&mut self, which: Which, buf: &mut [u8]) {
        match which {
            Which::Channel => {
                self.send_request();
                self.read_channel(buf);
            }
            Which::Stdout => read_stream(&mut self.stdout, buf),
            Which::Stderr => read_stream(&mut self.stderr, buf),
            Which::Exit => self.check_exit(),
        }
    }

    fn send_request(&mut self) {
        let Some(channel) = &self.channel else { return };
        while self.sent < self.request.len() {
            match sys::write_some(channel.as_raw_fd(), &self.request[self.sent..]) {
                Ok(0) => return,
                Ok(n) => self.sent += n,
                // The child is gone; its exit tells the rest.
                Err(_) => {
                    self.sent = self.request.len();
                    return;
                }
            }
        }
    }

    fn read_channel(&mut self, buf: &mut [u8]) {
        let Some(fd) = self.channel.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        for _ in 0..64 {
            match sys::read_some(fd, buf) {
                Ok(None) => return,
                Ok(Some(0)) | Err(_) => {
                    self.channel = None;
                    if self.exit_watch.is_none() {
                        self.check_exit();
                    }
                    return;
                }
                Ok(Some(n)) => {
                    if self.broken.is_some() {
                        continue;
                    }
                    self.reader.push(&buf[..n]);
                    self.take_reports();
                }
            }
        }
    }

    fn take_reports(&mut self) {
        loop {
            match self.reader.next::<Report>() {
                Ok(None) => return,
                Ok(Some(Report::Ready { at_ns }))
                    if self.ready_ns.is_none() && self.done.is_none() =>
                {
                    self.ready_ns = Some(at_ns);
                }
                Ok(Some(Report::Checkpoint { at_ns }))
                    if self.checkpoint_ns.is_none() && self.done.is_none() =>
                {
                    self.checkpoint_ns = Some(at_ns);
                }
                Ok(Some(Report::Done {
                    started_ns,
                    checkpoint_ns,
                    finished_ns,
                    result,
                })) if self.done.is_none() => {
                    self.checkpoint_passed_ns = checkpoint_ns;
                    self.done = Some((started_ns, finished_ns, result));
                }
                Ok(Some(other)) => {
                    self.broken = Some(format!("the child sent an unexpected report: {other:?}"));
                    return;
                }
                Err(e) => {
                    self.broken = Some(format!("its result channel carried garbage: {e}"));
                    return;
                }
            }
        }
    }

    /// Looks whether the process has ended; if so, kills what is left of its
    /// group (before reaping, so the group id cannot be reused) and reaps it.
    fn check_exit(&mut self) {
        if self.exited.is_some() || !sys::has_exited(self.pid) {
            return;
        }
        sys::kill_group(self.pid);
        if !self.unreaped {
            return;
        }
        self.unreaped = false;
        if let Ok(status) = sys::wait_pid(self.pid) {
            let now = sys::monotonic_ns();
            self.exited = Some((status, now));
            self.drain_until_ns = now + DRAIN_GRACE.as_nanos() as u64;
        }
    }

    fn check_time(&mut self, now: u64) {
        if self.exited.is_none() {
            if self.exit_watch.is_none() {
                self.check_exit();
            }
            if now >= self.deadline_ns && !self.timed_out && self.exited.is_none() {
                self.timed_out = true;
                sys::kill_group(self.pid);
            }
        }
    }

    fn is_finished(&self) -> bool {
        let Some((_, exited_ns)) = self.exited else {
            return false;
        };
        let _ = exited_ns;
        let drained =
            self.channel.is_none() && self.stdout.fd.is_none() && self.stderr.fd.is_none();
        drained || sys::monotonic_ns() >= self.drain_until_ns
    }

    fn finish(mut self, start_ns: u64, timeout: Duration) -> Outcome<Vec<u8>> {
        let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(start_ns));
        let (status, ended_ns) = self.exited.take().expect("finished children have exited");
        let exit = exit_of(status);
        let pending = self.reader.pending();
        let (started, finished, status) = match self.done.take() {
            Some((started, finished, result)) => (
                Some(since(started)),
                Some(since(finished)),
                match result {
                    ChildResult::Returned(bytes) => Status::Returned(bytes),
                    ChildResult::Panicked { message, location } => {
                        Status::Panicked { message, location }
                    }
                    ChildResult::Failed(reason) => Status::Failed { reason },
                },
            ),
            None if self.timed_out => (None, None, Status::TimedOut { after: timeout }),
            None => {
                let status = match self.broken.take() {
                    Some(reason) => Status::Failed { reason },
                    None if pending > 0 && exit == Exit::Code(0) => Status::Failed {
                        reason: format!(
                            "its report was cut short ({pending} bytes of an incomplete frame)"
                        ),
                    },
                    None => Status::Crashed(exit),
                };
                (None, None, status)
            }
        };
        Outcome {
            index: self.index,
            pid: self.pid,
            function: self.function,
            status,
            stdout: std::mem::replace(&mut self.stdout, Stream::closed()).finish(),
            stderr: std::mem::replace(&mut self.stderr, Stream::closed()).finish(),
            timings: Timings {
                spawned: since(self.spawned_ns),
                ready: self.ready_ns.map(since),
                started,
                checkpoint: self.checkpoint_passed_ns.map(since),
                finished,
                ended: since(ended_ns),
            },
        }
    }
}

impl Stream {
    fn closed() -> Self {
        Self {
            fd: None,
            prefix: None,
            tail: Vec::new(),
            total: 0,
            limit: 0,
        }
    }
}

fn read_stream(stream: &mut Stream, buf: &mut [u8]) {
    for _ in 0..16 {
        let Some(fd) = &stream.fd else { return };
        match sys::read_some(fd.as_raw_fd(), buf) {
            Ok(None) => return,
            Ok(Some(0)) | Err(_) => stream.fd = None,
            Ok(Some(n)) => stream.push(&buf[..n]),
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(number)) => Exit::Signal {
            number,
            name: sys::signal_name(number),
        },
        (None, None) => Exit::Code(-1),
    }
}

/// The live children of a call. Dropping it (on success it is empty; on an
/// error or a panic it is the cleanup) kills and reaps each of them.
struct Children {
    live: Vec<Live>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.unreaped {
            sys::kill_group(self.pid);
            let _ = sys::wait_pid(self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_failures_name_the_limit_that_was_hit() {
        let nproc = limit_hit(&std::io::Error::from_raw_os_error(libc::EAGAIN)).unwrap();
        assert!(
            nproc.contains("RLIMIT_NPROC") && nproc.contains("Options::max_concurrent"),
            "{nproc}"
        );
        let nofile = limit_hit(&std::io::Error::from_raw_os_error(libc::EMFILE)).unwrap();
        assert!(
            nofile.contains("RLIMIT_NOFILE") && nofile.contains("ulimit -n"),
            "{nofile}"
        );
        assert_eq!(
            limit_hit(&std::io::Error::from_raw_os_error(libc::ENOENT)),
            None
        );
    }

    #[test]
    fn output_before_the_entry_marker_is_dropped_and_the_tail_is_kept() {
        let mut stream = Stream {
            limit: 8,
            ..Stream::closed()
        };
        stream.prefix = Some(Vec::new());
        stream.push(b"running 1 test\n\x1estampede: child ");
        stream.push(b"entered\x1e\nhello, world\n");
        let captured = stream.finish();
        assert_eq!(captured.as_bytes(), b", world\n");
        assert_eq!(captured.total_len(), 13);
    }

    #[test]
    fn without_a_marker_everything_is_output() {
        let mut stream = Stream {
            limit: 1024,
            ..Stream::closed()
        };
        stream.prefix = Some(Vec::new());
        stream.push(b"error while loading shared libraries\n");
        assert_eq!(
            stream.finish().to_string_lossy(),
            "error while loading shared libraries\n"
        );
    }
}
