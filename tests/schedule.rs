//! Scheduled runs: children held at their steps, one let go at a time in
//! the order a strategy picks or a recorded schedule says; the schedule
//! printed, replayed exactly, and a replay that meets another step named.

#[path = "common/held_locks.rs"]
mod held_locks;
#[path = "common/procs.rs"]
mod procs;

use std::io::Write;
use std::path::{Path, PathBuf};

use stampede::{Error, Options, Strategy};

stampede::entry!();

/// Appends `line` to the log at `path`, in one write.
fn log(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// Logs `<child> a` after step `a` and `<child> b` after step `b`.
#[stampede::function]
fn two_steps(path: PathBuf) {
    let me = procs::child_index();
    stampede::step("a");
    log(&path, &format!("{me} a"));
    stampede::step("b");
    log(&path, &format!("{me} b"));
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn children_go_on_one_at_a_time_in_the_schedules_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let outcomes = Options::new()
        .strategy(Strategy::random())
        .seed(11)
        .call_concurrently(3, two_steps, path.clone())
        .unwrap();
    outcomes.assert_all_returned();
    let schedule = outcomes.schedule().expect("a scheduled run has a schedule");
    // Every child passes start, a, b and end, once each.
    assert_eq!(schedule.passages().len(), 12, "{schedule}");
    // Between two steps exactly one child ran: the log is the passages of
    // `a` and `b`, in the schedule's order.
    let passed: Vec<String> = schedule
        .passages()
        .iter()
        .filter(|(_, step)| step == "a" || step == "b")
        .map(|(child, step)| format!("{child} {step}"))
        .collect();
    assert_eq!(lines(&path), passed, "{schedule}");
    let report = outcomes.to_string();
    assert!(
        report.contains(&format!("schedule: {schedule}"))
            && report.contains(&format!("STAMPEDE_REPLAY='{schedule}'")),
        "{report}"
    );
    // The same seed, the same schedule; another seed, another.
    let again = Options::new()
        .strategy(Strategy::random())
        .seed(11)
        .call_concurrently(3, two_steps, dir.path().join("again"))
        .unwrap();
    assert_eq!(again.schedule(), Some(schedule));
}

#[test]
fn a_recorded_schedule_is_replayed_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let text = "v1 n=3 2:start 1:start 0:start 2:a 1:a 0:a 0:b 2:b 1:b 1:end 0:end 2:end";
    let outcomes = Options::new()
        .replay(text)
        .call_concurrently(3, two_steps, path.clone())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    assert_eq!(lines(&path), ["2 a", "1 a", "0 a", "0 b", "2 b", "1 b"]);
}

#[test]
fn a_block_recorded_where_the_replay_reaches_the_next_step_holds_it_there() {
    // Recorded on a loaded machine, child 0's slow work between `a` and
    // `b` was taken for a block (`0:!`). Replayed, it reaches `b` at once:
    // it is held there until the recording lets it go, the same order of
    // steps, not a divergence.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let text = "v1 n=2 0:start 0:a 0:! 1:start 1:a 1:b 1:end 0:b 0:end";
    let outcomes = Options::new()
        .replay(text)
        .call_concurrently(2, two_steps, path.clone())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    assert_eq!(lines(&path), ["0 a", "1 a", "1 b", "0 b"]);
}

#[test]
fn outside_a_scheduled_run_a_step_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let outcomes = stampede::call_concurrently(3, two_steps, path.clone()).unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule(), None);
    assert_eq!(lines(&path).len(), 6);
    stampede::step("in the parent, nothing happens");
}

/// Reads a counter, steps, writes it plus one: the lost update.
#[stampede::function]
fn increment(path: PathBuf) -> u32 {
    let seen: u32 = std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    stampede::step("after-read");
    // Written whole or not at all (a rename): a child taken as blocked in
    // a slow write (a loaded disk) runs beside the next one let go, which
    // must not read the file truncated.
    let fresh = path.with_extension(format!("{}", procs::child_index()));
    std::fs::write(&fresh, (seen + 1).to_string()).unwrap();
    std::fs::rename(&fresh, &path).unwrap();
    seen + 1
}

#[test]
fn a_lost_update_happens_in_exactly_the_schedule_that_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let run = |schedule: &str| {
        std::fs::write(&counter, "0").unwrap();
        let outcomes = Options::new()
            .replay(schedule)
            .call_concurrently(2, increment, counter.clone())
            .unwrap();
        outcomes.assert_all_returned();
        std::fs::read_to_string(&counter).unwrap()
    };
    let serial = "v1 n=2 0:start 0:after-read 1:start 1:after-read 0:end 1:end";
    let both_read_first = "v1 n=2 0:start 1:start 0:after-read 1:after-read 0:end 1:end";
    for _ in 0..3 {
        assert_eq!(run(serial), "2", "{serial}");
        assert_eq!(run(both_read_first), "1", "{both_read_first}");
    }
}

#[test]
fn a_replay_that_meets_another_step_names_the_passage_child_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    let err = Options::new()
        .replay("v1 n=2 0:start 1:start 1:a 1:after-select 0:a 0:b 0:end 1:end")
        .call_concurrently(2, two_steps, dir.path().join("log"))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            Error::ScheduleDiverged { position: 3, child: 1, expected, seen: Some(seen) }
                if expected == "after-select" && seen == "b"
        ),
        "{text}"
    );
    assert!(text.contains("nondeterminism outside the steps"), "{text}");
    // A recording longer than the run: the missing passage is named.
    let err = Options::new()
        .replay("v1 n=1 0:start 0:a 0:b 0:end 0:c")
        .call_concurrently(1, two_steps, dir.path().join("log2"))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ScheduleDiverged {
                position: 4,
                seen: None,
                ..
            }
        ),
        "{err}"
    );
    // A recording shorter than the run: the step it took beyond is named.
    let err = Options::new()
        .replay("v1 n=1 0:start 0:a 0:b")
        .call_concurrently(1, two_steps, dir.path().join("log3"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the replay went another way at passage 3: the recording had ended, but child 0 was \
         still held (it was at step `end`); the program differs from the recording, or has \
         nondeterminism outside the steps"
    );
}

