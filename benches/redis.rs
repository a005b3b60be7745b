//! What a `services::Redis` fixture costs, against the baseline of a bare
//! `redis-server` start from the same run.
//!
//! Run with `cargo bench --bench redis` (needs `redis-server`). Shared
//! machines are noisy, so every variant runs once per round, in an order
//! shuffled anew each round, and the table reports medians and
//! minimums over the rounds. Timings are printed, never asserted.
//!
//! - server of its own: `Redis::builder().private_instance(true).start()`
//!   (the instance directory, the keeper, the server's start, its first
//!   database emptied) — what the first fixture of a test process waits for;
//! - database on a running server: `Redis::start()` on the process's shared
//!   server — what every other fixture waits for;
//! - baseline: `redis-server` started by hand on a socket in a scratch
//!   directory, with the same configuration, until it answers `PING`.
//!
//! Stopping is not timed: it happens when a test is over.
//!
//! Environment: `REDIS_BENCH_ROUNDS` (default 10) sets the number of rounds.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/order.rs"]
mod order;
#[path = "common/stats.rs"]
mod stats;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stampede::services::Redis;
use stats::Stats;

const ROUNDS_VAR: &str = "REDIS_BENCH_ROUNDS";
const DEFAULT_ROUNDS: usize = 10;
/// Fixtures started (and dropped) per round on the running server.
const DATABASES_PER_ROUND: usize = 8;

#[derive(Clone, Copy)]
enum Variant {
    OwnServer,
    Database,
    Bare,
}

const VARIANTS: [Variant; 3] = [Variant::OwnServer, Variant::Database, Variant::Bare];

#[derive(Default)]
struct Bench {
    own: Vec<Duration>,
    database: Vec<Duration>,
    bare: Vec<Duration>,
}

/// Starts `redis-server` as a fixture configures it, on a socket in a
/// scratch directory, and returns how long until it answered `PING`.
fn bare_start() -> Duration {
    let dir = tempfile::Builder::new()
        .prefix("stampede-redisbench")
        .tempdir()
        .expect("a scratch directory");
    let socket = dir.path().join("redis.sock");
    let config = dir.path().join("redis.conf");
    std::fs::write(
        &config,
        format!(
            "daemonize no\nlogfile \"\"\ndir \"{}\"\nunixsocket \"{}\"\nunixsocketperm 700\n\
             save \"\"\nappendonly no\ndatabases 1024\nport 0\n",
            dir.path().display(),
            socket.display()
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut server = Command::new("redis-server")
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let took = loop {
        if let Ok(mut stream) = UnixStream::connect(&socket) {
            let mut reply = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut reply).is_ok()
                && &reply == b"+PONG\r\n"
            {
                break t0.elapsed();
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "redis-server never answered"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = server.kill();
    let _ = server.wait();
    took
}

impl Bench {
    fn run(&mut self, variant: Variant) {
        match variant {
            Variant::OwnServer => {
                let t0 = Instant::now();
                let redis = Redis::builder()
                    .private_instance(true)
                    .start()
                    .expect("a fixture on a server of its own");
                self.own.push(t0.elapsed());
                drop(redis);
            }
            Variant::Database => {
                for _ in 0..DATABASES_PER_ROUND {
                    let t0 = Instant::now();
                    let redis = Redis::start().expect("a database on the running server");
                    self.database.push(t0.elapsed());
                    drop(redis);
                }
            }
            Variant::Bare => self.bare.push(bare_start()),
        }
    }

    fn report(&self, rounds: usize, took: Duration) -> String {
        let (own, db, bare) = (
            Stats::of(&self.own),
            Stats::of(&self.database),
            Stats::of(&self.bare),
        );
        let mut out = format!(
            "\n## services::Redis\n\nmachine: {}\nrounds: {rounds} ({DATABASES_PER_ROUND} \
             databases per round), variants in an order shuffled each round; whole run {:.1} s\n\n\
             | measurement | median (min) | ÷ bare redis-server, of medians (of minimums) |\n\
             |---|---|---|\n",
            machine::machine(),
            took.as_secs_f64()
        );
        for (label, stats) in [
            ("(a) fixture on a server of its own", &own),
            ("(b) fixture on the running server", &db),
            ("(c) baseline: bare redis-server until PING", &bare),
        ] {
            out.push_str(&format!(
                "| {label} | {} | {} |\n",
                stats.table_cell(),
                stats.ratios(&bare)
            ));
        }
        out.push_str(&format!(
            "\nA fixture on a server of its own costs {:.2}× a bare start (of minimums: {:.2}×).\n",
            own.median.as_secs_f64() / bare.median.as_secs_f64(),
            own.min.as_secs_f64() / bare.min.as_secs_f64()
        ));
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
    // Starts the shared server, untimed.
    let shared = Redis::start().expect("redis-server (apt-get install redis-server)");
    let mut bench = Bench::default();
    for round in 0..rounds {
        for variant in order::shuffled(&VARIANTS, round) {
            bench.run(variant);
        }
    }
    drop(shared);
    print!("{}", bench.report(rounds, began.elapsed()));
}
