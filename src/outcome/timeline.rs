//! A picture of a call: each child's life as one line of characters, every
//! line to the same time scale, so that who started late, who waited at the
//! barrier and who died when can be read at a glance.

use std::fmt;
use std::time::Duration;

use super::stages::human;
use super::{Outcome, Status, Timings};

/// Columns of a line; each stands for the same slice of time.
const WIDTH: usize = 60;

/// Reports include a timeline up to this many children; past it, the lines
/// would bury the report. [`Outcomes::timeline`](crate::Outcomes::timeline)
/// draws one for any number.
pub(crate) const REPORT_MAX_CHILDREN: usize = 32;

/// Each child's life as one line of characters, all to the same time scale
/// (from the start of the call to the last child's end), and a `^` under
/// each moment the children were let go (from the start barrier, from each
/// checkpoint round). `Display` draws it:
///
/// ```text
/// timeline: 1 column = 100 µs
///           0 µs                2.0 ms              4.0 ms              6.0 ms
///           +---------+---------+---------+---------+---------+---------+
/// child 0   ··rrrrrrrr==========ccccc|====--o                             returned
/// child 1    ···rrrrrr=====-P                                             panicked
/// child 2     ······x                                                     crashed
/// child 10     ··rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrT  timed out
/// let go              ^              ^
///           · starting, r ready at the barrier, = running, c at a checkpoint, | let go from it,
///           - exiting; the end: o returned, P panicked, x crashed, T timed out, F failed
/// ```
///
/// Made by [`Outcomes::timeline`](crate::Outcomes::timeline); failure
/// reports of up to 32 children end with it.
///
/// ```no_run
/// # #[stampede::function] fn work() { stampede::checkpoint() }
/// let timeline = stampede::call_concurrently(4, work, ())?.timeline();
/// assert_eq!(timeline.len(), 4);
/// assert!(!timeline.is_empty());
/// println!("1 column = {:?}", timeline.column());
/// println!("{timeline}");
/// # Ok::<(), stampede::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Timeline {
    rows: Vec<Row>,
    span: Duration,
}

#[derive(Debug, Clone)]
struct Row {
    index: usize,
    timings: Timings,
    end: End,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Returned,
    Panicked,
    Crashed,
    TimedOut,
    Failed,
}

impl End {
    fn of<R>(status: &Status<R>) -> End {
        match status {
            Status::Returned(_) => End::Returned,
            Status::Panicked { .. } => End::Panicked,
            Status::Crashed(_) => End::Crashed,
            Status::TimedOut { .. } => End::TimedOut,
            Status::Failed { .. } => End::Failed,
        }
    }

    fn mark(self) -> char {
        match self {
            End::Returned => 'o',
            End::Panicked => 'P',
            End::Crashed => 'x',
            End::TimedOut => 'T',
            End::Failed => 'F',
        }
    }

    fn word(self) -> &'static str {
        match self {
            End::Returned => "returned",
            End::Panicked => "panicked",
            End::Crashed => "crashed",
            End::TimedOut => "timed out",
            End::Failed => "failed",
        }
    }
}

impl Timeline {
    pub(crate) fn of<'a, R: 'a>(outcomes: impl Iterator<Item = &'a Outcome<R>>) -> Timeline {
        let rows: Vec<Row> = outcomes
            .map(|o| Row {
                index: o.index,
                timings: o.timings.clone(),
                end: End::of(&o.status),
            })
            .collect();
        let span = rows
            .iter()
            .map(|r| r.timings.ended)
            .max()
            .unwrap_or_default()
            .max(Duration::from_nanos(1));
        Timeline { rows, span }
    }

    /// How many children it shows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it shows no child.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The time one column stands for.
    pub fn column(&self) -> Duration {
        self.span / WIDTH as u32
    }

    /// The column `at` falls in.
    fn col(&self, at: Duration) -> usize {
        let col = at.as_nanos() * WIDTH as u128 / self.span.as_nanos();
        (col as usize).min(WIDTH - 1)
    }

    /// The middle of column `col`.
    fn middle(&self, col: usize) -> Duration {
        let ns = (2 * col as u128 + 1) * self.span.as_nanos() / (2 * WIDTH as u128);
        Duration::from_nanos(ns as u64)
    }

    fn bar(&self, row: &Row) -> String {
        let t = &row.timings;
        let (first, last) = (self.col(t.spawned), self.col(t.ended));
        let mut bar: Vec<char> = (0..WIDTH)
            .map(|col| {
                if col < first || col > last {
                    ' '
                } else {
                    phase(t, self.middle(col).clamp(t.spawned, t.ended))
                }
            })
            .collect();
        // Entering the function shows even when the run is shorter than a column.
        if let Some(started) = t.started {
            bar[self.col(started)] = '=';
        }
        for passed in t.checkpoints.iter().filter_map(|c| c.passed) {
            bar[self.col(passed)] = '|';
        }
        bar[last] = row.end.mark();
        bar.into_iter().collect()
    }
}

impl Timeline {
    /// A `^` under each moment the gate let the children go: from the
    /// start barrier (the first child's entry into the function), then
    /// each checkpoint round's release.
    fn releases(&self) -> Vec<char> {
        let mut line = vec![' '; WIDTH];
        let timings = || self.rows.iter().map(|r| &r.timings);
        if let Some(start) = timings().filter_map(|t| t.started).min() {
            line[self.col(start)] = '^';
        }
        let depth = timings().map(|t| t.checkpoints.len()).max().unwrap_or(0);
        for round in 0..depth {
            let released = timings()
                .filter_map(|t| t.checkpoints.get(round).and_then(|c| c.released))
                .min();
            if let Some(released) = released {
                line[self.col(released)] = '^';
            }
        }
        line
    }
}