#[test]
fn bad_schedules_and_options_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let refused =
        |options: Options, n: usize| match options.call_concurrently(n, two_steps, path.clone()) {
            Err(Error::InvalidOptions(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
    let why = refused(Options::new().replay("v1 n=2 0:start"), 3);
    assert!(why.contains("for 2 children, this call has 3"), "{why}");
    let why = refused(Options::new().replay("v1 n=2 0start"), 2);
    assert!(why.contains("passage 0"), "{why}");
    let why = refused(
        Options::new()
            .strategy(Strategy::random())
            .max_concurrent(1),
        2,
    );
    assert!(why.contains("max_concurrent"), "{why}");
    assert!(!path.exists(), "a child ran");
}

#[test]
fn a_scheduled_run_of_a_thousand_children_lets_each_go_in_turn() {
    // Every child is held at its start, then at its end: 2,000 passages,
    // one child running at a time. On a loaded machine a child slow
    // between the two may be taken as blocked (`<child>:!`, a recorded
    // decision, not a passage): only between its start and its end.
    let outcomes = Options::new()
        .strategy(Strategy::random())
        .seed(7)
        .timeout(std::time::Duration::from_secs(120))
        .call_concurrently(1000, no_steps, ())
        .unwrap();
    outcomes.assert_all_returned();
    let schedule = outcomes.schedule().unwrap().to_string();
    let all: Vec<&str> = schedule.split(' ').skip(2).collect();
    assert!(schedule.starts_with("v1 n=1000 "), "{}", &schedule[..40]);
    let passages: Vec<&str> = all.iter().copied().filter(|p| !p.ends_with(":!")).collect();
    assert_eq!(passages.len(), 2_000);
    let at: std::collections::HashMap<&str, usize> =
        all.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    for child in 0..1000 {
        let start = at[format!("{child}:start").as_str()];
        assert!(start < at[format!("{child}:end").as_str()], "child {child}");
    }
    for (i, blocked) in all.iter().enumerate().filter(|(_, p)| p.ends_with(":!")) {
        let child = blocked.trim_end_matches(":!");
        let (start, end) = (
            at[format!("{child}:start").as_str()],
            at[format!("{child}:end").as_str()],
        );
        assert!(
            start < i && i < end,
            "{blocked} at {i}, outside {start}..{end}"
        );
    }
}

/// Run by the next test with `STAMPEDE_REPLAY` set: a scheduled call of 3
/// children, then a scheduled hunt of 1,000 runs.
#[test]
#[ignore = "run by a_failing_schedule_reruns_unchanged_from_the_environment"]
fn replay_from_the_environment_inner() {
    let dir = tempfile::tempdir().unwrap();
    match Options::new()
        .strategy(Strategy::random())
        .call_concurrently(3, two_steps, dir.path().join("log"))
    {
        Ok(outcomes) => {
            outcomes.assert_all_returned();
            println!("SCHEDULE {}", outcomes.schedule().unwrap());
            println!("CHILDREN {}", outcomes.len());
        }
        Err(e) => println!("ERROR {e}"),
    }
    let hunt = stampede::Hunt::runs(1_000)
        .strategy(Strategy::exhaustive())
        .run(|run| {
            run.options()
                .call_concurrently(3, two_steps, dir.path().join("hunted"))
                .map_err(|e| e.to_string())?
                .assert_all_returned();
            Ok::<(), String>(())
        });
    match hunt {
        Ok(summary) => println!("HUNT {} {summary}", summary.runs()),
        Err(failure) => println!("HUNT FAILED {}", failure.message()),
    }
    println!("INNER-OK");
}

#[test]
fn a_failing_schedule_reruns_unchanged_from_the_environment() {
    let exe = std::env::current_exe().unwrap();
    let run_with = |text: &str| {
        let run = procs::start_ignored_test(
            &exe,
            "replay_from_the_environment_inner",
            &[("STAMPEDE_REPLAY", text)],
        )
        .wait_with_output()
        .unwrap();
        procs::assert_inner_ok(&run);
        String::from_utf8_lossy(&run.stdout).into_owned()
    };
    let line = |stdout: &str, tag: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.split_once(tag).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {tag:?} in {stdout}"))
            .to_owned()
    };
    // A schedule of the call's 3 children replays exactly; the hunt runs
    // it once, not 1,000 times, and says why.
    let three = "v1 n=3 1:start 1:a 2:start 1:b 0:start 0:a 1:end 2:a 0:b 2:b 0:end 2:end";
    let stdout = run_with(three);
    assert_eq!(line(&stdout, "SCHEDULE "), three);
    assert_eq!(line(&stdout, "CHILDREN "), "3");
    assert_eq!(
        line(&stdout, "HUNT "),
        format!(
            "1 1 run passed in {} (it replayed STAMPEDE_REPLAY, so one run was enough; unset it \
             to hunt)",
            line(&stdout, "HUNT 1 1 run passed in ")
                .split_once(" (")
                .unwrap()
                .0
        )
    );
    // A hunt's shrunk schedule has fewer children than the test asks for:
    // the test reruns unchanged, with that many.
    let two = "v1 n=2 1:start 1:a 1:b 0:start 0:a 1:end 0:b 0:end";
    let stdout = run_with(two);
    assert_eq!(line(&stdout, "SCHEDULE "), two);
    assert_eq!(line(&stdout, "CHILDREN "), "2");
    // More children than the call has, or no schedule at all: refused,
    // naming the variable and what to do.
    let stdout = run_with("v1 n=4 0:start 1:start 2:start 3:start 0:end 1:end 2:end 3:end");
    assert_eq!(
        line(&stdout, "ERROR "),
        "invalid options: the schedule to replay (from STAMPEDE_REPLAY) is for 4 children, this \
         call has 3; unset STAMPEDE_REPLAY to run the test's own strategy, or set it to a \
         schedule this test printed"
    );
    let stdout = run_with("garbage");
    let error = line(&stdout, "ERROR ");
    assert!(
        error.starts_with("invalid options: the schedule to replay (from STAMPEDE_REPLAY): ")
            && error.ends_with("; unset STAMPEDE_REPLAY to run the test's own strategy, or set it to a schedule this test printed"),
        "{error}"
    );
}

/// Two children of `increment`, one counter; the invariant: both counted.
fn lost_update_scenario(counter: &Path, run: &stampede::Run) -> Result<(), String> {
    std::fs::write(counter, "0").unwrap();
    let outcomes = run
        .options()
        .call_concurrently(2, increment, counter.to_path_buf())
        .map_err(|e| e.to_string())?;
    outcomes.assert_all_returned();
    let total = std::fs::read_to_string(counter).unwrap();
    if total == "2" {
        Ok(())
    } else {
        Err(format!("the counter is {total}, not 2\n{outcomes}"))
    }
}

/// The schedule line of a failure's message.
fn schedule_in(message: &str) -> String {
    message
        .lines()
        .find_map(|l| l.strip_prefix("schedule: "))
        .unwrap_or_else(|| panic!("no schedule in: {message}"))
        .to_owned()
}

#[test]
fn an_exhaustive_hunt_finds_the_lost_update_and_its_schedule_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let failure = stampede::Hunt::runs(50)
        .strategy(Strategy::exhaustive())
        .run(|run| lost_update_scenario(&counter, run))
        .expect_err("the search reaches the schedule where both read first");
    // Depth first from the serial order: child 0 alone to its end passes
    // (run 1); the next path lets child 1 start as soon as 0 has read.
    assert!(failure.run().is_some_and(|r| r <= 6), "{failure}");
    // The schedule replays it: no line about jitter seeds.
    assert!(!failure.to_string().contains("jitter"), "{failure}");
    let schedule = schedule_in(&failure.to_string());
    std::fs::write(&counter, "0").unwrap();
    Options::new()
        .replay(&schedule)
        .call_concurrently(2, increment, counter.clone())
        .unwrap()
        .assert_all_returned();
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "1",
        "{schedule}"
    );
}

