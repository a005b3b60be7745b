//! Options: environment, concurrency limit, capture limit, timeout.

stampede::entry!();

use std::time::Duration;

#[stampede::function]
fn read_env(name: String) -> Option<String> {
    std::env::var(name).ok()
}

#[stampede::function]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[stampede::function]
fn print_numbered(lines: u32) {
    for i in 0..lines {
        println!("line {i:05}");
    }
}

#[test]
fn extra_environment_reaches_every_child() {
    let outcomes = stampede::Options::new()
        .env("STAMPEDE_TEST_COLOUR", "teal")
        .call_concurrently(3, read_env, "STAMPEDE_TEST_COLOUR".to_string())
        .unwrap();
    assert_eq!(outcomes.unwrap_all(), vec![Some("teal".to_string()); 3]);
    let inherited = stampede::call_concurrently(1, read_env, "PATH".to_string())
        .unwrap()
        .unwrap_all();
    assert_eq!(
        inherited[0],
        std::env::var("PATH").ok(),
        "the parent's environment is inherited"
    );
}

#[test]
fn no_more_children_than_the_limit_are_alive_at_once() {
    let outcomes = stampede::Options::new()
        .max_concurrent(2)
        .call_concurrently(6, nap, 50)
        .unwrap();
    assert!(outcomes.all_returned(), "{outcomes}");
    // At each child's spawn, count the children whose lifetime covers it.
    for o in &outcomes {
        let at = o.timings().spawned;
        let alive = outcomes
            .iter()
            .filter(|p| p.timings().spawned <= at && at < p.timings().ended)
            .count();
        assert!(alive <= 2, "{alive} children alive at {at:?}");
    }
    let spawns: Vec<_> = outcomes.iter().map(|o| o.timings().spawned).collect();
    assert!(
        spawns[5] >= Duration::from_millis(100),
        "six 50 ms naps two at a time take at least 3 rounds: {spawns:?}"
    );
}

#[test]
fn a_limit_of_zero_is_an_error_naming_the_fix() {
    let err = stampede::Options::new()
        .max_concurrent(0)
        .call_concurrently(2, nap, 1)
        .unwrap_err();
    assert!(matches!(err, stampede::Error::InvalidOptions(_)));
    assert!(err.to_string().contains("use at least 1"), "{err}");
}

#[test]
fn the_capture_limit_keeps_the_tail_and_counts_the_rest() {
    let outcomes = stampede::Options::new()
        .capture_limit(1100)
        .call_concurrently(1, print_numbered, 1000)
        .unwrap();
    let stdout = outcomes[0].stdout();
    assert_eq!(stdout.total_len(), 11_000);
    assert!(stdout.is_truncated());
    assert_eq!(stdout.as_bytes().len(), 1100);
    assert!(stdout.to_string_lossy().ends_with("line 00999\n"));
    assert!(stdout.to_string_lossy().starts_with("line 00900\n"));
    assert!(outcomes[0].to_string().is_empty() || !outcomes[0].to_string().contains("line 00000"));
}

#[test]
fn a_timeout_is_per_child_and_reported() {
    let outcomes = stampede::Options::new()
        .timeout(Duration::from_millis(400))
        .call_concurrently(2, nap, 30_000)
        .unwrap();
    for o in &outcomes {
        let stampede::Status::TimedOut { after, limit } = *o.status() else {
            panic!("not timed out: {o}");
        };
        assert_eq!(limit, Duration::from_millis(400));
        // Measured, not the setting: at the limit, and well before half
        // as much again (a deadline rule that fired late would show here).
        assert!(
            after >= limit && after < limit * 3 / 2,
            "killed after {after:?} for a {limit:?} limit"
        );
        assert!(o.timings().ended < Duration::from_secs(10));
    }
    let fine = stampede::Options::new()
        .timeout(Duration::from_secs(20))
        .call_concurrently(2, nap, 10)
        .unwrap();
    assert!(fine.all_returned());
}
