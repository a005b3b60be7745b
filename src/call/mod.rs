//! The concurrent call and the batch: the front ends that turn typed
//! functions and arguments into the supervisor's jobs, and its raw outcomes
//! back into typed ones.

mod batch;
mod options;
mod plan;

pub use batch::{Batch, BatchOutcomes, Handle};
pub use options::Options;
pub(crate) use plan::{REPLAY_VAR, checked_name, decode_value, encode_args, replay_from_env};
