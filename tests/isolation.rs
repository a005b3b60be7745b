//! A child runs exactly the registered function: not the calling test, not
//! any other test; it is the running image, and it holds no descriptor but
//! stdin, stdout, stderr and stampede's two.

stampede::entry!();

#[path = "common/procs.rs"]
mod procs;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// Every test in this file starts with this: if a test body ever ran in a
/// child, the child would leave its name in the log the parent inspects.
fn log_if_child(test: &str) {
    if let (true, Ok(log)) = (stampede::is_child(), std::env::var("ISOLATION_LOG")) {
        std::fs::write(format!("{log}.{}", std::process::id()), test).unwrap();
    }
}

#[stampede::function]
fn describe() -> (Vec<String>, bool) {
    (std::env::args().collect(), stampede::is_child())
}

#[stampede::function]
fn open_descriptors() -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    // The directory listing itself is one of them, and closed by now.
    fds.retain(|(fd, target)| !target.starts_with("/proc/") || *fd < 3);
    fds.retain(|(fd, _)| std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok());
    fds.sort();
    fds
}

#[stampede::function]
fn running_image() -> String {
    std::fs::read_link("/proc/self/exe")
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn the_calling_test_and_other_tests_never_run_in_a_child() {
    log_if_child("the_calling_test_and_other_tests_never_run_in_a_child");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran");
    let outcomes = stampede::Options::new()
        .env("ISOLATION_LOG", &log)
        .call_concurrently(4, describe, ())
        .unwrap()
        .unwrap_all();
    for (args, is_child) in outcomes {
        assert!(is_child);
        assert_eq!(
            args[1..],
            [
                "__stampede_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "--quiet",
                "--color=never"
            ]
        );
    }
    let ran: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(ran.is_empty(), "test bodies ran in children: {ran:?}");
    assert!(!stampede::is_child());
}

#[test]
fn children_hold_only_stdio_and_stampedes_descriptors() {
    log_if_child("children_hold_only_stdio_and_stampedes_descriptors");
    // A descriptor opened the way a careless C library would: no O_CLOEXEC.
    let path = std::ffi::CString::new("/dev/null").unwrap();
    // SAFETY: a plain open(2) of a valid C string; the result is checked.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(raw >= 0);
    // SAFETY: `raw` was just opened and is owned by nobody else.
    let leaky = unsafe { OwnedFd::from_raw_fd(raw) };
    let flags = || unsafe { libc::fcntl(leaky.as_raw_fd(), libc::F_GETFD) };
    assert_eq!(flags() & libc::FD_CLOEXEC, 0);

    let outcomes = stampede::call_concurrently(3, open_descriptors, ()).unwrap();
    for fds in outcomes.unwrap_all() {
        let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
        // 3 is the channel, 4 the gate (start barrier and checkpoints).
        assert_eq!(numbers, [0, 1, 2, 3, 4], "unexpected descriptors: {fds:?}");
        assert_eq!(fds[0].1, "/dev/null", "stdin is /dev/null");
        assert!(
            fds[1].1.starts_with("pipe:") && fds[2].1.starts_with("pipe:"),
            "{fds:?}"
        );
        assert!(fds[3].1.starts_with("socket:"), "the channel: {fds:?}");
        assert!(
            fds[4].1.starts_with("/memfd:stampede-gate"),
            "the gate: {fds:?}"
        );
    }
    assert_eq!(
        flags() & libc::FD_CLOEXEC,
        0,
        "the parent's descriptor flags are never changed"
    );
}

#[test]
fn children_run_the_parents_image() {
    log_if_child("children_run_the_parents_image");
    let mine = std::fs::read_link("/proc/self/exe")
        .unwrap()
        .display()
        .to_string();
    for image in stampede::call_concurrently(2, running_image, ())
        .unwrap()
        .unwrap_all()
    {
        assert_eq!(image, mine);
    }
}

/// Run by the next test in a copy of this binary: replaces the copy on disk
/// with a script, then calls children. Ignored in normal runs.
#[test]
#[ignore = "started by a_binary_replaced_on_disk_does_not_sneak_into_children"]
fn replaced_binary_inner() {
    log_if_child("replaced_binary_inner");
    let exe = std::env::current_exe().unwrap();
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, "#!/bin/sh\necho impostor\nexit 42\n").unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let outcomes = stampede::call_concurrently(2, describe, ()).unwrap();
    assert!(outcomes.all_returned(), "{outcomes}");
    println!("INNER-OK");
}

#[test]
fn a_binary_replaced_on_disk_does_not_sneak_into_children() {
    log_if_child("a_binary_replaced_on_disk_does_not_sneak_into_children");
    let dir = tempfile::tempdir().unwrap();
    let copy: PathBuf = dir.path().join("isolation-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    procs::assert_ignored_test_passes(&copy, "replaced_binary_inner");
}
