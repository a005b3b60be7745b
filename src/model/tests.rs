//! The checker and the shipped models, on histories written by hand: each
//! model with a planted bug it must flag and a correct history it must pass.

use super::check::{Search, search};
use super::*;
use crate::outcome::{Ending, History, Operation, Value};

use crate::clock::Timestamp;

fn us(n: u64) -> Timestamp {
    Timestamp::from_nanos(1_000_000 + n * 1_000)
}

/// `child` ran `name(input) → output` from `from` to `to` µs.
fn op<I: serde::Serialize + fmt::Debug, O: serde::Serialize + fmt::Debug>(
    child: usize,
    name: &str,
    input: I,
    output: O,
    from: u64,
    to: u64,
) -> Operation {
    let ending = Ending::Ok(Value::of(&output));
    Operation::new(
        child,
        name,
        Value::of(&input),
        ending,
        us(from),
        Some(us(to)),
    )
}

fn unknown<I: serde::Serialize + fmt::Debug>(
    child: usize,
    name: &str,
    input: I,
    from: u64,
) -> Operation {
    Operation::new(
        child,
        name,
        Value::of(&input),
        Ending::Unknown,
        us(from),
        None,
    )
}

fn history(ops: Vec<Operation>) -> History {
    History::new(ops)
}

#[test]
fn two_overlapping_winning_claims_are_a_violation_with_both_orders_explained() {
    let h = history(vec![
        op(0, "claim", 7u32, true, 10, 50),
        op(1, "claim", 7u32, true, 20, 40),
        op(2, "claim", 8u32, true, 15, 45),
    ]);
    let violation = check(&ClaimOnce, &h).unwrap_err();
    assert_eq!(violation.witness().len(), 2, "{violation}");
    assert!(
        violation
            .witness()
            .iter()
            .all(|op| op.input().text() == "7")
    );
    let text = violation.to_string();
    assert!(
        text.starts_with(
            "not linearizable under ClaimOnce: no order of these 2 operations of 2 children"
        ),
        "{text}"
    );
    assert!(
        text.contains("- after child 0's claim(7) → true, child 1's claim(7) → true is impossible: 7 was claimed already"),
        "{text}"
    );
    assert!(
        text.contains("- after child 1's claim(7) → true, child 0's claim(7) → true is impossible"),
        "{text}"
    );
}

#[test]
fn claims_are_judged_by_their_times() {
    // Serial: the first wins, the next loses. Correct.
    let serial = history(vec![
        op(0, "claim", 1u8, true, 0, 10),
        op(1, "claim", 1u8, false, 20, 30),
    ]);
    assert!(check(&ClaimOnce, &serial).is_ok());
    // The loser returned before the winner was invoked: it lost to nobody.
    let early_loss = history(vec![
        op(1, "claim", 1u8, false, 0, 10),
        op(0, "claim", 1u8, true, 20, 30),
    ]);
    let v = check(&ClaimOnce, &early_loss).unwrap_err();
    assert!(
        v.to_string()
            .contains("was not claimed yet, so this claim had to win"),
        "{v}"
    );
    // Overlapping, the same two are fine: the winner may have gone first.
    let overlap = history(vec![
        op(1, "claim", 1u8, false, 0, 30),
        op(0, "claim", 1u8, true, 10, 20),
    ]);
    assert!(check(&ClaimOnce, &overlap).is_ok());
}

#[test]
fn an_indeterminate_operation_may_have_taken_effect_and_a_failed_one_did_not() {
    // A child died during its claim; another lost afterwards: the dead one's
    // claim took effect.
    let died = history(vec![
        unknown(0, "claim", 5u8, 0),
        op(1, "claim", 5u8, false, 10, 20),
    ]);
    assert!(check(&ClaimOnce, &died).is_ok());
    // ... or it never did: a later winner is fine too.
    let never = history(vec![
        unknown(0, "claim", 5u8, 0),
        op(1, "claim", 5u8, true, 10, 20),
    ]);
    assert!(check(&ClaimOnce, &never).is_ok());
    // A failed claim is left out: the later loser lost to nobody.
    let failed = Operation::new(
        0,
        "claim",
        Value::of(&5u8),
        Ending::Failed("refused".into()),
        us(0),
        Some(us(5)),
    );
    let h = history(vec![failed, op(1, "claim", 5u8, false, 10, 20)]);
    assert!(check(&ClaimOnce, &h).is_err());
}

