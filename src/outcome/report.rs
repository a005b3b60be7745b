//! Every `Display` of an outcome: one writer for a child's headline, its
//! notes and its output, and for the summary of many children.

use std::fmt;

use super::stages::{Round, human};
use super::timeline::{REPORT_MAX_CHILDREN, Timeline};
use super::{Captured, Exit, Outcome, Outcomes, Status};

impl<R> Outcome<R> {
    /// One line: which child, and what happened to it.
    fn headline(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self.worker {
            Some(worker) => write!(
                f,
                "call {} (worker {worker}, pid {}) running `{}` ",
                self.index, self.pid, self.function
            )?,
            None => write!(
                f,
                "child {} (pid {}) running `{}` ",
                self.index, self.pid, self.function
            )?,
        }
        self.what_happened(f)
    }

    /// What happened to the child: "panicked at src/x.rs:3:5: boom".
    fn what_happened(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match &self.status {
            Status::Returned(_) => write!(f, "returned"),
            Status::Panicked { message, location } => {
                write!(f, "panicked")?;
                if let Some(location) = location {
                    write!(f, " at {location}")?;
                }
                write!(f, ": {message}")
            }
            Status::Crashed(exit @ (Exit::Code(0) | Exit::Unknown)) => {
                write!(f, "ended ({exit}) without reporting a result")
            }
            Status::Crashed(exit) => write!(f, "crashed: {exit}"),
            Status::TimedOut { after, limit } => write!(
                f,
                "timed out after {after:.3?} (its limit: {limit:?}); its process group was killed"
            ),
            Status::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// A stream as reports show it: a header, then the lines indented.
pub(crate) fn write_stream(
    f: &mut impl fmt::Write,
    name: &str,
    captured: &Captured,
) -> fmt::Result {
    if captured.total == 0 {
        return Ok(());
    }
    if captured.is_truncated() {
        writeln!(
            f,
            "  --- {name} (last {} of {} bytes) ---",
            captured.tail.len(),
            captured.total
        )?;
    } else {
        writeln!(f, "  --- {name} ---")?;
    }
    for line in trim_backtrace(&captured.to_string_lossy()).lines() {
        writeln!(f, "  {line}")?;
    }
    Ok(())
}

/// `text` with each backtrace cut where it enters stampede's own frames
/// (the call that ran the user's function, the child's loop, the test
/// harness) after the user's, and a line that says so. A backtrace with no
/// frame of the user's before stampede's (a panic inside stampede) is kept
/// whole. Only reports are trimmed: [`Outcome::stderr`] keeps every byte.
pub(crate) fn trim_backtrace(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("stack backtrace:") {
        return text.into();
    }
    let mut out: Vec<&str> = Vec::new();
    let mut in_trace = false;
    let mut seen_user = false;
    let mut cutting = false;
    let mut left_out = 0usize;
    for line in text.lines() {
        let frame = frame_symbol(line);
        if line.trim_start().starts_with("stack backtrace:") {
            (in_trace, seen_user, cutting) = (true, false, false);
            out.push(line);
            continue;
        }
        if cutting {
            if frame.is_some() {
                left_out += 1;
                continue;
            }
            if line.trim_start().starts_with("at ") {
                continue;
            }
            out.push(LEFT_OUT_MARK);
            cutting = false;
            in_trace = false;
        }
        match frame {
            Some(symbol) if in_trace && seen_user && is_internal(symbol) => {
                // The plumbing between the user's frame and stampede's: a
                // frame line and its `at` lines, from the end.
                loop {
                    let at_lines = out
                        .iter()
                        .rev()
                        .take_while(|l| l.trim_start().starts_with("at "))
                        .count();
                    let Some(frame_at) = out.len().checked_sub(at_lines + 1) else {
                        break;
                    };
                    if !frame_symbol(out[frame_at]).is_some_and(is_plumbing) {
                        break;
                    }
                    out.truncate(frame_at);
                    left_out += 1;
                }
                cutting = true;
                left_out += 1;
            }
            Some(symbol) => {
                if in_trace && !is_internal(symbol) && !is_plumbing(symbol) && !is_std(symbol) {
                    seen_user = true;
                }
                out.push(line);
            }
            None => out.push(line),
        }
    }
    if cutting {
        out.push(LEFT_OUT_MARK);
    }
    let mut trimmed = out.join("\n");
    let note = format!(
        "  ({left_out} frame{} inside stampede and the harness left out; the outcome's \
         `stderr()` has them)",
        if left_out == 1 { "" } else { "s" }
    );
    trimmed = trimmed.replace(LEFT_OUT_MARK, &note);
    if text.ends_with('\n') {
        trimmed.push('\n');
    }
    trimmed.into()
}

/// Stands for the line that says how many frames were left out.
const LEFT_OUT_MARK: &str = "\u{0}left-out\u{0}";

/// The symbol of a backtrace's frame line (`  12: std::panic::catch_unwind`).
fn frame_symbol(line: &str) -> Option<&str> {
    let (number, symbol) = line.trim_start().split_once(": ")?;
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then_some(symbol)
}

/// A frame of stampede's own machinery.
fn is_internal(symbol: &str) -> bool {
    symbol.starts_with("stampede::")
        || symbol.starts_with("<F as stampede::")
        || symbol.contains("__stampede_entry")
}

/// A frame that only passes a call on (closures' `call`, `call_once`).
fn is_plumbing(symbol: &str) -> bool {
    symbol.starts_with("core::ops::function::")
        || symbol.starts_with("<alloc::boxed::Box<F,A> as core::ops::function::")
}

/// A frame of the panic machinery itself.
fn is_std(symbol: &str) -> bool {
    [
        "std::",
        "core::",
        "alloc::",
        "__rustc::",
        "<std::",
        "<core::",
        "<alloc::",
        "rust_",
    ]
    .iter()
    .any(|p| symbol.starts_with(p))
}

/// The headline, then the child's stdout and stderr, indented.
impl<R> fmt::Display for Outcome<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.headline(f)?;
        writeln!(f)?;
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        write_stream(f, "stdout", &self.stdout)?;
        write_stream(f, "stderr", &self.stderr)
    }
}

/// A summary line ("8 children: 7 returned, 1 panicked"), then each child
/// that did not return, with its output.
impl<R> fmt::Display for Outcomes<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_report(f, self.items.iter(), self.seed, &self.rounds)?;
        if let Some(schedule) = &self.schedule {
            writeln!(
                f,
                "schedule: {schedule}\n  replay it with `Options::replay(\"{schedule}\")`, or \
                 rerun the test unchanged with STAMPEDE_REPLAY='{schedule}'"
            )?;
        }
        Ok(())
    }
}

