//! Everything that runs in the re-executed process: how it knows it is a
//! child, what it does at entry, and the dispatch on its role.
//!
//! At entry, before any user code: die with the parent (and take the whole
//! process group along), close stray descriptors, take stampede's own
//! (close-on-exec, so programs the user's code starts do not inherit them),
//! write the output marker, read the request, and serve it by role.

mod call;
mod checkpoint;
pub(crate) mod history;
mod keeper;
mod worker;

use std::fs::File;
use std::io::{self, Write};
use std::sync::OnceLock;

pub(crate) use checkpoint::{arrive, checkpoint, postgres_backend, step, step_with};

use crate::protocol::{self, FrameReader, Report, Request, Role};
use crate::{entry, sys};

/// Who this child is.
struct Context {
    parent: u32,
    index: u64,
    role: Role,
}

/// The child's side of `init()`: in a child, run the request and exit;
/// otherwise remember that this binary has a door, and return.
pub(crate) fn init() {
    if let Some(context) = detect() {
        run(context);
    }
    entry::mark_init();
}

/// The body of the dispatcher test. Used by generated code, not public API.
#[doc(hidden)]
pub fn enter_from_test() {
    if let Some(context) = detect() {
        run(context);
    }
}

/// Whether this process is a stampede child (of its actual parent).
pub(crate) fn is_child() -> bool {
    detect().is_some()
}

fn detect() -> Option<Context> {
    let value = std::env::var(protocol::CHILD_VAR).ok()?;
    let (parent, index, role) = protocol::parse_child_var(&value)?;
    (parent == sys::getppid()).then_some(Context {
        parent,
        index,
        role,
    })
}

/// This child's index in its call (a worker's: its slot), once it serves.
static INDEX: OnceLock<usize> = OnceLock::new();

/// This child's index in its call; `None` outside a child.
pub(crate) fn index() -> Option<usize> {
    INDEX.get().copied()
}

fn run(context: Context) -> ! {
    // A keeper must outlive its parent long enough to stop its server and
    // remove its files; its lifeline is its channel's end instead.
    if context.role != Role::Keeper {
        sys::die_with_parent(context.parent);
    }
    sys::close_strays(protocol::FIRST_CLOSED_FD);
    let code = match serve(&context) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("stampede child: {err}");
            101
        }
    };
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    std::process::exit(code)
}

fn serve(context: &Context) -> io::Result<()> {
    let mut channel = Channel::take()?;
    if context.role == Role::Keeper {
        return keeper::serve(channel);
    }
    let _ = INDEX.set(usize::try_from(context.index).unwrap_or(usize::MAX));
    let gate = sys::take_fd(protocol::GATE_FD)?;
    io::stdout().write_all(protocol::MARKER)?;
    io::stdout().flush()?;
    io::stderr().write_all(protocol::MARKER)?;

    let request: Request = match channel.receive() {
        Ok(request) => request,
        // The parent closed the channel before sending anything: it is gone.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => sys::die_with_group(),
        Err(e) => return Err(e),
    };
    if request.protocol != protocol::PROTOCOL {
        let reason = format!(
            "protocol {} requested, this child speaks {} (parent and child are different builds?)",
            request.protocol,
            protocol::PROTOCOL
        );
        return call::refuse(&mut channel, request.call, reason);
    }
    match request.role {
        Role::Call => call::serve(context.index, channel, gate, request),
        Role::Worker => worker::serve(channel, request),
        Role::Keeper => call::refuse(
            &mut channel,
            request.call,
            "a keeper's request was sent to a call's child".to_owned(),
        ),
    }
}

/// The child's end of its channel, checked before each report: code under
/// test that closed descriptor 3 and opened something else there must not
/// get stampede's frames written into its file.
pub(crate) struct Channel {
    file: File,
    identity: Option<(u64, u64)>,
    /// What arrived and is not read yet.
    inbox: FrameReader,
}

impl Channel {
    fn take() -> io::Result<Channel> {
        let file = sys::take_fd(protocol::CHANNEL_FD)?;
        Ok(Channel {
            file,
            identity: sys::identity(protocol::CHANNEL_FD),
            inbox: FrameReader::default(),
        })
    }

    /// The next message from the parent (blocking).
    pub(crate) fn receive<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<T> {
        self.inbox.read_from(&mut self.file)
    }

    /// Sends one report; an error if the channel is no longer stampede's.
    pub(crate) fn send(&mut self, report: &Report) -> io::Result<()> {
        if sys::identity(protocol::CHANNEL_FD) != self.identity {
            return Err(io::Error::other(format!(
                "stampede's channel (descriptor {}) was closed or replaced by the code under \
                 test, so this child's result could not be sent; do not close descriptors you \
                 did not open",
                protocol::CHANNEL_FD
            )));
        }
        protocol::write_frame(&mut self.file, report)
    }
}
