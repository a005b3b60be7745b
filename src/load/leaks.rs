//! The leak detector: per worker process, how much it holds after its calls
//! (descriptors, threads, child processes, resident memory: counts the
//! worker takes itself), and a verdict that names what grows: the parent
//! looks at what the worker's descriptors and threads are (`/proc/<pid>`)
//! once after the warm-up and again when a count grows. The worker may be
//! running its next calls meanwhile (calls wait in its channel), so
//! the verdict names the lowest-numbered new descriptor: descriptors are
//! numbered lowest-free-first, so leaked ones come before the call's own.
//!
//! After a warm-up (its first calls, which may fill pools and caches), the
//! sample after the warm-up is the baseline. A count that grew at each of
//! the last `window` steps is a leak; a step is one sample, two or three
//! (a leak on every second or third call grows at each step of two or three).
//! Memory is judged by its slope in bytes per call over the samples since
//! the baseline, against a threshold, since allocators are noisy.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::protocol::{FIRST_CLOSED_FD, Sample};
use crate::sys;

/// What a worker's descriptors and threads are, read by the parent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Details {
    /// Each descriptor's target (a path, `socket:[inode]`, `pipe:[inode]`…).
    pub fds: Vec<String>,
    pub threads: Vec<String>,
}

impl Details {
    /// What worker `pid` holds now, stampede's own descriptors left out.
    pub(crate) fn of(pid: u32) -> Details {
        Details::from(pid, FIRST_CLOSED_FD)
    }

    /// What any process `pid` holds now, from descriptor `first` up.
    pub(crate) fn from(pid: u32, first: i32) -> Details {
        Details {
            fds: sys::descriptors_of(pid, first)
                .into_iter()
                .map(|(_, target)| target)
                .collect(),
            threads: sys::thread_names_of(pid),
        }
    }
}

/// What leaked.
///
/// ```no_run
/// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
/// use stampede::LeakKind;
/// let report = stampede::Load::new(50).run(fetch, 8080)?;
/// let threads = report.leaks().iter().filter(|l| l.kind() == LeakKind::Threads).count();
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeakKind {
    /// Open descriptors: sockets, pipes, files, event descriptors.
    Descriptors,
    /// Threads.
    Threads,
    /// Child processes.
    Processes,
    /// Resident memory.
    Memory,
}

/// A leak found in one worker.
///
/// ```no_run
/// # #[stampede::function] fn fetch(port: u16) -> u16 { 200 }
/// let report = stampede::Load::new(50).run(fetch, 8080)?;
/// for leak in report.leaks() {
///     // "worker 0 (pid 4711): +1 descriptor per call — socket TCP 127.0.0.1:40412 → …"
///     println!("{leak}");
///     if leak.kind() == stampede::LeakKind::Descriptors {
///         println!("{} per call, first after call {}", leak.per_call(), leak.first_after_call());
///     }
///     println!("worker {} (pid {}) holds: {}", leak.worker(), leak.pid(), leak.example());
/// }
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Leak {
    /// The worker's slot, or `None` for a process watched with
    /// [`Load::watch`](crate::Load::watch).
    pub(crate) worker: Option<usize>,
    pub(crate) pid: u32,
    pub(crate) kind: LeakKind,
    pub(crate) per_call: f64,
    pub(crate) example: String,
    pub(crate) first_after_call: u64,
    /// How much more the process held at its last sample than after the
    /// warm-up (bytes for memory), and after how many of its calls.
    pub(crate) by_end: (u64, u64),
}

impl Leak {
    /// The worker's slot, from 0; for a process watched with
    /// [`Load::watch`](crate::Load::watch) (a server), `usize::MAX`: see
    /// [`watched`](Leak::watched).
    pub fn worker(&self) -> usize {
        self.worker.unwrap_or(usize::MAX)
    }

    /// Whether the leak is in a process watched with
    /// [`Load::watch`](crate::Load::watch), not in a worker.
    pub fn watched(&self) -> bool {
        self.worker.is_none()
    }

    /// The process's id (the worker's, or the watched one's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What leaked.
    pub fn kind(&self) -> LeakKind {
        self.kind
    }

    /// How much it grew per call since the warm-up (bytes for memory).
    pub fn per_call(&self) -> f64 {
        self.per_call
    }

    /// What the leaked things are: a socket with its endpoints, a file with
    /// its path, a thread's name.
    pub fn example(&self) -> &str {
        &self.example
    }