/// What a child was doing at `at`.
fn phase(t: &Timings, at: Duration) -> char {
    let before = |moment: Option<Duration>| moment.is_none_or(|m| at < m);
    if before(t.ready) {
        return '·';
    }
    if before(t.started) {
        return 'r';
    }
    let end_of_call = t.finished.unwrap_or(t.ended);
    let waiting = t.checkpoints.iter().any(|c| {
        let until = c.passed.unwrap_or(end_of_call);
        c.reached <= at && at < until
    });
    if waiting {
        return 'c';
    }
    if before(t.finished) {
        return '=';
    }
    '-'
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self
            .rows
            .iter()
            .map(|r| r.index)
            .max()
            .unwrap_or(0)
            .to_string()
            .len();
        // "child " and the index, then two spaces.
        let margin = " ".repeat(6 + digits + 2);
        writeln!(f, "timeline: 1 column = {}", human(self.column()))?;
        // A time under every other tick, or just after the previous one.
        let mut labels = String::new();
        for tick in (0..=WIDTH).step_by(20) {
            let len = labels.chars().count();
            if len > 0 {
                labels.push_str(&" ".repeat(tick.saturating_sub(len).max(1)));
            }
            labels.push_str(&human(self.span * tick as u32 / WIDTH as u32));
        }
        writeln!(f, "{margin}{labels}")?;
        let scale: String = (0..=WIDTH)
            .map(|c| if c % 10 == 0 { '+' } else { '-' })
            .collect();
        writeln!(f, "{margin}{scale}")?;
        for row in &self.rows {
            writeln!(
                f,
                "child {:<digits$}  {}  {}",
                row.index,
                self.bar(row),
                row.end.word()
            )?;
        }
        let releases = self.releases();
        if releases.iter().any(|&c| c != ' ') {
            let label_width = margin.len();
            writeln!(
                f,
                "{:<label_width$}{}",
                "let go",
                releases.iter().collect::<String>().trim_end()
            )?;
        }
        writeln!(
            f,
            "{margin}· starting, r ready at the barrier, = running, c at a checkpoint, | let go from it,"
        )?;
        writeln!(
            f,
            "{margin}- exiting; the end: o returned, P panicked, x crashed, T timed out, F failed"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Captured, CheckpointTiming, Exit};

    fn ms(tenths: u64) -> Duration {
        Duration::from_micros(tenths * 100)
    }

    fn child(index: usize, status: Status<()>, timings: Timings) -> Outcome<()> {
        Outcome {
            index,
            pid: 100 + index as u32,
            function: "f",
            status,
            stdout: Captured::default(),
            stderr: Captured::default(),
            timings,
            notes: Vec::new(),
            max_rss: None,
            worker: None,
            history: Vec::new(),
            history_complete: true,
        }
    }

    #[test]
    fn every_child_is_one_line_to_the_same_scale() {
        let outcomes = [
            // Ready, released, at a checkpoint from 2.0 to 2.5 ms, returned.
            child(
                0,
                Status::Returned(()),
                Timings {
                    spawned: ms(0),
                    ready: Some(ms(2)),
                    started: Some(ms(10)),
                    checkpoint: Some(ms(25)),
                    checkpoints: vec![CheckpointTiming {
                        reached: ms(20),
                        released: Some(ms(25)),
                        passed: Some(ms(25)),
                    }],
                    finished: Some(ms(30)),
                    ended: ms(32),
                    ..Timings::default()
                },
            ),
            // Panicked soon after the release.
            child(
                1,
                Status::Panicked {
                    message: "boom".into(),
                    location: None,
                },
                Timings {
                    spawned: ms(1),
                    ready: Some(ms(4)),
                    started: Some(ms(10)),
                    finished: Some(ms(15)),
                    ended: ms(16),
                    ..Timings::default()
                },
            ),
            // Killed by a signal while starting.
            child(
                2,
                Status::Crashed(Exit::Signal {
                    number: 9,
                    name: "SIGKILL",
                }),
                Timings {
                    spawned: ms(2),
                    ended: ms(8),
                    ..Timings::default()
                },
            ),
            // Never released from the barrier: timed out at 6 ms.
            child(
                10,
                Status::TimedOut {
                    after: ms(60),
                    limit: ms(60),
                },
                Timings {
                    spawned: ms(3),
                    ready: Some(ms(5)),
                    ended: ms(60),
                    ..Timings::default()
                },
            ),
        ];
        let timeline = Timeline::of(outcomes.iter());
        assert_eq!(timeline.column(), Duration::from_micros(100));
        assert_eq!(
            timeline.to_string(),
            "\
timeline: 1 column = 100 µs
          0 µs                2.0 ms              4.0 ms              6.0 ms
          +---------+---------+---------+---------+---------+---------+
child 0   ··rrrrrrrr==========ccccc|====--o                             returned
child 1    ···rrrrrr=====-P                                             panicked
child 2     ······x                                                     crashed
child 10     ··rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrT  timed out
let go              ^              ^
          · starting, r ready at the barrier, = running, c at a checkpoint, | let go from it,
          - exiting; the end: o returned, P panicked, x crashed, T timed out, F failed
"
        );
    }
}
