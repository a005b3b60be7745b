//! Fan-out at n = 1000: how long until every child is at the checkpoint,
//! against a bare spawn of 1000 processes measured in the same run, and how
//! spread out the release of 1000 children is.
//!
//! Run with `cargo bench --bench fan_out`. Both variants run once per round,
//! in an order that alternates from round to round; the table reports
//! medians and minimums over the rounds. Timings are printed, never
//! asserted: a missed target is a line that says MISS.
//!
//! Environment: `FAN_OUT_ROUNDS` (default 9) sets the number of rounds.

#[path = "common/baseline.rs"]
mod baseline;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/stats.rs"]
mod stats;

use stats::Stats;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use stampede::Timestamp;

/// Set on the baseline's children only: their `main` returns right after
/// `stampede::init()`, so they cost what starting this binary costs.
const EXIT_AT_ONCE: &str = "STAMPEDE_FAN_OUT_EXIT_AT_ONCE";
const ROUNDS_VAR: &str = "FAN_OUT_ROUNDS";
const DEFAULT_ROUNDS: usize = 9;
const N: usize = 1000;

/// All 1000 at the checkpoint, against a bare spawn+wait of 1000.
const AT_CHECKPOINT_FACTOR: f64 = 1.5;
/// From the release's byte to the last of 1000 children going on, 2 cores.
const RELEASE_TARGET: Duration = Duration::from_millis(150);

#[stampede::function]
fn at_checkpoint() -> u8 {
    stampede::checkpoint();
    1
}

fn main() {
    stampede::init();
    if std::env::var_os(EXIT_AT_ONCE).is_some() {
        return;
    }
    let rounds = std::env::var(ROUNDS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let began = Instant::now();
    let mut samples = Samples::default();
    // One unrecorded round of each first: page cache and allocator settle.
    for round in 0..rounds + 1 {
        let record = round > 0;
        if round % 2 == 0 {
            samples.stampede(record);
            samples.bare(record);
        } else {
            samples.bare(record);
            samples.stampede(record);
        }
    }
    print!("{}", samples.report(rounds, began.elapsed()));
}

#[derive(Default)]
struct Samples {
    bare: Vec<Duration>,
    all_at_checkpoint: Vec<Duration>,
    wall: Vec<Duration>,
    /// Release byte → last child going on.
    release_to_last: Vec<Duration>,
    /// First child going on → last.
    release_spread: Vec<Duration>,
    arrivals_spread: Vec<Duration>,
}

impl Samples {
    fn stampede(&mut self, record: bool) {
        let t0 = Timestamp::now();
        let outcomes = stampede::Options::new()
            .timeout(Duration::from_secs(120))
            .call_concurrently(N, at_checkpoint, ())
            .expect("stampede call");
        let wall = Timestamp::now().duration_since(t0);
        assert!(
            outcomes.all_returned(),
            "a benchmark child failed:\n{outcomes}"
        );
        if !record {
            return;
        }
        let origin = outcomes[0].timings().origin;
        let last_reached = outcomes
            .iter()
            .map(|o| o.timings().checkpoints[0].reached)
            .max()
            .unwrap();
        let round = &outcomes.stages().checkpoints[0];
        let releases = round.releases.expect("children went on");
        let released_at = round.released_at.expect("the round was released");
        self.all_at_checkpoint
            .push(origin.later_by(last_reached).duration_since(t0));
        self.wall.push(wall);
        self.release_to_last
            .push(releases.last.saturating_sub(released_at));
        self.release_spread.push(releases.width());
        self.arrivals_spread
            .push(round.arrivals.expect("children arrived").width());
    }

    fn bare(&mut self, record: bool) {
        let t0 = Instant::now();
        baseline::bare_spawn(N, EXIT_AT_ONCE);
        if record {
            self.bare.push(t0.elapsed());
        }
    }

    fn report(&self, rounds: usize, took: Duration) -> String {
        let mut w = String::new();
        let bare = Stats::of(&self.bare);
        let at = Stats::of(&self.all_at_checkpoint);
        let wall = Stats::of(&self.wall);
        let to_last = Stats::of(&self.release_to_last);
        let spread = Stats::of(&self.release_spread);
        let arrivals = Stats::of(&self.arrivals_spread);
        let ratio = at.median.as_secs_f64() / bare.median.as_secs_f64();
        let _ = writeln!(w, "\n## fan-out, n = {N}\n");
        let _ = writeln!(w, "machine: {}", machine::machine());
        let _ = writeln!(
            w,
            "rounds: {rounds}, the two variants alternating; whole run {:.1} s\n",
            took.as_secs_f64()
        );
        let _ = writeln!(
            w,
            "| measurement | median (min) | vs bare spawn of {N} | target |"
        );
        let _ = writeln!(w, "|---|---|---|---|");
        let _ = writeln!(
            w,
            "| bare spawn {N} + wait all | {} | 1.00× | — |",
            bare.cell()
        );
        let _ = writeln!(
            w,
            "| call → all {N} at the checkpoint | {} | {:.2}× ({:.2}×) | ≤ {AT_CHECKPOINT_FACTOR}× |",
            at.cell(),
            ratio,
            at.min.as_secs_f64() / bare.min.as_secs_f64()
        );
        let _ = writeln!(
            w,
            "| whole call (to the last reaped) | {} | {:.2}× | — |",
            wall.cell(),
            wall.median.as_secs_f64() / bare.median.as_secs_f64()
        );
        let _ = writeln!(
            w,
            "| arrivals at the checkpoint, first → last | {} | — | — |",
            arrivals.cell()
        );
        let _ = writeln!(
            w,
            "| release byte → last child going on | {} | — | ≤ {} |",
            to_last.cell(),
            fmt(RELEASE_TARGET)
        );
        let _ = writeln!(
            w,
            "| release spread, first → last going on | {} | — | — |",
            spread.cell()
        );
        let _ = writeln!(w, "\n### targets\n");
        let verdicts = [
            (
                format!(
                    "all {N} at the checkpoint within {AT_CHECKPOINT_FACTOR}× of a bare spawn of {N}"
                ),
                ratio <= AT_CHECKPOINT_FACTOR,
            ),
            (
                format!(
                    "release of {N}: last child going on within {} of the byte (median)",
                    fmt(RELEASE_TARGET)
                ),
                to_last.median <= RELEASE_TARGET,
            ),
        ];
        for (what, pass) in verdicts {
            let _ = writeln!(w, "{} {what}", if pass { "PASS" } else { "MISS" });
        }
        w
    }
}

impl Stats {
    fn cell(&self) -> String {
        format!("{} ({})", fmt(self.median), fmt(self.min))
    }
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