#[test]
fn a_counter_read_must_see_exactly_the_adds_before_it() {
    let lost = history(vec![
        op(0, "add", 1i64, (), 0, 10),
        op(1, "add", 1i64, (), 0, 10),
        op(2, "get", (), 1i64, 20, 30),
    ]);
    let v = check(&Counter, &lost).unwrap_err();
    assert!(
        v.to_string().contains("the counter was 2 there, not 1"),
        "{v}"
    );
    assert_eq!(v.witness().len(), 3);
    let fine = history(vec![
        op(0, "add", 1i64, (), 0, 10),
        op(1, "add", 1i64, (), 0, 30),
        op(2, "get", (), 1i64, 20, 30), // the second add may come after
    ]);
    assert!(check(&Counter, &fine).is_ok());
}

#[test]
fn a_register_read_after_a_write_sees_it_and_cas_is_judged() {
    let stale = history(vec![
        op(0, "write", 1i64, (), 0, 10),
        op(1, "read", (), 0i64, 20, 30),
    ]);
    let v = check(&Register::new(0i64), &stale).unwrap_err();
    assert!(
        v.to_string().contains("the value was 1 there, not 0"),
        "{v}"
    );
    let cas = history(vec![
        op(0, "cas", (0i64, 5i64), true, 0, 10),
        op(1, "cas", (0i64, 6i64), true, 20, 30),
    ]);
    let v = check(&Register::new(0i64), &cas).unwrap_err();
    assert!(
        v.to_string()
            .contains("the value was 5, not 0, so the swap had to fail"),
        "{v}"
    );
    let fine = history(vec![
        op(0, "cas", (0i64, 5i64), true, 0, 10),
        op(1, "read", (), 5i64, 20, 30),
    ]);
    assert!(check(&Register::new(0i64), &fine).is_ok());
}

#[test]
fn a_map_is_checked_per_key() {
    let model = KeyValue::<String, i64>::new();
    let mut ops = Vec::new();
    for k in 0..50u64 {
        let key = format!("k{k}");
        ops.push(op(
            0,
            "put",
            (key.clone(), k as i64),
            (),
            k * 10,
            k * 10 + 5,
        ));
        ops.push(op(1, "get", key, Some(k as i64), k * 10 + 6, k * 10 + 9));
    }
    assert!(check(&model, &history(ops.clone())).is_ok());
    ops.push(op(2, "get", "k3".to_owned(), None::<i64>, 1000, 1010));
    let v = check(&model, &history(ops)).unwrap_err();
    assert_eq!(v.witness().len(), 2, "{v}");
    assert!(
        v.to_string()
            .contains("the key held Some(3) there, not None"),
        "{v}"
    );
}

