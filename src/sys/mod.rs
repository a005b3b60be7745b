//! Every OS call and every `unsafe` block of stampede, one file per platform.
//!
//! The rest of the crate is `#![deny(unsafe_code)]`; this module is the one
//! exception, and each unsafe block says why it is sound.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
compile_error!("stampede supports Unix (Linux first); other platforms are not implemented yet");
