//! A scheduled run's schedule: which child passed which step, in order, as
//! one line of text that [`Options::replay`](crate::Options::replay) takes.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// The order in which a scheduled run's children passed their steps: child
/// index and step name per passage. Its `Display` is one line that replays
/// it (`Options::replay`), e.g.
/// `v1 n=2 0:start 1:start 1:after-select 0:after-select 0:end 1:end`.
/// Steps are named, not numbered, so a schedule stays valid across
/// stampede releases and edits of code between the steps.
///
/// ```
/// let schedule: stampede::Schedule = "v1 n=2 1:start 0:start 0:end 1:end".parse()?;
/// assert_eq!(schedule.children(), 2);
/// assert_eq!(schedule.passages()[0], (1, "start".to_owned()));
/// assert_eq!(schedule.to_string(), "v1 n=2 1:start 0:start 0:end 1:end");
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    children: usize,
    passages: Vec<(usize, String)>,
}

/// The version of the text: the first word.
const VERSION: &str = "v1";

impl Schedule {
    pub(crate) fn new(children: usize, passages: Vec<(usize, String)>) -> Schedule {
        Schedule { children, passages }
    }

    /// How many children the run had.
    pub fn children(&self) -> usize {
        self.children
    }

    /// Each passage in order: the child's index and the step it went on
    /// from.
    pub fn passages(&self) -> &[(usize, String)] {
        &self.passages
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION} n={}", self.children)?;
        for (child, step) in &self.passages {
            write!(f, " {child}:{step}")?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// Reads a schedule's text; the error says what is wrong and where.
    fn from_str(text: &str) -> Result<Schedule, String> {
        let mut words = text.split_whitespace();
        match words.next() {
            Some(VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "a schedule starts with `{VERSION}`, not `{other}` (copy the whole line a \
                     failing run printed)"
                ));
            }
            None => return Err("the schedule is empty".to_owned()),
        }
        let children = words
            .next()
            .and_then(|w| w.strip_prefix("n="))
            .and_then(number)
            .filter(|&n| n > 0)
            .ok_or_else(|| "a schedule's second word is `n=<children>`, at least 1".to_owned())?;
        let mut passages = Vec::new();
        for (position, word) in words.enumerate() {
            let parsed = word
                .split_once(':')
                .and_then(|(child, step)| Some((number(child)?, step)))
                .filter(|(_, step)| !step.is_empty());
            let Some((child, step)) = parsed else {
                return Err(format!(
                    "passage {position} of the schedule, `{word}`, is not `<child>:<step>`"
                ));
            };
            if child >= children {
                return Err(format!(
                    "passage {position} of the schedule names child {child}, but the run had \
                     {children}"
                ));
            }
            passages.push((child, step.to_owned()));
        }
        Ok(Schedule { children, passages })
    }
}

/// A number as a schedule prints it: decimal digits only (`+1` is not
/// one, though `usize`'s parser takes it).
fn number(text: &str) -> Option<usize> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// What the scheduled calls of one hunt run did, for the hunt to replay and
/// shrink a failure: the last call's schedule, and whether a replay went
/// another way than its recording.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Recorded>>);

#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub schedule: Option<Schedule>,
    /// How a replay went another way than recorded, if it did.
    pub diverged: Option<String>,
    /// Scheduled calls made.
    pub calls: usize,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // Plain fields: a panic while holding the lock leaves them whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn schedule(&self, schedule: Schedule) {
        let mut recorded = self.lock();
        recorded.schedule = Some(schedule);
        recorded.calls += 1;
    }

    pub(crate) fn diverged(&self, how: String) {
        self.lock().diverged = Some(how);
    }

    pub(crate) fn take(&self) -> Recorded {
        std::mem::take(&mut *self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_reads_back_what_it_writes() {
        let schedule = Schedule::new(
            3,
            vec![
                (2, "start".into()),
                (0, "start".into()),
                (0, "after:select".into()),
            ],
        );
        let text = schedule.to_string();
        assert_eq!(text, "v1 n=3 2:start 0:start 0:after:select");
        assert_eq!(text.parse::<Schedule>(), Ok(schedule));
    }

    #[test]
    fn a_bad_schedule_says_what_and_where() {
        let err = |text: &str| text.parse::<Schedule>().unwrap_err();
        assert!(err("").contains("empty"));
        assert!(err("v2 n=1").contains("starts with `v1`"));
        assert!(err("v1 x").contains("n=<children>"));
        assert!(err("v1 n=0").contains("at least 1"));
        assert!(err("v1 n=2 0:start 1start").contains("passage 1"));
        assert!(err("v1 n=2 0:").contains("passage 0"));
        assert!(err("v1 n=2 2:start").contains("names child 2, but the run had 2"));
        assert!(err("v1 n=2 0:start +1:start").contains("passage 1 of the schedule, `+1:start`"));
        assert!(err("v1 n=+2").contains("n=<children>"));
        assert!(err("v1 n=2 -0:start").contains("passage 0"));
        assert_eq!(
            "v1 n=12 11:start"
                .parse::<Schedule>()
                .map(|s| s.passages().to_vec()),
            Ok(vec![(11, "start".to_owned())])
        );
    }
}
