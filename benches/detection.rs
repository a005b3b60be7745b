//! Detection power: how often one concurrent run exposes each planted race
//! of the SQLite recipes (`tests/common/sqlite.rs`), with 8 children,
//! with the start barrier on, off, and on with start jitter.
//!
//! Run with `cargo bench --bench detection`. Each cell is the fraction of
//! runs (each a fresh database and 8 fresh processes) in which the race
//! showed. The correct recipes run too, as controls: they must show 0 %, or
//! the measurement (not the recipe) is broken. Rates are printed, never
//! asserted: a missed target is a line that says MISS.
//!
//! Environment: `DETECTION_RUNS` (default 60, at least 50 for numbers worth
//! quoting) sets the runs per cell.

#[path = "../tests/common/sqlite.rs"]
mod sqlite;

#[path = "common/machine.rs"]
mod machine;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlite::{Db, Journal};
use stampede::Options;

const RUNS_VAR: &str = "DETECTION_RUNS";
const DEFAULT_RUNS: usize = 60;
const CHILDREN: usize = sqlite::WORKERS;
const JITTER: Duration = Duration::from_micros(200);
/// The exposure the naive claim and the lost update must reach with the barrier on.
const TARGET: f64 = 0.95;

/// What a row runs.
#[derive(Clone, Copy)]
enum Scenario {
    NaiveClaim,
    LostUpdate,
    InsertWithoutUnique,
    ImmediateClaim,
    InsertWithUnique,
    AtomicIncrement,
}

/// One planted race (or control) in one journal mode.
struct Race {
    name: &'static str,
    /// What counts as exposed, in words, for the table.
    exposed_when: &'static str,
    scenario: Scenario,
    /// `None`: alternate between the two journal modes from run to run.
    journal: Option<Journal>,
    /// Whether the ≥ 95 % target applies (with the barrier on).
    targeted: bool,
}

const RACES: &[Race] = &[
    Race {
        name: "naive claim, rollback journal",
        exposed_when: "more than one worker claimed the ticket",
        scenario: Scenario::NaiveClaim,
        journal: Some(Journal::Delete),
        targeted: true,
    },
    Race {
        name: "naive claim, WAL",
        exposed_when: "more than one worker claimed the ticket",
        scenario: Scenario::NaiveClaim,
        journal: Some(Journal::Wal),
        targeted: true,
    },
    Race {
        name: "lost update, rollback journal",
        exposed_when: "the counter ended below 8",
        scenario: Scenario::LostUpdate,
        journal: Some(Journal::Delete),
        targeted: true,
    },
    Race {
        name: "lost update, WAL",
        exposed_when: "the counter ended below 8",
        scenario: Scenario::LostUpdate,
        journal: Some(Journal::Wal),
        targeted: true,
    },
    Race {
        name: "check-then-insert without UNIQUE, rollback journal",
        exposed_when: "more than one claim row",
        scenario: Scenario::InsertWithoutUnique,
        journal: Some(Journal::Delete),
        targeted: false,
    },
    Race {
        name: "check-then-insert without UNIQUE, WAL",
        exposed_when: "more than one claim row",
        scenario: Scenario::InsertWithoutUnique,
        journal: Some(Journal::Wal),
        targeted: false,
    },
    Race {
        name: "control: BEGIN IMMEDIATE claim, both journals",
        exposed_when: "not exactly one winner, or the row names another",
        scenario: Scenario::ImmediateClaim,
        journal: None,
        targeted: false,
    },
    Race {
        name: "control: check-then-insert with UNIQUE, both journals",
        exposed_when: "not exactly one winner and one row",
        scenario: Scenario::InsertWithUnique,
        journal: None,
        targeted: false,
    },
    Race {
        name: "control: atomic increment, both journals",
        exposed_when: "the counter did not end at 8",
        scenario: Scenario::AtomicIncrement,
        journal: None,
        targeted: false,
    },
];

impl Race {
    fn is_control(&self) -> bool {
        matches!(
            self.scenario,
            Scenario::ImmediateClaim | Scenario::InsertWithUnique | Scenario::AtomicIncrement
        )
    }

    /// Runs the scenario once on a fresh database and says whether the race
    /// showed. `Err` when a child did not return: neither an exposure nor a
    /// pass, counted apart.
    fn run(&self, options: &Options, round: usize) -> Result<bool, String> {
        let journal = self.journal.unwrap_or(if round % 2 == 0 {
            Journal::Delete
        } else {
            Journal::Wal
        });
        let fail = |e: stampede::Error| e.to_string();
        match self.scenario {
            Scenario::NaiveClaim | Scenario::ImmediateClaim => {
                let db = Db::one_free_ticket().journal(journal);
                let outcomes = if matches!(self.scenario, Scenario::NaiveClaim) {
                    options.call_concurrently(CHILDREN, sqlite::claim_naive, db.path())
                } else {
                    options.call_concurrently(CHILDREN, sqlite::claim_immediate, db.path())
                }
                .map_err(fail)?;
                let winners = winners(&outcomes)?;
                if matches!(self.scenario, Scenario::NaiveClaim) {
                    return Ok(winners.len() > 1);
                }
                Ok(winners.len() != 1 || db.ticket_holder() != winners.first().copied())
            }
            Scenario::LostUpdate | Scenario::AtomicIncrement => {
                let db = Db::counter_at_zero().journal(journal);
                let outcomes = if matches!(self.scenario, Scenario::LostUpdate) {
                    options.call_concurrently(CHILDREN, sqlite::increment_naive, db.path())
                } else {
                    options.call_concurrently(CHILDREN, sqlite::increment_atomic, db.path())
                }
                .map_err(fail)?;
                if !outcomes.all_returned() {
                    return Err(outcomes.report());
                }
                Ok(db.counter() != CHILDREN as i64)
            }
            Scenario::InsertWithoutUnique | Scenario::InsertWithUnique => {
                let unique = matches!(self.scenario, Scenario::InsertWithUnique);
                let db = Db::empty_claims(unique).journal(journal);
                let outcomes = options
                    .call_concurrently(CHILDREN, sqlite::claim_by_insert, db.path())
                    .map_err(fail)?;
                let winners = winners(&outcomes)?;
                if unique {
                    return Ok(winners.len() != 1 || db.claim_rows() != 1);
                }
                Ok(db.claim_rows() > 1)
            }
        }
    }
}

