//! Every `Display` of an outcome: one writer for a child's headline, its
//! notes and its output, and for the summary of many children.

use std::fmt;

use super::stages::{Round, human};
use super::timeline::{REPORT_MAX_CHILDREN, Timeline};
use super::{Captured, Exit, Outcome, Outcomes, Status};

impl<R> Outcome<R> {
    /// One line: which child, and what happened to it.
    fn headline(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    for line in captured.to_string_lossy().lines() {
        writeln!(f, "  {line}")?;
    }
    Ok(())
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
    write_seed(f, seed)?;
    write_rounds(f, rounds)?;
    for outcome in outcomes.clone().filter(|o| !o.is_returned()) {
        write!(f, "{outcome}")?;
    }
    if outcomes.clone().any(|o| !o.is_returned()) {
        write_timeline(f, outcomes)?;
    }
    Ok(())
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
