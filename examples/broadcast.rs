//! Broadcast: 1000 subscriber processes subscribe to a publish/subscribe
//! server, and the server publishes once, when every one of them is on its
//! list — then every subscriber must have the message.
//!
//! The broker runs in this (the parent) process on a loopback port
//! (`tests/common/broker.rs`, shared with `tests/fan_out.rs`). Each
//! subscriber connects and subscribes at its own pace, then waits in
//! `stampede::checkpoint()`. When all of them are there, the parent runs the
//! trigger given to `Options::on_checkpoint` — the publish — and only then
//! releases them to read. Each subscriber returns the message and when it
//! read it, on the monotonic clock all processes share.

#[path = "../tests/common/broker.rs"]
mod broker;

use std::time::{Duration, Instant};

use broker::{Broker, Received};

const SUBSCRIBERS: usize = 1000;

#[stampede::function]
fn subscriber(addr: String) -> Received {
    broker::subscribe_and_wait(&addr)
}

fn main() {
    stampede::init();
    let broker = Broker::start();
    let publisher = broker.clone();
    println!(
        "{SUBSCRIBERS} subscriber processes subscribe to {}; the parent publishes once all are on the list.",
        broker.addr()
    );
    let began = Instant::now();
    let outcomes = stampede::Options::new()
        .timeout(Duration::from_secs(180))
        .checkpoint_release(stampede::Release::all().within(Duration::from_secs(120)))
        .on_checkpoint(move || publisher.publish("news"))
        .call_concurrently(SUBSCRIBERS, subscriber, broker.addr())
        .expect("starting the subscribers");
    let elapsed = began.elapsed();
    if let Err(failure) = broker::check_delivery(&outcomes, "news") {
        panic!("{failure}");
    }
    assert_eq!(broker.publishes(), 1, "the trigger ran once");

    let published = broker.published_at().expect("the trigger published");
    let mut latencies: Vec<Duration> = outcomes
        .values()
        .filter_map(|received| received.as_ref())
        .map(|(_, at)| at.duration_since(published))
        .collect();
    latencies.sort();
    let rank = |q: f64| {
        // Exact nearest rank: the smallest value with at least q of the
        // samples at or below it.
        let k = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        ms(latencies[k - 1])
    };
    println!(
        "  {} of {SUBSCRIBERS} subscribers got the message, {:.2} s in all",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "  delivery after the publish began: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        rank(0.50),
        rank(0.90),
        rank(0.99),
        rank(1.0)
    );
    println!("  stages:");
    for line in outcomes.stages().to_string().lines() {
        println!("    {line}");
    }
    let mut rss: Vec<u64> = outcomes.iter().filter_map(|o| o.max_rss()).collect();
    rss.sort_unstable();
    if let (Some(median), Some(max)) = (rss.get(rss.len() / 2), rss.last()) {
        println!(
            "  memory: parent peak {}, each subscriber's peak median {} (max {})",
            peak_of_parent().unwrap_or_else(|| "unknown".into()),
            mib(*median),
            mib(*max)
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// This process's peak resident memory (`VmHWM`), from /proc.
fn peak_of_parent() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(mib(kib * 1024))
}
