//! The codec: bincode 1.3.3, fixed-size integers. The one file that names
//! it; swapping it (postcard, wincode) is a change to this file alone.

use bincode::Options as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Encodes a value after the bytes already in `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), String> {
    encoder()
        .serialize_into(out, value)
        .map_err(|e| e.to_string())
}

/// Decodes a value, refusing trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decoder(bytes.len())
        .deserialize(bytes)
        .map_err(|e| e.to_string())
}
