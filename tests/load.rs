//! `stampede::Load`: many calls through long-lived workers against a real
//! server on loopback; every call accounted for, and the leak detector with
//! its positive and negative controls.

stampede::entry!();

#[path = "common/http.rs"]
mod http;

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use stampede::{Error, LeakKind, Load, Status};

/// A well-behaved client: one connection per call, closed after it.
#[stampede::function]
fn fetch(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    http::get(&mut stream)
}

/// Connections this worker never closes.
static KEPT: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

/// A leaky client: a new connection per call, never closed.
#[stampede::function]
fn fetch_and_leak(port: u16) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let status = http::get(&mut stream);
    KEPT.lock().unwrap().push(stream);
    status
}

/// A client that starts a background poller per call and never stops it.
#[stampede::function]
fn fetch_and_leak_a_thread(port: u16) -> u16 {
    std::thread::Builder::new()
        .name("leaky-poller".into())
        .spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        })
        .unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    http::get(&mut stream)
}

/// Prints its index; panics on call 5, exits (crashing its worker) on call
/// 7, hangs on call 9.
#[stampede::function]
fn troublesome(i: u64) -> u64 {
    println!("out of call {i}");
    eprintln!("err of call {i}");
    match i {
        5 => panic!("call five panics"),
        7 => std::process::exit(3),
        9 => std::thread::sleep(Duration::from_secs(300)),
        _ => {}
    }
    i
}

/// A number the parent refuses when it is odd: its `Deserialize` checks,
/// its `Serialize` does not, so an odd one leaves the worker and cannot be
/// decoded.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u64")]
struct Even(u64);

impl TryFrom<u64> for Even {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        if n % 2 == 0 {
            Ok(Even(n))
        } else {
            Err(format!("{n} is odd"))
        }
    }
}

#[stampede::function]
fn unchecked_even(i: u64) -> Even {
    Even(i)
}

#[test]
fn a_result_that_cannot_be_decoded_is_a_failed_call_that_says_why() {
    let report = Load::new(4)
        .workers(2)
        .run_with(unchecked_even, |i| i)
        .unwrap();
    assert_eq!(report.calls(), 4, "{report}");
    let values: Vec<u64> = report.values().map(|even| even.0).collect();
    assert_eq!(values, [0, 2], "{report}");
    let failed: Vec<usize> = report.failures().iter().map(|o| o.index()).collect();
    assert_eq!(failed, [1, 3], "{report}");
    for outcome in report.failures() {
        let Status::Failed { reason } = outcome.status() else {
            panic!("not a failed call: {outcome}");
        };
        assert!(
            reason.contains("could not decode the returned value as `load::Even`")
                && reason.contains(&format!("{} is odd", outcome.index())),
            "{reason}"
        );
    }
    // The workers are fine: the call failed in the parent.
    assert!(
        report.workers().iter().all(|w| w.pids.len() == 1),
        "{report}"
    );
}

#[stampede::function]
fn quick(i: u64) -> u64 {
    i + 1
}

#[test]
fn short_calls_sent_ahead_do_not_count_their_wait_as_response_time() {
    // Short calls wait in the workers' channels (several in flight per
    // worker); each response counts from when its worker was free for it,
    // so no call's response time is below its own service time, and every
    // percentile of the responses is at least that of the services.
    let report = Load::new(3000).workers(2).run_with(quick, |i| i).unwrap();
    report.assert_all_returned();
    assert!(
        report.values().copied().eq(1..=3000),
        "values out of call order"
    );
    let (response, service) = (report.latency(), report.service_time());
    assert!(response.is_exact() && response.count() == 3000, "{report}");
    for p in [50.0, 90.0, 99.0, 100.0] {
        assert!(
            response.percentile(p) >= service.percentile(p),
            "p{p}: response {:?} below service {:?}\n{report}",
            response.percentile(p),
            service.percentile(p)
        );
    }
}

#[stampede::function]
fn close_stdout_at_call_one(i: u64) -> u64 {
    if i == 1 {
        // Code under test that detaches from its terminal.
        // SAFETY: closing descriptor 1 is the behaviour under test.
        unsafe { libc::close(1) };
    }
    i
}

