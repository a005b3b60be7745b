//! Fan-out: the parent fires once every client is at the checkpoint
//! (`Options::on_checkpoint`), a release policy with a deadline
//! (`Options::checkpoint_release`), and every client counted
//! (`Timings::checkpoints`, `Outcomes::stages`).

stampede::entry!();

#[path = "common/broker.rs"]
mod broker;
#[path = "common/procs.rs"]
mod procs;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broker::{Broker, Received};
use stampede::{Error, Options, Release, Status};

#[stampede::function]
fn subscriber(addr: String) -> Received {
    broker::subscribe_and_wait(&addr)
}

/// This child's index in its call.
fn child_index() -> usize {
    procs::child_index() as usize
}

#[stampede::function]
fn checkpoint_then_return() -> u8 {
    stampede::checkpoint();
    1
}

/// Child `stuck` never reaches the checkpoint (it sleeps far past any
/// deadline used here); the others go straight to it.
#[stampede::function]
fn one_never_arrives(stuck: usize) -> u8 {
    if child_index() == stuck {
        println!("child {stuck} is stuck in its setup");
        std::thread::sleep(Duration::from_secs(600));
    }
    stampede::checkpoint();
    1
}

/// Child `late` reaches the checkpoint after `ms` milliseconds.
#[stampede::function]
fn one_arrives_late(late: usize, ms: u64) -> u8 {
    if child_index() == late {
        std::thread::sleep(Duration::from_millis(ms));
    }
    stampede::checkpoint();
    1
}

const N: usize = 40;

#[test]
fn every_subscriber_gets_the_message_published_once_all_subscribed() {
    let broker = Broker::start();
    let publisher = broker.clone();
    let on_list = Arc::new(AtomicUsize::new(0));
    let seen = on_list.clone();
    let outcomes = Options::new()
        .on_checkpoint(move || {
            seen.store(publisher.subscribed(), Ordering::SeqCst);
            publisher.publish("news")
        })
        .call_concurrently(N, subscriber, broker.addr())
        .unwrap();
    broker::check_delivery(&outcomes, "news").unwrap();
    assert_eq!(broker.publishes(), 1, "the trigger ran once");
    assert_eq!(
        on_list.load(Ordering::SeqCst),
        N,
        "every subscriber was on the list when the trigger ran"
    );
    let published = broker.published_at().unwrap();
    for outcome in &outcomes {
        let t = outcome.timings();
        assert_eq!(t.checkpoints.len(), 1, "{outcome}");
        let c = t.checkpoints[0];
        let released = c.released.expect("the round was released");
        assert!(released >= c.reached, "{c:?}");
        assert!(
            t.origin.later_by(c.reached) <= published,
            "child {} reached the checkpoint after the publish",
            outcome.index()
        );
        assert!(c.passed.unwrap() >= released, "{c:?}");
        assert_eq!(
            t.checkpoint, c.passed,
            "the first release stays in `checkpoint`"
        );
        let (_, received) = outcome.value().unwrap().as_ref().unwrap();
        assert!(*received >= published);
    }
    let stages = outcomes.stages();
    assert_eq!(
        (
            stages.children,
            stages.ready,
            stages.started,
            stages.returned
        ),
        (N, N, N, N)
    );
    let round = &stages.checkpoints[0];
    assert_eq!((round.round, round.reached, round.passed), (1, N, N));
    assert!(round.trigger.is_some() && round.trigger_failure.is_none());
    assert!(round.released_at.is_some());
    let text = stages.to_string();
    assert!(
        text.contains(&format!("checkpoint 1: {N} reached")),
        "{text}"
    );
}