    /// The index of the call after which it first grew: the run's call
    /// index (from 0, in the order calls were handed out), not a count of
    /// the worker's own calls.
    pub fn first_after_call(&self) -> u64 {
        self.first_after_call
    }

    /// How much more the process held at the end of the run than after the
    /// warm-up: descriptors, threads or child processes, or bytes of
    /// memory.
    pub fn grown_by_end(&self) -> u64 {
        self.by_end.0
    }
}

/// `worker 2 (pid 4711): +1 descriptor per call — socket TCP 127.0.0.1:40412
/// → 127.0.0.1:5432 ESTABLISHED, first after call 4`
impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.worker {
            Some(worker) => write!(f, "worker {worker} (pid {}): ", self.pid)?,
            None => write!(f, "watched process {}: ", self.pid)?,
        }
        match self.kind {
            LeakKind::Memory => write!(f, "+{} of memory per call", bytes(self.per_call))?,
            kind => {
                let unit = match kind {
                    LeakKind::Descriptors => "descriptor",
                    LeakKind::Threads => "thread",
                    _ => "child process",
                };
                let per_call = if (self.per_call - self.per_call.round()).abs() < 0.05 {
                    format!("{}", self.per_call.round())
                } else {
                    format!("{:.2}", self.per_call)
                };
                write!(f, "+{per_call} {unit} per call")?;
            }
        }
        if !self.example.is_empty() {
            write!(f, " — {}", self.example)?;
        }
        write!(f, "; first after the run's call {}", self.first_after_call)?;
        let (grown, calls) = self.by_end;
        let calls = match self.worker {
            Some(_) => format!("its {calls} calls after the warm-up"),
            None => format!("{calls} calls after the warm-up"),
        };
        match self.kind {
            LeakKind::Memory => {
                write!(f, "; {} more by the end, over {calls}", bytes(grown as f64))
            }
            _ => write!(f, "; {grown} more held by the end, over {calls}"),
        }
    }
}

fn bytes(n: f64) -> String {
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

/// The detector's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub warmup: u64,
    pub window: usize,
    pub memory_per_call: u64,
}

/// How many samples memory's slope needs before it is judged.
const MEMORY_SAMPLES: usize = 8;
/// The largest step, in samples, at which growth is looked for.
const MAX_STEP: usize = 3;

/// One worker process under watch.
pub(crate) struct Watch {
    worker: Option<usize>,
    pid: u32,
    rules: Rules,
    baseline: Option<(u64, Sample, Details)>,
    /// `(call index, counts)` of the samples since the baseline, baseline first.
    recent: VecDeque<(u64, [u64; 3])>,
    /// `(calls since baseline, rss)` for memory's slope.
    memory: Vec<(f64, f64)>,
    found: Vec<LeakKind>,
    /// The last sample's counts and memory, and calls since the baseline.
    last: Option<([u64; 3], u64, u64)>,
}

fn counts(sample: &Sample) -> [u64; 3] {
    [
        u64::from(sample.fds),
        u64::from(sample.threads),
        u64::from(sample.children),
    ]
}

const COUNTED: [LeakKind; 3] = [
    LeakKind::Descriptors,
    LeakKind::Threads,
    LeakKind::Processes,
];

impl Watch {
    pub(crate) fn new(worker: Option<usize>, pid: u32, rules: Rules) -> Self {
        Self {
            worker,
            pid,
            rules,
            baseline: None,
            recent: VecDeque::new(),
            memory: Vec::new(),
            found: Vec::new(),
            last: None,
        }
    }

    /// How much more of `kind` the process held at its last sample than at
    /// the baseline, and over how many calls since.
    pub(crate) fn grown(&self, kind: LeakKind) -> Option<(u64, u64)> {
        let (_, base, _) = self.baseline.as_ref()?;
        let (counts_now, rss, calls) = self.last?;
        let grown = match kind {
            LeakKind::Memory => rss.saturating_sub(base.rss_bytes),
            kind => {
                let i = COUNTED.iter().position(|k| *k == kind)?;
                counts_now[i].saturating_sub(counts(base)[i])
            }
        };
        Some((grown, calls))
    }

    /// Takes a last sample after the run, when nothing is in flight: it
    /// moves the end that [`grown`](Watch::grown) measures to, not the
    /// verdicts.
    pub(crate) fn settle(&mut self, sample: &Sample) {
        if let Some((_, _, calls)) = self.last {
            self.last = Some((counts(sample), sample.rss_bytes, calls));
        }
    }

