//! Hostile surroundings: whatever the test process, its other threads or the
//! code under test do, a call neither hangs nor leaves anything running.
//! Each test is named after the failure it pins.
//!
//! Tests that change process-wide state (signal dispositions, limits, a
//! thread that reaps every child) run in a fresh copy of this binary, on an
//! ignored `*_inner` test, and are also run through the portable engine
//! (`STAMPEDE_SPAWN_FALLBACK=1`: `posix_spawn`, exits watched by polling).

stampede::entry!();

#[path = "common/procs.rs"]
mod procs;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};
use stampede::{Error, Options, Status};

const FALLBACK: &[(&str, &str)] = &[("STAMPEDE_SPAWN_FALLBACK", "1")];
const INNER_LIMIT: Duration = Duration::from_secs(90);

fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// Runs an inner test through both engines.
fn run_inner_both_ways(name: &str) {
    procs::assert_ignored_test_passes_within(&exe(), name, &[], INNER_LIMIT);
    procs::assert_ignored_test_passes_within(&exe(), name, FALLBACK, INNER_LIMIT);
}

#[stampede::function]
fn square(x: u64) -> u64 {
    x * x
}

#[stampede::function]
fn hang() {
    std::thread::sleep(Duration::from_secs(300));
}

#[stampede::function]
fn square_or_hang(x: u64) -> u64 {
    if x == 3 {
        std::thread::sleep(Duration::from_secs(300));
    }
    x * x
}

/// Ordinary calls and a timeout, as every inner test checks them, then a
/// load whose call 3 hangs (its worker is killed and replaced).
fn calls_still_work() {
    let squares = stampede::call_concurrently(4, square, 7)
        .unwrap()
        .unwrap_all();
    assert_eq!(squares, [49; 4]);
    let started = Instant::now();
    let outcomes = Options::new()
        .timeout(Duration::from_millis(500))
        .call_concurrently(2, hang, ())
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.status(), Status::TimedOut { .. })),
        "{outcomes}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let report = stampede::Load::new(6)
        .workers(2)
        .call_timeout(Duration::from_millis(500))
        .run_with(square_or_hang, |i| i)
        .unwrap();
    assert_eq!(
        report.values().copied().collect::<Vec<u64>>(),
        [0, 1, 4, 16, 25],
        "{report}"
    );
    assert!(
        matches!(
            (report.failures()[0].index(), report.failures()[0].status()),
            (3, Status::TimedOut { .. })
        ),
        "{report}"
    );
}

// 1. SIGCHLD ignored: the call used to spin at 100 % and never return.

#[test]
#[ignore = "run by sigchld_ignored_in_the_test_process_neither_hangs_nor_spins"]
fn sigchld_ignored_inner() {
    // SAFETY: setting a signal's disposition; this process is a throwaway.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    calls_still_work();
    println!("INNER-OK");
}

#[test]
fn sigchld_ignored_in_the_test_process_neither_hangs_nor_spins() {
    run_inner_both_ways("sigchld_ignored_inner");
}

// 2. Another thread reaps any child: the same endless spin.

#[test]
#[ignore = "run by another_thread_reaping_every_child_does_not_hang_a_call"]
fn foreign_reaper_inner() {
    let stop = Arc::new(AtomicBool::new(false));
    let reaper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut status = 0;
                // SAFETY: waitpid fills a valid int; reaping any child the
                // moment it ends is exactly the hostile behaviour under test.
                if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
                    // No child of ours to wait for (yet): look again soon.
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    calls_still_work();
    stop.store(true, Ordering::Relaxed);
    reaper.join().unwrap();
    println!("INNER-OK");
}

#[test]
fn another_thread_reaping_every_child_does_not_hang_a_call() {
    run_inner_both_ways("foreign_reaper_inner");
}

// 3. A child that leaves its process group used to escape its timeout.

#[stampede::function]
fn leave_group_and_hang() {
    // SAFETY: setpgid/getpgid only change or read process-group ids.
    unsafe { libc::setpgid(0, libc::getpgid(libc::getppid())) };
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_child_that_leaves_its_process_group_is_still_timed_out() {
    let started = Instant::now();
    let outcomes = Options::new()
        .timeout(Duration::from_millis(500))
        .call_concurrently(1, leave_group_and_hang, ())
        .unwrap();
    assert!(
        matches!(outcomes[0].status(), Status::TimedOut { .. }),
        "{outcomes}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(procs::wait_until(
        Duration::from_secs(5),
        || procs::is_gone(outcomes[0].pid())
    ));
}