#[test]
fn a_set_and_a_queue_flag_their_planted_bugs() {
    let set = history(vec![
        op(0, "add", 4u8, (), 0, 10),
        op(1, "contains", 4u8, false, 20, 30),
    ]);
    assert!(
        check(&Set, &set)
            .unwrap_err()
            .to_string()
            .contains("4 was in the set there")
    );
    let out_of_order = history(vec![
        op(0, "enqueue", 1u32, (), 0, 10),
        op(0, "enqueue", 2u32, (), 20, 30),
        op(1, "dequeue", (), Some(2u32), 40, 50),
    ]);
    let v = check(&Queue::<u32>::new(), &out_of_order).unwrap_err();
    assert!(
        v.to_string()
            .contains("the front of the queue was Some(1) there, not Some(2)"),
        "{v}"
    );
    let twice = history(vec![
        op(0, "enqueue", 1u32, (), 0, 10),
        op(1, "dequeue", (), Some(1u32), 20, 30),
        op(2, "dequeue", (), Some(1u32), 20, 30),
    ]);
    assert!(check(&Queue::<u32>::new(), &twice).is_err());
    let fine = history(vec![
        op(0, "enqueue", 1u32, (), 0, 10),
        op(1, "enqueue", 2u32, (), 0, 10),
        op(2, "dequeue", (), Some(2u32), 20, 30), // the enqueues overlapped
        op(2, "dequeue", (), Some(1u32), 40, 50),
        op(2, "dequeue", (), None::<u32>, 60, 70),
    ]);
    assert!(check(&Queue::<u32>::new(), &fine).is_ok());
}

/// A barrier-shaped history: `n` claims of one job, all concurrent.
fn barrier_claims(n: usize, winners: usize) -> History {
    history(
        (0..n)
            .map(|c| op(c, "claim", 1u32, c < winners, 0, 1000 + c as u64))
            .collect(),
    )
}

#[test]
fn a_thousand_concurrent_claims_check_and_a_double_claim_is_two_operations() {
    assert!(check(&ClaimOnce, &barrier_claims(1000, 1)).is_ok());
    let v = check(&ClaimOnce, &barrier_claims(64, 2)).unwrap_err();
    assert_eq!(v.witness().len(), 2, "{v}");
    let none = check(&ClaimOnce, &barrier_claims(1000, 0)).unwrap_err();
    assert_eq!(none.witness().len(), 1, "{none}");
}

#[test]
fn a_search_out_of_budget_is_inconclusive_never_a_pass() {
    let h = barrier_claims(10, 1);
    let ops: Vec<&Operation> = h.operations().iter().collect();
    // Only read-only operations are tried for going first without
    // branching, one step per class: the losers' class is impossible at
    // first (1); the winner goes (1); the losers' class fits now, and all 9
    // go without branching (1): 3, and 2 is one short.
    let mut steps = 2;
    assert_eq!(search(&ClaimOnce, &ops, &mut steps), Search::GaveUp);
    let mut steps = 3;
    assert_eq!(search(&ClaimOnce, &ops, &mut steps), Search::Linearizable);
    assert_eq!(steps, 0);
    let v = check::check(&ClaimOnce, &h, 2).unwrap_err();
    assert!(v.is_inconclusive());
    assert!(v.to_string().contains("inconclusive under ClaimOnce: the search gave up after 2 steps on a part of 10 operations"), "{v}");
}

struct Panicky;

impl Model for Panicky {
    type State = u8;
    fn name(&self) -> String {
        "Panicky".into()
    }
    fn init(&self) -> u8 {
        0
    }
    fn step(&self, _: &u8, op: &Operation) -> Result<u8, String> {
        if op.name() == "boom" {
            panic!("no rule for boom");
        }
        Ok(0)
    }
}

#[test]
fn a_model_that_panics_is_named_with_the_operation() {
    let h = history(vec![
        op(0, "fine", (), (), 0, 1),
        op(3, "boom", 9u8, (), 2, 3),
    ]);
    let v = check(&Panicky, &h).unwrap_err();
    let text = v.to_string();
    assert!(
        text.starts_with("the model Panicky panicked on child 3's boom(9) → ok: no rule for boom"),
        "{text}"
    );
    assert!(!v.is_inconclusive());
    assert!(v.witness().is_empty());
}

#[test]
fn an_operation_a_model_does_not_know_is_named() {
    let h = history(vec![op(0, "take", 1u8, true, 0, 1)]);
    let v = check(&ClaimOnce, &h).unwrap_err();
    assert!(
        v.to_string()
            .contains("ClaimOnce knows `claim`, not `take`"),
        "{v}"
    );
}