#[test]
fn a_portfolio_hunt_finds_the_lost_update_whichever_member_has_the_turn() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    // The search member alone finds it at its fifth run, that is the
    // portfolio's 17th at the latest; PCT and random may find it sooner.
    for seed in 0..3 {
        let failure = stampede::Hunt::runs(40)
            .seed(seed)
            .strategy(Strategy::portfolio())
            .run(|run| lost_update_scenario(&counter, run))
            .expect_err("the lost update is found");
        assert!(failure.run().is_some_and(|r| r <= 17), "{failure}");
        assert_eq!(failure.reproduced(), Some(true), "{failure}");
    }
}

#[stampede::function]
fn no_steps() {}

#[test]
fn an_exhaustive_hunt_of_a_correct_program_ends_when_every_schedule_ran() {
    // Two children that only start and end: the 6 orders of 0,0,1,1, all
    // within 2 preemptions; with 0, the 2 serial ones.
    for (bound, expected) in [(2, 6), (0, 2)] {
        let summary = stampede::Hunt::runs(100)
            .strategy(Strategy::exhaustive().preemption_bound(bound))
            .run(|run| {
                run.options()
                    .call_concurrently(2, no_steps, ())?
                    .assert_all_returned();
                Ok::<(), Error>(())
            })
            .unwrap();
        assert_eq!(summary.runs(), expected, "bound {bound}: {summary}");
        assert!(
            summary
                .to_string()
                .ends_with(&format!("(every schedule within {bound} preemptions)")),
            "{summary}"
        );
    }
}

/// Writes this child's own file, or (`shared`) one file for all, after a
/// keyed step.
#[stampede::function]
fn write_keyed(args: (PathBuf, bool)) -> u32 {
    let (dir, shared) = args;
    let me = stampede::child_index().unwrap();
    let file = if shared {
        "shared".to_owned()
    } else {
        format!("file-{me}")
    };
    let path = dir.join(&file);
    let seen: u32 = std::fs::read_to_string(&path).map_or(0, |s| s.parse().unwrap());
    stampede::step_with("read", [&file]);
    std::fs::write(&path, (seen + 1).to_string()).unwrap();
    seen + 1
}

