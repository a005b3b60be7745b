//! The messages between a parent and a child. Per child, in order: one
//! [`Request`] from the parent; then from the child `Ready`, any number of
//! `Checkpoint`s, and `Done`. Every report names the call it belongs to, so
//! a long-lived child (a worker) can run many: a worker answers its request
//! with `Ready`, then each [`Order::Call`] with one `Done`, until
//! [`Order::Stop`] or the end of its channel.

use serde::{Deserialize, Serialize};

/// What a child is for. Decides its death policy and what it runs.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Runs one call of a function and exits; dies with the parent.
    Call,
    /// Runs the function once per [`Order::Call`], until [`Order::Stop`];
    /// dies with the parent.
    Worker,
    /// Owns a service's server in its own session: starts it, reports
    /// [`KeeperReport::Ready`], and when its channel ends (the parent
    /// dropped it, exited or was killed) or it gets SIGTERM, stops the
    /// server and removes its directory. Never armed to die with the parent.
    Keeper,
}

/// What the parent sends a worker after its request, one per call.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Order {
    /// Run the function on these arguments; with `sample`, report what the
    /// process holds afterwards (for leak detection).
    Call {
        call: u64,
        #[serde(with = "byte_string")]
        args: Vec<u8>,
        sample: bool,
    },
    /// Exit now.
    Stop,
    /// A scheduled child's word to go on from the step it reported.
    Go,
}

/// How much a worker holds after a call: open descriptors, threads,
/// child processes, resident memory. Counts only, cheap to take; the parent
/// looks at what the descriptors and threads are when the counts say so.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    pub fds: u32,
    pub threads: u32,
    pub children: u32,
    pub rss_bytes: u64,
}

/// What a keeper runs, in a [`Request`] of role [`Role::Keeper`] (encoded in
/// its `args`).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct KeeperSpec {
    /// The service's name, for messages.
    pub service: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The server runs as this user and group (a keeper running as root
    /// starting a server that refuses root).
    pub user: Option<(u32, u32)>,
    /// The instance's private directory, removed when the keeper ends.
    pub dir: String,
    /// The server's stdout and stderr go to this file (inside `dir`).
    pub log: String,
    /// The file the keeper records its own and the server's pid and start
    /// time in, for the sweep of keepers that were killed.
    pub registry: String,
    pub ready: Readiness,
    pub ready_timeout_ms: u64,
    /// The signal that stops the server cleanly (PostgreSQL: SIGINT, its
    /// fast shutdown), then `stop_grace_ms` before SIGKILL.
    pub stop_signal: i32,
    pub stop_grace_ms: u64,
    /// Reported in `Ready`.
    pub addresses: Vec<String>,
    /// Keep running after the channel ends, until SIGTERM
    /// (`stampede-services up`).
    pub detached: bool,
    /// For a detached keeper: the process (pid, start time) whose end
    /// stops it too, so that killing that one process stops every service
    /// an `up` started.
    pub anchor: Option<(u32, u64)>,
}

/// How a keeper knows its server is ready.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// A TCP connection to this address succeeds.
    Tcp(String),
    /// This line appears in the server's log.
    LogLine(String),
}

/// What a keeper reports, in order: `Ready` or `Failed`; after `Ready`,
/// `Died` if the server ends on its own.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum KeeperReport {
    Ready {
        addresses: Vec<String>,
        server_pid: u32,
    },
    /// The server could not be started, exited during start, or was not
    /// ready in time; everything was removed.
    Failed { reason: String, log_tail: String },
    /// The server ended after it was ready; everything was removed.
    Died { reason: String, log_tail: String },
}

/// What the parent sends a child: the function to run and how.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request {
    pub protocol: u32,
    pub role: Role,
    /// This call's id, repeated in every report about it.
    pub call: u64,
    pub function: String,
    #[serde(with = "byte_string")]
    pub args: Vec<u8>,
    /// Whether to wait at the start barrier and at checkpoints.
    pub barrier: bool,
    /// Upper bound of the random delay after each release, in nanoseconds.
    pub jitter_max_ns: u64,
    pub seed: u64,
    /// A scheduled run: the child reports each step (its start,
    /// `stampede::step`, its return) and waits for the parent's `Go`.
    pub steps: bool,
}

impl Request {
    /// A concurrent call's child: run `function` once on `args`, waiting
    /// at the gate when `barrier`, with random delays after each release
    /// up to `jitter_max_ns` drawn from `seed`.
    pub(crate) fn call(
        call: u64,
        function: &str,
        args: Vec<u8>,
        barrier: bool,
        jitter_max_ns: u64,
        seed: u64,
        steps: bool,
    ) -> Request {
        Request {
            protocol: super::PROTOCOL,
            role: Role::Call,
            call,
            function: function.to_owned(),
            args,
            barrier,
            jitter_max_ns,
            seed,
            steps,
        }
    }

