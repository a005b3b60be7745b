//! Every OS call and every `unsafe` block of stampede, one folder per platform.
//!
//! The rest of the crate is `#![deny(unsafe_code)]`; this module is the one
//! exception, and each unsafe block says why it is sound. It takes numbers,
//! not meanings: which descriptor goes where in a child, and what each
//! child is for, belong to `protocol` and to the two sides.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
compile_error!("stampede supports Unix (Linux first); other platforms are not implemented yet");