#[test]
fn an_exhaustive_hunt_tries_one_order_of_moves_on_disjoint_keys_and_still_finds_a_shared_ones_race()
{
    let dir = tempfile::tempdir().unwrap();
    let search = |shared: bool| {
        stampede::Hunt::runs(100)
            .strategy(Strategy::exhaustive())
            .run(|run| {
                let dir = tempfile::tempdir_in(&dir).unwrap();
                let outcomes = run
                    .options()
                    .call_concurrently(2, write_keyed, (dir.path().to_owned(), shared))
                    .map_err(|e| e.to_string())?;
                outcomes.assert_all_returned();
                let total: u32 = if shared {
                    *outcomes.values().max().unwrap()
                } else {
                    outcomes.values().sum()
                };
                if total == 2 {
                    Ok(())
                } else {
                    Err(format!("{total} written"))
                }
            })
    };
    // Two children on their own files: every order is one; the search
    // runs 4 (sleep sets, not the 14 orders within 2 preemptions) and
    // ends complete.
    let summary = search(false).expect("no race on disjoint files");
    assert_eq!(summary.runs(), 4, "{summary}");
    assert!(
        summary
            .to_string()
            .ends_with("(every schedule within 2 preemptions)"),
        "{summary}"
    );
    // On one file the moves do not commute: the lost update is found.
    let failure = search(true).expect_err("both read before either writes");
    assert!(failure.message().contains("1 written"), "{failure}");
}

#[test]
fn a_pct_hunt_finds_the_lost_update_the_same_way_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let hunt = |seed| {
        stampede::Hunt::runs(200)
            .seed(seed)
            .strategy(Strategy::pct(2))
            .run(|run| lost_update_scenario(&counter, run))
            .expect_err("PCT finds a depth-2 bug in 200 runs")
    };
    let first = hunt(3);
    let again = hunt(3);
    assert_eq!(first.run(), again.run(), "{first}");
    assert_eq!(
        schedule_in(&first.to_string()),
        schedule_in(&again.to_string())
    );
}

/// Takes an exclusive lock on `path` (a file lock, which no server
/// reports), holds it across a step, lets it go.
#[stampede::function]
fn lock_across_a_step(path: PathBuf) {
    held_locks::file_lock_across_a_step(&path);
}

#[test]
fn a_child_blocked_by_a_held_one_is_taken_as_blocked_and_replayed_so() {
    let (_dir, path) = held_locks::lock_file();
    // Child 0 takes the lock and is held at `locked`; child 1 is let go
    // at `before-lock` and blocks on it. Without the rule, the run would
    // wait for child 1 until its timeout.
    let text = held_locks::FILE_LOCK_HELD;
    let began = std::time::Instant::now();
    let outcomes = Options::new()
        .replay(text)
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(2, lock_across_a_step, path.clone())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(15),
        "waited for a timeout: {:?}",
        began.elapsed()
    );
    // A strategy that meets the same block records it the same way.
    let found = stampede::Hunt::runs(100)
        .strategy(Strategy::exhaustive())
        .run(|run| {
            let outcomes = run
                .options()
                .timeout(std::time::Duration::from_secs(20))
                .call_concurrently(2, lock_across_a_step, path.clone())
                .map_err(|e| e.to_string())?;
            outcomes.assert_all_returned();
            let schedule = outcomes.schedule().unwrap().to_string();
            if schedule.contains(":!") {
                return Err(schedule);
            }
            Ok(())
        })
        .expect_err("the search reaches a child blocked by the lock");
    let schedule = found.message().to_owned();
    let replayed = Options::new()
        .replay(&schedule)
        .call_concurrently(2, lock_across_a_step, path.clone())
        .unwrap();
    replayed.assert_all_returned();
    assert_eq!(replayed.schedule().unwrap().to_string(), schedule);
}

/// `increment` in as many children as the run has (a shrunk replay has
/// fewer); the invariant: every child counted.
fn every_increment_counts(counter: &Path, run: &stampede::Run) -> Result<(), String> {
    std::fs::write(counter, "0").unwrap();
    let outcomes = run
        .options()
        .call_concurrently(8, increment, counter.to_path_buf())
        .map_err(|e| e.to_string())?;
    outcomes.assert_all_returned();
    let total: usize = std::fs::read_to_string(counter).unwrap().parse().unwrap();
    if total == outcomes.len() {
        Ok(())
    } else {
        Err(format!("the counter is {total}, not {}", outcomes.len()))
    }
}

#[test]
fn a_hunts_failure_at_eight_is_replayed_then_shrunk_to_two_children_and_one_preemption() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let failure = stampede::Hunt::runs(20)
        .seed(7)
        .strategy(Strategy::random())
        .run(|run| every_increment_counts(&counter, run))
        .expect_err("a random order of 8 read-then-writes loses an update");
    let original = failure.schedule().expect("a scheduled run's schedule");
    assert_eq!(original.children(), 8);
    assert_eq!(failure.reproduced(), Some(true), "{failure}");
    let shrunk = failure.shrunk().expect("a shrunk schedule").clone();
    assert_eq!(shrunk.children(), 2, "{failure}");
    // start, after-read, end for each of the two: 6 steps, one preemption
    // (the second child reads between the first's read and its write).
    assert_eq!(shrunk.passages().len(), 6, "{failure}");
    let report = failure.to_string();
    assert!(report.contains("fails again the same way"), "{report}");
    assert!(
        report.contains("shrunk (2 children, 1 preemption, 6 steps; "),
        "{report}"
    );
    assert!(
        report.contains(&format!("Options::replay(\"{shrunk}\")` in a call of 2")),
        "{report}"
    );
    // The shrunk schedule, replayed as printed, loses the update again.
    for _ in 0..3 {
        std::fs::write(&counter, "0").unwrap();
        Options::new()
            .replay(&shrunk.to_string())
            .call_concurrently(2, increment, counter.clone())
            .unwrap()
            .assert_all_returned();
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "1", "{shrunk}");
    }
}

