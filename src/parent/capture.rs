//! One stream of a child's output, cut at the entry marker and kept to its
//! tail.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::outcome::Captured;
use crate::protocol::{self, MARKER};
use crate::sys;

/// How much output before the child's entry marker is searched for it.
const PREFIX_LIMIT: usize = 64 * 1024;

pub(crate) struct Stream {
    pub(crate) fd: Option<OwnedFd>,
    /// Output before the marker; `None` once the marker was found (or given up on).
    prefix: Option<Vec<u8>>,
    /// Keep the output before the marker instead of dropping it: in a child
    /// that enters through `init()` there is no libtest line to drop, and
    /// anything there came from code that ran before `init()`.
    keep_prefix: bool,
    /// Output came before the marker and was kept.
    early: bool,
    tail: Vec<u8>,
    total: u64,
    limit: usize,
}

impl Stream {
    /// `keep_prefix`: the child enters through `init()` (see the field).
    pub(crate) fn new(fd: OwnedFd, limit: usize, keep_prefix: bool) -> Self {
        Self {
            fd: Some(fd),
            keep_prefix,
            ..Self::detached(limit)
        }
    }

    /// A stream past its entry marker.
    fn past_entry(limit: usize) -> Self {
        Self {
            prefix: None,
            ..Self::detached(limit)
        }
    }

    fn into_captured(mut self) -> Captured {
        self.finish()
    }

    fn detached(limit: usize) -> Self {
        Self {
            fd: None,
            prefix: Some(Vec::new()),
            keep_prefix: false,
            early: false,
            tail: Vec::new(),
            total: 0,
            limit,
        }
    }

    /// Whether the child's entry marker was seen on this stream.
    pub(crate) fn entered(&self) -> bool {
        self.prefix.is_none()
    }

    /// Whether output that came before the entry marker was kept.
    pub(crate) fn wrote_before_entry(&self) -> bool {
        self.early
    }

    /// Reads what is there (a bounded amount per call); closes the stream
    /// at end of file.
    pub(crate) fn read(&mut self, buf: &mut [u8]) {
        let mut fd = self.fd.take();
        read_available(&mut fd, buf, Until::ShortRead, |bytes| self.push(bytes));
        self.fd = fd;
    }

    /// Reads what a writer that ended left, to the end of file where no
    /// one else holds the pipe (bounded, as [`Self::read`]).
    pub(crate) fn read_left(&mut self, buf: &mut [u8]) {
        let mut fd = self.fd.take();
        read_available(&mut fd, buf, Until::Nothing, |bytes| self.push(bytes));
        self.fd = fd;
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let Some(prefix) = &mut self.prefix else {
            return self.append(bytes);
        };
        prefix.extend_from_slice(bytes);
        if let Some(at) = find(prefix, MARKER) {
            let rest = prefix.split_off(at + MARKER.len());
            prefix.truncate(at);
            let before = self.prefix.take().unwrap_or_default();
            if self.keep_prefix && !before.is_empty() {
                self.early = true;
                self.append(&before);
            }
            self.append(&rest);
        } else if prefix.len() > PREFIX_LIMIT {
            let all = self.prefix.take().unwrap_or_default();
            self.append(&all);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > self.limit.saturating_mul(2).max(4096) {
            let cut = self.tail.len() - self.limit;
            self.tail.drain(..cut);
        }
    }

    pub(crate) fn finish(&mut self) -> Captured {
        // No marker: the child never entered stampede; all of it is output.
        if let Some(prefix) = self.prefix.take() {
            let tail = std::mem::take(&mut self.tail);
            self.total = 0;
            self.append(&prefix);
            self.append(&tail);
        }
        let cut = self.tail.len().saturating_sub(self.limit);
        self.tail.drain(..cut);
        Captured {
            tail: std::mem::take(&mut self.tail),
            total: self.total,
        }
    }
}

/// A worker's stream: output cut at its per-call markers, so that each call
/// gets its own. Output between calls goes to the next call.
pub(crate) struct Splitter {
    pub(crate) fd: Option<OwnedFd>,
    /// Before the entry marker: the whole output so far (kept if the worker
    /// dies before entering); after it, the current call's.
    current: Stream,
    /// Bytes that may be the start of a marker, waiting for the rest.
    carry: Vec<u8>,
    /// The calls whose end marker came and whose output was not taken yet
    /// (a worker may finish a call before the previous one is handed on).
    ended: VecDeque<(u64, Captured)>,
    limit: usize,
    /// Whether output came before the entry marker (kept).
    early: bool,
}

impl Splitter {
    /// `keep_prefix`: as for [`Stream::new`]; what came before the entry
    /// marker counts with the first call.
    pub(crate) fn new(fd: OwnedFd, limit: usize, keep_prefix: bool) -> Self {
        Self {
            fd: Some(fd),
            current: Stream {
                keep_prefix,
                ..Stream::detached(limit)
            },
            carry: Vec::new(),
            ended: VecDeque::new(),
            limit,
            early: false,
        }
    }

