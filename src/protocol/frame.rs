//! Framing: each message travels as a frame, two magic bytes, a
//! little-endian `u32` length, then that many bytes of payload.
//!
//! The reader refuses a wrong magic at once (garbage written on the channel
//! by the code under test) and a length above its limit before reading the
//! payload, and grows its buffer only with bytes that actually arrived, so
//! garbage or a lying length is an error, never a panic or an allocation of
//! the claimed size.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{decode, encode_into};

/// The first two bytes of every frame.
const MAGIC: [u8; 2] = *b"\x5a\xa5";
const HEADER: usize = 6;

/// The largest frame ever accepted: 1 GiB. A reader may set a lower limit.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Encodes `message` as one frame, header included.
pub(crate) fn frame<T: Serialize>(message: &T) -> Result<Vec<u8>, String> {
    let mut out = vec![0; HEADER];
    encode_into(&mut out, message)?;
    let len = out.len() - HEADER;
    if len > MAX_FRAME {
        return Err(format!(
            "message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit"
        ));
    }
    out[..2].copy_from_slice(&MAGIC);
    out[2..HEADER].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Writes one frame (blocking): the child's side.
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let bytes = frame(message).map_err(io::Error::other)?;
    out.write_all(&bytes)?;
    out.flush()
}

fn bad_magic(start: &[u8]) -> String {
    format!(
        "a frame starts with {start:02x?} instead of stampede's marker (garbage on the channel?)"
    )
}

/// Checks a header; returns the payload's length.
fn payload_len(header: &[u8], limit: usize) -> Result<usize, String> {
    if header[..2] != MAGIC {
        return Err(bad_magic(&header[..2]));
    }
    let len = u32::from_le_bytes(header[2..HEADER].try_into().expect("4 bytes")) as usize;
    if len > limit {
        return Err(format!(
            "a frame claims {len} bytes, over the {limit}-byte limit (garbage on the channel, \
             or a result larger than `Options::result_limit`)"
        ));
    }
    Ok(len)
}

/// Reads one frame (blocking): the child's side.
pub(crate) fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<T> {
    let mut header = [0; HEADER];
    input.read_exact(&mut header)?;
    let len = payload_len(&header, MAX_FRAME)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut payload = Vec::new();
    input.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    decode(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Collects frames from bytes that arrive in pieces: the parent's side.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(MAX_FRAME)
    }
}