/// Fails in one run of three whatever the order: a failure the schedule
/// does not decide.
#[stampede::function]
fn flip(path: PathBuf) -> bool {
    stampede::step("look");
    let runs: u32 = std::fs::read_to_string(&path).map_or(0, |s| s.trim().parse().unwrap());
    std::fs::write(&path, (runs + 1).to_string()).unwrap();
    runs % 3 == 2
}

#[test]
fn a_failure_the_schedule_does_not_decide_is_reported_as_not_reproduced_and_not_shrunk() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let failure = stampede::Hunt::runs(10)
        .strategy(Strategy::random())
        .run(|run| {
            let outcomes = run.options().call_concurrently(1, flip, runs.clone())?;
            assert!(!outcomes.unwrap_all()[0], "the third run fails");
            Ok::<(), Error>(())
        })
        .expect_err("the third run fails");
    assert_eq!(failure.run(), Some(3));
    assert_eq!(failure.reproduced(), Some(false), "{failure}");
    assert_eq!(failure.shrunk(), None);
    assert!(
        failure
            .to_string()
            .contains("depends on more than the order"),
        "{failure}"
    );
    // Exactly one replay: runs 1, 2, 3, then the replay (the 4th).
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "4");
}

#[test]
fn a_run_of_two_scheduled_calls_is_reported_but_neither_replayed_nor_shrunk() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let failure = stampede::Hunt::runs(20)
        .seed(7)
        .strategy(Strategy::random())
        .run(|run| {
            run.options()
                .call_concurrently(2, no_steps, ())
                .map_err(|e| e.to_string())?
                .assert_all_returned();
            every_increment_counts(&counter, run)
        })
        .expect_err("the second call loses an update");
    assert_eq!(failure.reproduced(), Some(false), "{failure}");
    assert_eq!(failure.shrunk(), None);
    assert_eq!(failure.schedule().map(|s| s.children()), Some(8));
    assert!(
        failure.to_string().contains(
            "the last of the run's 2 scheduled calls; not replayed or shrunk: a replay is of one \
             call, so make one scheduled call per run"
        ),
        "{failure}"
    );
}

/// [`lock_across_a_step`], slow between taking the lock and its next step
/// (a busy wait's back-off, in SQLite's): a child taken as blocked that
/// reaches its step later than the others' moves.
#[stampede::function]
fn lock_then_dawdle(path: PathBuf) {
    held_locks::file_lock_taken_across_a_step(&path, |fd| {
        // SAFETY: flock on a descriptor the helper owns.
        assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX) }, 0);
        if stampede::child_index() == Some(1) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
}

#[test]
fn a_replay_waits_for_a_child_it_took_as_blocked_that_reaches_its_step_late() {
    let (_dir, path) = held_locks::lock_file();
    // Child 1 blocks on the lock child 0 holds, is taken as blocked, and
    // once child 0 ended takes 300 ms to reach `locked`: the replay waits
    // for it there instead of calling the run another way.
    let outcomes = Options::new()
        .replay(held_locks::FILE_LOCK_HELD)
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(2, lock_then_dawdle, path.clone())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(
        outcomes.schedule().unwrap().to_string(),
        held_locks::FILE_LOCK_HELD
    );
    // With a third child held at its step meanwhile: the replay lets
    // child 1 go on from `locked` when it gets there, not child 2 first.
    let three = "v1 n=3 0:start 0:before-lock 1:start 1:before-lock 1:! 2:start 0:locked 0:end \
                 1:locked 1:end 2:before-lock 2:locked 2:end";
    let outcomes = Options::new()
        .replay(three)
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(3, lock_then_dawdle, path.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), three);
}

/// Child 0 goes on from step `a` and then panics (`how` 0), aborts (1)
/// or hangs, asleep (2); every other child returns its index.
#[stampede::function]
fn misbehave_after_a(how: u32) -> u64 {
    let me = procs::child_index();
    stampede::step("a");
    if me == 0 {
        match how {
            0 => panic!("child 0 gave up after `a`"),
            1 => std::process::abort(),
            _ => std::thread::sleep(std::time::Duration::from_secs(3600)),
        }
    }
    me
}

#[test]
fn a_child_that_panics_crashes_or_hangs_while_the_other_is_held_is_recorded_and_the_other_goes_on()
{
    use std::time::Duration;
    // Child 1 is held at `a` while child 0 goes on from it and misbehaves.
    let prefix = "v1 n=2 0:start 1:start 0:a";
    for (how, rest) in [
        (0, " 0:end 1:a 1:end"),
        (1, " 1:a 1:end"),
        (2, " 0:! 1:a 1:end"),
    ] {
        let outcomes = Options::new()
            .replay(&format!("{prefix}{rest}"))
            .timeout(Duration::from_secs(4))
            .call_concurrently(2, misbehave_after_a, how)
            .unwrap();
        let schedule = outcomes.schedule().unwrap().to_string();
        assert_eq!(schedule, format!("{prefix}{rest}"), "how {how}");
        let held = &outcomes[1];
        assert_eq!(held.value(), Some(&1), "how {how}: {:?}", held.status());
        let gone = &outcomes[0];
        match how {
            0 => assert_eq!(
                gone.panic_message(),
                Some("child 0 gave up after `a`"),
                "{:?}",
                gone.status()
            ),
            1 => {
                assert!(
                    matches!(gone.status(), stampede::Status::Crashed(_)),
                    "{:?}",
                    gone.status()
                );
                assert_eq!(
                    gone.notes(),
                    ["it ended after it went on from step `a`, before its next step"]
                );
            }
            _ => {
                // Taken as blocked, it let child 1 go on; killed at its
                // timeout, named with its last step.
                let stampede::Status::TimedOut { after, .. } = gone.status() else {
                    panic!("{:?}", gone.status());
                };
                assert!(
                    *after >= Duration::from_secs(4) && *after < Duration::from_secs(6),
                    "{after:?}"
                );
                assert_eq!(
                    gone.notes(),
                    [
                        "it went on from step `a` and never reached its next step; taken as \
                      blocked there, it let the others go on"
                    ],
                );
                // Child 1 went on and returned before the timeout.
                let finished = held.timings().finished.expect("child 1 returned");
                assert!(finished < *after, "{finished:?} {after:?}");
                // It entered the function when first let go, before child 1
                // did (the timeline draws it running, not at a barrier).
                let entered = gone
                    .timings()
                    .started
                    .expect("when it was let go from `start`");
                let other = held.timings().started.expect("child 1 reported it");
                assert!(entered <= other, "{entered:?} {other:?}");
            }
        }
    }
}

