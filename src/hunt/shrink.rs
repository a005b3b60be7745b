//! Shrinking a failing schedule: fewer children first, then fewer
//! preemptions, keeping each change only while the schedule still fails the
//! same way. Pure: the hunt hands in the test (`fails`), which replays a
//! candidate; here, it is a plain function of the schedule.

use crate::outcome::Schedule;
use crate::parent::BLOCKED;

/// How many replays shrinking may spend.
pub(crate) const BUDGET: usize = 200;

/// The smallest failing schedule found, and the replays it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shrunk {
    pub schedule: Schedule,
    pub tries: usize,
}

/// The schedule without child `child`: its passages dropped, the children
/// above it numbered one lower. `None` for the last child.
pub(crate) fn without_child(schedule: &Schedule, child: usize) -> Option<Schedule> {
    let n = schedule.children();
    if n <= 1 || child >= n {
        return None;
    }
    let passages = schedule
        .passages()
        .iter()
        .filter(|(c, _)| *c != child)
        .map(|(c, step)| (if *c > child { c - 1 } else { *c }, step.clone()))
        .collect();
    Some(Schedule::new(n - 1, passages))
}

/// The positions at which a child goes on while the child that went last
/// still had passages to come and was not blocked: the preemptions.
fn preemption_points(passages: &[(usize, String)]) -> Vec<usize> {
    (1..passages.len())
        .filter(|&i| {
            let (last, step) = &passages[i - 1];
            passages[i].0 != *last
                && step != BLOCKED
                && passages[i..].iter().any(|(c, _)| c == last)
        })
        .collect()
}

/// How many preemptions a schedule has.
pub(crate) fn preemptions(schedule: &Schedule) -> usize {
    preemption_points(schedule.passages()).len()
}

/// Schedules with one preemption undone each: at a preemption, the child
/// that was preempted goes on instead (its next passage moves there).
pub(crate) fn fewer_preemptions(schedule: &Schedule) -> Vec<Schedule> {
    let passages = schedule.passages();
    preemption_points(passages)
        .into_iter()
        .filter_map(|i| {
            let last = passages[i - 1].0;
            let next = i + passages[i..].iter().position(|(c, _)| *c == last)?;
            let mut moved = passages.to_vec();
            let passage = moved.remove(next);
            moved.insert(i, passage);
            Some(Schedule::new(schedule.children(), moved))
        })
        .collect()
}

/// Replaces `best` by the first of its `candidates` that `fails`, again
/// from the new one's candidates, until none fails or `tries` reaches
/// `budget`.
fn improve(
    best: &mut Schedule,
    tries: &mut usize,
    budget: usize,
    candidates: impl Fn(&Schedule) -> Vec<Schedule>,
    fails: &mut impl FnMut(&Schedule) -> bool,
) {
    'again: while *tries < budget {
        for candidate in candidates(best) {
            if *tries == budget {
                return;
            }
            *tries += 1;
            if fails(&candidate) {
                *best = candidate;
                continue 'again;
            }
        }
        return;
    }
}

