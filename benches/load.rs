//! Throughput of `stampede::Load` against procspawn's `Pool`, measured in
//! the same run: trivial round-trip calls through 1, 2 and 8 long-lived
//! workers, stampede with and without leak detection; then the parent's
//! memory over a million calls.
//!
//! Run with `cargo bench --bench load`. Shared machines are noisy: every
//! variant runs once per round, in an order shuffled anew each round, and
//! the table reports medians and best rounds. Nothing is asserted; a missed
//! target is a line that says MISS.
//!
//! Environment: `LOAD_ROUNDS` (default 5), `LOAD_CALLS` (calls per variant
//! and round, default 20000), `LOAD_LEAK_CALLS` (calls per run when leak
//! detection's cost is measured, default 100000), `LOAD_MILLION` (calls of
//! the memory run, default 1000000), `LOAD_WORKERS` (worker counts to
//! measure, default `1,2,8`).

#[path = "common/order.rs"]
mod order;

use std::time::Instant;

const WORKERS: [usize; 3] = [1, 2, 8];
/// stampede's calls per second must be at least this many times procspawn's.
const THROUGHPUT_FACTOR: f64 = 3.0;
/// Leak detection may cost at most this share of throughput.
const LEAK_DETECTION_COST: f64 = 0.10;
/// "Flat": the parent's peak memory grows by at most this many bytes per
/// call between a run of a tenth of the calls and the whole run.
const MEMORY_PER_CALL: f64 = 1.0;
/// Failing calls that print a lot: how many, how much each, and the most
/// the parent may hold at its peak.
const LOUD_FAILURES: u64 = 6_000;
const LOUD_BYTES: usize = 60 * 1024;
const LOUD_PEAK_MIB: f64 = 64.0;

#[stampede::function]
fn echo(x: u32) -> u32 {
    x
}