    /// Whether the child wrote before stampede's entry (kept, with the
    /// first call's output); true once.
    pub(crate) fn take_early(&mut self) -> bool {
        std::mem::take(&mut self.early)
    }

    /// Reads what is there; closes the stream at end of file.
    pub(crate) fn read(&mut self, buf: &mut [u8]) {
        let mut fd = self.fd.take();
        read_available(&mut fd, buf, Until::ShortRead, |bytes| self.push(bytes));
        self.fd = fd;
    }

    /// Reads what a worker that ended left (see [`Stream::read_left`]).
    pub(crate) fn read_left(&mut self, buf: &mut [u8]) {
        let mut fd = self.fd.take();
        read_available(&mut fd, buf, Until::Nothing, |bytes| self.push(bytes));
        self.fd = fd;
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if !self.current.entered() {
            // Until the entry marker, `Stream` looks for it; what came after
            // it in the same read goes through the splitting below.
            self.current.push(bytes);
            if self.current.entered() {
                self.early = self.current.wrote_before_entry();
                let rest = std::mem::replace(&mut self.current, Stream::past_entry(self.limit));
                self.push(rest.into_captured().as_bytes());
            }
            return;
        }
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(offset) = data[at..].iter().position(|b| *b == 0x1e) {
            let start = at + offset;
            match protocol::parse_end_marker(&data[start..]) {
                Ok(Some((call, len))) => {
                    self.current.push(&data[at..start]);
                    let output =
                        std::mem::replace(&mut self.current, Stream::past_entry(self.limit));
                    self.ended.push_back((call, output.into_captured()));
                    at = start + len;
                }
                Ok(None) => {
                    self.current.push(&data[at..start]);
                    self.carry = data[start..].to_vec();
                    return;
                }
                Err(()) => {
                    self.current.push(&data[at..=start]);
                    at = start + 1;
                }
            }
        }
        self.current.push(&data[at..]);
    }

    /// Whether the end marker of `call` has come.
    pub(crate) fn has_ended(&self, call: u64) -> bool {
        self.ended.iter().any(|(c, _)| *c == call)
    }

    /// The output of `call` once it ended; for a call cut short (the worker
    /// died or was killed), what it wrote so far; before the worker entered,
    /// everything it wrote.
    pub(crate) fn take(&mut self, call: u64) -> Captured {
        if let Some(at) = self.ended.iter().position(|(c, _)| *c == call) {
            // Calls are handed on in order: anything older is not wanted.
            let (_, output) = self.ended.drain(..=at).next_back().expect("found above");
            return output;
        }
        let carry = std::mem::take(&mut self.carry);
        self.current.push(&carry);
        std::mem::replace(&mut self.current, Stream::past_entry(self.limit)).into_captured()
    }

    /// Everything the worker wrote before entering, or since its last call.
    pub(crate) fn take_rest(&mut self) -> Captured {
        let carry = std::mem::take(&mut self.carry);
        self.current.push(&carry);
        std::mem::replace(&mut self.current, Stream::detached(self.limit)).into_captured()
    }
}

/// When a read of what a pipe holds may stop.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// At a short read: the pipe was drained, and the next poll tells of
    /// more (one system call fewer per wake).
    ShortRead,
    /// When nothing is there or the end of file came: for a writer that
    /// ended, whose pipe may be at its end already.
    Nothing,
}

/// Reads what `fd` holds now into `push`, until `until`; closes `fd` at
/// the end of file. A bounded number of reads, so a child that writes
/// without pause does not keep the loop from the others.
fn read_available(
    fd: &mut Option<OwnedFd>,
    buf: &mut [u8],
    until: Until,
    mut push: impl FnMut(&[u8]),
) {
    for _ in 0..16 {
        let Some(n) = read_some(fd, buf) else {
            return;
        };
        push(&buf[..n]);
        if n < buf.len() && until == Until::ShortRead {
            return;
        }
    }
}