#[test]
fn the_page_draws_a_lane_per_child_and_marks_the_witness() {
    let h = history(vec![
        op(0, "claim", "<7>", true, 10, 50),
        op(1, "claim", "<7>", true, 20, 40),
        op(2, "claim", "<8>", true, 15, 45),
        unknown(3, "claim", "<9>", 30),
    ]);
    let violation = check(&ClaimOnce, &h).unwrap_err();
    let page = violation.html(&h);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches(r#"<g class="op witness">"#).count(),
        2,
        "{page}"
    );
    assert_eq!(page.matches(r#"<g class="op">"#).count(), 2, "{page}");
    for child in 0..4 {
        assert!(page.contains(&format!(">child {child}</text>")), "{page}");
    }
    // Inputs are escaped, and the operation that never returned is dashed.
    assert!(
        page.contains("claim(&quot;&lt;7&gt;&quot;) → true"),
        "{page}"
    );
    assert!(!page.contains("\"<7>\""));
    assert_eq!(page.matches("stroke-dasharray").count(), 1);
    assert!(page.contains("not linearizable under ClaimOnce"));
}

/// Whether some order of `ops` is legal, by trying every one: the
/// reference the search is compared with on small histories.
fn brute_force<M: Model>(model: &M, ops: &[Operation]) -> bool {
    fn go<M: Model>(model: &M, ops: &[&Operation], used: &mut [bool], state: &M::State) -> bool {
        let pending: Vec<usize> = (0..ops.len()).filter(|&i| !used[i]).collect();
        if pending.iter().all(|&i| ops[i].returned().is_none()) {
            return true;
        }
        let bound = pending
            .iter()
            .filter_map(|&i| ops[i].returned())
            .min()
            .unwrap();
        for &i in &pending {
            if ops[i].invoked() > bound {
                continue;
            }
            used[i] = true;
            let fits = model
                .step(state, ops[i])
                .is_ok_and(|next| go(model, ops, used, &next));
            // An indeterminate operation may also never have happened.
            let skipped = ops[i].returned().is_none() && go(model, ops, used, state);
            used[i] = false;
            if fits || skipped {
                return true;
            }
        }
        false
    }
    let ops: Vec<&Operation> = ops
        .iter()
        .filter(|op| !matches!(op.ending(), Ending::Failed(_)))
        .collect();
    go(model, &ops, &mut vec![false; ops.len()], &model.init())
}

/// xorshift, for reproducible random histories.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// 2–6 random operations of one kind of model on a few values, a quarter
/// of them indeterminate.
fn random_history(d: &mut Draw, kind: u64) -> Vec<Operation> {
    let n = 2 + d.below(5) as usize;
    (0..n)
        .map(|child| {
            let from = d.below(20);
            let to = from + 1 + d.below(10);
            let v = |d: &mut Draw| d.below(3) as i64;
            let (name, input, output) = match (kind, d.below(3)) {
                (0, 0) => ("write", Value::of(&v(d)), Value::of(&())),
                (0, 1) => ("read", Value::of(&()), Value::of(&v(d))),
                (0, _) => (
                    "cas",
                    Value::of(&(v(d), v(d))),
                    Value::of(&(d.below(2) == 0)),
                ),
                (1, 0) => ("add", Value::of(&1u8), Value::of(&())),
                (1, 1) => ("remove", Value::of(&1u8), Value::of(&())),
                (1, _) => ("contains", Value::of(&1u8), Value::of(&(d.below(2) == 0))),
                (2, 0) => ("enqueue", Value::of(&v(d)), Value::of(&())),
                (2, _) => {
                    let out = (d.below(3) != 0).then(|| v(d));
                    ("dequeue", Value::of(&()), Value::of(&out))
                }
                (3, 0) => ("add", Value::of(&v(d)), Value::of(&())),
                (3, _) => ("get", Value::of(&()), Value::of(&(d.below(5) as i64))),
                // One thing: the brute force knows no keys.
                (_, _) => ("claim", Value::of(&1u8), Value::of(&(d.below(2) == 0))),
            };
            let ending = if d.below(4) == 0 {
                Ending::Unknown
            } else {
                Ending::Ok(output)
            };
            let returned = (ending != Ending::Unknown).then(|| us(to));
            Operation::new(child, name, input, ending, us(from), returned)
        })
        .collect()
}

fn agrees_with_brute_force<M: Model>(model: &M, kind: u64) {
    let mut d = Draw(0x9e37_79b9_7f4a_7c15 ^ kind);
    let (mut passes, mut fails) = (0, 0);
    for round in 0..3000 {
        let ops = random_history(&mut d, kind);
        let expected = brute_force(model, &ops);
        let got = check(model, &History::new(ops.clone()));
        assert_eq!(
            got.is_ok(),
            expected,
            "{} round {round}: brute force says {expected}, the check {got:?}\n{}",
            model.name(),
            History::new(ops)
        );
        if expected { passes += 1 } else { fails += 1 }
    }
    // Both verdicts were exercised.
    assert!(
        passes > 300 && fails > 300,
        "{passes} passed, {fails} failed"
    );
}

#[test]
fn the_search_agrees_with_trying_every_order_on_random_small_histories() {
    agrees_with_brute_force(&Register::new(0i64), 0);
    agrees_with_brute_force(&Set, 1);
    agrees_with_brute_force(&Queue::<i64>::new(), 2);
    agrees_with_brute_force(&Counter, 3);
    agrees_with_brute_force(&ClaimOnce, 4);
}

#[test]
fn writes_that_change_nothing_now_may_change_the_state_later() {
    // write(1) then write(0) then the read: legal, though write(0) changes
    // nothing at first.
    let register = history(vec![
        op(0, "write", 0i64, (), 0, 100),
        op(1, "write", 1i64, (), 10, 20),
        op(2, "read", (), 0i64, 30, 40),
    ]);
    assert!(check(&Register::new(0i64), &register).is_ok());
    // add, then remove and a second add overlapping: the second add went last.
    let set = history(vec![
        op(0, "add", 5u8, (), 0, 10),
        op(1, "remove", 5u8, (), 20, 100),
        op(2, "add", 5u8, (), 20, 100),
        op(3, "contains", 5u8, true, 50, 60),
    ]);
    assert!(check(&Set, &set).is_ok());
    // A dequeue that never returned took the 1 enqueued after it began.
    let queue = history(vec![
        unknown(0, "dequeue", (), 0),
        op(1, "enqueue", 1i64, (), 10, 20),
        op(1, "enqueue", 2i64, (), 30, 40),
        op(2, "dequeue", (), Some(2i64), 50, 60),
    ]);
    assert!(check(&Queue::<i64>::new(), &queue).is_ok());
}

#[test]
fn large_values_and_many_orders_end_inconclusive_within_bounded_memory() {
    // Eight overlapping enqueues of 256 KiB values and a dequeue nobody
    // enqueued: every order of the eight is tried, none fits.
    let big = |i: usize| format!("{i}{}", "x".repeat(256 * 1024));
    let mut ops: Vec<Operation> = (0..8)
        .map(|c| op(c, "enqueue", big(c), (), 0, 100))
        .collect();
    ops.push(op(8, "dequeue", (), Some("nobody".to_owned()), 200, 210));
    let began = std::time::Instant::now();
    let v = check(&Queue::<String>::new(), &history(ops)).unwrap_err();
    // Nothing enqueued "nobody": the dequeue alone is the witness.
    assert_eq!(v.witness().len(), 1, "{v}");
    // The states hold digests, not the values: the report quotes the
    // values' starts only.
    assert!(
        v.to_string().len() < 20_000,
        "{} bytes",
        v.to_string().len()
    );
    assert!(began.elapsed() < std::time::Duration::from_secs(120));
}

#[test]
fn a_violation_of_order_keeps_the_operations_that_made_the_result_possible() {
    // contains → true after the remove had returned: the add that made
    // `true` possible stays in the witness, and the remove that makes it
    // impossible.
    let set = history(vec![
        op(0, "add", 5u8, (), 0, 10),
        op(1, "remove", 5u8, (), 20, 30),
        op(2, "contains", 5u8, true, 40, 50),
    ]);
    let v = check(&Set, &set).unwrap_err();
    let names: Vec<&str> = v.witness().iter().map(Operation::name).collect();
    assert_eq!(names, ["add", "remove", "contains"], "{v}");
    // A read of a value nobody wrote is wrong whatever the times: alone.
    let nobody = history(vec![
        op(0, "write", 1i64, (), 0, 10),
        op(1, "read", (), 7i64, 20, 30),
    ]);
    let v = check(&Register::new(0i64), &nobody).unwrap_err();
    assert_eq!(v.witness().len(), 1, "{v}");
}

#[test]
fn a_page_is_never_written_through_a_planted_link() {
    let base = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let planted = base.path().join("stampede");
    std::os::unix::fs::symlink(elsewhere.path(), &planted).unwrap();
    let refused = super::page::write(&planted, "violation-1-0", "<html>").unwrap_err();
    assert!(refused.contains("it is a symlink"), "{refused}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    // Its own directory: made private, the page written.
    let own = base.path().join("own");
    let path = super::page::write(&own, "violation-1-0", "<html>").unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap(), "<html>");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&own).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_long_witness_lists_twelve_operations_and_counts_the_rest() {
    // 20 overlapping adds and a read short by one: every add is needed.
    let mut ops: Vec<Operation> = (0..20).map(|c| op(c, "add", 1i64, (), 0, 100)).collect();
    ops.push(op(20, "get", (), 19i64, 200, 210));
    let v = check(&Counter, &history(ops)).unwrap_err();
    assert_eq!(v.witness().len(), 21, "{v}");
    let text = v.to_string();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  child ")).count(),
        12,
        "{text}"
    );
    assert!(
        text.contains("  … and 9 more (`Violation::witness` has them all)"),
        "{text}"
    );
}

fn failed(child: usize, name: &str, input: i64, error: &str, from: u64, to: u64) -> Operation {
    Operation::new(
        child,
        name,
        Value::of(&input),
        Ending::Failed(error.into()),
        us(from),
        Some(us(to)),
    )
}

#[test]
fn a_refused_operation_is_left_out_unless_the_model_says_it_never_fails() {
    let h = history(vec![
        op(0, "add", 1i64, (), 0, 10),
        failed(1, "add", 1, "database is locked", 5, 15),
        op(0, "get", (), 1i64, 20, 30),
    ]);
    assert!(check(&Counter, &h).is_ok());
    let v = check(&NeverFails(Counter), &h).unwrap_err();
    assert_eq!(
        v.to_string(),
        "not accepted under NeverFails(Counter): child 1's add failed (database is locked), and \
         NeverFails(Counter) says it may not: an operation that must succeed was refused\n  \
         child 1  add(1) failed: database is locked\n"
    );
    assert_eq!(v.witness().len(), 1);
    assert!(!v.is_inconclusive());
    // Nothing refused: NeverFails is its model, no more.
    let fine = history(vec![
        op(0, "add", 1i64, (), 0, 10),
        op(0, "get", (), 1i64, 20, 30),
    ]);
    assert!(check(&NeverFails(Counter), &fine).is_ok());
    let wrong = history(vec![
        op(0, "add", 1i64, (), 0, 10),
        op(0, "get", (), 2i64, 20, 30),
    ]);
    assert!(
        check(&NeverFails(Counter), &wrong)
            .unwrap_err()
            .to_string()
            .starts_with("not linearizable under NeverFails(Counter)")
    );
    // Around Anything, only refusals count.
    assert!(check(&NeverFails(Anything), &wrong).is_ok());
    assert!(check(&NeverFails(Anything), &h).is_err());
}