/// For the failures' memory run: prints 60 KiB, then panics.
#[stampede::function]
fn loud_failure(_x: u32) {
    use std::io::Write;
    let line = [b'x'; 1023];
    let mut out = std::io::stdout().lock();
    for _ in 0..LOUD_BYTES / 1024 {
        out.write_all(&line).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    panic!("a loud failure");
}

/// For the memory run: returns nothing, so the report keeps no value per
/// call and what grows is stampede's own.
#[stampede::function]
fn touch(_x: u32) {}

fn procspawn_echo(x: u32) -> u32 {
    x
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Stampede { workers: usize, leaks: bool },
    Procspawn { workers: usize },
}

impl Variant {
    fn all(workers: &[usize]) -> Vec<Variant> {
        let mut all = Vec::new();
        for &workers in workers {
            all.push(Variant::Stampede {
                workers,
                leaks: true,
            });
            all.push(Variant::Stampede {
                workers,
                leaks: false,
            });
            all.push(Variant::Procspawn { workers });
        }
        all
    }

    fn name(self) -> String {
        match self {
            Variant::Stampede { workers, leaks } => format!(
                "stampede Load, {workers} worker(s), leak detection {}",
                if leaks { "on" } else { "off" }
            ),
            Variant::Procspawn { workers } => format!("procspawn Pool, {workers} worker(s)"),
        }
    }

    /// Calls per second over `calls` calls, workers' start included for
    /// both (each run starts its own pool).
    fn run(self, calls: usize) -> f64 {
        let began = Instant::now();
        match self {
            Variant::Stampede { workers, leaks } => {
                let report = stampede::Load::new(calls as u64)
                    .workers(workers)
                    .leak_detection(leaks)
                    .run(echo, 7)
                    .expect("starting the workers");
                assert_eq!(report.returned(), calls as u64, "{report}");
            }
            Variant::Procspawn { workers } => {
                let pool = procspawn::Pool::new(workers).expect("starting the pool");
                // Each pending call holds channels (descriptors): keep a
                // window of them in flight, enough to keep every worker busy.
                let window = 16 * workers;
                let mut pending = std::collections::VecDeque::new();
                for i in 0..calls {
                    if pending.len() == window {
                        let (expected, handle): (u32, procspawn::JoinHandle<u32>) =
                            pending.pop_front().unwrap();
                        assert_eq!(handle.join().expect("a pooled call"), expected);
                    }
                    pending.push_back((i as u32, pool.spawn(i as u32, procspawn_echo)));
                }
                for (expected, handle) in pending {
                    assert_eq!(handle.join().expect("a pooled call"), expected);
                }
                pool.shutdown();
            }
        }
        calls as f64 / began.elapsed().as_secs_f64()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A line of `/proc/self/status` in kB (`VmHWM:` the peak resident set,
/// `VmRSS:` the one now), in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts the peak resident set over from what is resident now (Linux's
/// `clear_refs` 5), so that a later peak is that of what ran since, not
/// of an earlier section of this bench. Whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() {
    stampede::init();
    procspawn::init();
    let rounds = env_or("LOAD_ROUNDS", 5);
    let calls = env_or("LOAD_CALLS", 20_000);
    let million = env_or("LOAD_MILLION", 1_000_000);
    let began = Instant::now();
    // `LOAD_WORKERS=1` (a comma-separated list) measures only those counts.
    let workers: Vec<usize> = match std::env::var("LOAD_WORKERS") {
        Ok(list) => list
            .split(',')
            .filter_map(|w| w.trim().parse().ok())
            .collect(),
        Err(_) => WORKERS.to_vec(),
    };
    let variants = Variant::all(&workers);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    // One throw-away round: page cache, allocator and scheduler settle.
    for round in 0..=rounds {
        let indices: Vec<usize> = (0..variants.len()).collect();
        for i in order::shuffled(&indices, round) {
            let rate = variants[i].run(calls);
            if round > 0 {
                rates[i].push(rate);
            }
        }
    }
    let med: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let best: Vec<f64> = rates
        .iter()
        .map(|r| r.iter().copied().fold(0.0, f64::max))
        .collect();
    let index = |v: Variant| variants.iter().position(|x| *x == v).unwrap();

    println!("## stampede Load vs procspawn Pool: trivial round-trip calls");
    println!();
    println!(
        "{rounds} rounds of {calls} calls per variant, order shuffled each round; calls/s, median (best round)."
    );
    println!();
    println!("| variant | calls/s | vs procspawn, same workers |");
    println!("|---|---|---|");
    for (i, variant) in variants.iter().enumerate() {
        let workers = match variant {
            Variant::Stampede { workers, .. } | Variant::Procspawn { workers } => *workers,
        };
        let baseline = med[index(Variant::Procspawn { workers })];
        println!(
            "| {} | {:.0} ({:.0}) | {:.2}× |",
            variant.name(),
            med[i],
            best[i],
            med[i] / baseline
        );
    }

    println!();
    // Leak detection's cost: on and off back to back, the order alternating,
    // over longer runs; the cost is the median of the rounds' ratios, so a
    // machine that slows down for a while slows both sides of a pair.
    let leak_calls = env_or("LOAD_LEAK_CALLS", 100_000);
    println!();
    println!("## leak detection's cost");
    println!();
    println!(
        "{rounds} pairs of runs of {leak_calls} calls (on, off back to back, the order \
         alternating); the cost is the median of the pairs' ratios."
    );
    println!();
    println!("| workers | on / off, each pair | cost (median) |");
    println!("|---|---|---|");
    let mut costs = Vec::new();
    for &w in &workers {
        let on = Variant::Stampede {
            workers: w,
            leaks: true,
        };
        let off = Variant::Stampede {
            workers: w,
            leaks: false,
        };
        let mut ratios: Vec<f64> = (0..rounds)
            .map(|round| {
                if round % 2 == 0 {
                    let a = on.run(leak_calls);
                    a / off.run(leak_calls)
                } else {
                    let b = off.run(leak_calls);
                    on.run(leak_calls) / b
                }
            })
            .collect();
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        let cost = 1.0 - median(&mut ratios);
        println!("| {w} | {} | {:.1} % |", shown.join(", "), cost * 100.0);
        costs.push((w, cost));
    }
    println!();
    println!(
        "## the parent's memory with {LOUD_FAILURES} failing calls printing {} KiB each",
        LOUD_BYTES / 1024
    );
    // The peak is this run's: the sections before it (the throughput
    // runs, procspawn's pool) had peaks of their own.
    let reset = reset_peak_rss();
    let resident_before = status_mib("VmRSS:");
    let loud = stampede::Load::new(LOUD_FAILURES)
        .workers(2)
        .leak_detection(false)
        .run(loud_failure, 0)
        .expect("starting the workers");
    assert_eq!(loud.failed(), LOUD_FAILURES, "{loud}");
    let loud_peak = peak_rss_mib();
    println!(
        "\nThe parent's peak: {loud_peak:.1} MiB ({}; {resident_before:.1} MiB resident before \
         it); {} of the failures' outputs cut to their last lines (without the budget it would \
         hold {:.0} MiB of output).",
        if reset {
            "during this run"
        } else {
            "over the whole bench: the peak could not be reset"
        },
        loud.outputs_cut(),
        (LOUD_FAILURES as usize * LOUD_BYTES) as f64 / (1024.0 * 1024.0)
    );
    drop(loud);
    println!();
    println!("## the parent's memory over many calls (8 workers, leak detection on)");
    let before = peak_rss_mib();
    let tenth = stampede::Load::new((million / 10) as u64)
        .workers(8)
        .run(touch, 7)
        .expect("starting the workers");
    let after_tenth = peak_rss_mib();
    drop(tenth);
    let whole = stampede::Load::new(million as u64)
        .workers(8)
        .run(touch, 7)
        .expect("starting the workers");
    let after_whole = peak_rss_mib();
    assert_eq!(whole.returned(), million as u64, "{whole}");
    println!();
    println!("| run | calls/s | parent's peak RSS after |");
    println!("|---|---|---|");
    println!("| before | — | {before:.1} MiB |");
    println!("| {} calls | — | {after_tenth:.1} MiB |", million / 10);
    println!(
        "| {million} calls | {:.0} | {after_whole:.1} MiB |",
        whole.throughput()
    );
    let per_call = (after_whole - after_tenth) * 1024.0 * 1024.0 / (million - million / 10) as f64;
    println!();
    println!(
        "Growth between the two: {per_call:.2} bytes per call. The function returns `()`, so \
         the report keeps nothing per call; a function returning `R` adds the values \
         themselves, size_of::<R>() bytes per call."
    );
    println!();
    println!("### targets");
    println!(
        "{} {LOUD_FAILURES} failing calls printing {} KiB each keep the parent under \
         {LOUD_PEAK_MIB} MiB ({loud_peak:.1} MiB)",
        if loud_peak < LOUD_PEAK_MIB {
            "PASS"
        } else {
            "MISS"
        },
        LOUD_BYTES / 1024
    );
    println!(
        "{} the parent's memory stays flat over {million} calls ({per_call:.2} bytes per call, \
         at most {MEMORY_PER_CALL})",
        if per_call <= MEMORY_PER_CALL {
            "PASS"
        } else {
            "MISS"
        }
    );
    for &workers in &workers {
        let off = med[index(Variant::Stampede {
            workers,
            leaks: false,
        })];
        let base = med[index(Variant::Procspawn { workers })];
        println!(
            "{} {workers} worker(s): ≥ {THROUGHPUT_FACTOR}× procspawn's calls/s ({:.2}×)",
            if off >= THROUGHPUT_FACTOR * base {
                "PASS"
            } else {
                "MISS"
            },
            off / base
        );
    }
    for (w, cost) in costs {
        println!(
            "{} {w} worker(s): leak detection costs ≤ {:.0} % of throughput ({:.1} %)",
            if cost <= LEAK_DETECTION_COST {
                "PASS"
            } else {
                "MISS"
            },
            LEAK_DETECTION_COST * 100.0,
            cost * 100.0
        );
    }
    println!();
    println!("bench time: {:.1} s", began.elapsed().as_secs_f64());
}