    /// A worker: run `function` for each call it is sent.
    pub(crate) fn worker(function: &str) -> Request {
        Request {
            protocol: super::PROTOCOL,
            role: Role::Worker,
            call: 0,
            function: function.to_owned(),
            args: Vec::new(),
            barrier: false,
            jitter_max_ns: 0,
            seed: 0,
            steps: false,
        }
    }

    /// A service's keeper: keep the server `spec` (an encoded `KeeperSpec`)
    /// describes.
    pub(crate) fn keeper(service: &str, spec: Vec<u8>) -> Request {
        Request {
            protocol: super::PROTOCOL,
            role: Role::Keeper,
            call: 0,
            function: service.to_owned(),
            args: spec,
            barrier: false,
            jitter_max_ns: 0,
            seed: 0,
            steps: false,
        }
    }
}

/// What a step says about the moves around it (the code from the child's
/// previous step to it, and from it to the next), for a search that skips
/// orders of moves that commute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StepKeys {
    /// The function's start, from the runtime.
    Start,
    /// The function's return, from the runtime.
    End,
    /// `stampede::step`: the moves may touch anything.
    Anything,
    /// `stampede::step_with`: these keys (rows, files: any names).
    Only(Vec<String>),
}

/// What a child reports.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Report {
    /// Arguments decoded; waiting at the start barrier.
    Ready { call: u64, at_ns: u64 },
    /// In a scheduled run: at step `name`, waiting for the parent's `Go`.
    Step {
        call: u64,
        name: String,
        /// What the step says the child touches around it.
        keys: StepKeys,
        at_ns: u64,
    },
    /// In a scheduled run: a thread of this child began to panic (its
    /// hook runs before the unwinding, which may take a while).
    Panicking { call: u64 },
    /// In a scheduled run: this child's PostgreSQL connection is backend
    /// `pid` on the server at `url` (`stampede::postgres_backend`).
    Backend { call: u64, url: String, pid: i32 },
    /// The function reached `stampede::checkpoint()` (`waits`) or
    /// `stampede::arrive()` for the `round`-th time (from 1).
    Checkpoint {
        call: u64,
        round: u32,
        at_ns: u64,
        waits: bool,
    },
    /// An operation of the function's history began or ended
    /// (`stampede::history::invoke`), as it happened: a child that dies in
    /// the middle leaves its operation indeterminate, not unknown.
    Operation { call: u64, event: OpEvent },
    /// The function ran (or could not).
    Done {
        call: u64,
        started_ns: u64,
        /// When the function went on from each checkpoint round it reached,
        /// in order: after the release (and its jitter) for
        /// `stampede::checkpoint()`, at once for `stampede::arrive()`.
        passed_ns: Vec<u64>,
        finished_ns: u64,
        result: ChildResult,
        /// A worker's sample after the call, when the order asked for one.
        sample: Option<Sample>,
    },
}

impl Report {
    /// The call this report is about.
    pub(crate) fn call(&self) -> u64 {
        match self {
            Report::Ready { call, .. }
            | Report::Checkpoint { call, .. }
            | Report::Step { call, .. }
            | Report::Backend { call, .. }
            | Report::Panicking { call }
            | Report::Operation { call, .. }
            | Report::Done { call, .. } => *call,
        }
    }
}

/// One end of an operation of a child's history; `id` pairs them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpEvent {
    Invoke {
        id: u64,
        name: String,
        /// The input, encoded, and as `Debug` prints it.
        #[serde(with = "byte_string")]
        input: Vec<u8>,
        input_text: String,
        at_ns: u64,
    },
    /// Ended with a value (`ok`).
    Ok {
        id: u64,
        #[serde(with = "byte_string")]
        output: Vec<u8>,
        output_text: String,
        at_ns: u64,
    },
    /// Ended without taking effect (`fail`).
    Fail { id: u64, error: String, at_ns: u64 },
    /// Dropped without an end: it may or may not have taken effect.
    Unknown { id: u64, at_ns: u64 },
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ChildResult {
    Returned(#[serde(with = "byte_string")] Vec<u8>),
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// stampede could not run the function in the child (unknown name,
    /// undecodable arguments, unencodable result).
    Failed(String),
}

/// Already-encoded values inside a message travel as one byte string (a
/// length and a copy), not as a sequence of `u8` elements.
mod byte_string {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::new();
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}