/// One non-blocking read from `fd` into `buf`: `Some(n)` bytes, or `None`
/// when nothing is there now or the stream ended (then `fd` is closed).
fn read_some(fd: &mut Option<OwnedFd>, buf: &mut [u8]) -> Option<usize> {
    match sys::read_some(fd.as_ref()?.as_raw_fd(), buf) {
        Ok(Some(n)) if n > 0 => Some(n),
        Ok(None) => None,
        Ok(Some(_)) | Err(_) => {
            *fd = None;
            None
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_before_the_entry_marker_is_dropped_and_the_tail_is_kept() {
        let mut stream = Stream::detached(8);
        stream.push(b"running 1 test\n\x1estampede: child ");
        stream.push(b"entered\x1e\nhello, world\n");
        assert!(stream.entered());
        let captured = stream.finish();
        assert_eq!(captured.as_bytes(), b", world\n");
        assert_eq!(captured.total_len(), 13);
    }

    #[test]
    fn a_workers_output_is_split_per_call_even_across_reads() {
        let (read, _write) = sys::pipe().unwrap();
        let mut s = Splitter::new(read, 1024, false);
        let mut all = b"running 1 test\n\x1estampede: child entered\x1e\n".to_vec();
        all.extend_from_slice(b"first\n");
        all.extend_from_slice(&protocol::end_marker(1));
        all.extend_from_slice(b"second \x1e byte\n");
        all.extend_from_slice(&protocol::end_marker(2));
        // In one read, and in reads of 5 bytes.
        let mut whole = Splitter::new(sys::pipe().unwrap().0, 1024, false);
        whole.push(&all);
        assert_eq!(whole.take(2).to_string_lossy(), "second \x1e byte\n");
        for chunk in all.chunks(5) {
            s.push(chunk);
        }
        assert!(
            s.has_ended(1) && s.has_ended(2),
            "both ended before either is taken"
        );
        assert_eq!(s.take(1).to_string_lossy(), "first\n");
        assert_eq!(s.take(2).to_string_lossy(), "second \x1e byte\n");
        s.push(b"cut short");
        assert!(!s.has_ended(3));
        assert_eq!(s.take(3).to_string_lossy(), "cut short");
    }

    #[test]
    fn a_worker_entering_through_init_counts_its_early_output_with_its_first_call() {
        let mut s = Splitter::new(sys::pipe().unwrap().0, 1024, true);
        s.push(b"configuring logging\n\x1estampede: child entered\x1e\nfirst\n");
        s.push(&protocol::end_marker(0));
        s.push(b"second\n");
        s.push(&protocol::end_marker(1));
        assert!(s.take_early(), "the early output is told of");
        assert!(!s.take_early(), "once");
        assert_eq!(s.take(0).to_string_lossy(), "configuring logging\nfirst\n");
        assert_eq!(s.take(1).to_string_lossy(), "second\n");
        let mut test_harness = Splitter::new(sys::pipe().unwrap().0, 1024, false);
        test_harness.push(b"running 1 test\n\x1estampede: child entered\x1e\nfirst\n");
        test_harness.push(&protocol::end_marker(0));
        assert!(!test_harness.take_early());
        assert_eq!(test_harness.take(0).to_string_lossy(), "first\n");
    }

    #[test]
    fn a_child_entering_through_init_keeps_what_it_wrote_before_the_marker() {
        let mut stream = Stream::new(sys::pipe().unwrap().0, 1024, true);
        stream.push(
            b"starting the server
stampede: child ",
        );
        assert!(!stream.wrote_before_entry());
        stream.push(
            b"entered
hello
",
        );
        assert!(stream.entered() && stream.wrote_before_entry());
        assert_eq!(
            stream.finish().to_string_lossy(),
            "starting the server\nhello\n"
        );
        let mut quiet = Stream::new(sys::pipe().unwrap().0, 1024, true);
        quiet.push(
            b"stampede: child entered
hello
",
        );
        assert!(!quiet.wrote_before_entry());
        assert_eq!(quiet.finish().to_string_lossy(), "hello\n");
    }

    #[test]
    fn without_a_marker_everything_is_output() {
        let mut stream = Stream::detached(1024);
        stream.push(b"error while loading shared libraries\n");
        assert!(!stream.entered());
        assert_eq!(
            stream.finish().to_string_lossy(),
            "error while loading shared libraries\n"
        );
    }
}