#[test]
fn a_call_that_closes_stdout_still_returns_and_the_worker_goes_on() {
    let report = Load::new(4)
        .workers(1)
        .run_with(close_stdout_at_call_one, |i| i)
        .unwrap();
    report.assert_all_returned();
    assert_eq!(report.values().copied().collect::<Vec<u64>>(), [0, 1, 2, 3]);
    assert_eq!(report.workers()[0].pids.len(), 1, "{report}");
    assert!(
        report
            .to_string()
            .contains(": 4 of 4 calls over 1 worker, 4 returned"),
        "{report}"
    );
}

/// Marks this call's arrival in `dir`, then waits (up to 10 s) until
/// `expected` calls have arrived; returns how many it saw, and its pid.
#[stampede::function]
fn arrive_and_wait(dir: std::path::PathBuf, expected: usize) -> (usize, u32) {
    let me = std::process::id();
    std::fs::write(dir.join(me.to_string()), b"").unwrap();
    let seen = || std::fs::read_dir(&dir).unwrap().count();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen() < expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    (seen(), me)
}

#[test]
fn as_many_calls_as_workers_all_run_at_once() {
    // No call may wait in one worker's channel while another worker is idle
    // or still starting: four calls over four workers all run together.
    let dir = tempfile::tempdir().unwrap();
    let report = Load::new(4)
        .workers(4)
        .run(arrive_and_wait, (dir.path().to_owned(), 4))
        .unwrap();
    report.assert_all_returned();
    let seen: Vec<usize> = report.values().map(|(seen, _)| *seen).collect();
    assert_eq!(seen, [4, 4, 4, 4], "calls waited behind others\n{report}");
    let mut pids: Vec<u32> = report.values().map(|(_, pid)| *pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "one call per worker\n{report}");
}

#[test]
fn a_well_behaved_client_returns_every_call_and_leaks_nothing() {
    let port = http::serve();
    let report = Load::new(40).workers(2).run(fetch, port).unwrap();
    report.assert_all_returned().assert_no_leaks();
    assert_eq!(report.calls(), 40);
    assert!(report.values().all(|status| *status == 200), "{report}");
    assert_eq!(report.latency().count(), 40);
    assert!(report.latency().p50() <= report.latency().max());
    assert_eq!(report.workers().iter().map(|w| w.calls).sum::<u64>(), 40);
}

#[test]
fn a_connection_leaked_per_call_is_named_with_its_endpoints_within_ten_calls() {
    let port = http::serve();
    let report = Load::new(20).run(fetch_and_leak, port).unwrap();
    report.assert_all_returned();
    let leaks = report.leaks();
    assert_eq!(leaks.len(), 1, "{report}");
    let leak = &leaks[0];
    assert_eq!(leak.kind(), LeakKind::Descriptors, "{report}");
    assert!(leak.first_after_call() <= 3 + 10, "{leak}");
    assert!(leak.per_call() >= 0.9, "{leak}");
    let line = leak.to_string();
    assert!(
        line.contains("+1 descriptor per call — ")
            && line.contains("socket TCP 127.0.0.1:")
            && line.contains(&format!("→ 127.0.0.1:{port} ESTABLISHED")),
        "{line}"
    );
    // A socket per call, counted by the worker after each of its calls:
    // exactly as many more by the end as calls after the warm-up.
    let grown = leak.grown_by_end();
    assert!(grown >= 10, "{line}");
    assert!(
        line.ends_with(&format!(
            "; {grown} more held by the end, over its {grown} calls after the warm-up"
        )),
        "{line}"
    );
    let panic = std::panic::catch_unwind(|| {
        report.assert_no_leaks();
    })
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains(&line), "{message}");
}

#[test]
fn a_thread_leaked_per_call_is_named() {
    let port = http::serve();
    let report = Load::new(15).run(fetch_and_leak_a_thread, port).unwrap();
    let threads: Vec<_> = report
        .leaks()
        .iter()
        .filter(|l| l.kind() == LeakKind::Threads)
        .collect();
    assert_eq!(threads.len(), 1, "{report}");
    assert!(
        threads[0].to_string().contains("thread 'leaky-poller'"),
        "{}",
        threads[0]
    );
    assert!(threads[0].first_after_call() <= 3 + 10, "{}", threads[0]);
}