/// The one report of many children: the summary line, the jitter seed when
/// jitter was on, what went wrong at the gate's rounds, then each child that
/// did not return, with its output, and when one did not, the timeline of
/// up to 32 children.
pub(crate) fn write_report<'a, R: 'a>(
    f: &mut fmt::Formatter<'_>,
    outcomes: impl Iterator<Item = &'a Outcome<R>> + Clone,
    seed: Option<u64>,
    rounds: &[Round],
) -> fmt::Result {
    summary(f, outcomes.clone().map(|o| &o.status))?;
    write_start_spread(f, outcomes.clone())?;
    write_seed(f, seed)?;
    write_rounds(f, rounds)?;
    write_failures(f, outcomes.clone())?;
    if outcomes.clone().any(|o| !o.is_returned()) {
        write_timeline(f, outcomes)?;
    }
    Ok(())
}

/// How close together the children entered the function, when two or
/// more did: the figure that says whether they overlapped at all.
fn write_start_spread<'a, R: 'a>(
    f: &mut fmt::Formatter<'_>,
    outcomes: impl Iterator<Item = &'a Outcome<R>>,
) -> fmt::Result {
    let calls: Vec<_> = outcomes.filter(|o| o.worker.is_none()).collect();
    let starts: Vec<_> = calls.iter().filter_map(|o| o.timings.started).collect();
    if let (true, Some(first), Some(last)) =
        (starts.len() >= 2, starts.iter().min(), starts.iter().max())
    {
        let of = if starts.len() == calls.len() {
            format!("the {}", starts.len())
        } else {
            format!("{} of the {}", starts.len(), calls.len())
        };
        writeln!(
            f,
            "start spread: {of} children entered the function within {} of each other",
            human(*last - *first)
        )?;
    }
    Ok(())
}

