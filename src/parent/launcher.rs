//! Starting one child: what every child of a call shares (executable,
//! arguments, environment, `/dev/null`), prepared once, and the per-child
//! channel and output pipes.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use std::sync::Arc;

use super::conversation::Conversation;
use super::limits;
use super::process::ChildProcess;
use crate::entry;
use crate::error::{Error, Result};
use crate::protocol::{self, CHANNEL_FD, FIRST_CLOSED_FD, GATE_FD, Role};
use crate::sys;

pub(crate) struct Launcher {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    dev_null: OwnedFd,
    nofile: Option<(u64, u64)>,
    /// Children enter through `stampede::init()`, not a test binary's
    /// dispatcher: nothing of libtest comes before their entry marker.
    through_init: bool,
}

/// A child just started, with the parent's ends of its descriptors.
pub(crate) struct Started {
    pub process: ChildProcess,
    pub channel: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A child started and ready to talk to: its process, the conversation that
/// begins with its first frame, and its output pipes, non-blocking.
pub(crate) struct Opened {
    pub process: ChildProcess,
    pub conversation: Conversation,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub spawned_ns: u64,
}

fn c_string(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|e| Error::Io {
        context: "encoding the child's command line",
        source: e.into(),
    })
}

impl Launcher {
    /// Prepares what every child shares.
    ///
    /// # Errors
    ///
    /// [`Error::MissingEntry`] when this binary has no door for children;
    /// [`Error::Io`] when the running executable cannot be re-run.
    pub(crate) fn new(
        extra_env: &[(OsString, OsString)],
        nofile: Option<(u64, u64)>,
    ) -> Result<Launcher> {
        let entry_args = entry::entry_args().ok_or(Error::MissingEntry)?;
        let through_init = entry_args.is_empty();
        if let Some(loader) = sys::started_through_loader() {
            return Err(Error::Io {
                context: "re-running this program",
                source: std::io::Error::other(format!(
                    "this process was started through the dynamic loader ({}), so its running \
                     image is the loader, not the program; run the program directly",
                    loader.display()
                )),
            });
        }
        let io = |context| move |source| Error::Io { context, source };
        let exe = sys::current_exe().map_err(io("finding the running executable"))?;
        let arg0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| "stampede-child".into());
        let mut argv = vec![c_string(&arg0)?];
        for arg in &entry_args {
            argv.push(c_string(arg)?);
        }
        let mut vars: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os()
            .filter(|(k, _)| k != protocol::CHILD_VAR)
            .collect();
        for (k, v) in extra_env {
            vars.insert(k.clone(), v.clone());
        }
        let env = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let dev_null = sys::dev_null()
            .and_then(|fd| sys::dup_at_least(&fd, FIRST_CLOSED_FD))
            .map_err(io("opening /dev/null"))?;
        Ok(Launcher {
            exe: c_string(exe.as_os_str())?,
            argv,
            env,
            dev_null,
            nofile,
            through_init,
        })
    }

    /// Whether children enter through `stampede::init()`.
    pub(crate) fn through_init(&self) -> bool {
        self.through_init
    }

    /// Starts child `index` with `gate` as its gate and `first` as the first
    /// frame on its channel. A failure names the limit behind it, when one
    /// is; a child started before the failure is killed and reaped.
    pub(crate) fn open(
        &self,
        index: usize,
        gate: Option<RawFd>,
        first: Arc<Vec<u8>>,
        result_limit: usize,
    ) -> Result<Opened> {
        let fail = |source: std::io::Error| Error::Spawn {
            child: index,
            limit: limits::limit_hit(&source),
            source,
        };
        let spawned_ns = sys::monotonic_ns();
        let started = self.spawn(index, gate).map_err(fail)?;
        // From here on `process` kills and reaps the child on any error.
        let process = started.process;
        let conversation = Conversation::new(started.channel, first, result_limit).map_err(fail)?;
        for fd in [&started.stdout, &started.stderr] {
            sys::set_nonblocking(fd.as_raw_fd()).map_err(fail)?;
        }
        Ok(Opened {
            process,
            conversation,
            stdout: started.stdout,
            stderr: started.stderr,
            spawned_ns,
        })
    }

    /// Starts child `index`, handing it `gate` as its gate (`/dev/null`
    /// for a child that waits at none: a worker).
    pub(crate) fn spawn(&self, index: usize, gate: Option<RawFd>) -> std::io::Result<Started> {
        let gate = gate.unwrap_or(self.dev_null.as_raw_fd());
        let high = |fd: OwnedFd| sys::dup_at_least(&fd, FIRST_CLOSED_FD);
        let (channel, theirs) = sys::socket_pair()?;
        let theirs = high(theirs)?;
        let (stdout, out_w) = sys::pipe()?;
        let out_w = high(out_w)?;
        let (stderr, err_w) = sys::pipe()?;
        let err_w = high(err_w)?;
        let fds = [
            (self.dev_null.as_raw_fd(), 0),
            (out_w.as_raw_fd(), 1),
            (err_w.as_raw_fd(), 2),
            (theirs.as_raw_fd(), CHANNEL_FD),
            (gate, GATE_FD),
        ];
        let process = self.start(index, Role::Call, &fds)?;
        Ok(Started {
            process,
            channel,
            stdout,
            stderr,
        })
    }

    /// Starts a service's keeper: in its own session, its stdout and stderr
    /// going to `output` (a file: a keeper outlives the parent's pipes), no
    /// gate. Returns it and the parent's end of its channel, whose end is
    /// the keeper's word to stop.
    pub(crate) fn spawn_keeper(
        &self,
        output: &OwnedFd,
    ) -> std::io::Result<(ChildProcess, OwnedFd)> {
        let high = |fd: &OwnedFd| sys::dup_at_least(fd, FIRST_CLOSED_FD);
        let (channel, theirs) = sys::socket_pair()?;
        let theirs = high(&theirs)?;
        let output = high(output)?;
        let fds = [
            (self.dev_null.as_raw_fd(), 0),
            (output.as_raw_fd(), 1),
            (output.as_raw_fd(), 2),
            (theirs.as_raw_fd(), CHANNEL_FD),
        ];
        Ok((self.start(0, Role::Keeper, &fds)?, channel))
    }

    fn start(
        &self,
        index: usize,
        role: Role,
        fds: &[(RawFd, RawFd)],
    ) -> std::io::Result<ChildProcess> {
        let child_var = CString::new(format!(
            "{}={}",
            protocol::CHILD_VAR,
            protocol::child_var(sys::getpid(), index, role)
        ))
        .expect("no NUL in the child variable");
        let spawned = sys::spawn(&sys::Command {
            exe: &self.exe,
            argv: &self.argv,
            env_first: &child_var,
            env: &self.env,
            fds,
            close_from: FIRST_CLOSED_FD,
            nofile: self.nofile,
            new_session: role == Role::Keeper,
        })?;
        Ok(ChildProcess::new(spawned))
    }
}