#[test]
fn leak_detection_can_be_turned_off() {
    let port = http::serve();
    let report = Load::new(12)
        .leak_detection(false)
        .run(fetch_and_leak, port)
        .unwrap();
    assert!(report.leaks().is_empty(), "{report}");
}

#[test]
fn a_crash_with_the_last_call_queued_behind_it_still_runs_that_call() {
    // Call 1 crashes its worker while call 2, the last one, waits in its
    // channel: a new worker must be started for it, though no call is left
    // to send for the first time.
    let report = Load::new(3)
        .workers(1)
        .run_with(troublesome, |i| [0, 7, 1][i as usize])
        .unwrap();
    assert_eq!(report.calls(), 3, "{report}");
    assert_eq!(
        report.values().copied().collect::<Vec<u64>>(),
        [0, 1],
        "{report}"
    );
    assert!(
        matches!(report.failures()[0].status(), Status::Crashed(_)),
        "{report}"
    );
    assert_eq!(report.workers()[0].pids.len(), 2, "{report}");
}

/// Sleeps `ms` milliseconds; returns them.
#[stampede::function]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_call_queued_behind_a_long_one_still_gets_its_whole_timeout() {
    // Through one worker the second call is sent while the first runs and
    // waits in the channel: its 3 s count from when the worker was free for
    // it (after 2.4 s), not from when it was sent (it would time out at
    // 3 s, 0.6 s into its 1.5 s run).
    let limit = Duration::from_secs(3);
    let report = Load::new(2)
        .workers(1)
        .call_timeout(limit)
        .leak_detection(false)
        .run_with(sleep_ms, |i| [2400, 1500][i as usize])
        .unwrap();
    report.assert_all_returned();
    assert_eq!(report.values().copied().collect::<Vec<_>>(), [2400, 1500]);
    assert_eq!(report.workers()[0].pids.len(), 1, "{report}");
}

#[test]
fn a_timed_out_call_is_killed_at_its_limit_and_says_how_long_it_ran() {
    let limit = Duration::from_secs(1);
    let report = Load::new(1)
        .call_timeout(limit)
        .leak_detection(false)
        .run_with(sleep_ms, |_| 30_000)
        .unwrap();
    let failure = &report.failures()[0];
    let Status::TimedOut { after, limit: said } = *failure.status() else {
        panic!("not timed out: {report}");
    };
    assert_eq!(said, limit);
    assert!(
        after >= limit && after < limit * 3 / 2,
        "killed after {after:?} for a {limit:?} limit"
    );
}

#[test]
fn failed_calls_carry_their_own_output_and_crashed_workers_are_replaced() {
    let report = Load::new(12)
        .workers(1)
        .call_timeout(Duration::from_secs(3))
        .run_with(troublesome, |i| i)
        .unwrap();
    assert_eq!(report.calls(), 12, "{report}");
    assert_eq!(report.returned(), 9, "{report}");
    let failed: Vec<(usize, &Status<u64>)> = report
        .failures()
        .iter()
        .map(|o| (o.index(), o.status()))
        .collect();
    assert!(
        matches!(failed[0], (5, Status::Panicked { message, .. }) if message == "call five panics"),
        "{report}"
    );
    assert!(matches!(failed[1], (7, Status::Crashed(_))), "{report}");
    assert!(
        matches!(failed[2], (9, Status::TimedOut { .. })),
        "{report}"
    );
    for outcome in report.failures() {
        let i = outcome.index();
        assert_eq!(outcome.worker(), Some(0), "{outcome}");
        assert!(
            outcome
                .to_string()
                .starts_with(&format!("call {i} (worker 0, pid {})", outcome.pid())),
            "{outcome}"
        );
        assert_eq!(
            outcome.stdout().to_string_lossy(),
            format!("out of call {i}\n"),
            "{outcome}"
        );
        assert!(
            outcome
                .stderr()
                .to_string_lossy()
                .starts_with(&format!("err of call {i}\n")),
            "{outcome}"
        );
    }
    // The crash and the timeout each cost the worker its process.
    assert_eq!(report.workers()[0].pids.len(), 3, "{report}");
    let values: Vec<u64> = report.values().copied().collect();
    assert_eq!(values, [0, 1, 2, 3, 4, 6, 8, 10, 11]);
}

