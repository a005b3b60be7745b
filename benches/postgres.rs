//! What a `services::Postgres` fixture costs, against the baseline of a bare
//! `initdb` from the same run: the first fixture with a cold cache, a
//! cluster from the cache, and a new database on a running cluster.
//!
//! Run with `cargo bench --bench postgres` (needs PostgreSQL's server
//! programs). Shared machines are noisy, so every variant runs once per
//! round, in an order shuffled anew each round, and the table
//! reports medians and minimums over the rounds. Timings are printed, never
//! asserted: a missed target is a line that says MISS.
//!
//! - cold cache: `Postgres::start()` on a private cluster whose `initdb`
//!   cache is a fresh temporary directory (`initdb`, the copy into the
//!   cache, the copy for the cluster, the server's start, the first
//!   database);
//! - cluster from the cache: `Postgres::start()` on a private cluster, the
//!   cache warm (the copy, the start, the first database) — what the first
//!   fixture of a test process waits for;
//! - database on a running cluster: `Postgres::start()` on the process's
//!   shared cluster, running already — what every other fixture waits for;
//! - baseline: `initdb` alone, run as the fixture runs it (the same user and
//!   options, into a scratch directory under `/tmp`).
//!
//! Stopping is not timed: it happens when a test is over.
//!
//! Environment: `PG_BENCH_ROUNDS` (default 5) sets the number of rounds.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/order.rs"]
mod order;
#[path = "common/stats.rs"]
mod stats;

use stats::{Stats, fmt};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use stampede::services::Postgres;

const ROUNDS_VAR: &str = "PG_BENCH_ROUNDS";
const DEFAULT_ROUNDS: usize = 5;
/// Databases created (and dropped) per round: they are cheap, and their
/// median needs more samples than a round gives.
const DATABASES_PER_ROUND: usize = 8;

const DATABASE_TARGET: Duration = Duration::from_millis(150);
const CLUSTER_TARGET: Duration = Duration::from_millis(500);

#[derive(Clone, Copy)]
enum Variant {
    ColdCache,
    FromCache,
    Database,
    Initdb,
}

const VARIANTS: [Variant; 4] = [
    Variant::ColdCache,
    Variant::FromCache,
    Variant::Database,
    Variant::Initdb,
];

#[derive(Default)]
struct Bench {
    cold: Vec<Duration>,
    from_cache: Vec<Duration>,
    database: Vec<Duration>,
    initdb: Vec<Duration>,
}

impl Bench {
    fn run(&mut self, variant: Variant, shared: &Postgres) {
        match variant {
            Variant::ColdCache => {
                let cache = tempfile::Builder::new()
                    .prefix("stampede-pgbench-cache")
                    .tempdir()
                    .expect("a temporary cache directory");
                let t0 = Instant::now();
                let pg = Postgres::builder()
                    .cache_dir(cache.path())
                    .start()
                    .expect("a fixture with a cold cache");
                self.cold.push(t0.elapsed());
                drop(pg);
            }
            Variant::FromCache => {
                let t0 = Instant::now();
                let pg = Postgres::builder()
                    .private_cluster(true)
                    .start()
                    .expect("a fixture on a cluster from the cache");
                self.from_cache.push(t0.elapsed());
                drop(pg);
            }
            Variant::Database => {
                // The shared cluster runs already (`shared` holds it).
                let _ = shared;
                for _ in 0..DATABASES_PER_ROUND {
                    let t0 = Instant::now();
                    let pg = Postgres::start().expect("a database on the running cluster");
                    self.database.push(t0.elapsed());
                    drop(pg);
                }
            }
            Variant::Initdb => {
                let took = Postgres::builder().timed_initdb().expect("initdb");
                self.initdb.push(took);
            }
        }
    }

    fn report(&self, rounds: usize, took: Duration) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "\n## services::Postgres\n");
        let _ = writeln!(w, "machine: {}", machine::machine());
        let _ = writeln!(
            w,
            "rounds: {rounds} ({DATABASES_PER_ROUND} databases per round), variants interleaved \
             round-robin; whole run {:.1} s\n",
            took.as_secs_f64()
        );
        let _ = writeln!(
            w,
            "| measurement | median (min) | ÷ initdb, of medians (of minimums) | target |"
        );
        let _ = writeln!(w, "|---|---|---|---|");
        let (cold, cache, db, base) = (
            Stats::of(&self.cold),
            Stats::of(&self.from_cache),
            Stats::of(&self.database),
            Stats::of(&self.initdb),
        );
        let rows = [
            ("(a) first fixture, cold cache", &cold, "—".to_owned()),
            (
                "(b) cluster from the cache, with its first database",
                &cache,
                format!("≤ {}", fmt(CLUSTER_TARGET)),
            ),
            (
                "(c) new database on a running cluster",
                &db,
                format!("≤ {}", fmt(DATABASE_TARGET)),
            ),
            ("(d) baseline: initdb", &base, "—".to_owned()),
        ];
        for (label, stats, target) in rows {
            let _ = writeln!(
                w,
                "| {label} | {} | {} | {target} |",
                stats.table_cell(),
                stats.ratios(&base)
            );
        }
        let _ = writeln!(
            w,
            "\nA cluster from the cache costs {:.2}× an initdb (of minimums: {:.2}×).",
            cache.median.as_secs_f64() / base.median.as_secs_f64(),
            cache.min.as_secs_f64() / base.min.as_secs_f64()
        );
        let _ = writeln!(w, "\n### targets\n");
        let verdicts = [
            (
                format!("per-test database ≤ {}", fmt(DATABASE_TARGET)),
                db.median <= DATABASE_TARGET,
            ),
            (
                format!("cluster from the cache ≤ {}", fmt(CLUSTER_TARGET)),
                cache.median <= CLUSTER_TARGET,
            ),
        ];
        for (what, pass) in verdicts {
            let _ = writeln!(w, "{} {what}", if pass { "PASS" } else { "MISS" });
        }
        out
    }
}

fn main() {
    // The keepers enter through this binary.
    stampede::init();
    let rounds = std::env::var(ROUNDS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let began = Instant::now();
    // Warms the user's cache and starts the shared cluster, untimed.
    let shared =
        Postgres::start().expect("PostgreSQL's server programs (apt-get install postgresql)");
    let mut bench = Bench::default();
    for round in 0..rounds {
        for variant in order::shuffled(&VARIANTS, round) {
            bench.run(variant, &shared);
        }
    }
    drop(shared);
    print!("{}", bench.report(rounds, began.elapsed()));
}