    /// Whether this watch is of process `pid`.
    pub(crate) fn watches(&self, pid: u32) -> bool {
        self.pid == pid
    }

    /// How much a counted kind must have grown by the end to stay a leak:
    /// as many as the growths that declared it.
    pub(crate) fn confirms(&self, leak: &Leak) -> bool {
        leak.kind == LeakKind::Memory || leak.by_end.0 >= self.rules.window as u64
    }

    /// Brings each of `leaks` (this process's) up to its last sample.
    pub(crate) fn update(&self, leaks: &mut [Leak]) {
        for leak in leaks.iter_mut().filter(|l| l.pid == self.pid) {
            if let Some(by_end) = self.grown(leak.kind) {
                leak.by_end = by_end;
            }
        }
    }

    /// Takes the sample after the worker's `seq`-th call (from 0), the call
    /// of index `call`; returns the leaks this sample reveals. `inspect`
    /// reads what the worker holds, at the baseline and for a verdict.
    pub(crate) fn observe(
        &mut self,
        seq: u64,
        call: u64,
        sample: Sample,
        inspect: &dyn Fn() -> Details,
    ) -> Vec<Leak> {
        if seq + 1 < self.rules.warmup {
            return Vec::new();
        }
        let Some((base_seq, base, base_details)) = &self.baseline else {
            self.recent.push_back((call, counts(&sample)));
            self.memory.push((0.0, sample.rss_bytes as f64));
            self.baseline = Some((seq, sample, inspect()));
            return Vec::new();
        };
        let since = (seq - base_seq) as f64;
        self.last = Some((counts(&sample), sample.rss_bytes, seq - base_seq));
        self.memory.push((since, sample.rss_bytes as f64));
        self.recent.push_back((call, counts(&sample)));
        let keep = self.rules.window * MAX_STEP + 1;
        while self.recent.len() > keep + 1 {
            // Keep the baseline (front) for the first growth; drop the next.
            self.recent.remove(1);
        }
        let mut leaks = Vec::new();
        let mut details: Option<Details> = None;
        for (i, kind) in COUNTED.iter().enumerate() {
            let base_count = counts(base)[i];
            let now = counts(&sample)[i];
            // Growth back up to where the baseline was is no leak: a busy
            // server's threads fall after a burst and climb again.
            if self.found.contains(kind) || !self.grows(i) || now <= base_count {
                continue;
            }
            let now_details = details.get_or_insert_with(inspect);
            let first = self
                .recent
                .iter()
                .skip(1)
                .find(|(_, c)| c[i] > base_count)
                .map_or(call, |(c, _)| *c);
            self.found.push(*kind);
            leaks.push(Leak {
                worker: self.worker,
                pid: self.pid,
                kind: *kind,
                per_call: (now - base_count) as f64 / since.max(1.0),
                example: self.example(*kind, base_details, now_details),
                first_after_call: first,
                by_end: (now - base_count, seq - base_seq),
            });
        }
        if !self.found.contains(&LeakKind::Memory) && self.memory.len() >= MEMORY_SAMPLES {
            let slope = slope(&self.memory);
            if slope > self.rules.memory_per_call as f64 {
                self.found.push(LeakKind::Memory);
                leaks.push(Leak {
                    worker: self.worker,
                    pid: self.pid,
                    kind: LeakKind::Memory,
                    per_call: slope,
                    example: format!(
                        "resident memory {} after the warm-up, {} now",
                        bytes(base.rss_bytes as f64),
                        bytes(sample.rss_bytes as f64)
                    ),
                    first_after_call: call,
                    by_end: (
                        sample.rss_bytes.saturating_sub(base.rss_bytes),
                        seq - base_seq,
                    ),
                });
            }
        }
        leaks
    }

    /// Whether count `i` grew at each of the last `window` steps, for a
    /// step of one, two or three samples.
    fn grows(&self, i: usize) -> bool {
        let values: Vec<u64> = self.recent.iter().map(|(_, c)| c[i]).collect();
        let n = values.len();
        (1..=MAX_STEP).any(|step| {
            n > self.rules.window * step
                && (0..self.rules.window)
                    .all(|j| values[n - 1 - j * step] > values[n - 1 - (j + 1) * step])
        })
    }

