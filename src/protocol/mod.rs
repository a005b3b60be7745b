//! The contract between a parent and its children, and nothing else: how a
//! child knows it is one, which descriptor is what, the messages they
//! exchange, and how those travel. Both sides import it; it imports nothing
//! of the crate.
//!
//! A child is started with:
//!
//! | descriptor | what |
//! |---|---|
//! | 0 | `/dev/null` |
//! | 1, 2 | pipes the parent reads (its stdout and stderr) |
//! | [`CHANNEL_FD`] (3) | its own socket to the parent: a [`Request`] in, [`Report`]s out |
//! | [`GATE_FD`] (4) | a memory file shared by every child of the call: a count of released rounds |
//!
//! and every other descriptor closed ([`FIRST_CLOSED_FD`]).

mod codec;
mod frame;
mod messages;

pub(crate) use codec::{decode, encode};
pub(crate) use frame::{FrameReader, frame, read_frame, write_frame};
pub(crate) use messages::{
    ChildResult, KeeperReport, KeeperSpec, OpEvent, Order, Readiness, Report, Request, Role,
    Sample, StepKeys,
};

use std::os::fd::RawFd;
use std::path::Path;

/// The version of the messages below; a child refuses a request of another.
pub(crate) const PROTOCOL: u32 = 9;

/// A line of a service instance's registry, which the test process (its
/// owner) and the keeper (itself and its server) append to, for the sweep
/// of instances whose keeper was killed: `<what> <pid> <start time> <uid>
/// <program>`, the last four as `/proc` shows them, so that the sweep
/// signals a pid only while it is the same process, of the same user,
/// running the same program. The program runs to the end of the line.
pub(crate) fn registry_line(what: &str, pid: u32, start: u64, uid: u32, exe: &Path) -> String {
    format!("{what} {pid} {start} {uid} {}\n", exe.display())
}

/// The child's channel to its parent.
pub(crate) const CHANNEL_FD: RawFd = 3;
/// The gate every child of a call shares (start barrier and checkpoints).
pub(crate) const GATE_FD: RawFd = 4;
/// Descriptors from this number up are closed in a child.
pub(crate) const FIRST_CLOSED_FD: RawFd = 5;

/// Name of the variable that marks a child: `1:<parent pid>:<index>` for a
/// call's child, `1:<parent pid>:<index>:keeper` for a service's keeper.
/// Ignored unless the parent pid is this process's actual parent, so a
/// program that the user's code starts from a child (and that inherits the
/// environment) does not mistake itself for one. The role is in the variable,
/// not only in the request, because it decides the death policy, which is
/// armed before the request is read: a keeper must outlive its parent long
/// enough to clean up.
pub(crate) const CHILD_VAR: &str = "STAMPEDE_CHILD";

/// The value of [`CHILD_VAR`] for child `index` of process `parent`.
pub(crate) fn child_var(parent: u32, index: usize, role: Role) -> String {
    match role {
        // A worker dies with its parent as a call's child does; its request
        // tells the two apart.
        Role::Call | Role::Worker => format!("1:{parent}:{index}"),
        Role::Keeper => format!("1:{parent}:{index}:keeper"),
    }
}

/// `(parent pid, index, role)` from a value of [`CHILD_VAR`].
pub(crate) fn parse_child_var(value: &str) -> Option<(u32, u64, Role)> {
    let mut parts = value.split(':');
    let (Some("1"), Some(parent), Some(index)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let role = match (parts.next(), parts.next()) {
        (None, _) => Role::Call,
        (Some("keeper"), None) => Role::Keeper,
        _ => return None,
    };
    Some((parent.parse().ok()?, index.parse().ok()?, role))
}

/// Written to stdout and stderr when a child enters, so that the parent can
/// drop what came before it (libtest's "running 1 test" line).
pub(crate) const MARKER: &[u8] = b"\x1estampede: child entered\x1e\n";

/// How a worker's end-of-call marker starts.
const END_MARKER_START: &[u8] = b"\x1estampede: end ";

/// Written by a worker to stdout and stderr after each call: what came
/// since the previous one is the call's own output.
pub(crate) fn end_marker(call: u64) -> Vec<u8> {
    format!("\x1estampede: end {call}\x1e\n").into_bytes()
}

/// A worker's end marker at the start of `bytes`: `Ok(Some((call,
/// length)))`, `Ok(None)` if more bytes may complete one, `Err(())` if these
/// bytes are not an end marker.
pub(crate) fn parse_end_marker(bytes: &[u8]) -> Result<Option<(u64, usize)>, ()> {
    let prefix_len = END_MARKER_START.len().min(bytes.len());
    if bytes[..prefix_len] != END_MARKER_START[..prefix_len] {
        return Err(());
    }
    let rest = &bytes[prefix_len..];
    let Some(end) = rest.iter().position(|b| *b == b'\n') else {
        return if rest.len() > 32 { Err(()) } else { Ok(None) };
    };
    let text = std::str::from_utf8(&rest[..end]).map_err(drop)?;
    let number = text.strip_suffix('\x1e').ok_or(())?;
    let call = number.parse().map_err(drop)?;
    Ok(Some((call, prefix_len + end + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_markers_round_trip_and_partial_ones_wait_for_more() {
        let marker = end_marker(42);
        assert_eq!(parse_end_marker(&marker), Ok(Some((42, marker.len()))));
        assert_eq!(parse_end_marker(&marker[..7]), Ok(None));
        assert_eq!(parse_end_marker(&end_marker(7)[..15]), Ok(None));
        assert_eq!(
            parse_end_marker(b"\x1estampede: child entered\x1e\n"),
            Err(())
        );
        assert_eq!(parse_end_marker(b"\x1estampede: end x\x1e\n"), Err(()));
        assert_eq!(parse_end_marker(b"hello"), Err(()));
    }

    #[test]
    fn the_child_variable_round_trips_and_refuses_other_shapes() {
        assert_eq!(
            parse_child_var(&child_var(41, 7, Role::Call)),
            Some((41, 7, Role::Call))
        );
        assert_eq!(parse_child_var("2:41:7"), None);
        assert_eq!(parse_child_var("1:x:7"), None);
        assert_eq!(parse_child_var("1:41"), None);
    }

    #[test]
    fn the_child_variable_carries_the_keeper_role() {
        assert_eq!(child_var(41, 0, Role::Keeper), "1:41:0:keeper");
        assert_eq!(
            parse_child_var(&child_var(41, 0, Role::Keeper)),
            Some((41, 0, Role::Keeper))
        );
        assert_eq!(parse_child_var("1:41:0:worker"), None);
        assert_eq!(parse_child_var("1:41:0:keeper:x"), None);
        assert_eq!(parse_child_var("1:41:0:"), None);
    }
}