/// Shrinks `schedule`, which fails, while `fails` says a candidate still
/// fails the same way, within `budget` calls of `fails`: children are
/// removed one at a time (the highest first, again from the top after each
/// success), then preemptions undone one at a time.
pub(crate) fn shrink(
    schedule: Schedule,
    budget: usize,
    mut fails: impl FnMut(&Schedule) -> bool,
) -> Shrunk {
    let mut best = schedule;
    let mut tries = 0;
    let children = |s: &Schedule| {
        (0..s.children())
            .rev()
            .filter_map(|child| without_child(s, child))
            .collect()
    };
    improve(&mut best, &mut tries, budget, children, &mut fails);
    improve(&mut best, &mut tries, budget, fewer_preemptions, &mut fails);
    Shrunk {
        schedule: best,
        tries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Schedule {
        text.parse().unwrap()
    }

    #[test]
    fn a_child_removed_takes_its_passages_and_renumbers_the_rest() {
        let s = parse("v1 n=3 0:start 2:start 1:start 2:end 0:end 1:end");
        assert_eq!(
            without_child(&s, 1).unwrap().to_string(),
            "v1 n=2 0:start 1:start 1:end 0:end"
        );
        assert_eq!(without_child(&parse("v1 n=1 0:start 0:end"), 0), None);
        assert_eq!(without_child(&s, 3), None);
    }

    #[test]
    fn preemptions_count_switches_away_from_an_unfinished_unblocked_child() {
        // 0 preempted at 1 (it has "end" to come); 1 finishes, then 0: none.
        assert_eq!(preemptions(&parse("v1 n=2 0:start 1:start 1:end 0:end")), 1);
        assert_eq!(preemptions(&parse("v1 n=2 0:start 0:end 1:start 1:end")), 0);
        // A child taken as blocked was not preempted.
        assert_eq!(
            preemptions(&parse("v1 n=2 0:start 0:! 1:start 1:end 0:end")),
            0
        );
        // Three switches away from unfinished children.
        let s = parse("v1 n=2 0:start 1:start 0:a 1:a 0:end 1:end");
        assert_eq!(preemptions(&s), 4);
    }

    #[test]
    fn undoing_a_preemption_lets_the_preempted_child_go_on() {
        let s = parse("v1 n=2 0:start 1:start 1:end 0:end");
        let fewer: Vec<String> = fewer_preemptions(&s)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(fewer, ["v1 n=2 0:start 0:end 1:start 1:end"]);
        for candidate in fewer_preemptions(&parse("v1 n=2 0:start 1:start 0:a 1:a 0:end 1:end")) {
            assert!(preemptions(&candidate) < 4, "{candidate}");
        }
    }

    /// The lost update of two read-modify-writes: fails while two children
    /// both read before either writes.
    fn lost_update(s: &Schedule) -> bool {
        let p = s.passages();
        let at = |child: usize, step: &str| p.iter().position(|(c, st)| *c == child && st == step);
        (0..s.children()).any(|a| {
            (0..s.children()).any(|b| {
                a != b
                    && matches!(
                        (at(a, "read"), at(b, "read"), at(a, "write")),
                        (Some(ra), Some(rb), Some(wa)) if ra < rb && rb < wa
                    )
            })
        })
    }

    fn eight_children_interleaved() -> Schedule {
        let mut passages = Vec::new();
        for step in ["start", "read", "write", "end"] {
            for child in 0..8 {
                passages.push((child, step.to_owned()));
            }
        }
        Schedule::new(8, passages)
    }

    #[test]
    fn a_failure_at_eight_shrinks_to_two_children_and_one_preemption_within_the_budget() {
        let original = eight_children_interleaved();
        assert!(lost_update(&original));
        let shrunk = shrink(original, BUDGET, lost_update);
        assert_eq!(shrunk.schedule.children(), 2, "{}", shrunk.schedule);
        assert!(lost_update(&shrunk.schedule));
        // One child reads, the other reads, writes and ends, the first writes.
        assert_eq!(preemptions(&shrunk.schedule), 1, "{}", shrunk.schedule);
        assert!(shrunk.schedule.passages().len() <= 10);
        assert!(shrunk.tries <= BUDGET, "{} tries", shrunk.tries);
        // Each candidate that still failed was kept; the result is minimal:
        // no child can go and no preemption can be undone.
        assert!(!lost_update(&without_child(&shrunk.schedule, 0).unwrap()));
        assert!(
            fewer_preemptions(&shrunk.schedule)
                .iter()
                .all(|c| !lost_update(c))
        );
    }

    #[test]
    fn the_budget_is_a_hard_limit_on_replays() {
        let mut calls = 0;
        let shrunk = shrink(eight_children_interleaved(), 3, |s| {
            calls += 1;
            lost_update(s)
        });
        assert_eq!(calls, 3);
        assert_eq!(shrunk.tries, 3);
        assert_eq!(shrunk.schedule.children(), 5, "three removals, each kept");
        let none = shrink(eight_children_interleaved(), 0, |_| unreachable!());
        assert_eq!(none.schedule, eight_children_interleaved());
    }

    #[test]
    fn a_schedule_that_never_fails_again_is_kept_whole() {
        let shrunk = shrink(eight_children_interleaved(), BUDGET, |_| false);
        assert_eq!(shrunk.schedule, eight_children_interleaved());
        // Every child once, then every single preemption undone once.
        assert_eq!(shrunk.tries, 8 + preemptions(&eight_children_interleaved()));
    }
}