/// Prints 99 lines of 100 bytes and one of 99, then exits: a failed call
/// with exactly 9,999 bytes of stdout and none of stderr.
#[stampede::function]
fn print_and_exit(i: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in 0..100 {
        let width = if line == 99 { 98 } else { 99 };
        writeln!(out, "{:0width$}", i * 1000 + line).unwrap();
    }
    out.flush().unwrap();
    std::process::exit(1);
}

#[test]
fn failed_calls_keep_their_output_whole_within_the_budget_then_their_last_lines() {
    let report = Load::new(12)
        .failure_output_budget(9 * 9_999 + 9_998)
        .leak_detection(false)
        .run_with(print_and_exit, |i| i)
        .unwrap();
    assert_eq!(report.failed(), 12, "{report}");
    let kept: Vec<usize> = report
        .failures()
        .iter()
        .map(|o| o.stdout().as_bytes().len())
        .collect();
    // Nine fit the budget whole; the tenth is one byte too many.
    assert_eq!(kept[..9], [9_999; 9], "{report}");
    assert_eq!(report.outputs_cut(), 3, "{report}");
    for failure in &report.failures()[9..] {
        let out = failure.stdout();
        assert_eq!(out.total_len(), 9_999);
        // The last lines, from a line's start, in 256 bytes: one of 100
        // bytes and the last of 99.
        assert_eq!(out.as_bytes().len(), 100 + 99, "{failure}");
        let last = format!("{:098}\n", failure.index() as u64 * 1000 + 99);
        assert!(out.to_string_lossy().ends_with(&last), "{failure}");
    }
    assert!(
        report
            .notes()
            .iter()
            .any(|n| n.contains("3 failed calls") && n.contains("failure_output_budget")),
        "{report}"
    );
}

#[test]
fn a_run_can_stop_at_the_first_failure() {
    let report = Load::new(12)
        .stop_at_first_failure(true)
        .run_with(troublesome, |i| i)
        .unwrap();
    assert_eq!(report.failed(), 1, "{report}");
    assert_eq!(report.calls(), 6, "{report}");
    assert!(
        report.stopped_early().unwrap().contains("call 5"),
        "{report}"
    );
    assert!(
        std::panic::catch_unwind(|| {
            report.assert_all_returned();
        })
        .is_err()
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let zero_calls = Load::new(0).run(fetch, 1).unwrap_err();
    assert!(
        matches!(zero_calls, Error::InvalidOptions(_)),
        "{zero_calls}"
    );
    let zero_workers = Load::new(3).workers(0).run(fetch, 1).unwrap_err();
    assert!(
        zero_workers.to_string().contains("workers(0)"),
        "{zero_workers}"
    );
    let no_time = Load::new(3)
        .call_timeout(Duration::ZERO)
        .run(fetch, 1)
        .unwrap_err();
    assert!(
        matches!(no_time, Error::InvalidOptions(ref why) if why.contains("call_timeout(0)")),
        "{no_time}"
    );
    let closure = Load::new(3).run(|x: u16| x, 1).unwrap_err();
    assert!(matches!(closure, Error::NotRegistered { .. }), "{closure}");
    // No worker can start within no time at all: each is killed before its
    // first call, and after three the run is given up, with the reason.
    let never_ready = Load::new(3)
        .start_timeout(Duration::ZERO)
        .run(fetch, 1)
        .unwrap_err();
    assert!(
        matches!(never_ready, Error::WorkerStart { .. })
            && never_ready.to_string().contains("was not ready within 0ns"),
        "{never_ready}"
    );
}

#[test]
fn loads_on_parallel_threads_each_get_their_own_calls() {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                Load::new(300)
                    .workers(2)
                    .run_with(quick, move |i| t * 1000 + i)
                    .unwrap()
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let report = thread.join().unwrap();
        report.assert_all_returned();
        let t = t as u64;
        assert!(
            report
                .values()
                .copied()
                .eq((0..300).map(|i| t * 1000 + i + 1)),
            "thread {t} got another load's values\n{report}"
        );
    }
}
