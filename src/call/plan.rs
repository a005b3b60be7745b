//! From a front end's request to the supervisor's jobs, and back: the name
//! check, the encoding of arguments and requests, and the decoding of
//! returned values.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Options;
use crate::error::{Error, Result};
use crate::outcome::{Outcome, Status};
use crate::parent::{self, Job, Release, Settings};
use crate::protocol::{self, Request};
use crate::registry;

/// Ids of calls, unique in this process.
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// One run of children with one set of options.
pub(crate) struct Plan<'a> {
    options: &'a Options,
    seed: u64,
    call: u64,
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
        Ok(Plan {
            options,
            seed: options.seed.unwrap_or_else(crate::seed::fresh),
            call: NEXT_CALL.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The job that runs `function` on already-encoded `args`.
    pub(crate) fn job(&self, function: &'static str, args: Arc<Vec<u8>>) -> Result<Job> {
        let request = Request::call(
            self.call,
            function,
            Arc::unwrap_or_clone(args),
            self.options.barrier,
            u64::try_from(self.options.jitter.as_nanos()).unwrap_or(u64::MAX),
            self.seed,
        );
        let request = protocol::frame(&request)
            .map(Arc::new)
            .map_err(|message| Error::Encode { function, message })?;
        Ok(Job { function, request })
    }

    /// Runs `count` children over `jobs` (child `i` runs `jobs[i % len]`).
    pub(crate) fn run(&self, jobs: &[Job], count: usize) -> Result<parent::Run> {
        let o = self.options;
        let settings = Settings {
            timeout: o.timeout,
            barrier: o.barrier,
            env: o.env.clone(),
            max_concurrent: o.max_concurrent,
            capture_limit: o.capture_limit,
            result_limit: o.result_limit,
            release: o.release,
            on_checkpoint: o.on_checkpoint.clone(),
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