/// Each child that did not return, with its output; children that ended
/// the same way as an earlier one (the same panic at the same place, the
/// same exit) on one line after it, without their output, which is
/// mostly the same.
fn write_failures<'a, R: 'a>(
    f: &mut fmt::Formatter<'_>,
    outcomes: impl Iterator<Item = &'a Outcome<R>>,
) -> fmt::Result {
    /// What happened, the first child it happened to, the others.
    type Group<'a, R> = (String, &'a Outcome<R>, Vec<&'a Outcome<R>>);
    let mut groups: Vec<Group<'a, R>> = Vec::new();
    for outcome in outcomes.filter(|o| !o.is_returned()) {
        let mut what = String::new();
        outcome.what_happened(&mut what)?;
        match groups.iter_mut().find(|(w, first, _)| {
            *w == what && first.function == outcome.function && first.worker.is_none()
        }) {
            Some((_, _, same)) if outcome.worker.is_none() => same.push(outcome),
            _ => groups.push((what, outcome, Vec::new())),
        }
    }
    for (what, first, same) in groups {
        write!(f, "{first}")?;
        if same.is_empty() {
            continue;
        }
        let indices: Vec<usize> = same.iter().map(|o| o.index).collect();
        let pids: Vec<String> = same.iter().map(|o| o.pid.to_string()).collect();
        writeln!(
            f,
            "{} {} ({} {}) {what} too; their output is left out (each outcome's `stdout()` \
             and `stderr()` have it)",
            if same.len() == 1 { "child" } else { "children" },
            ranges(&indices),
            if same.len() == 1 { "pid" } else { "pids" },
            pids.join(", ")
        )?;
        for outcome in same {
            for note in &outcome.notes {
                writeln!(f, "  note (child {}): {note}", outcome.index)?;
            }
        }
    }
    Ok(())
}

