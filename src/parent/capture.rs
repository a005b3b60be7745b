//! One stream of a child's output, cut at the entry marker and kept to its
//! tail.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::outcome::Captured;
use crate::protocol::MARKER;
use crate::sys;

/// How much output before the child's entry marker is searched for it.
const PREFIX_LIMIT: usize = 64 * 1024;

pub(crate) struct Stream {
    pub(crate) fd: Option<OwnedFd>,
    /// Output before the marker; `None` once the marker was found (or given up on).
    prefix: Option<Vec<u8>>,
    tail: Vec<u8>,
    total: u64,
    limit: usize,
}

impl Stream {
    pub(crate) fn new(fd: OwnedFd, limit: usize) -> Self {
        Self {
            fd: Some(fd),
            ..Self::detached(limit)
        }
    }

    fn detached(limit: usize) -> Self {
        Self {
            fd: None,
            prefix: Some(Vec::new()),
            tail: Vec::new(),
            total: 0,
            limit,
        }
    }

    /// Whether the child's entry marker was seen on this stream.
    pub(crate) fn entered(&self) -> bool {
        self.prefix.is_none()
    }

    /// Reads what is there (a bounded amount per call); closes the stream
    /// at end of file.
    pub(crate) fn read(&mut self, buf: &mut [u8]) {
        for _ in 0..16 {
            let Some(fd) = &self.fd else { return };
            match sys::read_some(fd.as_raw_fd(), buf) {
                Ok(None) => return,
                Ok(Some(0)) | Err(_) => self.fd = None,
                Ok(Some(n)) => self.push(&buf[..n]),
            }
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let Some(prefix) = &mut self.prefix else {
            return self.append(bytes);
        };
        prefix.extend_from_slice(bytes);
        if let Some(at) = find(prefix, MARKER) {
            let rest = prefix.split_off(at + MARKER.len());
            self.prefix = None;
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