    /// What the new things are: the first new descriptor, named; the new
    /// threads' names.
    fn example(&self, kind: LeakKind, base: &Details, now: &Details) -> String {
        match kind {
            LeakKind::Descriptors => {
                let mut old: HashMap<&str, usize> = HashMap::new();
                for target in &base.fds {
                    *old.entry(kind_of(target)).or_default() += 1;
                }
                let mut new: Vec<&String> = Vec::new();
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for target in &now.fds {
                    let k = kind_of(target);
                    let count = seen.entry(k).or_default();
                    *count += 1;
                    if *count > old.get(k).copied().unwrap_or(0) {
                        new.push(target);
                    }
                }
                describe_new(self.pid, &new)
            }
            LeakKind::Threads => {
                let mut old = base.threads.clone();
                let mut new = Vec::new();
                for name in &now.threads {
                    match old.iter().position(|n| n == name) {
                        Some(at) => {
                            old.swap_remove(at);
                        }
                        None => new.push(name.clone()),
                    }
                }
                match new.last() {
                    Some(name) => format!("thread '{name}'"),
                    None => String::new(),
                }
            }
            _ => String::new(),
        }
    }
}

/// The kind of a descriptor's target: `socket`, `pipe`, `anon_inode:[eventfd]`, or a file.
fn kind_of(target: &str) -> &str {
    if let Some(at) = target.find(":[") {
        if target.starts_with("anon_inode") {
            return target;
        }
        return &target[..at];
    }
    "file"
}