/// The pids of the children that returned `true`, or the report if any
/// child did not return.
fn winners(outcomes: &stampede::Outcomes<bool>) -> Result<Vec<u32>, String> {
    if !outcomes.all_returned() {
        return Err(outcomes.report());
    }
    Ok(outcomes
        .iter()
        .filter(|o| o.value() == Some(&true))
        .map(|o| o.pid())
        .collect())
}

struct Mode {
    name: &'static str,
    options: fn() -> Options,
}

const MODES: &[Mode] = &[
    Mode {
        name: "barrier on",
        options: Options::new,
    },
    Mode {
        name: "barrier off",
        options: || Options::new().barrier(false),
    },
    Mode {
        name: "barrier + jitter 0..=200 µs",
        options: || Options::new().jitter(JITTER),
    },
];

#[derive(Default, Clone, Copy)]
struct Cell {
    exposed: usize,
    errors: usize,
    runs: usize,
}

impl Cell {
    fn rate(&self) -> f64 {
        let valid = self.runs - self.errors;
        if valid == 0 {
            0.0
        } else {
            self.exposed as f64 / valid as f64
        }
    }

    fn show(&self) -> String {
        let mut s = format!(
            "{:.0} % ({}/{})",
            self.rate() * 100.0,
            self.exposed,
            self.runs - self.errors
        );
        if self.errors > 0 {
            let _ = write!(s, ", {} errors", self.errors);
        }
        s
    }
}

fn machine() -> String {
    format!(
        "{}, {CHILDREN} children, SQLite {}",
        machine::machine(),
        rusqlite::version()
    )
}

/// The 1-minute load average: other work on the machine competes with the
/// children for the cores, which lowers exposure in rollback-journal mode.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    stampede::init();
    let runs = match std::env::var(RUNS_VAR) {
        Ok(value) => value
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("{RUNS_VAR}={value:?} is not a number of runs")),
        Err(_) => DEFAULT_RUNS,
    };
    let began = Instant::now();
    let load_before = load();
    let mut cells = vec![[Cell::default(); 3]; RACES.len()];
    let mut first_error: Option<String> = None;
    // Modes rotate inside each round so that a slow spell of the machine
    // does not land on one column only.
    for round in 0..runs {
        for (r, race) in RACES.iter().enumerate() {
            for step in 0..MODES.len() {
                let m = (round + step) % MODES.len();
                let cell = &mut cells[r][m];
                cell.runs += 1;
                match race.run(&(MODES[m].options)(), round) {
                    Ok(true) => cell.exposed += 1,
                    Ok(false) => {}
                    Err(report) => {
                        cell.errors += 1;
                        first_error
                            .get_or_insert(format!("{} / {}: {report}", race.name, MODES[m].name));
                    }
                }
            }
        }
        if (round + 1) % 10 == 0 {
            eprintln!(
                "detection: {} of {runs} rounds in {:.0} s",
                round + 1,
                began.elapsed().as_secs_f64()
            );
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nDetection power, {runs} runs per cell ({:.0} s)",
        began.elapsed().as_secs_f64()
    );
    let _ = writeln!(out, "Machine: {}", machine());
    let _ = writeln!(
        out,
        "Load average (1 min): {load_before} at the start, {} at the end\n",
        load()
    );
    let _ = write!(out, "| scenario |");
    for mode in MODES {
        let _ = write!(out, " {} |", mode.name);
    }
    let _ = writeln!(out, " exposed when |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (race, row) in RACES.iter().zip(&cells) {
        let _ = write!(out, "| {} |", race.name);
        for cell in row {
            let _ = write!(out, " {} |", cell.show());
        }
        let _ = writeln!(out, " {} |", race.exposed_when);
    }
    let _ = writeln!(out);
    for (race, row) in RACES.iter().zip(&cells) {
        let rate = row[0].rate();
        if race.targeted {
            let verdict = if rate >= TARGET { "PASS" } else { "MISS" };
            let _ = writeln!(
                out,
                "{verdict}: {} exposed in {:.0} % of runs with the barrier on (target ≥ {:.0} %)",
                race.name,
                rate * 100.0,
                TARGET * 100.0
            );
        }
        if race.is_control() && row.iter().any(|c| c.exposed > 0) {
            let _ = writeln!(
                out,
                "MISS: {} showed a violation; the recipe or the measurement is wrong",
                race.name
            );
        }
    }
    if let Some(error) = first_error {
        let _ = writeln!(out, "\nfirst run that did not complete:\n{error}");
    }
    println!("{out}");
}
