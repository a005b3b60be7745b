//! Unix implementation. Linux-only pieces (`clone` with a pidfd, `prctl`,
//! `close_range`, `/proc`) are behind `cfg(target_os = "linux")` with a
//! portable fallback.

mod affinity;
mod child_side;
mod fd;
mod files;
mod gate;
mod limits;
mod misc;
mod process;
mod procfs;
mod service;
mod spawn;

pub(crate) use affinity::*;
pub(crate) use child_side::*;
pub(crate) use fd::*;
pub(crate) use files::*;
pub(crate) use gate::*;
pub(crate) use limits::*;
pub(crate) use misc::*;
pub(crate) use process::*;
pub(crate) use procfs::*;
pub(crate) use service::*;
pub(crate) use spawn::*;

use std::io;

/// `Ok(ret)` unless `ret` is -1, then the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