/// The new descriptors by kind, sockets first, each kind with its count
/// and its first one named: `1 socket TCP … → 127.0.0.1:5432 (PostgreSQL)
/// ESTABLISHED, 2 × anon_inode:[eventfd]`.
fn describe_new(pid: u32, new: &[&String]) -> String {
    let mut kinds: Vec<(&str, usize, &String)> = Vec::new();
    for target in new {
        let kind = kind_of(target);
        match kinds.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, count, _)) => *count += 1,
            None => kinds.push((kind, 1, target)),
        }
    }
    // Sockets say the most about a leak, then files; event descriptors
    // and pipes come with clients' runtimes.
    let rank = |kind: &str| match kind {
        "socket" => 0,
        "file" => 1,
        "pipe" => 3,
        _ => 2,
    };
    kinds.sort_by_key(|(kind, _, _)| rank(kind));
    kinds
        .iter()
        .map(|(_, count, first)| match count {
            1 => describe(pid, first),
            n => format!("{n} × {}", describe(pid, first)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The service usually behind a TCP port, for a reader.
fn well_known(port: u16) -> Option<&'static str> {
    Some(match port {
        5432 => "PostgreSQL",
        6379 => "Redis",
        3306 => "MySQL",
        27017 => "MongoDB",
        11211 => "memcached",
        9092 => "Kafka",
        5672 => "RabbitMQ",
        80 | 8080 => "HTTP",
        443 => "HTTPS",
        _ => return None,
    })
}

/// `endpoint` with the service behind a well-known remote port named:
/// `TCP a → 127.0.0.1:5432 (PostgreSQL) ESTABLISHED`.
fn name_service(endpoint: String) -> String {
    let Some((local, rest)) = endpoint.split_once(" → ") else {
        return endpoint;
    };
    let (remote, state) = rest.split_once(' ').unwrap_or((rest, ""));
    let service = crate::addresses::what_is(remote).or_else(|| {
        remote
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .and_then(well_known)
            .map(str::to_owned)
    });
    match service {
        Some(service) if state.is_empty() => format!("{local} → {remote} ({service})"),
        Some(service) => format!("{local} → {remote} ({service}) {state}"),
        None => endpoint,
    }
}

/// A descriptor as a reader wants it: a socket with its endpoints, a file
/// with its path.
fn describe(pid: u32, target: &str) -> String {
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse::<u64>().ok())
    {
        return match sys::socket_endpoint(pid, inode) {
            Some(endpoint) => format!("socket {}", name_service(endpoint)),
            None => format!("socket (inode {inode})"),
        };
    }
    if target.starts_with("pipe:") {
        return format!("pipe {target}");
    }
    if target.starts_with("anon_inode:") {
        return target.to_owned();
    }
    format!("file {target}")
}

/// The least-squares slope of `points`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        warmup: 3,
        window: 3,
        memory_per_call: 1 << 20,
    };

    fn sample(fds: usize, threads: usize) -> Sample {
        Sample {
            fds: fds as u32,
            threads: threads as u32,
            children: 0,
            rss_bytes: 1 << 20,
        }
    }

    fn details(fds: usize, threads: &[&str]) -> Details {
        Details {
            fds: (0..fds).map(|i| format!("/tmp/f{i}")).collect(),
            threads: threads.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn run(watch: &mut Watch, fds: impl Fn(u64) -> usize, calls: u64) -> Vec<Leak> {
        (0..calls)
            .flat_map(|seq| {
                let n = fds(seq);
                watch.observe(seq, seq, sample(n, 1), &|| details(n, &["main"]))
            })
            .collect()
    }

    #[test]
    fn a_descriptor_per_call_is_found_three_calls_after_the_warmup() {
        let mut watch = Watch::new(Some(2), 4711, RULES);
        let leaks: Vec<(u64, LeakKind)> = run(&mut watch, |seq| 5 + seq as usize, 20)
            .into_iter()
            .map(|l| (l.first_after_call, l.kind))
            .collect();
        assert_eq!(leaks, [(3, LeakKind::Descriptors)]);
        let mut again = Watch::new(Some(2), 4711, RULES);
        let leak = run(&mut again, |seq| 5 + seq as usize, 6).pop().unwrap();
        assert_eq!(leak.per_call, 1.0);
        assert_eq!(
            leak.to_string(),
            "worker 2 (pid 4711): +1 descriptor per call — 3 × file /tmp/f7; first after the \
             run's call 3; 3 more held by the end, over its 3 calls after the warm-up"
        );
    }

    #[test]
    fn a_leak_is_brought_up_to_the_end_of_the_run() {
        let mut watch = Watch::new(Some(2), 4711, RULES);
        let mut leaks = run(&mut watch, |seq| 5 + seq as usize, 20);
        assert_eq!(leaks[0].grown_by_end(), 3, "as found, after call 5");
        watch.update(&mut leaks);
        // The baseline (after call 2) held 7; the last sample (call 19) 24.
        assert_eq!(leaks[0].by_end, (17, 17));
        assert!(
            leaks[0]
                .to_string()
                .ends_with("; 17 more held by the end, over its 17 calls after the warm-up"),
            "{}",
            leaks[0]
        );
        // Another process's leaks are left as they are.
        let mut other = leaks.clone();
        other[0].pid = 1;
        Watch::new(Some(0), 4711, RULES).update(&mut other);
        assert_eq!(other[0].by_end, (17, 17));
    }

    #[test]
    fn a_leak_stays_one_only_if_the_end_holds_a_window_more_than_the_baseline() {
        let mut watch = Watch::new(None, 4711, RULES);
        let found = run(&mut watch, |seq| 5 + seq as usize, 6);
        assert_eq!(found.len(), 1);
        // The baseline (after call 2) held 7 descriptors; after the run,
        // with nothing in flight, the process holds `held`.
        let verdict = |held: usize| {
            let mut watch = Watch::new(None, 4711, RULES);
            let mut leaks = run(&mut watch, |seq| 5 + seq as usize, 6);
            watch.settle(&sample(held, 1));
            watch.update(&mut leaks);
            (leaks[0].by_end.0, watch.confirms(&leaks[0]))
        };
        assert_eq!(
            verdict(7),
            (0, false),
            "back to the baseline: calls in flight"
        );
        assert_eq!(verdict(9), (2, false), "one short of the window");
        assert_eq!(verdict(10), (3, true), "the window exactly");
        // A settle before any baseline changes nothing.
        let mut fresh = Watch::new(None, 1, RULES);
        fresh.settle(&sample(50, 1));
        assert_eq!(fresh.grown(LeakKind::Descriptors), None);
    }

    #[test]
    fn every_kind_of_new_descriptor_is_named_sockets_first() {
        let new = [
            "anon_inode:[eventpoll]".to_owned(),
            "anon_inode:[eventfd]".to_owned(),
            "anon_inode:[eventfd]".to_owned(),
            "socket:[999999999]".to_owned(),
            "/tmp/log".to_owned(),
        ];
        let refs: Vec<&String> = new.iter().collect();
        assert_eq!(
            describe_new(u32::MAX, &refs),
            "socket (inode 999999999), file /tmp/log, anon_inode:[eventpoll], \
             2 × anon_inode:[eventfd]"
        );
    }

    #[test]
    fn a_well_known_remote_port_names_its_service() {
        assert_eq!(
            name_service("TCP 127.0.0.1:40412 → 127.0.0.1:5432 ESTABLISHED".into()),
            "TCP 127.0.0.1:40412 → 127.0.0.1:5432 (PostgreSQL) ESTABLISHED"
        );
        assert_eq!(
            name_service("TCP [::1]:40412 → [::1]:6379 CLOSE_WAIT".into()),
            "TCP [::1]:40412 → [::1]:6379 (Redis) CLOSE_WAIT"
        );
        let unknown = "TCP 127.0.0.1:40412 → 127.0.0.1:37119 ESTABLISHED";
        assert_eq!(name_service(unknown.into()), unknown);
        // A server this process started, on a port of its own.
        crate::addresses::remember("127.0.0.1:37120", "PostgreSQL of services::Postgres");
        assert_eq!(
            name_service("TCP 127.0.0.1:40412 → 127.0.0.1:37120 ESTABLISHED".into()),
            "TCP 127.0.0.1:40412 → 127.0.0.1:37120 (PostgreSQL of services::Postgres) ESTABLISHED"
        );
        assert_eq!(name_service("unix /run/x".into()), "unix /run/x");
    }

    #[test]
    fn a_leak_is_declared_at_the_window_th_growth_not_before() {
        // Warm-up 3: the baseline is the sample after call 2; the window of
        // 3 growths is complete after call 5, and the verdict comes then.
        let mut watch = Watch::new(Some(0), 1, RULES);
        let declared: Vec<u64> = (0..12u64)
            .filter(|&seq| {
                let n = 5 + seq as usize;
                !watch
                    .observe(seq, seq, sample(n, 1), &|| details(n, &["main"]))
                    .is_empty()
            })
            .collect();
        assert_eq!(declared, [2 + RULES.window as u64]);
        // Two growths and then a flat count: no leak at all.
        let mut short = Watch::new(Some(0), 1, RULES);
        assert!(run(&mut short, |seq| 5 + seq.min(4) as usize, 30).is_empty());
    }

    #[test]
    fn a_count_that_climbs_back_below_its_baseline_is_no_leak() {
        // The baseline (after call 2) caught a burst of 40; the count fell
        // to 10, then climbs by one per call, still under 40 at the end.
        let mut watch = Watch::new(Some(0), 1, RULES);
        let fds = |seq: u64| match seq {
            0..=1 => 5,
            2 => 40,
            s => 10 + s as usize,
        };
        assert!(run(&mut watch, fds, 25).is_empty());
        // Past the baseline, it is one.
        let mut watch = Watch::new(Some(0), 1, RULES);
        let leaks = run(&mut watch, fds, 35);
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        assert_eq!(leaks[0].first_after_call, 31, "the first sample above 40");
    }

    #[test]
    fn a_descriptor_every_second_call_is_found_too() {
        let mut watch = Watch::new(Some(0), 1, RULES);
        let leaks = run(&mut watch, |seq| 5 + seq as usize / 2, 12);
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        assert!((leaks[0].per_call - 0.5).abs() < 0.2, "{leaks:?}");
    }

    #[test]
    fn a_pool_that_fills_during_the_warmup_then_holds_is_no_leak() {
        let mut watch = Watch::new(Some(0), 1, RULES);
        assert!(run(&mut watch, |seq| 5 + seq.min(2) as usize, 40).is_empty());
        let mut noisy = Watch::new(Some(0), 1, RULES);
        assert!(run(&mut noisy, |seq| 5 + (seq % 2) as usize, 40).is_empty());
    }

    #[test]
    fn threads_are_named_and_memory_is_judged_by_its_slope() {
        let mut watch = Watch::new(Some(0), 1, RULES);
        let leaks: Vec<Leak> = (0..10u64)
            .flat_map(|seq| {
                let mut s = sample(5, 1 + seq as usize);
                s.rss_bytes = (1 << 20) + seq * (4 << 20);
                let names: Vec<&str> = std::iter::once("main")
                    .chain(std::iter::repeat_n("leaky", seq as usize))
                    .collect();
                watch.observe(seq, seq, s, &|| details(5, &names))
            })
            .collect();
        let kinds: Vec<LeakKind> = leaks.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [LeakKind::Threads, LeakKind::Memory], "{leaks:?}");
        assert!(
            leaks[0].to_string().contains("thread 'leaky'"),
            "{}",
            leaks[0]
        );
        assert!(
            leaks[1].to_string().contains("4.0 MiB of memory per call"),
            "{}",
            leaks[1]
        );
    }
}