// 4. Grandchildren outlived a parent killed by SIGKILL, SIGTERM or SIGINT,
//    and an outer timeout during a nested call.

#[stampede::function]
fn grandchild_then_hang(pids: PathBuf) {
    let grandchild = Command::new("sleep").arg("300").spawn().unwrap();
    append_pid(&pids, grandchild.id());
    std::mem::forget(grandchild);
    std::thread::sleep(Duration::from_secs(300));
}

fn append_pid(path: &std::path::Path, pid: u32) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{pid}\n").as_bytes()).unwrap();
}

#[test]
#[ignore = "run by grandchildren_die_with_a_killed_test_process"]
fn parent_killed_inner() {
    let pids = PathBuf::from(std::env::var("PIDS").unwrap());
    if std::env::var_os("THROUGH_LOAD").is_some() {
        // Four long-lived workers, each running a call that hangs.
        let _ = stampede::Load::new(4)
            .workers(4)
            .call_timeout(Duration::from_secs(120))
            .run(grandchild_then_hang, pids);
        return;
    }
    let _ = Options::new()
        .timeout(Duration::from_secs(120))
        .call_concurrently(4, grandchild_then_hang, pids);
}

#[test]
fn grandchildren_die_with_a_killed_test_process() {
    let through_call: &[(&str, &str)] = &[];
    let through_load: &[(&str, &str)] = &[("THROUGH_LOAD", "1")];
    for (signal, how) in [
        (libc::SIGKILL, through_call),
        (libc::SIGTERM, through_call),
        (libc::SIGINT, through_call),
        (libc::SIGKILL, through_load),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let mut env = vec![("PIDS", pids.to_str().unwrap())];
        env.extend_from_slice(how);
        let mut inner = procs::start_ignored_test(&exe(), "parent_killed_inner", &env);
        assert!(
            procs::wait_until(Duration::from_secs(30), || procs::read_pids(&pids).len()
                == 4),
            "the grandchildren started"
        );
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(inner.id() as i32, signal) };
        inner.wait().unwrap();
        let grandchildren = procs::read_pids(&pids);
        assert!(
            procs::wait_until(Duration::from_secs(10), || grandchildren
                .iter()
                .all(|p| procs::is_gone(*p))),
            "grandchildren {grandchildren:?} outlived a test process killed by signal {signal} \
             ({how:?})"
        );
    }
}

#[stampede::function]
fn nested_grandchildren(pids: PathBuf) {
    let _ = Options::new()
        .timeout(Duration::from_secs(120))
        .call_concurrently(2, grandchild_then_hang, pids);
}

#[test]
fn grandchildren_of_a_nested_call_die_with_an_outer_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let watched = pids.clone();
    let watcher = std::thread::spawn(move || {
        procs::wait_until(Duration::from_secs(60), || {
            procs::read_pids(&watched).len() == 4
        })
    });
    let outcomes = Options::new()
        .timeout(Duration::from_secs(10))
        .call_concurrently(2, nested_grandchildren, pids.clone())
        .unwrap();
    assert!(watcher.join().unwrap(), "the nested grandchildren started");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.status(), Status::TimedOut { .. })),
        "{outcomes}"
    );
    let grandchildren = procs::read_pids(&pids);
    assert!(
        procs::wait_until(Duration::from_secs(10), || grandchildren
            .iter()
            .all(|p| procs::is_gone(*p))),
        "nested grandchildren {grandchildren:?} outlived the outer timeout"
    );
}

// 5. The parent's death opened the start barrier: children entered the
//    function after the parent was gone.

/// An argument whose decoding, in child 0 only, takes `delay_ms`: the other
/// children wait at the start barrier meanwhile.
#[derive(Serialize, Clone)]
struct SlowForChildZero {
    dir: PathBuf,
    delay_ms: u64,
}

impl<'de> Deserialize<'de> for SlowForChildZero {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (dir, delay_ms) = <(PathBuf, u64)>::deserialize(d)?;
        if procs::child_index() == 0 {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        Ok(SlowForChildZero { dir, delay_ms })
    }
}

#[stampede::function]
fn enter_and_record(arg: SlowForChildZero) -> u64 {
    append_pid(&arg.dir.join("entered"), std::process::id());
    procs::child_index()
}

#[test]
#[ignore = "run by the_parents_death_never_opens_the_start_barrier"]
fn parent_dies_at_barrier_inner() {
    let dir = PathBuf::from(std::env::var("DIR").unwrap());
    let arg = SlowForChildZero {
        dir,
        delay_ms: 60_000,
    };
    let _ = stampede::call_concurrently(6, enter_and_record, arg);
}

