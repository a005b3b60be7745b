//! A test crate without `stampede::entry!();`: the call fails before
//! spawning, with an error naming the missing line.

#[stampede::function]
fn anything() -> u8 {
    1
}

#[test]
fn a_missing_entry_line_is_named_in_the_error() {
    let err = stampede::call_concurrently(3, anything, ()).unwrap_err();
    assert!(matches!(err, stampede::Error::MissingEntry));
    let text = err.to_string();
    assert!(
        text.contains("add `stampede::entry!();` at the root of this test crate"),
        "{text}"
    );
    assert!(
        text.contains("`stampede::init()` as the first line of `main`"),
        "{text}"
    );
}
