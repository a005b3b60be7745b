//! The channel between parent and child: length-prefixed frames whose
//! payloads are encoded with bincode 1.3.3. This is the one module that
//! names the codec; swapping it is a change to this file alone.
//!
//! A frame is a little-endian `u32` length followed by that many bytes. The
//! reader refuses lengths above [`MAX_FRAME`] before reading them, and grows
//! its buffer only with bytes that actually arrived, so garbage or a lying
//! length is an error, never a panic or a huge allocation.

use std::io::{self, Read, Write};

use bincode::Options as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest frame accepted: 1 GiB. Arguments and results this large are
/// better passed as a file path.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Version of the messages below; a child refuses a request of another one.
pub(crate) const PROTOCOL: u32 = 1;

/// Encoding has no limit: a limit makes bincode walk the value twice (size,
/// then bytes), and the frame length is checked afterwards anyway.
fn encoder() -> impl bincode::Options {
    bincode::DefaultOptions::new().with_fixint_encoding()
}

/// Decoding is bounded by the input's length, so a lying length inside the
/// payload fails on the missing bytes instead of allocating.
fn decoder(len: usize) -> impl bincode::Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(len as u64)
}

/// Encodes a value (arguments, a returned value or a message).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    encoder().serialize(value).map_err(|e| e.to_string())
}

/// Decodes a value, refusing trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decoder(bytes.len())
        .deserialize(bytes)
        .map_err(|e| e.to_string())
}

/// Already-encoded values inside a message travel as one byte string (a
/// length and a copy), not as a sequence of `u8` elements.
mod byte_string {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::new();
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

/// What the parent sends a child: the function to run and how.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request {
    pub protocol: u32,
    pub function: String,
    #[serde(with = "byte_string")]
    pub args: Vec<u8>,
    pub barrier: bool,
    /// Upper bound of the random delay after the barrier, in nanoseconds.
    pub jitter_max_ns: u64,
    pub seed: u64,
}

/// What a child reports, in this order: `Ready`, `Checkpoint` if the
/// function calls `stampede::checkpoint()`, then `Done`.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Report {
    /// Arguments decoded; waiting at the barrier.
    Ready { at_ns: u64 },
    /// The function reached `stampede::checkpoint()` and waits there.
    Checkpoint { at_ns: u64 },
    /// The function ran (or could not).
    Done {
        started_ns: u64,
        /// When the function was let go from its checkpoint, if it had one.
        checkpoint_ns: Option<u64>,
        finished_ns: u64,
        result: ChildResult,
    },
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ChildResult {
    Returned(#[serde(with = "byte_string")] Vec<u8>),
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// stampede could not run the function in the child (unknown name,
    /// undecodable arguments, unencodable result).
    Failed(String),
}

/// Encodes `message` as one frame, header included.
pub(crate) fn frame<T: Serialize>(message: &T) -> Result<Vec<u8>, String> {
    let mut out = vec![0; 4];
    encoder()
        .serialize_into(&mut out, message)
        .map_err(|e| e.to_string())?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(format!(
            "message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit"
        ));
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Writes one frame (blocking): the child's side.
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let bytes = frame(message).map_err(io::Error::other)?;
    out.write_all(&bytes)?;
    out.flush()
}

/// Reads one frame (blocking): the child's side.
pub(crate) fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<T> {
    let mut header = [0; 4];
    input.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
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

/// Accumulates bytes from a non-blocking descriptor and yields whole frames:
/// the parent's side.
#[derive(Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, String> {
        let Some(header) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(format!(
                "a frame claims {len} bytes, over the {MAX_FRAME}-byte limit (garbage on the channel?)"
            ));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let message = decode(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        message
            .map(Some)
            .map_err(|e| format!("an undecodable frame ({e})"))
    }

    /// Bytes of an incomplete frame left when the channel closed.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_through_the_reader_split_in_pieces() {
        let bytes = frame(&Report::Ready { at_ns: 42 }).unwrap();
        let mut reader = FrameReader::default();
        for byte in &bytes[..bytes.len() - 1] {
            reader.push(std::slice::from_ref(byte));
            assert!(reader.next::<Report>().unwrap().is_none());
        }
        reader.push(&bytes[bytes.len() - 1..]);
        assert!(matches!(
            reader.next::<Report>().unwrap(),
            Some(Report::Ready { at_ns: 42 })
        ));
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn a_huge_claimed_length_is_refused_before_any_payload_arrives() {
        let mut reader = FrameReader::default();
        reader.push(&u32::MAX.to_le_bytes());
        let err = reader.next::<Report>().unwrap_err();
        assert!(err.contains("over the"), "{err}");
        assert!(
            reader.buf.capacity() < 1024,
            "no allocation of the claimed size"
        );
    }

    #[test]
    fn garbage_inside_a_frame_is_an_error_not_a_panic() {
        let mut reader = FrameReader::default();
        reader.push(&8u32.to_le_bytes());
        reader.push(&[0xff; 8]);
        assert!(reader.next::<Report>().is_err());
    }

    #[test]
    fn a_vec_claiming_more_elements_than_bytes_is_an_error() {
        // Done{Returned(vec of 2^60 bytes)} with only a few bytes behind it:
        // variant 2, started_ns, checkpoint_ns None, finished_ns, Returned.
        let mut payload = 2u32.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0; 8]);
        payload.push(0);
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&0u32.to_le_bytes());
        payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Report>(&payload).is_err());
    }

    #[test]
    fn the_blocking_reader_refuses_truncated_and_oversized_frames() {
        let mut truncated = frame(&Report::Ready { at_ns: 1 }).unwrap();
        truncated.pop();
        assert_eq!(
            read_frame::<Report>(&mut truncated.as_slice())
                .unwrap_err()
                .kind(),
            io::ErrorKind::UnexpectedEof
        );
        let oversized = u32::MAX.to_le_bytes();
        assert_eq!(
            read_frame::<Report>(&mut oversized.as_slice())
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidData
        );
    }
}