#[test]
fn the_parents_death_never_opens_the_start_barrier() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut inner = procs::start_ignored_test(
            &exe(),
            "parent_dies_at_barrier_inner",
            &[("DIR", dir.path().to_str().unwrap())],
        );
        let inner_pid = inner.id();
        let children = || procs::children_of(inner_pid);
        assert!(procs::wait_until(Duration::from_secs(30), || children()
            .len()
            == 6));
        let started = children();
        // Long enough for children 1 to 5 to be waiting at the barrier.
        std::thread::sleep(Duration::from_millis(700));
        inner.kill().unwrap();
        inner.wait().unwrap();
        assert!(
            procs::wait_until(Duration::from_secs(10), || started
                .iter()
                .all(|p| procs::is_gone(*p))),
            "children {started:?} outlived their parent"
        );
        let entered = procs::read_pids(&dir.path().join("entered"));
        assert!(
            entered.is_empty(),
            "children {entered:?} entered the function after the parent died"
        );
    }
}

// 6. The smaller ones.

/// A thread of the test process forks (without exec) while a call waits at
/// its barrier; the copy holds every descriptor of the parent for 30 s.
#[test]
fn a_fork_in_another_thread_does_not_hold_the_barrier_shut() {
    let forked = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(150));
        // SAFETY: the copy only calls async-signal-safe functions (sleep,
        // _exit) before it ends.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::sleep(30);
                libc::_exit(0)
            };
        }
        pid
    });
    let dir = tempfile::tempdir().unwrap();
    let arg = SlowForChildZero {
        dir: dir.path().to_owned(),
        delay_ms: 600,
    };
    let started = Instant::now();
    let outcomes = Options::new()
        .timeout(Duration::from_secs(15))
        .call_concurrently(4, enter_and_record, arg)
        .unwrap();
    let pid = forked.join().unwrap();
    // SAFETY: killing and reaping the copy this test forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    assert_eq!(outcomes.unwrap_all(), [0, 1, 2, 3]);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn siblings_of_a_child_slow_to_get_ready_say_what_they_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let arg = SlowForChildZero {
        dir: dir.path().to_owned(),
        delay_ms: 30_000,
    };
    let outcomes = Options::new()
        .timeout(Duration::from_secs(2))
        .call_concurrently(3, enter_and_record, arg)
        .unwrap();
    for outcome in outcomes.iter().skip(1) {
        assert!(
            matches!(outcome.status(), Status::TimedOut { .. }),
            "{outcome}"
        );
        let notes = outcome.notes().join("\n");
        assert!(
            notes.contains("never released from the start barrier")
                && notes.contains("child 0 (still starting)"),
            "{outcome}"
        );
        assert!(outcome.to_string().contains("child 0 (still starting)"));
    }
}

extern "C" fn hang_at_exit() {
    std::thread::sleep(Duration::from_secs(120));
}

#[stampede::function]
fn return_then_hang_at_exit() -> u8 {
    // SAFETY: atexit registers a plain function of the right signature.
    unsafe { libc::atexit(hang_at_exit) };
    7
}

#[test]
fn a_child_that_hangs_after_returning_is_killed_soon_and_says_so() {
    let started = Instant::now();
    let outcomes = Options::new()
        .timeout(Duration::from_secs(120))
        .call_concurrently(1, return_then_hang_at_exit, ())
        .unwrap();
    let outcome = &outcomes[0];
    assert!(
        matches!(outcome.status(), Status::Failed { reason } if reason.contains("did not exit within")),
        "{outcome}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_child_that_returns_then_outlives_a_short_timeout_is_not_counted_as_returned() {
    let outcomes = Options::new()
        .timeout(Duration::from_secs(2))
        .call_concurrently(1, return_then_hang_at_exit, ())
        .unwrap();
    let outcome = &outcomes[0];
    assert!(
        matches!(outcome.status(), Status::Failed { reason } if reason.contains("before the 2s timeout")),
        "{outcome}"
    );
}

#[test]
fn an_absurd_number_of_children_is_an_error_not_a_panic() {
    let err = stampede::call_concurrently(usize::MAX, square, 1).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    assert!(err.to_string().contains("max_concurrent"), "{err}");
    let err = Options::new()
        .max_concurrent(1)
        .call_concurrently(usize::MAX, square, 1)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
}

#[stampede::function]
fn soft_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

#[test]
#[ignore = "run by the_descriptor_limit_is_put_back_after_a_call"]
fn nofile_restored_inner() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on valid structs; this process is a throwaway.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = 64;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    // 16 children need more than 64 descriptors in the parent.
    let seen = stampede::call_concurrently(16, soft_nofile, ())
        .unwrap()
        .unwrap_all();
    assert_eq!(soft_nofile(), 64, "the parent's soft limit is back");
    if std::env::var_os("STAMPEDE_SPAWN_FALLBACK").is_none() {
        assert!(
            seen.iter().all(|n| *n == 64),
            "children got the original limit: {seen:?}"
        );
    }
    println!("INNER-OK");
}