#[test]
fn a_replay_whose_child_blocks_where_its_recording_reached_a_step_diverges_after_the_follow_wait() {
    use std::time::{Duration, Instant};
    let (_dir, path) = held_locks::lock_file();
    // The recording had child 1 reach `locked` while child 0 was held
    // there, holding the lock: a program that cannot do that. The replay
    // waits for child 1 (5 s: a loaded machine is slow), then sees it
    // blocked, and says so rather than waiting for the timeout.
    let began = Instant::now();
    let err = Options::new()
        .replay("v1 n=2 0:start 0:before-lock 1:start 1:before-lock 1:locked 1:end 0:locked 0:end")
        .timeout(Duration::from_secs(30))
        .call_concurrently(2, lock_across_a_step, path)
        .unwrap_err();
    let elapsed = began.elapsed();
    assert!(
        matches!(
            &err,
            Error::ScheduleDiverged { position: 4, child: 1, expected, seen: None }
                if expected == "…"
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the replay went another way at passage 4: the recording had child 1 reach its next step \
         before this passage, but it was blocked short of it (on a lock a held child keeps?); the \
         program differs from the recording, or has nondeterminism outside the steps"
    );
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
}

/// As `lock_across_a_step`, but the lock is tried in a busy loop with no
/// sleep: a child that waits for it never sleeps.
#[stampede::function]
fn spin_for_a_lock_across_a_step(path: PathBuf) {
    held_locks::file_lock_taken_across_a_step(&path, |fd| {
        // SAFETY: flock on a descriptor the helper owns.
        while unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            std::hint::spin_loop();
        }
    });
}

#[test]
fn a_child_that_spins_on_a_held_ones_lock_is_taken_as_blocked_after_a_second_of_cpu() {
    use std::time::{Duration, Instant};
    let (_dir, path) = held_locks::lock_file();
    // Without the rule, the spinner ran alone until its timeout (20 s),
    // the holder held at `locked`.
    let found = stampede::Hunt::runs(20)
        .strategy(Strategy::exhaustive())
        .run(|run| {
            let began = Instant::now();
            let outcomes = run
                .options()
                .timeout(Duration::from_secs(20))
                .call_concurrently(2, spin_for_a_lock_across_a_step, path.clone())
                .map_err(|e| e.to_string())?;
            outcomes.assert_all_returned();
            let schedule = outcomes.schedule().unwrap().to_string();
            if schedule.contains(":!") {
                let notes: Vec<String> = outcomes.iter().flat_map(|o| o.notes().to_vec()).collect();
                return Err(format!(
                    "{schedule}\n{:?}\n{}",
                    began.elapsed(),
                    notes.join("\n")
                ));
            }
            Ok(())
        })
        .expect_err("the search reaches a child spinning on the lock");
    let mut lines = found.message().lines();
    let schedule = lines.next().unwrap().to_owned();
    let took = lines.next().unwrap();
    let notes: Vec<&str> = lines.collect();
    assert!(
        schedule.contains("1:before-lock 1:! 0:locked"),
        "the spinner let the holder go on: {schedule}"
    );
    // One note, on the spinner: when it was taken as blocked, and the CPU
    // it had used, at least a second of it.
    let [note] = notes[..] else {
        panic!("{notes:?}")
    };
    let (after, rest) = note
        .strip_prefix("taken as blocked ")
        .and_then(|n| {
            n.split_once(" after it went on from step `before-lock`: never all asleep, it used ")
        })
        .unwrap_or_else(|| panic!("{note}"));
    let (cpu, rest) = rest
        .split_once(" of CPU")
        .unwrap_or_else(|| panic!("{note}"));
    assert_eq!(
        rest,
        " without reaching its next step (a busy wait on something a held child keeps?), and the \
         others went on beside it"
    );
    let seconds = |text: &str| -> f64 {
        let (number, scale) = match text.strip_suffix("ms") {
            Some(ms) => (ms, 1e-3),
            None => (
                text.strip_suffix('s').unwrap_or_else(|| panic!("{text}")),
                1.0,
            ),
        };
        number.parse::<f64>().unwrap() * scale
    };
    let (after, cpu) = (seconds(after), seconds(cpu));
    assert!((1.0..2.0).contains(&cpu), "{note}");
    assert!(after >= cpu, "{note}");
    assert!(seconds(took) < 15.0, "the run waited for a timeout: {took}");
    // Its replay makes the same decision at the same place.
    let replayed = Options::new()
        .replay(&schedule)
        .timeout(Duration::from_secs(20))
        .call_concurrently(2, spin_for_a_lock_across_a_step, path)
        .unwrap();
    replayed.assert_all_returned();
    assert_eq!(replayed.schedule().unwrap().to_string(), schedule);
}

