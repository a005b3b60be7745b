//! From a front end's request to the supervisor's jobs, and back: the name
//! check, the encoding of arguments and requests, and the decoding of
//! returned values.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Options;
use crate::error::{Error, Result};
use crate::outcome::Schedule;
use crate::outcome::{Outcome, Status};
use crate::parent::{self, Job, Release, Scheduling, Settings};
use crate::protocol::{self, Request};
use crate::registry;

/// Ids of calls, unique in this process.
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// One run of children with one set of options.
pub(crate) struct Plan<'a> {
    options: &'a Options,
    seed: u64,
    call: u64,
    /// A scheduled run's recording to replay (`None`: a strategy picks),
    /// or `None` for a run that is not scheduled.
    scheduled: Option<Option<Schedule>>,
    /// Whether that recording came from [`REPLAY_VAR`].
    replay_from_env: bool,
}

/// The variable whose schedule a scheduled run replays.
pub(crate) const REPLAY_VAR: &str = "STAMPEDE_REPLAY";

/// The schedule [`REPLAY_VAR`] holds, if it is set and not blank.
pub(crate) fn replay_from_env() -> Option<String> {
    std::env::var(REPLAY_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Where the schedule to replay came from, for an error about it.
fn replay_source(from_env: bool) -> String {
    if from_env {
        format!("the schedule to replay (from {REPLAY_VAR})")
    } else {
        "the schedule to replay".to_owned()
    }
}

/// What to do about a schedule from [`REPLAY_VAR`] that cannot run here.
fn replay_advice(from_env: bool) -> String {
    if from_env {
        format!(
            "; unset {REPLAY_VAR} to run the test's own strategy, or set it to a schedule this \
             test printed"
        )
    } else {
        String::new()
    }
}

impl<'a> Plan<'a> {
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for options that could never run a child.
    pub(crate) fn new(options: &'a Options) -> Result<Plan<'a>> {
        if options.max_concurrent == Some(0) {
            return Err(Error::InvalidOptions(
                "max_concurrent(0) would never start a child; use at least 1".into(),
            ));
        }
        if let Some(problem) = options.release.problem() {
            return Err(Error::InvalidOptions(problem));
        }
        if !options.barrier {
            let needs = if options.on_checkpoint.is_some() {
                Some("on_checkpoint")
            } else if options.release != Release::all() {
                Some("checkpoint_release")
            } else {
                None
            };
            if let Some(option) = needs {
                return Err(Error::InvalidOptions(format!(
                    "{option} needs the barrier: with barrier(false) children pass \
                     checkpoints without waiting, so there is no release to act on"
                )));
            }
        }
        let mut from_env = false;
        let scheduled = if options.strategy.is_some() || options.replay.is_some() {
            let refuse = |option: &str| {
                Err(Error::InvalidOptions(format!(
                    "{option} cannot go with a scheduled run (`strategy`, `replay`): the \
                     parent starts every child at once and lets one go at a time"
                )))
            };
            if options.max_concurrent.is_some() {
                return refuse("max_concurrent");
            }
            if options.on_checkpoint.is_some() || options.release != Release::all() {
                return refuse("on_checkpoint or checkpoint_release");
            }
            from_env = options.replay.is_none();
            let text = options.replay.clone().or_else(replay_from_env);
            from_env &= text.is_some();
            let replay = text
                .map(|text| {
                    text.parse::<Schedule>().map_err(|e| {
                        Error::InvalidOptions(format!(
                            "{}: {e}{}",
                            replay_source(from_env),
                            replay_advice(from_env)
                        ))
                    })
                })
                .transpose()?;
            Some(replay)
        } else {
            None
        };
        Ok(Plan {
            options,
            seed: options.seed.unwrap_or_else(crate::seed::fresh),
            call: NEXT_CALL.fetch_add(1, Ordering::Relaxed),
            scheduled,
            replay_from_env: from_env,
        })
    }

    /// The job that runs `function` on already-encoded `args`.
    pub(crate) fn job(&self, function: &'static str, args: Arc<Vec<u8>>) -> Result<Job> {
        let request = Request::call(
            self.call,
            function,
            Arc::unwrap_or_clone(args),
            self.options.barrier && self.scheduled.is_none(),
            u64::try_from(self.options.jitter.as_nanos()).unwrap_or(u64::MAX),
            self.seed,
            self.scheduled.is_some(),
        );
        let request = protocol::frame(&request)
            .map(Arc::new)
            .map_err(|message| Error::Encode { function, message })?;
        Ok(Job { function, request })
    }

    /// How many children a call asking for `asked` runs: a schedule from
    /// [`REPLAY_VAR`] with fewer (a hunt's shrunk schedule, printed to
    /// rerun the test unchanged) runs as many as it has.
    pub(crate) fn children(&self, asked: usize) -> usize {
        match &self.scheduled {
            Some(Some(replay)) if self.replay_from_env && replay.children() < asked => {
                replay.children()
            }
            _ => asked,
        }
    }

    /// Runs `count` children over `jobs` (child `i` runs `jobs[i % len]`).
    pub(crate) fn run(&self, jobs: &[Job], count: usize) -> Result<parent::Run> {
        let o = self.options;
        let scheduling = match &self.scheduled {
            None => None,
            Some(None) => match &o.strategy {
                Some(strategy) => Some(strategy.scheduling(self.seed, count)?),
                None => Some(Scheduling::Random { seed: self.seed }),
            },
            Some(Some(replay)) if replay.children() != count => {
                return Err(Error::InvalidOptions(format!(
                    "{} is for {} children, this call has {count}{}",
                    replay_source(self.replay_from_env),
                    replay.children(),
                    replay_advice(self.replay_from_env)
                )));
            }
            Some(Some(replay)) => Some(Scheduling::Replay(replay.passages().to_vec())),
        };
        let settings = Settings {
            timeout: o.timeout,
            barrier: o.barrier,
            env: o.env.clone(),
            max_concurrent: o.max_concurrent,
            capture_limit: o.capture_limit,
            result_limit: o.result_limit,
            release: o.release,
            on_checkpoint: o.on_checkpoint.clone(),
            scheduling,
        };
        parent::run(&settings, jobs, count, self.call)
    }

    /// The jitter seed, when jitter was on (the only time it matters).
    pub(crate) fn reported_seed(&self) -> Option<u64> {
        (!self.options.jitter.is_zero()).then_some(self.seed)
    }
}

/// The registry name of `f`, or the error that says how to register it.
pub(crate) fn checked_name<F>(f: &F) -> Result<&'static str> {
    let name = registry::name_of(f);
    if registry::is_registered(name) {
        Ok(name)
    } else {
        Err(Error::NotRegistered { name })
    }
}

/// Encodes a call's arguments.
pub(crate) fn encode_args<A: Serialize>(function: &'static str, args: &A) -> Result<Arc<Vec<u8>>> {
    protocol::encode(args)
        .map(Arc::new)
        .map_err(|message| Error::Encode { function, message })
}

/// Decodes a returned value as `R`; a value that does not decode is a failure.
pub(crate) fn decode_value<R: DeserializeOwned>(bytes: &[u8]) -> Status<R> {
    match protocol::decode::<R>(bytes) {
        Ok(value) => Status::Returned(value),
        Err(e) => Status::Failed {
            reason: format!(
                "could not decode the returned value as `{}`: {e}",
                std::any::type_name::<R>()
            ),
        },
    }
}

/// [`decode_value`] over a whole outcome.
pub(crate) fn decode_returned<R: DeserializeOwned>(raw: Outcome<Vec<u8>>) -> Outcome<R> {
    raw.map(|bytes| decode_value(&bytes))
}