#[test]
fn the_descriptor_limit_is_put_back_after_a_call() {
    run_inner_both_ways("nofile_restored_inner");
}

#[stampede::function]
fn close_channel_and_open_a_file(path: PathBuf) -> u8 {
    // SAFETY: closing a descriptor number, as careless code under test would.
    unsafe { libc::close(3) };
    let file = std::fs::File::create(&path).unwrap();
    std::mem::forget(file);
    1
}

#[test]
fn a_child_that_replaces_the_channel_gets_no_frame_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine");
    let outcomes =
        stampede::call_concurrently(1, close_channel_and_open_a_file, path.clone()).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"",
        "stampede wrote into the user's file"
    );
    let report = outcomes[0].to_string();
    assert!(!outcomes[0].is_returned(), "{report}");
    assert!(
        report.contains("descriptor 3) was closed or replaced"),
        "{report}"
    );
    assert!(!report.contains("entry!"), "the child did enter: {report}");
}

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the payload's own drop");
    }
}

#[stampede::function]
fn panic_with_a_payload_that_panics_on_drop() {
    std::panic::panic_any(PanicsOnDrop);
}

#[test]
fn a_panic_payload_that_panics_on_drop_is_still_a_panic() {
    let outcomes =
        stampede::call_concurrently(1, panic_with_a_payload_that_panics_on_drop, ()).unwrap();
    assert!(outcomes[0].is_panicked(), "{outcomes}");
}

#[stampede::function]
fn escape_and_hold_stdout() -> u32 {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("sleep");
    command.arg("3");
    // SAFETY: setsid is async-signal-safe; the escapee leaves the group on
    // purpose, keeping this child's stdout open.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    let escapee = command.spawn().unwrap();
    let pid = escapee.id();
    std::mem::forget(escapee);
    pid
}

#[test]
fn output_still_held_open_after_a_child_ended_is_noted() {
    let outcomes = stampede::call_concurrently(1, escape_and_hold_stdout, ()).unwrap();
    let escapee = *outcomes[0].value().unwrap();
    // SAFETY: killing the process the child left behind on purpose.
    unsafe { libc::kill(escapee as i32, libc::SIGKILL) };
    let notes = outcomes[0].notes().join("\n");
    assert!(
        notes.contains("still held open") && notes.contains("setsid"),
        "{}",
        outcomes[0]
    );
}

/// Bug: a Load's call whose process left the worker's group outlived the
/// Load, and the report said nothing (a call's outcome notes it).
#[test]
fn a_load_notes_a_process_that_left_its_workers_group() {
    let report = stampede::Load::new(2)
        .leak_detection(false)
        .run(escape_and_hold_stdout, ())
        .unwrap();
    report.assert_all_returned();
    for &escapee in report.values() {
        // SAFETY: killing the processes the calls left behind on purpose.
        unsafe { libc::kill(escapee as i32, libc::SIGKILL) };
    }
    let pid = report.workers()[0].pids[0];
    let note = format!("worker 0 (pid {pid}) started a process that left its process group");
    assert!(
        report.notes().iter().any(|n| n.starts_with(&note)),
        "{report}"
    );
    assert!(report.to_string().contains(&note), "{report}");
}

#[test]
#[ignore = "run by a_program_started_through_the_dynamic_loader_is_told_so"]
fn through_loader_inner() {
    let err = stampede::call_concurrently(1, square, 2).unwrap_err();
    assert!(err.to_string().contains("dynamic loader"), "{err}");
    println!("INNER-OK");
}

#[test]
fn a_program_started_through_the_dynamic_loader_is_told_so() {
    let loader = std::path::Path::new("/lib64/ld-linux-x86-64.so.2");
    if !loader.exists() {
        eprintln!("no {} on this machine: nothing to check", loader.display());
        return;
    }
    let run = Command::new(loader)
        .arg(exe())
        .args([
            "through_loader_inner",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    procs::assert_inner_ok(&run);
}
