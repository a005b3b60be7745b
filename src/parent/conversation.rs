//! The parent's end of one child's channel: frames out (the request),
//! frames in (reports), without ever blocking.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::capture::Until;
use crate::protocol::{FrameReader, Report};
use crate::sys;

pub(crate) struct Conversation {
    fd: Option<OwnedFd>,
    /// Frames to send, the first one sent up to `sent`.
    outgoing: VecDeque<Arc<Vec<u8>>>,
    sent: usize,
    reader: FrameReader,
    /// Why the channel cannot be trusted any more, once it cannot.
    broken: Option<String>,
}

impl Conversation {
    /// A conversation that starts by sending `outgoing` (a whole frame).
    pub(crate) fn new(fd: OwnedFd, outgoing: Arc<Vec<u8>>, limit: usize) -> std::io::Result<Self> {
        sys::set_nonblocking(fd.as_raw_fd())?;
        let mut conversation = Self {
            fd: Some(fd),
            outgoing: VecDeque::from([outgoing]),
            sent: 0,
            reader: FrameReader::new(limit),
            broken: None,
        };
        conversation.flush();
        Ok(conversation)
    }

    /// The descriptor to poll and the events wanted; `None` once closed.
    pub(crate) fn poll_interest(&self) -> Option<(RawFd, i16)> {
        let fd = self.fd.as_ref()?;
        let mut events = sys::POLLIN;
        if !self.outgoing.is_empty() {
            events |= sys::POLLOUT;
        }
        Some((fd.as_raw_fd(), events))
    }

    pub(crate) fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    /// Why the channel's content could not be trusted, if it could not.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Bytes received that do not make a whole frame.
    pub(crate) fn pending(&self) -> usize {
        self.reader.pending()
    }

    /// Queues one more frame and sends what the channel takes now.
    pub(crate) fn send(&mut self, frame: Arc<Vec<u8>>) {
        self.outgoing.push_back(frame);
        self.flush();
    }

    fn flush(&mut self) {
        let Some(fd) = &self.fd else { return };
        while let Some(frame) = self.outgoing.front() {
            match sys::write_some(fd.as_raw_fd(), &frame[self.sent..]) {
                Ok(0) => return,
                Ok(n) => self.sent += n,
                // The child is gone; its end tells the rest.
                Err(_) => {
                    self.outgoing.clear();
                    self.sent = 0;
                    return;
                }
            }
            if self.sent == frame.len() {
                self.outgoing.pop_front();
                self.sent = 0;
            }
        }
    }

    /// Sends what is pending and reads what arrived; the reports that are
    /// complete, in order.
    pub(crate) fn service(&mut self, buf: &mut [u8]) -> Vec<Report> {
        self.flush();
        self.receive(buf, Until::ShortRead)
    }

    /// Reads what a child that ended left, to the end of its channel where
    /// no one else holds it.
    pub(crate) fn read_left(&mut self, buf: &mut [u8]) -> Vec<Report> {
        self.receive(buf, Until::Nothing)
    }

    fn receive(&mut self, buf: &mut [u8], until: Until) -> Vec<Report> {
        let mut reports = Vec::new();
        let mut drained = false;
        for _ in 0..64 {
            if drained && until == Until::ShortRead {
                break;
            }
            let Some(fd) = self.fd.as_ref().map(AsRawFd::as_raw_fd) else {
                break;
            };
            match sys::read_some(fd, buf) {
                Ok(None) => break,
                Ok(Some(0)) | Err(_) => self.fd = None,
                Ok(Some(_)) if self.broken.is_some() => {}
                Ok(Some(n)) => {
                    // A short read drained the socket: the next poll tells of more.
                    drained = n < buf.len();
                    self.reader.push(&buf[..n]);
                    loop {
                        match self.reader.next::<Report>() {
                            Ok(Some(report)) => reports.push(report),
                            Ok(None) => break,
                            Err(e) => {
                                self.broken =
                                    Some(format!("its result channel carried garbage: {e}"));
                                break;
                            }
                        }
                    }
                }
            }
        }
        reports
    }

    /// Marks the conversation as untrustworthy (an unexpected report).
    pub(crate) fn break_off(&mut self, reason: String) {
        self.broken.get_or_insert(reason);
    }
}
