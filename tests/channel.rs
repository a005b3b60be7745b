//! Results travel on their own framed channel: output cannot corrupt them,
//! large values round-trip, and a broken channel is a failed outcome.

stampede::entry!();

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use stampede::Status;

/// Writes raw bytes on stampede's channel (descriptor 3), as a buggy
/// library closing or scribbling on "its" descriptor would.
fn scribble_on_channel(bytes: &[u8]) {
    // SAFETY: descriptor 3 is the channel, open in every child; ManuallyDrop
    // keeps this wrapper from closing it.
    let mut channel = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(3) });
    channel.write_all(bytes).unwrap();
    channel.flush().unwrap();
}

#[stampede::function]
fn shout(megabytes: usize) -> String {
    let line = "x".repeat(1023) + "\n";
    let mut out = std::io::stdout().lock();
    for _ in 0..megabytes * 1024 {
        out.write_all(line.as_bytes()).unwrap();
    }
    "result intact".to_string()
}

#[stampede::function]
fn spray_garbage() -> Vec<u8> {
    // Bytes that look like frames and like stampede's marker, on both streams.
    let mut garbage: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    garbage.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
    garbage.extend_from_slice(b"\x1estampede: child entered\x1e\n");
    std::io::stdout().write_all(&garbage).unwrap();
    std::io::stderr().write_all(&garbage).unwrap();
    vec![1, 2, 3]
}

#[stampede::function]
fn mirror(data: Vec<u8>) -> Vec<u8> {
    data.iter().rev().copied().collect()
}

#[stampede::function]
fn mirror_text(text: String) -> String {
    text.chars().rev().collect()
}

/// The start of every frame: two marker bytes, then the length.
fn header(len: u32) -> Vec<u8> {
    let mut header = vec![0x5a, 0xa5];
    header.extend_from_slice(&len.to_le_bytes());
    header
}

#[stampede::function]
fn garbage_frame() -> u32 {
    let mut frame = header(12);
    frame.extend_from_slice(&[0xee; 12]);
    scribble_on_channel(&frame);
    std::process::exit(0);
}

#[stampede::function]
fn truncated_frame() -> u32 {
    let mut frame = header(100);
    frame.extend_from_slice(&[0; 10]);
    scribble_on_channel(&frame);
    std::process::exit(0);
}

#[stampede::function]
fn oversized_frame() -> u32 {
    scribble_on_channel(&header(u32::MAX));
    std::process::exit(0);
}

/// A length under the hard frame limit but over the call's result limit,
/// followed by real bytes, as a buggy writer would send.
#[stampede::function]
fn lying_frame() -> u32 {
    let mut frame = header(900 << 20);
    frame.extend_from_slice(&[0; 4096]);
    scribble_on_channel(&frame);
    std::thread::sleep(std::time::Duration::from_secs(30));
    0
}

/// Plain text where a frame belongs.
#[stampede::function]
fn text_on_channel() -> u32 {
    scribble_on_channel(b"hello from the code under test\n");
    std::process::exit(0);
}

#[test]
fn megabytes_of_output_do_not_corrupt_the_result() {
    let outcomes = stampede::call_concurrently(2, shout, 8).unwrap();
    for outcome in &outcomes {
        assert_eq!(
            outcome.value().map(String::as_str),
            Some("result intact"),
            "{outcome}"
        );
        assert_eq!(outcome.stdout().total_len(), 8 * 1024 * 1024);
        assert!(outcome.stdout().is_truncated());
        assert_eq!(
            outcome.stdout().as_bytes().len(),
            64 * 1024,
            "the default capture keeps the tail"
        );
    }
}

#[test]
fn binary_garbage_on_stdout_and_stderr_does_not_corrupt_the_result() {
    let outcomes = stampede::call_concurrently(3, spray_garbage, ()).unwrap();
    for outcome in &outcomes {
        assert_eq!(outcome.value(), Some(&vec![1, 2, 3]), "{outcome}");
        assert_eq!(outcome.stdout().total_len(), 64 * 1024 + 7 + 26);
    }
}

/// A `String` is encoded as one copy; the size is what is tested here.
#[test]
fn sixty_four_megabyte_arguments_and_results_round_trip() {
    let text: String = (0..64 * 1024 * 1024)
        .map(|i: u32| char::from(b'a' + (i % 26) as u8))
        .collect();
    let outcomes = stampede::call_concurrently(2, mirror_text, text.clone()).unwrap();
    let expected: String = text.chars().rev().collect();
    for value in outcomes.unwrap_all() {
        assert!(
            value.len() == expected.len() && value == expected,
            "the reversed 64 MB came back intact"
        );
    }
}

/// serde encodes a `Vec<u8>` element by element: slower, same result.
#[test]
fn a_megabyte_vec_round_trips() {
    let data: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let outcomes = stampede::call_concurrently(2, mirror, data.clone()).unwrap();
    let expected: Vec<u8> = data.into_iter().rev().collect();
    for value in outcomes.unwrap_all() {
        assert!(value == expected, "the reversed megabyte came back intact");
    }
}

fn failure_reason(outcome: &stampede::Outcome<u32>) -> &str {
    match outcome.status() {
        Status::Failed { reason } => reason,
        other => panic!("expected a failed outcome, got {other:?}\n{outcome}"),
    }
}

#[test]
fn a_garbage_frame_is_a_failed_outcome() {
    let outcomes = stampede::call_concurrently(1, garbage_frame, ()).unwrap();
    let reason = failure_reason(&outcomes[0]);
    assert!(
        reason.contains("garbage") || reason.contains("unexpected report"),
        "{reason}"
    );
}

#[test]
fn a_truncated_frame_is_a_failed_outcome() {
    let outcomes = stampede::call_concurrently(1, truncated_frame, ()).unwrap();
    let reason = failure_reason(&outcomes[0]);
    assert!(reason.contains("cut short"), "{reason}");
}

#[test]
fn an_oversized_frame_is_refused_without_allocating_it() {
    let outcomes = stampede::call_concurrently(1, oversized_frame, ()).unwrap();
    let reason = failure_reason(&outcomes[0]);
    assert!(reason.contains("claims 4294967295 bytes"), "{reason}");
}

#[test]
fn a_lying_length_is_refused_at_the_result_limit_without_buffering_it() {
    let outcomes = stampede::Options::new()
        .result_limit(1 << 20)
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(1, lying_frame, ())
        .unwrap();
    let outcome = &outcomes[0];
    assert!(
        matches!(outcome.status(), Status::Failed { reason } if reason.contains("1048576-byte limit")),
        "{outcome}"
    );
}

#[test]
fn text_written_on_the_channel_is_refused_at_its_first_bytes() {
    let outcomes = stampede::call_concurrently(1, text_on_channel, ()).unwrap();
    let reason = failure_reason(&outcomes[0]);
    assert!(reason.contains("instead of stampede's marker"), "{reason}");
}