/// The negative control: a broker that skips every 4th subscriber is
/// caught, and the failure names the subscribers that got nothing.
#[test]
fn a_broker_that_drops_the_message_is_caught_with_the_subscribers_named() {
    let broker = Broker::start_lossy(4);
    let publisher = broker.clone();
    let outcomes = Options::new()
        .on_checkpoint(move || publisher.publish("news"))
        .call_concurrently(N, subscriber, broker.addr())
        .unwrap();
    let missed: Vec<usize> = outcomes
        .iter()
        .filter(|o| matches!(o.value(), Some(None)))
        .map(|o| o.index())
        .collect();
    assert_eq!(missed.len(), N / 4, "every 4th subscriber was skipped");
    let failure = broker::check_delivery(&outcomes, "news").unwrap_err();
    let named = format!(
        "subscribers {}",
        missed
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(failure.contains(&named), "{failure}");
    assert!(failure.starts_with(&format!("{} of {N} subscribers", N / 4)));
}

#[test]
fn a_trigger_that_panics_is_reported_and_every_child_is_released() {
    let outcomes = Options::new()
        .on_checkpoint(|| -> () { panic!("the broker is down") })
        .call_concurrently(8, checkpoint_then_return, ())
        .unwrap();
    assert!(outcomes.all_returned(), "{outcomes}");
    let report = outcomes.to_string();
    assert!(
        report.contains("the trigger of checkpoint 1 failed")
            && report.contains("every child was released anyway")
            && report.contains("panicked at tests/fan_out.rs:")
            && report.contains("the broker is down"),
        "{report}"
    );
    let round = &outcomes.stages().checkpoints[0];
    assert_eq!(round.passed, 8);
    assert!(
        round
            .trigger_failure
            .as_ref()
            .unwrap()
            .contains("the broker is down")
    );
}

#[test]
fn a_trigger_error_is_reported_with_its_message() {
    let outcomes = Options::new()
        .on_checkpoint(|| Err::<(), _>("no route to the broker"))
        .call_concurrently(3, checkpoint_then_return, ())
        .unwrap();
    assert_eq!(outcomes.clone().unwrap_all(), [1, 1, 1]);
    let report = outcomes.to_string();
    assert!(
        report.contains("it returned an error: no route to the broker"),
        "{report}"
    );
}

#[test]
fn a_child_that_never_reaches_the_checkpoint_fails_the_round_by_name() {
    let outcomes = Options::new()
        .checkpoint_release(Release::all().within(Duration::from_secs(3)))
        .call_concurrently(4, one_never_arrives, 2)
        .unwrap();
    let report = outcomes.to_string();
    let waiting = "checkpoint 1 was not released within 3s: child 2 never reached it";
    assert!(report.contains(waiting), "{report}");
    for outcome in &outcomes {
        let Status::Failed { reason } = outcome.status() else {
            panic!("every child was killed with a reason:\n{outcome}");
        };
        if outcome.index() == 2 {
            assert!(
                reason.contains("did not reach checkpoint 1 within 3s"),
                "{reason}"
            );
            assert!(
                outcome
                    .stdout()
                    .to_string_lossy()
                    .contains("child 2 is stuck"),
                "its output is kept"
            );
            assert!(outcome.timings().checkpoints.is_empty());
        } else {
            assert_eq!(reason, waiting);
            assert_eq!(outcome.timings().checkpoints[0].released, None);
        }
    }
    assert_eq!(outcomes.stages().checkpoints[0].released_at, None);
}

#[test]
fn with_or_release_the_round_opens_at_the_deadline_and_says_without_whom() {
    let outcomes = Options::new()
        .checkpoint_release(
            Release::all()
                .within(Duration::from_millis(300))
                .or_release(),
        )
        .call_concurrently(3, one_arrives_late, (1, 3_000))
        .unwrap();
    assert!(outcomes.all_returned(), "{outcomes}");
    let report = outcomes.to_string();
    assert!(
        report.contains("checkpoint 1 was released at its deadline (300ms) without child 1"),
        "{report}"
    );
    assert!(outcomes[1].notes()[0].contains("before it reached it"));
    let late = outcomes[1].timings().checkpoints[0];
    assert_eq!(
        late.released,
        Some(late.reached),
        "the late child passed straight through"
    );
    let on_time = outcomes[0].timings().checkpoints[0];
    assert!(on_time.released.unwrap() < late.reached);
}

/// Child `early` returns without reaching the checkpoint.
#[stampede::function]
fn one_returns_early(early: usize) -> u8 {
    if child_index() != early {
        stampede::checkpoint();
    }
    1
}

#[test]
fn a_need_that_cannot_be_met_any_more_fails_at_once_and_names_the_missing() {
    let outcomes = Options::new()
        .checkpoint_release(Release::at_least(3))
        .call_concurrently(3, one_returns_early, 0)
        .unwrap();
    assert_eq!(
        outcomes[0].value(),
        Some(&1),
        "the early child keeps its value"
    );
    assert!(
        outcomes[0].notes()[0].contains("ended before reaching checkpoint 1"),
        "{:?}",
        outcomes[0].notes()
    );
    for outcome in outcomes.iter().skip(1) {
        assert!(
            matches!(outcome.status(), Status::Failed { reason }
                if reason == "checkpoint 1 was not released: 2 of 3 children reached it, 3 were needed"),
            "{outcome}"
        );
    }
}

#[test]
fn options_that_need_the_barrier_are_refused_without_it() {
    let err = Options::new()
        .barrier(false)
        .on_checkpoint(|| ())
        .call_concurrently(2, checkpoint_then_return, ())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    assert!(
        err.to_string().contains("on_checkpoint needs the barrier"),
        "{err}"
    );
    let err = Options::new()
        .checkpoint_release(Release::share(1.5))
        .call_concurrently(2, checkpoint_then_return, ())
        .unwrap_err();
    assert!(err.to_string().contains("Release::share(1.5)"), "{err}");
}

#[test]
fn options_with_a_trigger_stay_clone_and_debug() {
    let options = Options::new().on_checkpoint(|| ());
    let text = format!("{:?}", options.clone());
    assert!(text.contains("on_checkpoint: <fn>"), "{text}");
}

#[test]
fn outside_a_child_the_checkpoint_returns_at_once() {
    stampede::checkpoint();
    stampede::arrive();
    assert!(!stampede::is_child());
}

/// Started alone by the next test: a thousand children under a descriptor
/// limit that cannot hold them.
#[test]
#[ignore = "started by a_thousand_children_beyond_the_limits_is_an_error_before_any_starts"]
fn thousand_beyond_limits_inner() {
    let limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: setrlimit reads a valid struct; this process is a throwaway.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let err = Options::new()
        .on_checkpoint(|| ())
        .call_concurrently(1000, checkpoint_then_return, ())
        .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    assert!(err.to_string().contains("RLIMIT_NOFILE = 1024"), "{err}");
    assert!(procs::own_children().is_empty(), "no child was started");
    println!("INNER-OK");
}

#[test]
fn a_thousand_children_beyond_the_limits_is_an_error_before_any_starts() {
    procs::assert_ignored_test_passes(
        &std::env::current_exe().unwrap(),
        "thousand_beyond_limits_inner",
    );
}

#[stampede::function]
fn returns_without_a_checkpoint() -> u8 {
    2
}

#[test]
fn a_trigger_no_child_ever_reached_is_a_failure_that_says_so() {
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let err = Options::new()
        .on_checkpoint(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .call_concurrently(3, returns_without_a_checkpoint, ())
        .unwrap_err();
    assert!(
        matches!(err, stampede::Error::TriggerNeverRan { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("on_checkpoint was set, but no child reached stampede::checkpoint(), so the trigger never ran"),
        "{text}"
    );
    assert!(
        text.contains(
            "What the children did:\n3 children: 3 returned\nstart spread: the 3 children \
             entered the function within "
        ),
        "{text}"
    );
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    // Children that reach it are enough for the trigger to run, though
    // one returned before it: no error.
    let outcomes = Options::new()
        .on_checkpoint(|| ())
        .call_concurrently(4, one_returns_early, 2)
        .unwrap();
    assert_eq!(outcomes.stages().checkpoints[0].reached, 3);
    assert!(outcomes.stages().checkpoints[0].trigger.is_some());
}

/// Child 1 returns at once; the others wait at one checkpoint. Under a
/// concurrency limit of 2, the third child starts while the round may be
/// armed and its children still waking.
#[stampede::function]
fn one_leaves_early() -> bool {
    if stampede::child_index() == Some(1) {
        return false;
    }
    stampede::checkpoint();
    true
}

#[test]
fn an_armed_round_runs_its_trigger_once_though_a_child_starts_while_it_wakes() {
    for _ in 0..20 {
        let triggered = Arc::new(AtomicUsize::new(0));
        let count = triggered.clone();
        let outcomes = Options::new()
            .max_concurrent(2)
            .on_checkpoint(move || {
                count.fetch_add(1, Ordering::SeqCst);
            })
            .call_concurrently(3, one_leaves_early, ())
            .unwrap();
        outcomes.assert_all_returned();
        let released = outcomes.stages().checkpoints.len();
        assert_eq!(
            triggered.load(Ordering::SeqCst),
            1,
            "the trigger ran once for the one round ({released} checkpoint stages)"
        );
    }
}
