//! `%XX` escapes in the parts of a URL, decoded strictly: a bad escape,
//! or bytes that are not UTF-8 once decoded, are an error, never a guess.
//! Shared by the services' URLs and the parent's lock-wait client; a leaf,
//! it imports nothing of the crate.

/// Why a text does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undecodable {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// `text` with its `%XX` escapes replaced by their bytes.
pub(crate) fn decode(text: &str) -> Result<String, Undecodable> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(Undecodable::BadEscape)?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Undecodable::NotUtf8)
}

/// [`decode`] for a password: the error never repeats it.
pub(crate) fn decode_secret(text: &str) -> Result<String, String> {
    decode(text)
        .map_err(|_| "the password has a bad %-escape, or is not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_and_bad_ones_refused() {
        assert_eq!(decode("a%20b%2Fc").unwrap(), "a b/c");
        assert_eq!(decode("plain").unwrap(), "plain");
        assert_eq!(decode("d%zz"), Err(Undecodable::BadEscape));
        assert_eq!(decode("cut%2"), Err(Undecodable::BadEscape));
        assert_eq!(decode("%ff"), Err(Undecodable::NotUtf8));
        let why = decode_secret("s3cret%zz").unwrap_err();
        assert!(!why.contains("s3cret"), "{why}");
    }
}