/// Steps from a thread the function spawns, then from its own thread.
#[stampede::function]
fn step_in_a_thread(_: ()) {
    std::thread::spawn(|| stampede::step("in-thread"))
        .join()
        .unwrap();
    stampede::step("after-join");
}

/// The same steps, from its own thread.
#[stampede::function]
fn step_in_its_own_thread(_: ()) {
    stampede::step("in-thread");
    stampede::step("after-join");
}

#[test]
fn a_step_from_another_thread_of_the_child_holds_the_child_there() {
    // Each child's thread is held at `in-thread` until the schedule lets
    // it go: the steps are the process's, whichever thread calls them.
    let text =
        "v1 n=2 0:start 1:start 1:in-thread 0:in-thread 0:after-join 1:after-join 0:end 1:end";
    let outcomes = Options::new()
        .replay(text)
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(2, step_in_a_thread, ())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    // A search sees the thread's step as any other: as many schedules as
    // the same steps from the function's own thread.
    fn search<F: stampede::Function<M, Args = (), Output = ()> + Copy, M>(f: F) -> u64 {
        stampede::Hunt::runs(200)
            .strategy(Strategy::exhaustive())
            .run(|run| {
                run.options()
                    .call_concurrently(2, f, ())
                    .map_err(|e| e.to_string())?
                    .assert_all_returned();
                Ok::<(), String>(())
            })
            .unwrap()
            .runs()
    }
    let (threaded, plain) = (search(step_in_a_thread), search(step_in_its_own_thread));
    assert_eq!(threaded, plain);
    assert!(
        plain > 6,
        "more than the 6 orders of start and end: {plain}"
    );
}

/// Adds one to a SQLite counter inside `BEGIN IMMEDIATE`, holding the
/// write lock across `after-read`: correct, and every other writer let go
/// meanwhile blocks in SQLite's busy wait.
#[stampede::function]
fn increment_immediately(db: PathBuf) -> i64 {
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let txn = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let value: i64 = txn
        .query_row("SELECT value FROM counter", [], |r| r.get(0))
        .unwrap();
    stampede::step("after-read");
    txn.execute("UPDATE counter SET value = ?1", [value + 1])
        .unwrap();
    txn.commit().unwrap();
    value + 1
}

/// Whether, right after each child taken as blocked in `schedule`, the
/// next child let go was at another step than the one the blocked child
/// went on from; and how many were taken as blocked.
fn next_after_a_block_is_elsewhere(schedule: &str) -> (bool, usize) {
    let passages: Vec<(usize, &str)> = schedule
        .split_whitespace()
        .skip(2)
        .map(|p| {
            let (child, step) = p.split_once(':').unwrap();
            (child.parse().unwrap(), step)
        })
        .collect();
    let mut blocks = 0;
    for (at, &(child, step)) in passages.iter().enumerate() {
        if step != "!" {
            continue;
        }
        blocks += 1;
        let from = passages[..at]
            .iter()
            .rev()
            .find(|&&(c, s)| c == child && s != "!")
            .map_or("start", |&(_, s)| s);
        if passages.get(at + 1).is_some_and(|&(_, next)| next == from) {
            return (false, blocks);
        }
    }
    (true, blocks)
}

#[test]
fn while_a_child_is_blocked_a_strategy_lets_go_none_at_the_step_it_went_on_from() {
    // A file lock taken between two steps (the blocked child went on from
    // `before-lock`), and SQLite's write lock taken at the start (from
    // `start`); in both, the child keeping the lock is held elsewhere.
    let (dir, lock) = held_locks::lock_file();
    let mut blocks = 0;
    for seed in 0..3 {
        let outcomes = Options::new()
            .strategy(Strategy::random())
            .seed(seed)
            .timeout(std::time::Duration::from_secs(60))
            .call_concurrently(8, lock_across_a_step, lock.clone())
            .unwrap();
        outcomes.assert_all_returned();
        let schedule = outcomes.schedule().unwrap().to_string();
        let (elsewhere, seen) = next_after_a_block_is_elsewhere(&schedule);
        assert!(elsewhere, "{schedule}");
        blocks += seen;

        let db = dir.path().join(format!("counter-{seed}.db"));
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE counter (value INTEGER); INSERT INTO counter VALUES (0);")
            .unwrap();
        let outcomes = Options::new()
            .strategy(Strategy::random())
            .seed(seed)
            .timeout(std::time::Duration::from_secs(60))
            .call_concurrently(16, increment_immediately, db)
            .unwrap();
        outcomes.assert_all_returned();
        let mut values: Vec<i64> = outcomes.values().copied().collect();
        values.sort_unstable();
        assert_eq!(values, (1..=16).collect::<Vec<i64>>());
        let schedule = outcomes.schedule().unwrap().to_string();
        let (elsewhere, seen) = next_after_a_block_is_elsewhere(&schedule);
        assert!(elsewhere, "{schedule}");
        blocks += seen;
    }
    assert!(blocks >= 6, "the rule was tried {blocks} times");
}

/// Reaches a step named `name`.
#[stampede::function]
fn step_named(name: String) {
    stampede::step(&name); // the line a bad name's panic names
}