/// `1–4, 7`: sorted indices as runs.
fn ranges(indices: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(a, b)| match b - a {
            0 => a.to_string(),
            1 => format!("{a}, {b}"),
            _ => format!("{a}–{b}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The timeline, for up to [`REPORT_MAX_CHILDREN`] children.
pub(crate) fn write_timeline<'a, R: 'a>(
    f: &mut impl fmt::Write,
    outcomes: impl Iterator<Item = &'a Outcome<R>> + Clone,
) -> fmt::Result {
    if outcomes.clone().count() <= REPORT_MAX_CHILDREN {
        write!(f, "{}", Timeline::of(outcomes))?;
    }
    Ok(())
}

/// A line per checkpoint round whose trigger failed, that was released at
/// its deadline without some children, or that was never released.
pub(crate) fn write_rounds(f: &mut impl fmt::Write, rounds: &[Round]) -> fmt::Result {
    for round in rounds {
        let r = round.round;
        if let Some(failure) = &round.trigger_failure {
            let took = round.trigger.map(human).unwrap_or_default();
            writeln!(
                f,
                "the trigger of checkpoint {r} failed after {took} (every child was released anyway): {failure}"
            )?;
        }
        if let Some((deadline, without)) = &round.released_without {
            writeln!(
                f,
                "checkpoint {r} was released at its deadline ({deadline:?}) without {} (`or_release`)",
                children_list(without)
            )?;
        }
        if let Some(reason) = &round.failed {
            writeln!(f, "{reason}")?;
        }
    }
    Ok(())
}

/// "child 3", "children 3 and 7", "children 3, 7 and 9", at most 20 named.
pub(crate) fn children_list(indices: &[usize]) -> String {
    const NAMED: usize = 20;
    let mut names: Vec<String> = indices.iter().take(NAMED).map(usize::to_string).collect();
    if indices.len() > NAMED {
        names.push(format!("{} more", indices.len() - NAMED));
    }
    let noun = if indices.len() == 1 {
        "child"
    } else {
        "children"
    };
    match names.split_last() {
        None => "no child".to_owned(),
        Some((last, [])) => format!("{noun} {last}"),
        Some((last, rest)) => format!("{noun} {} and {last}", rest.join(", ")),
    }
}

/// The jitter seed line of a report, when jitter was on.
pub(crate) fn write_seed(f: &mut impl fmt::Write, seed: Option<u64>) -> fmt::Result {
    match seed {
        Some(seed) => writeln!(
            f,
            "jitter seed: {seed} (replay the delays with `Options::seed({seed})`)"
        ),
        None => Ok(()),
    }
}

pub(crate) fn summary<'a, R: 'a>(
    f: &mut fmt::Formatter<'_>,
    statuses: impl Iterator<Item = &'a Status<R>>,
) -> fmt::Result {
    let mut counts = [0usize; 5];
    for status in statuses {
        counts[match status {
            Status::Returned(_) => 0,
            Status::Panicked { .. } => 1,
            Status::Crashed(_) => 2,
            Status::TimedOut { .. } => 3,
            Status::Failed { .. } => 4,
        }] += 1;
    }
    let total: usize = counts.iter().sum();
    let plural = if total == 1 { "child" } else { "children" };
    write!(f, "{total} {plural}:")?;
    let names = ["returned", "panicked", "crashed", "timed out", "failed"];
    let mut first = true;
    for (count, name) in counts.iter().zip(names) {
        if *count > 0 {
            write!(f, "{} {count} {name}", if first { "" } else { "," })?;
            first = false;
        }
    }
    writeln!(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Timings;

    const TRACE: &str = "\
thread 'main' (7) panicked at tests/peer.rs:47:5:
WTF
stack backtrace:
   0: __rustc::rust_begin_unwind
             at /rustc/x/library/std/src/panicking.rs:689:5
   1: core::panicking::panic_fmt
             at /rustc/x/library/core/src/panicking.rs:80:14
   2: peer::claim
             at ./tests/peer.rs:47:5
   3: core::ops::function::Fn::call
             at /rustc/x/library/core/src/ops/function.rs:79:5
   4: <F as stampede::registry::Function<fn(A) .> R>>::call
             at ./src/registry.rs:129:9
   5: std::panicking::catch_unwind
   6: stampede::child::run
             at ./src/child/mod.rs:78:22
   7: peer::__stampede_entry
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
";

    #[test]
    fn a_backtrace_is_cut_where_stampede_takes_over_from_the_users_frame() {
        let trimmed = trim_backtrace(TRACE);
        let expected = "\
thread 'main' (7) panicked at tests/peer.rs:47:5:
WTF
stack backtrace:
   0: __rustc::rust_begin_unwind
             at /rustc/x/library/std/src/panicking.rs:689:5
   1: core::panicking::panic_fmt
             at /rustc/x/library/core/src/panicking.rs:80:14
   2: peer::claim
             at ./tests/peer.rs:47:5
  (5 frames inside stampede and the harness left out; the outcome's `stderr()` has them)
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
";
        assert_eq!(trimmed, expected);
    }

    #[test]
    fn a_panic_inside_stampede_keeps_its_whole_backtrace() {
        let inside = TRACE.replace("   2: peer::claim", "   2: stampede::wire::decode");
        assert_eq!(trim_backtrace(&inside), inside);
        let plain = "no backtrace here\n   3: not a frame\n";
        assert_eq!(trim_backtrace(plain), plain);
    }

    #[test]
    fn a_trace_that_ends_in_stampede_frames_says_how_many_it_left_out() {
        let cut = TRACE.lines().take(13).collect::<Vec<_>>().join("\n");
        let trimmed = trim_backtrace(&cut);
        assert!(
            trimmed.ends_with("  (2 frames inside stampede and the harness left out; the outcome's `stderr()` has them)"),
            "{trimmed}"
        );
    }

    fn child(index: usize, status: Status<()>, notes: &[&str]) -> Outcome<()> {
        Outcome {
            index,
            pid: 100 + index as u32,
            function: "peer::claim",
            status,
            stdout: Captured::default(),
            stderr: Captured {
                tail: format!("output of {index}\n").into_bytes(),
                total: 12,
            },
            timings: Timings::default(),
            notes: notes.iter().map(|n| n.to_string()).collect(),
            max_rss: None,
            worker: None,
            history: Vec::new(),
            history_complete: true,
        }
    }

    struct Failures<'a>(&'a [Outcome<()>]);

    impl fmt::Display for Failures<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_failures(f, self.0.iter())
        }
    }

    fn panicked(at: &str) -> Status<()> {
        Status::Panicked {
            message: "WTF".into(),
            location: Some(at.into()),
        }
    }

    #[test]
    fn children_that_failed_the_same_way_are_one_line_after_the_first() {
        let outcomes = [
            child(0, panicked("tests/peer.rs:47:5"), &[]),
            child(1, panicked("tests/peer.rs:47:5"), &[]),
            child(2, Status::Returned(()), &[]),
            child(
                3,
                panicked("tests/peer.rs:47:5"),
                &["a grandchild outlived it"],
            ),
            child(4, panicked("tests/peer.rs:47:5"), &[]),
            child(5, panicked("tests/peer.rs:50:1"), &[]),
            child(7, panicked("tests/peer.rs:47:5"), &[]),
        ];
        let text = Failures(&outcomes).to_string();
        let expected = "\
child 0 (pid 100) running `peer::claim` panicked at tests/peer.rs:47:5: WTF
  --- stderr ---
  output of 0
children 1, 3, 4, 7 (pids 101, 103, 104, 107) panicked at tests/peer.rs:47:5: WTF too; their output is left out (each outcome's `stdout()` and `stderr()` have it)
  note (child 3): a grandchild outlived it
child 5 (pid 105) running `peer::claim` panicked at tests/peer.rs:50:1: WTF
  --- stderr ---
  output of 5
";
        assert_eq!(text, expected);
    }

    #[test]
    fn one_child_that_failed_the_same_way_is_named_with_its_pid() {
        let outcomes = [
            child(0, panicked("tests/peer.rs:47:5"), &[]),
            child(6, panicked("tests/peer.rs:47:5"), &[]),
        ];
        let text = Failures(&outcomes).to_string();
        assert!(
            text.contains("\nchild 6 (pid 106) panicked at tests/peer.rs:47:5: WTF too;"),
            "{text}"
        );
    }

    struct Spread<'a>(&'a [Outcome<()>]);

    impl fmt::Display for Spread<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_start_spread(f, self.0.iter())
        }
    }

    #[test]
    fn the_start_spread_says_how_many_of_the_children_entered_the_function() {
        let started = |index: usize, at_us: Option<u64>| {
            let mut outcome = child(index, Status::Returned(()), &[]);
            outcome.timings.started = at_us.map(std::time::Duration::from_micros);
            outcome
        };
        let all = [started(0, Some(100)), started(1, Some(250))];
        assert_eq!(
            Spread(&all).to_string(),
            "start spread: the 2 children entered the function within 150 µs of each other\n"
        );
        let some = [
            started(0, Some(100)),
            started(1, None),
            started(2, Some(250)),
        ];
        assert_eq!(
            Spread(&some).to_string(),
            "start spread: 2 of the 3 children entered the function within 150 µs of each other\n"
        );
        assert_eq!(Spread(&some[..2]).to_string(), "", "one entered: no spread");
    }

    #[test]
    fn runs_of_indices_are_written_as_ranges() {
        assert_eq!(ranges(&[1, 2, 3, 4]), "1–4");
        assert_eq!(ranges(&[1, 2]), "1, 2");
        assert_eq!(ranges(&[0, 2, 3, 4, 9]), "0, 2–4, 9");
        assert_eq!(ranges(&[5]), "5");
    }
}
