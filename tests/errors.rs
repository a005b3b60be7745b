//! Misuse is an immediate error that says what to do; spawn failures name
//! the limit and leave nothing behind.

stampede::entry!();

#[path = "common/procs.rs"]
mod procs;

use stampede::Error;

#[stampede::function]
fn registered(x: u8) -> u8 {
    x
}

fn not_marked(x: u8) -> u8 {
    x
}

/// Started alone in its own process by the next test, so that no other
/// test's children can be mistaken for ones this call started.
#[test]
#[ignore = "started by a_closure_is_refused_before_spawning_with_the_fix"]
fn closure_inner() {
    let spawned = std::sync::atomic::AtomicBool::new(false);
    let watch = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while !spawned.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(procs::own_children().is_empty(), "a child was started");
            }
        });
        let err = stampede::call_concurrently(4, |x: u8| x + 1, 1).unwrap_err();
        spawned.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().map(|()| err)
    });
    let err = watch.expect("no child was started while the call ran");
    assert!(matches!(err, Error::NotRegistered { .. }));
    let text = err.to_string();
    assert!(
        text.contains("is a closure") && text.contains("#[stampede::function]"),
        "{text}"
    );
    assert!(procs::own_children().is_empty());
    println!("INNER-OK");
}

#[test]
fn a_closure_is_refused_before_spawning_with_the_fix() {
    procs::assert_ignored_test_passes(&std::env::current_exe().unwrap(), "closure_inner");
}

#[test]
fn an_unmarked_function_or_a_pointer_is_refused_with_the_fix() {
    let err = stampede::call_concurrently(2, not_marked, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`errors::not_marked` is not registered with stampede; add `#[stampede::function]` to the \
         function (function pointers and closures cannot be called in a child)"
    );
    // A pointer made from a registered function: the fix is not the
    // attribute it already has.
    let pointer: fn(u8) -> u8 = registered;
    let err = stampede::call_concurrently(2, pointer, 1).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("`fn(u8) -> u8` is a function pointer")
            && text.contains("pass the function itself")
            && !text.contains("add `#[stampede::function]`"),
        "{text}"
    );
}

#[test]
fn zero_children_of_an_unregistered_function_is_still_an_error() {
    assert!(matches!(
        stampede::call_concurrently(0, not_marked, 1),
        Err(Error::NotRegistered { .. })
    ));
}

/// Started by the next test with a tiny descriptor limit.
#[test]
#[ignore = "started by a_descriptor_limit_is_named_and_started_children_are_reaped"]
fn descriptor_limit_inner() {
    let limit = libc::rlimit {
        rlim_cur: 200,
        rlim_max: 200,
    };
    // SAFETY: setrlimit reads a valid struct; this process is a throwaway.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);

    // Far over the limit: refused before any child starts.
    let err = stampede::call_concurrently(50, registered, 1).unwrap_err();
    assert!(
        matches!(err, Error::Limit(_)),
        "expected a limit error, got {err}"
    );
    assert!(err.to_string().contains("RLIMIT_NOFILE = 200"), "{err}");
    assert!(err.to_string().contains("Options::max_concurrent"), "{err}");

    // Within the plan, but the process already holds most descriptors:
    // the limit hits while starting, is named, and the started are reaped.
    let hoard: Vec<std::fs::File> = (0..150)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let err = stampede::call_concurrently(20, registered, 1).unwrap_err();
    drop(hoard);
    let Error::Spawn { child, .. } = &err else {
        panic!("expected a spawn error, got {err}")
    };
    assert!(*child > 0, "some children had started before the limit hit");
    assert!(err.to_string().contains("RLIMIT_NOFILE = 200"), "{err}");
    assert!(err.to_string().contains("Options::max_concurrent"), "{err}");
    assert!(
        procs::wait_until(std::time::Duration::from_secs(5), || procs::own_children()
            .is_empty()),
        "started children were reaped"
    );
    println!("INNER-OK: {err}");
}

#[test]
fn a_descriptor_limit_is_named_and_started_children_are_reaped() {
    procs::assert_ignored_test_passes(&std::env::current_exe().unwrap(), "descriptor_limit_inner");
}

#[test]
fn unwrapping_an_error_shows_the_remedy_not_the_variant() {
    let panic = std::panic::catch_unwind(|| stampede::call_concurrently(1, |x: u8| x, 1).unwrap())
        .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("move its body into a plain `fn` marked `#[stampede::function]`"),
        "{message}"
    );
    assert!(!message.contains("NotRegistered {"), "{message}");
}

/// Run by the next test inside a cgroup whose `pids.max` is 24.
#[test]
#[ignore = "started by a_cgroup_process_limit_is_named_as_such, inside a cgroup"]
fn cgroup_limit_inner() {
    let err = stampede::call_concurrently(40, registered, 1).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Limit(_) | Error::Spawn { .. }),
        "{text}"
    );
    assert!(
        text.contains("pids.max = 24") && !text.contains("RLIMIT_NPROC"),
        "{text}"
    );
    println!("INNER-OK");
}

/// Bug: a call that did not fit the cgroup's `pids.max` (cgroup v1 here, or
/// a limit on an ancestor) blamed RLIMIT_NPROC and suggested `ulimit -u`.
#[test]
fn a_cgroup_process_limit_is_named_as_such() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers");
    let parent = if v1.join("cgroup.procs").exists() {
        v1.to_path_buf()
    } else if std::fs::read_to_string(v2).is_ok_and(|c| c.contains("pids")) {
        v2.parent().unwrap().to_path_buf()
    } else {
        println!("skipped: no cgroup pids controller to make a limit in");
        return;
    };
    let group = parent.join(format!("stampede-errors-{}", std::process::id()));
    if !root || std::fs::create_dir(&group).is_err() {
        println!("skipped: needs root and a writable cgroup file system");
        return;
    }
    let made = std::fs::write(group.join("pids.max"), "24");
    let exe = std::env::current_exe().unwrap();
    let run = made.and_then(|()| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
            .args(["sh", group.to_str().unwrap()])
            .arg(&exe)
            .args(["cgroup_limit_inner", "--exact", "--ignored", "--nocapture"])
            .output()
    });
    let gone = procs::wait_until(std::time::Duration::from_secs(10), || {
        std::fs::remove_dir(&group).is_ok()
    });
    let run = run.expect("running the inner test in the cgroup");
    assert!(gone, "the cgroup {} was left", group.display());
    procs::assert_inner_ok(&run);
}