#[test]
fn a_bad_step_name_panics_in_a_scheduled_run_at_the_callers_line_and_is_ignored_elsewhere() {
    let line = include_str!("schedule.rs")
        .lines()
        .position(|l| l.contains("the line a bad name's panic names"))
        .unwrap()
        + 1;
    for name in ["", "has space", "tab\there", "!blocked"] {
        let outcomes = Options::new()
            .strategy(Strategy::random())
            .call_concurrently(1, step_named, name.to_owned())
            .unwrap();
        let stampede::Status::Panicked { message, location } = outcomes[0].status() else {
            panic!("{name:?}: {:?}", outcomes[0].status());
        };
        assert_eq!(
            message,
            &format!(
                "stampede::step({name:?}): a step's name is not empty, has no spaces and does \
                 not start with `!` (it is written in the schedule's text, where `!` marks a \
                 blocked child)"
            )
        );
        assert_eq!(
            location.as_deref(),
            Some(format!("tests/schedule.rs:{line}:5").as_str()),
            "{name:?}"
        );
        // Unscheduled, a step returns at once, whatever its name.
        stampede::call_concurrently(1, step_named, name.to_owned())
            .unwrap()
            .assert_all_returned();
    }
}

#[test]
fn a_replay_whose_child_ends_where_its_recording_took_it_as_blocked_goes_on() {
    // Recorded where child 0's abort was slow enough to be taken as
    // blocked (a core written, say); in the replay it ends at once: the
    // same order of steps, not a divergence.
    let text = "v1 n=2 0:start 1:start 0:a 0:! 1:a 1:end";
    let outcomes = Options::new()
        .replay(text)
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(2, misbehave_after_a, 1)
        .unwrap();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    assert!(
        matches!(outcomes[0].status(), stampede::Status::Crashed(_)),
        "{:?}",
        outcomes[0].status()
    );
    assert_eq!(outcomes[1].value(), Some(&1));
    // A recording that has the child go on after it is a divergence there.
    let err = Options::new()
        .replay("v1 n=2 0:start 1:start 0:a 0:! 1:a 0:end 1:end")
        .timeout(std::time::Duration::from_secs(20))
        .call_concurrently(2, misbehave_after_a, 1)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ScheduleDiverged {
                position: 5,
                child: 0,
                ..
            }
        ),
        "{err}"
    );
}

/// The CPUs this thread may run on (`Cpus_allowed_list`), after a step.
#[stampede::function]
fn cpus_at_a_step() -> String {
    stampede::step("a");
    cpus_allowed()
}

fn cpus_allowed() -> String {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_scheduled_runs_children_keep_to_the_parents_cpu_and_the_parent_gets_its_cpus_back() {
    let before = cpus_allowed();
    let outcomes = Options::new()
        .strategy(Strategy::random())
        .call_concurrently(4, cpus_at_a_step, ())
        .unwrap();
    assert_eq!(cpus_allowed(), before, "the test's thread, after the run");
    let seen: Vec<&String> = outcomes.values().collect();
    assert!(
        seen.iter()
            .all(|cpus| *cpus == seen[0] && cpus.parse::<usize>().is_ok()),
        "one CPU, the same for every child: {seen:?}"
    );
    // Unscheduled, a child may run wherever the parent could.
    let plain = stampede::call_concurrently(2, cpus_at_a_step, ()).unwrap();
    assert!(
        plain.values().all(|cpus| *cpus == before),
        "{before} {plain}"
    );
}

/// The same step three times in a row, as in a loop.
#[stampede::function]
fn same_step_thrice() {
    for _ in 0..3 {
        stampede::step("s");
    }
}

#[test]
fn a_step_name_repeated_in_a_row_is_a_passage_each_time_and_replays_in_order() {
    let text = "v1 n=2 0:start 0:s 1:start 1:s 0:s 1:s 1:s 0:s 0:end 1:end";
    let outcomes = Options::new()
        .replay(text)
        .call_concurrently(2, same_step_thrice, ())
        .unwrap();
    outcomes.assert_all_returned();
    assert_eq!(outcomes.schedule().unwrap().to_string(), text);
    // One `s` fewer for child 0: its third is met where `end` was recorded.
    let err = Options::new()
        .replay("v1 n=2 0:start 0:s 1:start 1:s 0:s 1:s 1:s 0:end 1:end")
        .call_concurrently(2, same_step_thrice, ())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ScheduleDiverged { position: 7, child: 0, expected, seen: Some(seen) }
                if expected == "end" && seen == "s"
        ),
        "{err}"
    );
}

/// Sleeps when dropped: a panic's unwinding that takes a while.
struct SlowToDrop;

impl Drop for SlowToDrop {
    fn drop(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Child 0 panics after `a`, its unwinding asleep for 300 ms; the others
/// return.
#[stampede::function]
fn panic_slowly_after_a() {
    stampede::step("a");
    if procs::child_index() == 0 {
        let _slow = SlowToDrop;
        panic!("child 0 gave up slowly");
    }
}

#[test]
fn a_child_whose_panic_unwinds_slowly_is_not_taken_as_blocked() {
    for seed in 0..3 {
        let outcomes = Options::new()
            .strategy(Strategy::random())
            .seed(seed)
            .call_concurrently(2, panic_slowly_after_a, ())
            .unwrap();
        let schedule = outcomes.schedule().unwrap().to_string();
        // Asleep 300 ms with the other held, it was taken as blocked (`0:!`)
        // in one run and not in another of the same program.
        assert!(!schedule.contains('!'), "{schedule}");
        assert_eq!(outcomes[0].panic_message(), Some("child 0 gave up slowly"));
        assert!(outcomes[1].is_returned(), "{:?}", outcomes[1].status());
    }
}