impl FrameReader {
    /// A reader that refuses frames longer than `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit: limit.min(MAX_FRAME),
        }
    }

    /// Adds bytes as they arrive.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if it has not fully arrived.
    /// A bad header is refused as soon as its bytes are there.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, String> {
        if self.buf.len() >= 2 && self.buf[..2] != MAGIC {
            return Err(bad_magic(&self.buf[..2]));
        }
        let Some(header) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let len = payload_len(header, self.limit)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let message = decode(&self.buf[HEADER..HEADER + len]);
        self.buf.drain(..HEADER + len);
        message
            .map(Some)
            .map_err(|e| format!("an undecodable frame ({e})"))
    }

    /// Bytes received that do not make a whole frame yet.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next message, reading from `input` (blocking) as much as it
    /// holds: one read usually brings a whole frame, often the next one
    /// too, which stays here for the next call.
    pub(crate) fn read_from<T: DeserializeOwned>(
        &mut self,
        input: &mut impl Read,
    ) -> io::Result<T> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.next() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            match input.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "channel closed",
                    ));
                }
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated frame",
                    ));
                }
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Report;
    use super::*;

    fn ready() -> Report {
        Report::Ready { call: 0, at_ns: 42 }
    }

    #[test]
    fn a_frame_round_trips_through_the_reader_split_in_pieces() {
        let bytes = frame(&ready()).unwrap();
        let mut reader = FrameReader::default();
        for byte in &bytes[..bytes.len() - 1] {
            reader.push(std::slice::from_ref(byte));
            assert!(reader.next::<Report>().unwrap().is_none());
        }
        reader.push(&bytes[bytes.len() - 1..]);
        assert!(matches!(
            reader.next::<Report>().unwrap(),
            Some(Report::Ready { at_ns: 42, .. })
        ));
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn a_huge_claimed_length_is_refused_before_any_payload_arrives() {
        let mut reader = FrameReader::default();
        reader.push(&MAGIC);
        reader.push(&u32::MAX.to_le_bytes());
        let err = reader.next::<Report>().unwrap_err();
        assert!(err.contains("over the"), "{err}");
        assert!(
            reader.buf.capacity() < 1024,
            "no allocation of the claimed size"
        );
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_taken_and_one_byte_more_refused() {
        let bytes = frame(&ready()).unwrap();
        let len = bytes.len() - HEADER;
        let mut at_limit = FrameReader::new(len);
        at_limit.push(&bytes);
        assert!(matches!(
            at_limit.next::<Report>(),
            Ok(Some(Report::Ready { at_ns: 42, .. }))
        ));
        let mut over = FrameReader::new(len - 1);
        over.push(&bytes[..HEADER]);
        let err = over.next::<Report>().unwrap_err();
        assert!(
            err.contains(&format!(
                "claims {len} bytes, over the {}-byte limit",
                len - 1
            )),
            "{err}"
        );
        // The blocking reader holds the hard limit the same way.
        assert_eq!(payload_len(&header(MAX_FRAME), MAX_FRAME), Ok(MAX_FRAME));
        assert!(payload_len(&header(MAX_FRAME + 1), MAX_FRAME).is_err());
    }

    fn header(len: usize) -> Vec<u8> {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(len as u32).to_le_bytes());
        header
    }

    #[test]
    fn a_lying_length_under_the_hard_limit_is_refused_at_the_readers_own_limit() {
        let mut reader = FrameReader::new(1 << 20);
        reader.push(&MAGIC);
        reader.push(&(512u32 << 20).to_le_bytes());
        let err = reader.next::<Report>().unwrap_err();
        assert!(err.contains("1048576-byte limit"), "{err}");
    }

    #[test]
    fn garbage_is_refused_at_its_first_two_bytes() {
        let mut reader = FrameReader::default();
        reader.push(b"he");
        let err = reader.next::<Report>().unwrap_err();
        assert!(err.contains("instead of stampede's marker"), "{err}");
    }

    #[test]
    fn garbage_inside_a_frame_is_an_error_not_a_panic() {
        let mut reader = FrameReader::default();
        reader.push(&MAGIC);
        reader.push(&8u32.to_le_bytes());
        reader.push(&[0xff; 8]);
        assert!(reader.next::<Report>().is_err());
    }

    #[test]
    fn a_vec_claiming_more_elements_than_bytes_is_an_error() {
        // Done{call, started_ns, passed_ns [], finished_ns,
        // Returned(byte string of 2^60 bytes)} with only a few bytes behind it.
        let mut payload = 2u32.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]);
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&0u32.to_le_bytes());
        payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Report>(&payload).is_err());
    }

    #[test]
    fn a_buffered_reader_keeps_the_next_frame_of_a_read_for_later() {
        let mut bytes = frame(&ready()).unwrap();
        bytes.extend(frame(&Report::Ready { call: 1, at_ns: 7 }).unwrap());
        bytes.extend(&frame(&ready()).unwrap()[..3]);
        let mut input = std::io::Cursor::new(bytes);
        let mut reader = FrameReader::default();
        assert!(matches!(
            reader.read_from(&mut input),
            Ok(Report::Ready { call: 0, .. })
        ));
        assert!(matches!(
            reader.read_from(&mut input),
            Ok(Report::Ready { call: 1, .. })
        ));
        let cut = reader.read_from::<Report>(&mut input).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        assert!(cut.to_string().contains("truncated"), "{cut}");
        let mut closed = FrameReader::default();
        let err = closed
            .read_from::<Report>(&mut std::io::empty())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_blocking_reader_refuses_truncated_and_oversized_frames() {
        let mut truncated = frame(&ready()).unwrap();
        truncated.pop();
        assert_eq!(
            read_frame::<Report>(&mut truncated.as_slice())
                .unwrap_err()
                .kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut oversized = MAGIC.to_vec();
        oversized.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read_frame::<Report>(&mut oversized.as_slice())
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidData
        );
    }
}
